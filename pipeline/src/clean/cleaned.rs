//! The cleaning chain's output: a recording in memory, held as the chain computed it.
//!
//! The fast path's inverse FFT runs in f32 and each output value is that f32 times one
//! factor (`1 / new_len`, [`SpectralChain::output_scale`]). Keeping the f32 values and the
//! factor instead of their f64 products halves the stage's largest allocation (a ds000117
//! run: 198 instead of 397 MB) and gives back the same f64 values bit for bit, so every later
//! step (bad-channel detection, interpolation, the cleaned FIF) sees what it saw before. Why
//! it matters: memory touched for the first time is the dearest thing in this stage on the
//! machines we measure on (see `BLOCK_BYTES` in the parent module).
//!
//! Rows that are not of that form are held as f64: the decimated stim channels, rows that a
//! later step replaces (interpolated EEG), and every row of MNE's exact three-pass chain.
//!
//! [`SpectralChain::output_scale`]: crate::dsp::spectral::SpectralChain::output_scale

use std::collections::BTreeMap;

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::recording::{InMemory, ReadSamples, RecordingInfo, Sample};

/// A cleaned recording (channels × samples, SI units); a [`crate::recording::RawReader`]
/// like any other, so the FIF writer and the bad-channel steps read it as they read a file.
pub struct Cleaned {
    pub info: RecordingInfo,
    rows: Rows,
    /// Rows held as f64 in place of their row of `rows`.
    replaced: BTreeMap<usize, Vec<f64>>,
}

/// How most rows are held.
pub(crate) enum Rows {
    /// Value `(c, t)` is `f64::from(values[(c, t)]) * scale`.
    Scaled { values: Array2<f32>, scale: f64 },
    /// Value `(c, t)` is `values[(c, t)]`.
    Full(Array2<f64>),
}

impl Rows {
    fn dim(&self) -> (usize, usize) {
        match self {
            Rows::Scaled { values, .. } => values.dim(),
            Rows::Full(values) => values.dim(),
        }
    }
}

impl Cleaned {
    /// Wraps `rows` and the rows held apart; every shape must match `info`.
    pub(crate) fn new(info: RecordingInfo, rows: Rows, replaced: BTreeMap<usize, Vec<f64>>) -> Result<Cleaned> {
        let (nch, n) = (info.n_channels(), info.n_samples);
        if rows.dim() != (nch, n) || replaced.iter().any(|(&c, row)| c >= nch || row.len() != n) {
            let (r, k) = rows.dim();
            return Err(Error::request(&info.path, format!("cleaned data is {r}×{k} (or a replaced row is not {n} samples), info describes {nch}×{n}")));
        }
        Ok(Cleaned { info, rows, replaced })
    }

    /// Replaces channel `c`'s row (an interpolated channel).
    pub fn set_row(&mut self, c: usize, row: Vec<f64>) -> Result<()> {
        if c >= self.info.n_channels() || row.len() != self.info.n_samples {
            return Err(Error::request(&self.info.path, format!("row {c} of {} samples does not fit {} channels × {} samples", row.len(), self.info.n_channels(), self.info.n_samples)));
        }
        self.replaced.insert(c, row);
        Ok(())
    }

    /// True when most rows are held as f32 values and a factor.
    pub fn holds_f32(&self) -> bool {
        matches!(self.rows, Rows::Scaled { .. })
    }

    /// The f64 values as one array (tests, and callers that need the whole matrix).
    pub fn into_in_memory(self) -> Result<InMemory> {
        let mut data = match self.rows {
            Rows::Full(values) => values,
            Rows::Scaled { values, scale } => values.mapv(|v| f64::from(v) * scale),
        };
        for (c, row) in self.replaced {
            data.row_mut(c).assign(&ndarray::ArrayView1::from(&row));
        }
        InMemory::new(self.info, data)
    }
}

impl ReadSamples for Cleaned {
    fn recording(&self) -> &RecordingInfo {
        &self.info
    }

    fn read_samples<T: Sample>(&self, picks: &[usize], start: usize, stop: usize, out: &mut [T]) -> Result<()> {
        self.info.check_request(picks, start, stop, out.len())?;
        let n = stop - start;
        if n == 0 {
            return Ok(());
        }
        for (&c, dst) in picks.iter().zip(out.chunks_mut(n)) {
            match (self.replaced.get(&c), &self.rows) {
                (Some(row), _) => dst.iter_mut().zip(&row[start..stop]).for_each(|(o, &v)| *o = T::from_f64(v)),
                (None, Rows::Full(values)) => dst.iter_mut().zip(values.row(c).slice(ndarray::s![start..stop])).for_each(|(o, &v)| *o = T::from_f64(v)),
                (None, Rows::Scaled { values, scale }) => {
                    dst.iter_mut().zip(values.row(c).slice(ndarray::s![start..stop])).for_each(|(o, &v)| *o = T::from_f64(f64::from(v) * scale))
                }
            }
        }
        Ok(())
    }

    fn holds_stored_samples(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{ChannelInfo, ChannelKind, RawReader, Unit};

    fn info(nch: usize, n: usize) -> RecordingInfo {
        let channels = (0..nch).map(|i| ChannelInfo::new(format!("EEG{i:03}"), ChannelKind::Eeg, 2, Unit::V)).collect();
        RecordingInfo::new("cleaned.fif", "test", 250.0, n, channels)
    }

    /// Scaled, full and replaced rows read back as the f64 values they stand for, in both
    /// precisions, through any window of picks and samples.
    #[test]
    fn reads_give_the_values_the_rows_stand_for() {
        let (nch, n) = (3, 7);
        let values = Array2::from_shape_fn((nch, n), |(c, t)| (c * 10 + t) as f32 * 1.37);
        let scale = 1.0 / 238_313.0;
        let replaced = BTreeMap::from([(1, (0..n).map(|t| t as f64 * 0.1).collect::<Vec<_>>())]);
        let scaled = Cleaned::new(info(nch, n), Rows::Scaled { values: values.clone(), scale }, replaced.clone()).unwrap();
        let want = Array2::from_shape_fn((nch, n), |(c, t)| if c == 1 { t as f64 * 0.1 } else { f64::from(values[(c, t)]) * scale });
        let got = scaled.read_f64(&[2, 0, 1], 2, 6).unwrap();
        for (i, &c) in [2, 0, 1].iter().enumerate() {
            for t in 2..6 {
                assert_eq!(got[(i, t - 2)].to_bits(), want[(c, t)].to_bits());
            }
        }
        let got32 = scaled.read_f32(&[0, 1], 0, n).unwrap();
        assert_eq!(got32[(1, 3)], (0.3f64) as f32);
        assert_eq!(got32[(0, 4)], want[(0, 4)] as f32);
        assert_eq!(scaled.into_in_memory().unwrap().data, want);

        let full = Cleaned::new(info(nch, n), Rows::Full(want.clone()), BTreeMap::new()).unwrap();
        assert_eq!(full.read_f64(&[0, 1, 2], 0, n).unwrap(), want);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let info = info(2, 5);
        assert!(Cleaned::new(info.clone(), Rows::Full(Array2::zeros((2, 4))), BTreeMap::new()).is_err());
        assert!(Cleaned::new(info.clone(), Rows::Full(Array2::zeros((2, 5))), BTreeMap::from([(2, vec![0.0; 5])])).is_err());
        let mut ok = Cleaned::new(info, Rows::Scaled { values: Array2::zeros((2, 5)), scale: 0.5 }, BTreeMap::new()).unwrap();
        assert!(ok.set_row(0, vec![1.0; 4]).unwrap_err().to_string().contains("cleaned.fif"));
        assert!(ok.set_row(2, vec![1.0; 5]).is_err());
        ok.set_row(1, vec![1.0; 5]).unwrap();
        assert!(ok.read_f64(&[0], 0, 6).is_err());
    }
}
