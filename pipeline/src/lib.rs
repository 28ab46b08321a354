//! Brainformer's data pipeline: everything from raw files to training shards, without libtorch.
//!
//! The folders follow the data flow (see ARCHITECTURE.md at the repository root):
//! `formats` reads raw recordings (FIF, EDF/BDF, BrainVision) into the in-memory model of
//! [`recording`]; later stages (BIDS, cleaning, segmenting, tokenizing, shards) build on it.

pub mod bads;
pub mod bids;
pub mod clean;
pub mod config;
pub mod dag;
pub mod dsp;
pub mod fsutil;
pub mod ingest;
pub mod error;
pub mod formats;
pub mod maxwell;
pub mod recording;
pub mod noise_free;
pub mod npy;
pub mod proj;
pub mod segment;
pub mod shards;
pub mod source;
pub mod tokenizer;

pub use error::{Error, Result};
pub use recording::{Annotation, ChannelInfo, ChannelKind, RawReader, RecordingInfo, Unit};
