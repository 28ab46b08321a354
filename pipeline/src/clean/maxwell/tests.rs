//! Tests on MNE's SSS test file (../shared/data/mne-testing-data/SSS/), skipped when absent.
//! The equality with MNE itself is checked in tests/oracle/test_maxwell.py; these check the
//! shapes and invariants and, with BF_MAXWELL_DUMP=DIR, write our bases and output as .npy
//! for ad-hoc comparison with MNE.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::formats;

fn erm() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mne-testing-data/SSS/test_move_anon_erm_raw.fif");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

/// The empty-room file opened, with its head geometry (None when the file is absent).
fn open_erm() -> Option<(PathBuf, Box<dyn RawReader>, HeadGeometry)> {
    let path = erm()?;
    let raw = formats::open(&path).unwrap();
    let geom = read_head_geometry(&path).unwrap();
    Some((path, raw, geom))
}

/// SSS in the device frame about the origin MNE's tests use for this file, no
/// regularisation; `site` adds the calibration file, the cross-talk file or tSSS.
fn device_frame(site: MaxwellParams) -> MaxwellParams {
    MaxwellParams { origin: Origin::Point([0.0, 0.013, -0.006]), coord_frame: CoordFrame::Meg, regularize: Regularize::None, ..site }
}

fn dump(name: &str, rows: usize, cols: usize, at: impl Fn(usize, usize) -> f64) {
    let Ok(dir) = std::env::var("BF_MAXWELL_DUMP") else { return };
    let mut f = std::fs::File::create(Path::new(&dir).join(name)).unwrap();
    crate::formats::npy::write_header_f64(&mut f, (rows, cols)).unwrap();
    let mut b = Vec::with_capacity(rows * cols * 8);
    for i in 0..rows {
        for j in 0..cols {
            b.extend_from_slice(&at(i, j).to_le_bytes());
        }
    }
    f.write_all(&b).unwrap();
}

#[test]
fn erm_device_frame_sss() {
    let Some((path, raw, geom)) = open_erm() else { return };
    assert!(raw.maxshield());
    assert!(geom.dev_head_t.is_none());
    assert_eq!(geom.dig.len(), 193);
    let info = raw.info();
    let meg: Vec<_> = info.channels.iter().filter(|c| matches!(c.kind, crate::ChannelKind::Mag | crate::ChannelKind::Grad)).collect();
    assert_eq!(meg.len(), 306);
    let coils = coils::Coils::new(&path, &meg, coils::ACCURACY_ACCURATE).unwrap();
    let origin = [0.0, 0.013, -0.006];
    let s = basis::sss_basis(&origin, 8, 3, &coils);
    assert_eq!(s.shape(), (306, 95));
    dump("basis_meg.npy", 306, 95, |i, j| s[(i, j)]);

    for (reg, name) in [(Regularize::None, "sss_none.npy"), (Regularize::In, "sss_in.npy")] {
        let params = MaxwellParams {
            origin: Origin::Point(origin),
            coord_frame: CoordFrame::Meg,
            regularize: reg,
            ..MaxwellParams::default()
        };
        let mx = Maxwell::with_geometry(raw.as_ref(), &geom, &params).unwrap();
        let op = &mx.operator;
        assert_eq!(op.op.shape(), (306, 306));
        if reg == Regularize::None {
            assert_eq!(op.n_use_in, 80);
            assert_eq!(op.reg_moments.len(), 95);
        }
        eprintln!("{name}: cond {:.3}, {} in + {} out", op.cond, op.n_use_in, op.reg_moments.len() - op.n_use_in);
        let n = mx.info().n_samples;
        let nc = mx.info().n_channels();
        let data = mx.read_f64(&mx.all_picks(), 0, n).unwrap();
        dump(name, nc, n, |i, j| data[(i, j)]);
        dump(&format!("moments_{name}"), 1, op.reg_moments.len(), |_, j| op.reg_moments[j] as f64);
    }
}

#[test]
fn erm_fine_calibration_operator() {
    let Some((path, raw, geom)) = open_erm() else { return };
    let params = device_frame(MaxwellParams { calibration: Some(path.with_file_name("sss_cal_3053.dat")), ..Default::default() });
    let op = sss_operator(&path, raw.info(), &geom, &params).unwrap();
    assert_eq!(op.op.shape(), (306, 306));
    dump("op_cal.npy", 306, 306, |i, j| op.op[(i, j)]);
    let fc = finecal::read_fine_calibration(&path.with_file_name("sss_cal_3053.dat")).unwrap();
    assert_eq!(fc.ch_names.len(), 306);
    assert_eq!(fc.ch_names[0], "MEG0113");
    let meg: Vec<crate::ChannelInfo> = raw.info().channels.iter().filter(|c| matches!(c.kind, crate::ChannelKind::Mag | crate::ChannelKind::Grad)).cloned().collect();
    let names: Vec<String> = raw.info().channels.iter().map(|c| c.name.clone()).collect();
    let cal = finecal::update_sensor_geometry(&path, &fc, &meg, &names).unwrap();
    dump("cal_locs.npy", 306, 12, |i, j| cal.calibrated[i].loc[j]);
    dump("cal_imb.npy", 1, 204, |_, j| cal.grad_imbalances[0][j]);
    dump("cal_mag.npy", 1, 102, |_, j| cal.mag_cals[j]);
    dump("pt_locs.npy", 204, 12, |i, j| cal.grad_points[0][i].loc[j]);
}

#[test]
fn erm_cross_talk_operator() {
    let Some((path, raw, geom)) = open_erm() else { return };
    let ct = ctc::read_cross_talk(&path.with_file_name("ct_sparse.fif")).unwrap();
    assert_eq!(ct.decoupler.shape(), (ct.ch_names.len(), ct.ch_names.len()));
    let params = device_frame(MaxwellParams { cross_talk: Some(path.with_file_name("ct_sparse.fif")), ..Default::default() });
    let op = sss_operator(&path, raw.info(), &geom, &params).unwrap();
    dump("op_ctc.npy", 306, 306, |i, j| op.op[(i, j)]);
}

#[test]
fn erm_tsss() {
    let Some((_, raw, geom)) = open_erm() else { return };
    let params = device_frame(MaxwellParams { st_duration: Some(1.0), ..Default::default() });
    let mx = Maxwell::with_geometry(raw.as_ref(), &geom, &params).unwrap();
    let n = mx.info().n_samples;
    let nc = mx.info().n_channels();
    let data = mx.read_f64(&mx.all_picks(), 0, n).unwrap();
    // Reading in pieces gives the same samples (windows are processed whole).
    let part = mx.read_f64(&mx.all_picks(), 100, 700).unwrap();
    for c in 0..nc {
        for t in 0..600 {
            assert_eq!(part[(c, t)], data[(c, t + 100)]);
        }
    }
    dump("tsss1.npy", nc, n, |i, j| data[(i, j)]);
}
