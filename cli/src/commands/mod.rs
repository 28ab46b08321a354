//! One module per `bf-pipeline` subcommand.

pub mod bads;
pub mod bench_read;
pub mod clean;
pub mod convert;
pub mod download;
pub mod filter;
pub mod filter_design;
pub mod ingest;
pub mod info;
pub mod resample;
