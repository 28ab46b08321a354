//! `bf-pipeline resample IN OUT.npy|OUT.fif --sfreq F [--method fft|polyphase]`: MNE's
//! `raw.resample(sfreq, method=...)` with its defaults (npad/window/pad 'auto'; FFT unless
//! `--method polyphase`): every channel, stim channels decimated so events survive;
//! first_samp rescaled and lowpass capped at the new Nyquist, as MNE does.
//! It is the cleaning chain (`pipeline::clean`) with only the resampling step.

use std::path::PathBuf;

use anyhow::{bail, Result};
use bf_pipeline::clean::{clean, CleanParams};
use bf_pipeline::dsp::resample::ResampleMethod;

/// Resample a recording like MNE's `raw.resample(sfreq, method=...)` (FFT by default).
///
/// Every channel is resampled; stim channels keep their events (first non-zero value per
/// window, as MNE, whatever the method). OUT: .npy (float64, channels × samples) or .fif.
#[derive(clap::Args, Debug)]
pub struct ResampleArgs {
    /// The recording to resample.
    pub input: PathBuf,
    /// Output path: `.npy` or `.fif`.
    pub out: PathBuf,
    /// New sampling rate in Hz.
    #[arg(long, default_value_t = super::args::default_sfreq(), allow_negative_numbers = true)]
    pub sfreq: f64,
    /// Resampling method, MNE's `method`: fft or polyphase.
    ///
    /// fft (MNE's default): the whole signal is padded (reflect_limited, to a power of two),
    /// its spectrum cut (or zero-extended) at the new Nyquist and transformed back: a
    /// brick-wall low-pass.
    ///
    /// polyphase (MNE's method='polyphase', i.e. scipy's resample_poly): a Kaiser-windowed
    /// (beta 5) sinc FIR low-pass applied at integer up/down rates (the ratio of the new to
    /// the old length, in lowest terms), reflect padding. It is local (about 10 input samples
    /// either side per rate step) with a gentler roll-off; when the lengths share few factors
    /// the filter is huge, and beyond 2^26 taps it is refused (use fft or crop).
    #[arg(long, default_value = "fft", value_parser = ["fft", "polyphase"])]
    pub method: String,
}

pub fn run(args: &ResampleArgs) -> Result<()> {
    let method: ResampleMethod = args.method.parse().map_err(anyhow::Error::msg)?;
    let (input, out, sfreq) = (&args.input, &args.out, args.sfreq);
    if !(sfreq.is_finite() && sfreq > 0.0) {
        bail!("--sfreq {sfreq} must be a positive number of Hz");
    }
    super::convert::check_output_extension(out)?;
    let reader = bf_pipeline::formats::open(input)?;
    let params = CleanParams { sfreq: Some(sfreq), resample_method: method, ..Default::default() };
    let resampled = clean(reader.as_ref(), &params, super::preprocess_file::scratch_dir(out), &|| {})?;
    super::convert::write_recording(&resampled, out)
}
