//! `bf-train --precision bf16`: libtorch's autocast to bfloat16, PyTorch's mixed precision.
//!
//! Weights, gradients and AdamW's moments stay float32 (so checkpoints are the same float32
//! safetensors); inside the forward pass, autocast runs matrix products (linear, matmul,
//! attention) in bfloat16 and keeps reductions such as softmax, layer norm and the loss in
//! float32, exactly as `torch.autocast(device_type, dtype=torch.bfloat16)` does for a PyTorch
//! user. bfloat16 has float32's range, so no loss scaling is needed. The backward pass runs
//! outside the autocast region, as PyTorch recommends; autograd replays the casts.
//!
//! It pays off on GPUs and on CPUs with bfloat16 units (AVX512-BF16, AMX). On a CPU without
//! them libtorch emulates bfloat16 products and a step is slower than in float32.

use tch::Device;

extern "C" {
    fn bf_autocast_bf16(cuda: i32, enabled: i32, err: *mut libc::c_char, err_len: usize) -> i32;
}

/// Runs `f` with bfloat16 autocast on for `device`'s type (CPU or CUDA).
pub fn with_bf16_autocast<T>(device: Device, f: impl FnOnce() -> T) -> T {
    let cuda = matches!(device, Device::Cuda(_)) as i32;
    switch(cuda, true);
    // Switched off again even if `f` panics, so that no later computation inherits it.
    struct Off(i32);
    impl Drop for Off {
        fn drop(&mut self) {
            switch(self.0, false);
        }
    }
    let _off = Off(cuda);
    f()
}

fn switch(cuda: i32, on: bool) {
    // SAFETY: plain integers and a writable buffer for the message.
    if let Err(msg) = crate::glue::call(|err, len| unsafe { bf_autocast_bf16(cuda, on as i32, err, len) }) {
        panic!("libtorch refused to switch bfloat16 autocast: {msg}");
    }
}
