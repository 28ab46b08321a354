//! `bf-pipeline find-bads-maxwell IN`: MNE's `find_bad_channels_maxwell` (flat and noisy MEG
//! channels). The library side is `bf_pipeline::maxwell::bads`; this file only maps arguments
//! (the SSS ones as `bf-pipeline maxwell` does) and prints the result.

use std::path::PathBuf;

use anyhow::Result;
use bf_pipeline::maxwell::{find_bad_channels_maxwell, read_head_geometry, FindBadsParams};

use super::maxwell::SssArgs;

/// Find flat and noisy MEG channels as MNE's `find_bad_channels_maxwell`.
#[derive(clap::Args, Debug)]
pub struct FindBadsMaxwellArgs {
    /// The raw FIF recording (MaxShield data accepted).
    pub input: PathBuf,
    #[command(flatten)]
    pub sss: SssArgs,
    /// z-score limit for noisy channels.
    #[arg(long, default_value_t = 7.0)]
    pub limit: f64,
    /// Low-pass cutoff in Hz applied before scoring, or `none`.
    #[arg(long, default_value = "40")]
    pub h_freq: String,
    /// Chunk length in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Chunks a channel must be bad in to be reported.
    #[arg(long, default_value_t = 5)]
    pub min_count: usize,
    /// Print the lists and MNE's per-chunk scores as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &FindBadsMaxwellArgs) -> Result<()> {
    let input = a.input.as_path();
    // MNE's find_bad_channels_maxwell: plain SSS with maxwell_filter's default orders.
    let cfg = a.sss.config(8, 3, None, 0.98, true);
    let maxwell = super::maxwell::sss_params(&cfg, "error", &a.sss)?;
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
