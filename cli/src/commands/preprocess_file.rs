//! `bf-pipeline preprocess-file IN OUT`: band-pass → notch → resample in bounded memory
//! (`pipeline::clean`), each step MNE's. Defaults are design.md's: 0.1–100 Hz, notch
//! 50/100/150 Hz, 250 Hz.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bf_pipeline::clean::{clean, CleanParams};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::CleanBand;

/// Preprocess one recording in bounded memory: band-pass, notch, resample (as MNE does).
///
/// Equivalent to MNE's `raw.filter(l_freq, h_freq).notch_filter(notch).resample(sfreq)`
/// on the data channels (MEG, EEG; bads included; all channels are resampled). The
/// recording is read once per block of channels (at most 112 MiB in memory), each block's
/// channels processed in parallel. Defaults: 0.1–100 Hz, notch 50,100,150 Hz, 250 Hz. The DAG
/// (`bf-pipeline preprocess`/`tokenize`) runs the same chain on every run of a dataset.
#[derive(clap::Args, Debug)]
pub struct PreprocessFileArgs {
    /// The recording to clean.
    pub input: PathBuf,
    /// Output path: `.npy` or `.fif`.
    pub out: PathBuf,
    #[command(flatten)]
    pub band: CleanBand,
    /// Run MNE's three passes one after the other (band-pass, notch, resample) instead of
    /// the default single-FFT path.
    ///
    /// By default band-pass × notch × resample run as one FFT per channel, about 3×
    /// faster. It equals MNE except for the Gibbs ringing of MNE's own padding jump, which
    /// reaches the data at about 1e-5 of a channel's RMS on recordings of minutes (see
    /// pipeline/src/dsp/spectral.rs). Short recordings always take the exact path.
    #[arg(long)]
    pub exact: bool,
}

/// Where the channel-major scratch copy goes: beside the output (same filesystem).
pub fn scratch_dir(out: &Path) -> &Path {
    out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

pub fn run(args: &PreprocessFileArgs, quiet: bool) -> Result<()> {
    let PreprocessFileArgs { input, out, band, exact } = args;
    let params = &CleanParams { l_freq: Some(band.l_freq), h_freq: Some(band.h_freq), notch: band.notch.clone(), sfreq: Some(band.sfreq), exact: *exact, ..Default::default() };
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(reader.info().n_channels() as u64) };
    bar.set_style(ProgressStyle::with_template("{spinner} cleaning [{bar:30}] {pos}/{len} channels {elapsed}").expect("valid template"));
    let cleaned = clean(reader.as_ref(), params, scratch_dir(out), &|| bar.inc(1))?;
    bar.finish_and_clear();
    super::convert::write_recording(&cleaned, out)
}
