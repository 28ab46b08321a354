//! The pipeline's view of the dataset: the runs to process (the manifest written by
//! `ingest`, else every run in the BIDS tree) and a content hash of each run's inputs.
//!
//! Hashing 870 MB per run on every invocation would make `plan` slow, so data-file hashes
//! come from [`crate::fsutil::hash_cache`] (which ingest fills). Sidecars (channels.tsv,
//! events.tsv, the JSON sidecar) are small and hashed every time.

use std::path::Path;

use polars::prelude::*;

use super::RunEntry;
use crate::bids::Dataset;
use crate::error::{Error, Result};
use crate::config::ProjectConfig;
use crate::bids::maxwell_site::maxwell_for_run;
use crate::bids::{data_files, derivatives_dir, manifest_path, proc_sss_path, MegSource};
use crate::fsutil::hash_cache::HashCache;

/// Lists the runs to process, with their input hashes: those of the manifest, else every
/// run but empty-room recordings and runs whose content is not on disk.
pub fn discover_runs(config: &ProjectConfig) -> Result<Vec<RunEntry>> {
    let dataset = &config.dataset;
    let root = dataset.root.as_path();
    let meg_source = MegSource::from_config(config)?;
    let ds = Dataset::open(root)?;
    let wanted = manifest_run_ids(root)?;
    let mut cache = HashCache::open(&derivatives_dir(root));
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
            h.update(cache.hash(&f)?.as_bytes());
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
    cache.save()?;
    Ok(runs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bids::manifest_path;
    use crate::fsutil::hash_cache::remember_hashes;
    use crate::ingest::tests::{dataset, outcomes};
    use crate::ingest::{write_manifest, IngestOptions};

    /// The DAG keys a run by the hashes ingest left in the cache (same path, size and mtime):
    /// the key equals a fresh hash's, and a lie planted in the cache shows it was used.
    #[test]
    fn the_dag_takes_ingests_hashes_from_the_cache() {
        let d = tempfile::tempdir().unwrap();
        dataset(d.path());
        let report = outcomes(d.path(), &IngestOptions::default());
        write_manifest(&manifest_path(d.path()), &report.records).unwrap();
        let cfg = ProjectConfig::with_defaults(d.path().to_path_buf(), "local".into());
        let runs = discover_runs(&cfg).unwrap();
        std::fs::remove_file(derivatives_dir(d.path()).join("stamps/input-hashes.json")).unwrap();
        let fresh = discover_runs(&cfg).unwrap();
        assert_eq!(runs[0].input_hash, fresh[0].input_hash);
        let mut lie = report.records[0].file_hashes[0].clone();
        lie.blake3 = "0".repeat(64);
        remember_hashes(&derivatives_dir(d.path()), [lie]).unwrap();
        assert_ne!(discover_runs(&cfg).unwrap()[0].input_hash, fresh[0].input_hash);
    }
}
