//! `bf-pipeline resample IN OUT.npy|OUT.fif --sfreq F [--method fft|polyphase]`: MNE's
//! `raw.resample(sfreq, method=...)` with its defaults (npad/window/pad 'auto'; FFT unless
//! `--method polyphase`): every channel, stim channels decimated so events survive;
//! first_samp rescaled and lowpass capped at the new Nyquist, as MNE does.
//! It is the cleaning chain (`pipeline::clean`) with only the resampling step.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::clean::{clean, CleanParams};
use bf_pipeline::dsp::resample::ResampleMethod;

pub fn run(input: &Path, out: &Path, sfreq: f64, method: ResampleMethod) -> Result<()> {
    if !(sfreq.is_finite() && sfreq > 0.0) {
        bail!("--sfreq {sfreq} must be a positive number of Hz");
    }
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    let params = CleanParams { sfreq: Some(sfreq), resample_method: method, ..Default::default() };
    let resampled = clean(reader.as_ref(), &params, super::preprocess_file::scratch_dir(out), &|| {})?;
    super::convert::write_recording(&resampled, out)
}
