//! Times the fused CPU attention (forward + backward, dropout 0.1) on the five attention shapes
//! of one training step of the seed's configuration (sequence_length 256 → 257 steps with BOS,
//! 70 EEG and 306 MEG channels, d_model 64, 4 heads, batch 1), beside libtorch's
//! `scaled_dot_product_attention` on the same inputs.
//!
//!     cargo run --release -p brainformer-model --example fused_attention_bench [-- --fused-only]

use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let shapes: [(&str, i64, i64, i64, bool); 5] = [
        ("encoder time", 70, 257, 257, false),
        ("encoder channel", 257, 70, 70, false),
        ("decoder time (causal)", 306, 257, 257, true),
        ("decoder channel", 257, 306, 306, false),
        ("cross (MEG → EEG)", 257, 306, 70, false),
    ];
    let (e, heads, p, reps) = (64, 4, 0.1, 5);
    let fused_only = std::env::args().any(|a| a == "--fused-only");
    let (mut ours_total, mut torch_total) = (0.0, 0.0);
    for (name, n, l, s, causal) in shapes {
        let opts = (Kind::Float, Device::Cpu);
        let q = Tensor::randn([n, l, e], opts).set_requires_grad(true);
        let k = Tensor::randn([n, s, e], opts).set_requires_grad(true);
        let v = Tensor::randn([n, s, e], opts).set_requires_grad(true);
        let g = Tensor::randn([n, l, e], opts);
        let time = |f: &dyn Fn() -> Tensor| {
            let _ = f(); // warm-up
            let t0 = Instant::now();
            for _ in 0..reps {
                let out = f();
                (&out * &g).sum(Kind::Float).backward();
            }
            t0.elapsed().as_secs_f64() / reps as f64
        };
        let ours = time(&|| bf_model::fused_attention::attention(&q, &k, &v, None, heads, causal, p));
        let torch = if fused_only { f64::NAN } else { time(&|| {
            let split = |x: &Tensor, len: i64| x.view([n, len, heads, e / heads]).transpose(1, 2);
            Tensor::scaled_dot_product_attention::<Tensor>(&split(&q, l), &split(&k, s), &split(&v, s), None, p, causal, None, false)
                .transpose(1, 2)
                .reshape([n, l, e])
        }) };
        println!("{name:24} pairs {:5}  L {l:3} S {s:3}   fused {:7.1} ms   libtorch {:7.1} ms", n * heads, ours * 1e3, torch * 1e3);
        ours_total += ours;
        torch_total += torch;
    }
    println!("{:24} {:29} fused {:7.1} ms   libtorch {:7.1} ms", "one step's attention", "", ours_total * 1e3, torch_total * 1e3);
}
