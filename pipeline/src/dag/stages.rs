//! What each stage does to make its outputs, and the parameters that go into its key.
//! The engine ([`super`]) decides when; this file decides how. Every output is written
//! atomically (temp + rename), and nothing here depends on thread scheduling.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{Node, Plan, Project, RunEntry, Stage};
use crate::bads::{find_bad_channels, interpolate_bads_eeg, BadReason, BadsParams};
use crate::bids::Dataset;
use crate::clean::{clean, CleanParams};
use crate::config::ProjectConfig;
use crate::error::{Error, Result};
use crate::formats::fif::write::{write_raw, WriteOptions};
use crate::ingest::open_with_bids;
use crate::recording::{ChannelKind, RawReader, RecordingInfo};

/// State handed from one stage to the next within one invocation (nothing yet: every stage
/// reads its inputs from disk, which is what lets `--shard` tasks share a filesystem).
#[derive(Default)]
pub struct Context {}

impl Context {
    pub fn after_stage(&mut self, _project: &Project, _plan: &Plan, _stage: Stage) -> Result<()> {
        Ok(())
    }
}

pub fn preprocess_params(cfg: &ProjectConfig, run: &RunEntry) -> Value {
    let b = BadsParams::default();
    json!({
        "input": run.input_hash,
        "preprocess": cfg.preprocess,
        "bads": {"z_thresh": b.z_thresh, "hf_z_thresh": b.hf_z_thresh, "hf_freq": b.hf_freq, "flat_rel": b.flat_rel,
                  "eeg_interpolation": "spherical spline (MNE interpolate_bads, origin auto)", "meg": "marked, kept"},
    })
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
pub fn build(project: &Project, _plan: &Plan, node: &Node, _ctx: &Context) -> Result<(Vec<PathBuf>, Vec<String>)> {
    match node.stage {
        Stage::Preprocess => preprocess(project, &project.runs[node.run.expect("per-run")]),
        Stage::Split => write_splits(project),
        other => Err(Error::request(&project.root, format!("stage {} is not wired yet", other.name()))),
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
    let (reader, info) = open_with_bids(&ds, &run.file, &run.datatype)?;
    let bids_bads = info.bads.clone();
    let reader = WithInfo { inner: reader.as_ref(), info };
    let params = CleanParams { l_freq: Some(cfg.l_freq), h_freq: Some(cfg.h_freq), notch: cfg.notch.clone(), sfreq: Some(cfg.sfreq), ..Default::default() };
    // The scratch copy goes beside the output (same filesystem), removed when done.
    let scratch = project.run_dir(run);
    let mut cleaned = clean(&reader, &params, &scratch, &|| {})?;

    let detected: Vec<_> = find_bad_channels(&cleaned.info, &cleaned.data, &BadsParams::default()).into_iter().filter(|b| !bids_bads.contains(&b.name)).collect();
    let mut bads = bids_bads.clone();
    bads.extend(detected.iter().map(|b| b.name.clone()));
    let kind_of = |name: &str| cleaned.info.channels.iter().find(|c| c.name == name).map(|c| c.kind);
    let eeg_bads: Vec<String> = bads.iter().filter(|b| kind_of(b) == Some(ChannelKind::Eeg)).cloned().collect();
    let mut messages = Vec::new();
    let interpolated = if eeg_bads.is_empty() {
        vec![]
    } else {
        match interpolate_bads_eeg(&cleaned.info, &mut cleaned.data, &eeg_bads, None) {
            Ok(done) => done,
            Err(e) => {
                messages.push(format!("{}: EEG bads kept as they are, not interpolated: {e}", run.id));
                vec![]
            }
        }
    };
    let remaining: Vec<String> = bads.iter().filter(|b| !interpolated.contains(b)).cloned().collect();
    cleaned.info.bads = remaining.clone();

    let fif = project.run_file(run, "desc-clean_meg.fif");
    let written = write_raw(&cleaned, &cleaned.all_picks(), 0, cleaned.info.n_samples, &fif, &WriteOptions::default())?;
    let sidecar = project.run_file(run, "desc-clean_meg.json");
    let description = json!({
        "Description": "Cleaned continuous data: band-pass, notch, resampling (MNE's FIR design and FFT resampling), bad channels detected and EEG bads interpolated.",
        "Sources": [format!("bids:raw:{}", run.file.strip_prefix(&project.root).unwrap_or(&run.file).display())],
        "SamplingFrequency": cleaned.info.sfreq,
        "HighpassFilter": cfg.l_freq,
        "LowpassFilter": cfg.h_freq,
        "NotchFrequencies": cfg.notch,
        "Parameters": preprocess_params(&project.config, run),
        "BadChannels": {
            "from_channels_tsv": bids_bads,
            "detected": detected.iter().map(|b| json!({"name": b.name, "reason": reason_text(&b.reason)})).collect::<Vec<_>>(),
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
