"""`bf-pipeline filter` against MNE's raw.filter(l_freq, h_freq).notch_filter(freqs).

Tolerance: 1e-5 of each channel's RMS in the central 80 % (the issue's contract). Both sides
run the same design (tested bit for bit in test_filter_design.py) and the same overlap-add
with reflect_limited padding, so the edges agree too; we check them at the same tolerance and
report the largest deviation seen anywhere.
"""
import mne
import numpy as np
import pytest

from conftest import run_bf

mne.set_log_level("ERROR")


def mne_test_signal(sfreq, seconds=30.0, seed=0):
    """Colored noise + 50 Hz harmonics + drift on EEG and MEG channels, plus a stim channel."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    names = ["MEG0111", "MEG0112", "MEG0113", "EEG001", "EEG002", "EOG061", "STI101"]
    types = ["mag", "grad", "grad", "eeg", "eeg", "eog", "stim"]
    scale = np.array([1e-12, 1e-11, 1e-11, 1e-5, 1e-5, 1e-4, 1.0])[:, None]
    white = rng.standard_normal((len(names), n))
    colored = np.cumsum(white, axis=1) * 0.02 + white                     # 1/f-ish
    line = sum(a * np.sin(2 * np.pi * f * t) for a, f in [(1.0, 50), (0.5, 100), (0.25, 150)])
    drift = 3 * np.sin(2 * np.pi * 0.05 * t)
    data = (colored + line + drift) * scale
    data[-1] = (np.arange(n) % int(sfreq) == 0) * 5.0
    return mne.io.RawArray(data, mne.create_info(names, sfreq, types))


def check(ours, expected):
    n = ours.shape[1]
    mid = slice(n // 10, n - n // 10)
    rms = np.sqrt(np.mean(expected[:, mid] ** 2, axis=1, keepdims=True))
    rms[rms == 0] = 1.0
    rel = np.abs(ours - expected) / rms
    assert rel[:, mid].max() <= 1e-5, f"central max {rel[:, mid].max():.3g}"
    assert rel.max() <= 1e-5, f"edges reach {rel.max():.3g}"


@pytest.mark.parametrize("sfreq", [1000.0, 1100.0])
def test_bandpass_and_notch_match_mne(sfreq, tmp_path):
    raw = mne_test_signal(sfreq)
    src = tmp_path / "sig_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "f.npy"
    run_bf("filter", src, out, "--l-freq", "0.1", "--h-freq", "100", "--notch", "50,100,150")
    expected = mne.io.read_raw_fif(src, preload=True).filter(0.1, 100).notch_filter([50, 100, 150]).get_data()
    check(np.load(out), expected)


@pytest.mark.parametrize("args,call", [
    (["--h-freq", "40"], lambda r: r.filter(None, 40)),
    (["--l-freq", "1"], lambda r: r.filter(1, None)),
    (["--l-freq", "55", "--h-freq", "45", "--l-trans-bandwidth", "2", "--h-trans-bandwidth", "2"],
     lambda r: r.filter(55, 45, l_trans_bandwidth=2, h_trans_bandwidth=2)),
])
def test_low_high_and_band_stop_match_mne(args, call, tmp_path):
    raw = mne_test_signal(1000.0, seconds=20, seed=1)
    src = tmp_path / "s_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "f.npy"
    run_bf("filter", src, out, *args)
    check(np.load(out), call(mne.io.read_raw_fif(src, preload=True)).get_data())


@pytest.mark.parametrize("rel", ["brainvision/tests/data/test_bin_raw.fif", "kit/tests/data/test_bin_raw.fif",
                                 "edf/tests/data/test.edf"])
def test_shared_files_match_mne(rel, shared_data, tmp_path):
    path = shared_data / "mne-python" / rel
    out = tmp_path / "f.npy"
    run_bf("filter", path, out, "--l-freq", "1", "--h-freq", "40")
    raw = mne.io.read_raw(path, preload=True)
    check(np.load(out), raw.filter(1, 40).get_data())


def test_filter_writes_fif_that_mne_reads(tmp_path):
    raw = mne_test_signal(1000.0, seconds=10)
    src = tmp_path / "w_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "filtered_raw.fif"
    run_bf("filter", src, out, "--l-freq", "1", "--h-freq", "40")
    back = mne.io.read_raw_fif(out)
    assert back.info["highpass"] == pytest.approx(1.0) and back.info["lowpass"] == pytest.approx(40.0)
    expected = mne.io.read_raw_fif(src, preload=True).filter(1, 40).get_data()
    peak = np.abs(expected).max(axis=1, keepdims=True)
    peak[peak == 0] = 1
    assert (np.abs(back.get_data() - expected) / peak).max() <= 2.0 ** -23  # float32 storage


@pytest.mark.parametrize("args,needle", [
    (["--h-freq", "600"], "Nyquist"),
    (["--l-freq", "-1"], "l_freq"),
    ([], "nothing to do"),
])
def test_bad_parameters_are_clear_errors(args, needle, tmp_path):
    raw = mne_test_signal(1000.0, seconds=2)
    src = tmp_path / "b_raw.fif"
    raw.save(src)
    proc = run_bf("filter", src, tmp_path / "x.npy", *args, check=False)
    assert proc.returncode != 0
    assert needle.lower() in proc.stderr.lower(), proc.stderr
    assert "panicked" not in proc.stderr


def test_filtering_stops_at_skip_and_edge_annotations(tmp_path):
    """raw.filter/notch_filter's default skip_by_annotation=('edge', 'bad_acq_skip'): each
    stretch between such annotations is filtered on its own, the skipped samples are left as
    they are. Same tolerance as above (1e-5 of each channel's RMS)."""
    raw = mne_test_signal(1000.0, seconds=60)
    raw.set_annotations(mne.Annotations([12.0, 30.5, 41.0], [3.0, 0.0, 1.0], ["BAD_ACQ_SKIP", "EDGE boundary", "BAD_blink"]))
    src = tmp_path / "ann_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "f.npy"
    run_bf("filter", src, out, "--l-freq", "1", "--h-freq", "40", "--notch", "50")
    expected = mne.io.read_raw_fif(src, preload=True).filter(1, 40).notch_filter([50]).get_data()
    check(np.load(out), expected)
