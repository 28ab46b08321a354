//! The fitted µ-law tokenizer: encode, decode, round-trip bound, JSON (formulas in the
//! [module docs](super)).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A per-channel µ-law tokenizer: the fitted clamps and the parameters (see the module docs
/// for the formulas). Serialized as JSON (`save`/`load`, and the `brainformer.tokenizer`
/// key of every shard).
///
/// Invariants (checked by [`Tokenizer::validate`], which `load`/`from_json` run):
/// `lo`, `hi` and `channels` have the same length; `lo[c] < hi[c]`, both finite;
/// `mu > 0`; `2 ≤ levels ≤ 256`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tokenizer {
    /// Channel names, in the order of `lo`/`hi` (and of the data the tokenizer is used on).
    pub channels: Vec<String>,
    /// Lower clamp per channel (physical units). f32 because the fit rounds to f32: the
    /// shards' f32 lo/hi columns are then exact, and serde_json's default (not
    /// `float_roundtrip`) parser reads f32 values back exactly, where it misreads about a
    /// quarter of f64 values by an ulp. Arithmetic is in f64.
    pub lo: Vec<f32>,
    /// Upper clamp per channel (physical units).
    pub hi: Vec<f32>,
    /// µ of the µ-law.
    pub mu: f64,
    /// Number of levels `L`; levels are `0..L` stored as u8.
    pub levels: u32,
    /// The percentiles the clamps were fitted at (documentation of how `lo`/`hi` came about).
    pub clamp_percentiles: [f64; 2],
}

/// One channel's encoding formula (module docs of [`super`]), the one definition of a level.
#[derive(Clone, Copy, Debug)]
pub(super) struct LevelFn {
    pub lo: f64,
    pub hi: f64,
    mu: f64,
    l1: f64,
    ln1p_mu: f64,
}

impl LevelFn {
    #[inline]
    pub fn level(&self, v: f32) -> u8 {
        let (lo, hi, mu, l1) = (self.lo, self.hi, self.mu, self.l1);
        let v = v as f64;
        let xp = if v.is_nan() { 0.0 } else { (2.0 * (v.clamp(lo, hi) - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0) };
        let y = xp.signum() * (mu * xp.abs()).ln_1p() / self.ln1p_mu;
        // y + 1 ≥ 0, so `round` (half away from zero) is round half up.
        ((y + 1.0) * 0.5 * l1).round().clamp(0.0, l1) as u8
    }

    /// The `x'` at which level `k` begins (the midpoint `k − ½` of the quantizer, mapped back
    /// through the µ-law), as a sample value: a guess that [`super::table`] refines with
    /// [`LevelFn::level`] itself.
    pub fn boundary_guess(&self, k: u8) -> f64 {
        let y = (2.0 * k as f64 - 1.0) / self.l1 - 1.0;
        let xp = y.signum() * (y.abs() * self.ln1p_mu).exp_m1() / self.mu;
        self.lo + (xp + 1.0) * (self.hi - self.lo) / 2.0
    }

    pub fn top(&self) -> u8 {
        self.l1 as u8
    }
}

impl Tokenizer {
    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    /// Index of a channel by name.
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == name)
    }

    /// Checks the invariants listed on the type; `what` names the source in the error.
    pub fn validate(&self, what: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::format(what, "tokenizer", m));
        if self.lo.len() != self.channels.len() || self.hi.len() != self.channels.len() {
            return bad(format!(
                "{} channels but {} lo and {} hi values",
                self.channels.len(),
                self.lo.len(),
                self.hi.len()
            ));
        }
        if !(self.mu > 0.0 && self.mu.is_finite()) {
            return bad(format!("mu must be positive, not {}", self.mu));
        }
        if !(2..=256).contains(&self.levels) {
            return bad(format!("levels must be in 2..=256 (u8 storage), not {}", self.levels));
        }
        for (c, name) in self.channels.iter().enumerate() {
            let (lo, hi) = (self.lo[c], self.hi[c]);
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return bad(format!("channel {name}: clamp [{lo}, {hi}] is not a finite interval with lo < hi"));
            }
        }
        Ok(())
    }

    /// Several tokenizers side by side (e.g. EEG then MEG), as one over all their channels.
    /// They must share `mu`, `levels` and `clamp_percentiles`.
    pub fn concat(parts: &[&Tokenizer]) -> Result<Tokenizer> {
        let first = parts.first().ok_or_else(|| Error::request(Path::new("tokenizer"), "nothing to concatenate"))?;
        let mut out = Tokenizer { channels: vec![], lo: vec![], hi: vec![], ..(*first).clone() };
        for p in parts {
            if p.mu != first.mu || p.levels != first.levels || p.clamp_percentiles != first.clamp_percentiles {
                return Err(Error::request(Path::new("tokenizer"), "cannot concatenate tokenizers with different mu, levels or percentiles"));
            }
            out.channels.extend(p.channels.iter().cloned());
            out.lo.extend(&p.lo);
            out.hi.extend(&p.hi);
        }
        Ok(out)
    }

    /// `ln(1 + µ)`.
    fn log1p_mu(&self) -> f64 {
        self.mu.ln_1p()
    }

    /// Encodes samples `x` of channel `ch` into levels `out` (same length).
    ///
    /// # Panics
    /// If `ch` is out of range or the lengths differ.
    /// The formula, value by value; [`Tokenizer::table_encoder`] gives the same levels faster.
    pub fn encode(&self, ch: usize, x: &[f32], out: &mut [u8]) {
        assert_eq!(x.len(), out.len(), "encode: input and output lengths differ");
        let f = self.level_fn(ch);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f.level(v);
        }
    }

    /// Channel `ch`'s encoding formula with its constants.
    pub(super) fn level_fn(&self, ch: usize) -> LevelFn {
        LevelFn { lo: self.lo[ch] as f64, hi: self.hi[ch] as f64, mu: self.mu, l1: (self.levels - 1) as f64, ln1p_mu: self.log1p_mu() }
    }

    /// The centre of level `k` in scaled units `x' ∈ [-1, 1]`.
    fn centre_scaled(&self, k: u8) -> f64 {
        let l1 = (self.levels - 1) as f64;
        let y = (2.0 * k as f64 - l1) / l1;
        let xp = y.signum() * (y.abs() * self.log1p_mu()).exp_m1() / self.mu;
        xp.clamp(-1.0, 1.0)
    }

    /// Decodes levels `q` of channel `ch` into samples `out` (same length): the centre of each
    /// level's cell. Levels ≥ `levels` are treated as the top level.
    ///
    /// # Panics
    /// If `ch` is out of range or the lengths differ.
    pub fn decode(&self, ch: usize, q: &[u8], out: &mut [f32]) {
        assert_eq!(q.len(), out.len(), "decode: input and output lengths differ");
        let (lo, hi) = (self.lo[ch] as f64, self.hi[ch] as f64);
        let top = (self.levels - 1).min(255) as u8;
        let mut table = [0f64; 256];
        for k in 0..=top {
            let xp = self.centre_scaled(k);
            table[k as usize] = ((1.0 - xp) * lo + (1.0 + xp) * hi) / 2.0;
        }
        for (o, &k) in out.iter_mut().zip(q) {
            *o = table[k.min(top) as usize] as f32;
        }
    }

    /// The proven bound on `|decode(encode(x)) − x|` for `x` in `[lo, hi]` of channel `ch`,
    /// in f64 arithmetic (module docs): `(hi − lo)/2 · (1 + µ|x'|) · ((1 + µ)^h − 1)/µ`,
    /// `h = 1/(L − 1)`. The f32 output adds at most half an f32 ulp of the decoded value.
    pub fn roundtrip_bound(&self, ch: usize, x: f64) -> f64 {
        let (lo, hi, mu) = (self.lo[ch] as f64, self.hi[ch] as f64, self.mu);
        let xp = (2.0 * (x.clamp(lo, hi) - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0);
        let h = 1.0 / (self.levels - 1) as f64;
        (hi - lo) / 2.0 * (1.0 + mu * xp.abs()) * (h * self.log1p_mu()).exp_m1() / mu
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a tokenizer always serializes")
    }

    /// Parses and validates; `what` names the source in errors.
    pub fn from_json(text: &str, what: &Path) -> Result<Tokenizer> {
        let t: Tokenizer = serde_json::from_str(text).map_err(|e| Error::format(what, "tokenizer JSON", e.to_string()))?;
        t.validate(what)?;
        Ok(t)
    }

    /// Writes the tokenizer as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.to_json().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Tokenizer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Tokenizer::from_json(&text, path)
    }
}
