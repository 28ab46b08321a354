"""Benchmark: Maxwell filtering of a ds000117-sized run, ours (`bf-pipeline maxwell`) beside
MNE-Python's `maxwell_filter` with the parameters MNE-BIDS-Pipeline uses on ds000117 (fine
calibration + cross-talk, head frame, origin fitted to the head shape, regularize='in'),
plus tSSS with 10 s windows; and `find_bad_channels_maxwell` with MNE's defaults. Same file,
same run, each in its own process (peak RSS = that process's ru_maxrss); both write FIF.

The input is written here once: the 306 MEG + 60 EEG channels of MNE's `test-ave.fif.gz`
(real VectorView sensor geometry, device→head transform and digitized head shape), renamed
as ds000117 names them (MEG0113), 540,100 samples at 1100 Hz (ds000117's run length),
float32: sensor noise, a brain-like internal signal and a homogeneous external field 1000×
larger (what SSS removes). The calibration and cross-talk files are MNE's SSS test files
(ds000117's own `ct_sparse.fif` has the same MD5; its `sss_cal.dat` is not in ../shared).

    make bench            # or: .venv/bin/python bench/bench_maxwell.py --out-dir bench-data
"""
import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_read import BIN, ROOT, run_child, warm_page_cache  # noqa: E402

SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
AVE = SHARED / "data" / "mne-python" / "tests" / "data" / "test-ave.fif.gz"
SSS = SHARED / "data" / "mne-testing-data" / "SSS"
CAL, CTC = SSS / "sss_cal_3053.dat", SSS / "ct_sparse.fif"
N_TIMES, SFREQ = 540_100, 1100.0

MAKE_INPUT = r"""
import sys, numpy as np, mne
mne.set_log_level("ERROR")
ave, out, n, sfreq = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
info = mne.read_evokeds(ave)[0].info
info = mne.pick_info(info, mne.pick_types(info, meg=True, eeg=True, exclude=[]))
info["bads"] = []
mne.rename_channels(info, {c: c.replace(" ", "") for c in info["ch_names"]})
with info._unlock():
    info["sfreq"] = sfreq
    info["lowpass"] = sfreq / 2
    info["projs"] = []  # test-ave's SSP projectors are applied there; MNE refuses those
rng = np.random.default_rng(0)
grad, mag = mne.pick_types(info, meg="grad"), mne.pick_types(info, meg="mag")
normals = np.array([info["chs"][i]["loc"][9:12] for i in mag])
t = np.arange(n) / sfreq
data = np.empty((len(info["ch_names"]), n), np.float32)
for s in range(0, n, 55_000):
    e = min(n, s + 55_000)
    tt = t[s:e]
    x = rng.standard_normal((len(info["ch_names"]), e - s))
    # VectorView sensor noise (~3 fT/cm/sqrt(Hz), ~3 fT/sqrt(Hz) over 550 Hz), a 10 Hz rhythm.
    x[grad] *= 5e-12
    x[mag] *= 5e-14
    x[mne.pick_types(info, eeg=True)] *= 5e-6
    alpha = np.sin(2 * np.pi * 10 * tt)
    x[grad] += alpha * 5e-12 * rng.standard_normal((len(grad), 1))
    x[mag] += alpha * 1e-13 * rng.standard_normal((len(mag), 1))
    field = np.stack([np.sin(2 * np.pi * f * tt + p) for f, p in ((0.2, 0), (1.3, 1), (50, 2))]) * 1e-11
    x[mag] += normals @ field  # a homogeneous external field seen by the magnetometers
    data[:, s:e] = x
mne.io.RawArray(data, info).save(out, fmt="single", overwrite=True)
"""

MNE_MAXWELL = r"""
import sys, time, json, mne
mne.set_log_level("ERROR")
fif, out, cal, ctc, st = sys.argv[1:6]
t0 = time.perf_counter()
raw = mne.io.read_raw_fif(fif, preload=True)
raw = mne.preprocessing.maxwell_filter(raw, calibration=cal, cross_talk=ctc,
                                       st_duration=None if st == "none" else float(st))
raw.save(out, overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""

MNE_BADS = r"""
import sys, time, json, mne
mne.set_log_level("ERROR")
fif, cal, ctc = sys.argv[1:4]
t0 = time.perf_counter()
raw = mne.io.read_raw_fif(fif, preload=True)
noisy, flat = mne.preprocessing.find_bad_channels_maxwell(raw, calibration=cal, cross_talk=ctc)
print(json.dumps({"wall_s": time.perf_counter() - t0, "bads": noisy + flat}))
"""

OURS = r"""
import json, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)
print(json.dumps({"wall_s": time.perf_counter() - t0, "stdout": p.stdout}))
"""


def prepare(out):
    fif = out / "ds000117_like_meg_raw.fif"
    if not fif.exists():
        subprocess.run([sys.executable, "-c", MAKE_INPUT, AVE, fif, str(N_TIMES), str(SFREQ)], check=True)
    warm_page_cache(fif)
    return fif


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="bench-data")
    ap.add_argument("--skip-bads", action="store_true", help="leave out find_bad_channels_maxwell")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (AVE.exists() and CAL.exists() and CTC.exists()):
        sys.exit(f"needs {AVE}, {CAL} and {CTC} (../shared/data)")
    fif = prepare(out)
    rows = []
    for name, st in (("SSS, fine calibration + cross-talk", "none"), ("tSSS 10 s, fine calibration + cross-talk", "10")):
        st_args = [] if st == "none" else ["--st-duration", st]
        ours, _, ours_rss = run_child([sys.executable, "-c", OURS, BIN / "bf-pipeline", "--quiet", "maxwell", fif,
                                       out / "ours_sss_raw.fif", "--calibration", CAL, "--cross-talk", CTC, *st_args])
        theirs, _, mne_rss = run_child([sys.executable, "-c", MNE_MAXWELL, fif, out / "mne_sss_raw.fif", CAL, CTC, st])
        rows.append((name, ours["wall_s"], theirs["wall_s"], ours_rss, mne_rss))
    if not args.skip_bads:
        ours, _, ours_rss = run_child([sys.executable, "-c", OURS, BIN / "bf-pipeline", "--quiet", "find-bads-maxwell", fif,
                                       "--calibration", CAL, "--cross-talk", CTC])
        theirs, _, mne_rss = run_child([sys.executable, "-c", MNE_BADS, fif, CAL, CTC])
        rows.append(("find_bad_channels_maxwell (defaults)", ours["wall_s"], theirs["wall_s"], ours_rss, mne_rss))
    for f in ("ours_sss_raw.fif", "mne_sss_raw.fif"):
        (out / f).unlink(missing_ok=True)
    print(f"file: {fif} ({fif.stat().st_size / 1e6:.0f} MB, 366 ch (306 MEG) × {N_TIMES:,} samples at 1100 Hz, float32)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print("| read → Maxwell filter → write FIF | Brainformer (s) | MNE-Python (s) | MNE / ours | peak RSS ours / MNE (MiB) |")
    print("|---|---|---|---|---|")
    for name, a, b, ra, rb in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.1f}× | {ra:.0f} / {rb:.0f} |")


if __name__ == "__main__":
    main()
