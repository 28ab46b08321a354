//! `bf_hub`: push a local folder (the dataset shards, a checkpoint) to a Hugging Face Hub
//! repository through the Hub's HTTP API, as `huggingface_hub`'s `upload_folder` does:
//! create the repository if missing, ask the Hub (preupload) which files are stored with LFS
//! and which are already there, upload the missing LFS objects (basic or multipart transfer,
//! parts in parallel, each request retried with backoff), then make one commit (NDJSON) with
//! the LFS pointers and the small files. The commit is the last and only write to the
//! repository's history, so an interrupted upload leaves nothing half-committed, and running
//! it again sends only what the Hub does not have yet.
//!
//! No model or dataframe code lives here: the crate only moves bytes, so `bf-pipeline upload`
//! and (later) `bf-train --push-to-hub` share it.

pub mod auth;
pub mod card;
pub mod client;
pub mod commit;
pub mod error;
pub mod lfs;
pub mod repo;
pub mod upload;

pub use auth::{HubEnv, Token};
pub use client::{HubClient, RetryPolicy};
pub use error::{HubError, Result};
pub use upload::{upload_checkpoint, upload_folder, UploadOptions, UploadReport};

/// The kind of repository: it decides the URL prefixes (`/api/models/…` vs `/api/datasets/…`,
/// `{repo}.git` vs `datasets/{repo}.git`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    /// `"model"` / `"dataset"`, as in the Hub's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }

    /// The `/api/{…}` segment: `models` / `datasets`.
    pub fn api_segment(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    /// The prefix of web and git URLs: empty for models, `datasets/` for datasets.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        }
    }
}

/// Byte progress of an upload (the CLI draws a bar with it). Every method has a no-op default.
pub trait Progress: Sync {
    /// The bytes that will be sent in all.
    fn start(&self, _total_bytes: u64) {}
    /// Bytes just sent.
    fn advance(&self, _bytes: u64) {}
    /// Bytes of a failed attempt, to be sent again.
    fn rewind(&self, _bytes: u64) {}
    /// What is happening now (a stage or a file).
    fn message(&self, _msg: &str) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}
