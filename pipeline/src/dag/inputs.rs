//! The pipeline's view of the dataset: the runs to process (the manifest written by
//! `ingest`, else every run in the BIDS tree) and a content hash of each run's inputs.
//!
//! Hashing 870 MB per run on every invocation would make `plan` slow, so data-file hashes
//! are cached in `derivatives/brainformer/stamps/input-hashes.json` by (path, size, mtime):
//! a file whose size or mtime moved is hashed again, and only a change of content changes
//! the key (a `touch` costs a re-hash, not a rebuild). Sidecars (channels.tsv, events.tsv,
//! the JSON sidecar) are small and hashed every time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::RunEntry;
use crate::bids::Dataset;
use crate::error::{Error, Result};
use crate::config::ProjectConfig;
use crate::clean::maxwell::site::maxwell_for_run;
use crate::bids::{data_files, derivatives_dir, manifest_path, proc_sss_path, MegSource};
use crate::fsutil::hash_files;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct CachedHash {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

/// A data file's hash as the DAG keys it (`hash_files(&[path])`), with the size and mtime
/// the file had before it was read. Ingest computes these while it hashes the runs anyway.
#[derive(Clone, Debug, PartialEq)]
pub struct FileHash {
    pub path: std::path::PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub blake3: String,
}

fn cache_path(derivatives: &Path) -> std::path::PathBuf {
    derivatives.join("stamps").join("input-hashes.json")
}

fn read_cache(path: &Path) -> BTreeMap<String, CachedHash> {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// The size and modification time (ns since the epoch; 0 where unknown) that key the cache.
pub fn size_and_mtime(file: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
    Ok((meta.len(), meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())))
}

/// Adds hashes computed elsewhere (ingest) to the cache in `derivatives/stamps/`. Callers
/// hold the folder's exclusive lock, as `tokenize` does when it writes the cache.
pub fn remember_hashes(derivatives: &Path, hashes: impl IntoIterator<Item = FileHash>) -> Result<()> {
    let path = cache_path(derivatives);
    let mut cache = read_cache(&path);
    let before = cache.clone();
    for h in hashes {
        cache.insert(h.path.to_string_lossy().into_owned(), CachedHash { size: h.size, mtime_ns: h.mtime_ns, blake3: h.blake3 });
    }
    if cache != before {
        crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&cache).expect("JSON").as_bytes())?;
    }
    Ok(())
}

/// Lists the runs to process, with their input hashes: those of the manifest, else every
/// run but empty-room recordings and runs whose content is not on disk.
pub fn discover_runs(config: &ProjectConfig) -> Result<Vec<RunEntry>> {
    let dataset = &config.dataset;
    let root = dataset.root.as_path();
    let meg_source = MegSource::from_config(config)?;
    let ds = Dataset::open(root)?;
    let wanted = manifest_run_ids(root)?;
    let cache_file = cache_path(&derivatives_dir(root));
    let mut cache = read_cache(&cache_file);
    let before = cache.clone();
    let mut runs = Vec::new();
    for run in ds.runs()? {
        if wanted.as_ref().is_some_and(|w| !w.contains(&run.id())) || run.is_empty_room() || !run.missing_content().is_empty() {
            continue;
        }
        let (file, datatype) = match (&run.meg, &run.eeg) {
            (Some(m), Some(e)) => {
                // ds000117 keeps EEG inside the MEG FIF; pairing two files sample by sample
                // (clock offsets, different rates) is not done yet, and using only one of them
                // would silently drop a modality.
                return Err(Error::request(e, format!("run {} has separate EEG and MEG files ({}); the pipeline needs both in one recording", run.id(), m.display())));
            }
            (Some(m), None) => (m.clone(), "meg"),
            (None, Some(e)) => (e.clone(), "eeg"),
            (None, None) => continue,
        };
        let anchor = file.clone();
        let file = match (meg_source, datatype) {
            (MegSource::ProcSss, "meg") => proc_sss_path(&ds, &anchor).filter(|p| p.exists()).ok_or_else(|| {
                Error::request(&anchor, format!("meg_source is proc-sss and run {} has no MaxFilter output under derivatives/ (run `bf-pipeline ingest` again to see which runs are taken)", run.id()))
            })?,
            _ => anchor.clone(),
        };
        let mut h = blake3::Hasher::new();
        for f in data_files(&file) {
            h.update(cached_hash(&f, &mut cache)?.as_bytes());
        }
        for suffix in ["channels", "events"] {
            if let Some(tsv) = ds.sidecar_tsv(&anchor, suffix)? {
                h.update(&std::fs::read(&tsv).map_err(|e| Error::io(&tsv, e))?);
            }
        }
        h.update(serde_json::to_string(&ds.sidecar_json(&anchor, datatype)?).expect("JSON").as_bytes());
        let maxwell = maxwell_for_run(&ds, &config.maxwell, meg_source, &file, &anchor, datatype)?;
        runs.push(RunEntry {
            id: run.id(),
            subject: run.get("sub").unwrap_or_default().to_string(),
            session: run.get("ses").map(str::to_string),
            task: run.get("task").map(str::to_string),
            run: run.get("run").map(str::to_string),
            file,
            anchor,
            datatype: datatype.to_string(),
            input_hash: h.finalize().to_hex().to_string(),
            maxwell,
        });
    }
    if runs.is_empty() {
        return Err(Error::request(root, "no runs to process (is this the dataset root? did `bf-pipeline ingest` list any?)"));
    }
    if cache != before {
        let text = serde_json::to_string_pretty(&cache).expect("JSON");
        crate::fsutil::write_atomic(&cache_file, text.as_bytes())?;
    }
    Ok(runs)
}

fn cached_hash(file: &Path, cache: &mut BTreeMap<String, CachedHash>) -> Result<String> {
    let (size, mtime_ns) = size_and_mtime(file)?;
    let key = file.to_string_lossy().into_owned();
    if let Some(c) = cache.get(&key) {
        if c.size == size && c.mtime_ns == mtime_ns {
            return Ok(c.blake3.clone());
        }
    }
    let blake3 = hash_files(&[file.to_path_buf()])?;
    cache.insert(key, CachedHash { size, mtime_ns, blake3: blake3.clone() });
    Ok(blake3)
}

/// The run ids of `ingest`'s manifest, when there is one.
fn manifest_run_ids(root: &Path) -> Result<Option<Vec<String>>> {
    let path = manifest_path(root);
    if !path.exists() {
        return Ok(None);
    }
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |e: PolarsError| Error::format(&path, "Parquet", e.to_string());
    let df = ParquetReader::new(file).finish().map_err(bad)?;
    let ids = df.column("run_id").map_err(bad)?.str().map_err(bad)?.iter().flatten().map(str::to_string).collect();
    Ok(Some(ids))
}

