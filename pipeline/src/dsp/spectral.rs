//! Band-pass × notch × FFT resampling of one channel in a single forward FFT: the fast path
//! of the cleaning chain.
//!
//! MNE runs three passes per channel: overlap-add band-pass, overlap-add notch, then
//! `resample`, which pads the filtered signal (reflect_limited) to a power of two `L`, takes
//! its FFT, keeps the bins below the new Nyquist and inverts at the new length. Here the
//! channel is padded once, as `resample` pads it, transformed once, multiplied by the zero-phase
//! response of both kernels (their product, sampled on the same `L` bins) and inverted at the
//! new length: one FFT of `L` instead of about four.
//!
//! **How close to MNE, and why.** Filtering the padded signal circularly gives, on the
//! recording *and on most of the padding*, exactly MNE's filtered-then-padded signal: the
//! kernels are symmetric and reflect_limited padding is a point reflection (`2·x₀ − x[k]`),
//! and both commute (a filtered point-reflected signal is the point reflection of the
//! filtered signal, with `y₀ = G₀·x₀`; checked to 1e-15 against MNE). They differ only within a
//! kernel's half-length of the point where the padding wraps around, far from the data
//! (`L − n` samples away): MNE's padded signal jumps there, ours is filtered smooth. Cutting the
//! spectrum at the new Nyquist turns MNE's jump into Gibbs ringing that reaches the data at
//! about `J / (π · d)` (J: the jump, d: distance in output samples), so the two results differ
//! by that much everywhere: 1.7e-5 of the channel's RMS on a 491 s recording with a strong
//! drift at 1100 → 250 Hz. The exact MNE sequence stays available (`CleanParams::exact`).
//!
//! The inverse FFT runs in f32: the filtered spectrum holds only what survives the band-pass,
//! so its round-off is ~1e-7 of the output's RMS, and it is the costlier transform (the new
//! length is rarely smooth: 1100 → 250 Hz on 540,100 samples inverts at the prime 238,313).
//! The forward FFT stays f64 because the input still holds the drift and offsets that the
//! high-pass removes, which can be 1000× the output.
//!
//! The fast path needs the padding on each side to hold the combined kernel's half-length
//! (true for recordings of more than about a minute at the default settings);
//! [`SpectralChain::new`] returns `None` otherwise and the caller runs MNE's three passes.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::filter::pad_reflect_limited_into;
use super::resample::FftResampler;

/// The plan shared by all channels of one recording.
pub struct SpectralChain {
    npads: [usize; 2],
    orig_len: usize,
    new_len: usize,
    to_remove: [usize; 2],
    final_len: usize,
    /// Zero-phase response of all kernels on the bins that the inverse FFT keeps.
    gain: Vec<f64>,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
}

/// Per-thread work buffers, so the hot loop allocates nothing.
pub struct SpectralBuffers {
    padded: Vec<f64>,
    spec: Vec<Complex<f64>>,
    out_spec: Vec<Complex<f32>>,
    out: Vec<f32>,
    fwd_scratch: Vec<Complex<f64>>,
    inv_scratch: Vec<Complex<f32>>,
}

impl SpectralChain {
    /// Plans filtering by `kernels` (each symmetric, odd length, as MNE designs them) and
    /// resampling of `n` samples from `down` Hz to `up` Hz. `None` when the resampling's
    /// padding cannot hold the kernels' combined half-length on each side.
    pub fn new(kernels: &[&[f64]], up: f64, down: f64, n: usize) -> Option<SpectralChain> {
        let resampler = FftResampler::new(up, down, n);
        let (npads, orig_len, new_len, to_remove) = resampler.geometry();
        let half: usize = kernels.iter().map(|h| (h.len() - 1) / 2).sum();
        if kernels.iter().any(|h| h.len() % 2 == 0) || npads[0].min(npads[1]) < half || 2 * half + 1 > orig_len {
            return None;
        }
        let r2c = RealFftPlanner::<f64>::new().plan_fft_forward(orig_len);
        let c2r = RealFftPlanner::<f32>::new().plan_fft_inverse(new_len);
        let kept = orig_len.min(new_len) / 2 + 1;
        let mut gain = vec![1.0; kept];
        for h in kernels {
            let response = zero_phase_response(h, orig_len, &r2c);
            for (g, r) in gain.iter_mut().zip(&response) {
                *g *= r;
            }
        }
        Some(SpectralChain { npads, orig_len, new_len, to_remove, final_len: resampler.final_len(), gain, r2c, c2r })
    }

    /// Output samples per channel.
    pub fn final_len(&self) -> usize {
        self.final_len
    }

    pub fn buffers(&self) -> SpectralBuffers {
        SpectralBuffers {
            padded: self.r2c.make_input_vec(),
            spec: self.r2c.make_output_vec(),
            out_spec: self.c2r.make_input_vec(),
            out: self.c2r.make_output_vec(),
            fwd_scratch: self.r2c.make_scratch_vec(),
            inv_scratch: self.c2r.make_scratch_vec(),
        }
    }

    /// Filters (when `filter`; MNE filters only data channels) and resamples `x` into `dst`
    /// (`final_len` samples). Without `filter` this is exactly [`FftResampler::apply`].
    pub fn apply(&self, x: &[f64], filter: bool, b: &mut SpectralBuffers, dst: &mut [f64]) {
        let scale = self.output_scale();
        for (d, &v) in dst.iter_mut().zip(self.transform(x, filter, b)) {
            *d = f64::from(v) * scale;
        }
    }

    /// The same before the inverse FFT's normalisation: `dst[i]` is the f32 value whose
    /// `f64::from(dst[i]) * self.output_scale()` is [`SpectralChain::apply`]'s `dst[i]`, bit
    /// for bit. Half the memory for a whole recording's output, nothing lost.
    pub fn apply_unscaled(&self, x: &[f64], filter: bool, b: &mut SpectralBuffers, dst: &mut [f32]) {
        for (d, &v) in dst.iter_mut().zip(self.transform(x, filter, b)) {
            *d = v;
        }
    }

    /// The one factor of every output value (`1 / new_len`, the inverse FFT's normalisation).
    pub fn output_scale(&self) -> f64 {
        1.0 / self.new_len as f64
    }

    /// The unnormalised inverse FFT's kept samples (in `b`).
    fn transform<'b>(&self, x: &[f64], filter: bool, b: &'b mut SpectralBuffers) -> &'b [f32] {
        pad_reflect_limited_into(x, self.npads[0], &mut b.padded);
        self.r2c.process_with_scratch(&mut b.padded, &mut b.spec, &mut b.fwd_scratch).expect("plan sizes");
        let shorter = self.new_len < self.orig_len;
        let use_len = if shorter { self.new_len } else { self.orig_len };
        let w = self.new_len as f64 / self.orig_len as f64;
        let kept = use_len / 2 + 1;
        if use_len % 2 == 0 {
            b.spec[use_len / 2] *= if shorter { 2.0 } else { 0.5 };
        }
        let gains = self.gain.iter().map(|&g| if filter { g * w } else { w });
        for ((o, s), g) in b.out_spec[..kept].iter_mut().zip(&b.spec[..kept]).zip(gains) {
            *o = Complex::new((s.re * g) as f32, (s.im * g) as f32);
        }
        b.out_spec[kept..].fill(Complex::new(0.0, 0.0));
        b.out_spec[0].im = 0.0;
        if self.new_len % 2 == 0 {
            let last = b.out_spec.len() - 1;
            b.out_spec[last].im = 0.0;
        }
        self.c2r.process_with_scratch(&mut b.out_spec, &mut b.out, &mut b.inv_scratch).expect("plan sizes");
        &b.out[self.to_remove[0]..self.new_len - self.to_remove[1]]
    }
}

/// The real frequency response on `len`-point bins of symmetric kernel `h` centred on sample
/// 0 (circularly), i.e. of zero-phase filtering with it.
fn zero_phase_response(h: &[f64], len: usize, r2c: &Arc<dyn RealToComplex<f64>>) -> Vec<f64> {
    let c = (h.len() - 1) / 2;
    let mut centred = vec![0.0; len];
    centred[..h.len() - c].copy_from_slice(&h[c..]);
    centred[len - c..].copy_from_slice(&h[..c]);
    let mut spec = r2c.make_output_vec();
    r2c.process(&mut centred, &mut spec).expect("plan sizes");
    // The imaginary parts are round-off (the kernel is even about sample 0).
    spec.iter().map(|z| z.re).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::filter::OverlapAdd;
    use crate::dsp::fir::{create_filter, notch_filter_design, FirOptions};

    fn signal(n: usize) -> Vec<f64> {
        (0..n).map(|t| (t as f64 * 0.0123).sin() + 0.3 * (t as f64 * 0.29).cos() + ((t * 7919) % 101) as f64 * 0.01).collect()
    }

    /// Without kernels only the f32 inverse FFT separates it from the FFT resampler.
    #[test]
    fn without_filters_it_is_the_fft_resampler() {
        let x: Vec<f64> = signal(20_000).iter().map(|v| v + 1000.0).collect();
        let chain = SpectralChain::new(&[], 250.0, 1100.0, x.len()).unwrap();
        let mut got = vec![0.0; chain.final_len()];
        chain.apply(&x, true, &mut chain.buffers(), &mut got);
        let want = FftResampler::new(250.0, 1100.0, x.len()).apply(&x);
        let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / rms).fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst {worst}");
    }

    /// Away from the wrap-around of the padding, the one-FFT chain equals MNE's three passes;
    /// what is left is the Gibbs ringing of MNE's padding jump (module doc), here < 1e-4.
    #[test]
    fn close_to_the_three_passes() {
        let sfreq = 1100.0;
        let x = signal(150_000);
        let band = create_filter(sfreq, Some(0.5), Some(100.0), &FirOptions::default()).unwrap();
        let notch = notch_filter_design(sfreq, &[50.0, 100.0], &FirOptions::default()).unwrap();
        let chain = SpectralChain::new(&[&band, &notch], 250.0, sfreq, x.len()).expect("long enough");
        let mut got = vec![0.0; chain.final_len()];
        chain.apply(&x, true, &mut chain.buffers(), &mut got);
        let y = OverlapAdd::new(&notch, x.len()).apply(&OverlapAdd::new(&band, x.len()).apply(&x));
        let want = FftResampler::new(250.0, sfreq, x.len()).apply(&y);
        let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / rms).fold(0.0, f64::max);
        assert!(worst < 1e-4, "worst {worst}");
    }

    #[test]
    fn short_recordings_fall_back() {
        let band = create_filter(1100.0, Some(0.1), Some(100.0), &FirOptions::default()).unwrap();
        assert!(SpectralChain::new(&[&band], 250.0, 1100.0, 22_000).is_none());
    }
}
