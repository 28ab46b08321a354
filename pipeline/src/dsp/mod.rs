//! Digital signal processing that must give the same numbers as MNE-Python.
//!
//! [`fir`] designs MNE's zero-phase FIR filters (`mne.filter.create_filter` with
//! `method='fir', phase='zero', fir_window='hamming', fir_design='firwin'`) and the kernel
//! `mne.filter.notch_filter` applies with the same settings. [`filter`] applies them
//! (overlap-add). [`resample`] is `raw.resample` with MNE's default FFT method and
//! [`polyphase`] its `method='polyphase'` (scipy's `resample_poly`); [`resample::Resampler`]
//! picks one. [`spectral`] fuses band-pass, notch and FFT resampling into one FFT per
//! channel (the cleaning chain's fast path). [`ratio`] is MNE's resampled length, which both
//! resamplers use.

pub mod filter;
pub mod fir;
pub mod polyphase;
pub mod ratio;
pub mod resample;
pub mod spectral;
