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
    /// A remote server could not be reached or the transfer broke off (after any retries).
    #[error("{url}: network error: {what}")]
    Network { url: String, what: String },
    /// A remote server answered with an HTTP error status (`what` carries the server's own
    /// error code and message where it sent one, e.g. S3's `NoSuchKey` or `AccessDenied`).
    #[error("{url}: HTTP {status}: {what}")]
    Http { url: String, status: u16, what: String },
    /// A remote server answered, but the answer is unusable (malformed listing, no objects
    /// for a dataset, a key that would escape the destination folder).
    #[error("{url}: {what}")]
    Remote { url: String, what: String },
    /// A downloaded file does not match what the server announced (size or MD5).
    #[error("{path}: downloaded from {url}: {what}")]
    Verify { path: PathBuf, url: String, what: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, each text once: `a: b: c`. Our errors already name
/// their file and carry their cause's text (`path: os error`), and contexts often repeat the
/// file, so printing every cause (anyhow's `{:#}`) gives `X: msg: X: msg`. A cause whose text
/// is already on the line is left out; a cause that contains the whole line so far replaces
/// it. Every binary prints its errors through this (an `anyhow::Error` coerces with
/// `.as_ref()`).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        cause = c.source();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() && text.contains(&line) {
            line = text;
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

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
