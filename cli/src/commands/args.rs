//! Argument groups shared by several `bf-pipeline` commands, flattened into their `Args`
//! structs so each flag is declared once: the filter band ([`FilterBand`]: `filter`,
//! `filter-design`) and the cleaning chain's band, notch and rate ([`CleanBand`]:
//! `preprocess-file`), whose defaults are `brainformer.toml`'s
//! (`bf_pipeline::config::PreprocessConfig::default()`), not numbers repeated here. The DAG
//! commands' overrides of the same parameters are optional and live in `dag::DagArgs`.

use std::sync::LazyLock;

use bf_pipeline::config::PreprocessConfig;

/// The configuration's `[preprocess]` defaults, read once for the flags' defaults.
static PREPROCESS: LazyLock<PreprocessConfig> = LazyLock::new(PreprocessConfig::default);

/// `--notch`'s default as the flag would be typed (comma-separated).
static NOTCH_DEFAULT: LazyLock<String> =
    LazyLock::new(|| PREPROCESS.notch.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(","));

/// The default `--sfreq` of commands that resample: the configuration's rate.
pub fn default_sfreq() -> f64 {
    PREPROCESS.sfreq
}

/// An optional band-pass (or high-/low-pass) and notch frequencies, MNE's `l_freq`, `h_freq`
/// and `freqs`.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterBand {
    /// High-pass edge in Hz (MNE's l_freq).
    #[arg(long, allow_negative_numbers = true)]
    pub l_freq: Option<f64>,
    /// Low-pass edge in Hz (MNE's h_freq).
    #[arg(long, allow_negative_numbers = true)]
    pub h_freq: Option<f64>,
    /// Notch frequencies in Hz, comma-separated (e.g. 50,100,150), as
    /// mne.filter.notch_filter's `freqs`.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub notch: Vec<f64>,
}

/// The cleaning chain's parameters with the configuration's defaults: band-pass, notch,
/// new sampling rate.
#[derive(clap::Args, Debug, Clone)]
pub struct CleanBand {
    /// High-pass edge in Hz (MNE's l_freq).
    #[arg(long, default_value_t = PREPROCESS.l_freq, allow_negative_numbers = true)]
    pub l_freq: f64,
    /// Low-pass edge in Hz (MNE's h_freq).
    #[arg(long, default_value_t = PREPROCESS.h_freq, allow_negative_numbers = true)]
    pub h_freq: f64,
    /// Notch frequencies in Hz, comma-separated (empty string: no notch).
    #[arg(long, value_delimiter = ',', default_value = NOTCH_DEFAULT.as_str(), allow_negative_numbers = true)]
    pub notch: Vec<f64>,
    /// New sampling rate in Hz.
    #[arg(long, default_value_t = PREPROCESS.sfreq, allow_negative_numbers = true)]
    pub sfreq: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notch_default_reads_back_as_the_configuration_s() {
        let parsed: Vec<f64> = NOTCH_DEFAULT.split(',').map(|f| f.parse().unwrap()).collect();
        assert_eq!(parsed, PreprocessConfig::default().notch);
        assert_eq!(NOTCH_DEFAULT.as_str(), "50,100,150");
    }
}
