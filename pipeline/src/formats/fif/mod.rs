//! FIF raw reader (Neuromag / MNE `*_raw.fif`, `*_meg.fif`, `.fif.gz`).
//!
//! Follows MNE's `read_raw_fif`: the measurement info gives channels and calibrations, the
//! raw data block a list of buffers (int16, int32, float32, float64, packed 16-bit), data
//! skips become zero-filled gaps annotated `BAD_ACQ_SKIP`, `first_samp` comes from the block
//! (plus an initial skip), and split files are followed through their `FIFFB_REF` block.
//! Samples are `stored value × range × cal` computed in f64, exactly MNE's arithmetic.
//!
//! Why our own reader and not the `fiff` crate (v0.1.0, evaluated against MNE 1.13 on
//! ../shared/data and on MNE-written files): its samples are right where it reads them, but it
//! misreads the tag directory (the KIT test file fails to open), several tag constants are
//! wrong (filters, descriptions), bads and projectors are looked up in the wrong blocks,
//! channel names keep bytes after the NUL, data skips are dropped (every later sample shifts),
//! split files and first_samp are ignored, it has no writer, and it reads through one shared
//! cursor. The container layer here is a few hundred lines and does all of that.

pub mod geometry;
pub mod info;
pub mod tag;
pub mod write;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::recording::{Annotation, ReadSamples, RecordingInfo, Sample};

use tag::{k, DirEntry, FifFile, FORMAT};

/// One stretch of samples: a data buffer in one of the (split) files, or a skip (zeros).
#[derive(Clone, Copy, Debug)]
struct Buffer {
    part: usize,
    /// `None` for a data skip, read as zeros like MNE does.
    entry: Option<DirEntry>,
    /// First sample, counted from the recording's first sample (0-based).
    start: usize,
    nsamp: usize,
}

/// A streaming FIF reader over one file and the split files that continue it.
pub struct FifReader {
    info: RecordingInfo,
    parts: Vec<FifFile>,
    buffers: Vec<Buffer>,
    /// `range × cal` per channel, the factor MNE multiplies stored values with.
    cals: Vec<f64>,
    /// The samples sit in a MaxShield block (`FIFFB_IAS_RAW_DATA`), not a raw one.
    maxshield: bool,
}

impl FifReader {
    /// Opens `path` and every split file it names, reading only headers and the directory.
    pub fn open(path: &Path) -> Result<FifReader> {
        let first = FifFile::open(path)?;
        let meas = info::read_meas_info(&first)?;
        let nchan = meas.channels.len();
        let mut parts = Vec::new();
        let mut buffers = Vec::new();
        let mut skips = Vec::new();
        let mut first_samp = None;
        let mut maxshield = false;
        let mut next = Some(first);
        let mut seen: Vec<PathBuf> = Vec::new();
        while let Some(file) = next.take() {
            if seen.contains(&file.path) {
                return Err(Error::format(&file.path, FORMAT, "split files name each other in a loop"));
            }
            seen.push(file.path.clone());
            let part = parts.len();
            let scan = scan_raw_buffers(&file, part, nchan)?;
            first_samp.get_or_insert(scan.first_samp);
            maxshield |= scan.maxshield;
            let offset = buffers.last().map_or(0, |b: &Buffer| b.start + b.nsamp);
            // Each part's sample count is checked in `scan_raw_buffers`; their sum is too.
            if scan.buffers.last().and_then(|b| (b.start + b.nsamp).checked_add(offset)).is_none() {
                return Err(Error::format(&file.path, FORMAT, "split files hold more samples than can be counted"));
            }
            for mut b in scan.buffers {
                b.start += offset;
                if b.entry.is_none() {
                    skips.push((b.start, b.nsamp));
                }
                buffers.push(b);
            }
            if let Some(next_path) = next_split_path(&file)? {
                if !next_path.exists() {
                    return Err(Error::format(
                        &file.path,
                        FORMAT,
                        format!("names a next split file {} that does not exist", next_path.display()),
                    ));
                }
                next = Some(FifFile::open(&next_path)?);
            }
            parts.push(file);
        }
        let first_samp = first_samp.unwrap_or(0);
        let n_samples = buffers.last().map_or(0, |b| b.start + b.nsamp);
        let mut annotations = info::read_annotations(&parts[0], first_samp, meas.sfreq)?;
        annotations.extend(skips.iter().map(|&(start, nsamp)| Annotation {
            onset: start as f64 / meas.sfreq,
            duration: nsamp as f64 / meas.sfreq,
            description: "BAD_ACQ_SKIP".into(),
        }));
        let cals = meas.channels.iter().map(|c| c.range * c.cal).collect();
        let info = RecordingInfo {
            path: path.to_path_buf(),
            format: "fif",
            sfreq: meas.sfreq,
            n_samples,
            first_samp,
            meas_date: meas.meas_date,
            channels: meas.channels,
            bads: meas.bads,
            annotations,
            projs: meas.projs,
            comp_grade: meas.comp_grade,
            highpass: meas.highpass,
            lowpass: meas.lowpass,
            line_freq: meas.line_freq,
            discontinuous: !skips.is_empty(),
            chpi: meas.chpi,
        };
        Ok(FifReader { info, parts, buffers, cals, maxshield })
    }

    /// The files read, the first one and its splits, in order.
    pub fn part_paths(&self) -> Vec<&Path> {
        self.parts.iter().map(|p| p.path.as_path()).collect()
    }

    fn read_into<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.info.check_request(picks, start, stop, out.len())?;
        let n = stop - start;
        if n == 0 || picks.is_empty() {
            return Ok(());
        }
        let first = self.buffers.partition_point(|b| b.start + b.nsamp <= start);
        let used: Vec<&Buffer> = self.buffers[first..].iter().take_while(|b| b.start < stop).collect();
        let out_ptr = OutPtr(out.as_mut_ptr());
        used.par_iter().try_for_each(|b| {
            let lo = start.max(b.start);
            let hi = stop.min(b.start + b.nsamp);
            let dest = DestColumns { ptr: out_ptr, row_len: n, col0: lo - start, ncols: hi - lo };
            match b.entry {
                None => {
                    dest.fill_zero(picks.len());
                    Ok(())
                }
                Some(e) => self.decode_buffer(b.part, &e, lo - b.start, hi - b.start, picks, &dest),
            }
        })
    }

    /// Reads samples `s0..s1` of one buffer (only those bytes) and writes the picked channels.
    fn decode_buffer<T: Sample>(&self, part: usize, e: &DirEntry, s0: usize, s1: usize, picks: &[usize], dest: &DestColumns<T>) -> Result<()> {
        let nchan = self.cals.len();
        let width = sample_width(e.typ).expect("checked when the buffer list was built");
        let frame = nchan * width;
        let ns = s1 - s0;
        let file = &self.parts[part];
        let cals = &self.cals;
        // One byte buffer per thread, reused: a fresh zeroed buffer per FIF buffer (megabytes)
        // cost a page-faulted allocation and a memset for bytes that are overwritten at once.
        // Nothing in here runs rayon work, so the borrow cannot be re-entered on this thread.
        READ_BYTES.with_borrow_mut(|bytes| {
            bytes.resize(ns * frame, 0);
            let bytes = &mut bytes[..ns * frame];
            file.source.read_at(&file.path, bytes, e.pos + 16 + (s0 * frame) as u64)?;
            match e.typ {
                k::T_SHORT | k::T_DAU_PACK16 => decode_frames::<T, 2>(bytes, frame, ns, picks, cals, dest, |c| i16::from_be_bytes(c) as f64),
                k::T_INT => decode_frames::<T, 4>(bytes, frame, ns, picks, cals, dest, |c| i32::from_be_bytes(c) as f64),
                k::T_FLOAT => decode_frames::<T, 4>(bytes, frame, ns, picks, cals, dest, |c| f32::from_be_bytes(c) as f64),
                _ => decode_frames::<T, 8>(bytes, frame, ns, picks, cals, dest, f64::from_be_bytes),
            }
            Ok(())
        })
    }
}

impl ReadSamples for FifReader {
    fn recording(&self) -> &RecordingInfo {
        &self.info
    }
    fn is_maxshield(&self) -> bool {
        self.maxshield
    }
    fn read_samples<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.read_into(picks, start, stop, out)
    }
    fn holds_stored_samples(&self) -> bool {
        true
    }
}

thread_local! {
    static READ_BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the picked channels of `ns` frames (`frame` bytes each, a `W`-byte big-endian
/// sample per channel) as `value(bytes) × cal`, in tiles of [`DECODE_TILE`] frames: within a
/// tile, channel by channel. A pass per channel over the whole buffer re-reads a buffer larger
/// than the cache once per pick; frame by frame, every sample goes to another output row, and
/// rows a power of two apart in memory evict each other from the cache. A tile (~100 kB of
/// input for 400 channels) stays in the cache while each channel's piece is written in order.
fn decode_frames<T: Sample, const W: usize>(bytes: &[u8], frame: usize, ns: usize, picks: &[usize], cals: &[f64], dest: &DestColumns<T>, value: impl Fn([u8; W]) -> f64) {
    for t0 in (0..ns).step_by(DECODE_TILE) {
        let t1 = (t0 + DECODE_TILE).min(ns);
        let tile = &bytes[t0 * frame..t1 * frame];
        for (row, &ch) in picks.iter().enumerate() {
            let cal = cals[ch];
            // SAFETY: each buffer owns the columns col0..col0+ncols of every row; no other
            // task writes them, and `row < picks.len()` rows exist in `out`.
            let dst = &mut unsafe { dest.row(row) }[t0..t1];
            for (d, f) in dst.iter_mut().zip(tile.chunks_exact(frame)) {
                let c: [u8; W] = f[ch * W..(ch + 1) * W].try_into().expect("W bytes");
                *d = T::from_f64(value(c) * cal);
            }
        }
    }
}

/// Frames decoded at a time by [`decode_frames`].
const DECODE_TILE: usize = 64;

/// Bytes per sample of the buffer types MNE reads (complex types are not EEG/MEG data).
fn sample_width(typ: i32) -> Option<usize> {
    match typ {
        k::T_SHORT | k::T_DAU_PACK16 => Some(2),
        k::T_INT | k::T_FLOAT => Some(4),
        k::T_DOUBLE => Some(8),
        _ => None,
    }
}

struct RawScan {
    first_samp: i64,
    maxshield: bool,
    buffers: Vec<Buffer>,
}

/// Walks the raw data block's directory as MNE's `_read_raw_file` does.
fn scan_raw_buffers(f: &FifFile, part: usize, nchan: usize) -> Result<RawScan> {
    let (node, block) = [k::B_RAW_DATA, k::B_CONTINUOUS_DATA, k::B_IAS_RAW_DATA]
        .iter()
        .find_map(|&kind| f.tree.find(kind).into_iter().next().map(|n| (n, kind)))
        .ok_or_else(|| f.format_error("no raw data block (FIFFB_RAW_DATA): this is not a raw recording"))?;
    let maxshield = block == k::B_IAS_RAW_DATA;
    let mut entries = node.entries.iter().peekable();
    let mut first_samp: i64 = 0;
    if let Some(e) = entries.next_if(|e| e.kind == k::FIRST_SAMPLE) {
        first_samp = f.read_i32_tag(e)? as i64;
    }
    let mut first_skip = 0usize;
    if let Some(e) = entries.next_if(|e| e.kind == k::DATA_SKIP) {
        first_skip = skip_count(f, e)?;
    }
    let mut buffers = Vec::new();
    let mut pos = 0usize;
    let mut nskip = 0usize;
    // Sample counts come from the file (skip counts up to 2^31 times a buffer's length, and a
    // directory may list the same tags many times), so the sums are checked: wrapped
    // positions would break the non-overlapping, increasing buffer layout that `read_into`'s
    // unchecked column writes rely on.
    let too_many = || f.format_error("data buffers and skips add up to more samples than can be counted");
    for e in entries {
        match e.kind {
            k::DATA_BUFFER => {
                let width = sample_width(e.typ).ok_or_else(|| {
                    Error::unsupported(&f.path, FORMAT, format!("data buffer at byte {} has sample type {}, not int16/int32/float32/float64", e.pos, e.typ))
                })?;
                let frame = width * nchan;
                if nchan == 0 || e.size as usize % frame != 0 {
                    return Err(f.format_error(format!(
                        "data buffer at byte {} holds {} bytes, not a whole number of {nchan}-channel samples",
                        e.pos, e.size
                    )));
                }
                let nsamp = e.size as usize / frame;
                if first_skip > 0 {
                    let skipped = nsamp.checked_mul(first_skip).and_then(|n| i64::try_from(n).ok());
                    first_samp = skipped.and_then(|n| first_samp.checked_add(n)).ok_or_else(too_many)?;
                    first_skip = 0;
                }
                if nskip > 0 {
                    let gap = nskip.checked_mul(nsamp).ok_or_else(too_many)?;
                    buffers.push(Buffer { part, entry: None, start: pos, nsamp: gap });
                    pos = pos.checked_add(gap).ok_or_else(too_many)?;
                    nskip = 0;
                }
                buffers.push(Buffer { part, entry: Some(*e), start: pos, nsamp });
                pos = pos.checked_add(nsamp).ok_or_else(too_many)?;
            }
            k::DATA_SKIP => nskip = skip_count(f, e)?,
            _ => {}
        }
    }
    if buffers.is_empty() {
        return Err(f.format_error("raw data block holds no data buffers"));
    }
    Ok(RawScan { first_samp, maxshield, buffers })
}

fn skip_count(f: &FifFile, e: &DirEntry) -> Result<usize> {
    let n = f.read_i32_tag(e)?;
    usize::try_from(n).map_err(|_| f.format_error(format!("data skip at byte {} is negative ({n})", e.pos)))
}

/// The next split file named in a `FIFFB_REF` block with role "next file" (MNE's
/// `_get_next_fname`): by name when stored, else built from the number (`name-N.fif`).
fn next_split_path(f: &FifFile) -> Result<Option<PathBuf>> {
    let dir = f.path.parent().unwrap_or(Path::new("."));
    for node in f.tree.find(k::B_REF) {
        let role = match node.entry(k::REF_ROLE) {
            Some(e) => f.read_i32_tag(e)?,
            None => continue,
        };
        if role != k::ROLE_NEXT_FILE {
            continue;
        }
        if let Some(e) = node.entry(k::REF_FILE_NAME) {
            let name = f.read_string(e)?;
            if name.contains('/') || name.contains("..") {
                return Err(f.format_error(format!("next split file name {name:?} is not a plain file name")));
            }
            return Ok(Some(dir.join(name)));
        }
        if let Some(e) = node.entry(k::REF_FILE_NUM) {
            let num = f.read_i32_tag(e)?;
            let base = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let dot = base.find('.').unwrap_or(base.len());
            let stem = &base[..dot];
            let ext = &base[dot..];
            let stem = match stem.rfind('-') {
                Some(i) if stem[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < stem.len() => &stem[..i],
                _ => stem,
            };
            return Ok(Some(dir.join(format!("{stem}-{num}{ext}"))));
        }
    }
    Ok(None)
}

/// A raw pointer to the output, shared by the tasks that each fill their own columns.
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
unsafe impl<T: Send> Send for OutPtr<T> {}
unsafe impl<T: Send> Sync for OutPtr<T> {}

/// Columns `col0..col0+ncols` of a row-major output with rows of `row_len`.
struct DestColumns<T> {
    ptr: OutPtr<T>,
    row_len: usize,
    col0: usize,
    ncols: usize,
}

impl<T: Sample> DestColumns<T> {
    /// # Safety
    /// The caller must own these columns of `row` exclusively and `row` must exist.
    unsafe fn row(&self, row: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.ptr.0.add(row * self.row_len + self.col0), self.ncols)
    }
    fn fill_zero(&self, rows: usize) {
        for r in 0..rows {
            // SAFETY: as in `row`; a skip buffer owns its columns like a data buffer.
            unsafe { self.row(r) }.fill(T::default());
        }
    }
}
