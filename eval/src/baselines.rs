//! The channel-mean baseline: every MEG channel predicted by its training mean.
//!
//! It is the floor every real predictor must beat: its R² on the test set is ≤ 0 up to the
//! shift between training and test means, and its Pearson r is undefined (NaN: a constant
//! prediction has no correlation). Keeping it in the table makes that floor explicit.

use crate::{shape_error, Error, Result};
use ndarray::{Array1, Array3, ArrayView1, ArrayView3, Axis};

/// Per-channel mean of `train` (axes window, channel, time) over all windows and samples,
/// accumulated in f64 so that millions of f32 samples do not lose precision.
pub fn channel_means(train: ArrayView3<f32>) -> Result<Array1<f64>> {
    let (n_windows, n_channels, n_times) = train.dim();
    if n_windows * n_times == 0 {
        return Err(Error::Empty(format!("no training sample for channel means: shape {:?}", train.shape())));
    }
    let n = (n_windows * n_times) as f64;
    Ok(Array1::from_shape_fn(n_channels, |c| {
        train.index_axis(Axis(1), c).iter().map(|&v| v as f64).sum::<f64>() / n
    }))
}

/// Prediction of the channel-mean baseline with the shape `(n_windows, n_channels, n_times)`.
pub fn predict_channel_mean(means: ArrayView1<f64>, shape: (usize, usize, usize)) -> Result<Array3<f32>> {
    if means.len() != shape.1 {
        return Err(shape_error("channel means vs channels", &[shape.1], &[means.len()]));
    }
    Ok(Array3::from_shape_fn(shape, |(_, c, _)| means[c] as f32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::channel_metrics;

    #[test]
    fn predicts_training_mean_and_has_nan_r() {
        let train = Array3::from_shape_fn((2, 2, 3), |(w, c, t)| (c * 10 + w + t) as f32);
        let means = channel_means(train.view()).unwrap();
        // Channel 0: values w + t over w∈{0,1}, t∈{0,1,2} → mean 1.5; channel 1: 11.5.
        assert_eq!(means.to_vec(), vec![1.5, 11.5]);
        let pred = predict_channel_mean(means.view(), (4, 2, 5)).unwrap();
        assert_eq!(pred.dim(), (4, 2, 5));
        assert!(pred.index_axis(Axis(1), 1).iter().all(|&v| v == 11.5));
        let test = Array3::from_shape_fn((4, 2, 5), |(w, c, t)| (c * 10 + w * t) as f32);
        let m = channel_metrics(test.view(), pred.view()).unwrap();
        assert!(m.pearson_r.iter().all(|r| r.is_nan()));
        assert!(m.r2.iter().all(|&r| r <= 0.0));
    }

    #[test]
    fn wrong_channel_count_is_an_error() {
        let means = Array1::from_vec(vec![1.0, 2.0]);
        assert!(predict_channel_mean(means.view(), (1, 3, 1)).is_err());
        let empty = Array3::<f32>::zeros((0, 2, 3));
        assert!(channel_means(empty.view()).is_err());
    }
}
