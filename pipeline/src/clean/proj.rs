//! SSP projection, applied on request: MNE's `_make_projector` and `raw.apply_proj()`.
//!
//! The projector is `P = I - U Uᵀ`, where `U` spans the projection vectors restricted to the
//! recording's channels, bad channels zeroed, each vector normalised, re-orthogonalised by SVD
//! and singular directions below 1 % of the largest dropped, exactly as MNE builds it.

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::recording::{RawReader, RecordingInfo};

/// The dense `nchan × nchan` projector for every projector in `info` (active or not, as
/// `apply_proj` uses), or `None` when there is nothing to project.
pub fn make_projector(info: &RecordingInfo) -> Result<Option<DMatrix<f64>>> {
    let nchan = info.n_channels();
    let nvec: usize = info.projs.iter().map(|p| p.vectors.len()).sum();
    if nvec == 0 {
        return Ok(None);
    }
    let mut vecs = DMatrix::<f64>::zeros(nchan, nvec);
    let mut col = 0;
    let mut nonzero = 0;
    for p in &info.projs {
        let mut seen = std::collections::HashSet::new();
        if !p.ch_names.iter().all(|n| seen.insert(n)) {
            return Err(Error::format(&info.path, info.format, format!("projector {:?} lists a channel twice", p.desc)));
        }
        let pairs: Vec<(usize, usize)> = info
            .channels
            .iter()
            .enumerate()
            .filter(|(_, c)| !info.bads.contains(&c.name))
            .filter_map(|(ci, c)| p.ch_names.iter().position(|n| *n == c.name).map(|vi| (ci, vi)))
            .collect();
        for v in &p.vectors {
            for &(ci, vi) in &pairs {
                vecs[(ci, col)] = v[vi];
            }
            let norm = vecs.column(col).norm();
            if norm > 0.0 {
                vecs.column_mut(col).unscale_mut(norm);
                nonzero += 1;
            }
            col += 1;
        }
    }
    if nonzero == 0 {
        return Ok(None);
    }
    let svd = vecs.svd(true, false);
    let u = svd.u.expect("requested U");
    let s = &svd.singular_values;
    // nalgebra does not sort singular values; MNE keeps those above 1 % of the largest.
    let smax = s.iter().cloned().fold(0.0, f64::max);
    let keep: Vec<usize> = (0..s.len()).filter(|&i| s[i] / smax > 1e-2).collect();
    if keep.len() >= nchan {
        return Err(Error::request(&info.path, format!("{} projectors on {nchan} channels leave no signal", keep.len())));
    }
    let uk = u.select_columns(&keep);
    Ok(Some(DMatrix::identity(nchan, nchan) - &uk * uk.transpose()))
}

/// A reader that applies the projector to what it reads (MNE's `raw.apply_proj()`): each
/// requested channel is a combination of the channels its projector row touches.
pub struct Projected<'a> {
    inner: &'a dyn RawReader,
    proj: DMatrix<f64>,
}

impl<'a> Projected<'a> {
    /// `None` when the recording has no projectors (read `inner` directly then).
    pub fn new(inner: &'a dyn RawReader) -> Result<Option<Self>> {
        Ok(make_projector(inner.info())?.map(|proj| Projected { inner, proj }))
    }

    fn read(&self, picks: &[usize], start: usize, stop: usize) -> Result<Vec<f64>> {
        let info = self.inner.info();
        info.check_request(picks, start, stop, picks.len() * (stop - start))?;
        let n = stop - start;
        // Source channels any requested row needs.
        let mut needed: Vec<usize> = (0..info.n_channels())
            .filter(|&j| picks.iter().any(|&i| self.proj[(i, j)] != 0.0))
            .collect();
        needed.sort_unstable();
        let src = self.inner.read_f64(&needed, start, stop)?;
        let mut out = vec![0.0; picks.len() * n];
        for (row, &i) in picks.iter().enumerate() {
            let dst = &mut out[row * n..(row + 1) * n];
            for (k, &j) in needed.iter().enumerate() {
                let w = self.proj[(i, j)];
                if w != 0.0 {
                    for (d, s) in dst.iter_mut().zip(src.row(k)) {
                        *d += w * s;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl RawReader for Projected<'_> {
    fn info(&self) -> &RecordingInfo {
        self.inner.info()
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        let v = self.read(picks, start, stop)?;
        out.copy_from_slice(&v);
        Ok(())
    }
    // f32 reads: the trait's default (this f64 read, narrowed).
}
