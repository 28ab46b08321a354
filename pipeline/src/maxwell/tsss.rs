//! Temporal SSS (tSSS, `st_duration=` of MNE's `maxwell_filter`): per window of
//! `st_duration` samples, find the time courses shared by the internal reconstruction and the
//! residual (principal angles with cosine ≥ `st_correlation`) and project them out of the
//! good channels' data before the SSS reconstruction (MNE's `_do_tSSS_on_avg_trans` +
//! `_overlap_projector`, with its default `st_fixed=True`, no overlap: boxcar windows).

use nalgebra::DMatrix;

/// MNE's window split (`_COLA` with boxcar windows and no overlap): starts every `len`
/// samples while a full window fits; the tail shorter than `len` is lumped into the last one.
pub fn windows(n_total: usize, len: usize) -> Vec<(usize, usize)> {
    let len = len.min(n_total).max(1);
    let mut w: Vec<(usize, usize)> = (0..=n_total - len).step_by(len).map(|s| (s, s + len)).collect();
    if let Some(last) = w.last_mut() {
        last.1 = n_total;
    }
    w
}

/// Orthonormal basis of the column space of `a` (MNE's `_orth_overwrite`: left singular
/// vectors whose singular value exceeds max(M, N)·s_max·eps).
fn orth(a: &DMatrix<f64>) -> DMatrix<f64> {
    let (m, n) = a.shape();
    let svd = a.clone().svd(true, false);
    let u = svd.u.expect("U");
    let s = svd.singular_values;
    let smax = s.iter().cloned().fold(0.0, f64::max);
    let tol = m.max(n) as f64 * smax * f64::EPSILON;
    let keep: Vec<usize> = (0..s.len()).filter(|&i| s[i] > tol).collect();
    u.select_columns(&keep)
}

fn frob(a: &DMatrix<f64>) -> f64 {
    let n = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n == 0.0 {
        1.0
    } else {
        n
    }
}

/// MNE's `_overlap_projector(data_int, data_res, corr)`: inputs channels × time, output
/// time × k, the temporal directions to remove. MNE re-orthonormalises the orth bases by QR
/// first; the bases are orthonormal already, so the spanned subspaces — and the projector
/// V Vᵀ — are the same without it.
pub fn overlap_projector(data_int: &DMatrix<f64>, data_res: &DMatrix<f64>, corr: f64) -> DMatrix<f64> {
    let q_int = orth(&(data_int / frob(data_int)).transpose());
    let q_res = orth(&(data_res / frob(data_res)).transpose());
    let w = data_int.ncols();
    if q_int.ncols() == 0 || q_res.ncols() == 0 {
        return DMatrix::zeros(w, 0);
    }
    let c = q_int.transpose() * &q_res;
    let svd = c.svd(false, true);
    let vt = svd.v_t.expect("V^T");
    let keep: Vec<usize> = (0..svd.singular_values.len()).filter(|&i| svd.singular_values[i] >= corr).collect();
    if keep.is_empty() {
        return DMatrix::zeros(w, 0);
    }
    q_res * vt.select_rows(&keep).transpose()
}

/// Removes the temporal directions `v` (time × k) from `y` (channels × time) in place:
/// y − (y v) vᵀ, Eq. 12 of Taulu & Simola 2006.
pub fn project_out(y: &mut DMatrix<f64>, v: &DMatrix<f64>) {
    if v.ncols() == 0 {
        return;
    }
    let yv = &*y * v;
    *y -= yv * v.transpose();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_lump_the_tail_like_mne() {
        assert_eq!(windows(1201, 1200), vec![(0, 1201)]);
        assert_eq!(windows(17, 4), vec![(0, 4), (4, 8), (8, 12), (12, 17)]);
        assert_eq!(windows(10, 20), vec![(0, 10)]);
    }
}
