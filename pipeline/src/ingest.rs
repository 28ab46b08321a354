//! Ingest: open and check every run of a BIDS dataset, and describe it in
//! `derivatives/brainformer/manifest.parquet` (one row per run). A run that fails is
//! reported with its path; the others are still ingested.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;

use crate::bids::{apply_channels, read_channels, read_events, BidsName, Dataset, Run};
use crate::error::{Error, Result};
use crate::recording::{ChannelKind, RecordingInfo};

/// `DIR/derivatives/brainformer`, where everything we derive lives.
pub fn derivatives_dir(root: &Path) -> PathBuf {
    root.join("derivatives").join("brainformer")
}

pub fn manifest_path(root: &Path) -> PathBuf {
    derivatives_dir(root).join("manifest.parquet")
}

/// What the manifest records about one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub subject: String,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    pub acquisition: Option<String>,
    /// Paths relative to the dataset root.
    pub meg_path: Option<String>,
    pub eeg_path: Option<String>,
    pub format: String,
    pub sfreq: f64,
    pub n_samples: u64,
    pub duration: f64,
    pub n_eeg: u32,
    pub n_meg: u32,
    pub eeg_channels: Vec<String>,
    pub meg_channels: Vec<String>,
    pub bads: Vec<String>,
    pub n_events: u32,
    /// BLAKE3 of the run's data files (all split parts), hex.
    pub content_hash: String,
}

/// Opens one file of a run, makes its `channels.tsv` win, checks its sidecar's rate.
pub fn open_with_bids(ds: &Dataset, file: &Path, datatype: &str) -> Result<(Box<dyn crate::RawReader>, RecordingInfo)> {
    let sidecar = ds.sidecar_json(file, datatype)?;
    let reader = crate::formats::open(file)?;
    let mut info = reader.info().clone();
    if let Some(sf) = sidecar.get("SamplingFrequency").and_then(|v| v.as_f64()) {
        if (sf - info.sfreq).abs() > 1e-6 * info.sfreq.max(1.0) {
            return Err(Error::format(file, "BIDS", format!("sidecar says SamplingFrequency {sf} Hz, the file {} Hz", info.sfreq)));
        }
    }
    let tsv = ds.sidecar_tsv(file, "channels")?.ok_or_else(|| {
        let expected = BidsName::from_path(file).map(|n| n.with_suffix("channels", ".tsv")).unwrap_or_default();
        Error::format(file, "BIDS", format!("no channels.tsv applies (expected {expected})"))
    })?;
    apply_channels(&mut info, &read_channels(&tsv)?, &tsv)?;
    Ok((reader, info))
}

fn names_of(info: &RecordingInfo, pred: impl Fn(ChannelKind) -> bool) -> Vec<String> {
    info.channels.iter().filter(|c| pred(c.kind)).map(|c| c.name.clone()).collect()
}

/// Opens, checks and describes one run.
pub fn inspect_run(ds: &Dataset, run: &Run) -> Result<RunRecord> {
    let meg = run.meg.as_ref().map(|f| open_with_bids(ds, f, "meg")).transpose()?;
    let eeg = run.eeg.as_ref().map(|f| open_with_bids(ds, f, "eeg")).transpose()?;
    let (primary_reader, primary) = meg.as_ref().or(eeg.as_ref()).expect("a run has a file");
    // Reading the first and last second proves the data buffers are where the header says.
    let n = primary.n_samples;
    let one_s = (primary.sfreq.round() as usize).min(n);
    let picks = primary_reader.all_picks();
    primary_reader.read_f32(&picks, 0, one_s)?;
    primary_reader.read_f32(&picks, n - one_s, n)?;
    let eeg_info = eeg.as_ref().map(|(_, i)| i).unwrap_or(primary);
    let meg_channels = meg.as_ref().map(|(_, i)| names_of(i, ChannelKind::is_meg)).unwrap_or_default();
    let eeg_channels = names_of(eeg_info, |k| k == ChannelKind::Eeg);
    let mut bads: Vec<String> = primary.bads.clone();
    if let Some((_, e)) = &eeg {
        for b in &e.bads {
            if !bads.contains(b) {
                bads.push(b.clone());
            }
        }
    }
    let events = match ds.sidecar_tsv(run.primary(), "events")? {
        Some(p) => read_events(&p)?.len() as u32,
        None => 0,
    };
    let files: Vec<PathBuf> = run.meg.iter().chain(run.eeg.iter()).flat_map(|f| data_files(f)).collect();
    let rel = |p: &PathBuf| p.strip_prefix(&ds.root).unwrap_or(p).to_string_lossy().into_owned();
    Ok(RunRecord {
        id: run.id(),
        subject: run.get("sub").unwrap_or_default().to_string(),
        session: run.get("ses").map(str::to_string),
        task: run.get("task").map(str::to_string),
        run: run.get("run").map(str::to_string),
        acquisition: run.get("acq").map(str::to_string),
        meg_path: run.meg.as_ref().map(rel),
        eeg_path: run.eeg.as_ref().map(rel),
        format: primary.format.to_string(),
        sfreq: primary.sfreq,
        n_samples: primary.n_samples as u64,
        duration: primary.duration(),
        n_eeg: eeg_channels.len() as u32,
        n_meg: meg_channels.len() as u32,
        eeg_channels,
        meg_channels,
        bads,
        n_events: events,
        content_hash: hash_files(&files)?,
    })
}

/// The files that hold a recording: the file itself, BrainVision's data and marker files,
/// and for a `split-01` FIF the later splits of the same run.
pub fn data_files(file: &Path) -> Vec<PathBuf> {
    let mut out = vec![file.to_path_buf()];
    let Some(name) = BidsName::from_path(file) else { return out };
    if name.get("split").is_some() {
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut rest: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p != file)
            .filter(|p| BidsName::from_path(p).is_some_and(|n| n.run_key() == name.run_key() && n.suffix == name.suffix && n.extension == name.extension))
            .collect();
        rest.sort();
        out.extend(rest);
    }
    if name.extension == ".vhdr" {
        for ext in ["eeg", "vmrk"] {
            let p = file.with_extension(ext);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}

/// BLAKE3 over the files' bytes in order (memory-mapped, parallel inside each file).
pub fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut outer = blake3::Hasher::new();
    for f in files {
        let mut h = blake3::Hasher::new();
        h.update_mmap_rayon(f).map_err(|e| Error::io(f, e))?;
        outer.update(h.finalize().as_bytes());
    }
    Ok(outer.finalize().to_hex().to_string())
}

/// Inspects every run (in parallel); returns the records and the failures, both in run order.
pub fn inspect_dataset(ds: &Dataset, runs: &[Run], on_done: &(dyn Fn(&Run) + Sync)) -> (Vec<RunRecord>, Vec<(PathBuf, Error)>) {
    let results: Vec<(usize, Result<RunRecord>)> = runs
        .par_iter()
        .enumerate()
        .map(|(i, r)| {
            let res = inspect_run(ds, r);
            on_done(r);
            (i, res)
        })
        .collect();
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for (i, res) in results {
        match res {
            Ok(rec) => records.push(rec),
            Err(e) => failures.push((runs[i].primary().to_path_buf(), e)),
        }
    }
    (records, failures)
}

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
        col!("format", |r: &RunRecord| r.format.clone()),
        col!("sfreq", |r: &RunRecord| r.sfreq),
        col!("n_samples", |r: &RunRecord| r.n_samples),
        col!("duration", |r: &RunRecord| r.duration),
        col!("n_eeg", |r: &RunRecord| r.n_eeg),
        col!("n_meg", |r: &RunRecord| r.n_meg),
        str_list("eeg_channels", rows, |r| &r.eeg_channels),
        str_list("meg_channels", rows, |r| &r.meg_channels),
        str_list("bads", rows, |r| &r.bads),
        col!("n_events", |r: &RunRecord| r.n_events),
        col!("content_hash", |r: &RunRecord| r.content_hash.clone()),
    ];
    DataFrame::new(rows.len(), cols).map_err(|e| Error::request(Path::new("manifest"), e.to_string()))
}

/// Writes the manifest atomically (zstd Parquet).
pub fn write_manifest(path: &Path, rows: &[RunRecord]) -> Result<()> {
    let mut df = manifest_frame(rows)?;
    crate::fsutil::write_atomic_with(path, |f| {
        ParquetWriter::new(f)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)
            .map(|_| ())
            .map_err(|e| Error::request(path, format!("cannot write Parquet: {e}")))
    })
}
