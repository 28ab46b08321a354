//! `manifest.parquet`: one row per ingested run ([`RunRecord`]), and the data files' hashes
//! handed to the input-hash cache ([`crate::fsutil::hash_cache`]).

use std::path::Path;

use polars::prelude::*;

use super::RunRecord;
use crate::error::{Error, Result};

fn str_list(name: &str, rows: &[RunRecord], f: impl Fn(&RunRecord) -> &Vec<String>) -> Column {
    let lists: ListChunked = rows.iter().map(|r| Some(Series::new("".into(), f(r).as_slice()))).collect();
    lists.into_series().with_name(name.into()).into_column()
}

/// The manifest as a DataFrame (one row per run, in run order).
pub fn manifest_frame(rows: &[RunRecord]) -> Result<DataFrame> {
    macro_rules! col {
        ($name:expr, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("run_id", |r: &RunRecord| r.id.clone()),
        col!("subject", |r: &RunRecord| r.subject.clone()),
        col!("session", |r: &RunRecord| r.session.clone()),
        col!("task", |r: &RunRecord| r.task.clone()),
        col!("run", |r: &RunRecord| r.run.clone()),
        col!("acquisition", |r: &RunRecord| r.acquisition.clone()),
        col!("meg_path", |r: &RunRecord| r.meg_path.clone()),
        col!("eeg_path", |r: &RunRecord| r.eeg_path.clone()),
        col!("meg_source", |r: &RunRecord| r.meg_source.clone()),
        col!("format", |r: &RunRecord| r.format.clone()),
        col!("sfreq", |r: &RunRecord| r.sfreq),
        col!("n_samples", |r: &RunRecord| r.n_samples),
        col!("duration", |r: &RunRecord| r.duration),
        col!("n_eeg", |r: &RunRecord| r.n_eeg),
        col!("n_meg", |r: &RunRecord| r.n_meg),
        str_list("eeg_channels", rows, |r| &r.eeg_channels),
        str_list("meg_channels", rows, |r| &r.meg_channels),
        str_list("bads", rows, |r| &r.bads),
        col!("channel_types", |r: &RunRecord| r.channel_types.clone()),
        col!("n_events", |r: &RunRecord| r.n_events),
        col!("n_events_dropped", |r: &RunRecord| r.n_events_dropped),
        col!("empty_room", |r: &RunRecord| r.empty_room.clone()),
        col!("empty_room_present", |r: &RunRecord| r.empty_room_present),
        col!("content_hash", |r: &RunRecord| r.content_hash.clone()),
    ];
    DataFrame::new(rows.len(), cols).map_err(|e| Error::request(Path::new("manifest"), e.to_string()))
}

/// Writes the manifest atomically (zstd Parquet), and the data files' hashes into the DAG's
/// input-hash cache beside it (`stamps/input-hashes.json`).
pub fn write_manifest(path: &Path, rows: &[RunRecord]) -> Result<()> {
    let mut df = manifest_frame(rows)?;
    crate::fsutil::write_atomic_with(path, |f| {
        ParquetWriter::new(f)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)
            .map(|_| ())
            .map_err(|e| Error::request(path, format!("cannot write Parquet: {e}")))
    })?;
    let der = path.parent().unwrap_or(Path::new("."));
    crate::fsutil::hash_cache::remember_hashes(der, rows.iter().flat_map(|r| r.file_hashes.iter().cloned()))
}
