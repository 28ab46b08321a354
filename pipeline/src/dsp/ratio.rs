//! MNE's resampling ratio and output length (`_resamp_ratio_len`), shared by the FFT
//! resampler ([`super::resample`]) and the polyphase one ([`super::polyphase`]) so that
//! neither imports the other for it (resample dispatches to polyphase, not back).

/// Python's `int(round(v))` (ties to even).
pub(crate) fn py_round(v: f64) -> usize {
    v.round_ties_even().max(0.0) as usize
}

/// MNE's `_resamp_ratio_len`: the ratio and the resampled length of `n` samples.
pub fn resampled_len(up: f64, down: f64, n: usize) -> (f64, usize) {
    let ratio = up / down;
    (ratio, py_round(ratio * n as f64).max(1))
}
