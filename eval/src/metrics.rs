//! Per-channel agreement between a true and a predicted signal: MSE, Pearson r and R².
//!
//! Arrays have axes (window, channel, time). Each channel's numbers pool every window and
//! every sample of the evaluated data, so a channel's r is "how well the prediction follows
//! that sensor over the whole test set", the figure the report compares across predictors.
//!
//! Accumulation is in f64 and **two-pass** (means first, then centred sums): MEG in tesla is
//! ~1e-12 with offsets that can dwarf the signal, and the one-pass formula Σx² − n·x̄² cancels
//! catastrophically in that regime. The data are already in memory, so the second pass costs
//! one more read and buys exact-to-rounding centred sums (Welford would too, but is slower and
//! no more accurate here).
//!
//! Undefined values are NaN, never a panic: a channel whose prediction or truth is constant has
//! no correlation (r = NaN), and a constant truth has no variance to explain (R² = NaN). NaN
//! serializes as JSON `null` (see [`nan_as_null`]); summaries skip NaN and say how many.

use crate::{shape_error, Error, Result};
use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Per-channel metrics of one predictor; vectors are indexed by channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelMetrics {
    /// Mean squared error, in the squared physical unit of the channel.
    #[serde(with = "nan_as_null")]
    pub mse: Vec<f64>,
    /// Pearson correlation; NaN when truth or prediction is constant on the channel.
    #[serde(with = "nan_as_null")]
    pub pearson_r: Vec<f64>,
    /// 1 − SSE/SST around the channel's mean over the evaluated data; NaN when SST = 0.
    #[serde(with = "nan_as_null")]
    pub r2: Vec<f64>,
    /// Samples pooled per channel (windows × time).
    pub n_samples: usize,
}

/// Mean of one metric over channels, skipping NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricMean {
    /// NaN-skipping mean (NaN when every channel was skipped).
    #[serde(with = "nan_as_null::scalar")]
    pub mean: f64,
    /// Channels that entered the mean.
    pub n_used: usize,
    /// Channels skipped because the metric was NaN.
    pub n_skipped: usize,
}

/// Means of all three metrics over a group of channels (all, or one sensor type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// "all", or a [`sensor_type`] name.
    pub group: String,
    /// Channels in the group.
    pub n_channels: usize,
    pub mse: MetricMean,
    pub pearson_r: MetricMean,
    pub r2: MetricMean,
}

/// Summary of a [`ChannelMetrics`]: all channels, then one entry per sensor type present
/// (in order of first appearance, so the output is deterministic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    pub all: GroupSummary,
    pub by_sensor_type: Vec<GroupSummary>,
}

/// Per-channel MSE, Pearson r and R² of `pred` against `truth`, axes (window, channel, time).
///
/// Errors when the shapes differ or when there is no sample to evaluate.
pub fn channel_metrics(truth: ArrayView3<f32>, pred: ArrayView3<f32>) -> Result<ChannelMetrics> {
    if truth.shape() != pred.shape() {
        return Err(shape_error("prediction vs truth (window, channel, time)", truth.shape(), pred.shape()));
    }
    let (n_windows, n_channels, n_times) = truth.dim();
    let n = n_windows * n_times;
    if n == 0 || n_channels == 0 {
        return Err(Error::Empty(format!(
            "no sample to evaluate: shape {:?}",
            truth.shape()
        )));
    }
    // Channels are independent, so parallelising over them keeps results bit-identical
    // whatever the thread count.
    let per_channel: Vec<(f64, f64, f64)> = (0..n_channels)
        .into_par_iter()
        .map(|c| {
            let t = truth.index_axis(Axis(1), c);
            let p = pred.index_axis(Axis(1), c);
            channel_moments(t.iter().copied(), p.iter().copied(), n).finish()
        })
        .collect();
    Ok(ChannelMetrics {
        mse: per_channel.iter().map(|m| m.0).collect(),
        pearson_r: per_channel.iter().map(|m| m.1).collect(),
        r2: per_channel.iter().map(|m| m.2).collect(),
        n_samples: n,
    })
}

/// Centred sums of one channel, from the two passes.
struct Moments {
    n: f64,
    /// Σ (t − p)²
    sse: f64,
    /// Σ (t − t̄)²
    stt: f64,
    /// Σ (p − p̄)²
    spp: f64,
    /// Σ (t − t̄)(p − p̄)
    stp: f64,
}

impl Moments {
    /// (mse, r, r2) with NaN for undefined values.
    fn finish(&self) -> (f64, f64, f64) {
        let mse = self.sse / self.n;
        let r = if self.stt > 0.0 && self.spp > 0.0 {
            // Clamp: rounding can push |r| a hair above 1 for perfectly (anti)correlated data.
            (self.stp / (self.stt.sqrt() * self.spp.sqrt())).clamp(-1.0, 1.0)
        } else {
            f64::NAN
        };
        let r2 = if self.stt > 0.0 { 1.0 - self.sse / self.stt } else { f64::NAN };
        (mse, r, r2)
    }
}

/// Two-pass centred sums of a channel given as two equally long iterators of `n` samples.
fn channel_moments<I>(truth: I, pred: I, n: usize) -> Moments
where
    I: Iterator<Item = f32> + Clone,
{
    let nf = n as f64;
    let (st, sp) = truth
        .clone()
        .zip(pred.clone())
        .fold((0.0f64, 0.0f64), |(a, b), (t, p)| (a + t as f64, b + p as f64));
    let (mt, mp) = (st / nf, sp / nf);
    let mut m = Moments { n: nf, sse: 0.0, stt: 0.0, spp: 0.0, stp: 0.0 };
    for (t, p) in truth.zip(pred) {
        let (t, p) = (t as f64, p as f64);
        let (dt, dp) = (t - mt, p - mp);
        m.sse += (t - p) * (t - p);
        m.stt += dt * dt;
        m.spp += dp * dp;
        m.stp += dt * dp;
    }
    m
}

impl ChannelMetrics {
    /// Number of channels.
    pub fn n_channels(&self) -> usize {
        self.mse.len()
    }

    /// Means over all channels and per sensor type; `channel_names` gives each channel's
    /// name (for [`sensor_type`]) and must have one entry per channel.
    pub fn summary<S: AsRef<str>>(&self, channel_names: &[S]) -> Result<MetricsSummary> {
        if channel_names.len() != self.n_channels() {
            return Err(shape_error("channel names vs metrics", &[self.n_channels()], &[channel_names.len()]));
        }
        let all: Vec<usize> = (0..self.n_channels()).collect();
        let mut types: Vec<&str> = Vec::new();
        for name in channel_names {
            let t = sensor_type(name.as_ref());
            if !types.contains(&t) {
                types.push(t);
            }
        }
        let by_sensor_type = types
            .iter()
            .map(|t| {
                let idx: Vec<usize> = (0..self.n_channels())
                    .filter(|&c| sensor_type(channel_names[c].as_ref()) == *t)
                    .collect();
                self.group_summary(t, &idx)
            })
            .collect();
        Ok(MetricsSummary { all: self.group_summary("all", &all), by_sensor_type })
    }

    /// Summary of the channels `idx`, named `group`.
    fn group_summary(&self, group: &str, idx: &[usize]) -> GroupSummary {
        let pick = |v: &[f64]| nan_skipping_mean(idx.iter().map(|&i| v[i]));
        GroupSummary {
            group: group.to_string(),
            n_channels: idx.len(),
            mse: pick(&self.mse),
            pearson_r: pick(&self.pearson_r),
            r2: pick(&self.r2),
        }
    }
}

/// Mean of the non-NaN values (NaN when there is none), with counts of used and skipped ones.
pub fn nan_skipping_mean<I: IntoIterator<Item = f64>>(values: I) -> MetricMean {
    let (mut sum, mut n_used, mut n_skipped) = (0.0f64, 0usize, 0usize);
    for v in values {
        if v.is_nan() {
            n_skipped += 1;
        } else {
            sum += v;
            n_used += 1;
        }
    }
    let mean = if n_used > 0 { sum / n_used as f64 } else { f64::NAN };
    MetricMean { mean, n_used, n_skipped }
}

/// Sensor type of a channel name, for grouping in summaries and plots.
///
/// Neuromag/Elekta naming `MEG` + four digits (optionally `MEG 0111`): last digit 1 → "mag",
/// 2 or 3 → "grad" (the two planar gradiometers of a triplet). Names starting with `EEG`
/// → "eeg". Any other name (CTF, KIT, or a renamed MEG channel) → "meg", since callers pass
/// MEG channel names.
pub fn sensor_type(channel_name: &str) -> &'static str {
    let upper = channel_name.trim().to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("MEG") {
        let digits = rest.trim_start();
        if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match digits.as_bytes()[3] {
                b'1' => "mag",
                b'2' | b'3' => "grad",
                _ => "meg",
            };
        }
        return "meg";
    }
    if upper.starts_with("EEG") {
        return "eeg";
    }
    "meg"
}

/// Serde helpers writing NaN as JSON `null` and reading `null` back as NaN, so that
/// "undefined" survives a round trip (serde_json would refuse to read NaN into an f64).
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize a vector of f64 with NaN (and ±inf) as `null`.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let opt: Vec<Option<f64>> = v.iter().map(|x| x.is_finite().then_some(*x)).collect();
        opt.serialize(s)
    }

    /// Deserialize a vector of f64 with `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let opt: Vec<Option<f64>> = Vec::deserialize(d)?;
        Ok(opt.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }

    /// The same for a single f64.
    pub mod scalar {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
            v.is_finite().then_some(*v).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, ShapeBuilder};

    fn arr(windows: usize, channels: usize, times: usize, f: impl Fn(usize, usize, usize) -> f32) -> Array3<f32> {
        Array3::from_shape_fn((windows, channels, times), |(w, c, t)| f(w, c, t))
    }

    #[test]
    fn known_answer_pearson_r2_mse() {
        // Channel 0: truth 1..=4 over two windows, prediction = truth + 1 → r = 1, MSE = 1,
        // SST = 5, R² = 1 − 4/5 = 0.2.
        // Channel 1: prediction = −truth → r = −1, SSE = Σ(2t)² = 4·30 = 120, R² = 1 − 120/5.
        let truth = arr(2, 2, 2, |w, _, t| (w * 2 + t + 1) as f32);
        let pred = arr(2, 2, 2, |w, c, t| {
            let v = (w * 2 + t + 1) as f32;
            if c == 0 { v + 1.0 } else { -v }
        });
        let m = channel_metrics(truth.view(), pred.view()).unwrap();
        assert_eq!(m.n_samples, 4);
        assert!((m.pearson_r[0] - 1.0).abs() < 1e-12);
        assert!((m.mse[0] - 1.0).abs() < 1e-12);
        assert!((m.r2[0] - 0.2).abs() < 1e-12);
        assert!((m.pearson_r[1] + 1.0).abs() < 1e-12);
        assert!((m.mse[1] - 30.0).abs() < 1e-12);
        assert!((m.r2[1] - (1.0 - 120.0 / 5.0)).abs() < 1e-12);
    }

    #[test]
    fn pearson_matches_hand_computed_value() {
        // x = [1,2,3,4,5], y = [2,1,4,3,5]: Sxy = 8, Sxx = Syy = 10 → r = 0.8.
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0f32, 1.0, 4.0, 3.0, 5.0];
        let truth = arr(1, 1, 5, |_, _, t| x[t]);
        let pred = arr(1, 1, 5, |_, _, t| y[t]);
        let m = channel_metrics(truth.view(), pred.view()).unwrap();
        assert!((m.pearson_r[0] - 0.8).abs() < 1e-12);
        // SSE = 1+1+1+1+0 = 4, SST = 10.
        assert!((m.r2[0] - 0.6).abs() < 1e-12);
        assert!((m.mse[0] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn tiny_physical_units_with_offset_are_exact() {
        // MEG-like scale: 1e-12 signal on a 1e-9 offset. The one-pass formula would lose
        // most digits; two-pass f64 keeps r = 1 for an affine prediction.
        let truth = arr(3, 1, 50, |w, _, t| (1e-9 + 1e-12 * ((w * 50 + t) as f64).sin()) as f32);
        let pred = arr(3, 1, 50, |w, _, t| (2e-9 + 2e-12 * ((w * 50 + t) as f64).sin()) as f32);
        let m = channel_metrics(truth.view(), pred.view()).unwrap();
        // f32 storage quantises the 1e-12 ripple on a 1e-9 offset to ~1e-16, so r is ~1
        // to a few 1e-4, not to 1e-12; the point is that it is not garbage.
        assert!(m.pearson_r[0] > 0.999, "r = {}", m.pearson_r[0]);
    }

    #[test]
    fn constant_prediction_or_truth_gives_nan_not_panic() {
        let truth = arr(2, 3, 4, |w, c, t| if c == 1 { 5.0 } else { (w + t + c) as f32 });
        let pred = arr(2, 3, 4, |w, c, t| if c == 0 { 7.0 } else { (w * t) as f32 });
        let m = channel_metrics(truth.view(), pred.view()).unwrap();
        assert!(m.pearson_r[0].is_nan(), "constant prediction → r NaN");
        assert!(m.r2[0].is_finite(), "R² is defined when the truth varies");
        assert!(m.pearson_r[1].is_nan(), "constant truth → r NaN");
        assert!(m.r2[1].is_nan(), "constant truth → R² NaN");
        assert!(m.mse[1].is_finite());
        assert!(m.pearson_r[2].is_finite());
        let s = m.summary(&["MEG0111", "MEG0112", "MEG0113"]).unwrap();
        assert_eq!(s.all.pearson_r.n_skipped, 2);
        assert_eq!(s.all.pearson_r.n_used, 1);
        assert!((s.all.pearson_r.mean - m.pearson_r[2]).abs() < 1e-15);
        // NaN → null in JSON, and back.
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: ChannelMetrics = serde_json::from_str(&json).unwrap();
        assert!(back.pearson_r[0].is_nan() && back.pearson_r[2] == m.pearson_r[2]);
    }

    #[test]
    fn shape_mismatch_is_a_clear_error() {
        let a = Array3::<f32>::zeros((2, 3, 4));
        let b = Array3::<f32>::zeros((2, 4, 4));
        let err = channel_metrics(a.view(), b.view()).unwrap_err().to_string();
        assert!(err.contains("shape mismatch") && err.contains("[2, 3, 4]") && err.contains("[2, 4, 4]"), "{err}");
        let e = Array3::<f32>::zeros((0, 3, 4));
        assert!(matches!(channel_metrics(e.view(), e.view()), Err(Error::Empty(_))));
        let m = channel_metrics(a.view(), a.view()).unwrap();
        assert!(m.summary(&["MEG0111"]).is_err());
    }

    #[test]
    fn non_contiguous_views_give_same_numbers() {
        // bf-eval may hand us views of (channel, window, time) storage; layout must not matter.
        let truth = arr(3, 2, 7, |w, c, t| ((w * 13 + c * 7 + t * 3) % 11) as f32);
        let pred = arr(3, 2, 7, |w, c, t| ((w * 5 + c * 3 + t * 2) % 7) as f32);
        let mut f = Array3::<f32>::zeros((3, 2, 7).f());
        f.assign(&pred);
        let a = channel_metrics(truth.view(), pred.view()).unwrap();
        let b = channel_metrics(truth.view(), f.view()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn sensor_types_follow_neuromag_naming() {
        assert_eq!(sensor_type("MEG0111"), "mag");
        assert_eq!(sensor_type("MEG2641"), "mag");
        assert_eq!(sensor_type("MEG0112"), "grad");
        assert_eq!(sensor_type("MEG0113"), "grad");
        assert_eq!(sensor_type("MEG 1433"), "grad");
        assert_eq!(sensor_type("MEG0114"), "meg");
        assert_eq!(sensor_type("MEG011"), "meg");
        assert_eq!(sensor_type("MLC11-2805"), "meg");
        assert_eq!(sensor_type("EEG001"), "eeg");
    }

    #[test]
    fn summary_groups_by_sensor_type_in_first_appearance_order() {
        let names = ["MEG0113", "MEG0112", "MEG0111", "MEG0122"];
        let m = ChannelMetrics {
            mse: vec![1.0, 2.0, 3.0, 4.0],
            pearson_r: vec![0.1, 0.3, 0.5, f64::NAN],
            r2: vec![0.0; 4],
            n_samples: 10,
        };
        let s = m.summary(&names).unwrap();
        assert_eq!(s.by_sensor_type.len(), 2);
        let grad = &s.by_sensor_type[0];
        assert_eq!((grad.group.as_str(), grad.n_channels), ("grad", 3));
        assert!((grad.pearson_r.mean - 0.2).abs() < 1e-15);
        assert_eq!(grad.pearson_r.n_skipped, 1);
        assert!((grad.mse.mean - 7.0 / 3.0).abs() < 1e-15);
        let mag = &s.by_sensor_type[1];
        assert_eq!((mag.group.as_str(), mag.n_channels), ("mag", 1));
        assert!((mag.pearson_r.mean - 0.5).abs() < 1e-15);
        assert!((s.all.pearson_r.mean - 0.3).abs() < 1e-15);
    }
}
