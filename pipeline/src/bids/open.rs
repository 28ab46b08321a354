//! Opening a run the BIDS way: which recording a run's MEG comes from ([`MegSource`]: as
//! acquired, or MaxFilter's output), the files that hold a recording ([`data_files`]), and
//! [`open_with_bids_at`], which reads a recording with its raw run's sidecars winning over
//! the file. Used by ingest (which checks the runs) and by the DAG (which processes them).

use std::path::{Path, PathBuf};

use super::{apply_channels, read_channels, BidsName, Dataset};
use crate::error::{Error, Result};
use crate::recording::RecordingInfo;

/// Where a run's MEG (and, in ds000117, EEG) recording comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MegSource {
    /// The recordings under `sub-*` as acquired.
    Raw,
    /// Elekta MaxFilter output (`*_proc-sss_meg.fif`) under `derivatives/*/`, at the same
    /// relative path as the raw run (ds000117: `derivatives/meg_derivatives/`).
    ProcSss,
}

impl MegSource {
    /// `dataset.meg_source` of `brainformer.toml`.
    pub fn from_config(cfg: &crate::config::ProjectConfig) -> Result<MegSource> {
        let d = &cfg.dataset;
        d.meg_source.parse().map_err(|e: String| Error::request(&d.root, format!("brainformer.toml: dataset.meg_source: {e}")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MegSource::Raw => "raw",
            MegSource::ProcSss => "proc-sss",
        }
    }
}

impl std::str::FromStr for MegSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(MegSource::Raw),
            "proc-sss" => Ok(MegSource::ProcSss),
            other => Err(format!("unknown MEG source {other:?} (expected raw or proc-sss)")),
        }
    }
}

/// Opens one data file, makes its `channels.tsv` win, checks its sidecar's rate. Sidecars
/// are looked up for `anchor` (the raw run), so a derivative file is read with its raw
/// run's channels.tsv; `warnings` gets what was tolerated (see [`apply_channels`]).
pub fn open_with_bids_at(ds: &Dataset, file: &Path, anchor: &Path, datatype: &str, warnings: &mut Vec<String>) -> Result<(Box<dyn crate::RawReader>, RecordingInfo)> {
    let sidecar = ds.sidecar_json(anchor, datatype)?;
    let reader = crate::formats::open(file)?;
    let mut info = reader.info().clone();
    if let Some(sf) = sidecar.get("SamplingFrequency").and_then(|v| v.as_f64()) {
        if (sf - info.sfreq).abs() > 1e-6 * info.sfreq.max(1.0) {
            return Err(Error::format(file, "BIDS", format!("sidecar says SamplingFrequency {sf} Hz, the file {} Hz", info.sfreq)));
        }
    }
    let tsv = ds.sidecar_tsv(anchor, "channels")?.ok_or_else(|| {
        let expected = BidsName::from_path(anchor).map(|n| n.with_suffix("channels", ".tsv")).unwrap_or_default();
        Error::format(anchor, "BIDS", format!("no channels.tsv applies (expected {expected})"))
    })?;
    warnings.extend(apply_channels(&mut info, &read_channels(&tsv)?, &tsv)?);
    if file != anchor {
        // Maxwell filtering reconstructed the bad MEG channels of the raw run.
        info.bads.retain(|b| info.channels.iter().any(|c| &c.name == b && !c.kind.is_meg()));
    }
    Ok((reader, info))
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
