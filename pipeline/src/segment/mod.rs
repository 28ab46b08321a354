//! Segmentation: cutting a cleaned continuous recording into fixed-length training windows or
//! event-locked epochs, with the same window placement, rejection and baseline correction as
//! MNE-Python (1.13), plus the rejection of segments that are flat or clipped (the screen of
//! [`crate::clean::screen`] applied to segments; MNE does not have it).
//!
//! Everything here works on sample indices *relative to the first sample the reader returns*
//! (sample 0 of `0..n_samples`, like [`Annotation::onset`]), never on MNE's absolute sample
//! numbers (which include `first_samp`). Where MNE's arithmetic depends on `first_samp` (it
//! does, through floating point), `first_samp` is taken from [`RecordingInfo`] and the same
//! operations are done in the same order, so the results are MNE's to the sample.
//!
//! # 1. Fixed windows: [`fixed_windows`]
//!
//! Equal to `mne.make_fixed_length_epochs(raw, duration=window/sfreq,
//! overlap=(window-stride)/sfreq, reject_by_annotation=True, preload=True)`:
//!
//! * Starts: `make_fixed_length_events` builds `np.arange(first_samp, last_samp + 1 -
//!   round(sfreq·duration) + 1, sfreq·(duration - overlap)).astype(int)`. The step is a float
//!   (`sfreq·(window/sfreq - (window-stride)/sfreq)`), which is not always exactly `stride`
//!   (250 Hz, window 64, stride 7 gives 6.999999999999999), and `astype(int)` truncates, so a
//!   start can fall one sample early. [`fixed_window_starts`] reproduces NumPy's `arange`
//!   bit for bit: length `ceil((stop + 1 - start) / step)`, values `start`, `start + step`,
//!   then `start + i·((start + step) - start)`, truncated. Only windows that fit entirely are
//!   placed (the last partial window is never produced); a recording shorter than one window
//!   gives none (MNE raises "No events produced").
//! * Length: the epochs run from `tmin = 0` to `tmax = duration - 1/sfreq`, i.e.
//!   `round(tmax·sfreq) + 1` samples (= `window`).
//! * Stride must satisfy `1 <= stride <= window` (MNE: `0 <= overlap < duration`).
//!
//! # 2. Event-locked epochs: [`epochs`]
//!
//! Equal to `mne.Epochs(raw, events, event_id, tmin, tmax, baseline, reject_by_annotation=True,
//! preload=True)` (defaults tmin −0.2 s, tmax 0.8 s, baseline `(None, 0)`):
//!
//! * Times: `start_idx = round(tmin·sfreq)`, `stop_idx = round(tmax·sfreq)` with Python's
//!   `round` (half to even); an epoch has `stop_idx - start_idx + 1` samples and times
//!   `(start_idx + i) / sfreq`.
//! * Each event's first sample is `round(event + times[0]·sfreq)` (absolute, then minus
//!   `first_samp`). MNE's drop rules, in its order: first sample < 0 → `NO_DATA`; a `BAD*`
//!   annotation overlapping (below) → the annotation's description; the epoch runs past the last
//!   sample → `TOO_SHORT`.
//! * `event_id` filter: events with other ids are left out (MNE's `IGNORED`, counted in
//!   [`SegmentPlan::n_ignored`]). An id of the filter that no event has is a warning (MNE's
//!   default `on_missing='raise'` raises); two selected events at the same sample are an error
//!   (MNE's `event_repeated='error'`). Events keep the order they are given in.
//! * Baseline: `_check_baseline` then `rescale(mode='mean')`: `None` ends become the first /
//!   last epoch time; `imin` = first index with `times >= bmin`, `imax` = last index with
//!   `times <= bmax`, plus one; the per-channel mean over `imin..imax` (NumPy's pairwise
//!   summation, so the mean is bit-identical) is subtracted. `(None, 0)` with `tmin = 0`, an
//!   interval outside the epoch by more than one sample, or an empty interval, are errors as in
//!   MNE. The channels corrected are MNE's `_detrend_picks`: `_pick_data_channels(info,
//!   with_ref_meg=True, with_aux=True, exclude=())`, i.e. mag, grad, ref_meg, eeg, seeg, ecog,
//!   dbs and the auxiliary eog, ecg, emg, bio, **bad channels included**; stim, misc, resp,
//!   chpi, syst, … are left as they are ([`is_baseline_kind`]).
//!
//! # Annotation overlap (both modes)
//!
//! MNE's `BaseRaw._check_bad_segment`: an annotation whose description starts with `bad`
//! (case-insensitive) rejects the segment `start..stop` (stop exclusive) when
//! `onset < stop/sfreq` and `onset + duration > start/sfreq`, both strict, computed in f64 as
//! MNE does. So an annotation that *ends exactly* at a segment's first sample does not reject
//! it, nor does one that starts exactly at the sample after its last; a zero-duration `BAD`
//! annotation rejects only when strictly inside `(start/sfreq, stop/sfreq)`. The reported
//! reason is the first overlapping `BAD*` annotation in MNE's order (sorted by onset, then
//! duration).
//!
//! # 3. Flat and clipped segments (not in MNE)
//!
//! The flat / clipped screen of the raw channels is a cleaning step ([`crate::clean::screen`]:
//! stretches of identical samples, `BAD_flat` / `BAD_clipped` annotations, channels bad over
//! more than `bad_percent` % of the run); what remains here is its use on segments:
//!
//! * [`reject_flat_clipped`] screens the segments that survived MNE's rules, on the data that is
//!   segmented, for every data channel (`ChannelKind::is_data`: mag, grad, eeg, seeg, ecog,
//!   dbs) that is not in `info.bads`: `FLAT` when the channel's peak-to-peak in the segment is
//!   0 or below `flat_rel` (default 1e-3) × the median of that channel's peak-to-peak over all
//!   in-bounds segments; `CLIPPED` when the segment contains a sample of a `"clipped"` stretch
//!   of that channel (the screen's stretches, on the segmented data; on filtered data this rarely fires,
//!   which is why the stretches are best found on the raw data). Drops are counted per reason
//!   ([`SegmentPlan::drop_counts`]).
//!
//! # 4. Data
//!
//! [`extract`] / [`extract_f64`] copy `picks × start..start+len`; [`segment_data`] stacks the
//! kept segments (n × picks × samples, f64) with the baseline applied, which equals
//! `epochs.get_data(picks)`. Projectors are not applied here (MNE's `Epochs(proj=True)` would
//! apply `info['projs']`; wrap the reader in `proj::Projected` first when there are any).
//!
//! # Files
//!
//! `windows.rs` (1), `epochs.rs` (2, with the baseline), `events.rs` (stim channels and
//! `events.tsv`), `reject.rs` (annotation overlap and 3), `data.rs` (4), `numpy.rs` (NumPy's
//! arithmetic the others copy bit for bit).

use std::collections::BTreeMap;

use serde::Serialize;

mod data;
mod epochs;
mod events;
mod numpy;
mod reject;
mod windows;

pub use data::{extract, extract_f64, segment_data};
pub use epochs::{apply_baseline, baseline_range, epochs, is_baseline_kind};
pub use events::{default_stim_channels, events_from_bids, find_events, find_stim_events};
pub use reject::{bad_annotation_overlap, is_bad_description, reject_flat_clipped};
pub use windows::{fixed_window_starts, fixed_windows};
use numpy::*;
use reject::sorted_annotations;

/// An event: a sample index relative to sample 0 of the recording (not including
/// `first_samp`) and an integer id (MNE's third events column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub sample: i64,
    pub id: i64,
}

/// Why a candidate segment was not kept. The [`DropReason::key`] strings are MNE's drop-log
/// entries where MNE has the rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// Starts before the first sample (MNE `NO_DATA`).
    NoData,
    /// Runs past the last sample (MNE `TOO_SHORT`).
    TooShort,
    /// Overlaps an annotation whose description starts with `bad` (MNE logs the description).
    Annotation { description: String },
    /// A good data channel is flat in the segment.
    Flat { channel: String },
    /// A good data channel is clipped in the segment.
    Clipped { channel: String },
}

impl DropReason {
    /// MNE's drop-log string (`NO_DATA`, `TOO_SHORT`, the annotation's description), or ours
    /// (`FLAT`, `CLIPPED`).
    pub fn key(&self) -> &str {
        match self {
            DropReason::NoData => "NO_DATA",
            DropReason::TooShort => "TOO_SHORT",
            DropReason::Annotation { description } => description,
            DropReason::Flat { .. } => "FLAT",
            DropReason::Clipped { .. } => "CLIPPED",
        }
    }
}

/// One candidate window or epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    /// The event (fixed windows: the window start), relative to sample 0.
    pub event: i64,
    /// The event id (fixed windows: 1, as MNE).
    pub id: i64,
    /// First sample of the segment, relative to sample 0 (negative when it starts before it).
    pub start: i64,
    /// `start / sfreq`: seconds from sample 0.
    pub onset: f64,
    /// `None` when kept.
    pub drop: Option<DropReason>,
}

impl Segment {
    pub fn is_kept(&self) -> bool {
        self.drop.is_none()
    }
}

/// The candidate segments of one recording and how to cut them.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentPlan {
    pub sfreq: f64,
    /// Samples per segment.
    pub n_times: usize,
    /// `round(tmin·sfreq)`: offset of a segment's first sample from its event.
    pub start_offset: i64,
    /// MNE's `epochs.times` (seconds relative to the event).
    pub times: Vec<f64>,
    /// Baseline index range within a segment (`imin..imax`), when baseline correction is on.
    pub baseline: Option<(usize, usize)>,
    /// Every candidate, in event order, kept or not.
    pub segments: Vec<Segment>,
    /// Events left out by the event-id filter (MNE's `IGNORED`).
    pub n_ignored: usize,
}

impl SegmentPlan {
    pub fn kept(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.is_kept())
    }
    pub fn n_kept(&self) -> usize {
        self.kept().count()
    }
    /// Dropped segments per [`DropReason::key`].
    pub fn drop_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for d in self.segments.iter().filter_map(|s| s.drop.as_ref()) {
            *out.entry(d.key().to_string()).or_insert(0) += 1;
        }
        out
    }
}

/// Event-locked epoch parameters (MNE's names and defaults).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochParams {
    /// Start of an epoch relative to its event, seconds.
    pub tmin: f64,
    /// End of an epoch (included), seconds.
    pub tmax: f64,
    /// `(bmin, bmax)` in seconds, `None` ends meaning the epoch's first / last time; `None`
    /// for no baseline correction.
    pub baseline: Option<(Option<f64>, Option<f64>)>,
    /// Keep only events with these ids (`None`: all).
    pub event_ids: Option<Vec<i64>>,
}

impl Default for EpochParams {
    fn default() -> Self {
        EpochParams { tmin: -0.2, tmax: 0.8, baseline: Some((None, Some(0.0))), event_ids: None }
    }
}

// ---------------------------------------------------------------------------------------------
// MNE's arithmetic

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};
    use crate::bids::EventRow;
    use crate::clean::screen::FlatClipParams;
    use crate::recording::{Annotation, ChannelInfo, ChannelKind, RecordingInfo, Unit};

    fn info(sfreq: f64, n: usize, first_samp: i64, kinds: &[ChannelKind]) -> RecordingInfo {
        let channels = kinds.iter().enumerate().map(|(i, &k)| ChannelInfo::new(format!("CH{i}"), k, 0, Unit::V)).collect();
        RecordingInfo { first_samp, ..RecordingInfo::new("test.fif", "test", sfreq, n, channels) }
    }

    fn ann(onset: f64, duration: f64, d: &str) -> Annotation {
        Annotation { onset, duration, description: d.into() }
    }

    #[test]
    fn window_starts_without_overlap_drop_the_partial_window() {
        // 1000 samples, 256-sample windows: 0, 256, 512; the partial window at 768 is not placed.
        assert_eq!(fixed_window_starts(1000, 0, 250.0, 256, 256).unwrap(), vec![0, 256, 512]);
        assert_eq!(fixed_window_starts(1024, 0, 250.0, 256, 256).unwrap(), vec![0, 256, 512, 768]);
        assert_eq!(fixed_window_starts(1023, 0, 250.0, 256, 256).unwrap(), vec![0, 256, 512]);
        assert_eq!(fixed_window_starts(255, 0, 250.0, 256, 256).unwrap(), Vec::<i64>::new());
        assert_eq!(fixed_window_starts(256, 12345, 250.0, 256, 256).unwrap(), vec![0]);
    }

    #[test]
    fn window_starts_with_overlap_and_float_step() {
        assert_eq!(fixed_window_starts(1024, 0, 250.0, 256, 128).unwrap(), vec![0, 128, 256, 384, 512, 640, 768]);
        // MNE's step here is 6.999999999999999: the second start truncates to 6.
        let s = fixed_window_starts(100, 0, 250.0, 64, 7).unwrap();
        assert_eq!(&s[..3], &[0, 6, 13]);
        assert!(fixed_window_starts(100, 0, 250.0, 64, 0).is_err());
        assert!(fixed_window_starts(100, 0, 250.0, 64, 65).is_err());
    }

    #[test]
    fn annotation_boundaries_follow_mne() {
        let sf = 100.0;
        let mut i = info(sf, 1000, 0, &[ChannelKind::Eeg]);
        // windows of 100 samples: [0,100) [100,200) ...
        i.annotations = vec![
            ann(1.0, 1.0, "BAD_a"),        // ends exactly at 2.0: rejects [100,200) only
            ann(4.0, 0.0, "bad_zero"),     // zero duration at a window start: rejects nothing
            ann(5.5, 0.0, "Bad zero in"),  // zero duration inside [500,600)
            ann(6.99, 0.0, "edge"),        // not bad
            ann(7.99, 0.02, "BAD_end"),    // touches the last sample of [700,800) and [800,900)
        ];
        let plan = fixed_windows(&i, 100, 100).unwrap();
        let reasons: Vec<Option<&str>> = plan.segments.iter().map(|s| s.drop.as_ref().map(|d| d.key())).collect();
        assert_eq!(
            reasons,
            vec![None, Some("BAD_a"), None, None, None, Some("Bad zero in"), None, Some("BAD_end"), Some("BAD_end"), None]
        );
        assert_eq!(plan.drop_counts()["BAD_end"], 2);
        assert_eq!(plan.n_kept(), 6);
        assert_eq!(plan.n_times, 100);
        assert_eq!(plan.segments[3].onset, 3.0);
    }

    #[test]
    fn epochs_rounding_and_out_of_data() {
        let i = info(250.0, 1000, 500, &[ChannelKind::Eeg]);
        let ev = [Event { sample: 10, id: 1 }, Event { sample: 50, id: 2 }, Event { sample: 500, id: 1 }, Event { sample: 801, id: 1 }, Event { sample: 799, id: 3 }];
        let plan = epochs(&i, &ev, &EpochParams::default()).unwrap();
        assert_eq!(plan.n_times, 251);
        assert_eq!(plan.start_offset, -50);
        assert_eq!(plan.baseline, Some((0, 51)));
        let reasons: Vec<Option<&str>> = plan.segments.iter().map(|s| s.drop.as_ref().map(|d| d.key())).collect();
        assert_eq!(reasons, vec![Some("NO_DATA"), None, None, Some("TOO_SHORT"), None]);
        assert_eq!(plan.segments[1].start, 0);
        let only = EpochParams { event_ids: Some(vec![1]), ..EpochParams::default() };
        let plan = epochs(&i, &ev, &only).unwrap();
        assert_eq!(plan.segments.len(), 3);
        assert_eq!(plan.n_ignored, 2);
        let dup = [Event { sample: 10, id: 1 }, Event { sample: 10, id: 2 }];
        assert!(epochs(&i, &dup, &EpochParams::default()).is_err());
    }

    #[test]
    fn baseline_ranges_and_errors() {
        let times: Vec<f64> = (-50..=200).map(|i| i as f64 / 250.0).collect();
        assert_eq!(baseline_range(&times, 250.0, (None, Some(0.0))).unwrap(), (0, 51));
        assert_eq!(baseline_range(&times, 250.0, (Some(-0.1), Some(0.0))).unwrap(), (25, 51));
        assert_eq!(baseline_range(&times, 250.0, (None, None)).unwrap(), (0, 251));
        assert!(baseline_range(&times, 250.0, (Some(0.1), Some(0.0))).is_err());
        assert!(baseline_range(&times, 250.0, (Some(-1.0), Some(0.0))).is_err());
        let t0: Vec<f64> = (0..=10).map(|i| i as f64 / 250.0).collect();
        assert!(baseline_range(&t0, 250.0, (None, Some(0.0))).is_err());
        assert_eq!(baseline_range(&t0, 250.0, (Some(0.0), Some(0.0))).unwrap(), (0, 1));
    }

    #[test]
    fn baseline_subtracts_the_mean_on_mnes_channels() {
        let kinds = [ChannelKind::Eeg, ChannelKind::Stim, ChannelKind::Eog, ChannelKind::Misc];
        let i = info(100.0, 100, 0, &kinds);
        let data = Array2::from_shape_fn((4, 100), |(c, t)| (c + 1) as f64 * 10.0 + t as f64);
        let params = EpochParams { tmin: -0.1, tmax: 0.1, ..EpochParams::default() };
        let plan = epochs(&i, &[Event { sample: 50, id: 1 }], &params).unwrap();
        let out = segment_data(&plan, data.view(), &i.channels, &[0, 1, 2, 3]);
        assert_eq!(out.shape(), &[1, 4, 21]);
        // baseline samples 40..=50: mean = offset + 45; corrected value at sample 40 = -5.
        assert_eq!(out[[0, 0, 0]], -5.0);
        assert_eq!(out[[0, 2, 0]], -5.0);
        assert_eq!(out[[0, 1, 0]], 20.0 + 40.0);
        assert_eq!(out[[0, 3, 20]], 40.0 + 60.0);
        let f = extract(data.view(), 40, 3, &[1]);
        assert_eq!(f.row(0).to_vec(), vec![60.0f32, 61.0, 62.0]);
    }

    #[test]
    fn pairwise_sum_matches_numpy_structure() {
        let v: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1013) as f64 * 0.1).collect();
        let plain: f64 = v.iter().sum();
        assert!((np_pairwise_sum(&v) - plain).abs() < 1e-9);
        assert_eq!(np_pairwise_sum(&v[..5]), v[..5].iter().sum::<f64>());
    }

    #[test]
    fn windows_with_flat_or_clipped_channels_are_dropped() {
        let kinds = [ChannelKind::Eeg, ChannelKind::Eeg, ChannelKind::Stim];
        let mut i = info(100.0, 1000, 0, &kinds);
        let mut data = Array2::from_shape_fn((3, 1000), |(c, t)| ((t * (c + 3)) as f64 * 0.7).sin());
        data.slice_mut(s![0, 200..300]).fill(0.25); // flat in window 2
        data.slice_mut(s![1, 555..560]).fill(5.0); // clipped in window 5
        data.row_mut(2).fill(0.0); // stim: not screened
        let mut plan = fixed_windows(&i, 100, 100).unwrap();
        let n = reject_flat_clipped(&mut plan, &i, &|c| data.row(c).to_vec(), &FlatClipParams::default());
        assert_eq!(n, 2);
        assert_eq!(plan.segments[2].drop, Some(DropReason::Flat { channel: "CH0".into() }));
        assert_eq!(plan.segments[5].drop, Some(DropReason::Clipped { channel: "CH1".into() }));
        assert_eq!(plan.drop_counts().get("FLAT"), Some(&1));
        // A bad channel is not screened.
        i.bads = vec!["CH0".into(), "CH1".into()];
        let mut plan = fixed_windows(&i, 100, 100).unwrap();
        assert_eq!(reject_flat_clipped(&mut plan, &i, &|c| data.row(c).to_vec(), &FlatClipParams::default()), 0);
    }

    #[test]
    fn stim_events_follow_find_events() {
        let mut x = vec![0.0; 100];
        x[10..15].fill(1.0);
        x[30..32].fill(2.0);
        x[32..40].fill(3.0); // step up 2→3: a new event
        x[60..70].fill(4.0);
        x[70..75].fill(1.0); // step down to non-zero: no event
        x[95..].fill(5.0); // runs to the end: padded offset
        let ev = find_stim_events(&x, 2).unwrap();
        assert_eq!(ev, vec![Event { sample: 10, id: 1 }, Event { sample: 30, id: 2 }, Event { sample: 32, id: 3 }, Event { sample: 60, id: 4 }, Event { sample: 95, id: 5 }]);
        let mut y = vec![0.0; 20];
        y[5] = 1.0;
        y[6] = 2.0;
        assert!(find_stim_events(&y, 2).is_err());
        assert!(find_stim_events(&[3.0; 10], 2).unwrap().is_empty());
    }

    #[test]
    fn bids_events_use_value_or_trial_type() {
        let row = |onset: f64, tt: &str, v: Option<&str>| EventRow { onset, duration: 0.0, trial_type: Some(tt.into()), value: v.map(Into::into), sample: None };
        let (ev, map) = events_from_bids(&[row(0.5, "b", Some("5")), row(1.0, "a", Some("7"))], 250.0).unwrap();
        assert_eq!(ev, vec![Event { sample: 125, id: 5 }, Event { sample: 250, id: 7 }]);
        assert!(map.is_empty());
        let (ev, map) = events_from_bids(&[row(0.5, "b", None), row(1.0, "a", Some("n/a"))], 250.0).unwrap();
        assert_eq!(ev, vec![Event { sample: 125, id: 2 }, Event { sample: 250, id: 1 }]);
        assert_eq!(map["a"], 1);
    }
}
