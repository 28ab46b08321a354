//! `bf-train`: trains the EEG→MEG Crossformer on Brainformer shards.
//!
//! Read it top to bottom: arguments → shards → model → optimizer → (resume) → the loop
//! (micro-batches with gradient accumulation, clipping, AdamW, warmup + cosine schedule,
//! a JSONL line per step) → validation every `--eval_interval` steps with early stopping and
//! the best checkpoint kept → a final checkpoint. The model, optimizer, data stream and
//! checkpoint formats live in the `bf_model` crate; this file only wires them together.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bf_model::data::{ExampleSpec, ShardSet, Stream};
use bf_model::optim::{cosine_with_warmup, AdamW};
use bf_model::precision::with_bf16_autocast;
use bf_model::train::{
    batch_loss_hiding_history, batch_tensors, dropout_seed, history_mask, load_training_checkpoint, mean_loss, resolve_checkpoint, save_training_checkpoint,
    trainable, TrainerState,
};
use bf_model::{ChannelAttention, DecoderEeg, Model, ModelConfig, Objective};
use bf_pipeline::shards::{ShardKind, WindowData};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::nn::VarStore;

/// Train the EEG→MEG Crossformer on Brainformer Parquet shards.
///
/// Writes into --out: `metrics.jsonl` (one line per step: step, loss, lr, grad_norm,
/// samples_per_sec, tokens_per_sec; validation lines add val_loss), `last/` (the latest
/// training checkpoint, for --resume), `best/` (the checkpoint with the lowest validation
/// loss; give it to bf-eval). Model flags keep the seed's names (--d_model, --n_heads, ...).
#[derive(Parser, Debug, Serialize)]
#[command(version, about, long_about)]
struct Args {
    /// Check that libtorch loads: run one 2×2 matmul on --device and print the result as JSON.
    #[arg(long)]
    self_check: bool,
    /// Shards folder written by `bf-pipeline tokenize` (holds data/train-*.parquet).
    #[arg(long, required_unless_present = "self_check")]
    shards: Option<PathBuf>,
    /// Output folder (metrics.jsonl, last/, best/).
    #[arg(long, required_unless_present = "self_check")]
    out: Option<PathBuf>,
    /// Model width.
    #[arg(long = "d_model", alias = "d-model", default_value_t = 64)]
    d_model: i64,
    #[arg(long = "n_heads", alias = "n-heads", default_value_t = 4)]
    n_heads: i64,
    /// Encoder and decoder layers (each).
    #[arg(long = "n_layers", alias = "n-layers", default_value_t = 1)]
    n_layers: i64,
    #[arg(long = "d_ff", alias = "d-ff", default_value_t = 512)]
    d_ff: i64,
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Token objective: the share of training examples whose MEG history is hidden from
    /// the decoder (all inputs after BOS become pad), so they must be predicted from the
    /// EEG alone. 0 trains as the seed does; the MEG's own past then predicts the next
    /// sample of a smooth signal so well that the model may learn to ignore the EEG
    /// (bf-eval's shuffled-EEG control shows it). Validation always sees the history.
    #[arg(long = "history_dropout", alias = "history-dropout", default_value_t = 0.0, value_parser = unit_interval)]
    history_dropout: f64,
    /// Time steps per example; windows are cut into chunks of this length (the last one
    /// padded), as the seed's preprocess_dataset does.
    #[arg(long = "sequence_length", alias = "sequence-length", default_value_t = 64)]
    sequence_length: i64,
    /// Routers per time step for --channel_attention router.
    #[arg(long = "router_dim", alias = "router-dim", default_value_t = 10)]
    router_dim: i64,
    /// Channel stage: `router` (the Crossformer paper's, O(C·router_dim)) or `full`
    /// (attention across all channels, what the seed's code runs).
    #[arg(long = "channel_attention", alias = "channel-attention", default_value = "router", value_parser = ["router", "full"])]
    channel_attention: String,
    /// Token model: how the decoder reads the EEG. `seed`: the seed's cross-attention, whose
    /// output replaces the decoder state (PyTorch users can load these weights into the
    /// seed's module). `mixed` (ours): a residual around that cross-attention plus a learned
    /// linear map from EEG to MEG channels at the predicted step; its checkpoints carry
    /// `decoder_eeg_mix.*` weights the seed's module lacks. With `--history_dropout 0.5`,
    /// `mixed` is what made the token model read the EEG on the fixtures (docs/STATUS.md).
    #[arg(long = "decoder_eeg", alias = "decoder-eeg", default_value = "seed", value_parser = ["seed", "mixed"])]
    decoder_eeg: String,
    /// `token` (µ-law tokens, cross-entropy) or `regression` (continuous shards, MSE).
    #[arg(long, default_value = "token", value_parser = ["token", "regression"])]
    objective: String,
    /// Regression: time steps per patch.
    #[arg(long = "patch_size", alias = "patch-size", default_value_t = 4)]
    patch_size: i64,
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 8)]
    batch_size: usize,
    /// Optimizer steps.
    #[arg(long = "max_steps", alias = "max-steps", default_value_t = 1000)]
    max_steps: i64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Linear warmup steps before the cosine decay.
    #[arg(long = "warmup_steps", alias = "warmup-steps", default_value_t = 0)]
    warmup_steps: i64,
    /// AdamW weight decay, on matrices and embeddings only.
    #[arg(long = "weight_decay", alias = "weight-decay", default_value_t = 0.1)]
    weight_decay: f64,
    /// Micro-batches per optimizer step.
    #[arg(long = "grad_accum", alias = "grad-accum", default_value_t = 1)]
    grad_accum: i64,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Seeds the weights, the data order and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate (and keep the best checkpoint) every this many steps.
    #[arg(long = "eval_interval", alias = "eval-interval", default_value_t = 100)]
    eval_interval: i64,
    /// Validation batches per evaluation (0: the whole validation split).
    #[arg(long = "eval_batches", alias = "eval-batches", default_value_t = 50)]
    eval_batches: usize,
    /// Stop after this many validations in a row without improvement (0: never).
    #[arg(long, default_value_t = 5)]
    patience: u32,
    /// Where to compute: cpu, cuda, or auto (CUDA when a GPU is visible).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Arithmetic: f32, or bf16 = mixed precision as torch.autocast(dtype=bfloat16): float32
    /// weights, optimizer and checkpoints, matrix products in bfloat16 during the forward pass.
    /// Faster on GPUs and on CPUs with bfloat16 units; slower than f32 on other CPUs.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// Continue from --out/last (same arguments as the run that wrote it).
    #[arg(long)]
    resume: bool,
    /// Stop after this step as an interruption would (checkpoint written); the schedule
    /// still follows --max_steps. For tests and time-boxed jobs.
    #[arg(long = "stop_after", alias = "stop-after")]
    stop_after: Option<i64>,
    /// Threads for libtorch on CPU (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
    /// Batches the background loader reads ahead.
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// After training, push OUT/best (config.json, model.safetensors, a model card) to this
    /// Hugging Face model repository (token from HF_TOKEN or $HF_HOME/token, endpoint from
    /// HF_ENDPOINT; see `bf-pipeline upload --help`).
    #[arg(long = "push-to-hub", alias = "push_to_hub", value_name = "REPO_ID")]
    push_to_hub: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() {
    bf_model::device::keep_freed_memory_for_reuse();
    brainformer_cli::exit_on_error(run(Args::parse()));
}

/// A probability in [0, 1).
fn unit_interval(s: &str) -> std::result::Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not in [0, 1)"))
    }
}

fn run(args: Args) -> Result<()> {
    let device = bf_model::device::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    if args.self_check {
        return self_check(device);
    }
    let (shards, out) = (args.shards.clone().expect("clap requires it"), args.out.clone().expect("clap requires it"));
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // ---- data ------------------------------------------------------------------------
    let train_set = ShardSet::open(&shards, "train").context("opening the training shards")?;
    let val_set = ShardSet::open(&shards, "validation").ok();
    let meta = train_set.meta.clone();
    let objective = Objective::parse(&args.objective).expect("clap checked it");
    match (objective, meta.kind) {
        (Objective::Token, ShardKind::Continuous) => bail!("{}: continuous shards need --objective regression", shards.display()),
        (Objective::Regression, ShardKind::Tokens) => bail!("{}: token shards need --objective token", shards.display()),
        _ => {}
    }

    // ---- model -----------------------------------------------------------------------
    let cfg = model_config(&args, &train_set)?;
    let mut vs = VarStore::new(device);
    tch::manual_seed(args.seed as i64);
    let model = Model::new(&vs, &cfg)?;
    let params = trainable(&vs);
    let mut opt = AdamW::new(params, args.weight_decay);
    let (decayed, plain) = opt.decay_split();
    tracing::info!(decayed, plain, "parameters (with / without weight decay)");

    // ---- resume ----------------------------------------------------------------------
    let args_json = run_identity(&args);
    let mut state = TrainerState {
        step: 0,
        position: 0,
        best_val_loss: None,
        best_step: None,
        evals_without_improvement: 0,
        args: args_json.clone(),
    };
    let metrics_path = out.join("metrics.jsonl");
    if args.resume {
        let dir = resolve_checkpoint(&out.join("last")).with_context(|| format!("--resume: no checkpoint in {}/last", out.display()))?;
        state = load_training_checkpoint(&dir, &mut vs, &mut opt)?;
        if state.args != args_json {
            bail!("--resume: {} was written with other arguments:\n  then: {}\n  now:  {}", dir.display(), state.args, args_json);
        }
        truncate_log_after(&metrics_path, state.step)?;
        eprintln!("resuming at step {} (example {})", state.step, state.position);
    } else if metrics_path.exists() {
        std::fs::remove_file(&metrics_path)?;
    }
    let mut log = OpenOptions::new().create(true).append(true).open(&metrics_path)?;

    // ---- the loop --------------------------------------------------------------------
    let spec = example_spec(&cfg);
    let stream = Stream::new(train_set, spec.clone(), args.batch_size, args.seed, true);
    let (batches, _loader) = stream.spawn(state.position, None, args.prefetch);
    let last_step = args.stop_after.map_or(args.max_steps, |s| s.min(args.max_steps));
    let bar = progress(&args, state.step, last_step);
    let tokens_per_example = (cfg.sequence_length * (cfg.source_sequence_dimension + cfg.target_sequence_dimension)) as f64;
    let mut stopped_early = false;
    while state.step < last_step {
        let t0 = Instant::now();
        let lr = args.lr * cosine_with_warmup(state.step, args.warmup_steps, args.max_steps);
        let (mut loss_sum, mut examples) = (0.0, 0usize);
        for micro in 0..args.grad_accum {
            let batch = batches.recv().context("the data loader stopped")??;
            tch::manual_seed(dropout_seed(args.seed, state.step, micro));
            let (eeg, meg) = batch_tensors(&batch, cfg.source_sequence_dimension, cfg.target_sequence_dimension, device);
            let hide = history_mask(args.history_dropout, batch.size, args.seed, state.step, micro, device);
            let forward = || batch_loss_hiding_history(&model, &eeg, &meg, hide.as_ref(), true);
            let loss = if args.precision == "bf16" { with_bf16_autocast(device, forward) } else { forward() };
            (&loss / args.grad_accum as f64).backward();
            loss_sum += f64::try_from(&loss)?;
            examples += batch.size;
            state.position = batch.position;
        }
        let grad_norm = opt.clip_grad_norm(args.clip);
        opt.step(lr);
        opt.zero_grad();
        state.step += 1;
        let loss = loss_sum / args.grad_accum as f64;
        if !loss.is_finite() {
            bail!("step {}: the loss is {loss}; lower --lr or check the shards", state.step);
        }
        let secs = t0.elapsed().as_secs_f64();
        let mut line = serde_json::json!({
            "step": state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "samples_per_sec": examples as f64 / secs, "tokens_per_sec": examples as f64 * tokens_per_example / secs,
            "examples": state.position,
        });
        let evaluate = state.step % args.eval_interval.max(1) == 0 || state.step == args.max_steps;
        if evaluate {
            if let Some(val) = &val_set {
                let vstream = Stream::new(val.clone(), spec.clone(), args.batch_size, args.seed, false);
                let limit = (args.eval_batches > 0).then(|| (args.eval_batches * args.batch_size) as u64);
                if let Some(val_loss) = mean_loss(&model, vstream.batches(0, limit), device)? {
                    line["val_loss"] = val_loss.into();
                    if state.best_val_loss.is_none_or(|b| val_loss < b) {
                        state.best_val_loss = Some(val_loss);
                        state.best_step = Some(state.step);
                        state.evals_without_improvement = 0;
                        save_training_checkpoint(&out.join("best"), &vs, &cfg, &opt, &state)?;
                    } else {
                        state.evals_without_improvement += 1;
                    }
                    bar.println(format!("step {:>6}  loss {loss:.4}  val_loss {val_loss:.4}", state.step));
                }
            }
        }
        writeln!(log, "{line}")?;
        bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
        bar.inc(1);
        if evaluate {
            save_training_checkpoint(&out.join("last"), &vs, &cfg, &opt, &state)?;
        }
        if args.patience > 0 && state.evals_without_improvement >= args.patience {
            bar.println(format!("early stop: {} validations without improvement", args.patience));
            stopped_early = true;
            break;
        }
    }
    save_training_checkpoint(&out.join("last"), &vs, &cfg, &opt, &state)?;
    if val_set.is_none() || state.best_step.is_none() {
        // No validation split: the last weights are the ones to evaluate.
        save_training_checkpoint(&out.join("best"), &vs, &cfg, &opt, &state)?;
    }
    bar.finish_and_clear();
    let best = state.best_val_loss.map_or("n/a".to_string(), |v| format!("{v:.4} at step {}", state.best_step.unwrap_or(0)));
    let why = if stopped_early { " (early stop)" } else { "" };
    println!("trained {} steps{why}; best validation loss {best}", state.step);
    println!("checkpoints: {}/best (evaluate this one), {}/last (--resume)", out.display(), out.display());
    if let Some(repo) = &args.push_to_hub {
        push_to_hub(repo, &out.join("best"))?;
    }
    Ok(())
}

/// Uploads a checkpoint folder as `bf-pipeline upload --model` does (metrics.json included
/// when bf-eval has put one there).
fn push_to_hub(repo: &str, ckpt: &Path) -> Result<()> {
    let client = bf_hub::HubClient::from_env(&bf_hub::HubEnv::from_process());
    let metrics: Option<serde_json::Value> =
        std::fs::read(ckpt.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let report = bf_hub::upload_checkpoint(&client, repo, ckpt, metrics.as_ref(), &bf_hub::UploadOptions::default(), &bf_hub::NoProgress)
        .with_context(|| format!("pushing {} to {repo}", ckpt.display()))?;
    println!("pushed {} to {} ({} files committed, {} unchanged)", ckpt.display(), report.url, report.files_committed, report.files_unchanged);
    Ok(())
}

/// The model's configuration from the flags and the shards (channels, tokenizer, scale).
fn model_config(args: &Args, set: &ShardSet) -> Result<ModelConfig> {
    let meta = &set.meta;
    let mut cfg = ModelConfig {
        source_sequence_dimension: meta.n_eeg() as i64,
        target_sequence_dimension: meta.n_meg() as i64,
        router_dim: args.router_dim,
        d_model: args.d_model,
        n_heads: args.n_heads,
        n_layers: args.n_layers,
        d_ff: args.d_ff,
        dropout: args.dropout,
        sequence_length: args.sequence_length,
        channel_attention: ChannelAttention::parse(&args.channel_attention).expect("clap checked it"),
        decoder_eeg: DecoderEeg::parse(&args.decoder_eeg).expect("clap checked it"),
        objective: Objective::parse(&args.objective).expect("clap checked it"),
        patch_size: args.patch_size,
        tokenizer: meta.tokenizer.as_ref().map(|t| serde_json::from_str(&t.to_json()).expect("tokenizer JSON parses")),
        eeg_channels: meta.eeg_channels.clone(),
        meg_channels: meta.meg_channels.clone(),
        sfreq: Some(meta.sfreq),
        ..ModelConfig::default()
    };
    if cfg.objective == Objective::Regression {
        cfg.value_scale = Some(regression_scale(set)?);
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Regression targets must lie in tanh's range: per channel, the 99th percentile of |x| over
/// (up to) the first 256 training windows becomes the divisor, and values are clamped to ±1.
fn regression_scale(set: &ShardSet) -> Result<Vec<f32>> {
    let (ne, nm, w) = (set.meta.n_eeg(), set.meta.n_meg(), set.meta.window);
    let mut per_channel: Vec<Vec<f32>> = vec![Vec::new(); ne + nm];
    let mut windows = 0;
    'files: for f in &set.files {
        let (_, rows) = bf_pipeline::shards::read_rows(f)?;
        for row in rows {
            if let (WindowData::Continuous(e), WindowData::Continuous(m)) = (&row.eeg, &row.meg) {
                for (c, vals) in per_channel.iter_mut().enumerate() {
                    let src = if c < ne { &e[c * w..(c + 1) * w] } else { &m[(c - ne) * w..(c - ne + 1) * w] };
                    vals.extend(src.iter().map(|x| x.abs()));
                }
            }
            windows += 1;
            if windows >= 256 {
                break 'files;
            }
        }
    }
    Ok(per_channel
        .into_iter()
        .map(|mut v| {
            let q = bf_pipeline::tokenizer::percentile_linear(&mut v, 99.0) as f32;
            if q > 0.0 && q.is_finite() {
                q
            } else {
                1.0
            }
        })
        .collect())
}

fn example_spec(cfg: &ModelConfig) -> ExampleSpec {
    ExampleSpec {
        sequence_length: cfg.sequence_length as usize,
        token_offset: cfg.token_offset,
        pad_id: cfg.pad_token_id,
        scale: cfg.value_scale.clone(),
    }
}

/// The arguments that must match for `--resume` (not the ones that only stop or print).
fn run_identity(args: &Args) -> serde_json::Value {
    let mut v = serde_json::to_value(args).expect("arguments serialize");
    for transient in ["resume", "stop_after", "quiet", "prefetch", "threads", "device", "self_check", "out", "push_to_hub"] {
        v.as_object_mut().expect("an object").remove(transient);
    }
    v
}

/// Drops log lines of steps after `step` (they belong to a run that did not checkpoint them).
fn truncate_log_after(path: &Path, step: i64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_i64()).is_some_and(|s| s <= step))
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    bf_model::checkpoint::write_atomic(path, body.as_bytes())?;
    Ok(())
}

fn progress(args: &Args, start: i64, end: i64) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(end.max(0) as u64);
    bar.set_position(start.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta}]").expect("a valid template"),
    );
    bar
}

fn self_check(device: tch::Device) -> Result<()> {
    let product = bf_model::device::matmul_self_check(device);
    println!(
        "{}",
        serde_json::json!({
            "device": format!("{device:?}"),
            "cuda_available": tch::Cuda::is_available(),
            "matmul": product,
        })
    );
    Ok(())
}
