//! `bf_eval`: the numbers, baselines and report behind `bf-eval`.
//!
//! Pure Rust (no libtorch) so that the evaluation maths builds and tests in seconds and can be
//! checked independently of the model:
//! - [`metrics`]: per-channel MSE, Pearson r and R² (and summaries by sensor type);
//! - [`ridge`]: the lagged ridge-regression baseline EEG → MEG;
//! - [`bands`]: Pearson r per frequency band (delta … gamma);
//! - [`baselines`]: the channel-mean predictor;
//! - [`report`]: `report.md` with PNG plots and `metrics.json`, written atomically;
//! - `evaluate` (feature `model`, libtorch through `bf_model`): the driver that runs a
//!   checkpoint on held-out shards and feeds the modules above (`bf-eval`).

pub mod bands;
pub mod baselines;
#[cfg(feature = "model")]
pub mod evaluate;
pub mod metrics;
pub mod report;
pub mod ridge;

pub use bands::{band_pearson_r, band_rows, default_bands, Band, BandRow};
pub use baselines::{channel_means, predict_channel_mean};
pub use metrics::{channel_metrics, sensor_type, ChannelMetrics, GroupSummary, MetricsSummary};
pub use report::{
    read_training_log, write_metrics_json, write_report, ExampleTrace, MetricsJson, MetricsRow,
    Report, TrainingLog,
};
pub use ridge::{default_alphas, fit_ridge_lagged, symmetric_lags, RidgeFit};

use std::path::PathBuf;

/// Everything that can go wrong in this crate; each variant says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arrays that must agree in shape do not.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    Shape { what: String, expected: Vec<usize>, got: Vec<usize> },
    /// An input that must hold data is empty (no windows, no samples, no lags, ...).
    #[error("empty input: {0}")]
    Empty(String),
    /// A parameter is out of its valid range (non-positive alpha, lag as long as a window, ...).
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// A numerical step failed (non-finite moments, failed eigendecomposition).
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A JSON line of a training log could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    /// JSON serialization failed.
    #[error("{path}: JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Error for two shapes that must be equal.
pub(crate) fn shape_error(what: &str, expected: &[usize], got: &[usize]) -> Error {
    Error::Shape { what: what.to_string(), expected: expected.to_vec(), got: got.to_vec() }
}
