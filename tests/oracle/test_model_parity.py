"""Our tch models against the seed's PyTorch modules (../shared/seed), same weights.

The seed's `EncoderDecoderCrossFormer` (token model, `full` channel attention as its code
runs), a router variant the test builds on the seed's modules (the router written here from
the Crossformer paper, Zhang & Yan, ICLR 2023, section 3.3, in the seed's Pre-LN
arrangement), and the seed's later regression `CrossFormer`. For each: the seed's random
weights are saved with their `state_dict()` names, `bf-eval --forward` loads them into our
model and writes logits, loss and every gradient, and we compare.

Tolerances: logits/predictions 1e-5 of their largest magnitude and loss 1e-5 relative (the
issue's bound: both sides compute in float32 with different kernel orders, whose rounding
stays near 1e-6 for these sizes); gradients 1e-4 of each tensor's largest entry (they pass
through a softmax backward and sums over many terms, where float32 reordering costs ~1e-5).
A gradient that is zero in exact arithmetic (a bias feeding a LayerNorm, whose output does
not change when a constant is added) is float32 noise on both sides: such tensors (the seed's
largest entry below 1e-6 of the model's largest gradient) must stay below that bound in ours.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from einops import rearrange, repeat
from safetensors.torch import load_file, save_file

from conftest import ROOT, bin_path

SEED = ROOT.parent / "shared" / "seed"


def _import_seed(sub):
    folder = SEED / sub
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the seed's PyTorch code is the oracle of this test")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def seed_token_modules():
    _import_seed("token")
    from model.architectures.crossformer import EncoderDecoderCrossFormer
    from model.architectures.twostage_attention import TwoStageAttentionLayer
    return EncoderDecoderCrossFormer, TwoStageAttentionLayer


def router_model_class():
    """The seed's Crossformer with the router channel stage the seed leaves commented out."""
    EncoderDecoderCrossFormer, TwoStageAttentionLayer = seed_token_modules()

    class RouterTSA(TwoStageAttentionLayer):
        def __init__(self, ts_length, router_dim, embed_dim, num_heads, ff_dim=None, dropout=0.1):
            super().__init__(ts_length, router_dim, embed_dim, num_heads, ff_dim, dropout)
            del self.dimension_attention
            self.time_to_router_attention = nn.MultiheadAttention(
                embed_dim, num_heads, batch_first=True, dropout=dropout, bias=False)
            self.router_to_dimension_attention = nn.MultiheadAttention(
                embed_dim, num_heads, batch_first=True, dropout=dropout, bias=False)
            self.router = nn.Parameter(torch.randn(ts_length + 1, router_dim, embed_dim))

        def forward(self, x, attention_mask_time=None, key_padding_mask_time=None,
                    attention_mask_dimension=None):
            b, t, c, d = x.shape
            time_in = self.norm1(rearrange(x, "b t c d -> (b c) t d"))
            time_enc, _ = self.time_attention(time_in, time_in, time_in, attn_mask=attention_mask_time,
                                              key_padding_mask=key_padding_mask_time)
            time_out = self.norm2(time_in + self.dropout(time_enc))
            time_out = time_out + self.dropout(self.MLP1(time_out))
            dim_in = self.norm3(rearrange(time_out, "(b c) t d -> (b t) c d", b=b, c=c))
            routers = repeat(self.router[:t], "t r d -> (b t) r d", b=b)
            buffer, _ = self.time_to_router_attention(routers, dim_in, dim_in)
            received, _ = self.router_to_dimension_attention(dim_in, buffer, buffer)
            out = self.norm4(dim_in + self.dropout(received))
            out = out + self.dropout(self.MLP2(out))
            return rearrange(out, "(b t) c d -> b t c d", b=b)

    class RouterCrossFormer(EncoderDecoderCrossFormer):
        def _stack_two_stage_attention_layers(self, embed_dim, num_heads, ff_dim, num_layers):
            return nn.ModuleList([RouterTSA(self.max_sequence_length, self.router_dim, embed_dim,
                                            num_heads, ff_dim) for _ in range(num_layers)])

    return RouterCrossFormer


SMALL = dict(source_sequence_dimension=6, target_sequence_dimension=10, router_dim=3, d_model=16,
             n_heads=4, n_layers=2, d_ff=32, sequence_length=8)


def build_seed_token(mode, cfg=SMALL):
    cls = seed_token_modules()[0] if mode == "full" else router_model_class()
    torch.manual_seed(0)
    return cls(source_sequence_dimension=cfg["source_sequence_dimension"],
               target_sequence_dimension=cfg["target_sequence_dimension"],
               router_dim=cfg["router_dim"], src_vocab_size=258, tgt_vocab_size=258,
               embed_dim=cfg["d_model"], num_heads=cfg["n_heads"], ff_dim=cfg["d_ff"],
               num_encoder_layers=cfg["n_layers"], num_decoder_layers=cfg["n_layers"],
               max_seq_length=cfg["sequence_length"]).eval()


def write_checkpoint(folder, module, config):
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config))


def run_forward(ckpt, inputs, tmp_path, generate=None):
    out = tmp_path / "out.safetensors"
    args = [str(bin_path("bf-eval")), "--checkpoint", str(ckpt), "--forward", str(inputs),
            "--out", str(out), "--device", "cpu"]
    if generate:
        args += ["--generate", str(generate)]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return load_file(str(out))


def padding_mask(ids):
    """The seed's `_create_padding_mask` (hf_transformer.py): -inf at pad, 1.0 elsewhere."""
    is_pad = ids.eq(0)
    return is_pad.float().masked_fill(is_pad, float("-inf")).masked_fill(~is_pad, 1.0)


def seed_token_forward(model, eeg, meg):
    """The seed's `Seq2SeqCrossFormer.forward` sequence handling around the module."""
    b, _, ce = eeg.shape
    cm = meg.shape[2]
    src = torch.cat([torch.full((b, 1, ce), 1), eeg], 1)
    labels = torch.cat([meg, torch.full((b, 1, cm), 2)], 1)
    tgt = torch.cat([torch.full((b, 1, cm), 1), labels[:, :-1]], 1)
    logits = model(src, tgt,
                   src_src_key_padding_time_mask=rearrange(padding_mask(src), "b s c -> (b c) s"),
                   tgt_tgt_key_padding_time_mask=rearrange(padding_mask(tgt), "b s c -> (b c) s"))
    loss = nn.CrossEntropyLoss(ignore_index=0)(logits.reshape(-1, 258), labels.reshape(-1))
    return logits, loss


def seed_generate(model, eeg):
    """The seed's `Seq2SeqCrossFormer.generate` (greedy): full passes, one step at a time."""
    b, t, ce = eeg.shape
    cm = model.tgt_sequence_dimension
    src = torch.cat([torch.full((b, 1, ce), 1), eeg], 1)
    dec = torch.zeros((b, t + 1, cm), dtype=torch.long)
    dec[:, 0, :] = 1
    all_logits = []
    with torch.no_grad():
        for step in range(t):
            logits = model(src, dec,
                           src_src_key_padding_time_mask=rearrange(padding_mask(src), "b s c -> (b c) s"),
                           tgt_tgt_key_padding_time_mask=rearrange(padding_mask(dec), "b s c -> (b c) s"))
            nxt = logits[:, step].argmax(-1)
            all_logits.append(logits[:, step])
            dec[:, step + 1] = nxt
    return dec[:, 1:], torch.stack(all_logits, 1)


def assert_close(ours, ref, rel, what, floor=1e-12):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    scale = max(np.abs(ref).max(), floor)
    err = np.abs(ours - ref).max()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x {scale:.3g}"


def check_gradients(ours, params):
    top = max(p.grad.abs().max().item() for p in params.values())
    for name, p in params.items():
        ref, got = p.grad.abs().max().item(), np.abs(np.asarray(ours[name])).max()
        if ref <= 1e-6 * top:
            # Zero in exact arithmetic (a bias feeding a normalisation): float32 noise on both sides.
            assert got <= 1e-6 * top, f"gradient of {name}: {got:.3g}, the seed's is ~0 ({ref:.3g})"
            continue
        assert_close(ours[name], p.grad, 1e-4, f"gradient of {name}")


def token_inputs(tmp_path, cfg, with_pad):
    g = torch.Generator().manual_seed(1)
    eeg = torch.randint(3, 258, (2, cfg["sequence_length"], cfg["source_sequence_dimension"]), generator=g)
    meg = torch.randint(3, 258, (2, cfg["sequence_length"], cfg["target_sequence_dimension"]), generator=g)
    if with_pad:  # a few padded EEG steps (never at BOS, where a query would see only pad)
        eeg[0, 5:, :] = 0
        eeg[1, 2, 3] = 0
    path = tmp_path / "inputs.safetensors"
    save_file({"eeg": eeg, "meg": meg}, str(path))
    return eeg, meg, path


@pytest.mark.parametrize("mode", ["full", "router"])
def test_token_model_matches_the_seed(tmp_path, mode):
    model = build_seed_token(mode)
    config = dict(SMALL, channel_attention=mode, objective="token", dropout=0.1)
    write_checkpoint(tmp_path / "ckpt", model, config)
    eeg, meg, inputs = token_inputs(tmp_path, SMALL, with_pad=True)
    ours = run_forward(tmp_path / "ckpt", inputs, tmp_path)

    logits, loss = seed_token_forward(model, eeg, meg)
    loss.backward()
    assert_close(ours["logits"], logits.detach(), 1e-5, "logits")
    assert_close(ours["loss"], loss.detach().reshape(1), 1e-5, "loss")
    grads = {k[5:]: v for k, v in ours.items() if k.startswith("grad.")}
    params = dict(model.named_parameters())
    assert set(grads) == set(params), set(grads) ^ set(params)
    check_gradients(grads, params)


def test_cached_decoding_equals_the_seeds_generate(tmp_path):
    model = build_seed_token("full")
    write_checkpoint(tmp_path / "ckpt", model, dict(SMALL, channel_attention="full", objective="token"))
    eeg, _, inputs = token_inputs(tmp_path, SMALL, with_pad=False)
    ours = run_forward(tmp_path / "ckpt", inputs, tmp_path, generate=SMALL["sequence_length"])
    ids, logits = seed_generate(model, eeg)
    assert_close(ours["generated_logits"], logits, 1e-5, "decoding logits")
    assert np.array_equal(ours["generated"].numpy(), ids.numpy()), "greedy tokens differ"


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    model = build_seed_token("full")
    config = dict(SMALL, channel_attention="router", objective="token")  # router names absent
    write_checkpoint(tmp_path / "ckpt", model, config)
    _, _, inputs = token_inputs(tmp_path, SMALL, with_pad=False)
    proc = subprocess.run([str(bin_path("bf-eval")), "--checkpoint", str(tmp_path / "ckpt"), "--forward",
                           str(inputs), "--out", str(tmp_path / "o.safetensors"), "--device", "cpu"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "model.safetensors" in proc.stderr and "router" in proc.stderr, proc.stderr
    assert "panicked" not in proc.stderr


def test_regression_model_matches_the_seed(tmp_path):
    _import_seed("continuous")
    from models.crossformer import CrossFormer
    torch.manual_seed(0)
    model = CrossFormer(src_num_channels=6, tgt_num_channels=10, max_sequence_length=16, patch_size=4,
                        num_heads=2, num_enc_layers=2, num_dec_layers=2).eval()
    config = dict(source_sequence_dimension=6, target_sequence_dimension=10, sequence_length=16, patch_size=4,
                  n_heads=2, n_layers=2, objective="regression", channel_attention="full")
    write_checkpoint(tmp_path / "ckpt", model, config)
    g = torch.Generator().manual_seed(2)
    eeg = torch.rand((3, 16, 6), generator=g) * 2 - 1
    meg = torch.rand((3, 16, 10), generator=g) * 2 - 1
    save_file({"eeg": eeg, "meg": meg}, str(tmp_path / "inputs.safetensors"))
    ours = run_forward(tmp_path / "ckpt", tmp_path / "inputs.safetensors", tmp_path)

    pred = model(eeg)
    loss = nn.MSELoss()(pred, meg)
    loss.backward()
    assert_close(ours["pred"], pred.detach(), 1e-5, "prediction")
    assert_close(ours["loss"], loss.detach().reshape(1), 1e-5, "loss")
    params = dict(model.named_parameters())
    grads = {k[5:]: v for k, v in ours.items() if k.startswith("grad.")}
    assert set(grads) == set(params), set(grads) ^ set(params)
    check_gradients(grads, params)


def test_regression_decoder_eeg_mixed_is_the_seed_plus_the_memory_residual(tmp_path):
    """`--decoder_eeg mixed` in the regression model = the seed's forward with
    `x = proj(memory) + cross_attn(s, proj(memory))` in each decoder layer (the prototype of
    bench/physics_regression_check.py), same weights and names. Tolerances as the seed test
    above (float32 through the same ops in a different order: 1e-5)."""
    _import_seed("continuous")
    from models.crossformer import CrossFormer

    class MemoryResidual(CrossFormer):
        def forward(self, src):
            mem = self.encoder(self.pos_embed_encoder(self.src_patcher(src)))
            x = self.pos_embed_decoder(self.tgt_patcher(self.initial_tgt.expand(src.shape[0], -1, -1)))
            d = self.decoder
            for i in range(len(d.self_attn_layers)):
                s = d.self_attn_layers[i](x)
                m = d.encoder_proj_layers[i](mem)
                x = m + d.cross_attn_layers[i](s, m, m)[0]
            return torch.tanh(self.depatcher(x))

    torch.manual_seed(0)
    model = MemoryResidual(src_num_channels=6, tgt_num_channels=10, max_sequence_length=16, patch_size=4,
                           num_heads=2, num_enc_layers=2, num_dec_layers=2).eval()
    config = dict(source_sequence_dimension=6, target_sequence_dimension=10, sequence_length=16, patch_size=4,
                  n_heads=2, n_layers=2, objective="regression", channel_attention="full", decoder_eeg="mixed")
    write_checkpoint(tmp_path / "ckpt", model, config)
    g = torch.Generator().manual_seed(2)
    eeg = torch.rand((3, 16, 6), generator=g) * 2 - 1
    meg = torch.rand((3, 16, 10), generator=g) * 2 - 1
    save_file({"eeg": eeg, "meg": meg}, str(tmp_path / "inputs.safetensors"))
    ours = run_forward(tmp_path / "ckpt", tmp_path / "inputs.safetensors", tmp_path)

    pred = model(eeg)
    loss = nn.MSELoss()(pred, meg)
    loss.backward()
    assert_close(ours["pred"], pred.detach(), 1e-5, "prediction")
    assert_close(ours["loss"], loss.detach().reshape(1), 1e-5, "loss")
    # the residual changes the output: the seed's forward on the same weights differs
    with torch.no_grad():
        seed_pred = CrossFormer.forward(model, eeg)
    assert (seed_pred - pred.detach()).abs().max() > 1e-3
    params = dict(model.named_parameters())
    grads = {k[5:]: v for k, v in ours.items() if k.startswith("grad.")}
    assert set(grads) == set(params), set(grads) ^ set(params)
    check_gradients(grads, params)


def test_regression_eeg_skip_is_a_lagged_linear_path_before_tanh(tmp_path):
    """`--eeg_skip K` (ours): the regression model's output is tanh(depatcher(x) +
    Conv1d(Ce → Cm, K, padding K/2)(EEG)), with `--decoder_eeg mixed` here too; the oracle is
    the seed's module with those two documented changes, written in PyTorch (nn.Conv1d). The
    skip is zero at initialisation in ours; here it is random so that it matters. 1e-5 as above."""
    _import_seed("continuous")
    from models.crossformer import CrossFormer

    class WithSkip(CrossFormer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.eeg_skip = nn.Conv1d(kw["src_num_channels"], kw["tgt_num_channels"], 5, padding=2)

        def forward(self, src):
            mem = self.encoder(self.pos_embed_encoder(self.src_patcher(src)))
            x = self.pos_embed_decoder(self.tgt_patcher(self.initial_tgt.expand(src.shape[0], -1, -1)))
            d = self.decoder
            for i in range(len(d.self_attn_layers)):
                s = d.self_attn_layers[i](x)
                m = d.encoder_proj_layers[i](mem)
                x = m + d.cross_attn_layers[i](s, m, m)[0]
            return torch.tanh(self.depatcher(x) + self.eeg_skip(src.transpose(1, 2)).transpose(1, 2))

    torch.manual_seed(0)
    model = WithSkip(src_num_channels=6, tgt_num_channels=10, max_sequence_length=16, patch_size=4,
                     num_heads=2, num_enc_layers=1, num_dec_layers=1).eval()
    config = dict(source_sequence_dimension=6, target_sequence_dimension=10, sequence_length=16, patch_size=4,
                  n_heads=2, n_layers=1, objective="regression", channel_attention="full", decoder_eeg="mixed",
                  eeg_skip=5)
    write_checkpoint(tmp_path / "ckpt", model, config)
    g = torch.Generator().manual_seed(3)
    eeg = torch.rand((3, 16, 6), generator=g) * 2 - 1
    meg = torch.rand((3, 16, 10), generator=g) * 2 - 1
    save_file({"eeg": eeg, "meg": meg}, str(tmp_path / "inputs.safetensors"))
    ours = run_forward(tmp_path / "ckpt", tmp_path / "inputs.safetensors", tmp_path)

    pred = model(eeg)
    loss = nn.MSELoss()(pred, meg)
    loss.backward()
    assert_close(ours["pred"], pred.detach(), 1e-5, "prediction")
    assert_close(ours["loss"], loss.detach().reshape(1), 1e-5, "loss")
    params = dict(model.named_parameters())
    grads = {k[5:]: v for k, v in ours.items() if k.startswith("grad.")}
    assert set(grads) == set(params), set(grads) ^ set(params)
    check_gradients(grads, params)

    # an even kernel is refused with a message naming the setting
    config["eeg_skip"] = 4
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([str(bin_path("bf-eval")), "--checkpoint", str(tmp_path / "ckpt"), "--forward",
                           str(tmp_path / "inputs.safetensors"), "--out", str(tmp_path / "o2.safetensors"), "--device", "cpu"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "eeg_skip" in proc.stderr, proc.stderr


def test_regression_spectral_loss_adds_the_amplitude_spectra_mse(tmp_path):
    """`--spectral_loss w` (ours): loss = MSE + w · mean((|rfft(pred)| − |rfft(meg)|)²), rfft
    over time with norm="ortho" (torch.fft as the oracle). Seed's module, weights unchanged;
    loss and every gradient to 1e-5 as above."""
    _import_seed("continuous")
    from models.crossformer import CrossFormer
    torch.manual_seed(0)
    model = CrossFormer(src_num_channels=6, tgt_num_channels=10, max_sequence_length=16, patch_size=4,
                        num_heads=2, num_enc_layers=1, num_dec_layers=1).eval()
    config = dict(source_sequence_dimension=6, target_sequence_dimension=10, sequence_length=16, patch_size=4,
                  n_heads=2, n_layers=1, objective="regression", channel_attention="full", spectral_loss=0.5)
    write_checkpoint(tmp_path / "ckpt", model, config)
    g = torch.Generator().manual_seed(4)
    eeg = torch.rand((3, 16, 6), generator=g) * 2 - 1
    meg = torch.rand((3, 16, 10), generator=g) * 2 - 1
    save_file({"eeg": eeg, "meg": meg}, str(tmp_path / "inputs.safetensors"))
    ours = run_forward(tmp_path / "ckpt", tmp_path / "inputs.safetensors", tmp_path)

    pred = model(eeg)
    amp = lambda x: torch.fft.rfft(x, dim=1, norm="ortho").abs()
    spectral = nn.MSELoss()(amp(pred), amp(meg))
    loss = nn.MSELoss()(pred, meg) + 0.5 * spectral
    loss.backward()
    assert spectral.item() > 1e-3  # the term is not negligible here, so the check means something
    assert_close(ours["pred"], pred.detach(), 1e-5, "prediction")
    assert_close(ours["loss"], loss.detach().reshape(1), 1e-5, "loss")
    params = dict(model.named_parameters())
    grads = {k[5:]: v for k, v in ours.items() if k.startswith("grad.")}
    check_gradients(grads, params)
