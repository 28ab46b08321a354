//! `bf-pipeline filter-chpi IN OUT`: MNE's `filter_chpi` (cHPI sinusoids and line harmonics
//! fitted and subtracted from every MEG channel), streamed in time chunks into `.npy`
//! (float64) or `.fif` (float32), written atomically. The library side is
//! `bf_pipeline::clean::chpi`; this file only maps arguments.

use std::path::PathBuf;

use anyhow::{bail, Result};
use bf_pipeline::clean::chpi::{ChpiFilter, ChpiParams};
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::RawReader;

/// Remove cHPI coil sinusoids (and line harmonics) from the MEG as MNE's `filter_chpi`.
///
/// The coil frequencies come from the FIF's hpi_meas / hpi_subsystem, the line frequency
/// from its line_freq.
#[derive(clap::Args, Debug)]
pub struct FilterChpiArgs {
    /// The raw FIF recording (MaxShield data accepted).
    pub input: PathBuf,
    /// Output path: `.npy` (float64, channels × samples) or `.fif` (float32).
    pub out: PathBuf,
    /// Seconds between fits (MNE's t_step).
    #[arg(long, default_value_t = 0.01)]
    pub t_step: f64,
    /// Fit window: `auto` (max(5 / lowest frequency, 1 / smallest spacing)) or seconds.
    #[arg(long, default_value = "auto")]
    pub t_window: String,
    /// Leave the line harmonics in (MNE's include_line=False).
    #[arg(long)]
    pub no_include_line: bool,
    /// Run without cHPI information, removing line harmonics only.
    #[arg(long)]
    pub allow_line_only: bool,
    /// Print the frequencies, window and step as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn params(a: &FilterChpiArgs) -> Result<ChpiParams> {
    let t_window = match a.t_window.as_str() {
        "auto" => None,
        s => match s.parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => bail!("--t-window is auto or a number of seconds, got {s:?}"),
        },
    };
    Ok(ChpiParams { t_step: a.t_step, t_window, include_line: !a.no_include_line, allow_line_only: a.allow_line_only })
}

pub fn run(a: &FilterChpiArgs) -> Result<()> {
    let (input, out) = (a.input.as_path(), a.out.as_path());
    let p = params(a)?;
    let opened = bf_pipeline::formats::open(input)?;
    let filt = ChpiFilter::new(opened.as_ref(), &p)?;
    let picks = filt.all_picks();
    let n = filt.info().n_samples;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    match ext.as_str() {
        "npy" => super::convert::write_npy(&filt, &picks, 0, n, out)?,
        "fif" => {
            write_raw(&filt, &picks, 0, n, out, &WriteOptions::default())?;
        }
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
    let s = &filt.setup;
    if a.json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        eprintln!(
            "filter-chpi: {} cHPI ({:?} Hz) and {} line frequencies from {} MEG channels, window {:.1} ms, step {} samples",
            s.hpi_freqs.len(), s.hpi_freqs, if s.include_line { s.line_freqs.len() } else { 0 }, s.n_meg, 1000.0 * s.t_window, s.n_step
        );
    }
    Ok(())
}
