//! TensorBoard event files, so `tensorboard --logdir OUT` shows a run's scalars.
//!
//! A file `events.out.tfevents.<secs>.<host>.<pid>` is a TFRecord stream: each record is
//! `u64 length (LE) · u32 masked CRC32C of those 8 bytes · data · u32 masked CRC32C of data`,
//! and each record's data is one `tensorflow.Event` protobuf. The first event carries
//! `file_version = "brain.Event:2"`; then each logged step is one event holding a `Summary`
//! of `(tag, simple_value)` pairs. At every start of a writer (a fresh run or a `--resume`)
//! a `SessionLog { status: START }` event at the first step to come tells TensorBoard's
//! loader to drop events of that step and later from earlier files: steps logged after the
//! checkpoint a run was resumed from, as `metrics.jsonl` is truncated to the checkpoint.
//!
//! The protobuf encoding is written here (four field kinds over four messages, ~40 lines)
//! rather than through prost: that would mean `.proto` files and a code generator (or
//! hand-annotated derive structs of the same size as this encoder) plus a proc-macro build,
//! for messages whose wire format has been fixed since TensorFlow 1.0. The Python test reads
//! the files with TensorBoard's own loader (`tests/oracle/test_tensorboard.py`). The
//! checksum is the `crc32c` crate's.
//!
//! A reader never sees a torn record: the records of one call are encoded into one buffer and
//! handed to the kernel with a single `write_all` on a file opened for appending, and
//! TensorBoard's loader treats a record cut short at the end of a file as not written yet
//! (it rereads from there on its next poll). Nothing is buffered in user space between
//! calls, so after each call the step is in the file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// The event-file name prefix TensorBoard looks for.
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// Appends events to one event file.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, named so that it sorts after every
    /// event file already there (TensorBoard reads a folder's files in name order), and writes
    /// the file-version event and a session start at `first_step`.
    pub fn create(dir: &Path, first_step: i64) -> Result<EventWriter> {
        Self::open(dir, Some(first_step))
    }

    /// A new event file without a session start, for events that do not continue a training
    /// log (bf-eval's figures at a checkpoint's step): evaluating an earlier checkpoint after a
    /// later one must not make TensorBoard drop the later one's points.
    pub fn create_without_session(dir: &Path) -> Result<EventWriter> {
        Self::open(dir, None)
    }

    fn open(dir: &Path, session_start: Option<i64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let latest = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(FILE_PREFIX)?.split('.').next()?.parse::<u64>().ok()))
            .max();
        let secs = latest.map_or(now, |l| now.max(l + 1));
        let path = dir.join(format!("{FILE_PREFIX}{secs:010}.{}.{}", hostname(), std::process::id()));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter { file, path };
        let wall = wall_time();
        let mut buf = Vec::new();
        record(&mut buf, &event(wall, 0, Payload::FileVersion("brain.Event:2")));
        if let Some(step) = session_start {
            record(&mut buf, &event(wall, step, Payload::SessionStart));
        }
        w.append(&buf)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event at `step` holding every `(tag, value)` (stored as f32, TensorBoard's
    /// `simple_value`); non-finite values are written as they are.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let mut buf = Vec::new();
        record(&mut buf, &event(wall_time(), step, Payload::Scalars(values)));
        self.append(&buf)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// This machine's name, as TensorFlow's writers put it in file names (`localhost` if unknown;
/// characters other than letters, digits, `-` and `_` become `_` so the name stays one field).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or we
    // stop at its end.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if ok && !name.is_empty() {
        name
    } else {
        "localhost".into()
    }
}

/// CRC32C masked as TFRecord does (so that a CRC of data holding CRCs is not degenerate).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one TFRecord holding `data` to `out`.
pub fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

// ---- the protobuf wire format of the few messages we write ----------------------------------
// tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto:
//   Event      { double wall_time = 1; int64 step = 2; oneof { string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 7; } }
//   Summary    { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//   SessionLog { SessionStatus status = 1; }   START = 1

enum Payload<'a> {
    FileVersion(&'a str),
    Scalars(&'a [(&'a str, f64)]),
    SessionStart,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: number and wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The encoded `Event`.
fn event(wall_time: f64, step: i64, payload: Payload) -> Vec<u8> {
    let mut e = Vec::new();
    key(&mut e, 1, 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        key(&mut e, 2, 0);
        varint(&mut e, step as u64); // int64: two's complement as u64, as protobuf does
    }
    match payload {
        Payload::FileVersion(v) => bytes_field(&mut e, 3, v.as_bytes()),
        Payload::Scalars(values) => {
            let mut summary = Vec::new();
            for (tag, v) in values {
                let mut value = Vec::new();
                bytes_field(&mut value, 1, tag.as_bytes());
                key(&mut value, 2, 5);
                value.extend_from_slice(&(*v as f32).to_le_bytes());
                bytes_field(&mut summary, 1, &value);
            }
            bytes_field(&mut e, 5, &summary);
        }
        Payload::SessionStart => bytes_field(&mut e, 7, &[0x08, 0x01]),
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_its_mask_match_known_values() {
        // CRC32C check value (RFC 3720 B.4 / the catalogue's "123456789").
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // The mask of TensorFlow's crc32c.h: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
        let crc = 0xE306_9283u32;
        assert_eq!(masked_crc32c(b"123456789"), ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn records_frame_their_data() {
        let mut out = Vec::new();
        record(&mut out, b"abc");
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[8..12], &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
        assert_eq!(&out[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn events_encode_as_protobuf_does() {
        // Bytes of `Event(wall_time=1.5, step=300, summary=Summary(value=[Value(tag="a",
        // simple_value=0.25)]))` as the protobuf Python runtime serializes it.
        let e = event(1.5, 300, Payload::Scalars(&[("a", 0.25)]));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xAC, 0x02, 0x2A, 0x0A, 0x0A, 0x08, 0x0A, 0x01, b'a', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(e, want);
        let v = event(2.0, 0, Payload::FileVersion("brain.Event:2"));
        assert_eq!(&v[9..11], &[0x1A, 13]);
        assert_eq!(&v[11..], b"brain.Event:2");
        assert_eq!(&event(0.0, 7, Payload::SessionStart)[9..], &[0x10, 7, 0x3A, 2, 0x08, 0x01]);
    }

    #[test]
    fn a_new_writer_sorts_after_the_files_already_there() {
        let dir = std::env::temp_dir().join(format!("bf-tb-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let future = format!("{FILE_PREFIX}{:010}.host.1", 4_000_000_000u64);
        std::fs::write(dir.join(&future), b"").unwrap();
        let mut w = EventWriter::create(&dir, 5).unwrap();
        w.scalars(5, &[("train/loss", 1.0)]).unwrap();
        let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name > future, "{name} must sort after {future}");
        assert!(name.starts_with(&format!("{FILE_PREFIX}4000000001.")), "{name}");
        let bytes = std::fs::read(w.path()).unwrap();
        // Three whole records: version, session start, scalars.
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let data = &bytes[at + 12..at + 12 + len];
            assert_eq!(&bytes[at + 12 + len..at + 16 + len], &masked_crc32c(data).to_le_bytes());
            at += 16 + len;
            n += 1;
        }
        assert_eq!((at, n), (bytes.len(), 3));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
