//! The token model's output layer and cross-entropy over chunks of positions, without ever
//! holding the logits of every position (issue 18: GPU memory at the seed's sizes).
//!
//! At the seed's configuration (sequence_length 256, 306 MEG channels, 259 ids) the logits of
//! one example are 257 × 306 × 259 floats = 81 MB; the plain path keeps them, their
//! log-softmax and their gradient (3 × 650 MB at batch 8, 2.4 GB at batch 32 each).
//! [`linear_cross_entropy`] computes `cross_entropy(hidden · weightᵀ + bias, labels)` (mean
//! over labels ≠ `ignore_index`) chunk by chunk and recomputes each chunk's logits in the
//! backward pass: extra memory one chunk's logits, at the price of a second output-layer
//! product. The autograd function is C++ (`csrc/chunked_ce.cpp`: tch has no custom autograd
//! function), built from ATen ops only, so it runs wherever libtorch does; under autocast the
//! logits are computed in autocast's type, as the plain linear layer would.

use tch::Tensor;

extern "C" {
    fn bf_chunked_linear_ce(
        out: *mut *mut torch_sys::C_tensor,
        hidden: *const torch_sys::C_tensor,
        weight: *const torch_sys::C_tensor,
        bias: *const torch_sys::C_tensor,
        labels: *const torch_sys::C_tensor,
        ignore_index: i64,
        chunk: i64,
        err: *mut libc::c_char,
        err_len: usize,
    ) -> i32;
}

/// Mean cross-entropy of `hidden` [N, D] · `weight` [V, D]ᵀ + `bias` [V] against `labels`
/// [N] (int64), labels equal to `ignore_index` left out, computed `chunk` positions at a
/// time. Equal to `hidden.linear(weight, bias).cross_entropy_loss(labels, None, Mean,
/// ignore_index, 0.0)` up to the order of float sums; differentiable in hidden, weight, bias.
pub fn linear_cross_entropy(hidden: &Tensor, weight: &Tensor, bias: Option<&Tensor>, labels: &Tensor, ignore_index: i64, chunk: i64) -> Tensor {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: the tensors are live for the call; the glue returns a new owned tensor or an
    // error message, never both.
    let rc = crate::glue::call(|err, len| unsafe {
        bf_chunked_linear_ce(&mut out, hidden.as_ptr(), weight.as_ptr(), bias_ptr, labels.as_ptr(), ignore_index, chunk, err, len)
    });
    if let Err(msg) = rc {
        panic!("chunked cross-entropy on {:?} x {:?}: {msg}", hidden.size(), weight.size());
    }
    // SAFETY: `out` is a fresh at::Tensor* that we now own.
    unsafe { Tensor::from_ptr(out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Reduction};

    fn plain(h: &Tensor, w: &Tensor, b: Option<&Tensor>, labels: &Tensor, ignore: i64) -> Tensor {
        h.linear(w, b).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, ignore, 0.0)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// Loss and the gradients of hidden, weight and bias equal the plain linear +
    /// cross-entropy's, for chunks that do and do not divide N, with ignored labels, and with
    /// every label ignored (NaN, as the plain mean).
    #[test]
    fn equals_linear_then_cross_entropy_with_its_gradients() {
        tch::manual_seed(3);
        let (n, d, v, ignore) = (37, 16, 11, 0);
        let labels = Tensor::randint(v, [n], (Kind::Int64, tch::Device::Cpu));
        for chunk in [1, 5, 37, 64] {
            for with_bias in [true, false] {
                let h = Tensor::randn([n, d], tch::kind::FLOAT_CPU).set_requires_grad(true);
                let w = Tensor::randn([v, d], tch::kind::FLOAT_CPU).set_requires_grad(true);
                let b = Tensor::randn([v], tch::kind::FLOAT_CPU).set_requires_grad(true);
                let bias = with_bias.then_some(&b);
                let want = plain(&h, &w, bias, &labels, ignore);
                let inputs: Vec<&Tensor> = if with_bias { vec![&h, &w, &b] } else { vec![&h, &w] };
                let want_grads = Tensor::run_backward(&[&want], &inputs, false, false);
                let got = linear_cross_entropy(&h, &w, bias, &labels, ignore, chunk);
                assert!(max_rel(&got, &want) < 1e-6, "chunk {chunk}: loss {got} vs {want}");
                let got_grads = Tensor::run_backward(&[&got], &inputs, false, false);
                for (i, name) in ["hidden", "weight", "bias"].iter().take(inputs.len()).enumerate() {
                    let e = max_rel(&got_grads[i], &want_grads[i]);
                    assert!(e < 1e-5, "chunk {chunk}, bias {with_bias}: d{name} off by {e}");
                }
            }
        }
        let h = Tensor::randn([4, 3], tch::kind::FLOAT_CPU);
        let w = Tensor::randn([5, 3], tch::kind::FLOAT_CPU);
        let all_ignored = Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu));
        assert!(linear_cross_entropy(&h, &w, None, &all_ignored, 0, 2).double_value(&[]).is_nan());
        assert!(plain(&h, &w, None, &all_ignored, 0).double_value(&[]).is_nan());
    }
}
