//! What `bf-train` keeps between runs: a training checkpoint folder and the pieces of the
//! loop that are worth testing on their own (batches to tensors, the validation loss).
//!
//! A training checkpoint is a folder holding `config.json` + `model.safetensors` (a model
//! checkpoint that `bf-eval` and PyTorch load), `optimizer.safetensors` (AdamW moments) and
//! `trainer_state.json` (step, data position, early-stopping state, the arguments). It is
//! written into a temporary sibling folder and renamed into place; the previous one is moved
//! aside first and removed last, so at every instant one complete checkpoint exists under
//! `NAME` or `NAME.old` ([`resolve_checkpoint`] finds it after a crash between renames).
//!
//! Exact resume: the data stream restarts at the saved position, dropout is re-seeded from
//! (seed, step, micro-step) before every forward pass, and the optimizer moments are saved
//! bit for bit, so a resumed run computes the same losses as one that never stopped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{load_tensors, named_variables, save_tensors, write_atomic};
use crate::data::{Batch, BatchData};
use crate::optim::AdamW;
use crate::resume::RunIdentity;
use crate::{save_checkpoint, Error, Model, ModelConfig, Result};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// The loop's position and early-stopping bookkeeping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: i64,
    /// Training examples consumed from the stream.
    pub position: u64,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<i64>,
    /// Validations in a row without improvement.
    pub evals_without_improvement: u32,
    /// The command-line arguments of the run (JSON), for the record.
    pub args: serde_json::Value,
    /// What `--resume` compares (absent in checkpoints of older builds, which are compared
    /// through `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<RunIdentity>,
}

/// The trainable variables of a store, sorted by name (the optimizer's stable order).
pub fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    named_variables(vs).into_iter().filter(|(_, t)| t.requires_grad()).collect()
}

/// Writes a training checkpoint folder atomically (see the module docs). On an error (a full
/// disk) the temporary folder is removed and the previous checkpoint stays.
pub fn save_training_checkpoint(dir: &Path, vs: &VarStore, cfg: &ModelConfig, opt: &AdamW, state: &TrainerState) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    // The atomic writers' temporary name (`.NAME.tmp-PID`), which the sweep below recognises.
    let tmp = crate::checkpoint::temp_path(&parent.join(&name));
    let old = parent.join(format!("{name}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let written = (|| -> Result<()> {
        save_checkpoint(&tmp, vs, cfg)?;
        save_tensors(&tmp.join(OPTIMIZER_FILE), &opt.state_tensors())?;
        let json = serde_json::to_string_pretty(state).expect("trainer state serializes");
        write_atomic(&tmp.join(STATE_FILE), json.as_bytes())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        let kept = if resolve_checkpoint(dir).is_some() { "the previous one is kept" } else { "there was none before" };
        return Err(Error::Format(dir.to_path_buf(), format!("writing the checkpoint failed ({kept}): {e}")));
    }
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// `dir` if it holds a complete checkpoint, else `dir.old` (a crash between the renames).
pub fn resolve_checkpoint(dir: &Path) -> Option<PathBuf> {
    let complete = |d: &Path| d.join(STATE_FILE).is_file() && d.join(crate::WEIGHTS_FILE).is_file();
    if complete(dir) {
        return Some(dir.to_path_buf());
    }
    let old = dir.with_file_name(format!("{}.old", dir.file_name()?.to_string_lossy()));
    complete(&old).then_some(old)
}

/// Reads a checkpoint's `trainer_state.json` alone (to compare before loading weights).
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format(state_path.clone(), e.to_string()))
}

/// Reads the trainer state and restores weights and optimizer moments.
pub fn load_training_checkpoint(dir: &Path, vs: &mut VarStore, opt: &mut AdamW) -> Result<TrainerState> {
    let state = read_trainer_state(dir)?;
    crate::checkpoint::load_weights(vs, &dir.join(crate::WEIGHTS_FILE))?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    opt.load_state(load_tensors(&opt_path)?, state.step).map_err(|e| Error::Format(opt_path, e))?;
    Ok(state)
}

/// What a training run writes into its `--out` folder (checkpoints, their `.old` copies
/// during a swap, the logs: metrics.jsonl and the TensorBoard folder `tb/`); other files
/// there are not the run's.
pub const RUN_FILES: [&str; 6] = ["metrics.jsonl", "tb", "last", "best", "last.old", "best.old"];

/// The run files present in `out` (empty when `out` is absent or holds no run).
pub fn existing_run_files(out: &Path) -> Vec<String> {
    RUN_FILES.iter().filter(|n| out.join(n).exists()).map(|n| n.to_string()).collect()
}

/// Removes the run files of `out` (for `--overwrite`); [`sweep_stale_temporaries`] removes
/// the temporaries.
pub fn remove_run(out: &Path) -> Result<()> {
    for name in RUN_FILES {
        let p = out.join(name);
        let gone = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match gone {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(())
}

/// An exclusive advisory lock on a run folder (`flock` on the folder itself, so nothing is
/// added to it), held until dropped or the process ends, however it ends.
pub struct RunLock(#[allow(dead_code)] std::fs::File);

/// Locks the run folder `out` (which must exist) for this process; `None` when another
/// process holds it.
pub fn lock_run_folder(out: &Path) -> Result<Option<RunLock>> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(out).map_err(|e| Error::io(out, e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(RunLock(dir)));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(Error::io(out, e))
    }
}

/// Whether another process with this id is still running (ours counts as not running: a
/// temporary with our id found before we wrote anything was left by an earlier process that
/// had the same id, which containers make common).
fn other_process_alive(pid: u32) -> bool {
    pid != std::process::id() && !bf_atomic::process_ended(pid)
}

/// Removes `.NAME.tmp-PID` files and folders in `dir` (and in its checkpoint folders) whose
/// process is gone: what a kill or a full disk left behind. Returns what was removed.
/// Call it before this process writes any temporary.
pub fn sweep_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(["last", "best"].iter().map(|n| dir.join(n)).filter(|d| d.is_dir()));
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = bf_atomic::temporary_pid(&name) else { continue };
            if other_process_alive(pid) {
                continue;
            }
            let p = entry.path();
            let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            match gone {
                Ok(()) => removed.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
    }
    Ok(removed)
}

/// A batch as model inputs on `device`: ([B, T, Ce], [B, T, Cm]), int64 ids or float values.
pub fn batch_tensors(batch: &Batch, n_eeg: i64, n_meg: i64, device: Device) -> (Tensor, Tensor) {
    let (b, t) = (batch.size as i64, batch.time as i64);
    match &batch.data {
        BatchData::Tokens { eeg, meg } => (
            Tensor::from_slice(eeg).view([b, t, n_eeg]).to_device(device),
            Tensor::from_slice(meg).view([b, t, n_meg]).to_device(device),
        ),
        BatchData::Continuous { eeg, meg } => (
            Tensor::from_slice(eeg).view([b, t, n_eeg]).to_device(device),
            Tensor::from_slice(meg).view([b, t, n_meg]).to_device(device),
        ),
    }
}

/// Loss of one batch (token: cross-entropy; regression: MSE).
pub fn batch_loss(model: &Model, eeg: &Tensor, meg: &Tensor, train: bool) -> Tensor {
    batch_loss_hiding_history(model, eeg, meg, None, train)
}

/// [`batch_loss`] with the MEG history of the examples flagged in `hide` [B] hidden from
/// the token model's decoder (see `EncoderDecoderCrossFormer::forward_hiding_history`).
/// The regression model reads no MEG history, so `hide` does not apply to it.
pub fn batch_loss_hiding_history(model: &Model, eeg: &Tensor, meg: &Tensor, hide: Option<&Tensor>, train: bool) -> Tensor {
    match model {
        Model::Token(m) => m.loss_hiding_history(eeg, meg, hide, train),
        Model::Regression(m) => {
            let pred = m.forward(&eeg.to_kind(Kind::Float), train);
            m.loss(&pred, &meg.to_kind(Kind::Float))
        }
    }
}

/// Mean loss over batches, weighted by batch size, without gradients.
pub fn mean_loss(model: &Model, batches: impl Iterator<Item = Result<Batch>>, device: Device) -> Result<Option<f64>> {
    let (total, n) = loss_sum(model, batches, device)?;
    Ok((n > 0).then(|| total / n as f64))
}

/// Σ (batch loss × batch size) and Σ batch size over batches, without gradients: what each
/// process of a data-parallel validation adds up before the sums are all-reduced. Empty
/// batches (a process's share of a last, short batch) are skipped.
pub fn loss_sum(model: &Model, batches: impl Iterator<Item = Result<Batch>>, device: Device) -> Result<(f64, usize)> {
    let cfg = model.config();
    let (mut total, mut n) = (0.0, 0usize);
    tch::no_grad(|| -> Result<()> {
        for batch in batches {
            let batch = batch?;
            if batch.size == 0 {
                continue;
            }
            let (eeg, meg) = batch_tensors(&batch, cfg.source_sequence_dimension, cfg.target_sequence_dimension, device);
            let loss = f64::try_from(batch_loss(model, &eeg, &meg, false)).map_err(Error::Torch)?;
            total += loss * batch.size as f64;
            n += batch.size;
        }
        Ok(())
    })?;
    Ok((total, n))
}

/// Which examples of a global batch of `global` get their MEG history hidden, each with
/// probability `p`: the entries `mine` (this process's share of the batch) as [mine.len()]
/// bool on `device`, or `None` when `p` is 0. Drawn for the whole global batch from (seed,
/// step, micro) alone, so a resumed run hides the same examples as one that never stopped,
/// and the processes of a data-parallel run together hide those one process would.
pub fn history_mask(p: f64, global: usize, mine: std::ops::Range<usize>, seed: u64, step: i64, micro: i64, device: Device) -> Option<Tensor> {
    if p <= 0.0 {
        return None;
    }
    let mut r = crate::data::SplitMix64::new(!(dropout_seed(seed, step, micro) as u64));
    let hide: Vec<bool> = (0..global).map(|_| ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p).collect();
    Some(Tensor::from_slice(&hide[mine]).to_device(device))
}

/// The seed for dropout before micro-step `micro` of step `step`.
pub fn dropout_seed(seed: u64, step: i64, micro: i64) -> i64 {
    let mut r = crate::data::SplitMix64::new(seed ^ (step as u64).wrapping_mul(0x1000_0000_01B3) ^ (micro as u64).rotate_left(32));
    (r.next_u64() >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_dead_processes_are_swept_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("bf-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("best")).unwrap();
        // pid_max is at most 2^22, so this id never runs; the parent process (pid 1 in a
        // container, or the test harness) does.
        let dead = dir.join(".last.tmp-99999999");
        let live = dir.join(format!(".best.tmp-{}", unsafe { libc::getppid() }));
        let ours = dir.join(format!(".metrics.jsonl.tmp-{}", std::process::id()));
        let inside = dir.join("best").join(".metrics.json.tmp-99999999");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(&ours, b"x").unwrap();
        std::fs::write(&inside, b"x").unwrap();
        let mut removed = sweep_stale_temporaries(&dir).unwrap();
        removed.sort();
        let mut expected = vec![dead.clone(), ours.clone(), inside.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(live.exists() && !dead.exists() && !ours.exists() && !inside.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn history_mask_is_none_at_zero_and_repeatable_otherwise() {
        assert!(history_mask(0.0, 8, 0..8, 1, 3, 0, Device::Cpu).is_none());
        let draw = |step| Vec::<bool>::try_from(history_mask(0.5, 4000, 0..4000, 1, step, 0, Device::Cpu).unwrap()).unwrap();
        let (a, b, c) = (draw(3), draw(3), draw(4));
        assert_eq!(a, b, "the same (seed, step, micro) hides the same examples");
        assert_ne!(a, c, "another step draws anew");
        // 4000 Bernoulli(0.5) draws: the share is within 5 standard deviations (0.04) of 0.5.
        let share = a.iter().filter(|&&h| h).count() as f64 / a.len() as f64;
        assert!((share - 0.5).abs() < 0.04, "{share}");
        // A process's share of the batch is its slice of the whole batch's mask.
        let part = Vec::<bool>::try_from(history_mask(0.5, 4000, 1000..3000, 1, 3, 0, Device::Cpu).unwrap()).unwrap();
        assert_eq!(part, a[1000..3000]);
    }
}
