//! The noise ceiling's reference: each recorded run's noise-free counterpart (a simulation's
//! brain signal alone, every channel, as `bf-fixtures --physics` writes it under
//! `derivatives/noise-free/`), put through the run's band-pass, notch and resampling and cut
//! at the windows of the shards, so `bf-eval` can score it against the recorded MEG as it
//! scores any predictor.
//!
//! Why this is the ceiling: the recorded MEG is the noise-free MEG plus sensor noise,
//! artifacts and interference; a predictor that knew the brain's currents exactly would
//! predict the noise-free MEG, and its Pearson r against the recording is that of the
//! noise-free MEG itself. (It is not a strict bound: an artifact that both modalities see,
//! such as the heartbeat, can be predicted from the EEG a little beyond it.)
//!
//! The noise-free file is cleaned with the shards' own `[preprocess]` parameters but without
//! Maxwell filtering (it carries no external interference) and without the flat/clipped
//! screen or bad-channel detection (it has neither). Windows are found by their BIDS run and
//! onset, so any segmentation (fixed windows, epochs) and any split order work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array3;

use crate::bids::entities::BidsName;
use crate::clean::{clean, CleanParams};
use crate::config::PreprocessConfig;
use crate::error::{Error, Result};
use crate::formats;
use crate::recording::RawReader;

/// Where the noise-free recordings live inside a BIDS dataset.
pub const NOISE_FREE_DIR: &str = "derivatives/noise-free";
/// The `desc` entity of a noise-free recording.
const DESC: &str = "noisefree";

/// One window of a shard: its run's BIDS entities and its onset (s from the run's sample 0).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowKey {
    pub subject: String,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    pub onset: f64,
}

impl WindowKey {
    /// `sub-01_ses-meg_task-x_run-01`-style label of the window's run (for messages).
    fn run_label(&self) -> String {
        let mut s = format!("sub-{}", strip(&self.subject, "sub-"));
        for (k, v) in [("ses", &self.session), ("task", &self.task), ("run", &self.run)] {
            if let Some(v) = v {
                s.push_str(&format!("_{k}-{}", strip(v, &format!("{k}-"))));
            }
        }
        s
    }

    fn matches(&self, name: &BidsName) -> bool {
        let eq = |key: &str, want: Option<&String>| match want {
            Some(v) => name.get(key) == Some(strip(v, &format!("{key}-"))),
            None => true,
        };
        eq("sub", Some(&self.subject)) && eq("ses", self.session.as_ref()) && eq("task", self.task.as_ref()) && eq("run", self.run.as_ref())
    }
}

fn strip<'a>(v: &'a str, prefix: &str) -> &'a str {
    v.strip_prefix(prefix).unwrap_or(v)
}

/// The dataset's noise-free folder, found from a path inside its `derivatives/` (the shards'
/// folder `…/derivatives/brainformer/shards`, say), if it exists.
pub fn find_noise_free_dir(inside: &Path) -> Option<PathBuf> {
    let mut p = std::fs::canonicalize(inside).ok()?;
    loop {
        if p.file_name().is_some_and(|n| n == "derivatives") {
            let dir = p.parent()?.join(NOISE_FREE_DIR);
            return dir.is_dir().then_some(dir);
        }
        p = p.parent()?.to_path_buf();
    }
}

/// Every `…_desc-noisefree_meg.fif` under `dir`, with its parsed name, sorted by path.
fn noise_free_files(dir: &Path) -> Result<Vec<(BidsName, PathBuf)>> {
    let mut files = vec![];
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::request(dir, format!("cannot list the noise-free recordings: {e}")))?;
        if !entry.file_type().is_file() {
            continue;
        }
        if let Some(name) = BidsName::from_path(entry.path()) {
            if name.get("desc") == Some(DESC) && name.suffix == "meg" && name.extension == ".fif" {
                files.push((name, entry.path().to_path_buf()));
            }
        }
    }
    Ok(files)
}

/// The noise-free counterpart of every window in `keys` (in that order): `channels` (by name)
/// × `window` samples at the shards' rate, cleaned with `pre`. Each noise-free run is read
/// and cleaned once (its windows need not be adjacent in `keys`). `scratch` holds the
/// cleaning chain's transposed copy while it runs.
pub fn noise_free_windows(dir: &Path, pre: &PreprocessConfig, channels: &[String], window: usize, keys: &[WindowKey], scratch: &Path) -> Result<Array3<f32>> {
    let files = noise_free_files(dir)?;
    // Windows grouped by the file that holds them.
    let mut by_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let found: Vec<usize> = files.iter().enumerate().filter(|(_, (n, _))| key.matches(n)).map(|(f, _)| f).collect();
        match found.as_slice() {
            [f] => by_file.entry(*f).or_default().push(i),
            [] => return Err(Error::request(dir, format!("no noise-free recording (…_desc-{DESC}_meg.fif) of run {}", key.run_label()))),
            _ => return Err(Error::request(dir, format!("{} noise-free recordings match run {}: {}", found.len(), key.run_label(), found.iter().map(|&f| files[f].1.display().to_string()).collect::<Vec<_>>().join(", ")))),
        }
    }
    let params = CleanParams { l_freq: Some(pre.l_freq), h_freq: Some(pre.h_freq), notch: pre.notch.clone(), sfreq: Some(pre.sfreq), ..Default::default() };
    let mut out = Array3::<f32>::zeros((keys.len(), channels.len(), window));
    for (f, windows) in by_file {
        let path = &files[f].1;
        let reader = formats::open(path)?;
        let cleaned = clean(reader.as_ref(), &params, scratch, &|| {})?;
        let info = &cleaned.info;
        let picks: Vec<usize> = channels
            .iter()
            .map(|c| info.channels.iter().position(|ch| &ch.name == c).ok_or_else(|| Error::request(path, format!("has no channel {c}, which the shards have"))))
            .collect::<Result<_>>()?;
        for i in windows {
            let start = (keys[i].onset * info.sfreq).round();
            if start < 0.0 || start as usize + window > info.n_samples {
                return Err(Error::request(path, format!("the window at {} s ({} samples) is outside its {} samples at {} Hz", keys[i].onset, window, info.n_samples, info.sfreq)));
            }
            let start = start as usize;
            let mut dst = out.slice_mut(ndarray::s![i, .., ..]);
            cleaned.read_into_f32(&picks, start, start + window, dst.as_slice_mut().expect("standard layout"))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: &str, run: Option<&str>) -> WindowKey {
        WindowKey { subject: subject.into(), session: Some("meg".into()), task: Some("facerecognition".into()), run: run.map(Into::into), onset: 0.0 }
    }

    #[test]
    fn keys_match_bids_names_with_or_without_prefixes() {
        let n = BidsName::parse("sub-01_ses-meg_task-facerecognition_run-02_desc-noisefree_meg.fif").unwrap();
        assert!(key("01", Some("02")).matches(&n));
        assert!(key("sub-01", Some("02")).matches(&n));
        assert!(!key("01", Some("01")).matches(&n));
        assert!(!key("02", Some("02")).matches(&n));
        assert_eq!(key("01", Some("02")).run_label(), "sub-01_ses-meg_task-facerecognition_run-02");
    }

    #[test]
    fn a_missing_noise_free_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let pre = PreprocessConfig { l_freq: 0.1, h_freq: 100.0, notch: vec![], sfreq: 250.0, ..Default::default() };
        let err = noise_free_windows(dir.path(), &pre, &["MEG0111".into()], 8, &[key("01", Some("01"))], dir.path()).unwrap_err().to_string();
        assert!(err.contains("no noise-free recording") && err.contains("sub-01_ses-meg_task-facerecognition_run-01"), "{err}");
    }
}
