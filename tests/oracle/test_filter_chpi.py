"""`bf-pipeline filter-chpi` and the FIF cHPI info against MNE 1.13's `filter_chpi` and
`get_chpi_info`.

Data: no real file in ../shared carries cHPI frequencies (`SSS/test_move_anon_erm_raw.fif`
has an `hpi_subsystem` but no `hpi_meas`; `test-ave.fif.gz` has an `hpi_meas` whose coils have
no frequency), so MNE writes here a copy of the real empty-room file with an `hpi_meas` of
five coils (83, 143, 203, 263, 323 Hz: those of MNE's `test_move_anon_raw.fif`), its real
`hpi_subsystem` kept, and amplitude-modulated sinusoids at those frequencies added to the
MEG (so there is cHPI to remove); and a `bf-fixtures --physics` run (ds000117's coils 293–328
Hz, written by our FIF writer with `hpi_meas` + `hpi_subsystem`).

Tolerance: every MEG channel within 1e-11 of its RMS (measured: 7e-14 to 3e-13). Our
arithmetic follows MNE's expression by expression (model, window clamping, phase rotation,
Hann envelope, phase of the rebuilt sinusoids); what differs is the pseudo-inverse (a QR here,
LAPACK's SVD in numpy: ~1e-15 relative on a model of condition < 10), the order of the sums in
the GEMMs and MNE's einsum, and the rebuild (we weight the sinusoids, MNE the amplitudes):
rounding of order 1e-15 of the removed amplitude, which is at most ~20× the channel's RMS
here. An SVD pseudo-inverse from nalgebra was 4e-10 off on one window length: the bound
catches that kind of error.
Other channels pass through bit for bit.
"""
import json
import time

import numpy as np
import pytest

from conftest import SHARED_DATA, bin_path, run_bf

mne = pytest.importorskip("mne")
from mne.chpi import filter_chpi, get_chpi_info  # noqa: E402

ERM = SHARED_DATA / "mne-testing-data" / "SSS" / "test_move_anon_erm_raw.fif"
AVE = SHARED_DATA / "mne-python" / "tests" / "data" / "test-ave.fif.gz"
TEMPLATE = AVE
RUN = "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif"
COILS = [83.0, 143.0, 203.0, 263.0, 323.0]

pytestmark = pytest.mark.skipif(not ERM.exists(), reason=f"{ERM} is absent (needs ../shared/data)")


def read(fname):
    return mne.io.read_raw_fif(fname, allow_maxshield=True, verbose="error").load_data()


def erm_with_chpi(path, inactive=()):
    """The real empty-room file with an hpi_meas (MNE writes it) and cHPI sinusoids added."""
    raw = read(ERM)
    with raw.info._unlock():
        raw.info["hpi_meas"] = [{"creator": "test", "sfreq": raw.info["sfreq"], "ncoil": len(COILS),
                                 # coils stored out of order: readers sort them by number
                                 "hpi_coils": [{"number": n, "coil_freq": COILS[n - 1]} for n in (2, 1, 3, 5, 4)]}]
        for i in inactive:
            raw.info["hpi_subsystem"]["hpi_coils"][i]["event_bits"] = np.array([0, 0, 0, 0], ">i4")
    meg = mne.pick_types(raw.info, meg=True, exclude=())
    t = raw.times
    rng = np.random.default_rng(0)
    scale = np.where(np.isin(meg, mne.pick_types(raw.info, meg="mag", exclude=())), 2e-12, 5e-11)
    for k, f in enumerate(COILS):
        amp = rng.standard_normal(len(meg)) * scale
        env = 1.0 + 0.2 * np.sin(2 * np.pi * (0.7 + 0.3 * k) * t + k)
        raw._data[meg] += amp[:, None] * env[None, :] * np.sin(2 * np.pi * f * t + 0.5 * k)[None, :]
    raw.save(path, overwrite=True, verbose="error")
    return path


def ours(path, tmp_path, *args):
    out = tmp_path / "ours.npy"
    t0 = time.perf_counter()
    summary = json.loads(run_bf("filter-chpi", path, out, "--json", *args).stdout)
    return np.load(out), summary, time.perf_counter() - t0


def assert_equal_to_mne(data, before, after, raw):
    assert data.shape == after.shape
    meg = mne.pick_types(raw.info, meg=True, exclude=())
    # A dead (all-zero) channel stays zero in both.
    dead = meg[~np.any(before[meg], axis=1)]
    assert not np.any(data[dead]) and not np.any(after[dead])
    meg = np.setdiff1d(meg, dead)
    rms = np.sqrt(np.mean(after[meg] ** 2, axis=1))
    rel = np.abs(data[meg] - after[meg]).max(axis=1) / rms
    removed = np.sqrt(np.mean((before[meg] - after[meg]) ** 2, axis=1)) / rms
    print(f"max |ours - MNE| / RMS = {rel.max():.2e} (removed: {removed.max():.1f}× the RMS at most)")
    assert rel.max() <= 1e-11, f"worst MEG channel differs by {rel.max():.2e} of its RMS"
    other = np.setdiff1d(np.arange(len(after)), meg)
    np.testing.assert_array_equal(data[other], after[other])
    return rel.max()


def chpi_of(path):
    return json.loads(run_bf("info", path, "--json").stdout)["chpi"]


def test_chpi_info_is_read_as_mne_reads_it(tmp_path):
    # Real files: no frequencies anywhere, so no cHPI information (MNE: empty). The real
    # empty-room file has an hpi_subsystem only; test-ave.fif.gz (an evoked file, which
    # `info` does not open) has an hpi_meas whose coils have no frequency: MNE copies it
    # onto the raw file here.
    assert len(get_chpi_info(mne.io.read_info(ERM, verbose="error"), on_missing="ignore")[0]) == 0
    assert chpi_of(ERM) is None
    raw = read(ERM)
    with raw.info._unlock():
        raw.info["hpi_meas"] = mne.io.read_info(AVE, verbose="error")["hpi_meas"]
    raw.save(tmp_path / "erm_ave_hpi_raw.fif", verbose="error")
    assert len(mne.io.read_info(tmp_path / "erm_ave_hpi_raw.fif", verbose="error")["hpi_meas"][0]["hpi_coils"]) == 4
    assert len(get_chpi_info(mne.io.read_info(tmp_path / "erm_ave_hpi_raw.fif", verbose="error"), on_missing="ignore")[0]) == 0
    assert chpi_of(tmp_path / "erm_ave_hpi_raw.fif") is None
    # MNE-written copies: all coils active; coil 3 (event bits 0) inactive.
    for inactive in ((), (2,)):
        path = erm_with_chpi(tmp_path / f"erm_{len(inactive)}_raw.fif", inactive)
        freqs, _, _ = get_chpi_info(mne.io.read_info(path, verbose="error"))
        got = chpi_of(path)
        assert got["active_freqs"] == freqs.tolist()
        assert [n for n, _ in got["coils"]] == [1, 2, 3, 4, 5]
        assert got["event_channel"] == "STI201"
    assert freqs.tolist() == [83.0, 143.0, 263.0, 323.0]


@pytest.mark.parametrize("args, kwargs", [
    ((), {}),
    (("--no-include-line",), {"include_line": False}),
    (("--t-window", "0.2", "--t-step", "0.02"), {"t_window": 0.2, "t_step": 0.02}),
])
def test_filter_chpi_equals_mne_on_the_real_empty_room_file_with_chpi(tmp_path, args, kwargs):
    path = erm_with_chpi(tmp_path / "erm_chpi_raw.fif")
    data, summary, _ = ours(path, tmp_path, *args)
    raw = read(path)
    before = raw.get_data()
    filter_chpi(raw, verbose="error", **kwargs)
    assert summary["hpi_freqs"] == COILS
    assert summary["line_freqs"] == [60.0, 120.0, 180.0, 240.0, 300.0, 360.0]
    assert_equal_to_mne(data, before, raw.get_data(), raw)


def test_filter_chpi_equals_mne_on_a_physics_fixture_run(tmp_path):
    import subprocess
    if not TEMPLATE.exists():
        pytest.skip(f"{TEMPLATE} is absent: the physics fixture needs the Neuromag template")
    root = tmp_path / "ds"
    subprocess.run([bin_path("bf-fixtures"), "--out", root, "--template", TEMPLATE, "--physics",
                    "--subjects", "1", "--runs", "1", "--seconds", "10"], check=True, capture_output=True)
    info = mne.io.read_info(root / RUN, verbose="error")
    freqs, pick, on = get_chpi_info(info)
    assert freqs.tolist() == [293.0, 307.0, 314.0, 321.0, 328.0]
    assert on.tolist() == [256, 512, 1024, 2048, 4096]
    assert info["ch_names"][pick] == "STI201"
    assert chpi_of(root / RUN)["active_freqs"] == freqs.tolist()
    # The noise-free derivative has no cHPI.
    nf = root / "derivatives/noise-free" / RUN.replace("_meg.fif", "_desc-noisefree_meg.fif")
    assert len(mne.io.read_info(nf, verbose="error")["hpi_meas"]) == 0
    data, summary, t_ours = ours(root / RUN, tmp_path)
    raw = read(root / RUN)
    before = raw.get_data()
    t0 = time.perf_counter()
    filter_chpi(raw, verbose="error")
    t_mne = time.perf_counter() - t0
    print(f"10 s physics run: ours {t_ours:.2f} s (whole command), MNE filter_chpi {t_mne:.2f} s")
    assert summary["line_freqs"] == [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0]
    assert summary["n_window"] == round(1 / 7 * 1100)
    assert_equal_to_mne(data, before, raw.get_data(), raw)


def test_the_preprocess_stage_runs_filter_chpi_before_maxwell_as_mne(tmp_path):
    """`[preprocess] filter_chpi = "auto"`: on a raw Neuromag run with cHPI frequencies that
    Maxwell filtering applies to, the DAG equals MNE's filter_chpi → find_bad_channels_maxwell
    → maxwell_filter → filter → notch → resample (test_maxwell_dag.py's recording and bound,
    2e-5 of the RMS: MNE's filter passes on a short recording and the float32 cleaned FIF),
    with ds000117's five cHPI lines added; `false` turns it off (another key, no record)."""
    import shutil
    import subprocess
    mne_bids = pytest.importorskip("mne_bids")
    from test_maxwell_dag import CAL, CTC, FLAT, make_raw
    raw = make_raw(seconds=20.0)
    freqs = [293.0, 307.0, 314.0, 321.0, 328.0]
    with raw.info._unlock():
        raw.info["hpi_meas"] = [{"hpi_coils": [{"number": i + 1, "coil_freq": f} for i, f in enumerate(freqs)]}]
    meg = mne.pick_types(raw.info, meg=True)
    rng = np.random.default_rng(3)
    for f in freqs:
        raw._data[meg] += 2e-11 * rng.standard_normal((len(meg), 1)) * np.sin(2 * np.pi * f * raw.times + rng.uniform(0, 6))
    raw._data[raw.ch_names.index(FLAT)] = 0.0
    root = tmp_path / "ds"
    bp = mne_bids.BIDSPath(subject="01", task="rest", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, allow_preload=True, format="FIF", verbose=False)
    site = root / "derivatives" / "meg_derivatives"
    site.mkdir(parents=True)
    shutil.copy(CAL, site / "sss_cal.dat")
    shutil.copy(CTC, site / "ct_sparse.fif")
    subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", root], cwd=tmp_path, check=True, capture_output=True)
    from conftest import run_project
    run_project(tmp_path, "preprocess")
    run_dir = root / "derivatives" / "brainformer" / "sub-01" / "meg"
    side_path = next(run_dir.glob("*_desc-clean_meg.json"))
    sidecar = json.loads(side_path.read_text())
    rec = sidecar["FilterChpi"]
    assert rec["hpi_freqs"] == freqs and rec["line_freqs"] == [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0]
    assert sidecar["Parameters"]["filter_chpi"]["mode"] == "auto"

    exp = mne.io.read_raw_fif(bp.fpath, preload=True, verbose="error")
    mne.chpi.filter_chpi(exp, verbose="error")
    noisy, flat = mne.preprocessing.find_bad_channels_maxwell(exp, calibration=CAL, cross_talk=CTC, verbose="error")
    assert sidecar["MaxwellFilter"]["bads_found"] == {"noisy": noisy, "flat": flat}
    exp.info["bads"] = noisy + flat
    exp = mne.preprocessing.maxwell_filter(exp, calibration=CAL, cross_talk=CTC, verbose="error")
    exp.filter(0.1, 100, verbose="error").notch_filter([50, 100, 150], verbose="error").resample(250, verbose="error")
    ours = mne.io.read_raw_fif(next(run_dir.glob("*_desc-clean_meg.fif")), preload=True, verbose="error")
    pk = mne.pick_types(exp.info, meg=True, exclude=[])
    a = ours.get_data(picks=[exp.ch_names[i] for i in pk])
    b = exp.get_data(picks=pk)
    rel = np.abs(a - b).max(axis=1) / np.sqrt(np.mean(b ** 2, axis=1))
    print(f"DAG vs MNE: worst MEG channel {rel.max():.2e} of its RMS")
    assert rel.max() < 2e-5, f"worst MEG channel {rel.max():.2e} of its RMS"

    toml = tmp_path / "brainformer.toml"
    text = toml.read_text()
    assert "filter_chpi" not in text  # "auto" is the default and is not written
    toml.write_text(text.replace("[preprocess]\n", "[preprocess]\nfilter_chpi = false\n"))
    run_project(tmp_path, "preprocess")
    off = json.loads(side_path.read_text())
    assert off["FilterChpi"] is None and "filter_chpi" not in off["Parameters"]
