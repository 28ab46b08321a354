//! The cleaning chain of one recording in bounded memory: band-pass → notch → resample, each
//! step MNE's (`raw.filter`, `raw.notch_filter`, `raw.resample`).
//!
//! MNE's FFT resampling transforms each channel's whole signal at once, so agreement needs
//! every channel in full. Instead of holding the recording in memory, a file of stored samples
//! is read once per block of channels (`Transpose::Blocks`, at most `BLOCK_BYTES` held),
//! and a recording whose samples are computed (Maxwell filtering) is transposed once into a
//! channel-major scratch file (`Transpose::Scratch`); either way as f32 values and the
//! channel's calibration where that gives every value back exactly, else f64. Channels are
//! processed in parallel. Peak memory is the resampled output plus the block (or a few rows
//! per thread), whatever the recording's length.
//!
//! Per channel there are two paths. By default, when the chain ends in FFT resampling and
//! the recording is long enough, band-pass × notch × resample run as one FFT
//! ([`crate::dsp::spectral`], about 3× faster; its module doc bounds the difference from MNE).
//! With [`CleanParams::exact`] (or for short recordings, polyphase resampling, or no
//! resampling) each step runs as MNE runs it: overlap-add filters, then the resampler.
//!
//! The rest of the cleaning stage, in the order the preprocess stage applies it: [`screen`]
//! (flat / clipped stretches of the raw channels, before filtering), [`maxwell`] (MNE's
//! `maxwell_filter` and `find_bad_channels_maxwell`), [`bads`] (bad-channel detection and
//! EEG interpolation), [`proj`] (SSP projectors, applied on request).

pub mod bads;
pub mod chpi;
pub mod cleaned;
pub mod maxwell;
pub mod proj;
pub mod screen;
pub mod stored;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use rayon::prelude::*;

pub use cleaned::Cleaned;
use cleaned::Rows;

use crate::dsp::filter::OverlapAdd;
use crate::dsp::fir::{create_filter, notch_filter_design, FirOptions};
use crate::dsp::resample::{resample_stim, ResampleMethod, Resampler};
use crate::dsp::spectral::{SpectralBuffers, SpectralChain};
use crate::error::{Error, Result};
use crate::recording::{Annotation, ChannelKind, RawReader};
use screen::{screened_channels, split_bad_channels, stretch_annotations, FlatClipParams, Stretch};

/// What to do, with MNE's parameter names. `None`/empty skips a step.
#[derive(Clone, Debug, Default)]
pub struct CleanParams {
    pub l_freq: Option<f64>,
    pub h_freq: Option<f64>,
    pub notch: Vec<f64>,
    pub sfreq: Option<f64>,
    /// MNE's `method` of `raw.resample` (default FFT); stim channels are decimated either way.
    pub resample_method: ResampleMethod,
    pub fir: FirOptions,
    /// Run MNE's three passes (band-pass, notch, resample) one after the other instead of the
    /// one-FFT fast path ([`crate::dsp::spectral`]), which differs from them by MNE's own
    /// padding artefact (about 1e-5 of a channel's RMS on long recordings).
    pub exact: bool,
    /// Screen each raw data channel for flat and clipped stretches before filtering
    /// ([`screen::flat_or_clipped_stretches`]); they become `BAD_flat` /
    /// `BAD_clipped` annotations of the result, so segmentation drops windows touching them.
    /// A channel flat or clipped over more than `bad_percent` % of the run is added to the
    /// result's `bads` instead, with no annotations ([`screen::split_bad_channels`]).
    pub screen: Option<FlatClipParams>,
}

/// Samples per chunk while transposing (all channels × this many samples in memory).
const TRANSPOSE_CHUNK: usize = 8192;

/// Raw samples held in memory at once when a recording is read per block of channels (see
/// [`Transpose::Blocks`]): beside a ds000117 run's 400 MB f64 output this keeps the stage
/// near 650 MB, in eight reads of the raw file (each ~0.08 s from the page cache). Shared by
/// the cleanings in flight in the process (`--jobs 2` cleans two runs at once), so their
/// blocks together stay within it. Why 112 MiB and not the earlier 224 (four reads): memory
/// a process touches for the first time is the dearest thing in this stage on the 2-core VM
/// we measure on (`bench/first_touch.py`: first touch 0.3–0.7 GB/s, a rewrite of touched
/// memory 10–25 GB/s; the host apparently backs guest pages lazily), and the stage's peak is all first-touched; 112 MiB less of it
/// outweighs four more page-cache reads: a full-size run after 25 s idle, alternating, median
/// 5.6 s vs 6.1 s (5 each), peak 652 vs 761 MiB, every derivative byte-identical.
const BLOCK_BYTES: usize = 112 << 20;

/// Cleanings in progress in this process (see [`BLOCK_BYTES`]).
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one cleaning in [`IN_FLIGHT`] while it lives.
struct InFlight;

impl InFlight {
    /// Registers a cleaning; returns it with the number in flight, this one included.
    fn enter() -> (InFlight, usize) {
        (InFlight, IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How the chain gets each channel's whole row out of a sample-major recording.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transpose {
    /// Once through a channel-major scratch file: for readers that compute their samples,
    /// which must not compute them twice.
    Scratch,
    /// Read the recording once per block of channels, each block held in memory (at most
    /// this many bytes): for readers of stored samples, where a read from the page cache
    /// costs far less than writing the whole recording to a scratch file and reading it back.
    Blocks(usize),
}

/// Runs the chain on `reader`, using `scratch_dir` for the transposed copy (removed after)
/// when the reader computes its samples. `progress` is called once per finished channel.
/// The result holds the fast path's output as f32 values and one factor ([`Cleaned`]).
pub fn clean(reader: &dyn RawReader, params: &CleanParams, scratch_dir: &Path, progress: &(dyn Fn() + Sync)) -> Result<Cleaned> {
    // The blocks' size does not change a value (tested), only the number of reads.
    let (_counted, in_flight) = InFlight::enter();
    let how = if reader.rereads_are_cheap() { Transpose::Blocks(BLOCK_BYTES / in_flight) } else { Transpose::Scratch };
    clean_with(reader, params, scratch_dir, progress, how)
}

fn clean_with(reader: &dyn RawReader, params: &CleanParams, scratch_dir: &Path, progress: &(dyn Fn() + Sync), how: Transpose) -> Result<Cleaned> {
    let info = reader.info();
    let (nch, n) = (info.n_channels(), info.n_samples);
    if n == 0 {
        return Err(Error::request(&info.path, "the recording has no samples"));
    }
    let band_h = match (params.l_freq, params.h_freq) {
        (None, None) => None,
        (l, h) => Some(create_filter(info.sfreq, l, h, &params.fir)?),
    };
    let notch_h = if params.notch.is_empty() { None } else { Some(notch_filter_design(info.sfreq, &params.notch, &FirOptions::default())?) };
    let kernels: Vec<&[f64]> = band_h.iter().chain(&notch_h).map(Vec::as_slice).collect();
    let resampler = params.sfreq.map(|sf| Resampler::new(params.resample_method, sf, info.sfreq, n)).transpose()?;
    let n_out = resampler.as_ref().map_or(n, |r| r.final_len());
    if n_out == 0 {
        return Err(Error::request(&info.path, format!("resampling {n} samples from {} Hz to {:?} Hz leaves none", info.sfreq, params.sfreq)));
    }
    let segments = filter_segments(&info.annotations, info.sfreq, n);
    let spectral = match (params.exact, params.sfreq, params.resample_method) {
        (false, Some(sf), ResampleMethod::Fft) if !kernels.is_empty() && segments == [(0, n)] => SpectralChain::new(&kernels, sf, info.sfreq, n),
        _ => None,
    };
    // One overlap-add plan per (segment, kernel): the FFT length depends on the segment's.
    let overlap_add: Vec<(usize, usize, Vec<OverlapAdd>)> = match spectral {
        Some(_) => vec![],
        None => segments.iter().map(|&(s, e)| (s, e, kernels.iter().map(|h| OverlapAdd::new(h, e - s)).collect())).collect(),
    };
    tracing::debug!(fast = spectral.is_some(), ?how, "cleaning chain planned");

    // f32 values where every value is an f32 times its channel's calibration (a FIF's
    // float32 or int16 samples; checked value by value while transposing): half the bytes,
    // and each value comes back bit for bit. Else f64.
    let (scales, f32_possible) = f32_scales(info);

    let screened: Vec<bool> = {
        let on = screened_channels(info);
        (0..nch).map(|c| params.screen.is_some() && on.contains(&c)).collect()
    };
    let stretches = std::sync::Mutex::new(Vec::<Stretch>::new());
    // The chain's work buffers (tens of MB per thread) are reused across rayon's splits and
    // blocks instead of being allocated, and page-faulted, anew for each split.
    let pool = std::sync::Mutex::new(Vec::new());
    let take_buffers = || {
        let item = pool.lock().expect("no panics while held").pop();
        Pooled { item: Some(item.unwrap_or_else(|| Work { bytes: Vec::new(), row: Vec::new(), spectral: spectral.as_ref().map(SpectralChain::buffers) })), pool: &pool }
    };
    // Rows the fast path does not compute (decimated stim channels), held as f64.
    let replaced = std::sync::Mutex::new(std::collections::BTreeMap::new());
    // One channel: screen the raw row `x`, then filter and resample it into `dst`.
    let process = |c: usize, x: &mut [f64], bufs: &mut Option<SpectralBuffers>, dst: RowOut| {
        if let (true, Some(sp)) = (screened[c], &params.screen) {
            let found = screen::flat_or_clipped_stretches(x, info.sfreq, sp);
            if !found.is_empty() {
                let mut all = stretches.lock().expect("no panics while held");
                all.extend(found.into_iter().map(|(start, stop, kind)| Stretch { channel: c, start, stop, kind }));
            }
        }
        let kind = info.channels[c].kind;
        let stim = kind == ChannelKind::Stim && resampler.is_some();
        match (dst, &spectral, bufs) {
            (RowOut::Scaled(_), _, _) if stim => {
                replaced.lock().expect("no panics while held").insert(c, resample_stim(x, n_out as f64, n as f64));
            }
            (RowOut::Full(dst), _, _) if stim => dst.copy_from_slice(&resample_stim(x, n_out as f64, n as f64)),
            (RowOut::Scaled(dst), Some(chain), Some(bufs)) => chain.apply_unscaled(x, kind.is_data(), bufs, dst),
            (RowOut::Scaled(_), _, _) => unreachable!("scaled rows are planned only with the spectral chain"),
            (RowOut::Full(dst), _, _) => {
                if kind.is_data() {
                    for (s, e, filters) in &overlap_add {
                        for f in filters {
                            let y = f.apply(&x[*s..*e]);
                            x[*s..*e].copy_from_slice(&y);
                        }
                    }
                }
                match &resampler {
                    Some(r) => dst.copy_from_slice(&r.apply(x)),
                    None => dst.copy_from_slice(x),
                }
            }
        }
        progress();
    };

    // The fast path's output as f32 values times one factor (see [`Cleaned`]), else f64.
    let mut out = match &spectral {
        Some(chain) => Rows::Scaled { values: Array2::zeros((nch, n_out)), scale: chain.output_scale() },
        None => Rows::Full(Array2::zeros((nch, n_out))),
    };
    match how {
        Transpose::Scratch => {
            let mut scratch = None;
            if f32_possible {
                let s = Scratch::create(scratch_dir, nch, n, Some(scales.clone()))?;
                if transpose_into(reader, &s)? {
                    scratch = Some(s);
                }
            }
            let scratch = match scratch {
                Some(s) => s,
                None => {
                    let s = Scratch::create(scratch_dir, nch, n, None)?;
                    transpose_into(reader, &s)?;
                    s
                }
            };
            tracing::debug!(f32 = scratch.scales.is_some(), "transposed");
            row_outs(&mut out, 0, nch).into_par_iter().enumerate().try_for_each_init(take_buffers, |p, (c, dst)| -> Result<()> {
                let w = p.work();
                scratch.read_row_into(c, n, &mut w.bytes, &mut w.row)?;
                process(c, &mut w.row, &mut w.spectral, dst);
                Ok(())
            })?;
        }
        Transpose::Blocks(budget) => {
            let mut block = Block::default();
            let mut as_f32 = f32_possible;
            let mut c0 = 0;
            while c0 < nch {
                // Blocks of equal size, as few as the budget allows.
                let width = if as_f32 { 4 } else { 8 };
                let per_block = (budget / (n * width)).max(1);
                let len = (nch - c0).div_ceil((nch - c0).div_ceil(per_block));
                let t0 = std::time::Instant::now();
                if !block.read(reader, c0, len, as_f32.then_some(scales.as_slice()))? {
                    as_f32 = false; // not every value is an f32 times its scale: f64 from here on
                    continue;
                }
                tracing::debug!(c0, len, f32 = as_f32, read_s = t0.elapsed().as_secs_f64(), "block read");
                let block = &block;
                row_outs(&mut out, c0, len).into_par_iter().enumerate().for_each_init(take_buffers, |p, (i, dst)| {
                    let w = p.work();
                    block.row_into(i, &mut w.row);
                    process(c0 + i, &mut w.row, &mut w.spectral, dst);
                });
                c0 += len;
            }
        }
    }

    let mut new_info = info.clone();
    let stretches = stretches.into_inner().expect("no panics while held");
    let bad_percent = params.screen.map_or(100.0, |s| s.bad_percent);
    let (bad, mut stretches) = split_bad_channels(stretches, n, bad_percent);
    for c in bad {
        let name = &info.channels[c].name;
        if !new_info.bads.contains(name) {
            new_info.bads.push(name.clone());
        }
    }
    stretches.sort_by_key(|s| (s.start, s.channel));
    new_info.annotations.extend(stretch_annotations(&stretches, info.sfreq));
    if let Some(l) = params.l_freq.filter(|&l| params.h_freq.is_none_or(|h| l < h)) {
        new_info.highpass = Some(new_info.highpass.unwrap_or(0.0).max(l));
    }
    if let Some(h) = params.h_freq.filter(|&h| params.l_freq.is_none_or(|l| l < h)) {
        new_info.lowpass = Some(new_info.lowpass.unwrap_or(info.sfreq / 2.0).min(h));
    }
    if let Some(sf) = params.sfreq {
        let ratio = sf / info.sfreq;
        new_info.first_samp = (info.first_samp as f64 * ratio).round_ties_even() as i64;
        new_info.lowpass = Some(new_info.lowpass.unwrap_or(f64::INFINITY).min(sf / 2.0));
        new_info.sfreq = sf;
        new_info.n_samples = n_out;
    }
    Cleaned::new(new_info, out, replaced.into_inner().expect("no panics while held"))
}

/// One channel's row of the output, as the chain fills it.
enum RowOut<'a> {
    /// The fast path's unnormalised f32 values ([`SpectralChain::apply_unscaled`]).
    Scaled(&'a mut [f32]),
    Full(&'a mut [f64]),
}

/// Rows `c0..c0 + len` of `out`, each on its own.
fn row_outs(out: &mut Rows, c0: usize, len: usize) -> Vec<RowOut<'_>> {
    match out {
        Rows::Scaled { values, .. } => values.outer_iter_mut().skip(c0).take(len).map(|r| RowOut::Scaled(r.into_slice().expect("standard layout"))).collect(),
        Rows::Full(values) => values.outer_iter_mut().skip(c0).take(len).map(|r| RowOut::Full(r.into_slice().expect("standard layout"))).collect(),
    }
}

/// The stretches that MNE's `raw.filter` / `raw.notch_filter` filter separately with their
/// default `skip_by_annotation=('edge', 'bad_acq_skip')`: the samples outside annotations
/// whose description starts with either word (case-insensitive), split at zero-length ones,
/// as `mne.annotations._annotations_starts_stops(..., invert=True)`. Samples inside such
/// annotations are left unfiltered, as MNE leaves them.
pub fn filter_segments(annotations: &[Annotation], sfreq: f64, n: usize) -> Vec<(usize, usize)> {
    let to_index = |t: f64| ((t * sfreq).round_ties_even().max(0.0) as usize).min(n);
    let skips: Vec<(usize, usize)> = annotations
        .iter()
        .filter(|a| {
            let d = a.description.to_uppercase();
            d.starts_with("EDGE") || d.starts_with("BAD_ACQ_SKIP")
        })
        .map(|a| (to_index(a.onset), to_index(a.onset + a.duration)))
        .collect();
    let mut skipped = vec![false; n];
    for &(s, e) in &skips {
        skipped[s..e].fill(true);
    }
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (t, &sk) in skipped.iter().enumerate() {
        if !sk && (t == 0 || skipped[t - 1]) {
            starts.push(t);
        }
        if !sk && (t + 1 == n || skipped[t + 1]) {
            ends.push(t + 1);
        }
    }
    for &(s, e) in &skips {
        if s == e {
            starts.push(s);
            ends.push(e);
        }
    }
    starts.sort_unstable();
    ends.sort_unstable();
    starts.into_iter().zip(ends).filter(|(s, e)| e > s).collect()
}

/// Reads time chunks of every channel and writes each channel's piece at its row offset.
/// Returns false (the scratch is incomplete) when the scratch is f32 and a value is not an
/// f32 times its channel's scale.
fn transpose_into(reader: &dyn RawReader, scratch: &Scratch) -> Result<bool> {
    let info = reader.info();
    let (nch, n) = (info.n_channels(), info.n_samples);
    let picks = reader.all_picks();
    let lossy = std::sync::atomic::AtomicBool::new(false);
    // Chunks in parallel: readers take &self (positioned reads) and every chunk writes its
    // own byte ranges of the scratch file, so the order of completion does not matter.
    let n_chunks = n.div_ceil(TRANSPOSE_CHUNK);
    (0..n_chunks).into_par_iter().try_for_each_init(
        || (Vec::new(), Vec::new()),
        |(buf, bytes): &mut (Vec<f64>, Vec<u8>), k| -> Result<()> {
            if lossy.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            let s = k * TRANSPOSE_CHUNK;
            let e = (s + TRANSPOSE_CHUNK).min(n);
            buf.resize(nch * (e - s), 0.0);
            reader.read_into_f64(&picks, s, e, buf)?;
            for (c, row) in buf.chunks(e - s).enumerate() {
                bytes.clear();
                match &scratch.scales {
                    None => bytes.extend(row.iter().flat_map(|v| v.to_ne_bytes())),
                    Some(scales) => {
                        let k = scales[c];
                        for &v in row {
                            let x = (v / k) as f32;
                            if (x as f64 * k).to_bits() != v.to_bits() {
                                lossy.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Ok(());
                            }
                            bytes.extend(x.to_ne_bytes());
                        }
                    }
                }
                scratch.write_at(bytes, ((c * n + s) * scratch.width()) as u64)?;
            }
            Ok(())
        },
    )?;
    Ok(!lossy.into_inner())
}

/// A temporary channel-major file, removed when dropped: f64 values, or f32 values that
/// times their channel's scale (`scales`) give the values back exactly.
struct Scratch {
    path: PathBuf,
    file: File,
    scales: Option<Vec<f64>>,
}

impl Scratch {
    fn create(dir: &Path, nch: usize, n: usize, scales: Option<Vec<f64>>) -> Result<Scratch> {
        let (width, ext) = if scales.is_some() { (4, "f32") } else { (8, "f64") };
        let (path, file) = crate::fsutil::scratch_file(dir, "transpose", ext)?;
        file.set_len((nch * n * width) as u64).map_err(|e| Error::io(&path, e))?;
        Ok(Scratch { path, file, scales })
    }
    fn width(&self) -> usize {
        if self.scales.is_some() { 4 } else { 8 }
    }
    fn write_at(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(bytes, offset).map_err(|e| Error::io(&self.path, e))
    }
    /// Reads channel `c` (`n` samples) into `out`, through the reusable byte buffer `bytes`.
    fn read_row_into(&self, c: usize, n: usize, bytes: &mut Vec<u8>, out: &mut Vec<f64>) -> Result<()> {
        let w = self.width();
        bytes.resize(n * w, 0);
        self.file.read_exact_at(bytes, (c * n * w) as u64).map_err(|e| Error::io(&self.path, e))?;
        out.clear();
        match &self.scales {
            None => out.extend(bytes.chunks_exact(8).map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes")))),
            Some(scales) => {
                let k = scales[c];
                out.extend(bytes.chunks_exact(4).map(|b| f32::from_ne_bytes(b.try_into().expect("4 bytes")) as f64 * k));
            }
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One thread's work buffers: a channel's raw row (and its bytes, from a scratch file) and
/// the spectral chain's FFT buffers.
struct Work {
    bytes: Vec<u8>,
    row: Vec<f64>,
    spectral: Option<SpectralBuffers>,
}

/// Work buffers taken from a pool and given back when rayon drops its per-split state.
struct Pooled<'a> {
    item: Option<Work>,
    pool: &'a std::sync::Mutex<Vec<Work>>,
}

impl Pooled<'_> {
    fn work(&mut self) -> &mut Work {
        self.item.as_mut().expect("held until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let (Some(w), Ok(mut pool)) = (self.item.take(), self.pool.lock()) {
            pool.push(w);
        }
    }
}

/// Each channel's scale (`range · cal`, what a FIF's stored value is multiplied by), and
/// whether all of them could hold f32 values (finite, non-zero).
fn f32_scales(info: &crate::recording::RecordingInfo) -> (Vec<f64>, bool) {
    let scales: Vec<f64> = info.channels.iter().map(|c| c.range * c.cal).collect();
    let possible = scales.iter().all(|k| k.is_finite() && *k != 0.0);
    (scales, possible)
}

/// Every channel of a recording in memory, whole rows: f32 values times their channel's
/// scale where that gives every value back bit for bit (a FIF's float32 or int16 samples;
/// half the bytes of f64), else f64. For stages that scan whole rows of a file that holds
/// them sample-major (segment's flat/clipped rejection): one read of the file, and rows
/// exactly as `read_f64` would give them.
pub struct AllRows(Block);

impl AllRows {
    pub fn read(reader: &dyn RawReader) -> Result<AllRows> {
        let nch = reader.info().n_channels();
        let (scales, f32_possible) = f32_scales(reader.info());
        let mut block = Block::default();
        if !(f32_possible && block.read(reader, 0, nch, Some(&scales))?) {
            block.read(reader, 0, nch, None)?;
        }
        Ok(AllRows(block))
    }

    /// Channel `c`'s whole row (f64, bit for bit as the reader gives it).
    pub fn row(&self, c: usize) -> Vec<f64> {
        let mut out = Vec::new();
        self.0.row_into(c, &mut out);
        out
    }
}

/// Channels `c0..c0 + len` of the whole recording, read in time chunks of
/// [`TRANSPOSE_CHUNK`] samples and kept as read: chunk `k` is `len × (its samples)` values,
/// channel-major, at `k · len · TRANSPOSE_CHUNK`. f32 values times their channel's scale,
/// or f64 values; the buffers are reused from block to block.
#[derive(Default)]
struct Block {
    c0: usize,
    len: usize,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    scales: Option<Vec<f64>>,
}

impl Block {
    /// Reads channels `c0..c0 + len` of `reader`: as f32 values of `scales` when given
    /// (returns false, the block unusable, when a value is not an f32 times its channel's
    /// scale), else as f64.
    fn read(&mut self, reader: &dyn RawReader, c0: usize, len: usize, scales: Option<&[f64]>) -> Result<bool> {
        let n = reader.info().n_samples;
        let picks: Vec<usize> = (c0..c0 + len).collect();
        let step = len * TRANSPOSE_CHUNK;
        self.c0 = c0;
        self.len = len;
        self.scales = scales.map(<[f64]>::to_vec);
        let bounds = |k: usize| (k * TRANSPOSE_CHUNK, ((k + 1) * TRANSPOSE_CHUNK).min(n));
        match scales {
            None => {
                self.f32s = Vec::new(); // an f32 block turned out lossy: its memory goes now
                self.f64s.resize(len * n, 0.0);
                // Chunks in parallel: readers take &self (positioned reads).
                self.f64s.par_chunks_mut(step).enumerate().try_for_each(|(k, dst)| {
                    let (s, e) = bounds(k);
                    reader.read_into_f64(&picks, s, e, dst)
                })?;
                Ok(true)
            }
            Some(scales) => {
                let lossy = std::sync::atomic::AtomicBool::new(false);
                self.f32s.resize(len * n, 0.0);
                self.f32s.par_chunks_mut(step).enumerate().try_for_each_init(Vec::new, |buf: &mut Vec<f64>, (k, dst)| -> Result<()> {
                    if lossy.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(());
                    }
                    let (s, e) = bounds(k);
                    buf.resize(len * (e - s), 0.0);
                    reader.read_into_f64(&picks, s, e, buf)?;
                    for (i, (row, d)) in buf.chunks(e - s).zip(dst.chunks_mut(e - s)).enumerate() {
                        let k = scales[c0 + i];
                        for (&v, o) in row.iter().zip(d) {
                            let x = (v / k) as f32;
                            if (x as f64 * k).to_bits() != v.to_bits() {
                                lossy.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Ok(());
                            }
                            *o = x;
                        }
                    }
                    Ok(())
                })?;
                Ok(!lossy.into_inner())
            }
        }
    }

    /// Channel `c0 + i`'s whole row, as the reader returned it (f64 bit for bit).
    fn row_into(&self, i: usize, out: &mut Vec<f64>) {
        out.clear();
        let step = self.len * TRANSPOSE_CHUNK;
        match &self.scales {
            None => {
                for chunk in self.f64s.chunks(step) {
                    let m = chunk.len() / self.len;
                    out.extend_from_slice(&chunk[i * m..(i + 1) * m]);
                }
            }
            Some(scales) => {
                let k = scales[self.c0 + i];
                for chunk in self.f32s.chunks(step) {
                    let m = chunk.len() / self.len;
                    out.extend(chunk[i * m..(i + 1) * m].iter().map(|&v| v as f64 * k));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::filter::filter_rows;
    use crate::dsp::resample::resample_rows;
    use crate::recording::{ChannelInfo, InMemory, RecordingInfo, Unit};

    fn recording(n: usize) -> InMemory {
        let mut chs: Vec<ChannelInfo> = (0..5).map(|i| ChannelInfo::new(format!("EEG{i:03}"), ChannelKind::Eeg, 2, Unit::V)).collect();
        chs.push(ChannelInfo::new("STI101", ChannelKind::Stim, 3, Unit::NONE));
        let data = Array2::from_shape_fn((6, n), |(c, t)| {
            if c == 5 {
                if t % 1100 == 7 { 5.0 } else { 0.0 }
            } else {
                ((t * (c + 3)) as f64 * 0.013).sin() * 1e-5 + ((t % 97) as f64 - 48.0) * 1e-7
            }
        });
        let info = RecordingInfo::new("mem", "memory", 1100.0, n, chs);
        InMemory::new(info, data).unwrap()
    }

    /// The streamed chain (chunked transpose, per-channel rows) equals the whole-array chain
    /// bit for bit: chunking changes where the data waits, not a single operation on it.
    #[test]
    fn chunked_chain_equals_whole_array_chain() {
        let rec = recording(3 * TRANSPOSE_CHUNK + 123);
        let params = CleanParams { l_freq: Some(0.5), h_freq: Some(100.0), notch: vec![50.0], sfreq: Some(250.0), exact: true, ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        let got = clean(&rec, &params, dir.path(), &|| {}).unwrap().into_in_memory().unwrap();
        let mut whole = rec.data.clone();
        let picks: Vec<usize> = (0..5).collect();
        filter_rows(&mut whole, &create_filter(1100.0, Some(0.5), Some(100.0), &FirOptions::default()).unwrap(), &picks);
        filter_rows(&mut whole, &notch_filter_design(1100.0, &[50.0], &FirOptions::default()).unwrap(), &picks);
        let want = resample_rows(&whole, 1100.0, 250.0, &[5]);
        assert_eq!(got.data, want);
        assert_eq!(got.info.sfreq, 250.0);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "scratch file left behind");
    }

    /// Values that are f32 samples times a calibration (a float32 or int16 FIF) go through
    /// an f32 scratch and come back bit for bit: the chain equals the whole-array chain.
    /// Values that are not (the sine recording) fall back to f64, also bit for bit.
    #[test]
    fn f32_scratch_only_where_exact_and_bit_for_bit() {
        let mut rec = recording(3 * TRANSPOSE_CHUNK + 123);
        let dir = tempfile::tempdir().unwrap();
        let (nch, n) = (rec.info.n_channels(), rec.info.n_samples);
        let scales: Vec<f64> = rec.info.channels.iter().map(|c| c.range * c.cal).collect();
        let s = Scratch::create(dir.path(), nch, n, Some(scales)).unwrap();
        assert!(!transpose_into(&rec, &s).unwrap(), "sines times 1e-5 are not f32 values");
        drop(s);
        for (c, ch) in rec.info.channels.iter_mut().enumerate() {
            ch.cal = 1.2345e-13 * (c + 1) as f64;
            ch.range = 0.75;
        }
        let ks: Vec<f64> = rec.info.channels.iter().map(|c| c.range * c.cal).collect();
        for (c, mut row) in rec.data.rows_mut().into_iter().enumerate() {
            row.mapv_inplace(|v| ((v * 1e9) as f32) as f64 * ks[c]);
        }
        let s = Scratch::create(dir.path(), nch, n, Some(ks.clone())).unwrap();
        assert!(transpose_into(&rec, &s).unwrap());
        let (mut bytes, mut x) = (vec![], vec![]);
        for c in 0..nch {
            s.read_row_into(c, n, &mut bytes, &mut x).unwrap();
            assert!(x.iter().zip(rec.data.row(c)).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        drop(s);
        let params = CleanParams { l_freq: Some(0.5), h_freq: Some(100.0), notch: vec![50.0], sfreq: Some(250.0), exact: true, ..Default::default() };
        let got = clean(&rec, &params, dir.path(), &|| {}).unwrap().into_in_memory().unwrap();
        let mut whole = rec.data.clone();
        let picks: Vec<usize> = (0..5).collect();
        filter_rows(&mut whole, &create_filter(1100.0, Some(0.5), Some(100.0), &FirOptions::default()).unwrap(), &picks);
        filter_rows(&mut whole, &notch_filter_design(1100.0, &[50.0], &FirOptions::default()).unwrap(), &picks);
        assert_eq!(got.data, resample_rows(&whole, 1100.0, 250.0, &[5]));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "scratch file left behind");
    }

    /// Reading per block of channels (several blocks, one channel per block, f32 blocks and
    /// the f64 fallback) gives what the scratch-file transpose gives, value for value:
    /// the same rows reach the same chain. The screen's annotations and bad channels too.
    #[test]
    fn blocks_equal_the_scratch_transpose() {
        let n = 3 * TRANSPOSE_CHUNK + 123;
        let mut sines = recording(n);
        // A flat stretch (1 s) on one channel and a flat channel, for the screen.
        sines.data.row_mut(1).slice_mut(ndarray::s![5000..6100]).fill(2e-6);
        sines.data.row_mut(3).fill(1e-6);
        let mut floats = recording(n);
        for (c, ch) in floats.info.channels.iter_mut().enumerate() {
            ch.cal = 1.2345e-13 * (c + 1) as f64;
            ch.range = 0.75;
        }
        let ks: Vec<f64> = floats.info.channels.iter().map(|c| c.range * c.cal).collect();
        for (c, mut row) in floats.data.rows_mut().into_iter().enumerate() {
            row.mapv_inplace(|v| ((v * 1e9) as f32) as f64 * ks[c]);
        }
        floats.data.row_mut(2).slice_mut(ndarray::s![100..2000]).fill(ks[2] * 3.0);
        let dir = tempfile::tempdir().unwrap();
        for exact in [true, false] {
            let params = CleanParams {
                l_freq: Some(0.5),
                h_freq: Some(100.0),
                notch: vec![50.0],
                sfreq: Some(250.0),
                exact,
                screen: Some(FlatClipParams::default()),
                ..Default::default()
            };
            for rec in [&sines, &floats] {
                let want = clean_with(rec, &params, dir.path(), &|| {}, Transpose::Scratch).unwrap().into_in_memory().unwrap();
                assert!(!want.info.annotations.is_empty() || !want.info.bads.is_empty(), "the screen found nothing to compare");
                // 8 bytes per sample: 2, 1 (the budget holds less than a row) and all channels per block.
                for budget in [2 * n * 8, 1, usize::MAX / 2] {
                    let got = clean_with(rec, &params, dir.path(), &|| {}, Transpose::Blocks(budget)).unwrap().into_in_memory().unwrap();
                    assert!(got.data.iter().zip(want.data.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "budget {budget}, exact {exact}");
                    assert_eq!(got.info.bads, want.info.bads);
                    assert_eq!(got.info.annotations, want.info.annotations);
                }
            }
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "scratch file left behind");
    }

    /// A block read as f32 gives back the reader's f64 values bit for bit; values that are not
    /// f32 times the scale make the f32 read fail, so the caller reads them as f64.
    #[test]
    fn f32_blocks_only_where_exact() {
        let mut rec = recording(2 * TRANSPOSE_CHUNK + 7);
        let ks: Vec<f64> = rec.info.channels.iter().map(|c| c.range * c.cal).collect();
        let mut block = Block::default();
        assert!(!block.read(&rec, 1, 3, Some(&ks)).unwrap(), "sines times 1e-5 are not f32 values");
        assert!(block.read(&rec, 1, 3, None).unwrap());
        let mut x = vec![];
        for i in 0..3 {
            block.row_into(i, &mut x);
            assert!(x.iter().zip(rec.data.row(1 + i)).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        for (c, mut row) in rec.data.rows_mut().into_iter().enumerate() {
            row.mapv_inplace(|v| ((v * 1e9) as f32) as f64 * ks[c]);
        }
        assert!(block.read(&rec, 2, 4, Some(&ks)).unwrap());
        for i in 0..4 {
            block.row_into(i, &mut x);
            assert!(x.iter().zip(rec.data.row(2 + i)).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    /// The fast path holds its output as f32 values and the inverse FFT's factor; read back,
    /// they are the f64 values `SpectralChain::apply` gives (what the chain held before it
    /// kept f32), bit for bit, and the stim channel is MNE's decimation.
    #[test]
    fn fast_path_output_reads_back_as_the_chains_f64_values() {
        let rec = recording(200_000);
        let params = CleanParams { l_freq: Some(0.5), h_freq: Some(100.0), notch: vec![50.0], sfreq: Some(250.0), ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        let cleaned = clean(&rec, &params, dir.path(), &|| {}).unwrap();
        assert!(cleaned.holds_f32(), "the fast path should keep f32 values");
        let band = create_filter(1100.0, Some(0.5), Some(100.0), &FirOptions::default()).unwrap();
        let notch = notch_filter_design(1100.0, &[50.0], &FirOptions::default()).unwrap();
        let chain = SpectralChain::new(&[&band, &notch], 250.0, 1100.0, rec.info.n_samples).unwrap();
        let mut bufs = chain.buffers();
        let got = cleaned.read_f64(&cleaned.all_picks(), 0, chain.final_len()).unwrap();
        for c in 0..5 {
            let mut want = vec![0.0; chain.final_len()];
            chain.apply(rec.data.row(c).as_slice().unwrap(), true, &mut bufs, &mut want);
            assert!(want.iter().zip(got.row(c)).all(|(a, b)| a.to_bits() == b.to_bits()), "channel {c}");
        }
        let stim = resample_stim(rec.data.row(5).as_slice().unwrap(), chain.final_len() as f64, 200_000.0);
        assert_eq!(got.row(5).to_vec(), stim);
        assert!(stim.iter().any(|&v| v == 5.0));
        // The exact chain holds f64.
        assert!(!clean(&rec, &CleanParams { exact: true, ..params }, dir.path(), &|| {}).unwrap().holds_f32());
    }

    /// `AllRows` gives every row as `read_f64` does, bit for bit: as f32 where every value
    /// is an f32 times its channel's scale, as f64 where one is not.
    #[test]
    fn all_rows_equal_the_f64_read_in_either_precision() {
        let mut rec = recording(2 * TRANSPOSE_CHUNK + 77);
        let check = |rec: &InMemory, f32_expected: bool| {
            let rows = AllRows::read(rec).unwrap();
            assert_eq!(rows.0.scales.is_some(), f32_expected);
            for c in 0..rec.info.n_channels() {
                assert!(rows.row(c).iter().zip(rec.data.row(c)).all(|(a, b)| a.to_bits() == b.to_bits()), "channel {c}");
            }
        };
        check(&rec, false); // sines times 1e-5 are not f32 values
        let ks: Vec<f64> = rec.info.channels.iter().map(|c| c.range * c.cal).collect();
        for (c, mut row) in rec.data.rows_mut().into_iter().enumerate() {
            row.mapv_inplace(|v| ((v * 1e9) as f32) as f64 * ks[c]);
        }
        check(&rec, true);
    }

    #[test]
    fn segments_follow_mnes_skip_by_annotation() {
        let ann = |onset: f64, duration: f64, d: &str| Annotation { onset, duration, description: d.into() };
        assert_eq!(filter_segments(&[], 100.0, 1000), vec![(0, 1000)]);
        assert_eq!(filter_segments(&[ann(2.0, 1.0, "bad_acq_skip"), ann(5.0, 0.0, "BAD blink")], 100.0, 1000), vec![(0, 200), (300, 1000)]);
        assert_eq!(filter_segments(&[ann(5.0, 0.0, "edge")], 100.0, 1000), vec![(0, 500), (500, 1000)]);
        assert_eq!(filter_segments(&[ann(0.0, 10.0, "BAD_ACQ_SKIP")], 100.0, 1000), vec![]);
    }

    /// The fast path differs from the exact chain only by MNE's padding artefact (see
    /// dsp::spectral), and passes stim channels through the same decimation.
    #[test]
    fn fast_path_is_close_to_the_exact_chain() {
        let rec = recording(200_000);
        let exact = CleanParams { l_freq: Some(0.5), h_freq: Some(100.0), notch: vec![50.0], sfreq: Some(250.0), exact: true, ..Default::default() };
        let fast = CleanParams { exact: false, ..exact.clone() };
        let dir = tempfile::tempdir().unwrap();
        let a = clean(&rec, &exact, dir.path(), &|| {}).unwrap().into_in_memory().unwrap();
        let b = clean(&rec, &fast, dir.path(), &|| {}).unwrap().into_in_memory().unwrap();
        assert_eq!(a.data.row(5), b.data.row(5));
        for c in 0..5 {
            let (ra, rb) = (a.data.row(c), b.data.row(c));
            let rms = (ra.iter().map(|v| v * v).sum::<f64>() / ra.len() as f64).sqrt();
            let worst = ra.iter().zip(rb.iter()).map(|(x, y)| (x - y).abs() / rms).fold(0.0, f64::max);
            assert!(worst < 1e-4 && worst > 0.0, "channel {c}: {worst}");
        }
    }
}
