//! Polyphase resampling as MNE's `raw.resample(sfreq, method='polyphase')` does it (MNE 1.13,
//! `mne.filter._prep_polyphase` + `_resample_polyphase` → `scipy.signal.resample_poly`).
//!
//! The method, step by step, with MNE's and SciPy's choices:
//!
//! 1. **Lengths, not rates, give the ratio.** MNE computes the output length as for the FFT
//!    method, `final_len = int(round(n_in * sfreq_new / sfreq_old))` (ties to even), then
//!    resamples by `up / down = final_len / n_in` reduced by their gcd. 1100 → 250 Hz on a
//!    signal whose length is a multiple of 22 is 5/22 and 1000 → 250 Hz on a multiple of 4
//!    is 1/4; on other lengths the fraction can be as large as the lengths themselves
//!    (22407 samples at 1100 Hz → 5092/22407), and so is the filter. No
//!    `Fraction.limit_denominator` is involved.
//! 2. **Filter.** `scipy.signal.firwin(2·half_len + 1, 1/max(up, down),
//!    window=('kaiser', 5.0))` with `half_len = 10·max(up, down)`: a windowed sinc
//!    low-pass at the narrower Nyquist, normalised to unit DC gain, then multiplied by `up`.
//!    The Kaiser window needs the modified Bessel function I0, computed here by its power
//!    series (all terms positive, so no cancellation; full f64 accuracy for β = 5).
//! 3. **Alignment.** `resample_poly` prepends `down − half_len mod down` zeros to the taps
//!    (and appends zeros when needed) so that output sample `n_pre_remove = (half_len +
//!    n_pre_pad) / down` of the full up-FIR-down result is the one centred on input sample 0,
//!    and keeps `n_out = ceil(n_in·up/down)` (= `final_len`) samples from there.
//! 4. **Padding.** MNE's `pad='auto'` is `'reflect'` for polyphase: `upfirdn` extends the
//!    signal by reflection without repeating the edge sample (`3 2 | 1 2 3 | 2 1`), with
//!    repeated reflections when the filter is longer than the signal.
//! 5. **upfirdn.** Output sample `m` of "upsample by `up` (zero stuffing), filter, keep every
//!    `down`-th" is `Σ_j h[j·up + t] · x[i − j]` with `i = ⌊m·down/up⌋` and phase
//!    `t = m·down mod up`. Only the kept outputs are computed, straight from the input: the
//!    up-sampled signal is never formed. Taps are stored per phase, reversed, as SciPy's
//!    `_pad_h` does, so each output is one contiguous dot product.
//!
//! Stim channels are not filtered: `raw.resample` decimates them with
//! `_resample_stim_channels` whatever the method (see [`super::resample::resample_stim`]).
//!
//! The filter has `20·max(up, down) + 1` taps. MNE designs it whatever its size; we refuse
//! more than [`MAX_TAPS`] with a clear error rather than allocate gigabytes.

use std::path::Path;

use rayon::prelude::*;

use super::ratio::resampled_len;
use crate::error::{Error, Result};

/// The Kaiser β of MNE's `window='auto'` for polyphase (SciPy's default).
pub const KAISER_BETA: f64 = 5.0;

/// The largest filter we design: 2²⁶ taps (512 MiB of f64).
pub const MAX_TAPS: usize = 1 << 26;

fn err(what: impl Into<String>) -> Error {
    Error::request(Path::new("resample"), what)
}

/// The modified Bessel function of the first kind, order 0: `Σ_k ((x/2)^k / k!)²`, summed
/// until the terms no longer change the sum (about 25 terms for the Kaiser window's x ≤ 5).
pub fn bessel_i0(x: f64) -> f64 {
    // 1/k², so that the hot loop multiplies instead of divides (filters can have 10⁷ taps).
    const INV_K2: [f64; 64] = {
        let mut t = [0.0; 64];
        let mut k = 1;
        while k < 64 {
            t[k] = 1.0 / (k * k) as f64;
            k += 1;
        }
        t
    };
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1usize;
    loop {
        term *= q * if k < 64 { INV_K2[k] } else { 1.0 / (k * k) as f64 };
        sum += term;
        if term <= sum * 1e-17 {
            return sum;
        }
        k += 1;
    }
}

/// `scipy.signal.windows.kaiser(m, beta)` (symmetric).
pub fn kaiser(m: usize, beta: f64) -> Vec<f64> {
    let d = FirwinKaiser::new(m, 0.5, beta);
    (0..m).map(|n| d.window(n)).collect()
}

/// `scipy.signal.firwin(numtaps, cutoff, window=('kaiser', beta))`: low-pass, `cutoff`
/// relative to Nyquist (0 < cutoff < 1), scaled to unit gain at DC.
pub fn firwin_lowpass_kaiser(numtaps: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    let d = FirwinKaiser::new(numtaps, cutoff, beta);
    let mut h: Vec<f64> = (0..numtaps).map(|k| d.tap(k)).collect();
    let s = accurate_sum(h.iter().copied());
    h.iter_mut().for_each(|v| *v /= s);
    h
}

/// Neumaier's compensated sum: within an ulp or so of the exact sum whatever the order
/// (numpy's pairwise `sum` is as close on these lengths), so the planner can add the taps
/// in its polyphase memory order and still divide by the same number as [`firwin_lowpass_kaiser`].
fn accurate_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = s + v;
        c += if s.abs() >= v.abs() { (s - t) + v } else { (v - t) + s };
        s = t;
    }
    s + c
}

/// firwin's taps one at a time, before the DC scaling (so that a huge filter can be written
/// straight into its polyphase layout, in parallel, without temporary copies).
struct FirwinKaiser {
    numtaps: usize,
    cutoff: f64,
    beta: f64,
    alpha: f64,
    i0_beta: f64,
}

impl FirwinKaiser {
    fn new(numtaps: usize, cutoff: f64, beta: f64) -> Self {
        FirwinKaiser { numtaps, cutoff, beta, alpha: 0.5 * (numtaps as f64 - 1.0), i0_beta: bessel_i0(beta) }
    }

    /// `kaiser(numtaps, beta)[n]`: `I0(β·sqrt(1 − ((n − α)/α)²)) / I0(β)`.
    fn window(&self, n: usize) -> f64 {
        if self.numtaps <= 1 {
            return 1.0;
        }
        let r = (n as f64 - self.alpha) / self.alpha;
        bessel_i0(self.beta * (1.0 - r * r).sqrt()) / self.i0_beta
    }

    /// `cutoff·sinc(cutoff·(k − α))·window[k]` in firwin's order of operations.
    fn tap(&self, k: usize) -> f64 {
        let m = k as f64 - self.alpha;
        // np.sinc: sin(πx)/(πx), with x = 1e-20 at 0.
        let x = self.cutoff * m;
        let y = std::f64::consts::PI * if x == 0.0 { 1e-20 } else { x };
        self.cutoff * (y.sin() / y) * self.window(k)
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The polyphase plan for one input length and ratio, shared by every channel.
pub struct PolyphaseResampler {
    n_in: usize,
    n_out: usize,
    up: usize,
    down: usize,
    /// Taps per phase (SciPy's `h_per_phase`).
    hpp: usize,
    /// Index of the first kept output in the full upfirdn output.
    n_pre_remove: usize,
    /// `n_in + hpp - 1`: SciPy's upfirdn computes no output past this input index.
    padded_len: usize,
    /// `up` rows of `hpp` taps: row `t` holds `h[t + j·up]` for `j = hpp-1 … 0` (scaled by `up`
    /// and zero-padded as `resample_poly` does), SciPy's `_h_trans_flip`.
    phases: Vec<f64>,
}

impl PolyphaseResampler {
    /// Plans resampling of `n_in` samples from `down_sfreq` Hz to `up_sfreq` Hz.
    pub fn new(up_sfreq: f64, down_sfreq: f64, n_in: usize) -> Result<Self> {
        for (name, v) in [("new sampling rate", up_sfreq), ("old sampling rate", down_sfreq)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(err(format!("the {name} must be a positive number of Hz, got {v}")));
            }
        }
        if n_in == 0 {
            return Err(err("cannot resample a signal of no samples"));
        }
        let (_, n_out) = resampled_len(up_sfreq, down_sfreq, n_in);
        let g = gcd(n_out, n_in);
        let (up, down) = (n_out / g, n_in / g);
        if up == 1 && down == 1 {
            // Same length: scipy's resample_poly returns a copy (MNE itself would fail
            // designing a filter with cutoff 1.0; it skips resampling when the rates are equal).
            return Ok(PolyphaseResampler { n_in, n_out, up, down, hpp: 0, n_pre_remove: 0, padded_len: n_in, phases: Vec::new() });
        }
        let max_rate = up.max(down);
        let numtaps = max_rate.checked_mul(20).and_then(|v| v.checked_add(1)).filter(|&v| v <= MAX_TAPS).ok_or_else(|| {
            err(format!(
                "polyphase resampling of {n_in} samples from {down_sfreq} Hz to {up_sfreq} Hz ({n_out} samples) is a ratio of \
                 {up}/{down} once the lengths are reduced, which needs a filter of 20 × {max_rate} + 1 taps (more than {MAX_TAPS}); \
                 use the FFT method, or crop the recording to a length whose ratio to the new length is simpler{}",
                simpler_lengths(up_sfreq, down_sfreq)
            ))
        })?;
        let half_len = 10 * max_rate;

        // resample_poly's alignment (lengths in i128: products of two lengths).
        let n_pre_pad = down - half_len % down;
        let n_pre_remove = (half_len + n_pre_pad) / down;
        let (up_i, down_i, n_in_i) = (up as i128, down as i128, n_in as i128);
        let out_len = |len_h: i128| ((n_in_i - 1) * up_i + len_h - 1) / down_i + 1;
        let len0 = (numtaps + n_pre_pad) as i128;
        let need = (n_out + n_pre_remove) as i128;
        let mut n_post_pad = 0usize;
        // As resample_poly: "we should rarely need to do this given our filter lengths" (the
        // filter overhangs the kept outputs by about (half_len - up)/down samples).
        while out_len(len0 + n_post_pad as i128) < need {
            n_post_pad += 1;
        }
        let len_h = numtaps + n_pre_pad + n_post_pad;
        let hpp = len_h.div_ceil(up);
        let last = (n_pre_remove + n_out) as u128 * down as u128;
        if last > u64::MAX as u128 / 2 {
            return Err(err(format!("polyphase resampling of {n_in} samples by {up}/{down} overflows index arithmetic")));
        }

        // h_full = [0; n_pre_pad] ++ firwin·up ++ [0; n_post_pad], zero-padded to up·hpp;
        // phase t, position r holds h_full[(hpp-1-r)·up + t] (scipy's _pad_h). The taps are
        // computed in place, one phase per task (a filter can have tens of millions of taps:
        // no temporary copies), then scaled as firwin (÷ their sum) and resample_poly (× up) do.
        let design = FirwinKaiser::new(numtaps, 1.0 / max_rate as f64, KAISER_BETA);
        let mut phases = vec![0.0; up * hpp];
        phases.par_chunks_mut(hpp).enumerate().for_each(|(t, row)| {
            for (r, v) in row.iter_mut().enumerate() {
                if let Some(k) = ((hpp - 1 - r) * up + t).checked_sub(n_pre_pad).filter(|&k| k < numtaps) {
                    *v = design.tap(k);
                }
            }
        });
        let sum = accurate_sum(phases.iter().copied());
        let scale = up as f64;
        phases.iter_mut().for_each(|v| *v = *v / sum * scale);
        Ok(PolyphaseResampler { n_in, n_out, up, down, hpp, n_pre_remove, padded_len: n_in + hpp - 1, phases })
    }

    /// The output length (MNE's `final_len`).
    pub fn final_len(&self) -> usize {
        self.n_out
    }

    /// The reduced ratio `(up, down)` = `final_len / n_in` in lowest terms.
    pub fn ratio(&self) -> (usize, usize) {
        (self.up, self.down)
    }

    /// The low-pass design before `resample_poly` scales it by `up`: scipy's
    /// `firwin(20·max(up, down) + 1, 1/max(up, down), window=('kaiser', 5.0))` (recomputed;
    /// empty when no resampling is needed).
    pub fn taps(&self) -> Vec<f64> {
        if self.phases.is_empty() {
            return Vec::new();
        }
        let max_rate = self.up.max(self.down);
        firwin_lowpass_kaiser(20 * max_rate + 1, 1.0 / max_rate as f64, KAISER_BETA)
    }

    /// `resample_poly(x, up, down, window=taps, padtype='reflect')` for one channel of
    /// `n_in` samples.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.n_in, "the plan is for {} samples", self.n_in);
        if self.phases.is_empty() {
            return x.to_vec();
        }
        let (up, down, hpp) = (self.up as u64, self.down as u64, self.hpp);
        (0..self.n_out)
            .map(|i| {
                let pos = (i + self.n_pre_remove) as u64 * down;
                let x_idx = (pos / up) as usize;
                let t = (pos % up) as usize;
                if x_idx >= self.padded_len {
                    return 0.0; // scipy's upfirdn stops there (never reached for kept outputs)
                }
                let taps = &self.phases[t * hpp..(t + 1) * hpp];
                let start = x_idx as isize + 1 - hpp as isize;
                if start >= 0 && x_idx < x.len() {
                    dot(&x[start as usize..=x_idx], taps)
                } else {
                    taps.iter().enumerate().map(|(k, &h)| reflect(x, start + k as isize) * h).sum()
                }
            })
            .collect()
    }
}

/// Advice for the error message: with integer rates, lengths that are a multiple of
/// `old / gcd(old, new)` give the ratio `new / old` in lowest terms.
fn simpler_lengths(up_sfreq: f64, down_sfreq: f64) -> String {
    if up_sfreq.fract() == 0.0 && down_sfreq.fract() == 0.0 && up_sfreq < 1e12 && down_sfreq < 1e12 {
        let (a, b) = (up_sfreq as usize, down_sfreq as usize);
        let g = gcd(a, b);
        format!(" (a multiple of {} samples gives {}/{})", b / g, a / g, b / g)
    } else {
        String::new()
    }
}

/// `x[idx]` with scipy upfirdn's `'reflect'` extension (`3 2 | 1 2 3 | 2 1`), repeated
/// reflections included (`_extend_left` / `_extend_right`).
fn reflect(x: &[f64], idx: isize) -> f64 {
    let n = x.len() as isize;
    if (0..n).contains(&idx) {
        return x[idx as usize];
    }
    if n == 1 {
        return x[0];
    }
    let period = 2 * (n - 1);
    let i = if idx < 0 {
        if -idx < n - 1 {
            -idx
        } else {
            let r = (-idx - 1) % period;
            if r < n - 1 { r + 1 } else { n - 2 - (r - (n - 1)) }
        }
    } else if idx < 2 * n - 1 {
        n - 2 - (idx - n)
    } else {
        let r = idx % period;
        if r < n - 1 { r } else { n - 1 - (r - (n - 1)) }
    };
    x[i as usize]
}

/// Dot product with four accumulators (vectorises; differs from a sequential sum by rounding).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += p[k] * q[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (p, q) in ra.iter().zip(rb) {
        s += p * q;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * y.abs().max(1e-3), "{k}: {x} vs {y}");
        }
    }

    /// `.venv/bin/python -c "import scipy.special as s; print([float(s.i0(v)) for v in
    /// [0, .5, 1, 2.5, 4.999, 5, 10, 20]])"`
    #[test]
    fn bessel_i0_matches_scipy() {
        let want = [
            (0.0, 1.0),
            (0.5, 1.0634833707413234),
            (1.0, 1.2660658777520082),
            (2.5, 3.289839144050123),
            (4.999, 27.21554736436208),
            (5.0, 27.239871823604442),
            (10.0, 2815.716628466254),
            (20.0, 43558282.559553534),
        ];
        for (x, v) in want {
            let got = bessel_i0(x);
            assert!((got - v).abs() <= 4.0 * f64::EPSILON * v, "I0({x}) = {got}, scipy {v}");
        }
    }

    /// `.venv/bin/python -c "import scipy.signal as s; print(s.firwin(11, 0.3,
    /// window=('kaiser', 5.0)).tolist()); print(s.firwin(41, 0.5, window=('kaiser', 5.0))[:21].tolist())"`
    #[test]
    fn taps_match_scipy_firwin() {
        let want11 = [
            -0.0023718003085671825, -0.008505447569927146, 0.013805798765590032, 0.10602505511737073, 0.2388184727130681,
            0.304455842564931, 0.2388184727130681, 0.10602505511737073, 0.013805798765590032, -0.008505447569927146,
            -0.0023718003085671825,
        ];
        close(&firwin_lowpass_kaiser(11, 0.3, 5.0), &want11, 1e-14);
        // up/down = 1/2 (e.g. 1000 → 500 Hz on an even length): firwin(41, 1/2, ('kaiser', 5)).
        let want41 = [
            0.0, -0.0010514587726751215, 0.0, 0.0025089668121477146, 0.0, -0.004894834339287572, 0.0,
            0.008556559002481406, 0.0, -0.01398997323843515, 0.0, 0.022023120574074614, 0.0, -0.03434017988174492, 0.0,
            0.05528828391185702, 0.0, -0.10093019739773386, 0.0, 0.31670034568030075, 0.5002587352980301,
        ];
        let r = PolyphaseResampler::new(500.0, 1000.0, 1000).unwrap();
        assert_eq!(r.ratio(), (1, 2));
        let taps = r.taps();
        assert_eq!(taps.len(), 41);
        for (k, (&got, &want)) in taps.iter().zip(&want41).enumerate() {
            // The zeros of sinc are ~1e-17 in both (sin(kπ) ≠ 0 in floating point).
            assert!((got - want).abs() <= 1e-15, "{k}: {got} vs {want}");
            assert_eq!(got, taps[40 - k], "symmetric");
        }
    }

    /// `x = [0.3, -1.2, 2.5, 0.7, -0.4, 1.9, 3.3, -2.2, 0.05, 1.1, -0.9, 0.6]`;
    /// `scipy.signal.resample_poly(x, 2, 3, window=('kaiser', 5.0), padtype='reflect')` (also
    /// `mne.filter.resample(x, 2., 3., method='polyphase')`) and the same with 5, 2. The
    /// filter (61 and 101 taps) is longer than the signal: repeated reflections.
    #[test]
    fn short_signal_matches_resample_poly() {
        let x = [0.3, -1.2, 2.5, 0.7, -0.4, 1.9, 3.3, -2.2, 0.05, 1.1, -0.9, 0.6];
        let down = PolyphaseResampler::new(2.0, 3.0, x.len()).unwrap();
        assert_eq!((down.ratio(), down.final_len()), ((2, 3), 8));
        let want = [
            -1.451408472094493, 1.386838149047877, 0.5567239218777305, 0.8878765328460535, 2.2335082083214717,
            -1.4060095112132793, 0.9924483206456244, -0.609635831030452,
        ];
        close(&down.apply(&x), &want, 1e-13);
        let up = PolyphaseResampler::new(5.0, 2.0, x.len()).unwrap();
        assert_eq!((up.ratio(), up.final_len()), ((5, 2), 30));
        let want = [
            0.3001951549744306, -0.2788548515350789, -1.1526360341068784, -0.8369074443072513, 0.8554198218851222,
            2.501626291453591, 2.6820562798515946, 1.4597735529394718, 0.05936040426352199, -0.5659212810387052,
            -0.40026020663257483, 0.21604771881719917, 1.2367038245039548, 2.604069303719417, 3.6434043031076797,
            3.30214670471874, 1.2790516187820105, -1.2879910204512877, -2.629306186216783, -1.908727025859021,
            0.050032525829071736, 1.5679455591067375, 1.5946726229066701, 0.4458767686434157, -0.6952535119789414,
            -0.9005854649232928, -0.230049663283607, 0.4889786980825306, 0.48897869808253064, -0.23004966328360688,
        ];
        close(&up.apply(&x), &want, 1e-13);
    }

    #[test]
    fn phases_hold_firwin_times_up() {
        for (up_sf, down_sf, n) in [(250.0, 1100.0, 22_000), (1000.0, 250.0, 2525), (250.0, 1000.0, 20_370)] {
            let r = PolyphaseResampler::new(up_sf, down_sf, n).unwrap();
            let taps = r.taps();
            let mut from_phases: Vec<f64> = (0..r.up * r.hpp).map(|i| r.phases[(i % r.up) * r.hpp + r.hpp - 1 - i / r.up]).collect();
            let n_pre_pad = r.down - 10 * r.up.max(r.down) % r.down;
            assert!(from_phases[..n_pre_pad].iter().all(|&v| v == 0.0));
            from_phases.drain(..n_pre_pad);
            assert!(from_phases[taps.len()..].iter().all(|&v| v == 0.0));
            from_phases.truncate(taps.len());
            for (k, (&got, &t)) in from_phases.iter().zip(&taps).enumerate() {
                let want = t * r.up as f64;
                assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.abs(), "{k}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn reflect_extension_follows_upfirdn() {
        let x = [1.0, 2.0, 3.0];
        let got: Vec<f64> = (-6..9).map(|i| reflect(&x, i)).collect();
        // 3 2 1 2 3 2 | 1 2 3 | 2 1 2 3 2 1
        assert_eq!(got, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
    }

    #[test]
    fn ratio_and_lengths_follow_mne() {
        let r = PolyphaseResampler::new(250.0, 1100.0, 22_000).unwrap();
        assert_eq!((r.ratio(), r.final_len()), ((5, 22), 5000));
        let r = PolyphaseResampler::new(250.0, 1000.0, 20_000).unwrap();
        assert_eq!((r.ratio(), r.final_len()), ((1, 4), 5000));
        // The ratio is the lengths' ratio: 22407 samples → round(5092.5) = 5092 (ties to even).
        let r = PolyphaseResampler::new(250.0, 1100.0, 22_407).unwrap();
        assert_eq!((r.ratio(), r.final_len()), ((5092, 22407), 5092));
        assert_eq!(r.apply(&vec![1.0; 22_407]).len(), 5092);
        let r = PolyphaseResampler::new(1000.0, 250.0, 2525).unwrap();
        assert_eq!((r.ratio(), r.final_len()), ((4, 1), 10_100));
        // Same length: a copy.
        let r = PolyphaseResampler::new(1000.4, 1000.0, 1000).unwrap();
        assert_eq!(r.final_len(), 1000);
        assert_eq!(r.apply(&[2.0; 1000]), vec![2.0; 1000]);
    }

    #[test]
    fn absurd_ratio_is_a_clear_error() {
        // 10 million samples whose resampled length shares no factor with it: 2e8 taps.
        let e = PolyphaseResampler::new(250.0, 1100.0, 10_000_019).err().expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("taps") && msg.contains("FFT"), "{msg}");
        assert!(PolyphaseResampler::new(-1.0, 1100.0, 100).is_err());
        assert!(PolyphaseResampler::new(250.0, 1100.0, 0).is_err());
    }

    #[test]
    fn a_slow_sine_survives() {
        let f = 5.0;
        let x: Vec<f64> = (0..11_000).map(|t| (2.0 * std::f64::consts::PI * f * t as f64 / 1100.0).sin()).collect();
        let r = PolyphaseResampler::new(250.0, 1100.0, x.len()).unwrap();
        let y = r.apply(&x);
        assert_eq!(y.len(), 2500);
        // Polyphase keeps sample times exactly (output k is at k/250 s); Kaiser β=5 ripple is
        // ~1e-3 in the pass band.
        for (k, v) in y.iter().enumerate().skip(50).take(2400) {
            let want = (2.0 * std::f64::consts::PI * f * k as f64 / 250.0).sin();
            assert!((v - want).abs() < 5e-3, "{k}: {v} vs {want}");
        }
        // Upsampling too.
        let x: Vec<f64> = (0..2500).map(|t| (2.0 * std::f64::consts::PI * f * t as f64 / 250.0).sin()).collect();
        let y = PolyphaseResampler::new(1000.0, 250.0, x.len()).unwrap().apply(&x);
        assert_eq!(y.len(), 10_000);
        for (k, v) in y.iter().enumerate().skip(200).take(9600) {
            let want = (2.0 * std::f64::consts::PI * f * k as f64 / 1000.0).sin();
            assert!((v - want).abs() < 5e-3, "{k}: {v} vs {want}");
        }
    }
}
