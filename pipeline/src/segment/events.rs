//! Events: from stim channels as `mne.find_events`, or from BIDS `events.tsv`.

use std::collections::BTreeMap;

use ndarray::ArrayView2;

use crate::bids::EventRow;
use crate::error::{Error, Result};
use crate::recording::{ChannelKind, RecordingInfo};
use super::*;

/// MNE's default stim channel choice (`_get_stim_channel`, without the `MNE_STIM_CHANNEL`
/// config): `STI101` if present, else `STI 014`, else every stim channel that is not bad.
pub fn default_stim_channels(info: &RecordingInfo) -> Vec<usize> {
    for name in ["STI101", "STI 014"] {
        if let Some(i) = info.channel_index(name) {
            return vec![i];
        }
    }
    info.channels
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == ChannelKind::Stim && !info.bads.contains(&c.name))
        .map(|(i, _)| i)
        .collect()
}

/// Events of one stim channel as `mne.find_events` finds them with its defaults
/// (`output='onset'`, `consecutive='increasing'`, `min_duration=0`, `shortest_event=2`,
/// no mask, `initial_event=False`): values truncated to integers (absolute value when any is
/// negative); every change of value is a step; an onset is a step up (`post > pre`), an
/// offset a step to 0 or any step up from a non-zero value; the end is padded with a step to 0;
/// orphaned first offset / last onset are removed; the event is the onset (sample of the new
/// value, id = the new value). Two events closer than `shortest_event` samples are an error,
/// as in MNE.
pub fn find_stim_events(x: &[f64], shortest_event: i64) -> std::result::Result<Vec<Event>, String> {
    let mut d: Vec<i64> = x.iter().map(|&v| v as i64).collect();
    if d.iter().any(|&v| v < 0) {
        tracing::warn!("trigger channel contains negative values, using absolute value");
        d.iter_mut().for_each(|v| *v = v.abs());
    }
    // (sample, pre, post)
    let mut steps: Vec<(i64, i64, i64)> = (0..d.len().saturating_sub(1)).filter(|&i| d[i + 1] != d[i]).map(|i| ((i + 1) as i64, d[i], d[i + 1])).collect();
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let last = steps[steps.len() - 1].2;
    if last != 0 {
        steps.push((d.len() as i64, last, 0));
    }
    let onsets: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].2 > steps[i].1).collect();
    let mut offsets: Vec<usize> = (0..steps.len()).filter(|&i| (steps[i].2 > steps[i].1 || steps[i].2 == 0) && steps[i].1 > 0).collect();
    let mut onsets = onsets;
    if onsets.is_empty() || offsets.is_empty() {
        return Ok(Vec::new());
    }
    if onsets[0] > offsets[0] {
        offsets.remove(0);
    }
    if offsets.is_empty() || onsets[onsets.len() - 1] > offsets[offsets.len() - 1] {
        onsets.pop();
    }
    let events: Vec<Event> = onsets.iter().map(|&i| Event { sample: steps[i].0, id: steps[i].2 }).collect();
    let n_short = events.windows(2).filter(|w| w[1].sample - w[0].sample < shortest_event).count();
    if n_short > 0 {
        return Err(format!("You have {n_short} events shorter than the shortest_event ({shortest_event} samples), as MNE's find_events refuses"));
    }
    Ok(events)
}

/// `mne.find_events(raw)` with its defaults on `stim` channels (default:
/// [`default_stim_channels`]): events of each channel, duplicates removed, sorted by sample.
pub fn find_events(info: &RecordingInfo, data: ArrayView2<f64>, stim: Option<&[usize]>) -> Result<Vec<Event>> {
    let chosen;
    let stim = match stim {
        Some(s) => s,
        None => {
            chosen = default_stim_channels(info);
            &chosen
        }
    };
    if stim.is_empty() {
        return Err(Error::request(&info.path, "no stim channel found to extract events from (give one, or use a BIDS events.tsv)"));
    }
    let mut all = Vec::new();
    for &c in stim {
        let row = data.row(c).to_vec();
        let ev = find_stim_events(&row, 2).map_err(|m| Error::request(&info.path, format!("stim channel {}: {m}", info.channels[c].name)))?;
        all.extend(ev);
    }
    all.sort_by_key(|e| (e.sample, e.id));
    all.dedup();
    Ok(all)
}

/// Events from BIDS `events.tsv` rows: sample = `round(onset·sfreq)` (relative to sample 0,
/// half to even as MNE's `time_as_index`); id = the `value` column when every row has an
/// integer there, otherwise the 1-based rank of `trial_type` among the sorted distinct
/// trial types (as `mne.events_from_annotations` numbers descriptions). Returns the events
/// and the name → id mapping (empty when ids come from `value`).
pub fn events_from_bids(rows: &[EventRow], sfreq: f64) -> std::result::Result<(Vec<Event>, BTreeMap<String, i64>), String> {
    let values: Option<Vec<i64>> = rows.iter().map(|r| r.value.as_deref().and_then(parse_int)).collect();
    let mut mapping = BTreeMap::new();
    let ids: Vec<i64> = match values {
        Some(v) if !rows.is_empty() => v,
        _ => {
            let types: Option<Vec<&str>> = rows.iter().map(|r| r.trial_type.as_deref().filter(|t| *t != "n/a")).collect();
            let types = types.ok_or("events.tsv: every row needs an integer `value` or a `trial_type`")?;
            let mut names: Vec<&str> = types.clone();
            names.sort_unstable();
            names.dedup();
            for (i, n) in names.iter().enumerate() {
                mapping.insert(n.to_string(), i as i64 + 1);
            }
            types.iter().map(|t| mapping[*t]).collect()
        }
    };
    let events = rows.iter().zip(ids).map(|(r, id)| Event { sample: py_round(r.onset * sfreq), id }).collect();
    Ok((events, mapping))
}

pub(super) fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|v| v.fract() == 0.0 && v.is_finite()).map(|v| v as i64))
}

// ---------------------------------------------------------------------------------------------
// Flat and clipped segments (the screen itself is crate::clean::screen)
