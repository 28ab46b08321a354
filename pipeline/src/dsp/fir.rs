//! MNE's FIR filter design, reproduced number for number.
//!
//! [`create_filter`] gives the taps of
//! `mne.filter.create_filter(None, sfreq, l_freq, h_freq, method='fir', phase='zero',
//! fir_window='hamming', fir_design='firwin')` (MNE 1.x, `mne/filter.py`), and
//! [`notch_filter_design`] the kernel `mne.filter.notch_filter(..., method='fir')` applies.
//!
//! The steps follow MNE's code so that the arithmetic, and therefore the rounding, is the same:
//!
//! 1. `_triage_filter_params`: automatic transition bandwidths
//!    (`l_trans = min(max(0.25 l, 2), l)`, `h_trans = min(max(0.25 h, 2), sfreq/2 - h)`), the
//!    stop-band edges and the automatic length `ceil(3.3 / min(transitions) * sfreq)` made odd
//!    (3.3 is the Hamming window's length factor).
//! 2. `create_filter`: the piecewise-constant gain specification (`freq`, `gain`).
//! 3. `_firwin_design`: starting from the Nyquist end, every change of gain adds or subtracts a
//!    `scipy.signal.firwin` low-pass (windowed sinc, Hamming window, unit DC gain) whose length is
//!    `round(3.3 / transition)` made odd, centred in the full-length kernel.
//!
//! The kernels are symmetric and of odd length (zero phase: MNE applies them centred).

use std::f64::consts::PI;
use std::path::Path;

use crate::{Error, Result};

/// `mne.filter._length_factors['hamming']`: taps per (transition bandwidth / sfreq).
const HAMMING_LENGTH_FACTOR: f64 = 3.3;

/// Longest kernel we design (2^26 taps, 512 MiB of f64). MNE has no limit, but a longer kernel
/// only comes from transition bands far below anything useful and would exhaust memory here.
pub const MAX_FILTER_LENGTH: usize = 1 << 26;

/// Overrides of MNE's automatic choices; `None` means `'auto'`, as in MNE.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FirOptions {
    /// Width in Hz of the transition band below `l_freq` (high-pass edge); for a band-stop
    /// (`l_freq > h_freq`) the band above `l_freq`, as in MNE.
    pub l_trans_bandwidth: Option<f64>,
    /// Width in Hz of the transition band above `h_freq` (low-pass edge); for a band-stop
    /// the band below `h_freq`, as in MNE.
    pub h_trans_bandwidth: Option<f64>,
    /// Kernel length in samples (MNE's integer `filter_length`); an even length is made odd,
    /// as MNE does for `fir_design='firwin'`.
    pub filter_length: Option<usize>,
}

fn err(what: impl Into<String>) -> Error {
    Error::request(Path::new("filter"), what)
}

fn check_finite(name: &str, v: Option<f64>) -> Result<()> {
    match v {
        Some(x) if !x.is_finite() => Err(err(format!("{name} must be a finite number, got {x}"))),
        _ => Ok(()),
    }
}

fn check_sfreq(sfreq: f64) -> Result<()> {
    if !(sfreq.is_finite() && sfreq > 0.0) {
        return Err(err(format!("sfreq must be a positive finite number, got {sfreq}")));
    }
    Ok(())
}

fn check_options(opts: &FirOptions) -> Result<()> {
    check_finite("l_trans_bandwidth", opts.l_trans_bandwidth)?;
    check_finite("h_trans_bandwidth", opts.h_trans_bandwidth)?;
    for (name, v) in [("l_trans_bandwidth", opts.l_trans_bandwidth), ("h_trans_bandwidth", opts.h_trans_bandwidth)] {
        if let Some(t) = v {
            if t <= 0.0 {
                return Err(err(format!("{name} must be positive, got {t} Hz")));
            }
        }
    }
    Ok(())
}

/// The taps of MNE's zero-phase FIR filter (`create_filter` with `method='fir'`,
/// `phase='zero'`, `fir_window='hamming'`, `fir_design='firwin'`).
///
/// `l_freq` alone: high-pass; `h_freq` alone: low-pass; `l_freq < h_freq`: band-pass;
/// `l_freq > h_freq`: band-stop between `h_freq` and `l_freq`; neither (or `l_freq == 0`, which
/// MNE treats as no high-pass): the identity kernel. Parameters MNE rejects give an `Err`.
pub fn create_filter(sfreq: f64, l_freq: Option<f64>, h_freq: Option<f64>, opts: &FirOptions) -> Result<Vec<f64>> {
    check_sfreq(sfreq)?;
    check_finite("l_freq", l_freq)?;
    check_finite("h_freq", h_freq)?;
    check_options(opts)?;
    let nyq = sfreq / 2.0;
    if let Some(h) = h_freq {
        if h > nyq {
            return Err(err(format!("h_freq ({h} Hz) must be less than the Nyquist frequency ({nyq} Hz)")));
        }
    }
    let l_freq = l_freq.filter(|&l| l != 0.0); // MNE: `if (l_freq == 0).all(): l_freq = None`
    let (freq, gain, trans_min) = match (l_freq, h_freq) {
        (None, None) => (vec![0.0, nyq], vec![1.0, 1.0], f64::INFINITY),
        (None, Some(h)) => {
            let (h_stop, ht) = low_edge_spec(sfreq, h, opts.h_trans_bandwidth, "h_freq")?;
            let mut freq = vec![0.0, h, h_stop];
            let mut gain = vec![1.0, 1.0, 0.0];
            if h_stop != nyq {
                freq.push(nyq);
                gain.push(0.0);
            }
            (freq, gain, ht)
        }
        (Some(l), None) => {
            // MNE accepts l_freq == Nyquist (the stop band then ends a transition below it)
            // and fails in firwin above it.
            if l > nyq {
                return Err(err(format!("l_freq ({l} Hz) must not exceed the Nyquist frequency ({nyq} Hz)")));
            }
            let (l_stop, lt) = high_edge_spec(l, opts.l_trans_bandwidth, "l_freq")?;
            let mut freq = vec![l_stop, l, nyq];
            let mut gain = vec![0.0, 1.0, 1.0];
            if l_stop != 0.0 {
                freq.insert(0, 0.0);
                gain.insert(0, 0.0);
            }
            (freq, gain, lt)
        }
        (Some(l), Some(h)) if l < h => {
            let (l_stop, lt) = high_edge_spec(l, opts.l_trans_bandwidth, "l_freq")?;
            let (h_stop, ht) = low_edge_spec(sfreq, h, opts.h_trans_bandwidth, "h_freq")?;
            let mut freq = vec![l_stop, l, h, h_stop];
            let mut gain = vec![0.0, 1.0, 1.0, 0.0];
            if h_stop != nyq {
                freq.push(nyq);
                gain.push(0.0);
            }
            if l_stop != 0.0 {
                freq.insert(0, 0.0);
                gain.insert(0, 0.0);
            }
            (freq, gain, lt.min(ht))
        }
        (Some(l), Some(h)) => {
            if l == h {
                return Err(err(format!(
                    "l_freq and h_freq are both {l} Hz: that is neither a band-pass (l_freq < h_freq) \
                     nor a band-stop (l_freq > h_freq)"
                )));
            }
            // MNE calls the triage with the edges swapped: the stop band's lower edge h_freq
            // takes h_trans_bandwidth, its upper edge l_freq takes l_trans_bandwidth.
            bandstop_spec(sfreq, &[h], &[l], opts.h_trans_bandwidth, opts.l_trans_bandwidth, ("h_freq", "l_freq"))?
        }
    };
    let n = filter_length(sfreq, trans_min, opts.filter_length)?;
    construct_fir_filter(sfreq, &freq, &gain, n)
}

/// The kernel `mne.filter.notch_filter(x, sfreq, freqs, method='fir', phase='zero',
/// fir_window='hamming', fir_design='firwin')` applies with its defaults
/// (`notch_widths = freqs / 200`, `trans_bandwidth = 1`): one combined multi-band-stop kernel,
/// designed by `create_filter(l_freq=highs, h_freq=lows, l_trans_bandwidth=0.5,
/// h_trans_bandwidth=0.5)` with `lows = f - f/400 - 0.5`, `highs = f + f/400 + 0.5`.
///
/// Only `opts.filter_length` applies; MNE's notch has one `trans_bandwidth` instead of
/// separate l/h transition bandwidths, so setting those is an error.
pub fn notch_filter_design(sfreq: f64, freqs: &[f64], opts: &FirOptions) -> Result<Vec<f64>> {
    check_sfreq(sfreq)?;
    if opts.l_trans_bandwidth.is_some() || opts.h_trans_bandwidth.is_some() {
        return Err(err(
            "a notch filter takes no l_trans_bandwidth/h_trans_bandwidth (MNE's notch_filter uses \
             a fixed 1 Hz trans_bandwidth, 0.5 Hz each side of every notch)",
        ));
    }
    if freqs.is_empty() {
        return Err(err("a notch filter needs at least one frequency"));
    }
    for &f in freqs {
        if !(f.is_finite() && f > 0.0) {
            return Err(err(format!("notch frequency must be a positive finite number, got {f}")));
        }
    }
    let nyq = sfreq / 2.0;
    let trans_bandwidth = 1.0;
    let tb_2 = trans_bandwidth / 2.0;
    let mut lows = Vec::with_capacity(freqs.len());
    let mut highs = Vec::with_capacity(freqs.len());
    for &f in freqs {
        let nw = f / 200.0;
        lows.push(f - nw / 2.0 - tb_2);
        highs.push(f + nw / 2.0 + tb_2);
    }
    for (&f, &low) in freqs.iter().zip(&lows) {
        if low > nyq {
            return Err(err(format!(
                "notch at {f} Hz: its band starts at {low} Hz, above the Nyquist frequency ({nyq} Hz)"
            )));
        }
    }
    let (freq, gain, trans_min) = bandstop_spec(sfreq, &lows, &highs, Some(tb_2), Some(tb_2), ("notch band lower edge", "notch band upper edge"))?;
    let n = filter_length(sfreq, trans_min, opts.filter_length)?;
    construct_fir_filter(sfreq, &freq, &gain, n)
}

/// High-pass edge at `l` (triage's `l_freq` branch, not reversed): (stop frequency, transition).
fn high_edge_spec(l: f64, trans: Option<f64>, name: &str) -> Result<(f64, f64)> {
    if l <= 0.0 {
        return Err(err(format!("{name} ({l} Hz) must be greater than zero")));
    }
    let lt = trans.unwrap_or_else(|| (0.25 * l).max(2.0).min(l));
    let l_stop = l - lt;
    if l_stop < 0.0 {
        return Err(err(format!(
            "{name} ({l} Hz) minus its transition bandwidth ({lt} Hz) is a negative stop frequency \
             ({l_stop} Hz): increase {name} or reduce l_trans_bandwidth"
        )));
    }
    Ok((l_stop, lt))
}

/// Low-pass edge at `h` (triage's `h_freq` branch, not reversed): (stop frequency, transition).
fn low_edge_spec(sfreq: f64, h: f64, trans: Option<f64>, name: &str) -> Result<(f64, f64)> {
    let nyq = sfreq / 2.0;
    if h >= nyq {
        return Err(err(format!("{name} ({h} Hz) must be less than the Nyquist frequency ({nyq} Hz)")));
    }
    if h <= 0.0 {
        return Err(err(format!("{name} ({h} Hz) must be greater than zero")));
    }
    let ht = trans.unwrap_or_else(|| (0.25 * h).max(2.0).min(nyq - h));
    if ht <= 0.0 {
        return Err(err(format!("h_trans_bandwidth must be positive, got {ht} Hz")));
    }
    let h_stop = h + ht;
    if h_stop > sfreq / 2.0 {
        return Err(err(format!(
            "{name} ({h} Hz) plus its transition bandwidth ({ht} Hz) puts the stop frequency at \
             {h_stop} Hz, above the Nyquist frequency ({nyq} Hz): reduce h_trans_bandwidth"
        )));
    }
    Ok((h_stop, ht))
}

/// Band-stop(s) between `lows[i]` and `highs[i]` (triage with `bands='arr', reverse=True`,
/// then create_filter's band-stop branch): (freq, gain, smallest transition).
fn bandstop_spec(
    sfreq: f64,
    lows: &[f64],
    highs: &[f64],
    low_trans: Option<f64>,
    high_trans: Option<f64>,
    names: (&str, &str),
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let nyq = sfreq / 2.0;
    for &l in lows {
        if l <= 0.0 {
            return Err(err(format!("{} ({l} Hz) must be greater than zero", names.0)));
        }
    }
    for &h in highs {
        if h >= nyq {
            return Err(err(format!("{} ({h} Hz) must be less than the Nyquist frequency ({nyq} Hz)", names.1)));
        }
    }
    let n = lows.len();
    let (mut f_p1, mut f_s1, mut f_s2, mut f_p2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut trans_min = f64::INFINITY;
    for &l in lows {
        let lt = low_trans.unwrap_or_else(|| (0.25 * l).max(2.0).min(l));
        if lt <= 0.0 {
            return Err(err(format!("transition bandwidth must be positive, got {lt} Hz")));
        }
        trans_min = trans_min.min(lt);
        let mut l_stop = l - lt;
        l_stop += lt;
        let l_pass = l + lt;
        if l_stop < 0.0 {
            return Err(err(format!("{} ({l} Hz): stop frequency is negative ({l_stop} Hz)", names.0)));
        }
        f_p1.push(l_stop);
        f_s1.push(l_pass);
    }
    for &h in highs {
        let ht = high_trans.unwrap_or_else(|| (0.25 * h).max(2.0).min(nyq - h));
        if ht <= 0.0 {
            return Err(err(format!("transition bandwidth must be positive, got {ht} Hz")));
        }
        trans_min = trans_min.min(ht);
        let mut h_stop = h + ht;
        h_stop -= ht;
        let h_pass = h - ht;
        if h_stop > sfreq / 2.0 {
            return Err(err(format!(
                "{} ({h} Hz): effective band-stop frequency ({h_stop} Hz) is above the Nyquist \
                 frequency ({nyq} Hz)",
                names.1
            )));
        }
        f_s2.push(h_pass);
        f_p2.push(h_stop);
    }
    // np.r_[f_p1, f_s1, f_s2, f_p2] with gains 1, 0, 0, 1, sorted by frequency (stable; numpy's
    // argsort is stable too for the up-to-16 points of a few bands).
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(4 * n);
    points.extend(f_p1.iter().map(|&f| (f, 1.0)));
    points.extend(f_s1.iter().map(|&f| (f, 0.0)));
    points.extend(f_s2.iter().map(|&f| (f, 0.0)));
    points.extend(f_p2.iter().map(|&f| (f, 1.0)));
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut freq: Vec<f64> = points.iter().map(|p| p.0).collect();
    let mut gain: Vec<f64> = points.iter().map(|p| p.1).collect();
    if freq[0] != 0.0 {
        freq.insert(0, 0.0);
        gain.insert(0, 1.0);
    }
    if *freq.last().unwrap() != nyq {
        freq.push(nyq);
        gain.push(1.0);
    }
    if gain.windows(3).any(|g| ((g[2] - g[1]) - (g[1] - g[0])).abs() > 1.0) {
        return Err(err(
            "Stop bands are not sufficiently separated: the transition bands overlap the stop \
             band(s) or each other (reduce the transition bandwidths or widen the stop band)",
        ));
    }
    Ok((freq, gain, trans_min))
}

/// Kernel length in samples: MNE's `'auto'` rule (`_triage_filter_params` then `_to_samples`)
/// or the caller's length, made odd.
fn filter_length(sfreq: f64, trans_min: f64, requested: Option<usize>) -> Result<usize> {
    let n = match requested {
        Some(n) => {
            if n > MAX_FILTER_LENGTH {
                return Err(err(format!("filter_length {n} is longer than the {MAX_FILTER_LENGTH} samples we design")));
            }
            n
        }
        None => {
            // f"{3.3 * 1.0 / min_trans}s" → float() round-trips exactly in Python.
            let seconds = HAMMING_LENGTH_FACTOR * 1.0 / trans_min;
            let samples = (seconds * sfreq).ceil();
            if !(samples <= MAX_FILTER_LENGTH as f64) {
                return Err(err(format!(
                    "the automatic filter length ({samples} samples for a {trans_min} Hz transition band \
                     at {sfreq} Hz) exceeds {MAX_FILTER_LENGTH} samples: widen the transition band"
                )));
            }
            (samples as usize).max(1)
        }
    };
    // `filter_length += (filter_length - 1) % 2` with Python's modulo (0 becomes 1).
    Ok(if n % 2 == 0 { n + 1 } else { n })
}

/// `_construct_fir_filter` for `phase='zero'`, `fir_design='firwin'`.
fn construct_fir_filter(sfreq: f64, freq: &[f64], gain: &[f64], n: usize) -> Result<Vec<f64>> {
    let half = sfreq / 2.0;
    let freq: Vec<f64> = freq.iter().map(|&f| f / half).collect();
    if freq[0] != 0.0 || *freq.last().unwrap() != 1.0 {
        return Err(err(format!("freq must start at 0 and end at Nyquist ({half}), got {freq:?}")));
    }
    debug_assert!(n % 2 == 1);
    firwin_design(n, &freq, gain, sfreq)
}

/// `_firwin_design`: `freq` normalized to Nyquist = 1, gains 0 or 1.
fn firwin_design(n: usize, freq: &[f64], gain: &[f64], sfreq: f64) -> Result<Vec<f64>> {
    let mut h = vec![0.0; n];
    let mut prev_freq = *freq.last().unwrap();
    let mut prev_gain = *gain.last().unwrap();
    if prev_gain == 1.0 {
        h[n / 2] = 1.0;
    }
    for i in (0..freq.len() - 1).rev() {
        let (this_freq, this_gain) = (freq[i], gain[i]);
        if this_gain != prev_gain {
            let transition = (prev_freq - this_freq) / 2.0;
            if !(transition > 0.0) {
                return Err(err(format!(
                    "a transition band of {} Hz: the band edges must be strictly increasing",
                    transition * sfreq
                )));
            }
            let needed = (HAMMING_LENGTH_FACTOR / transition).round_ties_even();
            let too_short = |this_n: f64| {
                err(format!(
                    "The requested filter length {n} is too short for the requested {:.2} Hz \
                     transition band, which requires {this_n} samples",
                    transition * sfreq
                ))
            };
            if !(needed <= n as f64) {
                return Err(too_short(needed + 1.0 - needed % 2.0));
            }
            let mut this_n = needed as usize;
            this_n += 1 - this_n % 2;
            if this_n > n {
                return Err(too_short(this_n as f64));
            }
            let this_h = firwin_lowpass(this_n, (prev_freq + this_freq) / 2.0)?;
            let offset = (n - this_n) / 2;
            let target = &mut h[offset..n - offset];
            if this_gain == 0.0 {
                target.iter_mut().zip(&this_h).for_each(|(a, b)| *a -= b);
            } else {
                target.iter_mut().zip(&this_h).for_each(|(a, b)| *a += b);
            }
        }
        prev_gain = this_gain;
        prev_freq = this_freq;
    }
    Ok(h)
}

/// `scipy.signal.firwin(numtaps, cutoff, window='hamming', pass_zero=True, scale=True, fs=2)`.
fn firwin_lowpass(numtaps: usize, cutoff: f64) -> Result<Vec<f64>> {
    if !(cutoff > 0.0 && cutoff < 1.0) {
        return Err(err(format!("invalid cutoff frequency {cutoff} (relative to Nyquist): must be in (0, 1)")));
    }
    let alpha = 0.5 * (numtaps as f64 - 1.0);
    let win = hamming(numtaps);
    // bands = [[0, cutoff]]: h = cutoff*sinc(cutoff*m) - 0*sinc(0*m); then the window.
    let mut h: Vec<f64> = (0..numtaps)
        .map(|i| {
            let m = i as f64 - alpha;
            (cutoff * sinc(cutoff * m) - 0.0 * sinc(0.0 * m)) * win[i]
        })
        .collect();
    // Scale to unit gain at the centre of the first passband (DC: cos(0) = 1).
    let s = pairwise_sum(&h);
    h.iter_mut().for_each(|x| *x /= s);
    Ok(h)
}

/// `numpy.sinc`.
fn sinc(x: f64) -> f64 {
    let y = PI * if x == 0.0 { 1.0e-20 } else { x };
    y.sin() / y
}

/// `scipy.signal.windows.hamming(m, sym=True)`: `0.54 + 0.46 cos(linspace(-pi, pi, m))`.
fn hamming(m: usize) -> Vec<f64> {
    if m <= 1 {
        return vec![1.0; m];
    }
    let step = (PI - -PI) / (m - 1) as f64;
    (0..m)
        .map(|i| {
            let fac = if i == m - 1 { PI } else { i as f64 * step + -PI };
            0.54 + (1.0 - 0.54) * fac.cos()
        })
        .collect()
}

/// numpy's pairwise summation (`np.sum` of a contiguous float64 array).
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> FirOptions {
        FirOptions::default()
    }

    /// |H(f)| of a zero-phase odd-length kernel at frequency `f` Hz.
    fn gain_at(h: &[f64], sfreq: f64, f: f64) -> f64 {
        let c = (h.len() / 2) as f64;
        let w = 2.0 * PI * f / sfreq;
        h.iter().enumerate().map(|(i, &x)| x * (w * (i as f64 - c)).cos()).sum::<f64>()
    }

    fn assert_symmetric_odd(h: &[f64]) {
        assert_eq!(h.len() % 2, 1, "length {} is even", h.len());
        for i in 0..h.len() / 2 {
            assert!((h[i] - h[h.len() - 1 - i]).abs() <= 1e-15, "asymmetric at {i}");
        }
    }

    #[test]
    fn lowpass_shape_and_gain() {
        let h = create_filter(1000.0, None, Some(40.0), &auto()).unwrap();
        // h_trans = 10 Hz → ceil(3.3 / 10 * 1000) = 330 → 331.
        assert_eq!(h.len(), 331);
        assert_symmetric_odd(&h);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(gain_at(&h, 1000.0, 60.0).abs() < 0.01);
    }

    #[test]
    fn highpass_shape_and_gain() {
        let h = create_filter(250.0, Some(1.0), None, &auto()).unwrap();
        // l_trans = min(max(0.25, 2), 1) = 1 Hz → 825 samples, odd → 825.
        assert_eq!(h.len(), 825);
        assert_symmetric_odd(&h);
        assert!(h.iter().sum::<f64>().abs() < 1e-12, "DC gain of a high-pass");
        assert!((gain_at(&h, 250.0, 20.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn bandpass_and_bandstop() {
        let h = create_filter(1000.0, Some(1.0), Some(40.0), &auto()).unwrap();
        assert_symmetric_odd(&h);
        assert!((gain_at(&h, 1000.0, 10.0) - 1.0).abs() < 2e-3);
        assert!(h.iter().sum::<f64>().abs() < 1e-12);
        let opts = FirOptions { l_trans_bandwidth: Some(1.0), h_trans_bandwidth: Some(1.0), ..auto() };
        let h = create_filter(1000.0, Some(55.0), Some(45.0), &opts).unwrap();
        assert_eq!(h.len(), 3301);
        assert_symmetric_odd(&h);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12, "unit DC gain of a band-stop");
        assert!(gain_at(&h, 1000.0, 50.0).abs() < 0.01);
    }

    #[test]
    fn identity_when_no_cutoff() {
        assert_eq!(create_filter(1000.0, None, None, &auto()).unwrap(), vec![1.0]);
        assert_eq!(create_filter(1000.0, Some(0.0), None, &auto()).unwrap(), vec![1.0]);
    }

    #[test]
    fn explicit_length_is_made_odd() {
        let opts = FirOptions { filter_length: Some(400), ..auto() };
        assert_eq!(create_filter(1000.0, None, Some(40.0), &opts).unwrap().len(), 401);
    }

    #[test]
    fn notch_kernel() {
        let h = notch_filter_design(1000.0, &[50.0, 100.0, 150.0], &auto()).unwrap();
        assert_eq!(h.len(), 6601);
        assert_symmetric_odd(&h);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for f in [50.0, 100.0, 150.0] {
            assert!(gain_at(&h, 1000.0, f).abs() < 0.01, "notch at {f}");
        }
    }

    #[test]
    fn firwin_matches_scipy_small_case() {
        // scipy.signal.firwin(5, 0.5, fs=2)
        let h = firwin_lowpass(5, 0.5).unwrap();
        let want = [1.8479681547289397e-18, 0.2037123692007372, 0.5925752615985256, 0.2037123692007372, 1.8479681547289397e-18];
        for (a, b) in h.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{h:?}");
        }
    }

    #[test]
    fn errors_not_panics() {
        let o = auto();
        let bad = [
            (1000.0, None, Some(500.0)),
            (1000.0, None, Some(600.0)),
            (1000.0, Some(500.1), None),
            (1000.0, Some(-1.0), None),
            (1000.0, Some(f64::NAN), None),
            (1000.0, None, Some(f64::INFINITY)),
            (1000.0, Some(40.0), Some(40.0)),
            (1000.0, Some(55.0), Some(45.0)), // auto transitions overlap the stop band
            (0.0, None, Some(40.0)),
            (-1.0, None, Some(40.0)),
            (f64::NAN, None, Some(40.0)),
        ];
        for (sfreq, l, h) in bad {
            assert!(create_filter(sfreq, l, h, &o).is_err(), "{sfreq} {l:?} {h:?}");
        }
        let short = FirOptions { filter_length: Some(101), ..auto() };
        let e = create_filter(1000.0, Some(1.0), None, &short).unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
        assert!(create_filter(1000.0, Some(1.0), None, &FirOptions { filter_length: Some(0), ..auto() }).is_err());
        let wide = FirOptions { l_trans_bandwidth: Some(5.0), ..auto() };
        assert!(create_filter(1000.0, Some(1.0), None, &wide).is_err());
        let neg = FirOptions { h_trans_bandwidth: Some(-1.0), ..auto() };
        assert!(create_filter(1000.0, None, Some(40.0), &neg).is_err());
        let zero = FirOptions { h_trans_bandwidth: Some(0.0), ..auto() };
        assert!(create_filter(1000.0, None, Some(40.0), &zero).is_err());
        let past_nyq = FirOptions { h_trans_bandwidth: Some(20.0), ..auto() };
        assert!(create_filter(100.0, None, Some(40.0), &past_nyq).is_err());
        let tiny = FirOptions { l_trans_bandwidth: Some(1e-9), ..auto() };
        assert!(create_filter(1000.0, Some(1.0), None, &tiny).is_err());
        assert!(notch_filter_design(1000.0, &[], &o).is_err());
        assert!(notch_filter_design(1000.0, &[600.0], &o).is_err());
        assert!(notch_filter_design(1000.0, &[-50.0], &o).is_err());
        assert!(notch_filter_design(1000.0, &[50.0, 50.5], &o).is_err());
        assert!(notch_filter_design(1000.0, &[50.0], &FirOptions { filter_length: Some(1001), ..auto() }).is_err());
    }
}
