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

use std::collections::BTreeMap;

use ndarray::{s, Array2, Array3, ArrayView2, ArrayViewMut2, Axis};
use serde::Serialize;

use crate::bids::EventRow;
use crate::clean::screen::{flat_or_clipped_stretches, screened_channels, FlatClipParams};
use crate::error::{Error, Result};
use crate::recording::{Annotation, ChannelInfo, ChannelKind, RecordingInfo};

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

/// Python's `round` on floats (and NumPy's `np.round`): half to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `np.arange(start, stop, step).astype(int)` for integer `start`, `stop` and a float `step`,
/// as NumPy computes it (see the module doc).
fn np_arange_trunc(start: i64, stop: i64, step: f64) -> Vec<i64> {
    let len = ((stop - start) as f64 / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let v0 = start as f64;
    let v1 = v0 + step;
    let delta = v1 - v0;
    (0..len)
        .map(|i| {
            let v = match i {
                0 => v0,
                1 => v1,
                _ => v0 + i as f64 * delta,
            };
            v as i64
        })
        .collect()
}

/// NumPy's pairwise summation (`np.add.reduce` on a contiguous float64 axis).
fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_pairwise_sum(&a[..n2]) + np_pairwise_sum(&a[n2..])
    }
}

/// `np.mean` of a contiguous float64 slice.
fn np_mean(a: &[f64]) -> f64 {
    np_pairwise_sum(a) / a.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Annotations

/// MNE's order of annotations: by onset, then duration, then position.
fn sorted_annotations(annotations: &[Annotation]) -> Vec<&Annotation> {
    let mut v: Vec<&Annotation> = annotations.iter().collect();
    v.sort_by(|a, b| a.onset.total_cmp(&b.onset).then(a.duration.total_cmp(&b.duration)));
    v
}

/// Whether `description` marks a bad span for MNE's `reject_by_annotation` (starts with
/// `bad`, case-insensitive).
pub fn is_bad_description(description: &str) -> bool {
    description.to_lowercase().starts_with("bad")
}

/// The first `BAD*` annotation (in `annotations`' order) overlapping samples `start..stop`
/// (stop exclusive), by MNE's rule: `onset < stop/sfreq && onset + duration > start/sfreq`.
pub fn bad_annotation_overlap<'a>(annotations: &[&'a Annotation], sfreq: f64, start: i64, stop: i64) -> Option<&'a Annotation> {
    let (t0, t1) = (start as f64 / sfreq, stop as f64 / sfreq);
    annotations.iter().copied().find(|a| a.onset < t1 && a.onset + a.duration > t0 && is_bad_description(&a.description))
}

// ---------------------------------------------------------------------------------------------
// Fixed windows

/// Window starts (relative to sample 0) as MNE's `make_fixed_length_events(raw,
/// duration=window/sfreq, overlap=(window-stride)/sfreq)` places them (module doc).
pub fn fixed_window_starts(n_samples: usize, first_samp: i64, sfreq: f64, window: usize, stride: usize) -> std::result::Result<Vec<i64>, String> {
    check_window(window, stride)?;
    let duration = window as f64 / sfreq;
    let overlap = (window - stride) as f64 / sfreq;
    if !(0.0 <= overlap && overlap < duration) {
        return Err(format!("overlap must be >= 0 and < duration ({duration}), got {overlap}"));
    }
    let start = first_samp;
    let stop = first_samp + n_samples as i64 - py_round(sfreq * duration);
    let step = sfreq * (duration - overlap);
    Ok(np_arange_trunc(start, stop + 1, step).into_iter().map(|t| t - first_samp).collect())
}

fn check_window(window: usize, stride: usize) -> std::result::Result<(), String> {
    if window == 0 {
        return Err("window must be at least 1 sample".into());
    }
    if stride == 0 || stride > window {
        return Err(format!("stride must be between 1 and the window ({window}) samples, got {stride} (MNE's overlap must be >= 0 and < duration)"));
    }
    Ok(())
}

/// MNE's `make_fixed_length_epochs(raw, duration=window/sfreq, overlap=(window-stride)/sfreq,
/// reject_by_annotation=True)`: every candidate window, with the `BAD*` annotation rejection.
pub fn fixed_windows(info: &RecordingInfo, window: usize, stride: usize) -> Result<SegmentPlan> {
    let bad = |m: String| Error::request(&info.path, m);
    let starts = fixed_window_starts(info.n_samples, info.first_samp, info.sfreq, window, stride).map_err(bad)?;
    let duration = window as f64 / info.sfreq;
    let events: Vec<Event> = starts.into_iter().map(|sample| Event { sample, id: 1 }).collect();
    let params = EpochParams { tmin: 0.0, tmax: duration - 1.0 / info.sfreq, baseline: None, event_ids: None };
    epochs(info, &events, &params)
}

// ---------------------------------------------------------------------------------------------
// Epochs

/// MNE's baseline index range `imin..imax` within an epoch of `times` (`_check_baseline` +
/// `rescale`).
pub fn baseline_range(times: &[f64], sfreq: f64, baseline: (Option<f64>, Option<f64>)) -> std::result::Result<(usize, usize), String> {
    let (tmin, tmax) = (times[0], times[times.len() - 1]);
    let tstep = 1.0 / sfreq;
    if baseline == (None, Some(0.0)) && tmin == 0.0 {
        return Err("Baseline interval is only one sample. Use `baseline=(0, 0)` if this is desired.".into());
    }
    let bmin = baseline.0.unwrap_or(tmin);
    let bmax = baseline.1.unwrap_or(tmax);
    if bmin > bmax {
        return Err(format!("Baseline min ({bmin}) must be less than baseline max ({bmax})"));
    }
    if bmin < tmin - tstep || bmax > tmax + tstep {
        return Err(format!("Baseline interval [{bmin}, {bmax}] s is outside of epochs data [{tmin}, {tmax}] s"));
    }
    let imin = times.iter().position(|&t| t >= bmin).ok_or_else(|| format!("bmin is too large ({bmin}), it exceeds the largest time value"))?;
    let imax = times.iter().rposition(|&t| t <= bmax).ok_or_else(|| format!("bmax is too small ({bmax}), it is smaller than the smallest time value"))? + 1;
    if imin >= imax {
        return Err(format!("Bad rescaling slice ({imin}:{imax}) from time values {bmin}, {bmax}"));
    }
    Ok((imin, imax))
}

/// MNE's `Epochs(raw, events, event_id, tmin, tmax, baseline, reject_by_annotation=True)`:
/// every candidate epoch with MNE's drop reasons (module doc).
pub fn epochs(info: &RecordingInfo, events: &[Event], params: &EpochParams) -> Result<SegmentPlan> {
    let bad = |m: String| Error::request(&info.path, m);
    let sfreq = info.sfreq;
    if !(sfreq > 0.0 && sfreq.is_finite()) {
        return Err(bad(format!("invalid sampling rate {sfreq}")));
    }
    if !(params.tmin.is_finite() && params.tmax.is_finite()) || params.tmin > params.tmax {
        return Err(bad(format!("tmin ({}) must be less than or equal to tmax ({})", params.tmin, params.tmax)));
    }
    let start_idx = py_round(params.tmin * sfreq);
    let stop_idx = py_round(params.tmax * sfreq);
    let times: Vec<f64> = (start_idx..=stop_idx).map(|i| i as f64 / sfreq).collect();
    let n_times = times.len();
    let baseline = match params.baseline {
        Some(b) => Some(baseline_range(&times, sfreq, b).map_err(bad)?),
        None => None,
    };

    let selected: Vec<Event> = match &params.event_ids {
        None => events.to_vec(),
        Some(ids) => {
            for id in ids {
                if !events.iter().any(|e| e.id == *id) {
                    tracing::warn!("{}: no event with id {id}", info.path.display());
                }
            }
            events.iter().copied().filter(|e| ids.contains(&e.id)).collect()
        }
    };
    let mut samples: Vec<i64> = selected.iter().map(|e| e.sample).collect();
    samples.sort_unstable();
    if let Some(w) = samples.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("two selected events share sample {} (MNE's event_repeated='error'); filter the event ids", w[0])));
    }

    let annotations = sorted_annotations(&info.annotations);
    let n = info.n_samples as i64;
    let t0 = times[0];
    let segments = selected
        .iter()
        .map(|e| {
            let abs = e.sample + info.first_samp;
            let start = py_round(abs as f64 + t0 * sfreq) - info.first_samp;
            let stop = start + n_times as i64;
            let drop = if start < 0 {
                Some(DropReason::NoData)
            } else if let Some(a) = bad_annotation_overlap(&annotations, sfreq, start, stop) {
                Some(DropReason::Annotation { description: a.description.clone() })
            } else if stop > n {
                Some(DropReason::TooShort)
            } else {
                None
            };
            Segment { event: e.sample, id: e.id, start, onset: start as f64 / sfreq, drop }
        })
        .collect();
    Ok(SegmentPlan { sfreq, n_times, start_offset: start_idx, times, baseline, segments, n_ignored: events.len() - selected.len() })
}

// ---------------------------------------------------------------------------------------------
// Events

/// MNE's default stim channel choice (`_get_stim_channel`, without the `MNE_STIM_CHANNEL`
/// config): `STI101` if present, else `STI 014`, else every stim channel that is not bad.
pub fn default_stim_channels(info: &RecordingInfo) -> Vec<usize> {
    for name in ["STI101", "STI 014"] {
        if let Some(i) = info.channel_index(name) {
            return vec![i];
        }
    }
    info.channels
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == ChannelKind::Stim && !info.bads.contains(&c.name))
        .map(|(i, _)| i)
        .collect()
}

/// Events of one stim channel as `mne.find_events` finds them with its defaults
/// (`output='onset'`, `consecutive='increasing'`, `min_duration=0`, `shortest_event=2`,
/// no mask, `initial_event=False`): values truncated to integers (absolute value when any is
/// negative); every change of value is a step; an onset is a step up (`post > pre`), an
/// offset a step to 0 or any step up from a non-zero value; the end is padded with a step to 0;
/// orphaned first offset / last onset are removed; the event is the onset (sample of the new
/// value, id = the new value). Two events closer than `shortest_event` samples are an error,
/// as in MNE.
pub fn find_stim_events(x: &[f64], shortest_event: i64) -> std::result::Result<Vec<Event>, String> {
    let mut d: Vec<i64> = x.iter().map(|&v| v as i64).collect();
    if d.iter().any(|&v| v < 0) {
        tracing::warn!("trigger channel contains negative values, using absolute value");
        d.iter_mut().for_each(|v| *v = v.abs());
    }
    // (sample, pre, post)
    let mut steps: Vec<(i64, i64, i64)> = (0..d.len().saturating_sub(1)).filter(|&i| d[i + 1] != d[i]).map(|i| ((i + 1) as i64, d[i], d[i + 1])).collect();
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let last = steps[steps.len() - 1].2;
    if last != 0 {
        steps.push((d.len() as i64, last, 0));
    }
    let onsets: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].2 > steps[i].1).collect();
    let mut offsets: Vec<usize> = (0..steps.len()).filter(|&i| (steps[i].2 > steps[i].1 || steps[i].2 == 0) && steps[i].1 > 0).collect();
    let mut onsets = onsets;
    if onsets.is_empty() || offsets.is_empty() {
        return Ok(Vec::new());
    }
    if onsets[0] > offsets[0] {
        offsets.remove(0);
    }
    if offsets.is_empty() || onsets[onsets.len() - 1] > offsets[offsets.len() - 1] {
        onsets.pop();
    }
    let events: Vec<Event> = onsets.iter().map(|&i| Event { sample: steps[i].0, id: steps[i].2 }).collect();
    let n_short = events.windows(2).filter(|w| w[1].sample - w[0].sample < shortest_event).count();
    if n_short > 0 {
        return Err(format!("You have {n_short} events shorter than the shortest_event ({shortest_event} samples), as MNE's find_events refuses"));
    }
    Ok(events)
}

/// `mne.find_events(raw)` with its defaults on `stim` channels (default:
/// [`default_stim_channels`]): events of each channel, duplicates removed, sorted by sample.
pub fn find_events(info: &RecordingInfo, data: ArrayView2<f64>, stim: Option<&[usize]>) -> Result<Vec<Event>> {
    let chosen;
    let stim = match stim {
        Some(s) => s,
        None => {
            chosen = default_stim_channels(info);
            &chosen
        }
    };
    if stim.is_empty() {
        return Err(Error::request(&info.path, "no stim channel found to extract events from (give one, or use a BIDS events.tsv)"));
    }
    let mut all = Vec::new();
    for &c in stim {
        let row = data.row(c).to_vec();
        let ev = find_stim_events(&row, 2).map_err(|m| Error::request(&info.path, format!("stim channel {}: {m}", info.channels[c].name)))?;
        all.extend(ev);
    }
    all.sort_by_key(|e| (e.sample, e.id));
    all.dedup();
    Ok(all)
}

/// Events from BIDS `events.tsv` rows: sample = `round(onset·sfreq)` (relative to sample 0,
/// half to even as MNE's `time_as_index`); id = the `value` column when every row has an
/// integer there, otherwise the 1-based rank of `trial_type` among the sorted distinct
/// trial types (as `mne.events_from_annotations` numbers descriptions). Returns the events
/// and the name → id mapping (empty when ids come from `value`).
pub fn events_from_bids(rows: &[EventRow], sfreq: f64) -> std::result::Result<(Vec<Event>, BTreeMap<String, i64>), String> {
    let values: Option<Vec<i64>> = rows.iter().map(|r| r.value.as_deref().and_then(parse_int)).collect();
    let mut mapping = BTreeMap::new();
    let ids: Vec<i64> = match values {
        Some(v) if !rows.is_empty() => v,
        _ => {
            let types: Option<Vec<&str>> = rows.iter().map(|r| r.trial_type.as_deref().filter(|t| *t != "n/a")).collect();
            let types = types.ok_or("events.tsv: every row needs an integer `value` or a `trial_type`")?;
            let mut names: Vec<&str> = types.clone();
            names.sort_unstable();
            names.dedup();
            for (i, n) in names.iter().enumerate() {
                mapping.insert(n.to_string(), i as i64 + 1);
            }
            types.iter().map(|t| mapping[*t]).collect()
        }
    };
    let events = rows.iter().zip(ids).map(|(r, id)| Event { sample: py_round(r.onset * sfreq), id }).collect();
    Ok((events, mapping))
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|v| v.fract() == 0.0 && v.is_finite()).map(|v| v as i64))
}

// ---------------------------------------------------------------------------------------------
// Flat and clipped segments (the screen itself is crate::clean::screen)

/// Drops the kept segments of `plan` in which a screened data channel is flat or clipped
/// (module doc, section 3). `data` is the recording being segmented (all channels, file
/// order). Returns how many were dropped.
pub fn reject_flat_clipped(plan: &mut SegmentPlan, info: &RecordingInfo, data: ArrayView2<f64>, params: &FlatClipParams) -> usize {
    let channels = screened_channels(info);
    let len = plan.n_times;
    let in_bounds: Vec<usize> = plan
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s.drop, Some(DropReason::NoData) | Some(DropReason::TooShort)))
        .map(|(i, _)| i)
        .collect();
    if in_bounds.is_empty() || len == 0 {
        return 0;
    }
    let mut dropped = 0;
    for &c in &channels {
        let row = data.row(c);
        let ptp: Vec<f64> = in_bounds
            .iter()
            .map(|&k| {
                let start = plan.segments[k].start as usize;
                let w = row.slice(s![start..start + len]);
                let (lo, hi) = w.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                hi - lo
            })
            .collect();
        let mut sorted: Vec<f64> = ptp.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let median = if sorted.is_empty() {
            0.0
        } else if sorted.len() % 2 == 1 {
            sorted[sorted.len() / 2]
        } else {
            0.5 * (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2])
        };
        let x = row.to_vec();
        let clipped: Vec<(usize, usize)> = flat_or_clipped_stretches(&x, info.sfreq, params).into_iter().filter(|s| s.2 == "clipped").map(|s| (s.0, s.1)).collect();
        let name = &info.channels[c].name;
        for (&k, &p) in in_bounds.iter().zip(&ptp) {
            let seg = &mut plan.segments[k];
            if seg.drop.is_some() {
                continue;
            }
            let start = seg.start as usize;
            if p == 0.0 || p < params.flat_rel * median {
                seg.drop = Some(DropReason::Flat { channel: name.clone() });
                dropped += 1;
            } else if clipped.iter().any(|&(a, b)| a < start + len && b > start) {
                seg.drop = Some(DropReason::Clipped { channel: name.clone() });
                dropped += 1;
            }
        }
    }
    dropped
}

// ---------------------------------------------------------------------------------------------
// Data

/// Channels `picks` × samples `start..start+len` of `data`, rounded to f32.
pub fn extract(data: ArrayView2<f64>, start: usize, len: usize, picks: &[usize]) -> Array2<f32> {
    let mut out = Array2::zeros((picks.len(), len));
    for (mut o, &c) in out.outer_iter_mut().zip(picks) {
        o.assign(&data.slice(s![c, start..start + len]).mapv(|v| v as f32));
    }
    out
}

/// Channels `picks` × samples `start..start+len` of `data`, in f64.
pub fn extract_f64(data: ArrayView2<f64>, start: usize, len: usize, picks: &[usize]) -> Array2<f64> {
    let mut out = Array2::zeros((picks.len(), len));
    for (mut o, &c) in out.outer_iter_mut().zip(picks) {
        o.assign(&data.slice(s![c, start..start + len]));
    }
    out
}

/// Whether MNE's epoch baseline correction touches a channel of this kind (`_detrend_picks`:
/// data channels with reference MEG and the auxiliary EOG, ECG, EMG, bio).
pub fn is_baseline_kind(kind: ChannelKind) -> bool {
    use ChannelKind::*;
    matches!(kind, Mag | Grad | RefMeg | Eeg | Seeg | Ecog | Dbs | Eog | Ecg | Emg | Bio)
}

/// Subtracts from each row `r` with `rows[r]` its mean over columns `range.0..range.1`
/// (MNE's `rescale(mode='mean')`, NumPy's summation order).
pub fn apply_baseline(mut epoch: ArrayViewMut2<f64>, range: (usize, usize), rows: &[bool]) {
    for (mut row, &on) in epoch.outer_iter_mut().zip(rows) {
        if !on {
            continue;
        }
        let mean = {
            let b = row.slice(s![range.0..range.1]);
            match b.as_slice() {
                Some(sl) => np_mean(sl),
                None => np_mean(&b.to_vec()),
            }
        };
        row.mapv_inplace(|v| v - mean);
    }
}

/// The kept segments of `plan` as one `n_kept × picks × n_times` array (f64), baseline
/// corrected on the picked channels MNE corrects: `epochs.get_data(picks)`.
pub fn segment_data(plan: &SegmentPlan, data: ArrayView2<f64>, channels: &[ChannelInfo], picks: &[usize]) -> Array3<f64> {
    let kept: Vec<&Segment> = plan.kept().collect();
    let mut out = Array3::zeros((kept.len(), picks.len(), plan.n_times));
    let rows: Vec<bool> = picks.iter().map(|&c| is_baseline_kind(channels[c].kind)).collect();
    for (mut o, seg) in out.axis_iter_mut(Axis(0)).zip(kept) {
        let start = seg.start as usize;
        for (mut orow, &c) in o.outer_iter_mut().zip(picks) {
            orow.assign(&data.slice(s![c, start..start + plan.n_times]));
        }
        if let Some(range) = plan.baseline {
            apply_baseline(o.view_mut(), range, &rows);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Unit;
    use std::path::PathBuf;

    fn info(sfreq: f64, n: usize, first_samp: i64, kinds: &[ChannelKind]) -> RecordingInfo {
        RecordingInfo {
            path: PathBuf::from("test.fif"),
            format: "test",
            sfreq,
            n_samples: n,
            first_samp,
            meas_date: None,
            channels: kinds.iter().enumerate().map(|(i, &k)| ChannelInfo::new(format!("CH{i}"), k, 0, Unit::V)).collect(),
            bads: vec![],
            annotations: vec![],
            projs: vec![],
            comp_grade: 0,
            highpass: None,
            lowpass: None,
            line_freq: None,
            discontinuous: false,
        }
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
        let n = reject_flat_clipped(&mut plan, &i, data.view(), &FlatClipParams::default());
        assert_eq!(n, 2);
        assert_eq!(plan.segments[2].drop, Some(DropReason::Flat { channel: "CH0".into() }));
        assert_eq!(plan.segments[5].drop, Some(DropReason::Clipped { channel: "CH1".into() }));
        assert_eq!(plan.drop_counts().get("FLAT"), Some(&1));
        // A bad channel is not screened.
        i.bads = vec!["CH0".into(), "CH1".into()];
        let mut plan = fixed_windows(&i, 100, 100).unwrap();
        assert_eq!(reject_flat_clipped(&mut plan, &i, data.view(), &FlatClipParams::default()), 0);
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
