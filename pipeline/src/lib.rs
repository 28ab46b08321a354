//! Brainformer's data pipeline: everything from raw files to training shards, without libtorch.
//!
//! The modules follow the data flow (see ARCHITECTURE.md at the repository root), and
//! imports run with it (three exceptions, listed there, are left to untangle):
//!
//! 1. [`source`] downloads a dataset (OpenNeuro's S3 bucket);
//! 2. [`formats`] reads raw recordings (FIF, EDF/BDF, BrainVision) into the in-memory model
//!    of [`recording`];
//! 3. [`bids`] finds a dataset's runs, sidecars and derivatives, and opens a run the BIDS
//!    way (its sidecars win over the file);
//! 4. [`ingest`] checks every run and writes the manifest;
//! 5. [`clean`] (with [`dsp`]) screens, Maxwell-filters, repairs and filters a run;
//! 6. [`segment`] cuts it into windows or epochs;
//! 7. [`tokenizer`] maps samples to u8 levels;
//! 8. [`shards`] writes Parquet shards and the dataset card; [`noise_free`] is the noise
//!    ceiling's reference cut at the shards' windows;
//! 9. [`dag`] runs the stages as a make-like DAG.
//!
//! Shared by all: [`config`] (`brainformer.toml`), [`error`], [`fsutil`] (atomic writes,
//! file hashes). `bads`, `maxwell`, `proj` (under [`clean`]) and `npy` (under [`shards`])
//! keep their old paths through re-exports.

pub mod source;
pub mod formats;
pub mod recording;
pub mod bids;
pub mod ingest;
pub mod dsp;
pub mod clean;
pub mod segment;
pub mod tokenize;
pub mod shards;
pub mod dag;

pub mod config;
pub mod error;
pub mod fsutil;

pub use clean::{bads, maxwell, proj};
pub use formats::npy;
pub use shards::noise_free;
pub use tokenize as tokenizer;

pub use error::{Error, Result};
pub use recording::{Annotation, ChannelInfo, ChannelKind, RawReader, RecordingInfo, Unit};
