"""`bf-pipeline maxwell` against MNE's `maxwell_filter` and Elekta MaxFilter.

Data: MNE's testing file `SSS/test_move_anon_erm_raw.fif` (1 s of MaxShield empty-room data,
no dev_head_t) with the MaxFilter outputs listed in `SSS/README.txt`; for the head frame,
a copy that MNE writes here with the device→head transform of MNE's `test-ave.fif.gz` and
three bad channels (one magnetometer, two gradiometers) to reconstruct.

Equality with MNE: every MEG channel within 1e-6 of its RMS (what is measured is ~1e-12:
the arithmetic follows MNE's expression by expression); other channels untouched.
Agreement with MaxFilter: MNE's own bounds from `mne/preprocessing/tests/test_maxwell.py`
(`assert_meg_snr(..., min_tol, med_tol)`), applied to our output.
"""
import json

import numpy as np
import pytest

from conftest import SHARED_DATA, run_bf

mne = pytest.importorskip("mne")
from mne.preprocessing import maxwell_filter  # noqa: E402
from mne.utils import assert_meg_snr  # noqa: E402

SSS = SHARED_DATA / "mne-testing-data" / "SSS"
ERM = SSS / "test_move_anon_erm_raw.fif"
AVE = SHARED_DATA / "mne-python" / "tests" / "data" / "test-ave.fif.gz"
MEG_ORIGIN = (0.0, 0.013, -0.006)  # MaxFilter's `-origin 0 13 -6 -frame device`

pytestmark = pytest.mark.skipif(not ERM.exists(), reason=f"{ERM} is absent (needs ../shared/data)")


def read(fname):
    return mne.io.read_raw_fif(fname, allow_maxshield=True, verbose="error").load_data()


def ours(path, tmp_path, *args):
    out = tmp_path / "ours.npy"
    summary = json.loads(run_bf("maxwell", path, out, "--json", *args).stdout)
    return np.load(out), summary


def assert_equal_to_mne(data, mne_raw):
    exp = mne_raw.get_data()
    assert data.shape == exp.shape
    meg = mne.pick_types(mne_raw.info, meg=True, exclude=[])
    rms = np.sqrt(np.mean(exp[meg] ** 2, axis=1))
    rel = np.abs(data[meg] - exp[meg]).max(axis=1) / rms
    assert rel.max() <= 1e-6, f"worst MEG channel differs by {rel.max():.2e} of its RMS"
    other = np.setdiff1d(np.arange(len(exp)), meg)
    np.testing.assert_allclose(data[other], exp[other], rtol=1e-6, atol=1e-300)
    return rel.max()


def as_raw(data, mne_raw):
    return mne.io.RawArray(data, mne_raw.info, first_samp=mne_raw.first_samp, verbose="error")


@pytest.mark.parametrize(
    "regularize, origin, maxfilter_file, tols",
    [
        # test_basic: the device-origin SSS of the empty-room file, bounds (70, 260).
        ("none", MEG_ORIGIN, "test_move_anon_erm_devOrigin_raw_sss.fif", (70.0, 260.0)),
        # test_regularization: regularize="in" on the empty-room file, bounds (2.6, 21); MNE's
        # test uses the device origin (0, 0, 0) there, not the README's (0, 13, -6) mm.
        ("in", (0.0, 0.0, 0.0), "test_move_anon_erm_regIn_raw_sss.fif", (2.6, 21.0)),
    ],
)
def test_device_frame_against_mne_and_maxfilter(tmp_path, regularize, origin, maxfilter_file, tols):
    raw = read(ERM)
    exp = maxwell_filter(raw, origin=origin, coord_frame="meg",
                         regularize=None if regularize == "none" else "in", bad_condition="error")
    data, summary = ours(ERM, tmp_path, "--coord-frame", "meg", "--origin", ",".join(map(str, origin)),
                         "--regularize", regularize)
    assert_equal_to_mne(data, exp)
    n_in = exp.info["proc_history"][0]["max_info"]["sss_info"]["nfree"]
    assert summary["n_use_in"] == n_in
    mf = read(SSS / maxfilter_file)
    assert_meg_snr(as_raw(data, exp), mf, *tols)


@pytest.fixture(scope="module")
def head_file(tmp_path_factory):
    """The empty-room file with a device→head transform and bads, written by MNE."""
    if not AVE.exists():
        pytest.skip(f"{AVE} is absent")
    raw = read(ERM)
    trans = mne.read_evokeds(AVE, condition=0, verbose="error").info["dev_head_t"]
    with raw.info._unlock():
        raw.info["dev_head_t"] = trans
    raw.info["bads"] = ["MEG0111", "MEG0943", "MEG2443"]
    path = tmp_path_factory.mktemp("maxwell") / "erm_head_raw.fif"
    raw.save(path, verbose="error")
    return path


@pytest.mark.parametrize(
    "kwargs, args",
    [
        (dict(origin=(0.0, 0.0, 0.04), regularize=None), ["--origin", "0,0,0.04", "--regularize", "none"]),
        (dict(origin="auto", regularize="in"), []),  # MNE's defaults: sphere fit to the head shape
        (dict(origin=(0.0, 0.0, 0.0), coord_frame="meg", regularize=None),
         ["--origin", "0,0,0", "--coord-frame", "meg", "--regularize", "none"]),
    ],
)
def test_head_frame_bads_auto_origin(tmp_path, head_file, kwargs, args):
    raw = read(head_file)
    exp = maxwell_filter(raw, bad_condition="error", **kwargs)
    data, summary = ours(head_file, tmp_path, *args)
    assert_equal_to_mne(data, exp)
    if kwargs["origin"] == "auto":
        _, origin, _ = mne.bem.fit_sphere_to_headshape(raw.info, units="m", verbose="error")
        np.testing.assert_allclose(summary["origin"], origin, rtol=0, atol=1e-12)
    # the bads were reconstructed: no longer bad, and not flat
    assert exp.info["bads"] == []
    bad_rows = [raw.ch_names.index(b) for b in raw.info["bads"]]
    assert np.all(np.std(data[bad_rows], axis=1) > 0)


def test_head_frame_needs_dev_head_t(tmp_path):
    proc = run_bf("maxwell", ERM, tmp_path / "x.npy", check=False)
    assert proc.returncode != 0
    assert "dev_head_t" in proc.stderr and "meg" in proc.stderr


def mag_power(data, info):
    mags = mne.pick_types(info, meg="mag", ref_meg=False, exclude=[])
    return np.sqrt(np.sum(data[mags] ** 2))


@pytest.mark.parametrize(
    "kwargs, args, shielding",
    [
        # test_shielding_factor's bounds (magnetometer power before / after) for MNE's output.
        (dict(regularize=None), ["--regularize", "none"], (12.0, 13.0)),
        (dict(), [], (14.5, 15.5)),
        (dict(regularize=None, origin=MEG_ORIGIN, calibration=SSS / "sss_cal_3053.dat"),
         ["--regularize", "none", "--origin", ",".join(map(str, MEG_ORIGIN)),
          "--calibration", SSS / "sss_cal_3053.dat"], (12.0, 13.0)),
        (dict(origin=MEG_ORIGIN, calibration=SSS / "sss_cal_3053.dat"),
         ["--origin", ",".join(map(str, MEG_ORIGIN)), "--calibration", SSS / "sss_cal_3053.dat"], (0.0, np.inf)),
        (dict(regularize=None, origin=MEG_ORIGIN, cross_talk=SSS / "ct_sparse.fif"),
         ["--regularize", "none", "--origin", ",".join(map(str, MEG_ORIGIN)),
          "--cross-talk", SSS / "ct_sparse.fif"], (12.0, 13.0)),
        (dict(regularize=None, origin=MEG_ORIGIN, cross_talk=SSS / "ct_sparse.fif",
              calibration=SSS / "sss_cal_3053.dat"),
         ["--regularize", "none", "--origin", ",".join(map(str, MEG_ORIGIN)),
          "--cross-talk", SSS / "ct_sparse.fif", "--calibration", SSS / "sss_cal_3053.dat"], (13.0, 14.0)),
        # tSSS (st_duration 1 s), alone and with calibration + cross-talk.
        (dict(regularize=None, origin=MEG_ORIGIN, st_duration=1.0),
         ["--regularize", "none", "--origin", ",".join(map(str, MEG_ORIGIN)), "--st-duration", "1"], (37.0, 38.0)),
        (dict(regularize=None, origin=MEG_ORIGIN, st_duration=1.0, cross_talk=SSS / "ct_sparse.fif",
              calibration=SSS / "sss_cal_3053.dat"),
         ["--regularize", "none", "--origin", ",".join(map(str, MEG_ORIGIN)), "--st-duration", "1",
          "--cross-talk", SSS / "ct_sparse.fif", "--calibration", SSS / "sss_cal_3053.dat"], (39.0, 40.0)),
    ],
)
def test_shielding_fine_calibration_cross_talk(tmp_path, kwargs, args, shielding):
    raw = read(ERM)
    exp = maxwell_filter(raw, coord_frame="meg", **kwargs)
    data, _ = ours(ERM, tmp_path, "--coord-frame", "meg", *args)
    assert_equal_to_mne(data, exp)
    factor = mag_power(raw.get_data(), raw.info) / mag_power(data, raw.info)
    assert shielding[0] <= factor <= shielding[1], factor


def test_all_options_against_maxfilter(tmp_path):
    """test_all's empty-room case: tSSS 1 s + fine calibration + cross-talk + regularize='in'
    against MaxFilter's st1FineCalCrossTalkRegIn file, bounds (1.2, 3.2)."""
    raw = read(ERM)
    kw = dict(calibration=SSS / "sss_cal_3053.dat", cross_talk=SSS / "ct_sparse.fif", st_duration=1.0,
              coord_frame="meg", origin=MEG_ORIGIN)
    exp = maxwell_filter(raw, **kw)
    data, _ = ours(ERM, tmp_path, "--calibration", kw["calibration"], "--cross-talk", kw["cross_talk"],
                   "--st-duration", "1", "--coord-frame", "meg", "--origin", ",".join(map(str, MEG_ORIGIN)))
    assert_equal_to_mne(data, exp)
    mf = read(SSS / "test_move_anon_erm_st1FineCalCrossTalkRegIn_raw_sss.fif")
    assert_meg_snr(as_raw(data, exp), mf, 1.2, 3.2)


@pytest.mark.parametrize(
    "st_duration, st_correlation, st_overlap",
    [
        # Several windows in the 1 s file: MNE >= 1.11 overlaps them by half with Hann
        # weights (st_overlap=True, its default); the 1 s cases above are one window only.
        (0.3, 0.98, True),
        (0.3, 0.9, True),
        (0.5, 0.98, True),
        (0.3, 0.98, False),
    ],
)
def test_tsss_windows_overlap_add_like_mne(tmp_path, st_duration, st_correlation, st_overlap):
    raw = read(ERM)
    exp = maxwell_filter(raw, coord_frame="meg", origin=MEG_ORIGIN, regularize=None, st_duration=st_duration,
                         st_correlation=st_correlation, st_overlap=st_overlap, cross_talk=SSS / "ct_sparse.fif")
    args = ["--coord-frame", "meg", "--origin", ",".join(map(str, MEG_ORIGIN)), "--regularize", "none",
            "--st-duration", str(st_duration), "--st-correlation", str(st_correlation),
            "--cross-talk", SSS / "ct_sparse.fif"] + ([] if st_overlap else ["--no-st-overlap"])
    data, _ = ours(ERM, tmp_path, *args)
    # Measured: ~5e-8 of the RMS (our projection comes from the window's channel Gram matrix,
    # MNE's from two SVDs of time x channel matrices; maxwell/tsss.rs bounds the difference).
    assert_equal_to_mne(data, exp)


def test_tsss_odd_window_is_refused_like_mne(tmp_path):
    raw = read(ERM)
    st = 301 / raw.info["sfreq"]  # 301 samples: Hann windows at half overlap do not add to a constant
    with pytest.raises(ValueError, match="constant output"):
        maxwell_filter(raw, coord_frame="meg", origin=MEG_ORIGIN, regularize=None, st_duration=st)
    proc = run_bf("maxwell", ERM, tmp_path / "o.npy", "--coord-frame", "meg", "--origin", ",".join(map(str, MEG_ORIGIN)),
                  "--regularize", "none", "--st-duration", repr(st), check=False)
    assert proc.returncode != 0 and "overlap-add to a constant" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.npy").exists()


def test_three_d_fine_calibration_against_mne(tmp_path):
    """A 3-D fine-calibration file (three imbalance terms per gradiometer), written by MNE from
    the 1-D test file with added orthogonal terms (../shared has only the 1-D kind)."""
    cal = mne.preprocessing.read_fine_calibration(SSS / "sss_cal_3053.dat")
    cal["imb_cals"] = [np.array([c[0], 0.3 * c[0] + 1e-4, -0.2 * c[0] - 2e-4]) if len(c) == 1 and abs(c[0]) < 0.5 else c
                       for c in cal["imb_cals"]]
    three_d = tmp_path / "sss_cal_3d.dat"
    mne.preprocessing.write_fine_calibration(three_d, cal)
    assert {len(line.split()) for line in three_d.read_text().splitlines()} == {14, 16}  # mags 1, grads 3
    raw = read(ERM)
    exp = maxwell_filter(raw, coord_frame="meg", origin=MEG_ORIGIN, regularize=None, calibration=three_d)
    data, _ = ours(ERM, tmp_path, "--coord-frame", "meg", "--origin", ",".join(map(str, MEG_ORIGIN)),
                   "--regularize", "none", "--calibration", three_d)
    assert_equal_to_mne(data, exp)
