"""`bf-pipeline interpolate-bads` against MNE's raw.interpolate_bads (EEG spherical splines),
and `bf-pipeline find-bads` on injected flat and noisy channels.

Interpolation tolerance: 1e-5 of each channel's RMS in MNE's result (the contract for every
MNE-equivalent stage). Both sides build the same spline matrix (50 Legendre terms, stiffness
4, alpha 1e-5, the same Clenshaw sum) and pseudo-invert it with the same cut-off
(max(M, N)·eps·s_max); alpha keeps the matrix's condition number near 1e6, so the two SVD
algorithms (LAPACK's gesdd, nalgebra's Golub–Kahan) differ by eps·cond: we measure ≈3e-10
with an explicit origin. With origin='auto' on a FIF file MNE fits the sphere to float32 dig
points in single precision (numpy lstsq keeps float32), we in float64: the origins differ by
~1e-9 m and the outputs by ≈1e-7. 1e-5 leaves a wide margin over both while still catching
any real difference (a wrong term count, alpha or origin rule moves results by >1e-4).
"""
import json

import mne
import numpy as np
import pytest

from conftest import assert_data_matches_mne, run_bf

mne.set_log_level("ERROR")


def correlated_data(n_ch, n, seed, sfreq):
    """Random data with spatial correlation (a few shared sources) and 1/f-ish time course."""
    rng = np.random.default_rng(seed)
    src = np.cumsum(rng.standard_normal((8, n)), axis=1) * 0.05 + rng.standard_normal((8, n))
    mix = rng.standard_normal((n_ch, 8))
    scale = np.exp(0.2 * rng.standard_normal((n_ch, 1)))
    return (mix @ src + 0.5 * rng.standard_normal((n_ch, n))) * scale


def colored_data(n_ch, n, seed, sfreq):
    """Like EEG/MEG: spatially correlated sources with most power at low frequencies
    (AR(1), 0.95) plus a little white sensor noise, channel gains spread log-normally."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    src = lfilter([1.0], [1.0, -0.95], rng.standard_normal((8, n)), axis=1)
    mix = rng.standard_normal((n_ch, 8))
    scale = np.exp(0.3 * rng.standard_normal((n_ch, 1)))
    return (mix @ src + 0.3 * rng.standard_normal((n_ch, n))) * scale


def neuromag_raw(shared_data, seed=0, seconds=4.0, make_data=correlated_data):
    """A Neuromag-shaped raw: the 306 MEG + 60 EEG (+ EOG, stim) channel definitions and
    positions of MNE's test-ave.fif.gz measurement info, with random correlated data."""
    evoked = mne.read_evokeds(shared_data / "mne-python" / "tests" / "data" / "test-ave.fif.gz")[0]
    info = evoked.info.copy()
    with info._unlock():
        info["bads"] = []
    n = int(seconds * 250)
    scale = {"mag": 1e-13, "grad": 1e-11, "eeg": 1e-5, "eog": 1e-4, "stim": 1.0}
    types = evoked.get_channel_types()
    data = make_data(len(types), n, seed, info["sfreq"])
    data *= np.array([scale.get(t, 1.0) for t in types])[:, None]
    return mne.io.RawArray(data, info)


def montage_raw(name="standard_1020", n_eeg=64, seed=1):
    """EEG-only raw with a standard montage (its dig: fiducials + EEG points, no head shape)."""
    mont = mne.channels.make_standard_montage(name)
    names = mont.ch_names[:n_eeg]
    info = mne.create_info(names + ["EOG1", "STI"], 500.0, ["eeg"] * len(names) + ["eog", "stim"])
    data = correlated_data(len(names) + 2, 2000, seed, 500.0) * 1e-5
    data[-1] = 0
    raw = mne.io.RawArray(data, info)
    raw.set_montage(mont, on_missing="ignore")
    return raw


def check(ours, expected, rows):
    rms = np.sqrt(np.mean(expected[rows] ** 2, axis=1, keepdims=True))
    err = np.abs(ours[rows] - expected[rows]) / rms
    print(f"max relative error (per-channel RMS): {err.max():.3g}")
    assert err.max() <= 1e-5, f"max relative error {err.max():.3g}"


def run_both(raw, tmp_path, bads, origin, extra_args=()):
    raw.info["bads"] = list(bads)
    src = tmp_path / "in_raw.fif"
    raw.save(src, fmt="double", overwrite=True)
    out = tmp_path / "out.npy"
    args = ["interpolate-bads", src, out, *extra_args]
    if not isinstance(origin, str):
        args += ["--origin", ",".join(repr(float(v)) for v in origin)]
    run_bf(*args)
    ref = mne.io.read_raw_fif(src, preload=True)
    ref.interpolate_bads(reset_bads=True, mode="accurate", origin=origin)
    return np.load(out), ref


@pytest.mark.parametrize("bads,origin", [
    (["EEG 001", "EEG 023", "EEG 053"], (0.0, 0.0, 0.04)),
    (["EEG 010", "EEG 011"], (0.001, -0.002, 0.035)),
])
def test_interpolation_matches_mne_on_neuromag(bads, origin, shared_data, tmp_path):
    raw = neuromag_raw(shared_data)
    ours, ref = run_both(raw, tmp_path, bads, origin)
    expected = ref.get_data()
    picks = [raw.ch_names.index(b) for b in bads]
    check(ours, expected, picks)
    # Every other channel passes through unchanged (as our reader reads it: MNE's values to
    # within the reader contract, see conftest.assert_data_matches_mne).
    others = [i for i in range(len(raw.ch_names)) if i not in picks]
    assert_data_matches_mne(ours[others], expected[others])


def test_meg_bads_stay_and_eeg_bads_leave_the_fif_bads(shared_data, tmp_path):
    raw = neuromag_raw(shared_data, seed=3)
    raw.info["bads"] = ["MEG 0113", "EEG 005"]
    src = tmp_path / "in_raw.fif"
    raw.save(src, fmt="double")
    out = tmp_path / "out_raw.fif"
    run_bf("interpolate-bads", src, out, "--bads", "EEG 040", "--origin", "0,0,0.04")
    back = mne.io.read_raw_fif(out, preload=True)
    assert back.info["bads"] == ["MEG 0113"]
    # The same as MNE interpolating EEG 005 and EEG 040 (float32 output: 1e-6 relative).
    ref = mne.io.read_raw_fif(src, preload=True)
    ref.info["bads"] = ["EEG 005", "EEG 040"]
    ref.interpolate_bads(origin=(0, 0, 0.04))
    rows = [raw.ch_names.index(c) for c in ("EEG 005", "EEG 040")]
    expected = ref.get_data()[rows]
    rms = np.sqrt(np.mean(expected ** 2, axis=1, keepdims=True))
    assert (np.abs(back.get_data()[rows] - expected) / rms).max() < 1e-6


@pytest.mark.parametrize("montage", ["standard_1020", "biosemi64"])
def test_auto_origin_matches_mne_with_a_montage(montage, tmp_path):
    """origin='auto': MNE fits its EEG dig points, which set_montage makes equal to the
    electrode positions we fit, so the result is MNE's to the same tolerance (the float32
    fit on MNE's side is the largest difference, ≈1e-7)."""
    raw = montage_raw(montage)
    bads = [raw.ch_names[3], raw.ch_names[20], raw.ch_names[41]]
    ours, ref = run_both(raw, tmp_path, bads, "auto")
    check(ours, ref.get_data(), [raw.ch_names.index(b) for b in bads])


def test_explicit_origin_with_a_montage(tmp_path):
    raw = montage_raw("biosemi64", seed=5)
    bads = ["Fp1", "Oz"]
    ours, ref = run_both(raw, tmp_path, bads, (0.0, 0.01, 0.03))
    check(ours, ref.get_data(), [raw.ch_names.index(b) for b in bads])


def test_missing_positions_are_a_clear_error(tmp_path):
    info = mne.create_info(["A", "B", "C", "D", "E"], 100.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).standard_normal((5, 100)) * 1e-5, info)
    raw.info["bads"] = ["B"]
    src = tmp_path / "nopos_raw.fif"
    raw.save(src)
    proc = run_bf("interpolate-bads", src, tmp_path / "o.npy", check=False)
    assert proc.returncode != 0
    assert "no valid position" in proc.stderr and "B" in proc.stderr, proc.stderr
    proc = run_bf("interpolate-bads", src, tmp_path / "o.npy", "--bads", "Z", check=False)
    assert proc.returncode != 0 and "Z" in proc.stderr


def find_bads(path):
    return json.loads(run_bf("find-bads", path, "--json").stdout)


def test_find_bads_flat_and_noisy(shared_data, tmp_path):
    raw = neuromag_raw(shared_data, seed=11, seconds=20.0, make_data=colored_data)
    src = tmp_path / "clean_raw.fif"
    raw.save(src, fmt="double")
    assert find_bads(src)["names"] == []

    data = raw.get_data()
    names = raw.ch_names
    flat, loud, hf, flat_mag = "EEG 007", "EEG 031", "EEG 044", "MEG 1421"
    data[names.index(flat)] = 1e-3                       # a constant offset: disconnected
    data[names.index(loud)] *= 20                        # 26 dB louder than its neighbours
    rng = np.random.default_rng(5)
    i = names.index(hf)
    data[i] += 0.5 * data[i].std() * rng.standard_normal(data.shape[1])  # broadband noise
    data[names.index(flat_mag)] = 0
    bad = mne.io.RawArray(data, raw.info)
    src = tmp_path / "bad_raw.fif"
    bad.save(src, fmt="double")
    doc = find_bads(src)
    reasons = {b["name"]: b["reason"] for b in doc["bads"]}
    assert reasons == {flat: "flat", loud: "noisy_variance", hf: "noisy_high_freq", flat_mag: "flat"}, doc
    for b in doc["bads"]:
        if b["z"] is not None:
            assert b["z"] > 5
    # The table form lists the same names on its last line.
    last = run_bf("find-bads", src).stdout.strip().splitlines()[-1]
    assert last == "bads: " + ",".join(doc["names"])
