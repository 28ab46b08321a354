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
    /// The command-line arguments of the run (JSON), so `--resume` can refuse other ones.
    pub args: serde_json::Value,
}

/// The trainable variables of a store, sorted by name (the optimizer's stable order).
pub fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    named_variables(vs).into_iter().filter(|(_, t)| t.requires_grad()).collect()
}

/// Writes a training checkpoint folder atomically (see the module docs).
pub fn save_training_checkpoint(dir: &Path, vs: &VarStore, cfg: &ModelConfig, opt: &AdamW, state: &TrainerState) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let old = parent.join(format!("{name}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    save_checkpoint(&tmp, vs, cfg)?;
    save_tensors(&tmp.join(OPTIMIZER_FILE), &opt.state_tensors())?;
    let json = serde_json::to_string_pretty(state).expect("trainer state serializes");
    write_atomic(&tmp.join(STATE_FILE), json.as_bytes())?;
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

/// Reads the trainer state and restores weights and optimizer moments.
pub fn load_training_checkpoint(dir: &Path, vs: &mut VarStore, opt: &mut AdamW) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| Error::Format(state_path.clone(), e.to_string()))?;
    crate::checkpoint::load_weights(vs, &dir.join(crate::WEIGHTS_FILE))?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    opt.load_state(load_tensors(&opt_path)?, state.step).map_err(|e| Error::Format(opt_path, e))?;
    Ok(state)
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
        Model::Token(m) => m.forward_hiding_history(eeg, meg, hide, train).loss,
        Model::Regression(m) => {
            let pred = m.forward(&eeg.to_kind(Kind::Float), train);
            m.loss(&pred, &meg.to_kind(Kind::Float))
        }
    }
}

/// Mean loss over batches, weighted by batch size, without gradients.
pub fn mean_loss(model: &Model, batches: impl Iterator<Item = Result<Batch>>, device: Device) -> Result<Option<f64>> {
    let cfg = model.config();
    let (mut total, mut n) = (0.0, 0usize);
    tch::no_grad(|| -> Result<()> {
        for batch in batches {
            let batch = batch?;
            let (eeg, meg) = batch_tensors(&batch, cfg.source_sequence_dimension, cfg.target_sequence_dimension, device);
            let loss = f64::try_from(batch_loss(model, &eeg, &meg, false)).map_err(Error::Torch)?;
            total += loss * batch.size as f64;
            n += batch.size;
        }
        Ok(())
    })?;
    Ok((n > 0).then(|| total / n as f64))
}

/// Which examples of a batch of `batch` get their MEG history hidden, each with probability
/// `p`: [batch] bool on `device`, or `None` when `p` is 0. Drawn from (seed, step, micro)
/// alone, so a resumed run hides the same examples as one that never stopped.
pub fn history_mask(p: f64, batch: usize, seed: u64, step: i64, micro: i64, device: Device) -> Option<Tensor> {
    if p <= 0.0 {
        return None;
    }
    let mut r = crate::data::SplitMix64::new(!(dropout_seed(seed, step, micro) as u64));
    let hide: Vec<bool> = (0..batch).map(|_| ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p).collect();
    Some(Tensor::from_slice(&hide).to_device(device))
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
    fn history_mask_is_none_at_zero_and_repeatable_otherwise() {
        assert!(history_mask(0.0, 8, 1, 3, 0, Device::Cpu).is_none());
        let draw = |step| Vec::<bool>::try_from(history_mask(0.5, 4000, 1, step, 0, Device::Cpu).unwrap()).unwrap();
        let (a, b, c) = (draw(3), draw(3), draw(4));
        assert_eq!(a, b, "the same (seed, step, micro) hides the same examples");
        assert_ne!(a, c, "another step draws anew");
        // 4000 Bernoulli(0.5) draws: the share is within 5 standard deviations (0.04) of 0.5.
        let share = a.iter().filter(|&&h| h).count() as f64 / a.len() as f64;
        assert!((share - 0.5).abs() < 0.04, "{share}");
    }
}
