//! `bf-train`: trains the EEG→MEG Crossformer on Brainformer shards.
//!
//! Read it top to bottom: arguments → shards → model → optimizer → (resume) → the loop
//! (micro-batches with gradient accumulation, clipping, AdamW, warmup + cosine schedule,
//! a JSONL line per step and the same scalars in TensorBoard event files) → validation every
//! `--eval_interval` steps with early stopping and the best checkpoint kept → a final checkpoint. The model, optimizer, data stream and
//! checkpoint formats live in the `bf_model` crate; this file only wires them together.
//!
//! Around the loop: the run folder is checked before anything is written (an existing run is
//! never replaced without `--overwrite`), `--resume` compares the run's identity
//! (`bf_model::resume`), the folder is locked for the run (flock: one bf-train per --out), and
//! SIGTERM/SIGINT/SIGUSR1 end the loop between steps with `last/` written and exit status 75.
//!
//! Data parallel: started as several processes (torchrun's RANK/WORLD_SIZE/MASTER_ADDR/
//! MASTER_PORT, or srun's SLURM_PROCID/SLURM_STEP_NUM_TASKS), each process trains on its share of every
//! global batch (`Stream::with_rank`), libtorch's c10d Reducer averages the gradients during the
//! backward pass (`bf_model::distributed`), and rank 0 alone writes the run folder.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bf_model::data::{split_files, ExampleSpec, RankSlice, ShardSet, Stream};
use bf_model::distributed::{GradientReducer, ProcessGroup, Rendezvous, World, DEFAULT_BUCKET_BYTES};
use bf_model::fused_attention::ExampleOffset;
use bf_model::optim::{cosine_with_warmup, AdamW};
use bf_model::precision::with_bf16_autocast;
use bf_model::resume::{canonical_shards_dir, RunIdentity, ShardContent, ShardsCheck};
use bf_model::tensorboard::EventWriter;
use bf_model::train::{
    batch_loss_hiding_history, batch_tensors, dropout_seed, existing_run_files, history_mask, load_training_checkpoint, lock_run_folder, read_trainer_state,
    remove_run, resolve_checkpoint, save_training_checkpoint, sweep_stale_temporaries, trainable, TrainerState,
};
use bf_model::{ChannelAttention, DecoderEeg, Model, ModelConfig, Objective};
use bf_pipeline::shards::ShardKind;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::nn::VarStore;
use tch::Tensor;

/// Train the EEG→MEG Crossformer on Brainformer Parquet shards.
///
/// Writes into --out: `metrics.jsonl` (one line per step: step, loss, lr, grad_norm,
/// samples_per_sec, tokens_per_sec; validation lines add val_loss), `tb/` (the same numbers as
/// TensorBoard event files: `tensorboard --logdir OUT`), `last/` (the latest
/// training checkpoint, for --resume), `best/` (the checkpoint with the lowest validation
/// loss; give it to bf-eval). Model flags keep the seed's names (--d_model, --n_heads, ...).
///
/// An --out that already holds a run is refused unless --resume (continue it) or --overwrite
/// (replace it) is given; an --out that another bf-train is writing into is refused (lock).
///
/// Preemption: SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 end training after the current step,
/// write last/ and print the command that resumes; further signals wait for that save.
/// Checkpoints are written to a temporary folder and renamed, so even SIGKILL leaves the
/// previous last/ intact. On SLURM: `#SBATCH --signal=USR1@300` (it signals job steps), run
/// `srun bf-train ...`, and `scontrol requeue "$SLURM_JOB_ID"` when the status is 75.
///
/// Data parallel: run N copies with RANK and WORLD_SIZE set (torchrun's variables; the rendezvous
/// is a TCP store at MASTER_ADDR:MASTER_PORT, default 127.0.0.1:29500, served by rank 0), or
/// under `srun` (SLURM_PROCID, SLURM_STEP_NUM_TASKS, the first node of the job as the master). The
/// processes share every global batch of --batch_size examples (it must be a multiple of their
/// number), gradients are averaged as PyTorch's DDP does, so N processes compute what one would;
/// rank 0 writes metrics, tb/ and checkpoints, which any number of processes can --resume.
///
/// Exit status: 0 trained (or stopped by --stop_after / early stopping), 1 error, 75 stopped by
/// a signal with last/ written (resumable with --resume; EX_TEMPFAIL).
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
    /// Ours: cut training examples from each window every this many samples (overlapping
    /// when below --sequence_length; the last one ends at the window's end) instead of back to
    /// back: sequence_length / HOP times as many distinct examples from the same windows, each
    /// shifted, like random crops. Validation keeps back-to-back chunks, so its loss compares
    /// across runs. 0: back to back (the seed).
    #[arg(long = "chunk_hop", alias = "chunk-hop", default_value_t = 0)]
    chunk_hop: usize,
    /// Token objective: compute the training loss's output layer and cross-entropy this many
    /// positions (batch × time × MEG channels) at a time, recomputing each chunk's logits in
    /// the backward pass, so the logits of every position (81 MB per example at the seed's
    /// sizes, kept three times over by the plain path) are never held at once. 0: the plain
    /// path. The same loss up to float summation order; costs a second output-layer product.
    #[arg(long = "loss_chunk", alias = "loss-chunk", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    loss_chunk: i64,
    /// AdamW through libtorch's fused multi-tensor kernel (PyTorch's `AdamW(fused=True)`):
    /// one kernel per update instead of ~7 element-wise ops per parameter, which matters on a
    /// GPU where each op is a kernel launch. The same update up to float rounding; checkpoints
    /// and --resume are unchanged.
    #[arg(long = "fused_adamw", alias = "fused-adamw")]
    fused_adamw: bool,
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
    /// How the decoder reads the EEG. Token model: `seed`: the seed's cross-attention, whose
    /// output replaces the decoder state (PyTorch users can load these weights into the
    /// seed's module). `mixed` (ours): a residual around that cross-attention plus a learned
    /// linear map from EEG to MEG channels at the predicted step; its checkpoints carry
    /// `decoder_eeg_mix.*` weights the seed's module lacks. With `--history_dropout 0.5`,
    /// `mixed` is what made the token model read the EEG on the fixtures (docs/STATUS.md).
    /// Regression model: `mixed` adds the projected EEG encoding of each time patch to the
    /// decoder state around its cross-attention (no extra weights; the seed's decoder state
    /// starts from one learned target for every example and sees the EEG only through that
    /// cross-attention).
    #[arg(long = "decoder_eeg", alias = "decoder-eeg", default_value = "seed", value_parser = ["seed", "mixed"])]
    decoder_eeg: String,
    /// `token` (µ-law tokens, cross-entropy) or `regression` (continuous shards, MSE).
    #[arg(long, default_value = "token", value_parser = ["token", "regression"])]
    objective: String,
    /// Regression: time steps per patch.
    #[arg(long = "patch_size", alias = "patch-size", default_value_t = 4)]
    patch_size: i64,
    /// Regression, ours: a direct lagged-linear EEG → MEG path of this many time steps (odd;
    /// `Conv1d(Ce → Cm)` over time, zero at the start, added before the output tanh), so the
    /// model can learn what a lagged ridge learns and the Crossformer what it leaves. 0: none
    /// (the seed's model). Checkpoints then carry `eeg_skip.*` weights the seed's module lacks.
    #[arg(long = "eeg_skip", alias = "eeg-skip", default_value_t = 0)]
    eeg_skip: i64,
    /// Regression, ours: weight of a spectral term added to the MSE, the mean squared
    /// difference of prediction and target amplitude spectra over time (|rfft|, orthonormal),
    /// which rewards each frequency's power whatever its phase. 0: the seed's plain MSE.
    #[arg(long = "spectral_loss", alias = "spectral-loss", default_value_t = 0.0)]
    spectral_loss: f64,
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
    /// Continue from --out/last. The run must be the same: shards (by content; the same
    /// files at another path are accepted as a move), model shape and optimisation settings;
    /// a refusal names each differing setting with both values. --max_steps may be raised to extend a run (the cosine
    /// schedule then follows the new value from the saved step on); validation cadence,
    /// --patience, --device and --threads may change.
    #[arg(long)]
    resume: bool,
    /// Replace the run already in --out: its metrics.jsonl, last/ and best/ are removed once
    /// the shards and settings are known good. Without it (or --resume), an --out that holds
    /// a run is refused.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// With --resume: continue although the shards' content changed since the checkpoint
    /// (rebuilt in place with other data; a warning names the changed files). The data order
    /// then differs from the original run's. Without it such a resume is refused.
    #[arg(long = "allow-changed-shards", alias = "allow_changed_shards", requires = "resume")]
    allow_changed_shards: bool,
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
    /// Data parallel: meet the other processes through this file (on a filesystem they all
    /// see; it must not exist yet) instead of a TCP store at MASTER_ADDR:MASTER_PORT. Rank and
    /// world size still come from RANK and WORLD_SIZE.
    #[arg(long = "dist-file", alias = "dist_file", value_name = "PATH")]
    dist_file: Option<PathBuf>,
    /// Data parallel: seconds to wait for the other processes (rendezvous, and each exchange).
    #[arg(long = "dist-timeout", alias = "dist_timeout", default_value_t = 1800)]
    dist_timeout: u64,
    /// Instead of training: write a SLURM batch script that runs this training (the other
    /// arguments as given) as --slurm-tasks data-parallel processes (`srun bf-train ...`), and
    /// exit. `bash FILE` submits it. SIGUSR1 300 s before the time limit stops every process
    /// after a step with last/ written; the job then requeues itself and continues with
    /// --resume (also after `scancel --signal=USR1 JOB`).
    #[arg(long = "slurm-script", value_name = "FILE", help_heading = "SLURM")]
    slurm_script: Option<PathBuf>,
    /// Processes (srun tasks) of the SLURM job.
    #[arg(long = "slurm-tasks", default_value_t = 2, help_heading = "SLURM")]
    slurm_tasks: usize,
    /// Nodes to spread the tasks over (default: as SLURM places them).
    #[arg(long = "slurm-nodes", help_heading = "SLURM")]
    slurm_nodes: Option<usize>,
    /// Cores per task (each process's libtorch threads).
    #[arg(long = "slurm-cpus-per-task", default_value_t = 1, help_heading = "SLURM")]
    slurm_cpus_per_task: usize,
    /// Memory per node (sbatch --mem).
    #[arg(long = "slurm-mem", default_value = "4G", help_heading = "SLURM")]
    slurm_mem: String,
    /// Time limit of each run of the job (sbatch --time); a requeued job gets it again.
    #[arg(long = "slurm-time", default_value = "1:00:00", help_heading = "SLURM")]
    slurm_time: String,
    #[arg(long = "slurm-partition", help_heading = "SLURM")]
    slurm_partition: Option<String>,
}

/// Exit status of a run stopped by a signal after writing last/ (EX_TEMPFAIL of sysexits.h:
/// "try again later"), for requeue scripts.
const EXIT_RESUMABLE: i32 = 75;

/// How a run ended without error.
enum Ended {
    Done,
    /// Stopped by a signal with last/ written.
    Interrupted,
}

fn main() {
    brainformer_cli::alloc::keep_tensors_in_heap();
    match run(Args::parse()) {
        Ok(Ended::Interrupted) => std::process::exit(EXIT_RESUMABLE),
        other => brainformer_cli::exit_on_error(other.map(|_| ())),
    }
}

/// SIGTERM, SIGINT and SIGUSR1 only record themselves (the handler stores the signal number);
/// the loop reads the record between steps. Further signals overwrite the record and change
/// nothing else, so a second Ctrl-C cannot cut a checkpoint write short.
struct StopRequest(Arc<AtomicUsize>);

impl StopRequest {
    const SIGNALS: [i32; 3] = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGUSR1];

    fn install() -> Result<StopRequest> {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in Self::SIGNALS {
            signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)
                .with_context(|| format!("installing a handler for signal {sig}"))?;
        }
        Ok(StopRequest(flag))
    }

    /// The name of the signal received, if any.
    fn received(&self) -> Option<&'static str> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(signal_hook::low_level::signal_name(sig as i32).unwrap_or("a signal")),
        }
    }
}

/// The command line that resumes this run: the same words in the same folder, `--overwrite`
/// dropped (it would delete the run) and `--resume` added.
fn resume_command() -> String {
    let mut words: Vec<String> = std::env::args_os().map(|w| w.to_string_lossy().into_owned()).collect();
    words.retain(|w| w != "--overwrite");
    if !words.iter().any(|w| w == "--resume") {
        words.push("--resume".into());
    }
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into());
    format!("cd {} && {}", brainformer_cli::shell_quote(&cwd), words.iter().map(|w| brainformer_cli::shell_quote(w)).collect::<Vec<_>>().join(" "))
}

/// metrics.jsonl keys and the TensorBoard tags they are logged under (`OUT/tb/`).
const TENSORBOARD_TAGS: [(&str, &str); 6] = [
    ("loss", "train/loss"),
    ("lr", "train/learning_rate"),
    ("grad_norm", "train/grad_norm"),
    ("samples_per_sec", "train/samples_per_sec"),
    ("tokens_per_sec", "train/tokens_per_sec"),
    ("val_loss", "validation/loss"),
];

/// The settings that change the weights a run computes, by their flag names: `--resume`
/// refuses a checkpoint written with other values.
const IDENTITY_SETTINGS: [&str; 23] = [
    "objective", "d_model", "n_heads", "n_layers", "d_ff", "dropout", "sequence_length", "router_dim", "channel_attention", "decoder_eeg",
    "patch_size", "eeg_skip", "spectral_loss", "history_dropout", "chunk_hop", "batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay", "clip",
    "seed", "precision",
];

fn settings(args: &Args) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v = serde_json::to_value(args).expect("arguments serialize");
    IDENTITY_SETTINGS.iter().map(|k| (k.to_string(), v[*k].clone())).collect()
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

fn run(args: Args) -> Result<Ended> {
    let device = bf_model::device::parse_device(&args.device).map_err(anyhow::Error::msg)?;
    if args.self_check {
        self_check(device)?;
        return Ok(Ended::Done);
    }
    if let Some(script) = &args.slurm_script {
        write_slurm_script(&args, script)?;
        return Ok(Ended::Done);
    }
    let (shards, out) = (args.shards.clone().expect("clap requires it"), args.out.clone().expect("clap requires it"));
    let stop = StopRequest::install()?;

    // ---- the processes (data parallel) -------------------------------------------------
    let world = World::from_env()?.filter(|w| w.size > 1);
    let job_tasks = std::env::var("SLURM_NTASKS").ok().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 1);
    if let (None, Some(n), Err(_)) = (&world, job_tasks, std::env::var("SLURM_STEP_ID")) {
        eprintln!("note: this SLURM job has {n} tasks, but bf-train runs outside srun: it trains as one process (`srun bf-train ...` uses them all)");
    }
    let group = match &world {
        Some(w) => Some(join_processes(&args, w, device)?),
        None if args.dist_file.is_some() => bail!("--dist-file: set RANK and WORLD_SIZE (2 or more) for each process"),
        None => None,
    };
    let slice = match &world {
        Some(w) => RankSlice::new(w.rank, w.size)?,
        None => RankSlice::whole(),
    };
    // Rank 0 alone touches the run folder; the others only read a checkpoint to resume.
    let main_rank = slice.rank() == 0;
    if let Some(n) = args.threads.or_else(|| world.as_ref().and_then(threads_per_process)) {
        tch::set_num_threads(n);
    }

    // ---- the run folder (nothing is written before the inputs are known good) ---------
    // Locked now when it exists, else once created.
    let lock = if main_rank && out.is_dir() { Some(lock_out(&out)?) } else { None };
    let last_dir = if args.resume {
        Some(resolve_checkpoint(&out.join("last")).with_context(|| format!("--resume: no checkpoint in {}/last", out.display()))?)
    } else {
        let existing = if main_rank { existing_run_files(&out) } else { Vec::new() };
        if !existing.is_empty() && !args.overwrite {
            bail!(
                "{}: already holds a training run ({}); add --resume to continue it or --overwrite to replace it",
                out.display(),
                existing.join(", ")
            );
        }
        None
    };
    let then = last_dir.as_deref().map(read_trainer_state).transpose()?;

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

    // ---- the run's identity (what --resume compares; settings first, as they are cheap) --
    let then_id = match (&last_dir, &then) {
        (Some(dir), Some(t)) => Some(t.identity.clone().unwrap_or_else(|| {
            eprintln!("warning: {} predates shard content keys: the shards are compared by path only", dir.display());
            RunIdentity::from_legacy_args(&t.args, &IDENTITY_SETTINGS)
        })),
        _ => None,
    }
    .map(|mut id| {
        // Settings added after a run was written had their default then.
        for (key, default) in [("eeg_skip", serde_json::json!(0)), ("spectral_loss", serde_json::json!(0.0)), ("chunk_hop", serde_json::json!(0))] {
            if id.settings.get(key).is_none_or(|v| v.is_null()) {
                id.settings.insert(key.to_string(), default);
            }
        }
        id
    });
    let mut identity =
        RunIdentity { shards: canonical_shards_dir(&shards)?, shards_content: None, settings: settings(&args), max_steps: args.max_steps };
    if let (Some(dir), Some(then_id)) = (&last_dir, &then_id) {
        check_same_settings(dir, then_id, &identity)?;
    }
    let cached = then_id.as_ref().and_then(|i| i.shards_content.as_ref());
    let shard_files = [split_files(&shards, "train")?, split_files(&shards, "validation")?].concat();
    identity.shards_content = Some(ShardContent::of(&shard_files, cached)?);
    if let (Some(dir), Some(then_id)) = (&last_dir, &then_id) {
        check_same_shards(dir, then_id, &identity, args.allow_changed_shards)?;
    }
    let saved_cfg = match &last_dir {
        Some(dir) => Some(ModelConfig::load(&dir.join(bf_model::CONFIG_FILE))?),
        None => None,
    };

    // ---- model -----------------------------------------------------------------------
    let cfg = model_config(&args, &train_set, saved_cfg.as_ref())?;
    if let (Some(dir), Some(saved)) = (&last_dir, &saved_cfg) {
        if (&saved.eeg_channels, &saved.meg_channels) != (&cfg.eeg_channels, &cfg.meg_channels) {
            bail!("--resume: {} was trained on other channels than the shards now hold; a model cannot continue on other channels", dir.display());
        }
    }
    let mut vs = VarStore::new(device);
    tch::manual_seed(args.seed as i64);
    let model = Model::new(&vs, &cfg)?;
    match &model {
        Model::Token(m) => m.set_loss_chunk(args.loss_chunk),
        Model::Regression(_) if args.loss_chunk > 0 => tracing::warn!("--loss_chunk applies to the token objective only; ignored"),
        Model::Regression(_) => {}
    }
    let params = trainable(&vs);
    let mut opt = AdamW::new(params, args.weight_decay);
    opt.set_fused(args.fused_adamw);
    let (decayed, plain) = opt.decay_split();
    tracing::info!(decayed, plain, "parameters (with / without weight decay)");

    // ---- resume ----------------------------------------------------------------------
    let args_json = args_record(&args);
    let mut state = TrainerState {
        step: 0,
        position: 0,
        best_val_loss: None,
        best_step: None,
        evals_without_improvement: 0,
        args: args_json.clone(),
        identity: Some(identity.clone()),
    };
    let metrics_path = out.join("metrics.jsonl");
    let _lock = if main_rank {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Some(match lock {
            Some(lock) => lock,
            None => lock_out(&out)?,
        })
    } else {
        None
    };
    if let Some(dir) = &last_dir {
        state = load_training_checkpoint(dir, &mut vs, &mut opt)?;
        state.args = args_json;
        state.identity = Some(identity);
        if main_rank {
            let old_max = then_id.as_ref().map(|i| i.max_steps);
            if let Some(old_max) = old_max.filter(|&m| m < args.max_steps) {
                eprintln!("--max_steps raised from {old_max} to {}: the schedule now decays to step {}", args.max_steps, args.max_steps);
            }
            sweep(&out)?;
            truncate_log_after(&metrics_path, state.step)?;
            eprintln!("resuming at step {} (example {})", state.step, state.position);
        }
    } else if main_rank {
        if args.overwrite {
            remove_run(&out).with_context(|| format!("--overwrite: removing the run in {}", out.display()))?;
        } else if !existing_run_files(&out).is_empty() {
            bail!("{}: a training run appeared there while this one started; add --resume or --overwrite", out.display());
        }
        sweep(&out)?;
    }
    let (mut log, mut tb) = if main_rank {
        let log = OpenOptions::new().create(true).append(true).open(&metrics_path).with_context(|| format!("opening {}", metrics_path.display()))?;
        // A new event file per start; its session start drops steps after the checkpoint from
        // the earlier files, as metrics.jsonl was truncated above.
        (Some(log), Some(EventWriter::create(&out.join("tb"), state.step + 1)?))
    } else {
        (None, None)
    };

    // ---- data parallel: rank 0's weights everywhere, and the gradient reducer -----------
    // (declared after `group`, so dropped before it)
    let reducer = match &group {
        Some(g) => {
            let params: Vec<Tensor> = trainable(&vs).into_iter().map(|(_, t)| t).collect();
            let refs: Vec<&Tensor> = params.iter().collect();
            g.broadcast(&refs, 0)?;
            Some(GradientReducer::new(g, &refs, DEFAULT_BUCKET_BYTES)?)
        }
        None => None,
    };

    // ---- the loop --------------------------------------------------------------------
    let spec = ExampleSpec::from(&cfg);
    let train_spec = ExampleSpec { hop: (args.chunk_hop > 0).then_some(args.chunk_hop), ..spec.clone() };
    let stream = Stream::new(train_set, train_spec, args.batch_size, args.seed, true).with_rank(slice);
    let (batches, _loader) = stream.spawn(state.position, None, args.prefetch);
    let last_step = args.stop_after.map_or(args.max_steps, |s| s.min(args.max_steps));
    let bar = if main_rank { progress(&args, state.step, last_step) } else { ProgressBar::hidden() };
    let tokens_per_example = (cfg.sequence_length * (cfg.source_sequence_dimension + cfg.target_sequence_dimension)) as f64;
    let mut stopped_early = false;
    let mut interrupted = None;
    while state.step < last_step {
        // Every process stops after the same step: a signal to any of them stops all.
        let signal = stop.received();
        let stop_now = match &group {
            Some(g) => g.any(signal.is_some())?,
            None => signal.is_some(),
        };
        if stop_now {
            interrupted = Some(signal.unwrap_or("a signal to another process"));
            break;
        }
        let t0 = Instant::now();
        let lr = args.lr * cosine_with_warmup(state.step, args.warmup_steps, args.max_steps);
        let (mut loss_sum, mut examples) = (0.0, 0usize);
        for micro in 0..args.grad_accum {
            let batch = batches.recv().context("the data loader stopped")??;
            tch::manual_seed(dropout_seed(args.seed, state.step, micro));
            let (eeg, meg) = batch_tensors(&batch, cfg.source_sequence_dimension, cfg.target_sequence_dimension, device);
            // Dropout and hidden histories are drawn for the global batch and keyed by the
            // global example, so N processes × B examples train as 1 × N·B.
            let hide = history_mask(args.history_dropout, batch.global, batch.offset..batch.offset + batch.size, args.seed, state.step, micro, device);
            let share = ExampleOffset { offset: batch.offset, local: batch.size };
            let forward = || share.scope(|| batch_loss_hiding_history(&model, &eeg, &meg, hide.as_ref(), true));
            let loss = if args.precision == "bf16" { with_bf16_autocast(device, forward) } else { forward() };
            let scaled = &loss / args.grad_accum as f64;
            if let (Some(r), true) = (&reducer, micro == args.grad_accum - 1) {
                // The last micro-batch's backward pass all-reduces the accumulated gradients.
                r.prepare(&scaled)?;
            }
            scaled.backward();
            // This share's part of the global batch's mean loss (the whole of it in one process).
            loss_sum += f64::try_from(&loss)? * batch.size as f64 / batch.global as f64;
            examples += batch.global;
            state.position = batch.position;
        }
        if let Some(g) = &group {
            let mut v = [loss_sum];
            g.all_reduce_sum(&mut v)?;
            loss_sum = v[0];
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
                let vstream = Stream::new(val.clone(), spec.clone(), args.batch_size, args.seed, false).with_rank(slice);
                let limit = (args.eval_batches > 0).then(|| (args.eval_batches * args.batch_size) as u64);
                let (total, n) = bf_model::train::loss_sum(&model, vstream.batches(0, limit), device)?;
                let mut sums = [total, n as f64];
                if let Some(g) = &group {
                    g.all_reduce_sum(&mut sums)?;
                }
                if let Some(val_loss) = (sums[1] > 0.0).then(|| sums[0] / sums[1]) {
                    line["val_loss"] = val_loss.into();
                    if state.best_val_loss.is_none_or(|b| val_loss < b) {
                        state.best_val_loss = Some(val_loss);
                        state.best_step = Some(state.step);
                        state.evals_without_improvement = 0;
                        save_everywhere(group.as_ref(), &out.join("best"), &vs, &cfg, &opt, &state)?;
                    } else {
                        state.evals_without_improvement += 1;
                    }
                    bar.println(format!("step {:>6}  loss {loss:.4}  val_loss {val_loss:.4}", state.step));
                }
            }
        }
        if let (Some(log), Some(tb)) = (&mut log, &mut tb) {
            writeln!(log, "{line}")?;
            let scalars: Vec<(&str, f64)> = TENSORBOARD_TAGS.iter().filter_map(|(key, tag)| Some((*tag, line[*key].as_f64()?))).collect();
            tb.scalars(state.step, &scalars)?;
        }
        bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}"));
        bar.inc(1);
        if evaluate {
            save_everywhere(group.as_ref(), &out.join("last"), &vs, &cfg, &opt, &state)?;
        }
        if evaluate && args.patience > 0 && state.evals_without_improvement >= args.patience {
            bar.println(format!("early stop: {} validations without improvement", args.patience));
            stopped_early = true;
            break;
        }
    }
    save_everywhere(group.as_ref(), &out.join("last"), &vs, &cfg, &opt, &state)?;
    if let Some(signal) = interrupted {
        bar.finish_and_clear();
        if !main_rank {
            return Ok(Ended::Interrupted);
        }
        eprintln!(
            "stopped by {signal} after step {} of {}: {}/last holds it; resume with:\n  {}",
            state.step,
            args.max_steps,
            out.display(),
            resume_command()
        );
        return Ok(Ended::Interrupted);
    }
    if val_set.is_none() || state.best_step.is_none() {
        // No validation split: the last weights are the ones to evaluate.
        save_everywhere(group.as_ref(), &out.join("best"), &vs, &cfg, &opt, &state)?;
    }
    bar.finish_and_clear();
    drop(reducer);
    if !main_rank {
        return Ok(Ended::Done);
    }
    let best = state.best_val_loss.map_or("n/a".to_string(), |v| format!("{v:.4} at step {}", state.best_step.unwrap_or(0)));
    let why = if stopped_early { " (early stop)" } else { "" };
    println!("trained {} steps{why}; best validation loss {best}", state.step);
    println!("checkpoints: {}/best (evaluate this one), {}/last (--resume)", out.display(), out.display());
    if let Some(repo) = &args.push_to_hub {
        push_to_hub(repo, &out.join("best"))?;
    }
    Ok(Ended::Done)
}

/// Writes the SLURM batch script of `--slurm-script` (see its help). Like `bf-pipeline slurm`'s,
/// the script submits itself as the batch script (`sbatch ... SCRIPT --run`), so the arguments
/// reach bf-train as they were given, whatever characters the paths hold.
fn write_slurm_script(args: &Args, script: &Path) -> Result<()> {
    use brainformer_cli::shell_quote;
    if args.slurm_tasks == 0 || args.slurm_cpus_per_task == 0 || args.slurm_nodes == Some(0) {
        bail!("--slurm-tasks, --slurm-cpus-per-task and --slurm-nodes must be at least 1");
    }
    if args.batch_size % args.slurm_tasks != 0 {
        bail!("--batch_size {} is the global batch, shared by the {} tasks: it must be a multiple of {}", args.batch_size, args.slurm_tasks, args.slurm_tasks);
    }
    let utf8 = |p: &Path| p.to_str().map(str::to_string).with_context(|| format!("{}: not valid UTF-8, which a shell script cannot carry safely", p.display()));
    let exe = std::env::current_exe().context("cannot find the bf-train binary")?;
    let workdir = std::env::current_dir().context("reading the current folder")?;
    // This run's words without the --slurm-* options; --resume and --overwrite are chosen per
    // start of the job (a requeued one resumes).
    let mut words = Vec::new();
    let mut given = std::env::args().skip(1);
    let (mut resume, mut overwrite) = (false, false);
    while let Some(w) = given.next() {
        if w.starts_with("--slurm-") || w.starts_with("--slurm_") {
            if !w.contains('=') {
                given.next();
            }
        } else if w == "--resume" {
            resume = true;
        } else if w == "--overwrite" {
            overwrite = true;
        } else {
            words.push(shell_quote(&w));
        }
    }
    let first = if resume { "--resume" } else if overwrite { "--overwrite" } else { "" };
    let n = args.slurm_tasks;
    let nodes = args.slurm_nodes.map(|m| format!(" --nodes={m}")).unwrap_or_default();
    let partition = args.slurm_partition.as_ref().map(|p| format!(" --partition={}", shell_quote(p))).unwrap_or_default();
    let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = format!(
        r#"#!/usr/bin/env bash
# bf-train on SLURM, written by `bf-train --slurm-script`: {n} data-parallel processes.
#   bash {name}         submit the job (sbatch runs this script again with --run)
#   bash {name} --run   what the job runs: srun starts bf-train in each task (rank and world
#                       from SLURM_PROCID / SLURM_NTASKS, the job's first node as rendezvous)
# A job stopped by SIGUSR1 (sent 300 s before its time limit) has written last/ and exits 75;
# it then requeues itself and continues with --resume.
set -euo pipefail
BF={exe}
WORKDIR={workdir}
ARGS=({words})
case "${{1:-}}" in
  --run)
    cd "$WORKDIR"
    if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then START=(--resume); else START=({first}); fi
    st=0
    srun --kill-on-bad-exit=1 "$BF" "${{ARGS[@]}}" "${{START[@]}}" || st=$?
    if [ "$st" = 75 ] && [ -n "${{SLURM_JOB_ID:-}}" ]; then
      echo "bf-train stopped before the time limit with last/ written; requeueing job $SLURM_JOB_ID to continue" >&2
      scontrol requeue "$SLURM_JOB_ID" || {{ echo "scontrol requeue $SLURM_JOB_ID failed: resubmit with bash $0" >&2; exit 75; }}
      exit 0
    fi
    exit "$st" ;;
  "") ;;
  *) echo "usage: $0 [--run]" >&2; exit 2 ;;
esac
command -v sbatch >/dev/null || {{ echo "bf-train slurm: sbatch not found: submit from a SLURM login node; nothing was submitted" >&2; exit 1; }}
self=$(readlink -f "$0")
job=$(sbatch --parsable --job-name=bf-train --ntasks={n}{nodes} --cpus-per-task={cpus} --mem={mem} --time={time}{partition} \
  --signal=USR1@300 --requeue --open-mode=append --output=bf-train-%j.log --chdir="$WORKDIR" "$self" --run) \
  || {{ echo "bf-train slurm: sbatch refused the job (message above); nothing was submitted" >&2; exit 1; }}
job=${{job%%;*}}
echo "submitted job $job ({n} processes); its log: $WORKDIR/bf-train-$job.log"
"#,
        exe = shell_quote(&utf8(&exe)?),
        workdir = shell_quote(&utf8(&workdir)?),
        words = words.join(" "),
        cpus = args.slurm_cpus_per_task,
        mem = shell_quote(&args.slurm_mem),
        time = shell_quote(&args.slurm_time),
    );
    bf_model::checkpoint::write_atomic(script, text.as_bytes()).with_context(|| format!("writing {}", script.display()))?;
    println!("wrote {}; submit with: bash {}", script.display(), shell_quote(&utf8(script)?));
    Ok(())
}

/// Joins the other training processes (see `Args` on data parallel); refuses what they could
/// not do together, before any waiting.
fn join_processes(args: &Args, world: &World, device: tch::Device) -> Result<ProcessGroup> {
    if device != tch::Device::Cpu {
        bail!("data-parallel training runs on the CPU (Gloo) for now; add --device cpu (NCCL for CUDA is not built yet)");
    }
    if args.batch_size % world.size != 0 {
        bail!(
            "--batch_size {} is the global batch, shared by the {} processes: it must be a multiple of {} (each process takes --batch_size / {} examples per micro-batch)",
            args.batch_size,
            world.size,
            world.size,
            world.size
        );
    }
    let rendezvous = match &args.dist_file {
        Some(path) => Rendezvous::File(path.clone()),
        None => Rendezvous::Tcp { addr: world.master_addr.clone(), port: world.master_port },
    };
    let timeout = std::time::Duration::from_secs(args.dist_timeout.max(1));
    let group = ProcessGroup::new(world, &rendezvous, timeout)
        .with_context(|| format!("process {} of {}: meeting the others through {rendezvous:?}", world.rank, world.size))?;
    if world.is_main() {
        eprintln!("data parallel: {} processes (Gloo), {} examples each per micro-batch", world.size, args.batch_size / world.size);
    }
    Ok(group)
}

/// libtorch threads per process when several share a machine and --threads is not given:
/// SLURM's --cpus-per-task, else the cores divided by torchrun's LOCAL_WORLD_SIZE.
fn threads_per_process(_world: &World) -> Option<i32> {
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse::<i32>().ok()) {
        return Some(n.max(1));
    }
    let local: i32 = std::env::var("LOCAL_WORLD_SIZE").ok()?.parse().ok()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    Some((cores / local.max(1)).max(1))
}

/// Rank 0 writes the checkpoint; every process waits until it is complete.
fn save_everywhere(group: Option<&ProcessGroup>, dir: &Path, vs: &VarStore, cfg: &ModelConfig, opt: &AdamW, state: &TrainerState) -> Result<()> {
    if group.is_none_or(|g| g.rank() == 0) {
        save_training_checkpoint(dir, vs, cfg, opt, state)?;
    }
    if let Some(g) = group {
        g.barrier()?;
    }
    Ok(())
}

/// Refuses a `--resume` whose run differs from the checkpoint's (see `bf_model::resume`):
/// one line naming every differing setting with its saved and current values.
fn check_same_settings(dir: &Path, then: &RunIdentity, now: &RunIdentity) -> Result<()> {
    let differences: Vec<String> = now.differences(then).iter().map(|d| d.to_string()).collect();
    if !differences.is_empty() {
        bail!(
            "--resume: {} was written by another run; differing: {} (rerun with the checkpoint's values, or train into another --out)",
            dir.display(),
            differences.join("; ")
        );
    }
    Ok(())
}

/// Refuses (or, when allowed, warns about) a `--resume` on shards whose content changed; the
/// same content at another path is the same shards.
fn check_same_shards(dir: &Path, then: &RunIdentity, now: &RunIdentity, allowed: bool) -> Result<()> {
    let (old, new) = (then.shards.display(), now.shards.display());
    match now.shards_check(then) {
        ShardsCheck::Same => {}
        ShardsCheck::Moved => eprintln!("note: the shards moved from {old} to {new} (same content)"),
        ShardsCheck::OtherPath => bail!(
            "--resume: {} was trained on the shards in {old}, not {new} (it predates content keys, so only the path can be compared)",
            dir.display()
        ),
        ShardsCheck::Changed { files, moved } => {
            let place = if moved { format!("{old}, now {new}") } else { new.to_string() };
            let what = format!("the shards in {place} changed since {} was written ({})", dir.display(), files.join(", "));
            if !allowed {
                bail!("--resume: {what}; add --allow-changed-shards to continue on the new shards anyway, or train into another --out");
            }
            eprintln!("warning: {what}; continuing on the new shards (--allow-changed-shards): the run now equals no run on a single set of shards");
        }
    }
    Ok(())
}

/// Locks the run folder for this process, or says who holds it.
fn lock_out(out: &Path) -> Result<bf_model::train::RunLock> {
    lock_run_folder(out)?.with_context(|| {
        format!("{}: another bf-train is training into this folder (it holds the folder's lock); let it end, or use another --out", out.display())
    })
}

/// Removes temporaries that killed or failed runs left in the run folder.
fn sweep(out: &Path) -> Result<()> {
    for p in sweep_stale_temporaries(out)? {
        eprintln!("removed {} (left by a process that is gone)", p.display());
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

/// The model's configuration from the flags and the shards (channels, tokenizer, scale). A
/// resumed regression run keeps its checkpoint's value scale.
fn model_config(args: &Args, set: &ShardSet, saved: Option<&ModelConfig>) -> Result<ModelConfig> {
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
        eeg_skip: args.eeg_skip,
        spectral_loss: args.spectral_loss,
        tokenizer: meta.tokenizer.as_ref().map(|t| serde_json::from_str(&t.to_json()).expect("tokenizer JSON parses")),
        eeg_channels: meta.eeg_channels.clone(),
        meg_channels: meta.meg_channels.clone(),
        sfreq: Some(meta.sfreq),
        ..ModelConfig::default()
    };
    if cfg.objective == Objective::Regression {
        cfg.value_scale = match saved.and_then(|c| c.value_scale.clone()) {
            Some(scale) => Some(scale),
            // Regression targets must lie in tanh's range: per channel, the 99th percentile of |x|
            // over (up to) the first 256 training windows becomes the divisor, and values are
            // clamped to ±1.
            None => Some(bf_pipeline::shards::value_scale(&set.meta, &set.files, 256)?),
        };
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The arguments, as the checkpoint records them (for people; `--resume` compares the
/// identity instead).
fn args_record(args: &Args) -> serde_json::Value {
    let mut v = serde_json::to_value(args).expect("arguments serialize");
    for transient in [
        "resume", "overwrite", "allow_changed_shards", "stop_after", "quiet", "prefetch", "threads", "device", "self_check", "out", "push_to_hub", "dist_file",
        "dist_timeout", "slurm_script", "slurm_tasks", "slurm_nodes", "slurm_cpus_per_task", "slurm_mem", "slurm_time", "slurm_partition",
    ] {
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
