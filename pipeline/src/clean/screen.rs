//! The flat / clipped screen (not in MNE), a cleaning step: stretches of a *raw, unfiltered*
//! channel where the signal repeats one value, found before filtering (a filter smears them)
//! and turned into `BAD_flat` / `BAD_clipped` annotations or bad channels, which segmentation
//! then honours ([`crate::segment::reject_flat_clipped`] uses the same stretches on segments).
//!
//! * [`flat_or_clipped_stretches`] scans one *raw, unfiltered* channel for runs of identical
//!   consecutive samples. A run at the channel's own maximum or minimum (and the channel is not
//!   constant) of at least `clip_min_duration` (default 10 ms, at least 2 samples) is
//!   `"clipped"` (an ADC rail); any other run of at least `flat_min_duration` (default 50 ms,
//!   at least 2 samples) is `"flat"` (a disconnected or saturated amplifier holding a value).
//!   Equality is exact (`==`): real signals, even 16-bit quantised EEG at 1 kHz, do not repeat
//!   a value for 10–50 ms. [`find_flat_clipped`] runs it on the data channels that are not
//!   bad, and [`stretch_annotations`] merges the result into `BAD_flat` / `BAD_clipped`
//!   annotations (onset `start/sfreq`, duration `(stop-start)/sfreq`, MNE's convention for
//!   sample spans), which then reject windows by the annotation rule of [`crate::segment`] once
//!   added to the recording before filtering. As MNE's `annotate_amplitude` (`bad_percent`, default 5 %), a channel
//!   whose stretches cover more than `bad_percent` % of the run is not annotated but becomes
//!   a bad channel ([`split_bad_channels`]): a dead channel must not reject the whole run.

use std::collections::BTreeMap;

use ndarray::ArrayView2;
use serde::Serialize;

use crate::recording::{Annotation, RecordingInfo};

/// Thresholds of the flat / clipped screen (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlatClipParams {
    /// Minimum duration of a run of identical samples, not at the channel's extremes, to call
    /// it flat (seconds; at least 2 samples).
    pub flat_min_duration: f64,
    /// Minimum duration of a run of samples equal to the channel's maximum or minimum to call
    /// it clipped (seconds; at least 2 samples).
    pub clip_min_duration: f64,
    /// A segment is flat on a channel when its peak-to-peak is below this fraction of the
    /// median peak-to-peak of that channel over all in-bounds segments (or exactly 0).
    pub flat_rel: f64,
    /// A channel whose flat / clipped stretches cover more than this percentage of the run is
    /// a bad channel instead of a source of `BAD_flat` / `BAD_clipped` annotations (MNE's
    /// `annotate_amplitude(bad_percent=5)`): one dead channel must not reject every window.
    pub bad_percent: f64,
}

impl Default for FlatClipParams {
    fn default() -> Self {
        FlatClipParams { flat_min_duration: 0.05, clip_min_duration: 0.01, flat_rel: 1e-3, bad_percent: 5.0 }
    }
}

fn min_samples(duration: f64, sfreq: f64) -> usize {
    ((duration * sfreq - 1e-9).ceil().max(0.0) as usize).max(2)
}

/// Runs of identical samples in a raw channel that are flat (`"flat"`) or sit at the channel's
/// own maximum or minimum (`"clipped"`), as `(start, stop_exclusive, kind)` (module doc).
pub fn flat_or_clipped_stretches(x: &[f64], sfreq: f64, params: &FlatClipParams) -> Vec<(usize, usize, &'static str)> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let (mx, mn) = max_min(x);
    let constant = mx == mn;
    let flat_min = min_samples(params.flat_min_duration, sfreq);
    let clip_min = min_samples(params.clip_min_duration, sfreq);
    // Both minimums are at least 2 samples, so only runs that start with two equal
    // neighbours can count: jump from one such pair to the next (a real signal has few)
    // instead of walking every run of one sample.
    debug_assert!(flat_min >= 2 && clip_min >= 2);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(k) = next_equal_pair(x, i) {
        let mut j = k + 2;
        while j < n && x[j] == x[k] {
            j += 1;
        }
        let len = j - k;
        let at_rail = !constant && (x[k] == mx || x[k] == mn);
        if at_rail && len >= clip_min {
            out.push((k, j, "clipped"));
        } else if len >= flat_min {
            out.push((k, j, "flat"));
        }
        i = j;
    }
    out
}

/// The first `k >= from` with `x[k] == x[k + 1]`. Blocks of 16 neighbour comparisons with no
/// early exit inside a block (the compiler vectorizes them); the scan cost ~3.7 ns a sample
/// walking runs one sample at a time, more than the screen's max/min.
fn next_equal_pair(x: &[f64], from: usize) -> Option<usize> {
    const B: usize = 16;
    let n = x.len();
    let mut k = from;
    while k + B < n {
        let (a, b) = (&x[k..k + B], &x[k + 1..k + B + 1]);
        if a.iter().zip(b).fold(false, |any, (p, q)| any | (p == q)) {
            return (k..k + B).find(|&m| x[m] == x[m + 1]);
        }
        k += B;
    }
    (k..n.saturating_sub(1)).find(|&m| x[m] == x[m + 1])
}

/// The largest and smallest non-NaN values (−∞ / +∞ when there are none), as folds of
/// `f64::max` / `f64::min` from −∞ / +∞ give them, up to the sign of a zero, which `==`
/// does not see. Eight independent lanes (the compiler vectorizes them) instead of one
/// dependency chain: the screen's two serial folds cost more than its run scan.
fn max_min(x: &[f64]) -> (f64, f64) {
    let mut hi = [f64::NEG_INFINITY; 8];
    let mut lo = [f64::INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            // A NaN compares false both ways, so it is skipped, as f64::max/min skip it.
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
        }
    }
    let fold = |init: f64, f: fn(f64, f64) -> f64, lanes: &[f64]| lanes.iter().chain(rest).copied().fold(init, f);
    (fold(f64::NEG_INFINITY, f64::max, &hi), fold(f64::INFINITY, f64::min, &lo))
}

/// A flat or clipped stretch of one channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stretch {
    pub channel: usize,
    pub start: usize,
    pub stop: usize,
    pub kind: &'static str,
}

/// The channels the flat / clipped screen looks at: data channels (`ChannelKind::is_data`)
/// not in `info.bads`.
pub fn screened_channels(info: &RecordingInfo) -> Vec<usize> {
    info.channels.iter().enumerate().filter(|(_, c)| c.kind.is_data() && !info.bads.contains(&c.name)).map(|(i, _)| i).collect()
}

/// [`flat_or_clipped_stretches`] on every screened channel (rows of `data` are the
/// recording's channels in file order).
pub fn find_flat_clipped(info: &RecordingInfo, data: ArrayView2<f64>, params: &FlatClipParams) -> Vec<Stretch> {
    let mut out = Vec::new();
    for c in screened_channels(info) {
        let row = data.row(c);
        let owned;
        let x = match row.as_slice() {
            Some(s) => s,
            None => {
                owned = row.to_vec();
                &owned
            }
        };
        out.extend(flat_or_clipped_stretches(x, info.sfreq, params).into_iter().map(|(start, stop, kind)| Stretch { channel: c, start, stop, kind }));
    }
    out
}

/// Splits `stretches` found on a run of `n_samples` samples into the channels that are bad
/// (their stretches, merged, cover more than `bad_percent` % of the samples: MNE's
/// `annotate_amplitude` returns such channels as bads and annotates nothing for them) and
/// the stretches of the other channels, which become annotations. Channels sorted.
pub fn split_bad_channels(stretches: Vec<Stretch>, n_samples: usize, bad_percent: f64) -> (Vec<usize>, Vec<Stretch>) {
    let mut per_channel: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for s in &stretches {
        per_channel.entry(s.channel).or_default().push((s.start, s.stop));
    }
    let bad: Vec<usize> = per_channel
        .into_iter()
        .filter(|(_, spans)| {
            let mut spans = spans.clone();
            spans.sort_unstable();
            let (mut covered, mut end) = (0usize, 0usize);
            for (a, b) in spans {
                let a = a.max(end);
                if b > a {
                    covered += b - a;
                    end = b;
                }
            }
            n_samples > 0 && covered as f64 * 100.0 / n_samples as f64 > bad_percent
        })
        .map(|(c, _)| c)
        .collect();
    let kept = stretches.into_iter().filter(|s| !bad.contains(&s.channel)).collect();
    (bad, kept)
}

/// `BAD_flat` / `BAD_clipped` annotations covering `stretches` (overlapping or abutting
/// stretches of one kind, any channel, merged), sorted by onset.
pub fn stretch_annotations(stretches: &[Stretch], sfreq: f64) -> Vec<Annotation> {
    let mut out = Vec::new();
    for (kind, desc) in [("flat", "BAD_flat"), ("clipped", "BAD_clipped")] {
        let mut spans: Vec<(usize, usize)> = stretches.iter().filter(|s| s.kind == kind).map(|s| (s.start, s.stop)).collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        out.extend(merged.into_iter().map(|(a, b)| Annotation { onset: a as f64 / sfreq, duration: (b - a) as f64 / sfreq, description: desc.into() }));
    }
    out.sort_by(|a, b| a.onset.total_cmp(&b.onset));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes give the folds' extremes (NaN skipped, all-NaN and empty giving ∓∞).
    #[test]
    fn max_min_equals_the_folds() {
        let fold = |x: &[f64]| (x.iter().copied().fold(f64::NEG_INFINITY, f64::max), x.iter().copied().fold(f64::INFINITY, f64::min));
        let mut x: Vec<f64> = (0..1000).map(|t| ((t * 7919) % 1013) as f64 - 500.0).collect();
        for len in [0, 1, 7, 8, 9, 17, 1000] {
            assert_eq!(max_min(&x[..len]), fold(&x[..len]), "len {len}");
        }
        x[3] = f64::NAN;
        x[998] = f64::NAN;
        assert_eq!(max_min(&x), fold(&x));
        assert_eq!(max_min(&[f64::NAN; 11]), (f64::NEG_INFINITY, f64::INFINITY));
        assert_eq!(max_min(&[3.0, f64::INFINITY, -2.0, f64::NEG_INFINITY]), (f64::INFINITY, f64::NEG_INFINITY));
    }

    fn ann(onset: f64, duration: f64, d: &str) -> Annotation {
        Annotation { onset, duration, description: d.into() }
    }

    /// The walk over every run, one after another, that `next_equal_pair` replaced.
    fn stretches_run_by_run(x: &[f64], sfreq: f64, params: &FlatClipParams) -> Vec<(usize, usize, &'static str)> {
        let (mx, mn) = x.iter().fold((f64::NEG_INFINITY, f64::INFINITY), |(h, l), &v| (h.max(v), l.min(v)));
        let constant = mx == mn;
        let (flat_min, clip_min) = (min_samples(params.flat_min_duration, sfreq), min_samples(params.clip_min_duration, sfreq));
        let mut out = Vec::new();
        let mut i = 0;
        while i < x.len() {
            let mut j = i + 1;
            while j < x.len() && x[j] == x[i] {
                j += 1;
            }
            let at_rail = !constant && (x[i] == mx || x[i] == mn);
            if at_rail && j - i >= clip_min {
                out.push((i, j, "clipped"));
            } else if j - i >= flat_min {
                out.push((i, j, "flat"));
            }
            i = j;
        }
        out
    }

    /// Runs of every length (1 to 40 samples) at random places, at the rails and inside,
    /// with NaNs, signed zeros, and runs that touch either end: the same stretches as the
    /// run-by-run walk, for every length of signal around the 16-sample blocks.
    #[test]
    fn jumping_to_equal_pairs_finds_what_walking_every_run_finds() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let params = FlatClipParams { flat_min_duration: 0.004, clip_min_duration: 0.002, ..FlatClipParams::default() };
        let mut found = 0;
        for n in (0..70).chain([1000, 4099]) {
            for _ in 0..20 {
                let mut x: Vec<f64> = (0..n).map(|_| (next() % 1000) as f64 - 500.0).collect();
                let mut t = 0;
                while t < n {
                    let len = 1 + (next() % 40) as usize;
                    let v = match next() % 6 {
                        0 => 600.0,
                        1 => -600.0,
                        2 => f64::NAN,
                        3 => if next() % 2 == 0 { 0.0 } else { -0.0 },
                        _ => x[t],
                    };
                    if next() % 3 == 0 {
                        x[t..(t + len).min(n)].fill(v);
                    }
                    t += len + (next() % 30) as usize;
                }
                let got = flat_or_clipped_stretches(&x, 1000.0, &params);
                assert_eq!(got, stretches_run_by_run(&x, 1000.0, &params), "n {n}");
                found += got.len();
            }
        }
        assert!(found > 1000, "{found}");
    }

    #[test]
    fn stretches_find_flat_and_clipped_runs() {
        let sf = 1000.0;
        let mut x: Vec<f64> = (0..5000).map(|i| ((i as f64) * 0.37).sin() * 0.5).collect();
        for v in &mut x[1000..1100] {
            *v = 0.123; // flat, 100 ms
        }
        for v in &mut x[2000..2020] {
            *v = 1.0; // clipped at the max, 20 ms
        }
        for v in &mut x[3000..3005] {
            *v = -1.0; // at the min but only 5 ms: too short
        }
        for v in &mut x[4000..4030] {
            *v = 0.2; // constant but 30 ms: shorter than the 50 ms flat minimum
        }
        let got = flat_or_clipped_stretches(&x, sf, &FlatClipParams::default());
        assert_eq!(got, vec![(1000, 1100, "flat"), (2000, 2020, "clipped")]);
        let p = FlatClipParams { clip_min_duration: 0.005, ..FlatClipParams::default() };
        assert_eq!(flat_or_clipped_stretches(&x, sf, &p)[2], (3000, 3005, "clipped"));
        assert_eq!(flat_or_clipped_stretches(&[1.0; 100], sf, &p), vec![(0, 100, "flat")]);
        let st = vec![Stretch { channel: 0, start: 10, stop: 20, kind: "flat" }, Stretch { channel: 1, start: 15, stop: 30, kind: "flat" }, Stretch { channel: 1, start: 50, stop: 60, kind: "clipped" }];
        let a = stretch_annotations(&st, 100.0);
        assert_eq!(a, vec![ann(0.1, 0.2, "BAD_flat"), ann(0.5, 0.1, "BAD_clipped")]);
    }

    #[test]
    fn a_channel_flat_over_more_than_bad_percent_is_bad_not_annotated() {
        let st = |channel, start, stop| Stretch { channel, start, stop, kind: "flat" };
        // channel 0: dead for the whole run; channel 1: 5 % exactly (not more); channel 2:
        // two overlapping stretches covering 6 %; channel 3: a short dropout.
        let all = vec![st(0, 0, 1000), st(1, 100, 150), st(2, 0, 40), st(2, 30, 60), st(3, 500, 520)];
        let (bad, kept) = split_bad_channels(all, 1000, 5.0);
        assert_eq!(bad, vec![0, 2]);
        assert_eq!(kept, vec![st(1, 100, 150), st(3, 500, 520)]);
        assert_eq!(stretch_annotations(&kept, 1000.0).len(), 2);
    }
}
