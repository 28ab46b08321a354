//! The pipeline commands: `tokenize` (everything up to the shards), `preprocess` and
//! `segment` (stop earlier), `plan` (what would run and why), `graph` (DOT), `config` (the
//! effective configuration), `clean` (remove derivatives) and `slurm` (the job-array script).
//! The engine is `bf_pipeline::dag`; this file loads the project, applies command-line
//! overrides, takes derivatives/brainformer's lock, checks splits and free space, sizes the
//! thread pool, turns signals into a stop between targets and draws the progress bars.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use bf_pipeline::config::{ProjectConfig, PROJECT_FILE};
use bf_pipeline::dag::lock::{self, FolderLock, LockMode};
use bf_pipeline::dag::{self, inputs::discover_runs, stages, Plan, Project, RunOptions, Stage, STAGES};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::StopSignals;

/// Options shared by the pipeline commands. Every parameter of brainformer.toml can be
/// overridden here, with MNE's names.
#[derive(Args, Debug, Clone)]
pub struct DagArgs {
    /// The project file written by `bf-pipeline ingest`.
    #[arg(long, default_value = PROJECT_FILE)]
    pub project: PathBuf,
    /// High-pass edge in Hz (MNE's l_freq).
    #[arg(long, allow_negative_numbers = true)]
    pub l_freq: Option<f64>,
    /// Low-pass edge in Hz (MNE's h_freq).
    #[arg(long, allow_negative_numbers = true)]
    pub h_freq: Option<f64>,
    /// Notch frequencies in Hz, comma-separated ("" for none).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub notch: Option<Vec<f64>>,
    /// Sampling rate after resampling, Hz.
    #[arg(long, allow_negative_numbers = true)]
    pub sfreq: Option<f64>,
    /// Window length in samples (at the new rate).
    #[arg(long)]
    pub window: Option<usize>,
    /// Step between window starts in samples.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Cut event-locked epochs (events from each run's events.tsv) instead of fixed windows.
    #[arg(long)]
    pub epochs: bool,
    /// Epochs: start relative to the event, seconds (MNE's tmin; default -0.2).
    #[arg(long, allow_negative_numbers = true)]
    pub tmin: Option<f64>,
    /// Epochs: end relative to the event, seconds, included (MNE's tmax; default 0.8).
    #[arg(long, allow_negative_numbers = true)]
    pub tmax: Option<f64>,
    /// Epochs: no baseline correction (default: MNE's baseline=(None, 0)).
    #[arg(long)]
    pub no_baseline: bool,
    /// Hold out whole `subject`s (default) or whole `run`s.
    #[arg(long, value_parser = ["subject", "run"])]
    pub split_by: Option<String>,
    /// Seed of the split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Largest shard file in MB.
    #[arg(long)]
    pub max_shard_mb: Option<u64>,
    /// Write f32 windows in physical units instead of tokens (for the regression model).
    #[arg(long)]
    pub continuous: bool,
    /// Rebuild this stage (and so everything below it) even when up to date; repeatable.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Parallel jobs (runs at once, and threads inside each). Default: all cores.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Only the per-run targets of slice I of N (runs i, i+n, ...): for job arrays on machines
    /// that share the dataset's filesystem. Stages over all runs are left to a run without
    /// --shard.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// When another pipeline process holds derivatives/brainformer's lock, stop with an error
    /// naming it instead of waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// Folder for preprocess's scratch copies, made only for runs whose samples are computed
    /// (Maxwell filtering); FIF/EDF/BrainVision runs are read again per block of channels
    /// instead. Each copy is the run transposed channel-major: as f32 where its samples are
    /// float32 or int16, ~1x the FIF, else as f64, up to ~2x; removed when the run is done.
    /// Default: beside the outputs. A free-space check covers it and the outputs before
    /// anything starts.
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Go on (with a warning) when the train/validation/test split leaves a split with a
    /// non-zero fraction without any subject (or run); by default tokenize refuses.
    #[arg(long)]
    pub allow_empty_split: bool,
}

impl DagArgs {
    /// brainformer.toml with the command-line overrides applied.
    pub fn config(&self) -> Result<ProjectConfig> {
        if !self.project.exists() {
            bail!("{}: no project file here; run `bf-pipeline ingest DATASET` first (or pass --project)", self.project.display());
        }
        let mut c = ProjectConfig::load(&self.project)?;
        let p = &mut c.preprocess;
        if let Some(v) = self.l_freq {
            p.l_freq = v;
        }
        if let Some(v) = self.h_freq {
            p.h_freq = v;
        }
        if let Some(v) = &self.notch {
            p.notch = v.clone();
        }
        if let Some(v) = self.sfreq {
            p.sfreq = v;
        }
        if let Some(v) = self.window {
            c.segment.window = v;
        }
        if let Some(v) = self.stride {
            c.segment.stride = v;
        }
        if self.epochs {
            c.segment.mode = "epochs".into();
        }
        if let Some(v) = self.tmin {
            c.segment.tmin = v;
        }
        if let Some(v) = self.tmax {
            c.segment.tmax = v;
        }
        if self.no_baseline {
            c.segment.baseline = false;
        }
        if !["windows", "epochs"].contains(&c.segment.mode.as_str()) {
            bail!("{}: segment.mode = {:?}: expected \"windows\" or \"epochs\"", self.project.display(), c.segment.mode);
        }
        if let Some(v) = &self.split_by {
            c.split.by = v.clone();
        }
        if let Some(v) = self.seed {
            c.split.seed = v;
        }
        if let Some(v) = self.max_shard_mb {
            c.shards.max_shard_bytes = v << 20;
        }
        if self.continuous {
            c.shards.kind = "continuous".into();
        }
        if bf_pipeline::shards::ShardKind::parse(&c.shards.kind).is_none() {
            bail!("{}: shards.kind = {:?}: expected \"tokens\" or \"continuous\"", self.project.display(), c.shards.kind);
        }
        validate(&c)?;
        Ok(c)
    }

    fn options(&self, until: Stage) -> Result<RunOptions> {
        let force = self
            .force
            .iter()
            .map(|s| Stage::parse(s).with_context(|| format!("--force {s}: unknown stage (one of {})", stage_names())))
            .collect::<Result<Vec<_>>>()?;
        let shard = match &self.shard {
            None => None,
            Some(s) => {
                let (i, n) = s.split_once('/').with_context(|| format!("--shard {s}: expected I/N, e.g. 0/4"))?;
                let (i, n): (usize, usize) = (i.trim().parse().context("--shard I")?, n.trim().parse().context("--shard N")?);
                if n == 0 || i >= n {
                    bail!("--shard {s}: need 0 <= I < N");
                }
                Some((i, n))
            }
        };
        Ok(RunOptions { until: Some(until), force, shard })
    }

    fn project(&self) -> Result<Project> {
        let config = self.config()?;
        let root = config.dataset.root.clone();
        let runs = discover_runs(&config)?;
        Ok(Project { root, config, runs, scratch: self.scratch.clone() })
    }

    /// Exclusive unless this is an array task (`--shard i/n`, n > 1) running per-run targets.
    fn lock_mode(&self, opts: &RunOptions) -> LockMode {
        match opts.shard {
            Some((_, n)) if n > 1 => LockMode::Shared,
            _ => LockMode::Exclusive,
        }
    }
}

/// This process's command line, for the lock's list of holders.
fn command_line() -> String {
    std::env::args_os().map(|w| crate::shell_quote(&w.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

/// Takes derivatives/brainformer's lock: at once when it is free; else, with --no-wait, an
/// error naming the holders; else waits (polling, so a signal can end the wait), saying once
/// whom it waits for. `Ok(None)`: a signal came while waiting.
pub(crate) fn take_lock(der: &Path, mode: LockMode, no_wait: bool, stop: Option<&StopSignals>) -> Result<Option<FolderLock>> {
    let who = || {
        let h = lock::holders(der);
        if h.is_empty() { "another process (no record of it)".to_string() } else { h.iter().map(|h| h.describe()).collect::<Vec<_>>().join("; ") }
    };
    let mut told = false;
    loop {
        if let Some(l) = FolderLock::try_acquire(der, mode, &command_line())? {
            if told {
                eprintln!("{}: lock taken, going on", der.display());
            }
            return Ok(Some(l));
        }
        if no_wait {
            bail!(
                "{}: in use by another bf-pipeline ({}); nothing was done. Rerun when it has finished, or without --no-wait to wait for it",
                der.display(),
                who()
            );
        }
        if !told {
            eprintln!("{}: in use by another bf-pipeline ({}); waiting for it to finish (--no-wait refuses instead)", der.display(), who());
            told = true;
        }
        if stop.is_some_and(|s| s.received().is_some()) {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Subjects (or runs, with split.by = "run") per split: refuses a split with a positive
/// fraction and nobody in it unless `allow_empty`, then prints the counts.
fn check_splits(project: &Project, allow_empty: bool) -> Result<Vec<String>> {
    let assignment = stages::assign_splits(project);
    let s = &project.config.split;
    let mut counts = Vec::new();
    for (split, fraction) in [("train", 1.0 - s.validation_fraction - s.test_fraction), ("validation", s.validation_fraction), ("test", s.test_fraction)] {
        let runs: Vec<&dag::RunEntry> = project.runs.iter().zip(&assignment).filter(|(_, a)| **a == split).map(|(r, _)| r).collect();
        let mut subjects: Vec<&str> = runs.iter().map(|r| r.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        counts.push((split, fraction, subjects.len(), runs.len()));
    }
    let line = counts
        .iter()
        .map(|(split, _, subj, runs)| format!("{split} {subj} subject{} ({runs} run{})", if *subj == 1 { "" } else { "s" }, if *runs == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ");
    let unit = if s.by == "run" { "run" } else { "subject" };
    let n_units = if s.by == "run" { project.runs.len() } else { counts.iter().map(|c| c.2).sum() };
    let empty: Vec<String> = counts
        .iter()
        .filter(|(_, fraction, subj, runs)| *fraction > 0.0 && if s.by == "run" { *runs == 0 } else { *subj == 0 })
        .map(|(split, fraction, ..)| format!("{split} ({split}_fraction {fraction} of {n_units})"))
        .collect();
    let mut warnings = Vec::new();
    if !empty.is_empty() {
        let what = format!("no {unit} in the {} split{}: {n_units} {unit}(s) in all, split as {line}", empty.join(" and the "), if empty.len() > 1 { "s" } else { "" });
        if !allow_empty {
            bail!(
                "{}: {what}. Nothing was built. Add {unit}s, set [split] validation_fraction/test_fraction in the project file (0 means none, on purpose), or pass --allow-empty-split to go on without them",
                project.config.dataset.root.display()
            );
        }
        warnings.push(format!("{what}; going on (--allow-empty-split)"));
    }
    println!("splits: {line}");
    Ok(warnings)
}

fn stage_names() -> String {
    STAGES.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

fn validate(c: &ProjectConfig) -> Result<()> {
    let p = &c.preprocess;
    if !(p.sfreq > 0.0) {
        bail!("sfreq {} must be positive", p.sfreq);
    }
    if c.segment.window == 0 || c.segment.stride == 0 {
        bail!("window ({}) and stride ({}) must be at least 1 sample", c.segment.window, c.segment.stride);
    }
    let s = &c.split;
    if !(0.0..1.0).contains(&(s.validation_fraction + s.test_fraction)) || s.validation_fraction < 0.0 || s.test_fraction < 0.0 {
        bail!("validation_fraction + test_fraction must be in [0, 1)");
    }
    Ok(())
}

/// `bf-pipeline tokenize | preprocess | segment`: build everything up to `until`.
///
/// Takes derivatives/brainformer's lock first (exclusive; shared for `--shard i/n` tasks),
/// then plans, so a process that waited sees what the other built. SIGTERM/SIGINT/SIGUSR1:
/// the targets in progress finish, none starts, and the command exits with
/// [`crate::EXIT_RESUMABLE`]; a second SIGTERM/SIGINT ends it at once.
pub fn run(args: &DagArgs, until: Stage, quiet: bool) -> Result<()> {
    let stop = crate::StopSignals::install()?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.jobs.unwrap_or(0)).build().context("thread pool")?;
    let config = args.config()?;
    let options = args.options(until)?;
    if !config.dataset.root.is_dir() {
        bail!("{}: the dataset folder named in {} does not exist (moved? run `bf-pipeline ingest` on it again)", config.dataset.root.display(), args.project.display());
    }
    let der = bf_pipeline::bids::derivatives_dir(&config.dataset.root);
    let Some(held) = take_lock(&der, args.lock_mode(&options), args.no_wait, Some(&stop))? else {
        return Err(crate::Resumable(format!("stopped by {} while waiting for {}'s lock; nothing was done", stop.received().unwrap_or("a signal"), der.display())).into());
    };
    pool.install(|| {
        let project = args.project()?;
        let plan = dag::plan(&project, &options)?;
        let global = plan.nodes.iter().zip(&plan.status).any(|(n, s)| n.stage == Stage::Split && s != &dag::Status::OtherShard);
        let mut warnings = if global { check_splits(&project, args.allow_empty_split)? } else { vec![] };
        let todo = plan.status.iter().filter(|s| s.needs_build()).count();
        if todo == 0 {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("nothing to do: all {} targets up to date", plan.nodes.len());
            return Ok(());
        }
        dag::space::space_need(&project, &plan, rayon::current_num_threads()).require()?;
        let bars = Bars::new(quiet, todo);
        let watcher = StopAnnouncer::start(&stop);
        let summary = dag::execute(&project, &plan, &held, &bars, &|| stop.received().is_some())?;
        drop(watcher);
        bars.finish();
        warnings.extend(summary.messages.iter().cloned());
        for m in &warnings {
            eprintln!("warning: {m}");
        }
        let built: Vec<String> = summary.built.iter().map(|(s, n)| format!("{} {}", n, s.name())).collect();
        if summary.left > 0 {
            return Err(crate::Resumable(format!(
                "stopped by {}: {} target(s) built ({}), {} left; every finished target is kept and nothing is half-written: run the same command again to continue",
                stop.received().unwrap_or("a signal"),
                summary.built.values().sum::<usize>(),
                if built.is_empty() { "none".to_string() } else { built.join(", ") },
                summary.left
            ))
            .into());
        }
        println!("built {} ({} up to date)", built.join(", "), summary.up_to_date);
        if until == Stage::Shards && options.shard.is_none_or(|(_, n)| n == 1) {
            let shards = project.shards_dir();
            println!("shards: {}", shards.display());
            println!("load them: python -c \"import datasets; print(datasets.load_dataset('{}'))\"", shards.display());
        }
        Ok(())
    })
}

/// Says once, as soon as a stop signal arrives, that the run is finishing the targets in
/// progress (a signal handler cannot print). Stops watching when dropped.
struct StopAnnouncer(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StopAnnouncer {
    fn start(stop: &crate::StopSignals) -> StopAnnouncer {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, stop) = (done.clone(), stop.clone());
        std::thread::spawn(move || {
            while !d.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(sig) = stop.received() {
                    eprintln!("{sig}: finishing the targets in progress, then stopping (send it again to stop at once; outputs stay whole)");
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        StopAnnouncer(done)
    }
}

impl Drop for StopAnnouncer {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Show every target of the pipeline, whether it would run, and why (runs nothing).
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dag: DagArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `bf-pipeline plan`: every target, whether it would run, and why.
pub fn plan(args: &DagArgs, json: bool) -> Result<()> {
    let project = args.project()?;
    let plan = dag::plan(&project, &args.options(Stage::Shards)?)?;
    if json {
        let rows: Vec<_> = plan
            .nodes
            .iter()
            .zip(&plan.status)
            .map(|(n, s)| serde_json::json!({"target": n.id(&project), "stage": n.stage.name(), "build": s.needs_build(), "why": s.describe(), "key": n.key}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let todo = plan.status.iter().filter(|s| s.needs_build()).count();
    for (n, s) in plan.nodes.iter().zip(&plan.status) {
        println!("{} {:<60} {}", if s.needs_build() { "run " } else { "skip" }, n.id(&project), s.describe());
    }
    println!("{todo} of {} targets would run", plan.nodes.len());
    Ok(())
}

/// `bf-pipeline graph`: the DAG in Graphviz DOT (targets to run are filled).
pub fn graph(args: &DagArgs) -> Result<()> {
    let project = args.project()?;
    let plan: Plan = dag::plan(&project, &args.options(Stage::Shards)?)?;
    println!("digraph brainformer {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];");
    for (i, (n, s)) in plan.nodes.iter().zip(&plan.status).enumerate() {
        let style = if s.needs_build() { ", style=filled, fillcolor=\"#ffe0a0\"" } else { "" };
        println!("  n{i} [label=\"{}\"{style}];", n.id(&project));
    }
    for (i, n) in plan.nodes.iter().enumerate() {
        for d in &n.deps {
            println!("  n{d} -> n{i};");
        }
    }
    println!("}}");
    Ok(())
}

/// `bf-pipeline config`: the effective configuration (file + overrides) as TOML.
pub fn config(args: &DagArgs) -> Result<()> {
    let c = args.config()?;
    print!("# {} with command-line overrides\n{}", args.project.display(), toml::to_string_pretty(&c)?);
    Ok(())
}

/// Remove the pipeline's derivatives (derivatives/brainformer/, except ingest's manifest).
#[derive(Args, Debug, Clone)]
pub struct CleanArgs {
    #[command(flatten)]
    pub dag: DagArgs,
    /// Really remove (without it, only list what would go).
    #[arg(long)]
    pub yes: bool,
}

/// `bf-pipeline clean`: removes `derivatives/brainformer` except the manifest (ingest's),
/// holding the folder's lock.
pub fn clean(args: &DagArgs, yes: bool) -> Result<()> {
    let c = args.config()?;
    let der = bf_pipeline::bids::derivatives_dir(&c.dataset.root);
    if !der.exists() {
        println!("nothing to remove: {} does not exist", der.display());
        return Ok(());
    }
    let _held = if yes { take_lock(&der, LockMode::Exclusive, args.no_wait, None)? } else { None };
    // The lock file stays: a process waiting on it must not end up locking a removed file.
    let entries: Vec<PathBuf> = std::fs::read_dir(&der)
        .with_context(|| format!("{}: cannot list", der.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "manifest.parquet" && n != lock::LOCK_FILE))
        .collect();
    if !yes {
        for e in &entries {
            println!("would remove {}", e.display());
        }
        println!("(pass --yes to remove)");
        return Ok(());
    }
    for e in &entries {
        if e.is_dir() { std::fs::remove_dir_all(e) } else { std::fs::remove_file(e) }.with_context(|| format!("{}: cannot remove", e.display()))?;
    }
    println!("removed {} entries from {}", entries.len(), der.display());
    Ok(())
}

/// An overall bar plus one bar per active stage.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    stage: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(quiet: bool, total: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(ProgressStyle::with_template("{spinner} overall [{bar:30}] {pos}/{len} targets {elapsed}").expect("template"));
        Bars { multi, overall, stage: Mutex::new(None) }
    }
    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

impl dag::Progress for Bars {
    fn stage_started(&self, stage: Stage, n: usize) {
        let bar = self.multi.add(ProgressBar::new(n as u64));
        bar.set_style(ProgressStyle::with_template("{spinner} {prefix:>14} [{bar:30}] {pos}/{len} {wide_msg}").expect("template"));
        bar.set_prefix(stage.name());
        *self.stage.lock().expect("bar lock") = Some(bar);
    }
    fn target_done(&self, _stage: Stage, id: &str) {
        if let Some(b) = self.stage.lock().expect("bar lock").as_ref() {
            b.set_message(id.to_string());
            b.inc(1);
        }
        self.overall.inc(1);
    }
    fn stage_finished(&self, _stage: Stage) {
        if let Some(b) = self.stage.lock().expect("bar lock").take() {
            b.finish_and_clear();
        }
    }
}

/// Write an sbatch script that runs the pipeline on SLURM: per-run stages as a job array
/// (`--shard I/N`), then the stages over all runs as a job that depends on it.
///
/// `bash SCRIPT` submits both (the script is their batch script; any path works) or exits
/// non-zero saying what sbatch refused. Jobs ask for SIGTERM --stop-before seconds ahead of
/// their time limit, stop at a target boundary and requeue themselves.
#[derive(Args, Debug, Clone)]
pub struct SlurmCommandArgs {
    #[command(flatten)]
    pub dag: DagArgs,
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

/// Options of `bf-pipeline slurm`.
#[derive(Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Array tasks for the per-run stages (each takes runs i, i+N, ...).
    #[arg(long, default_value_t = 8)]
    pub tasks: usize,
    /// Script to write.
    #[arg(long, default_value = "brainformer-slurm.sh")]
    pub out: PathBuf,
    /// sbatch --partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// sbatch --time of each job (HH:MM:SS).
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// sbatch --cpus-per-task (the pipeline uses them all with rayon).
    #[arg(long, default_value_t = 8)]
    pub cpus_per_task: usize,
    /// sbatch --mem per job (1 GB per concurrently processed ds000117 run is ample).
    #[arg(long, default_value = "8G")]
    pub mem: String,
    /// Seconds before the time limit at which SLURM signals each job (sbatch
    /// --signal=B:TERM@S): the pipeline finishes its targets in progress, stops, and the job
    /// requeues itself to continue (0: no signal, no requeue).
    #[arg(long, default_value_t = 300)]
    pub stop_before: u32,
}

/// The parameters given on this command line, repeated verbatim in the script so every task
/// computes the same keys.
fn override_args(a: &DagArgs) -> Vec<String> {
    let mut v = Vec::new();
    let mut push = |k: &str, val: Option<String>| {
        if let Some(val) = val {
            v.push(format!("--{k}={val}"));
        }
    };
    push("l-freq", a.l_freq.map(|x| x.to_string()));
    push("h-freq", a.h_freq.map(|x| x.to_string()));
    push("notch", a.notch.as_ref().map(|n| n.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")));
    push("sfreq", a.sfreq.map(|x| x.to_string()));
    push("window", a.window.map(|x| x.to_string()));
    push("stride", a.stride.map(|x| x.to_string()));
    push("split-by", a.split_by.clone());
    push("seed", a.seed.map(|x| x.to_string()));
    push("max-shard-mb", a.max_shard_mb.map(|x| x.to_string()));
    push("tmin", a.tmin.map(|x| x.to_string()));
    push("tmax", a.tmax.map(|x| x.to_string()));
    push("scratch", a.scratch.as_ref().map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()).to_string_lossy().into_owned()));
    for (flag, on) in [("--continuous", a.continuous), ("--epochs", a.epochs), ("--no-baseline", a.no_baseline), ("--allow-empty-split", a.allow_empty_split)] {
        if on {
            v.push(flag.to_string());
        }
    }
    v
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `bf-pipeline slurm`: writes a self-submitting sbatch script. `bash SCRIPT` submits a job
/// array (`SCRIPT --task I`: preprocess + segment of runs I, I+N, … via `--shard I/N`) and a
/// job that depends on it (`SCRIPT --final`: split, tokenizer fit, tokenize, shards). Tasks
/// share nothing but the dataset's filesystem: the DAG's stamps and keys make them agree.
///
/// The script submits itself as the batch script (`sbatch … SCRIPT --task`), so no command
/// line is parsed by a shell again (`--wrap` was): paths with spaces, quotes or non-ASCII
/// characters reach the jobs as they are. Before submitting it checks that sbatch exists and
/// that the binary reads the project; a refused submission says so and exits non-zero, and
/// a refused second job cancels the first.
pub fn slurm(args: &DagArgs, s: &SlurmArgs) -> Result<()> {
    if s.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let config = args.config()?;
    let project = std::fs::canonicalize(&args.project).with_context(|| format!("{}: cannot resolve", args.project.display()))?;
    let exe = std::env::current_exe().context("cannot find the bf-pipeline binary")?;
    let utf8 = |p: &Path| p.to_str().map(str::to_string).with_context(|| format!("{}: not valid UTF-8, which a shell script cannot carry safely", p.display()));
    let overrides: Vec<String> = override_args(args).iter().map(|a| shell_quote(a)).collect();
    let partition = s.partition.as_ref().map(|p| format!(" --partition={}", shell_quote(p))).unwrap_or_default();
    // Requeued jobs append to their log, so the reason of the requeue stays readable.
    let signal = if s.stop_before > 0 { format!(" --signal=B:TERM@{} --requeue --open-mode=append", s.stop_before) } else { String::new() };
    let opts = format!("--time={} --cpus-per-task={} --mem={}{partition}{signal}", shell_quote(&s.time), s.cpus_per_task, shell_quote(&s.mem));
    let n = s.tasks;
    let script = format!(
        r#"#!/usr/bin/env bash
# Brainformer pipeline on SLURM, written by `bf-pipeline slurm` for {root}.
#   bash {name}            submit: a {n}-task array (preprocess + segment, runs i, i+{n}, ...),
#                          then, when it succeeds, one job for split, tokenizer, tokenize, shards
#   bash {name} --task I   what array task I runs (also usable without SLURM)
#   bash {name} --final    what the dependent job runs
# sbatch runs this same script as each job's batch script (with --task or --final).
set -euo pipefail
BF={exe}
PROJECT={project}
ARGS=({overrides})
# Runs bf-pipeline with SLURM's warning signal (sbatch --signal=B:TERM@S reaches this shell)
# passed on to it; bf-pipeline then finishes the targets in progress and exits 75, and the job
# is requeued, to continue where it stopped (its dependants wait for it).
run_bf() {{
  "$BF" "$@" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null || true' TERM USR1
  while :; do
    st=0; wait "$pid" || st=$?
    if [ "$st" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi  # a signal woke wait
    break
  done
  if [ "$st" -gt 128 ]; then st=0; wait "$pid" || st=$?; fi  # the status it really ended with
  trap - TERM USR1
  if [ "$st" = 75 ] && [ -n "${{SLURM_JOB_ID:-}}" ]; then
    job=$SLURM_JOB_ID
    [ -n "${{SLURM_ARRAY_JOB_ID:-}}" ] && job=${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID
    echo "bf-pipeline stopped before the time limit; requeueing job $job to continue" >&2
    scontrol requeue "$job" || {{ echo "scontrol requeue $job failed: resubmit it by hand" >&2; exit 75; }}
    exit 0
  fi
  exit "$st"
}}
case "${{1:-}}" in
  --task)  run_bf --quiet segment --project "$PROJECT" "${{ARGS[@]}}" --jobs "${{SLURM_CPUS_PER_TASK:-0}}" --shard "${{2:-${{SLURM_ARRAY_TASK_ID:?--task needs I}}}}/{n}" ;;
  --final) run_bf --quiet tokenize --project "$PROJECT" "${{ARGS[@]}}" --jobs "${{SLURM_CPUS_PER_TASK:-0}}" ;;
  "") ;;
  *) echo "usage: $0 [--task I | --final]" >&2; exit 2 ;;
esac
fail() {{ echo "bf-pipeline slurm: $*" >&2; exit 1; }}
command -v sbatch >/dev/null || fail "sbatch not found: submit from a SLURM login node (or run --task I and --final by hand); nothing was submitted"
"$BF" --quiet config --project "$PROJECT" "${{ARGS[@]}}" >/dev/null   || fail "$BF cannot read $PROJECT with these settings (message above); nothing was submitted"
self=$(readlink -f "$0")
array=$(sbatch --parsable --job-name=bf-segment --array=0-{last} {opts} --output=bf-segment-%A_%a.log "$self" --task)   || fail "sbatch refused the array job (message above); nothing was submitted"
array=${{array%%;*}}
case "$array" in ''|*[!0-9]*) fail "sbatch answered '$array' instead of a job id; nothing else was submitted" ;; esac
# afterany, not afterok: a task requeued after SIGTERM may count as failed for afterok (SLURM
# then marks this job DependencyNeverSatisfied and it never runs); tokenize builds whatever a
# task left undone itself, and reports the error of a run that really fails.
final=$(sbatch --parsable --job-name=bf-tokenize --dependency=afterany:$array {opts} --output=bf-tokenize-%j.log "$self" --final) || {{
  scancel "$array" || true
  fail "sbatch refused the final job (message above); array job $array was cancelled, nothing is left submitted"
}}
final=${{final%%;*}}
echo "submitted array job $array ({n} tasks) and job $final (runs after it)"
"#,
        root = config.dataset.root.display(),
        name = s.out.display(),
        exe = shell_quote(&utf8(&exe)?),
        project = shell_quote(&utf8(&project)?),
        overrides = overrides.join(" "),
        last = n - 1,
    );
    bf_pipeline::fsutil::write_atomic(&s.out, script.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.out, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("{}: chmod", s.out.display()))?;
    println!("wrote {} ({} array tasks); submit with: bash {}", s.out.display(), n, shell_quote(&s.out.to_string_lossy()));
    Ok(())
}
