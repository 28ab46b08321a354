//! Where a BIDS dataset keeps the Maxwell filter's site files (fine calibration, cross-talk)
//! and whether `[maxwell]` applies to a run: used by the DAG (`dag/inputs.rs`) and by ingest
//! (MaxShield recordings are taken when they will be Maxwell-filtered).

use std::path::{Path, PathBuf};

use crate::bids::Dataset;
use crate::config::MaxwellConfig;
use crate::error::{Error, Result};
use crate::bids::MegSource;

/// The calibration files the Maxwell filter of one run uses, and their content hash (part of
/// the preprocess key: a new calibration file rebuilds the runs it applies to).
#[derive(Clone, Debug)]
pub struct RunMaxwell {
    pub calibration: Option<PathBuf>,
    pub cross_talk: Option<PathBuf>,
    pub files_hash: String,
}

/// Whether `[maxwell]` applies to a run, and with which calibration files. `auto` applies
/// to raw FIF MEG when the dataset has a fine-calibration or cross-talk file (whether the
/// channels are Neuromag ones is checked when the file is opened); MaxFilter output
/// (`meg_source = "proc-sss"`) is never filtered again.
pub fn maxwell_for_run(ds: &Dataset, cfg: &MaxwellConfig, source: MegSource, file: &Path, anchor: &Path, datatype: &str) -> Result<Option<RunMaxwell>> {
    let on = match cfg.apply.as_str() {
        "off" => return Ok(None),
        "on" => true,
        "auto" => false,
        other => return Err(Error::request(&ds.root, format!("[maxwell] apply is auto, on or off, got {other:?} (brainformer.toml)"))),
    };
    let is_fif = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("fif"));
    if datatype != "meg" || !is_fif || source == MegSource::ProcSss {
        if on && datatype == "meg" {
            let why = if source == MegSource::ProcSss { "it is MaxFilter output already (meg_source = \"proc-sss\")" } else { "Maxwell filtering needs Neuromag/Elekta/MEGIN FIF recordings" };
            return Err(Error::request(file, format!("[maxwell] apply = \"on\", but {why}")));
        }
        return Ok(None);
    }
    let calibration = calibration_file(ds, anchor, &cfg.calibration, "calibration", "meg.dat", "sss_cal.dat")?;
    let cross_talk = calibration_file(ds, anchor, &cfg.cross_talk, "crosstalk", "meg.fif", "ct_sparse.fif")?;
    if !on && calibration.is_none() && cross_talk.is_none() {
        return Ok(None);
    }
    let mut h = blake3::Hasher::new();
    for f in calibration.iter().chain(&cross_talk) {
        h.update(&std::fs::read(f).map_err(|e| Error::io(f, e))?);
    }
    Ok(Some(RunMaxwell { calibration, cross_talk, files_hash: h.finalize().to_hex().to_string() }))
}

/// A Maxwell calibration file: `setting` is `none`, a path (relative to the dataset root),
/// or `auto`: BIDS's `sub-X[_ses-Y]_acq-{acq}_{suffix}` in the run's folder, else
/// `derivatives/*/{legacy}` (where ds000117 keeps MaxFilter's site files). A file that is
/// there but not downloaded (a dangling git-annex link) is an error that says how to get it.
fn calibration_file(ds: &Dataset, anchor: &Path, setting: &str, acq: &str, suffix: &str, legacy: &str) -> Result<Option<PathBuf>> {
    let found = match setting {
        "none" => return Ok(None),
        "auto" => {
            let bids = anchor.parent().and_then(|dir| {
                let name = crate::bids::BidsName::from_path(anchor)?;
                let mut entities: Vec<String> = ["sub", "ses"].iter().filter_map(|k| name.get(k).map(|v| format!("{k}-{v}"))).collect();
                entities.push(format!("acq-{acq}"));
                Some(dir.join(format!("{}_{suffix}", entities.join("_"))))
            });
            let mut derived: Vec<PathBuf> = std::fs::read_dir(ds.root.join("derivatives"))
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path().join(legacy))).collect())
                .unwrap_or_default();
            derived.sort();
            bids.into_iter().chain(derived).find(|p| p.symlink_metadata().is_ok())
        }
        path => {
            let p = ds.root.join(path);
            if p.symlink_metadata().is_err() {
                return Err(Error::request(&p, format!("[maxwell] {} file not found (brainformer.toml)", if acq == "calibration" { "calibration" } else { "cross_talk" })));
            }
            Some(p)
        }
    };
    match found {
        Some(p) if !p.exists() => {
            let rel = p.strip_prefix(&ds.root).unwrap_or(&p).display().to_string();
            Err(Error::request(&p, format!(
                "the Maxwell filter's {acq} file is not downloaded (a dangling link): `datalad get {rel}` in a DataLad clone, or `bf-pipeline download <dataset id> --include {rel}`; or set [maxwell] apply = \"off\" in brainformer.toml"
            )))
        }
        other => Ok(other),
    }
}

