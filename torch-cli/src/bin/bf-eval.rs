//! `bf-eval`: held-out metrics of a checkpoint beside baselines, and `--forward`, which runs a
//! checkpoint on given inputs so anyone can compare it with PyTorch. This file parses the
//! flags, draws the progress bar and prints the headline; the evaluation is
//! `bf_eval::evaluate` (predict → baselines → score → report).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bf_eval::evaluate::{evaluate, EvalOptions, Progress};
use bf_model::tensorboard::EventWriter;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Evaluate a Brainformer checkpoint on held-out shards, beside baselines.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Checkpoint directory written by bf-train (config.json + model.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Run the checkpoint on the tensors `eeg` and `meg` of this safetensors file (token ids
    /// [B, T, C] or float values [B, L, C]) and write outputs, loss and gradients to --out.
    #[arg(long, value_name = "INPUTS.safetensors")]
    forward: Option<PathBuf>,
    /// With --forward: also decode this many steps greedily (cached decoding).
    #[arg(long)]
    generate: Option<i64>,
    /// Shards folder (from `bf-pipeline tokenize`) holding the split to evaluate.
    #[arg(long, required_unless_present = "forward")]
    shards: Option<PathBuf>,
    /// Split to evaluate: test, validation or train.
    #[arg(long, default_value = "test")]
    split: String,
    /// Output: a folder for metrics.json, report.md and plots; a .safetensors file with --forward.
    #[arg(long)]
    out: PathBuf,
    /// Chunks per model batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Evaluate at most this many windows of the split (the first, in file order).
    #[arg(long, default_value_t = 256)]
    max_windows: usize,
    /// Training windows for the ridge baseline (validation: a quarter as many).
    #[arg(long, default_value_t = 1000)]
    ridge_windows: usize,
    /// Ridge lags: -N..=N samples of EEG around each MEG sample.
    #[arg(long, default_value_t = 5)]
    max_lag: usize,
    /// Token model: also decode this many windows free-running (from the EEG alone; each
    /// costs a decoding pass per time step). 0 skips it.
    #[arg(long, default_value_t = 16)]
    free_windows: usize,
    /// Free-running decoding samples at this temperature instead of taking the argmax.
    #[arg(long)]
    temperature: Option<f64>,
    /// Seeds sampled decoding.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Folder of the runs' noise-free recordings (`…_desc-noisefree_meg.fif`, as
    /// `bf-fixtures --physics` writes them): adds the noise ceiling, the recorded MEG's r
    /// against its noise-free part. Default: the dataset's `derivatives/noise-free` when the
    /// shards lie inside a dataset that has one.
    #[arg(long, value_name = "DIR")]
    noise_free: Option<PathBuf>,
    /// No noise-ceiling row, even when the dataset has noise-free recordings.
    #[arg(long, conflicts_with = "noise_free")]
    no_noise_ceiling: bool,
    /// Regression checkpoints: run the model on chunks started every HOP samples (e.g. half
    /// the sequence length) instead of back to back, and take each sample from the chunk it
    /// is most central in, so chunk edges (where a chunk has the least context) fall only at
    /// the window's ends. Costs sequence_length / HOP times the model time.
    #[arg(long, value_name = "HOP")]
    hop: Option<usize>,
    /// Where to compute: cpu, cuda, or auto (CUDA when a GPU is visible).
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() {
    brainformer_cli::end_quietly_on_closed_stdout();
    brainformer_cli::alloc::keep_tensors_in_heap();
    brainformer_cli::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    let device = bf_model::device::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    if let Some(inputs) = &args.forward {
        let (vs, model) = bf_model::load_checkpoint(&args.checkpoint, device)
            .with_context(|| format!("loading the checkpoint {}", args.checkpoint.display()))?;
        bf_model::probe::forward_file(&vs, &model, inputs, &args.out, args.generate)?;
        return Ok(());
    }
    let shards = args.shards.clone().expect("clap requires --shards");
    let noise_free = match (&args.noise_free, args.no_noise_ceiling) {
        (Some(dir), _) if !dir.is_dir() => anyhow::bail!("--noise-free {}: not a folder", dir.display()),
        (Some(dir), _) => Some(dir.clone()),
        (None, true) => None,
        (None, false) => bf_pipeline::noise_free::find_noise_free_dir(&shards),
    };
    let opts = EvalOptions {
        checkpoint: args.checkpoint.clone(),
        shards,
        split: args.split.clone(),
        out: args.out.clone(),
        device,
        batch_size: args.batch_size.max(1),
        max_windows: args.max_windows,
        ridge_windows: args.ridge_windows.max(1),
        max_lag: args.max_lag,
        free_windows: args.free_windows,
        temperature: args.temperature,
        seed: args.seed,
        noise_free,
        hop: args.hop,
    };
    let report = evaluate(&opts, &ChunkBar::new(args.quiet)?)?;
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(args.out.join("metrics.json"))?)?;
    let show = |k: &str| metrics[k].as_f64().map_or("n/a".to_string(), |v| format!("{v:.3}"));
    let ceiling = if metrics["noise_ceiling_pearson_r"].is_null() { String::new() } else { format!(", noise ceiling {}", show("noise_ceiling_pearson_r")) };
    println!(
        "pearson_r {}  (shuffled-EEG control {}, ridge {}{ceiling})",
        show("pearson_r"),
        show("pearson_r_shuffled_eeg"),
        show("ridge_pearson_r")
    );
    let events = log_to_tensorboard(&args.checkpoint, &args.out.join("tb"), &args.split, &metrics)?;
    println!("report: {}", report.display());
    println!("TensorBoard: {} (tensorboard --logdir over this folder and the run's)", events.display());
    Ok(())
}

/// The evaluation's figures as TensorBoard scalars at the checkpoint's training step, in a new
/// event file under `dir` (`OUT/tb`): the headline numbers of metrics.json as
/// `eval/{split}/{key}`, and every number of each table row as `eval/{split}/{row}/{column}`.
/// Pointed at a folder holding both the run and the evaluation, `tensorboard --logdir` shows
/// them on one step axis. No session start: evaluating an earlier checkpoint after a later
/// one keeps both points.
fn log_to_tensorboard(checkpoint: &std::path::Path, dir: &std::path::Path, split: &str, metrics: &serde_json::Value) -> Result<PathBuf> {
    let step = bf_model::train::read_trainer_state(checkpoint).map(|s| s.step).unwrap_or(0);
    let mut values: Vec<(String, f64)> = Vec::new();
    for key in ["pearson_r", "pearson_r_shuffled_eeg", "ridge_pearson_r", "noise_ceiling_pearson_r"] {
        if let Some(v) = metrics[key].as_f64() {
            values.push((format!("eval/{split}/{key}"), v));
        }
    }
    for row in metrics["rows"].as_array().into_iter().flatten() {
        let name = row["name"].as_str().unwrap_or("row");
        for (column, v) in row.as_object().into_iter().flatten() {
            if let Some(v) = v.as_f64() {
                values.push((format!("eval/{split}/{name}/{column}"), v));
            }
        }
    }
    let tags: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut writer = EventWriter::create_without_session(dir)?;
    writer.scalars(step, &tags)?;
    Ok(writer.path().to_path_buf())
}

/// The model's predictions, chunk by chunk, on one bar (hidden with --quiet).
struct ChunkBar(ProgressBar);

impl ChunkBar {
    fn new(quiet: bool) -> Result<ChunkBar> {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} chunks  model predictions [{elapsed_precise} < {eta}]")?);
        Ok(ChunkBar(bar))
    }
}

impl Progress for ChunkBar {
    fn start(&self, chunks: u64) {
        self.0.set_length(chunks);
    }
    fn advance(&self, chunks: u64) {
        self.0.inc(chunks);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
