"""`bf-pipeline resample` against MNE's raw.resample(sfreq) (FFT method, MNE's defaults) and
raw.resample(sfreq, method='polyphase') (`--method polyphase`, scipy's resample_poly).

Tolerance: 1e-5 of each channel's RMS (the issue's contract), everywhere including the edges;
stim channels must be equal exactly (they are decimated, not interpolated).
"""
import mne
import numpy as np
import pytest

from conftest import run_bf
from test_filter import mne_test_signal

mne.set_log_level("ERROR")


def check(ours, raw_resampled):
    expected = raw_resampled.get_data()
    assert ours.shape == expected.shape
    stim = mne.pick_types(raw_resampled.info, meg=False, stim=True)
    other = np.setdiff1d(np.arange(len(expected)), stim)
    np.testing.assert_array_equal(ours[stim], expected[stim])
    rms = np.sqrt(np.mean(expected[other] ** 2, axis=1, keepdims=True))
    rms[rms == 0] = 1.0
    rel = np.abs(ours[other] - expected[other]) / rms
    assert rel.max() <= 1e-5, f"max {rel.max():.3g}"


@pytest.mark.parametrize("sfreq", [1100.0, 1000.0])
def test_resample_to_250_matches_mne(sfreq, tmp_path):
    raw = mne_test_signal(sfreq, seconds=20.37)
    src = tmp_path / "r_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "r.npy"
    run_bf("resample", src, out, "--sfreq", "250")
    check(np.load(out), mne.io.read_raw_fif(src, preload=True).resample(250))


def test_upsampling_matches_mne(tmp_path):
    raw = mne_test_signal(250.0, seconds=10.1)
    src = tmp_path / "u_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "u.npy"
    run_bf("resample", src, out, "--sfreq", "1000")
    check(np.load(out), mne.io.read_raw_fif(src, preload=True).resample(1000))


@pytest.mark.parametrize("rel", ["brainvision/tests/data/test_bin_raw.fif", "kit/tests/data/test_bin_raw.fif",
                                 "edf/tests/data/test.edf"])
def test_shared_files_match_mne(rel, shared_data, tmp_path):
    path = shared_data / "mne-python" / rel
    out = tmp_path / "r.npy"
    run_bf("resample", path, out, "--sfreq", "250")
    check(np.load(out), mne.io.read_raw(path, preload=True).resample(250))


# 20.37 s: lengths 22407 → 5092 at 1100 Hz (ratio 5092/22407, a 448141-tap filter) and
# 20370 → 5092 at 1000 Hz (2546/10185); 20 s: 5/22 and 1/4.
@pytest.mark.parametrize("seconds", [20.37, 20.0])
@pytest.mark.parametrize("sfreq", [1100.0, 1000.0])
def test_polyphase_to_250_matches_mne(sfreq, seconds, tmp_path):
    raw = mne_test_signal(sfreq, seconds=seconds)
    src = tmp_path / "p_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "p.npy"
    run_bf("resample", src, out, "--sfreq", "250", "--method", "polyphase")
    check(np.load(out), mne.io.read_raw_fif(src, preload=True).resample(250, method="polyphase"))


@pytest.mark.parametrize("sfreq, new", [(250.0, 1000.0), (250.0, 600.0)])
def test_polyphase_upsampling_matches_mne(sfreq, new, tmp_path):
    raw = mne_test_signal(sfreq, seconds=10.1)
    src = tmp_path / "pu_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "pu.npy"
    run_bf("resample", src, out, "--sfreq", new, "--method", "polyphase")
    check(np.load(out), mne.io.read_raw_fif(src, preload=True).resample(new, method="polyphase"))


@pytest.mark.parametrize("rel", ["brainvision/tests/data/test_bin_raw.fif", "kit/tests/data/test_bin_raw.fif",
                                 "edf/tests/data/test.edf"])
def test_polyphase_shared_files_match_mne(rel, shared_data, tmp_path):
    path = shared_data / "mne-python" / rel
    out = tmp_path / "p.npy"
    run_bf("resample", path, out, "--sfreq", "250", "--method", "polyphase")
    check(np.load(out), mne.io.read_raw(path, preload=True).resample(250, method="polyphase"))


def test_polyphase_fif_keeps_first_samp_and_events(tmp_path):
    raw = mne_test_signal(1100.0, seconds=8)
    raw = mne.io.RawArray(raw.get_data(), raw.info, first_samp=2200)
    src = tmp_path / "pe_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "pe_raw_250.fif"
    run_bf("resample", src, out, "--sfreq", "250", "--method", "polyphase")
    ours = mne.io.read_raw_fif(out)
    theirs = mne.io.read_raw_fif(src, preload=True).resample(250, method="polyphase")
    assert ours.first_samp == theirs.first_samp
    np.testing.assert_array_equal(mne.find_events(ours), mne.find_events(theirs))


def test_bad_method_is_a_clear_error(tmp_path):
    raw = mne_test_signal(1000.0, seconds=1)
    src = tmp_path / "m_raw.fif"
    raw.save(src)
    proc = run_bf("resample", src, tmp_path / "x.npy", "--method", "sinc", check=False)
    assert proc.returncode != 0 and "polyphase" in proc.stderr and "panicked" not in proc.stderr


def test_resampled_fif_keeps_first_samp_and_events(tmp_path):
    raw = mne_test_signal(1100.0, seconds=8)
    raw = mne.io.RawArray(raw.get_data(), raw.info, first_samp=2200)
    src = tmp_path / "e_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "e_raw_250.fif"
    run_bf("resample", src, out, "--sfreq", "250")
    ours = mne.io.read_raw_fif(out)
    theirs = mne.io.read_raw_fif(src, preload=True).resample(250)
    assert ours.first_samp == theirs.first_samp
    assert ours.info["sfreq"] == 250 and ours.info["lowpass"] == pytest.approx(125)
    np.testing.assert_array_equal(mne.find_events(ours), mne.find_events(theirs))


def test_bad_sfreq_is_a_clear_error(tmp_path):
    raw = mne_test_signal(1000.0, seconds=1)
    src = tmp_path / "b_raw.fif"
    raw.save(src)
    proc = run_bf("resample", src, tmp_path / "x.npy", "--sfreq", "-5", check=False)
    assert proc.returncode != 0 and "sfreq" in proc.stderr and "panicked" not in proc.stderr


@pytest.mark.parametrize("sfreq", [1100.0, 1000.0])
def test_clean_chain_matches_mne(sfreq, tmp_path):
    """bf-pipeline preprocess-file = raw.filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)."""
    raw = mne_test_signal(sfreq, seconds=40)
    src = tmp_path / "c_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "c.npy"
    run_bf("preprocess-file", src, out)
    expected = mne.io.read_raw_fif(src, preload=True).filter(0.1, 100).notch_filter([50, 100, 150]).resample(250)
    check(np.load(out), expected)


def mne_padding_jump(y, sfreq, new_sfreq):
    """The jump where MNE's resample padding of `y` wraps around, and its distance from the
    data in output samples (MNE's npad='auto', reflect_limited; see dsp/spectral.rs)."""
    n = len(y)
    total = 2 ** int(np.ceil(np.log2(n + 2 * min(n // 8, 100)))) - n
    npad = (total // 2, total // 2 + total % 2)
    first = 2 * y[0] - y[npad[0]]
    last = 2 * y[-1] - y[-1 - npad[1]]
    return abs(first - last), min(npad) * new_sfreq / sfreq


@pytest.mark.parametrize("exact", [False, True])
def test_clean_fast_path_on_a_long_recording(exact, tmp_path):
    """The default one-FFT path on a recording long enough to take it (300 s at 1100 Hz).

    Tolerance, fast path: ours and MNE differ only by the Gibbs ringing of MNE's padding jump
    J at the wrap-around, d output samples from the data, which reaches the data at about
    J / (pi d) (dsp/spectral.rs); we allow twice that, plus 3e-6 of the RMS for the f32 inverse
    FFT (1.2e-6 seen), and assert that this bound is what made the difference (not a looser test). With
    --exact: MNE's three passes, 1e-5 of the RMS as everywhere else.
    """
    raw = mne_test_signal(1100.0, seconds=300)
    src = tmp_path / "long_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "c.npy"
    run_bf("preprocess-file", src, out, *(["--exact"] if exact else []))
    filtered = mne.io.read_raw_fif(src, preload=True).filter(0.1, 100).notch_filter([50, 100, 150])
    expected = filtered.copy().resample(250)
    if exact:
        check(np.load(out), expected)
        return
    ours, want = np.load(out), expected.get_data()
    data = mne.pick_types(raw.info, meg=True, eeg=True)
    for ch in range(len(want)):
        rms = np.sqrt(np.mean(want[ch] ** 2)) or 1.0
        err = np.abs(ours[ch] - want[ch]).max() / rms
        if ch not in data:
            assert err <= 1e-5, (ch, err)       # resampled only: the f32 inverse alone
            continue
        jump, dist = mne_padding_jump(filtered.get_data()[ch], 1100.0, 250.0)
        bound = 2 * jump / (np.pi * dist) / rms + 3e-6
        print(f"channel {ch}: {err:.3g} (bound {bound:.3g})")
        assert err <= bound, f"channel {ch}: {err:.3g} > bound {bound:.3g}"
        assert err > 1e-9, "the fast path was not taken"
