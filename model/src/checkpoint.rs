//! Weights as `model.safetensors` with the seed's `state_dict()` names (sorted, float32 on
//! CPU, `{"format": "pt"}` metadata as PyTorch writers put it), so that
//! `module.load_state_dict(safetensors.torch.load_file(...), strict=True)` works on the seed's
//! module, and loading back into a [`VarStore`] that checks every name and shape.
//!
//! Every file is written to a temporary name and renamed: an interrupted save never leaves a
//! half-written file under the final name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// A CPU copy of one tensor in the layout safetensors wants.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        _ => return None,
    })
}

fn to_host(name: &str, t: &Tensor) -> Result<HostTensor> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let kind = t.kind();
    let dtype = dtype_of(kind).ok_or_else(|| Error::Data(format!("tensor {name}: dtype {kind:?} has no safetensors type")))?;
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut bytes, numel)?;
    Ok(HostTensor { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
}

/// Atomic writes are the pipeline's (temporary sibling, sync, rename).
pub use bf_pipeline::fsutil::temp_path;

/// Writes `bytes` to `path` through a temporary file and a rename (the pipeline's helper).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(bf_pipeline::fsutil::write_atomic(path, bytes)?)
}

/// Writes named tensors (sorted by name) as safetensors, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut host: Vec<(String, HostTensor)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), to_host(n, t)?))).collect::<Result<_>>()?;
    host.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    // The pipeline's helper: a temporary sibling, synced to disk before the rename, removed on
    // error (the rename alone could leave a renamed but unwritten file after a crash).
    bf_pipeline::fsutil::write_atomic_path(path, |tmp| {
        safetensors::tensor::serialize_to_file(host.iter().map(|(n, t)| (n.as_str(), t)), &metadata, tmp).map_err(|e| match e {
            safetensors::SafeTensorError::IoError(io) => Error::io(path, io),
            other => Error::Format(path.to_path_buf(), format!("writing safetensors: {other}")),
        })
    })
}

/// Every variable of the store (trainable or not), sorted by name.
pub fn named_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Saves the store's variables with their (seed) names.
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<()> {
    save_tensors(path, &named_variables(vs))
}

/// Reads a safetensors file into a name → tensor map (on CPU).
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::Format(path.to_path_buf(), "no such file".into()));
    }
    let list = Tensor::read_safetensors(path).map_err(|e| Error::Format(path.to_path_buf(), format!("not a readable safetensors file: {e}")))?;
    Ok(list.into_iter().collect())
}

/// Copies a checkpoint into the store, strictly: every variable must be in the file with its
/// shape, and the file must hold nothing else (as PyTorch's `strict=True`).
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<()> {
    let file = load_tensors(path)?;
    let vars = vs.variables();
    let mut missing: Vec<&String> = vars.keys().filter(|k| !file.contains_key(*k)).collect();
    let mut unexpected: Vec<&String> = file.keys().filter(|k| !vars.contains_key(*k)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        missing.sort();
        unexpected.sort();
        return Err(Error::Format(
            path.to_path_buf(),
            format!("weights do not match the model: missing {missing:?}, unexpected {unexpected:?}"),
        ));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars {
            let src = &file[&name];
            if src.size() != var.size() {
                return Err(Error::Format(
                    path.to_path_buf(),
                    format!("{name}: shape {:?} in the file, {:?} in the model", src.size(), var.size()),
                ));
            }
            let mut var = var;
            var.f_copy_(&src.to_kind(var.kind()).to_device(var.device()))?;
        }
        Ok(())
    })
}
