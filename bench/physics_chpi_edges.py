"""Does MNE's `filter_chpi` before Maxwell filtering remove the band-pass ringing at the ends of
a `bf-fixtures --physics` run (issue 15)? MNE only.

For one run: raw → [filter_chpi] → maxwell_filter (the flat channel bad, origin auto, head
frame, the site's cross-talk) → 1–40 Hz band-pass (MNE's FIR defaults), against the run's
noise-free MEG through the same band-pass. Prints the residual RMS (cleaned − noise-free,
median over channels of a sensor type) per 5 s, with and without filter_chpi, and the ratio of
the edge windows (first and last 5 s) to the interior's median.

    .venv/bin/python bench/physics_chpi_edges.py DATASET [--subject 01]
"""
import argparse
import time
from pathlib import Path

import mne
import numpy as np

mne.set_log_level("ERROR")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path)
    p.add_argument("--subject", default="01")
    a = p.parse_args()
    root, sub = a.dataset, a.subject
    stem = f"sub-{sub}/ses-meg/meg/sub-{sub}_ses-meg_task-facerecognition_run-01_"
    raw0 = mne.io.read_raw_fif(root / (stem + "meg.fif"), preload=True)
    nf = mne.io.read_raw_fif(root / "derivatives/noise-free" / (stem + "desc-noisefree_meg.fif"), preload=True)
    ct = root / "derivatives/meg_derivatives/ct_sparse.fif"
    meg = mne.pick_types(raw0.info, meg=True, exclude=())
    flat = [raw0.ch_names[i] for i in meg if not np.any(raw0._data[i])]
    nf.filter(1.0, 40.0, picks="meg")
    sf = raw0.info["sfreq"]
    w = int(5 * sf)
    n = raw0.n_times
    starts = list(range(0, n - w + 1, w))
    print(f"sub-{sub}: {n / sf:.0f} s at {sf:.0f} Hz, bads {flat}; residual RMS per 5 s (median over channels)")
    for label in ("without filter_chpi", "with filter_chpi"):
        raw = raw0.copy()
        raw.info["bads"] = flat
        if label == "with filter_chpi":
            t0 = time.perf_counter()
            mne.chpi.filter_chpi(raw)
            print(f"  MNE filter_chpi: {time.perf_counter() - t0:.1f} s")
        s = mne.preprocessing.maxwell_filter(raw, origin="auto", coord_frame="head", cross_talk=ct)
        s.filter(1.0, 40.0, picks="meg")
        for kind in ("mag", "grad"):
            pk = mne.pick_types(s.info, meg=kind, exclude=[])
            x = s.get_data(picks=pk)
            y = nf.get_data(picks=[nf.ch_names.index(s.ch_names[i]) for i in pk])
            res = [float(np.median(np.sqrt(np.mean((x[:, a0:a0 + w] - y[:, a0:a0 + w]) ** 2, axis=1)))) for a0 in starts]
            brain = float(np.median(np.sqrt(np.mean(y[:, w:-w] ** 2, axis=1))))
            interior = float(np.median(res[1:-1]))
            print(f"  {label:20s} {kind:4s} edges {res[0]:.2e} / {res[-1]:.2e}, interior median {interior:.2e} "
                  f"(ratios {res[0] / interior:.1f} / {res[-1] / interior:.1f}); brain RMS {brain:.2e}")
            print("      per 5 s: " + " ".join(f"{v:.1e}" for v in res))


if __name__ == "__main__":
    main()
