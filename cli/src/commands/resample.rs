//! `bf-pipeline resample IN OUT.npy|OUT.fif --sfreq F`: MNE's `raw.resample(sfreq)` with its
//! defaults (FFT method, npad/window/pad 'auto'): every channel, stim channels decimated so
//! events survive; first_samp rescaled and lowpass capped at the new Nyquist, as MNE does.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::dsp::resample::resample_rows;
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::recording::{ChannelKind, InMemory};
use bf_pipeline::RawReader;

pub fn run(input: &Path, out: &Path, sfreq: f64) -> Result<()> {
    if !(sfreq.is_finite() && sfreq > 0.0) {
        bail!("--sfreq {sfreq} must be a positive number of Hz");
    }
    let reader = bf_pipeline::formats::open(input)?;
    let mut info = reader.info().clone();
    if info.n_samples == 0 {
        bail!("{}: the recording has no samples to resample", input.display());
    }
    let data = reader.read_f64(&reader.all_picks(), 0, info.n_samples)?;
    let stim: Vec<usize> = (0..info.n_channels()).filter(|&i| info.channels[i].kind == ChannelKind::Stim).collect();
    let resampled = resample_rows(&data, info.sfreq, sfreq, &stim);
    let ratio = sfreq / info.sfreq;
    info.first_samp = (info.first_samp as f64 * ratio).round_ties_even() as i64;
    info.lowpass = Some(info.lowpass.unwrap_or(f64::INFINITY).min(sfreq / 2.0));
    info.sfreq = sfreq;
    info.n_samples = resampled.ncols();
    let rec = InMemory::new(info, resampled)?;
    let all = rec.all_picks();
    let n = rec.info().n_samples;
    match out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase().as_str() {
        "npy" => super::convert::write_npy(&rec, &all, 0, n, out),
        "fif" => {
            write_raw(&rec, &all, 0, n, out, &WriteOptions::default())?;
            Ok(())
        }
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
}
