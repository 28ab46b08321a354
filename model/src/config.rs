//! The model's configuration, stored as `config.json` beside the weights.
//!
//! The keys are the seed's `Seq2SeqCrossConfig` (`../shared/seed/token/model/hf_configs.py`)
//! so a PyTorch user rebuilds the same module from the file, plus ours: `channel_attention`
//! (`full` as the seed runs it, `router` as the Crossformer paper describes it), `objective`
//! (`token` or `regression`), `patch_size` (regression only) and the tokenizer that turns
//! predictions back into physical units.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the channel stage of a Two-Stage Attention layer mixes channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAttention {
    /// Self-attention across all channels at each time step (what the seed's code runs).
    Full,
    /// `router_dim` learned routers per time step gather from and scatter to the channels
    /// (Zhang & Yan, ICLR 2023): O(C·router_dim) instead of O(C²).
    Router,
}

impl ChannelAttention {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "router" => Some(Self::Router),
            _ => None,
        }
    }
}

/// How the token decoder takes in the EEG encoding at each time step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderEeg {
    /// The seed's: cross-attention from MEG to EEG channels, whose output *replaces* the
    /// decoder state. The logits are then a function of a convex mix of EEG-encoder vectors.
    Seed,
    /// Ours, not the seed's: the state keeps a residual (`s + cross(s)`), and a learned
    /// linear map over channels (`Linear(Ce → Cm)`, no bias, names
    /// `decoder_eeg_mix.{layer}.weight`) adds, for each MEG channel, a signed mix of the EEG
    /// channels' encodings at the step being predicted, as MEG and EEG are linear mixtures
    /// of the same sources at the same instant (the regression model has such a map too).
    /// In the regression model, `mixed` adds the projected EEG encoding (`proj(memory)`, a
    /// map Ce → Cm the seed's regression decoder already has) to each decoder layer's state
    /// around its cross-attention, so each output patch sees the EEG of its own time patch;
    /// no weights are added there.
    Mixed,
}

impl DecoderEeg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "seed" => Some(Self::Seed),
            "mixed" => Some(Self::Mixed),
            _ => None,
        }
    }
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// µ-law tokens, cross-entropy (the seed's `token/` model).
    Token,
    /// Scaled continuous values, MSE (the seed's later `continuous/` model).
    Regression,
}

impl Objective {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(Self::Token),
            "regression" => Some(Self::Regression),
            _ => None,
        }
    }
}

/// `config.json`. Field names are the seed's; defaults are `Seq2SeqCrossConfig`'s except
/// `channel_attention`, whose default is the paper's router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// EEG channels (encoder side).
    pub source_sequence_dimension: i64,
    /// MEG channels (decoder side).
    pub target_sequence_dimension: i64,
    pub router_dim: i64,
    pub vocab_size_src: i64,
    pub vocab_size_tgt: i64,
    pub d_model: i64,
    pub n_heads: i64,
    pub n_layers: i64,
    pub d_ff: i64,
    pub dropout: f64,
    pub pad_token_id: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    /// Time steps per training sequence (windows are cut into chunks of this length).
    pub sequence_length: i64,
    pub channel_attention: ChannelAttention,
    /// How the decoder reads the EEG, token and regression models (`seed` unless set; configs
    /// written before this key existed read as `seed`).
    pub decoder_eeg: DecoderEeg,
    pub objective: Objective,
    /// Regression only: time steps merged into one patch.
    pub patch_size: i64,
    /// Regression only, ours (0 = none, the seed's model): a direct lagged-linear path from
    /// the EEG to the MEG, `Conv1d(Ce → Cm, kernel eeg_skip, padding eeg_skip / 2)` over time
    /// (names `eeg_skip.weight` [Cm, Ce, K], `eeg_skip.bias` [Cm]), zero at initialisation and
    /// added before the final tanh, so the Crossformer learns what a lagged linear map of the
    /// EEG leaves (a lagged ridge's map, by gradient descent). Odd.
    pub eeg_skip: i64,
    /// Regression only, ours (0 = the seed's plain MSE): weight of a spectral term added to the
    /// loss, the mean squared difference of the amplitude spectra over time
    /// (`|rfft(·, dim=time, norm="ortho")|`) of prediction and target, which rewards getting
    /// each frequency's power right whatever its phase.
    pub spectral_loss: f64,
    /// Shard token level `l` is model id `l + token_offset` (0 pad, 1 bos, 2 eos).
    pub token_offset: i64,
    /// The tokenizer of the shards the model was trained on (JSON), to undo it.
    pub tokenizer: Option<serde_json::Value>,
    /// Channel names, EEG then MEG, as in the shards.
    pub eeg_channels: Vec<String>,
    pub meg_channels: Vec<String>,
    pub sfreq: Option<f64>,
    /// Regression only: per-channel divisors (EEG then MEG) that bring the shards' physical
    /// values into tanh's range (values are clamped to ±1 after dividing).
    pub value_scale: Option<Vec<f32>>,
    /// Informative: `model_type` as the seed's HF config writes it.
    pub model_type: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            source_sequence_dimension: 70,
            target_sequence_dimension: 306,
            router_dim: 10,
            vocab_size_src: 258,
            vocab_size_tgt: 258,
            d_model: 64,
            n_heads: 4,
            n_layers: 1,
            d_ff: 512,
            dropout: 0.1,
            pad_token_id: 0,
            bos_token_id: 1,
            eos_token_id: 2,
            sequence_length: 64,
            channel_attention: ChannelAttention::Router,
            decoder_eeg: DecoderEeg::Seed,
            objective: Objective::Token,
            patch_size: 4,
            eeg_skip: 0,
            spectral_loss: 0.0,
            token_offset: 3,
            tokenizer: None,
            eeg_channels: Vec::new(),
            meg_channels: Vec::new(),
            sfreq: None,
            value_scale: None,
            model_type: "custom_code".into(),
        }
    }
}

impl ModelConfig {
    /// Checks what the layers need: heads dividing the embedding sizes, a non-empty model.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let positive = [
            ("source_sequence_dimension", self.source_sequence_dimension),
            ("target_sequence_dimension", self.target_sequence_dimension),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_layers", self.n_layers),
            ("d_ff", self.d_ff),
            ("sequence_length", self.sequence_length),
            ("vocab_size_src", self.vocab_size_src),
            ("vocab_size_tgt", self.vocab_size_tgt),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return bad(format!("{name} must be positive, got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        match self.objective {
            Objective::Token => {
                if self.spectral_loss != 0.0 {
                    return bad(format!("spectral_loss is a regression-model option (got {} with the token objective)", self.spectral_loss));
                }
                if self.eeg_skip != 0 {
                    return bad(format!("eeg_skip is a regression-model option (got {} with the token objective)", self.eeg_skip));
                }
                if self.d_model % 2 != 0 {
                    return bad(format!("d_model must be even (sinusoidal positions), got {}", self.d_model));
                }
                if self.d_model % self.n_heads != 0 {
                    return bad(format!("d_model {} is not divisible by n_heads {}", self.d_model, self.n_heads));
                }
                if self.channel_attention == ChannelAttention::Router && self.router_dim <= 0 {
                    return bad(format!("router_dim must be positive, got {}", self.router_dim));
                }
            }
            Objective::Regression => {
                if !(self.spectral_loss >= 0.0 && self.spectral_loss.is_finite()) {
                    return bad(format!("spectral_loss must be a finite weight ≥ 0, got {}", self.spectral_loss));
                }
                if self.eeg_skip < 0 || (self.eeg_skip > 0 && self.eeg_skip % 2 == 0) {
                    return bad(format!("eeg_skip must be 0 (none) or an odd kernel length, got {}", self.eeg_skip));
                }
                if self.patch_size <= 0 || self.sequence_length % self.patch_size != 0 {
                    return bad(format!(
                        "sequence_length {} must be a multiple of patch_size {}",
                        self.sequence_length, self.patch_size
                    ));
                }
                let coarse = self.sequence_length / self.patch_size;
                for (what, e) in [
                    ("EEG channels", self.source_sequence_dimension),
                    ("MEG channels", self.target_sequence_dimension),
                    ("sequence_length / patch_size", coarse),
                ] {
                    if e % self.n_heads != 0 {
                        return bad(format!(
                            "the regression model attends with embedding size = {what} ({e}), \
                             which n_heads {} must divide",
                            self.n_heads
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: ModelConfig =
            serde_json::from_str(&text).map_err(|e| Error::Format(path.to_path_buf(), format!("config.json: {e}")))?;
        cfg.validate().map_err(|e| Error::Format(path.to_path_buf(), e.to_string()))?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the config serializes")
    }
}
