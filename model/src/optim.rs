//! AdamW, the learning-rate schedule and gradient clipping, as PyTorch and the seed's trainer
//! (Hugging Face `Trainer`, `lr_scheduler_type="cosine"`) do them.
//!
//! We write AdamW on tensors instead of using tch's optimizer because `--resume` must restore
//! the moment estimates exactly, and libtorch's C++ optimizer state is not reachable from tch.
//! The update is `torch.optim.AdamW`'s (decoupled decay, bias corrections, eps outside the
//! square root); weight decay applies to matrices and embeddings only (dim ≥ 2), never to
//! biases, LayerNorm weights or 1-D parameters, as the seed's `configure_optimizers` groups.

use std::collections::HashMap;
use std::f64::consts::PI;

use tch::{Kind, Tensor};

extern "C" {
    fn bf_fused_adamw(
        params: *const *const torch_sys::C_tensor,
        grads: *const *const torch_sys::C_tensor,
        exp_avgs: *const *const torch_sys::C_tensor,
        exp_avg_sqs: *const *const torch_sys::C_tensor,
        steps: *const *const torch_sys::C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut libc::c_char,
        err_len: usize,
    ) -> i32;
}

/// One parameter with its optimizer state.
struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

/// `torch.optim.AdamW` over named parameters.
pub struct AdamW {
    slots: Vec<Slot>,
    /// Update through libtorch's fused multi-tensor kernel (`fused=True`) instead of
    /// element-wise ops per parameter; see [`AdamW::set_fused`].
    fused: bool,
    /// The fused kernel's per-parameter step counters: views of one float32 tensor, filled
    /// with [`AdamW::step`] before each update (made at the first fused step).
    fused_steps: Option<Tensor>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken (PyTorch's `state["step"]`).
    pub step: i64,
}

impl AdamW {
    /// `params`: trainable (name, tensor) pairs, sorted by name for a stable order.
    pub fn new(params: Vec<(String, Tensor)>, weight_decay: f64) -> AdamW {
        let slots = params
            .into_iter()
            .map(|(name, param)| Slot {
                decay: param.dim() >= 2,
                exp_avg: param.zeros_like().detach(),
                exp_avg_sq: param.zeros_like().detach(),
                name,
                param,
            })
            .collect();
        AdamW { slots, fused: false, fused_steps: None, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, step: 0 }
    }

    /// Counts of (decayed, not decayed) parameter values.
    pub fn decay_split(&self) -> (i64, i64) {
        let mut split = (0, 0);
        for s in &self.slots {
            if s.decay {
                split.0 += s.param.numel() as i64;
            } else {
                split.1 += s.param.numel() as i64;
            }
        }
        split
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`, coefficient `max_norm / (norm + 1e-6)`); returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::NAN);
        if max_norm > 0.0 {
            let coef = max_norm / (total + 1e-6);
            if coef < 1.0 {
                tch::no_grad(|| {
                    for mut g in grads {
                        let _ = g.g_mul_scalar_(coef);
                    }
                });
            }
        }
        total
    }

    /// Updates through libtorch's fused AdamW kernel (`torch.optim.AdamW(fused=True)`, one
    /// multi-tensor kernel per update on the CPU or a GPU) instead of ~7 element-wise ops per
    /// parameter. The same update up to float rounding (tested); the moments stay ours, so
    /// checkpoints and `--resume` are unchanged.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        if self.fused {
            return self.fused_step(lr);
        }
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - self.beta2.powi(self.step as i32)).sqrt();
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                if s.decay && self.weight_decay != 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = s.exp_avg.lerp_(&g, 1.0 - self.beta1);
                let _ = s.exp_avg_sq.g_mul_scalar_(self.beta2);
                let _ = s.exp_avg_sq.addcmul_(&g, &(&g * (1.0 - self.beta2)));
                let denom = s.exp_avg_sq.sqrt() / bias2_sqrt + self.eps;
                let update = (&s.exp_avg / denom) * (lr / bias1);
                let _ = s.param.g_sub_(&update);
            }
        });
    }

    fn fused_step(&mut self, lr: f64) {
        self.step += 1;
        let Some(first) = self.slots.first() else { return };
        let device = first.param.device();
        let steps = self.fused_steps.get_or_insert_with(|| Tensor::zeros([self.slots.len() as i64], (Kind::Float, device)));
        tch::no_grad(|| {
            let _ = steps.fill_(self.step as f64);
            // Two groups, as the seed's configure_optimizers: decayed matrices, then the rest.
            for decay in [true, false] {
                let wd = if decay { self.weight_decay } else { 0.0 };
                let group: Vec<(usize, Tensor)> = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.decay == decay)
                    .map(|(i, s)| (i, s.param.grad()))
                    .filter(|(_, g)| g.defined())
                    .collect();
                if group.is_empty() {
                    continue;
                }
                let step_views: Vec<Tensor> = group.iter().map(|(i, _)| steps.select(0, *i as i64)).collect();
                let slots = &self.slots;
                let ptrs = |f: &dyn Fn(usize) -> *const torch_sys::C_tensor| group.iter().map(|(i, _)| f(*i)).collect::<Vec<_>>();
                let params = ptrs(&|i| slots[i].param.as_ptr());
                let m = ptrs(&|i| slots[i].exp_avg.as_ptr());
                let v = ptrs(&|i| slots[i].exp_avg_sq.as_ptr());
                let grads: Vec<_> = group.iter().map(|(_, g)| g.as_ptr()).collect();
                let st: Vec<_> = step_views.iter().map(|t| t.as_ptr()).collect();
                // SAFETY: every pointer is a live tensor for the call; the glue only reads the
                // lists and updates params and moments in place.
                let rc = crate::glue::call(|err, len| unsafe {
                    bf_fused_adamw(params.as_ptr(), grads.as_ptr(), m.as_ptr(), v.as_ptr(), st.as_ptr(), group.len() as i64, lr, self.beta1, self.beta2, wd, self.eps, err, len)
                });
                if let Err(msg) = rc {
                    panic!("fused AdamW: {msg}");
                }
            }
        });
    }

    /// The moment estimates as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.exp_avg.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", s.name), s.exp_avg_sq.shallow_clone()));
        }
        out
    }

    /// Restores the moment estimates written by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, step: i64) -> Result<(), String> {
        tch::no_grad(|| {
            for s in &mut self.slots {
                for (key, dst) in [(format!("exp_avg.{}", s.name), &mut s.exp_avg), (format!("exp_avg_sq.{}", s.name), &mut s.exp_avg_sq)] {
                    let src = tensors.remove(&key).ok_or_else(|| format!("optimizer state has no {key}"))?;
                    if src.size() != dst.size() {
                        return Err(format!("optimizer state {key}: shape {:?}, parameter {:?}", src.size(), dst.size()));
                    }
                    dst.copy_(&src.to_device(dst.device()).to_kind(dst.kind()));
                }
            }
            Ok(())
        })?;
        if let Some(extra) = tensors.keys().next() {
            return Err(format!("optimizer state has an entry for no parameter: {extra}"));
        }
        self.step = step;
        Ok(())
    }
}

/// Hugging Face's `get_cosine_schedule_with_warmup` (the seed's `lr_scheduler_type="cosine"`):
/// the multiplier for the update with index `step` (0-based) of `total` updates.
pub fn cosine_with_warmup(step: i64, warmup: i64, total: i64) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    (0.5 * (1.0 + (PI * progress.min(1.0)).cos())).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_with_warmup(0, 10, 100), 0.0);
        assert!((cosine_with_warmup(5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((cosine_with_warmup(10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(55, 10, 100) - 0.5).abs() < 1e-12);
        assert!(cosine_with_warmup(100, 10, 100).abs() < 1e-12);
        assert_eq!(cosine_with_warmup(0, 0, 10), 1.0);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // First step: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps) plus decoupled decay.
        let p = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5]).view([2, 2]).set_requires_grad(true);
        let loss = (&p * &p).sum(Kind::Float);
        loss.backward();
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], 0.1);
        opt.step(0.01);
        let got = Vec::<f32>::try_from(p.detach().view([-1])).unwrap();
        for (x, y) in [1.0f32, -2.0, 3.0, 0.5].iter().zip(got) {
            let g = 2.0 * x;
            let expect = x * (1.0 - 0.01 * 0.1) - 0.01 * g / (g.abs() + 1e-8);
            assert!((expect - y).abs() < 1e-6, "{expect} vs {y}");
        }
    }

    /// libtorch's fused kernel gives our update: 5 steps with decayed matrices and undecayed
    /// vectors, a parameter without a gradient left alone, parameters and moments within
    /// 1e-6 relative (float32 rounding of the same formula in another order).
    #[test]
    fn fused_adamw_equals_the_element_wise_update() {
        tch::manual_seed(7);
        let shapes: [&[i64]; 3] = [&[4, 3], &[3], &[2, 2]];
        let make = || shapes.iter().enumerate().map(|(i, s)| (format!("p{i}"), Tensor::randn(*s, tch::kind::FLOAT_CPU).set_requires_grad(true))).collect::<Vec<_>>();
        let a = make();
        let b: Vec<(String, Tensor)> = a.iter().map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true))).collect();
        let share = |v: &Vec<(String, Tensor)>| v.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect::<Vec<_>>();
        let (mut plain, mut fused) = (AdamW::new(share(&a), 0.1), AdamW::new(share(&b), 0.1));
        fused.set_fused(true);
        for step in 0..5 {
            for params in [&a, &b] {
                for (i, (_, p)) in params.iter().enumerate().take(2) {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                    ((p * p).sum(Kind::Float) * (1.0 + step as f64 + i as f64)).backward();
                }
            }
            plain.step(1e-2);
            fused.step(1e-2);
        }
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            let e = (x - y).abs().max().double_value(&[]) / x.abs().max().double_value(&[]);
            assert!(e < 1e-6, "{name}: off by {e}");
        }
        assert!(a[2].1.equal(&b[2].1), "a parameter without a gradient moved");
        for ((k, x), (_, y)) in plain.state_tensors().iter().zip(fused.state_tensors()) {
            let e = (x - &y).abs().max().double_value(&[]) / x.abs().max().double_value(&[]).max(1e-30);
            assert!(e < 1e-6, "{k}: off by {e}");
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        (&p * Tensor::from_slice(&[1.0f32, 1.0])).sum(Kind::Float).backward();
        let q = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        (&q * 0.0).sum(Kind::Float).backward();
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.0);
        let norm = opt.clip_grad_norm(0.5);
        assert!((norm - 2f64.sqrt()).abs() < 1e-6);
        let g = Vec::<f32>::try_from(p.grad()).unwrap();
        let n = (g[0] * g[0] + g[1] * g[1]).sqrt();
        assert!((n - 0.5).abs() < 1e-5, "{n}");
    }
}
