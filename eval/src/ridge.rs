//! Lagged ridge regression EEG → MEG: the linear baseline the model must beat.
//!
//! **Model.** For each MEG channel m and time t of a window,
//! `y_m(t) = b_m + Σ_c Σ_{ℓ ∈ lags} w_{m,c,ℓ} · z_c(t − ℓ)`, where `z_c` is EEG channel c
//! standardized with the *training* mean and standard deviation (a positive lag looks into
//! the past). Lags never cross windows: outside its window the standardized EEG is **zero
//! (= the training mean, "no information")**, both when fitting and when predicting. Targets
//! are standardized with training statistics too (undone in [`RidgeFit::predict`]); the
//! intercept is fitted (features and targets are centred, the intercept is not penalized).
//!
//! **Moments, not a design matrix.** With 70 channels × 11 lags = 770 features and ~2.6 M
//! training samples, forming XᵀX and XᵀY sample by sample costs ~2·10¹² multiply-adds. Lagged
//! features are shifted copies of the same channels, so both are cross-correlations:
//! XᵀY[(c,ℓ),m] = Σ_u z_c(u)·y_m(u+ℓ) exactly, and XᵀX[(c₁,ℓ₁),(c₂,ℓ₂)] is the
//! correlation of z_c₁ and z_c₂ at lag ℓ₁−ℓ₂ minus the few products that the zero padding
//! removes at the window edges (added up directly, [`EdgeTerms`]). The correlations are
//! summed over windows as cross-spectra (one real FFT per window and channel, then one small
//! GEMM per frequency bin over a chunk of windows) and brought back with one inverse FFT per
//! channel pair: ~10× fewer operations. Everything is f64; the FFT length is at least the
//! window plus the largest lag difference, so circular correlation equals linear correlation.
//!
//! **Determinism.** Work is parallel over windows (FFTs), frequency bins and edge terms, but
//! each output sum is owned by one task and accumulated over fixed chunks of windows in window
//! order, so the result is bit-identical for any number of rayon threads.
//!
//! **Regularization path.** One symmetric eigendecomposition XᵀX = VΛVᵀ (nalgebra) makes each
//! α cost a matrix product: W = V (Λ+α)⁻¹ VᵀXᵀY. α is given *relative* to trace(XᵀX)/p (the
//! mean eigenvalue), so the same grid fits any data scale. The validation Pearson r of every
//! channel is computed from validation moments (Σŷ, Σŷ², Σŷy from X_vᵀX_v, X_vᵀY_v), never
//! by predicting the validation set per α. The chosen α maximizes the mean validation r
//! (NaN-skipping); ties go to the larger α (the simpler model).

use crate::{shape_error, Error, Result};
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, Array3, ArrayView3, Axis};
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use std::collections::HashMap;
use std::sync::Arc;

/// Windows per accumulation chunk. Fixed (not derived from the thread count) so that the
/// order of floating-point additions, hence the result, never depends on the machine.
const CHUNK: usize = 64;

/// Scores closer than this are ties (then the larger α wins).
const TIE: f64 = 1e-12;

/// A fitted lagged ridge model, with what the report needs about its selection.
#[derive(Debug, Clone)]
pub struct RidgeFit {
    /// Lags in samples (positive = EEG in the past of the predicted MEG sample).
    pub lags: Vec<isize>,
    /// Chosen α, relative to trace(XᵀX)/p of the centred standardized training features.
    pub alpha: f64,
    /// Chosen α as added to the eigenvalues (absolute).
    pub alpha_absolute: f64,
    /// The relative α grid tried, in the order given.
    pub alphas: Vec<f64>,
    /// Mean validation Pearson r (NaN-skipping over channels) for each α of `alphas`.
    pub val_mean_r: Vec<f64>,
    /// Validation Pearson r per MEG channel at the chosen α (NaN for constant channels).
    pub val_pearson_r: Vec<f64>,
    /// Training and validation samples (windows × time).
    pub n_train_samples: usize,
    pub n_val_samples: usize,
    /// Window length in samples the model was fitted on.
    pub n_times: usize,
    x_mean: Vec<f64>,
    x_std: Vec<f64>,
    y_mean: Vec<f64>,
    y_std: Vec<f64>,
    /// (features × MEG channels), standardized units; feature index = channel·n_lags + lag index.
    weights: Array2<f64>,
    /// Per MEG channel, standardized units.
    intercept: Array1<f64>,
}

/// Relative α grid 1e-3 … 1e5, two values per decade (17 values).
pub fn default_alphas() -> Vec<f64> {
    (0..=16).map(|i| 10f64.powf(-3.0 + 0.5 * i as f64)).collect()
}

/// Lags −max_lag ..= max_lag.
pub fn symmetric_lags(max_lag: usize) -> Vec<isize> {
    let l = max_lag as isize;
    (-l..=l).collect()
}

/// Fits the lagged ridge model on `train_*`, choosing α on `val_*`.
///
/// Arrays have axes (window, channel, time); EEG and MEG of a split must have the same
/// windows and times, and validation the same channels and window length as training.
/// Every α must be finite and > 0; lags must be distinct and shorter than a window.
pub fn fit_ridge_lagged(
    train_x: ArrayView3<f32>,
    train_y: ArrayView3<f32>,
    val_x: ArrayView3<f32>,
    val_y: ArrayView3<f32>,
    lags: &[isize],
    alphas: &[f64],
) -> Result<RidgeFit> {
    check_inputs(train_x, train_y, val_x, val_y, lags, alphas)?;
    let (x_mean, x_std) = channel_stats(train_x);
    let (y_mean, y_std) = channel_stats(train_y);
    let plan = LagPlan::new(lags, train_x.dim().2);
    let scale = Standardizer { x_mean: &x_mean, x_std: &x_std, y_mean: &y_mean, y_std: &y_std };
    let train = lagged_moments(train_x, train_y, &plan, &scale);
    let val = lagged_moments(val_x, val_y, &plan, &scale);

    let n = train.n;
    let mu_f = &train.s_f / n;
    let mu_y = &train.s_y / n;
    let g_c = &train.g - &(outer(&mu_f, &mu_f) * n);
    let b_c = &train.b - &(outer(&mu_f, &mu_y) * n);
    let p = g_c.nrows();
    let trace_scale = g_c.diag().sum() / p as f64;
    if !(trace_scale.is_finite() && trace_scale > 0.0) {
        return Err(Error::Numerical(format!(
            "training features have no variance (trace(XᵀX)/p = {trace_scale})"
        )));
    }
    let (eigvals, eigvecs) = eigen(&g_c)?;
    let proj = eigvecs.t().dot(&b_c); // VᵀXᵀY, shared by every α

    let mut val_mean_r = Vec::with_capacity(alphas.len());
    let mut best: Option<(usize, f64)> = None;
    for (i, &alpha) in alphas.iter().enumerate() {
        let w = ridge_weights(&eigvals, &eigvecs, &proj, alpha * trace_scale);
        let score = crate::metrics::nan_skipping_mean(validation_r(&w, &val)).mean;
        val_mean_r.push(score);
        best = Some(pick_better(best, (i, score), alphas));
    }
    let (best_i, _) = best.expect("alphas checked non-empty");
    let alpha = alphas[best_i];
    let weights = ridge_weights(&eigvals, &eigvecs, &proj, alpha * trace_scale);
    let val_pearson_r = validation_r(&weights, &val);
    let intercept = &mu_y - &mu_f.dot(&weights);
    Ok(RidgeFit {
        lags: lags.to_vec(),
        alpha,
        alpha_absolute: alpha * trace_scale,
        alphas: alphas.to_vec(),
        val_mean_r,
        val_pearson_r,
        n_train_samples: train.n as usize,
        n_val_samples: val.n as usize,
        n_times: train_x.dim().2,
        x_mean,
        x_std,
        y_mean,
        y_std,
        weights,
        intercept,
    })
}

/// The better of the best so far and a candidate: higher score, ties (within [`TIE`]) to the
/// larger α. A NaN score (no channel had a defined r) never wins over a number.
fn pick_better(best: Option<(usize, f64)>, cand: (usize, f64), alphas: &[f64]) -> (usize, f64) {
    let Some(b) = best else { return cand };
    if cand.1.is_nan() {
        return if b.1.is_nan() && alphas[cand.0] > alphas[b.0] { cand } else { b };
    }
    if b.1.is_nan() || cand.1 > b.1 + TIE || ((cand.1 - b.1).abs() <= TIE && alphas[cand.0] > alphas[b.0]) {
        return cand;
    }
    b
}

impl RidgeFit {
    /// Predicted MEG (window, MEG channel, time) in physical units for EEG `x`
    /// (window, EEG channel, time), with the same zero padding at window edges as the fit.
    pub fn predict(&self, x: ArrayView3<f32>) -> Result<Array3<f32>> {
        let (n_windows, n_eeg, n_times) = x.dim();
        if n_eeg != self.x_mean.len() || n_times != self.n_times {
            return Err(shape_error(
                "EEG (window, channel, time) for ridge prediction",
                &[n_windows, self.x_mean.len(), self.n_times],
                x.shape(),
            ));
        }
        let n_meg = self.y_mean.len();
        // Windows are independent: parallel map, then assemble in order (deterministic).
        let per_window: Vec<Array2<f64>> = (0..n_windows)
            .into_par_iter()
            .map(|w| {
                let z = standardize(x.index_axis(Axis(0), w), &self.x_mean, &self.x_std);
                lagged_design(&z, &self.lags).dot(&self.weights) // (time × MEG)
            })
            .collect();
        let mut out = Array3::<f32>::zeros((n_windows, n_meg, n_times));
        for (w, yhat) in per_window.iter().enumerate() {
            for m in 0..n_meg {
                let (mean, sd, b) = (self.y_mean[m], self.y_std[m], self.intercept[m]);
                for t in 0..n_times {
                    out[[w, m, t]] = (mean + sd * (b + yhat[[t, m]])) as f32;
                }
            }
        }
        Ok(out)
    }

    /// Slopes in physical units, axes (MEG channel, EEG channel, lag index in `lags`):
    /// ∂y_m(t) / ∂x_c(t − ℓ) away from window edges.
    pub fn coefficients(&self) -> Array3<f64> {
        let (n_meg, n_eeg, n_lags) = (self.y_mean.len(), self.x_mean.len(), self.lags.len());
        Array3::from_shape_fn((n_meg, n_eeg, n_lags), |(m, c, li)| {
            self.y_std[m] * self.weights[[c * n_lags + li, m]] / self.x_std[c]
        })
    }
}

/// Errors for every inconsistent input, before any work.
fn check_inputs(
    train_x: ArrayView3<f32>,
    train_y: ArrayView3<f32>,
    val_x: ArrayView3<f32>,
    val_y: ArrayView3<f32>,
    lags: &[isize],
    alphas: &[f64],
) -> Result<()> {
    let (nw, n_eeg, nt) = train_x.dim();
    let n_meg = train_y.dim().1;
    if train_y.dim() != (nw, n_meg, nt) {
        return Err(shape_error("training MEG vs EEG (window, ·, time)", &[nw, n_meg, nt], train_y.shape()));
    }
    let nv = val_x.dim().0;
    if val_x.dim() != (nv, n_eeg, nt) {
        return Err(shape_error("validation EEG vs training EEG", &[nv, n_eeg, nt], val_x.shape()));
    }
    if val_y.dim() != (nv, n_meg, nt) {
        return Err(shape_error("validation MEG vs training MEG", &[nv, n_meg, nt], val_y.shape()));
    }
    if nw == 0 || nv == 0 || nt == 0 || n_eeg == 0 || n_meg == 0 {
        return Err(Error::Empty(format!(
            "ridge needs training and validation windows, samples and channels: train {:?}, val {:?}",
            train_x.shape(),
            val_x.shape()
        )));
    }
    if lags.is_empty() || alphas.is_empty() {
        return Err(Error::Empty("ridge needs at least one lag and one alpha".into()));
    }
    if let Some(l) = lags.iter().find(|l| l.unsigned_abs() >= nt) {
        return Err(Error::Invalid(format!("lag {l} is not shorter than the window ({nt} samples)")));
    }
    let mut sorted = lags.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|p| p[0] == p[1]) {
        return Err(Error::Invalid(format!("duplicate lag in {lags:?}")));
    }
    if let Some(a) = alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
        return Err(Error::Invalid(format!("alpha {a} is not finite and > 0")));
    }
    Ok(())
}

/// Per-channel (mean, std) over all windows and samples, two-pass f64. A constant channel
/// gets std 1 so that it standardizes to zeros instead of dividing by zero.
fn channel_stats(a: ArrayView3<f32>) -> (Vec<f64>, Vec<f64>) {
    let (nw, nc, nt) = a.dim();
    let n = (nw * nt) as f64;
    (0..nc)
        .into_par_iter()
        .map(|c| {
            let ch = a.index_axis(Axis(1), c);
            let mean = ch.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = ch.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let sd = var.sqrt();
            (mean, if sd > 0.0 && sd.is_finite() { sd } else { 1.0 })
        })
        .unzip()
}

/// Training statistics used to standardize both splits.
struct Standardizer<'a> {
    x_mean: &'a [f64],
    x_std: &'a [f64],
    y_mean: &'a [f64],
    y_std: &'a [f64],
}

/// One window (channel, time) standardized to f64.
fn standardize(win: ndarray::ArrayView2<f32>, mean: &[f64], sd: &[f64]) -> Array2<f64> {
    Array2::from_shape_fn(win.dim(), |(c, t)| (win[[c, t]] as f64 - mean[c]) / sd[c])
}

/// Explicit lagged design (time × channel·n_lags) of one standardized window, zero-padded.
fn lagged_design(z: &Array2<f64>, lags: &[isize]) -> Array2<f64> {
    let (nc, nt) = z.dim();
    let nl = lags.len();
    let mut d = Array2::<f64>::zeros((nt, nc * nl));
    for c in 0..nc {
        for (li, &l) in lags.iter().enumerate() {
            for t in 0..nt {
                let src = t as isize - l;
                if src >= 0 && (src as usize) < nt {
                    d[[t, c * nl + li]] = z[[c, src as usize]];
                }
            }
        }
    }
    d
}

/// Lags and the quantities derived from them once.
struct LagPlan {
    lags: Vec<isize>,
    n_times: usize,
    /// Distinct lag differences ℓ₁ − ℓ₂ (sorted), the correlation lags XᵀX needs.
    diffs: Vec<isize>,
    /// FFT length: ≥ window + largest |lag| and |lag difference|, 2·3·5-smooth.
    nfft: usize,
    /// (u, d) pairs of the edge products removed by the zero padding at each window end.
    head: Vec<(usize, isize)>,
    tail: Vec<(usize, isize)>,
}

impl LagPlan {
    fn new(lags: &[isize], n_times: usize) -> Self {
        let mut diffs: Vec<isize> = lags.iter().flat_map(|a| lags.iter().map(move |b| a - b)).collect();
        diffs.sort_unstable();
        diffs.dedup();
        let reach = diffs.iter().chain(lags).map(|d| d.unsigned_abs()).max().unwrap_or(0);
        let nfft = smooth_at_least(n_times + reach);
        let nt = n_times as isize;
        let mut head = Vec::new();
        let mut tail = Vec::new();
        // Feature (c, ℓ) at time t is z_c(t − ℓ). With u = t − ℓ₁, a Gram entry sums
        // z_c₁(u)·z_c₂(u + ℓ₁ − ℓ₂) over u ∈ [max(0, −ℓ₁), min(T, T − ℓ₁)): the full
        // correlation minus the first −ℓ₁ (ℓ₁ < 0) or last ℓ₁ (ℓ₁ > 0) samples of u.
        for &l1 in lags {
            for &l2 in lags {
                let d = l1 - l2;
                let us: Vec<isize> = if l1 < 0 { (0..-l1).collect() } else { (nt - l1..nt).collect() };
                for u in us {
                    if (0..nt).contains(&(u + d)) {
                        let list = if l1 < 0 { &mut head } else { &mut tail };
                        list.push((u as usize, d));
                    }
                }
            }
        }
        for list in [&mut head, &mut tail] {
            list.sort_unstable();
            list.dedup();
        }
        LagPlan { lags: lags.to_vec(), n_times, diffs, nfft, head, tail }
    }

    fn n_features(&self, n_eeg: usize) -> usize {
        n_eeg * self.lags.len()
    }
}

/// Smallest n ≥ `min` whose only prime factors are 2, 3 and 5 (fast FFT sizes).
fn smooth_at_least(min: usize) -> usize {
    (min.max(1)..)
        .find(|&n| {
            let mut m = n;
            for p in [2, 3, 5] {
                while m % p == 0 {
                    m /= p;
                }
            }
            m == 1
        })
        .expect("2·3·5-smooth numbers are unbounded")
}

/// Sufficient statistics of one split in standardized units (uncentred).
struct SplitMoments {
    /// Samples (windows × time).
    n: f64,
    /// XᵀX (features × features).
    g: Array2<f64>,
    /// XᵀY (features × MEG).
    b: Array2<f64>,
    /// Σ features.
    s_f: Array1<f64>,
    /// Σ y and Σ y² per MEG channel.
    s_y: Array1<f64>,
    ss_y: Array1<f64>,
}

/// Running sums over chunks of windows; every field is owned by one parallel task at a time.
struct Accumulators {
    /// Per frequency bin, [Re A | Im A]ᵀ [Re A | Im A] (2C × 2C) summed over windows.
    xx: Vec<Array2<f64>>,
    /// Per frequency bin, [Re A | Im A]ᵀ [Re Y | Im Y] (2C × 2M).
    xy: Vec<Array2<f64>>,
    /// Edge products Σ_w z(u) ⊗ z(u + d) (C × C) for the plan's head and tail pairs.
    head: Vec<Array2<f64>>,
    tail: Vec<Array2<f64>>,
    /// Σ_w z_c(u), per time and channel (T × C).
    col_sum: Array2<f64>,
    s_y: Array1<f64>,
    ss_y: Array1<f64>,
}

/// One window's spectra and standardized EEG, produced in parallel.
struct WindowSpectra {
    x_spec: Vec<Complex<f64>>, // channel-major, nbins each
    y_spec: Vec<Complex<f64>>,
    z: Array2<f64>, // standardized EEG (channel, time)
    s_y: Array1<f64>,
    ss_y: Array1<f64>,
}

/// XᵀX, XᵀY and the sums of one split, via cross-spectra (see the module doc).
fn lagged_moments(x: ArrayView3<f32>, y: ArrayView3<f32>, plan: &LagPlan, sc: &Standardizer) -> SplitMoments {
    let (nw, n_eeg, nt) = x.dim();
    let n_meg = y.dim().1;
    let nbins = plan.nfft / 2 + 1;
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(plan.nfft);
    let inv = planner.plan_fft_inverse(plan.nfft);
    let mut acc = Accumulators {
        xx: vec![Array2::zeros((2 * n_eeg, 2 * n_eeg)); nbins],
        xy: vec![Array2::zeros((2 * n_eeg, 2 * n_meg)); nbins],
        head: vec![Array2::zeros((n_eeg, n_eeg)); plan.head.len()],
        tail: vec![Array2::zeros((n_eeg, n_eeg)); plan.tail.len()],
        col_sum: Array2::zeros((nt, n_eeg)),
        s_y: Array1::zeros(n_meg),
        ss_y: Array1::zeros(n_meg),
    };
    for start in (0..nw).step_by(CHUNK) {
        let end = (start + CHUNK).min(nw);
        let spectra: Vec<WindowSpectra> = (start..end)
            .into_par_iter()
            .map(|w| window_spectra(x.index_axis(Axis(0), w), y.index_axis(Axis(0), w), sc, &fwd))
            .collect();
        accumulate_chunk(&mut acc, &spectra, plan, nbins);
    }
    finish_moments(acc, plan, nw * nt, n_eeg, n_meg, &inv)
}

/// Standardizes one window and takes the real FFT (zero-padded to nfft) of every channel.
fn window_spectra(
    xw: ndarray::ArrayView2<f32>,
    yw: ndarray::ArrayView2<f32>,
    sc: &Standardizer,
    fwd: &Arc<dyn realfft::RealToComplex<f64>>,
) -> WindowSpectra {
    let z = standardize(xw, sc.x_mean, sc.x_std);
    let ys = standardize(yw, sc.y_mean, sc.y_std);
    let s_y = ys.sum_axis(Axis(1));
    let ss_y = ys.mapv(|v| v * v).sum_axis(Axis(1));
    WindowSpectra { x_spec: spectra_of(&z, fwd), y_spec: spectra_of(&ys, fwd), z, s_y, ss_y }
}

/// Real FFT of every row of `a` (channel, time), zero-padded; channel-major output.
fn spectra_of(a: &Array2<f64>, fwd: &Arc<dyn realfft::RealToComplex<f64>>) -> Vec<Complex<f64>> {
    let nbins = fwd.complex_len();
    let mut input = fwd.make_input_vec();
    let mut scratch = fwd.make_scratch_vec();
    let mut out = vec![Complex::new(0.0, 0.0); a.nrows() * nbins];
    for (row, dst) in a.outer_iter().zip(out.chunks_mut(nbins)) {
        input.fill(0.0);
        for (i, v) in row.iter().enumerate() {
            input[i] = *v;
        }
        fwd.process_with_scratch(&mut input, dst, &mut scratch).expect("FFT buffer lengths match the plan");
    }
    out
}

/// Adds one chunk of windows to the accumulators (parallel over bins and edge pairs).
fn accumulate_chunk(acc: &mut Accumulators, spectra: &[WindowSpectra], plan: &LagPlan, nbins: usize) {
    let nw = spectra.len();
    let (n_eeg, nt) = spectra[0].z.dim();
    let n_meg = spectra[0].s_y.len();
    // Per bin: GEMMs over the chunk's windows of the stacked real and imaginary parts.
    acc.xx.par_iter_mut().zip(acc.xy.par_iter_mut()).enumerate().for_each(|(k, (xx, xy))| {
        let a = bin_matrix(spectra, k, nbins, n_eeg, |s| &s.x_spec);
        let yb = bin_matrix(spectra, k, nbins, n_meg, |s| &s.y_spec);
        general_mat_mul(1.0, &a.t(), &a, 1.0, xx);
        general_mat_mul(1.0, &a.t(), &yb, 1.0, xy);
    });
    // Edge products need the time-domain EEG as (time, window, channel) slabs.
    let mut slabs = Array3::<f64>::zeros((nt, nw, n_eeg));
    for (w, s) in spectra.iter().enumerate() {
        slabs.slice_mut(s![.., w, ..]).assign(&s.z.t());
    }
    let edge = |pairs: &[(usize, isize)], mats: &mut Vec<Array2<f64>>| {
        mats.par_iter_mut().zip(pairs.par_iter()).for_each(|(m, &(u, d))| {
            let zu = slabs.index_axis(Axis(0), u);
            let zd = slabs.index_axis(Axis(0), (u as isize + d) as usize);
            general_mat_mul(1.0, &zu.t(), &zd, 1.0, m);
        });
    };
    edge(&plan.head, &mut acc.head);
    edge(&plan.tail, &mut acc.tail);
    // Plain sums, in window order.
    for s in spectra {
        acc.col_sum += &s.z.t();
        acc.s_y += &s.s_y;
        acc.ss_y += &s.ss_y;
    }
}

/// (windows × 2·channels) matrix [Re | Im] of frequency bin `k` across a chunk.
fn bin_matrix<F>(spectra: &[WindowSpectra], k: usize, nbins: usize, n_ch: usize, pick: F) -> Array2<f64>
where
    F: Fn(&WindowSpectra) -> &Vec<Complex<f64>>,
{
    let mut m = Array2::<f64>::zeros((spectra.len(), 2 * n_ch));
    for (w, s) in spectra.iter().enumerate() {
        let spec = pick(s);
        for c in 0..n_ch {
            let v = spec[c * nbins + k];
            m[[w, c]] = v.re;
            m[[w, n_ch + c]] = v.im;
        }
    }
    m
}

/// Turns the accumulated spectra and edge terms into XᵀX, XᵀY and the sums.
fn finish_moments(
    acc: Accumulators,
    plan: &LagPlan,
    n: usize,
    n_eeg: usize,
    n_meg: usize,
    inv: &Arc<dyn realfft::ComplexToReal<f64>>,
) -> SplitMoments {
    let nl = plan.lags.len();
    let nt = plan.n_times as isize;
    // corr_xx[(c1, c2)][d index] = Σ_w Σ_u z_c1(u) z_c2(u + d).
    let corr_xx = correlations(&acc.xx, n_eeg, n_eeg, &plan.diffs, inv);
    let corr_xy = correlations(&acc.xy, n_eeg, n_meg, &plan.lags, inv);
    let head: HashMap<(usize, isize), &Array2<f64>> = plan.head.iter().copied().zip(acc.head.iter()).collect();
    let tail: HashMap<(usize, isize), &Array2<f64>> = plan.tail.iter().copied().zip(acc.tail.iter()).collect();
    let p = plan.n_features(n_eeg);
    let mut g = Array2::<f64>::zeros((p, p));
    for (li1, &l1) in plan.lags.iter().enumerate() {
        // Samples u of z_c1 that the zero padding removes for lag ℓ₁.
        let removed: Vec<isize> = if l1 < 0 { (0..-l1).collect() } else { (nt - l1..nt).collect() };
        let edges = if l1 < 0 { &head } else { &tail };
        for (li2, &l2) in plan.lags.iter().enumerate() {
            let d = l1 - l2;
            let di = plan.diffs.binary_search(&d).expect("every lag difference is planned");
            let mut block = Array2::from_shape_fn((n_eeg, n_eeg), |(c1, c2)| corr_xx[[c1, c2, di]]);
            for &u in &removed {
                if let Some(m) = edges.get(&(u as usize, d)) {
                    block -= *m;
                }
            }
            for c1 in 0..n_eeg {
                for c2 in 0..n_eeg {
                    g[[c1 * nl + li1, c2 * nl + li2]] = block[[c1, c2]];
                }
            }
        }
    }
    // The blocks for (ℓ₁, ℓ₂) and (ℓ₂, ℓ₁) come from different FFT bins' rounding; make G
    // exactly symmetric so the eigensolver sees the matrix it assumes.
    let g = (&g + &g.t()) * 0.5;
    let b = Array2::from_shape_fn((p, n_meg), |(f, m)| corr_xy[[f / nl, m, f % nl]]);
    let s_f = Array1::from_shape_fn(p, |f| {
        let (c, l) = (f / nl, plan.lags[f % nl]);
        let (lo, hi) = ((-l).max(0), (nt - l).min(nt));
        (lo..hi).map(|u| acc.col_sum[[u as usize, c]]).sum::<f64>()
    });
    SplitMoments { n: n as f64, g, b, s_f, s_y: acc.s_y, ss_y: acc.ss_y }
}

/// Σ_w Σ_u a_i(u) b_j(u + d) for every pair (i, j) and every d of `ds`, from the per-bin
/// stacked products: conj(A)·B = (ArBr + AiBi) + i(ArBi − AiBr), then one inverse FFT.
fn correlations(
    acc: &[Array2<f64>],
    na: usize,
    nb: usize,
    ds: &[isize],
    inv: &Arc<dyn realfft::ComplexToReal<f64>>,
) -> Array3<f64> {
    let nfft = inv.len();
    let nbins = acc.len();
    let rows: Vec<Vec<f64>> = (0..na * nb)
        .into_par_iter()
        .map(|ij| {
            let (i, j) = (ij / nb, ij % nb);
            let mut spec: Vec<Complex<f64>> = acc
                .iter()
                .map(|m| Complex::new(m[[i, j]] + m[[na + i, nb + j]], m[[i, nb + j]] - m[[na + i, j]]))
                .collect();
            // The DC and Nyquist bins of a real signal's spectrum are real; drop rounding.
            spec[0].im = 0.0;
            if nfft % 2 == 0 {
                spec[nbins - 1].im = 0.0;
            }
            let mut out = inv.make_output_vec();
            let mut scratch = inv.make_scratch_vec();
            inv.process_with_scratch(&mut spec, &mut out, &mut scratch).expect("inverse FFT lengths match the plan");
            ds.iter().map(|&d| out[d.rem_euclid(nfft as isize) as usize] / nfft as f64).collect()
        })
        .collect();
    Array3::from_shape_fn((na, nb, ds.len()), |(i, j, k)| rows[i * nb + j][k])
}

/// a bᵀ.
fn outer(a: &Array1<f64>, b: &Array1<f64>) -> Array2<f64> {
    Array2::from_shape_fn((a.len(), b.len()), |(i, j)| a[i] * b[j])
}

/// Eigenvalues (negative rounding noise clamped to 0) and eigenvectors (columns) of a
/// symmetric matrix.
fn eigen(g: &Array2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    if g.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numerical("XᵀX has non-finite entries (non-finite input?)".into()));
    }
    let p = g.nrows();
    let m = DMatrix::from_fn(p, p, |i, j| g[[i, j]]);
    let eig = SymmetricEigen::try_new(m, f64::EPSILON, 0)
        .ok_or_else(|| Error::Numerical("symmetric eigendecomposition did not converge".into()))?;
    let vals = Array1::from_shape_fn(p, |i| eig.eigenvalues[i].max(0.0));
    let vecs = Array2::from_shape_fn((p, p), |(i, j)| eig.eigenvectors[(i, j)]);
    Ok((vals, vecs))
}

/// W = V (Λ + α)⁻¹ (VᵀXᵀY).
fn ridge_weights(eigvals: &Array1<f64>, eigvecs: &Array2<f64>, proj: &Array2<f64>, alpha_abs: f64) -> Array2<f64> {
    let mut scaled = proj.clone();
    for (mut row, &l) in scaled.outer_iter_mut().zip(eigvals) {
        row /= l + alpha_abs;
    }
    eigvecs.dot(&scaled)
}

/// Validation Pearson r per MEG channel of predictions X_v W, from validation moments.
/// The intercept does not change r, so it is left out. Moments are of standardized data
/// (order 1), so the one-pass formulas here do not suffer the cancellation that the
/// two-pass code in `metrics` guards against for raw physical units.
fn validation_r(w: &Array2<f64>, val: &SplitMoments) -> Vec<f64> {
    let n = val.n;
    let gw = val.g.dot(w);
    let sum_pred = val.s_f.dot(w);
    (0..w.ncols())
        .map(|m| {
            let wm = w.column(m);
            let spp = wm.dot(&gw.column(m)) - sum_pred[m] * sum_pred[m] / n;
            let syy = val.ss_y[m] - val.s_y[m] * val.s_y[m] / n;
            let spy = wm.dot(&val.b.column(m)) - sum_pred[m] * val.s_y[m] / n;
            // Relative floor: a prediction or target with no variance has no correlation.
            if spp <= 1e-12 * n || syy <= 1e-12 * n {
                f64::NAN
            } else {
                (spy / (spp.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::channel_metrics;

    /// Small deterministic pseudo-random generator (xorshift), so tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Roughly standard normal (sum of 12 uniforms − 6).
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.next()).sum::<f64>() - 6.0
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// EEG with offsets and scales per channel, and MEG = lagged linear map + noise.
    fn synthetic(
        rng: &mut Rng,
        nw: usize,
        n_eeg: usize,
        n_meg: usize,
        nt: usize,
        lags: &[isize],
        coef: &Array3<f64>,
        noise: f64,
    ) -> (Array3<f32>, Array3<f32>) {
        synthetic_offset(rng, nw, n_eeg, n_meg, nt, lags, coef, noise, 3.0)
    }

    /// [`synthetic`] with EEG channel c offset by `offset + c` (0 → zero-mean EEG).
    #[allow(clippy::too_many_arguments)]
    fn synthetic_offset(
        rng: &mut Rng,
        nw: usize,
        n_eeg: usize,
        n_meg: usize,
        nt: usize,
        lags: &[isize],
        coef: &Array3<f64>,
        noise: f64,
        offset: f64,
    ) -> (Array3<f32>, Array3<f32>) {
        let shift = |c: usize| if offset == 0.0 { 0.0 } else { offset + c as f64 };
        let x = Array3::from_shape_fn((nw, n_eeg, nt), |(_, c, _)| (shift(c) + (1.0 + c as f64) * rng.normal()) as f32);
        let mut y = Array3::<f32>::zeros((nw, n_meg, nt));
        for w in 0..nw {
            for m in 0..n_meg {
                for t in 0..nt {
                    let mut v = 0.5 * m as f64 + noise * rng.normal();
                    for c in 0..n_eeg {
                        for (li, &l) in lags.iter().enumerate() {
                            let src = t as isize - l;
                            if (0..nt as isize).contains(&src) {
                                v += coef[[m, c, li]] * x[[w, c, src as usize]] as f64;
                            }
                        }
                    }
                    y[[w, m, t]] = v as f32;
                }
            }
        }
        (x, y)
    }

    #[test]
    fn recovers_known_lagged_weights() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let lags = vec![-2, -1, 0, 1, 3];
        let (n_eeg, n_meg) = (4, 3);
        let coef = Array3::from_shape_fn((n_meg, n_eeg, lags.len()), |(m, c, li)| {
            ((m * 7 + c * 3 + li * 5) % 11) as f64 / 5.0 - 1.0
        });
        // Zero-mean EEG: the generator pads with raw zeros, the model with the training mean;
        // they agree only when the mean is ~0 (offsets are exercised by the direct-solve test).
        let (x, y) = synthetic_offset(&mut rng, 60, n_eeg, n_meg, 64, &lags, &coef, 0.01, 0.0);
        let (vx, vy) = synthetic_offset(&mut rng, 20, n_eeg, n_meg, 64, &lags, &coef, 0.01, 0.0);
        let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &default_alphas()).unwrap();
        let got = fit.coefficients();
        let max_err = (&got - &coef).iter().fold(0.0f64, |a, v| a.max(v.abs()));
        // Noise 0.01 against unit-variance inputs: slopes within a few 1e-3.
        assert!(max_err < 5e-3, "max coefficient error {max_err}");
        assert!(fit.val_pearson_r.iter().all(|&r| r > 0.999), "{:?}", fit.val_pearson_r);
        // Nearly noiseless data: the smallest α wins.
        assert_eq!(fit.alpha, default_alphas()[0]);
        // Prediction on held-out data is near perfect, including the zero-padded edges.
        let pred = fit.predict(vx.view()).unwrap();
        let m = channel_metrics(vy.view(), pred.view()).unwrap();
        assert!(m.r2.iter().all(|&r| r > 0.999), "{:?}", m.r2);
    }

    /// Oracle: explicit lagged design in f64, centred, and (XᵀX + αI)⁻¹XᵀY by LU.
    fn direct_solve(x: &Array3<f32>, y: &Array3<f32>, lags: &[isize], alpha_rel: f64) -> (Array2<f64>, f64) {
        let (nw, n_eeg, nt) = x.dim();
        let n_meg = y.dim().1;
        let stats = |a: &Array3<f32>, c: usize| {
            let v: Vec<f64> = a.index_axis(Axis(1), c).iter().map(|&v| v as f64).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (mean, sd)
        };
        let xs: Vec<(f64, f64)> = (0..n_eeg).map(|c| stats(x, c)).collect();
        let ys: Vec<(f64, f64)> = (0..n_meg).map(|c| stats(y, c)).collect();
        let nl = lags.len();
        let p = n_eeg * nl;
        let n = nw * nt;
        let mut xd = DMatrix::<f64>::zeros(n, p);
        let mut yd = DMatrix::<f64>::zeros(n, n_meg);
        for w in 0..nw {
            for t in 0..nt {
                let row = w * nt + t;
                for c in 0..n_eeg {
                    for (li, &l) in lags.iter().enumerate() {
                        let src = t as isize - l;
                        if (0..nt as isize).contains(&src) {
                            xd[(row, c * nl + li)] = (x[[w, c, src as usize]] as f64 - xs[c].0) / xs[c].1;
                        }
                    }
                }
                for m in 0..n_meg {
                    yd[(row, m)] = (y[[w, m, t]] as f64 - ys[m].0) / ys[m].1;
                }
            }
        }
        for j in 0..p {
            let mean = xd.column(j).sum() / n as f64;
            xd.column_mut(j).add_scalar_mut(-mean);
        }
        for j in 0..n_meg {
            let mean = yd.column(j).sum() / n as f64;
            yd.column_mut(j).add_scalar_mut(-mean);
        }
        let xtx = xd.transpose() * &xd;
        let alpha_abs = alpha_rel * xtx.trace() / p as f64;
        let a = &xtx + DMatrix::<f64>::identity(p, p) * alpha_abs;
        let w = a.lu().solve(&(xd.transpose() * &yd)).unwrap();
        (Array2::from_shape_fn((p, n_meg), |(i, j)| w[(i, j)]), alpha_abs)
    }

    fn noisy_problem(seed: u64, lags: &[isize]) -> (Array3<f32>, Array3<f32>, Array3<f32>, Array3<f32>) {
        let mut rng = Rng(seed);
        let (n_eeg, n_meg) = (3, 2);
        let coef = Array3::from_shape_fn((n_meg, n_eeg, lags.len()), |(m, c, li)| ((m + 2 * c + 3 * li) % 5) as f64 * 0.1);
        let (x, y) = synthetic(&mut rng, 9, n_eeg, n_meg, 40, lags, &coef, 3.0);
        let (vx, vy) = synthetic(&mut rng, 5, n_eeg, n_meg, 40, lags, &coef, 3.0);
        (x, y, vx, vy)
    }

    #[test]
    fn matches_direct_solve_for_every_alpha() {
        // Asymmetric lags (including only-positive gaps) exercise both edge corrections.
        for lags in [vec![-3isize, -1, 0, 2, 5], vec![1, 4], vec![-6, -2]] {
            let (x, y, vx, vy) = noisy_problem(42, &lags);
            for alpha in [1e-3, 0.3, 10.0] {
                let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &[alpha]).unwrap();
                let (w, alpha_abs) = direct_solve(&x, &y, &lags, alpha);
                let scale = w.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                let err = (&fit.weights - &w).iter().fold(0.0f64, |a, v| a.max(v.abs()));
                assert!(err <= 1e-9 * scale, "lags {lags:?} alpha {alpha}: max |Δw| {err} vs scale {scale}");
                assert!((fit.alpha_absolute - alpha_abs).abs() <= 1e-9 * alpha_abs);
            }
        }
    }

    /// Pearson r of MEG channel `m` between `vy` and the f64 prediction of `fit` on `vx`.
    fn pearson_f64(fit: &RidgeFit, vx: &Array3<f32>, vy: &Array3<f32>, m: usize) -> f64 {
        let (mut t, mut p) = (Vec::new(), Vec::new());
        for w in 0..vx.dim().0 {
            let z = standardize(vx.index_axis(Axis(0), w), &fit.x_mean, &fit.x_std);
            let yhat = lagged_design(&z, &fit.lags).dot(&fit.weights.column(m));
            p.extend(yhat.iter().copied());
            t.extend(vy.index_axis(Axis(0), w).row(m).iter().map(|&v| v as f64));
        }
        let n = t.len() as f64;
        let (mt, mp) = (t.iter().sum::<f64>() / n, p.iter().sum::<f64>() / n);
        let sxy: f64 = t.iter().zip(&p).map(|(a, b)| (a - mt) * (b - mp)).sum();
        let sxx: f64 = t.iter().map(|a| (a - mt).powi(2)).sum();
        let syy: f64 = p.iter().map(|b| (b - mp).powi(2)).sum();
        sxy / (sxx * syy).sqrt()
    }

    #[test]
    fn chosen_alpha_maximizes_validation_r_computed_from_predictions() {
        let lags = vec![-2isize, 0, 1];
        let (x, y, vx, vy) = noisy_problem(7, &lags);
        let alphas = default_alphas();
        let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &alphas).unwrap();
        // Recompute each α's validation r by actually predicting in f64 (f32 predictions
        // would quantize the tiny variations of heavily shrunk fits), with single-α fits.
        let mut scores = Vec::new();
        for &a in &alphas {
            let f = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &[a]).unwrap();
            let rs: Vec<f64> = (0..vy.dim().1).map(|m| pearson_f64(&f, &vx, &vy, m)).collect();
            scores.push(crate::metrics::nan_skipping_mean(rs).mean);
        }
        for (s, v) in scores.iter().zip(&fit.val_mean_r) {
            assert!((s - v).abs() < 1e-9, "moment-based r {v} vs predicted r {s}");
        }
        let best = fit.val_mean_r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let chosen = alphas.iter().position(|&a| a == fit.alpha).unwrap();
        assert_eq!(fit.val_mean_r[chosen], best);
    }

    #[test]
    fn ties_and_nan_scores_prefer_the_larger_alpha() {
        let alphas = [1.0, 10.0, 100.0];
        let pick = |scores: &[f64]| {
            let mut best = None;
            for (i, &s) in scores.iter().enumerate() {
                best = Some(pick_better(best, (i, s), &alphas));
            }
            best.unwrap().0
        };
        assert_eq!(pick(&[0.5, 0.5, 0.4]), 1);
        assert_eq!(pick(&[0.5, 0.6, 0.6]), 2);
        assert_eq!(pick(&[0.7, 0.6, 0.5]), 0);
        assert_eq!(pick(&[f64::NAN, 0.1, f64::NAN]), 1);
        assert_eq!(pick(&[f64::NAN, f64::NAN, f64::NAN]), 2);
    }

    #[test]
    fn deterministic_across_thread_counts() {
        // More windows than one chunk, so the chunked accumulation order is exercised.
        let lags = symmetric_lags(3);
        let mut rng = Rng(99);
        let coef = Array3::from_shape_fn((2, 3, lags.len()), |(m, c, li)| (m + c + li) as f64 * 0.05);
        let (x, y) = synthetic(&mut rng, 150, 3, 2, 32, &lags, &coef, 1.0);
        let (vx, vy) = synthetic(&mut rng, 70, 3, 2, 32, &lags, &coef, 1.0);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &default_alphas()).unwrap();
                let pred = fit.predict(vx.view()).unwrap();
                (fit.weights.clone(), fit.val_mean_r.clone(), pred)
            })
        };
        let (w1, s1, p1) = run(1);
        let (w2, s2, p2) = run(2);
        assert!(w1.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()), "weights differ");
        assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()), "scores differ");
        assert_eq!(p1, p2);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let x = Array3::<f32>::zeros((2, 3, 10));
        let y = Array3::<f32>::zeros((2, 2, 10));
        let bad_y = Array3::<f32>::zeros((2, 2, 9));
        let a = [1.0];
        assert!(matches!(fit_ridge_lagged(x.view(), bad_y.view(), x.view(), y.view(), &[0], &a), Err(Error::Shape { .. })));
        assert!(matches!(fit_ridge_lagged(x.view(), y.view(), x.view(), y.view(), &[10], &a), Err(Error::Invalid(_))));
        assert!(matches!(fit_ridge_lagged(x.view(), y.view(), x.view(), y.view(), &[1, 1], &a), Err(Error::Invalid(_))));
        assert!(matches!(fit_ridge_lagged(x.view(), y.view(), x.view(), y.view(), &[0], &[0.0]), Err(Error::Invalid(_))));
        assert!(matches!(fit_ridge_lagged(x.view(), y.view(), x.view(), y.view(), &[], &a), Err(Error::Empty(_))));
        // All-constant EEG: no variance to regress on.
        assert!(matches!(fit_ridge_lagged(x.view(), y.view(), x.view(), y.view(), &[0], &a), Err(Error::Numerical(_))));
    }

    #[test]
    fn predict_checks_shape() {
        let lags = vec![0isize];
        let (x, y, vx, vy) = noisy_problem(3, &lags);
        let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &lags, &[1.0]).unwrap();
        let wrong = Array3::<f32>::zeros((1, 4, 40));
        assert!(matches!(fit.predict(wrong.view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn smooth_fft_sizes() {
        assert_eq!(smooth_at_least(266), 270);
        assert_eq!(smooth_at_least(256), 256);
        assert_eq!(smooth_at_least(7), 8);
    }

    /// Phase timings on 2,000 windows; `-- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing_phases_2k_windows() {
        let (nw, n_eeg, n_meg, nt) = (2_000, 70, 306, 256);
        let mut rng = Rng(2);
        let x = Array3::from_shape_fn((nw, n_eeg, nt), |_| (rng.next() - 0.5) as f32);
        let y = Array3::from_shape_fn((nw, n_meg, nt), |_| (rng.next() - 0.5) as f32);
        let lags = symmetric_lags(5);
        let t = std::time::Instant::now();
        let (xm, xs) = channel_stats(x.view());
        let (ym, ys) = channel_stats(y.view());
        let stats_s = t.elapsed().as_secs_f64();
        let plan = LagPlan::new(&lags, nt);
        let sc = Standardizer { x_mean: &xm, x_std: &xs, y_mean: &ym, y_std: &ys };
        let t = std::time::Instant::now();
        let mo = lagged_moments(x.view(), y.view(), &plan, &sc);
        let moments_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let (vals, vecs) = eigen(&mo.g).unwrap();
        let eigen_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let proj = vecs.t().dot(&mo.b);
        for a in default_alphas() {
            let w = ridge_weights(&vals, &vecs, &proj, a * 1e3);
            let _ = validation_r(&w, &mo);
        }
        let alphas_s = t.elapsed().as_secs_f64();
        eprintln!("{nw} windows: stats {stats_s:.2} s, moments {moments_s:.2} s, eigen(770) {eigen_s:.2} s, 17 alphas {alphas_s:.2} s");
    }

    /// Timing on bf-eval's size; `cargo test --release -p brainformer-eval -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing_10k_windows() {
        let (nw, nv, n_eeg, n_meg, nt) = (10_000, 1_000, 70, 306, 256);
        let mut rng = Rng(1);
        let x = Array3::from_shape_fn((nw, n_eeg, nt), |_| rng.normal() as f32);
        let y = Array3::from_shape_fn((nw, n_meg, nt), |_| rng.normal() as f32);
        let vx = Array3::from_shape_fn((nv, n_eeg, nt), |_| rng.normal() as f32);
        let vy = Array3::from_shape_fn((nv, n_meg, nt), |_| rng.normal() as f32);
        let t0 = std::time::Instant::now();
        let fit = fit_ridge_lagged(x.view(), y.view(), vx.view(), vy.view(), &symmetric_lags(5), &default_alphas()).unwrap();
        let fit_s = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let pred = fit.predict(vx.view()).unwrap();
        eprintln!(
            "ridge fit {nw}×{n_eeg}×{nt} → {n_meg} (+{nv} val windows, 770 features, 17 alphas): {fit_s:.1} s; predict {nv} windows: {:.1} s; threads {}",
            t1.elapsed().as_secs_f64(),
            rayon::current_num_threads()
        );
        assert_eq!(pred.dim(), (nv, n_meg, nt));
    }
}
