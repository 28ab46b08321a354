//! `bf-pipeline convert FILE OUT.npy|OUT.fif`: read any supported recording, write NumPy or FIF.
//! Both outputs are streamed in time chunks (bounded memory) and written atomically.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use bf_pipeline::formats::fif::write::{write_raw, FifSampleFormat, WriteOptions};
use bf_pipeline::npy;
use bf_pipeline::RawReader;

/// Samples per chunk when streaming: ~10 s at 1 kHz keeps memory small for any channel count.
const CHUNK: usize = 10_000;

/// Convert a recording to a NumPy .npy (float64, channels × samples, SI units) or to FIF.
///
/// The output format follows OUT's extension. Channels stay in file order.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The recording to read.
    pub file: PathBuf,
    /// Output path: `.npy` or `.fif`.
    pub out: PathBuf,
    /// Channels to keep: comma-separated names and/or MNE types (eeg, meg, mag, grad,
    /// stim, eog, ecg, misc, ...). Default: all channels.
    #[arg(long, value_delimiter = ',')]
    pub picks: Vec<String>,
    /// Start time in seconds from the first sample (as MNE's `raw.crop(tmin=...)`).
    #[arg(long)]
    pub tmin: Option<f64>,
    /// End time in seconds, included (as MNE's `raw.crop(tmax=...)`).
    #[arg(long)]
    pub tmax: Option<f64>,
    /// Apply the recording's SSP projectors (as MNE's `raw.apply_proj()`).
    #[arg(long)]
    pub proj: bool,
    /// FIF output only: sample format of the data buffers.
    #[arg(long, default_value = "float32", value_parser = ["float32", "int16"])]
    pub fif_format: String,
}

pub fn run(a: &ConvertArgs) -> Result<()> {
    convert(&a.file, &a.out, &a.picks, a.tmin, a.tmax, a.proj, &a.fif_format)
}

/// Writes channels `picks` of `file` between `tmin` and `tmax` to `out` (.npy or .fif).
pub fn convert(file: &Path, out: &Path, picks: &[String], tmin: Option<f64>, tmax: Option<f64>, proj: bool, fif_format: &str) -> Result<()> {
    let opened = bf_pipeline::formats::open(file)?;
    let projected = if proj { bf_pipeline::proj::Projected::new(opened.as_ref())? } else { None };
    let reader: &dyn RawReader = match &projected {
        Some(p) => p,
        None => opened.as_ref(),
    };
    let info = reader.info();
    let picks = info.resolve_picks(picks)?;
    let (start, stop) = info.crop_range(tmin, tmax)?;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    match ext.as_str() {
        "npy" => write_npy(reader, &picks, start, stop, out),
        "fif" => {
            let format = match fif_format {
                "int16" => FifSampleFormat::Int16,
                _ => FifSampleFormat::Float32,
            };
            let options = WriteOptions { format, ..WriteOptions::default() };
            write_raw(reader, &picks, start, stop, out, &options)?;
            Ok(())
        }
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
}

/// Writes `picks × start..stop` as a float64 `.npy`, chunk by chunk through positioned writes
/// (rows are contiguous in a C-ordered array, chunks are columns), then renames into place.
pub fn write_npy(reader: &dyn RawReader, picks: &[usize], start: usize, stop: usize, out: &Path) -> Result<()> {
    let n = stop - start;
    bf_pipeline::fsutil::write_atomic_with(out, |file| {
        let io = |e: std::io::Error| bf_pipeline::Error::io(out, e);
        let mut header = Vec::new();
        npy::write_header_f64(&mut header, (picks.len(), n)).map_err(io)?;
        file.write_all_at(&header, 0).map_err(io)?;
        let mut chunk_start = start;
        let mut values = Vec::new();
        let mut bytes = Vec::new();
        while chunk_start < stop {
            let chunk_stop = (chunk_start + CHUNK).min(stop);
            let len = chunk_stop - chunk_start;
            values.resize(picks.len() * len, 0.0);
            reader.read_into_f64(picks, chunk_start, chunk_stop, &mut values)?;
            for (row, row_values) in values.chunks(len).enumerate() {
                bytes.clear();
                for v in row_values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                let offset = header.len() + (row * n + (chunk_start - start)) * 8;
                file.write_all_at(&bytes, offset as u64).map_err(io)?;
            }
            chunk_start = chunk_stop;
        }
        Ok(())
    })?;
    Ok(())
}

/// Writes every channel of `rec` to `out`: `.npy` (float64) or `.fif` (float32), atomically.
/// The output step of `filter`, `resample` and `clean`.
pub fn write_recording(rec: &dyn RawReader, out: &Path) -> Result<()> {
    check_output_extension(out)?;
    let all = rec.all_picks();
    let n = rec.info().n_samples;
    if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        write_npy(rec, &all, 0, n, out)
    } else {
        write_raw(rec, &all, 0, n, out, &WriteOptions::default())?;
        Ok(())
    }
}

/// Checks `out`'s extension before any work is done.
pub fn check_output_extension(out: &Path) -> Result<()> {
    match out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase().as_str() {
        "npy" | "fif" => Ok(()),
        _ => bail!("{}: unknown output extension (expected .npy or .fif)", out.display()),
    }
}

