//! Regression inputs from fuzzing the readers (`fuzz/`, `cargo +nightly fuzz run <target>`).
//! Contract: malformed input gives an `Err` naming the file, never a panic, hang or huge
//! allocation. Each test writes the offending bytes to a temp file and opens it.

use std::path::{Path, PathBuf};

use bf_pipeline::formats::fif::FifReader;
use bf_pipeline::RawReader;

fn write(dir: &Path, name: &str, parts: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, parts.concat()).unwrap();
    path
}

/// Opening must fail with an error that names the file and says `why`.
fn assert_rejected<R: RawReader>(path: &Path, open: Result<R, bf_pipeline::Error>, why: &str) {
    match open {
        Ok(r) => panic!("{} opened ({} samples); expected an error", path.display(), r.info().n_samples),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&*path.to_string_lossy()), "error does not name the file: {msg}");
            assert!(msg.contains(why), "unexpected error: {msg}");
        }
    }
}

// FIF tags are 16-byte big-endian headers (kind, type, size, next) + data.
const FILE_ID: &[u8] = b"\0\0\0\x64\0\0\0\x1f\0\0\0\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
const DIR_POINTER_NONE: &[u8] = b"\0\0\0\x65\0\0\0\x03\0\0\0\x04\0\0\0\0\xff\xff\xff\xff";
const START_MEAS: &[u8] = b"\0\0\0\x68\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x64";
const START_MEAS_INFO: &[u8] = b"\0\0\0\x68\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x65";
const NCHAN_1: &[u8] = b"\0\0\0\xc8\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x01";
const SFREQ_1000: &[u8] = b"\0\0\0\xc9\0\0\0\x04\0\0\0\x04\0\0\0\0\x44\x7a\0\0";
/// CH_INFO header, then a 96-byte struct: scanno 1, logno 1, kind EEG, range 1, cal 1,
/// coil 1, loc zeros, unit V (107), unit_mul 0, name "A".
const CH_INFO_HEAD: &[u8] = b"\0\0\0\xcb\0\0\0\x1e\0\0\0\x60\0\0\0\0";
const CH_INFO_A: &[u8] = b"\0\0\0\x01\0\0\0\x01\0\0\0\x02\x3f\x80\0\0\x3f\x80\0\0\0\0\0\x01";
const CH_INFO_LOC: &[u8] = &[0; 48];
const CH_INFO_TAIL: &[u8] = b"\0\0\0\x6b\0\0\0\0A\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
const END_MEAS_INFO: &[u8] = b"\0\0\0\x69\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x65";
const START_RAW: &[u8] = b"\0\0\0\x68\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x66";
const END_RAW: &[u8] = b"\0\0\0\x69\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x66";
const END_MEAS: &[u8] = b"\0\0\0\x69\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x64";

/// A projector whose vector matrix claims 2^31-1 × 2^31-1 doubles: the size check
/// `nrow * ncol * 8` overflowed usize (panic at fif/tag.rs `read_matrix` with overflow checks;
/// with them off the wrapped product could pass the check).
#[test]
fn fif_projector_matrix_dimensions_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "matrix_overflow_raw.fif", &[
        FILE_ID, DIR_POINTER_NONE, START_MEAS, START_MEAS_INFO, NCHAN_1, SFREQ_1000,
        CH_INFO_HEAD, CH_INFO_A, CH_INFO_LOC, CH_INFO_TAIL,
        b"\0\0\0\x68\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\x01\x39", // BLOCK_START PROJ (313)
        b"\0\0\0\x68\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\x01\x3a", // BLOCK_START PROJ_ITEM (314)
        b"\0\0\0\xce\0\0\0\x0a\0\0\0\x01\0\0\0\0p",            // COMMENT "p"
        b"\0\0\x0d\x53\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x01", // PROJ_ITEM_KIND 1
        b"\0\0\x0d\x56\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\0\x01", // PROJ_ITEM_NVEC 1
        b"\0\0\x0d\x59\0\0\0\x0a\0\0\0\x01\0\0\0\0A",          // PROJ_ITEM_CH_NAME_LIST "A"
        // PROJ_ITEM_VECTORS, MATRIX|DOUBLE: one double, then dims ncol, nrow = 2^31-1, ndim 2.
        b"\0\0\x0d\x57\x40\0\0\x05\0\0\0\x14\0\0\0\0\x3f\xf0\0\0\0\0\0\0\x7f\xff\xff\xff\x7f\xff\xff\xff\0\0\0\x02",
        b"\0\0\0\x69\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\x01\x3a", // BLOCK_END PROJ_ITEM
        b"\0\0\0\x69\0\0\0\x03\0\0\0\x04\0\0\0\0\0\0\x01\x39", // BLOCK_END PROJ
        END_MEAS_INFO, START_RAW,
        b"\0\0\x01\x2c\0\0\0\x02\0\0\0\x02\0\0\0\0\0\0", // DATA_BUFFER, one int16 sample
        END_RAW, END_MEAS,
    ]);
    assert_rejected(&path, FifReader::open(&path), "inconsistent dimensions");
}

/// A tag directory that lists (DATA_SKIP 2^31-1, 1 MiB DATA_BUFFER) 16,400 times: the running
/// sample position overflowed usize (panic at fif/mod.rs `scan_raw_buffers`; wrapped, the
/// buffers would overlap and `read_into`'s unchecked column writes run out of bounds).
/// Needs ~1.5 MB (the sum only overflows for big buffers), so it is built here, not stored.
#[test]
fn fif_data_skip_positions_overflow() {
    fn tag(kind: i32, typ: i32, data: &[u8], next: i32) -> Vec<u8> {
        [&kind.to_be_bytes()[..], &typ.to_be_bytes(), &(data.len() as i32).to_be_bytes(), &next.to_be_bytes(), data].concat()
    }
    let buf_bytes = 1usize << 20;
    let mut body = [FILE_ID, DIR_POINTER_NONE, START_MEAS, START_MEAS_INFO, NCHAN_1, SFREQ_1000, CH_INFO_HEAD, CH_INFO_A, CH_INFO_LOC, CH_INFO_TAIL, END_MEAS_INFO, START_RAW].concat();
    let skip_pos = body.len();
    body.extend(tag(301, 3, &i32::MAX.to_be_bytes(), 0)); // DATA_SKIP
    let buf_pos = body.len();
    body.extend(tag(300, 2, &vec![0; buf_bytes], 0)); // DATA_BUFFER, int16
    body.extend([END_RAW, END_MEAS].concat());
    // The directory: every tag once, with the (skip, buffer) pair repeated after the buffer.
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let h = &body[pos..pos + 16];
        let size = i32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        entries.push([&h[..12], &(pos as i32).to_be_bytes()[..]].concat());
        if pos == buf_pos {
            for _ in 0..16_400 {
                entries.push([&tag(301, 3, &[], 0)[..8], &4i32.to_be_bytes(), &(skip_pos as i32).to_be_bytes()].concat());
                entries.push([&tag(300, 2, &[], 0)[..8], &(buf_bytes as i32).to_be_bytes(), &(buf_pos as i32).to_be_bytes()].concat());
            }
        }
        pos += 16 + size;
    }
    let dir_pos = body.len() as i32;
    body.extend(tag(102, 32, &entries.concat(), -1));
    body[52..56].copy_from_slice(&dir_pos.to_be_bytes()); // the directory pointer's value
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "skip_overflow_raw.fif", &[&body]);
    assert_rejected(&path, FifReader::open(&path), "more samples than can be counted");
}
