"""Benchmark: one full-size run as ds000117's real runs are processed: cHPI, Maxwell filtering.

bench_tokenize.py times the linear fixture, which has no cHPI and no sensor geometry, so its
runs skip filter_chpi, find_bad_channels_maxwell and maxwell_filter. Every real ds000117 run
goes through them (raw Neuromag FIF with cHPI coils and the site's cross-talk file). Here one
full-size `bf-fixtures --physics` run (404 channels × 540,100 samples at 1100 Hz: ds000117's
channel list, MNE's test-ave.fif.gz sensor geometry, five cHPI coils at ds000117's
frequencies, a flat and a noisy channel, ds000117's ct_sparse.fif) goes through

  - ours: `bf-pipeline ingest` + `tokenize` (filter_chpi "auto" → find_bad_channels_maxwell →
    maxwell_filter (SSS, head frame, cross-talk) → band-pass, notch, resample → bads → windows
    → tokens → shards), with each step's time from its debug log;
  - MNE + pyarrow, in MNE-BIDS-Pipeline's order: `filter_chpi`, `find_bad_channels_maxwell`,
    `maxwell_filter` (bads reconstructed), `filter(0.1, 100)`, `notch_filter([50, 100, 150])`,
    `resample(250)`, fixed 256-sample windows, per-channel clamp + µ-law tokens, Parquet with
    zstd (bench_tokenize.py's script after the Maxwell steps). `--skip-mne` leaves it out (it
    takes ~10 min here).

Each side in its own process; peak RSS is that process tree's.

    .venv/bin/python bench/bench_real_chain.py --out-dir bench-data [--skip-mne]
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import BIN, ROOT, run_child, warm_page_cache  # noqa: E402
from bench_tokenize import MNE_WINDOWS_TO_PARQUET  # noqa: E402

TEMPLATE = ROOT.parent / "shared" / "data" / "mne-python" / "tests" / "data" / "test-ave.fif.gz"

MNE_CHAIN = r"""
import sys, time, json
import numpy as np, mne, pyarrow as pa, pyarrow.parquet as pq
mne.set_log_level("ERROR")
fif, ctc, out = sys.argv[1:4]
steps = {}
t0 = t = time.perf_counter()
def step(name):
    global t
    now = time.perf_counter()
    steps[name] = now - t
    t = now
raw = mne.io.read_raw_fif(fif, preload=True)
step("read")
mne.chpi.filter_chpi(raw)
step("filter_chpi")
noisy, flat = mne.preprocessing.find_bad_channels_maxwell(raw, cross_talk=ctc)
raw.info["bads"] += [b for b in noisy + flat if b not in raw.info["bads"]]
step("find_bad_channels_maxwell")
raw = mne.preprocessing.maxwell_filter(raw, cross_talk=ctc)
step("maxwell_filter")
raw.filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)
step("filter, notch, resample")
""" + MNE_WINDOWS_TO_PARQUET + r"""
step("windows, tokens, Parquet")
print(json.dumps({"wall_s": time.perf_counter() - t0, "steps": steps, "bads": sorted(noisy + flat)}))
"""

OURS = r"""
import json, os, subprocess, sys, time
base, binary = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
subprocess.run([binary, "--quiet", "ingest", "ds"], cwd=base, check=True, stdout=subprocess.DEVNULL)
log = subprocess.run([binary, "tokenize", "--allow-empty-split"], cwd=base, check=True, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "bf_pipeline::dag=debug", "NO_COLOR": "1"}).stderr
print(json.dumps({"wall_s": time.perf_counter() - t0, "log": log}))
"""

# The preprocess stage's debug lines (seconds, cumulative) and every stage's time.
MARKS = ["chpi_s", "find_bads_s", "clean_s", "written_s"]


def our_steps(log):
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log)
    marks = {k: float(m.group(1)) for k in MARKS if (m := re.search(rf"\b{k}=([0-9.]+)", plain))}
    stages = {m.group(1): float(m.group(2)) for m in re.finditer(r'stage="([a-z-]+)" run=\S+ seconds=([0-9.]+)', plain)}
    return marks, stages


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    ap.add_argument("--skip-mne", action="store_true", help="time ours only (MNE's chain takes ~10 min here)")
    args = ap.parse_args()
    if not TEMPLATE.exists():
        print(f"skipped: {TEMPLATE} (the physics fixture's sensor geometry) is not there")
        return
    base = Path(args.out_dir).resolve() / "real-chain"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    subprocess.run([BIN / "bf-fixtures", "--out", base / "ds", "--template", TEMPLATE, "--physics", "--subjects", "1", "--runs", "1",
                    "--seconds", "491", "--no-derivatives"], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(base / "ds" / "derivatives" / "noise-free")  # not read by either side
    os.sync()  # the generator's write-back done before either side is timed
    fif = next((base / "ds" / "sub-01").rglob("*_meg.fif"))
    ctc = base / "ds" / "derivatives" / "meg_derivatives" / "ct_sparse.fif"
    warm_page_cache(fif)
    ours, _, ours_rss = run_child([sys.executable, "-c", OURS, base, BIN / "bf-pipeline"])
    marks, stages = our_steps(ours["log"])
    sidecar = next((base / "ds" / "derivatives" / "brainformer").rglob("*_desc-clean_meg.json"))
    found = json.loads(sidecar.read_text())["MaxwellFilter"]["bads_found"]
    print(f"one physics run: {fif.stat().st_size / 1e6:.0f} MB, 404 ch × 540,100 samples at 1100 Hz, 5 cHPI coils; "
          f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print(f"ours: ingest + tokenize {ours['wall_s']:.1f} s, peak {ours_rss:.0f} MiB; find_bad_channels_maxwell: "
          f"noisy {found['noisy']}, flat {found['flat']}")
    # chpi_s and find_bads_s count from one start, clean_s and written_s from the cleaning's.
    if "chpi_s" in marks and "find_bads_s" in marks:
        print(f"  filter_chpi (fitted once, stored): {marks['chpi_s']:.1f} s")
        print(f"  find_bad_channels_maxwell: {marks['find_bads_s'] - marks['chpi_s']:.1f} s")
    if "clean_s" in marks and "written_s" in marks:
        print(f"  maxwell_filter + band-pass, notch, resample: {marks['clean_s']:.1f} s")
        print(f"  bad channels + cleaned FIF: {marks['written_s'] - marks['clean_s']:.1f} s")
    print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    if args.skip_mne:
        return
    warm_page_cache(fif)
    theirs, _, mne_rss = run_child([sys.executable, "-c", MNE_CHAIN, fif, ctc, base / "mne_tokens.parquet"])
    print(f"MNE + pyarrow: {theirs['wall_s']:.1f} s, peak {mne_rss:.0f} MiB; bads {theirs['bads']}")
    for k, v in theirs["steps"].items():
        print(f"  {k}: {v:.1f} s")
    load = os.getloadavg()
    print("| measure | Brainformer | MNE + pyarrow | MNE / ours |")
    print("|---|---|---|---|")
    print(f"| one full-size run with cHPI + SSS, end to end (s) | {ours['wall_s']:.1f} | {theirs['wall_s']:.1f} | {theirs['wall_s'] / ours['wall_s']:.1f}× |")
    print(f"| peak RSS (MiB) | {ours_rss:.0f} | {mne_rss:.0f} | {mne_rss / ours_rss:.1f}× |")
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
