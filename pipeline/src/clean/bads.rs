//! Bad channels: finding them, and repairing bad EEG channels by spherical-spline
//! interpolation exactly as MNE-Python does.
//!
//! # Interpolation ([`interpolate_bads_eeg`])
//!
//! MNE's `raw.interpolate_bads(reset_bads=True, origin=...)` repairs bad EEG channels with the
//! spherical splines of Perrin et al. (1989) (`mne/channels/interpolation.py`,
//! `_interpolate_bads_eeg`; the default `method=dict(eeg="spline")`, for which `mode` plays no
//! part: `mode='accurate'|'fast'` only chooses the Legendre expansion of the MEG/`"MNE"`
//! minimum-norm method). We reproduce it step by step:
//!
//! 1. The EEG channels are all channels of kind `eeg` (bads included); the bad ones are those
//!    named in `bads`, the good ones the others. Positions are `loc[:3]` (head frame, metres),
//!    minus the origin, then divided by their norm (`_normalize_vectors`).
//! 2. `cosang = pos · posᵀ` between good × good and bad × good, and
//!    `g(x) = Σ_{n=1}^{50} (2n+1) / (nᵐ (n+1)ᵐ 4π) Pₙ(x)` with stiffness m = 4 and 50 Legendre
//!    terms (`_calc_g` defaults), evaluated with numpy's `legval` Clenshaw recursion in the same
//!    order of operations.
//! 3. `alpha = 1e-5` is added to the diagonal of G(good, good), which is bordered by a row and
//!    a column of ones (the constant term of the spline, with a 0 in the corner), and that
//!    matrix C is pseudo-inverted as `scipy.linalg.pinv` does it: SVD, singular values kept
//!    when `s > max(M, N) · ε · s_max` (scipy's default `rtol`, `atol = 0`). We use nalgebra's
//!    SVD with that same cut-off. Alpha on the diagonal bounds C's condition number (≈10⁶ for
//!    a 64-electrode cap), so nothing is ever cut: the cut-off only matters for degenerate
//!    layouts (coincident electrodes), where it then does what scipy does. LAPACK's and
//!    nalgebra's SVDs differ by rounding only, ≈ ε·cond ≈ 1e-10 relative in the output.
//! 4. `interpolation = [G(bad, good), 1] · C⁺[:, :-1]`, and the bad rows of the data become
//!    `interpolation · data[good]`.
//!
//! MNE warns ("Your spherical fit is poor") when the mean electrode distance to the origin,
//! relative to its mean, is off by more than 10 %; we log the same warning.
//!
//! Positions: MNE refuses nothing (with `on_bad_position="warn"` it fills bad channels without
//! a position with NaN, and a good channel without one silently enters the spline at the
//! sphere's centre). We return an error naming every EEG channel whose position is all zero
//! (|x| ≤ 1e-16, MNE's test) or not finite, since both give meaningless output.
//!
//! ## Origin
//!
//! `origin = Some(xyz)` (metres, head frame) is MNE's explicit `origin=`. For `None` we do what
//! MNE's `origin='auto'` does (`bem._check_origin` → `fit_sphere_to_headshape`): a linear
//! least-squares sphere fit (`_fit_sphere`: `A = [2p, 1]`, `b = |p|²`, `lstsq` with
//! `rcond = 1e-6`) to the digitisation points, dropping low frontal points
//! (`z < -1e-6 and y > 1e-6`), at least 4 points (a warning at 10 or fewer). MNE takes the
//! "extra" head-shape points when there are any, otherwise the "extra" + "eeg" points. Our
//! [`RecordingInfo`] carries no digitisation, so we fit the EEG electrode positions (all EEG
//! channels, bads included). That is exactly MNE's choice for recordings whose digitisation
//! holds only fiducials and EEG points, which is what `raw.set_montage(...)` produces (the EEG
//! dig points are then the channel positions). Recordings with a Polhemus head shape (e.g.
//! Neuromag with "extra" points) get a slightly different origin than MNE's 'auto': pass the
//! origin explicitly to reproduce MNE there. [`auto_origin`] exposes the fit. One more
//! difference: MNE keeps the digitisation points of a FIF file as float32 and numpy's `lstsq`
//! then solves in single precision, so MNE's fitted origin carries ~1e-9 m of float32
//! rounding; we solve in f64 (same points), which moves interpolated values by ~1e-7 of
//! their RMS — far below any physical meaning, and MNE's own in-memory montages (float64)
//! give our result.
//!
//! # Detection ([`find_bad_channels`])
//!
//! A deterministic, single-pass-per-channel rule in the spirit of pyprep's "flat",
//! "deviation" and "HF noise" criteria (the ones MNE-BIDS-Pipeline users meet through pyprep
//! and `find_bad_channels_maxwell`). It runs on the data channels only
//! ([`ChannelKind::is_data`]), each channel kind (EEG, mag, grad, sEEG, ECoG, DBS) on its own,
//! since their units and scales differ. Cost: O(channels × samples), no allocation per sample.
//!
//! - **Non-finite**: any NaN or ±inf sample.
//! - **Flat**: standard deviation below an absolute limit per kind — 1e-15 V for EEG (pyprep's
//!   `flat_threshold`), 1e-17 T for magnetometers and 1e-15 T/m for gradiometers (MNE's
//!   `find_bad_channels_maxwell`: 0.01 fT and 0.01 fT/cm) — or below `flat_rel` (default
//!   1e-3) times the median standard deviation of the channel's kind. A real sensor is never
//!   a thousand times quieter than its neighbours: such a channel is disconnected.
//! - **Noisy by variance** (pyprep's "deviation"): the robust z-score of ln(variance) among the
//!   non-flat channels of the kind, `z = (v − median) / (1.4826 · MAD)`, above `z_thresh`
//!   (default 5, pyprep's `deviation_threshold`). Log-variance makes the score symmetric in
//!   ratios (a channel 10× too loud scores like one 10× too quiet would, but only loud is
//!   flagged: quiet channels are the flat rule's business).
//! - **Noisy at high frequency** (pyprep's "HF noise"): the ratio of the standard deviation
//!   of the channel's high-frequency part to its total standard deviation, robust z-scored the
//!   same way, above `hf_z_thresh` (default 5). The high-frequency part is the channel minus
//!   its centred moving average over `2·round(sfreq / (2·hf_freq)) + 1` samples (a boxcar
//!   low-pass whose first zero is at ≈ `hf_freq`, default 50 Hz as pyprep), on the samples
//!   where the window fits. Like pyprep, this criterion is skipped when `sfreq ≤ 2·hf_freq`.
//!
//! The robust z-scores need a spread: a criterion is skipped for a kind whose MAD is 0 (e.g.
//! fewer than 3 usable channels). On synthetic data with identical channels the MAD is tiny
//! and small differences get large scores; real recordings have a natural spread of channel
//! variances, which is what the thresholds are calibrated against.

use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use ndarray::Array2;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::recording::{ChannelKind, RawReader, RecordingInfo};

/// MNE's `_calc_g` defaults: spline stiffness m and the number of Legendre terms.
pub const STIFFNESS: i32 = 4;
pub const N_LEGENDRE_TERMS: usize = 50;
/// MNE's `_make_interpolation_matrix` regularisation, added to the diagonal of G.
pub const ALPHA: f64 = 1e-5;

/// MNE's test for a missing position (`np.allclose(loc, 0, rtol=0, atol=1e-16)` or NaN).
fn position_is_invalid(p: &[f64]) -> bool {
    p.iter().any(|v| !v.is_finite()) || p.iter().all(|v| v.abs() <= 1e-16)
}

/// The Legendre coefficients of g: `[0, (2n+1) / (nᵐ (n+1)ᵐ 4π) for n in 1..=50]`, computed
/// as Python does (the integer product is exact, then × π, then the division).
fn g_coefficients() -> Vec<f64> {
    let mut c = vec![0.0];
    for n in 1..=N_LEGENDRE_TERMS as u64 {
        let int_part = n.pow(STIFFNESS as u32) * (n + 1).pow(STIFFNESS as u32) * 4;
        c.push((2 * n + 1) as f64 / (int_part as f64 * std::f64::consts::PI));
    }
    c
}

/// numpy's `legval(x, c)` (Clenshaw recursion, same order of operations).
fn legval(x: f64, c: &[f64]) -> f64 {
    match c.len() {
        0 => 0.0,
        1 => c[0],
        2 => c[0] + c[1] * x,
        len => {
            let mut nd = len as f64;
            let mut c0 = c[len - 2];
            let mut c1 = c[len - 1];
            for i in 3..=len {
                let tmp = c0;
                nd -= 1.0;
                c0 = c[len - i] - c1 * ((nd - 1.0) / nd);
                c1 = tmp + c1 * x * ((2.0 * nd - 1.0) / nd);
            }
            c0 + c1 * x
        }
    }
}

/// numpy's row norm `sqrt(x² + y² + z²)` and MNE's `_normalize_vectors` (zero rows stay zero).
fn normalize(p: [f64; 3]) -> [f64; 3] {
    let size = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
    if size > 0.0 {
        [p[0] / size, p[1] / size, p[2] / size]
    } else {
        p
    }
}

fn dot3(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// scipy's `pinv`: SVD, singular values kept when `s > max(M, N) · ε · s_max`.
fn pinv(m: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let dim = m.nrows().max(m.ncols()) as f64;
    let svd = nalgebra::SVD::try_new(m, true, true, f64::EPSILON, 10_000)?;
    let s_max = svd.singular_values.iter().cloned().fold(0.0, f64::max);
    if !s_max.is_finite() {
        return None;
    }
    svd.pseudo_inverse(dim * f64::EPSILON * s_max).ok()
}

/// MNE's `_make_interpolation_matrix(pos_from, pos_to, alpha=1e-5)`: the `n_to × n_from`
/// matrix that maps the signals at `pos_from` to `pos_to` (positions relative to the sphere's
/// centre; they are normalised here). `None` if the SVD fails to converge (non-finite input).
pub fn interpolation_matrix(pos_from: &[[f64; 3]], pos_to: &[[f64; 3]]) -> Option<DMatrix<f64>> {
    let coefs = g_coefficients();
    let from: Vec<[f64; 3]> = pos_from.iter().map(|&p| normalize(p)).collect();
    let to: Vec<[f64; 3]> = pos_to.iter().map(|&p| normalize(p)).collect();
    let (n_from, n_to) = (from.len(), to.len());
    let mut c = DMatrix::<f64>::zeros(n_from + 1, n_from + 1);
    for i in 0..n_from {
        for j in 0..n_from {
            c[(i, j)] = legval(dot3(&from[i], &from[j]), &coefs);
        }
        c[(i, i)] += ALPHA;
        c[(i, n_from)] = 1.0;
        c[(n_from, i)] = 1.0;
    }
    let c_inv = pinv(c)?;
    let mut g_to = DMatrix::<f64>::zeros(n_to, n_from + 1);
    for i in 0..n_to {
        for j in 0..n_from {
            g_to[(i, j)] = legval(dot3(&to[i], &from[j]), &coefs);
        }
        g_to[(i, n_from)] = 1.0;
    }
    Some(g_to * c_inv.columns(0, n_from))
}

/// Positions (`loc[:3]`) of the EEG channels `idx`, or an error naming every channel without
/// a usable one.
fn eeg_positions(info: &RecordingInfo, idx: &[usize]) -> Result<Vec<[f64; 3]>> {
    let missing: Vec<&str> =
        idx.iter().filter(|&&i| position_is_invalid(&info.channels[i].loc[..3])).map(|&i| info.channels[i].name.as_str()).collect();
    if !missing.is_empty() {
        return Err(Error::request(
            &info.path,
            format!(
                "EEG channel(s) {} have no valid position (loc[:3] is all zero or not finite); \
                 set a montage before interpolating",
                missing.join(", ")
            ),
        ));
    }
    Ok(idx.iter().map(|&i| [info.channels[i].loc[0], info.channels[i].loc[1], info.channels[i].loc[2]]).collect())
}

/// A sphere fitted as MNE's `_fit_sphere`: least squares on `[2p, 1] x = |p|²` (SVD solve,
/// singular values below `1e-6 · s_max` dropped as `np.linalg.lstsq(rcond=1e-6)`), after
/// dropping low frontal points (`z < -1e-6 and y > 1e-6`, MNE's `exclude_frontal`).
/// Returns `(radius, centre)` or `None` when fewer than 4 points remain.
pub fn fit_sphere(points: &[[f64; 3]]) -> Option<(f64, [f64; 3])> {
    let pts: Vec<&[f64; 3]> = points.iter().filter(|p| !(p[2] < -1e-6 && p[1] > 1e-6)).collect();
    if pts.len() < 4 {
        return None;
    }
    let a = DMatrix::from_fn(pts.len(), 4, |r, c| if c < 3 { 2.0 * pts[r][c] } else { 1.0 });
    let b = DVector::from_fn(pts.len(), |r, _| pts[r].iter().map(|v| v * v).sum::<f64>());
    let svd = nalgebra::SVD::try_new(a, true, true, f64::EPSILON, 10_000)?;
    let s_max = svd.singular_values.iter().cloned().fold(0.0, f64::max);
    let x = svd.solve(&b, 1e-6 * s_max).ok()?;
    let radius = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3]).sqrt();
    if !radius.is_finite() {
        return None;
    }
    Some((radius, [x[0], x[1], x[2]]))
}

/// The origin `interpolate_bads_eeg` uses when given none: MNE's `origin='auto'` sphere fit,
/// on the EEG electrode positions (see the module doc for how this relates to MNE's choice of
/// digitisation points). Errors when EEG channels lack positions or fewer than 4 remain.
pub fn auto_origin(info: &RecordingInfo) -> Result<[f64; 3]> {
    let eeg: Vec<usize> = (0..info.n_channels()).filter(|&i| info.channels[i].kind == ChannelKind::Eeg).collect();
    let pos = eeg_positions(info, &eeg)?;
    let kept = pos.iter().filter(|p| !(p[2] < -1e-6 && p[1] > 1e-6)).count();
    let Some((radius, origin)) = fit_sphere(&pos) else {
        return Err(Error::request(
            &info.path,
            format!("cannot fit a sphere to the EEG positions: {kept} usable electrode(s), at least 4 required; give the origin explicitly"),
        ));
    };
    if kept <= 10 {
        tracing::warn!("only {kept} EEG electrode positions for the sphere fit, fitting may be inaccurate");
    }
    // MNE's `_check_head_radius` and its 20 mm warning.
    if !(0.05..=0.12).contains(&radius) {
        tracing::warn!("estimated head radius {:.1} cm is unusual (expected 5–12 cm)", radius * 100.0);
    }
    if (origin[0] * origin[0] + origin[1] * origin[1]).sqrt() > 0.02 {
        tracing::warn!("(X, Y) fit ({:.1}, {:.1}) more than 20 mm from head frame origin", origin[0] * 1e3, origin[1] * 1e3);
    }
    tracing::debug!("automatic origin fit: head of radius {:.1} mm, origin {origin:?} m", radius * 1e3);
    Ok(origin)
}

/// The new rows of interpolated channels ([`interpolate_bads_eeg`]).
#[derive(Debug)]
pub struct Interpolated {
    /// The channels' indices, in channel order.
    pub channels: Vec<usize>,
    /// Their names, in the same order.
    pub names: Vec<String>,
    /// Their rows (`channels.len()` × samples).
    pub rows: Array2<f64>,
}

impl Interpolated {
    /// Writes the new rows into `data` (channels × samples, rows in the recording's order).
    pub fn apply_to(&self, data: &mut Array2<f64>) {
        for (row, &c) in self.channels.iter().enumerate() {
            data.row_mut(c).assign(&self.rows.row(row));
        }
    }
}

/// Interpolates the bad EEG channels of `rec` from its good EEG channels with MNE's
/// spherical splines (`raw.interpolate_bads(origin=...)` for EEG, see the module doc). `bads`
/// plays the part of `info['bads']`: its EEG channels are interpolated, its other channels are
/// left alone (and are not in the result). An unknown name is an error. `origin`: sphere
/// centre in metres, head frame; `None` for MNE's `'auto'` fit ([`auto_origin`]). Returns the
/// interpolated channels' new rows, in channel order (none when `bads` holds no EEG channel);
/// the caller puts them in place ([`Interpolated::apply_to`]).
pub fn interpolate_bads_eeg(rec: &dyn RawReader, bads: &[String], origin: Option<[f64; 3]>) -> Result<Interpolated> {
    let info = rec.info();
    if let Some(unknown) = bads.iter().find(|b| info.channel_index(b).is_none()) {
        return Err(Error::request(&info.path, format!("bad channel {unknown:?} is not in the recording")));
    }
    let eeg: Vec<usize> = (0..info.n_channels()).filter(|&i| info.channels[i].kind == ChannelKind::Eeg).collect();
    let is_bad = |i: &usize| bads.iter().any(|b| *b == info.channels[*i].name);
    let bad_idx: Vec<usize> = eeg.iter().copied().filter(|i| is_bad(i)).collect();
    let good_idx: Vec<usize> = eeg.iter().copied().filter(|i| !is_bad(i)).collect();
    if bad_idx.is_empty() {
        return Ok(Interpolated { channels: vec![], names: vec![], rows: Array2::zeros((0, info.n_samples)) });
    }
    if good_idx.is_empty() {
        return Err(Error::request(&info.path, "every EEG channel is bad: nothing to interpolate from"));
    }
    let pos = eeg_positions(info, &eeg)?;
    let origin = match origin {
        Some(o) if o.iter().all(|v| v.is_finite()) => o,
        Some(o) => return Err(Error::request(&info.path, format!("origin {o:?} is not finite"))),
        None => auto_origin(info)?,
    };
    let rel: Vec<[f64; 3]> = pos.iter().map(|p| [p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]]).collect();

    // MNE's check of the spherical fit.
    let dist: Vec<f64> = rel.iter().map(|p| dot3(p, p).sqrt()).collect();
    let mean = dist.iter().sum::<f64>() / dist.len() as f64;
    let spread = dist.iter().map(|d| d / mean).sum::<f64>() / dist.len() as f64;
    if !((1.0 - spread).abs() <= 0.1) {
        tracing::warn!("Your spherical fit is poor, interpolation results are likely to be inaccurate.");
    }
    let at_origin: Vec<&str> = eeg.iter().zip(&dist).filter(|(_, d)| **d == 0.0).map(|(&i, _)| info.channels[i].name.as_str()).collect();
    if !at_origin.is_empty() {
        return Err(Error::request(&info.path, format!("EEG channel(s) {} lie at the interpolation origin", at_origin.join(", "))));
    }

    let pos_of = |idx: &[usize]| -> Vec<[f64; 3]> { idx.iter().map(|i| rel[eeg.iter().position(|e| e == i).unwrap_or(0)]).collect() };
    let interp = interpolation_matrix(&pos_of(&good_idx), &pos_of(&bad_idx))
        .ok_or_else(|| Error::request(&info.path, "the spline matrix could not be pseudo-inverted (SVD did not converge)"))?;
    tracing::debug!("interpolating {} EEG channel(s) from {} sensor positions", bad_idx.len(), good_idx.len());

    let interp = Array2::from_shape_fn((interp.nrows(), interp.ncols()), |(r, c)| interp[(r, c)]);
    let goods = rec.read_f64(&good_idx, 0, info.n_samples)?;
    let rows = interp.dot(&goods);
    let names = bad_idx.iter().map(|&i| info.channels[i].name.clone()).collect();
    Ok(Interpolated { channels: bad_idx, names, rows })
}

/// Thresholds of [`find_bad_channels`] (see the module doc for the rule).
#[derive(Clone, Debug, Serialize)]
pub struct BadsParams {
    /// Robust z-score of ln(variance) above which a channel is noisy (pyprep: 5).
    pub z_thresh: f64,
    /// Robust z-score of the high-frequency ratio above which a channel is noisy (pyprep: 5).
    pub hf_z_thresh: f64,
    /// Frequency (Hz) above which power counts as high-frequency noise (pyprep: 50).
    pub hf_freq: f64,
    /// Absolute flat limits on the standard deviation, SI units.
    pub flat_eeg: f64,
    pub flat_mag: f64,
    pub flat_grad: f64,
    /// Flat limit for sEEG, ECoG and DBS (V).
    pub flat_other: f64,
    /// A channel whose standard deviation is below this fraction of its kind's median is flat.
    pub flat_rel: f64,
}

impl Default for BadsParams {
    fn default() -> Self {
        BadsParams { z_thresh: 5.0, hf_z_thresh: 5.0, hf_freq: 50.0, flat_eeg: 1e-15, flat_mag: 1e-17, flat_grad: 1e-15, flat_other: 1e-15, flat_rel: 1e-3 }
    }
}

impl BadsParams {
    fn flat_limit(&self, kind: ChannelKind) -> f64 {
        match kind {
            ChannelKind::Eeg => self.flat_eeg,
            ChannelKind::Mag => self.flat_mag,
            ChannelKind::Grad => self.flat_grad,
            _ => self.flat_other,
        }
    }
}

/// Why a channel is bad.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", content = "z", rename_all = "snake_case")]
pub enum BadReason {
    /// NaN or infinite samples.
    NonFinite,
    /// (Nearly) constant.
    Flat,
    /// Robust z-score of ln(variance) above the threshold.
    NoisyVariance(f64),
    /// Robust z-score of the high-frequency ratio above the threshold.
    NoisyHighFreq(f64),
}

/// One detected bad channel. `reason` is the first rule it breaks (non-finite, flat,
/// variance, high frequency); both z-scores are given where they were computed.
#[derive(Clone, Debug, Serialize)]
pub struct BadChannel {
    pub name: String,
    pub kind: ChannelKind,
    pub reason: BadReason,
    pub z_variance: Option<f64>,
    pub z_hf: Option<f64>,
}

/// Per-channel statistics: standard deviation and high-frequency ratio (None when skipped).
struct ChannelStats {
    finite: bool,
    std: f64,
    hf_ratio: Option<f64>,
}

fn channel_stats(x: ndarray::ArrayView1<f64>, half: Option<usize>) -> ChannelStats {
    let n = x.len();
    if x.iter().any(|v| !v.is_finite()) {
        return ChannelStats { finite: false, std: f64::NAN, hf_ratio: None };
    }
    if n == 0 {
        return ChannelStats { finite: true, std: 0.0, hf_ratio: None };
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    let std = var.sqrt();
    let hf_ratio = half.filter(|&h| n > 2 * h + 1 && std > 0.0).map(|h| {
        // Centred moving average over 2h+1 samples, as a running sum of mean-removed values.
        let len = 2 * h + 1;
        let mut sum: f64 = x.iter().take(len).map(|v| v - mean).sum();
        let mut hf = Vec::with_capacity(n - 2 * h);
        for t in h..n - h {
            if t > h {
                sum += (x[t + h] - mean) - (x[t - h - 1] - mean);
            }
            hf.push((x[t] - mean) - sum / len as f64);
        }
        let m = hf.iter().sum::<f64>() / hf.len() as f64;
        let v = hf.iter().map(|e| (e - m) * (e - m)).sum::<f64>() / hf.len() as f64;
        v.sqrt() / std
    });
    ChannelStats { finite: true, std, hf_ratio }
}

/// The median (numpy's: the mean of the middle two of an even count), sorting `values` in
/// place; NaN when there are none.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Robust z-scores `(v − median) / (1.4826 · MAD)`; `None` when the MAD is 0 or undefined.
fn robust_z(values: &[f64]) -> Option<Vec<f64>> {
    let med = median(&mut values.to_vec());
    let mad = median(&mut values.iter().map(|v| (v - med).abs()).collect::<Vec<_>>());
    let scale = 1.4826 * mad;
    (scale > 0.0 && scale.is_finite()).then(|| values.iter().map(|v| (v - med) / scale).collect())
}

/// Detects flat, non-finite and noisy data channels of `rec` (its whole length, SI units),
/// each channel kind separately. Deterministic; channels in the recording's order. See the
/// module doc for the rule and [`BadsParams`] for the thresholds.
pub fn find_bad_channels(rec: &dyn RawReader, params: &BadsParams) -> Result<Vec<BadChannel>> {
    let info = rec.info();
    let half = (info.sfreq > 2.0 * params.hf_freq && params.hf_freq > 0.0)
        .then(|| ((info.sfreq / (2.0 * params.hf_freq)).round() as usize).max(1));
    let (n_rows, n) = (info.n_channels(), info.n_samples);
    let mut found: Vec<(usize, BadChannel)> = Vec::new();
    let mut kinds: Vec<ChannelKind> = Vec::new();
    for c in &info.channels[..n_rows] {
        if c.kind.is_data() && !kinds.contains(&c.kind) {
            kinds.push(c.kind);
        }
    }
    for kind in kinds {
        let idx: Vec<usize> = (0..n_rows).filter(|&i| info.channels[i].kind == kind).collect();
        // Channels in parallel (~1 CPU-s serial on a ds000117 run), one row read at a time
        // into each thread's buffer; collected in order.
        let stats: Vec<ChannelStats> = idx
            .par_iter()
            .map_init(Vec::new, |row: &mut Vec<f64>, &i| -> Result<ChannelStats> {
                row.resize(n, 0.0);
                rec.read_into_f64(&[i], 0, n, row)?;
                Ok(channel_stats(ndarray::ArrayView1::from(&row[..]), half))
            })
            .collect::<Result<_>>()?;
        let mut stds: Vec<f64> = stats.iter().filter(|s| s.finite).map(|s| s.std).collect();
        let med_std = median(&mut stds);
        let limit = params.flat_limit(kind);
        let flat: Vec<bool> =
            stats.iter().map(|s| s.finite && (s.std < limit || (med_std.is_finite() && s.std < params.flat_rel * med_std))).collect();
        // Robust z-scores among the finite, non-flat channels.
        let usable: Vec<usize> = (0..idx.len()).filter(|&k| stats[k].finite && !flat[k]).collect();
        let mut z_var = vec![None; idx.len()];
        let logv: Vec<f64> = usable.iter().map(|&k| (stats[k].std * stats[k].std).ln()).collect();
        if let Some(z) = robust_z(&logv) {
            for (&k, z) in usable.iter().zip(z) {
                z_var[k] = Some(z);
            }
        }
        let mut z_hf = vec![None; idx.len()];
        let with_hf: Vec<usize> = usable.iter().copied().filter(|&k| stats[k].hf_ratio.is_some()).collect();
        let ratios: Vec<f64> = with_hf.iter().map(|&k| stats[k].hf_ratio.unwrap_or(0.0)).collect();
        if let Some(z) = robust_z(&ratios) {
            for (&k, z) in with_hf.iter().zip(z) {
                z_hf[k] = Some(z);
            }
        }
        for (k, &i) in idx.iter().enumerate() {
            let reason = if !stats[k].finite {
                Some(BadReason::NonFinite)
            } else if flat[k] {
                Some(BadReason::Flat)
            } else if let Some(z) = z_var[k].filter(|&z| z > params.z_thresh) {
                Some(BadReason::NoisyVariance(z))
            } else {
                z_hf[k].filter(|&z| z > params.hf_z_thresh).map(BadReason::NoisyHighFreq)
            };
            if let Some(reason) = reason {
                found.push((i, BadChannel { name: info.channels[i].name.clone(), kind, reason, z_variance: z_var[k], z_hf: z_hf[k] }));
            }
        }
    }
    found.sort_by_key(|(i, _)| *i);
    Ok(found.into_iter().map(|(_, b)| b).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{ChannelInfo, InMemory, Unit};

    fn info_with(channels: Vec<ChannelInfo>, sfreq: f64, n: usize) -> RecordingInfo {
        RecordingInfo::new("test.fif", "test", sfreq, n, channels)
    }

    /// Tiny deterministic generator (SplitMix64 → uniform → Box–Muller).
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
        }
    }

    /// EEG caps on a 9 cm sphere centred at (0, 0, 0.04): a Fibonacci lattice on the upper part.
    fn cap(n: usize, origin: [f64; 3]) -> Vec<ChannelInfo> {
        (0..n)
            .map(|k| {
                let z = 1.0 - 1.2 * (k as f64 + 0.5) / n as f64; // z from ~1 down to -0.2
                let r = (1.0 - z * z).sqrt();
                let phi = k as f64 * std::f64::consts::PI * (3.0 - 5f64.sqrt());
                let mut ch = ChannelInfo::new(format!("EEG{k:03}"), ChannelKind::Eeg, 2, Unit::V);
                ch.loc[0] = origin[0] + 0.09 * r * phi.cos();
                ch.loc[1] = origin[1] + 0.09 * r * phi.sin();
                ch.loc[2] = origin[2] + 0.09 * z;
                ch
            })
            .collect()
    }

    #[test]
    fn legval_matches_direct_legendre_sum() {
        // P0..P3 at x = 0.3 with coefficients 1, 2, 3, 4.
        let x: f64 = 0.3;
        let p = [1.0, x, 0.5 * (3.0 * x * x - 1.0), 0.5 * (5.0 * x.powi(3) - 3.0 * x)];
        let direct: f64 = p.iter().zip([1.0, 2.0, 3.0, 4.0]).map(|(a, b)| a * b).sum();
        assert!((legval(x, &[1.0, 2.0, 3.0, 4.0]) - direct).abs() < 1e-14);
        // g(1) is the plain coefficient sum, P_n(1) = 1.
        let c = g_coefficients();
        assert!((legval(1.0, &c) - c.iter().sum::<f64>()).abs() < 1e-15);
        assert!((c[1] - 3.0 / (16.0 * 4.0 * std::f64::consts::PI)).abs() < 1e-18);
    }

    #[test]
    fn interpolates_a_smooth_field_on_a_sphere() {
        let origin = [0.0, 0.0, 0.04];
        let chans = cap(64, origin);
        let n = 50;
        let mut info = info_with(chans, 100.0, n);
        // A smooth field: low-order harmonics (dipolar + quadrupolar) varying in time.
        let truth = Array2::from_shape_fn((64, n), |(c, t)| {
            let l = &info.channels[c].loc;
            let (x, y, z) = ((l[0] - origin[0]) / 0.09, (l[1] - origin[1]) / 0.09, (l[2] - origin[2]) / 0.09);
            let tt = t as f64 / n as f64;
            1e-5 * ((x + 0.5 * z) * (6.0 * tt).sin() + (x * y - 0.3 * z * z) * (3.0 * tt).cos() + 0.2)
        });
        let mut data = truth.clone();
        let bads = vec!["EEG010".to_string(), "EEG033".to_string()];
        for b in &bads {
            let i = info.channel_index(b).unwrap();
            data.row_mut(i).fill(1.0);
        }
        info.bads = bads.clone();
        let done = interpolate_bads_eeg(&InMemory::new(info.clone(), data.clone()).unwrap(), &bads, Some(origin)).unwrap();
        assert_eq!(done.names, bads);
        done.apply_to(&mut data);
        for b in &bads {
            let i = info.channel_index(b).unwrap();
            let err = (&data.row(i) - &truth.row(i)).mapv(f64::abs).iter().cloned().fold(0.0, f64::max);
            assert!(err < 0.05e-5, "{b}: error {err}");
        }
        // The auto origin recovers the sphere centre (the cap is an exact sphere).
        let auto = auto_origin(&info).unwrap();
        for k in 0..3 {
            assert!((auto[k] - origin[k]).abs() < 1e-9, "{auto:?}");
        }
        // Good channels are untouched.
        assert_eq!(data.row(0), truth.row(0));
    }

    #[test]
    fn interpolation_rows_sum_to_one() {
        // The constant term of the spline: a constant field is reproduced exactly.
        let chans = cap(32, [0.0; 3]);
        let pos: Vec<[f64; 3]> = chans.iter().map(|c| [c.loc[0], c.loc[1], c.loc[2]]).collect();
        let m = interpolation_matrix(&pos[1..], &pos[..1]).unwrap();
        assert!((m.row(0).sum() - 1.0).abs() < 1e-8, "{}", m.row(0).sum());
    }

    #[test]
    fn bad_positions_and_names_are_errors_not_panics() {
        let mut chans = cap(16, [0.0; 3]);
        chans[3].loc = [0.0; 12];
        chans[5].loc[1] = f64::NAN;
        let info = info_with(chans, 100.0, 10);
        let rec = InMemory::new(info, Array2::zeros((16, 10))).unwrap();
        let err = interpolate_bads_eeg(&rec, &["EEG003".into()], Some([0.0; 3])).unwrap_err().to_string();
        assert!(err.contains("EEG003") && err.contains("EEG005"), "{err}");
        let err = interpolate_bads_eeg(&rec, &["NOPE".into()], None).unwrap_err().to_string();
        assert!(err.contains("NOPE"), "{err}");
        // No EEG bad: nothing to do, no error.
        let none = interpolate_bads_eeg(&rec, &[], None).unwrap();
        assert!(none.names.is_empty() && none.channels.is_empty() && none.rows.nrows() == 0);
        // Every EEG channel bad.
        let info = info_with(cap(4, [0.0; 3]), 100.0, 10);
        let all: Vec<String> = info.ch_names().iter().map(|s| s.to_string()).collect();
        assert!(interpolate_bads_eeg(&InMemory::new(info, Array2::zeros((4, 10))).unwrap(), &all, Some([0.0; 3])).is_err());
        // Too few points for an auto origin.
        let info = info_with(cap(3, [0.0; 3]), 100.0, 10);
        assert!(auto_origin(&info).is_err());
    }

    fn noisy_recording(seed: u64, n_ch: usize, n: usize, sfreq: f64) -> (RecordingInfo, Array2<f64>) {
        let mut rng = Rng(seed);
        let mut chans = cap(n_ch, [0.0; 3]);
        chans.push(ChannelInfo::new("STI", ChannelKind::Stim, 3, Unit::NONE));
        let info = info_with(chans, sfreq, n);
        // Shared sources (correlated channels), per-channel scale, 1/f-ish background.
        let n_src = 8;
        let src: Vec<Vec<f64>> = (0..n_src)
            .map(|_| {
                let mut acc = 0.0;
                (0..n).map(|_| { acc = 0.98 * acc + rng.normal(); acc }).collect()
            })
            .collect();
        let mut data = Array2::zeros((n_ch + 1, n));
        for c in 0..n_ch {
            let w: Vec<f64> = (0..n_src).map(|_| rng.normal()).collect();
            let scale = 1e-6 * (0.2 * rng.normal()).exp();
            for t in 0..n {
                let s: f64 = (0..n_src).map(|k| w[k] * src[k][t]).sum::<f64>();
                data[(c, t)] = scale * (s + 2.0 * rng.normal());
            }
        }
        (info, data)
    }

    #[test]
    fn clean_data_has_no_bads_and_injected_ones_are_found() {
        let (info, mut data) = noisy_recording(7, 40, 4000, 500.0);
        let params = BadsParams::default();
        let find = |data: &Array2<f64>| find_bad_channels(&InMemory::new(info.clone(), data.clone()).unwrap(), &params).unwrap();
        assert!(find(&data).is_empty(), "{:?}", find(&data));
        // Flat, loud, high-frequency noise, NaN.
        data.row_mut(3).fill(2e-3);
        data.row_mut(7).mapv_inplace(|v| v * 20.0);
        let mut rng = Rng(99);
        let hf: Vec<f64> = (0..4000).map(|t| 3e-5 * (if t % 2 == 0 { 1.0 } else { -1.0 }) * (1.0 + 0.1 * rng.normal())).collect();
        for (t, v) in hf.iter().enumerate() {
            data[(11, t)] = data[(11, t)] * 0.3 + v * 0.1;
        }
        data[(20, 100)] = f64::NAN;
        let found = find(&data);
        let names: Vec<(&str, BadReason)> = found.iter().map(|b| (b.name.as_str(), b.reason)).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(names[0], ("EEG003", BadReason::Flat));
        assert!(matches!(names[1], ("EEG007", BadReason::NoisyVariance(z)) if z > 5.0), "{names:?}");
        assert!(matches!(names[2], ("EEG011", BadReason::NoisyHighFreq(z)) if z > 5.0), "{names:?}");
        assert_eq!(names[3], ("EEG020", BadReason::NonFinite));
        // Deterministic.
        let again = find(&data);
        assert_eq!(format!("{found:?}"), format!("{again:?}"));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let info = info_with(cap(3, [0.0; 3]), 100.0, 0);
        let empty = InMemory::new(info, Array2::zeros((3, 0))).unwrap();
        assert_eq!(find_bad_channels(&empty, &BadsParams::default()).unwrap().len(), 3); // all flat
        let info = info_with(cap(1, [0.0; 3]), 100.0, 5);
        let constant = InMemory::new(info, Array2::from_elem((1, 5), 1.0)).unwrap();
        assert_eq!(find_bad_channels(&constant, &BadsParams::default()).unwrap()[0].reason, BadReason::Flat);
    }
}
