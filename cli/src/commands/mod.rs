//! One module per `bf-pipeline` subcommand, each owning its `#[derive(clap::Args)]` struct
//! (flags, defaults and help text) and its `run`; [`args`] holds the groups several share.

pub mod args;
pub mod bads;
pub mod bench_read;
pub mod preprocess_file;
pub mod convert;
pub mod dag;
pub mod download;
pub mod epochs;
pub mod filter;
pub mod filter_chpi;
pub mod filter_design;
pub mod find_bads_maxwell;
pub mod ingest;
pub mod maxwell;
pub mod info;
pub mod resample;
pub mod upload;
