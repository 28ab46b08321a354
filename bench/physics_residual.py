"""What keeps the cleaned MEG of a `bf-fixtures --physics` run away from its noise-free MEG
(issue 15). MNE only, on one run of a dataset made with derivatives (proc-sss) and cleaned by
`bf-pipeline tokenize`:

1. Each artifact group through MNE's maxwell_filter with the pipeline's bads, origin and the
   site's cross-talk file, with and without cross-talk compensation: median amplitude
   spectral density per band in the run's interior (10 s from each edge), beside the brain's
   (the noise-free copy through the same SSS). Groups: "ext" = raw − proc-sss (external field,
   line, cHPI, the noisy channel's excess), "heart+noise" = proc-sss − noise-free.
2. The noise ceiling in time: r of the pipeline's cleaned MEG against the noise-free MEG
   cleaned by MNE with the same band, notch and rate, per 5 s and over the whole run, and the
   residual RMS per 5 s (edge transients show here).

    .venv/bin/python bench/physics_residual.py DATASET --subject 01
"""
import argparse
import json
from pathlib import Path

import mne
import numpy as np
from scipy.signal import welch

mne.set_log_level("ERROR")
BANDS = [(0.1, 0.5), (0.5, 1), (1, 2), (2, 4), (4, 8), (8, 13), (13, 30), (30, 45)]


def asd(x, sf):
    f, p = welch(x, sf, nperseg=int(8 * sf))
    return " ".join(f"{lo}-{hi}: {np.median(np.sqrt(p[:, (f >= lo) & (f < hi)].mean(1))):.1e}" for lo, hi in BANDS)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path)
    p.add_argument("--subject", default="01")
    p.add_argument("--no-groups", action="store_true", help="skip part 1 (four SSS runs)")
    a = p.parse_args()
    root, sub = a.dataset, a.subject
    stem = f"sub-{sub}/ses-meg/meg/sub-{sub}_ses-meg_task-facerecognition_run-01_"
    read = lambda path: mne.io.read_raw_fif(path, preload=True)
    side = json.loads((root / "derivatives/brainformer" / (stem + "desc-clean_meg.json")).read_text())
    nf = read(root / "derivatives/noise-free" / (stem + "desc-noisefree_meg.fif"))
    if not a.no_groups:
        raw = read(root / (stem + "meg.fif"))
        ps = read(root / "derivatives/meg_derivatives" / (stem + "proc-sss_meg.fif"))
        bads = side["MaxwellFilter"]["bads_found"]["flat"] + side["MaxwellFilter"]["bads_found"]["noisy"]
        ct = root / "derivatives/meg_derivatives/ct_sparse.fif"
        sf = raw.info["sfreq"]
        inner = slice(int(10 * sf), raw.n_times - int(10 * sf))
        print(f"1. sub-{sub}, SSS bads {bads}; median ASD (T/sqrt(Hz), T/m/sqrt(Hz)) per band, interior")
        for name, data in (("brain", nf._data), ("heart+noise", ps._data - nf._data), ("ext", raw._data - ps._data)):
            r = raw.copy()
            r._data = data
            r.info["bads"] = bads
            for label, kw in (("cross-talk", dict(cross_talk=ct)), ("no cross-talk", {})):
                if name != "ext" and label == "no cross-talk":
                    continue
                s = mne.preprocessing.maxwell_filter(r, origin="auto", coord_frame="head", **kw)
                for kind in ("mag", "grad"):
                    x = s.get_data(picks=mne.pick_types(s.info, meg=kind, exclude="bads"))[:, inner]
                    print(f"  {name:12s} {label:14s} {kind:4s} {asd(x, sf)}")
    cl = read(root / "derivatives/brainformer" / (stem + "desc-clean_meg.fif"))
    nf.filter(side["HighpassFilter"], side["LowpassFilter"], picks=["meg", "eeg"])
    if side.get("NotchFrequencies"):
        nf.notch_filter(side["NotchFrequencies"], picks=["meg", "eeg"])
    nf.resample(side["SamplingFrequency"])
    sf, n = cl.info["sfreq"], min(cl.n_times, nf.n_times)
    w = int(5 * sf)
    print(f"2. sub-{sub} cleaned {side['HighpassFilter']}-{side['LowpassFilter']} Hz, {n / sf:.0f} s")
    for kind in ("mag", "grad"):
        pk = mne.pick_types(cl.info, meg=kind, exclude=[])
        x = cl.get_data(picks=pk)[:, :n]
        y = nf.get_data(picks=[nf.ch_names.index(cl.ch_names[i]) for i in pk])[:, :n]

        def r(sl):
            u, v = x[:, sl] - x[:, sl].mean(1, keepdims=True), y[:, sl] - y[:, sl].mean(1, keepdims=True)
            return float(np.mean((u * v).sum(1) / np.sqrt((u * u).sum(1) * (v * v).sum(1))))

        starts = range(0, n - w + 1, w)
        print(f"  {kind}: r whole run {r(slice(None)):.3f}; per 5 s " + " ".join(f"{r(slice(i, i + w)):.2f}" for i in starts))
        print(f"  {kind}: brain RMS {np.median(y.std(1)):.1e}; residual RMS per 5 s " + " ".join(f"{np.median((x - y)[:, i:i + w].std(1)):.1e}" for i in starts))


if __name__ == "__main__":
    main()
