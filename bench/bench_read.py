"""Benchmark: full read of a ds000117-sized FIF, ours beside MNE-Python, same file, same run.

Generates (never commits) a 404-channel × 540,100-sample float32 FIF at 1100 Hz with
bf-fixtures, then runs each reader in its own process and records wall time and peak RSS
(ru_maxrss of the child). Prints a Markdown table to paste into BENCHMARKS.md.

    make bench            # or: .venv/bin/python bench/bench_read.py --out-dir bench-data
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The binaries benchmarked: the build here, or BF_BIN (a copy that a rebuild cannot replace mid-run).
BIN = Path(os.environ.get("BF_BIN", ROOT / "target" / "release"))

MNE_READ = r"""
import sys, time, json, mne
mne.set_log_level("ERROR")
t0 = time.perf_counter()
raw = mne.io.read_raw_fif(sys.argv[1], preload=True)
data = raw.get_data()
t1 = time.perf_counter()
import numpy as np
rng = np.random.default_rng(0)
n = raw.n_times; w = int(round(10 * raw.info["sfreq"]))
raw2 = mne.io.read_raw_fif(sys.argv[1], preload=False)
times = []
for _ in range(20):
    s = int(rng.integers(0, n - w + 1))
    t = time.perf_counter(); raw2.get_data(start=s, stop=s + w); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"full_read_s": t1 - t0, "shape": list(data.shape), "dtype": str(data.dtype),
                  "window_median_s": times[len(times)//2], "window_max_s": times[-1]}))
"""


WRAP = r"""
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_child(cmd):
    """Runs cmd under a wrapper process so its peak RSS is its own (ru_maxrss of the only
    child); returns (parsed JSON stdout, wall seconds, peak RSS in MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *map(str, cmd)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    res = json.loads(proc.stdout)
    if res["rc"] != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{res['stderr']}")
    return json.loads(res["stdout"].strip().splitlines()[-1]), wall, res["maxrss_kib"] / 1024


def warm_page_cache(path):
    """Reads `path` once so the page cache holds it for every reader that follows."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def prepare_bench_file(out):
    """The generated ds000117-sized FIF (written once, never committed), read once so the
    page cache holds it for every reader that follows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fif = out / "ds000117_like_raw.fif"
    if not fif.exists():
        subprocess.run([BIN / "bf-fixtures", "raw-fif", "--out", fif, "--full-run"], check=True,
                       stdout=subprocess.DEVNULL)
    warm_page_cache(fif)
    return fif


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    args = ap.parse_args()
    fif = prepare_bench_file(args.out_dir)
    size_mb = fif.stat().st_size / 1e6
    data_mib = 404 * 540_100 * 4 / 2**20
    ours, ours_wall, ours_rss = run_child([BIN / "bf-pipeline", "bench-read", fif])
    theirs, mne_wall, mne_rss = run_child([sys.executable, "-c", MNE_READ, fif])
    rows = [
        ("full read into memory (s)", ours["full_read_s"], theirs["full_read_s"]),
        ("10 s window, all channels, median (ms)", ours["window_median_s"] * 1e3, theirs["window_median_s"] * 1e3),
        ("10 s window, worst of 20 (ms)", ours["window_max_s"] * 1e3, theirs["window_max_s"] * 1e3),
        ("peak RSS (MiB)", ours_rss, mne_rss),
    ]
    print(f"file: {fif} ({size_mb:.0f} MB, 404 ch × 540,100 samples float32; data in f32 = {data_mib:.0f} MiB)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, rayon threads {ours['threads']}")
    print("| measure | Brainformer | MNE-Python | MNE / ours |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.1f}× |")
    print(f"peak RSS / data size: ours {ours_rss / data_mib:.2f}×, MNE {mne_rss / data_mib:.2f}× "
          f"(MNE holds float64: {theirs['dtype']})")


if __name__ == "__main__":
    main()
