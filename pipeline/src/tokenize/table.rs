//! The µ-law encoder as per-channel thresholds: the same u8 levels as the formula
//! ([`Tokenizer::encode`]), with a binary search over 255 integers per sample instead of a
//! `log1p` and a rounding.
//!
//! **Why it is the same function.** A channel's level is a non-decreasing function of the f32
//! sample: every step of the formula is (clamp, subtract, divide by a positive constant,
//! `ln_1p`, multiply, round half up, clamp), each non-decreasing in its argument, and the
//! sign split is odd-symmetric around `x' = 0`. A non-decreasing function from the f32 values
//! (in their total order, NaN aside) onto levels `0..=L−1` is fully described by, for each
//! level `k ≥ 1`, the first f32 whose level is at least `k`: the level of `v` is then the
//! number of those thresholds at or below `v`. The thresholds are found with the formula
//! itself (a guess from its inverse, then galloping and bisection on f32 values), so they are
//! the formula's, not an approximation of it. NaN keeps the formula's own level.
//!
//! The one step the argument takes on trust is `ln_1p` (libm's, not correctly rounded)
//! being monotone: a wobble of an ulp could only matter right at a threshold. So every
//! threshold's neighbourhood (±[`CHECKED_NEIGHBOURS`] f32 values) is checked against the
//! formula when the table is built, and a channel where anything differs keeps the formula.
//! The tests compare both encoders on every f32 of whole ranges, on wide random samples and
//! on the 64 values around every threshold of many clamps.

use rayon::prelude::*;

use super::mulaw::LevelFn;
use super::Tokenizer;

/// f32 values checked on each side of every threshold when a table is built.
const CHECKED_NEIGHBOURS: i64 = 4;

/// Sorted thresholds are padded to this length with a key above every f32's.
const SLOTS: usize = 256;

/// The encoder of every channel of a tokenizer ([`Tokenizer::table_encoder`]).
#[derive(Clone, Debug)]
pub struct TableEncoder {
    channels: Vec<Channel>,
}

#[derive(Clone, Debug)]
enum Channel {
    /// `keys[k − 1]` is the total-order key of the first f32 of level ≥ `k`; then padding.
    Table { keys: Box<[i32; SLOTS]>, nan: u8 },
    /// The table disagreed with the formula near a threshold (never seen): the formula.
    Formula(LevelFn),
}

/// f32's total order as integers (`f32::total_cmp`'s): -0.0 just below +0.0, NaN aside.
#[inline]
fn key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

#[inline]
fn from_key(k: i32) -> f32 {
    f32::from_bits((if k < 0 { k ^ i32::MAX } else { k }) as u32)
}

impl Tokenizer {
    /// The thresholds of every channel (built in parallel; a few milliseconds for 400 channels).
    pub fn table_encoder(&self) -> TableEncoder {
        let channels = (0..self.n_channels()).into_par_iter().map(|c| Channel::build(self.level_fn(c))).collect();
        TableEncoder { channels }
    }
}

impl Channel {
    fn build(f: LevelFn) -> Channel {
        let level = |k: i64| f.level(from_key(k as i32));
        let (lo, hi) = (key(f.lo as f32) as i64, key(f.hi as f32) as i64);
        // The clamps are f32 (the tokenizer stores them so): lo has level 0, hi the top one.
        debug_assert!(level(lo) == 0 && level(hi) == f.top());
        let mut keys = Box::new([i32::MAX; SLOTS]);
        for k in 1..=f.top() {
            let guess = (key(f.boundary_guess(k) as f32) as i64).clamp(lo, hi);
            keys[k as usize - 1] = first_at_least(&level, k, lo, hi, guess) as i32;
        }
        let table = Channel::Table { keys, nan: f.level(f32::NAN) };
        let agrees = |k: i64| table.level(from_key(k as i32)) == level(k);
        let checked = match &table {
            Channel::Table { keys, .. } => keys[..f.top() as usize]
                .iter()
                .all(|&t| (t as i64 - CHECKED_NEIGHBOURS..=t as i64 + CHECKED_NEIGHBOURS).filter(|k| from_key(*k as i32).is_finite()).all(agrees)),
            Channel::Formula(_) => unreachable!("just built as a table"),
        };
        if checked {
            table
        } else {
            tracing::warn!("µ-law table disagrees with the formula near a threshold; this channel keeps the formula");
            Channel::Formula(f)
        }
    }

    #[inline]
    fn level(&self, v: f32) -> u8 {
        match self {
            Channel::Table { keys, nan } => {
                if v.is_nan() {
                    return *nan;
                }
                // Thresholds at or below v, by bisection over the 256 slots (at most 255 are
                // real, so the count fits the 8 halvings).
                let kv = key(v);
                let mut i = 0usize;
                // Without branches: which way each halving goes is data, not a pattern the
                // branch predictor could learn.
                for step in [128, 64, 32, 16, 8, 4, 2, 1] {
                    i += usize::from(keys[i + step - 1] <= kv) * step;
                }
                i as u8
            }
            Channel::Formula(f) => f.level(v),
        }
    }
}

/// The smallest key in `lo..=hi` whose level is at least `k`, given that `hi`'s is: gallops
/// from `guess` to a bracket, then bisects.
fn first_at_least(level: &impl Fn(i64) -> u8, k: u8, lo: i64, hi: i64, guess: i64) -> i64 {
    // Invariant: level(below) < k (or below = lo − 1), level(at) ≥ k.
    let (mut below, mut at);
    if level(guess) >= k {
        at = guess;
        let mut step = 1;
        loop {
            let c = at - step;
            if c < lo {
                below = lo - 1;
                break;
            }
            if level(c) < k {
                below = c;
                break;
            }
            at = c;
            step *= 2;
        }
    } else {
        below = guess;
        let mut step = 1;
        loop {
            let c = (below + step).min(hi);
            if level(c) >= k {
                at = c;
                break;
            }
            below = c;
            step *= 2;
        }
    }
    while at - below > 1 {
        let m = below + (at - below) / 2;
        if level(m) >= k {
            at = m;
        } else {
            below = m;
        }
    }
    at
}

impl TableEncoder {
    /// Encodes samples `x` of channel `ch` into levels `out`: the same levels as
    /// [`Tokenizer::encode`].
    ///
    /// # Panics
    /// If `ch` is out of range or the lengths differ.
    pub fn encode(&self, ch: usize, x: &[f32], out: &mut [u8]) {
        assert_eq!(x.len(), out.len(), "encode: input and output lengths differ");
        let c = &self.channels[ch];
        for (o, &v) in out.iter_mut().zip(x) {
            *o = c.level(v);
        }
    }

    /// Whether channel `ch` uses its thresholds (false: the formula, after a failed check).
    pub fn uses_table(&self, ch: usize) -> bool {
        matches!(self.channels[ch], Channel::Table { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(lo: &[f32], hi: &[f32], levels: u32) -> Tokenizer {
        Tokenizer {
            channels: (0..lo.len()).map(|i| format!("C{i}")).collect(),
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            mu: 255.0,
            levels,
            clamp_percentiles: [0.5, 99.5],
        }
    }

    fn same_levels(t: &Tokenizer, e: &TableEncoder, ch: usize, xs: &[f32]) {
        let (mut a, mut b) = (vec![0u8; xs.len()], vec![0u8; xs.len()]);
        t.encode(ch, xs, &mut a);
        e.encode(ch, xs, &mut b);
        if let Some(i) = (0..xs.len()).find(|&i| a[i] != b[i]) {
            panic!("channel {ch} [{}, {}]: {:e} (bits {:#x}) formula {} table {}", t.lo[ch], t.hi[ch], xs[i], xs[i].to_bits(), a[i], b[i]);
        }
    }

    /// Every f32 of whole ranges (2^23 values each, both signs, several level counts).
    #[test]
    fn every_f32_of_a_range_encodes_the_same() {
        // The clamp's binade and one on each side (clamped values).
        for (lo, hi, levels, from, to) in [(1.0f32, 2.0f32, 255, 0.5f32, 4.0f32), (-2.0, -1.0, 255, -4.0, -0.5), (1.0, 2.0, 256, 0.5, 4.0), (-2.0, -1.0, 17, -4.0, -0.5)] {
            let t = tok(&[lo], &[hi], levels);
            let e = t.table_encoder();
            assert!(e.uses_table(0));
            let xs: Vec<f32> = (key(from)..=key(to)).map(from_key).collect();
            same_levels(&t, &e, 0, &xs);
        }
    }

    /// MEG/EEG-like clamps (1e-13 … 1e-4, asymmetric, straddling zero or not), checked on the
    /// 64 f32 values around every threshold, on random samples over and beyond the clamp and
    /// on the special values.
    #[test]
    fn thresholds_and_random_samples_encode_the_same() {
        let mut state = 0x9E3779B97F4A7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut lo = vec![];
        let mut hi = vec![];
        for _ in 0..200 {
            let scale = 10f64.powf(-13.0 + 9.0 * next());
            let a = (-1.0 + 1.5 * next()) * scale;
            let b = a + (0.01 + 2.0 * next()) * scale;
            lo.push(a as f32);
            hi.push(b as f32);
        }
        // Flat channels widened around a value (fit.rs's widen_if_flat) and exact zeros.
        lo.extend([-(2f32.powi(-100)), 1.0 - 2f32.powi(-20), 0.0, -3e-12]);
        hi.extend([2f32.powi(-100), 1.0 + 2f32.powi(-20), 1e-12, 0.0]);
        for levels in [255, 256, 2, 3] {
            let t = tok(&lo, &hi, levels);
            let e = t.table_encoder();
            for ch in 0..lo.len() {
                assert!(e.uses_table(ch), "channel {ch} fell back to the formula");
                let Channel::Table { keys, .. } = &e.channels[ch] else { unreachable!() };
                let mut xs: Vec<f32> = keys[..levels as usize - 1].iter().flat_map(|&t| (t as i64 - 32..=t as i64 + 32).map(|k| from_key(k as i32))).collect();
                let (l, h) = (lo[ch] as f64, hi[ch] as f64);
                xs.extend((0..2000).map(|_| (l - (h - l) + 3.0 * (h - l) * next()) as f32));
                xs.extend([0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45, -1e-45, lo[ch], hi[ch]]);
                same_levels(&t, &e, ch, &xs);
            }
        }
    }

    /// The threshold search finds the first f32 of a level from any starting guess.
    #[test]
    fn thresholds_are_first_values_at_a_level() {
        let t = tok(&[-1.0], &[3.0], 255);
        let f = t.level_fn(0);
        let level = |k: i64| f.level(from_key(k as i32));
        let (lo, hi) = (key(-1.0) as i64, key(3.0) as i64);
        for k in [1u8, 100, 127, 128, 254] {
            for guess in [lo, hi, (lo + hi) / 2, key(f.boundary_guess(k) as f32) as i64] {
                let at = first_at_least(&level, k, lo, hi, guess);
                assert!(level(at) >= k && level(at - 1) < k, "level {k} from guess {guess}");
            }
        }
    }
}
