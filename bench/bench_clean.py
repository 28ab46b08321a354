"""Benchmark: read → band-pass 0.1–100 Hz → notch 50/100/150 Hz → resample to 250 Hz on a
ds000117-sized FIF, ours (`bf-pipeline clean`) beside MNE-Python doing the same steps, in the
same run, each in its own process (peak RSS = that process's ru_maxrss).

    make bench            # or: .venv/bin/python bench/bench_clean.py --out-dir bench-data
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import BIN, prepare_bench_file, run_child  # noqa: E402

MNE_CLEAN = r"""
import sys, time, json, mne
mne.set_log_level("ERROR")
t0 = time.perf_counter()
raw = mne.io.read_raw_fif(sys.argv[1], preload=True)
raw.filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)
raw.save(sys.argv[2], overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t0, "shape": list(raw._data.shape)}))
"""

OURS = r"""
import json, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    args = ap.parse_args()
    out = Path(args.out_dir)
    fif = prepare_bench_file(out)
    # The timing wrapper's own RSS is tiny; ru_maxrss of its child is the Rust process's.
    ours, ours_wall, ours_rss = run_child([sys.executable, "-c", OURS, BIN / "bf-pipeline", "--quiet", "preprocess-file",
                                           fif, out / "ours_clean_raw.fif"])
    theirs, mne_wall, mne_rss = run_child([sys.executable, "-c", MNE_CLEAN, fif, out / "mne_clean_raw.fif"])
    print(f"file: {fif} ({fif.stat().st_size / 1e6:.0f} MB, 404 ch × 540,100 samples at 1100 Hz, float32)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print("| measure | Brainformer | MNE-Python | MNE / ours |")
    print("|---|---|---|---|")
    print(f"| read → 0.1–100 Hz → notch 50/100/150 → 250 Hz → write FIF (s) | {ours['wall_s']:.1f} | "
          f"{theirs['wall_s']:.1f} | {theirs['wall_s'] / ours['wall_s']:.1f}× |")
    print(f"| peak RSS (MiB) | {ours_rss:.0f} | {mne_rss:.0f} | {mne_rss / ours_rss:.1f}× |")


if __name__ == "__main__":
    main()
