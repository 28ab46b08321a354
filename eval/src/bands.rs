//! Pearson r per frequency band: how well a prediction follows the truth in delta, theta,
//! alpha, beta and gamma separately, so a report can say *where* in the spectrum a model wins
//! or loses against the ridge (issue 15: "on which sensors and frequencies").
//!
//! Definition: each window's channel series is band-passed by keeping the FFT bins of the
//! band (an ideal filter over the window, circular, no taper) and transformed back; r is the
//! Pearson r of the band-passed truth and prediction pooled over every window and sample of a
//! channel, as in [`crate::metrics`]. Computed in the frequency domain (Parseval): the
//! band-passed signals have no DC, so their means are zero and
//! r = Σ w_k Re(T_k P_k*) / sqrt(Σ w_k |T_k|² · Σ w_k |P_k|²), sums over windows and the band's
//! bins, w_k = 2 for bins with a conjugate twin and 1 for the Nyquist bin. The resolution is
//! sfreq / window length: a band with no bin is NaN (a 64-sample window at 100 Hz has bins
//! every 1.56 Hz, so delta = 1–4 Hz holds 2 of them).

use crate::{shape_error, Error, Result};
use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// A frequency band, [l_freq, h_freq) in Hz (MNE's parameter names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub name: String,
    pub l_freq: f64,
    pub h_freq: f64,
}

/// The classical EEG/MEG bands: delta 1–4, theta 4–8, alpha 8–13, beta 13–30, gamma 30 Hz up
/// to Nyquist.
pub fn default_bands(sfreq: f64) -> Vec<Band> {
    let b = |name: &str, l_freq: f64, h_freq: f64| Band { name: name.into(), l_freq, h_freq };
    vec![b("delta", 1.0, 4.0), b("theta", 4.0, 8.0), b("alpha", 8.0, 13.0), b("beta", 13.0, 30.0), b("gamma", 30.0, sfreq / 2.0 + 1e-9)]
}

/// r of `pred` against `truth` (axes window, channel, time) per band then channel:
/// `out[band][channel]`, NaN where undefined (no bin in the band, or no power).
pub fn band_pearson_r(truth: ArrayView3<f32>, pred: ArrayView3<f32>, sfreq: f64, bands: &[Band]) -> Result<Vec<Vec<f64>>> {
    if truth.shape() != pred.shape() {
        return Err(shape_error("prediction vs truth (window, channel, time)", truth.shape(), pred.shape()));
    }
    let (n_windows, n_channels, n) = truth.dim();
    if n_windows == 0 || n_channels == 0 || n < 2 {
        return Err(Error::Empty(format!("no window to split into bands: shape {:?}", truth.shape())));
    }
    let band_of_bin: Vec<Option<usize>> = (0..=n / 2)
        .map(|k| {
            let f = k as f64 * sfreq / n as f64;
            bands.iter().position(|b| f >= b.l_freq && f < b.h_freq)
        })
        .collect();
    let weight = |k: usize| if k == 0 || (n % 2 == 0 && k == n / 2) { 1.0 } else { 2.0 };
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    // Channels are independent: parallel over them keeps the sums' order, and the result,
    // the same whatever the thread count.
    let per_channel: Vec<Vec<f64>> = (0..n_channels)
        .into_par_iter()
        .map(|c| {
            let (mut tin, mut pin) = (fft.make_input_vec(), fft.make_input_vec());
            let (mut tout, mut pout) = (fft.make_output_vec(), fft.make_output_vec());
            let mut scratch = fft.make_scratch_vec();
            // per band: Σ Re(T P*), Σ |T|², Σ |P|²
            let mut sums = vec![[0.0f64; 3]; bands.len()];
            for w in 0..n_windows {
                let t = truth.index_axis(Axis(0), w);
                let p = pred.index_axis(Axis(0), w);
                for (dst, v) in tin.iter_mut().zip(t.index_axis(Axis(0), c)) {
                    *dst = *v as f64;
                }
                for (dst, v) in pin.iter_mut().zip(p.index_axis(Axis(0), c)) {
                    *dst = *v as f64;
                }
                fft.process_with_scratch(&mut tin, &mut tout, &mut scratch).expect("buffers made by the plan");
                fft.process_with_scratch(&mut pin, &mut pout, &mut scratch).expect("buffers made by the plan");
                for (k, band) in band_of_bin.iter().enumerate() {
                    if let Some(b) = band {
                        let wk = weight(k);
                        let (tk, pk) = (tout[k], pout[k]);
                        sums[*b][0] += wk * (tk.re * pk.re + tk.im * pk.im);
                        sums[*b][1] += wk * tk.norm_sqr();
                        sums[*b][2] += wk * pk.norm_sqr();
                    }
                }
            }
            sums.iter()
                .map(|[tp, tt, pp]| if *tt > 0.0 && *pp > 0.0 { (tp / (tt.sqrt() * pp.sqrt())).clamp(-1.0, 1.0) } else { f64::NAN })
                .collect()
        })
        .collect();
    Ok((0..bands.len()).map(|b| per_channel.iter().map(|ch| ch[b]).collect()).collect())
}

/// One predictor's mean r per band over the channels of one sensor type (or "all").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandRow {
    pub predictor: String,
    /// "all", or a [`crate::sensor_type`] name.
    pub sensor_type: String,
    /// NaN-skipping mean per band, in the order of the bands; `None` when no channel has a
    /// defined value.
    pub pearson_r: Vec<Option<f64>>,
}

/// Rows of `predictor` from its per-band per-channel r (`r[band][channel]`): "all" first, then
/// each sensor type in order of first appearance among `channel_names`.
pub fn band_rows<S: AsRef<str>>(predictor: &str, r: &[Vec<f64>], channel_names: &[S]) -> Vec<BandRow> {
    let mut groups: Vec<&str> = vec!["all"];
    for name in channel_names {
        let t = crate::sensor_type(name.as_ref());
        if !groups.contains(&t) {
            groups.push(t);
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let pearson_r = r
                .iter()
                .map(|per_channel| {
                    let vals = per_channel
                        .iter()
                        .zip(channel_names)
                        .filter(|(_, n)| g == "all" || crate::sensor_type(n.as_ref()) == g)
                        .map(|(v, _)| *v);
                    let m = crate::metrics::nan_skipping_mean(vals).mean;
                    m.is_finite().then_some(m)
                })
                .collect();
            BandRow { predictor: predictor.to_string(), sensor_type: g.to_string(), pearson_r }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// The definition in the time domain: keep the band's bins, inverse FFT, pooled r.
    fn band_r_by_inverse_fft(truth: &Array3<f32>, pred: &Array3<f32>, sfreq: f64, band: &Band, c: usize) -> f64 {
        let (nw, _, n) = truth.dim();
        let mut planner = RealFftPlanner::<f64>::new();
        let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
        let pass = |x: Vec<f64>| -> Vec<f64> {
            let mut x = x;
            let mut spec = fwd.make_output_vec();
            fwd.process(&mut x, &mut spec).unwrap();
            for (k, v) in spec.iter_mut().enumerate() {
                let f = k as f64 * sfreq / n as f64;
                if !(f >= band.l_freq && f < band.h_freq) {
                    *v = Default::default();
                }
            }
            let mut out = inv.make_output_vec();
            inv.process(&mut spec, &mut out).unwrap();
            out
        };
        let (mut tt, mut pp) = (Vec::new(), Vec::new());
        for w in 0..nw {
            tt.extend(pass((0..n).map(|i| truth[[w, c, i]] as f64).collect()));
            pp.extend(pass((0..n).map(|i| pred[[w, c, i]] as f64).collect()));
        }
        let (mt, mp) = (tt.iter().sum::<f64>() / tt.len() as f64, pp.iter().sum::<f64>() / pp.len() as f64);
        let (mut stp, mut stt, mut spp) = (0.0, 0.0, 0.0);
        for (t, p) in tt.iter().zip(&pp) {
            stp += (t - mt) * (p - mp);
            stt += (t - mt) * (t - mt);
            spp += (p - mp) * (p - mp);
        }
        stp / (stt * spp).sqrt()
    }

    fn noise(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect()
    }

    #[test]
    fn equals_the_time_domain_definition_for_odd_and_even_windows() {
        for n in [64usize, 63] {
            let shape = (5, 3, n);
            let truth = Array3::from_shape_vec(shape, noise(1, 5 * 3 * n)).unwrap();
            let other = Array3::from_shape_vec(shape, noise(2, 5 * 3 * n)).unwrap();
            let pred = &truth * 0.7 + &other * 0.5;
            let bands = default_bands(100.0);
            let r = band_pearson_r(truth.view(), pred.view(), 100.0, &bands).unwrap();
            for (b, band) in bands.iter().enumerate() {
                for c in 0..3 {
                    let want = band_r_by_inverse_fft(&truth, &pred, 100.0, band, c);
                    assert!((r[b][c] - want).abs() < 1e-9, "n {n} band {} channel {c}: {} vs {want}", band.name, r[b][c]);
                }
            }
        }
    }

    #[test]
    fn a_prediction_right_in_one_band_only_scores_there() {
        // truth = 10 Hz + 25 Hz sines; the prediction has the 10 Hz one and an unrelated 25 Hz
        // one (quadrature): alpha r = 1, beta r ≈ 0.
        let (n, sfreq) = (200usize, 100.0);
        let mut truth = Array3::<f32>::zeros((2, 1, n));
        let mut pred = Array3::<f32>::zeros((2, 1, n));
        for w in 0..2 {
            for i in 0..n {
                let t = (w * n + i) as f64 / sfreq;
                let a = (2.0 * std::f64::consts::PI * 10.0 * t).sin();
                truth[[w, 0, i]] = (a + (2.0 * std::f64::consts::PI * 25.0 * t).sin()) as f32;
                pred[[w, 0, i]] = (a + (2.0 * std::f64::consts::PI * 25.0 * t).cos()) as f32;
            }
        }
        let bands = default_bands(sfreq);
        let r = band_pearson_r(truth.view(), pred.view(), sfreq, &bands).unwrap();
        assert!((r[2][0] - 1.0).abs() < 1e-6, "alpha {}", r[2][0]);
        assert!(r[3][0].abs() < 1e-6, "beta {}", r[3][0]);
    }

    #[test]
    fn rows_average_each_sensor_type() {
        let names = ["MEG0111", "MEG0112", "MEG0113"];
        // magnetometer, gradiometer, gradiometer; one band
        let rows = band_rows("model", &[vec![0.3, 0.1, f64::NAN]], &names);
        let got: Vec<(&str, Option<f64>)> = rows.iter().map(|r| (r.sensor_type.as_str(), r.pearson_r[0])).collect();
        assert_eq!(got[0].0, "all");
        assert!((got[0].1.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(got.len(), 3);
        assert!(got.iter().any(|(t, v)| *t != "all" && (v.unwrap() - 0.1).abs() < 1e-12));
    }

    #[test]
    fn a_band_without_a_bin_is_nan_and_shapes_must_agree() {
        let truth = Array3::from_shape_vec((2, 1, 8), noise(3, 16)).unwrap();
        // 8 samples at 100 Hz: bins every 12.5 Hz, none in theta (4–8 Hz)
        let r = band_pearson_r(truth.view(), truth.view(), 100.0, &default_bands(100.0)).unwrap();
        assert!(r[1][0].is_nan());
        assert!((r[4][0] - 1.0).abs() < 1e-12);
        let other = Array3::<f32>::zeros((2, 1, 7));
        assert!(band_pearson_r(truth.view(), other.view(), 100.0, &default_bands(100.0)).is_err());
    }
}
