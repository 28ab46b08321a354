//! Small positioned-read helpers shared by the readers: every error names the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Opens `path` for reading, naming it in the error.
pub fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(path, e))
}

/// Reads exactly `buf.len()` bytes at `offset` (thread-safe: no shared cursor). A short file
/// is reported as a format error ("truncated"), not as a bare I/O error.
pub fn read_exact_at(file: &File, path: &Path, format: &'static str, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(
                path,
                format,
                format!("file is truncated: {} bytes expected at offset {offset}", buf.len()),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// The file's length in bytes.
pub fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(|e| Error::io(path, e))?.len())
}
