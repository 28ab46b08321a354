//! BIDS TSV tables (`channels.tsv`, `events.tsv`, `participants.tsv`) read with polars.
//! Every column is read as text (`n/a` → missing) and converted here, so a malformed cell
//! is reported with the file, the column and the row instead of a silent type guess.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

const FORMAT: &str = "BIDS TSV";

/// A TSV file as text columns.
pub struct Table {
    pub path: PathBuf,
    df: DataFrame,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table> {
        if !path.is_file() {
            return Err(Error::format(path, FORMAT, "file is missing"));
        }
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .map_parse_options(|o| {
                o.with_separator(b'\t')
                    .with_quote_char(None)
                    .with_null_values(Some(NullValues::AllColumnsSingle("n/a".into())))
            })
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| Error::format(path, FORMAT, format!("cannot parse as tab-separated values: {e}")))?;
        Ok(Table { path: path.to_path_buf(), df })
    }

    pub fn height(&self) -> usize {
        self.df.height()
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.df.get_column_names().iter().any(|c| c.as_str() == name)
    }

    /// A column's cells; a missing column is an error naming the file.
    pub fn column(&self, name: &str) -> Result<Vec<Option<String>>> {
        let col = self
            .df
            .column(name)
            .map_err(|_| Error::format(&self.path, FORMAT, format!("required column {name:?} is missing")))?;
        let s = col.str().map_err(|e| Error::format(&self.path, FORMAT, format!("column {name:?}: {e}")))?;
        Ok(s.iter().map(|v| v.map(str::to_string)).collect())
    }

    pub fn optional_column(&self, name: &str) -> Result<Option<Vec<Option<String>>>> {
        if self.has_column(name) {
            self.column(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A numeric column; missing cells are `None`, unparsable ones an error with the row.
    pub fn f64_column(&self, name: &str) -> Result<Vec<Option<f64>>> {
        self.column(name)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| match v {
                None => Ok(None),
                Some(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                    Error::format(&self.path, FORMAT, format!("column {name:?} row {}: {s:?} is not a number", row + 1))
                }),
            })
            .collect()
    }
}

/// One row of `channels.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRow {
    pub name: String,
    pub typ: String,
    pub units: Option<String>,
    /// `status == bad`.
    pub bad: bool,
}

pub fn read_channels(path: &Path) -> Result<Vec<ChannelRow>> {
    let t = Table::read(path)?;
    let names = t.column("name")?;
    let types = t.column("type")?;
    let units = t.optional_column("units")?;
    let status = t.optional_column("status")?;
    let mut rows = Vec::with_capacity(t.height());
    for i in 0..t.height() {
        let name = names[i].clone().ok_or_else(|| Error::format(path, FORMAT, format!("row {} has no channel name", i + 1)))?;
        let typ = types[i].clone().ok_or_else(|| Error::format(path, FORMAT, format!("channel {name:?} has no type")))?;
        let st = status.as_ref().and_then(|s| s[i].clone());
        if let Some(st) = &st {
            if st != "good" && st != "bad" {
                return Err(Error::format(path, FORMAT, format!("channel {name:?} has status {st:?} (expected good, bad or n/a)")));
            }
        }
        rows.push(ChannelRow { name, typ: typ.to_uppercase(), units: units.as_ref().and_then(|u| u[i].clone()), bad: st.as_deref() == Some("bad") });
    }
    Ok(rows)
}

/// One row of `events.tsv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub onset: f64,
    pub duration: f64,
    pub trial_type: Option<String>,
    pub value: Option<String>,
    pub sample: Option<i64>,
}

pub fn read_events(path: &Path) -> Result<Vec<EventRow>> {
    let t = Table::read(path)?;
    let onset = t.f64_column("onset")?;
    let duration = t.f64_column("duration")?;
    // `stim_type` is BIDS 1.0's name for `trial_type` (ds000117 uses it); mne-bids reads it
    // the same way for backward compatibility.
    let trial_type = match t.optional_column("trial_type")? {
        Some(c) => Some(c),
        None => t.optional_column("stim_type")?,
    };
    let value = t.optional_column("value")?;
    let sample = if t.has_column("sample") { Some(t.f64_column("sample")?) } else { None };
    (0..t.height())
        .map(|i| {
            let onset = onset[i].ok_or_else(|| Error::format(path, FORMAT, format!("row {} has no onset", i + 1)))?;
            Ok(EventRow {
                onset,
                duration: duration[i].unwrap_or(0.0),
                trial_type: trial_type.as_ref().and_then(|c| c[i].clone()),
                value: value.as_ref().and_then(|c| c[i].clone()),
                sample: sample.as_ref().and_then(|c| c[i]).map(|s| s.round() as i64),
            })
        })
        .collect()
}

/// `participant_id` values of `participants.tsv`.
pub fn read_participants(path: &Path) -> Result<Vec<String>> {
    Ok(Table::read(path)?.column("participant_id")?.into_iter().flatten().collect())
}
