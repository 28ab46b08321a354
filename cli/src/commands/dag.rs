//! The pipeline commands: `tokenize` (everything up to the shards), `preprocess` and
//! `segment` (stop earlier), `plan` (what would run and why), `graph` (DOT), `config` (the
//! effective configuration) and `clean` (remove derivatives). The engine is
//! `bf_pipeline::dag`; this file loads the project, applies command-line overrides, sizes the
//! thread pool and draws the progress bars.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use bf_pipeline::config::{ProjectConfig, PROJECT_FILE};
use bf_pipeline::dag::{self, inputs::discover_runs, Plan, Project, RunOptions, Stage, STAGES};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    /// Hold out whole `subject`s (default) or whole `run`s.
    #[arg(long, value_parser = ["subject", "run"])]
    pub split_by: Option<String>,
    /// Seed of the split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Largest shard file in MB.
    #[arg(long)]
    pub max_shard_mb: Option<u64>,
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
        if let Some(v) = &self.split_by {
            c.split.by = v.clone();
        }
        if let Some(v) = self.seed {
            c.split.seed = v;
        }
        if let Some(v) = self.max_shard_mb {
            c.shards.max_shard_bytes = v << 20;
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
        let runs = discover_runs(&root)?;
        Ok(Project { root, config, runs })
    }
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
pub fn run(args: &DagArgs, until: Stage, quiet: bool) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.jobs.unwrap_or(0)).build().context("thread pool")?;
    pool.install(|| {
        let project = args.project()?;
        let plan = dag::plan(&project, &args.options(until)?)?;
        let todo = plan.status.iter().filter(|s| s.needs_build()).count();
        if todo == 0 {
            println!("nothing to do: all {} targets up to date", plan.nodes.len());
            return Ok(());
        }
        let bars = Bars::new(quiet, todo);
        let summary = dag::execute(&project, &plan, &bars)?;
        bars.finish();
        for m in &summary.messages {
            eprintln!("warning: {m}");
        }
        let built: Vec<String> = summary.built.iter().map(|(s, n)| format!("{} {}", n, s.name())).collect();
        println!("built {} ({} up to date)", built.join(", "), summary.up_to_date);
        if until == Stage::Shards {
            let shards = project.derivatives().join("shards");
            println!("shards: {}", shards.display());
            println!(
                "load them: python -c \"import datasets; print(datasets.load_dataset('parquet', data_dir='{}'))\"",
                shards.join("data").display()
            );
        }
        Ok(())
    })
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

/// `bf-pipeline clean`: removes `derivatives/brainformer` except the manifest (ingest's).
pub fn clean(args: &DagArgs, yes: bool) -> Result<()> {
    let c = args.config()?;
    let der = bf_pipeline::ingest::derivatives_dir(&c.dataset.root);
    if !der.exists() {
        println!("nothing to remove: {} does not exist", der.display());
        return Ok(());
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(&der)
        .with_context(|| format!("{}: cannot list", der.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "manifest.parquet"))
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
