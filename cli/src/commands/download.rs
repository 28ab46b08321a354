//! `bf-pipeline download DATASET --dest DIR`: only the download half of `ingest` (no indexing),
//! for fetching a selection of an OpenNeuro dataset. Exit status: 0 when every object
//! arrived, 1 when some failed (rerun to resume), 2 when nothing could be done.

use std::path::PathBuf;

use bf_pipeline::source::{download_dataset, DownloadOptions, Selection};

use super::ingest::DownloadBar;

pub struct DownloadArgs {
    pub dataset: String,
    pub dest: PathBuf,
    pub s3_endpoint: Option<String>,
    pub bucket: Option<String>,
    pub selection: Selection,
    pub jobs: usize,
    pub retries: u32,
    pub json: bool,
    pub quiet: bool,
}

/// Runs the download and returns the process exit code.
pub fn run(args: DownloadArgs) -> i32 {
    let mut opts = DownloadOptions { jobs: args.jobs.max(1), retries: args.retries, ..DownloadOptions::default() };
    if let Some(ep) = args.s3_endpoint {
        opts.endpoint = ep;
    }
    if let Some(b) = args.bucket {
        opts.bucket = b;
    }
    let progress = DownloadBar::new(args.quiet || args.json);
    let result = download_dataset(&args.dataset, &args.dest, &args.selection, &opts, &progress);
    progress.finish();
    match result {
        Ok(summary) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary).expect("summary serializes"));
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
        Err(e) => {
            eprintln!("error: {e}");
            if args.json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            2
        }
    }
}
