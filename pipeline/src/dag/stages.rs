//! What each stage does to make its outputs, and the parameters that go into its key.
//! The engine ([`super`]) decides when; this file decides how. Every output is written
//! atomically (temp + rename), and nothing here depends on thread scheduling.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{Node, Project, RunEntry, Stage};
use crate::clean::maxwell::{find_bad_channels_maxwell, read_head_geometry, CoordFrame, FindBadsParams, Maxwell, MaxwellParams};
use crate::clean::bads::{find_bad_channels, interpolate_bads_eeg, BadReason, BadsParams};
use crate::bids::{open_with_bids_at, Dataset};
use crate::clean::{clean, CleanParams};
use crate::clean::chpi::{ChpiFilter, ChpiParams};
use crate::clean::stored::StoredCopy;
use crate::config::{FilterChpi, ProjectConfig};
use crate::error::{Error, Result};
use crate::formats::fif::write::{write_raw, WriteOptions};
use crate::recording::{ChannelKind, RawReader, RecordingInfo};
use crate::bids::read_events;
use crate::clean::screen::FlatClipParams;
use crate::segment::{apply_baseline, epochs, events_from_bids, fixed_windows, reject_flat_clipped, EpochParams};
use crate::shards::{read_key_value_metadata, write_dataset_card, write_run_file, write_split_shards, CardInfo, ShardKind, ShardMeta, SplitCard, WindowData, WindowRow};
use crate::tokenize::{Tokenizer, TokenizerFit, DEFAULT_FIT_CAP};


pub fn preprocess_params(cfg: &ProjectConfig, run: &RunEntry) -> Value {
    let b = BadsParams::default();
    let mut v = json!({
        "input": run.input_hash,
        "preprocess": cfg.preprocess,
        "bads": {"z_thresh": b.z_thresh, "hf_z_thresh": b.hf_z_thresh, "hf_freq": b.hf_freq, "flat_rel": b.flat_rel,
                  "eeg_interpolation": "spherical spline (MNE interpolate_bads, origin auto)", "meg": "marked, kept"},
    });
    // Only where it applies, so runs without Maxwell filtering keep their keys.
    if let Some(m) = &run.maxwell {
        v["maxwell"] = json!({"config": cfg.maxwell, "files": m.files_hash});
    }
    // filter_chpi where it may apply (whether the file carries cHPI is its content, keyed above).
    if chpi_may_apply(cfg, run) {
        let p = ChpiParams::default();
        v["filter_chpi"] = json!({"mode": cfg.preprocess.filter_chpi, "t_step": p.t_step, "t_window": "auto", "include_line": p.include_line,
                                  "line_freq": "FIF line_freq, else the sidecar's PowerLineFrequency"});
    }
    v
}

/// `[preprocess] filter_chpi` may apply to this run: `true`, or `"auto"` where Maxwell
/// filtering applies (raw Neuromag FIF with site files).
pub(super) fn chpi_may_apply(cfg: &ProjectConfig, run: &RunEntry) -> bool {
    match cfg.preprocess.filter_chpi {
        FilterChpi::Off => false,
        FilterChpi::On => true,
        FilterChpi::Auto => run.maxwell.is_some(),
    }
}

/// Whether the cHPI-filtered MEG of a Maxwell-filtered run is read more than once (by
/// find_bad_channels_maxwell or the tSSS corrections, then the filter's own pass), and so is
/// fitted once into a scratch copy ([`StoredCopy`]) rather than refitted on each read.
pub(super) fn chpi_output_stored(cfg: &ProjectConfig) -> bool {
    cfg.maxwell.find_bads || cfg.maxwell.st_duration.is_some()
}

/// Neuromag/Elekta/MEGIN sensors (VectorView and TRIUX gradiometers and magnetometers):
/// what MNE's Maxwell filter has coil definitions and calibration files for.
fn has_neuromag_meg(info: &RecordingInfo) -> bool {
    info.channels.iter().any(|c| c.kind.is_meg() && matches!(c.coil_type & 0xFFFF, 3012 | 3013 | 3014 | 3022 | 3023 | 3024))
}

pub fn segment_params(cfg: &ProjectConfig) -> Value {
    json!({"segment": cfg.segment})
}

pub fn split_params(project: &Project) -> Value {
    let units: Vec<&str> = project.runs.iter().map(|r| if project.config.split.by == "run" { r.id.as_str() } else { r.subject.as_str() }).collect();
    json!({"split": project.config.split, "units": units})
}

pub fn tokenizer_params(cfg: &ProjectConfig) -> Value {
    json!({"tokenize": cfg.tokenize})
}

pub fn shards_params(project: &Project) -> Value {
    json!({"config": project.config.without_paths(), "max_shard_bytes": project.config.shards.max_shard_bytes})
}

/// Builds one target; returns its output files and messages for the user.
/// Every stage reads its inputs from disk (nothing is handed over in memory), which is what
/// lets `--shard` tasks on other machines share the work through the filesystem.
pub fn build(project: &Project, node: &Node) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let t0 = std::time::Instant::now();
    let _done = Deferred(move || tracing::debug!(stage = node.stage.name(), run = ?node.run, seconds = t0.elapsed().as_secs_f64(), "stage built"));
    match node.stage {
        Stage::Preprocess => preprocess(project, &project.runs[node.run.expect("per-run")]),
        Stage::Segment => segment(project, &project.runs[node.run.expect("per-run")]),
        Stage::Split => write_splits(project),
        Stage::FitTokenizer => fit_tokenizer(project),
        Stage::Tokenize => tokenize(project, node.run.expect("per-run")),
        Stage::Shards => write_shards(project),
    }
}

/// Runs its closure when dropped (the stage timing above, on success and on error alike).
struct Deferred<F: FnMut()>(F);

impl<F: FnMut()> Drop for Deferred<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A reader whose measurement info is replaced (BIDS channels.tsv types and bads win).
struct WithInfo<'a> {
    inner: &'a dyn RawReader,
    info: RecordingInfo,
}

impl RawReader for WithInfo<'_> {
    fn info(&self) -> &RecordingInfo {
        &self.info
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        self.inner.read_into_f64(picks, start, stop, out)
    }
    fn read_into_f32(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f32]) -> Result<()> {
        self.inner.read_into_f32(picks, start, stop, out)
    }
    fn rereads_are_cheap(&self) -> bool {
        self.inner.rereads_are_cheap()
    }
}

fn reason_text(r: &BadReason) -> String {
    match r {
        BadReason::NonFinite => "non-finite samples".into(),
        BadReason::Flat => "flat".into(),
        BadReason::NoisyVariance(z) => format!("noisy: variance z = {z:.1}"),
        BadReason::NoisyHighFreq(z) => format!("noisy: high-frequency z = {z:.1}"),
    }
}

/// Read → band-pass/notch/resample → bad channels → EEG interpolation → cleaned FIF + sidecar.
fn preprocess(project: &Project, run: &RunEntry) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let cfg = &project.config.preprocess;
    let ds = Dataset::open(&project.root)?;
    let mut warnings = Vec::new();
    let (reader, mut info) = open_with_bids_at(&ds, &run.file, &run.anchor, &run.datatype, &mut warnings)?;
    let mut messages = Vec::new();
    let maxwell = match &run.maxwell {
        Some(m) if has_neuromag_meg(&info) => Some(m),
        Some(_) if project.config.maxwell.apply == "on" => {
            return Err(Error::request(&run.file, "[maxwell] apply = \"on\", but the recording has no Neuromag/Elekta/MEGIN MEG channels"));
        }
        Some(_) => {
            messages.push(format!("{}: not Neuromag MEG, Maxwell filter skipped", run.id));
            None
        }
        None => None,
    };
    if reader.maxshield() && maxwell.is_none() && !project.config.dataset.allow_maxshield {
        return Err(Error::request(
            &run.file,
            "MaxShield (IAS) data, distorted until Maxwell-filtered: use meg_source = \"proc-sss\" where the dataset has MaxFilter output, [maxwell] apply = \"on\" with the site's calibration files, or allow_maxshield = true in brainformer.toml (ingest --allow-maxshield) to take it as it is",
        ));
    }
    // Ingest already reported the sidecar quirks it tolerated, once per dataset.
    for w in warnings {
        tracing::debug!("{w}");
    }
    let bids_bads = info.bads.clone();
    // MNE's filter_chpi on the raw MEG, before find_bad_channels_maxwell and maxwell_filter
    // (fitting after Maxwell filtering "may not work", MNE warns).
    let has_chpi = info.chpi.as_ref().and_then(|c| c.active_freqs().ok()).is_some_and(|f| !f.is_empty());
    let apply_chpi = match project.config.preprocess.filter_chpi {
        FilterChpi::Off => false,
        FilterChpi::On => info.channels.iter().any(|c| c.kind.is_meg()),
        FilterChpi::Auto => maxwell.is_some() && has_chpi,
    };
    let mut chpi_record = Value::Null;
    let chpi_probe;
    let chpi_reader;
    let raw: &dyn RawReader = if apply_chpi {
        if info.line_freq.is_none() {
            let side = ds.sidecar_json(&run.anchor, &run.datatype).ok();
            info.line_freq = side.and_then(|s| s.get("PowerLineFrequency").and_then(|v| v.as_f64())).filter(|f| *f > 0.0);
        }
        if info.line_freq.is_none() && project.config.preprocess.filter_chpi == FilterChpi::Auto {
            messages.push(format!("{}: no line frequency (FIF line_freq or the sidecar's PowerLineFrequency), filter_chpi skipped", run.id));
            reader.as_ref()
        } else {
            chpi_probe = WithInfo { inner: reader.as_ref(), info: info.clone() };
            chpi_reader = ChpiFilter::new(&chpi_probe, &ChpiParams::default())?;
            let setup = &chpi_reader.setup;
            chpi_record = json!({
                "method": "MNE filter_chpi (t_step 0.01 s, t_window auto, include_line, interp hann), on the raw MEG before Maxwell filtering",
                "hpi_freqs": setup.hpi_freqs,
                "line_freqs": setup.line_freqs,
                "t_window": setup.t_window,
                "n_meg_channels": setup.n_meg,
            });
            &chpi_reader
        }
    } else {
        reader.as_ref()
    };
    // The scratch copies go to --scratch, else beside the output; removed when done.
    let scratch = project.scratch.clone().unwrap_or_else(|| project.run_dir(run));
    let stored;
    let t0 = std::time::Instant::now();
    let raw: &dyn RawReader = if !chpi_record.is_null() && maxwell.is_some() && chpi_output_stored(&project.config) {
        let meg: Vec<usize> = info.channels.iter().enumerate().filter(|(_, c)| c.kind.is_meg()).map(|(i, _)| i).collect();
        stored = StoredCopy::new(raw, &meg, &scratch)?;
        tracing::debug!(run = %run.id, chpi_s = t0.elapsed().as_secs_f64(), "cHPI-filtered MEG stored");
        &stored
    } else {
        raw
    };
    let mut maxwell_record = Value::Null;
    let with_info;
    let filtered;
    let reader: &dyn RawReader = match maxwell {
        None => {
            with_info = WithInfo { inner: raw, info };
            &with_info
        }
        Some(m) => {
            let geom = read_head_geometry(&run.file)?;
            let params = MaxwellParams::from_config(&project.config.maxwell, m.calibration.clone(), m.cross_talk.clone(), geom.dev_head_t.is_some())
                .map_err(|e| Error::request(&run.file, format!("[maxwell] in brainformer.toml: {e}")))?;
            let mut found = json!(null);
            if project.config.maxwell.find_bads {
                let probe = WithInfo { inner: raw, info: info.clone() };
                let fb = FindBadsParams { maxwell: MaxwellParams { st_duration: None, ..params.clone() }, ..FindBadsParams::default() };
                let b = find_bad_channels_maxwell(&probe, &geom, &fb)?;
                tracing::debug!(run = %run.id, find_bads_s = t0.elapsed().as_secs_f64(), "find_bad_channels_maxwell done");
                for name in b.noisy.iter().chain(&b.flat) {
                    if !info.bads.contains(name) {
                        info.bads.push(name.clone());
                    }
                }
                found = json!({"noisy": b.noisy, "flat": b.flat});
            }
            let reconstructed: Vec<String> = info.bads.iter().filter(|b| info.channels.iter().any(|c| &c.name == *b && c.kind.is_meg())).cloned().collect();
            with_info = WithInfo { inner: raw, info };
            filtered = Maxwell::with_geometry(&with_info, &geom, &params)?;
            let op = &filtered.operator;
            let rel = |p: &Option<PathBuf>| p.as_ref().map(|p| p.strip_prefix(&project.root).unwrap_or(p).display().to_string());
            maxwell_record = json!({
                "method": "MNE maxwell_filter (SSS; tSSS when st_duration is set)",
                "config": project.config.maxwell,
                "calibration": rel(&m.calibration),
                "cross_talk": rel(&m.cross_talk),
                "coord_frame": match params.coord_frame { CoordFrame::Head => "head", CoordFrame::Meg => "meg" },
                "origin": op.origin,
                "n_internal_moments": op.n_use_in,
                "n_external_moments": op.reg_moments.len() - op.n_use_in,
                "condition": op.cond,
                "bads_found": found,
                "reconstructed": reconstructed,
            });
            &filtered
        }
    };
    let params = CleanParams {
        l_freq: Some(cfg.l_freq),
        h_freq: Some(cfg.h_freq),
        notch: cfg.notch.clone(),
        sfreq: Some(cfg.sfreq),
        screen: Some(FlatClipParams::default()),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let mut cleaned = clean(reader, &params, &scratch, &|| {})?;
    tracing::debug!(run = %run.id, clean_s = t0.elapsed().as_secs_f64(), "cleaned");

    // After Maxwell filtering the MEG bads are reconstructed channels (its reader cleared them).
    // The flat/clipped screen adds the channels flat or clipped over more than bad_percent of
    // the run (MNE's annotate_amplitude): they are bads, not annotations.
    let screen_bads: Vec<String> = cleaned.info.bads.iter().filter(|b| !reader.info().bads.contains(b)).cloned().collect();
    let kept_bads = cleaned.info.bads.clone();
    let detected: Vec<_> = find_bad_channels(&cleaned, &BadsParams::default())?.into_iter().filter(|b| !kept_bads.contains(&b.name)).collect();
    let mut bads = kept_bads;
    bads.extend(detected.iter().map(|b| b.name.clone()));
    let kind_of = |name: &str| cleaned.info.channels.iter().find(|c| c.name == name).map(|c| c.kind);
    let eeg_bads: Vec<String> = bads.iter().filter(|b| kind_of(b) == Some(ChannelKind::Eeg)).cloned().collect();
    let interpolated = if eeg_bads.is_empty() {
        vec![]
    } else {
        match interpolate_bads_eeg(&cleaned, &eeg_bads, None) {
            Ok(done) => {
                for (&c, row) in done.channels.iter().zip(done.rows.outer_iter()) {
                    cleaned.set_row(c, row.to_vec())?;
                }
                done.names
            }
            Err(e) => {
                messages.push(format!("{}: EEG bads kept as they are, not interpolated: {e}", run.id));
                vec![]
            }
        }
    };
    let remaining: Vec<String> = bads.iter().filter(|b| !interpolated.contains(b)).cloned().collect();
    cleaned.info.bads = remaining.clone();

    tracing::debug!(run = %run.id, bads_s = t0.elapsed().as_secs_f64(), "bads found and EEG bads interpolated");
    let fif = project.run_file(run, "desc-clean_meg.fif");
    let written = write_raw(&cleaned, &cleaned.all_picks(), 0, cleaned.info.n_samples, &fif, &WriteOptions::default())?;
    tracing::debug!(run = %run.id, written_s = t0.elapsed().as_secs_f64(), "cleaned FIF written");
    let sidecar = project.run_file(run, "desc-clean_meg.json");
    let description = json!({
        "Description": if maxwell_record.is_null() {
            "Cleaned continuous data: band-pass, notch, resampling (MNE's FIR design and FFT resampling), bad channels detected and EEG bads interpolated."
        } else {
            "Cleaned continuous data: Maxwell filtering of the MEG (MNE's maxwell_filter, after find_bad_channels_maxwell), band-pass, notch, resampling (MNE's FIR design and FFT resampling), bad channels detected and EEG bads interpolated."
        },
        "Sources": [format!("bids:{}:{}", if run.file == run.anchor { "raw" } else { "derivatives" }, run.file.strip_prefix(&project.root).unwrap_or(&run.file).display())],
        "SamplingFrequency": cleaned.info.sfreq,
        "HighpassFilter": cfg.l_freq,
        "LowpassFilter": cfg.h_freq,
        "NotchFrequencies": cfg.notch,
        "Parameters": preprocess_params(&project.config, run),
        "FilterChpi": chpi_record,
        "MaxwellFilter": maxwell_record,
        "BadChannels": {
            "from_channels_tsv": bids_bads,
            "detected": screen_bads.iter().map(|b| json!({"name": b, "reason": format!("flat or clipped over more than {}% of the run (annotate_amplitude's bad_percent)", FlatClipParams::default().bad_percent)}))
                .chain(detected.iter().map(|b| json!({"name": b.name, "reason": reason_text(&b.reason)}))).collect::<Vec<_>>(),
            "interpolated": interpolated,
            "remaining": remaining,
        },
        "GeneratedBy": [{"Name": "brainformer", "Version": env!("CARGO_PKG_VERSION"), "Stage": "preprocess", "CodeVersion": Stage::Preprocess.code_version()}],
    });
    crate::fsutil::write_atomic(&sidecar, serde_json::to_string_pretty(&description).expect("JSON").as_bytes())?;
    let mut outputs = written;
    outputs.push(sidecar);
    Ok((outputs, messages))
}

/// Split of every run: `train`, `validation` or `test`, by subject (default) or by run.
///
/// Units (subjects or runs) are ordered by BLAKE3(seed, unit): the order is a fixed random
/// permutation, independent of how many units there are, so adding a subject moves no other.
/// The first `round(test_fraction·n)` go to test, the next `round(validation_fraction·n)` to
/// validation (each at least one when there are three units or more), the rest to train.
pub fn assign_splits(project: &Project) -> Vec<&'static str> {
    let split = &project.config.split;
    let unit = |r: &RunEntry| if split.by == "run" { r.id.clone() } else { r.subject.clone() };
    let mut units: Vec<String> = project.runs.iter().map(unit).collect();
    units.sort();
    units.dedup();
    let n = units.len();
    let count = |f: f64| {
        let k = (f * n as f64).round() as usize;
        if n >= 3 && f > 0.0 { k.max(1) } else { k }
    };
    let n_test = count(split.test_fraction).min(n.saturating_sub(1));
    let n_val = count(split.validation_fraction).min(n.saturating_sub(1 + n_test));
    units.sort_by_key(|u| blake3::hash(format!("{}\0{u}", split.seed).as_bytes()).to_hex().to_string());
    project
        .runs
        .iter()
        .map(|r| {
            let pos = units.iter().position(|u| *u == unit(r)).expect("every run's unit is listed");
            if pos < n_test {
                "test"
            } else if pos < n_test + n_val {
                "validation"
            } else {
                "train"
            }
        })
        .collect()
}

pub fn splits_path(project: &Project) -> PathBuf {
    project.derivatives().join("splits.json")
}

fn write_splits(project: &Project) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let assignment = assign_splits(project);
    let runs: serde_json::Map<String, Value> = project.runs.iter().zip(&assignment).map(|(r, s)| (r.id.clone(), json!(s))).collect();
    let path = splits_path(project);
    let body = json!({"rule": project.config.split, "runs": runs});
    crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&body).expect("JSON").as_bytes())?;
    Ok((vec![path], vec![]))
}

fn clean_fif(project: &Project, run: &RunEntry) -> PathBuf {
    project.run_file(run, "desc-clean_meg.fif")
}

fn windows_path(project: &Project, run: &RunEntry) -> PathBuf {
    project.run_file(run, "desc-windows_meg.json")
}

/// The per-run file of the tokenize stage: tokens, or f32 windows for continuous shards (each
/// kind its own file, so both can be built and kept).
fn tokens_path(project: &Project, run: &RunEntry) -> PathBuf {
    project.run_file(run, if project.continuous() { "desc-continuous_meg.parquet" } else { "desc-tokens_meg.parquet" })
}

pub fn tokenizer_path(project: &Project) -> PathBuf {
    project.derivatives().join("tokenizer.json")
}

/// The kept windows of a run: (index among all candidates, first sample, onset seconds).
type Kept = Vec<(u32, usize, f64)>;

/// A run's segmentation as the later stages need it.
struct Windows {
    kept: Kept,
    /// Samples per window (the window length, or the epoch length).
    n_times: usize,
    /// Baseline range within a window, subtracted per channel (epochs).
    baseline: Option<(usize, usize)>,
}

fn read_windows(path: &std::path::Path) -> Result<Windows> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::format(path, "JSON", e.to_string()))?;
    let bad = || Error::format(path, "windows JSON", "missing `n_times` or malformed `baseline`");
    let n_times = v["n_times"].as_u64().ok_or_else(bad)? as usize;
    let baseline = match &v["baseline"] {
        Value::Null => None,
        b => Some((b[0].as_u64().ok_or_else(bad)? as usize, b[1].as_u64().ok_or_else(bad)? as usize)),
    };
    let bad_kept = || Error::format(path, "windows JSON", "`kept` is not a list of [index, start, onset]");
    let kept = v["kept"]
        .as_array()
        .ok_or_else(bad_kept)?
        .iter()
        .map(|w| Ok((w[0].as_u64().ok_or_else(bad_kept)? as u32, w[1].as_u64().ok_or_else(bad_kept)? as usize, w[2].as_f64().ok_or_else(bad_kept)?)))
        .collect::<Result<Kept>>()?;
    Ok(Windows { kept, n_times, baseline })
}

/// One window of channels `picks` as f32, baseline-corrected in f64 first when asked (as
/// MNE's `Epochs` does; every EEG/MEG channel is a baseline channel there).
fn read_window(reader: &dyn RawReader, picks: &[usize], start: usize, w: &Windows) -> Result<ndarray::Array2<f32>> {
    let mut x = reader.read_f64(picks, start, start + w.n_times)?;
    if let Some(range) = w.baseline {
        apply_baseline(x.view_mut(), range, &vec![true; picks.len()]);
    }
    Ok(x.mapv(|v| v as f32))
}

/// Cuts the cleaned run into fixed windows, drops those touching BAD annotations (including
/// preprocess's BAD_flat / BAD_clipped) or flat in a good data channel; writes the list.
fn segment(project: &Project, run: &RunEntry) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let cfg = &project.config.segment;
    let fif = clean_fif(project, run);
    let reader = crate::formats::open(&fif)?;
    let info = reader.info().clone();
    // Whole rows as f32 where exact (half of an f64 copy: first-touched memory is dear).
    let rows = crate::clean::AllRows::read(reader.as_ref())?;
    let mut plan = if cfg.mode == "epochs" {
        let ds = Dataset::open(&project.root)?;
        let tsv = ds.sidecar_tsv(&run.anchor, "events")?.ok_or_else(|| Error::request(&run.anchor, "segment mode `epochs` needs an events.tsv for this run"))?;
        let (events, _) = events_from_bids(&read_events(&tsv)?, info.sfreq).map_err(|e| Error::format(&tsv, "BIDS", e))?;
        let params = EpochParams { tmin: cfg.tmin, tmax: cfg.tmax, baseline: cfg.baseline.then_some((None, Some(0.0))), event_ids: None };
        epochs(&info, &events, &params)?
    } else {
        fixed_windows(&info, cfg.window, cfg.stride)?
    };
    reject_flat_clipped(&mut plan, &info, &|c| rows.row(c), &FlatClipParams::default());
    let kept: Vec<Value> = plan
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_kept())
        .map(|(i, s)| json!([i, s.start, s.onset]))
        .collect();
    let body = json!({
        "run": run.id, "sfreq": info.sfreq, "mode": cfg.mode, "n_times": plan.n_times, "baseline": plan.baseline,
        "n_candidates": plan.segments.len(), "n_kept": kept.len(), "dropped": plan.drop_counts(),
        "kept": kept,
    });
    let path = windows_path(project, run);
    crate::fsutil::write_atomic(&path, serde_json::to_string(&body).expect("JSON").as_bytes())?;
    let mut messages = vec![];
    if kept.is_empty() {
        messages.push(format!("{}: no window kept ({} candidates; dropped: {:?})", run.id, plan.segments.len(), plan.drop_counts()));
    }
    Ok((vec![path], messages))
}

/// EEG then MEG channel indices of a cleaned run (EEG = `eeg` type after channels.tsv; MEG =
/// magnetometers and gradiometers), in file order.
fn modality_picks(info: &RecordingInfo) -> (Vec<usize>, Vec<usize>) {
    let pick = |f: &dyn Fn(ChannelKind) -> bool| info.channels.iter().enumerate().filter(|(_, c)| f(c.kind)).map(|(i, _)| i).collect::<Vec<_>>();
    (pick(&|k| k == ChannelKind::Eeg), pick(&|k| k.is_meg()))
}

fn channel_names(info: &RecordingInfo, picks: &[usize]) -> Vec<String> {
    picks.iter().map(|&i| info.channels[i].name.clone()).collect()
}

/// The kept windows of one run, channels `picks`, concatenated in time (f32).
fn kept_windows(reader: &dyn RawReader, picks: &[usize], w: &Windows) -> Result<ndarray::Array2<f32>> {
    use rayon::prelude::*;
    let n = w.n_times;
    let mut out = ndarray::Array2::<f32>::zeros((picks.len(), w.kept.len() * n));
    // Read (decoded, baseline-corrected) on every core a batch at a time, placed in order.
    let batch = rayon::current_num_threads() * 8;
    for (b, group) in w.kept.chunks(batch).enumerate() {
        let read = group.par_iter().map(|&(_, start, _)| read_window(reader, picks, start, w)).collect::<Result<Vec<_>>>()?;
        for (j, x) in read.iter().enumerate() {
            let k = b * batch + j;
            out.slice_mut(ndarray::s![.., k * n..(k + 1) * n]).assign(x);
        }
    }
    Ok(out)
}

/// Fits the tokenizer's per-channel clamp on the training runs' kept windows only.
fn fit_tokenizer(project: &Project) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let assignment = assign_splits(project);
    let train: Vec<&RunEntry> = project.runs.iter().zip(&assignment).filter(|(_, s)| **s == "train").map(|(r, _)| r).collect();
    let first = train.first().ok_or_else(|| Error::request(&project.root, "no run in the training split: add subjects or lower validation/test fractions"))?;
    let info0 = crate::formats::open(&clean_fif(project, first))?.info().clone();
    let (eeg0, meg0) = modality_picks(&info0);
    if eeg0.is_empty() || meg0.is_empty() {
        return Err(Error::request(
            &clean_fif(project, first),
            format!("{} EEG and {} MEG channels after channels.tsv: EEG→MEG shards need both", eeg0.len(), meg0.len()),
        ));
    }
    let names: Vec<String> = channel_names(&info0, &eeg0).into_iter().chain(channel_names(&info0, &meg0)).collect();
    let kept: Vec<Windows> = train.iter().map(|r| read_windows(&windows_path(project, r))).collect::<Result<_>>()?;
    let total: u64 = kept.iter().map(|k| (k.kept.len() * k.n_times) as u64).sum();
    let mut fit = TokenizerFit::new(names.clone(), &project.config.tokenize, total, DEFAULT_FIT_CAP);
    for (r, k) in train.iter().zip(&kept) {
        let reader = crate::formats::open(&clean_fif(project, r))?;
        let (eeg, meg) = modality_picks(reader.info());
        let picks: Vec<usize> = eeg.iter().chain(&meg).copied().collect();
        if channel_names(reader.info(), &picks) != names {
            return Err(Error::request(&clean_fif(project, r), format!("its EEG/MEG channels differ from {}'s; all runs must share one montage", first.id)));
        }
        fit.add_run(&r.id, kept_windows(reader.as_ref(), &picks, k)?.view())?;
    }
    let stride = fit.stride();
    let tokenizer = fit.finish()?;
    let path = tokenizer_path(project);
    tokenizer.save(&path)?;
    // What the fit saw, for audits: only training runs, never validation or test.
    let record = project.derivatives().join("tokenizer_fit.json");
    let body = json!({
        "fitted_on_runs": train.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        "samples_per_channel": total,
        "subsample_stride": stride,
        "clamp_percentiles": project.config.tokenize.clamp_percentiles,
    });
    crate::fsutil::write_atomic(&record, serde_json::to_string_pretty(&body).expect("JSON").as_bytes())?;
    Ok((vec![path, record], vec![]))
}

fn shard_meta(project: &Project, window: usize, eeg: Vec<String>, meg: Vec<String>, tokenizer: Option<Tokenizer>) -> ShardMeta {
    let kind = ShardKind::parse(&project.config.shards.kind).unwrap_or(ShardKind::Tokens);
    ShardMeta {
        eeg_channels: eeg,
        meg_channels: meg,
        sfreq: project.config.preprocess.sfreq,
        window,
        kind,
        params_json: project.config.without_paths().to_string(),
        tokenizer: if kind == ShardKind::Tokens { tokenizer } else { None },
    }
}

/// Tokenizes (or, in continuous mode, copies as f32) every kept window of one run.
fn tokenize(project: &Project, r: usize) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let run = &project.runs[r];
    let windows = read_windows(&windows_path(project, run))?;
    let window = windows.n_times;
    let tokenizer = Tokenizer::load(&tokenizer_path(project))?;
    let reader = crate::formats::open(&clean_fif(project, run))?;
    let (eeg, meg) = modality_picks(reader.info());
    let eeg_names = channel_names(reader.info(), &eeg);
    let meg_names = channel_names(reader.info(), &meg);
    let names: Vec<String> = eeg_names.iter().chain(&meg_names).cloned().collect();
    if names != tokenizer.channels {
        return Err(Error::request(&clean_fif(project, run), "its EEG/MEG channels differ from the tokenizer's (fitted on the training runs)"));
    }
    let meta = shard_meta(project, window, eeg_names, meg_names, Some(tokenizer));
    let picks: Vec<usize> = eeg.iter().chain(&meg).copied().collect();
    // The formula's levels from per-channel thresholds (tokenize/table.rs), built once per run.
    let encoder = meta.tokenizer.as_ref().map(Tokenizer::table_encoder);
    // Windows in parallel (the reader takes &self), collected in window order: the same rows
    // whatever the thread count.
    use rayon::prelude::*;
    let rows = windows.kept.par_iter().map(|&(index, start, onset)| -> Result<WindowRow> {
        let w = read_window(reader.as_ref(), &picks, start, &windows)?;
        let (eeg_part, meg_part) = match (&meta.kind, &encoder) {
            (ShardKind::Tokens, Some(t)) => {
                let mut q = vec![0u8; picks.len() * window];
                for (c, (row, out)) in w.rows().into_iter().zip(q.chunks_mut(window)).enumerate() {
                    t.encode(c, row.as_slice().expect("standard layout"), out);
                }
                let meg_q = q.split_off(eeg.len() * window);
                (WindowData::Tokens(q), WindowData::Tokens(meg_q))
            }
            _ => {
                let mut v = w.into_raw_vec_and_offset().0;
                let meg_v = v.split_off(eeg.len() * window);
                (WindowData::Continuous(v), WindowData::Continuous(meg_v))
            }
        };
        Ok(WindowRow {
            subject: run.subject.clone(),
            session: run.session.clone(),
            task: run.task.clone(),
            run: run.run.clone(),
            window: index,
            onset,
            eeg: eeg_part,
            meg: meg_part,
        })
    }).collect::<Result<Vec<_>>>()?;
    let path = tokens_path(project, run);
    write_run_file(&path, &rows, &meta)?;
    Ok((vec![path], vec![]))
}

/// Concatenates the runs of each split into bounded shards and writes the dataset card.
fn write_shards(project: &Project) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let out_dir = project.shards_dir();
    let assignment = assign_splits(project);
    let tokenizer = Tokenizer::load(&tokenizer_path(project))?;
    let first_tokens = tokens_path(project, &project.runs[0]);
    let kv = read_key_value_metadata(&first_tokens)?;
    let from_file = ShardMeta::from_key_value_pairs(&kv, &first_tokens)?;
    let meta = shard_meta(project, from_file.window, from_file.eeg_channels, from_file.meg_channels, Some(tokenizer));
    let mut outputs = Vec::new();
    let mut cards = Vec::new();
    for split in ["train", "validation", "test"] {
        let runs: Vec<&RunEntry> = project.runs.iter().zip(&assignment).filter(|(_, s)| **s == split).map(|(r, _)| r).collect();
        let files: Vec<PathBuf> = runs.iter().map(|r| tokens_path(project, r)).collect();
        let shards = write_split_shards(&out_dir, split, &files, project.config.shards.max_shard_bytes, &meta)?;
        let rows: u64 = runs.iter().map(|r| read_windows(&windows_path(project, r)).map(|w| w.kept.len() as u64)).sum::<Result<u64>>()?;
        let mut subjects: Vec<&str> = runs.iter().map(|r| r.subject.as_str()).collect();
        subjects.dedup();
        cards.push(SplitCard { name: split.to_string(), rows, description: format!("{} run(s) of subject(s) {}", runs.len(), subjects.join(", ")) });
        outputs.extend(shards);
    }
    let source = &project.config.dataset.source;
    let is_openneuro = source.starts_with("ds");
    let s = &project.config.split;
    let card = CardInfo {
        title: format!("{} EEG→MEG windows (Brainformer)", if is_openneuro { source.as_str() } else { "BIDS dataset" }),
        source_id: source.clone(),
        source_url: if is_openneuro { format!("https://openneuro.org/datasets/{source}") } else { String::new() },
        license: project.license(),
        citation: None,
        splits: cards,
        split_rule: format!(
            "whole {}s held out: ordered by BLAKE3(seed {}, {}), the first {:.0}% to test, the next {:.0}% to validation, the rest to train; the tokenizer is fitted on train only",
            s.by, s.seed, s.by, s.test_fraction * 100.0, s.validation_fraction * 100.0
        ),
        params_text: serde_json::to_string_pretty(&project.config.without_paths()).expect("JSON"),
        params_format: "json".into(),
        meta,
    };
    write_dataset_card(&out_dir, &card)?;
    outputs.push(out_dir.join("README.md"));
    Ok((outputs, vec![]))
}
