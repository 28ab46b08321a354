"""`bf-pipeline find-bads-maxwell` against MNE's `find_bad_channels_maxwell`.

Data: MNE's testing file `SSS/test_move_anon_erm_raw.fif` (1 s of MaxShield empty-room data,
no dev_head_t, so coord_frame="meg") as it is, and a copy MNE writes here with one gradiometer
set to zero (flat), one magnetometer and one gradiometer given white noise (noisy: two
rounds of the iterative exclusion) and one channel marked bad in info (scores NaN), so that
both lists are non-empty and the test can fail; with and without fine calibration +
cross-talk, regularize="in" (MNE's default) and None; and in the head frame (MNE's default
coord_frame) on that copy given the dev_head_t of MNE's test-ave.fif.gz. MNE's
regularize="in" in the head frame takes ~10 s per SSS decomposition here, so the head-frame
cases use regularize=None (with origin="auto" that basis is badly conditioned: the test
checks that we refuse it as MNE does, with the same condition number).

The file is 1 s long, so the chunks are 0.5 s (MNE's default 5 s would give none) and
min_count is 2. MNE recomputes the whole SSS decomposition for every chunk and every noisy
round (~1-5 s per case here), which is what bounds the number of cases.
Measured (MNE 1.13): lists identical in every case, noisy z-scores within ~1e-12, flat scores
within ~6e-14 relative.

Compared: the noisy and flat lists (exactly), and MNE's return_scores: bins, flat scores
(window standard deviations, rtol 1e-7) and noisy z-scores (atol 1e-6), NaN where MNE has NaN.
"""
import json

import numpy as np
import pytest

from conftest import SHARED_DATA, run_bf

mne = pytest.importorskip("mne")
from mne.preprocessing import find_bad_channels_maxwell  # noqa: E402

SSS = SHARED_DATA / "mne-testing-data" / "SSS"
ERM = SSS / "test_move_anon_erm_raw.fif"
CAL = SSS / "sss_cal_3053.dat"
CT = SSS / "ct_sparse.fif"
AVE = SHARED_DATA / "mne-python" / "tests" / "data" / "test-ave.fif.gz"
FLAT, NOISY, NOISY2, BAD = "MEG0112", "MEG1421", "MEG2443", "MEG0913"

pytestmark = pytest.mark.skipif(not ERM.exists(), reason=f"{ERM} is absent (needs ../shared/data)")


def read(fname):
    return mne.io.read_raw_fif(fname, allow_maxshield=True, verbose="error").load_data()


def write_modified(path, dev_head_t=None):
    raw = read(ERM)
    if dev_head_t is not None:
        with raw.info._unlock():
            raw.info["dev_head_t"] = dev_head_t
    data = raw._data
    data[raw.ch_names.index(FLAT)] = 0.0
    i = raw.ch_names.index(NOISY)
    rng = np.random.default_rng(0)
    data[i] += 20 * data[i].std() * rng.standard_normal(data.shape[1])
    i = raw.ch_names.index(NOISY2)
    data[i] += 8 * data[i].std() * rng.standard_normal(data.shape[1])
    raw.info["bads"] = [BAD]
    raw.save(path, verbose="error")
    return path


@pytest.fixture(scope="module")
def modified(tmp_path_factory):
    return write_modified(tmp_path_factory.mktemp("fbm") / "erm_flat_noisy_raw.fif")


@pytest.fixture(scope="module")
def modified_head(tmp_path_factory):
    """The modified copy with the device→head transform of MNE's test-ave.fif.gz."""
    if not AVE.exists():
        pytest.skip(f"{AVE} is absent")
    trans = mne.read_evokeds(AVE, condition=0, verbose="error").info["dev_head_t"]
    return write_modified(tmp_path_factory.mktemp("fbm") / "erm_flat_noisy_head_raw.fif", trans)


def compare(path, regularize, duration, min_count, cal_ct, coord_frame="meg", origin="auto"):
    kw = dict(calibration=str(CAL), cross_talk=str(CT)) if cal_ct else {}
    noisy, flat, scores = find_bad_channels_maxwell(
        read(path), coord_frame=coord_frame, origin=origin, regularize=regularize, duration=duration,
        min_count=min_count, return_scores=True, verbose="error", **kw)
    args = ["find-bads-maxwell", path, "--json", "--coord-frame", coord_frame,
            "--origin", origin if origin == "auto" else ",".join(map(str, origin)),
            "--regularize", regularize or "none", "--duration", str(duration), "--min-count", str(min_count)]
    if cal_ct:
        args += ["--calibration", CAL, "--cross-talk", CT]
    ours = json.loads(run_bf(*args).stdout)
    assert ours["noisy"] == noisy
    assert ours["flat"] == flat
    s = ours["scores"]
    assert s["ch_names"] == list(scores["ch_names"])
    assert s["ch_types"] == list(scores["ch_types"])
    f = lambda k: np.array(s[k], dtype=float)  # JSON null -> NaN
    np.testing.assert_allclose(f("bins"), scores["bins"], rtol=0, atol=1e-12)
    for key, tol in [("scores_flat", dict(rtol=1e-7, atol=1e-24)), ("scores_noisy", dict(rtol=0, atol=1e-6)),
                     ("limits_flat", dict(rtol=0, atol=0)), ("limits_noisy", dict(rtol=0, atol=0))]:
        got, exp = f(key).reshape(scores[key].shape), scores[key]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp), err_msg=key)
        np.testing.assert_allclose(got, exp, err_msg=key, equal_nan=True, **tol)
    return noisy, flat, scores


@pytest.mark.parametrize("regularize, cal_ct", [(None, False), ("in", True)], ids=["none-plain", "in-cal_ct"])
def test_original_file(regularize, cal_ct):
    noisy, flat, _ = compare(ERM, regularize, 0.5, 2, cal_ct)
    assert noisy == [] and flat == []


@pytest.mark.parametrize("regularize, cal_ct", [("in", True), (None, False)], ids=["in-cal_ct", "none-plain"])
def test_flat_and_noisy_channels_found(modified, regularize, cal_ct):
    # regularize="in" costs MNE several seconds per decomposition: one 1 s chunk there.
    duration, min_count = (1.0, 1) if regularize == "in" else (0.5, 2)
    noisy, flat, scores = compare(modified, regularize, duration, min_count, cal_ct)
    assert flat == [FLAT]
    assert noisy == [NOISY, NOISY2]
    assert np.isnan(scores["scores_noisy"][list(scores["ch_names"]).index(BAD)]).all()



def test_a_channel_flat_only_in_later_chunks(tmp_path):
    """A channel that goes flat halfway through (the 4th of 4 chunks of 0.25 s) is a candidate
    in the noisy passes of the chunks before, and left out from its own on: our chunks run in
    parallel batches whose flat results are merged in chunk order, so each chunk's noisy pass
    must see the flat channels as of that chunk, not as of the batch (MNE's loop is sequential).
    A second channel, zero over the first half only, stays left out of the 3rd and 4th chunks
    where it has data again (flat channels accumulate). A zero stretch must be longer than a
    chunk to count: the 40 Hz low-pass (396 taps) fills a short one in. Scores compared with
    MNE's chunk by chunk (NaN where it has NaN)."""
    raw = read(ERM)
    data = raw._data
    n = data.shape[1]
    late, early = "MEG0121", "MEG1711"
    data[raw.ch_names.index(late), 3 * n // 4:] = 0.0
    data[raw.ch_names.index(early), : n // 2] = 0.0
    i = raw.ch_names.index(NOISY)
    data[i] += 20 * data[i].std() * np.random.default_rng(1).standard_normal(n)
    path = tmp_path / "erm_late_flat_raw.fif"
    raw.save(path, verbose="error")
    noisy, flat, scores = compare(path, None, 0.25, 1, False)
    # The late one is also noisy where it drops to zero (MNE finds the same).
    assert flat == sorted([late, early], key=raw.ch_names.index) and NOISY in noisy
    nz = scores["scores_noisy"][list(scores["ch_names"]).index(late)]
    assert not np.isnan(nz[:3]).any() and np.isnan(nz[3:]).all(), nz
    ez = scores["scores_noisy"][list(scores["ch_names"]).index(early)]
    assert np.isnan(ez).all(), ez  # flat in chunk 1: left out of every noisy pass, 3 and 4 too


@pytest.mark.parametrize("origin", [(0.0, 0.0, 0.04)], ids=["origin_0_0_40mm"])
def test_head_frame(modified_head, origin):
    """coord_frame="head" (MNE's default) on the copy with a device→head transform."""
    noisy, flat, _ = compare(modified_head, None, 1.0, 1, False, coord_frame="head", origin=origin)
    assert flat == [FLAT]
    assert len(noisy) > 0


def test_badly_conditioned_like_mne(modified_head):
    """Head frame, origin fitted to the head shape, regularize=None: MNE refuses the first
    decomposition (the flat channel already left out) as badly conditioned; so do we, with
    the same condition number."""
    with pytest.raises(RuntimeError, match="badly conditioned") as exc:
        find_bad_channels_maxwell(read(modified_head), regularize=None, duration=1.0, min_count=1, verbose="error")
    cond = exc.value.args[0].split(": ")[1].split(" ")[0]
    proc = run_bf("find-bads-maxwell", modified_head, "--regularize", "none", "--duration", "1", "--min-count", "1",
                  check=False)
    assert proc.returncode != 0
    assert f"badly conditioned: {cond} >= 1000" in proc.stderr
