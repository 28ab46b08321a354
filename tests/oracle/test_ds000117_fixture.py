"""bf-fixtures writes ds000117's own layout: the real sidecars (bundled in fixtures/ds000117,
byte-identical to the real dataset's), its 404 channels in its order and kinds, the real
events, first_samp != 0, cHPI and line noise that the proc-sss derivative lacks, dated
empty-room sessions. Checked with the BIDS validator, mne-bids and MNE."""
import json
import subprocess
import warnings

import mne
import mne_bids
import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA, bin_path

mne.set_log_level("ERROR")
TEMPLATE = SHARED_DATA / "mne-python/tests/data/test-ave.fif.gz"
REAL = SHARED_DATA / "ds000117/tree"
BUNDLED = ROOT / "fixtures/ds000117"
SUBJECTS, RUNS, SECONDS = 2, 2, 30
CHPI = [293, 307, 314, 321, 328]
DERIV = "derivatives/meg_derivatives"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds000117") / "ds"
    cmd = [bin_path("bf-fixtures"), "--out", root, "--subjects", str(SUBJECTS), "--runs", str(RUNS),
           "--seconds", str(SECONDS)]
    if TEMPLATE.exists():
        cmd += ["--template", TEMPLATE]
    subprocess.run(cmd, check=True, capture_output=True)
    return root


@pytest.fixture
def real():
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent: the comparison with the real dataset needs ../shared beside the clone")
    return REAL


def bids_path(root, subject, run, **kw):
    return mne_bids.BIDSPath(subject=f"{subject:02d}", session="meg", task="facerecognition", run=f"{run:02d}",
                             datatype="meg", root=root, **kw)


def read_bids(path):
    """read_raw_bids, returning the raw and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = mne_bids.read_raw_bids(path, verbose=False)
    return raw, [str(w.message) for w in caught]


def channel_names(tsv):
    return [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:] if line]


def events_rows(tsv):
    lines = tsv.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def test_bids_validator_finds_no_errors(dataset):
    validator = ROOT / "node_modules/.bin/bids-validator"
    assert validator.exists(), "run `make setup` (installs the BIDS validator from npm)"
    proc = subprocess.run([validator, "--json", dataset], capture_output=True, text=True)
    errors = json.loads(proc.stdout)["issues"]["errors"]
    assert errors == [], json.dumps(errors, indent=1)[:3000]
    assert proc.returncode == 0


def test_layout_is_ds000117s(dataset):
    ses = dataset / "sub-01/ses-meg"
    assert sorted(p.name for p in ses.iterdir()) == [
        "meg", "sub-01_ses-meg_scans.tsv", "sub-01_ses-meg_task-facerecognition_channels.tsv",
        "sub-01_ses-meg_task-facerecognition_meg.json"]
    # Runs inherit the session's channels.tsv and meg.json: none per run.
    assert not list(dataset.rglob("*_run-*_channels.tsv")) and not list(dataset.glob("sub-*/ses-meg/meg/*_meg.json"))
    for s in range(1, SUBJECTS + 1):
        for r in range(1, RUNS + 1):
            events = dataset / f"sub-{s:02d}/ses-meg/meg/sub-{s:02d}_ses-meg_task-facerecognition_run-{r:02d}_events.tsv"
            real_events = BUNDLED / f"sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-{r:02d}_events.tsv"
            assert events.read_bytes() == real_events.read_bytes()
        side = json.loads((dataset / f"sub-{s:02d}/ses-meg/sub-{s:02d}_ses-meg_task-facerecognition_meg.json").read_text())
        assert (dataset / side["AssociatedEmptyRoom"]).is_file()
    assert (dataset / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_channels.tsv").read_bytes() == \
        (BUNDLED / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_channels.tsv").read_bytes()
    assert (dataset / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_meg.json").read_bytes() == \
        (BUNDLED / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_meg.json").read_bytes()
    head = (dataset / "participants.tsv").read_text().splitlines()
    assert head[0].split("\t") == ["participant_id", "age", "sex", "first_ses"] and head[-1].startswith("sub-emptyroom")
    scans = (dataset / "sub-01/ses-meg/sub-01_ses-meg_scans.tsv").read_text().splitlines()
    assert scans[1:] == ["meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif\t2009-04-09T12:04:14",
                         "meg/sub-01_ses-meg_task-facerecognition_run-02_meg.fif\t2009-04-09T12:17:17"]
    description = json.loads((dataset / DERIV / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"


def test_every_run_reads_with_mne_bids_without_channel_warnings(dataset):
    names = channel_names(BUNDLED / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_channels.tsv")
    for s in range(1, SUBJECTS + 1):
        for r in range(1, RUNS + 1):
            raw, caught = read_bids(bids_path(dataset, s, r))
            about_channels = [w for w in caught if "channel" in w.lower()]
            assert about_channels == [], about_channels
            types = raw.get_channel_types()
            counts = {t: types.count(t) for t in set(types)}
            assert counts == {"grad": 204, "mag": 102, "eeg": 70, "eog": 2, "ecg": 1, "misc": 22, "stim": 3}
            assert raw.ch_names == names
            assert raw.first_samp != 0
            assert raw.n_times == SECONDS * 1100
            # Trigger codes on STI101 at onset_sample from the first sample; the annotations
            # (from events.tsv, relative to the first sample) are the rows inside the recording.
            tsv = events_rows(dataset / f"sub-{s:02d}/ses-meg/meg/sub-{s:02d}_ses-meg_task-facerecognition_run-{r:02d}_events.tsv")
            inside = [e for e in tsv if int(e["onset_sample"]) < raw.n_times]
            assert 0 < len(inside) < len(tsv)
            found = mne.find_events(raw, stim_channel="STI101", shortest_event=1)
            assert found[:, 0].tolist() == [raw.first_samp + int(e["onset_sample"]) for e in inside]
            assert found[:, 2].tolist() == [int(e["trigger"]) for e in inside]
            assert len(raw.annotations) == len(inside)
            np.testing.assert_allclose(raw.annotations.onset - raw.first_time, [float(e["onset"]) for e in inside], atol=1e-6)
            # meas_date is scans.tsv's acq_time.
            assert raw.info["meas_date"].year == 2009


def test_channels_are_the_real_channels_tsv(dataset, real):
    names = channel_names(real / "sub-01/ses-meg/sub-01_ses-meg_task-facerecognition_channels.tsv")
    assert len(names) == 404
    raw = mne.io.read_raw_fif(dataset / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif")
    assert raw.ch_names == names
    kinds = {ch["ch_name"]: int(ch["kind"]) for ch in raw.info["chs"]}
    assert all(kinds[f"EEG{i:03d}"] == 2 for i in range(1, 75))          # all stored as EEG
    assert all(kinds[n] == 502 for n in names if n.startswith(("MISC", "CHPI")))
    assert [n for n in names if kinds[n] == 3] == ["STI101", "STI201", "STI301"]


def test_bundled_sidecars_are_the_real_files(real):
    bundled = [p for p in BUNDLED.rglob("*") if p.is_file() and p.name not in ("README.md", ".gitattributes")]
    assert len(bundled) == 28
    for p in bundled:
        rel = p.relative_to(BUNDLED)
        assert p.read_bytes() == (real / rel).read_bytes(), rel


def band_power(data, sfreq, freqs):
    """Mean over channels of the Hann-windowed periodogram at each of `freqs`, and the median
    of the band ±(2…6) Hz around it."""
    n = data.shape[1]
    spec = (np.abs(np.fft.rfft((data - data.mean(axis=1, keepdims=True)) * np.hanning(n), axis=1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(n, 1 / sfreq)
    at = [spec[np.argmin(np.abs(f - x))] for x in freqs]
    around = [np.median(spec[(np.abs(f - x) >= 2) & (np.abs(f - x) <= 6)]) for x in freqs]
    return np.array(at), np.array(around)


def test_chpi_and_line_noise_are_in_raw_meg_and_gone_from_proc_sss(dataset):
    stem = "sub-01_ses-meg_task-facerecognition_run-01"
    raw = mne.io.read_raw_fif(dataset / f"sub-01/ses-meg/meg/{stem}_meg.fif")
    sss = mne.io.read_raw_fif(dataset / DERIV / f"sub-01/ses-meg/meg/{stem}_proc-sss_meg.fif")
    assert sss.ch_names == raw.ch_names and sss.first_samp == raw.first_samp
    freqs = [50, 100, 150, *CHPI]
    for kind in ("mag", "grad"):
        at_raw, around_raw = band_power(raw.get_data(picks=kind), raw.info["sfreq"], freqs)
        at_sss, _ = band_power(sss.get_data(picks=kind), sss.info["sfreq"], freqs)
        present = 10 * np.log10(at_raw / around_raw)
        reduced = 10 * np.log10(at_raw / at_sss)
        assert (present > 10).all(), dict(zip(freqs, present.round(1)))
        assert (reduced >= 20).all(), dict(zip(freqs, reduced.round(1)))
    # EEG is not MaxFiltered: the same in both.
    np.testing.assert_array_equal(raw.get_data(picks="eeg"), sss.get_data(picks="eeg"))


def test_proc_sss_derivative_reads_with_mne_bids(dataset):
    raw, _ = read_bids(bids_path(dataset / DERIV, 1, 1, processing="sss"))
    assert len(raw.ch_names) == 404 and raw.first_samp != 0


def test_emptyroom_sessions_read_with_mne_bids(dataset):
    path = bids_path(dataset, 1, 1)
    er_path = path.find_empty_room(use_sidecar_only=True)
    assert er_path.subject == "emptyroom" and er_path.session == "20090409" and er_path.task == "noise"
    raw, caught = read_bids(er_path)
    # The real subject-level channels.tsv lists 404 channels, the recording has no EEG: mne-bids
    # says so and goes on (the real dataset does the same).
    assert any("does not match the number of channels" in w for w in caught), caught
    types = raw.get_channel_types()
    assert "eeg" not in types and types.count("grad") == 204 and types.count("mag") == 102
    assert len(raw.ch_names) == 404 - 74 and 0 < raw.times[-1] <= 5
    assert raw.info["meas_date"].isoformat().startswith("2009-04-09T11:05:49")
    er_sss = dataset / DERIV / "sub-emptyroom/ses-20090409/meg/sub-emptyroom_ses-20090409_task-noise_proc-sss_meg.fif"
    assert mne.io.read_raw_fif(er_sss).ch_names == raw.ch_names
    # One session per date in use: subjects 1 and 2 share 20090409.
    assert sorted(p.name for p in (dataset / "sub-emptyroom").glob("ses-*")) == ["ses-20090409"]


def test_bad_arguments_are_one_line_naming_the_file(tmp_path):
    """Errors print once, on one line, naming the file (issue 19: they used to repeat the
    message through anyhow's cause chain)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args, name in (([blocker / "ds"], blocker / "ds"),
                       ([tmp_path / "ds", "--template", tmp_path / "missing.fif"], tmp_path / "missing.fif")):
        res = subprocess.run([bin_path("bf-fixtures"), "--out", *args], capture_output=True, text=True)
        assert res.returncode == 1
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert str(name) in lines[0] and lines[0].count(str(name)) == 1, lines[0]
