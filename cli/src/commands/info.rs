//! `bf-pipeline info FILE [--json]`: a recording's measurement info.

use std::path::PathBuf;

use anyhow::Result;
use bf_pipeline::recording::RecordingInfo;
use serde_json::json;

/// Print a recording's measurement info (channels, sfreq, samples, dates, bads, events).
///
/// Reads FIF (.fif, .fif.gz, split files follow), EDF/EDF+/BDF and BrainVision (.vhdr).
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The recording to describe.
    pub file: PathBuf,
    /// Print JSON instead of a human summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let reader = bf_pipeline::formats::open(&args.file)?;
    let info = reader.info();
    if args.json {
        let mut doc = info_json(info);
        doc["maxshield"] = json!(reader.maxshield());
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_summary(info);
        if reader.maxshield() {
            println!("  MaxShield (IAS) data: distorted until Maxwell-filtered (MNE reads it only with allow_maxshield)");
        }
    }
    Ok(())
}

/// The JSON document of `info --json`: stable keys other tools (and our tests) read.
pub fn info_json(info: &RecordingInfo) -> serde_json::Value {
    let channels: Vec<_> = info
        .channels
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "kind": c.kind.as_str(),
                "unit": c.unit.symbol(),
                "unit_fiff": c.unit.0,
                "fiff_kind": c.fiff_kind,
                "coil_type": c.coil_type,
                "cal": c.cal,
                "range": c.range,
                "loc": c.loc,
            })
        })
        .collect();
    json!({
        "file": info.path,
        "format": info.format,
        "sfreq": info.sfreq,
        "n_samples": info.n_samples,
        "first_samp": info.first_samp,
        "duration": info.duration(),
        "meas_date": info.meas_date.map(|d| iso8601(d.secs, d.usecs)),
        "meas_date_secs": info.meas_date.map(|d| [d.secs, d.usecs]),
        "bads": info.bads,
        "highpass": info.highpass,
        "lowpass": info.lowpass,
        "line_freq": info.line_freq,
        "comp_grade": info.comp_grade,
        "discontinuous": info.discontinuous,
        // cHPI coils (FIF hpi_meas/hpi_subsystem) and the active coils' frequencies, as
        // MNE's get_chpi_info gives them; null without cHPI information.
        "chpi": info.chpi.as_ref().map(|c| json!({
            "coils": c.coils, "event_bits": c.event_bits, "event_channel": c.event_channel,
            "active_freqs": c.active_freqs().ok(),
        })),
        "projs": info.projs.iter().map(|p| json!({
            "desc": p.desc, "kind": p.kind, "active": p.active,
            "n_vectors": p.vectors.len(), "ch_names": p.ch_names,
        })).collect::<Vec<_>>(),
        "annotations": info.annotations,
        "channels": channels,
    })
}

fn print_summary(info: &RecordingInfo) {
    println!("{} ({})", info.path.display(), info.format);
    println!(
        "  {} channels, {} samples at {} Hz ({:.3} s), first_samp {}",
        info.n_channels(),
        info.n_samples,
        info.sfreq,
        info.duration(),
        info.first_samp
    );
    match info.meas_date {
        Some(d) => println!("  measured {}", iso8601(d.secs, d.usecs)),
        None => println!("  measurement date unknown"),
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for ch in &info.channels {
        match counts.iter_mut().find(|(k, _)| *k == ch.kind.as_str()) {
            Some((_, n)) => *n += 1,
            None => counts.push((ch.kind.as_str(), 1)),
        }
    }
    let kinds: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("  {}", kinds.join(", "));
    println!("  bads: {}", if info.bads.is_empty() { "none".into() } else { info.bads.join(", ") });
    println!("  {} annotations, {} projectors", info.annotations.len(), info.projs.len());
}

/// ISO 8601 with an explicit UTC offset, as MNE prints `meas_date`.
pub fn iso8601(secs: i64, usecs: i64) -> String {
    format!("{}+00:00", bf_pipeline::recording::MeasDate { secs, usecs }.iso_utc())
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_known_dates() {
        assert_eq!(super::iso8601(0, 0), "1970-01-01T00:00:00.000000+00:00");
        // 2002-12-03 19:01:10.720100 UTC is the date of MNE's sample recording.
        assert_eq!(super::iso8601(1_038_942_070, 720_100), "2002-12-03T19:01:10.720100+00:00");
    }
}
