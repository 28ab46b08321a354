//! `bf-pipeline find-bads-maxwell IN`: MNE's `find_bad_channels_maxwell` (flat and noisy MEG
//! channels). The library side is `bf_pipeline::maxwell::bads`; this file only maps arguments
//! (the SSS ones as `bf-pipeline maxwell` does) and prints the result.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bf_pipeline::maxwell::{find_bad_channels_maxwell, read_head_geometry, FindBadsParams};

use super::maxwell::MaxwellArgs;

pub struct FindBadsArgs {
    pub origin: String,
    pub coord_frame: String,
    pub regularize: String,
    pub calibration: Option<PathBuf>,
    pub cross_talk: Option<PathBuf>,
    pub limit: f64,
    /// Low-pass cutoff in Hz, or `none`.
    pub h_freq: String,
    pub duration: f64,
    pub min_count: usize,
    pub json: bool,
}

pub fn run(input: &Path, a: &FindBadsArgs) -> Result<()> {
    let maxwell = super::maxwell::params(&MaxwellArgs {
        origin: a.origin.clone(),
        coord_frame: a.coord_frame.clone(),
        int_order: 8,
        ext_order: 3,
        regularize: a.regularize.clone(),
        bad_condition: "error".into(),
        calibration: a.calibration.clone(),
        cross_talk: a.cross_talk.clone(),
        st_duration: None,
        st_correlation: 0.98,
        st_overlap: true,
        json: false,
    })?;
    let h_freq = match a.h_freq.as_str() {
        "none" => None,
        h => Some(h.parse::<f64>().map_err(|_| anyhow::anyhow!("--h-freq takes a frequency in Hz or `none`, got {h:?}"))?),
    };
    let p = FindBadsParams { maxwell, limit: a.limit, duration: a.duration, min_count: a.min_count, h_freq };
    let opened = bf_pipeline::formats::open(input)?;
    let geom = read_head_geometry(input)?;
    let bads = find_bad_channels_maxwell(opened.as_ref(), &geom, &p)?;
    if a.json {
        // NaN scores (bad or unscored channels) come out as null.
        println!("{}", serde_json::to_string(&bads)?);
    } else {
        println!("noisy ({}): {}", bads.noisy.len(), bads.noisy.join(" "));
        println!("flat ({}): {}", bads.flat.len(), bads.flat.join(" "));
    }
    Ok(())
}
