"""Oracle tests of our BrainVision reader against MNE-Python's read_raw_brainvision.

Files: MNE's test.vhdr (../shared/data), files written with pybv (INT_16, IEEE_FLOAT_32,
multiplexed) and files written here byte by byte with numpy for what pybv cannot write
(INT_32, VECTORIZED orientation, a Latin-1 header with µV/mV/nV units and markers).
"""
import datetime as dt

import mne
import numpy as np
import pytest

from conftest import assert_data_matches_mne, assert_info_matches_mne, bf_convert, bf_info, run_bf
from test_edf import assert_annotations_match, assert_meta_matches


def check_file(path, tmp_path):
    raw = mne.io.read_raw_brainvision(str(path), preload=True, verbose="error")
    ours = bf_info(path)
    assert_info_matches_mne(ours, raw)
    assert_meta_matches(ours, raw)
    assert_annotations_match(ours, raw)
    assert [c["cal"] * c["range"] for c in ours["channels"]] == pytest.approx(
        [c["cal"] * c["range"] for c in raw.info["chs"]], rel=1e-15)
    assert_data_matches_mne(bf_convert(path, tmp_path), raw.get_data())
    return ours, raw


def test_mne_test_file(shared_data, tmp_path):
    path = shared_data / "mne-python" / "brainvision" / "tests" / "data" / "test.vhdr"
    check_file(path, tmp_path)


def test_picks_and_crop(shared_data, tmp_path):
    path = shared_data / "mne-python" / "brainvision" / "tests" / "data" / "test.vhdr"
    raw = mne.io.read_raw_brainvision(str(path), preload=True, verbose="error")
    ours = bf_convert(path, tmp_path, "--picks", "eeg", "--tmin", "1.0", "--tmax", "3.5")
    assert_data_matches_mne(ours, raw.copy().pick("eeg").crop(1.0, 3.5).get_data())


@pytest.mark.parametrize("fmt", ["binary_int16", "binary_float32"])
def test_pybv(tmp_path, fmt):
    import pybv

    rng = np.random.default_rng(2)
    data = rng.normal(0, 30e-6, (3, 1000))
    events = np.array([[10, 1], [250, 2], [900, 3]])
    pybv.write_brainvision(data=data, sfreq=500.0, ch_names=["Fz", "Cz", "HEOGL"], fname_base="pybv",
                           folder_out=tmp_path, events=events, resolution=0.1, unit="µV", fmt=fmt,
                           meas_date=dt.datetime(2022, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc))
    ours, _ = check_file(tmp_path / "pybv.vhdr", tmp_path)
    assert [c["kind"] for c in ours["channels"]] == ["eeg", "eeg", "eog"]


def write_bv(folder, name, data, *, binary="INT_32", orientation="MULTIPLEXED", encoding="latin-1",
             channels, markers, sfreq=250.0):
    """Writes name.vhdr/.vmrk/.eeg by hand; `channels` are (name, resolution, unit) tuples."""
    dtype = {"INT_16": "<i2", "INT_32": "<i4", "IEEE_FLOAT_32": "<f4"}[binary]
    arr = np.asarray(data, dtype=dtype)
    (folder / f"{name}.eeg").write_bytes((arr.T if orientation == "MULTIPLEXED" else arr).tobytes())
    codepage = "UTF-8" if encoding == "utf-8" else "Latin-1"
    lines = ["Brain Vision Data Exchange Header File Version 1.0", "; written by test_brainvision.py", "",
             "[Common Infos]", f"Codepage={codepage}", f"DataFile={name}.eeg", f"MarkerFile={name}.vmrk",
             "DataFormat=BINARY", f"DataOrientation={orientation}", f"NumberOfChannels={len(channels)}",
             f"DataPoints={arr.shape[1]}", f"SamplingInterval={1e6 / sfreq:g}", "",
             "[Binary Infos]", f"BinaryFormat={binary}", "", "[Channel Infos]"]
    lines += [f"Ch{i + 1}={n},,{r},{u}" for i, (n, r, u) in enumerate(channels)]
    (folder / f"{name}.vhdr").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    mk = ["Brain Vision Data Exchange Marker File, Version 1.0", "", "[Common Infos]",
          f"Codepage={codepage}", f"DataFile={name}.eeg", "", "[Marker Infos]"]
    mk += [f"Mk{i + 1}={m}" for i, m in enumerate(markers)]
    (folder / f"{name}.vmrk").write_bytes(("\r\n".join(mk) + "\r\n").encode(encoding))
    return folder / f"{name}.vhdr"


# ASCII only: MNE scans the .vmrk for the date with open() (UTF-8), so a Latin-1 .vmrk with
# non-ASCII bytes makes MNE itself fail; non-ASCII markers are tested in the UTF-8 file.
MARKERS = ["New Segment,,1,1,0,20240229235959000001", "Stimulus,S  1,11,1,0", "Response,R 12,200,5,0",
           "Comment,plain text,301,1,0", "Stimulus,S\\1 2,500,0,0", "Bad,past end,100000,3,0"]


@pytest.mark.parametrize("orientation", ["MULTIPLEXED", "VECTORIZED"])
@pytest.mark.parametrize("binary", ["INT_16", "INT_32", "IEEE_FLOAT_32"])
def test_handwritten_latin1(tmp_path, orientation, binary):
    rng = np.random.default_rng(3)
    data = rng.integers(-30000, 30000, (5, 640))
    channels = [("Fp1", 0.1, "µV"), ("Fp2", 0.5, "uV"), ("EMG", 2, "mV"), ("Tiny", 3, "nV"), ("Temp", 1, "C")]
    path = write_bv(tmp_path, "hand", data, binary=binary, orientation=orientation, channels=channels,
                    markers=MARKERS)
    ours, _ = check_file(path, tmp_path)
    assert [c["kind"] for c in ours["channels"]] == ["eeg", "eeg", "eeg", "eeg", "misc"]


def test_utf8_header(tmp_path):
    data = np.arange(3 * 100).reshape(3, 100)
    path = write_bv(tmp_path, "utf", data, binary="INT_16", encoding="utf-8",
                    channels=[("Fz", 0.1, "µV"), ("Ö1", 0.1, "µV"), ("VEOGb", 1, "µV")], markers=MARKERS[:3] + ["Comment,Ünïcödé µ,51,1,0"])
    check_file(path, tmp_path)


def test_missing_eeg_names_it(tmp_path):
    path = write_bv(tmp_path, "gone", np.zeros((1, 10)), channels=[("Fz", 1, "µV")], markers=[])
    (tmp_path / "gone.eeg").unlink()
    proc = run_bf("info", path, "--json", check=False)
    assert proc.returncode != 0 and "gone.eeg" in proc.stderr
