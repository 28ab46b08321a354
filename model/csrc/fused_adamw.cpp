// libtorch's fused AdamW kernel (`torch.optim.AdamW(fused=True)`: one multi-tensor kernel for
// every parameter instead of a handful of element-wise ops each) for `model/src/optim.rs`.
// tch wraps no foreach/fused optimizer op, so this file hands the tensor lists over: it
// contains no arithmetic. The caller increments the step tensors first, as PyTorch's
// `_fused_adamw` does (`torch._foreach_add_(state_steps, 1)`).

#include <ATen/ATen.h>

#include <cstdio>
#include <vector>

extern "C" {

// One AdamW step over `n` parameters (all on one device and of one dtype), with their grads,
// first and second moments and float32 step counters; on failure writes the message into
// `err` and returns 1.
int bf_fused_adamw(const at::Tensor* const* params, const at::Tensor* const* grads, const at::Tensor* const* exp_avgs,
                   const at::Tensor* const* exp_avg_sqs, const at::Tensor* const* steps, int64_t n, double lr,
                   double beta1, double beta2, double weight_decay, double eps, char* err, size_t err_len) {
  try {
    std::vector<at::Tensor> p, g, m, v, s;
    for (int64_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

}  // extern "C"
