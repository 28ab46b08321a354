//! Some channels of a computed reader, computed once into a scratch file and read back from it.
//!
//! Why: the preprocess stage reads the cHPI-filtered raw MEG ([`super::chpi::ChpiFilter`])
//! more than once: `find_bad_channels_maxwell` scans it, the tSSS corrections (when asked)
//! read it, then the Maxwell filter's pass reads it again. Each read of the filter refits
//! every control point (its GEMMs are the cost: ~5 s per full-size ds000117 run and pass on 2
//! cores). [`StoredCopy`] runs those fits once and keeps the result, as f64 values bit for
//! bit, in a file of `channels × samples × 8` bytes (1.3 GB for ds000117's 306 MEG channels
//! × 540,100 samples: too much for memory, a page-cache read to get back), removed when the
//! copy is dropped. Channels not stored pass through to the inner reader.
//!
//! Bit for bit: the file holds exactly what the inner reader returned for each block, and
//! the cHPI filter returns the same value for a sample whatever span a read asks for (its
//! fits and rebuilds depend on absolute sample indices only; tested in
//! `tests::reads_equal_the_inner_readers`), so a stage reading through the copy sees the
//! numbers it saw before.
//!
//! Layout: blocks of `block` samples one after the other; inside a block, one row per stored
//! channel (`block` f64 values, fewer in the last block). A read of any span and channels is
//! one positioned read per (block, channel) it touches.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::recording::{RawReader, RecordingInfo};

/// Bytes of samples one fill task holds (one block of every stored channel).
const BLOCK_BYTES: usize = 32 << 20;

/// Channels `stored` of `inner`, computed once into a scratch file (see the module doc).
pub struct StoredCopy<'a> {
    inner: &'a dyn RawReader,
    /// Per recording channel: its row in a block, None when it passes through.
    row_of: Vec<Option<usize>>,
    n_rows: usize,
    /// Samples per block (the last block may be shorter).
    block: usize,
    path: PathBuf,
    file: File,
}

impl<'a> StoredCopy<'a> {
    /// Reads channels `stored` (recording indices) of `inner` over the whole recording, in
    /// blocks on every core, into a new file in `dir`.
    pub fn new(inner: &'a dyn RawReader, stored: &[usize], dir: &Path) -> Result<StoredCopy<'a>> {
        let info = inner.info();
        info.check_request(stored, 0, 0, 0)?;
        let mut row_of = vec![None; info.n_channels()];
        for (row, &c) in stored.iter().enumerate() {
            if row_of[c].replace(row).is_some() {
                return Err(Error::request(&info.path, format!("channel index {c} is stored twice")));
            }
        }
        let n_rows = stored.len();
        let block = (BLOCK_BYTES / (8 * n_rows.max(1))).max(1024);
        let (path, file) = crate::fsutil::scratch_file(dir, "stored", "f64")?;
        let copy = StoredCopy { inner, row_of, n_rows, block, path, file };
        let n = info.n_samples;
        copy.file.set_len((n_rows * n * 8) as u64).map_err(|e| Error::io(&copy.path, e))?;
        (0..n.div_ceil(block)).into_par_iter().try_for_each(|b| -> Result<()> {
            let (s, e) = (b * block, ((b + 1) * block).min(n));
            let mut values = vec![0.0f64; n_rows * (e - s)];
            inner.read_into_f64(stored, s, e, &mut values)?;
            copy.file.write_all_at(bytemuck::cast_slice(&values), copy.block_offset(b)).map_err(|e| Error::io(&copy.path, e))
        })?;
        Ok(copy)
    }

    /// Byte offset of block `b` (all earlier blocks are full).
    fn block_offset(&self, b: usize) -> u64 {
        (b * self.block * self.n_rows * 8) as u64
    }

    /// Samples in block `b`.
    fn block_len(&self, b: usize) -> usize {
        self.block.min(self.inner.info().n_samples - b * self.block)
    }

    /// Row `row`'s samples `start..stop` into `out`, straight from the file's bytes.
    fn read_stored(&self, row: usize, start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        let mut t = start;
        while t < stop {
            let b = t / self.block;
            let (s, len) = (b * self.block, self.block_len(b));
            let e = stop.min(s + len);
            let at = self.block_offset(b) + ((row * len + (t - s)) * 8) as u64;
            let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out[t - start..e - start]);
            self.file.read_exact_at(dst, at).map_err(|e| Error::io(&self.path, e))?;
            t = e;
        }
        Ok(())
    }
}

impl RawReader for StoredCopy<'_> {
    fn info(&self) -> &RecordingInfo {
        self.inner.info()
    }
    fn read_into_f64(&self, picks: &[usize], start: usize, stop: usize, out: &mut [f64]) -> Result<()> {
        self.inner.info().check_request(picks, start, stop, out.len())?;
        let n = stop - start;
        let passed: Vec<(usize, usize)> = picks.iter().enumerate().filter(|(_, &c)| self.row_of[c].is_none()).map(|(i, &c)| (i, c)).collect();
        if !passed.is_empty() && n > 0 {
            let p: Vec<usize> = passed.iter().map(|&(_, c)| c).collect();
            let mut buf = vec![0.0; p.len() * n];
            self.inner.read_into_f64(&p, start, stop, &mut buf)?;
            for (k, &(i, _)) in passed.iter().enumerate() {
                out[i * n..(i + 1) * n].copy_from_slice(&buf[k * n..(k + 1) * n]);
            }
        }
        for (i, &c) in picks.iter().enumerate() {
            if let Some(row) = self.row_of[c] {
                self.read_stored(row, start, stop, &mut out[i * n..(i + 1) * n])?;
            }
        }
        Ok(())
    }
    fn maxshield(&self) -> bool {
        self.inner.maxshield()
    }
    /// A read is a file read, but only for the stored channels: the others are computed by
    /// the inner reader (the preprocess stage stores every computed channel).
    fn rereads_are_cheap(&self) -> bool {
        false
    }
}

impl Drop for StoredCopy<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::chpi::{ChpiFilter, ChpiParams};
    use crate::recording::{ChannelInfo, ChannelKind, ChpiInfo, InMemory, Unit};
    use ndarray::Array2;

    /// Three MEG channels with cHPI and line sinusoids and one EEG channel, 9000 samples.
    fn recording() -> InMemory {
        use std::f64::consts::TAU;
        let kinds = [ChannelKind::Mag, ChannelKind::Eeg, ChannelKind::Grad, ChannelKind::Mag];
        let channels = kinds.iter().enumerate().map(|(i, &k)| ChannelInfo::new(format!("CH{i:03}"), k, 1, if k == ChannelKind::Grad { Unit::T_M } else { Unit::T })).collect();
        let sfreq = 1000.0;
        let n = 9000;
        let info = RecordingInfo {
            line_freq: Some(50.0),
            chpi: Some(ChpiInfo { coils: vec![(1, 293.0), (2, 307.0)], event_bits: Some(vec![Some(256), Some(512)]), event_channel: None }),
            ..RecordingInfo::new("stored-test.fif", "test", sfreq, n, channels)
        };
        let data = Array2::from_shape_fn((kinds.len(), n), |(c, t)| {
            let t = t as f64 / sfreq;
            let slow = (c as f64 + 1.0) * 1e-12 * (TAU * (3.0 + c as f64) * t).sin();
            slow + 5e-11 * (TAU * 293.0 * t + c as f64).sin() + 1e-11 * (TAU * 307.0 * t).cos() + 3e-12 * (TAU * 50.0 * t).sin()
        });
        InMemory::new(info, data).unwrap()
    }

    /// The copy gives, bit for bit, what the cHPI filter gives, for reads of any span and any
    /// channels (stored or passed through, in any order), across block boundaries; the file
    /// is removed when the copy is dropped; bad requests are errors.
    #[test]
    fn reads_equal_the_inner_readers() {
        let rec = recording();
        let filt = ChpiFilter::new(&rec, &ChpiParams::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let meg = [0usize, 2, 3];
        {
            let mut copy = StoredCopy::new(&filt, &meg, dir.path()).unwrap();
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
            // Small blocks, so reads cross them: refill with 1000-sample blocks.
            copy.block = 1000;
            copy.file.set_len(0).unwrap();
            copy.file.set_len((3 * 9000 * 8) as u64).unwrap();
            for b in 0..9 {
                let v = filt.read_f64(&meg, b * 1000, (b + 1) * 1000).unwrap();
                copy.file.write_all_at(bytemuck::cast_slice(v.as_slice().unwrap()), copy.block_offset(b)).unwrap();
            }
            for (picks, s, e) in [(vec![0, 1, 2, 3], 0, 9000), (vec![3, 1, 0], 999, 1001), (vec![2], 1234, 5678), (vec![1], 10, 20), (vec![0, 3], 8990, 9000)] {
                let want = filt.read_f64(&picks, s, e).unwrap();
                let got = copy.read_f64(&picks, s, e).unwrap();
                assert!(want.iter().zip(got.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "picks {picks:?} {s}..{e}");
            }
            let e = copy.read_f64(&[4], 0, 10).unwrap_err().to_string();
            assert!(e.contains("channel index 4"), "{e}");
        }
        // The file as the constructor fills it (one block here) reads the same too.
        let copy = StoredCopy::new(&filt, &meg, dir.path()).unwrap();
        let want = filt.read_f64(&[0, 1, 2, 3], 0, 9000).unwrap();
        let got = copy.read_f64(&[0, 1, 2, 3], 0, 9000).unwrap();
        assert!(want.iter().zip(got.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        drop(copy);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "scratch file left behind");
    }
}
