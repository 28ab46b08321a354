//! The evaluation driver behind `bf-eval` on shards (feature `model`, which brings libtorch
//! through `bf_model`): a checkpoint's predictions on held-out windows, turned back into
//! physical units, scored per channel beside baselines on the very same windows, written as
//! `metrics.json` and `report.md` with plots (the numbers and drawings are this crate's
//! [`crate::metrics`], [`crate::ridge`], [`crate::baselines`] and [`crate::report`]).
//!
//! [`evaluate`] reads top to bottom: [`open`] (checkpoint, test windows, the checks that they
//! match) → [`predict`] (the model) → [`baselines`] (ridge, channel mean, noise ceiling) →
//! [`score`] (one row per predictor) → [`report`].
//!
//! Predictors, all on the same test windows (each window cut into the model's chunks of
//! `sequence_length` steps, as in training, and put back together):
//! - the model, teacher-forced (each MEG step predicted from the true past MEG and the EEG,
//!   as the seed trains and validates): token accuracy, cross-entropy and perplexity, and
//!   the argmax level decoded: the headline `pearson_r`;
//! - the same with the EEG of another window (pairing broken): the control
//!   `pearson_r_shuffled_eeg`, which drops to what the MEG's own past explains;
//! - token model: free-running (greedy, or sampled with `--temperature`, from the EEG alone
//!   with cached decoding), and free-running with shuffled EEG;
//! - lagged ridge regression EEG → MEG fitted on training windows, α chosen on validation;
//! - the channel-mean predictor (each MEG channel's training mean);
//! - with noise-free recordings (a simulated dataset), the noise ceiling.
//!
//! Truth is the test MEG decoded from its tokens (or the continuous values): the model is
//! scored against what it was trained to predict.

use std::path::{Path, PathBuf};

use bf_model::data::{push_values, Batch, ExampleSpec, ShardSet, Stream};
use bf_model::train::batch_tensors;
use bf_model::regression::RegressionCrossFormer;
use bf_model::{Model, ModelConfig};
use bf_pipeline::config::PreprocessConfig;
use bf_pipeline::noise_free::{noise_free_windows, WindowKey};
use bf_pipeline::shards::{read_rows, ShardMeta, WindowData};
use bf_pipeline::tokenizer::Tokenizer;
use ndarray::{s, Array3};
use tch::{Device, Kind, Tensor};

use crate::report::NamedMetrics;
use crate::{
    band_pearson_r, band_rows as band_rows_of, default_bands, Band, BandRow,
    channel_means, channel_metrics, default_alphas, fit_ridge_lagged, predict_channel_mean, read_training_log, sensor_type,
    symmetric_lags, write_metrics_json, write_report, ExampleTrace, MetricsJson, MetricsRow, Report, RidgeFit,
};

/// What to evaluate and how much of it.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub checkpoint: PathBuf,
    pub shards: PathBuf,
    pub split: String,
    pub out: PathBuf,
    pub device: Device,
    pub batch_size: usize,
    /// Test windows evaluated (the first ones, in file order).
    pub max_windows: usize,
    /// Training windows the ridge baseline is fitted on (validation: a quarter of that).
    pub ridge_windows: usize,
    /// Ridge lags: −max_lag..=max_lag samples.
    pub max_lag: usize,
    /// Token model: windows also decoded free-running (the first ones; 0 skips it).
    pub free_windows: usize,
    /// Free-running decoding: `None` greedy, else sampling temperature.
    pub temperature: Option<f64>,
    pub seed: i64,
    /// Folder of the runs' noise-free recordings (`derivatives/noise-free` of a simulated
    /// dataset): adds the noise ceiling's row. `None`: no ceiling.
    pub noise_free: Option<PathBuf>,
    /// Regression: predict chunks starting every `hop` samples (overlapping when below the
    /// sequence length) and take each sample from the chunk it is most central in. `None`:
    /// the windows cut into back-to-back chunks, as in training.
    pub hop: Option<usize>,
}

/// What can stop an evaluation; the message of a failed step says which step (as
/// `loading the checkpoint …: cause`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Eval(#[from] crate::Error),
    #[error(transparent)]
    Model(#[from] bf_model::Error),
    #[error(transparent)]
    Pipeline(#[from] bf_pipeline::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// The checkpoint and the shards do not go together, or the split is empty.
    #[error("{0}")]
    Mismatch(String),
    /// A step that failed, and why.
    #[error("{what}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names the step an error comes from (as `anyhow::Context` would).
trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Step<T> for std::result::Result<T, E> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Step { what: what(), source: Box::new(e) })
    }
}

/// Model predictions in chunks: told how many there are, then as each batch is done.
pub trait Progress {
    fn start(&self, _chunks: u64) {}
    fn advance(&self, _chunks: u64) {}
    fn finish(&self) {}
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Evaluates the checkpoint and writes `metrics.json`, `report.md` and the plots into
/// `opts.out`; returns the report's path.
pub fn evaluate(opts: &EvalOptions, progress: &dyn Progress) -> Result<PathBuf> {
    let ev = open(opts)?;
    let predicted = predict(&ev, opts, progress)?;
    let base = baselines(&ev, opts)?;
    let scores = score(&ev, &predicted, &base)?;
    std::fs::create_dir_all(&opts.out).step(|| format!("creating {}", opts.out.display()))?;
    write_metrics_json(&opts.out.join("metrics.json"), &scores.metrics_json(&ev, &base, predicted.hop))?;
    write_report(&opts.out, &report(&ev, &predicted, &base, &scores, opts)?)?;
    Ok(opts.out.join("report.md"))
}

// ---------------------------------------------------------------------------------------------
// Open: the checkpoint and the windows it is evaluated on

/// The checkpoint and the test windows, checked to go together.
pub struct Evaluation {
    /// Holds the model's variables.
    _vs: tch::nn::VarStore,
    model: Model,
    cfg: ModelConfig,
    test: ShardSet,
    meta: ShardMeta,
    tokenizer: Option<Tokenizer>,
    /// Samples per window.
    window: usize,
    /// Windows evaluated.
    n_windows: usize,
    /// Model chunks per window.
    per: usize,
    spec: ExampleSpec,
    /// The test windows in physical units (truth, and the baselines' inputs).
    truth: Windows,
}

impl Evaluation {
    fn is_token(&self) -> bool {
        matches!(self.model, Model::Token(_))
    }
}

/// Loads the checkpoint and the first `max_windows` test windows, and seeds libtorch.
pub fn open(opts: &EvalOptions) -> Result<Evaluation> {
    let (vs, model) = bf_model::load_checkpoint(&opts.checkpoint, opts.device).step(|| format!("loading the checkpoint {}", opts.checkpoint.display()))?;
    let cfg = model.config().clone();
    let test = ShardSet::open(&opts.shards, &opts.split).step(|| format!("opening the {} shards", opts.split))?;
    let meta = test.meta.clone();
    if (!cfg.eeg_channels.is_empty() && cfg.eeg_channels != meta.eeg_channels)
        || (!cfg.meg_channels.is_empty() && cfg.meg_channels != meta.meg_channels)
        || cfg.source_sequence_dimension as usize != meta.n_eeg()
        || cfg.target_sequence_dimension as usize != meta.n_meg()
    {
        return Err(Error::Mismatch(format!("{}: the shards' channels differ from the checkpoint's", opts.shards.display())));
    }
    let tokenizer = meta.tokenizer.clone();
    let window = meta.window;
    let n_windows = test.total_rows().min(opts.max_windows);
    if n_windows == 0 {
        return Err(Error::Mismatch(format!("{}: the {} split has no windows", opts.shards.display(), opts.split)));
    }
    let spec = ExampleSpec::from(&cfg);
    let per = spec.chunks_per_window(window);
    tch::manual_seed(opts.seed);
    // Truth and the model's inputs, in the same (file) order.
    let truth = load_windows(&test, tokenizer.as_ref(), n_windows)?;
    Ok(Evaluation { _vs: vs, model, cfg, test, meta, tokenizer, window, n_windows, per, spec, truth })
}

/// Physical-unit windows (window, channel, time) of a split, from the shards' files.
struct Windows {
    eeg: Array3<f32>,
    meg: Array3<f32>,
    /// Each window's run and onset.
    keys: Vec<WindowKey>,
}

/// Reads up to `max` windows in file order and undoes the tokenizer (or takes the values).
fn load_windows(set: &ShardSet, tokenizer: Option<&Tokenizer>, max: usize) -> Result<Windows> {
    let (ne, nm, w) = (set.meta.n_eeg(), set.meta.n_meg(), set.meta.window);
    let n = set.total_rows().min(max);
    let (mut eeg, mut meg) = (Array3::<f32>::zeros((n, ne, w)), Array3::<f32>::zeros((n, nm, w)));
    let mut keys = Vec::with_capacity(n);
    let mut i = 0;
    'files: for f in &set.files {
        let (_, rows) = read_rows(f)?;
        for row in rows {
            if i == n {
                break 'files;
            }
            for (data, out, offset) in [(&row.eeg, &mut eeg, 0), (&row.meg, &mut meg, ne)] {
                let mut dst = out.slice_mut(s![i, .., ..]);
                let dst = dst.as_slice_mut().expect("a fresh array is contiguous");
                match (data, tokenizer) {
                    (WindowData::Tokens(q), Some(t)) => {
                        for (c, chunk) in q.chunks(w).enumerate() {
                            t.decode(offset + c, chunk, &mut dst[c * w..(c + 1) * w]);
                        }
                    }
                    (WindowData::Continuous(v), _) => dst.copy_from_slice(v),
                    (WindowData::Tokens(_), None) => return Err(Error::Mismatch(format!("{}: token shards without a tokenizer", f.display()))),
                }
            }
            keys.push(WindowKey { subject: row.subject, session: row.session, task: row.task, run: row.run, onset: row.onset });
            i += 1;
        }
    }
    Ok(Windows { eeg, meg, keys })
}

// ---------------------------------------------------------------------------------------------
// Predict: the model on every chunk, put back into windows

/// The model's predictions as physical windows (window, MEG channel, time), and the
/// teacher-forced token statistics.
pub struct Predicted {
    teacher: Array3<f32>,
    teacher_shuffled: Array3<f32>,
    /// Token model, the first `n_free` windows: free-running, and with shuffled EEG.
    free: Array3<f32>,
    shuffled: Array3<f32>,
    n_free: usize,
    /// The shuffled-EEG control pairs chunk j's MEG with chunk (j + offset) mod N's EEG.
    offset: usize,
    /// Overlapped prediction's hop (regression, `--hop`).
    hop: Option<usize>,
    stats: TokenStats,
}

/// Teacher-forced token statistics (token model).
#[derive(Default)]
struct TokenStats {
    correct: f64,
    scored: f64,
    nll: f64,
    special_tokens: u64,
}

/// Runs the model over the evaluated windows' chunks (teacher-forced, shuffled EEG, and for
/// the token model free-running) and reassembles the windows.
pub fn predict(ev: &Evaluation, opts: &EvalOptions, progress: &dyn Progress) -> Result<Predicted> {
    if let Some(hop) = opts.hop {
        return match &ev.model {
            Model::Regression(m) => predict_overlapped(ev, m, hop, opts, progress),
            Model::Token(_) => Err(Error::Mismatch(format!(
                "--hop applies to regression checkpoints; {} is a token model (its chunks are decoded from their own start)",
                opts.checkpoint.display()
            ))),
        };
    }
    let (n_windows, per) = (ev.n_windows, ev.per);
    let stream = Stream::new(ev.test.clone(), ev.spec.clone(), opts.batch_size, 0, false);
    let batches: Vec<Batch> = stream.batches(0, Some((n_windows * per) as u64)).collect::<Result<_, _>>()?;
    progress.start((n_windows * per) as u64);
    let offset = control_offset(n_windows, per);
    // Whole batches of free-running chunks, covering at least `free_windows` windows.
    let n_free = opts.free_windows.min(n_windows);
    let chunks = predict_chunks(&ev.model, &batches, offset, n_free * per, opts, progress)?;
    progress.finish();
    let windows = |c: &[Vec<f32>], n: usize| assemble(c, n, &ev.cfg, ev.window, ev.tokenizer.as_ref());
    Ok(Predicted {
        teacher: windows(&chunks.teacher, n_windows),
        teacher_shuffled: windows(&chunks.teacher_shuffled, n_windows),
        free: windows(&chunks.free, n_free),
        shuffled: windows(&chunks.shuffled, n_free),
        n_free,
        offset,
        hop: None,
        stats: chunks.stats,
    })
}

/// The shuffled-EEG control pairs each chunk with the EEG of the chunk half the evaluated
/// windows away: another window (one window only: half a window away in time).
fn control_offset(n_windows: usize, per: usize) -> usize {
    if n_windows >= 2 {
        per * (n_windows / 2)
    } else {
        (per / 2).max(1)
    }
}

/// Model outputs for every chunk, in stream order.
#[derive(Default)]
struct Chunks {
    /// Levels 0..254 (tokens) or physical values (regression), chunk-major [L × Cm] each.
    teacher: Vec<Vec<f32>>,
    teacher_shuffled: Vec<Vec<f32>>,
    free: Vec<Vec<f32>>,
    shuffled: Vec<Vec<f32>>,
    stats: TokenStats,
}

/// The batch's ids or values as tensors.
fn inputs(batch: &Batch, cfg: &ModelConfig, device: Device) -> (Tensor, Tensor) {
    batch_tensors(batch, cfg.source_sequence_dimension, cfg.target_sequence_dimension, device)
}

/// The EEG of every chunk, [N, L, Ce], to draw the shuffled-EEG control from.
fn all_eeg(batches: &[Batch], cfg: &ModelConfig, device: Device) -> Tensor {
    let parts: Vec<Tensor> = batches.iter().map(|b| inputs(b, cfg, device).0).collect();
    Tensor::cat(&parts, 0)
}

/// Greedy or sampled ids → levels (decoding is restricted to data ids, so a special id here
/// would be a bug; it is counted and mapped to the middle level rather than hidden).
fn ids_to_levels(ids: &Tensor, offset: i64, stats: &mut TokenStats) -> Vec<Vec<f32>> {
    let ids = ids.to_device(Device::Cpu).to_kind(Kind::Int64);
    let b = ids.size()[0];
    (0..b)
        .map(|i| {
            let v = Vec::<i64>::try_from(ids.get(i).reshape([-1])).expect("int64 ids");
            v.into_iter()
                .map(|id| {
                    let level = id - offset;
                    if (0..255).contains(&level) {
                        level as f32
                    } else {
                        stats.special_tokens += 1;
                        127.0
                    }
                })
                .collect()
        })
        .collect()
}

fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float);
    (0..t.size()[0]).map(|i| Vec::<f32>::try_from(t.get(i).reshape([-1])).expect("float values")).collect()
}

/// Runs the model over every chunk batch: teacher-forced, free-running, shuffled EEG.
/// Chunk j's MEG is paired with chunk (j + `offset`) mod N's EEG in the control.
fn predict_chunks(model: &Model, batches: &[Batch], offset: usize, free_chunks: usize, opts: &EvalOptions, progress: &dyn Progress) -> Result<Chunks> {
    let cfg = model.config();
    let mut out = Chunks::default();
    let pool = all_eeg(batches, cfg, opts.device);
    let n = pool.size()[0];
    let mut done = 0;
    for batch in batches {
        let free_running = done < free_chunks;
        let first = done as i64;
        done += batch.size;
        let idx = (Tensor::arange(batch.size as i64, (Kind::Int64, opts.device)) + first + offset as i64).remainder(n);
        let shuffled_eeg = pool.index_select(0, &idx);
        tch::no_grad(|| -> Result<()> {
            let (eeg, meg) = inputs(batch, cfg, opts.device);
            match model {
                Model::Token(m) => {
                    let stats = &mut out.stats;
                    let l = meg.size()[1];
                    let fwd = m.forward(&eeg, &meg, false);
                    let logits = fwd.logits.narrow(1, 0, l); // drop the EOS position
                    let logp = logits.log_softmax(-1, Kind::Float);
                    let valid = meg.ne(cfg.pad_token_id);
                    let picked = logp.gather(-1, &meg.unsqueeze(-1), false).squeeze_dim(-1);
                    stats.nll -= f64::try_from(picked.masked_select(&valid).sum(Kind::Double))?;
                    let data = logits.narrow(-1, cfg.token_offset, 255).argmax(-1, false) + cfg.token_offset;
                    stats.correct += f64::try_from(data.eq_tensor(&meg).logical_and(&valid).sum(Kind::Double))?;
                    stats.scored += f64::try_from(valid.sum(Kind::Double))?;
                    let teacher = ids_to_levels(&data, cfg.token_offset, stats);
                    out.teacher.extend(teacher);
                    let tf_sh = m.forward(&shuffled_eeg, &meg, false).logits.narrow(1, 0, l);
                    let tf_sh = tf_sh.narrow(-1, cfg.token_offset, 255).argmax(-1, false) + cfg.token_offset;
                    let tf_sh = ids_to_levels(&tf_sh, cfg.token_offset, stats);
                    out.teacher_shuffled.extend(tf_sh);
                    if free_running {
                        let (free, _) = m.generate(&eeg, l, opts.temperature, true);
                        let free = ids_to_levels(&free, cfg.token_offset, stats);
                        out.free.extend(free);
                        let (sh, _) = m.generate(&shuffled_eeg, l, opts.temperature, true);
                        let sh = ids_to_levels(&sh, cfg.token_offset, stats);
                        out.shuffled.extend(sh);
                    }
                }
                Model::Regression(m) => {
                    let pred = m.forward(&eeg.to_kind(Kind::Float), false);
                    out.teacher.extend(rows_of(&pred));
                    out.free.extend(rows_of(&pred));
                    let shuffled = rows_of(&m.forward(&shuffled_eeg.to_kind(Kind::Float), false));
                    out.teacher_shuffled.extend(shuffled.clone());
                    out.shuffled.extend(shuffled);
                }
            }
            Ok(())
        })?;
        progress.advance(batch.size as u64);
    }
    Ok(out)
}

/// Chunks [L × Cm] (levels or scaled values) back into physical windows (window, Cm, W).
fn assemble(chunks: &[Vec<f32>], n_windows: usize, cfg: &ModelConfig, window: usize, tokenizer: Option<&Tokenizer>) -> Array3<f32> {
    let (l, cm) = (cfg.sequence_length as usize, cfg.target_sequence_dimension as usize);
    let ne = cfg.source_sequence_dimension as usize;
    let per = window.div_ceil(l);
    // Level → value of every MEG channel, decoded once (the tokenizer's inverse per level).
    let levels: Vec<u8> = (0..=254).collect();
    let tables: Vec<Vec<f32>> = (0..cm)
        .map(|c| {
            let mut t = vec![0f32; levels.len()];
            if let Some(tok) = tokenizer {
                tok.decode(ne + c, &levels, &mut t);
            }
            t
        })
        .collect();
    let mut out = Array3::<f32>::zeros((n_windows, cm, window));
    for (k, chunk) in chunks.iter().enumerate().take(n_windows * per) {
        let (w, part) = (k / per, k % per);
        for t in 0..l {
            let time = part * l + t;
            if time >= window {
                break;
            }
            for c in 0..cm {
                let v = chunk[t * cm + c];
                out[[w, c, time]] = match (tokenizer, &cfg.value_scale) {
                    (Some(_), _) => tables[c][(v as usize).min(254)],
                    (None, Some(scale)) => v * scale[ne + c],
                    (None, None) => v,
                };
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Overlapped prediction (regression, `--hop`)
//
// Why: a chunk's first and last samples are predicted with less context than its middle (the
// encoder's patches end there, and `--eeg_skip`'s lagged path sees zeros past the chunk), and
// back-to-back chunks put such an edge every `sequence_length` samples. Chunks started every
// `hop` samples, each sample taken from the chunk it is most central in, leave edges only at
// the window's own ends, as the ridge (which filters each whole window) has. The model and its
// inputs are unchanged: only which chunk predicts which sample.

/// For every sample of the window, the index in `starts` of the chunk (of `l` samples) that
/// holds it nearest its centre; the earlier chunk on a tie.
pub fn central_chunk_of_each_sample(starts: &[usize], window: usize, l: usize) -> Vec<usize> {
    (0..window)
        .map(|t| {
            // Twice the distance from t to the centre s + (l − 1)/2, in integers.
            let off_centre = |s: usize| (2 * t).abs_diff(2 * s + l - 1);
            let holding = starts.iter().enumerate().filter(|(_, &s)| s <= t && t < s + l);
            holding.min_by_key(|(j, &s)| (off_centre(s), *j)).map(|(j, _)| j).expect("the chunks cover the window")
        })
        .collect()
}

/// The regression model's input for chunks `(window, chunk)`: time-major [B, l, Ce], cut,
/// scaled and clamped by `spec` as the training batches are.
fn chunk_inputs(eeg: &Array3<f32>, chunks: &[(usize, usize)], spec: &ExampleSpec, scale: &[f32], device: Device) -> Tensor {
    let (ce, window, l) = (eeg.shape()[1], eeg.shape()[2], spec.sequence_length);
    let mut x = Vec::with_capacity(chunks.len() * l * ce);
    for &(w, c) in chunks {
        let one = eeg.slice(s![w, .., ..]);
        push_values(&mut x, one.as_slice().expect("a window of a fresh array is contiguous"), ce, window, spec, c, scale);
    }
    Tensor::from_slice(&x).view([chunks.len() as i64, l as i64, ce as i64]).to_device(device)
}

/// The regression model on chunks every `hop` samples of each evaluated window (and, for the
/// shuffled-EEG control, on the EEG of the chunk half the evaluated set away), each sample
/// taken from its most central chunk, in physical units.
fn predict_overlapped(ev: &Evaluation, model: &RegressionCrossFormer, hop: usize, opts: &EvalOptions, progress: &dyn Progress) -> Result<Predicted> {
    let cfg = &ev.cfg;
    let (l, window, n) = (cfg.sequence_length as usize, ev.window, ev.n_windows);
    if hop == 0 || hop > l {
        return Err(Error::Mismatch(format!("--hop {hop}: must be 1..={l} (the checkpoint's sequence_length)")));
    }
    if window < l {
        return Err(Error::Mismatch(format!("--hop: the shards' windows ({window} samples) are shorter than the model's sequence_length ({l})")));
    }
    let scale = cfg.value_scale.as_ref().ok_or_else(|| Error::Mismatch(format!("{}: a regression checkpoint without value_scale", opts.checkpoint.display())))?;
    let (ne, cm) = (cfg.source_sequence_dimension as usize, cfg.target_sequence_dimension as usize);
    let spec = ExampleSpec { hop: Some(hop), ..ev.spec.clone() };
    let starts = spec.chunk_starts(window);
    let central = central_chunk_of_each_sample(&starts, window, l);
    let per = starts.len();
    let total = n * per;
    // Chunk k = (window k / per, chunk k % per); the control pairs k's MEG with k + offset's EEG.
    let offset = control_offset(n, per);
    let chunk = |k: usize| (k / per, k % per);
    let mut teacher = Array3::<f32>::zeros((n, cm, window));
    let mut teacher_shuffled = Array3::<f32>::zeros((n, cm, window));
    progress.start(total as u64);
    for first in (0..total).step_by(opts.batch_size.max(1)) {
        let ks: Vec<usize> = (first..total.min(first + opts.batch_size.max(1))).collect();
        let own: Vec<(usize, usize)> = ks.iter().map(|&k| chunk(k)).collect();
        let other: Vec<(usize, usize)> = ks.iter().map(|&k| chunk((k + offset) % total)).collect();
        let (pred, pred_shuffled) = tch::no_grad(|| {
            let run = |c: &[(usize, usize)]| rows_of(&model.forward(&chunk_inputs(&ev.truth.eeg, c, &spec, &scale[..ne], opts.device), false));
            (run(&own), run(&other))
        });
        for (i, &k) in ks.iter().enumerate() {
            let (w, j) = (k / per, k % per);
            for (out, rows) in [(&mut teacher, &pred), (&mut teacher_shuffled, &pred_shuffled)] {
                for t in (starts[j]..starts[j] + l).filter(|&t| central[t] == j) {
                    for c in 0..cm {
                        out[[w, c, t]] = rows[i][(t - starts[j]) * cm + c] * scale[ne + c];
                    }
                }
            }
        }
        progress.advance(ks.len() as u64);
    }
    progress.finish();
    Ok(Predicted {
        teacher,
        teacher_shuffled,
        free: Array3::zeros((0, cm, window)),
        shuffled: Array3::zeros((0, cm, window)),
        n_free: 0,
        offset,
        hop: Some(hop),
        stats: TokenStats::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Baselines: the predictors that are not the model, on the same windows

/// The baselines' predictions of the evaluated windows.
pub struct Baselines {
    ridge: RidgeFit,
    ridge_pred: Array3<f32>,
    /// Windows the ridge was fitted and validated on.
    n_train: usize,
    n_val: usize,
    mean_pred: Array3<f32>,
    /// The noise-free MEG of each window and the folder it came from.
    ceiling: Option<(Array3<f32>, PathBuf)>,
}

/// Fits the lagged ridge (training windows, α on validation, else on training windows) and
/// the channel means, predicts the evaluated windows with both, and reads the noise ceiling
/// when there are noise-free recordings.
pub fn baselines(ev: &Evaluation, opts: &EvalOptions) -> Result<Baselines> {
    let tokenizer = ev.tokenizer.as_ref();
    let train = ShardSet::open(&opts.shards, "train")?;
    let train_w = load_windows(&train, tokenizer, opts.ridge_windows)?;
    let val_w = match ShardSet::open(&opts.shards, "validation") {
        Ok(v) => load_windows(&v, tokenizer, (opts.ridge_windows / 4).max(1))?,
        Err(_) => load_windows(&train, tokenizer, (opts.ridge_windows / 4).max(1))?,
    };
    let lags = symmetric_lags(opts.max_lag.min(ev.window.saturating_sub(1) / 2));
    let ridge = fit_ridge_lagged(train_w.eeg.view(), train_w.meg.view(), val_w.eeg.view(), val_w.meg.view(), &lags, &default_alphas())?;
    let ridge_pred = ridge.predict(ev.truth.eeg.view())?;
    let means = channel_means(train_w.meg.view())?;
    let mean_pred = predict_channel_mean(means.view(), ev.truth.meg.dim())?;
    let ceiling = match &opts.noise_free {
        Some(dir) => Some((noise_ceiling_windows(dir, &ev.meta, &ev.truth.keys, &opts.out)?, dir.clone())),
        None => None,
    };
    Ok(Baselines { ridge, ridge_pred, n_train: train_w.eeg.dim().0, n_val: val_w.eeg.dim().0, mean_pred, ceiling })
}

/// The noise-free MEG of each evaluated window, cleaned with the shards' `[preprocess]`.
fn noise_ceiling_windows(dir: &Path, meta: &ShardMeta, keys: &[WindowKey], out: &Path) -> Result<Array3<f32>> {
    let params: serde_json::Value = serde_json::from_str(&meta.params_json).step(|| "the shards' parameters are not JSON".into())?;
    let pre: PreprocessConfig = serde_json::from_value(params["preprocess"].clone()).step(|| "the shards' parameters have no [preprocess] table".into())?;
    std::fs::create_dir_all(out).step(|| format!("creating {}", out.display()))?;
    Ok(noise_free_windows(dir, &pre, &meta.meg_channels, meta.window, keys, out)?)
}

// ---------------------------------------------------------------------------------------------
// Score: one row (and per-channel metrics) per predictor

/// The table's rows, in report order, and the rows the headline numbers come from.
pub struct Scores {
    rows: Vec<MetricsRow>,
    per_channel: Vec<NamedMetrics>,
    model: (MetricsRow, NamedMetrics),
    control: (MetricsRow, NamedMetrics),
    ridge: (MetricsRow, NamedMetrics),
    ceiling: Option<(MetricsRow, NamedMetrics)>,
    /// Per-band r (model, control, ridge, ceiling), by sensor type.
    bands: Vec<Band>,
    band_rows: Vec<BandRow>,
}

/// Scores every predictor against the test MEG: model and shuffled-EEG control (teacher-forced
/// for the token model, with its token statistics), free-running rows, ridge, channel mean,
/// noise ceiling.
pub fn score(ev: &Evaluation, p: &Predicted, b: &Baselines) -> Result<Scores> {
    let names = &ev.meta.meg_channels;
    let score_on = |truth: ndarray::ArrayView3<f32>, name: &str, pred: &Array3<f32>| -> Result<(MetricsRow, NamedMetrics)> {
        let m = channel_metrics(truth, pred.view())?;
        Ok((MetricsRow::from_summary(name, &m.summary(names)?), NamedMetrics { name: name.to_string(), metrics: m }))
    };
    let score = |name: &str, pred: &Array3<f32>| score_on(ev.truth.meg.view(), name, pred);
    // Headline numbers are teacher-forced, as the seed trains and validates; free-running
    // rows (token model) are reported beside them.
    let token = ev.is_token();
    let mut model = score(if token { "model, teacher-forced" } else { "model" }, &p.teacher)?;
    let control = score(if token { "model, teacher-forced, shuffled EEG" } else { "model, shuffled EEG" }, &p.teacher_shuffled)?;
    let ridge = score(&format!("ridge, lags ±{}", b.ridge.lags.last().copied().unwrap_or(0)), &b.ridge_pred)?;
    let mean = score("channel mean", &b.mean_pred)?;
    if token {
        let ce = p.stats.nll / p.stats.scored.max(1.0);
        model.0.token_accuracy = Some(p.stats.correct / p.stats.scored.max(1.0));
        model.0.cross_entropy = Some(ce);
        model.0.perplexity = Some(ce.exp());
    }
    let mut scored = vec![model.clone(), control.clone()];
    if token && p.n_free > 0 {
        let n_free = p.n_free;
        let truth_free = ev.truth.meg.slice(s![..n_free, .., ..]);
        scored.push(score_on(truth_free, &format!("model, free-running ({n_free} windows)"), &p.free)?);
        scored.push(score_on(truth_free, &format!("model, free-running, shuffled EEG ({n_free} windows)"), &p.shuffled)?);
    }
    scored.extend([ridge.clone(), mean]);
    let ceiling = match &b.ceiling {
        Some((pred, _)) => Some(score("noise ceiling (noise-free MEG)", pred)?),
        None => None,
    };
    scored.extend(ceiling.clone());
    let (rows, per_channel) = scored.into_iter().unzip();
    let bands = default_bands(ev.meta.sfreq);
    let mut band_rows = Vec::new();
    let mut by_band = |name: &str, truth: ndarray::ArrayView3<f32>, pred: &Array3<f32>| -> Result<()> {
        let r = band_pearson_r(truth, pred.view(), ev.meta.sfreq, &bands)?;
        band_rows.extend(band_rows_of(name, &r, names));
        Ok(())
    };
    let truth = ev.truth.meg.view();
    by_band(&model.0.name, truth, &p.teacher)?;
    by_band(&control.0.name, truth, &p.teacher_shuffled)?;
    if token && p.n_free > 0 {
        by_band("model, free-running", ev.truth.meg.slice(s![..p.n_free, .., ..]), &p.free)?;
    }
    by_band(&ridge.0.name, truth, &b.ridge_pred)?;
    if let Some((pred, _)) = &b.ceiling {
        by_band("noise ceiling (noise-free MEG)", truth, pred)?;
    }
    Ok(Scores { rows, per_channel, model, control, ridge, ceiling, bands, band_rows })
}

impl Scores {
    /// `metrics.json`: the headline numbers, every row and every channel's metrics.
    fn metrics_json(&self, ev: &Evaluation, b: &Baselines, hop: Option<usize>) -> MetricsJson {
        MetricsJson {
            pearson_r: self.model.0.pearson_r,
            pearson_r_shuffled_eeg: self.control.0.pearson_r,
            ridge_pearson_r: self.ridge.0.pearson_r,
            ridge_alpha: Some(b.ridge.alpha),
            noise_ceiling_pearson_r: self.ceiling.as_ref().and_then(|(row, _)| row.pearson_r),
            channel_names: ev.meta.meg_channels.clone(),
            per_channel: self.per_channel.clone(),
            rows: self.rows.clone(),
            bands: self.bands.clone(),
            by_band: self.band_rows.clone(),
            hop,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report

/// The report: what was evaluated, the table, the training curves (the checkpoint folder's
/// `metrics.jsonl`), example traces of the first window and notes on how each row was made.
pub fn report(ev: &Evaluation, p: &Predicted, b: &Baselines, scores: &Scores, opts: &EvalOptions) -> Result<Report> {
    let (cfg, meta, names) = (&ev.cfg, &ev.meta, &ev.meta.meg_channels);
    let log_path = opts.checkpoint.parent().map(|p| p.join("metrics.jsonl"));
    let training = match log_path.filter(|p| p.is_file()) {
        Some(p) => Some(read_training_log(&p)?),
        None => None,
    };
    let examples = example_channels(names)
        .into_iter()
        .map(|c| ExampleTrace {
            channel: names[c].clone(),
            sfreq: meta.sfreq,
            truth: ev.truth.meg.slice(s![0, c, ..]).to_vec(),
            predicted: p.teacher.slice(s![0, c, ..]).to_vec(),
            ridge: Some(b.ridge_pred.slice(s![0, c, ..]).to_vec()),
        })
        .collect();
    let mut notes = vec![
        format!("Ridge: {} training and {} validation windows, relative α {:.3e} chosen on validation.", b.n_train, b.n_val, b.ridge.alpha),
        format!("The shuffled-EEG control pairs each chunk's MEG with the EEG of the chunk {} chunks later (mod the evaluated set): the same time in another window.", p.offset),
    ];
    if let Some((_, dir)) = &b.ceiling {
        notes.push(format!(
            "Noise ceiling: the simulation's noise-free MEG of each window ({}), band-passed, notched and resampled as the run, scored against the recorded MEG: what a predictor knowing the brain's currents exactly would reach.",
            dir.display()
        ));
    }
    if let Some(hop) = p.hop {
        notes.push(format!(
            "Overlapped prediction (--hop {hop}): the model ran on chunks of {} samples started every {hop} samples of each window, and each sample was taken from the chunk it is most central in, so chunk edges fall only at the window's ends.",
            cfg.sequence_length
        ));
    }
    if p.stats.special_tokens > 0 {
        notes.push(format!("{} generated special tokens (pad/BOS/EOS) were scored as the middle level.", p.stats.special_tokens));
    }
    if ev.is_token() {
        notes.push(format!(
            "Headline numbers (`pearson_r`, `pearson_r_shuffled_eeg`) are teacher-forced: each MEG step is predicted from the EEG and the true MEG up to the previous step, as in training. Free-running rows ({}) see only the EEG and their own output.",
            opts.temperature.map_or("greedy".to_string(), |t| format!("sampled at temperature {t}"))
        ));
    }
    Ok(Report {
        title: "Brainformer evaluation".into(),
        evaluated: vec![
            ("checkpoint".into(), opts.checkpoint.display().to_string()),
            ("shards".into(), opts.shards.display().to_string()),
            ("split".into(), opts.split.clone()),
            ("windows".into(), format!("{} of {} samples at {} Hz ({} chunks of {})", ev.n_windows, ev.window, meta.sfreq, ev.per, cfg.sequence_length)),
            ("model".into(), format!("{:?}, channel attention {:?}, d_model {}, {} layer(s)", cfg.objective, cfg.channel_attention, cfg.d_model, cfg.n_layers)),
        ],
        rows: scores.rows.clone(),
        training,
        examples,
        channel_names: names.clone(),
        model_r: scores.model.1.metrics.pearson_r.clone(),
        shuffled_r: scores.control.1.metrics.pearson_r.clone(),
        ridge_r: scores.ridge.1.metrics.pearson_r.clone(),
        ceiling_r: scores.ceiling.as_ref().map(|(_, m)| m.metrics.pearson_r.clone()).unwrap_or_default(),
        bands: scores.bands.clone(),
        band_rows: scores.band_rows.clone(),
        notes,
    })
}

/// Up to three MEG channels of different sensor types (first of each), for the example plot.
fn example_channels(names: &[String]) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let t = sensor_type(n);
        if !seen.contains(&t) {
            seen.push(t);
            picked.push(i);
        }
    }
    let mut i = 0;
    while picked.len() < 3.min(names.len()) {
        if !picked.contains(&i) {
            picked.push(i);
        }
        i += 1;
    }
    picked.truncate(3);
    picked
}

/// The metrics file of an evaluation folder.
pub fn metrics_path(out: &Path) -> PathBuf {
    out.join("metrics.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_comes_from_the_chunk_it_is_most_central_in() {
        // Chunks of 4 every 2 in a window of 8: starts 0 2 4 (`ExampleSpec::chunk_starts`, tested
        // in bf_model's data.rs); centres 1.5 3.5 5.5.
        let starts = [0, 2, 4];
        assert_eq!(central_chunk_of_each_sample(&starts, 8, 4), vec![0, 0, 0, 1, 1, 2, 2, 2]);
        // Back to back (hop = l): every sample from its own chunk, as without --hop.
        let starts = [0, 4, 8];
        assert_eq!(central_chunk_of_each_sample(&starts, 12, 4), vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        // Half-overlapping chunks of 64 in 256: the middle half of each inner chunk is kept,
        // and no kept sample is within 16 of a chunk edge except at the window's ends.
        let (w, l) = (256, 64);
        let starts: Vec<usize> = (0..=192).step_by(32).collect();
        let central = central_chunk_of_each_sample(&starts, w, l);
        for (t, &j) in central.iter().enumerate() {
            let (s, e) = (starts[j], starts[j] + l);
            assert!(s <= t && t < e);
            let to_edge = (t - s).min(e - 1 - t);
            assert!(to_edge >= 15 || t < 16 || t >= w - 16, "sample {t} taken {to_edge} from chunk {j}'s edge");
        }
    }
}
