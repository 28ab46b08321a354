//! One error type for the pipeline library. Every variant that concerns a file names it,
//! so a user reading the message knows which file to look at and what is wrong with it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an I/O operation on `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes do not follow the format: `what` says which rule they break.
    #[error("{path}: invalid {format} file: {what}")]
    Format {
        path: PathBuf,
        format: &'static str,
        what: String,
    },
    /// The file is valid but uses a feature we do not read.
    #[error("{path}: unsupported {format} feature: {what}")]
    Unsupported {
        path: PathBuf,
        format: &'static str,
        what: String,
    },
    /// The caller asked for something the recording cannot give (a channel or sample range).
    #[error("{path}: {what}")]
    Request { path: PathBuf, what: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
    pub fn format(path: &Path, format: &'static str, what: impl Into<String>) -> Self {
        Error::Format { path: path.to_path_buf(), format, what: what.into() }
    }
    pub fn unsupported(path: &Path, format: &'static str, what: impl Into<String>) -> Self {
        Error::Unsupported { path: path.to_path_buf(), format, what: what.into() }
    }
    pub fn request(path: &Path, what: impl Into<String>) -> Self {
        Error::Request { path: path.to_path_buf(), what: what.into() }
    }
}
