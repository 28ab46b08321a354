// The token model's output layer and cross-entropy over chunks of positions, as one autograd
// function that never holds the logits of every position (model/src/chunked_ce.rs).
//
// The plain path computes logits [N, V] (N = batch × time × MEG channels: 8 × 257 × 306 ×
// 259 levels × 4 bytes = 650 MB at the seed's configuration, batch 8), then log-softmax keeps
// another [N, V] for the backward pass, and the backward pass makes a third. Here the forward
// pass computes each chunk's logits, its log-sum-exp and the label's logit, and keeps only
// the hidden states, the weights and one log-sum-exp per position; the backward pass
// recomputes each chunk's logits and turns them into that chunk's gradient
// (softmax − one-hot) × grad / n_valid, which it multiplies into dhidden, dweight and dbias
// at once. Peak extra memory: one chunk's [chunk, V] logits.
//
// tch exposes no custom autograd function from Rust, hence C++ (as fused_attention.cpp). All
// arithmetic is ATen's own ops (addmm, logsumexp, exp, mm), so it runs on the CPU and on CUDA,
// under autocast too: the logits are computed as the plain path's linear layer computes them
// (autocast's addmm) and, as there, taken to float32 before the softmax.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdio>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Logits of rows [s, e) in float32: hidden[s:e] · weightᵀ + bias, the product computed in
// `dtype` (autocast's type when the forward pass ran under autocast, as the plain linear layer
// would have; fixed at the forward pass, so the backward pass recomputes the same logits).
at::Tensor chunk_logits(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias, int64_t s, int64_t e,
                        at::ScalarType dtype) {
  at::Tensor h = hidden.narrow(0, s, e - s).to(dtype);
  at::Tensor w = weight.to(dtype);
  at::Tensor z = bias.defined() ? at::addmm(bias.to(dtype), h, w.t()) : at::mm(h, w.t());
  return z.to(at::kFloat);
}

at::ScalarType compute_type(const at::Tensor& hidden) {
  const at::DeviceType device = hidden.device().type();
  return at::autocast::is_autocast_enabled(device) ? at::autocast::get_autocast_dtype(device) : hidden.scalar_type();
}

struct ChunkedLinearCrossEntropy : public torch::autograd::Function<ChunkedLinearCrossEntropy> {
  // hidden [N, D], weight [V, D], bias [V] (or empty with has_bias false), labels [N] int64.
  // Returns the mean cross-entropy over positions whose label is not ignore_index.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& bias, bool has_bias, const at::Tensor& labels,
                            int64_t ignore_index, int64_t chunk) {
    TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
                "hidden [N, D] and weight [V, D] expected, got ", hidden.sizes(), " and ", weight.sizes());
    TORCH_CHECK(labels.dim() == 1 && labels.size(0) == hidden.size(0), "labels [N] expected, got ", labels.sizes());
    TORCH_CHECK(chunk > 0, "chunk must be positive");
    const at::Tensor b = has_bias ? bias : at::Tensor();
    const int64_t n = hidden.size(0);
    const at::ScalarType dtype = compute_type(hidden);
    at::Tensor valid = labels.ne(ignore_index);
    at::Tensor safe = labels.masked_fill(valid.logical_not(), 0);
    at::Tensor lse = at::empty({n}, hidden.options().dtype(at::kFloat));
    at::Tensor total = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t e = std::min(n, s + chunk);
      at::Tensor z = chunk_logits(hidden, weight, b, s, e, dtype);
      at::Tensor l = z.logsumexp(1);
      lse.narrow(0, s, e - s).copy_(l);
      at::Tensor picked = z.gather(1, safe.narrow(0, s, e - s).unsqueeze(1)).squeeze(1);
      total += ((l - picked) * valid.narrow(0, s, e - s)).sum();
    }
    at::Tensor n_valid = valid.sum().to(at::kFloat);
    ctx->save_for_backward({hidden, weight, has_bias ? bias : at::empty({0}, weight.options()), safe, valid, lse, n_valid});
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["dtype"] = static_cast<int64_t>(dtype);
    // As cross_entropy(reduction="mean") with every label ignored: 0/0 = NaN.
    return total / n_valid;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &weight = saved[1], &bias = saved[2], &safe = saved[3], &valid = saved[4],
                     &lse = saved[5], &n_valid = saved[6];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t n = hidden.size(0);
    const at::Tensor b = has_bias ? bias : at::Tensor();
    // d(mean)/d(z_ij) = (softmax_ij − [j = label_i]) · valid_i · grad / n_valid
    at::Tensor scale = grads[0].to(at::kFloat) / n_valid;
    at::Tensor dhidden = at::empty(hidden.sizes(), hidden.options());
    at::Tensor dweight = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    at::Tensor dbias = has_bias ? at::zeros(bias.sizes(), bias.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t e = std::min(n, s + chunk);
      at::Tensor z = chunk_logits(hidden, weight, b, s, e, dtype);
      at::Tensor g = (z - lse.narrow(0, s, e - s).unsqueeze(1)).exp_();
      g.scatter_add_(1, safe.narrow(0, s, e - s).unsqueeze(1), at::full({e - s, 1}, -1.0f, g.options()));
      g.mul_((valid.narrow(0, s, e - s).to(at::kFloat) * scale).unsqueeze(1));
      at::Tensor h = hidden.narrow(0, s, e - s);
      dhidden.narrow(0, s, e - s).copy_(at::mm(g.to(weight.scalar_type()), weight));
      dweight.add_(at::mm(g.t(), h.to(at::kFloat)));
      if (has_bias) dbias.add_(g.sum(0));
    }
    return {dhidden, dweight.to(weight.scalar_type()), has_bias ? dbias.to(bias.scalar_type()) : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Runs ChunkedLinearCrossEntropy::apply; on failure writes the message into `err` and
// returns 1. `out` receives a new at::Tensor* that the caller (tch) owns. `bias` may be null.
int bf_chunked_linear_ce(at::Tensor** out, const at::Tensor* hidden, const at::Tensor* weight, const at::Tensor* bias,
                         const at::Tensor* labels, int64_t ignore_index, int64_t chunk, char* err, size_t err_len) {
  try {
    at::Tensor b = bias ? *bias : at::empty({0}, weight->options());
    at::Tensor result = ChunkedLinearCrossEntropy::apply(*hidden, *weight, b, bias != nullptr, *labels, ignore_index, chunk);
    *out = new at::Tensor(std::move(result));
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

}  // extern "C"
