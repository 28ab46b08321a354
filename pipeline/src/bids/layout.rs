//! Where things are in a BIDS tree beyond the raw runs: our derivatives folder
//! (`derivatives/brainformer`, with ingest's manifest) and the MaxFilter output of a raw MEG
//! run under another pipeline's `derivatives/*/`.

use std::path::{Path, PathBuf};

use super::{BidsName, Dataset};

/// `DIR/derivatives/brainformer`, where everything we derive lives.
pub fn derivatives_dir(root: &Path) -> PathBuf {
    root.join("derivatives").join("brainformer")
}

pub fn manifest_path(root: &Path) -> PathBuf {
    derivatives_dir(root).join("manifest.parquet")
}

/// The MaxFilter output for a raw MEG file: `…_proc-sss_meg.fif` at the same relative path
/// under one of `derivatives/*/` (not ours). `None` when no derivative folder has it.
pub fn proc_sss_path(ds: &Dataset, raw: &Path) -> Option<PathBuf> {
    let rel_dir = raw.parent()?.strip_prefix(&ds.root).ok()?;
    let name = BidsName::from_path(raw)?;
    let mut entities: Vec<String> = name.entities.iter().filter(|(k, _)| k != "split").map(|(k, v)| format!("{k}-{v}")).collect();
    entities.push("proc-sss".into());
    if let Some(split) = name.get("split") {
        entities.push(format!("split-{split}"));
    }
    let file = format!("{}_{}{}", entities.join("_"), name.suffix, name.extension);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(ds.root.join("derivatives")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && !p.ends_with("brainformer")).collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join(rel_dir).join(&file)).find(|p| p.symlink_metadata().is_ok())
}
