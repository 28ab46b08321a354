//! `bf-pipeline maxwell IN OUT`: MNE's `maxwell_filter` (SSS, `regularize='in'`, fine calibration,
//! cross-talk, tSSS)
//! streamed in time chunks into `.npy` (float64) or `.fif` (float32), written atomically.
//! The library side is `bf_pipeline::maxwell`; this file only maps arguments.

use std::path::PathBuf;

use anyhow::{bail, Result};
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::config::MaxwellConfig;
use bf_pipeline::maxwell::{BadCondition, Maxwell, MaxwellParams};
use bf_pipeline::RawReader;

/// Maxwell-filter (SSS) a Neuromag FIF recording as MNE's `maxwell_filter`; write .npy or .fif.
#[derive(clap::Args, Debug)]
pub struct MaxwellArgs {
    /// The raw FIF recording (MaxShield data accepted).
    pub input: PathBuf,
    /// Output path: `.npy` (float64, channels × samples) or `.fif` (float32).
    pub out: PathBuf,
    #[command(flatten)]
    pub sss: SssArgs,
    #[arg(long, default_value_t = 8)]
    pub int_order: usize,
    #[arg(long, default_value_t = 3)]
    pub ext_order: usize,
    /// `error` (MNE's default: refuse a basis with condition ≥ 1000) or `ignore`.
    #[arg(long, default_value = "error")]
    pub bad_condition: String,
    /// tSSS window in seconds (none: plain SSS).
    #[arg(long)]
    pub st_duration: Option<f64>,
    /// tSSS subspace correlation limit.
    #[arg(long, default_value_t = 0.98)]
    pub st_correlation: f64,
    /// tSSS in back-to-back windows (MNE's `st_overlap=False`, MaxFilter's buffers) instead
    /// of MNE's default: windows overlapping by half, Hann-weighted (st_duration × sfreq even).
    #[arg(long)]
    pub no_st_overlap: bool,
    /// Print the origin, kept moments and condition number as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The SSS set-up shared by `maxwell` and `find-bads-maxwell`: expansion origin and frame,
/// regularization, Elekta's calibration and cross-talk files.
#[derive(clap::Args, Debug, Clone)]
pub struct SssArgs {
    /// Expansion origin: `auto` or X,Y,Z in metres in the coordinate frame.
    #[arg(long, default_value = "auto", allow_hyphen_values = true)]
    pub origin: String,
    /// Coordinate frame of the origin and the reconstruction: head (MNE's default) or meg
    /// (empty-room recordings).
    #[arg(long, default_value = "head")]
    pub coord_frame: String,
    /// `in` (MNE's default: information-based selection of internal moments) or `none`.
    #[arg(long, default_value = "in")]
    pub regularize: String,
    /// Fine calibration file (Elekta `sss_cal.dat`, 1-D or 3-D).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Cross-talk matrix file (Elekta `ct_sparse.fif`).
    #[arg(long)]
    pub cross_talk: Option<PathBuf>,
}

impl SssArgs {
    /// A `[maxwell]` table with these flags and the given orders and tSSS settings.
    pub fn config(&self, int_order: usize, ext_order: usize, st_duration: Option<f64>, st_correlation: f64, st_overlap: bool) -> MaxwellConfig {
        MaxwellConfig {
            origin: self.origin.clone(),
            coord_frame: self.coord_frame.clone(),
            int_order,
            ext_order,
            regularize: self.regularize.clone(),
            st_duration,
            st_correlation,
            st_overlap,
            ..MaxwellConfig::default()
        }
    }
}

/// The SSS parameters of `maxwell`'s flags.
pub fn params(a: &MaxwellArgs) -> Result<MaxwellParams> {
    let cfg = a.sss.config(a.int_order, a.ext_order, a.st_duration, a.st_correlation, !a.no_st_overlap);
    sss_params(&cfg, &a.bad_condition, &a.sss)
}

/// The SSS parameters of a `[maxwell]` table and the command-line files, with the flags'
/// names in errors (shared with `find-bads-maxwell`).
pub fn sss_params(cfg: &MaxwellConfig, bad_condition: &str, sss: &SssArgs) -> Result<MaxwellParams> {
    let (calibration, cross_talk) = (sss.calibration.clone(), sss.cross_talk.clone());
    let bad_condition = match bad_condition {
        "error" => BadCondition::Error,
        "ignore" => BadCondition::Ignore,
        b => bail!("--bad-condition is error or ignore, got {b:?}"),
    };
    // The command takes head or meg only (it has no recording to decide "auto" from yet).
    if cfg.coord_frame == "auto" {
        bail!("--coord-frame is head or meg, got \"auto\"");
    }
    let p = MaxwellParams::from_config(cfg, calibration, cross_talk, true)
        .map_err(|e| anyhow::anyhow!("--{}", e.replace("coord_frame", "coord-frame")))?;
    Ok(MaxwellParams { bad_condition, ..p })
}

pub fn run(a: &MaxwellArgs) -> Result<()> {
    let (input, out) = (a.input.as_path(), a.out.as_path());
    let p = params(a)?;
    let opened = bf_pipeline::formats::open(input)?;
    let mx = Maxwell::open(opened.as_ref(), input, &p)?;
    let picks = mx.all_picks();
    let n = mx.info().n_samples;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    match ext.as_str() {
        "npy" => super::convert::write_npy(&mx, &picks, 0, n, out)?,
        "fif" => {
            write_raw(&mx, &picks, 0, n, out, &WriteOptions::default())?;
        }
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
    let op = &mx.operator;
    if a.json {
        let summary = serde_json::json!({
            "origin": op.origin,
            "origin_head": op.origin_head,
            "n_use_in": op.n_use_in,
            "reg_moments": op.reg_moments,
            "cond": op.cond,
            "meg_channels": op.meg_picks.len(),
            "good_channels": op.good_picks.len(),
        });
        println!("{summary}");
    } else {
        eprintln!(
            "maxwell: {} MEG channels from {} good, {} internal + {} external moments, condition {:.1}",
            op.meg_picks.len(), op.good_picks.len(), op.n_use_in, op.reg_moments.len() - op.n_use_in, op.cond
        );
    }
    Ok(())
}
