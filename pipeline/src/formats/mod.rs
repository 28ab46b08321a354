//! Raw file readers. Each format lives in its own module and returns a [`RawReader`];
//! [`open`] picks one from the file name the way MNE's `read_raw` does.
//!
//! Why our own readers instead of the `fiff` and `edf-reader` crates: see the module docs of
//! [`fif`] and [`edf`] (both crates were evaluated against MNE on ../shared/data).
//! [`npy`] writes NumPy arrays (`bf-pipeline convert`, the fixtures' gain matrices, the
//! Maxwell tests' dumps).

pub mod brainvision;
pub mod edf;
pub mod fif;
pub mod npy;
pub(crate) mod io;

use std::path::Path;

use crate::error::{Error, Result};
use crate::recording::RawReader;

/// Opens a raw recording by its extension: `.fif`, `.fif.gz`, `.edf`, `.bdf`, `.vhdr`.
pub fn open(path: &Path) -> Result<Box<dyn RawReader>> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".fif") || name.ends_with(".fif.gz") {
        Ok(Box::new(fif::FifReader::open(path)?))
    } else if name.ends_with(".edf") || name.ends_with(".bdf") {
        Ok(Box::new(edf::EdfReader::open(path)?))
    } else if name.ends_with(".vhdr") {
        Ok(Box::new(brainvision::BrainVisionReader::open(path)?))
    } else {
        Err(Error::unsupported(
            path,
            "raw",
            "unknown file extension (expected .fif, .fif.gz, .edf, .bdf or .vhdr)",
        ))
    }
}
