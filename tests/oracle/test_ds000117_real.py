"""`bf-pipeline ingest` on ds000117's real sidecars (../shared/data/ds000117/tree), as a new
user meets them: BIDS 1.0.2 channel types (MEGGRAD, HEOG/VEOG, TRIG), session-level
channels.tsv and meg.json that runs inherit, events.tsv with the real columns and rows past the
end of a short recording, `sub-emptyroom`, and runs whose content is a dangling link (a datalad
clone without `get`).

The recordings are written by MNE itself (RawArray → FIF) to the real channels.tsv's names,
order and kinds (EEG061–EEG064 are EEG in the FIF, HEOG/VEOG/ECG/MISC in channels.tsv, as in
the real files), so the oracle for every figure is mne-bids' `read_raw_bids` on the same tree.
"""
import json
import os
import shutil
import subprocess
import warnings

import mne
import mne_bids
import numpy as np
import polars as pl
import pytest

from conftest import SHARED_DATA, bin_path

mne.set_log_level("ERROR")
TREE = SHARED_DATA / "ds000117/tree"
SES = "sub-01/ses-meg"
STEM = "sub-01_ses-meg_task-facerecognition_run-{:02d}"
SECONDS = 40.0
SFREQ = 1100.0
# BIDS type in channels.tsv → the kind the real FIF stores (EEG06x stay EEG in the file).
FIF_KIND = {"MEGGRAD": "grad", "MEGMAG": "mag", "EEG": "eeg", "HEOG": "eeg", "VEOG": "eeg",
            "ECG": "eeg", "TRIG": "stim", "MISC": "misc"}


def real_channels(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [r[0] for r in rows], [r[1] for r in rows]


def write_recording(path, names, bids_types, first_samp, seed):
    kinds = ["eeg" if n.startswith("EEG") else FIF_KIND[t] for n, t in zip(names, bids_types)]
    info = mne.create_info(names, SFREQ, kinds)
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SFREQ)
    scale = {"grad": 1e-11, "mag": 1e-13, "eeg": 1e-5, "stim": 0.0, "misc": 1e-3}
    data = rng.standard_normal((len(names), n)) * np.array([scale[k] for k in kinds])[:, None]
    raw = mne.io.RawArray(data, info, first_samp=first_samp)
    raw.set_meas_date(1239278654)      # 2009-04-09, the session's date
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.save(path, overwrite=True)


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    """The real sidecars, sub-01 runs 1–2 and one empty-room session with content, runs 3–6
    and the other empty-room sessions as dangling git-annex links."""
    if not TREE.is_dir():
        pytest.skip(f"{TREE} is absent: needs ../shared beside the clone")
    root = tmp_path_factory.mktemp("ds000117") / "ds000117"
    shutil.copytree(TREE, root, ignore=shutil.ignore_patterns("derivatives"))
    names, types = real_channels(root / SES / "sub-01_ses-meg_task-facerecognition_channels.tsv")
    meg_dir = root / SES / "meg"
    for run in range(1, 7):
        fif = meg_dir / (STEM.format(run) + "_meg.fif")
        if run <= 2:
            write_recording(fif, names, types, first_samp=29_000 + run, seed=run)
        else:
            os.symlink(f"../../../.git/annex/objects/Xx/{run}/MD5E-s1--{run}.fif", fif)
    for ses_dir in sorted((root / "sub-emptyroom").glob("ses-*")):
        ses = ses_dir.name
        fif = ses_dir / "meg" / f"sub-emptyroom_{ses}_task-noise_meg.fif"
        fif.parent.mkdir(parents=True, exist_ok=True)
        if ses == "ses-20090409":
            meg = [(n, t) for n, t in zip(names, types) if t.startswith("MEG") or t in ("TRIG", "MISC") and not n.startswith("EEG")]
            write_recording(fif, [n for n, _ in meg], [t for _, t in meg], first_samp=5000, seed=99)
        else:
            os.symlink(f"../../../.git/annex/objects/Er/{ses}/MD5E-s1--x.fif", fif)
    return root


def ingest(root, cwd, *extra):
    return subprocess.run([bin_path("bf-pipeline"), "--quiet", "ingest", root, *extra], cwd=cwd,
                          capture_output=True, text=True)


def test_ingest_takes_what_is_there_and_says_what_it_leaves_out(real_tree, tmp_path):
    proc = ingest(real_tree, tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for run in range(3, 7):
        line = next(l for l in err.splitlines() if STEM.format(run) in l)
        assert "not downloaded" in line and "dangling link" in line, line
        # The real dataset_description.json names its DOI, so the fix names the dataset.
        assert "bf-pipeline download ds000117" in line and f"{STEM.format(run)}_meg.fif" in line, line
    # Empty-room recordings are noise references, never training runs, downloaded or not.
    assert sum("empty-room recording" in l for l in err.splitlines()) == 8, err
    assert "MEGGRAD" not in err, "MEGGRAD is a BIDS 1.0.2 type, not a quirk"
    assert "ingested 2 of 14 runs" in proc.stdout, proc.stdout
    assert "4 not downloaded, 8 empty-room" in proc.stdout, proc.stdout
    manifest = pl.read_parquet(real_tree / "derivatives/brainformer/manifest.parquet")
    assert manifest["run_id"].to_list() == [STEM.format(1), STEM.format(2)]
    assert manifest["empty_room"].to_list() == ["sub-emptyroom/ses-20090409/meg/sub-emptyroom_ses-20090409_task-noise_meg.fif"] * 2
    assert manifest["empty_room_present"].to_list() == [True, True]
    assert manifest["meg_source"].to_list() == ["raw", "raw"]

    strict = ingest(real_tree, tmp_path, "--strict")
    assert strict.returncode != 0 and "--strict: 12 of 14 runs were left out" in strict.stderr, strict.stderr


def test_manifest_equals_mne_bids_on_the_real_sidecars(real_tree, tmp_path):
    proc = ingest(real_tree, tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = pl.read_parquet(real_tree / "derivatives/brainformer/manifest.parquet")
    for row in manifest.iter_rows(named=True):
        path = mne_bids.BIDSPath(subject="01", session="meg", task="facerecognition", run=row["run"],
                                 datatype="meg", root=real_tree)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = mne_bids.read_raw_bids(path, verbose=False)
        types = raw.get_channel_types()
        counts = {t: types.count(t) for t in set(types)}
        assert counts == {"grad": 204, "mag": 102, "eeg": 70, "eog": 2, "ecg": 1, "misc": 22, "stim": 3}
        assert json.loads(row["channel_types"]) == counts
        assert row["n_meg"] == 306 and row["n_eeg"] == 70
        assert row["eeg_channels"] == [n for n, t in zip(raw.ch_names, types) if t == "eeg"]
        assert sorted(row["bads"]) == sorted(raw.info["bads"])
        # The real events.tsv runs to ~480 s; a 40 s recording keeps the events inside it,
        # and mne-bids drops the rest (it says so in a warning).
        assert row["n_events"] == len(raw.annotations) > 0
        tsv = real_tree / SES / "meg" / (STEM.format(int(row["run"])) + "_events.tsv")
        assert row["n_events"] + row["n_events_dropped"] == len(tsv.read_text().splitlines()) - 1
        assert row["n_events_dropped"] > 100
        assert any("outside" in str(w.message) for w in caught), [str(w.message) for w in caught]
        assert row["n_samples"] == raw.n_times and row["sfreq"] == raw.info["sfreq"]


def test_meg_source_proc_sss_reads_the_maxfilter_derivative(real_tree, tmp_path):
    """The real derivative sidecars, with MaxFilter output written for run 1 only."""
    root = tmp_path / "ds"
    shutil.copytree(real_tree, root, symlinks=True, ignore=shutil.ignore_patterns("brainformer"))
    shutil.copytree(TREE / "derivatives", root / "derivatives", dirs_exist_ok=True)
    names, types = real_channels(root / SES / "sub-01_ses-meg_task-facerecognition_channels.tsv")
    deriv = root / "derivatives/meg_derivatives" / SES / "meg"
    write_recording(deriv / (STEM.format(1) + "_proc-sss_meg.fif"), names, types, first_samp=29_001, seed=11)
    proc = ingest(root, tmp_path, "--meg-source", "proc-sss")
    assert proc.returncode == 0, proc.stderr
    manifest = pl.read_parquet(root / "derivatives/brainformer/manifest.parquet")
    assert manifest["run_id"].to_list() == [STEM.format(1)]
    assert manifest["meg_source"].to_list() == ["proc-sss"]
    assert manifest["meg_path"][0].startswith("derivatives/meg_derivatives/sub-01/")
    line = next(l for l in proc.stderr.splitlines() if STEM.format(2) in l)
    assert "no MaxFilter output" in line and "--meg-source raw" in line, line
    assert 'meg_source = "proc-sss"' in (tmp_path / "brainformer.toml").read_text()
