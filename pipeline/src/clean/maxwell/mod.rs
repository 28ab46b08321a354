//! Maxwell filtering (signal-space separation, SSS) equal to MNE-Python's `maxwell_filter`.
//!
//! What is here (issue 14): SSS with MNE's defaults `int_order=8`, `ext_order=3`,
//! `mag_scale=100`, coil integration at accuracy "accurate"; origin given or `auto`;
//! `coord_frame` head or meg; `regularize=None` or `'in'`; bad MEG channels left out of the
//! fit and reconstructed; fine calibration (1-D and 3-D `.dat`), cross-talk (`ct_sparse.fif`),
//! tSSS (`st_duration`, `st_correlation`, MNE's default `st_fixed=True`, `st_overlap` on or off).
//! Measured on MNE's SSS empty-room test file: every case equals MNE 1.13 to ~1e-12 of each
//! channel's RMS (tests/oracle/test_maxwell.py asserts 1e-6).
//! [`find_bad_channels_maxwell`] ([`bads`]): MNE's flat/noisy MEG detection (40 Hz FIR low-pass,
//! chunked `reconstruct='orig'` SSS residual z-scores), lists and per-chunk scores as MNE's.
//!
//! Not yet: movement compensation (`head_pos`), `destination`, eSSS (`extended_proj`),
//! `st_only`, `mag_scale='auto'`, MEG reference
//! channels (CTF/KIT), `skip_by_annotation` (MNE processes each span between
//! `edge`/`BAD_ACQ_SKIP` annotations separately and leaves samples inside `BAD_ACQ_SKIP`
//! unprocessed, tSSS windows restart per span; we treat the recording as one span), the
//! output's `proc_history`/`max_info` records (the DAG's sidecar records the parameters).
//! The DAG step (before the band-pass, `[maxwell]` in brainformer.toml) is in [`site`] and
//! `dag/stages.rs`.
//!
//! Layout: [`coils`] (MNE's `coil_def.dat`, bundled in `pipeline/data/mne/` with its BSD-3
//! notice, and coil points from each channel's `loc`), [`basis`] (the multipole bases,
//! `_sss_basis`), [`geometry`] (dev_head_t + digitized points read from the FIF tree, which
//! our info reader does not keep; the head-shape sphere fit), [`finecal`], [`ctc`], [`sss`]
//! (the operator: regularisation, pseudo-inverse, reconstruction), [`tsss`], and [`Maxwell`],
//! a [`RawReader`] that applies it to whatever is read. Memory: plain SSS is one fixed
//! n_meg × n_good matrix applied per chunk; tSSS adds a low-rank correction per window,
//! computed in one pass over the recording when the reader is made (a few blocks of
//! n_good × st_duration/2 samples in memory at a time).
//!
//! Gotchas for the next person:
//! - The basis follows MNE 1.13's `_sss_basis` expression by expression (√2 on m ≠ 0 columns,
//!   no Condon–Shortley sign on the sine columns). Older MNE releases scaled differently;
//!   this matters only to `regularize='in'`, whose SNR constants (×2 for m = 0, ×0.0025, the
//!   98 %-of-peak cut) are MNE 1.13's, not MaxFilter 2.2's argmax cut.
//! - MNE fits the moments with dev_head_t's rotation taken through a quaternion and back
//!   (`_check_pos` runs even without head positions) but reconstructs with the rotation as
//!   stored (float32, not exactly orthonormal): the two differ by ~1e-8, which moves the
//!   output by ~1e-5 of its RMS. [`Transform::quat_roundtrip`] reproduces it.
//! - `origin='auto'`: MNE computes |p|² of the digitized points in float32 (their stored
//!   dtype) before the least-squares sphere fit; doing it in f64 moves the origin ~1e-10 m.
//! - `coil_scale` (×100 on magnetometers) follows the channel type; `mag_or_fine` (which
//!   decides whether the homogeneous external terms are kept) becomes all-true with fine
//!   calibration — they are different things.
//! - `regularize='in'` removes, one at a time, the internal component with the lowest SNR;
//!   a near tie could in principle resolve differently from MNE's LAPACK SVD.
//! - tSSS: MNE re-orthonormalises the orth bases by QR before the principal angles; we skip
//!   it (same subspaces). We compute the projection from the window's channel Gram matrix
//!   instead of MNE's two time × channel SVDs, and apply it as a low-rank correction in the
//!   internal-moment space ([`tsss`]'s module doc: ~5e-8 of each channel's RMS on MNE's
//!   test file, 2.5e-10 for its 1 s window).
//! - Without `dev_head_t` (empty-room files) only `coord_frame='meg'` is possible, as in MNE.
//! - MNE's `fix_mag_coil_types(use_cal=True)` is applied to the coil types used here
//!   (3022/3023 with cal > 3e-11 → 3024), not to the output's channel info.
//! - The output's MEG bads are cleared (they are reconstructed), MEG projectors dropped, as
//!   MNE's `_reset_meg_bads` / `_remove_meg_projs_comps` do.
//! - There is no head-frame raw recording in ../shared/data (MNE's test_move_anon_raw.fif is
//!   not there): head-frame tests use an MNE-written copy of the empty-room file with the
//!   dev_head_t of `test-ave.fif.gz`, so the head-frame MaxFilter references are untested.

pub mod bads;
pub mod basis;
pub mod coils;
pub mod ctc;
pub mod finecal;
/// The FIF head geometry (`formats::fif::geometry`), at its old path.
pub use crate::formats::fif::geometry;
mod gemm;
/// Where the dataset keeps the site files (a BIDS question, so it lives in `bids`).
pub use crate::bids::maxwell_site as site;
pub mod sss;
pub mod tsss;

use std::path::Path;

pub use bads::{find_bad_channels_maxwell, FindBadsParams, MaxwellBads, MaxwellBadsScores};
pub use geometry::{read_head_geometry, HeadGeometry, Transform};
pub use sss::{sss_operator, BadCondition, CoordFrame, MaxwellParams, Origin, Regularize, SssOperator};

use crate::{RawReader, RecordingInfo, Result};

/// A reader whose MEG channels are the Maxwell-filtered ones; other channels pass through.
/// Reads may come from several threads at once (the cleaning chain reads time chunks in
/// parallel).
pub struct Maxwell<'a> {
    inner: &'a dyn RawReader,
    info: RecordingInfo,
    pub operator: SssOperator,
    /// Row of `operator.op` of each recording channel (None: not MEG, passed through).
    row_of: Vec<Option<usize>>,
    st: Option<Tsss>,
}

/// tSSS windows and every window's correction ([`tsss::window_correction`]): n_meg × k and
/// k × n_good, k the number of time courses the window removes (a few kB each), computed
/// when the reader is made: one pass over the good MEG channels.
struct Tsss {
    windows: tsss::Windows,
    corrections: Vec<tsss::Correction>,
}

impl<'a> Maxwell<'a> {
    /// Prepares the filter for a FIF recording opened as `inner` from `path` (the head
    /// geometry is read from `path`).
    pub fn open(inner: &'a dyn RawReader, path: &Path, params: &MaxwellParams) -> Result<Maxwell<'a>> {
        let geom = read_head_geometry(path)?;
        Self::with_geometry(inner, &geom, params)
    }

    pub fn with_geometry(inner: &'a dyn RawReader, geom: &HeadGeometry, params: &MaxwellParams) -> Result<Maxwell<'a>> {
        let src = inner.info();
        let operator = sss_operator(&src.path, src, geom, params)?;
        let mut row_of = vec![None; src.channels.len()];
        for (r, &c) in operator.meg_picks.iter().enumerate() {
            row_of[c] = Some(r);
        }
        let mut info = src.clone();
        let meg_names: Vec<&str> = operator.meg_picks.iter().map(|&c| src.channels[c].name.as_str()).collect();
        info.bads.retain(|b| !meg_names.contains(&b.as_str()));
        info.projs.retain(|p| !p.ch_names.iter().any(|n| meg_names.contains(&n.as_str())));
        let st = match params.st_duration {
            None => None,
            Some(d) => {
                // MNE: int(round(st_duration * sfreq)) samples (Python rounds half to even),
                // at most the data length + 1; a window longer than the data is not projected.
                let len = (d * src.sfreq).round_ties_even();
                if !(len > 0.0 && len <= src.n_samples as f64 + 1.0) {
                    return Err(crate::Error::request(
                        &src.path,
                        format!("st_duration ({d} s) must be between 0 and the data duration ({:.1} s)", src.duration()),
                    ));
                }
                let len = len as usize;
                // MNE: overlapping windows only when a full window fits (`tsss_valid`).
                let valid = len <= src.n_samples;
                let windows = tsss::Windows::new(src.n_samples, len.min(src.n_samples), params.st_overlap && valid)
                    .map_err(|e| crate::Error::request(&src.path, format!("st_duration {d} s at {} Hz: {e}", src.sfreq)))?;
                // A window longer than the data is not projected: plain SSS.
                if valid {
                    let corrections = tsss_corrections(inner, &operator, &windows, params.st_correlation)?;
                    Some(Tsss { windows, corrections })
                } else {
                    None
                }
            }
        };
        Ok(Maxwell { inner, info, operator, row_of, st })
    }

    /// Reads `picks` over `start..stop` into `out` (row-major, one row per pick): one read of
    /// the inner recording (the passed-through channels and the good MEG channels), then one
    /// product per operator span (the whole request for SSS, each overlapped window for tSSS).
    fn read(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        let n = stop - start;
        self.info.check_request(picks, start, stop, out.len())?;
        let meg: Vec<(usize, usize)> = picks.iter().enumerate().filter_map(|(i, &c)| self.row_of[c].map(|r| (i, r))).collect();
        let passed: Vec<(usize, usize)> = picks.iter().enumerate().filter(|(_, &c)| self.row_of[c].is_none()).map(|(i, &c)| (i, c)).collect();
        let mut inner_picks: Vec<usize> = passed.iter().map(|&(_, c)| c).collect();
        let g0 = inner_picks.len();
        if !meg.is_empty() {
            inner_picks.extend_from_slice(&self.operator.good_picks);
        }
        let mut buf = vec![0.0; inner_picks.len() * n];
        self.inner.read_into_f64(&inner_picks, start, stop, &mut buf)?;
        for (k, &(i, _)) in passed.iter().enumerate() {
            out[i * n..(i + 1) * n].copy_from_slice(&buf[k * n..(k + 1) * n]);
        }
        if meg.is_empty() {
            return Ok(());
        }
        let x = &buf[g0 * n..];
        let rows: Vec<usize> = meg.iter().map(|&(_, r)| r).collect();
        // The internal moments of the whole read (MNE's pinv_in · data), minus each tSSS
        // window's correction on the samples it covers, weighted (MNE's overlap-add: the
        // weights sum to one, so the uncorrected term needs none); then S_in · moments.
        let op = &self.operator;
        let n_in = op.op_right.nrows();
        let mut m = vec![0.0; n_in * n];
        gemm::mul_rows(&op.op_right, x, n, n, &mut m);
        if let Some(st) = &self.st {
            let (mut z, mut dm) = (Vec::new(), Vec::new());
            for (wi, &(a, b)) in st.windows.spans.iter().enumerate() {
                let (lo, hi) = (a.max(start), b.min(stop));
                let c = &st.corrections[wi];
                if lo >= hi || c.rank() == 0 {
                    continue;
                }
                let len = hi - lo;
                z.resize(c.rank() * len, 0.0);
                gemm::mul_rows(&c.vt, &x[lo - start..], len, n, &mut z);
                dm.resize(n_in * len, 0.0);
                gemm::mul_rows(&c.u, &z, len, len, &mut dm);
                let weights = st.windows.weights(wi).map(|w| &w[lo - a..hi - a]);
                for k in 0..n_in {
                    let dst = &mut m[k * n + (lo - start)..k * n + (hi - start)];
                    let src = &dm[k * len..(k + 1) * len];
                    match weights {
                        None => dst.iter_mut().zip(src).for_each(|(d, v)| *d -= v),
                        Some(w) => dst.iter_mut().zip(src).zip(w).for_each(|((d, v), w)| *d -= w * v),
                    }
                }
            }
        }
        let mut y = vec![0.0; rows.len() * n];
        gemm::mul_rows(&op.op_left.select_rows(&rows), &m, n, n, &mut y);
        for (k, &(i, _)) in meg.iter().enumerate() {
            out[i * n..(i + 1) * n].copy_from_slice(&y[k * n..(k + 1) * n]);
        }
        Ok(())
    }
}

/// Every tSSS window's correction, in one pass over the good MEG channels: the Gram matrix of
/// each block between window edges is computed once (in parallel, a batch of windows at a
/// time so memory stays at a few blocks) and summed into the windows that cover it.
fn tsss_corrections(inner: &dyn RawReader, op: &SssOperator, windows: &tsss::Windows, corr: f64) -> Result<Vec<tsss::Correction>> {
    use rayon::prelude::*;
    let info = inner.info();
    let edges = windows.block_edges();
    let block_of = |sample: usize| edges.binary_search(&sample).expect("window edges are block edges");
    let good = &op.good_picks;
    let block_gram = |bi: usize| -> Result<nalgebra::DMatrix<f64>> {
        let (a, b) = (edges[bi], edges[bi + 1]);
        let mut raw = vec![0.0; good.len() * (b - a)];
        inner.read_into_f64(good, a, b, &mut raw)?;
        Ok(gemm::gram_rows(&raw, good.len(), b - a, b - a))
    };
    let n_w = windows.spans.len();
    let batch = (2 * rayon::current_num_threads()).max(2);
    let mut grams: std::collections::BTreeMap<usize, nalgebra::DMatrix<f64>> = Default::default();
    let mut out = Vec::with_capacity(n_w);
    for w0 in (0..n_w).step_by(batch) {
        let w1 = (w0 + batch).min(n_w);
        let (b0, b1) = (block_of(windows.spans[w0].0), block_of(windows.spans[w1 - 1].1));
        let missing: Vec<usize> = (b0..b1).filter(|b| !grams.contains_key(b)).collect();
        let computed: Vec<nalgebra::DMatrix<f64>> = missing.par_iter().map(|&bi| block_gram(bi)).collect::<Result<_>>()?;
        grams.extend(missing.into_iter().zip(computed));
        let batch_out: Vec<tsss::Correction> = (w0..w1)
            .into_par_iter()
            .map(|wi| {
                let (a, b) = windows.spans[wi];
                let mut xg = grams[&block_of(a)].clone();
                for bi in block_of(a) + 1..block_of(b) {
                    xg += &grams[&bi];
                }
                tsss::window_correction(op, &xg, b - a, corr).ok_or_else(|| {
                    let sf = info.sfreq;
                    crate::Error::request(
                        &info.path,
                        format!("tSSS window {:.1}–{:.1} s: non-finite MEG samples (or a decomposition that did not converge)", a as f64 / sf, b as f64 / sf),
                    )
                })
            })
            .collect::<Result<_>>()?;
        out.extend(batch_out);
        if w1 < n_w {
            let keep_from = block_of(windows.spans[w1].0);
            grams.retain(|&bi, _| bi >= keep_from);
        }
    }
    Ok(out)
}

impl RawReader for Maxwell<'_> {
    fn info(&self) -> &RecordingInfo {
        &self.info
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        self.read(picks, start, stop, out)
    }
}

#[cfg(test)]
mod tests;
