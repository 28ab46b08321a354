"""Training speed: bf-train beside the seed's PyTorch model on the same shards and sizes.

Both train the seed's token Crossformer (default sizes: d_model 64, 4 heads, 1 layer, d_ff 512;
--seq and --batch choose sequence_length and batch sizes) for the same number of AdamW steps
on the same windows, on --device cpu or cuda; the
PyTorch side runs the seed's `EncoderDecoderCrossFormer` with its wrapper's sequence handling
(as tests/oracle/test_model_parity.py does), fed by an in-memory copy of the shards (its
loading is not timed, which favours it). Reported: steps/s, samples/s, the ratio, peak RSS.

    .venv/bin/python bench/bench_train.py                        # the issue's configuration: sequence_length 256, batch 1
    .venv/bin/python bench/bench_train.py --seq 64 --batch 8 --steps 3
    python3 bench/bench_train.py --device cuda --bin DIR --seq 256 --batch 1,8,32   # on a GPU machine
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ours(args, mode, batch):
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(Path(args.bin) / "bf-train"), "--shards", args.shards, "--out", out,
               "--max_steps", str(args.warmup + args.steps), "--eval_interval", "100000", "--batch_size", str(batch),
               "--sequence_length", str(args.seq), "--channel_attention", mode, "--device", args.device,
               "--quiet", "--patience", "0", *args.ours_extra.split()]
        if Path("/usr/bin/time").exists():
            cmd = ["/usr/bin/time", "-f", "%M"] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bf-train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        rss_mib = int(last) / 1024 if last.isdigit() else float("nan")
        lines = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    # The first steps pay one-time costs (the heap grows to a step's working set); both sides
    # leave the same number of warm-up steps untimed.
    secs = sum(batch / l["samples_per_sec"] for l in lines[args.warmup:])
    return args.steps / secs, rss_mib


# glibc settings equal to bf-train's `keep_freed_memory_for_reuse` (mmap threshold 2 GiB,
# never trim, 256 MiB top pad), for the seed's process when --seed_heap_like_ours is given.
HEAP_LIKE_OURS = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=18446744073709551615:glibc.malloc.top_pad=268435456"


def seed_torch(args, mode, batch, heap_like_ours=False):
    code = f"""
import sys, time, resource, torch, numpy as np, pyarrow.parquet as pq, glob
sys.path.insert(0, {str(ROOT / 'tests/oracle')!r})
from test_model_parity import build_seed_token, seed_token_forward
L = {args.seq}
dev = torch.device({args.device!r})
sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
torch.set_default_device(dev)  # the seed's wrapper makes its BOS/EOS blocks with torch.full
cfg = dict(source_sequence_dimension=70, target_sequence_dimension=306, router_dim=10, d_model=64, n_heads=4,
           n_layers=1, d_ff=512, sequence_length=L)
files = sorted(glob.glob({args.shards!r} + '/data/train-*.parquet'))
t = pq.read_table(files[0])
n = max(16, {batch})
eeg = np.stack([np.array(x.as_py(), dtype=np.int64) for x in t['eeg'][:n]]) + 3
meg = np.stack([np.array(x.as_py(), dtype=np.int64) for x in t['meg'][:n]]) + 3
# windows -> chunks of L steps, time-major [n, L, C]
eeg = torch.from_numpy(eeg[:, :, :L].transpose(0, 2, 1).copy()).to(dev); meg = torch.from_numpy(meg[:, :, :L].transpose(0, 2, 1).copy()).to(dev)
cfg['source_sequence_dimension'] = eeg.shape[2]; cfg['target_sequence_dimension'] = meg.shape[2]
m = build_seed_token({mode!r}, cfg).to(dev).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1)
b = {batch}
def step(i):
    idx = torch.arange(i * b, (i + 1) * b, device=dev) % eeg.shape[0]
    _, loss = seed_token_forward(m, eeg[idx], meg[idx]); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    loss.item()  # the loss is read every step, as bf-train reads it for its log
for i in range({args.warmup}): step(i)
sync()
t0 = time.time()
for i in range({args.steps}): step({args.warmup} + i)
sync()
print({args.steps} / (time.time() - t0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    env = dict(os.environ, GLIBC_TUNABLES=HEAP_LIKE_OURS) if heap_like_ours else None
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"the seed's PyTorch loop failed:\n{proc.stderr[-3000:]}")
    sps, rss = proc.stdout.split()
    return float(sps), float(rss)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shards", default=str(ROOT / "demo/ds000117-fixture/derivatives/brainformer/shards"))
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first, on both sides")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    p.add_argument("--seq", type=int, default=256, help="sequence_length (the issue's seed configuration: 256)")
    p.add_argument("--modes", default="full,router")
    p.add_argument("--seed_heap_like_ours", action="store_true",
                   help="also time the seed with bf-train's heap settings (glibc tunables), to show how much of "
                        "the ratio they explain")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bin", default=str(ROOT / "target/release"), help="folder holding bf-train, bf-fixtures, bf-pipeline")
    p.add_argument("--ours_extra", default="", help="more bf-train flags for our side, as one word, e.g. --ours_extra="
                   "'--fused_adamw --loss_chunk 65536 --precision bf16' (issue 18's GPU levers)")
    args = p.parse_args()
    if not Path(args.shards).is_dir():
        base = ROOT / "bench-data" / "train-fixture"
        args.shards = str(base / "ds" / "derivatives" / "brainformer" / "shards")
        if not Path(args.shards).is_dir():
            base.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(Path(args.bin) / "bf-fixtures"), "--out", str(base / "ds"), "--subjects", "3",
                            "--runs", "1", "--seconds", "60"], check=True, capture_output=True)
            for cmd in (["ingest", str(base / "ds")], ["tokenize"]):
                subprocess.run([str(Path(args.bin) / "bf-pipeline"), "--quiet", *cmd], cwd=base, check=True)
    print(f"device {args.device}, sequence_length {args.seq}, {args.steps} timed steps after {args.warmup} warm-up steps", flush=True)
    for batch in [int(b) for b in args.batch.split(",")]:
        for mode in args.modes.split(","):
            o, o_rss = ours(args, mode, batch)
            s, s_rss = seed_torch(args, mode, batch)
            print(f"{mode:6s} batch {batch:3d}  bf-train {o:.3f} steps/s ({o * batch:.2f} samples/s, {o_rss:.0f} MiB)   "
                  f"seed PyTorch {s:.3f} steps/s ({s * batch:.2f} samples/s, {s_rss:.0f} MiB)   ratio {o / s:.2f}x", flush=True)
            if args.seed_heap_like_ours and args.device == "cpu":
                h, h_rss = seed_torch(args, mode, batch, heap_like_ours=True)
                print(f"{'':6s}           seed PyTorch with bf-train's heap settings {h:.3f} steps/s ({h_rss:.0f} MiB)   "
                      f"ratio {o / h:.2f}x", flush=True)


if __name__ == "__main__":
    main()
