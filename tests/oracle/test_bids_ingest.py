"""Fixture BIDS dataset → BIDS validator, mne-bids, and `bf-pipeline ingest` (manifest read
back with pyarrow and polars, compared run by run with mne-bids)."""
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import mne
import mne_bids
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, SHARED_DATA, bin_path, run_bf

mne.set_log_level("ERROR")
TEMPLATE = SHARED_DATA / "mne-python/tests/data/test-ave.fif.gz"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "ds"
    cmd = [bin_path("bf-fixtures"), "--out", root, "--seconds", "10"]
    if TEMPLATE.exists():
        cmd += ["--template", TEMPLATE]
    subprocess.run(cmd, check=True, capture_output=True)
    return root


def test_fixture_passes_the_bids_validator(dataset):
    validator = ROOT / "node_modules/.bin/bids-validator"
    assert validator.exists(), "run `make setup` (installs the BIDS validator from npm)"
    proc = subprocess.run([validator, "--json", dataset], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    errors = report["issues"]["errors"]
    assert errors == [], json.dumps(errors, indent=1)[:3000]
    assert proc.returncode == 0


def test_fixture_is_deterministic(tmp_path):
    outs = []
    for name in ["a", "b"]:
        subprocess.run([bin_path("bf-fixtures"), "--out", tmp_path / name, "--subjects", "1", "--runs", "1",
                        "--seconds", "3", "--seed", "7"], check=True, capture_output=True)
        outs.append(sorted((p.relative_to(tmp_path / name), p.read_bytes())
                           for p in (tmp_path / name).rglob("*") if p.is_file()))
    assert outs[0] == outs[1]


def ingest(root, cwd, *extra, check=True):
    proc = subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", root, *extra], cwd=cwd,
                          capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_ingest_agrees_with_mne_bids(dataset, tmp_path):
    ingest(dataset, tmp_path)
    manifest = dataset / "derivatives/brainformer/manifest.parquet"
    table = pq.read_table(manifest)
    frame = pl.read_parquet(manifest)
    assert table.num_rows == frame.height == 8
    assert frame["run_id"].to_list() == table.column("run_id").to_pylist()
    for row in frame.iter_rows(named=True):
        path = mne_bids.BIDSPath(subject=row["subject"], session=row["session"], task=row["task"],
                                 run=row["run"], datatype="meg", root=dataset)
        raw = mne_bids.read_raw_bids(path, verbose=False)
        types = raw.get_channel_types()
        assert json.loads(row["channel_types"]) == {t: types.count(t) for t in set(types)}
        assert row["n_eeg"] == types.count("eeg") == 70
        assert row["n_meg"] == types.count("mag") + types.count("grad") == 306
        assert row["eeg_channels"] == [n for n, t in zip(raw.ch_names, types) if t == "eeg"]
        assert sorted(row["bads"]) == sorted(raw.info["bads"])
        assert row["n_events"] == len(raw.annotations)
        assert row["sfreq"] == raw.info["sfreq"]
        assert row["n_samples"] == raw.n_times
        assert len(row["content_hash"]) == 64
    project = tomllib.loads((tmp_path / "brainformer.toml").read_text())
    assert Path(project["dataset"]["root"]) == dataset.resolve()
    assert project["preprocess"] == {"l_freq": 0.1, "h_freq": 100.0, "notch": [50.0, 100.0, 150.0], "sfreq": 250.0}


def copy_small(dataset, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(dataset, dst, ignore=shutil.ignore_patterns("derivatives"))
    return dst


def test_not_bids_is_a_clear_error(tmp_path):
    proc = ingest(tmp_path, tmp_path, check=False)
    assert proc.returncode != 0
    assert str(tmp_path) in proc.stderr and "dataset_description.json" in proc.stderr


def test_bad_runs_are_reported_and_the_rest_ingested(dataset, tmp_path):
    root = copy_small(dataset, tmp_path)
    meg = root / "sub-01/ses-meg/meg"
    fif = meg / "sub-01_ses-meg_task-facerecognition_run-01_meg.fif"
    fif.write_bytes(fif.read_bytes()[: fif.stat().st_size // 3])          # truncated FIF
    # As in ds000117, runs inherit the session's channels.tsv and meg.json; a run-level
    # channels.tsv overrides the session's for that run only.
    session_ch = root / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_channels.tsv"
    ch = meg / "sub-01_ses-meg_task-facerecognition_run-02_channels.tsv"
    ch.write_text("\n".join(session_ch.read_text().splitlines()[:-5]) + "\n")  # channels.tsv lies
    (root / "sub-02/ses-meg/sub-02_ses-meg_task-facerecognition_meg.json").unlink()  # no sidecar at all
    proc = ingest(root, tmp_path, check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "sub-01_ses-meg_task-facerecognition_run-01_meg.fif" in err
    assert "truncated" in err or "past the end" in err
    assert "sub-01_ses-meg_task-facerecognition_run-02_channels.tsv" in err and "lists 399 channels" in err
    assert "sub-02_ses-meg_task-facerecognition_run-01_meg.json" in err
    # Both runs of sub-02 lose their (session-level) meg.json; the channels.tsv that lies is a
    # warning (as in mne-bids); the two empty-room sessions count as runs, left out.
    assert "3 of 10 runs failed" in err, err
    frame = pl.read_parquet(root / "derivatives/brainformer/manifest.parquet")
    assert frame.height == 5
