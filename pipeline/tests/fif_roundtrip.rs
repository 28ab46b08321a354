//! FIF writer → reader round trips, split files, streaming reads and bad input.
//! (Agreement with MNE itself is tested in tests/oracle/test_fif.py.)

use std::path::{Path, PathBuf};

use bf_pipeline::formats::fif::write::{write_raw, FifSampleFormat, WriteOptions};
use bf_pipeline::formats::fif::FifReader;
use bf_pipeline::recording::{Annotation, ChannelInfo, ChannelKind, InMemory, MeasDate, Projector, RecordingInfo, Unit};
use bf_pipeline::RawReader;
use ndarray::Array2;

fn recording(nchan: usize, n: usize) -> InMemory {
    let mut channels = Vec::new();
    for c in 0..nchan {
        let (kind, fk, unit) = match c % 3 {
            0 => (ChannelKind::Eeg, 2, Unit::V),
            1 => (ChannelKind::Mag, 1, Unit::T),
            _ => (ChannelKind::Grad, 1, Unit::T_M),
        };
        let mut ch = ChannelInfo::new(format!("CH{c:03}"), kind, fk, unit);
        ch.loc[0] = c as f64 * 0.01;
        channels.push(ch);
    }
    let data = Array2::from_shape_fn((nchan, n), |(c, t)| ((c * 7 + t * 13) % 101) as f64 * 1e-6 - 5e-5);
    let info = RecordingInfo {
        path: PathBuf::from("memory"),
        format: "memory",
        sfreq: 250.0,
        n_samples: n,
        first_samp: 42,
        meas_date: Some(MeasDate { secs: 1_000_000_000, usecs: 5 }),
        channels,
        bads: vec!["CH001".into()],
        annotations: vec![Annotation { onset: 1.0, duration: 0.5, description: "BAD_x:y".into() }],
        projs: vec![Projector { desc: "p".into(), kind: 1, active: false, ch_names: vec!["CH001".into(), "CH002".into()], vectors: vec![vec![0.6, 0.8]] }],
        comp_grade: 0,
        highpass: Some(0.1),
        lowpass: Some(100.0),
        line_freq: Some(50.0),
        discontinuous: false,
        chpi: None,
    };
    InMemory::new(info, data).unwrap()
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn float32_round_trip_keeps_info_and_data() {
    let rec = recording(6, 1000);
    let dir = tmpdir();
    let out = dir.path().join("a_raw.fif");
    let files = write_raw(&rec, &rec.all_picks(), 0, 1000, &out, &WriteOptions::default()).unwrap();
    assert_eq!(files, vec![out.clone()]);
    let r = FifReader::open(&out).unwrap();
    let info = r.info();
    assert_eq!(info.n_samples, 1000);
    assert_eq!(info.first_samp, 42);
    assert_eq!(info.sfreq, 250.0);
    assert_eq!(info.bads, vec!["CH001".to_string()]);
    assert_eq!(info.meas_date, Some(MeasDate { secs: 1_000_000_000, usecs: 5 }));
    assert_eq!(info.annotations.len(), 1);
    assert_eq!(info.annotations[0].description, "BAD_x:y");
    assert!((info.annotations[0].onset - 1.0).abs() < 1e-9);
    assert_eq!(info.projs.len(), 1);
    assert_eq!(info.ch_names(), rec.info.ch_names());
    assert_eq!(info.channels[2].kind, ChannelKind::Grad);
    let got = r.read_f64(&r.all_picks(), 0, 1000).unwrap();
    for (a, b) in got.iter().zip(rec.data.iter()) {
        assert!((a - b).abs() <= b.abs() * 6e-8, "{a} vs {b}");
    }
}

#[test]
fn int16_round_trip_is_within_half_a_step() {
    let rec = recording(3, 500);
    let dir = tmpdir();
    let out = dir.path().join("i_raw.fif");
    let opts = WriteOptions { format: FifSampleFormat::Int16, ..Default::default() };
    write_raw(&rec, &rec.all_picks(), 0, 500, &out, &opts).unwrap();
    let r = FifReader::open(&out).unwrap();
    let got = r.read_f64(&r.all_picks(), 0, 500).unwrap();
    for c in 0..3 {
        let peak = rec.data.row(c).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in got.row(c).iter().zip(rec.data.row(c)) {
            assert!((a - b).abs() <= peak / 32767.0 * 0.5 * 1.0001);
        }
    }
}

#[test]
fn split_files_are_followed_and_named_like_mne() {
    let rec = recording(4, 5000);
    let dir = tmpdir();
    let out = dir.path().join("sub-01_task-t_meg.fif");
    let opts = WriteOptions { split_size: 70_000, buffer_samples: Some(250), ..Default::default() };
    let files = write_raw(&rec, &rec.all_picks(), 0, 5000, &out, &opts).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    assert!(files[0].ends_with("sub-01_task-t_split-01_meg.fif"));
    let r = FifReader::open(&files[0]).unwrap();
    assert_eq!(r.part_paths().len(), files.len());
    assert_eq!(r.info().n_samples, 5000);
    // A window that straddles a split boundary equals the source.
    let got = r.read_f64(&[0, 3], 1200, 3800).unwrap();
    let want = rec.read_f64(&[0, 3], 1200, 3800).unwrap();
    for (a, b) in got.iter().zip(want.iter()) {
        assert!((a - b).abs() <= b.abs() * 6e-8);
    }
}

#[test]
fn windows_equal_the_whole_read_in_f32_and_f64() {
    let rec = recording(5, 3000);
    let dir = tmpdir();
    let out = dir.path().join("w_raw.fif");
    write_raw(&rec, &rec.all_picks(), 0, 3000, &out, &WriteOptions { buffer_samples: Some(100), ..Default::default() }).unwrap();
    let r = FifReader::open(&out).unwrap();
    let all = r.read_f64(&r.all_picks(), 0, 3000).unwrap();
    let win = r.read_f64(&[4, 1], 777, 1234).unwrap();
    for (i, &c) in [4usize, 1].iter().enumerate() {
        for t in 0..(1234 - 777) {
            assert_eq!(win[(i, t)], all[(c, 777 + t)]);
        }
    }
    let w32 = r.read_f32(&[2], 0, 3000).unwrap();
    for t in 0..3000 {
        assert_eq!(w32[(0, t)], all[(2, t)] as f32);
    }
}

fn expect_error(path: &Path, needle: &str) {
    let err = match FifReader::open(path) {
        Ok(_) => panic!("{} opened but should fail", path.display()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&path.display().to_string()), "error does not name the file: {err}");
    assert!(err.contains(needle), "error {err:?} does not say {needle:?}");
}

#[test]
fn bad_input_gives_errors_that_name_the_file() {
    let rec = recording(3, 600);
    let dir = tmpdir();
    let good = dir.path().join("good_raw.fif");
    write_raw(&rec, &rec.all_picks(), 0, 600, &good, &WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let empty = dir.path().join("empty_raw.fif");
    std::fs::write(&empty, b"").unwrap();
    expect_error(&empty, "empty");

    let magic = dir.path().join("magic_raw.fif");
    let mut m = bytes.clone();
    m[3] = 7;
    std::fs::write(&magic, &m).unwrap();
    expect_error(&magic, "not a FIF file");

    let truncated = dir.path().join("trunc_raw.fif");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&truncated, "past the end");

    // A channel count that lies (NCHAN says 99).
    let lying = dir.path().join("nchan_raw.fif");
    let mut l = bytes.clone();
    let pos = find_tag(&l, 200).expect("NCHAN tag");
    l[pos + 16..pos + 20].copy_from_slice(&99i32.to_be_bytes());
    std::fs::write(&lying, &l).unwrap();
    expect_error(&lying, "99 channels");

    // A tag whose size points past the end of the file.
    let huge = dir.path().join("size_raw.fif");
    let mut h = bytes.clone();
    let pos = find_tag(&h, 300).expect("data buffer");
    h[pos + 8..pos + 12].copy_from_slice(&i32::MAX.to_be_bytes());
    std::fs::write(&huge, &h).unwrap();
    expect_error(&huge, "past the end");
}

/// Byte offset of the first tag of `kind` (walking sequential tags from the start).
fn find_tag(bytes: &[u8], kind: i32) -> Option<usize> {
    let mut pos = 0;
    while pos + 16 <= bytes.len() {
        let k = i32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let size = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        if k == kind {
            return Some(pos);
        }
        pos += 16 + size;
    }
    None
}

#[test]
fn reading_outside_the_recording_is_an_error() {
    let rec = recording(2, 100);
    let dir = tmpdir();
    let out = dir.path().join("r_raw.fif");
    write_raw(&rec, &rec.all_picks(), 0, 100, &out, &WriteOptions::default()).unwrap();
    let r = FifReader::open(&out).unwrap();
    assert!(r.read_f64(&[0], 50, 101).unwrap_err().to_string().contains("outside"));
    assert!(r.read_f64(&[2], 0, 10).unwrap_err().to_string().contains("channel index 2"));
}

#[test]
fn dev_head_t_and_dig_round_trip() {
    use bf_pipeline::maxwell::geometry::{read_head_geometry, DigPoint, HeadGeometry, Transform};
    let rec = recording(4, 500);
    let dir = tmpdir();
    let out = dir.path().join("h_raw.fif");
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let t = Transform { rot: [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], trans: [0.001, -0.02, 0.045] };
    let dig = vec![
        DigPoint { kind: 1, ident: 2, r: [0.0, 0.1, 0.0], coord_frame: 4 },
        DigPoint { kind: 2, ident: 1, r: [-0.05, 0.02, 0.07], coord_frame: 4 },
        DigPoint { kind: 4, ident: 1, r: [0.01, -0.03, 0.09], coord_frame: 4 },
    ];
    let head = HeadGeometry { dev_head_t: Some(t), dig: dig.clone() };
    write_raw(&rec, &rec.all_picks(), 0, 500, &out, &WriteOptions { head: Some(head), ..Default::default() }).unwrap();
    let g = read_head_geometry(&out).unwrap();
    let got = g.dev_head_t.expect("dev_head_t written");
    for i in 0..3 {
        assert!((got.trans[i] - t.trans[i]).abs() < 1e-7);
        for j in 0..3 {
            assert!((got.rot[i][j] - t.rot[i][j]).abs() < 1e-7);
        }
    }
    assert_eq!(g.dig.len(), 3);
    for (a, b) in g.dig.iter().zip(&dig) {
        assert_eq!((a.kind, a.ident, a.coord_frame), (b.kind, b.ident, 4));
        assert!(a.r.iter().zip(&b.r).all(|(x, y)| (x - y).abs() < 1e-7));
    }
    // The samples are the same as without the head block.
    let plain = dir.path().join("p_raw.fif");
    write_raw(&rec, &rec.all_picks(), 0, 500, &plain, &WriteOptions::default()).unwrap();
    assert!(read_head_geometry(&plain).unwrap().dev_head_t.is_none());
    let (r, p) = (FifReader::open(&out).unwrap(), FifReader::open(&plain).unwrap());
    assert_eq!(r.read_f64(&r.all_picks(), 0, 500).unwrap(), p.read_f64(&p.all_picks(), 0, 500).unwrap());
}
