"""Data-parallel scaling of bf-train on this machine: samples/s of 1 process against N
processes (libtorch's c10d on Gloo, a TCP rendezvous on 127.0.0.1), same global batch, same
model, the cores split evenly between the processes (`--threads cores / N`).

    .venv/bin/python bench/bench_ddp.py                          # seed sizes, sequence_length 64, batch 8, 1 vs 2 processes
    .venv/bin/python bench/bench_ddp.py --seq 256 --batch 2 --steps 3

Reported per world size: samples/s over the timed steps (rank 0's step times, which include
the gradient all-reduce), and the speed-up over 1 process. Uses the shards of
bench/bench_train.py (built into bench-data/ when absent).
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, world, threads):
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(Path(args.bin) / "bf-train"), "--shards", args.shards, "--out", out,
               "--max_steps", str(args.warmup + args.steps), "--eval_interval", "100000", "--batch_size", str(args.batch),
               "--sequence_length", str(args.seq), "--channel_attention", args.mode, "--device", "cpu",
               "--threads", str(threads), "--quiet", "--patience", "0"]
        port = str(free_port())
        procs = []
        for rank in range(world):
            env = dict(os.environ)
            if world > 1:
                env.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for rank, p in enumerate(procs):
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"bf-train rank {rank} of {world} failed ({p.returncode}):\n{err[-3000:]}")
        lines = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    secs = sum(args.batch / l["samples_per_sec"] for l in lines[args.warmup:])
    return args.steps * args.batch / secs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shards", default=str(ROOT / "bench-data/train-fixture/ds/derivatives/brainformer/shards"))
    p.add_argument("--worlds", default="1,2", help="process counts, comma-separated")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="cores shared by the processes")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=8, help="the global batch")
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--mode", default="router", choices=["router", "full"])
    p.add_argument("--bin", default=str(ROOT / "target/release"))
    args = p.parse_args()
    if not Path(args.shards).is_dir():
        # The same dataset as bench/bench_train.py builds.
        base = ROOT / "bench-data" / "train-fixture"
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(Path(args.bin) / "bf-fixtures"), "--out", str(base / "ds"), "--subjects", "3",
                        "--runs", "1", "--seconds", "60"], check=True, capture_output=True)
        for cmd in (["ingest", str(base / "ds")], ["tokenize"]):
            subprocess.run([str(Path(args.bin) / "bf-pipeline"), "--quiet", *cmd], cwd=base, check=True)
        args.shards = str(base / "ds" / "derivatives" / "brainformer" / "shards")
    print(f"{args.mode}, sequence_length {args.seq}, global batch {args.batch}, {args.cores} cores, "
          f"{args.steps} timed steps after {args.warmup}", flush=True)
    base = None
    for world in [int(w) for w in args.worlds.split(",")]:
        sps = run(args, world, max(1, args.cores // world))
        base = base or sps
        print(f"{world} process(es) x {max(1, args.cores // world)} threads: {sps:.2f} samples/s  ({sps / base:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
