//! Zero-phase FIR filtering as MNE's `_overlap_add_filter` does it: the signal is padded
//! with `reflect_limited` (point-reflected about the edge sample, length `len(h) - 1`), cut
//! into blocks of `n_fft - len(h) + 1`, each block convolved through a real FFT of MNE's
//! cost-optimal length, the results added back with the kernel's centre delay removed.
//! Same block length, same padding, same arithmetic order: the same numbers as MNE to FFT
//! round-off. Channels are filtered in parallel (rayon).

use std::sync::Arc;

use ndarray::Array2;
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// MNE's choice of FFT block length for a kernel of `n_h` taps on `n_x` padded samples:
/// the power of two minimising `ceil(n_x / (N - n_h + 1)) · N · (log2 N + 1) + 4e-5 · N · n_x`.
pub fn choose_n_fft(n_h: usize, n_x: usize) -> usize {
    let min_fft = 2 * n_h - 1;
    if n_x < min_fft {
        return next_fast_len(min_fft);
    }
    let lo = (min_fft as f64).log2().ceil() as u32;
    let hi = (n_x as f64).log2().ceil() as u32;
    let mut best = (f64::INFINITY, 1usize << lo);
    for p in lo..=hi {
        let n = 1usize << p;
        let cost = (n_x as f64 / (n - n_h + 1) as f64).ceil() * n as f64 * (p as f64 + 1.0) + 4e-5 * n as f64 * n_x as f64;
        // numpy's argmin keeps the first minimum.
        if cost < best.0 {
            best = (cost, n);
        }
    }
    best.1
}

/// scipy's `next_fast_len`: the smallest 2^a 3^b 5^c 7^d 11^e ≥ n (e ≤ 1, as scipy's
/// pocketfft helper allows), used only when one block covers the whole signal.
fn next_fast_len(n: usize) -> usize {
    (n..).find(|&m| {
        let mut r = m;
        for p in [2, 3, 5, 7] {
            while r % p == 0 {
                r /= p;
            }
        }
        r == 1 || r == 11
    })
    .expect("some length is smooth")
}

/// MNE's `_smart_pad(x, (n, n), 'reflect_limited')`: `2·x[0] − x[n..1]`, x, `2·x[-1] − x[-2..-n-1]`,
/// with zeros beyond what the signal can reflect.
pub fn pad_reflect_limited(x: &[f64], n: usize) -> Vec<f64> {
    pad_reflect_limited_asym(x, n, n)
}

/// [`pad_reflect_limited`] with different amounts before and after.
pub fn pad_reflect_limited_asym(x: &[f64], left: usize, right: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len() + left + right];
    pad_reflect_limited_into(x, left, &mut out);
    out
}

/// [`pad_reflect_limited_asym`] into `out` (`left` samples, x, then the rest of `out`), with
/// no allocation: the hot loops reuse one buffer per thread.
pub fn pad_reflect_limited_into(x: &[f64], left: usize, out: &mut [f64]) {
    let len = x.len();
    let right = out.len() - len - left;
    let (before, rest) = out.split_at_mut(left);
    let (middle, after) = rest.split_at_mut(len);
    middle.copy_from_slice(x);
    let reflect_left = left.min(len.saturating_sub(1));
    let zeros_left = left - reflect_left;
    before[..zeros_left].fill(0.0);
    for (k, o) in before[zeros_left..].iter_mut().enumerate() {
        *o = 2.0 * x[0] - x[reflect_left - k];
    }
    let reflect_right = right.min(len.saturating_sub(1));
    for (i, o) in after[..reflect_right].iter_mut().enumerate() {
        *o = 2.0 * x[len - 1] - x[len - 2 - i];
    }
    after[reflect_right..].fill(0.0);
}

/// A kernel prepared for repeated zero-phase overlap-add filtering of signals of one length.
pub struct OverlapAdd {
    n_h: usize,
    n_fft: usize,
    h_fft: Vec<Complex<f64>>,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f64>>,
}

impl OverlapAdd {
    /// Prepares `h` for signals of `n_times` samples (the padded length decides `n_fft`).
    pub fn new(h: &[f64], n_times: usize) -> Self {
        let n_h = h.len();
        let n_edge = n_h.min(n_times).saturating_sub(1);
        let n_fft = choose_n_fft(n_h, n_times + 2 * n_edge);
        let mut planner = RealFftPlanner::<f64>::new();
        let r2c = planner.plan_fft_forward(n_fft);
        let c2r = planner.plan_fft_inverse(n_fft);
        let mut padded = vec![0.0; n_fft];
        padded[..n_h].copy_from_slice(h);
        let mut h_fft = r2c.make_output_vec();
        r2c.process(&mut padded, &mut h_fft).expect("buffer sizes come from the plan");
        OverlapAdd { n_h, n_fft, h_fft, r2c, c2r }
    }

    /// Filters one channel (MNE's `_1d_overlap_filter` with phase='zero').
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        if self.n_h == 1 {
            return x.to_vec();
        }
        let n_edge = self.n_h.min(x.len()).saturating_sub(1);
        let ext = pad_reflect_limited(x, n_edge);
        let n_x = ext.len();
        let mut filtered = vec![0.0; n_x];
        let n_seg = self.n_fft - self.n_h + 1;
        let shift = (self.n_h - 1) / 2 + n_edge;
        let mut block = vec![0.0; self.n_fft];
        let mut spec = self.r2c.make_output_vec();
        let scale = 1.0 / self.n_fft as f64;
        let mut start = 0;
        while start < n_x {
            let stop = (start + n_seg).min(n_x);
            block.fill(0.0);
            block[..stop - start].copy_from_slice(&ext[start..stop]);
            self.r2c.process(&mut block, &mut spec).expect("plan sizes");
            for (s, h) in spec.iter_mut().zip(&self.h_fft) {
                *s *= h;
            }
            // irfft ignores the imaginary parts of the DC and Nyquist bins; realfft insists
            // they are zero.
            spec[0].im = 0.0;
            if self.n_fft % 2 == 0 {
                let last = spec.len() - 1;
                spec[last].im = 0.0;
            }
            self.c2r.process(&mut spec, &mut block).expect("plan sizes");
            let start_filt = start.saturating_sub(shift);
            let stop_filt = (start + self.n_fft).saturating_sub(shift).min(n_x);
            let start_prod = shift.saturating_sub(start);
            for (k, f) in filtered[start_filt..stop_filt].iter_mut().enumerate() {
                *f += block[start_prod + k] * scale;
            }
            start += n_seg;
        }
        filtered.truncate(n_x - 2 * n_edge);
        filtered
    }
}

/// Filters rows `picks` of `data` (channels × samples) in place with kernel `h`, in parallel.
pub fn filter_rows(data: &mut Array2<f64>, h: &[f64], picks: &[usize]) {
    let n = data.ncols();
    if n == 0 {
        return;
    }
    let ola = OverlapAdd::new(h, n);
    let rows = data.as_slice_mut().expect("channels × samples arrays are in standard layout");
    rows.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        if picks.contains(&i) {
            let y = ola.apply(row);
            row.copy_from_slice(&y);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct zero-phase convolution with the same reflect-limited padding.
    fn direct(x: &[f64], h: &[f64]) -> Vec<f64> {
        let n_edge = h.len().min(x.len()) - 1;
        let ext = pad_reflect_limited(x, n_edge);
        let c = (h.len() - 1) / 2;
        (0..x.len())
            .map(|t| {
                let center = t + n_edge;
                (0..h.len()).map(|k| h[k] * ext.get((center + c).wrapping_sub(k)).copied().unwrap_or(0.0)).sum()
            })
            .collect()
    }

    #[test]
    fn overlap_add_equals_direct_convolution() {
        let h: Vec<f64> = (0..31).map(|i| ((i as f64 - 15.0) * 0.3).sin() / 10.0 + if i == 15 { 0.5 } else { 0.0 }).collect();
        let x: Vec<f64> = (0..1000).map(|t| (t as f64 * 0.05).sin() + (t % 7) as f64 * 0.1).collect();
        let got = OverlapAdd::new(&h, x.len()).apply(&x);
        let want = direct(&x, &h);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn padding_matches_mne() {
        // n = 2 < len: no zeros, [2·1−4, 2·1−2, 1, 2, 4, 2·4−2, 2·4−1].
        assert_eq!(pad_reflect_limited(&[1.0, 2.0, 4.0], 2), vec![-2.0, 0.0, 1.0, 2.0, 4.0, 6.0, 7.0]);
        // n = 2 ≥ len: one reflected sample, a zero for what cannot be reflected.
        assert_eq!(pad_reflect_limited(&[1.0, 2.0], 2), vec![0.0, 0.0, 1.0, 2.0, 3.0, 0.0]);
    }

    #[test]
    fn n_fft_follows_mnes_cost() {
        assert!(choose_n_fft(3631, 66_000 + 2 * 3630).is_power_of_two());
        assert!(choose_n_fft(3631, 66_000 + 2 * 3630) >= 2 * 3631 - 1);
        assert_eq!(next_fast_len(61), 63);
    }
}
