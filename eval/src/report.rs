//! `report.md`, its PNG plots and `metrics.json`: what a reader of an evaluation sees.
//!
//! The report must let someone judge a checkpoint without rerunning anything: what was
//! evaluated, one table with every predictor on the same windows (the model, the
//! shuffled-EEG control, the ridge and channel-mean baselines), the same numbers in words,
//! and three plots (training curves, example traces, per-channel r by sensor type).
//!
//! Every file is written atomically (temporary file in the same folder, then rename), so an
//! interrupted `bf-eval` never leaves a half-written report that looks complete.
//!
//! Plots use `plotters`' bitmap backend with its pure-Rust `ab_glyph` text path and the
//! DejaVu Sans font bundled by the `dejavu` crate (free licence), so text renders the same on
//! every machine without fontconfig or system fonts.

use crate::bands::{Band, BandRow};
use crate::metrics::{nan_as_null, nan_skipping_mean, sensor_type, ChannelMetrics, MetricsSummary};
use crate::{Error, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Once;

/// Plot file names, linked from `report.md` by these relative paths.
pub const TRAINING_CURVES_PNG: &str = "training_curves.png";
pub const EXAMPLES_PNG: &str = "examples.png";
pub const PER_CHANNEL_R_PNG: &str = "per_channel_r.png";

/// Everything `report.md` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// First heading, e.g. "Brainformer evaluation".
    pub title: String,
    /// What was evaluated, as (label, value) lines: checkpoint, shards, split, windows...
    pub evaluated: Vec<(String, String)>,
    /// The metrics table, one row per predictor, in display order.
    pub rows: Vec<MetricsRow>,
    /// Training curves (from [`read_training_log`]); `None` omits the plot.
    pub training: Option<TrainingLog>,
    /// A few example channels for `examples.png`.
    pub examples: Vec<ExampleTrace>,
    /// MEG channel names, in the order of the per-channel vectors below.
    pub channel_names: Vec<String>,
    /// Per-channel Pearson r of the model (teacher-forced or free-running, as the caller
    /// decides), of the shuffled-EEG control, and of the ridge baseline (may be empty).
    #[serde(with = "nan_as_null")]
    pub model_r: Vec<f64>,
    #[serde(with = "nan_as_null")]
    pub shuffled_r: Vec<f64>,
    #[serde(with = "nan_as_null")]
    pub ridge_r: Vec<f64>,
    /// Per-channel r of the noise ceiling (a simulation's noise-free MEG against the
    /// recording); empty when there is none, and the column is then left out.
    #[serde(with = "nan_as_null", default)]
    pub ceiling_r: Vec<f64>,
    /// Frequency bands of `band_rows` (empty: no band table).
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Mean r per band, per predictor and sensor type ([`crate::bands`]).
    #[serde(default)]
    pub band_rows: Vec<BandRow>,
    /// Free text appended under "Notes" (e.g. ridge α, caveats).
    pub notes: Vec<String>,
}

/// One predictor's line of the metrics table; `None` prints as "–".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub name: String,
    pub pearson_r: Option<f64>,
    pub r2: Option<f64>,
    pub mse: Option<f64>,
    pub token_accuracy: Option<f64>,
    pub cross_entropy: Option<f64>,
    pub perplexity: Option<f64>,
}

impl MetricsRow {
    /// Row with the all-channel means of a summary (NaN means become `None`).
    pub fn from_summary(name: &str, s: &MetricsSummary) -> Self {
        let finite = |v: f64| v.is_finite().then_some(v);
        MetricsRow {
            name: name.to_string(),
            pearson_r: finite(s.all.pearson_r.mean),
            r2: finite(s.all.r2.mean),
            mse: finite(s.all.mse.mean),
            ..Default::default()
        }
    }
}

/// Loss curves of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    /// (step, training loss)
    pub train: Vec<(u64, f64)>,
    /// (step, validation loss)
    pub val: Vec<(u64, f64)>,
    /// (step, learning rate)
    pub lr: Vec<(u64, f64)>,
}

/// One channel's traces for `examples.png` (same length, physical units).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExampleTrace {
    pub channel: String,
    /// Sampling frequency in Hz, for a time axis in seconds.
    pub sfreq: f64,
    pub truth: Vec<f32>,
    pub predicted: Vec<f32>,
    /// Ridge prediction, when available.
    pub ridge: Option<Vec<f32>>,
}

/// `metrics.json`: headline numbers as top-level keys, per-channel arrays below.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsJson {
    /// Mean per-channel Pearson r of the model (NaN-skipping; `null` if undefined).
    pub pearson_r: Option<f64>,
    /// The same for the model fed EEG from other windows (pairing broken).
    pub pearson_r_shuffled_eeg: Option<f64>,
    /// The same for the lagged ridge baseline.
    pub ridge_pearson_r: Option<f64>,
    /// Chosen relative ridge α.
    pub ridge_alpha: Option<f64>,
    /// Mean per-channel Pearson r of the simulation's noise-free MEG against the recorded
    /// MEG (the noise ceiling; `null` when the dataset has no noise-free recordings).
    #[serde(default)]
    pub noise_ceiling_pearson_r: Option<f64>,
    pub channel_names: Vec<String>,
    /// Per-predictor per-channel metrics, in display order.
    pub per_channel: Vec<NamedMetrics>,
    /// The metrics table rows.
    pub rows: Vec<MetricsRow>,
    /// Frequency bands of `by_band`.
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Mean Pearson r per band, per predictor and sensor type (band-passed truth vs
    /// band-passed prediction, [`crate::bands`]).
    #[serde(default)]
    pub by_band: Vec<BandRow>,
    /// Regression evaluated with `--hop`: model chunks started every `hop` samples, each sample
    /// from the chunk it is most central in (`null`: back-to-back chunks, as in training).
    #[serde(default)]
    pub hop: Option<usize>,
}

/// Per-channel metrics of one named predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedMetrics {
    pub name: String,
    pub metrics: ChannelMetrics,
}

/// Mean of per-channel values as an `Option` (None when no channel has a defined value).
pub fn mean_or_none(values: &[f64]) -> Option<f64> {
    let m = nan_skipping_mean(values.iter().copied()).mean;
    m.is_finite().then_some(m)
}

/// Writes `metrics.json` atomically (pretty-printed, NaN as `null`).
pub fn write_metrics_json(path: &Path, metrics: &MetricsJson) -> Result<()> {
    let text = serde_json::to_string_pretty(metrics).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
    write_atomic(path, text.as_bytes())
}

/// One line of `metrics.jsonl`; unknown fields are ignored.
#[derive(Deserialize)]
struct LogLine {
    step: u64,
    loss: Option<f64>,
    val_loss: Option<f64>,
    lr: Option<f64>,
}

/// Reads a training log (JSON Lines, one object per line with `step`, `loss` and optionally
/// `val_loss`, `lr`; lines that carry only `val_loss` are accepted too, as evaluation lines
/// often do). Blank lines are skipped; a malformed line is an error naming file and line.
pub fn read_training_log(path: &Path) -> Result<TrainingLog> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut log = TrainingLog::default();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Parse { path: path.to_path_buf(), line: i + 1, message };
        let rec: LogLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if rec.loss.is_none() && rec.val_loss.is_none() {
            return Err(bad("neither `loss` nor `val_loss`".into()));
        }
        if let Some(v) = rec.loss {
            log.train.push((rec.step, v));
        }
        if let Some(v) = rec.val_loss {
            log.val.push((rec.step, v));
        }
        if let Some(v) = rec.lr {
            log.lr.push((rec.step, v));
        }
    }
    Ok(log)
}

/// Writes `report.md` and its PNGs into `out_dir` (created if missing), each atomically.
pub fn write_report(out_dir: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io { path: out_dir.to_path_buf(), source })?;
    register_font();
    let mut plots = Vec::new();
    if let Some(log) = report.training.as_ref().filter(|l| !l.train.is_empty() || !l.val.is_empty()) {
        plot_atomic(&out_dir.join(TRAINING_CURVES_PNG), |p| draw_training_curves(p, log))?;
        plots.push(TRAINING_CURVES_PNG);
    }
    if !report.examples.is_empty() {
        plot_atomic(&out_dir.join(EXAMPLES_PNG), |p| draw_examples(p, &report.examples))?;
        plots.push(EXAMPLES_PNG);
    }
    if !report.model_r.is_empty() {
        plot_atomic(&out_dir.join(PER_CHANNEL_R_PNG), |p| draw_per_channel_r(p, report))?;
        plots.push(PER_CHANNEL_R_PNG);
    }
    write_atomic(&out_dir.join("report.md"), markdown(report, &plots).as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced, and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    bf_atomic::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Draws a PNG with `draw` into a temporary file (keeping the `.png` extension: plotters
/// picks the image format from it), then renames it into place.
fn plot_atomic<F>(path: &Path, draw: F) -> Result<()>
where
    F: FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
{
    let tmp = bf_atomic::temp_path_keeping_extension(path);
    let plot_error = |e: Box<dyn std::error::Error>| Error::Plot { path: path.to_path_buf(), message: e.to_string() };
    bf_atomic::write_via(path, &tmp, |t| draw(t).map_err(plot_error), |at, source| Error::Io { path: at.to_path_buf(), source })
}

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" once per process.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in, so failure would be a broken build, not a user error.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("bundled DejaVu Sans could not be registered; plot text may be missing");
        }
    });
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Loss vs step, training and validation.
fn draw_training_curves(path: &Path, log: &TrainingLog) -> DrawResult {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let finite = |v: &[(u64, f64)]| v.iter().filter(|p| p.1.is_finite()).map(|&(s, l)| (s as f64, l)).collect::<Vec<_>>();
    let (train, val) = (finite(&log.train), finite(&log.val));
    let all: Vec<&(f64, f64)> = train.iter().chain(&val).collect();
    let (x0, x1) = bounds(all.iter().map(|p| p.0));
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption("Training curves", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw()?;
    chart.draw_series(LineSeries::new(train, &BLUE))?.label("train").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.clone(), &RED))?
        .label("validation")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    chart.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Stacked panels of true vs predicted (and ridge) traces, time in seconds.
fn draw_examples(path: &Path, examples: &[ExampleTrace]) -> DrawResult {
    let height = 60 + 220 * examples.len() as u32;
    let root = BitMapBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("True vs predicted MEG", ("sans-serif", 24))?;
    for (ex, area) in examples.iter().zip(root.split_evenly((examples.len(), 1))) {
        let sf = if ex.sfreq > 0.0 { ex.sfreq } else { 1.0 };
        let series = |v: &[f32]| v.iter().enumerate().map(|(i, &y)| (i as f64 / sf, y as f64)).filter(|p| p.1.is_finite()).collect::<Vec<_>>();
        let truth = series(&ex.truth);
        let pred = series(&ex.predicted);
        let ridge = ex.ridge.as_deref().map(series).unwrap_or_default();
        let (x0, x1) = bounds(truth.iter().chain(&pred).map(|p| p.0));
        let (y0, y1) = bounds(truth.iter().chain(&pred).chain(&ridge).map(|p| p.1));
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("{} ({})", ex.channel, sensor_type(&ex.channel)), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc("time (s)").y_label_formatter(&|v| format!("{v:.2e}")).draw()?;
        chart.draw_series(LineSeries::new(truth, &BLACK))?.label("true").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        chart.draw_series(LineSeries::new(pred, &RED))?.label("model").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        if !ridge.is_empty() {
            chart.draw_series(LineSeries::new(ridge, &BLUE))?.label("ridge").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

/// Per-channel r as strips: one column per (sensor type, predictor), a bar at the median.
fn draw_per_channel_r(path: &Path, report: &Report) -> DrawResult {
    let predictors: Vec<(&str, &[f64], RGBColor)> = [
        ("model", report.model_r.as_slice(), RED),
        ("shuffled EEG", report.shuffled_r.as_slice(), GREEN),
        ("ridge", report.ridge_r.as_slice(), BLUE),
    ]
    .into_iter()
    .filter(|p| !p.1.is_empty())
    .collect();
    let names = |c: usize| report.channel_names.get(c).map(String::as_str).unwrap_or("");
    let mut types: Vec<&str> = Vec::new();
    for c in 0..report.model_r.len() {
        let t = sensor_type(names(c));
        if !types.contains(&t) {
            types.push(t);
        }
    }
    // Column x = group·(k + 1) + predictor index; one empty column separates groups.
    let k = predictors.len();
    let n_cols = types.len() * (k + 1);
    let labels: Vec<String> = (0..n_cols)
        .map(|x| {
            let (g, j) = (x / (k + 1), x % (k + 1));
            if j < k { format!("{} {}", types[g], predictors[j].0) } else { String::new() }
        })
        .collect();
    let root = BitMapBackend::new(path, (200 + 110 * n_cols as u32, 550)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = predictors.iter().flat_map(|p| p.1.iter().copied()).filter(|v| v.is_finite());
    let (y0, y1) = bounds(all.chain([0.0]));
    let mut chart = ChartBuilder::on(&root)
        .caption("Per-channel Pearson r by sensor type", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n_cols as f64 - 0.5), y0..y1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n_cols)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
        })
        .y_desc("Pearson r")
        .draw()?;
    chart.draw_series(LineSeries::new([(-0.5, 0.0), (n_cols as f64 - 0.5, 0.0)], BLACK.mix(0.4)))?;
    for (g, t) in types.iter().enumerate() {
        for (j, (_, r, color)) in predictors.iter().enumerate() {
            let x = (g * (k + 1) + j) as f64;
            let vals: Vec<f64> = (0..r.len()).filter(|&c| sensor_type(names(c)) == *t && r[c].is_finite()).map(|c| r[c]).collect();
            // Deterministic jitter spreads overlapping points without randomness.
            chart.draw_series(vals.iter().enumerate().map(|(i, &v)| {
                let jitter = ((i * 37) % 21) as f64 / 21.0 * 0.5 - 0.25;
                Circle::new((x + jitter, v), 2, color.mix(0.6).filled())
            }))?;
            if let Some(m) = median(&vals) {
                chart.draw_series(LineSeries::new([(x - 0.35, m), (x + 0.35, m)], color.stroke_width(3)))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// Median of finite values, `None` if empty.
fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) })
}

/// Finite (min, max) with a margin; a degenerate range is widened so plotters can draw it.
fn bounds<I: Iterator<Item = f64>>(values: I) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 { 0.05 * span } else { lo.abs().max(1e-30) * 0.5 + f64::MIN_POSITIVE };
    (lo - pad, hi + pad)
}

/// Number with 3 significant-ish digits, or "–" for missing/undefined.
fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() && x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e4) => format!("{x:.3e}"),
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "–".to_string(),
    }
}

/// The Markdown text; `plots` are the PNGs actually written.
fn markdown(r: &Report, plots: &[&str]) -> String {
    let mut md = String::new();
    let title = if r.title.is_empty() { "Evaluation report" } else { &r.title };
    let _ = writeln!(md, "# {title}\n\n## What was evaluated\n");
    for (k, v) in &r.evaluated {
        let _ = writeln!(md, "- **{k}**: {v}");
    }
    let _ = writeln!(md, "\n## Results\n\n{}\n", summary_sentence(r));
    let _ = writeln!(md, "| predictor | Pearson r | R² | MSE | token accuracy | cross-entropy | perplexity |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for row in &r.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            fmt_opt(row.pearson_r),
            fmt_opt(row.r2),
            fmt_opt(row.mse),
            fmt_opt(row.token_accuracy),
            fmt_opt(row.cross_entropy),
            fmt_opt(row.perplexity)
        );
    }
    let _ = writeln!(
        md,
        "\nPearson r, R² and MSE are per MEG channel over all test windows and samples, then \
         averaged over channels (channels where a value is undefined, e.g. r of a constant \
         prediction, are skipped; \"–\" = not available). MSE is in physical units (T², T²/m²).\n"
    );
    let by_type = per_type_table(r);
    if !by_type.is_empty() {
        let _ = writeln!(md, "### Mean Pearson r by sensor type\n\n{by_type}");
    }
    let by_band = band_table(r);
    if !by_band.is_empty() {
        let _ = writeln!(
            md,
            "### Mean Pearson r by frequency band\n\nEach window band-passed (FFT bins of the band kept), r pooled per channel over \
             windows and samples, then averaged over the channels of a sensor type; \"–\" = no bin of the band in a window or no \
             power.\n\n{by_band}"
        );
    }
    let _ = writeln!(md, "## Plots\n");
    for (file, caption) in [
        (TRAINING_CURVES_PNG, "Training curves"),
        (EXAMPLES_PNG, "True vs predicted MEG"),
        (PER_CHANNEL_R_PNG, "Per-channel r by sensor type"),
    ] {
        if plots.contains(&file) {
            let _ = writeln!(md, "![{caption}]({file})\n");
        } else {
            let _ = writeln!(md, "- {caption}: no data given, no plot.\n");
        }
    }
    let _ = writeln!(md, "Plot text uses the bundled DejaVu Sans font.\n");
    if !r.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

/// "Model r 0.41 vs shuffled-EEG control 0.02 and ridge 0.30 (mean over channels)."
fn summary_sentence(r: &Report) -> String {
    let f = |v: &[f64]| fmt_opt(mean_or_none(v));
    let mut s = format!("Model r {} vs shuffled-EEG control {}", f(&r.model_r), f(&r.shuffled_r));
    if !r.ridge_r.is_empty() {
        let _ = write!(s, " and ridge baseline {}", f(&r.ridge_r));
    }
    if !r.ceiling_r.is_empty() {
        let _ = write!(s, ", noise ceiling {}", f(&r.ceiling_r));
    }
    s.push_str(" (mean per-channel Pearson r on the test windows).");
    if let (Some(m), Some(c)) = (mean_or_none(&r.model_r), mean_or_none(&r.shuffled_r)) {
        s.push(' ');
        s.push_str(eeg_use_verdict(m - c));
    }
    s
}

/// What the drop in mean r under shuffled EEG says, in words. The bands (0.1, 0.02) are a
/// reading aid, not a statistical test. A small drop under teacher forcing means r comes
/// from the MEG's own past (the previous sample of a smooth signal), not from the EEG.
fn eeg_use_verdict(drop: f64) -> &'static str {
    if drop >= 0.1 {
        "The model uses the EEG: breaking the EEG–MEG pairing lowers r clearly."
    } else if drop >= 0.02 {
        "The model uses the EEG only a little: breaking the pairing lowers r slightly, so most of r comes from elsewhere (under teacher forcing, the MEG's own past)."
    } else {
        "Breaking the EEG–MEG pairing does not lower r: the model does not use the EEG (under teacher forcing, r then comes from the MEG's own past)."
    }
}

/// Markdown table of mean r per sensor type for model, shuffled EEG and ridge.
fn per_type_table(r: &Report) -> String {
    let mut types: Vec<&str> = Vec::new();
    for name in &r.channel_names {
        let t = sensor_type(name);
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() || r.channel_names.len() != r.model_r.len() {
        return String::new();
    }
    let mean_of = |v: &[f64], t: &str| {
        if v.len() != r.channel_names.len() {
            return "–".to_string();
        }
        let vals: Vec<f64> = (0..v.len()).filter(|&c| sensor_type(&r.channel_names[c]) == t).map(|c| v[c]).collect();
        fmt_opt(mean_or_none(&vals))
    };
    let ceiling = !r.ceiling_r.is_empty();
    let mut s = String::from("| sensor type | channels | model | shuffled EEG | ridge |");
    s.push_str(if ceiling { " noise ceiling |\n|---|---|---|---|---|---|\n" } else { "\n|---|---|---|---|---|\n" });
    for t in types {
        let n = r.channel_names.iter().filter(|c| sensor_type(c) == t).count();
        let _ = write!(s, "| {t} | {n} | {} | {} | {} |", mean_of(&r.model_r, t), mean_of(&r.shuffled_r, t), mean_of(&r.ridge_r, t));
        if ceiling {
            let _ = write!(s, " {} |", mean_of(&r.ceiling_r, t));
        }
        s.push('\n');
    }
    s
}

/// Markdown table of mean r per band: a row per (sensor type, predictor).
fn band_table(r: &Report) -> String {
    if r.bands.is_empty() || r.band_rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("| sensor type | predictor |");
    for b in &r.bands {
        let _ = write!(s, " {} ({:.0}–{:.0} Hz) |", b.name, b.l_freq, b.h_freq);
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(r.bands.len()));
    s.push('\n');
    let mut types: Vec<&str> = Vec::new();
    for row in &r.band_rows {
        if !types.contains(&row.sensor_type.as_str()) {
            types.push(&row.sensor_type);
        }
    }
    for t in types {
        for row in r.band_rows.iter().filter(|row| row.sensor_type == t) {
            let _ = write!(s, "| {} | {} |", row.sensor_type, row.predictor);
            for v in &row.pearson_r {
                let _ = write!(s, " {} |", fmt_opt(*v));
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(path: &Path) -> bool {
        let bytes = std::fs::read(path).unwrap();
        bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']) && bytes.len() > 5_000
    }

    pub(super) fn sample_report() -> Report {
        let names: Vec<String> = (0..12).map(|i| format!("MEG{:03}{}", 11 + i / 3, 1 + i % 3)).collect();
        let trace = |phase: f32| (0..256).map(|t| 1e-12 * ((t as f32) / 10.0 + phase).sin()).collect::<Vec<f32>>();
        Report {
            title: "Test evaluation".into(),
            evaluated: vec![("checkpoint".into(), "ckpt/step_100.safetensors".into()), ("windows".into(), "12".into())],
            rows: vec![
                MetricsRow { name: "model (teacher-forced)".into(), pearson_r: Some(0.41), r2: Some(0.12), mse: Some(1.2e-25), token_accuracy: Some(0.3), cross_entropy: Some(2.1), perplexity: Some(8.2) },
                MetricsRow { name: "channel mean".into(), pearson_r: None, r2: Some(-0.01), mse: Some(2e-25), ..Default::default() },
            ],
            training: Some(TrainingLog { train: (0..50).map(|s| (s * 10, 5.0 / (1.0 + s as f64))).collect(), val: vec![(100, 0.6), (200, 0.4)], lr: vec![] }),
            examples: vec![
                ExampleTrace { channel: names[0].clone(), sfreq: 128.0, truth: trace(0.0), predicted: trace(0.3), ridge: Some(trace(0.6)) },
                ExampleTrace { channel: names[1].clone(), sfreq: 128.0, truth: trace(1.0), predicted: trace(1.2), ridge: None },
            ],
            model_r: (0..12).map(|i| 0.3 + 0.02 * i as f64).collect(),
            shuffled_r: (0..12).map(|i| if i == 5 { f64::NAN } else { 0.01 * (i as f64 - 6.0) }).collect(),
            ridge_r: (0..12).map(|i| 0.2 + 0.01 * i as f64).collect(),
            ceiling_r: vec![],
            bands: crate::default_bands(128.0),
            band_rows: crate::band_rows("model", &vec![(0..12).map(|i| 0.1 * (i % 3) as f64).collect::<Vec<f64>>(); 5], &names),
            channel_names: names,
            notes: vec!["ridge α = 10 (relative)".into()],
        }
    }

    #[test]
    fn band_table_has_a_column_per_band_and_a_row_per_type_and_predictor() {
        let r = sample_report();
        let t = band_table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| sensor type | predictor | delta (1–4 Hz) | theta (4–8 Hz) | alpha (8–13 Hz) | beta (13–30 Hz) | gamma (30–64 Hz) |");
        // all, mag, grad for the one predictor
        assert_eq!(lines.len(), 2 + 3, "{t}");
        assert!(lines[3].starts_with("| mag | model | 0.000 |"), "{t}");
        assert!(markdown(&r, &[]).contains("### Mean Pearson r by frequency band"));
        assert!(!markdown(&Report::default(), &[]).contains("by frequency band"));
    }

    #[test]
    fn writes_report_and_valid_pngs_without_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eval");
        write_report(&out, &sample_report()).unwrap();
        for png in [TRAINING_CURVES_PNG, EXAMPLES_PNG, PER_CHANNEL_R_PNG] {
            assert!(is_png(&out.join(png)), "{png} is not a non-trivial PNG");
        }
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        for needle in ["# Test evaluation", "](training_curves.png)", "](examples.png)", "](per_channel_r.png)", "| model (teacher-forced) | 0.410 |", "Model r 0.410 vs shuffled-EEG control", "| grad | 8 |", "ckpt/step_100.safetensors", "1.200e-25"] {
            assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
        }
        // Only the final files remain: no temporaries.
        let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["examples.png", "per_channel_r.png", "report.md", "training_curves.png"]);
        // Rewriting over existing files works (rename replaces).
        write_report(&out, &sample_report()).unwrap();
    }

    #[test]
    fn the_noise_ceiling_gets_a_column_only_when_there_is_one() {
        let mut r = sample_report();
        assert!(!per_type_table(&r).contains("noise ceiling") && !summary_sentence(&r).contains("noise ceiling"));
        r.ceiling_r = (0..12).map(|i| if i % 3 == 2 { 0.5 } else { 0.25 }).collect();
        let table = per_type_table(&r);
        assert!(table.starts_with("| sensor type | channels | model | shuffled EEG | ridge | noise ceiling |\n|---|---|---|---|---|---|\n"), "{table}");
        assert!(table.contains("| grad | 8 |") && table.contains(" 0.250 |\n") && table.contains(" 0.375 |\n"), "{table}");
        assert!(summary_sentence(&r).contains("noise ceiling 0.333"), "{}", summary_sentence(&r));
    }

    #[test]
    fn the_eeg_verdict_follows_the_drop_under_shuffled_eeg() {
        assert!(eeg_use_verdict(0.8).contains("lowers r clearly"));
        assert!(eeg_use_verdict(0.05).contains("only a little"));
        assert!(eeg_use_verdict(0.014).contains("does not use the EEG"));
        assert!(eeg_use_verdict(-0.1).contains("does not use the EEG"));
        // sample_report: model 0.41 vs shuffled ~-0.005, a clear drop.
        let sentence = summary_sentence(&sample_report());
        assert!(sentence.contains("lowers r clearly"), "{sentence}");
    }

    #[test]
    fn report_without_plots_data_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let r = Report { title: "Empty".into(), ..Default::default() };
        write_report(dir.path(), &r).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("no data given, no plot"));
        assert!(!dir.path().join(EXAMPLES_PNG).exists());
    }

    #[test]
    fn training_log_parses_and_ignores_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"step\":1,\"loss\":2.5,\"lr\":0.001,\"tokens\":5}\n\n{\"step\":2,\"loss\":2.0,\"val_loss\":2.2}\n{\"step\":3,\"val_loss\":2.1}\n").unwrap();
        let log = read_training_log(&p).unwrap();
        assert_eq!(log.train, vec![(1, 2.5), (2, 2.0)]);
        assert_eq!(log.val, vec![(2, 2.2), (3, 2.1)]);
        assert_eq!(log.lr, vec![(1, 0.001)]);
    }

    #[test]
    fn bad_training_log_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"step\":1,\"loss\":2.5}\n{\"step\":2,\"loss\":\n").unwrap();
        let err = read_training_log(&p).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:2:"), "{err}");
        std::fs::write(&p, "{\"step\":1}\n").unwrap();
        let err = read_training_log(&p).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("loss"), "{err}");
        assert!(matches!(read_training_log(&dir.path().join("missing.jsonl")), Err(Error::Io { .. })));
    }

    #[test]
    fn metrics_json_has_top_level_keys_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.json");
        let m = MetricsJson {
            pearson_r: Some(0.4),
            pearson_r_shuffled_eeg: mean_or_none(&[f64::NAN]),
            ridge_pearson_r: Some(0.3),
            per_channel: vec![NamedMetrics { name: "model".into(), metrics: ChannelMetrics { mse: vec![1.0], pearson_r: vec![f64::NAN], r2: vec![0.5], n_samples: 3 } }],
            ..Default::default()
        };
        write_metrics_json(&p, &m).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["pearson_r"], 0.4);
        assert!(v["pearson_r_shuffled_eeg"].is_null());
        assert_eq!(v["ridge_pearson_r"], 0.3);
        assert!(v["per_channel"][0]["metrics"]["pearson_r"][0].is_null());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
    }
}
#[cfg(test)]
mod preview {
    #[test]
    #[ignore]
    fn write_preview() {
        let r = super::tests::sample_report();
        super::write_report(std::path::Path::new("/tmp/evalpreview"), &r).unwrap();
    }
}
