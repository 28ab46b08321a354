"""Oracle tests of our EDF/EDF+/BDF reader against MNE-Python's read_raw_edf / read_raw_bdf.

Files: the EDF/BDF files of MNE's own test data (../shared/data) and files written here with
edfio (mixed per-channel sampling rates, EDF+ annotations) and mne.export.export_raw.
What must match: channel names/kinds/units, sfreq, n_samples, meas_date, highpass/lowpass,
annotations (onset relative to the first sample, duration, description) exactly, and the
samples to float32 rounding of each channel's peak (assert_data_matches_mne).
"""
import datetime as dt

import mne
import numpy as np
import pytest

from conftest import assert_data_matches_mne, assert_info_matches_mne, bf_convert, bf_info, run_bf

EDF_DIR = ("mne-python", "edf", "tests", "data")


def read_mne(path):
    path = str(path)
    reader = mne.io.read_raw_bdf if path.lower().endswith(".bdf") else mne.io.read_raw_edf
    return reader(path, preload=True, verbose="error")


def assert_annotations_match(ours, raw):
    ann = raw.annotations
    got = ours["annotations"]
    assert [a["description"] for a in got] == list(ann.description)
    np.testing.assert_allclose([a["onset"] for a in got], ann.onset - raw.first_time, rtol=0, atol=1e-12)
    np.testing.assert_allclose([a["duration"] for a in got], ann.duration, rtol=0, atol=1e-12)


def assert_meta_matches(ours, raw):
    md = raw.info["meas_date"]
    if md is None:
        assert ours["meas_date_secs"] is None
    else:
        secs = int((md - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds() // 1)
        assert ours["meas_date_secs"] == [secs, md.microsecond]
    assert ours["highpass"] == pytest.approx(raw.info["highpass"], rel=1e-12)
    assert ours["lowpass"] == pytest.approx(raw.info["lowpass"], rel=1e-12)


def check_file(path, tmp_path):
    raw = read_mne(path)
    ours = bf_info(path)
    assert_info_matches_mne(ours, raw)
    assert_meta_matches(ours, raw)
    assert_annotations_match(ours, raw)
    assert_data_matches_mne(bf_convert(path, tmp_path), raw.get_data())
    return ours, raw


@pytest.mark.parametrize("name", ["test.edf", "test.bdf", "test_stim_channel.edf"])
def test_mne_test_files(shared_data, tmp_path, name):
    check_file(shared_data.joinpath(*EDF_DIR, name), tmp_path)


def test_picks_and_crop(shared_data, tmp_path):
    path = shared_data.joinpath(*EDF_DIR, "test.edf")
    raw = read_mne(path)
    picks = [raw.ch_names[3], raw.ch_names[0], "Status"]
    ours = bf_convert(path, tmp_path, "--picks", ",".join(picks), "--tmin", "0.5", "--tmax", "2.25")
    # our --picks keep file order
    order = sorted(raw.ch_names.index(p) for p in picks)
    expected = raw.copy().crop(0.5, 2.25).get_data(picks=order)
    assert_data_matches_mne(ours, expected)


def _write_edfio(path, signals, annotations=(), record=1.0):
    import edfio

    edf = edfio.Edf(
        signals,
        starttime=dt.time(11, 22, 33),
        recording=edfio.Recording(startdate=dt.date(2021, 3, 4)),
        data_record_duration=record,
        annotations=[edfio.EdfAnnotation(*a) for a in annotations],
    )
    edf.write(path)


def test_mixed_rates_and_annotations(tmp_path):
    """Lower-rate EEG channels are FFT-upsampled over the whole recording, a lower-rate
    `Status` channel is held per record, EDF+ annotations come back as MNE's."""
    import edfio

    rng = np.random.default_rng(0)
    n_rec = 5
    t256 = np.arange(256 * n_rec) / 256
    signals = [
        edfio.EdfSignal(np.sin(2 * np.pi * 3 * t256) * 50 + rng.normal(0, 5, t256.size), 256,
                        label="Fz", physical_dimension="uV", physical_range=(-200, 200),
                        prefiltering="HP:0.1Hz LP:70Hz"),
        edfio.EdfSignal(rng.normal(0, 20, 100 * n_rec), 100, label="Cz", physical_dimension="uV",
                        physical_range=(-200, 200), prefiltering="HP:0.1Hz LP:70Hz"),
        edfio.EdfSignal(rng.normal(0, 1, 64 * n_rec), 64, label="Resp", physical_dimension="mV",
                        physical_range=(-8, 8), prefiltering="HP:0.5Hz LP:30Hz"),
        edfio.EdfSignal(np.repeat(np.arange(16 * n_rec) % 7, 1).astype(float), 16, label="Status",
                        physical_range=(-32768, 32767)),
    ]
    ann = [(0.5, None, "start"), (1.25, 0.5, "stim A"), (3.0, 10.0, "long"), (2.0, 0.0, "Ü-umlaut")]
    path = tmp_path / "mixed.edf"
    _write_edfio(path, signals, ann)
    ours, raw = check_file(path, tmp_path)
    assert [c["kind"] for c in ours["channels"]] == ["eeg", "eeg", "eeg", "stim"]


def test_export_raw_edf(tmp_path):
    """A file written by mne.export.export_raw (edfio backend), with annotations."""
    rng = np.random.default_rng(1)
    info = mne.create_info(["Fp1", "Fp2", "O1", "EOG"], 200.0, ["eeg", "eeg", "eeg", "eog"])
    raw = mne.io.RawArray(rng.normal(0, 20e-6, (4, 200 * 7)), info, verbose="error")
    raw.set_meas_date(dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    raw.set_annotations(mne.Annotations([0.1, 2.5, 6.0], [0, 1.5, 0.5], ["a", "b c", "d"]))
    path = tmp_path / "exported.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    check_file(path, tmp_path)


def test_bad_file_names_the_file(tmp_path):
    path = tmp_path / "broken.edf"
    path.write_bytes(b"0       " + b" " * 100)
    proc = run_bf("info", path, "--json", check=False)
    assert proc.returncode != 0
    assert str(path) in proc.stderr and "256-byte header" in proc.stderr
