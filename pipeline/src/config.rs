//! The project file `brainformer.toml`: the dataset root and every processing parameter,
//! with design.md's defaults. `bf-pipeline ingest` writes it; later commands read it, so
//! they run with no arguments in the same directory. Parameter names follow MNE's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const PROJECT_FILE: &str = "brainformer.toml";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    pub dataset: DatasetConfig,
    pub preprocess: PreprocessConfig,
    pub segment: SegmentConfig,
    pub tokenize: TokenizeConfig,
    pub split: SplitConfig,
    #[serde(default)]
    pub shards: ShardsConfig,
    #[serde(default)]
    pub maxwell: MaxwellConfig,
}

/// `[maxwell]`: MNE's `maxwell_filter`, preceded by `find_bad_channels_maxwell`, on the MEG
/// channels before the band-pass (the preprocess stage). Names are MNE's; MNE-BIDS-Pipeline
/// calls them `mf_*` (`mf_cal_fname`, `mf_ctc_fname`, `mf_st_duration`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxwellConfig {
    /// `auto` (default): on for raw Neuromag/Elekta/MEGIN FIF recordings when the dataset
    /// carries a fine-calibration or cross-talk file; `on`; `off`.
    pub apply: String,
    /// Fine-calibration file: `auto` (BIDS `*_acq-calibration_meg.dat` beside the run, else
    /// `derivatives/*/sss_cal.dat` as ds000117 keeps it), a path relative to the dataset
    /// root (or absolute), or `none`.
    pub calibration: String,
    /// Cross-talk file: `auto` (`*_acq-crosstalk_meg.fif`, else `derivatives/*/ct_sparse.fif`),
    /// a path, or `none`.
    pub cross_talk: String,
    /// Expansion origin: `auto` (sphere fitted to the digitized head shape) or `X,Y,Z` in metres.
    pub origin: String,
    /// `auto` (head when the recording has a device→head transform, else meg), `head`, `meg`.
    pub coord_frame: String,
    pub int_order: usize,
    pub ext_order: usize,
    /// `in` (MNE's default) or `none`.
    pub regularize: String,
    /// tSSS window in seconds (absent: plain SSS, MNE's default).
    pub st_duration: Option<f64>,
    pub st_correlation: f64,
    /// tSSS windows overlapping by half with Hann weights (MNE ≥ 1.11's default).
    pub st_overlap: bool,
    /// Find flat and noisy MEG channels first (MNE's `find_bad_channels_maxwell` with its
    /// defaults); they join the run's bads, are left out of the fit and reconstructed.
    pub find_bads: bool,
}

impl Default for MaxwellConfig {
    fn default() -> Self {
        MaxwellConfig {
            apply: "auto".into(),
            calibration: "auto".into(),
            cross_talk: "auto".into(),
            origin: "auto".into(),
            coord_frame: "auto".into(),
            int_order: 8,
            ext_order: 3,
            regularize: "in".into(),
            st_duration: None,
            st_correlation: 0.98,
            st_overlap: true,
            find_bads: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardsConfig {
    /// Largest shard file, in bytes (compressed size is smaller).
    pub max_shard_bytes: u64,
    /// `tokens` (u8 µ-law levels, design.md) or `continuous` (f32 windows, physical units).
    pub kind: String,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig { max_shard_bytes: 256 << 20, kind: "tokens".into() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetConfig {
    /// BIDS root (absolute).
    pub root: PathBuf,
    /// Where it came from: an OpenNeuro id (`ds000117`) or `local`.
    pub source: String,
    /// `raw` (the recordings under `sub-*`) or `proc-sss` (the MaxFilter output under
    /// `derivatives/*/`, EEG included, where the dataset has it; `ingest --meg-source`).
    #[serde(default = "default_meg_source")]
    pub meg_source: String,
    /// Take MaxShield (IAS) recordings as they are (MNE's `allow_maxshield`); they are
    /// distorted until Maxwell-filtered, so by default they are refused.
    #[serde(default)]
    pub allow_maxshield: bool,
}

fn default_meg_source() -> String {
    "raw".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// High-pass edge in Hz (MNE's `l_freq`).
    pub l_freq: f64,
    /// Low-pass edge in Hz (MNE's `h_freq`).
    pub h_freq: f64,
    /// Notch frequencies in Hz.
    pub notch: Vec<f64>,
    /// Target sampling rate in Hz after resampling.
    pub sfreq: f64,
    /// MNE's `filter_chpi` (cHPI sinusoids and line harmonics fitted and subtracted from the
    /// raw MEG, before Maxwell filtering; MNE's defaults t_step 0.01 s, t_window "auto",
    /// include_line): `"auto"` (default: on for raw Neuromag FIF runs that carry cHPI
    /// frequencies and that Maxwell filtering applies to), `true` (every MEG run; a run without
    /// cHPI information is an error, as in MNE), `false`. Left out of the serialized
    /// parameters while "auto", so configurations written before it keep their keys.
    #[serde(default, skip_serializing_if = "FilterChpi::is_auto")]
    pub filter_chpi: FilterChpi,
}

/// `[preprocess] filter_chpi`: `"auto"`, `true` or `false` in TOML.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FilterChpi {
    #[default]
    Auto,
    On,
    Off,
}

impl FilterChpi {
    pub fn is_auto(&self) -> bool {
        *self == FilterChpi::Auto
    }
}

impl Serialize for FilterChpi {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FilterChpi::Auto => s.serialize_str("auto"),
            FilterChpi::On => s.serialize_bool(true),
            FilterChpi::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for FilterChpi {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(true) => Ok(FilterChpi::On),
            Raw::B(false) => Ok(FilterChpi::Off),
            Raw::S(s) if s == "auto" => Ok(FilterChpi::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!("filter_chpi is \"auto\", true or false, got {s:?}"))),
        }
    }
}

/// design.md's cleaning: 0.1–100 Hz, notch 50/100/150 Hz, 250 Hz (also the defaults of
/// `bf-pipeline preprocess-file`).
impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig { l_freq: 0.1, h_freq: 100.0, notch: vec![50.0, 100.0, 150.0], sfreq: 250.0, filter_chpi: FilterChpi::Auto }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentConfig {
    /// Window length in samples (at the resampled rate).
    pub window: usize,
    /// Step between window starts in samples.
    pub stride: usize,
    /// `windows` (fixed windows, default) or `epochs` (event-locked, events from events.tsv).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Epochs: start relative to each event, seconds (MNE's tmin).
    #[serde(default = "default_tmin")]
    pub tmin: f64,
    /// Epochs: end relative to each event, seconds, included (MNE's tmax).
    #[serde(default = "default_tmax")]
    pub tmax: f64,
    /// Epochs: subtract each channel's mean over tmin..0 (MNE's baseline=(None, 0)).
    #[serde(default = "default_baseline")]
    pub baseline: bool,
}

fn default_mode() -> String {
    "windows".into()
}
fn default_tmin() -> f64 {
    -0.2
}
fn default_tmax() -> f64 {
    0.8
}
fn default_baseline() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizeConfig {
    /// Per-channel clamp percentiles before scaling to [-1, 1].
    pub clamp_percentiles: [f64; 2],
    /// µ-law µ.
    pub mu: f64,
    /// Quantization levels, stored as u8 0..levels-1.
    pub levels: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// `subject` (default) or `run`: what is held out.
    pub by: String,
    pub seed: u64,
    pub validation_fraction: f64,
    pub test_fraction: f64,
}

impl ProjectConfig {
    /// design.md's defaults for a dataset at `root`.
    pub fn with_defaults(root: PathBuf, source: String) -> Self {
        ProjectConfig {
            dataset: DatasetConfig { root, source, meg_source: default_meg_source(), allow_maxshield: false },
            preprocess: PreprocessConfig::default(),
            segment: SegmentConfig { window: 256, stride: 256, mode: default_mode(), tmin: default_tmin(), tmax: default_tmax(), baseline: default_baseline() },
            tokenize: TokenizeConfig { clamp_percentiles: [0.5, 99.5], mu: 255.0, levels: 255 },
            split: SplitConfig { by: "subject".into(), seed: 0, validation_fraction: 0.15, test_fraction: 0.15 },
            shards: ShardsConfig::default(),
            maxwell: MaxwellConfig::default(),
        }
    }

    /// The configuration without machine-specific paths: what goes into shards and cards,
    /// so the same data and parameters give the same bytes on any machine.
    pub fn without_paths(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        if let Some(d) = v.get_mut("dataset").and_then(|d| d.as_object_mut()) {
            d.remove("root");
        }
        v
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::format(path, "TOML", e.to_string()))
    }

    /// Writes the file atomically (temp + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# Brainformer project file, written by `bf-pipeline ingest`.\n# Every value can be overridden on the command line; names follow MNE.\n\n{}",
            toml::to_string_pretty(self).map_err(|e| Error::request(path, e.to_string()))?
        );
        crate::fsutil::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(PROJECT_FILE);
        let c = ProjectConfig::with_defaults("/data/ds".into(), "ds000117".into());
        c.save(&p).unwrap();
        assert_eq!(ProjectConfig::load(&p).unwrap(), c);
        assert!(std::fs::read_to_string(&p).unwrap().contains("l_freq = 0.1"));
    }
}
