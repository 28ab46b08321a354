//! Removal of the cHPI coils' sinusoids and line harmonics from the MEG, equal to MNE-Python
//! 1.13's `mne.chpi.filter_chpi` (`interp="hann"`, its default; `remove_aliased=True`).
//!
//! Why: Maxwell filtering keeps the cHPI lines (293–328 Hz in ds000117), and a band-pass
//! rings on them for seconds at both ends of every run. MNE's answer, done here before
//! `find_bad_channels_maxwell` / `maxwell_filter` as MNE advises (fitting after Maxwell
//! filtering "may not work"):
//!
//! - The coils' frequencies come from the FIF's `hpi_meas` (active coils per `hpi_subsystem`,
//!   [`crate::recording::ChpiInfo::active_freqs`], MNE's `get_chpi_info`); those above the
//!   low-pass (or Nyquist) are dropped. Line harmonics: `line_freq`, 2·`line_freq`, … below
//!   sfreq/3 (`np.arange(line_freq, sfreq / 3, line_freq)`).
//! - A general linear model per window (`_setup_hpi_glm`): sin and cos of every cHPI
//!   frequency, of every line harmonic, a slope (`linspace(-0.5, 0.5)`) and a constant.
//!   `t_window="auto"` is max(5 / lowest frequency, 1 / smallest spacing of the frequencies)
//!   (0.2 s with no cHPI frequency), `n_window = rint(t_window · sfreq)`.
//! - Control points every `n_step = ceil(t_step · sfreq)` samples from 0; each fits the window
//!   of `n_window` samples centred on it (start `cp − n_window / 2`), clamped (shorter) at the
//!   recording's ends, through the pseudo-inverse of the model's first `len` rows (one per
//!   window length, cached); the sin/cos amplitudes of the removed frequencies (cHPI, plus
//!   line with `include_line`) are rotated from the window's phase to absolute time
//!   (`_chpi_fit_coeffs`).
//! - Between control points the amplitudes are Hann-interpolated (MNE's `_Interp2`: weight
//!   cos²(π/2 · j / n_step) on the left point, the rest on the right; after the last point its
//!   amplitudes hold); the sinusoids rebuilt at sample index t (from 0, phase
//!   2π·f·t / sfreq) are subtracted from every MEG channel, bads included
//!   (`pick_types(meg=True, exclude=())`). All fits see the original data (MNE subtracts one
//!   chunk late for that reason).
//!
//! Here it is a streaming [`RawReader`] ([`ChpiFilter`]): a read of samples `a..b` reads the
//! MEG channels over the windows of the control points that cover `a..b` (a window + a step
//! more on each side), fits those points (GEMMs through `matrixmultiply`, in parallel) and
//! rebuilds the sinusoids (two GEMMs per interval). A channel's fits use only that channel,
//! so any subset of channels can be read. Other channels pass through.
//! Measured against MNE 1.13 (tests/oracle/test_filter_chpi.py): 5e-14–3e-13 of each MEG
//! channel's RMS on an MNE-written copy of the real empty-room file with cHPI added and on
//! physics fixture runs. Speed on this 2-core machine, idle (`bf-pipeline filter-chpi`, the
//! whole command with reading and writing, vs MNE's `filter_chpi` alone on preloaded data):
//! a 60 s run at 1100 Hz (306 MEG of 404 channels) 1.5 s vs 10.0 s; the full 540,100-sample
//! run 11 s vs 128 s (the fits' GEMMs, ~110 GFlop, are most of it; 18.5 s on one thread).
//! Unlike MNE (whose set-up also builds the external-field projector used by head-position
//! fitting) this needs no sensor geometry.

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::recording::{RawReader, RecordingInfo};

/// `filter_chpi`'s parameters (MNE's names and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct ChpiParams {
    /// Seconds between control points (MNE `t_step`, 0.01).
    pub t_step: f64,
    /// Fit window in seconds; `None` = MNE's `"auto"`.
    pub t_window: Option<f64>,
    /// Also remove the line harmonics (MNE `include_line`, true).
    pub include_line: bool,
    /// Run without cHPI information, removing line harmonics only (MNE `allow_line_only`).
    pub allow_line_only: bool,
}

impl Default for ChpiParams {
    fn default() -> Self {
        ChpiParams { t_step: 0.01, t_window: None, include_line: true, allow_line_only: false }
    }
}

/// What the filter fits and removes, decided from the recording's info.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChpiSetup {
    /// cHPI frequencies fitted and removed (active coils at or below the low-pass).
    pub hpi_freqs: Vec<f64>,
    /// Line harmonics fitted (removed with `include_line`).
    pub line_freqs: Vec<f64>,
    pub include_line: bool,
    /// The fit window in seconds and samples.
    pub t_window: f64,
    pub n_window: usize,
    /// Samples between control points.
    pub n_step: usize,
    /// MEG channels filtered.
    pub n_meg: usize,
}

impl ChpiSetup {
    /// MNE's `_setup_hpi_amplitude_fitting(info, t_window, remove_aliased=True)` and
    /// `filter_chpi`'s checks, from `info` (its `chpi`, `line_freq`, `lowpass`, `sfreq`).
    pub fn new(info: &RecordingInfo, p: &ChpiParams) -> Result<ChpiSetup> {
        let err = |what: String| Error::request(&info.path, what);
        if !(p.t_step > 0.0 && p.t_step.is_finite()) {
            return Err(err(format!("filter_chpi: t_step ({}) must be > 0", p.t_step)));
        }
        let n_step = (p.t_step * info.sfreq).ceil() as usize;
        if p.include_line && info.line_freq.is_none() {
            return Err(err("filter_chpi: include_line is on but the recording has no line frequency (FIF line_freq; the BIDS sidecar's PowerLineFrequency); give it, or turn include_line off".into()));
        }
        let mut hpi_freqs = match &info.chpi {
            Some(c) => c.active_freqs().map_err(|e| err(format!("filter_chpi: {e}")))?,
            None if p.allow_line_only => Vec::new(),
            None => {
                return Err(err(
                    "filter_chpi: no cHPI coil frequencies in the recording (FIF hpi_meas / hpi_subsystem; MNE: \"No appropriate cHPI information found\"); allow_line_only removes the line harmonics alone".into(),
                ))
            }
        };
        let line_freqs: Vec<f64> = match info.line_freq {
            // np.arange(line_freq, sfreq / 3, line_freq): ceil((stop - start) / step) values.
            Some(lf) if lf > 0.0 => {
                let n = ((info.sfreq / 3.0 - lf) / lf).ceil().max(0.0) as usize;
                (0..n).map(|i| lf + i as f64 * lf).collect()
            }
            _ => Vec::new(),
        };
        let highest = info.lowpass.unwrap_or(info.sfreq / 2.0);
        hpi_freqs.retain(|&f| f <= highest);
        let t_window = match p.t_window {
            Some(t) => t,
            None if !hpi_freqs.is_empty() => {
                let mut all: Vec<f64> = hpi_freqs.iter().chain(&line_freqs).copied().collect();
                all.sort_by(f64::total_cmp);
                all.dedup();
                let low = 5.0 / all[0];
                let min_delta = all.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
                if min_delta.is_finite() {
                    low.max(1.0 / min_delta)
                } else {
                    low
                }
            }
            None => 0.2,
        };
        if !(t_window > 0.0 && t_window.is_finite()) {
            return Err(err(format!("filter_chpi: t_window ({t_window}) must be > 0")));
        }
        let n_window = (t_window * info.sfreq).round_ties_even() as usize;
        if n_window == 0 {
            return Err(err(format!("filter_chpi: t_window {t_window} s is shorter than a sample at {} Hz", info.sfreq)));
        }
        let n_meg = info.channels.iter().filter(|c| c.kind.is_meg()).count();
        Ok(ChpiSetup { hpi_freqs, line_freqs, include_line: p.include_line, t_window, n_window, n_step, n_meg })
    }

    /// The frequencies removed, cHPI first (the order of the amplitudes).
    pub fn removed_freqs(&self) -> Vec<f64> {
        let mut f = self.hpi_freqs.clone();
        if self.include_line {
            f.extend_from_slice(&self.line_freqs);
        }
        f
    }

    /// MNE's `_setup_hpi_glm`: `rows` × (2·hpi + 2·line + 2) columns [sin hpi, cos hpi,
    /// sin line, cos line, slope, 1], the first `rows` rows of the full window's model.
    fn model(&self, rows: usize, sfreq: f64) -> DMatrix<f64> {
        let (nh, nl) = (self.hpi_freqs.len(), self.line_freqs.len());
        let n = self.n_window;
        let step = if n > 1 { 1.0 / (n - 1) as f64 } else { 0.0 };
        DMatrix::from_fn(rows, 2 * nh + 2 * nl + 2, |j, col| {
            let rad = 2.0 * std::f64::consts::PI * j as f64 / sfreq;
            let freq = |i: usize| if i < nh { self.hpi_freqs[i] } else { self.line_freqs[i - nh] };
            if col < nh {
                (freq(col) * rad).sin()
            } else if col < 2 * nh {
                (freq(col - nh) * rad).cos()
            } else if col < 2 * nh + nl {
                (freq(col - nh) * rad).sin()
            } else if col < 2 * nh + 2 * nl {
                (freq(col - nh - nl) * rad).cos()
            } else if col == 2 * nh + 2 * nl {
                // np.linspace(-0.5, 0.5, n): j·step − 0.5, the last exactly 0.5.
                if n > 1 && j == n - 1 {
                    0.5
                } else {
                    j as f64 * step - 0.5
                }
            } else {
                1.0
            }
        })
    }
}

/// A reader whose MEG channels have the cHPI (and line) sinusoids removed, as MNE's
/// `filter_chpi`; other channels pass through. Reads may come from several threads.
pub struct ChpiFilter<'a> {
    inner: &'a dyn RawReader,
    pub setup: ChpiSetup,
    /// Rows of the removed amplitudes of each window length's pseudo-inverse (n_remove × len).
    pinvs: BTreeMap<usize, DMatrix<f64>>,
    freqs: Vec<f64>,
    n_control: usize,
}

impl<'a> ChpiFilter<'a> {
    pub fn new(inner: &'a dyn RawReader, params: &ChpiParams) -> Result<ChpiFilter<'a>> {
        let info = inner.info();
        let setup = ChpiSetup::new(info, params)?;
        let n_t = info.n_samples;
        let n_control = n_t.div_ceil(setup.n_step);
        let freqs = setup.removed_freqs();
        let n_remove = 2 * freqs.len();
        let mut pinvs = BTreeMap::new();
        if n_remove > 0 && n_t > 0 {
            let full = setup.model(setup.n_window, info.sfreq);
            let mut lens: Vec<usize> = (0..n_control).map(|k| window(k * setup.n_step, setup.n_window, n_t)).map(|(a, b)| b - a).collect();
            lens.sort_unstable();
            lens.dedup();
            for len in lens {
                let pinv = pinv(full.rows(0, len).into_owned()).ok_or_else(|| Error::request(&info.path, format!("filter_chpi: no pseudo-inverse of the {len}-sample model")))?;
                pinvs.insert(len, pinv.rows(0, n_remove).into_owned());
            }
        }
        Ok(ChpiFilter { inner, setup, pinvs, freqs, n_control })
    }

    /// The removed amplitudes at control points `k0..=k1` for MEG channels `meg` (recording
    /// indices), from `x` = those channels over samples `lo..` (row stride `stride`): per
    /// point a row-major 2F × n buffer (rows: sin amplitude per frequency, then cos), rotated
    /// to absolute time.
    fn fit(&self, k0: usize, k1: usize, x: &[f64], n: usize, lo: usize, stride: usize) -> Vec<Vec<f64>> {
        let sfreq = self.inner.info().sfreq;
        let n_t = self.inner.info().n_samples;
        let s = &self.setup;
        let (nh, nl) = (s.hpi_freqs.len(), if s.include_line { s.line_freqs.len() } else { 0 });
        let nf = nh + nl;
        let n_remove = 2 * nf;
        (k0..k1 + 1)
            .into_par_iter()
            .with_min_len(16)
            .map(|k| {
                let (a, b) = window(k * s.n_step, s.n_window, n_t);
                let p = &self.pinvs[&(b - a)];
                let mut coef = vec![0.0; n_remove * n];
                // SAFETY: p is n_remove × len column-major; the window's samples of channel c
                // are x[c·stride + (a − lo) ..][..len], inside x (the read covers every
                // window); coef is n_remove × n row-major.
                unsafe {
                    matrixmultiply::dgemm(
                        n_remove, b - a, n, 1.0,
                        p.as_ptr(), 1, n_remove as isize,
                        x.as_ptr().add(a - lo), 1, stride as isize,
                        0.0, coef.as_mut_ptr(), n as isize, 1,
                    );
                }
                // Model order: [sin hpi, cos hpi, sin line, cos line]; ours: sin, cos per freq.
                let row = |r: usize| &coef[r * n..(r + 1) * n];
                let mut amp = vec![0.0; n_remove * n];
                for (fi, &f) in self.freqs.iter().enumerate() {
                    let (sr, cr) = if fi < nh { (fi, nh + fi) } else { (2 * nh + (fi - nh), 2 * nh + nl + (fi - nh)) };
                    let theta0 = 2.0 * std::f64::consts::PI * f * a as f64 / sfreq;
                    let (s0, c0) = theta0.sin_cos();
                    let (sin_c, cos_c) = (row(sr), row(cr));
                    let (top, bottom) = amp.split_at_mut(nf * n);
                    let (a_row, b_row) = (&mut top[fi * n..(fi + 1) * n], &mut bottom[fi * n..(fi + 1) * n]);
                    for c in 0..n {
                        a_row[c] = sin_c[c] * c0 + cos_c[c] * s0;
                        b_row[c] = cos_c[c] * c0 - sin_c[c] * s0;
                    }
                }
                amp
            })
            .collect()
    }

    fn read(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        let info = self.inner.info();
        info.check_request(picks, start, stop, out.len())?;
        let n = stop - start;
        let meg: Vec<(usize, usize)> = picks.iter().enumerate().filter(|(_, &c)| info.channels[c].kind.is_meg()).map(|(i, &c)| (i, c)).collect();
        if meg.is_empty() || self.freqs.is_empty() || n == 0 {
            return self.inner.read_into_f64(picks, start, stop, out);
        }
        let passed: Vec<(usize, usize)> = picks.iter().enumerate().filter(|(_, &c)| !info.channels[c].kind.is_meg()).map(|(i, &c)| (i, c)).collect();
        if !passed.is_empty() {
            let p: Vec<usize> = passed.iter().map(|&(_, c)| c).collect();
            let mut buf = vec![0.0; p.len() * n];
            self.inner.read_into_f64(&p, start, stop, &mut buf)?;
            for (k, &(i, _)) in passed.iter().enumerate() {
                out[i * n..(i + 1) * n].copy_from_slice(&buf[k * n..(k + 1) * n]);
            }
        }
        let s = &self.setup;
        let n_t = info.n_samples;
        let (k0, k1) = (start / s.n_step, ((stop - 1) / s.n_step + 1).min(self.n_control - 1));
        let lo = window(k0 * s.n_step, s.n_window, n_t).0.min(start);
        let hi = window(k1 * s.n_step, s.n_window, n_t).1.max(stop);
        let len = hi - lo;
        let mp: Vec<usize> = meg.iter().map(|&(_, c)| c).collect();
        let nm = mp.len();
        let mut x = vec![0.0; nm * len];
        self.inner.read_into_f64(&mp, lo, hi, &mut x)?;
        let amps = self.fit(k0, k1, &x, nm, lo, len);
        // Rebuild interval by interval (in parallel batches), then subtract.
        let nf = self.freqs.len();
        let sfreq = info.sfreq;
        let intervals: Vec<(usize, usize, usize)> = (k0..=k1)
            .filter_map(|k| {
                let a = (k * s.n_step).max(start);
                let b = if k + 1 < self.n_control { ((k + 1) * s.n_step).min(stop) } else { stop };
                (a < b).then_some((k, a, b))
            })
            .collect();
        let recon: Vec<(usize, usize, Vec<f64>)> = intervals
            .par_iter()
            .with_min_len(8)
            .map(|&(k, a, b)| {
                let m = b - a;
                let left = &amps[k - k0];
                let (right, span) = if k + 1 < self.n_control { (&amps[k + 1 - k0], s.n_step) } else { (left, 1) };
                let cp = k * s.n_step;
                // Basis rows (sin f, then cos f) at each sample, weighted by the Hann
                // interpolation: w on the left point, 1 − w on the right.
                let mut bl = vec![0.0; 2 * nf * m];
                let mut br = vec![0.0; 2 * nf * m];
                let step = std::f64::consts::FRAC_PI_2 / span as f64;
                for (j, t) in (a..b).enumerate() {
                    let w = if k + 1 < self.n_control {
                        let c = ((t - cp) as f64 * step).cos();
                        c * c
                    } else {
                        1.0
                    };
                    for (fi, &f) in self.freqs.iter().enumerate() {
                        let ph = 2.0 * std::f64::consts::PI * (f * t as f64) / sfreq;
                        let (sn, cs) = ph.sin_cos();
                        bl[fi * m + j] = w * sn;
                        bl[(nf + fi) * m + j] = w * cs;
                        br[fi * m + j] = (1.0 - w) * sn;
                        br[(nf + fi) * m + j] = (1.0 - w) * cs;
                    }
                }
                let mut y = vec![0.0; nm * m];
                // SAFETY: amplitudes are 2F × nm row-major (read transposed: element (c, r) at
                // r·nm + c); bases 2F × m row-major; y nm × m row-major; all sized above.
                unsafe {
                    matrixmultiply::dgemm(nm, 2 * nf, m, 1.0, left.as_ptr(), 1, nm as isize, bl.as_ptr(), m as isize, 1, 0.0, y.as_mut_ptr(), m as isize, 1);
                    matrixmultiply::dgemm(nm, 2 * nf, m, 1.0, right.as_ptr(), 1, nm as isize, br.as_ptr(), m as isize, 1, 1.0, y.as_mut_ptr(), m as isize, 1);
                }
                (a, b, y)
            })
            .collect();
        for (r, &(i, _)) in meg.iter().enumerate() {
            let src = &x[r * len..(r + 1) * len];
            let dst = &mut out[i * n..(i + 1) * n];
            for (a, b, y) in &recon {
                let m = b - a;
                for j in 0..m {
                    dst[a - start + j] = src[a - lo + j] - y[r * m + j];
                }
            }
        }
        Ok(())
    }
}

/// The pseudo-inverse of the model (numpy's `pinv`). A window at least as long as the model
/// is wide has full column rank (condition ~4–8 for ds000117's frequencies), so
/// R⁻¹Qᵀ of a Householder QR gives it to ~cond·ε; nalgebra's SVD was ~1e-8 off on some
/// window lengths (one fit 4e-10 of the channel RMS away from MNE). Shorter windows
/// (recordings shorter than the model) take the SVD with numpy's cut-off.
fn pinv(m: DMatrix<f64>) -> Option<DMatrix<f64>> {
    if m.nrows() >= m.ncols() {
        let qr = m.qr();
        let (q, r) = (qr.q(), qr.r());
        r.solve_upper_triangular(&q.transpose())
    } else {
        let svd = m.svd(true, true);
        let tol = 1e-15 * svd.singular_values.max();
        svd.pseudo_inverse(tol).ok()
    }
}

/// The fit window of the control point at sample `cp`: `n_window` samples from
/// `cp − n_window / 2`, clamped to the recording (shorter at its ends).
fn window(cp: usize, n_window: usize, n_t: usize) -> (usize, usize) {
    let left = cp as i64 - (n_window / 2) as i64;
    let a = left.max(0) as usize;
    let b = ((left + n_window as i64).max(0) as usize).min(n_t);
    (a, b.max(a))
}

impl RawReader for ChpiFilter<'_> {
    fn info(&self) -> &RecordingInfo {
        self.inner.info()
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        self.read(picks, start, stop, out)
    }
    fn maxshield(&self) -> bool {
        self.inner.maxshield()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{ChannelInfo, ChannelKind, ChpiInfo, InMemory, Unit};
    use ndarray::Array2;

    fn recording(sfreq: f64, n: usize, f: impl Fn(usize, f64) -> f64, chans: &[ChannelKind]) -> InMemory {
        let channels = chans.iter().enumerate().map(|(i, &k)| ChannelInfo::new(format!("MEG{i:04}"), k, 1, if k == ChannelKind::Grad { Unit::T_M } else { Unit::T })).collect();
        let info = RecordingInfo {
            line_freq: Some(50.0),
            chpi: Some(ChpiInfo { coils: vec![(1, 293.0), (2, 307.0), (3, 314.0)], event_bits: Some(vec![Some(256), Some(512), Some(0)]), event_channel: None }),
            ..RecordingInfo::new("chpi-test.fif", "test", sfreq, n, channels)
        };
        let data = Array2::from_shape_fn((chans.len(), n), |(c, t)| f(c, t as f64 / sfreq));
        InMemory::new(info, data).unwrap()
    }

    /// cHPI sinusoids (one amplitude-modulated) plus line harmonics on a slow 3 Hz signal:
    /// the sinusoids go (5e-11 T → < 1.2e-13), the slow signal (2e-12) stays to 6 % of its
    /// amplitude. The method, not the arithmetic, sets this bound: each window's fit of a
    /// modulated amplitude is its mean over the 143 ms window, and the part of the 3 Hz wave
    /// that the slope + DC terms do not absorb leaks into the sinusoids' fit. MNE's
    /// `filter_chpi` on the same signals (1200 Hz, 30 % modulation at 0.2 Hz) leaves 3e-13
    /// from the modulation and 8e-14 (4 %) from the slow wave, the worst near the ends.
    /// The coil whose event bit is 0 is not fitted; non-MEG channels pass bit for bit.
    #[test]
    fn removes_the_chpi_line_and_keeps_the_slow_signal() {
        use std::f64::consts::TAU;
        let (sfreq, n) = (1000.0, 6000);
        let slow = |t: f64| 2e-12 * (TAU * 3.0 * t).sin();
        let chpi = |t: f64| 5e-11 * (1.0 + 0.1 * (TAU * 0.1 * t).sin()) * (TAU * 293.0 * t + 0.4).sin() + 1e-11 * (TAU * 307.0 * t).cos();
        let line = |t: f64| 3e-12 * (TAU * 50.0 * t + 1.0).sin() + 1e-12 * (TAU * 150.0 * t).sin();
        let kinds = [ChannelKind::Mag, ChannelKind::Grad, ChannelKind::Eeg];
        let rec = recording(sfreq, n, |c, t| if c == 2 { chpi(t) } else { slow(t) + chpi(t) + line(t) }, &kinds);
        let filt = ChpiFilter::new(&rec, &ChpiParams::default()).unwrap();
        assert_eq!(filt.setup.hpi_freqs, vec![293.0, 307.0]);
        assert_eq!(filt.setup.line_freqs, vec![50.0, 100.0, 150.0, 200.0, 250.0, 300.0]);
        // Frequencies 50 … 307: the smallest spacing is 7 Hz → 1/7 s → 143 samples.
        assert_eq!(filt.setup.n_window, 143);
        assert_eq!(filt.setup.n_step, 10);
        let all = rec.all_picks();
        let got = filt.read_f64(&all, 0, n).unwrap();
        let mut worst: f64 = 0.0;
        for t in 0..n {
            let tt = t as f64 / sfreq;
            let want = slow(tt);
            for c in 0..2 {
                worst = worst.max((got[(c, t)] - want).abs());
            }
            assert_eq!(got[(2, t)], chpi(tt));
        }
        eprintln!("worst error {worst:e}");
        assert!(worst < 0.06 * 2e-12, "worst error {worst:e}");
        // Reads of any span give the same samples as the whole read.
        let part = filt.read_f64(&[1, 2], 1234, 2345).unwrap();
        for t in 0..part.ncols() {
            assert!((part[(0, t)] - got[(1, 1234 + t)]).abs() < 1e-25);
            assert_eq!(part[(1, t)], got[(2, 1234 + t)]);
        }
    }

    #[test]
    fn missing_chpi_or_line_frequency_is_an_error_naming_the_file() {
        let rec = recording(1000.0, 2000, |_, _| 0.0, &[ChannelKind::Mag]);
        let mut info = rec.info.clone();
        info.chpi = None;
        let e = ChpiSetup::new(&info, &ChpiParams::default()).unwrap_err().to_string();
        assert!(e.starts_with("chpi-test.fif: filter_chpi: no cHPI coil frequencies"), "{e}");
        let only = ChpiSetup::new(&info, &ChpiParams { allow_line_only: true, ..Default::default() }).unwrap();
        assert!(only.hpi_freqs.is_empty());
        assert_eq!(only.t_window, 0.2);
        info.line_freq = None;
        let e = ChpiSetup::new(&info, &ChpiParams { allow_line_only: true, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("no line frequency"), "{e}");
    }
}
