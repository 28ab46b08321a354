//! Event-locked epochs and their baseline correction, as MNE's `Epochs` (section 2 of the
//! [module docs](super)).

use ndarray::{s, ArrayViewMut2};

use crate::error::{Error, Result};
use crate::recording::{ChannelKind, RecordingInfo};
use super::*;

/// MNE's baseline index range `imin..imax` within an epoch of `times` (`_check_baseline` +
/// `rescale`).
pub fn baseline_range(times: &[f64], sfreq: f64, baseline: (Option<f64>, Option<f64>)) -> std::result::Result<(usize, usize), String> {
    let (tmin, tmax) = (times[0], times[times.len() - 1]);
    let tstep = 1.0 / sfreq;
    if baseline == (None, Some(0.0)) && tmin == 0.0 {
        return Err("Baseline interval is only one sample. Use `baseline=(0, 0)` if this is desired.".into());
    }
    let bmin = baseline.0.unwrap_or(tmin);
    let bmax = baseline.1.unwrap_or(tmax);
    if bmin > bmax {
        return Err(format!("Baseline min ({bmin}) must be less than baseline max ({bmax})"));
    }
    if bmin < tmin - tstep || bmax > tmax + tstep {
        return Err(format!("Baseline interval [{bmin}, {bmax}] s is outside of epochs data [{tmin}, {tmax}] s"));
    }
    let imin = times.iter().position(|&t| t >= bmin).ok_or_else(|| format!("bmin is too large ({bmin}), it exceeds the largest time value"))?;
    let imax = times.iter().rposition(|&t| t <= bmax).ok_or_else(|| format!("bmax is too small ({bmax}), it is smaller than the smallest time value"))? + 1;
    if imin >= imax {
        return Err(format!("Bad rescaling slice ({imin}:{imax}) from time values {bmin}, {bmax}"));
    }
    Ok((imin, imax))
}

/// MNE's `Epochs(raw, events, event_id, tmin, tmax, baseline, reject_by_annotation=True)`:
/// every candidate epoch with MNE's drop reasons (module doc).
pub fn epochs(info: &RecordingInfo, events: &[Event], params: &EpochParams) -> Result<SegmentPlan> {
    let bad = |m: String| Error::request(&info.path, m);
    let sfreq = info.sfreq;
    if !(sfreq > 0.0 && sfreq.is_finite()) {
        return Err(bad(format!("invalid sampling rate {sfreq}")));
    }
    if !(params.tmin.is_finite() && params.tmax.is_finite()) || params.tmin > params.tmax {
        return Err(bad(format!("tmin ({}) must be less than or equal to tmax ({})", params.tmin, params.tmax)));
    }
    let start_idx = py_round(params.tmin * sfreq);
    let stop_idx = py_round(params.tmax * sfreq);
    let times: Vec<f64> = (start_idx..=stop_idx).map(|i| i as f64 / sfreq).collect();
    let n_times = times.len();
    let baseline = match params.baseline {
        Some(b) => Some(baseline_range(&times, sfreq, b).map_err(bad)?),
        None => None,
    };

    let selected: Vec<Event> = match &params.event_ids {
        None => events.to_vec(),
        Some(ids) => {
            for id in ids {
                if !events.iter().any(|e| e.id == *id) {
                    tracing::warn!("{}: no event with id {id}", info.path.display());
                }
            }
            events.iter().copied().filter(|e| ids.contains(&e.id)).collect()
        }
    };
    let mut samples: Vec<i64> = selected.iter().map(|e| e.sample).collect();
    samples.sort_unstable();
    if let Some(w) = samples.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("two selected events share sample {} (MNE's event_repeated='error'); filter the event ids", w[0])));
    }

    let annotations = sorted_annotations(&info.annotations);
    let n = info.n_samples as i64;
    let t0 = times[0];
    let segments = selected
        .iter()
        .map(|e| {
            let abs = e.sample + info.first_samp;
            let start = py_round(abs as f64 + t0 * sfreq) - info.first_samp;
            let stop = start + n_times as i64;
            let drop = if start < 0 {
                Some(DropReason::NoData)
            } else if let Some(a) = bad_annotation_overlap(&annotations, sfreq, start, stop) {
                Some(DropReason::Annotation { description: a.description.clone() })
            } else if stop > n {
                Some(DropReason::TooShort)
            } else {
                None
            };
            Segment { event: e.sample, id: e.id, start, onset: start as f64 / sfreq, drop }
        })
        .collect();
    Ok(SegmentPlan { sfreq, n_times, start_offset: start_idx, times, baseline, segments, n_ignored: events.len() - selected.len() })
}

// ---------------------------------------------------------------------------------------------
// Events

/// Whether MNE's epoch baseline correction touches a channel of this kind (`_detrend_picks`:
/// data channels with reference MEG and the auxiliary EOG, ECG, EMG, bio).
pub fn is_baseline_kind(kind: ChannelKind) -> bool {
    use ChannelKind::*;
    matches!(kind, Mag | Grad | RefMeg | Eeg | Seeg | Ecog | Dbs | Eog | Ecg | Emg | Bio)
}

/// Subtracts from each row `r` with `rows[r]` its mean over columns `range.0..range.1`
/// (MNE's `rescale(mode='mean')`, NumPy's summation order).
pub fn apply_baseline(mut epoch: ArrayViewMut2<f64>, range: (usize, usize), rows: &[bool]) {
    for (mut row, &on) in epoch.outer_iter_mut().zip(rows) {
        if !on {
            continue;
        }
        let mean = {
            let b = row.slice(s![range.0..range.1]);
            match b.as_slice() {
                Some(sl) => np_mean(sl),
                None => np_mean(&b.to_vec()),
            }
        };
        row.mapv_inplace(|v| v - mean);
    }
}
