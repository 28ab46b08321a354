//! `bf-pipeline maxwell IN OUT`: MNE's `maxwell_filter` (SSS, `regularize='in'`, fine calibration,
//! cross-talk, tSSS)
//! streamed in time chunks into `.npy` (float64) or `.fif` (float32), written atomically.
//! The library side is `bf_pipeline::maxwell`; this file only maps arguments.

use std::path::Path;

use anyhow::{bail, Result};
use bf_pipeline::formats::fif::write::{write_raw, WriteOptions};
use bf_pipeline::config::MaxwellConfig;
use bf_pipeline::maxwell::{BadCondition, Maxwell, MaxwellParams};
use bf_pipeline::RawReader;

pub struct MaxwellArgs {
    pub origin: String,
    pub coord_frame: String,
    pub int_order: usize,
    pub ext_order: usize,
    pub regularize: String,
    pub bad_condition: String,
    pub calibration: Option<std::path::PathBuf>,
    pub cross_talk: Option<std::path::PathBuf>,
    pub st_duration: Option<f64>,
    pub st_correlation: f64,
    pub st_overlap: bool,
    pub json: bool,
}

pub fn params(a: &MaxwellArgs) -> Result<MaxwellParams> {
    let bad_condition = match a.bad_condition.as_str() {
        "error" => BadCondition::Error,
        "ignore" => BadCondition::Ignore,
        b => bail!("--bad-condition is error or ignore, got {b:?}"),
    };
    let cfg = MaxwellConfig {
        origin: a.origin.clone(),
        coord_frame: a.coord_frame.clone(),
        int_order: a.int_order,
        ext_order: a.ext_order,
        regularize: a.regularize.clone(),
        st_duration: a.st_duration,
        st_correlation: a.st_correlation,
        st_overlap: a.st_overlap,
        ..MaxwellConfig::default()
    };
    // The command takes head or meg only (it has no recording to decide "auto" from yet).
    if a.coord_frame == "auto" {
        bail!("--coord-frame is head or meg, got \"auto\"");
    }
    let p = MaxwellParams::from_config(&cfg, a.calibration.clone(), a.cross_talk.clone(), true)
        .map_err(|e| anyhow::anyhow!("--{}", e.replace("coord_frame", "coord-frame")))?;
    Ok(MaxwellParams { bad_condition, ..p })
}

pub fn run(input: &Path, out: &Path, a: &MaxwellArgs) -> Result<()> {
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
