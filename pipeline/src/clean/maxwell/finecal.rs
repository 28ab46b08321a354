//! Fine calibration (`calibration=` of MNE's `maxwell_filter`): Elekta's `sss_cal.dat` gives
//! each MEG channel a corrected coil orientation, magnetometers a calibration factor and
//! gradiometers one (1-D) or three (3-D) imbalance terms, modelled as point magnetometers at
//! the gradiometer's centre pointing along its ex (, ey, ez) axes. MNE's `read_fine_calibration`
//! + `_update_sensor_geometry` + `_get_grad_point_coilsets` + `_sss_basis_point`.

use std::path::Path;

use crate::{ChannelInfo, Error, Result};

/// One `.dat` file: channel names (`MEG0113` for Neuromag numbers), 12 location numbers
/// (position, ex, ey, ez) and 1 or 3 imbalance terms (gradiometers) or the calibration
/// (magnetometers).
#[derive(Clone, Debug)]
pub struct FineCal {
    pub ch_names: Vec<String>,
    pub locs: Vec<[f64; 12]>,
    pub imb_cals: Vec<Vec<f64>>,
}

pub fn read_fine_calibration(path: &Path) -> Result<FineCal> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut fc = FineCal { ch_names: Vec::new(), locs: Vec::new(), imb_cals: Vec::new() };
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let vals: Vec<&str> = line.split_whitespace().collect();
        if vals.is_empty() {
            continue;
        }
        if vals.len() != 14 && vals.len() != 16 {
            return Err(Error::format(path, "fine calibration", format!("lines need 14 or 16 entries, found {}: {line:?}", vals.len())));
        }
        // Neuromag numbers (3 or 4 digits) become MEG%04d, as MNE does.
        let mut name = vals[0].to_string();
        if name.len() == 3 || name.len() == 4 {
            if let Ok(n) = name.parse::<i64>() {
                name = format!("MEG{n:04}");
            }
        }
        let nums: Vec<f64> = vals[1..]
            .iter()
            .map(|t| t.parse::<f64>().map_err(|_| Error::format(path, "fine calibration", format!("bad number {t:?}"))))
            .collect::<Result<_>>()?;
        let mut loc = [0.0; 12];
        loc.copy_from_slice(&nums[..12]);
        fc.ch_names.push(name);
        fc.locs.push(loc);
        fc.imb_cals.push(nums[12..].to_vec());
    }
    Ok(fc)
}

/// MNE's `_clean_names(names, remove_whitespace=True)`: no spaces, nothing from a dash on,
/// no `_v` suffix — unless that creates duplicates, then the names as they were.
pub fn clean_names(names: &[String]) -> Vec<String> {
    let cleaned: Vec<String> = names
        .iter()
        .map(|n| {
            let mut s = n.replace(' ', "");
            if let Some(i) = s.find('-') {
                s.truncate(i);
            }
            if let Some(t) = s.strip_suffix("_v") {
                s = t.to_string();
            }
            s
        })
        .collect();
    let unique: std::collections::HashSet<&String> = cleaned.iter().collect();
    if unique.len() != names.len() {
        names.to_vec()
    } else {
        cleaned
    }
}

type M3 = [[f64; 3]; 3];

fn rot_of(loc: &[f64; 12]) -> M3 {
    super::coils::loc_to_coil_trans(loc).0
}

/// Columns scaled to unit length (MNE's `_normalize_vectors(rot.T)`).
fn normalize_columns(r: &mut M3) {
    for j in 0..3 {
        let n = (r[0][j] * r[0][j] + r[1][j] * r[1][j] + r[2][j] * r[2][j]).sqrt();
        if n > 0.0 {
            for row in r.iter_mut() {
                row[j] /= n;
            }
        }
    }
}

fn col(r: &M3, j: usize) -> [f64; 3] {
    [r[0][j], r[1][j], r[2][j]]
}

fn matmul(a: &M3, b: &M3) -> M3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    c
}

/// MNE's `_find_vector_rotation(a, b)`: the rotation about a × b taking unit a onto unit b
/// (Rodrigues), I + [v]× + [v]×² (1 − c)/|v|².
fn find_vector_rotation(a: [f64; 3], b: [f64; 3]) -> M3 {
    let v = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    let s = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    let c = b[0] * a[0] + b[1] * a[1] + b[2] * a[2];
    let vx = [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]];
    if s < f64::MIN_POSITIVE {
        if c >= 0.0 {
            return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        }
        // Antiparallel: a half turn about an axis perpendicular to a.
        let m = (0..3).min_by(|&i, &j| a[i].abs().partial_cmp(&a[j].abs()).unwrap()).unwrap();
        let mut e = [0.0; 3];
        e[m] = 1.0;
        let mut k = [a[1] * e[2] - a[2] * e[1], a[2] * e[0] - a[0] * e[2], a[0] * e[1] - a[1] * e[0]];
        let kn = (k[0] * k[0] + k[1] * k[1] + k[2] * k[2]).sqrt();
        k = k.map(|x| x / kn);
        let mut r = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = 2.0 * k[i] * k[j] - if i == j { 1.0 } else { 0.0 };
            }
        }
        return r;
    }
    let factor = (1.0 - c) / s;
    let vx2 = matmul(&vx, &vx);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (if i == j { 1.0 } else { 0.0 }) + vx[i][j] + vx2[i][j] * factor;
        }
    }
    r
}

/// What fine calibration changes for one recording's MEG channels (in `meg` order).
#[derive(Clone, Debug)]
pub struct Calibration {
    /// The channels with fine-calibrated orientations (positions unchanged).
    pub calibrated: Vec<ChannelInfo>,
    /// Per imbalance direction (1 or 3), per gradiometer (in MEG order), the imbalance.
    pub grad_imbalances: Vec<Vec<f64>>,
    /// Per imbalance direction, point-magnetometer channels at each gradiometer (original
    /// orientations, normal along ex / ey / ez).
    pub grad_points: Vec<Vec<ChannelInfo>>,
    /// Per magnetometer (in MEG order), its calibration factor.
    pub mag_cals: Vec<f64>,
}

/// MNE's `_update_sensor_geometry` for MEG channels `meg` (recording order, T1/T2 magnetometer
/// types already fixed). Every MEG channel must be in the file.
pub fn update_sensor_geometry(path: &Path, fc: &FineCal, meg: &[ChannelInfo], all_names: &[String]) -> Result<Calibration> {
    let names_clean = clean_names(&fc.ch_names);
    let ch_clean = clean_names(all_names);
    // Fine-cal row of each MEG channel.
    let mut row = Vec::with_capacity(meg.len());
    for ch in meg {
        let oi = all_names.iter().position(|n| *n == ch.name).expect("MEG channel in the recording");
        let ci = names_clean.iter().position(|n| *n == ch_clean[oi]).ok_or_else(|| {
            Error::request(path, format!("channel {} is not in the fine calibration file", ch.name))
        })?;
        row.push(ci);
    }
    let is_grad: Vec<bool> = meg.iter().map(|c| c.kind == crate::ChannelKind::Grad).collect();
    let n_types = meg.iter().zip(&row).filter(|(c, _)| c.kind == crate::ChannelKind::Grad).map(|(_, &ci)| fc.imb_cals[ci].len()).next().unwrap_or(0);
    if ![0, 1, 3].contains(&n_types) {
        return Err(Error::request(path, format!("fine calibration needs 1 or 3 gradiometer imbalances, got {n_types}")));
    }
    let mut grad_imbalances = vec![Vec::new(); n_types];
    let mut mag_cals = Vec::new();
    for (i, &ci) in row.iter().enumerate() {
        if is_grad[i] {
            let imb = &fc.imb_cals[ci];
            if imb.len() != n_types {
                return Err(Error::request(path, format!("channel {}: {} imbalance terms, others have {n_types}", meg[i].name, imb.len())));
            }
            for t in 0..n_types {
                grad_imbalances[t].push(imb[t]);
            }
        } else {
            mag_cals.push(fc.imb_cals[ci][0]);
        }
    }
    // Point magnetometers at each gradiometer, from the original orientations: the coil
    // frame times MNE's axis swaps (x: ex↔ez, y: ey↔ez, z: none), so the normal is ex, ey, ez.
    let swaps: [[usize; 3]; 3] = [[2, 1, 0], [0, 2, 1], [0, 1, 2]];
    let mut grad_points = Vec::new();
    for sw in swaps.iter().take(n_types) {
        let mut pts = Vec::new();
        for (i, ch) in meg.iter().enumerate() {
            if !is_grad[i] {
                continue;
            }
            let mut c = ch.clone();
            c.coil_type = 2000; // FIFFV_COIL_POINT_MAGNETOMETER
            for (new_axis, &old_axis) in sw.iter().enumerate() {
                for k in 0..3 {
                    c.loc[3 + 3 * new_axis + k] = ch.loc[3 + 3 * old_axis + k];
                }
            }
            pts.push(c);
        }
        grad_points.push(pts);
    }
    // New orientations; positions stay.
    let mut calibrated = meg.to_vec();
    for (i, &ci) in row.iter().enumerate() {
        let mut ch_rot = rot_of(&meg[i].loc);
        normalize_columns(&mut ch_rot);
        let mut cal_rot = rot_of(&fc.locs[ci]);
        normalize_columns(&mut cal_rot);
        let ez = col(&cal_rot, 2);
        let (ex, ey) = (col(&cal_rot, 0), col(&cal_rot, 1));
        let dx = ez[0] * ex[0] + ez[1] * ex[1] + ez[2] * ex[2];
        let dy = ez[0] * ey[0] + ez[1] * ey[1] + ez[2] * ey[2];
        if dx.abs().max(dy.abs()) > 1e-5 {
            // EX/EY not orthogonal to the calibrated EZ: rotate the original frame so its EZ
            // lands on the calibrated one.
            let r = find_vector_rotation(col(&ch_rot, 2), ez);
            cal_rot = matmul(&r, &ch_rot);
            normalize_columns(&mut cal_rot);
        }
        for j in 0..3 {
            for k in 0..3 {
                calibrated[i].loc[3 + 3 * j + k] = cal_rot[k][j];
            }
        }
    }
    Ok(Calibration { calibrated, grad_imbalances, grad_points, mag_cals })
}
