//! Fixed-length training windows, as MNE's `make_fixed_length_epochs` (section 1 of the
//! [module docs](super)).

use crate::error::{Error, Result};
use crate::recording::RecordingInfo;
use super::*;

/// Window starts (relative to sample 0) as MNE's `make_fixed_length_events(raw,
/// duration=window/sfreq, overlap=(window-stride)/sfreq)` places them (module doc).
pub fn fixed_window_starts(n_samples: usize, first_samp: i64, sfreq: f64, window: usize, stride: usize) -> std::result::Result<Vec<i64>, String> {
    check_window(window, stride)?;
    let duration = window as f64 / sfreq;
    let overlap = (window - stride) as f64 / sfreq;
    if !(0.0 <= overlap && overlap < duration) {
        return Err(format!("overlap must be >= 0 and < duration ({duration}), got {overlap}"));
    }
    let start = first_samp;
    let stop = first_samp + n_samples as i64 - py_round(sfreq * duration);
    let step = sfreq * (duration - overlap);
    Ok(np_arange_trunc(start, stop + 1, step).into_iter().map(|t| t - first_samp).collect())
}

pub(super) fn check_window(window: usize, stride: usize) -> std::result::Result<(), String> {
    if window == 0 {
        return Err("window must be at least 1 sample".into());
    }
    if stride == 0 || stride > window {
        return Err(format!("stride must be between 1 and the window ({window}) samples, got {stride} (MNE's overlap must be >= 0 and < duration)"));
    }
    Ok(())
}

/// MNE's `make_fixed_length_epochs(raw, duration=window/sfreq, overlap=(window-stride)/sfreq,
/// reject_by_annotation=True)`: every candidate window, with the `BAD*` annotation rejection.
pub fn fixed_windows(info: &RecordingInfo, window: usize, stride: usize) -> Result<SegmentPlan> {
    let bad = |m: String| Error::request(&info.path, m);
    let starts = fixed_window_starts(info.n_samples, info.first_samp, info.sfreq, window, stride).map_err(bad)?;
    let duration = window as f64 / info.sfreq;
    let events: Vec<Event> = starts.into_iter().map(|sample| Event { sample, id: 1 }).collect();
    let params = EpochParams { tmin: 0.0, tmax: duration - 1.0 / info.sfreq, baseline: None, event_ids: None };
    epochs(info, &events, &params)
}

// ---------------------------------------------------------------------------------------------
// Epochs
