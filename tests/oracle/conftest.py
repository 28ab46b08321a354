"""Shared pieces of the oracle tests: they run our release binaries and compare with MNE.

`make test` builds the binaries first; BF_BIN_DIR overrides where they are looked up.
Tests that need ../shared/data skip with a clear message when the folder is absent.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("BF_BIN_DIR", ROOT / "target" / "release"))
SHARED_DATA = Path(os.environ.get("BF_SHARED_DATA", ROOT.parent / "shared" / "data"))


def bin_path(name):
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (it builds the release binaries)")
    return path


def run_bf(*args, check=True):
    """Runs bf-pipeline with args; returns the CompletedProcess (text mode)."""
    proc = subprocess.run([str(bin_path("bf-pipeline")), *map(str, args)],
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"bf-pipeline {' '.join(map(str, args))} failed "
                             f"({proc.returncode}):\n{proc.stderr}")
    return proc


def run_project(base, *args, check=True):
    """Runs `bf-pipeline --quiet ARGS --project BASE/brainformer.toml` (text mode)."""
    proc = subprocess.run([str(bin_path("bf-pipeline")), "--quiet", *map(str, args), "--project", str(base / "brainformer.toml")],
                          capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def bf_info(path):
    return json.loads(run_bf("info", path, "--json").stdout)


def bf_convert(path, tmp_path, *extra):
    out = Path(tmp_path) / (Path(path).name + ".npy")
    run_bf("convert", path, out, *extra)
    return np.load(out)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the tests on third-party files need ../shared beside the clone")
    return SHARED_DATA


# FIFF unit codes → our symbols (bf-pipeline info prints these).
UNIT_SYMBOL = {-1: "NA", 0: "unitless", 1: "m", 3: "s", 4: "A", 5: "K", 101: "Hz", 107: "V",
               110: "S", 112: "T", 114: "C", 201: "T/m", 202: "Am"}


def assert_info_matches_mne(ours, raw):
    """Channel names, kinds, units, sfreq, n_samples, first_samp equal MNE's."""
    info = raw.info
    assert [c["name"] for c in ours["channels"]] == info["ch_names"]
    assert [c["kind"] for c in ours["channels"]] == raw.get_channel_types()
    assert [c["unit_fiff"] for c in ours["channels"]] == [int(c["unit"]) for c in info["chs"]]
    for c in ours["channels"]:
        if c["unit_fiff"] in UNIT_SYMBOL:
            assert c["unit"] == UNIT_SYMBOL[c["unit_fiff"]], c
    assert ours["sfreq"] == pytest.approx(info["sfreq"], rel=1e-12)
    assert ours["n_samples"] == raw.n_times
    assert ours["first_samp"] == raw.first_samp
    assert sorted(ours["bads"]) == sorted(info["bads"])


def assert_data_matches_mne(ours, mne_data):
    """Our float64 samples equal MNE's to float32 rounding.

    Why this tolerance: both readers compute stored value × calibration in float64, but MNE and
    we may multiply the calibration factors in a different order, and some formats store
    float32 samples; relative error of one float32 ulp (2**-23 ≈ 1.2e-7) of each channel's
    peak is the most that can honestly differ.
    """
    assert ours.shape == mne_data.shape
    scale = np.maximum(np.abs(mne_data).max(axis=1, keepdims=True), np.finfo(float).tiny)
    err = np.abs(ours - mne_data) / scale
    assert err.max() <= 2.0 ** -23, f"max relative error {err.max():.3g}"


def make_shards(base, subjects, seconds, continuous=False):
    """A small real shards folder under `base`: bf-fixtures (`subjects` x 1 run x `seconds`)
    through `bf-pipeline ingest` and `tokenize` (`--continuous`: f32 values for the
    regression model); returns the shards folder."""
    subprocess.run([bin_path("bf-fixtures"), "--out", base / "ds", "--subjects", str(subjects), "--runs", "1",
                    "--seconds", str(seconds)], check=True, capture_output=True)
    tokenize = ["tokenize", "--continuous"] if continuous else ["tokenize"]
    for cmd in (["ingest", base / "ds"], tokenize):
        subprocess.run([bin_path("bf-pipeline"), "--quiet", *cmd], cwd=base, check=True, capture_output=True)
    return base / "ds" / "derivatives" / "brainformer" / ("shards-continuous" if continuous else "shards")


def reset_moto(port):
    """Empties a moto server's store (`/moto-api/reset`). moto keeps one in-memory store per
    process, shared by every ThreadedMotoServer, so test files that upload under the same bucket
    and prefix would otherwise see each other's objects."""
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=30).read()
