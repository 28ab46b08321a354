"""How much of the recorded MEG a predictor from the EEG can hope to explain, on a
`bf-fixtures --physics` dataset (issue 15). Independent of our code: MNE reads, filters and
resamples the recorded runs and their noise-free copies (derivatives/noise-free).

Prints, per subject and band: the brain's share of each channel type's variance (noise-free
over recorded, median per channel, before Maxwell filtering), and the median r of an
instantaneous ridge from the noise-free EEG to the noise-free MEG within the subject (first 60 %
→ last 40 %); then the same ridge trained on the training subjects and tested on a held-out one.

    .venv/bin/python bench/physics_headroom.py DATASET --train 01 02 04 06 --test 05
"""
import argparse
from pathlib import Path

import mne
import numpy as np

mne.set_log_level("ERROR")
RUN = "sub-{s}/ses-meg/meg/sub-{s}_ses-meg_task-facerecognition_run-01_{suffix}.fif"


def load(root, sub, band, noise_free):
    path = (root / "derivatives" / "noise-free" / RUN.format(s=sub, suffix="desc-noisefree_meg")) if noise_free else root / RUN.format(s=sub, suffix="meg")
    raw = mne.io.read_raw_fif(path, preload=True)
    raw.filter(*band)
    raw.resample(100)
    return raw


def median_r(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return float(np.nanmedian(np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), np.nan)))


def ridge_r(e_tr, m_tr, e_te, m_te, alpha):
    keep = e_tr.std(0) > 0
    e_tr, e_te = e_tr[:, keep], e_te[:, keep]
    mx, sx, my, sy = e_tr.mean(0), e_tr.std(0), m_tr.mean(0), m_tr.std(0) + 1e-30
    a, b, c, d = (e_tr - mx) / sx, (m_tr - my) / sy, (e_te - mx) / sx, (m_te - my) / sy
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ b)
    return median_r(c @ w, d)


def eeg_meg(raw):
    return raw.get_data(picks=mne.pick_types(raw.info, eeg=True, meg=False)).T, raw.get_data(picks=mne.pick_types(raw.info, meg=True)).T


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path)
    p.add_argument("--train", nargs="+", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--alpha", type=float, default=1e-3, help="ridge penalty, relative to the number of samples")
    args = p.parse_args()
    for band in [(0.1, 100.0), (1.0, 40.0)]:
        for sub in [*args.train, args.test]:
            rec, nf = load(args.dataset, sub, band, False), load(args.dataset, sub, band, True)
            shares = []
            for kind in ("eeg", "mag", "grad"):
                picks = mne.pick_types(rec.info, meg=kind if kind != "eeg" else False, eeg=kind == "eeg", exclude=[])
                x, y = rec.get_data(picks=picks), nf.get_data(picks=picks)
                ok = x.var(1) > 0
                shares.append(f"{kind} {np.median(y.var(1)[ok] / x.var(1)[ok]):.3f}")
            e, m = eeg_meg(nf)
            k = int(0.6 * len(e))
            print(f"{band[0]}-{band[1]} Hz sub-{sub}: brain share of variance {', '.join(shares)}; "
                  f"noise-free EEG->MEG ridge within the subject r {ridge_r(e[:k], m[:k], e[k:], m[k:], args.alpha):.2f}")
        pairs = [eeg_meg(load(args.dataset, s, band, True)) for s in args.train]
        e_te, m_te = eeg_meg(load(args.dataset, args.test, band, True))
        r = ridge_r(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), e_te, m_te, args.alpha)
        print(f"{band[0]}-{band[1]} Hz: noise-free EEG->MEG ridge, sub-{' '.join(args.train)} -> sub-{args.test}: r {r:.2f}")


if __name__ == "__main__":
    main()
