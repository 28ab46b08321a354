//! Shards: windows as Parquet files that pyarrow, polars and Hugging Face `datasets` read as
//! they are, plus the dataset card (`README.md`) the Hub reads.
//!
//! ## Layout on disk
//!
//! ```text
//! OUT/README.md                                   dataset card (write_dataset_card)
//! OUT/data/train-00000-of-00003.parquet           shards (write_split_shards), the
//! OUT/data/validation-00000-of-00001.parquet      Hub's `{split}-{k:05}-of-{n:05}` names
//! ```
//!
//! The DAG writes one Parquet file per run first (`write_run_file`, same schema), in
//! parallel; a global stage then concatenates a split's run files, in the order given, into
//! shards of bounded size. Readers never see the per-run files.
//!
//! ## Row schema (one row = one window of one run)
//!
//! | column | Arrow type (as pyarrow reads it) | meaning |
//! |---|---|---|
//! | `subject` | string_view | BIDS subject label |
//! | `session`, `task`, `run` | string_view, nullable | BIDS entities (null when absent) |
//! | `window` | uint32 | index of the window within its run |
//! | `onset` | float64 | window start in seconds from the first sample of the run |
//! | `eeg` | large_list<large_list<uint8>> | tokens, channels × time (`n_eeg` × `window`) |
//! | `meg` | large_list<large_list<uint8>> | tokens, channels × time (`n_meg` × `window`) |
//! | `eeg_lo`, `eeg_hi` | large_list<float32> | per-channel clamps of the tokenizer (`n_eeg`) |
//! | `meg_lo`, `meg_hi` | large_list<float32> | per-channel clamps of the tokenizer (`n_meg`) |
//!
//! Continuous shards (`kind = continuous`) store `eeg`/`meg` as
//! large_list<large_list<float32>> in physical units (V, T, T/m) and have no lo/hi columns.
//! The lo/hi columns repeat the tokenizer's clamps on every row so that a row is
//! self-contained for `datasets` users who never see the file metadata; they cost ~3 % of a
//! row before compression and almost nothing after (zstd sees the repetition). Nested lists,
//! not fixed-size arrays, because every reader maps them without extension types
//! (`datasets` gives `List(List(Value('uint8')))`, `with_format("numpy")` a 2-D array —
//! of int64, as `datasets`' numpy formatter widens integers).
//!
//! polars 0.55's Rust writer always records its own view types in `ARROW:schema`, so
//! pyarrow reads the string columns as `string_view` (pyarrow ≥ 16) and
//! `load_dataset("parquet", data_files=...)` gives `Value('string_view')` and `LargeList`
//! features. polars has no option to write `large_string` from Rust, and it always adds that
//! key. (A `huggingface` key with other features would not help: `datasets` 5 uses it only
//! where it matches the file's Arrow types.) The card declares the standard `string` and
//! `List` features, so the Hub and `load_dataset(OUT)` cast to those.
//!
//! ## File metadata (Parquet key-value metadata, every file, per-run files included)
//!
//! | key | value |
//! |---|---|
//! | `brainformer.format` | `"1"`, the layout version |
//! | `brainformer.kind` | `tokens` or `continuous` |
//! | `brainformer.eeg_channels`, `brainformer.meg_channels` | JSON arrays of channel names, in row order |
//! | `brainformer.sfreq` | JSON number, Hz |
//! | `brainformer.window` | JSON integer, samples per window |
//! | `brainformer.params` | the effective configuration that produced the data (opaque text, JSON) |
//! | `brainformer.tokenizer` | the tokenizer JSON (`tokenizer::Tokenizer`), tokens only |
//!
//! polars 0.55 writes these through `ParquetWriter::with_key_value_metadata`
//! (`KeyValueMetadata::from_static`); it adds its own `ARROW:schema` key, which pyarrow uses
//! to restore the exact Arrow types.
//!
//! ## Choices
//!
//! - **Compression**: zstd at its default level 3: every reader we target has it, it decodes
//!   fast and packs tokens well (random-walk test tokens: 46 MB of u8 → 33 MB on disk, the
//!   Parquet INT32 widening of u8 included). Data pages of 1 MiB.
//! - **Row groups**: a fixed number of rows per group, computed from the schema alone so that
//!   a group is about 64 MiB of uncompressed Arrow data ([`ShardMeta::rows_per_group`]; ~650
//!   windows for 70 + 306 channels × 256 tokens). A streaming reader (`datasets` streaming,
//!   `pyarrow.ParquetFile.iter_batches`, the Hub viewer) holds one row group at a time, so
//!   this bounds its memory, while staying large enough that per-group metadata and page
//!   headers are negligible. Fixing the row count rather than measuring bytes keeps the
//!   layout independent of the data and of how the input was chunked.
//! - **Shard size**: `n = ceil(estimated bytes / max_shard_bytes)` shards with rows split
//!   evenly (`k·N/n`); the estimate is the compressed size of the per-run files (same codec,
//!   same encodings), so shards come out close to, and usually just under, the limit
//!   ([`DEFAULT_MAX_SHARD_BYTES`] = 256 MiB, below the Hub's recommended 500 MB).
//! - **Memory**: shards are written row group by row group, reading the run files in slices
//!   of at most one row group: about two row groups are in memory at any time.
//! - **Determinism**: same inputs → byte-identical files. Every option is set explicitly;
//!   polars writes no timestamps (its `created_by` is the constant `Polars`); the row groups
//!   are cut at fixed row counts from single-chunk frames; a group's pages are polars' own,
//!   encoded and compressed in parallel and written in column and page order (`encode.rs`),
//!   so no thread count changes a byte.
//! - **Atomicity**: every file is written to a hidden temporary sibling and renamed
//!   (`fsutil::write_atomic_with`); the `data/{split}-*` glob never matches a temporary file.
//!   Shards of the split from an earlier run with another `n` are removed after the new ones
//!   are in place.

/// The noise ceiling's reference, cut at the shards' windows (bf-eval).
pub mod noise_free;
/// A row group's pages encoded and compressed in parallel, as polars writes them.
mod encode;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenize::Tokenizer;

/// Value of `brainformer.format`.
pub const FORMAT_VERSION: &str = "1";
/// Default bound on a shard's size (estimated, see the module docs).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 256 << 20;
/// Target uncompressed Arrow size of a row group.
pub const ROW_GROUP_TARGET_BYTES: usize = 64 << 20;

pub const KEY_FORMAT: &str = "brainformer.format";
pub const KEY_KIND: &str = "brainformer.kind";
pub const KEY_EEG_CHANNELS: &str = "brainformer.eeg_channels";
pub const KEY_MEG_CHANNELS: &str = "brainformer.meg_channels";
pub const KEY_SFREQ: &str = "brainformer.sfreq";
pub const KEY_WINDOW: &str = "brainformer.window";
pub const KEY_PARAMS: &str = "brainformer.params";
pub const KEY_TOKENIZER: &str = "brainformer.tokenizer";

/// What the shards hold: µ-law tokens or physical values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardKind {
    Tokens,
    Continuous,
}

impl ShardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardKind::Tokens => "tokens",
            ShardKind::Continuous => "continuous",
        }
    }
    pub fn parse(s: &str) -> Option<ShardKind> {
        match s {
            "tokens" => Some(ShardKind::Tokens),
            "continuous" => Some(ShardKind::Continuous),
            _ => None,
        }
    }
}

/// One modality of one window, channel-major (`[channel][time]`, `channels × window` values).
#[derive(Clone, Debug, PartialEq)]
pub enum WindowData {
    Tokens(Vec<u8>),
    Continuous(Vec<f32>),
}

impl WindowData {
    pub fn len(&self) -> usize {
        match self {
            WindowData::Tokens(v) => v.len(),
            WindowData::Continuous(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn kind(&self) -> ShardKind {
        match self {
            WindowData::Tokens(_) => ShardKind::Tokens,
            WindowData::Continuous(_) => ShardKind::Continuous,
        }
    }
}

/// One row: one window of one run. The lo/hi columns are not here: they come from the
/// tokenizer in [`ShardMeta`], so they cannot disagree with it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRow {
    pub subject: String,
    pub session: Option<String>,
    pub task: Option<String>,
    pub run: Option<String>,
    /// Index of the window within its run.
    pub window: u32,
    /// Start of the window in seconds from the run's first sample.
    pub onset: f64,
    pub eeg: WindowData,
    pub meg: WindowData,
}

/// What every file of a dataset shares, written into each file's key-value metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardMeta {
    pub eeg_channels: Vec<String>,
    pub meg_channels: Vec<String>,
    /// Sampling rate of the windows, Hz.
    pub sfreq: f64,
    /// Samples per window.
    pub window: usize,
    pub kind: ShardKind,
    /// The effective configuration (JSON text, stored as given).
    pub params_json: String,
    /// Tokens only: one tokenizer over `eeg_channels` then `meg_channels`
    /// (`Tokenizer::concat` joins separate EEG and MEG fits).
    pub tokenizer: Option<Tokenizer>,
}

impl ShardMeta {
    pub fn n_eeg(&self) -> usize {
        self.eeg_channels.len()
    }
    pub fn n_meg(&self) -> usize {
        self.meg_channels.len()
    }

    /// Checks that the parts agree: a tokenizer exactly for tokens, over eeg ++ meg channels.
    pub fn validate(&self, what: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::request(what, m));
        if self.window == 0 || !(self.sfreq > 0.0 && self.sfreq.is_finite()) {
            return bad(format!("shard metadata: window {} and sfreq {} must be positive", self.window, self.sfreq));
        }
        match (self.kind, &self.tokenizer) {
            (ShardKind::Tokens, None) => return bad("shard metadata: token shards need a tokenizer".into()),
            (ShardKind::Continuous, Some(_)) => return bad("shard metadata: continuous shards carry no tokenizer".into()),
            (ShardKind::Tokens, Some(t)) => {
                t.validate(what)?;
                let expected: Vec<&String> = self.eeg_channels.iter().chain(&self.meg_channels).collect();
                if t.channels.iter().collect::<Vec<_>>() != expected {
                    return bad("shard metadata: the tokenizer's channels are not the EEG then MEG channels".into());
                }
            }
            (ShardKind::Continuous, None) => {}
        }
        Ok(())
    }

    /// The key-value pairs written into every file (module docs), in a fixed order.
    pub fn key_value_pairs(&self) -> Vec<(String, String)> {
        let mut kv = vec![
            (KEY_FORMAT.to_string(), FORMAT_VERSION.to_string()),
            (KEY_KIND.to_string(), self.kind.as_str().to_string()),
            (KEY_EEG_CHANNELS.to_string(), json(&self.eeg_channels)),
            (KEY_MEG_CHANNELS.to_string(), json(&self.meg_channels)),
            (KEY_SFREQ.to_string(), json(&self.sfreq)),
            (KEY_WINDOW.to_string(), json(&self.window)),
            (KEY_PARAMS.to_string(), self.params_json.clone()),
        ];
        if let Some(t) = &self.tokenizer {
            kv.push((KEY_TOKENIZER.to_string(), t.to_json()));
        }
        kv
    }

    /// Parses the pairs written by [`ShardMeta::key_value_pairs`] (other keys are ignored).
    pub fn from_key_value_pairs(kv: &[(String, String)], path: &Path) -> Result<ShardMeta> {
        let get = |k: &str| {
            kv.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| Error::format(path, "Brainformer shard", format!("no `{k}` key in the Parquet metadata")))
        };
        let parse_err = |k: &str, e: String| Error::format(path, "Brainformer shard", format!("metadata `{k}`: {e}"));
        let format = get(KEY_FORMAT)?;
        if format != FORMAT_VERSION {
            return Err(Error::unsupported(path, "Brainformer shard", format!("layout version {format} (this build reads {FORMAT_VERSION})")));
        }
        let kind = ShardKind::parse(get(KEY_KIND)?).ok_or_else(|| parse_err(KEY_KIND, "not tokens or continuous".into()))?;
        let eeg_channels = serde_json::from_str(get(KEY_EEG_CHANNELS)?).map_err(|e| parse_err(KEY_EEG_CHANNELS, e.to_string()))?;
        let meg_channels = serde_json::from_str(get(KEY_MEG_CHANNELS)?).map_err(|e| parse_err(KEY_MEG_CHANNELS, e.to_string()))?;
        let sfreq = serde_json::from_str(get(KEY_SFREQ)?).map_err(|e| parse_err(KEY_SFREQ, e.to_string()))?;
        let window = serde_json::from_str(get(KEY_WINDOW)?).map_err(|e| parse_err(KEY_WINDOW, e.to_string()))?;
        let params_json = get(KEY_PARAMS)?.to_string();
        let tokenizer = match kv.iter().find(|(k, _)| k == KEY_TOKENIZER) {
            Some((_, v)) => Some(Tokenizer::from_json(v, path)?),
            None => None,
        };
        let meta = ShardMeta { eeg_channels, meg_channels, sfreq, window, kind, params_json, tokenizer };
        meta.validate(path)?;
        Ok(meta)
    }

    /// Reads the metadata of a shard or per-run file.
    pub fn read(path: &Path) -> Result<ShardMeta> {
        ShardMeta::from_key_value_pairs(&read_key_value_metadata(path)?, path)
    }

    /// Uncompressed Arrow bytes of one row (values, offsets, lo/hi, identifiers).
    pub fn row_bytes_estimate(&self) -> usize {
        let ch = self.n_eeg() + self.n_meg();
        let value = match self.kind {
            ShardKind::Tokens => 1,
            ShardKind::Continuous => 4,
        };
        let lohi = match self.kind {
            ShardKind::Tokens => 2 * (4 * ch + 2 * 8),
            ShardKind::Continuous => 0,
        };
        ch * self.window * value + ch * 8 + 2 * 8 + lohi + 64
    }

    /// Rows per row group: `ROW_GROUP_TARGET_BYTES / row_bytes_estimate`, at least 1.
    pub fn rows_per_group(&self) -> usize {
        (ROW_GROUP_TARGET_BYTES / self.row_bytes_estimate().max(1)).max(1)
    }

    /// The polars schema of the files (column order is part of the layout).
    pub fn schema(&self) -> Schema {
        let nested = |inner: DataType| DataType::List(Box::new(DataType::List(Box::new(inner))));
        let mut fields = vec![
            Field::new("subject".into(), DataType::String),
            Field::new("session".into(), DataType::String),
            Field::new("task".into(), DataType::String),
            Field::new("run".into(), DataType::String),
            Field::new("window".into(), DataType::UInt32),
            Field::new("onset".into(), DataType::Float64),
        ];
        match self.kind {
            ShardKind::Tokens => {
                fields.push(Field::new("eeg".into(), nested(DataType::UInt8)));
                fields.push(Field::new("meg".into(), nested(DataType::UInt8)));
                for name in ["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"] {
                    fields.push(Field::new(name.into(), DataType::List(Box::new(DataType::Float32))));
                }
            }
            ShardKind::Continuous => {
                fields.push(Field::new("eeg".into(), nested(DataType::Float32)));
                fields.push(Field::new("meg".into(), nested(DataType::Float32)));
            }
        }
        Schema::from_iter(fields)
    }
}

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata values always serialize")
}

/// The key-value metadata of a Parquet file, in file order (polars' `ARROW:schema` included).
pub fn read_key_value_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = ParquetReader::new(file);
    let md = reader.get_metadata().map_err(|e| pq_err(path, e))?;
    Ok(md
        .key_value_metadata
        .iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect())
}

fn pq_err(path: &Path, e: PolarsError) -> Error {
    Error::format(path, "Parquet", e.to_string())
}

// ---------------------------------------------------------------------------------------
// Building frames from rows.

fn nested_column<T>(name: &str, rows: &[&[T::Native]], n_ch: usize, window: usize, dtype: DataType) -> PolarsResult<Column>
where
    T: PolarsNumericType,
{
    let inner_dtype = DataType::List(Box::new(dtype.clone()));
    if rows.is_empty() {
        return Ok(Column::new_empty(name.into(), &DataType::List(Box::new(inner_dtype))));
    }
    let mut outer = polars::chunked_array::builder::get_list_builder(&inner_dtype, rows.len() * n_ch, rows.len(), name.into());
    for r in rows {
        let mut inner = ListPrimitiveChunkedBuilder::<T>::new("".into(), n_ch, n_ch * window, dtype.clone());
        for c in 0..n_ch {
            inner.append_slice(&r[c * window..(c + 1) * window]);
        }
        outer.append_series(&inner.finish().into_series())?;
    }
    Ok(outer.finish().into_series().into_column())
}

fn repeated_f32_list(name: &str, values: &[f32], n_rows: usize) -> Column {
    let mut b = ListPrimitiveChunkedBuilder::<Float32Type>::new(name.into(), n_rows, n_rows * values.len(), DataType::Float32);
    for _ in 0..n_rows {
        b.append_slice(values);
    }
    let s = b.finish().into_series();
    if n_rows == 0 {
        return Column::new_empty(name.into(), &DataType::List(Box::new(DataType::Float32)));
    }
    s.into_column()
}

/// The rows as a single-chunk DataFrame with [`ShardMeta::schema`], after checking them.
pub fn rows_frame(rows: &[WindowRow], meta: &ShardMeta, what: &Path) -> Result<DataFrame> {
    let (n_eeg, n_meg, win) = (meta.n_eeg(), meta.n_meg(), meta.window);
    for (i, r) in rows.iter().enumerate() {
        for (name, d, n) in [("eeg", &r.eeg, n_eeg), ("meg", &r.meg, n_meg)] {
            if d.kind() != meta.kind {
                return Err(Error::request(what, format!("row {i}: {name} holds {} data, the shard is {}", d.kind().as_str(), meta.kind.as_str())));
            }
            if d.len() != n * win {
                return Err(Error::request(what, format!("row {i}: {name} has {} values, expected {n} channels × {win}", d.len())));
            }
        }
        if !r.onset.is_finite() {
            return Err(Error::request(what, format!("row {i}: onset {} is not finite", r.onset)));
        }
    }
    let e = |err: PolarsError| Error::request(what, format!("cannot build the shard frame: {err}"));
    let mut cols = vec![
        Column::new("subject".into(), rows.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>()),
        Column::new("session".into(), rows.iter().map(|r| r.session.as_deref()).collect::<Vec<_>>()),
        Column::new("task".into(), rows.iter().map(|r| r.task.as_deref()).collect::<Vec<_>>()),
        Column::new("run".into(), rows.iter().map(|r| r.run.as_deref()).collect::<Vec<_>>()),
        Column::new("window".into(), rows.iter().map(|r| r.window).collect::<Vec<_>>()),
        Column::new("onset".into(), rows.iter().map(|r| r.onset).collect::<Vec<_>>()),
    ];
    match meta.kind {
        ShardKind::Tokens => {
            let pick = |f: fn(&WindowRow) -> &WindowData| -> Vec<&[u8]> {
                rows.iter()
                    .map(|r| match f(r) {
                        WindowData::Tokens(v) => v.as_slice(),
                        WindowData::Continuous(_) => unreachable!("checked above"),
                    })
                    .collect()
            };
            cols.push(nested_column::<UInt8Type>("eeg", &pick(|r| &r.eeg), n_eeg, win, DataType::UInt8).map_err(e)?);
            cols.push(nested_column::<UInt8Type>("meg", &pick(|r| &r.meg), n_meg, win, DataType::UInt8).map_err(e)?);
            let t = meta.tokenizer.as_ref().expect("validated: token shards have a tokenizer");
            let (lo, hi) = (&t.lo, &t.hi);
            cols.push(repeated_f32_list("eeg_lo", &lo[..n_eeg], rows.len()));
            cols.push(repeated_f32_list("eeg_hi", &hi[..n_eeg], rows.len()));
            cols.push(repeated_f32_list("meg_lo", &lo[n_eeg..], rows.len()));
            cols.push(repeated_f32_list("meg_hi", &hi[n_eeg..], rows.len()));
        }
        ShardKind::Continuous => {
            let pick = |f: fn(&WindowRow) -> &WindowData| -> Vec<&[f32]> {
                rows.iter()
                    .map(|r| match f(r) {
                        WindowData::Continuous(v) => v.as_slice(),
                        WindowData::Tokens(_) => unreachable!("checked above"),
                    })
                    .collect()
            };
            cols.push(nested_column::<Float32Type>("eeg", &pick(|r| &r.eeg), n_eeg, win, DataType::Float32).map_err(e)?);
            cols.push(nested_column::<Float32Type>("meg", &pick(|r| &r.meg), n_meg, win, DataType::Float32).map_err(e)?);
        }
    }
    let mut df = DataFrame::new(rows.len(), cols).map_err(e)?;
    df.rechunk_mut();
    check_schema(&df, meta, what)?;
    Ok(df)
}

fn check_schema(df: &DataFrame, meta: &ShardMeta, what: &Path) -> Result<()> {
    let want = meta.schema();
    // Schema equality ignores order; the layout does not.
    let got: Vec<_> = df.schema().iter().collect();
    if got != want.iter().collect::<Vec<_>>() {
        return Err(Error::format(
            what,
            "Brainformer shard",
            format!("columns {:?} do not match the expected {:?}", df.schema(), want),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Writes frames into one Parquet file as row groups of exactly `rows_per_group` rows (the
/// last one shorter), whatever the chunking of the frames pushed.
struct GroupWriter<'a> {
    writer: polars::io::parquet::write::BatchedWriter<&'a mut File>,
    encoder: encode::PageEncoder,
    pending: Option<DataFrame>,
    rows_per_group: usize,
    path: &'a Path,
}

impl<'a> GroupWriter<'a> {
    fn new(file: &'a mut File, path: &'a Path, meta: &ShardMeta) -> Result<Self> {
        let schema = meta.schema();
        let mut writer = ParquetWriter::new(file)
            .with_compression(encode::COMPRESSION)
            .with_statistics(encode::statistics())
            .with_data_page_size(Some(encode::DATA_PAGE_SIZE))
            .with_row_group_size(Some(meta.rows_per_group()))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(meta.key_value_pairs())))
            .batched(&schema)
            .map_err(|e| pq_err(path, e))?;
        let encoder = encode::PageEncoder::new(&schema, writer.parquet_schema().fields().to_vec());
        Ok(GroupWriter { writer, encoder, pending: None, rows_per_group: meta.rows_per_group(), path })
    }

    fn push(&mut self, df: DataFrame) -> Result<()> {
        let mut acc = match self.pending.take() {
            None => df,
            Some(mut p) => {
                p.vstack_mut_owned(df).map_err(|e| pq_err(self.path, e))?;
                p
            }
        };
        while acc.height() >= self.rows_per_group {
            let group = acc.slice(0, self.rows_per_group);
            acc = acc.slice(self.rows_per_group as i64, acc.height() - self.rows_per_group);
            self.write_group(group)?;
        }
        if acc.height() > 0 {
            self.pending = Some(acc);
        }
        Ok(())
    }

    fn write_group(&mut self, mut group: DataFrame) -> Result<()> {
        group.rechunk_mut();
        let pages = self.encoder.row_group(&group).map_err(|e| pq_err(self.path, e))?;
        self.writer.write_row_group(group.height() as u64, &pages).map_err(|e| pq_err(self.path, e))
    }

    fn finish(mut self) -> Result<()> {
        if let Some(rest) = self.pending.take() {
            self.write_group(rest)?;
        }
        self.writer.finish().map_err(|e| pq_err(self.path, e))?;
        Ok(())
    }
}

/// Writes one per-run file (rows in the order given), atomically.
pub fn write_run_file(path: &Path, rows: &[WindowRow], meta: &ShardMeta) -> Result<()> {
    meta.validate(path)?;
    let df = rows_frame(rows, meta, path)?;
    crate::fsutil::write_atomic_with(path, |f| {
        let mut w = GroupWriter::new(f, path, meta)?;
        w.push(df)?;
        w.finish()
    })
}

/// `{split}-{k:05}-of-{n:05}.parquet` (`k` from 0), the Hub's shard names.
pub fn shard_name(split: &str, k: usize, n: usize) -> String {
    format!("{split}-{k:05}-of-{n:05}.parquet")
}

/// `Some((k, n))` when `name` is a shard name of `split`.
fn parse_shard_name(name: &str, split: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix(split)?.strip_prefix('-')?.strip_suffix(".parquet")?;
    let (k, n) = rest.split_once("-of-")?;
    let num = |s: &str| (s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten();
    Some((num(k)?, num(n)?))
}

struct RunFile<'a> {
    path: &'a Path,
    rows: usize,
    row_groups: usize,
}

/// Concatenates `run_files` (per-run files written with the same `meta`), in the order given,
/// into `out_dir/data/{split}-{k:05}-of-{n:05}.parquet`; returns the shard paths in order.
/// Every run file's `brainformer.*` metadata must equal `meta`'s (same channels, parameters
/// and tokenizer); a file that differs is an error naming it and the differing keys.
///
/// `n = ceil(B / max_shard_bytes)` (at least 1, at most the number of rows) where `B` is the
/// run files' compressed data size; shard `k` holds rows `k·N/n .. (k+1)·N/n`. Each shard is
/// written atomically; shards of `split` with another name (an earlier `n`) are removed
/// afterwards. A split without rows gets one shard with the schema and no rows.
pub fn write_split_shards(
    out_dir: &Path,
    split: &str,
    run_files: &[PathBuf],
    max_shard_bytes: u64,
    meta: &ShardMeta,
) -> Result<Vec<PathBuf>> {
    split_shards(out_dir, split, run_files, max_shard_bytes, meta, true)
}

/// [`write_split_shards`]; `copy_whole_runs`: a shard that is exactly one whole run file of
/// one row group is that file's bytes, copied. Re-encoding it writes the same bytes (same
/// writer and options, one unsliced frame both times; tested), at the cost of decoding and
/// encoding every value again. Not with several row groups: the run file's last group was
/// written from a slice of its frame, which polars encodes with other page bytes than the
/// same rows read back (same values), and the shards must keep their bytes.
fn split_shards(
    out_dir: &Path,
    split: &str,
    run_files: &[PathBuf],
    max_shard_bytes: u64,
    meta: &ShardMeta,
    copy_whole_runs: bool,
) -> Result<Vec<PathBuf>> {
    let data_dir = out_dir.join("data");
    meta.validate(&data_dir)?;
    if split.is_empty() || split.contains(['/', '\\']) || split.starts_with('.') {
        return Err(Error::request(&data_dir, format!("invalid split name {split:?}")));
    }
    // Plan from the footers only.
    let want_kv = meta.key_value_pairs();
    let mut runs = Vec::with_capacity(run_files.len());
    let mut total_bytes: u64 = 0;
    for path in run_files {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = ParquetReader::new(file);
        let md = reader.get_metadata().map_err(|e| pq_err(path, e))?;
        let kv: Vec<(String, String)> = md
            .key_value_metadata
            .iter()
            .flatten()
            .filter(|kv| kv.key.starts_with("brainformer."))
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        if kv != want_kv {
            let differing: Vec<&str> = want_kv
                .iter()
                .filter(|(k, v)| !kv.iter().any(|(k2, v2)| k2 == k && v2 == v))
                .map(|(k, _)| k.as_str())
                .collect();
            return Err(Error::request(path, format!("run file was written with other shard metadata (differs in {differing:?})")));
        }
        total_bytes += md.row_groups.iter().map(|rg| rg.compressed_size() as u64).sum::<u64>();
        runs.push(RunFile { path, rows: md.num_rows, row_groups: md.row_groups.len() });
    }
    let total_rows: usize = runs.iter().map(|r| r.rows).sum();
    let n = if total_rows == 0 {
        1
    } else {
        (total_bytes.div_ceil(max_shard_bytes.max(1)) as usize).clamp(1, total_rows)
    };
    let bounds: Vec<usize> = (0..=n).map(|k| ((k as u128 * total_rows as u128) / n as u128) as usize).collect();

    std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
    let rows_per_group = meta.rows_per_group();
    let mut written = Vec::with_capacity(n);
    let (mut run_idx, mut run_off) = (0usize, 0usize);
    for k in 0..n {
        let path = data_dir.join(shard_name(split, k, n));
        let mut remaining = bounds[k + 1] - bounds[k];
        while remaining > 0 && runs[run_idx].rows == run_off {
            run_idx += 1;
            run_off = 0;
        }
        if copy_whole_runs && remaining > 0 && run_off == 0 && runs[run_idx].rows == remaining && runs[run_idx].row_groups == 1 {
            let run = &runs[run_idx];
            let empty = ParquetReader::new(File::open(run.path).map_err(|e| Error::io(run.path, e))?)
                .with_slice(Some((0, 0)))
                .finish()
                .map_err(|e| pq_err(run.path, e))?;
            check_schema(&empty, meta, run.path)?;
            let mut src = File::open(run.path).map_err(|e| Error::io(run.path, e))?;
            crate::fsutil::write_atomic_with(&path, |f| std::io::copy(&mut src, f).map(|_| ()).map_err(|e| Error::io(&path, e)))?;
            run_off = run.rows;
            written.push(path);
            continue;
        }
        crate::fsutil::write_atomic_with(&path, |f| {
            let mut w = GroupWriter::new(f, &path, meta)?;
            while remaining > 0 {
                while runs[run_idx].rows == run_off {
                    run_idx += 1;
                    run_off = 0;
                }
                let run = &runs[run_idx];
                let take = remaining.min(run.rows - run_off).min(rows_per_group);
                let file = File::open(run.path).map_err(|e| Error::io(run.path, e))?;
                let df = ParquetReader::new(file)
                    .with_slice(Some((run_off, take)))
                    .finish()
                    .map_err(|e| pq_err(run.path, e))?;
                if df.height() != take {
                    return Err(Error::format(run.path, "Parquet", format!("read {} rows at {run_off}, expected {take}", df.height())));
                }
                check_schema(&df, meta, run.path)?;
                w.push(df)?;
                run_off += take;
                remaining -= take;
            }
            w.finish()
        })?;
        written.push(path);
    }
    remove_stale_shards(&data_dir, split, &written)?;
    Ok(written)
}

/// Removes `data_dir/{split}-ddddd-of-ddddd.parquet` files not in `keep`.
fn remove_stale_shards(data_dir: &Path, split: &str, keep: &[PathBuf]) -> Result<()> {
    let entries = std::fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(data_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if parse_shard_name(name, split).is_some() && !keep.iter().any(|p| p.file_name().and_then(|s| s.to_str()) == Some(name)) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading back (tests, checks, small consumers; the whole file is loaded).

fn str_column(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<String>>> {
    let c = df.column(name).map_err(|e| pq_err(path, e))?;
    let ca = c.as_materialized_series().str().map_err(|e| pq_err(path, e))?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

/// The leaf values of a `List<List<T>>` column, after checking every row is
/// `n_ch` lists of `window` values without nulls.
fn nested_values(df: &DataFrame, name: &str, n_ch: usize, window: usize, path: &Path) -> Result<Series> {
    let s = df.column(name).map_err(|e| pq_err(path, e))?.as_materialized_series().rechunk();
    let bad = |m: String| Error::format(path, "Brainformer shard", format!("column {name}: {m}"));
    let (offsets, validities) = s.list_offsets_and_validities_recursive();
    if offsets.len() != 2 || validities.iter().any(|v| v.as_ref().is_some_and(|b| b.unset_bits() > 0)) {
        return Err(bad("not a List<List<_>> without nulls".into()));
    }
    // The outer offsets index the inner lists, which index the leaf values; either may start
    // past 0 in a sliced array.
    let outer = offsets[0].as_slice();
    let (j0, j1) = (outer[0] as usize, outer[outer.len() - 1] as usize);
    let inner = &offsets[1].as_slice()[j0..=j1];
    let uniform = |o: &[i64], step: usize| o.windows(2).all(|w| (w[1] - w[0]) as usize == step);
    if !uniform(outer, n_ch) || !uniform(inner, window) {
        return Err(bad(format!("a row is not {n_ch} × {window}")));
    }
    let leaf = s.get_leaf_array().slice(inner[0], df.height() * n_ch * window).rechunk();
    if leaf.null_count() > 0 {
        return Err(bad("null values".into()));
    }
    Ok(leaf)
}

/// Reads a shard or per-run file back into rows (and its metadata). Loads the whole file.
pub fn read_rows(path: &Path) -> Result<(ShardMeta, Vec<WindowRow>)> {
    let meta = ShardMeta::read(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().map_err(|e| pq_err(path, e))?;
    check_schema(&df, &meta, path)?;
    let n = df.height();
    let (subject, session, task, run) =
        (str_column(&df, "subject", path)?, str_column(&df, "session", path)?, str_column(&df, "task", path)?, str_column(&df, "run", path)?);
    let num = |name: &str| df.column(name).map(|c| c.as_materialized_series().clone()).map_err(|e| pq_err(path, e));
    let (window, onset) = (num("window")?, num("onset")?);
    if window.null_count() + onset.null_count() > 0 {
        return Err(Error::format(path, "Brainformer shard", "null window index or onset"));
    }
    let window: Vec<u32> = window.u32().map_err(|e| pq_err(path, e))?.into_no_null_iter().collect();
    let onset: Vec<f64> = onset.f64().map_err(|e| pq_err(path, e))?.into_no_null_iter().collect();
    let (ne, nm, w) = (meta.n_eeg(), meta.n_meg(), meta.window);
    let eeg = nested_values(&df, "eeg", ne, w, path)?;
    let meg = nested_values(&df, "meg", nm, w, path)?;
    let split = |s: &Series, per: usize| -> Result<Vec<WindowData>> {
        Ok(match meta.kind {
            ShardKind::Tokens => {
                let v = s.u8().and_then(|ca| ca.cont_slice()).map_err(|e| pq_err(path, e))?;
                (0..n).map(|i| WindowData::Tokens(v[i * per..(i + 1) * per].to_vec())).collect()
            }
            ShardKind::Continuous => {
                let v = s.f32().and_then(|ca| ca.cont_slice()).map_err(|e| pq_err(path, e))?;
                (0..n).map(|i| WindowData::Continuous(v[i * per..(i + 1) * per].to_vec())).collect()
            }
        })
    };
    let (eeg, meg) = (split(&eeg, ne * w)?, split(&meg, nm * w)?);
    let mut rows = Vec::with_capacity(n);
    for (i, (e, m)) in eeg.into_iter().zip(meg).enumerate() {
        rows.push(WindowRow {
            subject: subject[i].clone().ok_or_else(|| Error::format(path, "Brainformer shard", format!("row {i}: null subject")))?,
            session: session[i].clone(),
            task: task[i].clone(),
            run: run[i].clone(),
            window: window[i],
            onset: onset[i],
            eeg: e,
            meg: m,
        });
    }
    Ok((meta, rows))
}

/// Per-channel scale of continuous windows (EEG channels, then MEG): the 99th percentile of
/// |x| over the first `max_windows` rows of `files` (the rows of token files count but add no
/// values), or 1 where that is 0 or not finite. The regression model divides its inputs and
/// targets by it so that they lie in tanh's range.
pub fn value_scale(meta: &ShardMeta, files: &[PathBuf], max_windows: usize) -> Result<Vec<f32>> {
    let (ne, nm, w) = (meta.n_eeg(), meta.n_meg(), meta.window);
    let mut per_channel: Vec<Vec<f32>> = vec![Vec::new(); ne + nm];
    let mut windows = 0;
    'files: for f in files {
        let (_, rows) = read_rows(f)?;
        for row in rows {
            if let (WindowData::Continuous(e), WindowData::Continuous(m)) = (&row.eeg, &row.meg) {
                for (c, vals) in per_channel.iter_mut().enumerate() {
                    let src = if c < ne { &e[c * w..(c + 1) * w] } else { &m[(c - ne) * w..(c - ne + 1) * w] };
                    vals.extend(src.iter().map(|x| x.abs()));
                }
            }
            windows += 1;
            if windows >= max_windows {
                break 'files;
            }
        }
    }
    Ok(per_channel
        .into_iter()
        .map(|mut v| {
            let q = crate::tokenize::percentile_linear(&mut v, 99.0) as f32;
            if q > 0.0 && q.is_finite() {
                q
            } else {
                1.0
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Dataset card.

/// One split as the card describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitCard {
    /// `train`, `validation` or `test` (the shard name prefix).
    pub name: String,
    /// Number of rows (windows).
    pub rows: u64,
    /// What it holds, e.g. `subjects 01, 02, 05`.
    pub description: String,
}

/// What the dataset card says beyond the shard metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct CardInfo {
    /// The card's title (`pretty_name`).
    pub title: String,
    /// Source dataset id, e.g. `ds000117`.
    pub source_id: String,
    /// Link to the source dataset, e.g. `https://openneuro.org/datasets/ds000117`.
    pub source_url: String,
    /// Hub license id of the source data, which the shards inherit (ds000117: `cc0-1.0`).
    pub license: String,
    /// How to cite the source, if known (Markdown).
    pub citation: Option<String>,
    /// The splits that have shards, in order.
    pub splits: Vec<SplitCard>,
    /// How rows were assigned to splits (prose: held-out subjects or runs, seed, fractions).
    pub split_rule: String,
    /// Every parameter, as text (the `brainformer.toml` or the JSON of `params_json`).
    pub params_text: String,
    /// Language of `params_text` for the code fence: `toml` or `json`.
    pub params_format: String,
    pub meta: ShardMeta,
}

fn yq(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("strings serialize")
}

/// A fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for ch in text.chars() {
        run = if ch == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// The `datasets` features of the rows: `(column, leaf dtype, list depth)`.
fn hf_features(meta: &ShardMeta) -> Vec<(&'static str, &'static str, usize)> {
    let leaf = match meta.kind {
        ShardKind::Tokens => "uint8",
        ShardKind::Continuous => "float32",
    };
    let mut f = vec![
        ("subject", "string", 0),
        ("session", "string", 0),
        ("task", "string", 0),
        ("run", "string", 0),
        ("window", "uint32", 0),
        ("onset", "float64", 0),
        ("eeg", leaf, 2),
        ("meg", leaf, 2),
    ];
    if meta.kind == ShardKind::Tokens {
        f.extend(["eeg_lo", "eeg_hi", "meg_lo", "meg_hi"].map(|n| (n, "float32", 1)));
    }
    f
}

/// The `dataset_info.features` YAML lines. Lists use the `sequence:` spelling, which every
/// `datasets` version reads (recent ones map it to `List`).
fn features_yaml(meta: &ShardMeta) -> String {
    let mut y = String::new();
    for (name, dtype, depth) in hf_features(meta) {
        let _ = match depth {
            0 => writeln!(y, "  - name: {name}\n    dtype: {dtype}"),
            1 => writeln!(y, "  - name: {name}\n    sequence: {dtype}"),
            _ => writeln!(y, "  - name: {name}\n    sequence:\n      sequence: {dtype}"),
        };
    }
    y
}

/// The card's text (see [`write_dataset_card`]).
pub fn dataset_card(card: &CardInfo) -> String {
    let m = &card.meta;
    let mut s = String::new();
    // --- YAML front matter: what the Hub reads.
    s.push_str("---\n");
    let _ = writeln!(s, "license: {}", yq(&card.license));
    let _ = writeln!(s, "pretty_name: {}", yq(&card.title));
    s.push_str("task_categories:\n- time-series-forecasting\n");
    s.push_str("tags:\n- eeg\n- meg\n- neuroscience\n- brain-signals\n- openneuro\n- brainformer\n");
    let _ = writeln!(s, "- {}", yq(&card.source_id));
    s.push_str("configs:\n- config_name: default\n  data_files:\n");
    for sp in &card.splits {
        let _ = writeln!(s, "  - split: {}\n    path: {}", yq(&sp.name), yq(&format!("data/{}-*", sp.name)));
    }
    s.push_str("dataset_info:\n  features:\n");
    s.push_str(&features_yaml(m));
    s.push_str("---\n\n");

    // --- Body.
    let _ = writeln!(s, "# {}\n", card.title);
    let kind_text = match m.kind {
        ShardKind::Tokens => format!(
            "µ-law tokens (u8 levels 0..={})",
            m.tokenizer.as_ref().map(|t| t.levels - 1).unwrap_or(254)
        ),
        ShardKind::Continuous => "continuous values in physical units (V for EEG, T and T/m for MEG), float32".to_string(),
    };
    let _ = writeln!(
        s,
        "Simultaneous EEG and MEG from [{id}]({url}), cut into windows of {w} samples at {sf} Hz \
         ({n_eeg} EEG and {n_meg} MEG channels), as {kind_text}. Made by the Brainformer pipeline \
         for EEG→MEG models; one row is one window of one recording.\n",
        id = card.source_id,
        url = card.source_url,
        w = m.window,
        sf = m.sfreq,
        n_eeg = m.n_eeg(),
        n_meg = m.n_meg(),
    );
    s.push_str("## Source\n\n");
    let _ = writeln!(s, "- Dataset: [{}]({})", card.source_id, card.source_url);
    let _ = writeln!(s, "- License: `{}`, inherited from the source dataset.", card.license);
    if let Some(c) = &card.citation {
        let _ = writeln!(s, "- Citation: {c}");
    }
    s.push('\n');

    s.push_str("## Splits\n\n");
    let _ = writeln!(s, "{}\n", card.split_rule);
    s.push_str("| split | windows | files | holds |\n|---|---:|---|---|\n");
    for sp in &card.splits {
        let _ = writeln!(s, "| {} | {} | `data/{}-*.parquet` | {} |", sp.name, sp.rows, sp.name, sp.description);
    }
    s.push('\n');

    s.push_str("## Row schema\n\n| column | type | meaning |\n|---|---|---|\n");
    s.push_str("| `subject` | string | BIDS subject label |\n");
    s.push_str("| `session`, `task`, `run` | string, nullable | BIDS entities (null when the recording has none) |\n");
    s.push_str("| `window` | uint32 | index of the window within its recording |\n");
    s.push_str("| `onset` | float64 | start of the window, seconds from the recording's first sample |\n");
    let (leaf, unit) = match m.kind {
        ShardKind::Tokens => ("uint8", "tokenizer levels"),
        ShardKind::Continuous => ("float32", "physical units"),
    };
    let _ = writeln!(s, "| `eeg` | list of {n} lists of {w} {leaf} | EEG, channels × time, {unit} |", n = m.n_eeg(), w = m.window);
    let _ = writeln!(s, "| `meg` | list of {n} lists of {w} {leaf} | MEG, channels × time, {unit} |", n = m.n_meg(), w = m.window);
    if m.kind == ShardKind::Tokens {
        let _ = writeln!(s, "| `eeg_lo`, `eeg_hi` | list of {} float32 | per-channel clamps of the tokenizer (EEG) |", m.n_eeg());
        let _ = writeln!(s, "| `meg_lo`, `meg_hi` | list of {} float32 | per-channel clamps of the tokenizer (MEG) |", m.n_meg());
    }
    s.push_str(
        "\nChannel names, the sampling rate, every parameter and the tokenizer are also in each \
         Parquet file's key-value metadata (`brainformer.eeg_channels`, `brainformer.meg_channels`, \
         `brainformer.sfreq`, `brainformer.window`, `brainformer.kind`, `brainformer.params`, \
         `brainformer.tokenizer`; read them with `pyarrow.parquet.read_metadata(path).metadata`).\n\n",
    );

    s.push_str("## Loading\n\n```python\nimport numpy as np\nfrom datasets import load_dataset\n\n");
    s.push_str("ds = load_dataset(\"parquet\", data_files={\n");
    for sp in &card.splits {
        let _ = writeln!(s, "    \"{0}\": \"data/{0}-*.parquet\",", sp.name);
    }
    s.push_str("})\n# or load_dataset(\"<user>/<name>\") from the Hub, or load_dataset(\"<this folder>\"): both use this card\n");
    let first = card.splits.first().map(|sp| sp.name.as_str()).unwrap_or("train");
    let _ = writeln!(
        s,
        "row = ds[\"{first}\"].with_format(\"numpy\")[0]\n\
         row[\"eeg\"].shape  # ({}, {}); {leaf} in the files ({note})\nrow[\"meg\"].shape  # ({}, {})\n```\n",
        m.n_eeg(),
        m.window,
        m.n_meg(),
        m.window,
        note = match m.kind {
            ShardKind::Tokens => "datasets' numpy format widens integers to int64; .astype(np.uint8) is lossless",
            ShardKind::Continuous => "float32 in numpy too",
        },
    );
    s.push_str(
        "pyarrow (`pyarrow.parquet.read_table`) and polars (`polars.read_parquet`) read the files as \
         they are (pyarrow ≥ 16: polars records the string columns as Arrow `string_view`).\n\n",
    );

    if let (ShardKind::Tokens, Some(t)) = (m.kind, &m.tokenizer) {
        let l1 = t.levels - 1;
        let _ = writeln!(
            s,
            "## Undoing the tokenizer\n\n\
             Per channel, values were clamped to `[lo, hi]` (the {p0} and {p1} percentiles of the \
             training split), scaled to `x' = 2 (x − lo)/(hi − lo) − 1`, compressed with µ-law \
             (µ = {mu}) `y = sign(x') ln(1 + µ|x'|)/ln(1 + µ)` and quantized to {levels} levels \
             `k = round((y + 1)/2 · {l1})`. A level decodes to the centre of its cell:\n\n\
             ```text\ny  = (2k − {l1}) / {l1}\nx' = sign(y) · ((1 + µ)^|y| − 1) / µ\nx  = ((1 − x') · lo + (1 + x') · hi) / 2\n```\n\n\
             ```python\nimport numpy as np\n\ndef decode(levels, lo, hi, mu={mu:?}, n_levels={levels}):\n    \
             \"\"\"levels: (channels, time) uint8; lo, hi: (channels,) from the row's *_lo/*_hi columns.\"\"\"\n    \
             l1 = n_levels - 1\n    y = (2.0 * np.asarray(levels, dtype=np.float64) - l1) / l1\n    \
             xp = np.clip(np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu, -1.0, 1.0)\n    \
             lo = np.asarray(lo, dtype=np.float64)[:, None]\n    hi = np.asarray(hi, dtype=np.float64)[:, None]\n    \
             return (((1 - xp) * lo + (1 + xp) * hi) / 2).astype(np.float32)\n\n\
             eeg = decode(row[\"eeg\"], row[\"eeg_lo\"], row[\"eeg_hi\"])  # volts, (channels, time)\n```\n\n\
             The round-trip error of a value `x` inside `[lo, hi]` is at most \
             `(hi − lo)/2 · (1 + µ|x'|) · ((1 + µ)^(1/{l1}) − 1)/µ`; values outside were clipped to the clamps. \
             Models use token id = level + 3 (0 pad, 1 bos, 2 eos).\n",
            p0 = t.clamp_percentiles[0],
            p1 = t.clamp_percentiles[1],
            mu = t.mu,
            levels = t.levels,
        );
    }

    s.push_str("## Parameters\n\nThe configuration that produced these files:\n\n");
    let fence = fence_for(&card.params_text);
    let _ = writeln!(s, "{fence}{}\n{}\n{fence}\n", card.params_format, card.params_text.trim_end());

    s.push_str("## Channels\n\n");
    let _ = writeln!(s, "EEG ({}): {}\n", m.n_eeg(), m.eeg_channels.join(", "));
    let _ = writeln!(s, "MEG ({}): {}", m.n_meg(), m.meg_channels.join(", "));
    s
}

/// Writes `out_dir/README.md`, the Hugging Face dataset card, atomically: YAML front matter
/// with `license`, `task_categories`, `tags`, the `configs` block (one `default` config whose
/// `data_files` are `data/{split}-*` per split) and `dataset_info.features` (so the Hub's
/// viewer and `load_dataset(dir)` know the types); then the source, the split rule, the row
/// schema, how to load the files and how to undo the tokenizer, and every parameter.
pub fn write_dataset_card(out_dir: &Path, card: &CardInfo) -> Result<()> {
    card.meta.validate(out_dir)?;
    crate::fsutil::write_atomic(&out_dir.join("README.md"), dataset_card(card).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: ShardKind, n_eeg: usize, n_meg: usize, window: usize) -> ShardMeta {
        let eeg_channels: Vec<String> = (0..n_eeg).map(|i| format!("EEG{:03}", i + 1)).collect();
        let meg_channels: Vec<String> = (0..n_meg).map(|i| format!("MEG{:04}", i + 1)).collect();
        let tokenizer = (kind == ShardKind::Tokens).then(|| Tokenizer {
            channels: eeg_channels.iter().chain(&meg_channels).cloned().collect(),
            lo: (0..n_eeg + n_meg).map(|i| -(1.0 + i as f32) * 1.25e-6).collect(),
            hi: (0..n_eeg + n_meg).map(|i| (2.0 + i as f32) * 0.5e-6).collect(),
            mu: 255.0,
            levels: 255,
            clamp_percentiles: [0.5, 99.5],
        });
        ShardMeta {
            eeg_channels,
            meg_channels,
            sfreq: 250.0,
            window,
            kind,
            params_json: r#"{"segment":{"window":8,"stride":8},"note":"test"}"#.into(),
            tokenizer,
        }
    }

    fn rows(m: &ShardMeta, subject: &str, run: Option<&str>, n: usize, seed: u32) -> Vec<WindowRow> {
        (0..n)
            .map(|i| {
                let mk = |ch: usize, salt: u32| -> WindowData {
                    let len = ch * m.window;
                    let f = |j: usize| (j as u32).wrapping_mul(2654435761).wrapping_add(seed * 97 + i as u32 * 31 + salt);
                    match m.kind {
                        ShardKind::Tokens => WindowData::Tokens((0..len).map(|j| (f(j) % 255) as u8).collect()),
                        ShardKind::Continuous => WindowData::Continuous((0..len).map(|j| (f(j) % 10007) as f32 * 1e-9 - 5e-6).collect()),
                    }
                };
                WindowRow {
                    subject: subject.into(),
                    session: seed.is_multiple_of(2).then(|| "ses1".into()),
                    task: Some("facerecognition".into()),
                    run: run.map(str::to_string),
                    window: i as u32,
                    onset: i as f64 * m.window as f64 / m.sfreq,
                    eeg: mk(m.n_eeg(), 1),
                    meg: mk(m.n_meg(), 2),
                }
            })
            .collect()
    }

    /// Writes three run files; returns their paths and all rows in order.
    fn write_runs(dir: &Path, m: &ShardMeta) -> (Vec<PathBuf>, Vec<WindowRow>) {
        let mut paths = vec![];
        let mut all = vec![];
        for (i, (sub, run, n)) in [("01", Some("01"), 37), ("01", Some("02"), 0), ("02", None, 53)].into_iter().enumerate() {
            let r = rows(m, sub, run, n, i as u32);
            let p = dir.join(format!("runs/run{i}.parquet"));
            write_run_file(&p, &r, m).unwrap();
            paths.push(p);
            all.extend(r);
        }
        (paths, all)
    }

    fn file_bytes(paths: &[PathBuf]) -> Vec<Vec<u8>> {
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    fn roundtrip(kind: ShardKind) {
        let d = tempfile::tempdir().unwrap();
        let m = meta(kind, 5, 7, 8);
        let (paths, all) = write_runs(d.path(), &m);
        // Per-run files read back exactly.
        let (m0, r0) = read_rows(&paths[0]).unwrap();
        assert_eq!(m0, m);
        assert_eq!(r0, all[..37]);
        assert_eq!(read_rows(&paths[1]).unwrap().1, vec![]);
        // Data pages of the run files: ~9 kB of tokens, ~35 kB of f32 (footers not counted).
        let out = d.path().join("out");
        let shards = write_split_shards(&out, "train", &paths, 2_500, &m).unwrap();
        assert!(shards.len() >= 3, "{} shards", shards.len());
        let mut back = vec![];
        for (k, p) in shards.iter().enumerate() {
            assert_eq!(p.file_name().unwrap().to_str().unwrap(), shard_name("train", k, shards.len()));
            let (mk, rk) = read_rows(p).unwrap();
            assert_eq!(mk, m);
            assert!(!rk.is_empty());
            back.extend(rk);
            // Key-value metadata present, polars' schema key included.
            let kv = read_key_value_metadata(p).unwrap();
            for key in [KEY_FORMAT, KEY_KIND, KEY_EEG_CHANNELS, KEY_MEG_CHANNELS, KEY_SFREQ, KEY_WINDOW, KEY_PARAMS, "ARROW:schema"] {
                assert!(kv.iter().any(|(k, _)| k == key), "{key} missing");
            }
            assert_eq!(kv.iter().any(|(k, _)| k == KEY_TOKENIZER), kind == ShardKind::Tokens);
        }
        assert_eq!(back, all);
        // lo/hi columns equal the tokenizer's clamps on every row.
        if kind == ShardKind::Tokens {
            let df = ParquetReader::new(File::open(&shards[0]).unwrap()).finish().unwrap();
            let t = m.tokenizer.as_ref().unwrap();
            let lo = df.column("meg_lo").unwrap().list().unwrap().get_as_series(3).unwrap();
            let want: Vec<f32> = t.lo[5..].to_vec();
            assert_eq!(lo.f32().unwrap().into_no_null_iter().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn token_shards_round_trip() {
        roundtrip(ShardKind::Tokens);
    }

    #[test]
    fn continuous_shards_round_trip() {
        roundtrip(ShardKind::Continuous);
    }

    /// The file polars' own `write_batch` makes of the same frame, cut at the same row counts
    /// (what `GroupWriter` did before `encode.rs`).
    fn polars_reference_file(path: &Path, rows: &[WindowRow], m: &ShardMeta) {
        let df = rows_frame(rows, m, path).unwrap();
        let mut file = File::create(path).unwrap();
        let mut w = ParquetWriter::new(&mut file)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions { min_value: true, max_value: true, distinct_count: false, null_count: true, binary_statistics_truncate_length: None })
            .with_data_page_size(Some(1 << 20))
            .with_row_group_size(Some(m.rows_per_group()))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(m.key_value_pairs())))
            .batched(&m.schema())
            .unwrap();
        let mut at = 0;
        while at < df.height() {
            let n = m.rows_per_group().min(df.height() - at);
            let mut g = df.slice(at as i64, n);
            g.rechunk_mut();
            w.write_batch(&g).unwrap();
            at += n;
        }
        w.finish().unwrap();
    }

    #[test]
    fn parallel_pages_equal_polars_writer() {
        let d = tempfile::tempdir().unwrap();
        // Tokens: two row groups of many 1 MiB pages; continuous f32: one group, ~16 pages;
        // and a file of one short group.
        let tok = meta(ShardKind::Tokens, 70, 306, 2048);
        let cont = meta(ShardKind::Continuous, 7, 20, 512);
        for (m, n) in [(&tok, tok.rows_per_group() + 7), (&cont, 300), (&tok, 3)] {
            let r = rows(m, "01", Some("1"), n, 5);
            let (ours, theirs) = (d.path().join("ours.parquet"), d.path().join("polars.parquet"));
            write_run_file(&ours, &r, m).unwrap();
            polars_reference_file(&theirs, &r, m);
            let (a, b) = (std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
            assert!(a.len() > 100_000 || n == 3, "{}", a.len());
            assert!(a == b, "{:?} {n} rows: {} vs {} bytes", m.kind, a.len(), b.len());
        }
    }

    #[test]
    fn row_groups_are_cut_at_fixed_row_counts() {
        let d = tempfile::tempdir().unwrap();
        // 64 MiB / (376 × 2048 B) ≈ 86 rows per group.
        let m = meta(ShardKind::Tokens, 70, 306, 2048);
        let rpg = m.rows_per_group();
        assert!((60..120).contains(&rpg), "{rpg}");
        let r = rows(&m, "01", Some("1"), rpg + 7, 3);
        let p = d.path().join("r.parquet");
        write_run_file(&p, &r, &m).unwrap();
        let md = ParquetReader::new(File::open(&p).unwrap()).get_metadata().unwrap().clone();
        let sizes: Vec<usize> = md.row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, vec![rpg, 7]);
        let shards = write_split_shards(d.path(), "test", &[p.clone(), p.clone()], u64::MAX, &m).unwrap();
        let md = ParquetReader::new(File::open(&shards[0]).unwrap()).get_metadata().unwrap().clone();
        let sizes: Vec<usize> = md.row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, vec![rpg, rpg, 14]);
    }

    #[test]
    fn shards_are_byte_identical_whatever_the_thread_count() {
        let d = tempfile::tempdir().unwrap();
        let m = meta(ShardKind::Tokens, 6, 9, 16);
        let run_in = |threads: usize, sub: &str| -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let dir = d.path().join(sub);
                let (paths, _) = write_runs(&dir, &m);
                let shards = write_split_shards(&dir.join("out"), "train", &paths, 5_000, &m).unwrap();
                (file_bytes(&paths), file_bytes(&shards))
            })
        };
        let a = run_in(1, "a");
        let b = run_in(2, "b");
        let c = run_in(2, "a"); // rewritten in place
        assert!(a.1.len() > 1);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    /// A shard that is one whole run file of one row group is a copy of it, byte for byte
    /// what re-encoding the run's rows writes: an empty run between two whole-run shards,
    /// shards mixing runs, runs of two row groups (re-encoded); tokens and continuous.
    #[test]
    fn whole_run_shards_are_copies_identical_to_reencoding() {
        for (kind, n_eeg, n_meg, window, want_groups) in [(ShardKind::Tokens, 70, 306, 1024, 2), (ShardKind::Tokens, 7, 9, 16, 1), (ShardKind::Continuous, 5, 7, 8, 1)] {
            let d = tempfile::tempdir().unwrap();
            let m = meta(kind, n_eeg, n_meg, window);
            let n = if want_groups == 2 { m.rows_per_group() + 5 } else { 37 };
            let paths: Vec<PathBuf> = [n, 0, n]
                .into_iter()
                .enumerate()
                .map(|(i, rows_n)| {
                    let p = d.path().join(format!("r{i}.parquet"));
                    write_run_file(&p, &rows(&m, "01", Some(&format!("{i}")), rows_n, i as u32), &m).unwrap();
                    p
                })
                .collect();
            let data_bytes = |p: &PathBuf| ParquetReader::new(File::open(p).unwrap()).get_metadata().unwrap().row_groups.iter().map(|g| g.compressed_size() as u64).sum::<u64>();
            let two = (data_bytes(&paths[0]) + data_bytes(&paths[2])) * 2 / 3;
            let mut cases = vec![(&paths[..1], u64::MAX, 1), (&paths[..], two, 2)];
            if want_groups == 1 {
                cases.extend([(&paths[..], u64::MAX, 1), (&paths[1..], u64::MAX, 1)]);
            }
            for (files, max, n_shards) in cases {
                let copied = split_shards(&d.path().join("a"), "train", files, max, &m, true).unwrap();
                let encoded = split_shards(&d.path().join("b"), "train", files, max, &m, false).unwrap();
                assert_eq!(copied.len(), n_shards);
                assert_eq!(encoded.len(), n_shards);
                assert!(file_bytes(&copied) == file_bytes(&encoded), "{kind:?} {files:?} {max}");
            }
            let one = split_shards(&d.path().join("c"), "train", &paths[..1], u64::MAX, &m, true).unwrap();
            let groups = ParquetReader::new(File::open(&paths[0]).unwrap()).get_metadata().unwrap().row_groups.len();
            assert_eq!(groups, want_groups);
            assert_eq!(std::fs::read(&one[0]).unwrap() == std::fs::read(&paths[0]).unwrap(), groups == 1);
        }
    }

    #[test]
    fn stale_shards_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let m = meta(ShardKind::Tokens, 3, 4, 8);
        let (paths, all) = write_runs(d.path(), &m);
        let out = d.path().join("out");
        let many = write_split_shards(&out, "train", &paths, 1_000, &m).unwrap();
        let val = write_split_shards(&out, "validation", &paths[..1], 1_000, &m).unwrap();
        // Unrelated files stay.
        std::fs::write(out.join("data/train_extra-00000-of-00001.parquet"), b"x").unwrap();
        std::fs::write(out.join("data/notes.txt"), b"x").unwrap();
        assert!(many.len() > 2);
        let one = write_split_shards(&out, "train", &paths, u64::MAX, &m).unwrap();
        assert_eq!(one.len(), 1);
        let mut names: Vec<String> = std::fs::read_dir(out.join("data")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        let mut want = vec!["notes.txt".to_string(), "train-00000-of-00001.parquet".into(), "train_extra-00000-of-00001.parquet".into()];
        want.extend(val.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()));
        want.sort();
        assert_eq!(names, want);
        assert_eq!(read_rows(&one[0]).unwrap().1, all);
    }

    #[test]
    fn mismatched_inputs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = meta(ShardKind::Tokens, 3, 4, 8);
        let (paths, _) = write_runs(d.path(), &m);
        let mut other = m.clone();
        other.params_json = "{}".into();
        let err = write_split_shards(&d.path().join("out"), "train", &paths, 1 << 20, &other).unwrap_err();
        assert!(err.to_string().contains("brainformer.params"), "{err}");
        let mut bad_rows = rows(&m, "01", None, 2, 0);
        bad_rows[1].meg = WindowData::Tokens(vec![0; 3]);
        assert!(write_run_file(&d.path().join("x.parquet"), &bad_rows, &m).is_err());
        let cont = meta(ShardKind::Continuous, 3, 4, 8);
        assert!(write_run_file(&d.path().join("y.parquet"), &rows(&m, "01", None, 2, 0), &cont).is_err());
        let mut no_tok = m.clone();
        no_tok.tokenizer = None;
        assert!(no_tok.validate(d.path()).is_err());
        assert!(!d.path().join("x.parquet").exists());
    }

    #[test]
    fn empty_split_gets_one_empty_shard() {
        let d = tempfile::tempdir().unwrap();
        let m = meta(ShardKind::Tokens, 3, 4, 8);
        let p = d.path().join("empty.parquet");
        write_run_file(&p, &[], &m).unwrap();
        let shards = write_split_shards(d.path(), "test", &[p], 1 << 20, &m).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(read_rows(&shards[0]).unwrap().1, vec![]);
    }

    fn card(m: ShardMeta) -> CardInfo {
        CardInfo {
            title: "Brainformer ds000117 test shards".into(),
            source_id: "ds000117".into(),
            source_url: "https://openneuro.org/datasets/ds000117".into(),
            license: "cc0-1.0".into(),
            citation: None,
            splits: vec![
                SplitCard { name: "train".into(), rows: 90, description: "subjects 01, 02".into() },
                SplitCard { name: "validation".into(), rows: 37, description: "subject 03".into() },
            ],
            split_rule: "Held-out subjects (seed 0).".into(),
            params_text: "[segment]\nwindow = 8\n```odd```\n".into(),
            params_format: "toml".into(),
            meta: m,
        }
    }

    #[test]
    fn dataset_card_has_the_hub_yaml() {
        let d = tempfile::tempdir().unwrap();
        let m = meta(ShardKind::Tokens, 3, 4, 8);
        write_dataset_card(d.path(), &card(m.clone())).unwrap();
        let text = std::fs::read_to_string(d.path().join("README.md")).unwrap();
        assert!(text.starts_with("---\nlicense: \"cc0-1.0\"\n"));
        assert!(text.contains("configs:\n- config_name: default\n  data_files:\n  - split: \"train\"\n    path: \"data/train-*\"\n"));
        assert!(text.contains("  - name: eeg\n    sequence:\n      sequence: uint8\n"));
        assert!(text.contains("  - name: subject\n    dtype: string\n"));
        assert!(text.contains("````toml\n[segment]"), "fence must outlast the backticks in the text");
        assert!(text.contains("def decode("));
        let cont = card(meta(ShardKind::Continuous, 3, 4, 8));
        let text = dataset_card(&cont);
        assert!(text.contains("      sequence: float32") && !text.contains("eeg_lo"));
    }

    /// Leaves a small dataset for the Python oracle (`tests/oracle/shards_check.py`):
    /// `BF_SHARDS_OUT=/tmp/x cargo test --release -p brainformer-pipeline --lib shards::tests::python_fixture -- --ignored`
    /// writes `/tmp/x/tokens` and `/tmp/x/continuous` (5 EEG, 7 MEG channels, window 8).
    #[test]
    #[ignore]
    fn python_fixture() {
        let root = PathBuf::from(std::env::var("BF_SHARDS_OUT").expect("set BF_SHARDS_OUT"));
        for kind in [ShardKind::Tokens, ShardKind::Continuous] {
            let m = meta(kind, 5, 7, 8);
            let dir = root.join(kind.as_str());
            let (paths, all) = write_runs(&dir.join("work"), &m);
            write_split_shards(&dir, "train", &paths, 3_000, &m).unwrap();
            write_split_shards(&dir, "validation", &paths[..1], u64::MAX, &m).unwrap();
            let mut c = card(m);
            c.splits[0].rows = all.len() as u64;
            write_dataset_card(&dir, &c).unwrap();
        }
    }
}
