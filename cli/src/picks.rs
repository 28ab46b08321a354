//! MNE-style channel selection: names and channel types, in file order.

use anyhow::{bail, Result};
use bf_pipeline::{ChannelKind, RecordingInfo};

/// Indices of the channels that `picks` selects, in file order. Each item is a channel name
/// or an MNE type (`eeg`, `mag`, `grad`, `stim`, ...); `meg` means mag + grad, `data` means
/// MEG + EEG. An empty list selects every channel. An item matching nothing is an error.
pub fn resolve(info: &RecordingInfo, picks: &[String]) -> Result<Vec<usize>> {
    if picks.is_empty() {
        return Ok((0..info.n_channels()).collect());
    }
    let mut keep = vec![false; info.n_channels()];
    for item in picks {
        let item = item.trim();
        let mut matched = false;
        for (i, ch) in info.channels.iter().enumerate() {
            let hit = ch.name == item
                || ch.kind.as_str() == item
                || (item == "meg" && ch.kind.is_meg())
                || (item == "data" && (ch.kind.is_meg() || ch.kind == ChannelKind::Eeg));
            if hit {
                keep[i] = true;
                matched = true;
            }
        }
        if !matched {
            bail!("{}: --picks {item:?} matches no channel name or type", info.path.display());
        }
    }
    Ok(keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect())
}

/// MNE's `raw.crop(tmin, tmax)` sample range: `round(tmin*sfreq) ..= round(tmax*sfreq)`.
pub fn sample_range(info: &RecordingInfo, tmin: Option<f64>, tmax: Option<f64>) -> Result<(usize, usize)> {
    let last = info.n_samples.saturating_sub(1) as f64 / info.sfreq;
    let tmin = tmin.unwrap_or(0.0);
    let tmax = tmax.unwrap_or(last);
    if !(tmin >= 0.0 && tmax >= tmin && tmax <= last + 0.5 / info.sfreq) {
        bail!(
            "{}: --tmin {tmin} / --tmax {tmax} must satisfy 0 <= tmin <= tmax <= {last:.6} s",
            info.path.display()
        );
    }
    let start = (tmin * info.sfreq).round() as usize;
    let stop = ((tmax * info.sfreq).round() as usize + 1).min(info.n_samples);
    Ok((start, stop))
}
