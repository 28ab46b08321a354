//! Our BIDS layer (bids-rs is GPL-3.0 and this project is MIT, so we read its code for ideas
//! only): dataset discovery, entities from file names, the inheritance principle for
//! sidecars, `channels.tsv` / `events.tsv` / `participants.tsv`, and the pairing of the EEG
//! and MEG of one run — in one file (ds000117's FIF holds both) or in two files matched by
//! entities. BIDS is authoritative over the file: [`apply_channels`] makes the types and
//! bads of `channels.tsv` win (design.md).

pub mod entities;
pub mod layout;
pub mod maxwell_site;
pub mod open;
pub mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::formats::fif::info::fiff_kind_of;
use crate::recording::{ChannelKind, RecordingInfo};

pub use entities::BidsName;
pub use layout::{derivatives_dir, manifest_path, proc_sss_path};
pub use open::{data_files, open_with_bids_at, MegSource};
pub use tables::{read_channels, read_events, ChannelRow, EventRow};

const FORMAT: &str = "BIDS";
/// Extensions of raw data files we read.
const DATA_EXTENSIONS: [&str; 5] = [".fif", ".fif.gz", ".edf", ".bdf", ".vhdr"];
const DATATYPES: [&str; 2] = ["meg", "eeg"];

/// A BIDS dataset on disk.
pub struct Dataset {
    pub root: PathBuf,
    pub description: serde_json::Value,
}

/// One run: its identifying entities and its data file(s).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Entities in file-name order, without `split`.
    pub entities: Vec<(String, String)>,
    /// The MEG recording (`meg/…_meg.fif`); in ds000117 it holds the EEG too.
    pub meg: Option<PathBuf>,
    /// A separate EEG recording (`eeg/…_eeg.*`) of the same run, when there is one.
    pub eeg: Option<PathBuf>,
}

impl Run {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entities.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    /// `sub-01_ses-meg_task-facerecognition_run-01`.
    pub fn id(&self) -> String {
        self.entities.iter().map(|(k, v)| format!("{k}-{v}")).collect::<Vec<_>>().join("_")
    }
    /// An empty-room (noise) recording: BIDS puts them under `sub-emptyroom`.
    pub fn is_empty_room(&self) -> bool {
        self.get("sub") == Some("emptyroom")
    }
    /// Data files whose content is absent: dangling links (git-annex content not fetched).
    /// A present but truncated file is not caught here; opening it is (an unreadable run).
    pub fn missing_content(&self) -> Vec<&Path> {
        self.meg.iter().chain(self.eeg.iter()).map(|p| p.as_path()).filter(|p| !p.exists()).collect()
    }
    /// The file holding MEG, else the EEG file.
    pub fn primary(&self) -> &Path {
        self.meg.as_deref().or(self.eeg.as_deref()).expect("a run has at least one file")
    }
}

impl Dataset {
    /// Opens a dataset root: it must hold a `dataset_description.json` with `BIDSVersion`.
    pub fn open(root: &Path) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::format(root, FORMAT, "dataset root is not a directory"));
        }
        let desc_path = root.join("dataset_description.json");
        let text = std::fs::read_to_string(&desc_path)
            .map_err(|_| Error::format(root, FORMAT, "not a BIDS dataset: dataset_description.json is missing"))?;
        let description: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&desc_path, FORMAT, format!("invalid JSON: {e}")))?;
        if description.get("BIDSVersion").and_then(|v| v.as_str()).is_none() {
            return Err(Error::format(&desc_path, FORMAT, "BIDSVersion is missing"));
        }
        Ok(Dataset { root: root.to_path_buf(), description })
    }

    /// Every run with MEG or EEG data, sorted by entities. Split files beyond the first are
    /// left out (the reader follows them); EEG and MEG files of one run are paired.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let mut by_key: BTreeMap<Vec<(String, String)>, Run> = BTreeMap::new();
        for entry in walkdir::WalkDir::new(&self.root).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::format(&self.root, FORMAT, format!("cannot list the dataset: {e}")))?;
            let path = entry.path();
            let rel = path.strip_prefix(&self.root).unwrap_or(path);
            if !rel.components().next().is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("sub-")) {
                continue;
            }
            // A datalad/git-annex clone holds data files as symbolic links into the annex,
            // dangling until `datalad get`: those are runs too (ingest reports them as not
            // downloaded), so links count whatever they point to, except directories.
            let ft = entry.file_type();
            if !(ft.is_file() || ft.is_symlink() && !path.is_dir()) {
                continue;
            }
            let Some(name) = BidsName::from_path(path) else { continue };
            let datatype = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
            if !DATATYPES.contains(&datatype) || name.suffix != datatype || !DATA_EXTENSIONS.contains(&name.extension.as_str()) {
                continue;
            }
            if name.get("split").is_some_and(|s| s.trim_start_matches('0') != "1") {
                continue;
            }
            if name.get("sub").is_none() {
                return Err(Error::format(path, FORMAT, "data file name has no sub- entity"));
            }
            let run = by_key.entry(name.run_key()).or_insert_with(|| Run { entities: name.run_key(), meg: None, eeg: None });
            let slot = if datatype == "meg" { &mut run.meg } else { &mut run.eeg };
            if let Some(existing) = slot {
                return Err(Error::format(path, FORMAT, format!("two {datatype} files for one run (also {})", existing.display())));
            }
            *slot = Some(path.to_path_buf());
        }
        Ok(by_key.into_values().collect())
    }

    /// Directories from the root down to `file`'s folder: where inherited sidecars live.
    fn sidecar_dirs(&self, file: &Path) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.clone()];
        if let Some(parent) = file.parent().and_then(|p| p.strip_prefix(&self.root).ok()) {
            let mut d = self.root.clone();
            for c in parent.components() {
                d.push(c);
                dirs.push(d.clone());
            }
        }
        dirs
    }

    /// Sidecars `*_{suffix}{ext}` that apply to `file` (subset of its entities), from the
    /// most general (top level) to the most specific.
    fn applicable(&self, file: &Path, suffix: &str, ext: &str) -> Result<Vec<PathBuf>> {
        let Some(data) = BidsName::from_path(file) else {
            return Err(Error::format(file, FORMAT, "not a BIDS file name"));
        };
        let mut found = Vec::new();
        for dir in self.sidecar_dirs(file) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut here: Vec<(usize, PathBuf)> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter_map(|p| BidsName::from_path(&p).map(|n| (n, p)))
                .filter(|(n, _)| n.suffix == suffix && n.extension == ext && n.applies_to(&data))
                .map(|(n, p)| (n.entities.len(), p))
                .collect();
            here.sort();
            found.extend(here.into_iter().map(|(_, p)| p));
        }
        Ok(found)
    }

    /// The JSON sidecar for `file` by the inheritance principle: every applicable
    /// `*_{suffix}.json` merged key by key, the more specific winning. Missing → error.
    pub fn sidecar_json(&self, file: &Path, suffix: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let files = self.applicable(file, suffix, ".json")?;
        if files.is_empty() {
            let expected = BidsName::from_path(file).map(|n| n.with_suffix(suffix, ".json")).unwrap_or_default();
            return Err(Error::format(file, FORMAT, format!("no {suffix}.json sidecar applies (expected {expected} or one it inherits)")));
        }
        let mut merged = serde_json::Map::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&f, FORMAT, format!("invalid JSON: {e}")))?;
            let serde_json::Value::Object(map) = value else {
                return Err(Error::format(&f, FORMAT, "sidecar is not a JSON object"));
            };
            merged.extend(map);
        }
        Ok(merged)
    }

    /// The most specific `*_{suffix}.tsv` applying to `file` (TSV files are not merged).
    pub fn sidecar_tsv(&self, file: &Path, suffix: &str) -> Result<Option<PathBuf>> {
        Ok(self.applicable(file, suffix, ".tsv")?.pop())
    }
}

/// BIDS channel type → our kind, for every type a BIDS version has defined (matched
/// case-insensitively, as mne-bids does). BIDS 1.0.2 had `MEGGRAD` (ds000117 uses it), later
/// versions split it into `MEGGRADPLANAR` / `MEGGRADAXIAL`; motion and NIRS types have no
/// EEG/MEG meaning for us and read as misc, as in mne-bids. `None`: a type nobody defined.
pub fn kind_from_bids_type(typ: &str) -> Option<ChannelKind> {
    use ChannelKind as K;
    Some(match typ.to_ascii_uppercase().as_str() {
        "MEGMAG" => K::Mag,
        "MEGGRAD" | "MEGGRADPLANAR" | "MEGGRADAXIAL" => K::Grad,
        "MEGREFMAG" | "MEGREFGRADAXIAL" | "MEGREFGRADPLANAR" | "MEGOTHER" => K::RefMeg,
        "EEG" => K::Eeg,
        "EOG" | "HEOG" | "VEOG" => K::Eog,
        "ECG" => K::Ecg,
        "EMG" => K::Emg,
        "TRIG" => K::Stim,
        "MISC" | "OTHER" | "AUDIO" | "PD" | "EYEGAZE" | "PUPIL" | "ADC" | "DAC" | "REF" | "PPG" => K::Misc,
        "NIRS" | "NIRSCWAMPLITUDE" | "NIRSCWFLUORESCENSE" | "NIRSCWOPTICALDENSITY" | "NIRSCWHBO" | "NIRSCWHBR"
        | "NIRSCWMUAP" => K::Misc,
        "ACCEL" | "ANGACCEL" | "GYRO" | "JNTANG" | "LATENCY" | "MAGN" | "MISC_MOTION" | "ORNT" | "POS" | "VEL" => K::Misc,
        "HLU" | "FITERR" => K::Chpi,
        "SYSCLOCK" => K::Syst,
        "RESP" => K::Resp,
        "SEEG" => K::Seeg,
        "ECOG" => K::Ecog,
        "DBS" => K::Dbs,
        "GSR" => K::Gsr,
        "TEMP" => K::Temperature,
        _ => return None,
    })
}

/// Makes `channels.tsv` win: its types set each channel's kind, its `status=bad` rows are the
/// bads. Tolerant where mne-bids is (a sidecar quirk is never a failed run), and says so in
/// the returned warnings, each naming `tsv`:
/// - a type no BIDS version defined → misc;
/// - as many rows as channels but other names → the file's channels take the table's names
///   by position (mne-bids renames them the same way);
/// - a different number of rows → types and bads apply to the channels both list.
pub fn apply_channels(info: &mut RecordingInfo, rows: &[ChannelRow], tsv: &Path) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let tsv_name = tsv.display();
    if rows.len() == info.n_channels() {
        let differ: Vec<(usize, &str)> =
            rows.iter().enumerate().filter(|(i, r)| info.channels[*i].name != r.name).map(|(i, r)| (i, r.name.as_str())).collect();
        if let Some(&(i, first)) = differ.first() {
            warnings.push(format!(
                "{tsv_name}: {} channel names differ from {} (first: {:?} vs {:?}); the file's channels take the table's names by position, as mne-bids does",
                differ.len(),
                info.path.display(),
                info.channels[i].name,
                first
            ));
            for (i, name) in differ {
                info.channels[i].name = name.to_string();
            }
        }
    } else {
        let missing = rows.iter().filter(|r| info.channel_index(&r.name).is_none()).count();
        warnings.push(format!(
            "{tsv_name}: lists {} channels, the recording {} has {} ({missing} listed channels are not in it); types and bads apply to the channels both list, as mne-bids does",
            rows.len(),
            info.path.display(),
            info.n_channels()
        ));
    }
    for row in rows {
        let Some(idx) = info.channel_index(&row.name) else { continue };
        let kind = match kind_from_bids_type(&row.typ) {
            Some(k) => k,
            None => {
                warnings.push(format!(
                    "{tsv_name}: channel {:?} has type {:?}, which no BIDS version defines; read as misc",
                    row.name, row.typ
                ));
                ChannelKind::Misc
            }
        };
        let ch = &mut info.channels[idx];
        // MEG kinds come from the sensor, not the table: keep mag/grad as the file has them
        // when BIDS agrees it is MEG (the table cannot turn a magnetometer into a gradiometer).
        if !(ch.kind.is_meg() && kind.is_meg()) && ch.kind != kind {
            ch.kind = kind;
            ch.fiff_kind = fiff_kind_of(kind);
        }
    }
    info.bads = info.channels.iter().filter(|c| rows.iter().any(|r| r.bad && r.name == c.name)).map(|c| c.name.clone()).collect();
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_runs_pairs_files_and_inherits_sidecars() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("dataset_description.json"), r#"{"Name":"x","BIDSVersion":"1.8.0"}"#);
        touch(&r.join("task-a_meg.json"), r#"{"SamplingFrequency":1000,"PowerLineFrequency":50}"#);
        touch(&r.join("sub-01/meg/sub-01_task-a_run-01_meg.fif"), "");
        touch(&r.join("sub-01/meg/sub-01_task-a_run-01_meg.json"), r#"{"PowerLineFrequency":60}"#);
        touch(&r.join("sub-01/eeg/sub-01_task-a_run-01_eeg.vhdr"), "");
        touch(&r.join("sub-02/meg/sub-02_task-a_run-01_split-01_meg.fif"), "");
        touch(&r.join("sub-02/meg/sub-02_task-a_run-01_split-02_meg.fif"), "");
        touch(&r.join("derivatives/x/sub-01/meg/sub-01_task-a_run-01_meg.fif"), "");
        let ds = Dataset::open(r).unwrap();
        let runs = ds.runs().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].meg.is_some() && runs[0].eeg.is_some());
        assert_eq!(runs[1].id(), "sub-02_task-a_run-01");
        assert!(runs[1].meg.as_ref().unwrap().ends_with("sub-02_task-a_run-01_split-01_meg.fif"));
        let side = ds.sidecar_json(runs[0].meg.as_ref().unwrap(), "meg").unwrap();
        assert_eq!(side["PowerLineFrequency"], 60);
        assert_eq!(side["SamplingFrequency"], 1000);
        let side2 = ds.sidecar_json(runs[1].meg.as_ref().unwrap(), "meg").unwrap();
        assert_eq!(side2["PowerLineFrequency"], 50);
        let err = ds.sidecar_json(runs[0].eeg.as_ref().unwrap(), "eeg").unwrap_err().to_string();
        assert!(err.contains("sub-01_task-a_run-01_eeg.json"), "{err}");
    }

    #[test]
    fn not_bids_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let err = Dataset::open(d.path()).err().unwrap().to_string();
        assert!(err.contains("dataset_description.json is missing") && err.contains(&d.path().display().to_string()));
    }
}
