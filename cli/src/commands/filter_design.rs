//! `bf-pipeline filter-design --sfreq F [--l-freq L] [--h-freq H] [--notch F1,F2,...] ...`:
//! the taps of MNE's zero-phase FIR filter (firwin design, Hamming window), as JSON.

use std::io::Write;

use anyhow::{bail, Result};
use bf_pipeline::dsp::fir::{self, FirOptions};
use serde_json::json;

pub struct FilterDesignArgs {
    pub sfreq: f64,
    pub l_freq: Option<f64>,
    pub h_freq: Option<f64>,
    pub l_trans_bandwidth: Option<f64>,
    pub h_trans_bandwidth: Option<f64>,
    pub filter_length: Option<usize>,
    pub notch: Vec<f64>,
}

pub fn run(args: FilterDesignArgs) -> Result<()> {
    let opts = FirOptions {
        l_trans_bandwidth: args.l_trans_bandwidth,
        h_trans_bandwidth: args.h_trans_bandwidth,
        filter_length: args.filter_length,
    };
    let (kind, h) = if args.notch.is_empty() {
        let kind = match (args.l_freq.filter(|&l| l != 0.0), args.h_freq) {
            (None, None) => "allpass",
            (None, Some(_)) => "lowpass",
            (Some(_), None) => "highpass",
            (Some(l), Some(h)) if l < h => "bandpass",
            _ => "bandstop",
        };
        (kind, fir::create_filter(args.sfreq, args.l_freq, args.h_freq, &opts)?)
    } else {
        if args.l_freq.is_some() || args.h_freq.is_some() {
            bail!("--notch designs a notch filter on its own: leave out --l-freq and --h-freq");
        }
        ("notch", fir::notch_filter_design(args.sfreq, &args.notch, &opts)?)
    };
    let doc = json!({
        "kind": kind,
        "sfreq": args.sfreq,
        "l_freq": args.l_freq,
        "h_freq": args.h_freq,
        "l_trans_bandwidth": args.l_trans_bandwidth,
        "h_trans_bandwidth": args.h_trans_bandwidth,
        "filter_length": h.len(),
        "notch": if args.notch.is_empty() { serde_json::Value::Null } else { json!(args.notch) },
        "h": h,
    });
    // serde_json writes f64 with the shortest representation that reads back exactly.
    // writeln! rather than println!: a closed pipe (`| head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&doc)?)?;
    Ok(())
}
