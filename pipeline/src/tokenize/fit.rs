//! Fitting the tokenizer's clamps: a strided per-channel subsample and numpy's percentile
//! (see "Fitting" in the [module docs](super)).

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::ArrayView2;

use crate::config::TokenizeConfig;
use crate::error::{Error, Result};

use super::Tokenizer;

/// Default cap on the values kept per channel by [`TokenizerFit`].
pub const DEFAULT_FIT_CAP: usize = 200_000;

/// numpy's default percentile (`np.percentile(a, q)`, `method='linear'`), exactly: the
/// result equals `np.percentile(a.astype(np.float64), q)` bit for bit (numpy on a float32
/// array computes the final interpolation in float32 and may differ by that rounding).
///
/// `q` is in percent (0..=100). The slice is reordered (partial selection, O(n)), not sorted.
/// An empty slice or one holding a NaN gives NaN, as numpy does.
///
/// numpy: virtual index `v = (n − 1)·q'` with `q' = q/100`, `i = floor(v)`,
/// `γ = v − i`; `v ≥ n − 1` gives the maximum; otherwise `a + (b − a)·γ`, or `b − (b − a)(1 − γ)`
/// when `γ ≥ 0.5` (numpy's `_lerp`), with `a`, `b` the `i`-th and `i+1`-th smallest values.
pub fn percentile_linear(values: &mut [f32], q: f64) -> f64 {
    assert!((0.0..=100.0).contains(&q), "percentile {q} is outside [0, 100]");
    let n = values.len();
    if n == 0 || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let qf = q / 100.0;
    let v = (n - 1) as f64 * qf;
    let cmp = |a: &f32, b: &f32| a.total_cmp(b);
    if v >= (n - 1) as f64 {
        return values.iter().copied().max_by(cmp).unwrap() as f64;
    }
    if v < 0.0 {
        return values.iter().copied().min_by(cmp).unwrap() as f64;
    }
    let i = v.floor() as usize;
    let gamma = v - i as f64;
    let (_, a, right) = values.select_nth_unstable_by(i, cmp);
    let a = *a as f64;
    let b = right.iter().copied().min_by(cmp).unwrap() as f64;
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Accumulates the per-channel subsample the clamps are fitted on (module docs: "Fitting").
///
/// Usage: `new` with the total number of samples per channel that will be added (over all
/// training runs), `add_run` for each run (any order, any thread, or into several fits later
/// `merge`d), then `finish`.
#[derive(Clone, Debug)]
pub struct TokenizerFit {
    channels: Vec<String>,
    clamp_percentiles: [f64; 2],
    mu: f64,
    levels: u32,
    stride: u64,
    samples: Vec<Vec<f32>>,
    runs: BTreeSet<String>,
}

impl TokenizerFit {
    /// A fit over `channels`. `total_samples` is the number of samples per channel that all
    /// `add_run` calls together will pass (e.g. the kept windows × window length of every
    /// training run); `cap` bounds the values kept per channel (use [`DEFAULT_FIT_CAP`]).
    pub fn new(channels: Vec<String>, cfg: &TokenizeConfig, total_samples: u64, cap: usize) -> Self {
        let cap = cap.max(1) as u64;
        let stride = total_samples.div_ceil(cap).max(1);
        let n = channels.len();
        TokenizerFit {
            channels,
            clamp_percentiles: cfg.clamp_percentiles,
            mu: cfg.mu,
            levels: cfg.levels,
            stride,
            samples: vec![Vec::new(); n],
            runs: BTreeSet::new(),
        }
    }

    /// The stride between kept samples.
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Values kept so far for channel `ch`.
    pub fn kept(&self, ch: usize) -> usize {
        self.samples[ch].len()
    }

    /// Adds one run: `data` is channels × samples (the run's kept windows concatenated, or the
    /// whole run), channels in the fit's order. `run` names the run (errors, duplicate check).
    pub fn add_run(&mut self, run: &str, data: ArrayView2<f32>) -> Result<()> {
        let what = Path::new(run);
        if data.nrows() != self.channels.len() {
            return Err(Error::request(what, format!("tokenizer fit: {} channels given, {} expected", data.nrows(), self.channels.len())));
        }
        if !self.runs.insert(run.to_string()) {
            return Err(Error::request(what, "tokenizer fit: run added twice"));
        }
        let stride = self.stride as usize;
        let count = data.ncols() / stride;
        for (c, row) in data.outer_iter().enumerate() {
            let kept = &mut self.samples[c];
            kept.reserve(count);
            kept.extend((0..count).map(|i| row[stride / 2 + i * stride]).filter(|v| v.is_finite()));
        }
        Ok(())
    }

    /// Combines two partial fits of the same channels and stride (built with the same `new`
    /// arguments). The result does not depend on the order of merges.
    pub fn merge(mut self, other: TokenizerFit) -> Result<TokenizerFit> {
        let what = Path::new("tokenizer fit");
        if self.channels != other.channels
            || self.stride != other.stride
            || self.mu != other.mu
            || self.levels != other.levels
            || self.clamp_percentiles != other.clamp_percentiles
        {
            return Err(Error::request(what, "cannot merge fits with different channels, stride or parameters"));
        }
        if let Some(dup) = other.runs.iter().find(|r| self.runs.contains(*r)) {
            return Err(Error::request(Path::new(dup), "tokenizer fit: run added twice (in two merged fits)"));
        }
        self.runs.extend(other.runs);
        for (mine, theirs) in self.samples.iter_mut().zip(other.samples) {
            mine.extend(theirs);
        }
        Ok(self)
    }

    /// Computes the clamps (module docs) and returns the tokenizer.
    pub fn finish(self) -> Result<Tokenizer> {
        let [p_lo, p_hi] = self.clamp_percentiles;
        let what = Path::new("tokenizer fit");
        if !(0.0 <= p_lo && p_lo <= p_hi && p_hi <= 100.0) {
            return Err(Error::request(what, format!("clamp_percentiles {:?} must satisfy 0 ≤ lo ≤ hi ≤ 100", self.clamp_percentiles)));
        }
        // Channels in parallel: each one's clamps depend on its own values only.
        use rayon::prelude::*;
        let clamps: Vec<(f32, f32)> = self
            .channels
            .par_iter()
            .zip(self.samples.into_par_iter())
            .map(|(name, mut s)| {
                if s.is_empty() {
                    return Err(Error::request(what, format!("channel {name}: no finite samples to fit the clamps on")));
                }
                Ok(widen_if_flat(percentile_linear(&mut s, p_lo) as f32, percentile_linear(&mut s, p_hi) as f32))
            })
            .collect::<Result<_>>()?;
        let (lo, hi): (Vec<f32>, Vec<f32>) = clamps.into_iter().unzip();
        let t = Tokenizer {
            channels: self.channels,
            lo,
            hi,
            mu: self.mu,
            levels: self.levels,
            clamp_percentiles: self.clamp_percentiles,
        };
        t.validate(what)?;
        Ok(t)
    }
}

/// `(lo, hi)` unchanged when `lo < hi`; otherwise `c ∓ δ` around `c = lo` (module docs).
fn widen_if_flat(lo: f32, hi: f32) -> (f32, f32) {
    if lo < hi {
        return (lo, hi);
    }
    let c = lo as f64;
    let delta = if c == 0.0 { 2f64.powi(-100) } else { 2f64.powi(c.abs().log2().floor() as i32 - 20).max(2f64.powi(-100)) };
    ((c - delta) as f32, (c + delta) as f32)
}
