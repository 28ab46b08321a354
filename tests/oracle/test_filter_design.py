"""`bf-pipeline filter-design` against MNE's FIR design (mne.filter.create_filter / notch_filter).

Tolerance 1e-9 absolute on every tap: ours and MNE's are both double-precision evaluations of
the same closed form (windowed sincs, summed and normalized in the same order), so they can
differ only by the last-bit rounding of sin/cos/sum implementations (libm vs numpy's SIMD
loops) — a few 1e-16 per tap, far below 1e-9 — whereas any real design difference (another
length, transition band, window, cut-off or scaling) changes taps by 1e-4 or more.

Where MNE raises for a parameter combination, we must exit non-zero too.
"""
import json

import mne
import numpy as np
import pytest

from conftest import run_bf

ATOL = 1e-9

SFREQS = (250.0, 1000.0, 1100.0, 2048.0)
# (l_freq, h_freq): low-pass, high-pass, band-pass, band-stop (l > h).
SPECS = [(None, 40.0), (None, 100.0), (0.1, None), (1.0, None),
         (0.1, 100.0), (1.0, 40.0), (0.5, 30.0), (55.0, 45.0)]


def mne_filter(sfreq, l_freq, h_freq, **kw):
    return mne.filter.create_filter(None, sfreq, l_freq, h_freq, method="fir", phase="zero",
                                    fir_window="hamming", fir_design="firwin", verbose="error",
                                    **kw)


def bf_args(sfreq, l_freq=None, h_freq=None, l_trans_bandwidth=None, h_trans_bandwidth=None,
            filter_length=None, notch=None):
    args = ["filter-design", f"--sfreq={sfreq!r}"]
    for name, v in [("l-freq", l_freq), ("h-freq", h_freq),
                    ("l-trans-bandwidth", l_trans_bandwidth),
                    ("h-trans-bandwidth", h_trans_bandwidth), ("filter-length", filter_length)]:
        if v is not None:
            args.append(f"--{name}={v!r}")
    if notch is not None:
        args.append("--notch=" + ",".join(repr(float(f)) for f in notch))
    return args


def bf_filter(sfreq, **kw):
    doc = json.loads(run_bf(*bf_args(sfreq, **kw)).stdout)
    return np.array(doc["h"], dtype=np.float64)


def check_against_mne(sfreq, l_freq, h_freq, **kw):
    mne_kw = {k: v for k, v in kw.items() if v is not None}
    try:
        want = mne_filter(sfreq, l_freq, h_freq, **mne_kw)
    except ValueError as e:
        proc = run_bf(*bf_args(sfreq, l_freq, h_freq, **kw), check=False)
        assert proc.returncode != 0, f"MNE rejects this ({e}) but we accepted it"
        assert "error" in proc.stderr
        return None
    ours = bf_filter(sfreq, l_freq=l_freq, h_freq=h_freq, **kw)
    assert ours.shape == want.shape
    err = np.abs(ours - want).max()
    assert err <= ATOL, f"max abs difference {err:.3g}"
    return err


@pytest.mark.parametrize("sfreq", SFREQS)
@pytest.mark.parametrize("l_freq,h_freq", SPECS)
def test_grid_matches_mne(sfreq, l_freq, h_freq):
    check_against_mne(sfreq, l_freq, h_freq)


@pytest.mark.parametrize("sfreq,l_freq,h_freq,kw", [
    (1000.0, None, 40.0, dict(h_trans_bandwidth=5.0)),
    (1000.0, 1.0, None, dict(l_trans_bandwidth=0.5)),
    (1000.0, 1.0, 40.0, dict(l_trans_bandwidth=0.5, h_trans_bandwidth=10.0, filter_length=8000)),
    (1000.0, 55.0, 45.0, dict(l_trans_bandwidth=1.0, h_trans_bandwidth=1.0)),
    (1100.0, 55.0, 45.0, dict(l_trans_bandwidth=1.0, h_trans_bandwidth=2.0)),
    (250.0, 55.0, 45.0, dict(l_trans_bandwidth=2.0, h_trans_bandwidth=2.0)),
    (2048.0, 0.5, 30.0, dict(filter_length=20001)),
    (1000.0, None, 40.0, dict(filter_length=1000)),  # even: made odd like MNE
    (250.0, None, 100.0, dict(h_trans_bandwidth=25.0)),  # stop band edge exactly at Nyquist
    (1000.0, 0.0, None, {}),  # l_freq=0 is no filter at all in MNE
    (1000.0, 500.0, None, {}),  # MNE accepts a high-pass edge at Nyquist
])
def test_explicit_parameters_match_mne(sfreq, l_freq, h_freq, kw):
    assert check_against_mne(sfreq, l_freq, h_freq, **kw) is not None


@pytest.mark.parametrize("sfreq", [1100.0, 1000.0])
def test_notch_kernel_matches_mne(sfreq):
    freqs = np.array([50.0, 100.0, 150.0])
    ours = bf_filter(sfreq, notch=freqs)
    # 1) The design notch_filter delegates to: it calls filter_data(x, Fs, highs, lows, ...,
    #    l_trans_bandwidth=tb/2, h_trans_bandwidth=tb/2), which designs one combined multi-band
    #    stop kernel with create_filter(l_freq=highs, h_freq=lows, ...).
    tb_2 = 1.0 / 2.0
    nw = freqs / 200.0
    lows = [f - w / 2.0 - tb_2 for f, w in zip(freqs, nw)]
    highs = [f + w / 2.0 + tb_2 for f, w in zip(freqs, nw)]
    want = mne_filter(sfreq, highs, lows, l_trans_bandwidth=tb_2, h_trans_bandwidth=tb_2)
    assert ours.shape == want.shape
    assert np.abs(ours - want).max() <= ATOL
    # 2) What notch_filter really applies, independently of its internals: its response to a
    #    unit impulse far (more than one kernel length) from the edges is the kernel itself
    #    (zero phase, so centred on the impulse); FFT overlap-add adds ~1e-16 round-off.
    n = len(ours)
    x = np.zeros(3 * n + 1)
    c = len(x) // 2
    x[c] = 1.0
    y = mne.filter.notch_filter(x, sfreq, freqs, method="fir", phase="zero",
                                fir_window="hamming", fir_design="firwin", verbose="error")
    applied = y[c - n // 2: c + n // 2 + 1]
    assert np.abs(ours - applied).max() <= ATOL
    assert np.abs(np.delete(y, np.arange(c - n // 2, c + n // 2 + 1))).max() <= ATOL


@pytest.mark.parametrize("args,message", [
    (dict(sfreq=1000.0, h_freq=500.0), "Nyquist"),
    (dict(sfreq=1000.0, h_freq=600.0), "Nyquist"),
    (dict(sfreq=1000.0, l_freq=600.0), "Nyquist"),
    (dict(sfreq=1000.0, l_freq=-1.0), "greater than zero"),
    (dict(sfreq=1000.0, l_freq=float("nan")), "finite"),
    (dict(sfreq=0.0, h_freq=40.0), "sfreq"),
    (dict(sfreq=1000.0, l_freq=40.0, h_freq=40.0), "neither a band-pass"),
    (dict(sfreq=1000.0, l_freq=55.0, h_freq=45.0), "not sufficiently separated"),
    (dict(sfreq=1000.0, l_freq=1.0, filter_length=101), "too short"),
    (dict(sfreq=1000.0, l_freq=1.0, l_trans_bandwidth=5.0), "negative"),
    (dict(sfreq=1000.0, h_freq=40.0, h_trans_bandwidth=-1.0), "positive"),
    (dict(sfreq=100.0, h_freq=40.0, h_trans_bandwidth=20.0), "Nyquist"),
    (dict(sfreq=1000.0, notch=[600.0]), "Nyquist"),
    (dict(sfreq=1000.0, notch=[50.0, 50.5]), "not sufficiently separated"),
    (dict(sfreq=1000.0, notch=[50.0], filter_length=1001), "too short"),
])
def test_bad_input_is_an_error(args, message):
    proc = run_bf(*bf_args(**args), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "panicked" not in proc.stderr


def test_bad_inputs_are_also_rejected_by_mne():
    """The errors above mirror MNE's: it raises for the same designs (NaN aside)."""
    for sfreq, l_freq, h_freq, kw in [
        (1000.0, None, 500.0, {}), (1000.0, None, 600.0, {}), (1000.0, 600.0, None, {}),
        (1000.0, -1.0, None, {}),
        (1000.0, 40.0, 40.0, {}), (1000.0, 55.0, 45.0, {}),
        (1000.0, 1.0, None, dict(filter_length=101)),
        (1000.0, 1.0, None, dict(l_trans_bandwidth=5.0)),
        (1000.0, None, 40.0, dict(h_trans_bandwidth=-1.0)),
        (100.0, None, 40.0, dict(h_trans_bandwidth=20.0)),
    ]:
        with pytest.raises(ValueError):
            mne_filter(sfreq, l_freq, h_freq, **kw)
