//! Resampling as MNE's `raw.resample(sfreq)` does it by default (`method='fft'`,
//! `npad='auto'`, `window='auto'` = boxcar, `pad='auto'` = reflect_limited): pad to a power
//! of two, real FFT, keep (or zero-extend) the spectrum up to the new length with the Nyquist
//! bin halved or doubled, inverse FFT at the new length, trim the padding. Stim channels are
//! decimated as MNE's `_resample_stim_channels` (first non-zero value of each window) so that
//! events survive. Python's `round` (half to even) is reproduced where MNE uses it.
//!
//! [`Resampler`] chooses between this FFT method and `method='polyphase'`
//! ([`super::polyphase`]) by [`ResampleMethod`]; both give `final_len` samples.

use std::sync::Arc;

use ndarray::Array2;
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::filter::pad_reflect_limited_asym;
use super::polyphase::PolyphaseResampler;
use super::ratio::{py_round, resampled_len};
use crate::error::Result;

/// The FFT plan for one input length and ratio, shared by every channel.
pub struct FftResampler {
    npads: [usize; 2],
    orig_len: usize,
    new_len: usize,
    to_remove: [usize; 2],
    final_len: usize,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f64>>,
}

impl FftResampler {
    /// Plans resampling of `x_len` samples from `down` Hz to `up` Hz.
    pub fn new(up: f64, down: f64, x_len: usize) -> Self {
        let (ratio, final_len) = resampled_len(up, down, x_len);
        // npad='auto': enough padding to reach a power of two, at least min(len/8, 100) per side.
        let min_add = (x_len / 8).min(100) * 2;
        let total = (x_len + min_add).next_power_of_two() - x_len;
        let npads = [total / 2, total / 2 + total % 2];
        let orig_len = x_len + total;
        let new_len = py_round(ratio * orig_len as f64).max(1);
        let r0 = py_round(ratio * npads[0] as f64);
        let to_remove = [r0, new_len - final_len - r0];
        let mut planner = RealFftPlanner::<f64>::new();
        FftResampler {
            npads,
            orig_len,
            new_len,
            to_remove,
            final_len,
            r2c: planner.plan_fft_forward(orig_len),
            c2r: planner.plan_fft_inverse(new_len),
        }
    }

    pub fn final_len(&self) -> usize {
        self.final_len
    }

    /// The padding before and after, the padded length and the length of the inverse FFT:
    /// what [`super::spectral::SpectralChain`] needs to resample exactly as this does.
    pub(crate) fn geometry(&self) -> ([usize; 2], usize, usize, [usize; 2]) {
        (self.npads, self.orig_len, self.new_len, self.to_remove)
    }

    /// MNE's `_fft_resample` for one channel.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut padded = pad_reflect_limited_asym(x, self.npads[0], self.npads[1]);
        let mut spec = self.r2c.make_output_vec();
        self.r2c.process(&mut padded, &mut spec).expect("plan sizes");
        let shorter = self.new_len < self.orig_len;
        let use_len = if shorter { self.new_len } else { self.orig_len };
        if use_len % 2 == 0 {
            spec[use_len / 2] *= if shorter { 2.0 } else { 0.5 };
        }
        let w = self.new_len as f64 / self.orig_len as f64;
        // irfft(X, n=new_len): the first new_len/2+1 bins, zero-extended when upsampling.
        let mut out_spec: Vec<Complex<f64>> = self.c2r.make_input_vec();
        for (o, s) in out_spec.iter_mut().zip(spec.iter()) {
            *o = s * w;
        }
        out_spec[0].im = 0.0;
        if self.new_len % 2 == 0 {
            let last = out_spec.len() - 1;
            out_spec[last].im = 0.0;
        }
        let mut y = self.c2r.make_output_vec();
        self.c2r.process(&mut out_spec, &mut y).expect("plan sizes");
        let scale = 1.0 / self.new_len as f64;
        y[self.to_remove[0]..self.new_len - self.to_remove[1]].iter().map(|v| v * scale).collect()
    }
}

/// MNE's `method` argument of `raw.resample`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResampleMethod {
    /// `method='fft'` (MNE's default): [`FftResampler`].
    #[default]
    Fft,
    /// `method='polyphase'`: scipy's `resample_poly` with a Kaiser (β = 5) windowed sinc,
    /// [`PolyphaseResampler`].
    Polyphase,
}

impl ResampleMethod {
    /// MNE's name of the method.
    pub fn name(self) -> &'static str {
        match self {
            ResampleMethod::Fft => "fft",
            ResampleMethod::Polyphase => "polyphase",
        }
    }
}

impl std::str::FromStr for ResampleMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fft" => Ok(ResampleMethod::Fft),
            "polyphase" => Ok(ResampleMethod::Polyphase),
            _ => Err(format!("unknown resampling method {s:?} (expected fft or polyphase)")),
        }
    }
}

/// A resampling plan for one input length and ratio, by either method.
pub enum Resampler {
    Fft(FftResampler),
    Polyphase(PolyphaseResampler),
}

impl Resampler {
    /// Plans resampling of `x_len` samples from `down` Hz to `up` Hz with `method`.
    pub fn new(method: ResampleMethod, up: f64, down: f64, x_len: usize) -> Result<Self> {
        Ok(match method {
            ResampleMethod::Fft => Resampler::Fft(FftResampler::new(up, down, x_len)),
            ResampleMethod::Polyphase => Resampler::Polyphase(PolyphaseResampler::new(up, down, x_len)?),
        })
    }

    /// The output length (MNE's `final_len`, the same for both methods).
    pub fn final_len(&self) -> usize {
        match self {
            Resampler::Fft(r) => r.final_len(),
            Resampler::Polyphase(r) => r.final_len(),
        }
    }

    /// Resamples one channel.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        match self {
            Resampler::Fft(r) => r.apply(x),
            Resampler::Polyphase(r) => r.apply(x),
        }
    }
}

/// MNE's `_resample_stim_channels`: for each new sample, the first non-zero value in the
/// window of old samples it covers (else the window's first value). As `raw.resample` calls
/// it, `up` / `down` are the new and old lengths, not the rates.
pub fn resample_stim(x: &[f64], up: f64, down: f64) -> Vec<f64> {
    let n = x.len();
    let ratio = up / down;
    let new_n = py_round(n as f64 * ratio);
    let picks: Vec<usize> = (0..new_n).map(|i| ((i as f64 / ratio) as usize).min(n.saturating_sub(1))).collect();
    (0..new_n)
        .map(|i| {
            let start = picks[i];
            let stop = picks.get(i + 1).copied().unwrap_or(n);
            x[start..stop.max(start)].iter().copied().find(|&v| v != 0.0).unwrap_or(x[start])
        })
        .collect()
}

/// Resamples every row of `data` (channels × samples) from `sfreq` to `new_sfreq` as
/// `raw.resample` does: rows in `stim` by [`resample_stim`], the others by FFT; in parallel.
pub fn resample_rows(data: &Array2<f64>, sfreq: f64, new_sfreq: f64, stim: &[usize]) -> Array2<f64> {
    let n = data.ncols();
    let plan = FftResampler::new(new_sfreq, sfreq, n);
    let m = plan.final_len();
    let rows: Vec<Vec<f64>> = (0..data.nrows())
        .into_par_iter()
        .map(|i| {
            let x: Vec<f64> = data.row(i).to_vec();
            if stim.contains(&i) {
                resample_stim(&x, m as f64, n as f64)
            } else {
                plan.apply(&x)
            }
        })
        .collect();
    Array2::from_shape_vec((rows.len(), m), rows.into_iter().flatten().collect()).expect("rows have the resampled length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_mne() {
        assert_eq!(resampled_len(250.0, 1100.0, 540_100).1, 122_750);
        assert_eq!(resampled_len(250.0, 1000.0, 1001).1, 250); // 250.25 → 250
        assert_eq!(resampled_len(1.0, 2.0, 5).1, 2); // 2.5 → 2 (ties to even)
    }

    #[test]
    fn a_slow_sine_survives_downsampling() {
        let x: Vec<f64> = (0..11_000).map(|t| (2.0 * std::f64::consts::PI * 5.0 * t as f64 / 1100.0).sin()).collect();
        let r = FftResampler::new(250.0, 1100.0, x.len());
        let y = r.apply(&x);
        assert_eq!(y.len(), 2500);
        for (k, v) in y.iter().enumerate().skip(100).take(2300) {
            let want = (2.0 * std::f64::consts::PI * 5.0 * k as f64 / 250.0).sin();
            // MNE rounds the padding it trims to whole output samples, which shifts the
            // result by up to half a sample (here 0.18 samples: 0.02 at 5 Hz).
            assert!((v - want).abs() < 0.03, "{k}: {v} vs {want}");
        }
    }

    #[test]
    fn stim_events_survive() {
        let mut x = vec![0.0; 1100];
        x[333] = 5.0;
        let y = resample_stim(&x, 250.0, 1100.0);
        assert_eq!(y.len(), 250);
        assert_eq!(y.iter().filter(|&&v| v == 5.0).count(), 1);
    }

    #[test]
    fn both_methods_give_mnes_length() {
        for method in [ResampleMethod::Fft, ResampleMethod::Polyphase] {
            let r = Resampler::new(method, 250.0, 1100.0, 22_407).unwrap();
            assert_eq!(r.final_len(), 5092, "{}", method.name());
            assert_eq!(r.apply(&vec![0.5; 22_407]).len(), 5092);
        }
        assert_eq!("polyphase".parse::<ResampleMethod>(), Ok(ResampleMethod::Polyphase));
        assert!("sinc".parse::<ResampleMethod>().is_err());
    }
}
