"""Benchmark: `bf-pipeline ingest` + `tokenize` end to end on one ds000117-sized run (404 ch ×
540,100 samples at 1100 Hz, float32 FIF in a BIDS tree generated here, never committed),
beside an MNE + pyarrow script doing the same steps in the same run (read, band-pass 0.1–100,
notch 50/100/150, resample to 250 Hz, 256-sample windows, per-channel percentile clamp +
µ-law tokens, Parquet with zstd). Each side runs in its own process; peak RSS is that process
tree's ru_maxrss. Also: the whole fixture dataset (4 subjects × 2 runs × 60 s) with --jobs 1
and --jobs 2.

The floor, measured on the same file in the same run: reading the raw file from the page
cache (16 MiB reads into one buffer) plus writing the bytes of the shards we produced into a
new file with fsync, as our outputs are written; best of three. Ours is reported as a
multiple of it beside the MNE ratio (issue 16's goals: ≥10× MNE, ≤2× the floor).

    make bench            # or: .venv/bin/python bench/bench_tokenize.py --out-dir bench-data
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import BIN, run_child, warm_page_cache  # noqa: E402

# From the cleaned `raw` to the Parquet file `out`: 256-sample windows, per-channel clamp at the
# 0.5/99.5 percentiles, µ-law tokens, zstd. Shared with bench_real_chain.py.
MNE_WINDOWS_TO_PARQUET = r"""
epochs = mne.make_fixed_length_epochs(raw, duration=256 / 250, reject_by_annotation=True, preload=True)
eeg = epochs.get_data(picks="eeg").astype(np.float32)
meg = epochs.get_data(picks="meg").astype(np.float32)
def tokens(x):
    flat = x.transpose(1, 0, 2).reshape(x.shape[1], -1)
    lo, hi = np.percentile(flat, [0.5, 99.5], axis=1)
    xs = (np.clip(x, lo[None, :, None], hi[None, :, None]) - lo[None, :, None]) / (hi - lo)[None, :, None] * 2 - 1
    y = np.sign(xs) * np.log1p(255 * np.abs(xs)) / np.log1p(255)
    return np.round((y + 1) / 2 * 254).astype(np.uint8)
te, tm = tokens(eeg), tokens(meg)
table = pa.table({"window": np.arange(len(te)), "onset": epochs.events[:, 0] / 250.0,
                  "eeg": [[list(ch) for ch in w] for w in te], "meg": [[list(ch) for ch in w] for w in tm]})
pq.write_table(table, out, compression="zstd")
"""

MNE_TOKENIZE = r"""
import sys, time, json
import numpy as np, mne, pyarrow as pa, pyarrow.parquet as pq
mne.set_log_level("ERROR")
t0 = time.perf_counter()
out = sys.argv[2]
raw = mne.io.read_raw_fif(sys.argv[1], preload=True)
raw.filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)
""" + MNE_WINDOWS_TO_PARQUET + r"""
print(json.dumps({"wall_s": time.perf_counter() - t0, "windows": len(te)}))
"""

OURS = r"""
import json, subprocess, sys, time
t0 = time.perf_counter()
base, binary = sys.argv[1], sys.argv[2]
subprocess.run([binary, "--quiet", "ingest", "ds"], cwd=base, check=True, stdout=subprocess.DEVNULL)
subprocess.run([binary, "--quiet", "tokenize", *sys.argv[3:]], cwd=base, check=True, stdout=subprocess.DEVNULL)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


FLOOR = r"""
import json, os, sys, time
raw, shards_dir, scratch = sys.argv[1], sys.argv[2], sys.argv[3]
payload = b"".join(open(os.path.join(shards_dir, f), "rb").read() for f in sorted(os.listdir(shards_dir)))
buf = bytearray(16 << 20)
best_read = best_write = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    with open(raw, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    best_read = min(best_read, time.perf_counter() - t0)
    t0 = time.perf_counter()
    with open(scratch, "wb", buffering=0) as f:
        view = memoryview(payload)
        while view:
            view = view[f.write(view[:16 << 20]):]
        os.fsync(f.fileno())
    best_write = min(best_write, time.perf_counter() - t0)
    os.remove(scratch)
print(json.dumps({"read_s": best_read, "write_s": best_write, "read_bytes": os.path.getsize(raw), "write_bytes": len(payload)}))
"""


def fresh_dataset(base, *fixture_args):
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    subprocess.run([BIN / "bf-fixtures", "--out", base / "ds", *fixture_args], check=True, stdout=subprocess.DEVNULL)
    # The generator's ~0.9 GB are still being written back to disk: wait, so that the side
    # timed first (ours) does not share the disk with that write-back and the other not.
    os.sync()
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    args = ap.parse_args()
    out = Path(args.out_dir).resolve()
    big = fresh_dataset(out / "tokenize-full-run", "--full-run")
    fif = next((big / "ds" / "sub-01").rglob("*_meg.fif"))  # not sub-emptyroom's
    warm_page_cache(fif)  # for both sides alike
    # One subject: no validation or test subject, on purpose.
    ours, _, ours_rss = run_child([sys.executable, "-c", OURS, big, BIN / "bf-pipeline", "--allow-empty-split"])
    theirs, _, mne_rss = run_child([sys.executable, "-c", MNE_TOKENIZE, fif, out / "mne_tokens.parquet"])
    shards = big / "ds" / "derivatives" / "brainformer" / "shards" / "data"
    warm_page_cache(fif)
    floor, _, _ = run_child([sys.executable, "-c", FLOOR, fif, shards, big / "floor-write.tmp"])
    floor_s = floor["read_s"] + floor["write_s"]
    load = os.getloadavg()
    print(f"one run: {fif.stat().st_size / 1e6:.0f} MB, 404 ch × 540,100 samples at 1100 Hz, float32; "
          f"machine: {platform.machine()}, {os.cpu_count()} cores; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"floor: read the raw file from the page cache {floor['read_s']:.2f} s ({floor['read_bytes'] / 1e6:.0f} MB) + "
          f"write the shards' bytes with fsync {floor['write_s']:.2f} s ({floor['write_bytes'] / 1e6:.1f} MB) = {floor_s:.2f} s")
    print("| measure | Brainformer | MNE + pyarrow | MNE / ours | floor | ours / floor |")
    print("|---|---|---|---|---|---|")
    print(f"| ingest + tokenize one run, end to end (s) | {ours['wall_s']:.1f} | {theirs['wall_s']:.1f} | "
          f"{theirs['wall_s'] / ours['wall_s']:.1f}× | {floor_s:.2f} | {ours['wall_s'] / floor_s:.1f}× |")
    print(f"| peak RSS (MiB) | {ours_rss:.0f} | {mne_rss:.0f} | {mne_rss / ours_rss:.1f}× | | |")
    for jobs in [1, 2]:
        small = fresh_dataset(out / "tokenize-fixture", "--subjects", "4", "--runs", "2", "--seconds", "60")
        res, _, rss = run_child([sys.executable, "-c", OURS, small, BIN / "bf-pipeline", "--jobs", str(jobs)])
        print(f"| fixture dataset (4 subjects × 2 runs × 60 s), ingest + tokenize, --jobs {jobs} (s) | "
              f"{res['wall_s']:.1f} | | peak {rss:.0f} MiB | | |")


if __name__ == "__main__":
    main()
