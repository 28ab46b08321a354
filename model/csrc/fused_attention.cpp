// Autograd glue for the fused CPU attention of `model/src/fused_attention.rs`, and the bfloat16
// autocast switch of `bf-train --precision bf16` (model/src/precision.rs).
//
// tch exposes no way to define a custom autograd function from Rust, so this file does that
// one job in C++: it declares `FusedAttention` (a torch::autograd::Function) whose forward and
// backward call the Rust kernels through function pointers that Rust passes in. It contains
// no arithmetic of its own: shapes are checked, outputs allocated, the dropout seed (drawn by
// the Rust side) kept for the backward pass, and the Rust kernel fills the outputs.
//
// Compiled with -fopenmp: at::parallel_for is inline OpenMP in libtorch's headers.
//
// The kernels receive raw pointers and element strides of [batch, length, embed] tensors
// whose last stride is 1; head h occupies columns h*dh .. (h+1)*dh.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>

extern "C" {

// Mirrors `AttnArgs` in fused_attention.rs field for field (#[repr(C)]).
struct BfAttnArgs {
  int64_t n, heads, l, s, dh;
  const float* q; int64_t q_s0, q_s1;
  const float* k; int64_t k_s0, k_s1;
  const float* v; int64_t v_s0, v_s1;
  const float* mask; int64_t m_s0, m_s1, m_s2, m_s3;
  int32_t causal;
  float scale;
  float dropout;
  uint64_t seed;
  float* out; int64_t o_s0, o_s1;
  float* lse;
  const float* dout; int64_t do_s0, do_s1;
  float* dq; int64_t dq_s0, dq_s1;
  float* dk; int64_t dk_s0, dk_s1;
  float* dv; int64_t dv_s0, dv_s1;
  // Added to the pair index where the dropout mask is keyed: the pairs of the examples that
  // other processes hold in a data-parallel step come first (0 in one process).
  int64_t pair_offset;
};

// Computes (row, head) pairs lo..hi (pair = row * heads + head).
typedef void (*bf_attn_kernel)(const BfAttnArgs*, int64_t lo, int64_t hi);

}  // extern "C"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return t.stride(2) == 1 ? t : t.contiguous();
}

// Spreads the pairs over libtorch's own intra-op threads (OpenMP, the same libgomp that
// libtorch loads), so the kernel neither competes with a second pool nor ignores
// `set_num_threads`. Each pair is computed by one thread, so results do not depend on the
// thread count.
void run_pairs(bf_attn_kernel kernel, const BfAttnArgs& a) {
  at::parallel_for(0, a.n * a.heads, 1, [&](int64_t lo, int64_t hi) { kernel(&a, lo, hi); });
}

BfAttnArgs make_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, int64_t heads, bool causal, double dropout,
                     uint64_t seed, int64_t pair_offset) {
  BfAttnArgs a{};
  a.n = q.size(0);
  a.heads = heads;
  a.l = q.size(1);
  a.s = k.size(1);
  a.dh = q.size(2) / heads;
  a.q = q.data_ptr<float>(); a.q_s0 = q.stride(0); a.q_s1 = q.stride(1);
  a.k = k.data_ptr<float>(); a.k_s0 = k.stride(0); a.k_s1 = k.stride(1);
  a.v = v.data_ptr<float>(); a.v_s0 = v.stride(0); a.v_s1 = v.stride(1);
  if (mask.defined()) {
    a.mask = mask.data_ptr<float>();
    a.m_s0 = mask.stride(0); a.m_s1 = mask.stride(1); a.m_s2 = mask.stride(2); a.m_s3 = mask.stride(3);
  }
  a.causal = causal ? 1 : 0;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.dh)));
  a.dropout = static_cast<float>(dropout);
  a.seed = seed;
  a.pair_offset = pair_offset;
  return a;
}

struct FusedAttention : public torch::autograd::Function<FusedAttention> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor q, at::Tensor k, at::Tensor v,
                            at::Tensor mask, bool has_mask, int64_t heads, bool causal, double dropout,
                            int64_t seed_bits, int64_t pair_offset, int64_t fwd_fn, int64_t bwd_fn) {
    TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "fused attention: q, k, v must be [batch, length, embed]");
    TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
                "fused attention: float32 only");
    TORCH_CHECK(q.device().is_cpu(), "fused attention: CPU tensors only");
    TORCH_CHECK(heads > 0 && q.size(2) % heads == 0, "fused attention: heads must divide the embedding");
    TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == v.size(1) &&
                    k.size(2) == q.size(2) && v.size(2) == q.size(2),
                "fused attention: q, k, v shapes disagree");
    q = last_dim_contiguous(q);
    k = last_dim_contiguous(k);
    v = last_dim_contiguous(v);
    const int64_t n = q.size(0), l = q.size(1), s = k.size(1), e = q.size(2);
    at::Tensor m;
    if (has_mask) {
      TORCH_CHECK(mask.dim() <= 4, "fused attention: the mask must broadcast to [batch, heads, queries, keys]");
      m = mask.to(at::kFloat).expand({n, heads, l, s});
    }
    const uint64_t seed = static_cast<uint64_t>(seed_bits);
    at::Tensor out = at::empty({n, l, e}, q.options());
    at::Tensor lse = at::empty({n, heads, l}, q.options());
    BfAttnArgs a = make_args(q, k, v, m, heads, causal, dropout, seed, pair_offset);
    a.out = out.data_ptr<float>(); a.o_s0 = out.stride(0); a.o_s1 = out.stride(1);
    a.lse = lse.data_ptr<float>();
    run_pairs(reinterpret_cast<bf_attn_kernel>(fwd_fn), a);

    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["has_mask"] = m.defined();
    if (m.defined()) ctx->saved_data["mask"] = m;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["pair_offset"] = pair_offset;
    ctx->saved_data["bwd_fn"] = bwd_fn;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    at::Tensor m = ctx->saved_data["has_mask"].toBool() ? ctx->saved_data["mask"].toTensor() : at::Tensor();
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const bool causal = ctx->saved_data["causal"].toBool();
    const double dropout = ctx->saved_data["dropout"].toDouble();
    const uint64_t seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    const int64_t pair_offset = ctx->saved_data["pair_offset"].toInt();
    const int64_t bwd_fn = ctx->saved_data["bwd_fn"].toInt();

    at::Tensor dout = last_dim_contiguous(grads[0]);
    at::Tensor dq = at::empty(q.sizes(), q.options());
    at::Tensor dk = at::empty(k.sizes(), k.options());
    at::Tensor dv = at::empty(v.sizes(), v.options());
    BfAttnArgs a = make_args(q, k, v, m, heads, causal, dropout, seed, pair_offset);
    a.out = const_cast<float*>(out.data_ptr<float>()); a.o_s0 = out.stride(0); a.o_s1 = out.stride(1);
    a.lse = const_cast<float*>(lse.data_ptr<float>());
    a.dout = dout.data_ptr<float>(); a.do_s0 = dout.stride(0); a.do_s1 = dout.stride(1);
    a.dq = dq.data_ptr<float>(); a.dq_s0 = dq.stride(0); a.dq_s1 = dq.stride(1);
    a.dk = dk.data_ptr<float>(); a.dk_s0 = dk.stride(0); a.dk_s1 = dk.stride(1);
    a.dv = dv.data_ptr<float>(); a.dv_s0 = dv.stride(0); a.dv_s1 = dv.stride(1);
    run_pairs(reinterpret_cast<bf_attn_kernel>(bwd_fn), a);
    // One gradient per forward input: q, k, v, then none for mask and the settings.
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Runs FusedAttention::apply; on failure writes the message into `err` and returns 1.
// `out` receives a new at::Tensor* that the caller (tch) owns.
int bf_fused_attention(at::Tensor** out, const at::Tensor* q, const at::Tensor* k, const at::Tensor* v,
                       const at::Tensor* mask, int64_t heads, int causal, double dropout, uint64_t seed,
                       int64_t pair_offset, bf_attn_kernel fwd, bf_attn_kernel bwd, char* err, size_t err_len) {
  try {
    // Function::apply needs defined tensors; "no mask" travels as an empty one and a flag.
    at::Tensor m = mask ? *mask : at::empty({0}, q->options());
    at::Tensor result = FusedAttention::apply(*q, *k, *v, m, mask != nullptr, heads, causal != 0, dropout,
                                              static_cast<int64_t>(seed), pair_offset, reinterpret_cast<int64_t>(fwd), reinterpret_cast<int64_t>(bwd));
    *out = new at::Tensor(std::move(result));
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

// Turns libtorch's autocast to bfloat16 on or off for the CPU or CUDA (what `torch.autocast(
// device_type, dtype=torch.bfloat16)` does on entry and exit). tch only wraps the deprecated
// CUDA-only switch, which cannot choose bfloat16 or the CPU.
int bf_autocast_bf16(int cuda, int enabled, char* err, size_t err_len) {
  try {
    const at::DeviceType device = cuda ? at::kCUDA : at::kCPU;
    if (enabled) {
      at::autocast::set_autocast_dtype(device, at::kBFloat16);
      at::autocast::set_autocast_enabled(device, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(device, false);
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    }
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

}  // extern "C"
