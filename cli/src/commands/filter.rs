//! `bf-pipeline filter IN OUT.npy|OUT.fif`: MNE's `raw.filter(l_freq, h_freq)` then
//! `raw.notch_filter(freqs)` on the data channels (MEG, EEG; bads included, as MNE does),
//! other channels passed through. It is the cleaning chain (`pipeline::clean`) without the
//! resampling step, so it runs in the same bounded memory.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::clean::{clean, CleanParams};
use bf_pipeline::dsp::fir::FirOptions;

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
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    if !reader.info().channels.iter().any(|c| c.kind.is_data()) {
        bail!("{}: no MEG or EEG channels to filter", input.display());
    }
    let params = CleanParams { l_freq: args.l_freq, h_freq: args.h_freq, notch: args.notch.clone(), sfreq: None, fir: args.opts, ..Default::default() };
    let filtered = clean(reader.as_ref(), &params, super::preprocess_file::scratch_dir(out), &|| {})?;
    super::convert::write_recording(&filtered, out)
}
