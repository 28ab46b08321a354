"""The preprocess stage's Maxwell step (`[maxwell]` in brainformer.toml) against MNE in
MNE-BIDS-Pipeline's order: find_bad_channels_maxwell → maxwell_filter (bads reconstructed)
→ filter(0.1, 100) → notch_filter([50, 100, 150]) → resample(250).

Data: a BIDS dataset written by mne-bids from a 30 s recording with real VectorView geometry
(MNE's test-ave.fif.gz: 306 MEG + 60 EEG, device→head transform, digitized head shape; channel
names as ds000117 writes them), sensor noise, a homogeneous external field 1000× the brain-like
signal, and one flat gradiometer; the site files where ds000117 keeps them
(derivatives/meg_derivatives/sss_cal.dat, ct_sparse.fif: MNE's SSS test files, the latter
byte-identical to ds000117's).
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import SHARED_DATA, bin_path, run_project

mne = pytest.importorskip("mne")
mne_bids = pytest.importorskip("mne_bids")
mne.set_log_level("ERROR")

AVE = SHARED_DATA / "mne-python/tests/data/test-ave.fif.gz"
SSS = SHARED_DATA / "mne-testing-data/SSS"
CAL, CTC = SSS / "sss_cal_3053.dat", SSS / "ct_sparse.fif"
FLAT = "MEG0112"

pytestmark = pytest.mark.skipif(not (AVE.exists() and CAL.exists()), reason="needs ../shared/data")


def make_raw(seconds=30.0, sfreq=1100.0):
    info = mne.read_evokeds(AVE)[0].info
    info = mne.pick_info(info, mne.pick_types(info, meg=True, eeg=True, exclude=[]))
    info["bads"] = []
    mne.rename_channels(info, {c: c.replace(" ", "") for c in info["ch_names"]})
    with info._unlock():
        info["sfreq"], info["lowpass"], info["projs"], info["line_freq"] = sfreq, sfreq / 2, [], 50.0
    rng = np.random.default_rng(7)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    x = rng.standard_normal((len(info["ch_names"]), n))
    grad, mag = mne.pick_types(info, meg="grad"), mne.pick_types(info, meg="mag")
    # VectorView sensor noise, ~3 fT/cm/sqrt(Hz) and ~3 fT/sqrt(Hz) over 550 Hz; a 10 Hz rhythm.
    x[grad] *= 5e-12
    x[mag] *= 5e-14
    x[mne.pick_types(info, eeg=True)] *= 5e-6
    alpha = np.sin(2 * np.pi * 10 * t)
    x[grad] += alpha * 5e-12 * rng.standard_normal((len(grad), 1))
    x[mag] += alpha * 1e-13 * rng.standard_normal((len(mag), 1))
    normals = np.array([info["chs"][i]["loc"][9:12] for i in mag])
    field = np.stack([np.sin(2 * np.pi * f * t + p) for f, p in ((0.3, 0), (7.0, 1), (50, 2))]) * 1e-11
    x[mag] += normals @ field
    x[info["ch_names"].index(FLAT)] = 0.0
    return mne.io.RawArray(x, info)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("maxwell_dag")
    root = base / "ds"
    bp = mne_bids.BIDSPath(subject="01", task="rest", root=root, datatype="meg")
    mne_bids.write_raw_bids(make_raw(), bp, allow_preload=True, format="FIF", verbose=False)
    site = root / "derivatives" / "meg_derivatives"
    site.mkdir(parents=True)
    shutil.copy(CAL, site / "sss_cal.dat")
    shutil.copy(CTC, site / "ct_sparse.fif")
    subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", root], cwd=base, check=True, capture_output=True)
    return base, root, bp.fpath


bf = run_project


def outputs(root):
    run_dir = root / "derivatives" / "brainformer" / "sub-01" / "meg"
    fif = next(run_dir.glob("*_desc-clean_meg.fif"))
    return fif, json.loads(next(run_dir.glob("*_desc-clean_meg.json")).read_text())


def test_maxwell_step_equals_mne_bids_pipeline_order(dataset):
    base, root, raw_path = dataset
    bf(base, "preprocess")
    fif, sidecar = outputs(root)

    raw = mne.io.read_raw_fif(raw_path, preload=True)
    noisy, flat = mne.preprocessing.find_bad_channels_maxwell(raw, calibration=CAL, cross_talk=CTC)
    assert flat == [FLAT]
    raw.info["bads"] = noisy + flat
    sss = mne.preprocessing.maxwell_filter(raw, calibration=CAL, cross_talk=CTC)
    exp = sss.filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)

    mx = sidecar["MaxwellFilter"]
    assert mx["bads_found"] == {"noisy": noisy, "flat": flat}
    assert mx["reconstructed"] == noisy + flat
    assert mx["calibration"] == "derivatives/meg_derivatives/sss_cal.dat"
    assert mx["cross_talk"] == "derivatives/meg_derivatives/ct_sparse.fif"
    assert mx["coord_frame"] == "head"
    assert sidecar["Parameters"]["maxwell"]["config"]["apply"] == "auto"

    ours = mne.io.read_raw_fif(fif, preload=True)
    assert FLAT not in ours.info["bads"]  # reconstructed, no longer bad
    meg = mne.pick_types(exp.info, meg=True, exclude=[])
    a = ours.get_data(picks=[exp.ch_names[i] for i in meg])
    b = exp.get_data(picks=meg)
    rms = np.sqrt(np.mean(b ** 2, axis=1))
    # MNE's three filter passes on a short recording (1e-5 of the RMS in test_resample.py),
    # Maxwell ~1e-8 (test_maxwell.py), the cleaned FIF stored as float32 (6e-8 of the peak).
    rel = np.abs(a - b).max(axis=1) / rms
    assert rel.max() < 2e-5, f"worst MEG channel {rel.max():.2e} of its RMS"
    # The external field is gone: magnetometers at the brain-signal scale, not the field's.
    mags = mne.pick_types(ours.info, meg="mag")
    assert np.sqrt(np.mean(ours.get_data(picks=mags) ** 2)) < 1e-12  # the field: 1e-11 T


def test_apply_off_or_a_dangling_site_file(dataset, tmp_path):
    base, root, _ = dataset
    # off: the run's key changes and the cleaned data are the unfiltered ones.
    cfg = (base / "brainformer.toml").read_text()
    copy = tmp_path / "ds"
    shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns("brainformer"))
    subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", copy], cwd=tmp_path, check=True, capture_output=True)
    toml = tmp_path / "brainformer.toml"
    text = toml.read_text()
    assert text.count('apply = "auto"') == 1, text  # ingest writes the [maxwell] defaults
    toml.write_text(text.replace('apply = "auto"', 'apply = "off"'))
    bf(tmp_path, "preprocess")
    _, sidecar = outputs(copy)
    assert sidecar["MaxwellFilter"] is None and "maxwell" not in sidecar["Parameters"]

    # A site file that is a dangling link (not downloaded) stops the run with the fix.
    toml.write_text(toml.read_text().replace('apply = "off"', 'apply = "auto"'))
    cal = copy / "derivatives" / "meg_derivatives" / "sss_cal.dat"
    cal.unlink()
    os.symlink(".git/annex/objects/XX/sss_cal.dat", cal)
    proc = bf(tmp_path, "preprocess", check=False)
    assert proc.returncode != 0
    assert "sss_cal.dat" in proc.stderr and "datalad get derivatives/meg_derivatives/sss_cal.dat" in proc.stderr, proc.stderr
    assert cfg  # the original project is untouched
