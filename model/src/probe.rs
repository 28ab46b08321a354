//! Runs a checkpoint on given inputs and writes everything a reviewer compares with PyTorch:
//! outputs, loss, every parameter's gradient and (token model) cached greedy decoding.
//! `bf-eval --forward` calls it; the parity tests feed it the seed's weights and inputs.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::checkpoint::{load_tensors, named_variables, save_tensors};
use crate::{Error, Model, Result};

/// Reads `eeg`/`meg` from `inputs` (safetensors; int64 ids [B, T, C] for the token model,
/// float32 [B, L, C] for regression), runs the model in evaluation mode (no dropout),
/// backpropagates the loss and writes `outputs` (`logits` or `pred`), `loss` [1] and
/// `grad.NAME` for each trainable parameter to `out`; with `generate_steps`, also
/// `generated` ids and `generated_logits` from cached greedy decoding.
pub fn forward_file(vs: &VarStore, model: &Model, inputs: &Path, out: &Path, generate_steps: Option<i64>) -> Result<()> {
    let file = load_tensors(inputs)?;
    let get = |name: &str| {
        file.get(name)
            .map(|t| t.to_device(vs.device()))
            .ok_or_else(|| Error::Format(inputs.to_path_buf(), format!("no tensor named `{name}`")))
    };
    let (eeg, meg) = (get("eeg")?, get("meg")?);
    let mut written: Vec<(String, Tensor)> = Vec::new();
    let loss = match model {
        Model::Token(m) => {
            let o = m.forward(&eeg.to_kind(Kind::Int64), &meg.to_kind(Kind::Int64), false);
            written.push(("logits".into(), o.logits.detach()));
            o.loss
        }
        Model::Regression(m) => {
            let pred = m.forward(&eeg.to_kind(Kind::Float), false);
            let loss = m.loss(&pred, &meg.to_kind(Kind::Float));
            written.push(("pred".into(), pred.detach()));
            loss
        }
    };
    loss.backward();
    written.push(("loss".into(), loss.detach().view([1])));
    for (name, var) in named_variables(vs) {
        if var.requires_grad() {
            let g = var.grad();
            if g.defined() {
                written.push((format!("grad.{name}"), g.detach()));
            }
        }
    }
    if let (Some(steps), Model::Token(m)) = (generate_steps, model) {
        let (ids, logits) = m.generate(&eeg.to_kind(Kind::Int64), steps, None, false);
        written.push(("generated".into(), ids));
        written.push(("generated_logits".into(), logits));
    }
    save_tensors(out, &written)
}
