//! `bf-pipeline filter IN OUT.npy|OUT.fif`: MNE's `raw.filter(l_freq, h_freq)` then
//! `raw.notch_filter(freqs)` on the data channels (MEG, EEG; bads included, as MNE does),
//! other channels passed through. It is the cleaning chain (`pipeline::clean`) without the
//! resampling step, so it runs in the same bounded memory.

use std::path::PathBuf;

use anyhow::{bail, Result};
use bf_pipeline::clean::{clean, CleanParams};
use bf_pipeline::dsp::fir::FirOptions;

use super::args::FilterBand;

/// Filter a recording like MNE: `raw.filter(l_freq, h_freq)` then `raw.notch_filter(notch)`.
///
/// Zero-phase FIR (MNE's defaults: firwin, Hamming, automatic transition bands and length),
/// overlap-add FFT with reflect_limited padding, on the data channels (MEG and EEG, bads
/// included); other channels pass through. OUT: .npy (float64, all channels, file order)
/// or .fif.
#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    /// The recording to filter.
    pub input: PathBuf,
    /// Output path: `.npy` or `.fif`.
    pub out: PathBuf,
    #[command(flatten)]
    pub band: FilterBand,
    /// Transition bandwidth at l_freq in Hz (default: MNE's 'auto').
    #[arg(long)]
    pub l_trans_bandwidth: Option<f64>,
    /// Transition bandwidth at h_freq in Hz (default: MNE's 'auto').
    #[arg(long)]
    pub h_trans_bandwidth: Option<f64>,
}

pub fn run(args: &FilterArgs) -> Result<()> {
    let FilterArgs { input, out, band, .. } = args;
    let opts = FirOptions { l_trans_bandwidth: args.l_trans_bandwidth, h_trans_bandwidth: args.h_trans_bandwidth, filter_length: None };
    if band.l_freq.is_none() && band.h_freq.is_none() && band.notch.is_empty() {
        bail!("nothing to do: give --l-freq and/or --h-freq, and/or --notch");
    }
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    if !reader.info().channels.iter().any(|c| c.kind.is_data()) {
        bail!("{}: no MEG or EEG channels to filter", input.display());
    }
    let params = CleanParams { l_freq: band.l_freq, h_freq: band.h_freq, notch: band.notch.clone(), sfreq: None, fir: opts, ..Default::default() };
    let filtered = clean(reader.as_ref(), &params, super::preprocess_file::scratch_dir(out), &|| {})?;
    super::convert::write_recording(&filtered, out)
}
