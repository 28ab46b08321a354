"""`bf-pipeline epochs` against MNE's make_fixed_length_epochs and Epochs.

(a) Fixed windows: window starts, BAD-annotation rejection (middle of a window, touching window
    boundaries) and data vs `mne.make_fixed_length_epochs(...).get_data()`, with stride = window
    and stride < window (including a stride whose float step MNE truncates), at 250 Hz and with a
    non-zero first_samp. Exact boundary cases (an annotation ending exactly at a window start,
    starting exactly at the sample after a window) are checked at 256 Hz, where every boundary
    is exact in binary; at 250 Hz they are placed 0.1 ms either side of the boundary, because
    FIF stores annotation onsets as float32 and MNE rounds them to microseconds on reading, so
    "exactly at 2.048 s" is not a well-defined question for a 250 Hz FIF file.
(b) Event-locked epochs with baseline vs `mne.Epochs(raw, mne.find_events(raw), ...)`, events
    too close to the start and end, a BAD annotation, an event-id filter, MNE's tmin/tmax
    rounding; and the same epochs from a BIDS events.tsv.
(c) Flat / clipped stretches injected in a raw signal are found where they are, and become
    BAD_flat / BAD_clipped annotations that drop the same windows MNE drops for them.

Tolerance for the data: 1e-10 of each channel's peak (it is a copy and a mean; the mean uses
NumPy's pairwise summation order, so it is in fact bit-identical).
"""
import json

import mne
import numpy as np
import pytest

from conftest import run_bf
from test_filter import mne_test_signal

mne.set_log_level("ERROR")


def make_raw(sfreq, seconds, first_samp=0, seed=0, stim=None):
    """mne_test_signal plus a misc channel (not baseline-corrected by MNE), on `first_samp`."""
    base = mne_test_signal(sfreq, seconds, seed)
    data = base.get_data()
    rng = np.random.default_rng(seed + 100)
    misc = rng.standard_normal((1, data.shape[1])) + 3.0
    data = np.vstack([data, misc])
    if stim is not None:
        data[base.ch_names.index("STI101")] = stim
    info = mne.create_info(base.ch_names + ["MISC001"], sfreq, base.get_channel_types() + ["misc"])
    return mne.io.RawArray(data, info, first_samp=first_samp)


def save(raw, tmp_path, name="seg_raw.fif"):
    path = tmp_path / name
    raw.save(path, fmt="double", overwrite=True)
    return path, mne.io.read_raw_fif(path, preload=True)


def bf_epochs(src, out, *args):
    proc = run_bf("epochs", src, out, "--json", *args)
    return json.loads(proc.stdout), np.load(out)


def assert_close(ours, expected):
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    if expected.size == 0:
        return
    scale = np.abs(expected).max(axis=(0, 2), keepdims=True)
    scale[scale == 0] = 1.0
    err = np.abs(ours - expected) / scale
    assert err.max() <= 1e-10, f"max relative error {err.max():.3g}"


def assert_same_drops(summary, epochs):
    """Our candidates' drop reasons equal MNE's drop log (entries MNE did not ignore)."""
    mne_log = [log for log in epochs.drop_log if log != ("IGNORED",)]
    ours = [s["drop"] for s in summary["segments"]]
    assert len(ours) == len(mne_log)
    for o, m in zip(ours, mne_log):
        assert (o is None and m == ()) or (m == (o,)), (o, m)


def check_windows(src, raw, tmp_path, window, stride):
    summary, ours = bf_epochs(src, tmp_path / "w.npy", "--window", window, "--stride", stride)
    sfreq = raw.info["sfreq"]
    epochs = mne.make_fixed_length_epochs(raw, duration=window / sfreq, overlap=(window - stride) / sfreq,
                                          reject_by_annotation=True, preload=True)
    expected = epochs.get_data()
    all_events = mne.make_fixed_length_events(raw, duration=window / sfreq, overlap=(window - stride) / sfreq)
    assert [s["mne_sample"] for s in summary["segments"]] == all_events[:, 0].tolist()
    assert [s["mne_sample"] for s in summary["segments"] if s["drop"] is None] == epochs.events[:, 0].tolist()
    assert all(s["onset"] == pytest.approx(s["start"] / sfreq) for s in summary["segments"])
    assert_same_drops(summary, epochs)
    assert summary["n_kept"] == len(epochs)
    assert_close(ours, expected)
    return summary


@pytest.mark.parametrize("first_samp", [0, 12_345])
@pytest.mark.parametrize("window,stride", [(256, 256), (256, 128), (256, 100), (64, 7)])
def test_fixed_windows_match_mne_at_250_hz(first_samp, window, stride, tmp_path):
    raw = make_raw(250.0, 30.0, first_samp=first_samp)
    eps = 1e-4
    # Window starts (stride = window = 256): 0, 1.024, 2.048, 3.072, ... s.
    raw.set_annotations(mne.Annotations(
        onset=[5.3, 1.5, 3.072 + eps, 10.0, 12.0, 20.0],
        duration=[0.2, 2.048 - 1.5 - eps, 0.3, 0.0, 0.5, 1.0],
        description=["BAD_blink", "bad_ends_before_2.048", "BAD_starts_after_3.072",
                     "BAD_zero_length", "edge", "BAD_ACQ_SKIP"]))
    src, raw = save(raw, tmp_path)
    summary = check_windows(src, raw, tmp_path, window, stride)
    assert summary["n_dropped"] > 0
    if (window, stride) == (256, 256):
        drops = {s["start"]: s["drop"] for s in summary["segments"]}
        assert drops[256] == "bad_ends_before_2.048" and drops[512] is None
        assert drops[768] == "BAD_starts_after_3.072"


@pytest.mark.parametrize("first_samp", [0, 2560])
@pytest.mark.parametrize("stride", [256, 128])
def test_annotations_exactly_on_window_boundaries(first_samp, stride, tmp_path):
    # At 256 Hz a 256-sample window is 1 s: every boundary below is exact in float32 and in µs.
    raw = make_raw(256.0, 20.0, first_samp=first_samp, seed=3)
    raw.set_annotations(mne.Annotations(
        onset=[1.0, 5.0, 7.0, 9.5, 12.0, 14.99609375],
        duration=[1.0, 0.0, 0.0, 0.0, 2.0, 0.0],
        description=["BAD_exact", "BAD_zero_at_start", "bad_zero_at_start2", "BAD_zero_inside",
                     "BAD_two", "BAD_last_sample"]))
    src, raw = save(raw, tmp_path)
    summary = check_windows(src, raw, tmp_path, 256, stride)
    drops = {s["start"]: s["drop"] for s in summary["segments"]}
    if stride == 256:
        # [1, 2) s is bad; the annotation ends exactly at 2 s and starts exactly at 1 s.
        assert drops[0] is None and drops[256] == "BAD_exact" and drops[512] is None
        # a zero-length BAD annotation exactly at a window start rejects nothing
        assert drops[5 * 256] is None and drops[4 * 256] is None
        assert drops[9 * 256] == "BAD_zero_inside"
        assert drops[14 * 256] == "BAD_last_sample"


def test_picks_select_channels(tmp_path):
    raw = make_raw(250.0, 30.0)
    src, raw = save(raw, tmp_path)
    summary, ours = bf_epochs(src, tmp_path / "p.npy", "--picks", "eeg,MISC001")
    assert summary["channels"] == ["EEG001", "EEG002", "MISC001"]
    expected = mne.make_fixed_length_epochs(raw, duration=256 / 250, preload=True).get_data(
        picks=["EEG001", "EEG002", "MISC001"])
    assert_close(ours, expected)


def stim_train(n, events):
    """A stim channel holding each (sample, id, length) for `length` samples."""
    stim = np.zeros(n)
    for sample, value, length in events:
        stim[sample:sample + length] = value
    return stim


STIM_EVENTS = [(20, 1, 5),        # epoch starts before the data: NO_DATA
               (300, 2, 5),
               (700, 1, 5),       # under a BAD annotation
               (1500, 3, 2), (1502, 4, 5),   # step up 3 -> 4: two events
               (3000, 2, 5), (4000, 1, 3), (5000, 3, 5),
               (7249, 1, 5),      # last epoch that fits
               (7400, 2, 5)]      # runs past the end: TOO_SHORT


@pytest.mark.parametrize("first_samp", [0, 4321])
@pytest.mark.parametrize("tmin,tmax,baseline,event_id", [
    (-0.2, 0.8, (None, 0), None),
    (-0.1033, 0.5017, (-0.05, 0.0), [1, 3]),
    (0.0, 0.5, (None, None), [2]),
    (-0.3, 0.2, None, None),
])
def test_event_epochs_match_mne(first_samp, tmin, tmax, baseline, event_id, tmp_path):
    n = 7500
    raw = make_raw(250.0, n / 250.0, first_samp=first_samp, seed=1, stim=stim_train(n, STIM_EVENTS))
    raw.set_annotations(mne.Annotations([2.9], [0.1], ["BAD_blink"]))
    src, raw = save(raw, tmp_path)

    args = ["--events", "--tmin", tmin, "--tmax", tmax]
    args += ["--baseline", "none" if baseline is None else ",".join("None" if b is None else str(b) for b in baseline)]
    if event_id:
        args += ["--event-id", ",".join(map(str, event_id))]
    summary, ours = bf_epochs(src, tmp_path / "e.npy", *args)

    events = mne.find_events(raw)
    assert [[e["mne_sample"], e["id"]] for e in summary["events"]] == events[:, [0, 2]].tolist()
    assert len(events) == len(STIM_EVENTS)
    epochs = mne.Epochs(raw, events, event_id=event_id, tmin=tmin, tmax=tmax, baseline=baseline,
                        reject_by_annotation=True, preload=True)
    assert_same_drops(summary, epochs)
    assert summary["n_times"] == len(epochs.times)
    assert summary["tmin"] == pytest.approx(epochs.times[0], abs=1e-12)
    assert [s["mne_sample"] for s in summary["segments"] if s["drop"] is None] == epochs.events[:, 0].tolist()
    expected = epochs.get_data()
    assert_close(ours, expected)
    if baseline is not None:
        # MNE corrects MEG, EEG and EOG, not stim or misc: our output must differ from the raw
        # copy exactly where MNE's does.
        raw_copy = mne.Epochs(raw, events, event_id=event_id, tmin=tmin, tmax=tmax, baseline=None,
                              reject_by_annotation=True, preload=True).get_data()
        changed = np.abs(expected - raw_copy).max(axis=(0, 2)) > 0
        assert [raw.ch_names[i] for i in np.flatnonzero(changed)] == \
            ["MEG0111", "MEG0112", "MEG0113", "EEG001", "EEG002", "EOG061"]
        assert np.array_equal(ours, expected), "baseline mean is not bit-identical"


def test_event_epochs_from_bids_events_tsv(tmp_path):
    n = 7500
    first_samp = 1000
    raw = make_raw(250.0, n / 250.0, first_samp=first_samp, seed=2, stim=stim_train(n, STIM_EVENTS))
    src, raw = save(raw, tmp_path)
    events = mne.find_events(raw)
    tsv = tmp_path / "sub-01_task-x_events.tsv"
    lines = ["onset\tduration\ttrial_type\tvalue"]
    for sample, _, value in events:
        lines.append(f"{(sample - first_samp) / 250.0}\t0\tcond{value}\t{value}")
    tsv.write_text("\n".join(lines) + "\n")
    summary, ours = bf_epochs(src, tmp_path / "t.npy", "--events-tsv", tsv)
    epochs = mne.Epochs(raw, events, tmin=-0.2, tmax=0.8, baseline=(None, 0), reject_by_annotation=True, preload=True)
    assert_same_drops(summary, epochs)
    assert_close(ours, epochs.get_data())


def test_flat_and_clipped_stretches_are_found_and_drop_windows(tmp_path):
    sfreq = 1000.0
    raw = make_raw(sfreq, 20.0, seed=4)
    data = raw.get_data()
    names = raw.ch_names
    eeg1, mag, eeg2 = names.index("EEG001"), names.index("MEG0111"), names.index("EEG002")
    data[eeg1, 3000:3100] = data[eeg1, 3000]                  # flat 100 ms
    rail = np.abs(data[mag]).max() * 1.5
    data[mag, 7100:7130] = rail                               # clipped 30 ms at the max
    data[mag, 9000:9004] = rail                               # only 4 ms at the rail: not clipped
    data[eeg2, 12000:12030] = -np.abs(data[eeg2]).max() * 2   # clipped at the min
    data[eeg2, 15000:15020] = 1e-6                            # 20 ms constant: below the flat minimum
    raw = mne.io.RawArray(data, raw.info)
    src, raw = save(raw, tmp_path)

    summary, ours = bf_epochs(src, tmp_path / "f.npy", "--mark-flat-clipped")
    found = sorted((s["channel"], s["start"], s["stop"], s["kind"]) for s in summary["stretches"])
    assert found == sorted([("EEG001", 3000, 3100, "flat"), ("MEG0111", 7100, 7130, "clipped"),
                            ("EEG002", 12000, 12030, "clipped")])

    # The same windows as MNE drops for BAD_flat / BAD_clipped annotations over these spans.
    annotated = raw.copy().set_annotations(mne.Annotations(
        onset=[3.0, 7.1, 12.0], duration=[0.1, 0.03, 0.03],
        description=["BAD_flat", "BAD_clipped", "BAD_clipped"]))
    epochs = mne.make_fixed_length_epochs(annotated, duration=256 / sfreq, reject_by_annotation=True, preload=True)
    assert_same_drops(summary, epochs)
    assert_close(ours, epochs.get_data())

    # Without the annotations, the in-window screen drops the clipped windows (CLIPPED) and
    # nothing for the partly flat window (its peak-to-peak is not small).
    summary, _ = bf_epochs(src, tmp_path / "g.npy")
    by_start = {s["start"]: (s["drop"], s["channel"]) for s in summary["segments"]}
    assert by_start[7168 - 256] == ("CLIPPED", "MEG0111") and by_start[11776] == ("CLIPPED", "EEG002")
    assert summary["drops"] == {"CLIPPED": 2}
    summary, _ = bf_epochs(src, tmp_path / "h.npy", "--no-reject-flat-clipped")
    assert summary["n_dropped"] == 0


def test_a_window_flat_on_one_channel_is_dropped(tmp_path):
    raw = make_raw(250.0, 20.0, seed=5)
    data = raw.get_data()
    data[raw.ch_names.index("MEG0112"), 1000:1400] = 0.0     # covers window [1024, 1280) entirely
    raw = mne.io.RawArray(data, raw.info)
    src, raw = save(raw, tmp_path)
    summary, ours = bf_epochs(src, tmp_path / "z.npy")
    assert summary["drops"] == {"FLAT": 1}
    seg = [s for s in summary["segments"] if s["drop"]][0]
    assert (seg["start"], seg["channel"]) == (1024, "MEG0112")
    # Marking MEG0112 bad stops the screen from looking at it.
    raw.info["bads"] = ["MEG0112"]
    src, raw = save(raw, tmp_path, "bad_raw.fif")
    summary, _ = bf_epochs(src, tmp_path / "z2.npy")
    assert summary["n_dropped"] == 0
