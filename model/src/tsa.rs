//! The token model's Two-Stage Attention layer (`TwoStageAttentionLayer` of the seed's
//! `token/model/architectures/twostage_attention.py`), on `[batch, time, channels, d_model]`.
//!
//! Time stage: per channel, self-attention across time, then an MLP. Channel stage: per time
//! step, mixing across channels, then an MLP. Both follow the seed's Pre-LN arrangement, in
//! which the residual branch starts from the *normalized* input (`x = norm(x); x = x + f(x)`).
//!
//! The channel stage is either full self-attention across channels (`full`, what the seed's
//! code runs) or the router of the Crossformer paper (Zhang & Yan, ICLR 2023, section 3.3),
//! whose lines the seed leaves commented out: `router_dim` learned vectors per time step
//! first gather from all channels (`time_to_router_attention`, routers as queries), then each
//! channel reads back from the routers (`router_to_dimension_attention`), which costs
//! O(C·router_dim) instead of O(C²). The router tensor is `[sequence_length + 1, router_dim,
//! d_model]` as the seed declares it (one set per position, BOS included).

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::config::ChannelAttention;
use crate::layers::{KvCache, LayerNorm, Mask, Mlp, MultiheadAttention};

/// How the channel stage mixes channels (parameter names are the seed's).
#[derive(Debug)]
enum ChannelStage {
    Full { dimension_attention: MultiheadAttention },
    Router { router: Tensor, time_to_router: MultiheadAttention, router_to_dimension: MultiheadAttention },
}

/// One Two-Stage Attention layer.
#[derive(Debug)]
pub struct TwoStageAttention {
    time_attention: MultiheadAttention,
    channel: ChannelStage,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    norm4: LayerNorm,
    mlp1: Mlp,
    mlp2: Mlp,
    dropout: f64,
}

/// Masks of the time stage: causal (decoder) and/or additive key padding [B·C, 1, 1, T].
pub struct TimeMasks<'a> {
    pub causal: bool,
    pub key_padding: Option<&'a Tensor>,
}

impl TwoStageAttention {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &Path,
        ts_length: i64,
        router_dim: i64,
        d_model: i64,
        heads: i64,
        d_ff: i64,
        dropout: f64,
        mode: ChannelAttention,
    ) -> TwoStageAttention {
        let time_attention = MultiheadAttention::new(&(p / "time_attention"), d_model, heads, false, dropout);
        let channel = match mode {
            ChannelAttention::Full => ChannelStage::Full {
                dimension_attention: MultiheadAttention::new(&(p / "dimension_attention"), d_model, heads, false, dropout),
            },
            ChannelAttention::Router => ChannelStage::Router {
                router: p.var("router", &[ts_length + 1, router_dim, d_model], Init::Randn { mean: 0.0, stdev: 1.0 }),
                time_to_router: MultiheadAttention::new(&(p / "time_to_router_attention"), d_model, heads, false, dropout),
                router_to_dimension: MultiheadAttention::new(&(p / "router_to_dimension_attention"), d_model, heads, false, dropout),
            },
        };
        TwoStageAttention {
            time_attention,
            channel,
            norm1: LayerNorm::new(&(p / "norm1"), d_model),
            norm2: LayerNorm::new(&(p / "norm2"), d_model),
            norm3: LayerNorm::new(&(p / "norm3"), d_model),
            norm4: LayerNorm::new(&(p / "norm4"), d_model),
            mlp1: Mlp::new(&(p / "MLP1"), d_model, d_ff),
            mlp2: Mlp::new(&(p / "MLP2"), d_model, d_ff),
            dropout,
        }
    }

    fn drop(&self, x: Tensor, train: bool) -> Tensor {
        if train && self.dropout > 0.0 {
            crate::fused_attention::dropout_any(&x, self.dropout)
        } else {
            x
        }
    }

    /// `x` [B, T, C, D] → [B, T, C, D].
    pub fn forward(&self, x: &Tensor, masks: &TimeMasks, train: bool) -> Tensor {
        let (b, t, c, d) = x.size4().expect("TSA input is [batch, time, channels, d_model]");
        // (b t c d) -> ((b c) t d)
        let time_in = x.permute([0, 2, 1, 3]).reshape([b * c, t, d]);
        let mask = match (masks.causal, masks.key_padding) {
            (false, None) => None,
            (true, None) => Some(Mask::Causal),
            (_, Some(_)) => None,
        };
        let combined;
        let mask = match mask {
            Some(m) => m,
            None => match masks.key_padding {
                None => Mask::None,
                Some(kp) => {
                    combined = if masks.causal { kp + crate::layers::causal_additive(t, x.device()) } else { kp.shallow_clone() };
                    Mask::Additive(&combined)
                }
            },
        };
        let time_out = self.time_stage(&time_in, |h| self.time_attention.self_attention(h, mask, train), train);
        // ((b c) t d) -> ((b t) c d)
        let dim_in = time_out.view([b, c, t, d]).permute([0, 2, 1, 3]).reshape([b * t, c, d]);
        let out = self.channel_stage(&dim_in, b, 0, t, train);
        out.view([b, t, c, d])
    }

    /// Norm, attention (given), residual from the normed input, norm, MLP, residual.
    fn time_stage(&self, x: &Tensor, attend: impl FnOnce(&Tensor) -> Tensor, train: bool) -> Tensor {
        let h = self.norm1.forward(x);
        let h = &h + self.drop(attend(&h), train);
        let h = self.norm2.forward(&h);
        &h + self.drop(self.mlp1.forward(&h), train)
    }

    /// `x` [(B·T), C, D] holding time steps `t0..t0+t` of each batch item.
    fn channel_stage(&self, x: &Tensor, b: i64, t0: i64, t: i64, train: bool) -> Tensor {
        let h = self.norm3.forward(x);
        let mixed = match &self.channel {
            ChannelStage::Full { dimension_attention } => dimension_attention.self_attention(&h, Mask::None, train),
            ChannelStage::Router { router, time_to_router, router_to_dimension } => {
                // (ts_length r d) -> ((b ts_length) r d): batch-major like `h`.
                let routers = router.narrow(0, t0, t).repeat([b, 1, 1]);
                let buffer = time_to_router.forward(&routers, &h, &h, Mask::None, train);
                router_to_dimension.forward(&h, &buffer, &buffer, Mask::None, train)
            }
        };
        let h = &h + self.drop(mixed, train);
        let h = self.norm4.forward(&h);
        &h + self.drop(self.mlp2.forward(&h), train)
    }

    /// One decoding step: `x` [B, 1, C, D] at time `t`, causal time attention over `cache`
    /// (one entry per layer, keys/values of steps 0..t). Evaluation mode (no dropout).
    pub fn forward_step(&self, x: &Tensor, t: i64, cache: &mut KvCache) -> Tensor {
        let (b, one, c, d) = x.size4().expect("TSA step input is [batch, 1, channels, d_model]");
        debug_assert_eq!(one, 1);
        let time_in = x.reshape([b * c, 1, d]);
        let time_out = self.time_stage(&time_in, |h| self.time_attention.self_attention_step(h, cache), false);
        let out = self.channel_stage(&time_out.view([b, c, d]), b, t, 1, false);
        out.view([b, 1, c, d])
    }

    /// Router length (positions it has routers for), `None` for full attention.
    pub fn router_positions(&self) -> Option<i64> {
        match &self.channel {
            ChannelStage::Router { router, .. } => Some(router.size()[0]),
            ChannelStage::Full { .. } => None,
        }
    }
}
