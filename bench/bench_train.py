"""Training speed: bf-train beside the seed's PyTorch model on the same shards and sizes.

Both train the seed's token Crossformer (default sizes: d_model 64, 4 heads, 1 layer, d_ff 512,
sequence_length 64, batch 8) for the same number of AdamW steps on the same windows; the
PyTorch side runs the seed's `EncoderDecoderCrossFormer` with its wrapper's sequence handling
(as tests/oracle/test_model_parity.py does), fed by an in-memory copy of the shards (its
loading is not timed, which favours it). Reported: steps/s, samples/s, the ratio, peak RSS.

    .venv/bin/python bench/bench_train.py --shards demo/ds000117-fixture/derivatives/brainformer/shards
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ours(args, mode):
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-f", "%M", str(ROOT / "target/release/bf-train"), "--shards", args.shards, "--out", out,
               "--max_steps", str(args.steps + 1), "--eval_interval", "100000", "--batch_size", str(args.batch),
               "--channel_attention", mode, "--device", "cpu", "--quiet", "--patience", "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rss_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
        lines = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    # The first step pays one-time costs (allocator warm-up); time the rest.
    secs = sum(args.batch / l["samples_per_sec"] for l in lines[1:])
    return args.steps / secs, rss_mib


def seed_torch(args, mode):
    code = f"""
import sys, time, resource, torch, numpy as np, pyarrow.parquet as pq, glob
sys.path.insert(0, {str(ROOT / 'tests/oracle')!r})
from test_model_parity import build_seed_token, seed_token_forward
cfg = dict(source_sequence_dimension=70, target_sequence_dimension=306, router_dim=10, d_model=64, n_heads=4,
           n_layers=1, d_ff=512, sequence_length=64)
files = sorted(glob.glob({args.shards!r} + '/data/train-*.parquet'))
t = pq.read_table(files[0])
eeg = np.stack([np.array(x.as_py(), dtype=np.int64) for x in t['eeg'][:16]]) + 3
meg = np.stack([np.array(x.as_py(), dtype=np.int64) for x in t['meg'][:16]]) + 3
# windows -> chunks of 64 steps, time-major [n, 64, C]
eeg = torch.from_numpy(eeg[:, :, :64].transpose(0, 2, 1).copy()); meg = torch.from_numpy(meg[:, :, :64].transpose(0, 2, 1).copy())
cfg['source_sequence_dimension'] = eeg.shape[2]; cfg['target_sequence_dimension'] = meg.shape[2]
m = build_seed_token({mode!r}, cfg).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1)
b = {args.batch}
def step(i):
    idx = torch.arange(i * b, (i + 1) * b) % eeg.shape[0]
    _, loss = seed_token_forward(m, eeg[idx], meg[idx]); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
step(0)
t0 = time.time()
for i in range({args.steps}): step(i + 1)
print({args.steps} / (time.time() - t0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    sps, rss = proc.stdout.split()
    return float(sps), float(rss)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shards", default=str(ROOT / "demo/ds000117-fixture/derivatives/brainformer/shards"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    if not Path(args.shards).is_dir():
        base = ROOT / "bench-data" / "train-fixture"
        args.shards = str(base / "ds" / "derivatives" / "brainformer" / "shards")
        if not Path(args.shards).is_dir():
            base.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(ROOT / "target/release/bf-fixtures"), "--out", str(base / "ds"), "--subjects", "3",
                            "--runs", "1", "--seconds", "60"], check=True, capture_output=True)
            for cmd in (["ingest", str(base / "ds")], ["tokenize"]):
                subprocess.run([str(ROOT / "target/release/bf-pipeline"), "--quiet", *cmd], cwd=base, check=True)
    for mode in ("full", "router"):
        o, o_rss = ours(args, mode)
        s, s_rss = seed_torch(args, mode)
        print(f"{mode:6s}  bf-train {o:.3f} steps/s ({o * args.batch:.2f} samples/s, {o_rss:.0f} MiB)   "
              f"seed PyTorch {s:.3f} steps/s ({s * args.batch:.2f} samples/s, {s_rss:.0f} MiB)   ratio {o / s:.2f}x")


if __name__ == "__main__":
    main()
