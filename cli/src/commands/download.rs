//! `bf-pipeline download DATASET --dest DIR`: only the download half of `ingest` (no indexing),
//! for fetching a selection of an OpenNeuro dataset. Exit status: 0 when every object
//! arrived (or `--dry-run`), 1 when some failed (rerun to resume), 2 when nothing could be done
//! (including not enough free disk space).
//!
//! Plan first: the listing is held against what is on disk and the free space before any byte
//! is fetched; the plan (one line per subject folder, plus the top-level files and other
//! folders such as `derivatives`) goes to stderr, or to stdout with `--dry-run`, which stops
//! there. [`print_plan`] and [`plan_json`] are shared with `ingest`.

use std::fmt::Write as _;
use std::path::PathBuf;

use bf_pipeline::source::{
    both, execute_plan, human_bytes, plan_download, DownloadOptions, DownloadPlan, PlanTotals, Selection,
    SpaceCheck,
};

use super::ingest::DownloadBar;

/// What to fetch and from where (shared by `ingest` and `download`).
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Only these subjects (comma-separated labels: 01,02).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Only keys matching these globs (relative to the dataset; repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Only these BIDS datatypes (meg, eeg, anat; comma-separated).
    #[arg(long = "datatype", value_delimiter = ',')]
    pub datatypes: Vec<String>,
    /// S3-compatible endpoint instead of OpenNeuro's (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "BF_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Print the download plan and stop, writing nothing: files, bytes already present
    /// (complete files, .part files to resume) and still to download per subject folder, and
    /// the free space at the destination. Without it the same plan is checked first: when the
    /// free space is below the bytes still to download + 1 % (at least 64 MiB), nothing is
    /// written. Testing aid: BF_FREE_SPACE_BYTES=N replaces the measured free space.
    #[arg(long)]
    pub dry_run: bool,
}

impl RemoteArgs {
    /// The objects of the dataset these flags select.
    pub fn selection(&self) -> Selection {
        Selection { subjects: self.subjects.clone(), include: self.include.clone(), datatypes: self.datatypes.clone() }
    }
}

/// Download (part of) an OpenNeuro dataset without indexing it (see `ingest`).
///
/// Anonymous requests to OpenNeuro's public S3 bucket: listing with pagination, parallel
/// GETs, resumable `.part` files (Range requests), size and MD5 checks, atomic renames.
/// The plan (per subject folder: files, bytes present, bytes to download) and the free
/// space at --dest are checked before the first byte; --dry-run prints the plan and stops.
/// Exit status 0: all arrived; 1: some failed (rerun to resume); 2: nothing could be done.
#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// OpenNeuro dataset id, e.g. ds000117.
    pub dataset: String,
    /// Destination directory (created if needed).
    #[arg(long)]
    pub dest: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Bucket name (default: openneuro.org).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Retries after a transient failure (per object and listing page).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the download and returns the process exit code.
pub fn run(args: &DownloadArgs, quiet: bool) -> i32 {
    let mut opts = DownloadOptions { jobs: args.remote.jobs.max(1), retries: args.retries, ..DownloadOptions::default() };
    if let Some(ep) = &args.remote.s3_endpoint {
        opts.endpoint = ep.clone();
    }
    if let Some(b) = &args.bucket {
        opts.bucket = b.clone();
    }
    let fail = |e: bf_pipeline::Error| {
        eprintln!("error: {e}");
        if args.json {
            println!("{}", serde_json::json!({ "error": e.to_string() }));
        }
        2
    };
    let plan = match plan_download(&args.dataset, &args.dest, &args.remote.selection(), &opts) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let space = match plan.check_space() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.remote.dry_run {
        if args.json {
            let doc = plan_json(&plan, &space);
            println!("{}", serde_json::to_string_pretty(&doc).expect("plan serializes"));
        } else {
            print!("{}", format_plan(&plan, &space));
        }
        return 0;
    }
    if !quiet && !args.json {
        eprint!("{}", format_plan(&plan, &space));
    }
    if let Err(e) = space.require(&plan.dataset, &plan.dest) {
        return fail(e);
    }
    let progress = DownloadBar::new(quiet || args.json);
    let result = execute_plan(&plan, &opts, &progress);
    progress.finish();
    match result {
        Ok(summary) => {
            if args.json {
                let mut doc = serde_json::to_value(&summary).expect("summary serializes");
                doc["plan"] = serde_json::to_value(plan.totals()).expect("totals serialize");
                println!("{}", serde_json::to_string_pretty(&doc).expect("summary serializes"));
            } else {
                println!(
                    "{}: {} files downloaded ({} bytes), {} already complete, {} failed, into {}",
                    args.dataset,
                    summary.files_downloaded,
                    summary.bytes_downloaded,
                    summary.files_skipped_complete,
                    summary.failures.len(),
                    args.dest.display()
                );
            }
            for (key, err) in &summary.failures {
                eprintln!("error: {key}: {err}");
            }
            if summary.failures.is_empty() {
                0
            } else {
                eprintln!("error: {} files failed; run the same command again to resume", summary.failures.len());
                1
            }
        }
        Err(e) => fail(e),
    }
}

/// The plan as JSON: dataset, dest, totals, groups (one per subject folder / other folder /
/// top level), the free-space check and every file with its local state.
pub fn plan_json(plan: &DownloadPlan, space: &SpaceCheck) -> serde_json::Value {
    serde_json::json!({
        "dataset": plan.dataset,
        "dest": plan.dest,
        "totals": plan.totals(),
        "groups": plan.groups(),
        "space": {
            "measured_at": space.measured_at,
            "available": space.available,
            "to_download": space.to_download,
            "needed": space.needed,
            "overridden": space.overridden,
            "enough": space.enough(),
            "shortfall": space.shortfall(),
        },
        "refused": plan.refused,
        "files": plan.files,
    })
}

/// The plan as a table: a header with the totals in exact bytes, one line per group, a total
/// line, and the free-space verdict.
pub fn format_plan(plan: &DownloadPlan, space: &SpaceCheck) -> String {
    let t = plan.totals();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {} into {}: {} files, {} bytes; {} bytes present, {} bytes to download",
        plan.dataset,
        plan.dest.display(),
        t.files,
        t.bytes,
        t.bytes_present,
        t.bytes_to_download
    );
    let row = |s: &mut String, name: &str, t: &PlanTotals| {
        let _ = writeln!(
            s,
            "  {name:<16} {:>6} {:>9} {:>6} {:>10} {:>10} {:>12}",
            t.files,
            t.files_complete,
            t.files_partial,
            human_bytes(t.bytes),
            human_bytes(t.bytes_present),
            human_bytes(t.bytes_to_download)
        );
    };
    let _ = writeln!(
        s,
        "  {:<16} {:>6} {:>9} {:>6} {:>10} {:>10} {:>12}",
        "part", "files", "complete", ".part", "size", "present", "to download"
    );
    for g in plan.groups() {
        row(&mut s, &g.name, &g.totals);
    }
    row(&mut s, "total", &t);
    for (key, msg) in &plan.refused {
        let _ = writeln!(s, "  refused: {key}: {msg}");
    }
    let margin = space.needed - space.to_download;
    let _ = writeln!(
        s,
        "free space: {} available on {}; {} needed ({} to download + {} margin){}",
        both(space.available),
        space.source(),
        both(space.needed),
        human_bytes(space.to_download),
        human_bytes(margin),
        if space.enough() {
            ": enough".to_string()
        } else {
            format!(": NOT ENOUGH, {} short", both(space.shortfall()))
        }
    );
    s
}

/// Prints the plan table on stderr (before a real download).
pub fn print_plan(plan: &DownloadPlan, space: &SpaceCheck) {
    eprint!("{}", format_plan(plan, space));
}
