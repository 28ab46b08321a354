//! Streams training examples from Brainformer Parquet shards, in a deterministic shuffled
//! order, with a background thread that reads and batches ahead of the trainer.
//!
//! An *example* is one chunk of `sequence_length` time steps of one window (the seed's
//! `preprocess_dataset` cuts windows the same way; a short last chunk is padded with the pad
//! id). The order of an epoch: the split's files in a permutation drawn from (seed, epoch),
//! and inside each file its examples in a permutation drawn from (seed, epoch, file). Memory
//! holds one file (shards are bounded in size) plus the prefetched batches. A position in
//! the stream is a single number, the examples consumed so far, so a checkpoint can resume
//! the stream exactly: whole files before the position are skipped without being read.
//!
//! **The promise:** the global order of examples is a function of the seed and the epoch
//! only: each position of the stream maps to one (file, example) by [`Stream::example_at`],
//! computed, not taken from whichever reader finished first. The one background thread that
//! reads ahead ([`Stream::spawn`]) and the calling thread ([`Stream::batches`]) produce the
//! same batches, however deep the read-ahead and however many threads libtorch uses; a stream
//! started at a checkpoint's position continues the order of the run that wrote it.
//!
//! **Ranks** (data-parallel training): [`Stream::with_rank`] gives process `rank` of `world`
//! its share of every *global* batch of `batch_size` examples: a contiguous, balanced range of
//! the batch ([`RankSlice::range`]), so the ranks' shares are disjoint and together are the
//! batch one process would take, in order. Positions stay global (every rank's [`Batch`]
//! carries the same `position`), so a checkpoint written by any world size resumes under any
//! other. Each rank reads the shard files its examples come from (all ranks read each file;
//! files are bounded in size) and skips the others' examples without decoding them.
//!
//! The permutations use SplitMix64 written here rather than a crate's RNG: the stream must
//! stay the same across dependency updates, or old checkpoints would resume on other data.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use bf_pipeline::shards::{read_rows, ShardKind, ShardMeta, WindowData};

use crate::{Error, Result};

/// SplitMix64: a tiny, well-known, fully specified generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// A Fisher–Yates permutation of 0..n drawn from `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

fn mix(parts: &[u64]) -> u64 {
    let mut rng = SplitMix64::new(0x6272_6169_6e66_6f72); // "brainfor"
    let mut h = 0u64;
    for &p in parts {
        h = SplitMix64::new(h ^ p ^ rng.next_u64()).next_u64();
    }
    h
}

/// The files of one split and what they share.
#[derive(Clone, Debug)]
pub struct ShardSet {
    pub files: Vec<PathBuf>,
    pub rows: Vec<usize>,
    pub meta: ShardMeta,
}

impl ShardSet {
    /// `dir` is a shards folder (with `data/`) or its `data/` folder; `split` is `train`,
    /// `validation` or `test`.
    pub fn open(dir: &Path, split: &str) -> Result<ShardSet> {
        let files = split_files(dir, split)?;
        if files.is_empty() {
            return Err(Error::Data(format!("{}: no `{split}-*.parquet` shards", data_dir(dir).display())));
        }
        let meta = ShardMeta::read(&files[0])?;
        let mut rows = Vec::with_capacity(files.len());
        for f in &files {
            let m = ShardMeta::read(f)?;
            if m.eeg_channels != meta.eeg_channels || m.meg_channels != meta.meg_channels || m.window != meta.window || m.kind != meta.kind {
                return Err(Error::Format(f.clone(), format!("channels, window or kind differ from {}", files[0].display())));
            }
            rows.push(count_rows(f)?);
        }
        Ok(ShardSet { files, rows, meta })
    }

    pub fn total_rows(&self) -> usize {
        self.rows.iter().sum()
    }
}

/// The folder holding the shard files: `dir/data` when it exists, else `dir` itself.
pub fn data_dir(dir: &Path) -> PathBuf {
    if dir.join("data").is_dir() {
        dir.join("data")
    } else {
        dir.to_path_buf()
    }
}

/// The `{split}-*.parquet` files of a shards folder (see [`ShardSet::open`]), sorted; empty
/// when the split has none.
pub fn split_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let data = data_dir(dir);
    let entries = std::fs::read_dir(&data).map_err(|e| Error::io(&data, e))?;
    let prefix = format!("{split}-");
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".parquet")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn count_rows(path: &Path) -> Result<usize> {
    use polars::prelude::*;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .num_rows()
        .map_err(|e| Error::Format(path.to_path_buf(), format!("reading the Parquet footer: {e}")))
}

/// One batch, time-major like the model wants: `eeg` [batch, time, Ce], `meg` [batch, time, Cm].
/// Tokens are model ids (level + offset, pad where a chunk ran out); continuous values as is.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchData {
    Tokens { eeg: Vec<i64>, meg: Vec<i64> },
    Continuous { eeg: Vec<f32>, meg: Vec<f32> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub time: usize,
    /// The global batch this one is a share of: its examples are `offset..offset + size` of
    /// `global` (0 and `size` in one process).
    pub offset: usize,
    pub global: usize,
    pub data: BatchData,
    /// Stream position after this batch (examples consumed).
    pub position: u64,
}

/// How windows become examples.
#[derive(Clone, Debug)]
pub struct ExampleSpec {
    pub sequence_length: usize,
    pub token_offset: i64,
    pub pad_id: i64,
    /// Regression: per-channel divisors (EEG then MEG) applied before clamping to [−1, 1].
    pub scale: Option<Vec<f32>>,
    /// Chunks start every `hop` samples of a window (overlapping when below the sequence
    /// length; the last one ends at the window's end) instead of back to back: more, shifted
    /// examples from the same windows (bf-train's `--chunk_hop`). `None`: back to back, the
    /// last chunk padded, as the seed cuts them.
    pub hop: Option<usize>,
}

/// What a model of this configuration reads: its sequence length, token offset and pad id,
/// and the regression model's per-channel scale (the one place a spec is built, for the
/// trainer and the evaluation alike).
impl From<&crate::ModelConfig> for ExampleSpec {
    fn from(cfg: &crate::ModelConfig) -> Self {
        ExampleSpec {
            sequence_length: cfg.sequence_length as usize,
            token_offset: cfg.token_offset,
            pad_id: cfg.pad_token_id,
            scale: cfg.value_scale.clone(),
            hop: None,
        }
    }
}

impl ExampleSpec {
    /// Back-to-back chunks, unless a hop applies (a window at least one chunk long).
    fn hop_in(&self, window: usize) -> Option<usize> {
        self.hop.filter(|&h| h > 0 && window >= self.sequence_length)
    }

    pub fn chunks_per_window(&self, window: usize) -> usize {
        match self.hop_in(window) {
            None => window.div_ceil(self.sequence_length),
            Some(h) => (window - self.sequence_length).div_ceil(h) + 1,
        }
    }

    /// The first sample of chunk `chunk` of a window.
    pub fn chunk_start(&self, window: usize, chunk: usize) -> usize {
        match self.hop_in(window) {
            None => chunk * self.sequence_length,
            Some(h) => (chunk * h).min(window - self.sequence_length),
        }
    }

    /// The first sample of every chunk of a window, in order.
    pub fn chunk_starts(&self, window: usize) -> Vec<usize> {
        (0..self.chunks_per_window(window)).map(|c| self.chunk_start(window, c)).collect()
    }
}

/// Appends chunk `chunk` of one channel-major window [C × W] to a time-major buffer [L × C].
fn push_tokens(out: &mut Vec<i64>, w: &[u8], channels: usize, window: usize, spec: &ExampleSpec, chunk: usize) {
    let start = spec.chunk_start(window, chunk);
    for t in start..start + spec.sequence_length {
        for c in 0..channels {
            out.push(if t < window { w[c * window + t] as i64 + spec.token_offset } else { spec.pad_id });
        }
    }
}

/// The continuous twin of [`push_tokens`]: each channel divided by its scale and clamped to
/// [−1, 1] (also how `bf-eval --hop` builds its overlapping chunks).
pub fn push_values(out: &mut Vec<f32>, w: &[f32], channels: usize, window: usize, spec: &ExampleSpec, chunk: usize, scale: &[f32]) {
    let start = spec.chunk_start(window, chunk);
    for t in start..start + spec.sequence_length {
        for c in 0..channels {
            out.push(if t < window { (w[c * window + t] / scale[c]).clamp(-1.0, 1.0) } else { 0.0 });
        }
    }
}

/// Which share of every global batch one process of a data-parallel job takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankSlice {
    rank: usize,
    world: usize,
}

impl RankSlice {
    /// Process `rank` (from 0) of `world` processes.
    pub fn new(rank: usize, world: usize) -> Result<RankSlice> {
        if world == 0 || rank >= world {
            return Err(Error::Data(format!("rank {rank} of world size {world}: the rank must be below the world size")));
        }
        Ok(RankSlice { rank, world })
    }

    /// One process: the whole batch.
    pub fn whole() -> RankSlice {
        RankSlice { rank: 0, world: 1 }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// The examples of a global batch of `size` this rank takes: `rank·size/world ..
    /// (rank+1)·size/world`. The ranges of ranks 0..world tile 0..size in rank order, and
    /// their lengths differ by at most one (equal when `world` divides `size`).
    pub fn range(&self, size: usize) -> Range<usize> {
        self.rank * size / self.world..(self.rank + 1) * size / self.world
    }
}

/// The deterministic, endless stream of batches (epoch after epoch).
pub struct Stream {
    set: ShardSet,
    spec: ExampleSpec,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    slice: RankSlice,
}

impl Stream {
    /// `batch_size` is the global batch: with [`Stream::with_rank`], each rank's batches hold
    /// its share of it.
    pub fn new(set: ShardSet, spec: ExampleSpec, batch_size: usize, seed: u64, shuffle: bool) -> Stream {
        Stream { set, spec, batch_size, seed, shuffle, slice: RankSlice::whole() }
    }

    /// This process takes only `slice`'s share of each global batch (see the module doc). A
    /// rank whose share of a short last batch (a limited stream) is empty gets a batch of
    /// size 0 with the others, so that all ranks see the same number of batches.
    pub fn with_rank(mut self, slice: RankSlice) -> Stream {
        self.slice = slice;
        self
    }

    /// The example at stream position `pos`: (file index, example index inside the file:
    /// row · chunks_per_window + chunk). A function of the seed, the epoch and the shards only.
    pub fn example_at(&self, pos: u64) -> (usize, usize) {
        let (epoch, file, inner) = Producer::locate(self, pos);
        (file, Producer::example_order(self, epoch, file)[inner])
    }

    pub fn examples_per_epoch(&self) -> u64 {
        (self.set.total_rows() * self.spec.chunks_per_window(self.set.meta.window)) as u64
    }

    /// Batches from stream position `start`, produced by a background thread, `prefetch`
    /// batches ahead. The stream ends after `limit` examples (`None`: never).
    pub fn spawn(self, start: u64, limit: Option<u64>, prefetch: usize) -> (Receiver<Result<Batch>>, JoinHandle<()>) {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::spawn(move || {
            let mut producer = Producer::new(&self, start, limit);
            loop {
                match producer.next_batch(&self) {
                    Ok(Some(b)) => {
                        if tx.send(Ok(b)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        (rx, handle)
    }

    /// The same batches on the calling thread (tests, evaluation).
    pub fn batches(&self, start: u64, limit: Option<u64>) -> impl Iterator<Item = Result<Batch>> + '_ {
        let mut producer = Producer::new(self, start, limit);
        std::iter::from_fn(move || producer.next_batch(self).transpose())
    }
}

/// Walks the order; holds the current file's rows.
struct Producer {
    position: u64,
    end: Option<u64>,
    /// The file in use: (epoch, file index, its rows, its example order).
    loaded: Option<(usize, usize, Vec<bf_pipeline::shards::WindowRow>, Vec<usize>)>,
}

impl Producer {
    fn new(stream: &Stream, start: u64, limit: Option<u64>) -> Producer {
        let _ = stream;
        Producer { position: start, end: limit.map(|l| start + l), loaded: None }
    }

    /// (epoch, file index, example index inside the file) at stream position `pos`.
    fn locate(stream: &Stream, pos: u64) -> (usize, usize, usize) {
        let per_epoch = stream.examples_per_epoch().max(1);
        let epoch = (pos / per_epoch) as usize;
        let mut rest = (pos % per_epoch) as usize;
        let order = Self::file_order(stream, epoch);
        let chunks = stream.spec.chunks_per_window(stream.set.meta.window);
        for &f in &order {
            let n = stream.set.rows[f] * chunks;
            if rest < n {
                return (epoch, f, rest);
            }
            rest -= n;
        }
        unreachable!("a position inside an epoch falls in one of its files")
    }

    fn file_order(stream: &Stream, epoch: usize) -> Vec<usize> {
        let n = stream.set.files.len();
        if stream.shuffle {
            permutation(n, mix(&[stream.seed, epoch as u64]))
        } else {
            (0..n).collect()
        }
    }

    fn example_order(stream: &Stream, epoch: usize, file: usize) -> Vec<usize> {
        let n = stream.set.rows[file] * stream.spec.chunks_per_window(stream.set.meta.window);
        if stream.shuffle {
            permutation(n, mix(&[stream.seed, epoch as u64, file as u64]))
        } else {
            (0..n).collect()
        }
    }

    fn next_batch(&mut self, stream: &Stream) -> Result<Option<Batch>> {
        let meta = &stream.set.meta;
        let (ne, nm, w) = (meta.n_eeg(), meta.n_meg(), meta.window);
        let l = stream.spec.sequence_length;
        let chunks = stream.spec.chunks_per_window(w);
        // The global batch: positions start..start + global; this rank takes `mine` of them.
        let start = self.position;
        let global = if stream.examples_per_epoch() == 0 {
            0
        } else {
            let left = self.end.map_or(u64::MAX, |e| e.saturating_sub(start));
            (stream.batch_size as u64).min(left) as usize
        };
        if global == 0 {
            return Ok(None);
        }
        let mine = stream.slice.range(global);
        let (mut eeg_t, mut meg_t, mut eeg_f, mut meg_f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in mine.clone() {
            let (epoch, file, inner) = Self::locate(stream, start + i as u64);
            if !matches!(&self.loaded, Some((e, f, _, _)) if *e == epoch && *f == file) {
                let (m, rows) = read_rows(&stream.set.files[file])?;
                if rows.len() != stream.set.rows[file] || m.window != w {
                    return Err(Error::Format(stream.set.files[file].clone(), "changed while training".into()));
                }
                self.loaded = Some((epoch, file, rows, Self::example_order(stream, epoch, file)));
            }
            let (_, _, rows, order) = self.loaded.as_ref().expect("loaded just above");
            let example = order[inner];
            let (row, chunk) = (&rows[example / chunks], example % chunks);
            match (&row.eeg, &row.meg) {
                (WindowData::Tokens(e), WindowData::Tokens(m)) => {
                    push_tokens(&mut eeg_t, e, ne, w, &stream.spec, chunk);
                    push_tokens(&mut meg_t, m, nm, w, &stream.spec, chunk);
                }
                (WindowData::Continuous(e), WindowData::Continuous(m)) => {
                    let scale = stream.spec.scale.as_ref().ok_or_else(|| Error::Data("continuous shards need a scale".into()))?;
                    push_values(&mut eeg_f, e, ne, w, &stream.spec, chunk, &scale[..ne]);
                    push_values(&mut meg_f, m, nm, w, &stream.spec, chunk, &scale[ne..]);
                }
                _ => return Err(Error::Format(stream.set.files[file].clone(), "mixed token and continuous columns".into())),
            }
        }
        self.position = start + global as u64;
        let data = match meta.kind {
            ShardKind::Tokens => BatchData::Tokens { eeg: eeg_t, meg: meg_t },
            ShardKind::Continuous => BatchData::Continuous { eeg: eeg_f, meg: meg_f },
        };
        Ok(Some(Batch { size: mine.len(), time: l, offset: mine.start, global, data, position: self.position }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_deterministic_and_complete() {
        let a = permutation(100, 7);
        assert_eq!(a, permutation(100, 7));
        assert_ne!(a, permutation(100, 8));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    use bf_pipeline::shards::{write_run_file, WindowRow};
    use bf_pipeline::tokenizer::Tokenizer;

    const WINDOW: usize = 6;
    const ROWS: [usize; 3] = [3, 5, 4];

    /// A train split of three files (3, 5 and 4 windows of 6 samples; 2 EEG + 1 MEG channels)
    /// whose EEG names each example: channel 0 holds 50·file + row, channel 1 the time index.
    fn shards(name: &str) -> ShardSet {
        let dir = std::env::temp_dir().join(format!("bf-data-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let channels = ["E1", "E2", "M1"].map(String::from);
        let meta = ShardMeta {
            eeg_channels: channels[..2].to_vec(),
            meg_channels: channels[2..].to_vec(),
            sfreq: 250.0,
            window: WINDOW,
            kind: ShardKind::Tokens,
            params_json: "{}".into(),
            tokenizer: Some(Tokenizer {
                channels: channels.to_vec(),
                lo: vec![-1.0; 3],
                hi: vec![1.0; 3],
                mu: 255.0,
                levels: 255,
                clamp_percentiles: [0.5, 99.5],
            }),
        };
        for (f, &n) in ROWS.iter().enumerate() {
            let rows: Vec<WindowRow> = (0..n)
                .map(|r| {
                    let mut eeg = vec![(50 * f + r) as u8; WINDOW];
                    eeg.extend((0..WINDOW).map(|t| t as u8));
                    WindowRow {
                        subject: format!("{f}"),
                        session: None,
                        task: None,
                        run: None,
                        window: r as u32,
                        onset: 0.0,
                        eeg: WindowData::Tokens(eeg),
                        meg: WindowData::Tokens(vec![7; WINDOW]),
                    }
                })
                .collect();
            write_run_file(&dir.join("data").join(format!("train-{f:05}-of-00003.parquet")), &rows, &meta).unwrap();
        }
        ShardSet::open(&dir, "train").unwrap()
    }

    fn remove(set: &ShardSet) {
        let dir = set.files[0].parent().and_then(Path::parent).expect("DIR/data/file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// sequence_length 4: two chunks per window, the second padded.
    fn stream(set: &ShardSet, batch: usize, seed: u64) -> Stream {
        Stream::new(set.clone(), ExampleSpec { sequence_length: 4, token_offset: 3, pad_id: 0, scale: None, hop: None }, batch, seed, true)
    }

    /// The (file, example inside the file) of each example of a batch, read from its EEG.
    fn examples(b: &Batch) -> Vec<(usize, usize)> {
        let BatchData::Tokens { eeg, .. } = &b.data else { panic!("token shards") };
        (0..b.size)
            .map(|i| {
                let (id, t0) = ((eeg[i * 4 * 2] - 3) as usize, (eeg[i * 4 * 2 + 1] - 3) as usize);
                (id / 50, (id % 50) * 2 + t0 / 4)
            })
            .collect()
    }

    fn all(it: impl Iterator<Item = Result<Batch>>) -> Vec<Batch> {
        it.map(|b| b.unwrap()).collect()
    }

    #[test]
    fn the_order_depends_on_the_seed_and_epoch_only() {
        let set = shards("order");
        let s = stream(&set, 5, 11);
        let per_epoch = s.examples_per_epoch();
        assert_eq!(per_epoch, 24);
        let inline = all(s.batches(0, Some(3 * per_epoch)));
        let got: Vec<(usize, usize)> = inline.iter().flat_map(examples).collect();
        // Every position holds the example the order function names for it...
        assert_eq!(got, (0..3 * per_epoch).map(|p| s.example_at(p)).collect::<Vec<_>>());
        // ...each epoch is every example once, in another order each epoch...
        let epochs: Vec<&[(usize, usize)]> = got.chunks(per_epoch as usize).collect();
        for e in &epochs {
            let mut sorted = e.to_vec();
            sorted.sort();
            let every: Vec<(usize, usize)> = ROWS.iter().enumerate().flat_map(|(f, &n)| (0..2 * n).map(move |x| (f, x))).collect();
            assert_eq!(sorted, every);
        }
        assert_ne!(epochs[0], epochs[1]);
        // ...and neither the reading thread nor its read-ahead depth changes it; the seed does.
        for prefetch in [1, 3, 16] {
            let (rx, handle) = stream(&set, 5, 11).spawn(0, Some(3 * per_epoch), prefetch);
            assert_eq!(all(rx.into_iter()), inline, "prefetch {prefetch}");
            handle.join().unwrap();
        }
        let other: Vec<(usize, usize)> = all(stream(&set, 5, 12).batches(0, Some(per_epoch))).iter().flat_map(examples).collect();
        assert_ne!(&other[..], epochs[0]);
        // The batch size only groups the same order.
        let by7: Vec<(usize, usize)> = all(stream(&set, 7, 11).batches(0, Some(3 * per_epoch))).iter().flat_map(examples).collect();
        assert_eq!(by7, got);
        remove(&set);
    }

    #[test]
    fn resuming_mid_epoch_continues_the_order() {
        let set = shards("resume");
        let s = stream(&set, 5, 3);
        let straight = all(s.batches(0, Some(60)));
        for k in [1, 3, 4, 7] {
            // A checkpoint after batch k records its position; a new stream starts there.
            let pos = straight[k - 1].position;
            let resumed = all(stream(&set, 5, 3).batches(pos, Some(60 - pos)));
            assert_eq!(resumed, straight[k..], "after batch {k}");
            let (rx, handle) = stream(&set, 5, 3).spawn(pos, Some(60 - pos), 2);
            assert_eq!(all(rx.into_iter()), straight[k..]);
            handle.join().unwrap();
        }
        remove(&set);
    }

    #[test]
    fn ranks_take_disjoint_slices_that_make_up_the_global_batch() {
        let set = shards("ranks");
        let whole = all(stream(&set, 5, 9).batches(0, Some(53)));
        assert_eq!(whole.last().unwrap().size, 3, "a short last batch");
        for world in 1..=6 {
            let per_rank: Vec<Vec<Batch>> = (0..world)
                .map(|r| all(stream(&set, 5, 9).with_rank(RankSlice::new(r, world).unwrap()).batches(0, Some(53))))
                .collect();
            for (i, w) in whole.iter().enumerate() {
                let parts: Vec<&Batch> = per_rank.iter().map(|b| &b[i]).collect();
                assert!(parts.iter().all(|p| p.position == w.position && p.time == w.time), "world {world} batch {i}");
                let sizes: Vec<usize> = parts.iter().map(|p| p.size).collect();
                assert_eq!(sizes.iter().sum::<usize>(), w.size);
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
                let joined: Vec<(usize, usize)> = parts.iter().flat_map(|p| examples(p)).collect();
                assert_eq!(joined, examples(w), "world {world} batch {i}");
                let (BatchData::Tokens { eeg, meg }, BatchData::Tokens { eeg: we, meg: wm }) = (&parts[0].data, &w.data) else { panic!() };
                assert_eq!((&eeg[..], &meg[..]), (&we[..eeg.len()], &wm[..meg.len()]), "rank 0 holds the head of the batch");
            }
            assert!(per_rank.iter().all(|b| b.len() == whole.len()));
        }
        // A position written by a 2-process run resumes under 3 processes in the same order.
        let pos = all(stream(&set, 5, 9).with_rank(RankSlice::new(1, 2).unwrap()).batches(0, Some(20))).last().unwrap().position;
        assert_eq!(pos, 20);
        let tail: Vec<(usize, usize)> = (0..3)
            .map(|r| all(stream(&set, 5, 9).with_rank(RankSlice::new(r, 3).unwrap()).batches(pos, Some(33))))
            .collect::<Vec<_>>()
            .iter()
            .fold(vec![Vec::new(); 7], |mut acc, b| {
                for (i, x) in b.iter().enumerate() {
                    acc[i].extend(examples(x));
                }
                acc
            })
            .concat();
        assert_eq!(tail, whole[4..].iter().flat_map(examples).collect::<Vec<_>>());
        assert!(RankSlice::new(2, 2).is_err() && RankSlice::new(0, 0).is_err());
        assert_eq!((0..3).map(|r| RankSlice::new(r, 3).unwrap().range(8)).collect::<Vec<_>>(), vec![0..2, 2..5, 5..8]);
        remove(&set);
    }

    #[test]
    fn chunks_pad_the_last_one() {
        let spec = ExampleSpec { sequence_length: 3, token_offset: 3, pad_id: 0, scale: None, hop: None };
        // 2 channels × 4 samples, channel-major.
        let w = [0u8, 1, 2, 3, 10, 11, 12, 13];
        let mut out = Vec::new();
        push_tokens(&mut out, &w, 2, 4, &spec, 1);
        assert_eq!(out, vec![6, 16, 0, 0, 0, 0]);
        assert_eq!(spec.chunks_per_window(4), 2);
    }

    #[test]
    fn overlapped_starts_cover_the_window_and_end_on_the_last_full_chunk() {
        // bf-eval --hop's chunks (this spec with a hop).
        let overlapped_starts = |window, l, hop| ExampleSpec { sequence_length: l, token_offset: 0, pad_id: 0, scale: None, hop: Some(hop) }.chunk_starts(window);
        assert_eq!(overlapped_starts(256, 64, 32), vec![0, 32, 64, 96, 128, 160, 192]);
        assert_eq!(overlapped_starts(256, 64, 64), vec![0, 64, 128, 192]);
        assert_eq!(overlapped_starts(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(overlapped_starts(4, 4, 2), vec![0]);
    }

    #[test]
    fn a_hop_cuts_shifted_chunks_ending_at_the_windows_end() {
        let spec = ExampleSpec { sequence_length: 3, token_offset: 3, pad_id: 0, scale: None, hop: Some(2) };
        // 2 channels × 6 samples: chunks start at 0, 2 and 3 (the last full one), no padding.
        let w = [0u8, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15];
        assert_eq!(spec.chunks_per_window(6), 3);
        assert_eq!((0..3).map(|c| spec.chunk_start(6, c)).collect::<Vec<_>>(), vec![0, 2, 3]);
        let mut out = Vec::new();
        push_tokens(&mut out, &w, 2, 6, &spec, 1);
        assert_eq!(out, vec![5, 15, 6, 16, 7, 17]);
        let mut v = Vec::new();
        let wf: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        push_values(&mut v, &wf, 2, 6, &spec, 2, &[10.0, 20.0]);
        assert_eq!(v, vec![0.3, 0.65, 0.4, 0.7, 0.5, 0.75]);
        // A window shorter than a chunk: back to back (one padded chunk), as without a hop.
        assert_eq!(spec.chunks_per_window(2), 1);
        assert_eq!(ExampleSpec { hop: Some(3), ..spec.clone() }.chunks_per_window(6), 2);
    }
}
