//! Which segments are dropped: MNE's `BAD*` annotation overlap, and (not in MNE) the flat /
//! clipped screen applied to segments (sections "Annotation overlap" and 3 of the
//! [module docs](super)).


use crate::clean::screen::{flat_or_clipped_stretches, screened_channels, FlatClipParams};
use crate::recording::{Annotation, RecordingInfo};
use super::*;

/// MNE's order of annotations: by onset, then duration, then position.
pub(super) fn sorted_annotations(annotations: &[Annotation]) -> Vec<&Annotation> {
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

/// Drops the kept segments of `plan` in which a screened data channel is flat or clipped
/// (module doc, section 3). `row(c)` is channel `c`'s whole row of the recording being
/// segmented (file order), asked once per screened channel, in parallel: the caller holds the
/// recording as it likes (`|c| data.row(c).to_vec()` for an array). Returns how many were
/// dropped.
pub fn reject_flat_clipped(plan: &mut SegmentPlan, info: &RecordingInfo, row: &(dyn Fn(usize) -> Vec<f64> + Sync), params: &FlatClipParams) -> usize {
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
    // Per channel (in parallel): each in-bounds segment's peak-to-peak, their median, and the
    // channel's clipped stretches. Then the drops in channel order, as one pass would make
    // them (the first channel that rejects a segment names it).
    use rayon::prelude::*;
    let per_channel: Vec<(Vec<f64>, f64, Vec<(usize, usize)>)> = channels
        .par_iter()
        .map(|&c| {
            let x = row(c);
            let ptp: Vec<f64> = in_bounds
                .iter()
                .map(|&k| {
                    let start = plan.segments[k].start as usize;
                    let w = &x[start..start + len];
                    let (lo, hi) = w.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                    hi - lo
                })
                .collect();
            let mut finite: Vec<f64> = ptp.iter().copied().filter(|v| v.is_finite()).collect();
            // No finite peak-to-peak: 0 (then only an exactly flat segment counts as flat).
            let median = if finite.is_empty() { 0.0 } else { crate::clean::bads::median(&mut finite) };
            let clipped: Vec<(usize, usize)> = flat_or_clipped_stretches(&x, info.sfreq, params).into_iter().filter(|s| s.2 == "clipped").map(|s| (s.0, s.1)).collect();
            (ptp, median, clipped)
        })
        .collect();
    let mut dropped = 0;
    for (&c, (ptp, median, clipped)) in channels.iter().zip(per_channel) {
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
