//! `bf-pipeline filter IN OUT.npy|OUT.fif`: MNE's `raw.filter(l_freq, h_freq)` then
//! `raw.notch_filter(freqs)` on the data channels (MEG, EEG; bads included, as MNE does),
//! other channels passed through. The recording is filtered in memory (f64); the streaming,
//! chunked path of the cleaning stage is separate work.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::dsp::filter::filter_rows;
use bf_pipeline::dsp::fir::{create_filter, notch_filter_design, FirOptions};
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::recording::InMemory;
use bf_pipeline::RawReader;

pub struct FilterArgs {
    pub l_freq: Option<f64>,
    pub h_freq: Option<f64>,
    pub notch: Vec<f64>,
    pub opts: FirOptions,
}

pub fn run(input: &Path, out: &Path, args: &FilterArgs) -> Result<()> {
    if args.l_freq.is_none() && args.h_freq.is_none() && args.notch.is_empty() {
        bail!("nothing to do: give --l-freq and/or --h-freq, and/or --notch");
    }
    let reader = bf_pipeline::formats::open(input)?;
    let mut info = reader.info().clone();
    let picks: Vec<usize> = (0..info.n_channels()).filter(|&i| info.channels[i].kind.is_data()).collect();
    if picks.is_empty() {
        bail!("{}: no MEG or EEG channels to filter", input.display());
    }
    let mut data = reader.read_f64(&reader.all_picks(), 0, info.n_samples)?;
    if args.l_freq.is_some() || args.h_freq.is_some() {
        let h = create_filter(info.sfreq, args.l_freq, args.h_freq, &args.opts)?;
        filter_rows(&mut data, &h, &picks);
        // As MNE records it in info: the band-pass edges, when they tighten the band.
        if let Some(l) = args.l_freq.filter(|&l| args.h_freq.is_none_or(|h| l < h)) {
            info.highpass = Some(info.highpass.unwrap_or(0.0).max(l));
        }
        if let Some(h) = args.h_freq.filter(|&h| args.l_freq.is_none_or(|l| l < h)) {
            info.lowpass = Some(info.lowpass.unwrap_or(info.sfreq / 2.0).min(h));
        }
    }
    if !args.notch.is_empty() {
        let h = notch_filter_design(info.sfreq, &args.notch, &FirOptions::default())?;
        filter_rows(&mut data, &h, &picks);
    }
    let filtered = InMemory::new(info, data)?;
    let all = filtered.all_picks();
    let n = filtered.info().n_samples;
    match out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase().as_str() {
        "npy" => super::convert::write_npy(&filtered, &all, 0, n, out),
        "fif" => {
            write_raw(&filtered, &all, 0, n, out, &WriteOptions::default())?;
            Ok(())
        }
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
}
