//! Temporal SSS (tSSS, `st_duration=` of MNE's `maxwell_filter`): per window of
//! `st_duration` samples, find the time courses shared by the internal reconstruction and the
//! residual (principal angles with cosine ≥ `st_correlation`) and project them out of the
//! good channels' data before the SSS reconstruction (MNE's `_do_tSSS_on_avg_trans` +
//! `_overlap_projector`, with its default `st_fixed=True`; the windows are [`Windows`]).
//!
//! MNE takes two SVDs of time × channel matrices per window (LAPACK's gesdd on 11,000 × 306
//! for a 10 s window at 1.1 kHz). We never form the temporal bases: every quantity the
//! projection needs is a product of the window's channel Gram matrix X Xᵀ, and the window's
//! whole effect is a low-rank correction of plain SSS ([`window_correction`]): the output is
//! one SSS product over the whole read plus a rank-k term per window. With overlapping
//! windows each half window's Gram is computed once and shared by the two windows covering
//! it ([`Windows::block_edges`]), so every sample costs one Gram update and one SSS product,
//! whatever the overlap.
//!
//! With A = op_in·Y and B = op_resid·Y (Y the cross-talk-corrected data): an orthonormal basis
//! of A's row space is Q_A = (L_A Y)ᵀ K_A, K_A = W Λ^{-1/2} from the eigenpairs of
//! L_A Y Yᵀ L_Aᵀ, where A = Q·(L_A Y) with Q orthonormal (L_A: the internal rows of the
//! pseudo-inverse times R of a QR of the internal basis, n_in × n_good; so the eigenproblem
//! is n_in-sized, not n_good, with A's own eigenvalues) — the same for B with L_B (rank of
//! the residual × n_good); the principal cosines are the singular values of
//! Q_Aᵀ Q_B = K_Aᵀ (L_A Y Yᵀ L_Bᵀ) K_B; the directions to remove are V = Q_B V_h = Yᵀ L_Bᵀ K_V,
//! and Y − (Y V) Vᵀ = (I − Y Yᵀ L_Bᵀ K_V K_Vᵀ L_B) Y.
//! Ranks: MNE keeps singular values above max(n_times, n_chan)·eps·s_max; we apply that
//! tolerance to the Gram eigenvalues (s²) of L_A Y and L_B Y (the singular values of A and B),
//! below which f64 cannot resolve them. The two
//! agree unless a genuine singular value lies between 2.4e-12 and 1.6e-6 of the largest
//! (10 s windows), which noise-bearing recordings do not produce (exactly rank-deficient
//! data gives numerical zeros, dropped by both). Accuracy: squaring costs precision in the
//! weak directions, eps·κ² with κ the spread of a window's internal or residual singular
//! values: MNE's SSS test recording gives 5e-8 of each channel's RMS (MNE vs MNE's own
//! two SVD routes differ by ~1e-12), inside the 1e-6 the tests ask.

use nalgebra::DMatrix;

use super::sss::SssOperator;

/// MNE's tSSS windows (`_COLA` in `mne/_ola.py`) and the weight each gives its output:
/// windows of `len` samples every `step` (starts while a full window fits; the tail is
/// lumped into the last one), each window's projected data multiplied by its weights and
/// added. With `st_overlap` (MNE ≥ 1.11's default) the windows overlap by half and the
/// weights are a Hann window normalised to sum to one (periodic Hann; an odd `len` does not
/// add up to a constant and MNE refuses it, as we do); the first window takes the missing
/// left half and the last the missing right part so every sample's weights sum to one.
/// Without overlap: boxcar windows, weight one.
#[derive(Clone, Debug)]
pub struct Windows {
    pub spans: Vec<(usize, usize)>,
    /// None: boxcar (every weight 1). Some: (first window, middle windows, last window).
    weights: Option<(Vec<f64>, Vec<f64>, Vec<f64>)>,
}

impl Windows {
    /// `len` ≤ `n_total`, both > 0. Errors (as MNE) when overlapping windows of an odd length
    /// would not sum to a constant.
    pub fn new(n_total: usize, len: usize, overlap: bool) -> std::result::Result<Windows, String> {
        assert!(len > 0 && len <= n_total);
        let n_overlap = if overlap { len / 2 } else { 0 };
        let step = len - n_overlap;
        let mut spans: Vec<(usize, usize)> = (0..=n_total - len).step_by(step).map(|s| (s, s + len)).collect();
        spans.last_mut().expect("len <= n_total").1 = n_total;
        if !overlap {
            return Ok(Windows { spans, weights: None });
        }
        // scipy's get_window('hann', len, fftbins=(len - 1) % 2 == 1): periodic for even len.
        let periodic = (len - 1) % 2 == 1;
        let denom = if periodic { len as f64 } else { (len - 1).max(1) as f64 };
        let mut h: Vec<f64> = (0..len).map(|k| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / denom).cos()).collect();
        if len == 1 {
            h = vec![1.0];
        }
        let c = cola_constant(&h, step).ok_or_else(|| {
            format!("a tSSS window of {len} samples with step {step} does not overlap-add to a constant (MNE refuses it too): choose st_duration so that st_duration × sfreq is even, or turn st_overlap off")
        })?;
        for v in &mut h {
            *v /= c;
        }
        let window_weights = |wi: usize| -> Vec<f64> {
            let (a, b) = spans[wi];
            let this_len = b - a;
            let mut w = vec![0.0; this_len];
            w[..len].copy_from_slice(&h);
            if wi == spans.len() - 1 {
                for shift in (step..this_len).step_by(step) {
                    let n_use = this_len - shift;
                    for j in 0..n_use.min(len) {
                        w[shift + j] += h[j];
                    }
                }
            }
            if wi == 0 {
                let mut n_use = len - step;
                while n_use > 0 {
                    for j in 0..n_use {
                        w[j] += h[len - n_use + j];
                    }
                    n_use = n_use.saturating_sub(step);
                }
            }
            w
        };
        let first = window_weights(0);
        let last = window_weights(spans.len() - 1);
        Ok(Windows { spans, weights: Some((first, h.clone(), last)) })
    }

    /// The sample boundaries at which any window starts or ends, ascending: consecutive edges
    /// bound the blocks every window is a union of (half windows with overlap, the windows
    /// themselves without), so a window's Gram matrix is the sum of its blocks' and each
    /// sample enters one Gram only.
    pub fn block_edges(&self) -> Vec<usize> {
        let mut e: Vec<usize> = self.spans.iter().flat_map(|&(a, b)| [a, b]).collect();
        e.sort_unstable();
        e.dedup();
        e
    }

    /// Weights of window `wi`, one per sample from its start (None: boxcar, every weight 1).
    pub fn weights(&self, wi: usize) -> Option<&[f64]> {
        let (first, mid, last) = self.weights.as_ref()?;
        Some(if wi == 0 {
            first
        } else if wi == self.spans.len() - 1 {
            last
        } else {
            mid
        })
    }
}

/// MNE's `_check_cola`: the median of the window's bin sums at `step`, or None when they
/// deviate from it by more than 1e-10.
fn cola_constant(w: &[f64], step: usize) -> Option<f64> {
    let n = w.len();
    let mut bins = vec![0.0; step];
    for ii in 0..n / step {
        for (k, b) in bins.iter_mut().enumerate() {
            *b += w[ii * step + k];
        }
    }
    for k in 0..n % step {
        bins[k] += w[n - n % step + k];
    }
    let mut sorted = bins.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let m = sorted.len();
    let median = if m % 2 == 1 { sorted[m / 2] } else { 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]) };
    let dev = bins.iter().map(|b| (b - median).abs()).fold(0.0, f64::max);
    (dev <= 1e-10).then_some(median)
}

/// One window's tSSS as a low-rank correction of plain SSS: over the window, MEG output =
/// `op_left·(op_right·x − u·(vt·x))` (x the good channels' raw data, `op_left·op_right` the
/// SSS operator with cross-talk, [`SssOperator::op_left`]), `u` n_in × k and `vt` k × n_good, k the number of time courses removed (often a handful;
/// zero when none reach `corr`).
#[derive(Clone, Debug)]
pub struct Correction {
    pub u: DMatrix<f64>,
    pub vt: DMatrix<f64>,
}

impl Correction {
    pub fn none(n_in: usize, n_good: usize) -> Correction {
        Correction { u: DMatrix::zeros(n_in, 0), vt: DMatrix::zeros(0, n_good) }
    }
    pub fn rank(&self) -> usize {
        self.vt.nrows()
    }
}

/// tSSS on one window. `xg` is the window's Gram matrix X Xᵀ of the good channels (raw,
/// before cross-talk C), `n_times` its length. None when the window holds non-finite samples
/// (nalgebra's decompositions would not terminate on them) or a decomposition does not
/// converge.
///
/// The spaces are whitened through the operator's left factors ([`SssOperator::l_in`],
/// `l_resid`): M_A = l_in·C and M_B = l_resid·C give the internal and residual time courses'
/// Grams M X Xᵀ Mᵀ in n_in and rank(resid) dimensions instead of n_good; the directions to
/// remove are V = Xᵀ M_Bᵀ K_V, and SSS after removing them from Y = C X is
/// op_left·(op_right·X − (op_right·X Xᵀ M_Bᵀ K_V)(K_Vᵀ M_B)·X).
pub fn window_correction(op: &SssOperator, xg: &DMatrix<f64>, n_times: usize, corr: f64) -> Option<Correction> {
    if xg.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n_good = xg.nrows();
    let n_in = op.op_right.nrows();
    if !corr.is_finite() {
        return Some(Correction::none(n_in, n_good));
    }
    let (ma, mb) = match &op.ctc {
        Some(c) => (&op.l_in * c, &op.l_resid * c),
        None => (op.l_in.clone(), op.l_resid.clone()),
    };
    let xg_mbt = xg * mb.transpose(); // X Xᵀ M_Bᵀ
    let ga = &ma * xg * ma.transpose();
    let gb = &mb * &xg_mbt;
    let gab = &ma * &xg_mbt;
    let tol_len = n_times.max(n_good);
    let (ka, kb) = (whitener(&ga, tol_len)?, whitener(&gb, tol_len)?);
    if ka.ncols() == 0 || kb.ncols() == 0 {
        return Some(Correction::none(n_in, n_good));
    }
    let cosines = (ka.transpose() * gab * &kb).try_svd(false, true, f64::EPSILON, 1_000_000)?;
    let vt = cosines.v_t.expect("V^T");
    let keep: Vec<usize> = (0..cosines.singular_values.len()).filter(|&i| cosines.singular_values[i] >= corr).collect();
    if keep.is_empty() {
        return Some(Correction::none(n_in, n_good));
    }
    let kv = kb * vt.select_rows(&keep).transpose(); // rank(resid) × k
    Some(Correction { u: &op.op_right * (xg_mbt * &kv), vt: kv.transpose() * mb })
}

/// K with Kᵀ G K = I over G's range: eigenvectors of the Gram matrix G (symmetric, positive
/// semi-definite) whose eigenvalue exceeds `len`·eps·λ_max, scaled by λ^{-1/2}.
fn whitener(g: &DMatrix<f64>, len: usize) -> Option<DMatrix<f64>> {
    let sym = (g + g.transpose()) * 0.5;
    let eig = sym.try_symmetric_eigen(f64::EPSILON, 1_000_000)?;
    let lmax = eig.eigenvalues.iter().cloned().fold(0.0, f64::max);
    if lmax <= 0.0 || !lmax.is_finite() {
        return Some(DMatrix::zeros(g.nrows(), 0));
    }
    let tol = len as f64 * f64::EPSILON * lmax;
    let keep: Vec<usize> = (0..eig.eigenvalues.len()).filter(|&i| eig.eigenvalues[i] > tol).collect();
    let mut k = eig.eigenvectors.select_columns(&keep);
    for (j, &i) in keep.iter().enumerate() {
        k.column_mut(j).unscale_mut(eig.eigenvalues[i].sqrt());
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_lump_the_tail_like_mne() {
        assert_eq!(Windows::new(1201, 1200, false).unwrap().spans, vec![(0, 1201)]);
        assert_eq!(Windows::new(17, 4, false).unwrap().spans, vec![(0, 4), (4, 8), (8, 12), (12, 17)]);
        assert_eq!(Windows::new(27, 10, true).unwrap().spans, vec![(0, 10), (5, 15), (10, 20), (15, 27)]);
        assert!(Windows::new(100, 7, true).unwrap_err().contains("even"));
        assert_eq!(Windows::new(27, 10, true).unwrap().block_edges(), vec![0, 5, 10, 15, 20, 27]);
        assert_eq!(Windows::new(17, 4, false).unwrap().block_edges(), vec![0, 4, 8, 12, 17]);
    }

    #[test]
    fn overlapping_weights_sum_to_one_everywhere() {
        for (n, len) in [(27, 10), (1201, 360), (1201, 1200), (5000, 1100), (10, 10), (11, 2)] {
            let w = Windows::new(n, len, true).unwrap();
            let mut sum = vec![0.0; n];
            for (wi, &(a, b)) in w.spans.iter().enumerate() {
                for t in a..b {
                    sum[t] += w.weights(wi).expect("overlapping")[t - a];
                }
            }
            assert!(sum.iter().all(|s| (s - 1.0).abs() < 1e-12), "n {n} len {len}: {:?}", &sum[..10.min(n)]);
        }
    }

    // MNE's `_overlap_projector` transliterated (SVD of time × channel matrices): the
    // reference the Gram formulation above is checked against.
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
    fn overlap_projector(data_int: &DMatrix<f64>, data_res: &DMatrix<f64>, corr: f64) -> DMatrix<f64> {
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
    fn project_out(y: &mut DMatrix<f64>, v: &DMatrix<f64>) {
        if v.ncols() == 0 {
            return;
        }
        let yv = &*y * v;
        *y -= yv * v.transpose();
    }

    /// A small SSS-like operator set: op_in / op_resid complementary projectors of rank r_in
    /// and n − r_in − r_out, op_sss = op_in, optional cross-talk.
    fn toy_operator(n: usize, r_in: usize, r_out: usize, seed: u64, ctc: bool) -> SssOperator {
        let mut s = seed;
        let mut rnd = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let basis = DMatrix::from_fn(n, n, |_, _| rnd()).qr().q();
        let bi = basis.columns(0, r_in).into_owned();
        let bo = basis.columns(r_in, r_out).into_owned();
        let op_in = &bi * bi.transpose();
        let op_resid = DMatrix::identity(n, n) - &op_in - &bo * bo.transpose();
        let ctc = ctc.then(|| DMatrix::identity(n, n) + DMatrix::from_fn(n, n, |_, _| 0.02 * rnd()));
        let op = match &ctc {
            Some(c) => &op_in * c,
            None => op_in.clone(),
        };
        // op_in = bi·biᵀ with bi orthonormal: l_in = biᵀ; l_resid as the SSS code derives it.
        let l_in = bi.transpose();
        let l_resid = crate::clean::maxwell::sss::residual_rows(&op_resid, &vec![1.0; n]);
        let op_right = match &ctc {
            Some(c) => bi.transpose() * c,
            None => bi.transpose(),
        };
        SssOperator {
            meg_picks: (0..n).collect(), good_picks: (0..n).collect(), op, op_left: bi.clone(), op_right, op_sss: op_in.clone(),
            op_orig: op_in.clone(), ctc, op_in, op_resid, l_in, l_resid, origin: [0.0; 3], origin_head: [0.0; 3],
            reg_moments: vec![], n_use_in: r_in, cond: 1.0,
        }
    }

    #[test]
    fn gram_window_correction_equals_mne_svd_projection() {
        for (ctc, corr) in [(false, 0.98), (true, 0.98), (true, 0.9), (false, f64::INFINITY)] {
            let (n, t) = (24, 400);
            let op = toy_operator(n, 8, 3, 7, ctc);
            // Data: noise plus a few time courses shared by the internal and residual spaces
            // (what tSSS removes), at amplitudes 1e3 and 1e4 times the noise. The Gram route's
            // error grows as eps·κ² (κ: largest over smallest singular value of a window's
            // internal or residual part), ~1e-9 here; a κ of 1e5 would give ~1e-5.
            let mut s = 99u64;
            let mut rnd = move || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            let shared = DMatrix::from_fn(2, t, |k, j| ((j as f64) * 0.05 * (k + 1) as f64).sin() * 10f64.powi(k as i32));
            let mix = DMatrix::from_fn(n, 2, |_, _| rnd());
            let x = DMatrix::from_fn(n, t, |_, _| 1e-2 * rnd()) + mix * shared;
            let xg = &x * x.transpose();
            let c = window_correction(&op, &xg, t, corr).unwrap();
            assert_eq!(c.rank() > 0, corr.is_finite());
            let mut y = match &op.ctc { Some(c) => c * &x, None => x.clone() };
            if corr.is_finite() {
                let v = overlap_projector(&(&op.op_in * &y), &(&op.op_resid * &y), corr);
                assert!(v.ncols() > 0, "the shared courses are found");
                project_out(&mut y, &v);
            }
            let want = &op.op_sss * y;
            let got = &op.op_left * (&op.op_right * &x - &c.u * (&c.vt * &x));
            assert!((&op.op_left * &op.op_right - &op.op).abs().max() < 1e-12);
            let err = (&got - &want).abs().max() / want.abs().max();
            assert!(err < 1e-8, "ctc {ctc} corr {corr}: relative error {err:e}");
        }
    }
}
