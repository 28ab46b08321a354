//! The SSS operator (MNE's `_prep_maxwell_filter` + `_get_decomp` + `_MoveComp` for a fixed
//! head position): fit the multipole moments on the good MEG channels, keep the internal
//! ones, reconstruct every MEG channel (bads included) from them. Without tSSS and movement
//! compensation this is one fixed matrix `op` (n_meg × n_good), applied to any chunk of data.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;

use super::basis::{degrees_orders, n_moments, trans_sss_basis};
use super::coils::{Coils, ACCURACY_ACCURATE};
use super::ctc::{cross_talk_for, read_cross_talk};
use super::finecal::{read_fine_calibration, update_sensor_geometry};
use super::geometry::{fit_sphere_to_headshape, HeadGeometry};
use crate::{ChannelInfo, ChannelKind, Error, RecordingInfo, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordFrame {
    Head,
    Meg,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Origin {
    /// Head frame: MNE's sphere fit to the digitized head shape; device frame: (0, 0, 0).
    Auto,
    /// Metres, in the `coord_frame`.
    Point([f64; 3]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regularize {
    None,
    /// MNE's `regularize='in'`: drop internal components by the information criterion.
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadCondition {
    Error,
    Ignore,
}

impl std::str::FromStr for Origin {
    type Err = String;
    /// `auto` or `X,Y,Z` in metres.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim() == "auto" {
            return Ok(Origin::Auto);
        }
        let v: Vec<f64> = s.split(',').map(|t| t.trim().parse::<f64>()).collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("origin is `auto` or X,Y,Z in metres, got {s:?}"))?;
        match v[..] {
            [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok(Origin::Point([x, y, z])),
            _ => Err(format!("origin is `auto` or three finite numbers X,Y,Z in metres, got {s:?}")),
        }
    }
}

impl std::str::FromStr for CoordFrame {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "head" => Ok(CoordFrame::Head),
            "meg" => Ok(CoordFrame::Meg),
            _ => Err(format!("coord_frame is head or meg, got {s:?}")),
        }
    }
}

impl std::str::FromStr for Regularize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "in" => Ok(Regularize::In),
            "none" => Ok(Regularize::None),
            _ => Err(format!("regularize is in or none, got {s:?}")),
        }
    }
}

/// The parameters of MNE's `maxwell_filter` we implement (its defaults in [`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MaxwellParams {
    pub origin: Origin,
    pub coord_frame: CoordFrame,
    pub int_order: usize,
    pub ext_order: usize,
    pub regularize: Regularize,
    pub mag_scale: f64,
    pub bad_condition: BadCondition,
    /// Fine calibration file (`sss_cal.dat`, 1-D or 3-D), MNE's `calibration=`.
    pub calibration: Option<PathBuf>,
    /// Cross-talk matrix file (`ct_sparse.fif`), MNE's `cross_talk=`.
    pub cross_talk: Option<PathBuf>,
    /// tSSS window in seconds (MNE's `st_duration`; None: plain SSS).
    pub st_duration: Option<f64>,
    /// tSSS subspace correlation limit (MNE's `st_correlation`, default 0.98).
    pub st_correlation: f64,
    /// tSSS windows overlapping by half with Hann weights (MNE ≥ 1.11's default `st_overlap=True`);
    /// false: back-to-back boxcar windows (MNE's `st_overlap=False`, MaxFilter's buffers).
    pub st_overlap: bool,
}

impl Default for MaxwellParams {
    fn default() -> Self {
        MaxwellParams {
            origin: Origin::Auto,
            coord_frame: CoordFrame::Head,
            int_order: 8,
            ext_order: 3,
            regularize: Regularize::In,
            mag_scale: 100.0,
            bad_condition: BadCondition::Error,
            calibration: None,
            cross_talk: None,
            st_duration: None,
            st_correlation: 0.98,
            st_overlap: true,
        }
    }
}

impl MaxwellParams {
    /// The parameters `[maxwell]` (or the command line, through the same struct) names, with
    /// the site files to use. `coord_frame = "auto"` is head when the recording has a
    /// device→head transform (`has_dev_head_t`), else meg. Errors say which setting is wrong.
    pub fn from_config(cfg: &crate::config::MaxwellConfig, calibration: Option<PathBuf>, cross_talk: Option<PathBuf>, has_dev_head_t: bool) -> std::result::Result<Self, String> {
        let coord_frame = match cfg.coord_frame.as_str() {
            "auto" if has_dev_head_t => CoordFrame::Head,
            "auto" => CoordFrame::Meg,
            f => f.parse()?,
        };
        Ok(MaxwellParams {
            origin: cfg.origin.parse()?,
            coord_frame,
            int_order: cfg.int_order,
            ext_order: cfg.ext_order,
            regularize: cfg.regularize.parse()?,
            calibration,
            cross_talk,
            st_duration: cfg.st_duration,
            st_correlation: cfg.st_correlation,
            st_overlap: cfg.st_overlap,
            ..MaxwellParams::default()
        })
    }
}

/// The fixed SSS projection of one recording.
#[derive(Clone, Debug)]
pub struct SssOperator {
    /// Recording channel index of each MEG channel (rows of `op`), in recording order.
    pub meg_picks: Vec<usize>,
    /// Recording channel index of each good MEG channel (columns of `op`).
    pub good_picks: Vec<usize>,
    /// n_meg × n_good: reconstructed MEG data = op · good MEG data (cross-talk included).
    pub op: DMatrix<f64>,
    /// `op` = op_left · op_right, through the internal moments (as MNE computes it: moments
    /// = pinv_in · data, output = S_in · moments): n_meg × n_in and n_in × n_good, half the
    /// multiplications of `op` per sample with 306 channels and 80 moments.
    pub op_left: DMatrix<f64>,
    pub op_right: DMatrix<f64>,
    /// The same without cross-talk (tSSS projects between the two).
    pub op_sss: DMatrix<f64>,
    /// n_meg × n_good, without cross-talk: every MEG channel reconstructed from the internal
    /// *and* external moments (MNE's `reconstruct='orig'`, `S_decomp_full · pS_decomp`, in the
    /// calibrated geometry), what `find_bad_channels_maxwell` compares the data with.
    pub op_orig: DMatrix<f64>,
    /// Cross-talk matrix on the good channels, if any.
    pub ctc: Option<DMatrix<f64>>,
    /// n_good × n_good: internal part and residual (neither internal nor external) of the
    /// good channels, for tSSS.
    pub op_in: DMatrix<f64>,
    pub op_resid: DMatrix<f64>,
    /// Left factors with the same row space (over time) as those parts: for any data Y,
    /// `l_in·Y` spans the time courses of `op_in·Y` (n_use_in × n_good: the internal rows of
    /// the pseudo-inverse) and `l_resid·Y` those of `op_resid·Y` (rank × n_good). tSSS
    /// whitens in these smaller spaces ([`super::tsss`]).
    pub l_in: DMatrix<f64>,
    pub l_resid: DMatrix<f64>,
    /// The expansion origin in `coord_frame` (metres) and in the head (or device) frame the
    /// bases were computed in.
    pub origin: [f64; 3],
    pub origin_head: [f64; 3],
    /// Moments kept (indices into internal + external columns) and how many are internal.
    pub reg_moments: Vec<usize>,
    pub n_use_in: usize,
    /// Condition number of the column-normalised decomposition basis.
    pub cond: f64,
}

fn is_meg(c: &ChannelInfo) -> bool {
    matches!(c.kind, ChannelKind::Mag | ChannelKind::Grad)
}

/// MNE's `_col_norm_pinv`: normalise the columns, SVD pseudo-inverse (no cut-off), undo the
/// normalisation on the inverse's rows. Returns (pinv, singular values descending).
fn col_norm_pinv(x: &DMatrix<f64>) -> (DMatrix<f64>, Vec<f64>) {
    let norms: Vec<f64> = x.column_iter().map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt()).collect();
    let mut xn = x.clone();
    for (j, n) in norms.iter().enumerate() {
        xn.column_mut(j).unscale_mut(*n);
    }
    let svd = xn.svd(true, true);
    let u = svd.u.expect("U");
    let vt = svd.v_t.expect("V^T");
    let s = svd.singular_values;
    // pinv = V diag(1/s) Uᵀ, rows divided by the column norms.
    let mut vs = vt.transpose(); // n_cols × k
    for k in 0..s.len() {
        vs.column_mut(k).unscale_mut(s[k]);
    }
    for (j, n) in norms.iter().enumerate() {
        vs.row_mut(j).unscale_mut(*n);
    }
    let mut sv: Vec<f64> = s.iter().copied().collect();
    sv.sort_by(|a, b| b.partial_cmp(a).unwrap());
    (vs * u.transpose(), sv)
}

/// For an operator `left·right` (left with full column rank): L = R·right, with left = Q·R
/// (thin QR), so that `left·right·Y = Q·(L·Y)` and L·Y has the same singular values as the
/// operator's output, not merely the same row space. tSSS thresholds ranks on those
/// singular values (relative to the largest, as MNE does on its time × channel matrices); an
/// unbalanced L (the pseudo-inverse's rows span orders of magnitude across degrees) would
/// drop genuine components.
fn same_singular_values(left: DMatrix<f64>, right: DMatrix<f64>) -> DMatrix<f64> {
    left.qr().r() * right
}

/// L (rank × n) with `op_resid·Y = Q·(L·Y)` for an orthonormal Q ([`same_singular_values`]):
/// `op_resid` is D⁻¹(I − P)D, with P the orthogonal projector on the fitted moments' span
/// and D the coil scales (×100 on magnetometers; the pseudo-inverse works on scaled data), so
/// op_resid = (D⁻¹R₀)(R₀ᵀD) with R₀ the eigenvectors of I − P whose eigenvalue is one.
pub(crate) fn residual_rows(op_resid: &DMatrix<f64>, scale: &[f64]) -> DMatrix<f64> {
    let n = op_resid.nrows();
    let p = DMatrix::from_fn(n, n, |i, j| scale[i] * op_resid[(i, j)] / scale[j]);
    let eig = ((&p + p.transpose()) * 0.5).symmetric_eigen();
    let keep: Vec<usize> = (0..n).filter(|&i| eig.eigenvalues[i] > 0.5).collect();
    let r0 = eig.eigenvectors.select_columns(&keep);
    let mut left = r0.clone();
    let mut right = r0.transpose();
    for (j, s) in scale.iter().enumerate() {
        left.row_mut(j).unscale_mut(*s);
        right.column_mut(j).scale_mut(*s);
    }
    same_singular_values(left, right)
}

/// MNE's `_compute_sphere_activation_in`: expected squared internal moment per degree for
/// random currents on a sphere of radius 80 mm (NenonenEtAl2004 "surface" model).
fn sphere_activation_in(degree: usize) -> f64 {
    let r_in: f64 = 0.080;
    let rho_i: f64 = 5.91107375632e-07;
    let d = degree as f64;
    (rho_i * rho_i) * (d * r_in.powi(2 * degree as i32 + 4) / ((2.0 * d + 1.0) * (2.0 * d + 1.0) * (d + 1.0)))
}

/// MNE's `_regularize_out`: without any magnetometer-like channel the homogeneous (l = 1)
/// external components are unobservable and dropped.
fn regularize_out(int_order: usize, ext_order: usize, mag_or_fine: &[bool]) -> Vec<usize> {
    let n_in = n_moments(int_order);
    if ext_order > 0 && !mag_or_fine.iter().any(|&m| m) {
        (n_in..n_in + 3).collect()
    } else {
        Vec::new()
    }
}

/// MNE's `_regularize_in`: remove internal components one at a time, each time the one with
/// the lowest idealised SNR, tracking the total information I = ½ Σ log2(SNR + 1); keep the
/// first cut whose information reaches 98 % of the peak. Returns (in_removes, out_removes).
fn regularize_in(int_order: usize, ext_order: usize, s_decomp: &DMatrix<f64>, mag_or_fine: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let n_in = n_moments(int_order);
    let (degrees, orders) = degrees_orders(int_order);
    let a_lm_sq: Vec<f64> = degrees.iter().map(|&d| sphere_activation_in(d)).collect();
    let mut in_keepers: Vec<usize> = (0..n_in).collect();
    let out_removes = regularize_out(int_order, ext_order, mag_or_fine);
    let out_keepers: Vec<usize> = (n_in..s_decomp.ncols()).filter(|i| !out_removes.contains(i)).collect();
    let use_norm: Vec<f64> =
        s_decomp.column_iter().map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt()).collect();
    let mut s = s_decomp.clone();
    for (j, n) in use_norm.iter().enumerate() {
        s.column_mut(j).unscale_mut(*n);
    }
    let noise_lev = 5e-13 * 5e-13;
    let mut i_tots = vec![0.0; n_in];
    let mut remove_order = Vec::new();
    for ii in 0..n_in {
        let cols: Vec<usize> = in_keepers.iter().chain(out_keepers.iter()).copied().collect();
        let this_s = s.select_columns(&cols);
        let svd = this_s.svd(true, true);
        let u = svd.u.expect("U");
        let vt = svd.v_t.expect("V^T");
        let sv = svd.singular_values;
        // Rows of V for the kept internal columns, de-normalised, times diag(1/s) Uᵀ: the
        // pseudo-inverse rows that map data to each internal moment.
        let nk = in_keepers.len();
        let mut v = DMatrix::<f64>::zeros(nk, sv.len());
        for (r, &col) in in_keepers.iter().enumerate() {
            let _ = col;
            for k in 0..sv.len() {
                v[(r, k)] = vt[(k, r)] / use_norm[in_keepers[r]] / sv[k];
            }
        }
        let eta = v * u.transpose();
        let mut snr = Vec::with_capacity(nk);
        for r in 0..nk {
            let mut e = eta.row(r).iter().map(|x| x * x).sum::<f64>() * noise_lev;
            if orders[in_keepers[r]] == 0 {
                e *= 2.0;
            }
            e *= 0.0025;
            snr.push(a_lm_sq[in_keepers[r]] / e);
        }
        i_tots[ii] = 0.5 * snr.iter().map(|x| (x + 1.0).log2()).sum::<f64>();
        let mut arg = 0;
        for (r, &x) in snr.iter().enumerate() {
            if x < snr[arg] {
                arg = r;
            }
        }
        remove_order.push(in_keepers[arg]);
        in_keepers.remove(arg);
        // MNE stops once two consecutive totals fall below 95 % of the peak.
        let max = i_tots.iter().cloned().fold(f64::MIN, f64::max);
        if ii > 10 && i_tots[ii - 1] < 0.95 * max && i_tots[ii] < 0.95 * max {
            break;
        }
    }
    let max = i_tots.iter().cloned().fold(f64::MIN, f64::max);
    let lim_idx = i_tots.iter().position(|&x| x >= 0.98 * max).unwrap_or(0);
    (remove_order[..lim_idx].to_vec(), out_removes)
}

/// Builds the SSS operator of a recording (plain SSS: no fine calibration, cross-talk,
/// tSSS or movement compensation). `path` names the recording in errors.
pub fn sss_operator(path: &Path, info: &RecordingInfo, geom: &HeadGeometry, p: &MaxwellParams) -> Result<SssOperator> {
    let err = |what: String| Error::request(path, what);
    if info.channels.iter().any(|c| c.kind == ChannelKind::RefMeg) {
        return Err(err("Maxwell filtering of systems with MEG reference channels is not implemented".into()));
    }
    if info.projs.iter().any(|p| p.active) {
        return Err(err("projectors are applied to the data (active SSP projectors); Maxwell filtering needs the data without them, as MNE refuses".into()));
    }
    if info.comp_grade != 0 {
        return Err(err(format!("data carry software gradient compensation grade {}", info.comp_grade)));
    }
    if p.coord_frame == CoordFrame::Head && geom.dev_head_t.is_none() {
        return Err(err(
            "coord_frame cannot be \"head\" because the recording has no device→head transform \
             (dev_head_t); for an empty-room recording use coord_frame=\"meg\""
                .into(),
        ));
    }
    let meg_picks: Vec<usize> = (0..info.channels.len()).filter(|&i| is_meg(&info.channels[i])).collect();
    if meg_picks.is_empty() {
        return Err(err("no MEG channels to Maxwell-filter".into()));
    }
    let good_mask: Vec<bool> = meg_picks.iter().map(|&i| !info.bads.contains(&info.channels[i].name)).collect();
    let n_good = good_mask.iter().filter(|&&g| g).count();
    let n_bases = n_moments(p.int_order) + n_moments(p.ext_order);
    if n_bases > n_good {
        return Err(err(format!("number of requested bases ({n_bases}) exceeds number of good sensors ({n_good})")));
    }
    // MNE's fix_mag_coil_types(use_cal=True): old T1/T2 magnetometers (cal > 3e-11) are T3.
    let chans: Vec<ChannelInfo> = meg_picks
        .iter()
        .map(|&i| {
            let mut c = info.channels[i].clone();
            if c.kind == ChannelKind::Mag && (c.coil_type == 3022 || c.coil_type == 3023) && c.cal > 3e-11 {
                c.coil_type = 3024;
            }
            c
        })
        .collect();
    let refs: Vec<&ChannelInfo> = chans.iter().collect();
    let coils = Coils::new(path, &refs, ACCURACY_ACCURATE)?;
    let mut mag_or_fine: Vec<bool> = chans.iter().map(|c| c.kind == ChannelKind::Mag).collect();
    // Fine calibration: the decomposition uses calibrated orientations (+ gradiometer
    // imbalance point magnetometers, magnetometer calibrations), the reconstruction the
    // original geometry; every channel then carries "magnetometer-like" information.
    let cal = match &p.calibration {
        Some(f) => {
            let all_names: Vec<String> = info.channels.iter().map(|c| c.name.clone()).collect();
            let c = update_sensor_geometry(path, &read_fine_calibration(f)?, &chans, &all_names)?;
            mag_or_fine.iter_mut().for_each(|m| *m = true);
            Some(c)
        }
        None => None,
    };
    let cal_refs: Vec<&ChannelInfo> = match &cal {
        Some(c) => c.calibrated.iter().collect(),
        None => chans.iter().collect(),
    };
    let coils_decomp = Coils::new(path, &cal_refs, ACCURACY_ACCURATE)?;
    // Magnetometers (by channel type, not `mag_or_fine`, which calibration sets for all).
    let coil_scale: Vec<f64> = chans.iter().map(|c| if c.kind == ChannelKind::Mag { p.mag_scale } else { 1.0 }).collect();

    // Origin in the chosen frame, then in the frame the bases are computed in (head when
    // there is a dev_head_t, the coils being moved there; device otherwise).
    let origin = match p.origin {
        Origin::Point(o) => o,
        Origin::Auto => match p.coord_frame {
            CoordFrame::Head => fit_sphere_to_headshape(path, &geom.dig)?.1,
            CoordFrame::Meg => [0.0; 3],
        },
    };
    let trans = geom.dev_head_t.as_ref();
    let origin_head = match (p.coord_frame, trans) {
        (CoordFrame::Meg, Some(t)) => t.apply(&origin),
        _ => origin,
    };

    // Reconstruction basis: internal moments only, in physical units (MNE scales by
    // coil_scale and divides it back out; we do the same to keep the same rounding).
    let mut s_recon = trans_sss_basis(&origin_head, p.int_order, 0, &coils, trans, &coil_scale);
    for (i, cs) in coil_scale.iter().enumerate() {
        s_recon.row_mut(i).unscale_mut(*cs);
    }
    // Decomposition basis on the good channels, magnetometers scaled by mag_scale.
    // (with dev_head_t's rotation through a quaternion and back, as MNE's `_check_pos`)
    let decomp_trans = trans.map(|t| t.quat_roundtrip());
    let mut s_full = trans_sss_basis(&origin_head, p.int_order, p.ext_order, &coils_decomp, decomp_trans.as_ref(), &coil_scale);
    if let Some(c) = &cal {
        // MNE's `_sss_basis_point`: Σ over directions of imbalance × point-magnetometer basis
        // (scaled by mag_scale), added to the gradiometer rows; magnetometer rows divided
        // by their calibration.
        let grad_rows: Vec<usize> = (0..chans.len()).filter(|&i| chans[i].kind == ChannelKind::Grad).collect();
        let mag_rows: Vec<usize> = (0..chans.len()).filter(|&i| chans[i].kind == ChannelKind::Mag).collect();
        let mut tot: Option<DMatrix<f64>> = None;
        for (imb, pts) in c.grad_imbalances.iter().zip(&c.grad_points) {
            let refs: Vec<&ChannelInfo> = pts.iter().collect();
            let pc = Coils::new(path, &refs, ACCURACY_ACCURATE)?;
            let mut add = trans_sss_basis(&origin_head, p.int_order, p.ext_order, &pc, decomp_trans.as_ref(), &vec![p.mag_scale; refs.len()]);
            for (k, w) in imb.iter().enumerate() {
                add.row_mut(k).scale_mut(*w);
            }
            tot = Some(match tot {
                None => add,
                Some(t) => t + add,
            });
        }
        if let Some(t) = tot {
            for (k, &r) in grad_rows.iter().enumerate() {
                let row = s_full.row(r) + t.row(k);
                s_full.set_row(r, &row);
            }
        }
        for (k, &r) in mag_rows.iter().enumerate() {
            s_full.row_mut(r).unscale_mut(c.mag_cals[k]);
        }
    }
    let good_rows: Vec<usize> = (0..meg_picks.len()).filter(|&i| good_mask[i]).collect();
    let s_decomp = s_full.select_rows(&good_rows);
    // A NaN here would make every SVD below iterate forever (nalgebra does not give up).
    if let Some(r) = (0..s_decomp.nrows()).find(|&r| s_decomp.row(r).iter().any(|v| !v.is_finite())) {
        let name = &info.channels[meg_picks[good_rows[r]]].name;
        return Err(Error::request(path, format!("the multipole basis is not finite at channel {name}: is its sensor position (loc) or the origin wrong?")));
    }
    let n_in = n_moments(p.int_order);
    let (in_removes, out_removes) = match p.regularize {
        Regularize::In => regularize_in(p.int_order, p.ext_order, &s_decomp, &mag_or_fine),
        Regularize::None => (Vec::new(), regularize_out(p.int_order, p.ext_order, &mag_or_fine)),
    };
    let mut reg_in: Vec<usize> = (0..n_in).filter(|i| !in_removes.contains(i)).collect();
    reg_in.sort_unstable();
    let reg_out: Vec<usize> = (n_in..s_decomp.ncols()).filter(|i| !out_removes.contains(i)).collect();
    let n_use_in = reg_in.len();
    let reg_moments: Vec<usize> = reg_in.iter().chain(reg_out.iter()).copied().collect();
    let s_reg = s_decomp.select_columns(&reg_moments);
    let (mut pinv, sing) = col_norm_pinv(&s_reg);
    let cond = sing[0] / sing[sing.len() - 1];
    if p.bad_condition == BadCondition::Error && cond >= 1000.0 {
        return Err(err(format!("Matrix is badly conditioned: {cond:.0} >= 1000")));
    }
    // Data scaling built into the inverse: good magnetometer columns × mag_scale.
    for (j, &r) in good_rows.iter().enumerate() {
        pinv.column_mut(j).scale_mut(coil_scale[r]);
    }
    let s_recon_reg = s_recon.select_columns(&reg_in);
    // tSSS's split of the good channels (MNE's get_avg_op, from the scaled-back basis).
    let mut s_dec = s_reg.clone();
    for (j, &r) in good_rows.iter().enumerate() {
        s_dec.row_mut(j).unscale_mut(coil_scale[r]);
    }
    let op_in = s_dec.columns(0, n_use_in) * pinv.rows(0, n_use_in);
    let n_out = s_dec.ncols() - n_use_in;
    let op_resid = DMatrix::<f64>::identity(n_good, n_good) - &op_in - s_dec.columns(n_use_in, n_out) * pinv.rows(n_use_in, n_out);
    let op_sss = &s_recon_reg * pinv.rows(0, n_use_in);
    let l_in = same_singular_values(s_dec.columns(0, n_use_in).into_owned(), pinv.rows(0, n_use_in).into_owned());
    let good_scale: Vec<f64> = good_rows.iter().map(|&r| coil_scale[r]).collect();
    let l_resid = residual_rows(&op_resid, &good_scale);
    // MNE's `reconstruct='orig'`: S_decomp_full (all MEG rows) on the kept moments, divided
    // by coil_scale, times the scaled pseudo-inverse.
    let mut s_full_reg = s_full.select_columns(&reg_moments);
    for (i, cs) in coil_scale.iter().enumerate() {
        s_full_reg.row_mut(i).unscale_mut(*cs);
    }
    let op_orig = s_full_reg * &pinv;
    let mut op = op_sss.clone();
    let mut ctc = None;
    if let Some(f) = &p.cross_talk {
        // Cross-talk compensation precedes the fit: op · C_good (MNE applies C_good to the
        // good channels' data first; the composition differs from that by rounding only).
        let names: Vec<String> = chans.iter().map(|c| c.name.clone()).collect();
        let c = cross_talk_for(path, &read_cross_talk(f)?, &names)?;
        let c = c.select_rows(&good_rows).select_columns(&good_rows);
        op = op * &c;
        ctc = Some(c);
    }
    let op_left = s_recon_reg;
    let op_right = match &ctc {
        Some(c) => pinv.rows(0, n_use_in) * c,
        None => pinv.rows(0, n_use_in).into_owned(),
    };
    let good_picks = good_rows.iter().map(|&r| meg_picks[r]).collect();
    Ok(SssOperator { meg_picks, good_picks, op, op_left, op_right, op_sss, op_orig, ctc, op_in, op_resid, l_in, l_resid, origin, origin_head, reg_moments, n_use_in, cond })
}
