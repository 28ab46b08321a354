//! `bf-pipeline preprocess-file IN OUT`: band-pass → notch → resample in bounded memory
//! (`pipeline::clean`), each step MNE's. Defaults are design.md's: 0.1–100 Hz, notch
//! 50/100/150 Hz, 250 Hz.

use std::path::Path;

use anyhow::Result;
use bf_pipeline::clean::{clean, CleanParams};
use indicatif::{ProgressBar, ProgressStyle};

/// Where the channel-major scratch copy goes: beside the output (same filesystem).
pub fn scratch_dir(out: &Path) -> &Path {
    out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

pub fn run(input: &Path, out: &Path, params: &CleanParams, quiet: bool) -> Result<()> {
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(reader.info().n_channels() as u64) };
    bar.set_style(ProgressStyle::with_template("{spinner} cleaning [{bar:30}] {pos}/{len} channels {elapsed}").expect("valid template"));
    let cleaned = clean(reader.as_ref(), params, scratch_dir(out), &|| bar.inc(1))?;
    bar.finish_and_clear();
    super::convert::write_recording(&cleaned, out)
}
