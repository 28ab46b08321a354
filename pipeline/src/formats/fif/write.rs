//! FIF raw writer: what MNE's `raw.save` writes, so MNE (and our reader) read it back exactly.
//!
//! Layout of each file: file id, directory pointer (-1: readers scan), `FIFFB_MEAS` holding
//! the measurement info (channels, rate, date, filters, bads, projectors, long channel names),
//! annotations, and `FIFFB_RAW_DATA` with `FIFF_FIRST_SAMPLE` and one buffer per second of
//! data. Recordings past `split_size` continue in split files linked by a `FIFFB_REF` block,
//! named as MNE names them (`name-1.fif` …, or `_split-01_meg.fif` … for BIDS names).
//! Each file is written to a temporary name and renamed when complete.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::EagerWriteback;
use crate::error::{Error, Result};
use crate::formats::fif::geometry::{
    HeadGeometry, Transform, FIFFB_ISOTRAK, FIFFT_COORD_TRANS_STRUCT, FIFFT_DIG_POINT_STRUCT, FIFFV_COORD_DEVICE, FIFFV_COORD_HEAD,
    FIFF_COORD_TRANS, FIFF_DIG_POINT, FIFF_MNE_COORD_FRAME,
};
use crate::recording::{ChannelInfo, RawReader, RecordingInfo, Unit};

use super::tag::k;

/// How samples are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FifSampleFormat {
    /// `value / (range × cal)` as big-endian float32 (MNE's default, `fmt='single'`).
    Float32,
    /// Integers with a per-channel calibration chosen so each channel's peak maps to 32767.
    Int16,
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub format: FifSampleFormat,
    /// Largest file before a split, in bytes (MNE's default: 2 GB).
    pub split_size: u64,
    /// Samples per data buffer; `None` = one second, as MNE.
    pub buffer_samples: Option<usize>,
    /// The device → head transform and digitized points (MNE's `info['dev_head_t']` and
    /// `info['dig']`, head frame) to store in the measurement info, as MNE writes them (a
    /// `FIFF_COORD_TRANS` tag and a `FIFFB_ISOTRAK` block); what
    /// [`crate::formats::fif::geometry::read_head_geometry`] reads back.
    pub head: Option<HeadGeometry>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { format: FifSampleFormat::Float32, split_size: 2_000_000_000, buffer_samples: None, head: None }
    }
}

/// Writes channels `picks` × samples `start..stop` of `reader` to `out` (plus split files).
/// Returns the paths written, in order.
pub fn write_raw(reader: &dyn RawReader, picks: &[usize], start: usize, stop: usize, out: &Path, opts: &WriteOptions) -> Result<Vec<PathBuf>> {
    let info = reader.info();
    info.check_request(picks, start, stop, picks.len() * (stop - start))?;
    if picks.is_empty() {
        return Err(Error::request(out, "no channels to write"));
    }
    let mut channels: Vec<ChannelInfo> = picks.iter().map(|&p| info.channels[p].clone()).collect();
    let cals = storage_cals(reader, picks, start, stop, opts.format, &mut channels)?;
    let buffer = opts.buffer_samples.unwrap_or(info.sfreq.round().max(1.0) as usize).max(1);
    let width = if opts.format == FifSampleFormat::Int16 { 2 } else { 4 };
    let buffer_bytes = (buffer * picks.len() * width) as u64 + 16;
    // Room for the header and info (generous), then whole buffers.
    let header_room = 64 * 1024 + channels.len() as u64 * 200;
    let per_file = ((opts.split_size.saturating_sub(header_room)) / buffer_bytes).max(1) as usize * buffer;
    let n = stop - start;
    let n_files = n.div_ceil(per_file).max(1);
    let names = split_names(out, n_files);
    let mut written = Vec::new();
    for (i, path) in names.iter().enumerate() {
        let s0 = start + i * per_file;
        let s1 = (s0 + per_file).min(stop);
        let next = names.get(i + 1).map(|p| (i + 1, p));
        let piece = FilePiece { info, reader, picks, channels: &channels, cals: &cals, start, s0, s1, buffer, format: opts.format, next, head: opts.head.as_ref() };
        write_atomically(path, |w| piece.write(w))?;
        written.push(path.clone());
    }
    Ok(written)
}

/// The per-channel factor from SI to stored value. Float32 keeps the file's `range × cal`
/// (as MNE does); int16 needs a scan for each channel's peak so nothing clips.
fn storage_cals(reader: &dyn RawReader, picks: &[usize], start: usize, stop: usize, format: FifSampleFormat, channels: &mut [ChannelInfo]) -> Result<Vec<f64>> {
    match format {
        FifSampleFormat::Float32 => Ok(channels.iter().map(|c| c.range * c.cal).collect()),
        FifSampleFormat::Int16 => {
            let mut peak = vec![0.0f64; picks.len()];
            let chunk = 65_536;
            let mut s = start;
            while s < stop {
                let e = (s + chunk).min(stop);
                let data = reader.read_f64(picks, s, e)?;
                for (p, row) in peak.iter_mut().zip(data.rows()) {
                    *p = row.iter().fold(*p, |m, v| m.max(v.abs()));
                }
                s = e;
            }
            for (c, &p) in channels.iter_mut().zip(&peak) {
                c.range = 1.0;
                // Stored as f32 in the channel struct: round first so reading multiplies by
                // exactly the value we divided by.
                c.cal = (if p > 0.0 { p / 32767.0 } else { 1.0 }) as f32 as f64;
            }
            Ok(channels.iter().map(|c| c.cal).collect())
        }
    }
}

/// MNE's split names: `a.fif, a-1.fif, …`, or for BIDS names (`…_meg.fif`)
/// `…_split-01_meg.fif, …_split-02_meg.fif, …`.
fn split_names(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let dir = out.parent().unwrap_or(Path::new(""));
    let name = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let bids_suffix = ["_meg.fif", "_eeg.fif", "_ieeg.fif"].into_iter().find(|s| name.ends_with(s));
    (0..n)
        .map(|i| match bids_suffix {
            Some(suffix) => dir.join(format!("{}_split-{:02}{suffix}", &name[..name.len() - suffix.len()], i + 1)),
            None if i == 0 => out.to_path_buf(),
            None => {
                let stem = name.strip_suffix(".fif").unwrap_or(&name);
                dir.join(format!("{stem}-{i}.fif"))
            }
        })
        .collect()
}

/// Writes one file through a large buffer, atomically (see [`crate::fsutil`]).
fn write_atomically(path: &Path, body: impl FnOnce(&mut BufWriter<EagerWriteback<'_>>) -> Result<()>) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |file| {
        // Write-back starts while the rest is still being written (a run's cleaned FIF is
        // ~200 MB): the sync before the rename then waits for little.
        let mut w = BufWriter::with_capacity(1 << 20, EagerWriteback::new(file));
        body(&mut w)?;
        w.flush().map_err(|e| Error::io(path, e))
    })
}

/// One output file's worth of the recording.
struct FilePiece<'a> {
    info: &'a RecordingInfo,
    reader: &'a dyn RawReader,
    picks: &'a [usize],
    channels: &'a [ChannelInfo],
    cals: &'a [f64],
    /// Sample of the source that becomes sample 0 of the written recording.
    start: usize,
    s0: usize,
    s1: usize,
    buffer: usize,
    format: FifSampleFormat,
    next: Option<(usize, &'a PathBuf)>,
    head: Option<&'a HeadGeometry>,
}

impl FilePiece<'_> {
    fn write(&self, w: &mut BufWriter<EagerWriteback<'_>>) -> Result<()> {
        let mut t = TagWriter { w, path: self.next.map(|(_, p)| p.clone()).unwrap_or_default() };
        t.tag(k::FILE_ID, k::T_ID_STRUCT, &file_id())?;
        t.tag(k::DIR_POINTER, k::T_INT, &(-1i32).to_be_bytes())?;
        t.start_block(k::B_MEAS)?;
        self.write_meas_info(&mut t)?;
        self.write_annotations(&mut t)?;
        t.start_block(k::B_RAW_DATA)?;
        let first_samp = self.info.first_samp + (self.s0 - self.start) as i64 + (self.start as i64);
        let first_samp = i32::try_from(first_samp).map_err(|_| Error::request(&self.info.path, "first sample does not fit FIF's 32-bit field"))?;
        t.tag(k::FIRST_SAMPLE, k::T_INT, &first_samp.to_be_bytes())?;
        self.write_buffers(&mut t)?;
        t.end_block(k::B_RAW_DATA)?;
        if let Some((num, path)) = self.next {
            t.start_block(k::B_REF)?;
            t.tag(k::REF_ROLE, k::T_INT, &k::ROLE_NEXT_FILE.to_be_bytes())?;
            t.tag(k::REF_FILE_NUM, k::T_INT, &(num as i32).to_be_bytes())?;
            let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            t.string(k::REF_FILE_NAME, &name)?;
            t.end_block(k::B_REF)?;
        }
        t.end_block(k::B_MEAS)?;
        t.tag_next(k::NOP, 0, &[], -1)
    }

    fn write_meas_info(&self, t: &mut TagWriter) -> Result<()> {
        let info = self.info;
        t.start_block(k::B_MEAS_INFO)?;
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
        let bads: Vec<String> = info.bads.iter().filter(|b| names.contains(&b.as_str())).cloned().collect();
        if !bads.is_empty() {
            t.start_block(k::B_MNE_BAD_CHANNELS)?;
            t.string(k::MNE_CH_NAME_LIST, &join_name_list(&bads))?;
            t.end_block(k::B_MNE_BAD_CHANNELS)?;
        }
        t.tag(k::NCHAN, k::T_INT, &(self.channels.len() as i32).to_be_bytes())?;
        t.tag(k::SFREQ, k::T_FLOAT, &(info.sfreq as f32).to_be_bytes())?;
        t.tag(k::LOWPASS, k::T_FLOAT, &(info.lowpass.unwrap_or(info.sfreq / 2.0) as f32).to_be_bytes())?;
        t.tag(k::HIGHPASS, k::T_FLOAT, &(info.highpass.unwrap_or(0.0) as f32).to_be_bytes())?;
        if let Some(d) = info.meas_date {
            let mut b = (d.secs as i32).to_be_bytes().to_vec();
            b.extend_from_slice(&(d.usecs as i32).to_be_bytes());
            t.tag(k::MEAS_DATE, k::T_INT, &b)?;
        }
        if let Some(lf) = info.line_freq {
            t.tag(k::LINE_FREQ, k::T_FLOAT, &(lf as f32).to_be_bytes())?;
        }
        let short = short_names(&names);
        for (c, s) in self.channels.iter().zip(&short) {
            t.tag(k::CH_INFO, k::T_CH_INFO_STRUCT, &ch_info_struct(c, s))?;
        }
        if short.iter().zip(&names).any(|(s, n)| s != n) {
            for n in &names {
                t.start_block(k::B_CH_INFO)?;
                t.string(k::CH_DACQ_NAME, n)?;
                t.end_block(k::B_CH_INFO)?;
            }
        }
        self.write_head(t)?;
        self.write_chpi(t)?;
        self.write_projs(t, &names)?;
        t.end_block(k::B_MEAS_INFO)
    }

    /// `dev_head_t` (device → head) and the digitized points, in MNE's layout.
    fn write_head(&self, t: &mut TagWriter) -> Result<()> {
        let Some(head) = self.head else { return Ok(()) };
        if let Some(tr) = &head.dev_head_t {
            t.tag(FIFF_COORD_TRANS, FIFFT_COORD_TRANS_STRUCT, &coord_trans_struct(FIFFV_COORD_DEVICE, FIFFV_COORD_HEAD, tr))?;
        }
        if !head.dig.is_empty() {
            t.start_block(FIFFB_ISOTRAK)?;
            t.tag(FIFF_MNE_COORD_FRAME, k::T_INT, &FIFFV_COORD_HEAD.to_be_bytes())?;
            for p in &head.dig {
                let mut b = Vec::with_capacity(20);
                b.extend_from_slice(&p.kind.to_be_bytes());
                b.extend_from_slice(&p.ident.to_be_bytes());
                for v in p.r {
                    b.extend_from_slice(&(v as f32).to_be_bytes());
                }
                t.tag(FIFF_DIG_POINT, FIFFT_DIG_POINT_STRUCT, &b)?;
            }
            t.end_block(FIFFB_ISOTRAK)?;
        }
        Ok(())
    }

    /// The cHPI coils (`info.chpi`) as an Elekta acquisition stores them and MNE writes them
    /// back: one `FIFFB_HPI_MEAS` with a `FIFFB_HPI_COIL` (number, frequency) per coil, and
    /// a `FIFFB_HPI_SUBSYSTEM` with the coils' event bits. Nothing without cHPI info.
    fn write_chpi(&self, t: &mut TagWriter) -> Result<()> {
        use super::info::hpi;
        let Some(c) = &self.info.chpi else { return Ok(()) };
        t.start_block(hpi::B_HPI_MEAS)?;
        t.tag(k::SFREQ, k::T_FLOAT, &(self.info.sfreq as f32).to_be_bytes())?;
        t.tag(hpi::HPI_NCOIL, k::T_INT, &(c.coils.len() as i32).to_be_bytes())?;
        for &(number, freq) in &c.coils {
            t.start_block(hpi::B_HPI_COIL)?;
            t.tag(hpi::HPI_COIL_NO, k::T_INT, &number.to_be_bytes())?;
            t.tag(hpi::HPI_COIL_FREQ, k::T_FLOAT, &(freq as f32).to_be_bytes())?;
            t.end_block(hpi::B_HPI_COIL)?;
        }
        t.end_block(hpi::B_HPI_MEAS)?;
        if let Some(bits) = &c.event_bits {
            t.start_block(hpi::B_HPI_SUBSYSTEM)?;
            t.tag(hpi::HPI_NCOIL, k::T_INT, &(bits.len() as i32).to_be_bytes())?;
            if let Some(ch) = &c.event_channel {
                t.string(hpi::EVENT_CHANNEL, ch)?;
            }
            for b in bits {
                t.start_block(hpi::B_HPI_COIL)?;
                if let Some(b) = b {
                    // Elekta stores four words per coil (e.g. [256, 0, 256, 256]); the first
                    // says whether the coil is driven, the only one MNE uses.
                    let words: Vec<u8> = [*b, 0, *b, *b].iter().flat_map(|w| w.to_be_bytes()).collect();
                    t.tag(hpi::EVENT_BITS, k::T_INT, &words)?;
                }
                t.end_block(hpi::B_HPI_COIL)?;
            }
            t.end_block(hpi::B_HPI_SUBSYSTEM)?;
        }
        Ok(())
    }

    /// Projectors whose channels are all written (others would dangle; MNE drops them too).
    fn write_projs(&self, t: &mut TagWriter, names: &[&str]) -> Result<()> {
        let keep: Vec<_> = self.info.projs.iter().filter(|p| p.ch_names.iter().all(|c| names.contains(&c.as_str()))).collect();
        if keep.is_empty() {
            return Ok(());
        }
        t.start_block(k::B_PROJ)?;
        for p in keep {
            t.start_block(k::B_PROJ_ITEM)?;
            t.string(k::NAME, &p.desc)?;
            t.tag(k::PROJ_ITEM_KIND, k::T_INT, &p.kind.to_be_bytes())?;
            t.tag(k::NCHAN, k::T_INT, &(p.ch_names.len() as i32).to_be_bytes())?;
            t.string(k::PROJ_ITEM_CH_NAME_LIST, &join_name_list(&p.ch_names))?;
            t.tag(k::PROJ_ITEM_NVEC, k::T_INT, &(p.vectors.len() as i32).to_be_bytes())?;
            t.tag(k::MNE_PROJ_ITEM_ACTIVE, k::T_INT, &(p.active as i32).to_be_bytes())?;
            let mut b = Vec::new();
            for v in p.vectors.iter().flatten() {
                b.extend_from_slice(&(*v as f32).to_be_bytes());
            }
            for d in [p.ch_names.len() as i32, p.vectors.len() as i32, 2] {
                b.extend_from_slice(&d.to_be_bytes());
            }
            t.tag(k::PROJ_ITEM_VECTORS, k::T_MATRIX | k::T_FLOAT, &b)?;
            t.end_block(k::B_PROJ_ITEM)?;
        }
        t.end_block(k::B_PROJ)
    }

    /// Annotations inside the written span, stored (as MNE) in seconds from the measurement
    /// start, i.e. shifted by the first sample's time.
    fn write_annotations(&self, t: &mut TagWriter) -> Result<()> {
        let sf = self.info.sfreq;
        let t_begin = (self.start) as f64 / sf;
        let t_end = self.start as f64 / sf + (self.s1 - self.start) as f64 / sf;
        let kept: Vec<_> = self.info.annotations.iter().filter(|a| a.onset + a.duration >= t_begin && a.onset < t_end).collect();
        if kept.is_empty() {
            return Ok(());
        }
        let t0 = (self.info.first_samp + self.start as i64) as f64 / sf;
        let shift = t0 - t_begin;
        let onset: Vec<f64> = kept.iter().map(|a| a.onset + shift).collect();
        let end: Vec<f64> = kept.iter().zip(&onset).map(|(a, o)| o + a.duration).collect();
        let desc: Vec<String> = kept.iter().map(|a| a.description.clone()).collect();
        t.start_block(k::B_MNE_ANNOTATIONS)?;
        t.tag(k::MNE_BASELINE_MIN, k::T_DOUBLE, &be_f64s(&onset))?;
        t.tag(k::MNE_BASELINE_MAX, k::T_DOUBLE, &be_f64s(&end))?;
        t.string(k::COMMENT, &join_name_list(&desc))?;
        if let Some(d) = self.info.meas_date {
            let mut b = (d.secs as i32).to_be_bytes().to_vec();
            b.extend_from_slice(&(d.usecs as i32).to_be_bytes());
            t.tag(k::MEAS_DATE, k::T_INT, &b)?;
        }
        t.end_block(k::B_MNE_ANNOTATIONS)
    }

    /// Buffers are read and encoded in parallel batches (readers take `&self`; a filtering
    /// reader such as the Maxwell filter does most of its work there) and written in order,
    /// so the bytes do not depend on the thread count.
    fn write_buffers(&self, t: &mut TagWriter) -> Result<()> {
        use rayon::prelude::*;
        let starts: Vec<usize> = (self.s0..self.s1).step_by(self.buffer).collect();
        let batch = 2 * rayon::current_num_threads().max(1);
        let typ = if self.format == FifSampleFormat::Int16 { k::T_SHORT } else { k::T_FLOAT };
        // Each group is encoded while the previous one is written (the same bytes in the
        // same order): the copy into the page cache is one thread's work, the encoding the
        // other cores'.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        for group in starts.chunks(batch) {
            let (encoded, written) = rayon::join(
                || group.par_iter().map(|&s| self.encode_buffer(s, (s + self.buffer).min(self.s1))).collect::<Result<Vec<_>>>(),
                || pending.iter().try_for_each(|bytes| t.tag(k::DATA_BUFFER, typ, bytes)),
            );
            written?;
            pending = encoded?;
        }
        pending.iter().try_for_each(|bytes| t.tag(k::DATA_BUFFER, typ, bytes))
    }

    /// Samples `s..e` of the picks, time-major, big-endian in the file's sample format.
    fn encode_buffer(&self, s: usize, e: usize) -> Result<Vec<u8>> {
        let nch = self.picks.len();
        let len = e - s;
        let mut chunk = vec![0.0f64; nch * len];
        self.reader.read_into_f64(self.picks, s, e, &mut chunk)?;
        let width = if self.format == FifSampleFormat::Int16 { 2 } else { 4 };
        let mut bytes = Vec::with_capacity(nch * len * width);
        for i in 0..len {
            for c in 0..nch {
                let v = chunk[c * len + i] / self.cals[c];
                match self.format {
                    FifSampleFormat::Float32 => bytes.extend_from_slice(&(v as f32).to_be_bytes()),
                    FifSampleFormat::Int16 => bytes.extend_from_slice(&(v.round().clamp(-32768.0, 32767.0) as i16).to_be_bytes()),
                }
            }
        }
        Ok(bytes)
    }
}

/// Writes tags sequentially (every `next` field is "sequential", as MNE writes).
struct TagWriter<'a, 'f> {
    w: &'a mut BufWriter<EagerWriteback<'f>>,
    path: PathBuf,
}

impl TagWriter<'_, '_> {
    fn tag(&mut self, kind: i32, typ: i32, data: &[u8]) -> Result<()> {
        self.tag_next(kind, typ, data, 0)
    }
    fn tag_next(&mut self, kind: i32, typ: i32, data: &[u8], next: i32) -> Result<()> {
        let size = i32::try_from(data.len()).map_err(|_| Error::request(&self.path, "a FIF tag cannot hold 2 GB"))?;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_be_bytes());
        h[4..8].copy_from_slice(&typ.to_be_bytes());
        h[8..12].copy_from_slice(&size.to_be_bytes());
        h[12..16].copy_from_slice(&next.to_be_bytes());
        self.w.write_all(&h).and_then(|_| self.w.write_all(data)).map_err(|e| Error::io(&self.path, e))
    }
    fn string(&mut self, kind: i32, s: &str) -> Result<()> {
        self.tag(kind, k::T_STRING, s.as_bytes())
    }
    fn start_block(&mut self, block: i32) -> Result<()> {
        self.tag(k::BLOCK_START, k::T_INT, &block.to_be_bytes())
    }
    fn end_block(&mut self, block: i32) -> Result<()> {
        self.tag(k::BLOCK_END, k::T_INT, &block.to_be_bytes())
    }
}


/// FIFF's coordinate transform struct: from, to, rotation (row-major), translation, then the
/// inverse's rotation and translation (float32 each).
fn coord_trans_struct(from: i32, to: i32, t: &Transform) -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    b.extend_from_slice(&from.to_be_bytes());
    b.extend_from_slice(&to.to_be_bytes());
    for tr in [*t, t.inverse()] {
        for row in tr.rot {
            for v in row {
                b.extend_from_slice(&(v as f32).to_be_bytes());
            }
        }
        for v in tr.trans {
            b.extend_from_slice(&(v as f32).to_be_bytes());
        }
    }
    b
}

/// A file id struct: version, machine id (2 ints), time (secs, usecs). Fixed values keep
/// output byte-identical for identical input (the brief's reproducibility rule).
fn file_id() -> Vec<u8> {
    let mut b = Vec::with_capacity(20);
    for v in [0x0001_0003i32, 0, 0, 0, 0] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

fn ch_info_struct(c: &ChannelInfo, short_name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(96);
    b.extend_from_slice(&c.scanno.to_be_bytes());
    b.extend_from_slice(&c.logno.to_be_bytes());
    b.extend_from_slice(&c.fiff_kind.to_be_bytes());
    b.extend_from_slice(&(c.range as f32).to_be_bytes());
    b.extend_from_slice(&(c.cal as f32).to_be_bytes());
    b.extend_from_slice(&c.coil_type.to_be_bytes());
    for l in c.loc {
        b.extend_from_slice(&(l as f32).to_be_bytes());
    }
    let Unit(unit) = c.unit;
    b.extend_from_slice(&unit.to_be_bytes());
    b.extend_from_slice(&c.unit_mul.to_be_bytes());
    let mut name = [0u8; 16];
    name[..short_name.len()].copy_from_slice(short_name.as_bytes());
    b.extend_from_slice(&name);
    b
}

/// Names of at most 15 bytes for the 16-byte struct field, unique, cut at char boundaries;
/// the full names go into `FIFFB_CH_INFO` blocks (as MNE does for long names).
fn short_names(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let mut s = truncate(n, 15);
        if s.len() < n.len() || out.contains(&s) {
            let tag = format!("-{i}");
            s = format!("{}{tag}", truncate(n, 15 - tag.len()));
        }
        out.push(s);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn join_name_list(names: &[String]) -> String {
    names.iter().map(|n| n.replace(':', "{COLON}")).collect::<Vec<_>>().join(":")
}

fn be_f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_follow_mne() {
        let n = split_names(Path::new("/d/x_raw.fif"), 3);
        assert_eq!(n, vec![PathBuf::from("/d/x_raw.fif"), PathBuf::from("/d/x_raw-1.fif"), PathBuf::from("/d/x_raw-2.fif")]);
        let b = split_names(Path::new("/d/sub-01_task-a_meg.fif"), 2);
        assert_eq!(b, vec![PathBuf::from("/d/sub-01_task-a_split-01_meg.fif"), PathBuf::from("/d/sub-01_task-a_split-02_meg.fif")]);
    }

    #[test]
    fn short_names_are_unique_and_short() {
        let s = short_names(&["EEG001", "A-very-long-channel-name-1", "A-very-long-channel-name-2"]);
        assert_eq!(s[0], "EEG001");
        assert!(s.iter().all(|n| n.len() <= 15));
        assert_ne!(s[1], s[2]);
    }
}
