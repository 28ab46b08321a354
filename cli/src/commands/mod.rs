//! One module per `bf-pipeline` subcommand.

pub mod bads;
pub mod bench_read;
pub mod preprocess_file;
pub mod convert;
pub mod dag;
pub mod download;
pub mod epochs;
pub mod filter;
pub mod filter_design;
pub mod find_bads_maxwell;
pub mod ingest;
pub mod maxwell;
pub mod info;
pub mod resample;
pub mod upload;
