//! `bf-pipeline interpolate-bads IN OUT` and `bf-pipeline find-bads IN`: bad-channel repair
//! (MNE's spherical-spline `raw.interpolate_bads` for EEG) and detection
//! (`bf_pipeline::bads`). Both read the whole recording into memory (f64): interpolation
//! needs every good EEG channel at every sample, detection every channel's statistics.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use bf_pipeline::bads::{auto_origin, find_bad_channels, interpolate_bads_eeg, BadReason, BadsParams};
use bf_pipeline::recording::InMemory;
use serde_json::json;

/// Repair bad EEG channels by spherical-spline interpolation, as MNE's
/// `raw.interpolate_bads(reset_bads=True, origin=...)` does for EEG.
///
/// The bad EEG channels (the recording's own bads, plus --bads) are replaced by Perrin's
/// spherical splines fitted to the good EEG channels (MNE's stiffness 4, 50 Legendre terms,
/// 1e-5 regularisation, pinv). Positions come from the channel locations (a montage must
/// have been set). Afterwards the interpolated channels leave the bads list; bads of other
/// kinds (MEG, EOG, ...) are not touched and stay marked. OUT: .npy (float64, all channels,
/// file order) or .fif (float32).
#[derive(clap::Args, Debug)]
pub struct InterpolateBadsArgs {
    /// The recording to repair.
    pub input: PathBuf,
    /// Output path: `.npy` or `.fif`.
    pub out: PathBuf,
    /// Channels to mark bad in addition to the recording's own bads (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub bads: Vec<String>,
    /// Sphere origin X,Y,Z in metres, head frame (MNE's `origin`). Default: MNE's 'auto'
    /// least-squares sphere fit, done on the EEG electrode positions (MNE fits the
    /// digitised head shape when there is one: pass the origin to match it exactly).
    #[arg(long, value_delimiter = ',', num_args = 1, allow_hyphen_values = true)]
    pub origin: Option<Vec<f64>>,
}

/// Detect flat and noisy data channels (EEG, mag, grad separately) and print them.
///
/// Flat: standard deviation below an absolute limit (EEG 1e-15 V, mag 1e-17 T, grad
/// 1e-15 T/m) or below --flat-rel × the kind's median. Noisy: robust z-score (median,
/// 1.4826·MAD) of ln(variance) above --z-thresh, or of the high-frequency ratio (std of
/// the signal minus its moving average over ~1/--hf-freq seconds, over the total std)
/// above --hf-z-thresh; defaults as pyprep's deviation and HF-noise criteria. The last
/// line lists the names, ready for `interpolate-bads --bads`.
#[derive(clap::Args, Debug)]
pub struct FindBadsArgs {
    /// The recording to examine.
    pub input: PathBuf,
    /// Print JSON (names, reasons, z-scores, parameters) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Robust z-score of ln(variance) above which a channel is noisy.
    #[arg(long, default_value_t = BadsParams::default().z_thresh)]
    pub z_thresh: f64,
    /// Robust z-score of the high-frequency ratio above which a channel is noisy.
    #[arg(long, default_value_t = BadsParams::default().hf_z_thresh)]
    pub hf_z_thresh: f64,
    /// Frequency in Hz above which power counts as high-frequency noise (skipped when
    /// the sampling rate is not above twice this).
    #[arg(long, default_value_t = BadsParams::default().hf_freq)]
    pub hf_freq: f64,
    /// Flat when the standard deviation is below this fraction of the kind's median.
    #[arg(long, default_value_t = BadsParams::default().flat_rel)]
    pub flat_rel: f64,
}

/// `interpolate-bads`: checks `--origin`, then [`interpolate`].
pub fn run_interpolate(a: &InterpolateBadsArgs) -> Result<()> {
    let origin = match &a.origin {
        None => None,
        Some(v) if v.len() == 3 => Some([v[0], v[1], v[2]]),
        Some(v) => bail!("--origin takes three numbers X,Y,Z in metres, got {}", v.len()),
    };
    interpolate(&a.input, &a.out, &a.bads, origin)
}

/// `find-bads`: [`find`] with the flags' thresholds (the absolute flat limits stay
/// [`BadsParams`]' defaults).
pub fn run_find(a: &FindBadsArgs) -> Result<()> {
    let params = BadsParams { z_thresh: a.z_thresh, hf_z_thresh: a.hf_z_thresh, hf_freq: a.hf_freq, flat_rel: a.flat_rel, ..Default::default() };
    find(&a.input, &params, a.json)
}

/// The whole recording in memory: `find_bad_channels` reads it one channel at a time, which
/// from a file would read every sample-major buffer once per channel.
fn read_all(input: &Path) -> Result<InMemory> {
    let reader = bf_pipeline::formats::open(input)?;
    let info = reader.info().clone();
    let data = reader.read_f64(&reader.all_picks(), 0, info.n_samples)?;
    Ok(InMemory::new(info, data)?)
}

/// Interpolates the EEG channels among the recording's bads plus `extra_bads`, writes `out`
/// with the interpolated channels removed from the bads list (MNE's `reset_bads=True`; bads
/// of other kinds, e.g. MEG, stay).
pub fn interpolate(input: &Path, out: &Path, extra_bads: &[String], origin: Option<[f64; 3]>) -> Result<()> {
    super::convert::check_output_extension(out)?;
    let mut rec = read_all(input)?;
    let mut bads = rec.info.bads.clone();
    for b in extra_bads {
        let b = b.trim();
        if b.is_empty() {
            continue;
        }
        if rec.info.channel_index(b).is_none() {
            bail!("{}: --bads {b:?} is not a channel of the recording", input.display());
        }
        if !bads.iter().any(|x| x == b) {
            bads.push(b.to_string());
        }
    }
    let origin = match origin {
        Some(o) => o,
        None if bads.iter().any(|b| rec.info.channel_index(b).is_some_and(|i| rec.info.channels[i].kind == bf_pipeline::ChannelKind::Eeg)) => {
            let o = auto_origin(&rec.info)?;
            tracing::info!("origin fitted to the EEG positions: {:.1}, {:.1}, {:.1} mm", o[0] * 1e3, o[1] * 1e3, o[2] * 1e3);
            o
        }
        None => [0.0; 3],
    };
    let done = interpolate_bads_eeg(&rec, &bads, Some(origin))?;
    done.apply_to(&mut rec.data);
    if done.names.is_empty() {
        tracing::warn!("no bad EEG channel to interpolate; writing the recording unchanged");
    } else {
        tracing::info!("interpolated {}", done.names.join(", "));
    }
    rec.info.bads = bads.into_iter().filter(|b| !done.names.contains(b)).collect();
    super::convert::write_recording(&rec, out)
}

/// Prints the bad channels `find_bad_channels` detects (one per line, or JSON).
pub fn find(input: &Path, params: &BadsParams, as_json: bool) -> Result<()> {
    let rec = read_all(input)?;
    let found = find_bad_channels(&rec, params)?;
    if as_json {
        let rows: Vec<_> = found
            .iter()
            .map(|b| {
                let (reason, z) = match b.reason {
                    BadReason::NonFinite => ("non_finite", None),
                    BadReason::Flat => ("flat", None),
                    BadReason::NoisyVariance(z) => ("noisy_variance", Some(z)),
                    BadReason::NoisyHighFreq(z) => ("noisy_high_freq", Some(z)),
                };
                json!({
                    "name": b.name,
                    "kind": b.kind.as_str(),
                    "reason": reason,
                    "z": z,
                    "z_variance": b.z_variance,
                    "z_hf": b.z_hf,
                    "marked_bad_in_file": rec.info.bads.contains(&b.name),
                })
            })
            .collect();
        let doc = json!({
            "file": rec.info.path,
            "params": params,
            "bads": rows,
            "names": found.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if found.is_empty() {
        println!("no bad channels found");
    } else {
        let fmt = |z: Option<f64>| z.map_or("-".to_string(), |z| format!("{z:.2}"));
        println!("{:<16} {:<6} {:<16} {:>10} {:>10}", "channel", "kind", "reason", "z_var", "z_hf");
        for b in &found {
            let reason = match b.reason {
                BadReason::NonFinite => "non-finite",
                BadReason::Flat => "flat",
                BadReason::NoisyVariance(_) => "noisy-variance",
                BadReason::NoisyHighFreq(_) => "noisy-high-freq",
            };
            let marked = if rec.info.bads.contains(&b.name) { "  (already bad in file)" } else { "" };
            println!("{:<16} {:<6} {:<16} {:>10} {:>10}{marked}", b.name, b.kind.as_str(), reason, fmt(b.z_variance), fmt(b.z_hf));
        }
        println!("bads: {}", found.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(","));
    }
    Ok(())
}
