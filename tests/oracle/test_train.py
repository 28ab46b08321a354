"""bf-train and bf-eval on real (fixture) shards: learning, exact resume, PyTorch loading,
the evaluation's numbers and its controls, and clear errors.

The fixture dataset's EEG and MEG are mixtures of shared latent sources, so a model that
reads the EEG predicts the MEG, and one fed another window's EEG cannot.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import bin_path, make_shards
from test_model_parity import SEED, assert_close, seed_token_modules

# Small enough for two CPU cores, big enough to learn the fixtures' EEG→MEG mapping.
SMALL = ["--d_model", "16", "--n_heads", "2", "--d_ff", "32", "--sequence_length", "16", "--router_dim", "4",
         "--batch_size", "8", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 subjects x 1 run x 40 s through ingest and tokenize (2 train, 1 validation, 1 test)."""
    return make_shards(tmp_path_factory.mktemp("train"), subjects=4, seconds=40)


def bf(tool, *args, check=True):
    proc = subprocess.run([str(bin_path(tool)), *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{tool} {' '.join(map(str, args))}:\n{proc.stderr}"
    return proc


def log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# The demo's model size: learns the fixtures' MEG within ~100 steps (measured: teacher-forced
# r 0.68 at step 100, 0.92 at step 200 on the demo dataset).
LEARNS = ["--d_model", "32", "--n_heads", "4", "--d_ff", "64", "--sequence_length", "32", "--batch_size", "8",
          "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    bf("bf-train", "--shards", shards, "--out", out, *LEARNS, "--max_steps", "100", "--lr", "3e-3",
       "--warmup_steps", "10", "--eval_interval", "20", "--eval_batches", "4", "--seed", "1")
    return out


def test_training_lowers_validation_loss(trained):
    lines = log(trained / "metrics.jsonl")
    assert [l["step"] for l in lines] == list(range(1, 101))
    for key in ("loss", "lr", "grad_norm", "samples_per_sec", "tokens_per_sec"):
        assert all(np.isfinite(l[key]) for l in lines), key
    val = [l["val_loss"] for l in lines if "val_loss" in l]
    assert len(val) == 5
    # Uniform guessing over 255 levels costs ln 255 = 5.54 nats; learning must go well below.
    assert val[-1] < val[0] - 0.3 and val[-1] < 5.0, val
    state = json.loads((trained / "best" / "trainer_state.json").read_text())
    assert state["best_val_loss"] == pytest.approx(min(val))


def test_evaluation_numbers_controls_and_report(trained, shards, tmp_path):
    out = tmp_path / "eval"
    proc = bf("bf-eval", "--checkpoint", trained / "best", "--shards", shards, "--out", out, "--device", "cpu",
              "--quiet", "--max-windows", "8", "--free-windows", "1", "--ridge-windows", "100")
    assert "report:" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in ("pearson_r", "pearson_r_shuffled_eeg", "ridge_pearson_r"):
        assert m[key] is not None and -1 <= m[key] <= 1, (key, m[key])
    rows = {r["name"]: r for r in m["rows"]}
    tf = rows["model, teacher-forced"]
    assert tf["pearson_r"] == m["pearson_r"]
    # A trained model tracks the test MEG (teacher-forced; measured r 0.41 after these 100 steps,
    # 0.92 after 200 on the demo set), where the channel mean has no correlation at all. Its R²
    # is still negative this early: argmax levels overshoot in amplitude.
    assert tf["pearson_r"] > 0.3 and rows["channel mean"]["pearson_r"] is None, tf
    assert 0 < tf["token_accuracy"] <= 1 and tf["perplexity"] == pytest.approx(np.exp(tf["cross_entropy"]))
    assert tf["cross_entropy"] < np.log(255)
    # The control differs only by the EEG; it cannot beat the real pairing beyond noise. (How far
    # below it falls is the open question of this model at CPU-sized training: see docs/STATUS.md.)
    assert m["pearson_r"] >= m["pearson_r_shuffled_eeg"] - 0.02, m
    # The ridge baseline recovers the fixtures' shared sources (their EEG→MEG map is linear).
    assert m["ridge_pearson_r"] > 0.8
    assert any(name.startswith("model, free-running (1 windows)") for name in rows)
    report = (out / "report.md").read_text()
    for png in ("training_curves.png", "examples.png", "per_channel_r.png"):
        assert png in report and (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_equals_an_uninterrupted_run(shards, tmp_path):
    common = ["--shards", shards, *SMALL, "--max_steps", "12", "--eval_interval", "4", "--eval_batches", "2",
              "--lr", "3e-3", "--grad_accum", "2", "--seed", "3", "--history_dropout", "0.5"]
    bf("bf-train", "--out", tmp_path / "straight", *common)
    bf("bf-train", "--out", tmp_path / "resumed", *common, "--stop_after", "6")
    assert len(log(tmp_path / "resumed" / "metrics.jsonl")) == 6
    proc = bf("bf-train", "--out", tmp_path / "resumed", *common, "--resume")
    assert "resuming at step 6" in proc.stderr
    a, b = log(tmp_path / "straight" / "metrics.jsonl"), log(tmp_path / "resumed" / "metrics.jsonl")
    assert [l["step"] for l in b] == list(range(1, 13))
    # Same data position, weights, optimizer moments, dropout seeds and hidden histories: the
    # same numbers.
    for x, y in zip(a, b):
        for key in ("loss", "lr", "grad_norm", "val_loss", "examples"):
            assert x.get(key) == y.get(key), (x["step"], key, x.get(key), y.get(key))
    wa = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    proc = bf("bf-train", "--out", tmp_path / "resumed", *common, "--weight_decay", "0.2", "--resume", check=False)
    assert proc.returncode != 0 and "other arguments" in proc.stderr


def test_bf16_mixed_precision_follows_f32(shards, tmp_path):
    """--precision bf16 is autocast (torch.autocast semantics): same seed, same data, so the
    losses and gradient norms follow the f32 run's within bfloat16 rounding, yet differ (the
    products really ran in bfloat16), and the checkpoint stays float32."""
    common = ["--shards", shards, *SMALL, "--max_steps", "4", "--eval_interval", "4", "--eval_batches", "2",
              "--lr", "3e-3", "--seed", "5"]
    bf("bf-train", "--out", tmp_path / "f32", *common)
    bf("bf-train", "--out", tmp_path / "bf16", *common, "--precision", "bf16")
    a, b = log(tmp_path / "f32" / "metrics.jsonl"), log(tmp_path / "bf16" / "metrics.jsonl")
    assert any(x["loss"] != y["loss"] for x, y in zip(a, b)), "bf16 gave f32's exact losses: autocast is off"
    for x, y in zip(a, b):
        # A loss near ln 258 ≈ 5.55 has a bfloat16 spacing of 2^-6 ≈ 0.016 (8 significant
        # bits); the loss itself is computed in float32 from bfloat16 products, so its error
        # is a fraction of that (measured: ~2e-4). The gradient norm likewise (~1e-3
        # relative). The model's f32 numbers are pinned by the parity tests.
        assert abs(x["loss"] - y["loss"]) < 0.01, (x["step"], x["loss"], y["loss"])
        assert abs(x["grad_norm"] - y["grad_norm"]) < 0.02 * x["grad_norm"], (x["step"], x["grad_norm"], y["grad_norm"])
    weights = load_file(str(tmp_path / "bf16" / "last" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_regression_model_reads_the_eeg(tmp_path):
    """The seed's regression model sees no MEG at all (its decoder starts from a learned
    target), so all it predicts comes from the EEG; pairing test MEG with other windows' EEG
    must take that away. Measured with these settings: r 0.79 vs 0.01 (shuffled EEG) after
    300 steps (55 s on 2 cores); on the demo dataset 0.75 vs -0.04."""
    shards = make_shards(tmp_path / "cont", subjects=4, seconds=40, continuous=True)
    run = tmp_path / "run"
    bf("bf-train", "--shards", shards, "--out", run, "--objective", "regression", "--n_heads", "2",
       "--sequence_length", "64", "--patch_size", "4", "--batch_size", "16", "--max_steps", "300", "--lr", "1e-3",
       "--warmup_steps", "20", "--eval_interval", "50", "--eval_batches", "4", "--seed", "1", "--device", "cpu",
       "--quiet")
    val = [l["val_loss"] for l in log(run / "metrics.jsonl") if "val_loss" in l]
    assert val[-1] < 0.75 * val[0], val  # measured 0.095 -> 0.048
    bf("bf-eval", "--checkpoint", run / "best", "--shards", shards, "--out", tmp_path / "eval", "--device", "cpu",
       "--quiet", "--max-windows", "8", "--ridge-windows", "100")
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # Margins: half the measured r, and a drop of 0.4 where 0.78 was measured.
    assert m["pearson_r"] > 0.4, m["pearson_r"]
    assert m["pearson_r"] - m["pearson_r_shuffled_eeg"] > 0.4, m
    assert "lowers r clearly" in (tmp_path / "eval" / "report.md").read_text()


def test_checkpoint_loads_in_pytorch_with_strict_names(shards, tmp_path):
    bf("bf-train", "--shards", shards, "--out", tmp_path, *SMALL, "--max_steps", "2", "--eval_interval", "2",
       "--eval_batches", "1", "--channel_attention", "full")
    ckpt = tmp_path / "best"
    cfg = json.loads((ckpt / "config.json").read_text())
    EncoderDecoderCrossFormer, _ = seed_token_modules()
    model = EncoderDecoderCrossFormer(
        source_sequence_dimension=cfg["source_sequence_dimension"], target_sequence_dimension=cfg["target_sequence_dimension"],
        router_dim=cfg["router_dim"], src_vocab_size=cfg["vocab_size_src"], tgt_vocab_size=cfg["vocab_size_tgt"],
        embed_dim=cfg["d_model"], num_heads=cfg["n_heads"], ff_dim=cfg["d_ff"], num_encoder_layers=cfg["n_layers"],
        num_decoder_layers=cfg["n_layers"], max_seq_length=cfg["sequence_length"]).eval()
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=True)
    # Same weights in both: same logits on the same ids.
    g = torch.Generator().manual_seed(0)
    eeg = torch.randint(3, 258, (2, 16, cfg["source_sequence_dimension"]), generator=g)
    meg = torch.randint(3, 258, (2, 16, cfg["target_sequence_dimension"]), generator=g)
    save_file({"eeg": eeg, "meg": meg}, str(tmp_path / "in.safetensors"))
    bf("bf-eval", "--checkpoint", ckpt, "--forward", tmp_path / "in.safetensors", "--out", tmp_path / "o.safetensors",
       "--device", "cpu")
    ours = load_file(str(tmp_path / "o.safetensors"))
    from test_model_parity import seed_token_forward
    with torch.no_grad():
        logits, _ = seed_token_forward(model, eeg, meg)
    assert_close(ours["logits"], logits, 1e-5, "logits of a trained checkpoint")


def test_bad_inputs_are_clear_errors(shards, tmp_path):
    proc = bf("bf-train", "--shards", tmp_path / "nope", "--out", tmp_path / "o", *SMALL, check=False)
    assert proc.returncode != 0 and "nope" in proc.stderr and "panicked" not in proc.stderr
    proc = bf("bf-train", "--shards", shards, "--out", tmp_path / "o2", *SMALL, "--resume", check=False)
    assert proc.returncode != 0 and "no checkpoint" in proc.stderr
    proc = bf("bf-train", "--shards", shards, "--out", tmp_path / "o3", *SMALL, "--objective", "regression", check=False)
    assert proc.returncode != 0 and "--objective token" in proc.stderr
    proc = bf("bf-train", "--shards", shards, "--out", tmp_path / "o4", *SMALL[:2], "--n_heads", "3", "--device", "cpu",
              check=False)
    assert proc.returncode != 0 and "divisible" in proc.stderr and "panicked" not in proc.stderr
    proc = bf("bf-eval", "--checkpoint", tmp_path / "none", "--shards", shards, "--out", tmp_path / "e", check=False)
    assert proc.returncode != 0 and "config.json" in proc.stderr
