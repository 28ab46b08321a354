//! The errors of a Hub upload. Each names the request that failed ("what": e.g. `LFS part 3/7
//! of data/train-00000-of-00001.parquet`) and, for HTTP answers, the status and the Hub's own
//! message, so that a user sees at once whether the token, the repository name, the revision
//! or the network is at fault. [`HubError::Incomplete`] is the upload-level error: it lists
//! what reached the Hub and says that nothing was committed.

use std::path::PathBuf;

/// Result of the Hub functions.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` (token file {path})")]
    NoToken { path: String },

    #[error("{what}: HTTP {status}: the token was refused ({message}); check HF_TOKEN or the token file and that it has write access to this repository")]
    Auth { what: String, status: u16, message: String },

    #[error("{what}: HTTP 404: not found ({message}); check the repository id, its type (dataset or model) and the revision")]
    NotFound { what: String, message: String },

    #[error("{what}: HTTP 409: conflict ({message})")]
    Conflict { what: String, message: String },

    #[error("{what}: HTTP 413: too large for the Hub ({message})")]
    TooLarge { what: String, message: String },

    #[error("{what}: HTTP {status}: {message}")]
    Http { what: String, status: u16, message: String },

    #[error("{what}: gave up after {attempts} attempts; last: {last}")]
    RetriesExhausted { what: String, attempts: u32, last: String },

    #[error("{what}: network error: {message}")]
    Network { what: String, message: String },

    #[error("{what}: unexpected answer from the Hub: {message}")]
    Protocol { what: String, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{0}")]
    Invalid(String),

    #[error("commit to {repo} failed, nothing committed ({uploaded} LFS object(s) are stored on the Hub and will not be sent again): {source}; run the same command again to commit")]
    CommitFailed { repo: String, uploaded: usize, source: Box<HubError> },

    #[error("upload to {repo} incomplete, nothing committed: {} of {} files failed ({}); already on the Hub: {}; run the same command again to send only what is missing",
        failed.len(), total, first_failure(failed), if uploaded.is_empty() { "none".to_string() } else { uploaded.join(", ") })]
    Incomplete { repo: String, total: usize, uploaded: Vec<String>, failed: Vec<(String, HubError)> },
}

fn first_failure(failed: &[(String, HubError)]) -> String {
    match failed.first() {
        Some((path, e)) if failed.len() == 1 => format!("{path}: {e}"),
        Some((path, e)) => format!("{path}: {e}; and {} more", failed.len() - 1),
        None => String::new(),
    }
}

impl HubError {
    /// The HTTP status behind the error, when there is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HubError::Auth { status, .. } | HubError::Http { status, .. } => Some(*status),
            HubError::NotFound { .. } => Some(404),
            HubError::Conflict { .. } => Some(409),
            HubError::TooLarge { .. } => Some(413),
            _ => None,
        }
    }

    /// Builds the error for a non-success status.
    pub fn from_status(what: &str, status: u16, message: String) -> HubError {
        let what = what.to_string();
        match status {
            401 | 403 => HubError::Auth { what, status, message },
            404 => HubError::NotFound { what, message },
            409 => HubError::Conflict { what, message },
            413 => HubError::TooLarge { what, message },
            _ => HubError::Http { what, status, message },
        }
    }
}
