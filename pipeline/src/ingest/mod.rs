//! Ingest: open and check every run of a BIDS dataset, and describe it in
//! `derivatives/brainformer/manifest.parquet` (one row per run). A run that fails is
//! reported with its path; the others are still ingested.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::bids::{data_files, open_with_bids_at, proc_sss_path, read_events, BidsName, Dataset, MegSource, Run};
use crate::fsutil::hash_file;
#[cfg(test)]
use crate::bids::{derivatives_dir, manifest_path};
#[cfg(test)]
use crate::fsutil::hash_files;
use crate::error::{Error, Result};
use crate::recording::{ChannelKind, RecordingInfo};

mod manifest;

pub use manifest::{manifest_frame, write_manifest};

/// How ingest (and later the DAG) chooses and opens the runs.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub meg_source: MegSource,
    /// Take MaxShield recordings as they are (MNE's `allow_maxshield`).
    pub allow_maxshield: bool,
    /// `[maxwell]`: MaxShield recordings it will filter are taken.
    pub maxwell: crate::config::MaxwellConfig,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { meg_source: MegSource::Raw, allow_maxshield: false, maxwell: Default::default() }
    }
}

impl IngestOptions {
    pub fn from_config(cfg: &crate::config::ProjectConfig) -> Result<IngestOptions> {
        Ok(IngestOptions { meg_source: MegSource::from_config(cfg)?, allow_maxshield: cfg.dataset.allow_maxshield, maxwell: cfg.maxwell.clone() })
    }
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
    /// `raw` or `proc-sss` ([`MegSource`]).
    pub meg_source: String,
    pub format: String,
    pub sfreq: f64,
    pub n_samples: u64,
    pub duration: f64,
    pub n_eeg: u32,
    pub n_meg: u32,
    pub eeg_channels: Vec<String>,
    pub meg_channels: Vec<String>,
    pub bads: Vec<String>,
    /// Channels per MNE type after channels.tsv, as JSON (`{"eeg":70,"grad":204,…}`).
    pub channel_types: String,
    /// events.tsv rows inside the recording (mne-bids keeps the same ones).
    pub n_events: u32,
    /// events.tsv rows outside the recording, dropped as mne-bids drops them.
    pub n_events_dropped: u32,
    /// The run's empty-room recording (`AssociatedEmptyRoom`), relative to the root.
    pub empty_room: Option<String>,
    /// Whether that recording's content is on disk.
    pub empty_room_present: bool,
    /// BLAKE3 of the run's data files (all split parts), hex.
    pub content_hash: String,
    /// Each data file's hash as the DAG keys it, with the size and mtime it had when read:
    /// [`write_manifest`] hands them to the DAG's input-hash cache, so `tokenize` does not
    /// read the files again (not a manifest column).
    pub file_hashes: Vec<crate::fsutil::hash_cache::FileHash>,
}

/// Why a run found in the dataset is not ingested.
#[derive(Debug)]
pub enum SkipReason {
    /// Data files are dangling links or absent (git-annex content not fetched).
    NotDownloaded(Vec<PathBuf>),
    /// A `sub-emptyroom` noise recording: no subject, nothing to learn from; recorded in the
    /// manifest's `empty_room` column of the runs that name it.
    EmptyRoom,
    /// No EEG (or no MEG) channel after channels.tsv: the model maps EEG to MEG.
    MissingModality(&'static str),
    /// `--meg-source proc-sss` and no MaxFilter output for this run.
    NoProcSss(PathBuf),
    /// MaxShield data without Maxwell filtering or `allow_maxshield`.
    MaxShield(PathBuf),
    /// Open or check failed.
    Unreadable(Error),
}

/// One run not taken, with the reason.
#[derive(Debug)]
pub struct Skipped {
    pub run_id: String,
    pub path: PathBuf,
    pub reason: SkipReason,
}

impl Skipped {
    /// An unreadable run is a failure; the others are choices ingest makes and reports.
    pub fn is_failure(&self) -> bool {
        matches!(self.reason, SkipReason::Unreadable(_))
    }

    /// One line: the run, why it is left out, and how to take it.
    pub fn describe(&self, root: &Path, source: &str) -> String {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        match &self.reason {
            SkipReason::NotDownloaded(files) => {
                let list: Vec<String> = files.iter().map(|f| rel(f)).collect();
                format!("{}: not downloaded ({} is {}); fetch it with: {}", self.run_id, list.join(", "),
                    if files.iter().any(|f| f.symlink_metadata().is_ok()) { "a dangling link" } else { "absent" },
                    fetch_command(root, source, &list))
            }
            SkipReason::EmptyRoom => format!("{}: empty-room recording ({}), kept as the noise reference of the runs that name it, not as a training run", self.run_id, rel(&self.path)),
            SkipReason::MissingModality(which) => format!("{}: no {which} channels in {} after channels.tsv; the model needs EEG and MEG of the same run", self.run_id, rel(&self.path)),
            SkipReason::NoProcSss(expected) => format!("{}: --meg-source proc-sss, but the dataset has no MaxFilter output {} for it; fetch it, or ingest with --meg-source raw", self.run_id, rel(expected)),
            SkipReason::MaxShield(p) => format!(
                "{}: {} is MaxShield (IAS) data, distorted until Maxwell-filtered; use --meg-source proc-sss where the dataset has MaxFilter output, put the site's sss_cal.dat / ct_sparse.fif in the dataset ([maxwell] in brainformer.toml), or --allow-maxshield to take it as it is",
                self.run_id,
                rel(p)
            ),
            SkipReason::Unreadable(e) => format!("{}: unreadable: {e}", self.run_id),
        }
    }
}

/// The command that fetches absent content: `datalad get` in a DataLad/git-annex clone,
/// else our downloader for an OpenNeuro id.
fn fetch_command(root: &Path, source: &str, rel: &[String]) -> String {
    if root.join(".datalad").is_dir() || root.join(".git").join("annex").is_dir() {
        return format!("datalad get -d {} {}", root.display(), rel.join(" "));
    }
    let id = if source.starts_with("ds") && source != "local" {
        source.to_string()
    } else {
        openneuro_id_of(root).unwrap_or_else(|| "dsNNNNNN".into())
    };
    let includes: Vec<String> = rel.iter().map(|r| format!("--include {r}")).collect();
    format!("bf-pipeline download {id} --dest {} {}", root.display(), includes.join(" "))
}

/// The OpenNeuro accession of a dataset, from its `DatasetDOI`
/// (`doi:10.18112/openneuro.ds000117.v1.1.0` → `ds000117`).
fn openneuro_id_of(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("dataset_description.json")).ok()?;
    let desc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let doi = desc.get("DatasetDOI")?.as_str()?;
    let at = doi.find("openneuro.ds")? + "openneuro.".len();
    let id: String = doi[at..].chars().take(8).collect();
    (id.len() == 8 && id[2..].chars().all(|c| c.is_ascii_digit())).then_some(id)
}

fn names_of(info: &RecordingInfo, pred: impl Fn(ChannelKind) -> bool) -> Vec<String> {
    info.channels.iter().filter(|c| pred(c.kind)).map(|c| c.name.clone()).collect()
}

/// The events.tsv rows inside a recording of `duration` seconds, and those outside. As
/// MNE's `set_annotations` (which mne-bids calls): an event is kept unless it starts after
/// the end (`onset > n_times / sfreq`) or ends before the start.
pub fn count_events_inside(rows: &[crate::bids::EventRow], duration: f64) -> (u32, u32) {
    let inside = rows.iter().filter(|r| !(r.onset > duration || r.onset + r.duration.max(0.0) < 0.0)).count() as u32;
    (inside, rows.len() as u32 - inside)
}

/// `AssociatedEmptyRoom` of a sidecar as a path relative to the root (BIDS URIs
/// `bids::sub-emptyroom/…` and plain relative paths).
fn empty_room_of(sidecar: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let v = sidecar.get("AssociatedEmptyRoom")?;
    let first = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.first()?.as_str()?.to_string(),
        _ => return None,
    };
    Some(first.trim_start_matches("bids::").trim_start_matches('/').to_string())
}

/// What came of one run.
pub enum RunOutcome {
    Taken(RunRecord),
    Skipped(Skipped),
}

/// Decides whether a run is taken, and describes it if so: empty-room and not-downloaded runs
/// are reported without opening anything; the others are opened and checked.
pub fn inspect_run(ds: &Dataset, run: &Run, opts: &IngestOptions, warnings: &mut Vec<String>) -> RunOutcome {
    let skip = |path: &Path, reason| RunOutcome::Skipped(Skipped { run_id: run.id(), path: path.to_path_buf(), reason });
    if run.is_empty_room() {
        return skip(run.primary(), SkipReason::EmptyRoom);
    }
    let missing: Vec<PathBuf> = run.missing_content().into_iter().map(Path::to_path_buf).collect();
    if !missing.is_empty() {
        return skip(run.primary(), SkipReason::NotDownloaded(missing));
    }
    let meg_file = match (&run.meg, opts.meg_source) {
        (Some(raw), MegSource::ProcSss) => match proc_sss_path(ds, raw) {
            Some(p) if p.exists() => Some(p),
            Some(p) => return skip(raw, SkipReason::NotDownloaded(vec![p])),
            None => {
                let expected = BidsName::from_path(raw).map(|n| n.with_suffix("proc-sss_meg", &n.extension)).unwrap_or_default();
                return skip(raw, SkipReason::NoProcSss(ds.root.join("derivatives").join("*").join(raw.parent().and_then(|p| p.strip_prefix(&ds.root).ok()).unwrap_or(Path::new(""))).join(expected)));
            }
        },
        (m, _) => m.clone(),
    };
    match inspect_files(ds, run, meg_file.as_deref(), opts, warnings) {
        Ok(outcome) => outcome,
        Err(e) => skip(run.primary(), SkipReason::Unreadable(e)),
    }
}

fn inspect_files(ds: &Dataset, run: &Run, meg_file: Option<&Path>, opts: &IngestOptions, warnings: &mut Vec<String>) -> Result<RunOutcome> {
    let skip = |path: &Path, reason| Ok(RunOutcome::Skipped(Skipped { run_id: run.id(), path: path.to_path_buf(), reason }));
    let meg = match (meg_file, run.meg.as_deref()) {
        (Some(f), Some(anchor)) => Some(open_with_bids_at(ds, f, anchor, "meg", warnings)?),
        _ => None,
    };
    let eeg = run.eeg.as_ref().map(|f| open_with_bids_at(ds, f, f, "eeg", warnings)).transpose()?;
    for (reader, info) in meg.iter().chain(eeg.iter()) {
        let filtered = || {
            let anchor = run.meg.as_deref().unwrap_or(&info.path);
            crate::bids::maxwell_site::maxwell_for_run(ds, &opts.maxwell, opts.meg_source, &info.path, anchor, "meg").is_ok_and(|m| m.is_some())
        };
        if reader.maxshield() && !opts.allow_maxshield && !filtered() {
            return skip(&info.path, SkipReason::MaxShield(info.path.clone()));
        }
    }
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
    if eeg_channels.is_empty() {
        return skip(&eeg_info.path, SkipReason::MissingModality("EEG"));
    }
    if meg_channels.is_empty() {
        return skip(&primary.path, SkipReason::MissingModality("MEG"));
    }
    let mut type_counts = std::collections::BTreeMap::<&str, u32>::new();
    for info in meg.iter().map(|(_, i)| i).chain(eeg.as_ref().map(|(_, i)| i)) {
        for c in &info.channels {
            *type_counts.entry(c.kind.as_str()).or_default() += 1;
        }
    }
    let mut bads: Vec<String> = primary.bads.clone();
    if let Some((_, e)) = &eeg {
        for b in &e.bads {
            if !bads.contains(b) {
                bads.push(b.clone());
            }
        }
    }
    let (n_events, n_events_dropped) = match ds.sidecar_tsv(run.primary(), "events")? {
        Some(p) => count_events_inside(&read_events(&p)?, primary.duration()),
        None => (0, 0),
    };
    let empty_room = match run.meg.as_deref() {
        Some(m) => empty_room_of(&ds.sidecar_json(m, "meg")?),
        None => None,
    };
    let empty_room_present = empty_room.as_ref().is_some_and(|p| ds.root.join(p).exists());
    let data_file_list: Vec<PathBuf> = meg_file.iter().map(|p| p.to_path_buf()).chain(run.eeg.iter().cloned()).flat_map(|f| data_files(&f)).collect();
    let rel = |p: &Path| p.strip_prefix(&ds.root).unwrap_or(p).to_string_lossy().into_owned();
    // One read of each file serves the manifest's content hash and the DAG's key.
    let mut outer = blake3::Hasher::new();
    let mut file_hashes = Vec::with_capacity(data_file_list.len());
    for f in &data_file_list {
        let (size, mtime_ns) = crate::fsutil::hash_cache::size_and_mtime(f)?;
        let inner = hash_file(f)?;
        outer.update(inner.as_bytes());
        file_hashes.push(crate::fsutil::hash_cache::FileHash { path: f.clone(), size, mtime_ns, blake3: blake3::hash(inner.as_bytes()).to_hex().to_string() });
    }
    let content_hash = outer.finalize().to_hex().to_string();
    Ok(RunOutcome::Taken(RunRecord {
        id: run.id(),
        subject: run.get("sub").unwrap_or_default().to_string(),
        session: run.get("ses").map(str::to_string),
        task: run.get("task").map(str::to_string),
        run: run.get("run").map(str::to_string),
        acquisition: run.get("acq").map(str::to_string),
        meg_path: meg_file.map(rel),
        eeg_path: run.eeg.as_deref().map(rel),
        meg_source: if meg_file.is_some() && meg_file != run.meg.as_deref() { MegSource::ProcSss } else { MegSource::Raw }.as_str().to_string(),
        format: primary.format.to_string(),
        sfreq: primary.sfreq,
        n_samples: primary.n_samples as u64,
        duration: primary.duration(),
        n_eeg: eeg_channels.len() as u32,
        n_meg: meg_channels.len() as u32,
        eeg_channels,
        meg_channels,
        bads,
        channel_types: serde_json::to_string(&type_counts).expect("JSON"),
        n_events,
        n_events_dropped,
        empty_room,
        empty_room_present,
        content_hash,
        file_hashes,
    }))
}

/// What ingest found: the runs taken, those left out (in run order), and the sidecar quirks
/// it tolerated (each once, however many runs share the sidecar).
pub struct DatasetReport {
    pub records: Vec<RunRecord>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

/// Inspects every run (in parallel).
pub fn inspect_dataset(ds: &Dataset, runs: &[Run], opts: &IngestOptions, on_done: &(dyn Fn(&Run) + Sync)) -> DatasetReport {
    let results: Vec<(RunOutcome, Vec<String>)> = runs
        .par_iter()
        .map(|r| {
            let mut warnings = Vec::new();
            let res = inspect_run(ds, r, opts, &mut warnings);
            on_done(r);
            (res, warnings)
        })
        .collect();
    let mut report = DatasetReport { records: Vec::new(), skipped: Vec::new(), warnings: Vec::new() };
    for (outcome, warnings) in results {
        for w in warnings {
            if !report.warnings.contains(&w) {
                report.warnings.push(w);
            }
        }
        match outcome {
            RunOutcome::Taken(rec) => report.records.push(rec),
            RunOutcome::Skipped(s) => report.skipped.push(s),
        }
    }
    report
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::formats::fif::write::{write_raw, WriteOptions};
    use crate::recording::{ChannelInfo, InMemory, RawReader, Unit};
    use std::fs;

    fn touch(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// A 2-second FIF with one magnetometer, one gradiometer, two EEG and a stim channel.
    fn write_fif(path: &Path) {
        let channels = vec![
            ChannelInfo::new("MEG0111", ChannelKind::Mag, 1, Unit::T),
            ChannelInfo::new("MEG0112", ChannelKind::Grad, 1, Unit::T_M),
            ChannelInfo::new("EEG001", ChannelKind::Eeg, 2, Unit::V),
            ChannelInfo::new("EEG002", ChannelKind::Eeg, 2, Unit::V),
            ChannelInfo::new("STI101", ChannelKind::Stim, 3, Unit::NONE),
        ];
        let n = 200;
        let info = RecordingInfo::new(path, "test", 100.0, n, channels);

        let data = ndarray::Array2::from_shape_fn((5, n), |(c, t)| ((c * 7 + t) as f64 * 0.1).sin() * 1e-12);
        let rec = InMemory::new(info, data).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_raw(&rec, &rec.all_picks(), 0, n, path, &WriteOptions::default()).unwrap();
    }

    const CHANNELS_TSV: &str = "name\ttype\tunits\tstatus\nMEG0111\tMEGMAG\tT\tgood\nMEG0112\tMEGGRAD\tT/m\tbad\nEEG001\tEEG\tV\tgood\nEEG002\tVEOG\tV\tgood\nSTI101\tTRIG\tn/a\tgood\n";

    /// ds000117's shape in miniature: session-level sidecars, an empty-room subject, a
    /// dangling link (a datalad clone without `get`), a MaxFilter derivative.
    pub(crate) fn dataset(root: &Path) {
        touch(&root.join("dataset_description.json"), r#"{"Name":"x","BIDSVersion":"1.0.2","DatasetDOI":"doi:10.18112/openneuro.ds000117.v1.1.0"}"#);
        for sub in ["01", "02"] {
            let ses = root.join(format!("sub-{sub}/ses-meg"));
            touch(&ses.join(format!("sub-{sub}_ses-meg_task-face_channels.tsv")), CHANNELS_TSV);
            touch(&ses.join(format!("sub-{sub}_ses-meg_task-face_meg.json")), r#"{"SamplingFrequency":100,"AssociatedEmptyRoom":"sub-emptyroom/ses-20090409/meg/sub-emptyroom_ses-20090409_task-noise_meg.fif"}"#);
            // Three events inside the 2 s recording, two after its end.
            touch(&ses.join(format!("meg/sub-{sub}_ses-meg_task-face_run-01_events.tsv")), "onset\tduration\tonset_sample\ttrigger\n0.5\t0\t50\t5\n1.0\t0\t100\t13\n2.0\t0\t200\t5\n2.5\t0\t250\t17\n30\t0\t3000\t5\n");
        }
        write_fif(&root.join("sub-01/ses-meg/meg/sub-01_ses-meg_task-face_run-01_meg.fif"));
        std::os::unix::fs::symlink("../../../.git/annex/objects/xx/MD5E-s1--abc.fif", root.join("sub-02/ses-meg/meg/sub-02_ses-meg_task-face_run-01_meg.fif")).unwrap();
        touch(&root.join("sub-emptyroom/sub-emptyroom_task-noise_channels.tsv"), CHANNELS_TSV);
        touch(&root.join("sub-emptyroom/sub-emptyroom_task-noise_meg.json"), r#"{"SamplingFrequency":100}"#);
        write_fif(&root.join("sub-emptyroom/ses-20090409/meg/sub-emptyroom_ses-20090409_task-noise_meg.fif"));
        write_fif(&root.join("derivatives/meg_derivatives/sub-01/ses-meg/meg/sub-01_ses-meg_task-face_run-01_proc-sss_meg.fif"));
    }

    pub(crate) fn outcomes(root: &Path, opts: &IngestOptions) -> DatasetReport {
        let ds = Dataset::open(root).unwrap();
        let runs = ds.runs().unwrap();
        inspect_dataset(&ds, &runs, opts, &|_| {})
    }

    #[test]
    fn ds000117_layout_takes_the_downloaded_run_and_says_why_it_leaves_out_the_others() {
        let d = tempfile::tempdir().unwrap();
        dataset(d.path());
        let report = outcomes(d.path(), &IngestOptions::default());
        assert_eq!(report.records.len(), 1);
        let r = &report.records[0];
        assert_eq!(r.id, "sub-01_ses-meg_task-face_run-01");
        assert_eq!((r.n_meg, r.n_eeg), (2, 1), "VEOG is EOG, MEGGRAD is MEG");
        assert_eq!(r.channel_types, r#"{"eeg":1,"eog":1,"grad":1,"mag":1,"stim":1}"#);
        assert_eq!(r.bads, vec!["MEG0112".to_string()]);
        assert_eq!((r.n_events, r.n_events_dropped), (3, 2), "onset 2.0 = n/sfreq is kept, as by MNE");
        assert_eq!(r.empty_room.as_deref(), Some("sub-emptyroom/ses-20090409/meg/sub-emptyroom_ses-20090409_task-noise_meg.fif"));
        assert!(r.empty_room_present);
        assert_eq!(r.meg_source, "raw");
        assert_eq!(report.skipped.len(), 2);
        let lines: Vec<String> = report.skipped.iter().map(|s| s.describe(d.path(), "local")).collect();
        assert!(lines[0].starts_with("sub-02_ses-meg_task-face_run-01: not downloaded") && lines[0].contains("dangling link"), "{}", lines[0]);
        assert!(lines[0].contains("bf-pipeline download ds000117") && lines[0].contains("--include sub-02/ses-meg/meg/sub-02_ses-meg_task-face_run-01_meg.fif"), "{}", lines[0]);
        assert!(lines[1].contains("empty-room recording"), "{}", lines[1]);
        assert!(report.skipped.iter().all(|s| !s.is_failure()));
        // In a datalad clone the fix is `datalad get`.
        fs::create_dir_all(d.path().join(".datalad")).unwrap();
        assert!(report.skipped[0].describe(d.path(), "local").contains("datalad get -d"));
    }

    /// Ingest reads each data file once: its manifest hash and the DAG's key come from the
    /// same read, and the input-hash cache holds the key (that the DAG uses it:
    /// `dag::inputs::tests`). The cached value is what the DAG computes itself
    /// (`hash_files(&[file])`).
    #[test]
    fn ingest_hands_its_hashes_to_the_dag() {
        let d = tempfile::tempdir().unwrap();
        dataset(d.path());
        let report = outcomes(d.path(), &IngestOptions::default());
        let r = &report.records[0];
        let file = d.path().join(r.meg_path.as_ref().unwrap());
        assert_eq!(r.content_hash, hash_files(&data_files(&file)).unwrap());
        assert_eq!(r.file_hashes.len(), 1);
        assert_eq!(r.file_hashes[0].blake3, hash_files(std::slice::from_ref(&file)).unwrap());
        write_manifest(&manifest_path(d.path()), &report.records).unwrap();
        let cache: serde_json::Value = serde_json::from_str(&fs::read_to_string(derivatives_dir(d.path()).join("stamps/input-hashes.json")).unwrap()).unwrap();
        assert_eq!(cache[file.to_string_lossy().as_ref()]["blake3"], serde_json::json!(r.file_hashes[0].blake3));
    }

    #[test]
    fn proc_sss_source_reads_the_maxfilter_output_with_the_raw_sidecars() {
        let d = tempfile::tempdir().unwrap();
        dataset(d.path());
        let opts = IngestOptions { meg_source: MegSource::ProcSss, ..Default::default() };
        let report = outcomes(d.path(), &opts);
        assert_eq!(report.records.len(), 1);
        let r = &report.records[0];
        assert_eq!(r.meg_source, "proc-sss");
        assert_eq!(r.meg_path.as_deref(), Some("derivatives/meg_derivatives/sub-01/ses-meg/meg/sub-01_ses-meg_task-face_run-01_proc-sss_meg.fif"));
        assert!(r.bads.is_empty(), "Maxwell filtering reconstructed the bad gradiometer");
        // Without the derivative the run is left out and says what is missing.
        fs::remove_file(d.path().join(r.meg_path.as_ref().unwrap())).unwrap();
        let report = outcomes(d.path(), &opts);
        assert!(report.records.is_empty());
        let line = report.skipped[0].describe(d.path(), "local");
        assert!(line.contains("no MaxFilter output") && line.contains("proc-sss_meg.fif"), "{line}");
    }

    #[test]
    fn unknown_types_and_renamed_or_missing_rows_are_tolerated_with_warnings() {
        let d = tempfile::tempdir().unwrap();
        dataset(d.path());
        let ses = d.path().join("sub-01/ses-meg/sub-01_ses-meg_task-face_channels.tsv");
        fs::write(&ses, CHANNELS_TSV.replace("STI101\tTRIG", "STI101\tBLINKY").replace("EEG002", "EEG 002")).unwrap();
        let report = outcomes(d.path(), &IngestOptions::default());
        assert_eq!(report.records.len(), 1);
        let w = report.warnings.join("\n");
        assert!(w.contains("\"STI101\" has type \"BLINKY\"") && w.contains("read as misc") && w.contains(&ses.display().to_string()), "{w}");
        assert!(w.contains("take the table's names by position"), "{w}");
        assert_eq!(report.warnings.len(), 2, "each quirk once: {w}");
        // Fewer rows than channels: the listed ones apply.
        fs::write(&ses, CHANNELS_TSV.lines().take(4).collect::<Vec<_>>().join("\n") + "\n").unwrap();
        let report = outcomes(d.path(), &IngestOptions::default());
        assert_eq!(report.records.len(), 1);
        assert!(report.warnings[0].contains("lists 3 channels"), "{:?}", report.warnings);
        assert_eq!(report.records[0].bads, vec!["MEG0112".to_string()]);
    }

    #[test]
    fn maxshield_recording_is_left_out_unless_allowed() {
        let erm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mne-testing-data/SSS/test_move_anon_erm_raw.fif");
        if !erm.exists() {
            eprintln!("skipped: {} is absent (needs ../shared beside the clone)", erm.display());
            return;
        }
        let reader = crate::formats::open(&erm).unwrap();
        assert!(reader.maxshield());
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(&root.join("dataset_description.json"), r#"{"Name":"x","BIDSVersion":"1.8.0"}"#);
        let info = reader.info();
        let mut tsv = String::from("name\ttype\tunits\n");
        for c in &info.channels {
            let typ = match c.kind {
                ChannelKind::Mag => "MEGMAG",
                ChannelKind::Grad => "MEGGRADPLANAR",
                ChannelKind::Eeg => "EEG",
                ChannelKind::Stim => "TRIG",
                _ => "MISC",
            };
            tsv.push_str(&format!("{}\t{typ}\tn/a\n", c.name));
        }
        let meg = root.join("sub-01/meg");
        touch(&meg.join("sub-01_task-rest_channels.tsv"), &tsv);
        touch(&meg.join("sub-01_task-rest_meg.json"), "{}");
        fs::copy(&erm, meg.join("sub-01_task-rest_meg.fif")).unwrap();
        let report = outcomes(root, &IngestOptions::default());
        assert!(report.records.is_empty());
        let line = report.skipped[0].describe(root, "local");
        assert!(line.contains("MaxShield") && line.contains("--allow-maxshield"), "{line}");
        // Allowed, it is opened and checked like any run.
        let report = outcomes(root, &IngestOptions { allow_maxshield: true, ..Default::default() });
        assert!(report.skipped.iter().all(|s| !matches!(s.reason, SkipReason::MaxShield(_)) && !s.is_failure()));
        assert_eq!(report.records.len() + report.skipped.len(), 1);
        // With the site's cross-talk file where ds000117 keeps it, [maxwell] will filter it: taken.
        let ctc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mne-testing-data/SSS/ct_sparse.fif");
        fs::create_dir_all(root.join("derivatives/meg_derivatives")).unwrap();
        fs::copy(&ctc, root.join("derivatives/meg_derivatives/ct_sparse.fif")).unwrap();
        let report = outcomes(root, &IngestOptions::default());
        assert!(report.skipped.iter().all(|s| !matches!(s.reason, SkipReason::MaxShield(_))), "{:?}", report.skipped.iter().map(|s| s.describe(root, "local")).collect::<Vec<_>>());
        // ... unless [maxwell] is off.
        let off = crate::config::MaxwellConfig { apply: "off".into(), ..Default::default() };
        let report = outcomes(root, &IngestOptions { maxwell: off, ..Default::default() });
        assert!(matches!(report.skipped[0].reason, SkipReason::MaxShield(_)));
    }
}
