//! Head geometry the Maxwell filter needs and our FIF info reader does not keep: the
//! device → head transform (`info['dev_head_t']`) and the digitized points (`info['dig']`),
//! read from the FIF tree as MNE's `read_meas_info` / `_read_dig_fif` do, plus MNE's sphere
//! fit to the head shape (`fit_sphere_to_headshape`, `dig_kinds='auto'`) for `origin='auto'`.
//! It lives with the FIF format (not in the Maxwell stage that uses it) because the FIF writer
//! writes the same tags: the format comes first in the data flow.

use std::path::Path;

use crate::formats::fif::tag::{be_i32, be_u32, k, FifFile, Node};
use crate::{Error, Result};

// FIFF kinds of the head geometry's tags (MNE's constants.py); the FIF writer uses them too.
pub(crate) const FIFFB_ISOTRAK: i32 = 107;
const FIFFB_HPI_RESULT: i32 = 109;
pub(crate) const FIFF_DIG_POINT: i32 = 213;
pub(crate) const FIFF_COORD_TRANS: i32 = 222;
pub(crate) const FIFF_MNE_COORD_FRAME: i32 = 3506;
pub(crate) const FIFFT_DIG_POINT_STRUCT: i32 = 33;
pub(crate) const FIFFT_COORD_TRANS_STRUCT: i32 = 35;
pub const FIFFV_COORD_DEVICE: i32 = 1;
pub const FIFFV_COORD_HEAD: i32 = 4;
pub const FIFFV_POINT_EEG: i32 = 3;
pub const FIFFV_POINT_EXTRA: i32 = 4;

/// A rigid transform: `y = rot · x + trans`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub rot: [[f64; 3]; 3],
    pub trans: [f64; 3],
}

impl Transform {
    pub fn identity() -> Self {
        Transform { rot: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], trans: [0.0; 3] }
    }
    pub fn apply(&self, x: &[f64; 3]) -> [f64; 3] {
        let r = &self.rot;
        let mut y = [0.0; 3];
        for i in 0..3 {
            y[i] = r[i][0] * x[0] + r[i][1] * x[1] + r[i][2] * x[2] + self.trans[i];
        }
        y
    }
    /// The transform as MNE's movement-compensation machinery sees it: rotation taken to a
    /// unit quaternion and back (`quat_to_rot(rot_to_quat(R))`, as `_check_pos` does with
    /// `dev_head_t` even without head positions). The FIF file stores the rotation in
    /// float32, not exactly orthonormal, so this differs from R by ~1e-8 — enough to move the
    /// SSS output by ~1e-5 of its RMS. MNE fits the moments with this rotation and
    /// reconstructs with the original one; so do we.
    pub fn quat_roundtrip(&self) -> Transform {
        let r = &self.rot;
        let rot = [r[0][0], r[0][1], r[0][2], r[1][0], r[1][1], r[1][2], r[2][0], r[2][1], r[2][2]];
        // MNE's `_one_rot_to_quat` (its branches keep the largest diagonal term).
        let t = 1.0 + rot[0] + rot[4] + rot[8];
        let (qx, qy, qz);
        if t > f64::EPSILON {
            let s = t.sqrt() * 2.0;
            qx = (rot[7] - rot[5]) / s;
            qy = (rot[2] - rot[6]) / s;
            qz = (rot[3] - rot[1]) / s;
        } else if rot[0] > rot[4] && rot[0] > rot[8] {
            let s = (1.0 + rot[0] - rot[4] - rot[8]).sqrt() * 2.0;
            qx = 0.25 * s;
            qy = (rot[1] + rot[3]) / s;
            qz = (rot[2] + rot[6]) / s;
        } else if rot[4] > rot[8] {
            let s = (1.0 - rot[0] + rot[4] - rot[8]).sqrt() * 2.0;
            qx = (rot[1] + rot[3]) / s;
            qy = 0.25 * s;
            qz = (rot[5] + rot[7]) / s;
        } else {
            let s = (1.0 - rot[0] - rot[4] + rot[8]).sqrt() * 2.0;
            qx = (rot[2] + rot[6]) / s;
            qy = (rot[5] + rot[7]) / s;
            qz = 0.25 * s;
        }
        // MNE's `_quat_to_rot`.
        let (b, c, d) = (qx, qy, qz);
        let (bb, cc, dd) = (b * b, c * c, d * d);
        let aa = (1.0 - bb - cc - dd).max(0.0);
        let a = aa.sqrt();
        let (ab_2, ac_2, ad_2) = (2.0 * a * b, 2.0 * a * c, 2.0 * a * d);
        let (bc_2, bd_2, cd_2) = (2.0 * b * c, 2.0 * b * d, 2.0 * c * d);
        let rot = [
            [aa + bb - cc - dd, bc_2 - ad_2, bd_2 + ac_2],
            [bc_2 + ad_2, aa + cc - bb - dd, cd_2 - ab_2],
            [bd_2 - ac_2, cd_2 + ab_2, aa + dd - bb - cc],
        ];
        Transform { rot, trans: self.trans }
    }

    /// The inverse of a rigid transform (rotation transposed), as MNE's `invert_transform`
    /// up to rounding (MNE inverts the 4×4 matrix with `np.linalg.inv`).
    pub fn inverse(&self) -> Self {
        let mut rot = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                rot[i][j] = self.rot[j][i];
            }
        }
        let t = self.trans;
        let mut trans = [0.0; 3];
        for i in 0..3 {
            trans[i] = -(rot[i][0] * t[0] + rot[i][1] * t[1] + rot[i][2] * t[2]);
        }
        Transform { rot, trans }
    }
}

/// One digitized point (MNE's `info['dig']` entry).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DigPoint {
    pub kind: i32,
    pub ident: i32,
    pub r: [f64; 3],
    pub coord_frame: i32,
}

/// What the Maxwell filter reads from a FIF file beyond [`crate::RecordingInfo`].
#[derive(Clone, Debug, Default)]
pub struct HeadGeometry {
    pub dev_head_t: Option<Transform>,
    pub dig: Vec<DigPoint>,
}

fn read_trans(f: &FifFile, d: &[u8], pos: u64) -> Result<(i32, i32, Transform)> {
    if d.len() < 8 + 48 {
        return Err(f.format_error(format!("coordinate transform at byte {pos} is too short")));
    }
    let f32_at = |o: usize| f32::from_bits(be_u32(&d[o..o + 4])) as f64;
    let mut t = Transform::identity();
    for i in 0..3 {
        for j in 0..3 {
            t.rot[i][j] = f32_at(8 + 4 * (3 * i + j));
        }
        t.trans[i] = f32_at(44 + 4 * i);
    }
    Ok((be_i32(&d[0..4]), be_i32(&d[4..8]), t))
}

/// Reads `dev_head_t` and the digitized points of a FIF file (the first part of a split set).
pub fn read_head_geometry(path: &Path) -> Result<HeadGeometry> {
    let f = FifFile::open(path)?;
    let meas = f.tree.find(k::B_MEAS);
    let meas = meas.first().ok_or_else(|| f.format_error("no measurement block (FIFFB_MEAS)"))?;
    let infos = meas.find(k::B_MEAS_INFO);
    let info: &Node = infos.first().ok_or_else(|| f.format_error("no measurement info block"))?;
    let mut out = HeadGeometry::default();
    // The transform: a FIFF_COORD_TRANS directly in the info block, device → head (or its
    // inverse, which BabyMEG writes); else the one in the HPI result block.
    for e in info.entries.iter().filter(|e| e.kind == FIFF_COORD_TRANS && e.typ == FIFFT_COORD_TRANS_STRUCT) {
        let (from, to, t) = read_trans(&f, &f.read_data(e)?, e.pos)?;
        if from == FIFFV_COORD_DEVICE && to == FIFFV_COORD_HEAD {
            out.dev_head_t = Some(t);
        } else if from == FIFFV_COORD_HEAD && to == FIFFV_COORD_DEVICE {
            out.dev_head_t = Some(t.inverse());
        }
    }
    if out.dev_head_t.is_none() {
        let hpi = info.find(FIFFB_HPI_RESULT);
        if hpi.len() == 1 {
            for e in hpi[0].entries.iter().filter(|e| e.kind == FIFF_COORD_TRANS && e.typ == FIFFT_COORD_TRANS_STRUCT) {
                let (from, to, t) = read_trans(&f, &f.read_data(e)?, e.pos)?;
                if from == FIFFV_COORD_DEVICE && to == FIFFV_COORD_HEAD && out.dev_head_t.is_none() {
                    out.dev_head_t = Some(t);
                }
            }
        }
    }
    // Digitized points: the single Isotrak block (MNE ignores them when there are several).
    let iso = info.find(FIFFB_ISOTRAK);
    if iso.len() == 1 {
        let mut frame = FIFFV_COORD_HEAD;
        let mut pts = Vec::new();
        for e in &iso[0].entries {
            if e.kind == FIFF_DIG_POINT && e.typ == FIFFT_DIG_POINT_STRUCT {
                let d = f.read_data(e)?;
                if d.len() < 20 {
                    return Err(f.format_error(format!("digitized point at byte {} is too short", e.pos)));
                }
                let r = [8, 12, 16].map(|o| f32::from_bits(be_u32(&d[o..o + 4])) as f64);
                pts.push(DigPoint { kind: be_i32(&d[0..4]), ident: be_i32(&d[4..8]), r, coord_frame: 0 });
            } else if e.kind == FIFF_MNE_COORD_FRAME {
                frame = f.read_i32_tag(e)?;
            }
        }
        for p in pts.iter_mut() {
            p.coord_frame = frame;
        }
        out.dig = pts;
    }
    Ok(out)
}

/// The head-shape points MNE's `get_fitting_dig(info, dig_kinds)` returns for one set of
/// kinds: points of those kinds (head frame), minus low frontal ones (z < 0 and y > 0, the
/// nose and face). `Err` with MNE's reason when fewer than 4 remain.
fn fitting_dig(dig: &[DigPoint], kinds: &[i32]) -> std::result::Result<Vec<[f64; 3]>, String> {
    let sel: Vec<&DigPoint> = dig.iter().filter(|p| kinds.contains(&p.kind)).collect();
    if sel.is_empty() {
        return Err(format!("no digitization points of kinds {kinds:?}"));
    }
    if sel.iter().any(|p| p.coord_frame != FIFFV_COORD_HEAD) {
        return Err("digitization points are not in head coordinates".into());
    }
    // MNE keeps the points as float32 (as stored); NumPy compares them with ±1e-6 in float32.
    let hsp: Vec<[f64; 3]> =
        sel.iter().map(|p| p.r).filter(|r| !((r[2] as f32) < -1e-6f32 && (r[1] as f32) > 1e-6f32)).collect();
    if hsp.len() < 4 {
        return Err(format!("only {} head digitization points of kinds {kinds:?}, at least 4 required", hsp.len()));
    }
    Ok(hsp)
}

/// MNE's `fit_sphere_to_headshape(info, dig_kinds='auto', units='m')`: "extra" points, or
/// if those are too few, "extra" + "eeg"; then the linear least-squares sphere fit
/// (|p|² = 2 p·c + (R² − |c|²), solved by SVD like numpy's `lstsq`). Returns (radius,
/// origin in head coordinates).
pub fn fit_sphere_to_headshape(path: &Path, dig: &[DigPoint]) -> Result<(f64, [f64; 3])> {
    let hsp = match fitting_dig(dig, &[FIFFV_POINT_EXTRA]) {
        Ok(p) => p,
        Err(_) => fitting_dig(dig, &[FIFFV_POINT_EXTRA, FIFFV_POINT_EEG])
            .map_err(|e| Error::request(path, format!("origin='auto' cannot fit the head shape: {e}")))?,
    };
    let n = hsp.len();
    let a = nalgebra::DMatrix::from_fn(n, 4, |i, j| if j < 3 { 2.0 * hsp[i][j] } else { 1.0 });
    // |p|² is computed in float32 by MNE (the points' dtype): ~1e-7 relative, which moves
    // the fitted origin by ~1e-10 m; we round the same way to get the same origin.
    let b = nalgebra::DVector::from_fn(n, |i, _| {
        let r = hsp[i].map(|x| x as f32);
        (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) as f64
    });
    let svd = a.svd(true, true);
    let x = svd
        .solve(&b, 1e-6 * svd.singular_values.max())
        .map_err(|e| Error::request(path, format!("head-shape sphere fit failed: {e}")))?;
    let origin = [x[0], x[1], x[2]];
    let radius = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3]).sqrt();
    Ok((radius, origin))
}
