//! `bf-pipeline upload REPO_ID`: push the shards folder (dataset card README.md +
//! data/*.parquet) to a Hugging Face dataset repository, or with `--model CKPT_DIR` a
//! checkpoint (config.json, model.safetensors, a model card with bf-eval's metrics) to a model
//! repository. The protocol lives in the `bf_hub` crate; this file finds the folder, the token
//! and the endpoint, draws the byte progress bar and prints the summary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use bf_hub::{HubClient, HubEnv, RepoKind, RetryPolicy, UploadOptions, UploadReport};

/// Push the shards folder (or, with --model, a checkpoint) to a Hugging Face Hub repository.
///
/// Dataset (default): the shards folder (README.md dataset card + data/*.parquet) goes to
/// the dataset repository REPO_ID. --model CKPT_DIR: config.json, model.safetensors and a
/// model card README.md with bf-eval's metrics (CKPT_DIR/metrics.json, or --metrics) go to
/// the model repository REPO_ID. As huggingface_hub's upload_folder: the repository is
/// created if missing; large files go through LFS (multipart, parts in parallel); files
/// already on the Hub with the same content are skipped; everything lands in one commit,
/// sent last, so an interrupted upload commits nothing and the same command run again
/// sends only what is missing. 429, 5xx and network errors are retried with backoff.
///
/// Environment, as huggingface_hub: HF_TOKEN is the access token (needs write access);
/// without it the token file written by `hf auth login` is read: $HF_HOME/token, HF_HOME
/// defaulting to ~/.cache/huggingface (HF_TOKEN_PATH overrides the file). The token is
/// never printed. HF_ENDPOINT is the Hub's address (default https://huggingface.co; set it
/// for a mirror or a local stand-in). BF_HUB_BACKOFF_MS: first retry delay (default 1000).
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UploadArgs {
    /// The repository: NAMESPACE/NAME (e.g. your-user/ds000117-shards).
    pub repo_id: String,
    /// The folder to push as a dataset. Default: the shards folder of the project
    /// (brainformer.toml here), else ./derivatives/brainformer/shards.
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Push this checkpoint directory (config.json + model.safetensors) to a model
    /// repository instead of the shards.
    #[arg(long, value_name = "CKPT_DIR")]
    pub model: Option<PathBuf>,
    /// bf-eval's metrics (JSON) for the model card (default: CKPT_DIR/metrics.json if present).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Branch to commit to (it must exist).
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Create the repository private (when it does not exist yet).
    #[arg(long)]
    pub private: bool,
    /// Commit title (default: "Upload N files with brainformer").
    #[arg(long)]
    pub commit_message: Option<String>,
    /// Project file whose shards folder is the default.
    #[arg(long, default_value = "brainformer.toml")]
    pub project: PathBuf,
    /// Parallel uploads (files and multipart parts).
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Retries of each request after a 429, a 5xx or a network error (backoff doubling
    /// from BF_HUB_BACKOFF_MS, at most 30 s, or the Hub's Retry-After).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Bytes sent, on one bar.
struct Bar(ProgressBar);

impl bf_hub::Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn rewind(&self, bytes: u64) {
        self.0.set_position(self.0.position().saturating_sub(bytes));
    }
    fn message(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }
}

/// The shards folder: --shards, else the project's (brainformer.toml here; its kind's folder),
/// else ./derivatives/brainformer/shards.
fn shards_dir(args: &UploadArgs) -> Result<PathBuf> {
    if let Some(s) = &args.shards {
        return Ok(s.clone());
    }
    if args.project.exists() {
        let c = bf_pipeline::config::ProjectConfig::load(&args.project)?;
        // The project's shards of its kind (tokens: shards/, continuous: shards-continuous/).
        let folder = if c.shards.kind == "continuous" { "shards-continuous" } else { "shards" };
        return Ok(bf_pipeline::bids::derivatives_dir(&c.dataset.root).join(folder));
    }
    let here = Path::new("derivatives/brainformer/shards");
    if here.is_dir() {
        return Ok(here.to_path_buf());
    }
    bail!("no --shards DIR, no {} here and no ./derivatives/brainformer/shards: pass the folder to upload with --shards (or run in the project folder)", args.project.display())
}

pub fn run(args: &UploadArgs, quiet: bool) -> Result<()> {
    let env = HubEnv::from_process();
    let mut client = HubClient::from_env(&env);
    let base_ms = std::env::var("BF_HUB_BACKOFF_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1000);
    client.retry = RetryPolicy { max_retries: args.retries, base_delay: std::time::Duration::from_millis(base_ms), ..RetryPolicy::default() };
    let opts = UploadOptions {
        revision: args.revision.clone(),
        private: args.private,
        commit_message: args.commit_message.clone(),
        jobs: args.jobs.max(1),
        ..UploadOptions::default()
    };
    let bar = if quiet || args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(ProgressStyle::with_template("{spinner} uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}").expect("valid template").progress_chars("=> "));
        b
    };
    let bar = Bar(bar);
    let (kind, report) = match &args.model {
        Some(ckpt) => {
            let metrics_path = args.metrics.clone().or_else(|| Some(ckpt.join("metrics.json")).filter(|p| p.is_file()));
            let metrics = match &metrics_path {
                Some(p) => Some(serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).with_context(|| format!("{}: cannot read the metrics", p.display()))?).with_context(|| format!("{}: not JSON", p.display()))?),
                None => None,
            };
            if args.shards.is_some() {
                bail!("--shards and --model exclude each other: one upload pushes either the dataset shards or a checkpoint");
            }
            (RepoKind::Model, bf_hub::upload_checkpoint(&client, &args.repo_id, ckpt, metrics.as_ref(), &opts, &bar))
        }
        None => {
            if args.metrics.is_some() {
                bail!("--metrics goes with --model CKPT_DIR");
            }
            let dir = shards_dir(args)?;
            (RepoKind::Dataset, bf_hub::upload_folder(&client, RepoKind::Dataset, &args.repo_id, &dir, &opts, &bar))
        }
    };
    bar.0.finish_and_clear();
    let report = report.map_err(|e| {
        let token = match client.token_source() {
            Some(src) if e.status().is_some_and(|s| s == 401 || s == 403) => format!(" (token from {src}, endpoint {})", client.endpoint()),
            _ => String::new(),
        };
        anyhow::anyhow!("{e}{token}")
    })?;
    print_report(&report, kind, args.json);
    Ok(())
}

fn print_report(r: &UploadReport, kind: RepoKind, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("report serializes"));
        return;
    }
    match &r.commit {
        Some(c) => println!(
            "{}: committed {} of {} files ({} LFS objects sent, {} bytes; {} already stored; {} unchanged) as {}",
            r.url, r.files_committed, r.files, r.lfs_objects_sent, r.lfs_bytes_sent, r.lfs_objects_present, r.files_unchanged, c.commit_oid
        ),
        None => println!("{}: all {} files are already on the Hub ({}); nothing to commit", r.url, r.files, r.revision),
    }
    if kind == RepoKind::Dataset {
        println!("load it: python -c \"import datasets; print(datasets.load_dataset('{}'))\"", r.repo_id);
    }
}
