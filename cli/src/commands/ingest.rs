//! `bf-pipeline ingest SOURCE`: fetch (OpenNeuro id) or index (local path) a BIDS dataset,
//! open and check every run, write `derivatives/brainformer/manifest.parquet` and the project
//! file `brainformer.toml` in the current directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bf_pipeline::bids::{Dataset, Run};
use bf_pipeline::config::ProjectConfig;
use bf_pipeline::bids::manifest_path;
use bf_pipeline::ingest::{inspect_dataset, write_manifest, IngestOptions, SkipReason, Skipped};
use bf_pipeline::source::{execute_plan, plan_download, DownloadOptions, Progress};
use indicatif::{ProgressBar, ProgressStyle};

use super::download::RemoteArgs;

/// Which runs ingest takes, and how strictly.
#[derive(clap::Args, Debug, Clone)]
pub struct RunChoice {
    /// Fail (exit 1) when any run is left out: not downloaded, empty-room, no EEG or MEG,
    /// MaxShield, no MaxFilter output. Without it they are listed and the rest ingested.
    #[arg(long)]
    pub strict: bool,
    /// Take MaxShield (Internal Active Shielding) recordings as they are (MNE's
    /// allow_maxshield). They are distorted until Maxwell-filtered, so by default such runs
    /// are left out with a message.
    #[arg(long)]
    pub allow_maxshield: bool,
    /// `raw`: the recordings under sub-*. `proc-sss`: the Elekta MaxFilter output
    /// (`*_proc-sss_meg.fif`, EEG included) under derivatives/*/ at the same relative path,
    /// where the dataset has it (ds000117: derivatives/meg_derivatives). Recorded in the
    /// manifest, brainformer.toml and the shards' metadata.
    #[arg(long, default_value = "raw", value_parser = ["raw", "proc-sss"])]
    pub meg_source: String,
}

/// Fetch (OpenNeuro id) or index (local path) a BIDS dataset and check every run.
///
/// `bf-pipeline ingest ds000117` downloads from OpenNeuro's public S3 bucket (anonymous,
/// parallel, resumable, verified); `bf-pipeline ingest path/to/bids` indexes in place.
/// Writes DIR/derivatives/brainformer/manifest.parquet (one row per run) and the project
/// file brainformer.toml here, so `bf-pipeline tokenize` needs no arguments next.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// OpenNeuro dataset id (ds000117) or a local BIDS directory.
    pub source: String,
    /// Download destination (default: ./<dataset id>).
    #[arg(long)]
    pub dest: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub choice: RunChoice,
    /// Project file to write.
    #[arg(long, default_value = "brainformer.toml")]
    pub project: PathBuf,
}

pub fn run(args: &IngestArgs, quiet: bool) -> Result<()> {
    let Some((root, source)) = resolve_source(args, quiet)? else { return Ok(()) };
    let ds = Dataset::open(&root)?;
    let runs: Vec<Run> = ds.runs()?.into_iter().filter(|r| selected(r, &args.remote)).collect();
    if runs.is_empty() {
        bail!("{}: no MEG or EEG runs found (or none match --subjects/--datatype)", root.display());
    }
    let opts = IngestOptions { meg_source: args.choice.meg_source.parse().map_err(anyhow::Error::msg)?, allow_maxshield: args.choice.allow_maxshield, ..Default::default() };
    let bar = bar(quiet, runs.len() as u64, "{spinner} checking runs [{bar:30}] {pos}/{len} {wide_msg}");
    let report = inspect_dataset(&ds, &runs, &opts, &|r: &Run| {
        bar.set_message(r.id());
        bar.inc(1);
    });
    bar.finish_and_clear();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let (failed, left_out): (Vec<&Skipped>, Vec<&Skipped>) = report.skipped.iter().partition(|s| s.is_failure());
    for s in &left_out {
        eprintln!("left out: {}", s.describe(&root, &source));
    }
    for s in &failed {
        eprintln!("error: {}", s.describe(&root, &source));
    }
    let records = &report.records;
    let manifest = manifest_path(&root);
    if !records.is_empty() {
        // The pipeline reads the manifest under derivatives/brainformer's lock: wait for a
        // running tokenize instead of changing its runs under it.
        let der = bf_pipeline::bids::derivatives_dir(&root);
        let _held = super::dag::take_lock(&der, bf_pipeline::dag::lock::LockMode::Exclusive, false, None)?;
        write_manifest(&manifest, records)?;
    }
    let mut config = ProjectConfig::with_defaults(root.clone(), source);
    config.dataset.meg_source = opts.meg_source.as_str().to_string();
    config.dataset.allow_maxshield = opts.allow_maxshield;
    config.save(&args.project)?;
    let (n_eeg, n_meg) = records.first().map(|r| (r.n_eeg, r.n_meg)).unwrap_or_default();
    println!(
        "ingested {} of {} runs from {} ({} EEG + {} MEG channels in the first; MEG source {}); {}; manifest {}; project file {}",
        records.len(),
        runs.len(),
        root.display(),
        n_eeg,
        n_meg,
        opts.meg_source.as_str(),
        left_out_summary(&report.skipped),
        manifest.display(),
        args.project.display()
    );
    if !failed.is_empty() {
        bail!("{} of {} runs failed (listed above); the manifest holds the others", failed.len(), runs.len());
    }
    if args.choice.strict && !left_out.is_empty() {
        bail!("--strict: {} of {} runs were left out (listed above)", left_out.len(), runs.len());
    }
    Ok(())
}

/// `left out: 13 not downloaded, 8 empty-room` (or `none left out`).
fn left_out_summary(skipped: &[Skipped]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for s in skipped {
        let what = match s.reason {
            SkipReason::NotDownloaded(_) => "not downloaded",
            SkipReason::EmptyRoom => "empty-room",
            SkipReason::MissingModality(_) => "without EEG or MEG",
            SkipReason::NoProcSss(_) => "without MaxFilter output",
            SkipReason::MaxShield(_) => "MaxShield",
            SkipReason::Unreadable(_) => "failed",
        };
        match counts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => counts.push((what, 1)),
        }
    }
    if counts.is_empty() {
        return "none left out".into();
    }
    let parts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    format!("left out: {}", parts.join(", "))
}

/// A local directory is indexed in place; an OpenNeuro id (`ds000117`) is downloaded first,
/// after its plan and the free space at the destination are checked. `None` for `--dry-run`:
/// the plan was printed and nothing else is to be done.
fn resolve_source(args: &IngestArgs, quiet: bool) -> Result<Option<(PathBuf, String)>> {
    let as_path = Path::new(&args.source);
    if as_path.is_dir() {
        let root = as_path.canonicalize().with_context(|| format!("{}: cannot resolve", as_path.display()))?;
        if args.remote.dry_run {
            println!("{}: a local directory, nothing to download (--dry-run: stopping here)", root.display());
            return Ok(None);
        }
        return Ok(Some((root, "local".into())));
    }
    let is_id = args.source.len() == 8 && args.source.starts_with("ds") && args.source[2..].chars().all(|c| c.is_ascii_digit());
    if !is_id {
        bail!("{}: neither a directory nor an OpenNeuro dataset id (like ds000117)", args.source);
    }
    let dest = args.dest.clone().unwrap_or_else(|| PathBuf::from(&args.source));
    let mut opts = DownloadOptions { jobs: args.remote.jobs.max(1), ..DownloadOptions::default() };
    if let Some(ep) = &args.remote.s3_endpoint {
        opts.endpoint = ep.clone();
    }
    let plan = plan_download(&args.source, &dest, &args.remote.selection(), &opts)?;
    let space = plan.check_space()?;
    if args.remote.dry_run {
        print!("{}", super::download::format_plan(&plan, &space));
        return Ok(None);
    }
    if !quiet {
        super::download::print_plan(&plan, &space);
    }
    space.require(&plan.dataset, &plan.dest)?;
    let progress = DownloadBar::new(quiet);
    let summary = execute_plan(&plan, &opts, &progress);
    progress.finish();
    let summary = summary?;
    eprintln!(
        "downloaded {} files ({} bytes), {} already complete, {} failed",
        summary.files_downloaded, summary.bytes_downloaded, summary.files_skipped_complete, summary.failures.len()
    );
    for (key, err) in &summary.failures {
        eprintln!("error: {key}: {err}");
    }
    if !summary.failures.is_empty() {
        bail!("{} files could not be downloaded; run the same command again to resume", summary.failures.len());
    }
    let root = dest.canonicalize().with_context(|| format!("{}: cannot resolve", dest.display()))?;
    Ok(Some((root, args.source.clone())))
}

fn selected(run: &Run, remote: &RemoteArgs) -> bool {
    let sub_ok = remote.subjects.is_empty()
        || remote.subjects.iter().any(|s| Some(s.trim_start_matches("sub-")) == run.get("sub"));
    let dt_ok = remote.datatypes.is_empty()
        || remote.datatypes.iter().any(|d| (d == "meg" && run.meg.is_some()) || (d == "eeg" && (run.eeg.is_some() || run.meg.is_some())));
    sub_ok && dt_ok
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    b
}

/// Bytes and files of a download, on one bar.
pub struct DownloadBar {
    bar: ProgressBar,
    files: std::sync::atomic::AtomicU64,
    total_files: std::sync::atomic::AtomicU64,
}

impl DownloadBar {
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    pub fn new(quiet: bool) -> Self {
        let bar = bar(quiet, 0, "{spinner} downloading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}");
        DownloadBar { bar, files: Default::default(), total_files: Default::default() }
    }
}

impl Progress for DownloadBar {
    fn total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn file_done(&self, _key: &str) {
        let done = self.files.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{done}/{} files", self.total_files.load(std::sync::atomic::Ordering::Relaxed)));
    }
}
