//! Digital signal processing that must give the same numbers as MNE-Python.
//!
//! [`fir`] designs MNE's zero-phase FIR filters (`mne.filter.create_filter` with
//! `method='fir', phase='zero', fir_window='hamming', fir_design='firwin'`) and the kernel
//! `mne.filter.notch_filter` applies with the same settings.

pub mod filter;
pub mod fir;
pub mod resample;
