//! The building blocks, with PyTorch's parameter names and default initializations so that a
//! checkpoint maps one to one onto the seed's `state_dict()`.
//!
//! We write them on raw tensors instead of using `tch::nn`'s layers because the names must be
//! PyTorch's exactly (`in_proj_weight`, `out_proj.weight`, …) and because attention needs
//! masks and a key/value cache that `tch::nn` does not offer. Attention runs through libtorch's
//! fused `scaled_dot_product_attention` (flash / memory-efficient kernels on CUDA, flash on
//! CPU without gradients) or, for CPU training, through our [`crate::fused_attention`].

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// `nn.Linear`: `weight` [out, in], optional `bias` [out]; PyTorch's init U(±1/√in).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &Path, in_dim: i64, out_dim: i64, bias: bool) -> Linear {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = p.var("weight", &[out_dim, in_dim], Init::Uniform { lo: -bound, up: bound });
        let bias = bias.then(|| p.var("bias", &[out_dim], Init::Uniform { lo: -bound, up: bound }));
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `nn.LayerNorm(d)` with eps 1e-5: `weight` ones, `bias` zeros.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: &Path, dim: i64) -> LayerNorm {
        LayerNorm { weight: p.var("weight", &[dim], Init::Const(1.0)), bias: p.var("bias", &[dim], Init::Const(0.0)), dim }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), 1e-5, true)
    }
}

/// `nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))`: names `0.*` and `2.*`.
#[derive(Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    pub fn new(p: &Path, dim: i64, hidden: i64) -> Mlp {
        Mlp { fc1: Linear::new(&(p / "0"), dim, hidden, true), fc2: Linear::new(&(p / "2"), hidden, dim, true) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).gelu("none"))
    }
}

/// An additive attention mask or libtorch's built-in causal one.
pub enum Mask<'a> {
    None,
    /// Query i sees keys 0..=i (queries and keys of the same length).
    Causal,
    /// Added to the attention scores; broadcastable to [batch, heads, queries, keys].
    Additive(&'a Tensor),
}

/// Keys and values of past time steps, for decoding one step at a time.
#[derive(Debug, Default)]
pub struct KvCache {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
}

/// `nn.MultiheadAttention(embed_dim, num_heads, batch_first=True, bias=…)`: `in_proj_weight`
/// [3E, E], `in_proj_bias` [3E], `out_proj.weight` [E, E], `out_proj.bias` [E]; the biases
/// exist only with `bias=True`. Dropout acts on the attention weights, in training only.
#[derive(Debug)]
pub struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Option<Tensor>,
    out_proj: Linear,
    heads: i64,
    dropout: f64,
}

impl MultiheadAttention {
    pub fn new(p: &Path, embed_dim: i64, heads: i64, bias: bool, dropout: f64) -> MultiheadAttention {
        // PyTorch: xavier_uniform_ on in_proj_weight, zero biases, out_proj as a Linear.
        let bound = (6.0 / (embed_dim + 3 * embed_dim) as f64).sqrt();
        let in_proj_weight = p.var("in_proj_weight", &[3 * embed_dim, embed_dim], Init::Uniform { lo: -bound, up: bound });
        let in_proj_bias = bias.then(|| p.var("in_proj_bias", &[3 * embed_dim], Init::Const(0.0)));
        let out_proj = Linear::new(&(p / "out_proj"), embed_dim, embed_dim, false);
        let out_proj = Linear { bias: bias.then(|| (p / "out_proj").var("bias", &[embed_dim], Init::Const(0.0))), ..out_proj };
        MultiheadAttention { in_proj_weight, in_proj_bias, out_proj, heads, dropout }
    }

    fn project(&self, x: &Tensor, which: i64) -> Tensor {
        let e = self.in_proj_weight.size()[1];
        let w = self.in_proj_weight.narrow(0, which * e, e);
        let b = self.in_proj_bias.as_ref().map(|b| b.narrow(0, which * e, e));
        x.linear(&w, b.as_ref())
    }

    /// [N, L, E] → [N, H, L, E/H].
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (n, l, e) = x.size3().expect("attention inputs are [batch, length, embed]");
        x.view([n, l, self.heads, e / self.heads]).transpose(1, 2)
    }

    /// Self-attention of `x` [N, L, E] (one fused input projection).
    pub fn self_attention(&self, x: &Tensor, mask: Mask, train: bool) -> Tensor {
        let qkv = x.linear(&self.in_proj_weight, self.in_proj_bias.as_ref());
        let parts = qkv.chunk(3, -1);
        self.attend(x.size()[1], &parts[0], &parts[1], &parts[2], mask, train)
    }

    /// Self-attention of one new step `x` [N, 1, E] over the cached past steps plus itself.
    pub fn self_attention_step(&self, x: &Tensor, cache: &mut KvCache) -> Tensor {
        let qkv = x.linear(&self.in_proj_weight, self.in_proj_bias.as_ref());
        let parts = qkv.chunk(3, -1);
        let k = match cache.k.take() {
            Some(past) => Tensor::cat(&[past, parts[1].shallow_clone()], 1),
            None => parts[1].shallow_clone(),
        };
        let v = match cache.v.take() {
            Some(past) => Tensor::cat(&[past, parts[2].shallow_clone()], 1),
            None => parts[2].shallow_clone(),
        };
        let out = self.attend(1, &parts[0], &k, &v, Mask::None, false);
        cache.k = Some(k);
        cache.v = Some(v);
        out
    }

    /// Attention of `query` [N, L, E] over `key`/`value` [N, S, E].
    pub fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor, mask: Mask, train: bool) -> Tensor {
        let (q, k, v) = (self.project(query, 0), self.project(key, 1), self.project(value, 2));
        self.attend(query.size()[1], &q, &k, &v, mask, train)
    }

    /// Projected q [N, L, E], k and v [N, S, E] → output projection of the attention.
    ///
    /// On the CPU, whenever gradients flow (training, or a gradient check), our fused kernel
    /// runs instead of libtorch's: libtorch's CPU flash kernel refuses dropout and its
    /// fallback materializes every weight tensor (see [`crate::fused_attention`]). Without
    /// gradients (evaluation, decoding) libtorch's flash kernel serves.
    fn attend(&self, l: i64, q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, train: bool) -> Tensor {
        let p = if train { self.dropout } else { 0.0 };
        if crate::fused_attention::supports_device(q) && (train || q.requires_grad()) {
            let (additive, causal) = match mask {
                Mask::None => (None, false),
                Mask::Causal => (None, true),
                Mask::Additive(m) => (Some(m), false),
            };
            // Under bf16 autocast the projections arrive in bfloat16; the kernel computes in
            // float32 (as autocast does for softmax), and the output projection casts back.
            let f32 = |t: &Tensor| t.to_kind(tch::Kind::Float);
            let out = crate::fused_attention::attention(&f32(q), &f32(k), &f32(v), additive, self.heads, causal, p);
            return self.out_proj.forward(&out);
        }
        let (q, k, v) = (self.split_heads(q), self.split_heads(k), self.split_heads(v));
        let out = match mask {
            Mask::None => Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, p, false, None, false),
            Mask::Causal => Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, p, true, None, false),
            Mask::Additive(m) => Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m.to_kind(q.kind())), p, false, None, false),
        };
        let n = out.size()[0];
        let e = self.in_proj_weight.size()[1];
        self.out_proj.forward(&out.transpose(1, 2).reshape([n, l, e]))
    }
}

/// `nn.Embedding(n, d)`: `weight` ~ N(0, 1).
#[derive(Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(p: &Path, n: i64, dim: i64) -> Embedding {
        Embedding { weight: p.var("weight", &[n, dim], Init::Randn { mean: 0.0, stdev: 1.0 }) }
    }

    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, false)
    }
}

/// The seed's sinusoidal table `_create_positional_encoding(n, d)` [n, d], computed with the
/// same float32 tensor operations so that it is bit-identical to PyTorch's. `dim` is even
/// (checked by [`crate::ModelConfig::validate`]).
pub fn sinusoidal_table(n: i64, dim: i64, device: tch::Device) -> Tensor {
    let position = Tensor::arange(n, (Kind::Int64, device)).unsqueeze(1);
    let div_term = (Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device)) * (-(10000f64.ln()) / dim as f64)).exp();
    let angles = position * &div_term;
    let table = Tensor::zeros([n, dim], (Kind::Float, device));
    // `slice` views share storage with `table`, so the copies fill it in place.
    table.slice(1, 0, dim, 2).copy_(&angles.sin());
    table.slice(1, 1, dim, 2).copy_(&angles.cos());
    table
}

/// An additive mask from token ids [rows, S]: −inf where the id is `pad`, 0 elsewhere,
/// shaped [rows, 1, 1, S] for the attention. The seed's `_create_padding_mask` writes +1.0
/// instead of 0 at non-pad keys, a constant shift that softmax ignores.
pub fn key_padding_mask(ids: &Tensor, pad: i64) -> Option<Tensor> {
    let is_pad = ids.eq(pad);
    if !bool::try_from(is_pad.any()).unwrap_or(true) {
        return None;
    }
    let (rows, s) = ids.size2().expect("ids are [rows, length]");
    let zeros = Tensor::zeros([rows, s], (Kind::Float, ids.device()));
    Some(zeros.masked_fill(&is_pad, f64::NEG_INFINITY).view([rows, 1, 1, s]))
}

/// A causal additive mask [L, L] (−inf above the diagonal), for when it must be combined.
pub fn causal_additive(l: i64, device: tch::Device) -> Tensor {
    Tensor::full([l, l], f64::NEG_INFINITY, (Kind::Float, device)).triu(1)
}
