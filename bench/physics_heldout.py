"""Held-out subjects on the physics fixture: our Crossformers against the lagged ridge (issue 15).

Builds (or reuses) a `bf-fixtures --physics` dataset, runs `bf-pipeline ingest` and
`tokenize --continuous` (1–40 Hz, 100 Hz: the band where the fixture's brain is above its
noise), trains each configuration below with `bf-train` on the training subjects and scores
its `best` (lowest validation loss: the validation subjects are held out too) and `last`
checkpoints with `bf-eval` on the test subjects. Prints and writes (`--out`/results.md) one
table per sensor type (model, shuffled-EEG control, ridge, noise ceiling) and one per
frequency band, with each row's training budget (steps, wall time, threads).

    .venv/bin/python bench/physics_heldout.py --work /tmp/heldout [--subjects 10 --seconds 120]
        [--only NAME ...] [--threads 2] [--hop 32] [--seed 2]

Every number is produced by our binaries; the ridge and the ceiling are bf-eval's rows on the
same windows, so the comparison is like for like. Reruns reuse the dataset, the shards and any
finished run folder (delete a run's folder to retrain it).
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BF_BIN", ROOT / "target" / "release"))
TEMPLATE = ROOT.parent / "shared" / "data" / "mne-python" / "tests" / "data" / "test-ave.fif.gz"

REGRESSION = ["--objective", "regression", "--n_heads", "2", "--patch_size", "4", "--batch_size", "16",
              "--lr", "1e-3", "--warmup_steps", "20", "--eval_interval", "100", "--eval_batches", "8",
              "--patience", "0"]
TOKEN = ["--objective", "token", "--decoder_eeg", "mixed", "--history_dropout", "0.5", "--batch_size", "8",
         "--d_model", "32", "--eval_interval", "100", "--eval_batches", "8", "--patience", "0"]

# name -> (shards kind, flags); the first two are the seed's regression decoder and ours.
CONFIGS = {
    "regression seed, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600"]),
    "regression mixed, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--decoder_eeg", "mixed"]),
    "regression mixed, L64, 3000 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "3000", "--decoder_eeg", "mixed"]),
    "regression mixed, L256, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "256", "--max_steps", "600", "--decoder_eeg", "mixed"]),
    "regression mixed, L64, 2 layers, 1500 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "1500", "--decoder_eeg", "mixed", "--n_layers", "2"]),
    "regression seed + eeg_skip 11, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--eeg_skip", "11"]),
    "regression mixed + eeg_skip 11, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--decoder_eeg", "mixed", "--eeg_skip", "11"]),
    "regression mixed + eeg_skip 11, L64, 3000 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "3000", "--decoder_eeg", "mixed", "--eeg_skip", "11"]),
    "regression mixed + eeg_skip 21, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--decoder_eeg", "mixed", "--eeg_skip", "21"]),
    "regression mixed + eeg_skip 11 + spectral_loss 1, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--decoder_eeg", "mixed", "--eeg_skip", "11", "--spectral_loss", "1"]),
    "regression mixed + eeg_skip 11, L256, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "256", "--max_steps", "600", "--decoder_eeg", "mixed", "--eeg_skip", "11"]),
    "regression mixed + eeg_skip 21 + chunk_hop 8, L64, 600 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "600", "--decoder_eeg", "mixed", "--eeg_skip", "21", "--chunk_hop", "8"]),
    "regression mixed + eeg_skip 21 + chunk_hop 8, L64, 3000 steps": ("continuous", REGRESSION + ["--sequence_length", "64", "--max_steps", "3000", "--decoder_eeg", "mixed", "--eeg_skip", "21", "--chunk_hop", "8"]),
    "token mixed + history dropout, L64, 600 steps": ("token", TOKEN + ["--sequence_length", "64", "--max_steps", "600"]),
}


def run(cmd, **kw):
    t0 = time.time()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return time.time() - t0


def dataset(work, subjects, seconds):
    root = work / "ds"
    if not (root / "dataset_description.json").exists():
        run([BIN / "bf-fixtures", "--out", root, "--template", TEMPLATE, "--physics", "--subjects", subjects, "--runs", 1,
             "--seconds", seconds])
        run([BIN / "bf-pipeline", "--quiet", "ingest", root], cwd=work)
    shards = {}
    for kind, flag in (("continuous", ["--continuous"]), ("token", [])):
        folder = root / "derivatives" / "brainformer" / ("shards-continuous" if kind == "continuous" else "shards")
        if not folder.exists():
            took = run([BIN / "bf-pipeline", "--quiet", "tokenize", *flag, "--l-freq", 1, "--h-freq", 40, "--sfreq", 100,
                        "--project", work / "brainformer.toml"])
            print(f"tokenize {kind}: {took:.0f} s", flush=True)
        shards[kind] = folder
    return shards


def evaluate(ckpt, shards, out, extra=()):
    if not (out / "metrics.json").exists():
        run([BIN / "bf-eval", "--checkpoint", ckpt, "--shards", shards, "--split", "test", "--out", out, "--device", "cpu",
             "--quiet", *extra])
    return json.loads((out / "metrics.json").read_text())


def by_type(m):
    """{predictor row name: {sensor type: mean r}} from metrics.json's per-channel metrics."""
    names = m["channel_names"]
    out = {}
    for pc in m["per_channel"]:
        r = pc["metrics"]["pearson_r"]
        groups = {}
        for n, v in zip(names, r):
            t = "mag" if n.endswith("1") else "grad"
            if v is not None:
                groups.setdefault(t, []).append(v)
        out[pc["name"]] = {t: sum(v) / len(v) for t, v in groups.items()}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="configuration names (default: all)")
    ap.add_argument("--seed", type=int, help="bf-train --seed (default: bf-train's); runs go to folders suffixed _seedN")
    ap.add_argument("--hop", type=int, help="regression rows: also evaluate with `bf-eval --hop HOP` (chunks every HOP "
                    "samples, each sample from its most central chunk)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    shards = dataset(args.work, args.subjects, args.seconds)
    lines = ["| configuration | checkpoint | train s | model grad / mag | shuffled EEG | ridge | noise ceiling |", "|---|---|---|---|---|---|---|"]
    band_lines = []
    seen_shared = set()
    for name, (kind, flags) in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        folder = args.work / "runs" / (name.replace(" ", "_").replace(",", "").replace("+", "") + (f"_seed{args.seed}" if args.seed is not None else ""))
        if args.seed is not None:
            flags = flags + ["--seed", str(args.seed)]
            name = f"{name}, seed {args.seed}"
        took_file = folder / "train_seconds.txt"
        if not (folder / "last").exists():
            took = run([BIN / "bf-train", "--shards", shards[kind], "--out", folder, "--device", "cpu", "--threads", args.threads,
                        "--quiet", "--overwrite", *flags])
            took_file.write_text(f"{took:.0f}")
        took = took_file.read_text() if took_file.exists() else "?"
        evals = [("best", ""), ("last", "")]
        if args.hop and kind == "continuous":
            evals += [("best", f"hop{args.hop}"), ("last", f"hop{args.hop}")]
        for which, variant in evals:
            if not (folder / which).exists():
                continue
            extra = ["--hop", args.hop] if variant else []
            m = evaluate(folder / which, shards[kind], folder / f"eval-{which}{'-' + variant if variant else ''}", extra)
            t = by_type(m)
            rows = list(t)
            model, control = rows[0], rows[1]
            if kind == "token":
                free = next((r for r in rows if r.startswith("model, free-running (")), model)
                model = free
            ridge = next(r for r in rows if r.startswith("ridge"))
            ceil = next((r for r in rows if r.startswith("noise ceiling")), None)
            f = lambda row: "–" if row is None else f"{t[row].get('grad', float('nan')):.3f} / {t[row].get('mag', float('nan')):.3f}"
            lines.append(f"| {name} | {which}{' --hop ' + str(args.hop) if variant else ''} | {took} | {f(model)} ({model}) | {f(control)} | {f(ridge)} | {f(ceil)} |")
            if which == "last":
                name_b = name + (f" (--hop {args.hop})" if variant else "")
                bands = [b["name"] for b in m["bands"]]
                if not band_lines:
                    band_lines = ["| configuration | sensor type | predictor | " + " | ".join(bands) + " |",
                                  "|---|---|---|" + "---|" * len(bands)]
                for row in m["by_band"]:
                    if row["sensor_type"] == "all":
                        continue
                    # the ridge and the ceiling are the same on every configuration's windows
                    shared = row["predictor"].startswith(("ridge", "noise ceiling"))
                    if shared and (row["predictor"], row["sensor_type"]) in seen_shared:
                        continue
                    seen_shared.add((row["predictor"], row["sensor_type"]))
                    vals = " | ".join("–" if v is None else f"{v:.3f}" for v in row["pearson_r"])
                    band_lines.append(f"| {'(all)' if shared else name_b} | {row['sensor_type']} | {row['predictor']} | {vals} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n\nPer band (`last` checkpoints):\n\n" + "\n".join(band_lines) + "\n"
    (args.work / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
