//! `bf-pipeline filter-design --sfreq F [--l-freq L] [--h-freq H] [--notch F1,F2,...] ...`:
//! the taps of MNE's zero-phase FIR filter (firwin design, Hamming window), as JSON.

use std::io::Write;

use anyhow::{bail, Result};
use bf_pipeline::dsp::fir::{self, FirOptions};
use serde_json::json;

use super::args::FilterBand;

/// Print the taps of MNE's zero-phase FIR filter as JSON (`mne.filter.create_filter` with
/// method='fir', fir_window='hamming', fir_design='firwin'; or, with --notch, the kernel
/// `mne.filter.notch_filter` applies).
///
/// --l-freq alone: high-pass; --h-freq alone: low-pass; l < h: band-pass; l > h: band-stop.
#[derive(clap::Args, Debug)]
pub struct FilterDesignArgs {
    /// Sampling frequency in Hz.
    #[arg(long)]
    pub sfreq: f64,
    #[command(flatten)]
    pub band: FilterBand,
    /// Transition bandwidth at l_freq in Hz (default: MNE's 'auto').
    #[arg(long, allow_negative_numbers = true)]
    pub l_trans_bandwidth: Option<f64>,
    /// Transition bandwidth at h_freq in Hz (default: MNE's 'auto').
    #[arg(long, allow_negative_numbers = true)]
    pub h_trans_bandwidth: Option<f64>,
    /// Filter length in samples (default: MNE's 'auto'; an even length is made odd).
    #[arg(long)]
    pub filter_length: Option<usize>,
}

pub fn run(args: &FilterDesignArgs) -> Result<()> {
    let FilterBand { l_freq, h_freq, notch } = &args.band;
    let (l_freq, h_freq) = (*l_freq, *h_freq);
    let opts = FirOptions {
        l_trans_bandwidth: args.l_trans_bandwidth,
        h_trans_bandwidth: args.h_trans_bandwidth,
        filter_length: args.filter_length,
    };
    let (kind, h) = if notch.is_empty() {
        let kind = match (l_freq.filter(|&l| l != 0.0), h_freq) {
            (None, None) => "allpass",
            (None, Some(_)) => "lowpass",
            (Some(_), None) => "highpass",
            (Some(l), Some(h)) if l < h => "bandpass",
            _ => "bandstop",
        };
        (kind, fir::create_filter(args.sfreq, l_freq, h_freq, &opts)?)
    } else {
        if l_freq.is_some() || h_freq.is_some() {
            bail!("--notch designs a notch filter on its own: leave out --l-freq and --h-freq");
        }
        ("notch", fir::notch_filter_design(args.sfreq, notch, &opts)?)
    };
    let doc = json!({
        "kind": kind,
        "sfreq": args.sfreq,
        "l_freq": l_freq,
        "h_freq": h_freq,
        "l_trans_bandwidth": args.l_trans_bandwidth,
        "h_trans_bandwidth": args.h_trans_bandwidth,
        "filter_length": h.len(),
        "notch": if notch.is_empty() { serde_json::Value::Null } else { json!(notch) },
        "h": h,
    });
    // serde_json writes f64 with the shortest representation that reads back exactly.
    // writeln! rather than println!: a closed pipe (`| head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&doc)?)?;
    Ok(())
}
