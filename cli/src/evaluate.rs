//! `bf-eval` on shards: the checkpoint's predictions on held-out windows, turned back into
//! physical units, scored per channel beside baselines on the very same windows, written as
//! `metrics.json` and `report.md` with plots (the numbers and drawings are `bf_eval`'s).
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
//! - the channel-mean predictor (each MEG channel's training mean).
//!
//! Truth is the test MEG decoded from its tokens (or the continuous values): the model is
//! scored against what it was trained to predict.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bf_eval::{
    channel_means, channel_metrics, default_alphas, fit_ridge_lagged, predict_channel_mean, read_training_log, sensor_type,
    symmetric_lags, write_metrics_json, write_report, report::NamedMetrics, ExampleTrace, MetricsJson, MetricsRow, Report,
};
use bf_model::data::{Batch, ExampleSpec, ShardSet, Stream};
use bf_model::train::batch_tensors;
use bf_model::{Model, ModelConfig};
use bf_pipeline::config::PreprocessConfig;
use bf_pipeline::noise_free::{noise_free_windows, WindowKey};
use bf_pipeline::shards::{read_rows, ShardMeta, WindowData};
use bf_pipeline::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{s, Array3};
use tch::{Device, Kind, Tensor};

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
    pub quiet: bool,
    /// Folder of the runs' noise-free recordings (`derivatives/noise-free` of a simulated
    /// dataset): adds the noise ceiling's row. `None`: no ceiling.
    pub noise_free: Option<PathBuf>,
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
                    (WindowData::Tokens(_), None) => bail!("{}: token shards without a tokenizer", f.display()),
                }
            }
            keys.push(WindowKey { subject: row.subject, session: row.session, task: row.task, run: row.run, onset: row.onset });
            i += 1;
        }
    }
    Ok(Windows { eeg, meg, keys })
}

/// Model outputs for every chunk, in stream order.
#[derive(Default)]
struct Predictions {
    /// Levels 0..254 (tokens) or physical values (regression), chunk-major [L × Cm] each.
    teacher: Vec<Vec<f32>>,
    teacher_shuffled: Vec<Vec<f32>>,
    free: Vec<Vec<f32>>,
    shuffled: Vec<Vec<f32>>,
    /// Teacher-forced token statistics.
    correct: f64,
    scored: f64,
    nll: f64,
    special_tokens: u64,
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
fn ids_to_levels(ids: &Tensor, offset: i64, preds: &mut Predictions) -> Vec<Vec<f32>> {
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
                        preds.special_tokens += 1;
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
fn predict(model: &Model, batches: &[Batch], offset: usize, free_chunks: usize, opts: &EvalOptions, bar: &ProgressBar) -> Result<Predictions> {
    let cfg = model.config();
    let mut preds = Predictions::default();
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
                    let l = meg.size()[1];
                    let out = m.forward(&eeg, &meg, false);
                    let logits = out.logits.narrow(1, 0, l); // drop the EOS position
                    let logp = logits.log_softmax(-1, Kind::Float);
                    let valid = meg.ne(cfg.pad_token_id);
                    let picked = logp.gather(-1, &meg.unsqueeze(-1), false).squeeze_dim(-1);
                    preds.nll -= f64::try_from(picked.masked_select(&valid).sum(Kind::Double))?;
                    let data = logits.narrow(-1, cfg.token_offset, 255).argmax(-1, false) + cfg.token_offset;
                    preds.correct += f64::try_from(data.eq_tensor(&meg).logical_and(&valid).sum(Kind::Double))?;
                    preds.scored += f64::try_from(valid.sum(Kind::Double))?;
                    let teacher = ids_to_levels(&data, cfg.token_offset, &mut preds);
                    preds.teacher.extend(teacher);
                    let tf_sh = m.forward(&shuffled_eeg, &meg, false).logits.narrow(1, 0, l);
                    let tf_sh = tf_sh.narrow(-1, cfg.token_offset, 255).argmax(-1, false) + cfg.token_offset;
                    let tf_sh = ids_to_levels(&tf_sh, cfg.token_offset, &mut preds);
                    preds.teacher_shuffled.extend(tf_sh);
                    if free_running {
                        let (free, _) = m.generate(&eeg, l, opts.temperature, true);
                        let free = ids_to_levels(&free, cfg.token_offset, &mut preds);
                        preds.free.extend(free);
                        let (sh, _) = m.generate(&shuffled_eeg, l, opts.temperature, true);
                        let sh = ids_to_levels(&sh, cfg.token_offset, &mut preds);
                        preds.shuffled.extend(sh);
                    }
                }
                Model::Regression(m) => {
                    let pred = m.forward(&eeg.to_kind(Kind::Float), false);
                    preds.teacher.extend(rows_of(&pred));
                    preds.free.extend(rows_of(&pred));
                    let shuffled = rows_of(&m.forward(&shuffled_eeg.to_kind(Kind::Float), false));
                    preds.teacher_shuffled.extend(shuffled.clone());
                    preds.shuffled.extend(shuffled);
                }
            }
            Ok(())
        })?;
        bar.inc(batch.size as u64);
    }
    Ok(preds)
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

/// Evaluates the checkpoint and writes `metrics.json` and `report.md`; returns the report.
pub fn evaluate(opts: &EvalOptions) -> Result<PathBuf> {
    let (_vs, model) = bf_model::load_checkpoint(&opts.checkpoint, opts.device)
        .with_context(|| format!("loading the checkpoint {}", opts.checkpoint.display()))?;
    let cfg = model.config().clone();
    let test = ShardSet::open(&opts.shards, &opts.split).with_context(|| format!("opening the {} shards", opts.split))?;
    let meta = test.meta.clone();
    if (!cfg.eeg_channels.is_empty() && cfg.eeg_channels != meta.eeg_channels)
        || (!cfg.meg_channels.is_empty() && cfg.meg_channels != meta.meg_channels)
        || cfg.source_sequence_dimension as usize != meta.n_eeg()
        || cfg.target_sequence_dimension as usize != meta.n_meg()
    {
        bail!("{}: the shards' channels differ from the checkpoint's", opts.shards.display());
    }
    let tokenizer = meta.tokenizer.clone();
    let window = meta.window;
    let n_windows = test.total_rows().min(opts.max_windows);
    if n_windows == 0 {
        bail!("{}: the {} split has no windows", opts.shards.display(), opts.split);
    }
    let spec = ExampleSpec {
        sequence_length: cfg.sequence_length as usize,
        token_offset: cfg.token_offset,
        pad_id: cfg.pad_token_id,
        scale: cfg.value_scale.clone(),
    };
    let per = spec.chunks_per_window(window);
    tch::manual_seed(opts.seed);

    // Truth and the model's inputs, in the same (file) order.
    let truth = load_windows(&test, tokenizer.as_ref(), n_windows)?;
    let stream = Stream::new(test.clone(), spec, opts.batch_size, 0, false);
    let batches: Vec<Batch> = stream.batches(0, Some((n_windows * per) as u64)).collect::<Result<_, _>>()?;
    let bar = if opts.quiet { ProgressBar::hidden() } else { ProgressBar::new((n_windows * per) as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} chunks  model predictions [{elapsed_precise} < {eta}]")?);
    // Pair each chunk with the EEG of the chunk half the evaluated windows away: another
    // window (one window only: half a window away in time).
    let offset = if n_windows >= 2 { per * (n_windows / 2) } else { (per / 2).max(1) };
    // Whole batches of free-running chunks, covering at least `free_windows` windows.
    let n_free = opts.free_windows.min(n_windows);
    let preds = predict(&model, &batches, offset, n_free * per, opts, &bar)?;
    bar.finish_and_clear();
    let tok = tokenizer.as_ref();
    let teacher = assemble(&preds.teacher, n_windows, &cfg, window, tok);
    let teacher_shuffled = assemble(&preds.teacher_shuffled, n_windows, &cfg, window, tok);
    let free = assemble(&preds.free, n_free, &cfg, window, tok);
    let shuffled = assemble(&preds.shuffled, n_free, &cfg, window, tok);

    // Baselines on the same windows.
    let train = ShardSet::open(&opts.shards, "train")?;
    let train_w = load_windows(&train, tokenizer.as_ref(), opts.ridge_windows)?;
    let val_w = match ShardSet::open(&opts.shards, "validation") {
        Ok(v) => load_windows(&v, tokenizer.as_ref(), (opts.ridge_windows / 4).max(1))?,
        Err(_) => load_windows(&train, tokenizer.as_ref(), (opts.ridge_windows / 4).max(1))?,
    };
    let lags = symmetric_lags(opts.max_lag.min(window.saturating_sub(1) / 2));
    let ridge = fit_ridge_lagged(train_w.eeg.view(), train_w.meg.view(), val_w.eeg.view(), val_w.meg.view(), &lags, &default_alphas())?;
    let ridge_pred = ridge.predict(truth.eeg.view())?;
    let means = channel_means(train_w.meg.view())?;
    let mean_pred = predict_channel_mean(means.view(), truth.meg.dim())?;

    // Scores.
    let names = &meta.meg_channels;
    let score = |name: &str, pred: &Array3<f32>| -> Result<(MetricsRow, NamedMetrics)> {
        let m = channel_metrics(truth.meg.view(), pred.view())?;
        let row = MetricsRow::from_summary(name, &m.summary(names)?);
        Ok((row, NamedMetrics { name: name.to_string(), metrics: m }))
    };
    // Headline numbers are teacher-forced, as the seed trains and validates; free-running
    // rows (token model) are reported beside them.
    let token = matches!(model, Model::Token(_));
    let (mut model_row, model_m) = score(if token { "model, teacher-forced" } else { "model" }, &teacher)?;
    let (control_row, control_m) = score(if token { "model, teacher-forced, shuffled EEG" } else { "model, shuffled EEG" }, &teacher_shuffled)?;
    let (ridge_row, ridge_m) = score(&format!("ridge, lags ±{}", lags.last().copied().unwrap_or(0)), &ridge_pred)?;
    let (mean_row, mean_m) = score("channel mean", &mean_pred)?;
    let mut rows = vec![];
    let mut per_channel = vec![];
    if token {
        let ce = preds.nll / preds.scored.max(1.0);
        model_row.token_accuracy = Some(preds.correct / preds.scored.max(1.0));
        model_row.cross_entropy = Some(ce);
        model_row.perplexity = Some(ce.exp());
    }
    rows.extend([model_row.clone(), control_row.clone()]);
    per_channel.extend([model_m.clone(), control_m.clone()]);
    if token && n_free > 0 {
        let truth_free = truth.meg.slice(s![..n_free, .., ..]);
        let score_free = |name: &str, pred: &Array3<f32>| -> Result<(MetricsRow, NamedMetrics)> {
            let m = channel_metrics(truth_free, pred.view())?;
            Ok((MetricsRow::from_summary(name, &m.summary(names)?), NamedMetrics { name: name.to_string(), metrics: m }))
        };
        let (free_row, free_m) = score_free(&format!("model, free-running ({n_free} windows)"), &free)?;
        let (sh_row, sh_m) = score_free(&format!("model, free-running, shuffled EEG ({n_free} windows)"), &shuffled)?;
        rows.extend([free_row, sh_row]);
        per_channel.extend([free_m, sh_m]);
    }
    rows.extend([ridge_row.clone(), mean_row]);
    per_channel.extend([ridge_m.clone(), mean_m]);
    let ceiling = match &opts.noise_free {
        Some(dir) => {
            let pred = noise_ceiling_windows(dir, &meta, &truth.keys, &opts.out)?;
            let (row, m) = score("noise ceiling (noise-free MEG)", &pred)?;
            rows.push(row.clone());
            per_channel.push(m.clone());
            Some((row, m, dir))
        }
        None => None,
    };
    let metrics = MetricsJson {
        pearson_r: model_row.pearson_r,
        pearson_r_shuffled_eeg: control_row.pearson_r,
        ridge_pearson_r: ridge_row.pearson_r,
        ridge_alpha: Some(ridge.alpha),
        noise_ceiling_pearson_r: ceiling.as_ref().and_then(|(row, _, _)| row.pearson_r),
        channel_names: names.clone(),
        per_channel,
        rows: rows.clone(),
    };
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    write_metrics_json(&opts.out.join("metrics.json"), &metrics)?;

    // Report.
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
            truth: truth.meg.slice(s![0, c, ..]).to_vec(),
            predicted: teacher.slice(s![0, c, ..]).to_vec(),
            ridge: Some(ridge_pred.slice(s![0, c, ..]).to_vec()),
        })
        .collect();
    let mut notes = vec![
        format!("Ridge: {} training and {} validation windows, relative α {:.3e} chosen on validation.", train_w.eeg.dim().0, val_w.eeg.dim().0, ridge.alpha),
        format!("The shuffled-EEG control pairs each chunk's MEG with the EEG of the chunk {offset} chunks later (mod the evaluated set): the same time in another window."),
    ];
    if let Some((_, _, dir)) = &ceiling {
        notes.push(format!(
            "Noise ceiling: the simulation's noise-free MEG of each window ({}), band-passed, notched and resampled as the run, scored against the recorded MEG: what a predictor knowing the brain's currents exactly would reach.",
            dir.display()
        ));
    }
    if preds.special_tokens > 0 {
        notes.push(format!("{} generated special tokens (pad/BOS/EOS) were scored as the middle level.", preds.special_tokens));
    }
    if token {
        notes.push(format!(
            "Headline numbers (`pearson_r`, `pearson_r_shuffled_eeg`) are teacher-forced: each MEG step is predicted from the EEG and the true MEG up to the previous step, as in training. Free-running rows ({}) see only the EEG and their own output.",
            opts.temperature.map_or("greedy".to_string(), |t| format!("sampled at temperature {t}"))
        ));
    }
    let report = Report {
        title: "Brainformer evaluation".into(),
        evaluated: vec![
            ("checkpoint".into(), opts.checkpoint.display().to_string()),
            ("shards".into(), opts.shards.display().to_string()),
            ("split".into(), opts.split.clone()),
            ("windows".into(), format!("{n_windows} of {} samples at {} Hz ({} chunks of {})", window, meta.sfreq, per, cfg.sequence_length)),
            ("model".into(), format!("{:?}, channel attention {:?}, d_model {}, {} layer(s)", cfg.objective, cfg.channel_attention, cfg.d_model, cfg.n_layers)),
        ],
        rows,
        training,
        examples,
        channel_names: names.clone(),
        model_r: model_m.metrics.pearson_r.clone(),
        shuffled_r: control_m.metrics.pearson_r.clone(),
        ridge_r: ridge_m.metrics.pearson_r.clone(),
        ceiling_r: ceiling.map(|(_, m, _)| m.metrics.pearson_r).unwrap_or_default(),
        notes,
    };
    write_report(&opts.out, &report)?;
    Ok(opts.out.join("report.md"))
}

/// The noise-free MEG of each evaluated window, cleaned with the shards' `[preprocess]`.
fn noise_ceiling_windows(dir: &Path, meta: &ShardMeta, keys: &[WindowKey], out: &Path) -> Result<Array3<f32>> {
    let params: serde_json::Value = serde_json::from_str(&meta.params_json).context("the shards' parameters are not JSON")?;
    let pre: PreprocessConfig = serde_json::from_value(params["preprocess"].clone()).context("the shards' parameters have no [preprocess] table")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(noise_free_windows(dir, &pre, &meta.meg_channels, meta.window, keys, out)?)
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
