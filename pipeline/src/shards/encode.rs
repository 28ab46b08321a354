//! A row group's pages encoded and compressed on every core, byte for byte as polars' own
//! `BatchedWriter::write_batch` writes them.
//!
//! Why: polars 0.55's "parallel" Parquet writer only builds each column's page *iterators* in
//! parallel; the Dremel levels, the value encoding and the zstd compression run lazily, one
//! page after another, inside the file writer's single thread. For a token run (one row group
//! of ~480 windows × 376 channels × 256 u8) that is ~3 CPU-s on one core: zstd ~46 %, Dremel
//! ~22 % (perf, session 17). Here each column is encoded by a task of its own (its pages come
//! from one sequential iterator: the Dremel state runs across pages), each page is compressed
//! by a task of its own as soon as it is encoded, and the pages go to polars' writer
//! (`BatchedWriter::write_row_group`) in column, leaf and page order. (Encoding every column
//! first and compressing after left one core idle while the MEG column's Dremel ran: 2.37 s
//! against 2.92 s before on one full-size run; pipelined: see BENCHMARKS.md.)
//!
//! Same bytes: the pages are polars' own (`array_to_columns` with the writer's Parquet types,
//! the encodings `get_encodings` gives and the options `ParquetWriter` materializes: V1
//! pages, the statistics, the compression and the page size set below), and `compress` is a
//! pure function of the page and the codec (the reused scratch buffer of polars' `Compressor`
//! changes no byte). `tests::parallel_pages_equal_polars_writer` compares whole files.

use polars::io::parquet::write::{get_encodings, ParquetCompression, StatisticsOptions};
use polars::prelude::*;
use polars_parquet::write::{array_to_columns, compress, CompressedPage, Encoding, ParquetType, Version, WriteOptions};
use std::sync::Mutex;

/// What polars' `ParquetWriter` is given for every Brainformer Parquet file (shards and
/// per-run files): zstd at its default level, min/max/null-count statistics, 1 MiB pages.
pub(super) fn statistics() -> StatisticsOptions {
    StatisticsOptions { min_value: true, max_value: true, distinct_count: false, null_count: true, binary_statistics_truncate_length: None }
}
pub(super) const COMPRESSION: ParquetCompression = ParquetCompression::Zstd(None);
pub(super) const DATA_PAGE_SIZE: usize = 1 << 20;

/// The per-file encoding plan: each column's Parquet type and leaf encodings.
pub(super) struct PageEncoder {
    fields: Vec<ParquetType>,
    encodings: Vec<Vec<Encoding>>,
    options: WriteOptions,
}

impl PageEncoder {
    /// `fields`: the writer's Parquet schema fields (`BatchedWriter::parquet_schema`).
    pub(super) fn new(schema: &Schema, fields: Vec<ParquetType>) -> Self {
        let arrow = schema.to_arrow(CompatLevel::newest());
        let encodings = get_encodings(&arrow).iter().cloned().collect();
        // As `ParquetWriter::materialize_options` builds them from the settings above.
        let options = WriteOptions {
            statistics: statistics(),
            compression: COMPRESSION.into(),
            version: Version::V1,
            data_page_size: Some(DATA_PAGE_SIZE),
        };
        PageEncoder { fields, encodings, options }
    }

    /// The compressed pages of one single-chunk frame, one `Vec` per Parquet leaf column in
    /// schema order, each in page order.
    pub(super) fn row_group(&self, df: &DataFrame) -> PolarsResult<Vec<Vec<CompressedPage>>> {
        let mut batches = df.iter_chunks(CompatLevel::newest(), false);
        let batch = batches.next().ok_or_else(|| polars_err!(ComputeError: "an empty row group"))?;
        polars_ensure!(batches.next().is_none(), ComputeError: "a row group of more than one chunk");
        let columns = batch.columns();
        polars_ensure!(
            columns.len() == self.fields.len() && columns.len() == self.encodings.len(),
            ComputeError: "{} columns for a schema of {}", columns.len(), self.fields.len()
        );
        // Each column's pages come from one sequential iterator (its Dremel state runs across
        // pages): one task per column. Each page, once encoded, is compressed by a task of its
        // own, so the other cores compress while the largest column is still being encoded.
        type Key = (usize, usize, usize); // (column, leaf of the column, page)
        let compressed: Mutex<Vec<(Key, CompressedPage)>> = Mutex::new(Vec::new());
        let leaves_per_column: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
        let first_error: Mutex<Option<PolarsError>> = Mutex::new(None);
        let compression = self.options.compression;
        let fail = |e: PolarsError| {
            first_error.lock().expect("no task panics holding it").get_or_insert(e);
        };
        rayon::scope(|s| {
            for (ci, ((array, field), encoding)) in columns.iter().zip(&self.fields).zip(&self.encodings).enumerate() {
                let (compressed, leaves_per_column, fail) = (&compressed, &leaves_per_column, &fail);
                s.spawn(move |s| {
                    let leaves = match array_to_columns(array, field.clone(), self.options, encoding) {
                        Ok(leaves) => leaves,
                        Err(e) => return fail(e),
                    };
                    leaves_per_column.lock().expect("no task panics holding it").push((ci, leaves.len()));
                    for (li, pages) in leaves.into_iter().enumerate() {
                        for (pi, page) in pages.enumerate() {
                            let page = match page {
                                Ok(page) => page,
                                Err(e) => return fail(e),
                            };
                            s.spawn(move |_| match compress(page, Vec::new(), compression) {
                                Ok(c) => compressed.lock().expect("no task panics holding it").push(((ci, li, pi), c)),
                                Err(e) => fail(e.into()),
                            });
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().expect("no task panicked") {
            return Err(e);
        }
        // Column, leaf and page order, as polars' writer consumes them.
        let mut leaves_per_column = leaves_per_column.into_inner().expect("no task panicked");
        leaves_per_column.sort_unstable();
        let mut compressed = compressed.into_inner().expect("no task panicked");
        compressed.sort_unstable_by_key(|(key, _)| *key);
        let mut pages = compressed.into_iter().peekable();
        let mut out: Vec<Vec<CompressedPage>> = Vec::new();
        for (ci, n) in leaves_per_column {
            for li in 0..n {
                let mut leaf = Vec::new();
                while let Some((_, page)) = pages.next_if(|((c, l, _), _)| (*c, *l) == (ci, li)) {
                    leaf.push(page);
                }
                out.push(leaf);
            }
        }
        Ok(out)
    }
}
