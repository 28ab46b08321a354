//! `bf-pipeline clean IN OUT`: band-pass → notch → resample in bounded memory
//! (`pipeline::clean`), each step MNE's. Defaults are design.md's: 0.1–100 Hz, notch
//! 50/100/150 Hz, 250 Hz.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::clean::{clean, CleanParams};
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::RawReader;
use indicatif::{ProgressBar, ProgressStyle};

pub fn run(input: &Path, out: &Path, params: &CleanParams, quiet: bool) -> Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    if ext != "npy" && ext != "fif" {
        bail!("{}: unknown output extension (expected .npy or .fif)", out.display());
    }
    let reader = bf_pipeline::formats::open(input)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(reader.info().n_channels() as u64) };
    bar.set_style(ProgressStyle::with_template("{spinner} cleaning [{bar:30}] {pos}/{len} channels {elapsed}").expect("valid template"));
    let scratch_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cleaned = clean(reader.as_ref(), params, scratch_dir, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let all = cleaned.all_picks();
    let n = cleaned.info().n_samples;
    if ext == "npy" {
        super::convert::write_npy(&cleaned, &all, 0, n, out)
    } else {
        write_raw(&cleaned, &all, 0, n, out, &WriteOptions::default())?;
        Ok(())
    }
}
