//! Cutting the kept segments out of the data (section 4 of the [module docs](super)).

use ndarray::{s, Array2, Array3, ArrayView2, Axis};

use crate::recording::ChannelInfo;
use super::*;

/// Channels `picks` × samples `start..start+len` of `data`, rounded to f32.
pub fn extract(data: ArrayView2<f64>, start: usize, len: usize, picks: &[usize]) -> Array2<f32> {
    let mut out = Array2::zeros((picks.len(), len));
    for (mut o, &c) in out.outer_iter_mut().zip(picks) {
        o.assign(&data.slice(s![c, start..start + len]).mapv(|v| v as f32));
    }
    out
}

/// Channels `picks` × samples `start..start+len` of `data`, in f64.
pub fn extract_f64(data: ArrayView2<f64>, start: usize, len: usize, picks: &[usize]) -> Array2<f64> {
    let mut out = Array2::zeros((picks.len(), len));
    for (mut o, &c) in out.outer_iter_mut().zip(picks) {
        o.assign(&data.slice(s![c, start..start + len]));
    }
    out
}

/// The kept segments of `plan` as one `n_kept × picks × n_times` array (f64), baseline
/// corrected on the picked channels MNE corrects: `epochs.get_data(picks)`.
pub fn segment_data(plan: &SegmentPlan, data: ArrayView2<f64>, channels: &[ChannelInfo], picks: &[usize]) -> Array3<f64> {
    let kept: Vec<&Segment> = plan.kept().collect();
    let mut out = Array3::zeros((kept.len(), picks.len(), plan.n_times));
    let rows: Vec<bool> = picks.iter().map(|&c| is_baseline_kind(channels[c].kind)).collect();
    for (mut o, seg) in out.axis_iter_mut(Axis(0)).zip(kept) {
        let start = seg.start as usize;
        for (mut orow, &c) in o.outer_iter_mut().zip(picks) {
            orow.assign(&data.slice(s![c, start..start + plan.n_times]));
        }
        if let Some(range) = plan.baseline {
            apply_baseline(o.view_mut(), range, &rows);
        }
    }
    out
}
