//! MEG coil geometry: MNE's coil definitions (`coil_def.dat`, bundled in `pipeline/data/mne/`
//! with its BSD-3 notice) and the integration points of each channel's coil in device
//! coordinates, as MNE's `_create_meg_coil` + `_prep_mf_coils` build them.
//!
//! A definition lists, for one coil type and accuracy, integration points (weight, position,
//! normal) in the coil's own frame. A channel's `loc` (12 numbers) holds that frame in device
//! coordinates: origin `loc[0..3]`, axes ex `loc[3..6]`, ey `loc[6..9]`, ez `loc[9..12]`; a
//! point p goes to `R p + r0` with R's columns (ex, ey, ez), a normal n to `R n`.

use crate::{ChannelInfo, Error, Result};

/// The bundled definition file (MNE-Python 1.13's `mne/data/coil_def.dat`, unmodified).
pub const COIL_DEF_DAT: &str = include_str!("../../../data/mne/coil_def.dat");

/// MNE's accuracy codes: 0 point, 1 normal, 2 accurate. Maxwell filtering uses "accurate".
pub const ACCURACY_ACCURATE: i32 = 2;

/// `coil_class` of magnetometers in the definition file (MNE's `FWD.COILC_MAG`).
pub const COILC_MAG: i32 = 1;

/// One coil template from the definition file.
#[derive(Clone, Debug)]
pub struct CoilDef {
    pub coil_class: i32,
    pub coil_type: i32,
    pub accuracy: i32,
    pub size: f64,
    pub base: f64,
    pub desc: String,
    /// Integration weights.
    pub w: Vec<f64>,
    /// Integration points in the coil frame (m).
    pub rmag: Vec<[f64; 3]>,
    /// Unit normals in the coil frame (normalised on reading, as MNE does).
    pub cosmag: Vec<[f64; 3]>,
}

/// Parses a coil definition file in MNE's format: a header line
/// `class id accuracy npts size base "description"`, then `npts` lines
/// `w x y z nx ny nz`; `#` lines are comments anywhere.
pub fn parse_coil_defs(text: &str) -> Result<Vec<CoilDef>> {
    let bad = |what: String| Error::format(std::path::Path::new("coil_def.dat"), "coil definition", what);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let mut defs = Vec::new();
    while let Some(head) = lines.next() {
        let q = head.find('"').ok_or_else(|| bad(format!("header without description: {head:?}")))?;
        let nums: Vec<f64> = head[..q]
            .split_whitespace()
            .map(|t| t.parse::<f64>().map_err(|_| bad(format!("bad number {t:?} in {head:?}"))))
            .collect::<Result<_>>()?;
        if nums.len() != 6 {
            return Err(bad(format!("header needs 6 numbers: {head:?}")));
        }
        let npts = nums[3] as usize;
        let mut d = CoilDef {
            coil_class: nums[0] as i32,
            coil_type: nums[1] as i32,
            accuracy: nums[2] as i32,
            size: nums[4],
            base: nums[5],
            desc: head[q..].trim_matches('"').to_string(),
            w: Vec::with_capacity(npts),
            rmag: Vec::with_capacity(npts),
            cosmag: Vec::with_capacity(npts),
        };
        for p in 0..npts {
            let line = lines.next().ok_or_else(|| bad(format!("{} ends before its point {}", d.desc, p + 1)))?;
            let v: Vec<f64> = line
                .split_whitespace()
                .map(|t| t.parse::<f64>().map_err(|_| bad(format!("bad number {t:?} in {line:?}"))))
                .collect::<Result<_>>()?;
            if v.len() != 7 {
                return Err(bad(format!("point line needs 7 numbers: {line:?}")));
            }
            let n = (v[4] * v[4] + v[5] * v[5] + v[6] * v[6]).sqrt();
            if !(n > 0.0) || (v[1] * v[1] + v[2] * v[2] + v[3] * v[3]).sqrt() > 0.5 {
                return Err(bad(format!("unreasonable point or normal: {line:?}")));
            }
            d.w.push(v[0]);
            d.rmag.push([v[1], v[2], v[3]]);
            d.cosmag.push([v[4] / n, v[5] / n, v[6] / n]);
        }
        defs.push(d);
    }
    Ok(defs)
}

/// The bundled definitions, parsed once.
pub fn bundled_coil_defs() -> &'static [CoilDef] {
    static DEFS: std::sync::OnceLock<Vec<CoilDef>> = std::sync::OnceLock::new();
    DEFS.get_or_init(|| parse_coil_defs(COIL_DEF_DAT).expect("bundled coil_def.dat parses"))
}

/// The rotation (columns ex, ey, ez) and origin of a channel's coil frame, MNE's
/// `_loc_to_coil_trans`.
pub fn loc_to_coil_trans(loc: &[f64; 12]) -> ([[f64; 3]; 3], [f64; 3]) {
    let mut r = [[0.0; 3]; 3];
    for j in 0..3 {
        for i in 0..3 {
            r[i][j] = loc[3 + 3 * j + i];
        }
    }
    (r, [loc[0], loc[1], loc[2]])
}

/// All MEG coils of a channel list, flattened for the basis computation (MNE's
/// `_prep_mf_coils`): points in device coordinates, normals pre-multiplied by the weights,
/// and for each point the coil (row) it belongs to.
#[derive(Clone, Debug)]
pub struct Coils {
    pub rmags: Vec<[f64; 3]>,
    /// Normal × weight of each point.
    pub cosmags: Vec<[f64; 3]>,
    /// Which coil each point belongs to.
    pub bins: Vec<usize>,
    pub n_coils: usize,
    /// Magnetometer coils (`coil_class` 1).
    pub mag_mask: Vec<bool>,
    /// The gradiometer baseline of each coil (0 for magnetometers).
    pub base: Vec<f64>,
}

impl Coils {
    /// Coils of `channels` (all must be MEG channels with a definition at `accuracy`).
    /// `path` (the recording) names the file in errors.
    pub fn new(path: &std::path::Path, channels: &[&ChannelInfo], accuracy: i32) -> Result<Coils> {
        let defs = bundled_coil_defs();
        let mut c = Coils {
            rmags: Vec::new(),
            cosmags: Vec::new(),
            bins: Vec::new(),
            n_coils: channels.len(),
            mag_mask: Vec::new(),
            base: Vec::new(),
        };
        for (ci, ch) in channels.iter().enumerate() {
            // MNE matches the low 16 bits of the channel's coil type.
            let ty = ch.coil_type & 0xFFFF;
            let d = defs.iter().find(|d| d.coil_type == ty && d.accuracy == accuracy).ok_or_else(|| {
                Error::request(path, format!(
                    "channel {}: no coil definition for coil type {} at accuracy {accuracy}",
                    ch.name, ch.coil_type
                ))
            })?;
            let (r, r0) = loc_to_coil_trans(&ch.loc);
            // A coil frame that is not a rotation (all zeros where a writer left `loc` empty)
            // puts every integration point at one place with no orientation.
            let ez = (r[0][2] * r[0][2] + r[1][2] * r[1][2] + r[2][2] * r[2][2]).sqrt();
            if !ch.loc.iter().all(|v| v.is_finite()) || (ez - 1.0).abs() > 1e-3 {
                return Err(Error::request(path, format!(
                    "channel {}: its sensor position and orientation (loc) are missing or invalid; Maxwell filtering needs the MEG sensor geometry",
                    ch.name
                )));
            }
            for p in 0..d.w.len() {
                let (x, n) = (d.rmag[p], d.cosmag[p]);
                let mut rp = [0.0; 3];
                let mut np = [0.0; 3];
                for i in 0..3 {
                    // Same summation order as numpy's `apply_trans` (x @ R.T + t).
                    rp[i] = r[i][0] * x[0] + r[i][1] * x[1] + r[i][2] * x[2] + r0[i];
                    np[i] = (r[i][0] * n[0] + r[i][1] * n[1] + r[i][2] * n[2]) * d.w[p];
                }
                c.rmags.push(rp);
                c.cosmags.push(np);
                c.bins.push(ci);
            }
            c.mag_mask.push(d.coil_class == COILC_MAG);
            c.base.push(d.base);
        }
        Ok(c)
    }

    /// The same coils moved by a rigid transform (rotation `r`, translation `t`), as MNE's
    /// `_trans_sss_basis` does with `dev_head_t`: points rotated and moved, normals rotated.
    pub fn transformed(&self, r: &[[f64; 3]; 3], t: &[f64; 3]) -> Coils {
        let rot = |x: &[f64; 3]| {
            [
                r[0][0] * x[0] + r[0][1] * x[1] + r[0][2] * x[2],
                r[1][0] * x[0] + r[1][1] * x[1] + r[1][2] * x[2],
                r[2][0] * x[0] + r[2][1] * x[1] + r[2][2] * x[2],
            ]
        };
        let mut c = self.clone();
        for p in c.rmags.iter_mut() {
            let q = rot(p);
            *p = [q[0] + t[0], q[1] + t[1], q[2] + t[2]];
        }
        for n in c.cosmags.iter_mut() {
            *n = rot(n);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_definitions_have_the_vectorview_coils() {
        let defs = bundled_coil_defs();
        for (ty, n) in [(3012, 8), (3013, 8), (3014, 8), (3022, 16), (3023, 16), (3024, 16)] {
            let d = defs.iter().find(|d| d.coil_type == ty && d.accuracy == ACCURACY_ACCURATE).unwrap();
            assert_eq!(d.w.len(), n, "{ty}");
        }
        let g = defs.iter().find(|d| d.coil_type == 3012 && d.accuracy == 2).unwrap();
        assert_eq!(g.coil_class, 3);
        assert!((g.base - 0.0168).abs() < 1e-12);
        assert!((g.w[0] - 14.9858).abs() < 1e-12);
        assert_eq!(g.rmag[0], [1.079e-02, 6.713e-03, 3.000e-04]);
    }
}
