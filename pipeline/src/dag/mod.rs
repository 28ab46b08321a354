//! The make-like pipeline over every run of a dataset: which targets exist, which are out of
//! date and why, and running what is needed in dependency order.
//!
//! Stages (see [`Stage`]): per run `preprocess` → `segment`, then once `split` → `fit-tokenizer`
//! (training runs only), per run `tokenize`, once `shards`. Every target has a **key**: the
//! BLAKE3 of its stage, the stage's code version, its parameters and its inputs' keys (for
//! raw data: the content hash of the files and BIDS sidecars). A target is up to date when its
//! stamp (`derivatives/brainformer/stamps/…json`, written after its outputs) holds the same
//! key and its outputs exist with the recorded sizes. So a target is rebuilt exactly when its
//! input content, its parameters or its code changed, or its outputs were touched; a run cut
//! short by Ctrl-C, SIGKILL or power loss leaves whole files (every output is temp + rename)
//! and at worst outputs without a stamp, which the next run rebuilds.
//!
//! Keys depend only on parameters and on inputs' keys, never on timestamps or thread
//! counts, so the plan is computed before anything runs (`bf-pipeline plan`), and the same
//! inputs give the same bytes for any `--jobs`.

pub mod inputs;
pub mod lock;
pub mod space;
pub mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::ProjectConfig;
use crate::error::{Error, Result};
use crate::bids::derivatives_dir;

/// A stage of the pipeline, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Read (channels.tsv wins) → flat/clipped marks → band-pass, notch, resample →
    /// bad-channel detection → EEG interpolation → cleaned FIF + JSON sidecar.
    Preprocess,
    /// Cut the cleaned run into windows (or epochs), dropping those that touch BAD stretches.
    Segment,
    /// Assign subjects (or runs) to train / validation / test.
    Split,
    /// Fit the per-channel clamp of the tokenizer on the training windows.
    FitTokenizer,
    /// Turn every window of a run into tokens (or f32 windows in continuous mode).
    Tokenize,
    /// Concatenate runs into bounded Parquet shards per split, plus the dataset card.
    Shards,
}

pub const STAGES: [Stage; 6] = [Stage::Preprocess, Stage::Segment, Stage::Split, Stage::FitTokenizer, Stage::Tokenize, Stage::Shards];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Segment => "segment",
            Stage::Split => "split",
            Stage::FitTokenizer => "fit-tokenizer",
            Stage::Tokenize => "tokenize",
            Stage::Shards => "shards",
        }
    }

    /// Bumped whenever the stage's code changes what it writes: part of every key.
    pub fn code_version(self) -> u32 {
        match self {
            Stage::Preprocess => 3,
            Stage::Segment => 1,
            Stage::Split => 1,
            Stage::FitTokenizer => 1,
            Stage::Tokenize => 1,
            Stage::Shards => 1,
        }
    }

    pub fn per_run(self) -> bool {
        matches!(self, Stage::Preprocess | Stage::Segment | Stage::Tokenize)
    }

    pub fn parse(s: &str) -> Option<Stage> {
        STAGES.into_iter().find(|st| st.name() == s)
    }
}

/// One target: a stage applied to one run (or to all).
#[derive(Clone, Debug)]
pub struct Node {
    pub stage: Stage,
    /// Index into [`Project::runs`] for per-run stages.
    pub run: Option<usize>,
    pub deps: Vec<usize>,
    /// The parameters that make this target (stored in its stamp and outputs).
    pub params: Value,
    pub key: String,
}

impl Node {
    /// `preprocess:sub-01_ses-meg_task-x_run-01`, or `shards`.
    pub fn id(&self, project: &Project) -> String {
        match self.run {
            Some(r) => format!("{}:{}", self.stage.name(), project.runs[r].id),
            None => self.stage.name().to_string(),
        }
    }
}

/// Why a target will be built.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    UpToDate,
    NeverBuilt,
    Forced,
    ParamsChanged(Vec<String>),
    InputChanged,
    CodeChanged,
    OutputMissing(PathBuf),
    /// Not in this `--shard i/n` slice.
    OtherShard,
}

impl Status {
    pub fn needs_build(&self) -> bool {
        !matches!(self, Status::UpToDate | Status::OtherShard)
    }
    pub fn describe(&self) -> String {
        match self {
            Status::UpToDate => "up to date".into(),
            Status::NeverBuilt => "never built".into(),
            Status::Forced => "forced (--force)".into(),
            Status::ParamsChanged(k) => format!("parameters changed: {}", k.join(", ")),
            Status::InputChanged => "an input changed".into(),
            Status::CodeChanged => "the stage's code changed".into(),
            Status::OutputMissing(p) => format!("output missing or modified: {}", p.display()),
            Status::OtherShard => "left to another --shard".into(),
        }
    }
}

/// What a finished target recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub key: String,
    pub stage: Stage,
    pub code_version: u32,
    pub params: Value,
    pub deps: Vec<String>,
    /// Outputs relative to the derivatives folder, with their sizes.
    pub outputs: Vec<(String, u64)>,
}

pub use crate::bids::maxwell_site::RunMaxwell;

/// One run as the pipeline sees it.
#[derive(Clone, Debug)]
pub struct RunEntry {
    /// `sub-01_ses-meg_task-facerecognition_run-01`.
    pub id: String,
    pub subject: String,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    /// The recording (MEG file, which in ds000117 holds the EEG too); with
    /// `meg_source = "proc-sss"` the MaxFilter output under `derivatives/`.
    pub file: PathBuf,
    /// The raw run's file, where the BIDS sidecars (channels.tsv, events.tsv, meg.json) are
    /// looked up; equal to `file` for raw data.
    pub anchor: PathBuf,
    /// `meg` or `eeg`: the BIDS datatype folder of `file`.
    pub datatype: String,
    /// Content hash of the data files and the sidecars that apply.
    pub input_hash: String,
    /// Maxwell filtering of this run's MEG (`[maxwell]` in brainformer.toml), if it applies.
    pub maxwell: Option<RunMaxwell>,
}


/// The dataset and the effective configuration.
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    pub runs: Vec<RunEntry>,
    /// Where preprocess puts its transposed scratch copy of a run (`--scratch`); `None`:
    /// beside the run's outputs.
    pub scratch: Option<PathBuf>,
}

impl Project {
    pub fn derivatives(&self) -> PathBuf {
        derivatives_dir(&self.root)
    }
    /// Whether this project writes continuous (f32) shards instead of tokens
    /// (`shards.kind = "continuous"`, `tokenize --continuous`).
    pub fn continuous(&self) -> bool {
        self.config.shards.kind == "continuous"
    }
    /// The shards folder of this project's kind: `derivatives/brainformer/shards` (tokens) or
    /// `derivatives/brainformer/shards-continuous`. The two kinds live side by side, each with
    /// its own per-run files and stamps, so building one never replaces or invalidates the other.
    pub fn shards_dir(&self) -> PathBuf {
        self.derivatives().join(if self.continuous() { "shards-continuous" } else { "shards" })
    }
    pub fn stamp_path(&self, node: &Node) -> PathBuf {
        // The kind-specific stages of continuous shards keep their own stamps.
        let stage = match node.stage {
            Stage::Tokenize | Stage::Shards if self.continuous() => format!("{}-continuous", node.stage.name()),
            _ => node.stage.name().to_string(),
        };
        let dir = self.derivatives().join("stamps").join(stage);
        match node.run {
            Some(r) => dir.join(format!("{}.json", self.runs[r].id)),
            None => dir.join("all.json"),
        }
    }
    /// Where per-run derivatives of `run` go: `derivatives/brainformer/sub-X[/ses-Y]/<datatype>/`.
    pub fn run_dir(&self, run: &RunEntry) -> PathBuf {
        let mut d = self.derivatives().join(format!("sub-{}", run.subject));
        if let Some(s) = &run.session {
            d.push(format!("ses-{s}"));
        }
        d.join(&run.datatype)
    }
    /// The Hub licence id of the source data, from dataset_description.json's `License`
    /// (ds000117: CC0), else `other`.
    pub fn license(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("dataset_description.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let lic = v.get("License").and_then(Value::as_str).unwrap_or("").to_lowercase();
        if lic.contains("cc0") {
            "cc0-1.0".into()
        } else if lic.contains("cc-by-4") || lic.contains("cc by 4") {
            "cc-by-4.0".into()
        } else if lic.contains("pddl") {
            "pddl".into()
        } else {
            "other".into()
        }
    }
    pub fn run_file(&self, run: &RunEntry, desc_suffix_ext: &str) -> PathBuf {
        self.run_dir(run).join(format!("{}_{desc_suffix_ext}", run.id))
    }
}

/// The graph, the status of every node, and the order to run them in.
pub struct Plan {
    pub nodes: Vec<Node>,
    pub status: Vec<Status>,
}

/// Options of one invocation.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this stage (`preprocess`, `segment` or `shards` for `tokenize`).
    pub until: Option<Stage>,
    pub force: Vec<Stage>,
    /// `(i, n)`: only per-run targets whose run index ≡ i (mod n); global stages are skipped
    /// unless n = 1.
    pub shard: Option<(usize, usize)>,
}

fn hash_json(parts: &[&Value]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        // serde_json's Map is a BTreeMap here (no preserve_order), so keys come out sorted.
        h.update(serde_json::to_string(p).expect("JSON values serialise").as_bytes());
        h.update(b"\0");
    }
    h.finalize().to_hex().to_string()
}

/// Builds the graph for `project` and decides what is out of date.
pub fn plan(project: &Project, opts: &RunOptions) -> Result<Plan> {
    let until = opts.until.unwrap_or(Stage::Shards);
    let mut nodes: Vec<Node> = Vec::new();
    let add = |stage: Stage, run: Option<usize>, deps: Vec<usize>, params: Value, nodes: &mut Vec<Node>| -> usize {
        let dep_keys: Vec<Value> = deps.iter().map(|&d| Value::String(nodes[d].key.clone())).collect();
        let key = hash_json(&[&json!(stage.name()), &json!(stage.code_version()), &params, &Value::Array(dep_keys)]);
        nodes.push(Node { stage, run, deps, params, key });
        nodes.len() - 1
    };
    let cfg = &project.config;
    let n_runs = project.runs.len();
    let pre: Vec<usize> = (0..n_runs)
        .map(|r| add(Stage::Preprocess, Some(r), vec![], stages::preprocess_params(cfg, &project.runs[r]), &mut nodes))
        .collect();
    if until >= Stage::Segment {
        let seg: Vec<usize> = (0..n_runs).map(|r| add(Stage::Segment, Some(r), vec![pre[r]], stages::segment_params(cfg), &mut nodes)).collect();
        if until >= Stage::Split {
            let split = add(Stage::Split, None, vec![], stages::split_params(project), &mut nodes);
            let assignment = stages::assign_splits(project);
            let train: Vec<usize> = (0..n_runs).filter(|&r| assignment[r] == "train").map(|r| seg[r]).collect();
            let mut fit_deps = vec![split];
            fit_deps.extend(&train);
            let fit = add(Stage::FitTokenizer, None, fit_deps, stages::tokenizer_params(cfg), &mut nodes);
            let tok: Vec<usize> = (0..n_runs)
                .map(|r| add(Stage::Tokenize, Some(r), vec![pre[r], seg[r], fit], json!({"split": assignment[r], "tokenize": cfg.tokenize, "kind": cfg.shards.kind}), &mut nodes))
                .collect();
            let mut shard_deps = vec![split];
            shard_deps.extend(&tok);
            add(Stage::Shards, None, shard_deps, stages::shards_params(project), &mut nodes);
        }
    }
    // Stages after `until` are dropped; they come last, so dependency indices stay valid.
    let nodes: Vec<Node> = nodes.into_iter().filter(|n| n.stage <= until).collect();
    // No propagation is needed: a target's key holds its inputs' keys, and a target rebuilt
    // with an unchanged key (output missing, --force) writes the same bytes again.
    let status = nodes.iter().map(|n| node_status(project, n, opts)).collect::<Result<Vec<_>>>()?;
    Ok(Plan { nodes, status })
}

fn node_status(project: &Project, node: &Node, opts: &RunOptions) -> Result<Status> {
    if let Some((i, n)) = opts.shard {
        let mine = match node.run {
            Some(r) => r % n == i,
            None => n == 1,
        };
        if !mine {
            return Ok(Status::OtherShard);
        }
    }
    if opts.force.contains(&node.stage) {
        return Ok(Status::Forced);
    }
    let Some(stamp) = read_stamp(&project.stamp_path(node))? else { return Ok(Status::NeverBuilt) };
    if stamp.key != node.key {
        if stamp.code_version != node.stage.code_version() {
            return Ok(Status::CodeChanged);
        }
        let changed = changed_keys(&stamp.params, &node.params, "");
        return Ok(if changed.is_empty() { Status::InputChanged } else { Status::ParamsChanged(changed) });
    }
    for (rel, size) in &stamp.outputs {
        let p = project.derivatives().join(rel);
        match std::fs::metadata(&p) {
            Ok(m) if m.len() == *size => {}
            _ => return Ok(Status::OutputMissing(p)),
        }
    }
    Ok(Status::UpToDate)
}

/// Dotted paths of the leaves that differ between two JSON values.
fn changed_keys(old: &Value, new: &Value, prefix: &str) -> Vec<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    changed_keys(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &p)
                })
                .collect()
        }
        (a, b) if a == b => vec![],
        _ => vec![if prefix.is_empty() { "(all)".into() } else { prefix.to_string() }],
    }
}

fn read_stamp(path: &Path) -> Result<Option<Stamp>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(serde_json::from_str(&text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_stamp(project: &Project, node: &Node, nodes: &[Node], outputs: &[PathBuf]) -> Result<()> {
    let der = project.derivatives();
    let outputs = outputs
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
            Ok((p.strip_prefix(&der).unwrap_or(p).to_string_lossy().into_owned(), size))
        })
        .collect::<Result<Vec<_>>>()?;
    let stamp = Stamp {
        key: node.key.clone(),
        stage: node.stage,
        code_version: node.stage.code_version(),
        params: node.params.clone(),
        deps: node.deps.iter().map(|&d| nodes[d].key.clone()).collect(),
        outputs,
    };
    let text = serde_json::to_string_pretty(&stamp).expect("stamps serialise");
    crate::fsutil::write_atomic(&project.stamp_path(node), text.as_bytes())
}

/// Progress callbacks (the CLI draws bars; tests pass no-ops).
pub trait Progress: Sync {
    fn stage_started(&self, stage: Stage, n_targets: usize);
    fn target_done(&self, stage: Stage, id: &str);
    fn stage_finished(&self, stage: Stage);
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub built: BTreeMap<Stage, usize>,
    pub up_to_date: usize,
    pub messages: Vec<String>,
    /// Targets left unbuilt because `stop` asked to stop (0 when the run finished).
    pub left: usize,
}

/// Runs every target that needs building, stage by stage; targets of a per-run stage run in
/// parallel on the current rayon pool. Stops at the first error (finished targets stay).
///
/// `stop` is asked before each target starts: once it says true, targets in progress finish
/// (outputs and stamp written) and no other starts; [`Summary::left`] counts those left.
/// Each per-run target is built holding its run's lock ([`lock::lock_run`]); the caller
/// holds the folder's lock (`held`). Temporaries of killed processes are swept only under
/// the exclusive lock: shared holders may be array tasks on other machines, whose process
/// ids mean nothing here.
pub fn execute(project: &Project, plan: &Plan, held: &lock::FolderLock, progress: &dyn Progress, stop: &(dyn Fn() -> bool + Sync)) -> Result<Summary> {
    if held.mode() == lock::LockMode::Exclusive {
        remove_stale_temporaries(&project.derivatives());
        if let Some(dir) = &project.scratch {
            remove_stale_scratch(dir);
        }
    }
    let mut summary = Summary { up_to_date: plan.status.iter().filter(|s| !s.needs_build()).count(), ..Default::default() };
    for stage in STAGES {
        let todo: Vec<usize> = (0..plan.nodes.len()).filter(|&i| plan.nodes[i].stage == stage && plan.status[i].needs_build()).collect();
        if todo.is_empty() {
            continue;
        }
        if stop() {
            summary.left += todo.len();
            continue;
        }
        progress.stage_started(stage, todo.len());
        let results: Vec<Result<Option<Vec<String>>>> = todo
            .par_iter()
            .map(|&i| {
                if stop() {
                    return Ok(None);
                }
                let node = &plan.nodes[i];
                let _run_lock = match node.run {
                    Some(r) => Some(lock::lock_run(&project.derivatives(), &project.runs[r].id)?),
                    None => None,
                };
                let (outputs, messages) = stages::build(project, node)?;
                write_stamp(project, node, &plan.nodes, &outputs)?;
                progress.target_done(stage, &node.id(project));
                Ok(Some(messages))
            })
            .collect();
        progress.stage_finished(stage);
        let mut built = 0;
        for r in results {
            match r? {
                Some(m) => {
                    summary.messages.extend(m);
                    built += 1;
                }
                None => summary.left += 1,
            }
        }
        if built > 0 {
            summary.built.insert(stage, built);
        }
    }
    Ok(summary)
}

/// Deletes the scratch copies (`.bf-transpose-PID-…`, `.bf-stored-PID-…`:
/// [`crate::fsutil::scratch_file`]; at the top of `dir` only: a `--scratch` folder may be
/// shared with other programs) whose process is gone.
fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = crate::fsutil::scratch_file_pid(&name) else { continue };
        if pid != std::process::id() && bf_atomic::process_ended(pid) {
            tracing::info!(path = %entry.path().display(), "removing a scratch file left by an interrupted run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Deletes temporaries (`.NAME.tmp-PID`, scratch copies `.bf-transpose-PID-…` and
/// `.bf-stored-PID-…`) left by a process that was killed: those whose process is gone.
/// Outputs themselves are never half-written.
fn remove_stale_temporaries(dir: &Path) {
    let me = std::process::id();
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
        let name = entry.file_name().to_string_lossy();
        let Some(pid) = crate::fsutil::scratch_file_pid(&name).or_else(|| bf_atomic::temporary_pid(&name)) else { continue };
        if pid != me && bf_atomic::process_ended(pid) {
            tracing::info!(path = %entry.path().display(), "removing a temporary left by an interrupted run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scratch copies and temporaries of a process that is gone are removed, of both scratch
    /// kinds (a killed run with cHPI + Maxwell leaves a 1.3 GB `.bf-stored-…`); this
    /// process's own and other programs' files stay.
    #[test]
    fn stale_scratch_and_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = 3_999_999_999u32; // above any pid_max: no such process
        let me = std::process::id();
        let run = dir.path().join("sub-01");
        std::fs::create_dir_all(&run).unwrap();
        let stale = [
            dir.path().join(format!(".bf-stored-{gone}-0.f64")),
            dir.path().join(format!(".bf-transpose-{gone}-3.f32")),
            run.join(format!(".bf-stored-{gone}-1.f64")),
            run.join(format!(".x_meg.fif.tmp-{gone}")),
        ];
        let kept = [dir.path().join(format!(".bf-stored-{me}-0.f64")), run.join(format!(".x_meg.fif.tmp-{me}")), dir.path().join("notes.txt"), dir.path().join(".bf-lock")];
        for p in stale.iter().chain(&kept) {
            std::fs::write(p, b"x").unwrap();
        }
        remove_stale_scratch(dir.path());
        assert!(!stale[0].exists() && !stale[1].exists(), "top-level scratch of a dead process");
        assert!(stale[2].exists(), "remove_stale_scratch looks at the top of its folder only");
        remove_stale_temporaries(dir.path());
        for p in &stale {
            assert!(!p.exists(), "{}", p.display());
        }
        for p in &kept {
            assert!(p.exists(), "{}", p.display());
        }
    }

    #[test]
    fn changed_keys_names_the_leaves() {
        let a = json!({"preprocess": {"l_freq": 0.1, "h_freq": 100.0}, "x": 1});
        let b = json!({"preprocess": {"l_freq": 0.5, "h_freq": 100.0}, "x": 1});
        assert_eq!(changed_keys(&a, &b, ""), vec!["preprocess.l_freq".to_string()]);
        assert!(changed_keys(&a, &a, "").is_empty());
    }

    #[test]
    fn stage_names_round_trip() {
        for s in STAGES {
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
    }
}
