//! Brainformer's model library on tch (libtorch). This crate holds everything that needs
//! libtorch, so that the pipeline builds and tests without it.
//!
//! Map: [`config`] (config.json) → [`layers`] (Linear, LayerNorm, multi-head attention with
//! the seed's parameter names) → [`tsa`] (Two-Stage Attention, full or router channel stage)
//! → [`crossformer`] (the seed's token encoder–decoder, teacher forcing, cached decoding) and
//! [`regression`] (the seed's later continuous model) → [`checkpoint`] (safetensors with the
//! seed's names) → [`optim`] (AdamW, schedule, clipping) and [`data`] (streaming shard loader);
//! [`tensorboard`] writes the training log as TensorBoard event files.

pub mod checkpoint;
pub mod chunked_ce;
pub mod config;
pub mod crossformer;
pub mod data;
pub mod device;
pub mod distributed;
pub mod fused_attention;
mod glue;
pub mod layers;
pub mod optim;
pub mod precision;
pub mod probe;
pub mod train;
pub mod regression;
pub mod resume;
pub mod tensorboard;
pub mod tsa;

use std::path::{Path, PathBuf};

pub use config::{ChannelAttention, DecoderEeg, ModelConfig, Objective};

/// Errors of the model library; each names the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Format(PathBuf, String),
    #[error("model configuration: {0}")]
    Config(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Pipeline(#[from] bf_pipeline::Error),
    #[error("{0}")]
    Data(String),
}

impl Error {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        Error::Io(path.to_path_buf(), e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Either of the two models, built from a [`ModelConfig`].
#[derive(Debug)]
pub enum Model {
    Token(crossformer::CrossFormer),
    Regression(regression::RegressionCrossFormer),
}

impl Model {
    /// Builds the model's variables under the store's root (names are the seed's).
    pub fn new(vs: &tch::nn::VarStore, cfg: &ModelConfig) -> Result<Model> {
        cfg.validate()?;
        let root = vs.root();
        Ok(match cfg.objective {
            Objective::Token => Model::Token(crossformer::CrossFormer::new(&root, cfg)),
            Objective::Regression => Model::Regression(regression::RegressionCrossFormer::new(&root, cfg)),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Model::Token(m) => m.config(),
            Model::Regression(m) => m.config(),
        }
    }
}

/// File names inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Loads `DIR/config.json` and `DIR/model.safetensors` onto `device`.
pub fn load_checkpoint(dir: &Path, device: tch::Device) -> Result<(tch::nn::VarStore, Model)> {
    let cfg = ModelConfig::load(&dir.join(CONFIG_FILE))?;
    let mut vs = tch::nn::VarStore::new(device);
    let model = Model::new(&vs, &cfg)?;
    checkpoint::load_weights(&mut vs, &dir.join(WEIGHTS_FILE))?;
    Ok((vs, model))
}

/// Writes `DIR/config.json` and `DIR/model.safetensors` (each atomically).
pub fn save_checkpoint(dir: &Path, vs: &tch::nn::VarStore, cfg: &ModelConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    checkpoint::save_weights(vs, &dir.join(WEIGHTS_FILE))?;
    checkpoint::write_atomic(&dir.join(CONFIG_FILE), cfg.to_json().as_bytes())
}
