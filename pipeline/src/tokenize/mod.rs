//! The tokenizer: continuous samples (one f32 per channel and time step) ↔ u8 levels.
//!
//! design.md's defaults, all from `[tokenize]` in `brainformer.toml` ([`TokenizeConfig`]):
//! per channel, clamp to the `clamp_percentiles` (0.5 %, 99.5 %) of the training split, scale
//! to [-1, 1], compand with µ-law (µ = 255) and quantize to `levels` (255) levels stored as u8
//! `0..=254`. The model adds 3 to a level to make a token id (0 pad, 1 bos, 2 eos; vocabulary
//! 258); that offset lives in the model, not here.
//!
//! ## The formulas (computed in f64; `L` = levels, `µ` = mu)
//!
//! Encoding a sample `x` of channel `c` with clamp `[lo, hi]`:
//!
//! ```text
//! x̃  = clamp(x, lo, hi)
//! x' = 2 (x̃ − lo) / (hi − lo) − 1                       ∈ [-1, 1]
//! y  = sign(x') · ln(1 + µ|x'|) / ln(1 + µ)              ∈ [-1, 1]
//! k  = round((y + 1) / 2 · (L − 1))                      ∈ 0..=L−1   (round half up)
//! ```
//!
//! Decoding a level `k` returns the centre of its µ-law cell, the exact inverse of the three
//! maps above at `y_k`:
//!
//! ```text
//! y_k  = (2k − (L − 1)) / (L − 1)
//! x'_k = sign(y_k) · ((1 + µ)^|y_k| − 1) / µ
//! x_k  = ((1 − x'_k) · lo + (1 + x'_k) · hi) / 2          (= lo + (x'_k + 1)(hi − lo)/2)
//! ```
//!
//! The last form returns `lo` and `hi` exactly for the end levels, so a sample outside
//! `[lo, hi]` decodes to the clamp it was clipped to. A NaN sample encodes to the centre level
//! (`x' = 0`), so one bad sample cannot poison a token sequence; the cleaning stages are
//! expected not to produce any.
//!
//! ## Round-trip bound
//!
//! With `h = 1/(L − 1)` (half a level in `y`), encoding moves `y` by at most `h`. The inverse
//! `g(y) = sign(y)((1 + µ)^|y| − 1)/µ` is odd, increasing and convex in `|y|`, with
//! `g'(y) = ln(1 + µ)(1 + µ)^|y| / µ`, so the worst case is a move of `h` away from zero and
//!
//! ```text
//! |x'_k − x'| ≤ g(|y| + h) − g(|y|) = (1 + µ|x'|) · ((1 + µ)^h − 1) / µ
//!            ≤ h · g'(|y| + h)      = h · ln(1 + µ)/µ · (1 + µ|x'|) · (1 + µ)^h
//! |x_k − x|   ≤ (hi − lo)/2 · (1 + µ|x'|) · ((1 + µ)^h − 1) / µ        for x in [lo, hi]
//! ```
//!
//! (the middle line is the "derivative over half a level" form; the first is its exact,
//! slightly tighter secant). With µ = 255 and L = 255 the factor `((1 + µ)^h − 1)/µ` is
//! 8.656e-5: the error is 8.7e-5 of the half range near the centre and 2.2 % of it at the
//! clamps. [`Tokenizer::roundtrip_bound`] computes the last line; the tests check it on a dense
//! grid and on random values (plus the f32 rounding of the decoded value).
//!
//! ## Fitting ([`TokenizerFit`])
//!
//! The clamps are percentiles of the training split, per channel. Sorting every training
//! sample (ds000117: ~70 runs × 123 k samples × 376 channels) is not needed: the fit keeps a
//! deterministic, evenly strided subsample of at most `cap` values per channel (default
//! [`DEFAULT_FIT_CAP`] = 200 000) and computes the percentiles on it with numpy's default
//! (`method='linear'`) rule ([`percentile_linear`]). The stride is fixed before any data is
//! seen, from the total number of samples per channel that will be added
//! (`stride = ceil(total / cap)`), so every training sample has the same chance to be kept and
//! the subsample does not depend on which thread added which run. A run of `n` samples gives
//! `floor(n / stride)` values, at `stride/2 + i·stride`. The estimate's rank error is of the
//! order of `1/sqrt(cap)` (0.2 % of rank at the default; for the 0.5 % percentile the
//! standard error is `sqrt(p(1 − p)/cap)` = 0.016 % of rank), far below what moves a clamp
//! noticeably. Memory is `4 · cap` bytes per channel (300 MB for 376 channels at the default).
//!
//! Percentiles depend only on the multiset of kept values, so runs may be added from any
//! thread in any order and partial fits merged in any order ([`TokenizerFit::merge`]): the
//! result is bit-identical. Non-finite samples are skipped.
//!
//! The clamps are rounded to f32 when the fit finishes (and stored as f32), so the f32
//! `lo`/`hi` columns in the shards are the tokenizer's exact values. A channel whose two
//! percentiles are equal (a flat channel, or one that is constant on more than 99 % of its
//! samples) gets `lo = c − δ`, `hi = c + δ` around that value `c`, with
//! `δ = 2^(⌊log2|c|⌋ − 20)` (`2^-100` for `c = 0`): no NaN or infinity arises, `c` encodes to
//! the centre level and decodes to `c`.
//!
//! ## Files
//!
//! - `mulaw.rs`: [`Tokenizer`] (encode, decode, the round-trip bound, JSON);
//! - `table.rs`: [`TableEncoder`], the same levels from per-channel thresholds (why they are
//!   the same: its module doc);
//! - `fit.rs`: [`TokenizerFit`] and numpy's [`percentile_linear`].

mod fit;
mod mulaw;
mod table;

pub use fit::{percentile_linear, TokenizerFit, DEFAULT_FIT_CAP};
pub use mulaw::Tokenizer;
pub use table::TableEncoder;

#[cfg(test)]
use crate::config::TokenizeConfig;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn cfg() -> TokenizeConfig {
        TokenizeConfig { clamp_percentiles: [0.5, 99.5], mu: 255.0, levels: 255 }
    }

    /// xorshift64*: deterministic test values without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn tok(lo: f32, hi: f32) -> Tokenizer {
        Tokenizer { channels: vec!["A".into()], lo: vec![lo], hi: vec![hi], mu: 255.0, levels: 255, clamp_percentiles: [0.5, 99.5] }
    }

    fn check_roundtrip(t: &Tokenizer, xs: &[f32]) -> f64 {
        let mut q = vec![0u8; xs.len()];
        let mut back = vec![0f32; xs.len()];
        t.encode(0, xs, &mut q);
        t.decode(0, &q, &mut back);
        let mut worst = 0f64;
        for (&x, &b) in xs.iter().zip(&back) {
            let x = x as f64;
            assert!((t.lo[0] as f64..=t.hi[0] as f64).contains(&x));
            let bound = t.roundtrip_bound(0, x);
            // f32 output: half an ulp of the decoded value; plus f64 evaluation noise.
            let slack = (b.abs() as f64) * f32::EPSILON as f64 / 2.0 + (t.hi[0] - t.lo[0]) as f64 * 1e-12;
            let err = (b as f64 - x).abs();
            assert!(err <= bound + slack, "x={x} decoded {b}: error {err} > bound {bound}");
            worst = worst.max(err / bound.max(1e-300));
        }
        worst
    }

    #[test]
    fn roundtrip_within_the_proven_bound_dense_grid() {
        for (lo, hi) in [(-1.0, 1.0), (-3.0e-5, 7.0e-5), (2.0e-13, 9.5e-12), (-250.0, -10.0)] {
            let t = tok(lo as f32, hi as f32);
            let (lo, hi) = (t.lo[0] as f64, t.hi[0] as f64);
            let n = 2_000_001;
            let xs: Vec<f32> = (0..n)
                .map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64) as f32)
                .filter(|&x| (lo..=hi).contains(&(x as f64)))
                .collect();
            let worst = check_roundtrip(&t, &xs);
            // The bound is nearly attained (it is the exact secant): the worst case is > 90 % of it.
            assert!(worst > 0.9, "bound is loose: worst/bound = {worst}");
        }
    }

    #[test]
    fn roundtrip_within_the_proven_bound_random() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for _ in 0..50 {
            let a = (rng.next_f64() - 0.5) * 1e-3;
            let b = a + rng.next_f64() * 1e-3 + 1e-9;
            let t = tok(a as f32, b as f32);
            let (lo, hi) = (t.lo[0] as f64, t.hi[0] as f64);
            if lo >= hi {
                continue;
            }
            let xs: Vec<f32> = (0..20_000)
                .map(|_| (lo + (hi - lo) * rng.next_f64()) as f32)
                .filter(|&x| (lo..=hi).contains(&(x as f64)))
                .collect();
            check_roundtrip(&t, &xs);
        }
    }

    #[test]
    fn levels_cover_the_range_and_centre_is_exact() {
        let t = tok(-2.0, 2.0);
        let mut q = [0u8; 5];
        t.encode(0, &[-2.0, 0.0, 2.0, -1e-9, f32::NAN], &mut q);
        assert_eq!(q, [0, 127, 254, 127, 127]);
        let mut back = [0f32; 3];
        t.decode(0, &[0, 127, 254], &mut back);
        assert_eq!(back, [-2.0, 0.0, 2.0]);
        // Every level decodes to a value that encodes back to itself, and levels are increasing.
        let all: Vec<u8> = (0..=254).collect();
        let mut xs = vec![0f32; 255];
        t.decode(0, &all, &mut xs);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
        let mut again = vec![0u8; 255];
        t.encode(0, &xs, &mut again);
        assert_eq!(again, all);
    }

    #[test]
    fn outside_the_clamp_decodes_to_the_clamp() {
        let t = tok(-3.25e-6, 1.5e-5);
        let xs = [-1.0f32, -3.2500001e-6, -1e30, f32::NEG_INFINITY, 1.0, 1.5000001e-5, 1e30, f32::INFINITY];
        let mut q = [0u8; 8];
        let mut back = [0f32; 8];
        t.encode(0, &xs, &mut q);
        assert_eq!(q, [0, 0, 0, 0, 254, 254, 254, 254]);
        t.decode(0, &q, &mut back);
        for (i, b) in back.iter().enumerate() {
            assert_eq!(*b, if i < 4 { t.lo[0] } else { t.hi[0] });
        }
    }

    /// Expected values from numpy 2.4.6 (`.venv/bin/python`):
    /// ```text
    /// import numpy as np
    /// a = np.array([3.5, -1.25, 7.0, 2.0, 2.0, 10.125, -4.75, 0.1], dtype=np.float32)
    /// for q in [0.0, 0.5, 12.5, 50.0, 62.5, 99.5, 100.0]:
    ///     print(q, repr(float(np.percentile(a.astype(np.float64), q))))
    /// for n in [1, 2, 1000, 1013, 4099]:
    ///     v = ((np.arange(n, dtype=np.int64) * 7919) % 1013).astype(np.float32) * np.float32(0.001) - np.float32(0.5)
    ///     for q in [0.5, 99.5, 0.1, 33.3, 50.0, 99.99]:
    ///         print(n, q, repr(float(np.percentile(v.astype(np.float64), q))))
    /// ```
    #[test]
    fn percentile_linear_equals_numpy() {
        let small = [3.5f32, -1.25, 7.0, 2.0, 2.0, 10.125, -4.75, 0.1];
        for (q, want) in [(0.0, -4.75), (0.5, -4.6275), (12.5, -1.6875), (50.0, 2.0), (62.5, 2.5625), (99.5, 10.015625), (100.0, 10.125)] {
            let mut a = small;
            assert_eq!(percentile_linear(&mut a, q).to_bits(), f64::to_bits(want), "q={q}");
        }
        let cases: &[(usize, [f64; 6])] = &[
            (1, [-0.5, -0.5, -0.5, -0.5, -0.5, -0.5]),
            (2, [-0.49585999965667726, 0.32386006832122805, -0.49917199993133543, -0.2242759771347046, -0.08599996566772461, 0.3279172686576842]),
            (1000, [-0.49500500470399855, 0.5070050883293152, -0.49900101286172865, -0.16233297631144528, 0.007500022649765015, 0.5119001792550086]),
            (1013, [-0.4949400037527084, 0.5069400858879088, -0.49898801267147064, -0.1630039875507355, 0.006000041961669922, 0.5118988791942596]),
            (4099, [-0.4955099982023239, 0.5070000886917114, -0.49990200126171114, -0.1629999876022339, 0.00700002908706665, 0.5120000839233398]),
        ];
        for (n, wants) in cases {
            let v: Vec<f32> = (0..*n as i64).map(|i| ((i * 7919) % 1013) as f32 * 0.001f32 - 0.5f32).collect();
            for (q, want) in [0.5, 99.5, 0.1, 33.3, 50.0, 99.99].into_iter().zip(wants) {
                let mut a = v.clone();
                assert_eq!(percentile_linear(&mut a, q).to_bits(), want.to_bits(), "n={n} q={q}");
            }
        }
        assert!(percentile_linear(&mut [], 50.0).is_nan());
        assert!(percentile_linear(&mut [1.0, f32::NAN], 50.0).is_nan());
    }

    fn synthetic(n_ch: usize, n: usize, seed: u64) -> Array2<f32> {
        let mut rng = Rng(seed);
        Array2::from_shape_fn((n_ch, n), |(c, _)| ((rng.next_f64() - 0.5) * (c + 1) as f64 * 1e-5) as f32)
    }

    #[test]
    fn fit_is_independent_of_order_and_merges() {
        let names: Vec<String> = (0..3).map(|i| format!("EEG{i:03}")).collect();
        let runs: Vec<Array2<f32>> = (0..5).map(|r| synthetic(3, 10_000 + 997 * r, r as u64 + 1)).collect();
        let total: u64 = runs.iter().map(|r| r.ncols() as u64).sum();
        let cap = 5_000;
        let mut a = TokenizerFit::new(names.clone(), &cfg(), total, cap);
        for (i, r) in runs.iter().enumerate() {
            a.add_run(&format!("run{i}"), r.view()).unwrap();
        }
        assert!(a.kept(0) <= cap);
        let a = a.finish().unwrap();
        // Reverse order, split into partial fits merged in another order.
        let mut parts: Vec<TokenizerFit> = Vec::new();
        for (i, r) in runs.iter().enumerate().rev() {
            let mut f = TokenizerFit::new(names.clone(), &cfg(), total, cap);
            f.add_run(&format!("run{i}"), r.view()).unwrap();
            parts.push(f);
        }
        let mut it = parts.into_iter();
        let first = it.next().unwrap();
        let merged = it.fold(first, |acc, f| f.merge(acc).unwrap());
        let b = merged.finish().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_json(), b.to_json());
        // The clamps are f32 values near the percentiles of the full data.
        for c in 0..3 {
            let mut all: Vec<f32> = runs.iter().flat_map(|r| r.row(c).to_vec()).collect();
            let p = percentile_linear(&mut all, 99.5);
            let half = (c + 1) as f64 * 0.5e-5;
            assert!((a.hi[c] as f64 - p).abs() < 0.01 * half, "ch {c}: {} vs {p}", a.hi[c]);
        }
        // Duplicates are refused.
        let mut f = TokenizerFit::new(names.clone(), &cfg(), total, cap);
        f.add_run("run0", runs[0].view()).unwrap();
        assert!(f.add_run("run0", runs[0].view()).is_err());
        assert!(f.add_run("bad", synthetic(2, 10, 1).view()).is_err());
    }

    #[test]
    fn flat_channels_get_a_finite_clamp() {
        let names = vec!["Z".to_string(), "C".to_string(), "N".to_string()];
        let mut data = Array2::<f32>::zeros((3, 1000));
        data.row_mut(1).fill(3.7e-6);
        data.row_mut(2).fill(-2.5);
        data[[2, 10]] = f32::NAN;
        let mut f = TokenizerFit::new(names, &cfg(), 1000, 100);
        f.add_run("r", data.view()).unwrap();
        let t = f.finish().unwrap();
        for (c, v) in [0.0f32, 3.7e-6, -2.5].into_iter().enumerate() {
            assert!(t.lo[c] < t.hi[c] && t.lo[c].is_finite() && t.hi[c].is_finite());
            let mut q = [0u8; 1];
            let mut back = [0f32; 1];
            t.encode(c, &[v], &mut q);
            assert_eq!(q[0], 127);
            t.decode(c, &q, &mut back);
            assert_eq!(back[0], v);
        }
    }

    #[test]
    fn json_round_trip_and_validation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokenizer.json");
        let t = tok(-1.5, 2.25);
        t.save(&p).unwrap();
        assert_eq!(Tokenizer::load(&p).unwrap(), t);
        let mut bad = t.clone();
        bad.hi[0] = bad.lo[0];
        assert!(Tokenizer::from_json(&bad.to_json(), &p).is_err());
        let both = Tokenizer::concat(&[&t, &tok(0.0, 1.0)]).unwrap();
        assert_eq!(both.lo, vec![-1.5, 0.0]);
        // Clamps survive JSON bit for bit over the range of EEG/MEG units.
        let mut rng = Rng(7);
        let n = 20_000;
        let vals: Vec<f32> = (0..n).map(|_| ((rng.next_f64() - 0.5) * 10f64.powf(-16.0 + 18.0 * rng.next_f64())) as f32).collect();
        let many = Tokenizer {
            channels: (0..n).map(|i| i.to_string()).collect(),
            lo: vals.iter().map(|v| v - 0.5 * v.abs() - 1e-30).collect(),
            hi: vals.iter().map(|v| v + 0.5 * v.abs() + 1e-30).collect(),
            ..t
        };
        let back = Tokenizer::from_json(&many.to_json(), &p).unwrap();
        assert!(back.lo.iter().zip(&many.lo).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(back.hi.iter().zip(&many.hi).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
