//! `bf-pipeline epochs IN OUT.npy`: cut a recording into fixed windows (MNE's
//! `make_fixed_length_epochs`) or event-locked epochs (MNE's `Epochs`, events from the stim
//! channel as `mne.find_events` or from a BIDS events.tsv), with MNE's rejection by `BAD*`
//! annotations and baseline correction, plus our flat / clipped screen
//! (`bf_pipeline::segment`, whose module doc states every rule). Writes the kept segments as
//! a 3-D float64 .npy (segments × channels × samples) and reports the drops.
//!
//! The recording is read whole into memory (f64): events, the screen and the output need most
//! of its channels at every sample.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bf_pipeline::clean::screen::{self, FlatClipParams, Stretch};
use bf_pipeline::segment::{self, EpochParams, Event, SegmentPlan};
use bf_pipeline::RawReader;
use serde_json::json;

/// Cut a recording into fixed windows or event-locked epochs, as MNE does; OUT: .npy
/// (float64, kept segments × channels × samples, channels in file order unless --picks).
///
/// Default: windows as `mne.make_fixed_length_epochs(raw, duration=window/sfreq,
/// overlap=(window-stride)/sfreq, reject_by_annotation=True)`. With --events (stim channel,
/// as `mne.find_events(raw)`) or --events-tsv (BIDS events.tsv): `mne.Epochs(raw, events,
/// tmin, tmax, baseline, reject_by_annotation=True)`. Segments overlapping a BAD*
/// annotation, or running off the data, are dropped as MNE drops them; in addition a
/// segment in which a good MEG/EEG channel is flat or clipped is dropped (see
/// bf_pipeline::segment for the thresholds). Prints what was dropped and why.
#[derive(clap::Args, Debug)]
pub struct EpochsArgs {
    /// The recording to segment.
    pub input: PathBuf,
    /// Output path (.npy).
    pub out: PathBuf,
    /// Window length in samples (fixed windows; default 256).
    #[arg(long)]
    pub window: Option<usize>,
    /// Step between window starts in samples (default: the window).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Epochs around the events of the stim channel (MNE's find_events defaults).
    #[arg(long)]
    pub events: bool,
    /// Epochs around the events of a BIDS events.tsv (id: integer `value`, else the rank
    /// of `trial_type`).
    #[arg(long)]
    pub events_tsv: Option<PathBuf>,
    /// Stim channel(s) for --events (default: STI101, STI 014, else every stim channel).
    #[arg(long, value_delimiter = ',')]
    pub stim_channel: Vec<String>,
    /// Epoch start relative to the event, seconds.
    #[arg(long, default_value_t = EpochParams::default().tmin, allow_negative_numbers = true)]
    pub tmin: f64,
    /// Epoch end (included), seconds.
    #[arg(long, default_value_t = EpochParams::default().tmax, allow_negative_numbers = true)]
    pub tmax: f64,
    /// Baseline interval A,B in seconds (None: the epoch's start / end), or `none`.
    #[arg(long, default_value = "None,0", allow_hyphen_values = true)]
    pub baseline: String,
    /// Keep only events with these ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub event_id: Vec<i64>,
    /// Channels to write: names and/or MNE types, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub picks: Vec<String>,
    /// Apply the recording's SSP projectors first (MNE's Epochs proj=True).
    #[arg(long)]
    pub proj: bool,
    /// Find flat / clipped stretches on the input's good MEG/EEG channels and add them as
    /// BAD_flat / BAD_clipped annotations before segmenting (meant for raw data).
    #[arg(long)]
    pub mark_flat_clipped: bool,
    /// Do not drop segments in which a good MEG/EEG channel is flat or clipped.
    #[arg(long)]
    pub no_reject_flat_clipped: bool,
    /// Flat segment: peak-to-peak below this fraction of the channel's median.
    #[arg(long, default_value_t = FlatClipParams::default().flat_rel)]
    pub flat_rel: f64,
    /// Flat stretch: at least this many seconds of one repeated value.
    #[arg(long, default_value_t = FlatClipParams::default().flat_min_duration)]
    pub flat_min_duration: f64,
    /// Clipped stretch: at least this many seconds at the channel's maximum or minimum.
    #[arg(long, default_value_t = FlatClipParams::default().clip_min_duration)]
    pub clip_min_duration: f64,
    /// Print a JSON summary (every candidate with its drop reason) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl EpochsArgs {
    /// The flat / clipped screen's thresholds (`bad_percent` stays the library's).
    fn flat(&self) -> FlatClipParams {
        FlatClipParams { flat_min_duration: self.flat_min_duration, clip_min_duration: self.clip_min_duration, flat_rel: self.flat_rel, ..Default::default() }
    }
}

/// Parses `--baseline`: `none`, or `A,B` where each end is a number in seconds or `None`.
pub fn parse_baseline(s: &str) -> Result<Option<(Option<f64>, Option<f64>)>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 2 {
        bail!("--baseline takes `none` or two values A,B (seconds, or None for an open end), got {s:?}");
    }
    let end = |p: &str| -> Result<Option<f64>> {
        let p = p.trim();
        if p.is_empty() || p.eq_ignore_ascii_case("none") {
            Ok(None)
        } else {
            Ok(Some(p.parse::<f64>().with_context(|| format!("--baseline: {p:?} is not a number"))?))
        }
    };
    Ok(Some((end(parts[0])?, end(parts[1])?)))
}

pub fn run(args: &EpochsArgs) -> Result<()> {
    if !args.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        bail!("{}: the output must be a .npy file", args.out.display());
    }
    let event_mode = args.events || args.events_tsv.is_some();
    if event_mode && (args.window.is_some() || args.stride.is_some()) {
        bail!("--window/--stride cut fixed windows; --events/--events-tsv cut epochs around events: give one or the other");
    }
    if args.events && args.events_tsv.is_some() {
        bail!("give --events (stim channel) or --events-tsv FILE, not both");
    }
    if !event_mode && (!args.event_id.is_empty() || !args.stim_channel.is_empty()) {
        bail!("--event-id and --stim-channel need --events or --events-tsv");
    }
    let baseline = parse_baseline(&args.baseline)?;

    let opened = bf_pipeline::formats::open(&args.input)?;
    let projected = if args.proj { bf_pipeline::proj::Projected::new(opened.as_ref())? } else { None };
    let reader: &dyn RawReader = match &projected {
        Some(p) => p,
        None => opened.as_ref(),
    };
    let mut info = reader.info().clone();
    let picks = info.resolve_picks(&args.picks)?;
    let data = reader.read_f64(&reader.all_picks(), 0, info.n_samples)?;

    let stretches: Vec<Stretch> = if args.mark_flat_clipped {
        let (bad, found) = screen::split_bad_channels(screen::find_flat_clipped(&info, data.view(), &args.flat()), info.n_samples, args.flat().bad_percent);
        for c in bad {
            let name = info.channels[c].name.clone();
            if !info.bads.contains(&name) {
                info.bads.push(name);
            }
        }
        info.annotations.extend(screen::stretch_annotations(&found, info.sfreq));
        found
    } else {
        Vec::new()
    };

    let mut events: Vec<Event> = Vec::new();
    let mut event_names = std::collections::BTreeMap::new();
    let (mut plan, window, stride) = if event_mode {
        if args.events {
            let stim: Option<Vec<usize>> = if args.stim_channel.is_empty() {
                None
            } else {
                Some(
                    args.stim_channel
                        .iter()
                        .map(|n| info.channel_index(n.trim()).with_context(|| format!("{}: --stim-channel {n:?} is not a channel", args.input.display())))
                        .collect::<Result<_>>()?,
                )
            };
            events = segment::find_events(&info, data.view(), stim.as_deref())?;
        } else if let Some(tsv) = &args.events_tsv {
            let rows = bf_pipeline::bids::read_events(tsv)?;
            let (ev, names) = segment::events_from_bids(&rows, info.sfreq).map_err(|m| anyhow::anyhow!("{}: {m}", tsv.display()))?;
            events = ev;
            event_names = names;
        }
        let params = EpochParams { tmin: args.tmin, tmax: args.tmax, baseline, event_ids: if args.event_id.is_empty() { None } else { Some(args.event_id.clone()) } };
        (segment::epochs(&info, &events, &params)?, None, None)
    } else {
        let window = args.window.unwrap_or(256);
        let stride = args.stride.unwrap_or(window);
        (segment::fixed_windows(&info, window, stride)?, Some(window), Some(stride))
    };
    if !args.no_reject_flat_clipped {
        segment::reject_flat_clipped(&mut plan, &info, &|c| data.row(c).to_vec(), &args.flat());
    }

    let out_data = segment::segment_data(&plan, data.view(), &info.channels, &picks);
    write_npy3(&args.out, out_data.dim(), out_data.iter())?;

    let counts = plan.drop_counts();
    let n_dropped: usize = counts.values().sum();
    let noun = if event_mode { "epochs" } else { "windows" };
    if args.json {
        let doc = summary_json(args, &info, &plan, &picks, &events, &event_names, &stretches, window, stride);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "kept {} of {} {noun} ({} samples, {} channels) -> {}",
            plan.n_kept(),
            plan.segments.len(),
            plan.n_times,
            picks.len(),
            args.out.display()
        );
        if n_dropped > 0 {
            let list: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("dropped {n_dropped}: {}", list.join(", "));
        } else {
            println!("dropped 0");
        }
        if plan.n_ignored > 0 {
            println!("{} events ignored by --event-id", plan.n_ignored);
        }
        if args.mark_flat_clipped {
            println!("flat/clipped stretches found: {}", stretches.len());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn summary_json(
    args: &EpochsArgs,
    info: &bf_pipeline::RecordingInfo,
    plan: &SegmentPlan,
    picks: &[usize],
    events: &[Event],
    event_names: &std::collections::BTreeMap<String, i64>,
    stretches: &[Stretch],
    window: Option<usize>,
    stride: Option<usize>,
) -> serde_json::Value {
    let segments: Vec<_> = plan
        .segments
        .iter()
        .map(|s| {
            let channel = match &s.drop {
                Some(segment::DropReason::Flat { channel }) | Some(segment::DropReason::Clipped { channel }) => Some(channel.as_str()),
                _ => None,
            };
            json!({
                "event": s.event,
                "mne_sample": s.event + info.first_samp,
                "id": s.id,
                "start": s.start,
                "onset": s.onset,
                "drop": s.drop.as_ref().map(|d| d.key()),
                "channel": channel,
            })
        })
        .collect();
    let counts = plan.drop_counts();
    json!({
        "file": info.path,
        "out": args.out,
        "mode": if window.is_some() { "windows" } else { "events" },
        "sfreq": info.sfreq,
        "first_samp": info.first_samp,
        "window": window,
        "stride": stride,
        "n_times": plan.n_times,
        "tmin": plan.times.first(),
        "tmax": plan.times.last(),
        "baseline": plan.baseline.map(|(a, b)| [a, b]),
        "channels": picks.iter().map(|&c| info.channels[c].name.as_str()).collect::<Vec<_>>(),
        "n_candidates": plan.segments.len(),
        "n_kept": plan.n_kept(),
        "n_dropped": counts.values().sum::<usize>(),
        "n_ignored": plan.n_ignored,
        "drops": counts,
        "events": events.iter().map(|e| json!({"sample": e.sample, "mne_sample": e.sample + info.first_samp, "id": e.id})).collect::<Vec<_>>(),
        "event_id": event_names,
        "flat_clip": args.flat(),
        "stretches": stretches.iter().map(|s| json!({"channel": info.channels[s.channel].name, "start": s.start, "stop": s.stop, "kind": s.kind})).collect::<Vec<_>>(),
        "segments": segments,
    })
}

/// Writes a C-ordered little-endian float64 3-D `.npy` (format 1.0), atomically.
fn write_npy3<'a>(out: &Path, (n0, n1, n2): (usize, usize, usize), values: impl Iterator<Item = &'a f64>) -> Result<()> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n0}, {n1}, {n2}), }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut header = Vec::with_capacity(total);
    header.extend_from_slice(b"\x93NUMPY\x01\x00");
    header.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(total - 1, b' ');
    header.push(b'\n');
    bf_pipeline::fsutil::write_atomic_with(out, |file| {
        let io = |e: std::io::Error| bf_pipeline::Error::io(out, e);
        let mut w = std::io::BufWriter::new(file);
        w.write_all(&header).map_err(io)?;
        for v in values {
            w.write_all(&v.to_le_bytes()).map_err(io)?;
        }
        w.flush().map_err(io)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_baseline;

    #[test]
    fn baseline_argument() {
        assert_eq!(parse_baseline("none").unwrap(), None);
        assert_eq!(parse_baseline("None,0").unwrap(), Some((None, Some(0.0))));
        assert_eq!(parse_baseline("-0.1,none").unwrap(), Some((Some(-0.1), None)));
        assert!(parse_baseline("0").is_err());
    }
}
