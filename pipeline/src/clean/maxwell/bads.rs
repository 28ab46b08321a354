//! Flat and noisy MEG channel detection equal to MNE-Python 1.13's
//! `find_bad_channels_maxwell` (`mne/preprocessing/maxwell.py`), with its defaults
//! (`limit=7`, `duration=5`, `min_count=5`, `h_freq=40`, `regularize='in'`, `mag_scale=100`).
//!
//! What MNE does, and we do in the same order so the numbers are the same:
//! 1. Low-pass the recording at `h_freq` with MNE's default FIR filter, unless the file says
//!    it was already low-passed at or below it. MNE filters the whole recording first; we
//!    filter each chunk with `n_h` samples of margin on either side (and MNE's reflection at
//!    the recording's edges), which gives the same samples inside the chunk up to FFT
//!    round-off, in memory bounded by one chunk.
//! 2. Cut the recording into chunks of `round(duration · sfreq)` samples (the last one takes
//!    the remainder); `min_count` is capped at the number of chunks.
//! 3. Flat pass per chunk: on the good MEG channels, the smallest population standard
//!    deviation over consecutive windows of `max(20, int(30 ms · sfreq))` samples (a trailing
//!    partial window is dropped); below 1e-15 T/m (gradiometers) or 1e-17 T (magnetometers)
//!    the channel is flat for this chunk. Flat channels accumulate over chunks and are left
//!    out of every later noisy pass.
//! 4. Noisy pass per chunk, at most 100 rounds: fit the SSS moments on the good, non-flat,
//!    not-yet-noisy channels (the decomposition, regularisation included, is recomputed each
//!    round because it depends on which channels are good), reconstruct every channel from
//!    the internal *and* external moments (`reconstruct='orig'`, cross-talk applied to the data
//!    first), take each candidate's peak-to-peak of (data − reconstruction), magnetometers ×
//!    `mag_scale`, z-score these across candidates (population std); the worst channel with
//!    z ≥ `limit` is noisy for this chunk and removed, otherwise the chunk is done.
//! 5. A channel flat (noisy) in at least `min_count` chunks is reported, in recording order.
//!
//! Not here (as in the rest of [`super`]): `skip_by_annotation` (a recording with
//! `edge`/`BAD_ACQ_SKIP` annotations is refused rather than scanned differently from MNE),
//! `head_pos`, `extended_proj`, MEG reference channels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::sss::{sss_operator, BadCondition, MaxwellParams, SssOperator};
use super::HeadGeometry;
use crate::dsp::filter::OverlapAdd;
use crate::dsp::fir::{create_filter, FirOptions};
use crate::{ChannelKind, Error, RawReader, Result};

/// Parameters of `find_bad_channels_maxwell` (MNE's defaults in [`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FindBadsParams {
    /// The SSS parameters (`st_duration` must be None, as MNE does not take it here).
    pub maxwell: MaxwellParams,
    pub limit: f64,
    /// Chunk length in seconds.
    pub duration: f64,
    pub min_count: usize,
    /// Low-pass cutoff applied before scoring (None: no filter).
    pub h_freq: Option<f64>,
}

impl Default for FindBadsParams {
    fn default() -> Self {
        FindBadsParams { maxwell: MaxwellParams::default(), limit: 7.0, duration: 5.0, min_count: 5, h_freq: Some(40.0) }
    }
}

/// MNE's `return_scores=True` dictionary: one row per MEG channel (recording order), one
/// column per chunk; NaN where MNE leaves NaN (bad channels, chunks never scored).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MaxwellBadsScores {
    pub ch_names: Vec<String>,
    pub ch_types: Vec<&'static str>,
    /// Inclusive start and stop time (s) of each chunk.
    pub bins: Vec<[f64; 2]>,
    pub scores_flat: Vec<Vec<f64>>,
    pub limits_flat: Vec<f64>,
    pub scores_noisy: Vec<Vec<f64>>,
    pub limits_noisy: Vec<f64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MaxwellBads {
    /// Channels noisy in at least `min_count` chunks, in recording order.
    pub noisy: Vec<String>,
    /// Channels flat in at least `min_count` chunks, in recording order.
    pub flat: Vec<String>,
    pub scores: MaxwellBadsScores,
}

/// numpy's `np.std` (ddof 0): mean first, then the mean squared deviation.
fn std_pop(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// Finds flat and noisy MEG channels of `reader` (a Neuromag recording whose head geometry is
/// `geom`) as MNE's `find_bad_channels_maxwell` does.
pub fn find_bad_channels_maxwell(reader: &dyn RawReader, geom: &HeadGeometry, p: &FindBadsParams) -> Result<MaxwellBads> {
    let info = reader.info();
    let path = info.path.clone();
    let err = |what: String| Error::request(&path, what);
    if p.maxwell.st_duration.is_some() {
        return Err(err("find_bad_channels_maxwell does not take st_duration".into()));
    }
    if !(p.limit.is_finite()) {
        return Err(err(format!("limit must be a finite number, got {}", p.limit)));
    }
    if let Some(a) = info.annotations.iter().find(|a| {
        let d = a.description.to_lowercase();
        d.starts_with("edge") || d.starts_with("bad_acq_skip")
    }) {
        return Err(err(format!(
            "the recording has an {:?} annotation; MNE scans the spans between them separately \
             (skip_by_annotation), which is not implemented",
            a.description
        )));
    }
    let sfreq = info.sfreq;
    let n_times = info.n_samples;

    // 1. Low-pass kernel (None: MNE would not filter).
    let kernel = match p.h_freq {
        Some(h) => match info.lowpass {
            // MNE: `if raw.info.get("lowpass") and raw.info["lowpass"] <= h_freq`: skip.
            Some(lp) if lp != 0.0 && lp <= h => None,
            _ => Some(create_filter(sfreq, None, Some(h), &FirOptions::default())?),
        },
        None => None,
    };

    // 2. Chunks: step = int(round(sfreq · duration)) (Python rounds half to even).
    let step = (sfreq * p.duration).round_ties_even();
    if !(step >= 1.0) {
        return Err(err(format!("duration ({} s) gives no samples at {sfreq} Hz", p.duration)));
    }
    let bounds = chunk_bounds(n_times, step as usize);
    let min_count = p.min_count.min(bounds.len());

    // The operator for the recording's own bads checks the parameters and fixes the MEG
    // picks, as MNE's `_prep_maxwell_filter`; its condition number is not checked: MNE first
    // decomposes inside the chunk loop, with the flat channels already left out.
    let op0 = sss_operator(&path, info, geom, &MaxwellParams { bad_condition: BadCondition::Ignore, ..p.maxwell.clone() })?;
    let meg_picks = op0.meg_picks.clone();
    let n_meg = meg_picks.len();
    let is_mag: Vec<bool> = meg_picks.iter().map(|&c| info.channels[c].kind == ChannelKind::Mag).collect();
    let coil_scale: Vec<f64> = is_mag.iter().map(|&m| if m { p.maxwell.mag_scale } else { 1.0 }).collect();
    let name = |r: usize| info.channels[meg_picks[r]].name.clone();
    // Good MEG channels (rows into meg_picks): not in the recording's bads.
    let good_rows: Vec<usize> = (0..n_meg).filter(|&r| !info.bads.contains(&name(r))).collect();
    let flat_limit = |r: usize| if is_mag[r] { 0.01e-15 } else { 0.01e-13 };
    let flat_step = 20usize.max((30.0 * sfreq / 1000.0) as usize);

    let n_chunks = bounds.len();
    let mut scores_flat = vec![vec![f64::NAN; n_chunks]; n_meg];
    let mut scores_noisy = vec![vec![f64::NAN; n_chunks]; n_meg];
    let mut limits_flat = vec![f64::NAN; n_meg];
    let mut limits_noisy = vec![f64::NAN; n_meg];
    let mut bins = vec![[0.0; 2]; n_chunks];
    let mut flat_count = vec![0usize; n_meg];
    let mut noisy_count = vec![0usize; n_meg];
    let mut all_flat = vec![false; n_meg];
    // The operator depends only on which channels are left out; most chunks leave out the
    // same ones (the recording's flat channels, no noisy one), so it is computed once per set
    // rather than once per chunk and round as MNE does (same numbers, deterministic).
    let operators: Mutex<HashMap<Vec<usize>, Arc<SssOperator>>> = Mutex::new(HashMap::new());
    let operator_for = |left_out: &[usize]| -> Result<Arc<SssOperator>> {
        if let Some(op) = operators.lock().expect("operator cache").get(left_out) {
            return Ok(op.clone());
        }
        let mut sub = info.clone();
        for &r in left_out {
            if !sub.bads.contains(&name(r)) {
                sub.bads.push(name(r));
            }
        }
        let op = Arc::new(sss_operator(&path, &sub, geom, &p.maxwell)?);
        Ok(operators.lock().expect("operator cache").entry(left_out.to_vec()).or_insert(op).clone())
    };
    let noisy = NoisyPass { n_meg, coil_scale: &coil_scale, meg_picks: &meg_picks, limit: p.limit };

    // Chunks go in batches, each batch in parallel: read + flat pass of every chunk, then the
    // flat results merged in chunk order (a channel flat in a chunk is left out of every
    // later chunk's noisy pass, and scanning stops at the first chunk with no channel left),
    // then the noisy passes of the chunks kept, each with the flat channels as of its own
    // chunk. So the numbers are those of MNE's one-chunk-at-a-time loop, on every core.
    // A batch holds its chunks' data: at most 256 MiB of it, at least one chunk.
    let chunk_bytes = n_meg * step as usize * 8;
    let batch = (rayon::current_num_threads() * 2).min((256 << 20) / chunk_bytes.max(1)).max(1);
    let mut first = 0;
    'batches: while first < n_chunks {
        let last = (first + batch).min(n_chunks);
        let read: Vec<Result<(DMatrix<f64>, Vec<f64>)>> = (first..last)
            .into_par_iter()
            .map(|si| {
                let (start, stop) = bounds[si];
                // The chunk's MEG data (meg_picks rows), low-passed as the whole recording would be.
                let data = read_filtered(reader, &meg_picks, start, stop, kernel.as_deref())?;
                let deltas = flat_deltas(&data, &good_rows, flat_step).ok_or_else(|| err(format!("chunks of {} samples are shorter than the flat window ({flat_step} samples)", stop - start)))?;
                Ok((data, deltas))
            })
            .collect();
        // 3. Flat pass, merged in order: each chunk's candidates for the noisy pass.
        let mut kept: Vec<(usize, DMatrix<f64>, Vec<usize>, Vec<bool>)> = Vec::new();
        let mut stop_after = false;
        for (si, chunk) in (first..last).zip(read) {
            let (data, deltas) = chunk?;
            let (start, stop) = bounds[si];
            // MNE: chunk_raw.times[[0, -1]] + start / sfreq.
            bins[si] = [0.0 / sfreq + start as f64 / sfreq, (stop - start - 1) as f64 / sfreq + start as f64 / sfreq];
            for (&r, &delta) in good_rows.iter().zip(&deltas) {
                scores_flat[r][si] = delta;
                limits_flat[r] = flat_limit(r);
                if delta < flat_limit(r) {
                    flat_count[r] += 1;
                    all_flat[r] = true;
                }
            }
            let these: Vec<usize> = good_rows.iter().copied().filter(|&r| !all_flat[r]).collect();
            if these.is_empty() {
                // MNE warns and stops scanning at the first all-flat chunk.
                stop_after = true;
                break;
            }
            kept.push((si, data, these, all_flat.clone()));
        }
        // 4. Noisy passes.
        let results: Vec<Result<ChunkNoisy>> = kept.par_iter().map(|(_, data, these, flat)| noisy.run(data, these.clone(), flat, &operator_for)).collect();
        for ((si, ..), result) in kept.iter().zip(results) {
            let result = result?;
            for (r, z) in result.scores.into_iter().enumerate() {
                if let Some(z) = z {
                    scores_noisy[r][*si] = z;
                    limits_noisy[r] = p.limit;
                }
            }
            for r in result.noisy {
                noisy_count[r] += 1;
            }
        }
        if stop_after {
            break 'batches;
        }
        first = last;
    }

    let pick = |count: &[usize]| -> Vec<String> { (0..n_meg).filter(|&r| count[r] > 0 && count[r] >= min_count).map(name).collect() };
    Ok(MaxwellBads {
        noisy: pick(&noisy_count),
        flat: pick(&flat_count),
        scores: MaxwellBadsScores {
            ch_names: (0..n_meg).map(name).collect(),
            ch_types: is_mag.iter().map(|&m| if m { "mag" } else { "grad" }).collect(),
            bins,
            scores_flat,
            limits_flat,
            scores_noisy,
            limits_noisy,
        },
    })
}

/// Each of `rows`' smallest population standard deviation over consecutive windows of
/// `flat_step` samples (a trailing partial window dropped); None when no window fits.
fn flat_deltas(data: &DMatrix<f64>, rows: &[usize], flat_step: usize) -> Option<Vec<f64>> {
    let n = data.ncols();
    let flat_stop = n - n % flat_step;
    if flat_stop == 0 {
        return None;
    }
    Some(rows.iter().map(|&r| data.row_slice(r)[..flat_stop].chunks_exact(flat_step).map(std_pop).fold(f64::INFINITY, f64::min)).collect())
}

/// What the noisy pass of a chunk needs besides its data.
struct NoisyPass<'a> {
    n_meg: usize,
    coil_scale: &'a [f64],
    meg_picks: &'a [usize],
    limit: f64,
}

/// One chunk's noisy pass: each MEG row's last z-score (None: never a candidate) and the
/// rows found noisy, in the order found.
struct ChunkNoisy {
    scores: Vec<Option<f64>>,
    noisy: Vec<usize>,
}

impl NoisyPass<'_> {
    /// Step 4 on one chunk: `these` are its candidates (good, not flat so far), `all_flat`
    /// the rows flat in this or an earlier chunk.
    fn run(&self, data: &DMatrix<f64>, mut these: Vec<usize>, all_flat: &[bool], operator_for: &(dyn Fn(&[usize]) -> Result<Arc<SssOperator>> + Sync)) -> Result<ChunkNoisy> {
        let n = data.ncols();
        let mut scores = vec![None; self.n_meg];
        let mut chunk_noisy: Vec<usize> = Vec::new();
        for _round in 1..=100 {
            let left_out: Vec<usize> = (0..self.n_meg).filter(|&r| all_flat[r] || chunk_noisy.contains(&r)).collect();
            let op = operator_for(&left_out)?;
            let good: Vec<usize> = op.good_picks.iter().map(|c| self.meg_picks.iter().position(|m| m == c).expect("MEG")).collect();
            // Column by column: the matrices are column-major (a row walk strides by 306
            // values per sample and was a tenth of the scan's CPU).
            let mut x = DMatrix::<f64>::zeros(good.len(), n);
            for (src, mut dst) in data.column_iter().zip(x.column_iter_mut()) {
                for (i, &r) in good.iter().enumerate() {
                    dst[i] = src[r];
                }
            }
            let y = match &op.ctc {
                Some(c) => c * x,
                None => x,
            };
            let recon = &op.op_orig * y;
            // Peak-to-peak of (data − reconstruction) per candidate: the same min/max over
            // the same samples as a walk along each row.
            let mut lo = vec![f64::INFINITY; these.len()];
            let mut hi = vec![f64::NEG_INFINITY; these.len()];
            for (d_col, r_col) in data.column_iter().zip(recon.column_iter()) {
                for (j, &r) in these.iter().enumerate() {
                    let d = d_col[r] - r_col[r];
                    lo[j] = lo[j].min(d);
                    hi[j] = hi[j].max(d);
                }
            }
            let range: Vec<f64> = these.iter().enumerate().map(|(j, &r)| (hi[j] - lo[j]) * self.coil_scale[r]).collect();
            let k = range.len() as f64;
            let mean = range.iter().sum::<f64>() / k;
            let std = (range.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k).sqrt();
            let z: Vec<f64> = range.iter().map(|v| (v - mean) / std).collect();
            // np.argmax: the first maximum.
            let mut idx = 0;
            for (i, v) in z.iter().enumerate() {
                if *v > z[idx] {
                    idx = i;
                }
            }
            for (i, &r) in these.iter().enumerate() {
                scores[r] = Some(z[i]);
            }
            if z[idx] < self.limit {
                break;
            }
            chunk_noisy.push(these.remove(idx));
        }
        Ok(ChunkNoisy { scores, noisy: chunk_noisy })
    }
}

/// MNE's chunks: starts `arange(0, n_times - step + 1, step)`, each `step` long, the last one
/// running to the end of the recording; none when the recording is shorter than `step`.
fn chunk_bounds(n_times: usize, step: usize) -> Vec<(usize, usize)> {
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    let mut s = 0;
    while s + step <= n_times {
        bounds.push((s, s + step));
        s += step;
    }
    if let Some(last) = bounds.last_mut() {
        last.1 = n_times;
    }
    bounds
}

/// Rows `picks` over samples [start, stop), low-passed with `kernel` as MNE filters the whole
/// recording: the chunk is read with `len(kernel)` samples of margin on each side (clipped at
/// the recording's edges, where the filter's own reflect-limited padding is then the same as
/// for the whole recording), filtered, and the margin dropped.
fn read_filtered(reader: &dyn RawReader, picks: &[usize], start: usize, stop: usize, kernel: Option<&[f64]>) -> Result<DMatrix<f64>> {
    let n_total = reader.info().n_samples;
    let margin = kernel.map_or(0, |h| h.len());
    let lo = start.saturating_sub(margin);
    let hi = (stop + margin).min(n_total);
    let len = hi - lo;
    let mut raw = vec![0.0; picks.len() * len];
    reader.read_into_f64(picks, lo, hi, &mut raw)?;
    let n = stop - start;
    let ola = kernel.map(|h| OverlapAdd::new(h, len));
    let mut rows = Vec::with_capacity(picks.len() * n);
    for row in raw.chunks_exact(len) {
        let y = match &ola {
            Some(o) => o.apply(row),
            None => row.to_vec(),
        };
        rows.extend_from_slice(&y[start - lo..start - lo + n]);
    }
    // Row-major rows → the column-major matrix in one transpose.
    Ok(DMatrix::from_row_slice(picks.len(), n, &rows))
}

/// `row_slice` for a column-major nalgebra matrix: the row copied out.
trait RowSlice {
    fn row_slice(&self, r: usize) -> Vec<f64>;
}

impl RowSlice for DMatrix<f64> {
    fn row_slice(&self, r: usize) -> Vec<f64> {
        self.row(r).iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_as_mne() {
        // 1201 samples in 0.5 s chunks at 1200 Hz: [0, 600), [600, 1201).
        assert_eq!(chunk_bounds(1201, 600), vec![(0, 600), (600, 1201)]);
        assert_eq!(chunk_bounds(1200, 600), vec![(0, 600), (600, 1200)]);
        assert_eq!(chunk_bounds(599, 600), vec![]);
        assert_eq!(chunk_bounds(1799, 600), vec![(0, 600), (600, 1799)]);
    }

    #[test]
    fn std_is_numpy_population_std() {
        assert!((std_pop(&[1.0, 2.0, 3.0, 4.0]) - 1.118033988749895).abs() < 1e-15);
        assert_eq!(std_pop(&[0.0; 36]), 0.0);
    }
}
