//! Download plans: what a download will fetch, held against what is already on disk and the
//! free space at the destination, before the first byte moves.
//!
//! [`plan_download`](super::plan_download) lists the dataset, applies the [`Selection`](super::Selection)
//! and looks at each selected file's local state without writing anything:
//!
//! - **complete**: the final file exists with the listing's size. It counts as present; the
//!   download then also checks its MD5 (when the ETag is one) and fetches it again if that
//!   differs, which the plan cannot foresee without reading every byte.
//! - **partial**: a `<file>.part` of at most the listing's size exists; its bytes count as
//!   present and the download continues it with a `Range` request.
//! - **missing**: anything else (no file, a file of another size, a `.part` longer than the
//!   object, which is restarted). Every byte is still to download.
//!
//! The free-space check ([`DownloadPlan::check_space`]) needs the bytes still to download plus
//! a margin of 1 % of them (rounded up), at least [`SPACE_MARGIN_MIN`] = 64 MiB (none when
//! nothing is left to download): room for file-system overhead (block rounding, folders) and
//! for whatever else writes to the disk meanwhile. The available space is what `statvfs`
//! reports to unprivileged users on the destination, or on its nearest existing ancestor when
//! the destination does not exist yet; the environment variable [`FREE_SPACE_ENV`] replaces the
//! measured value (a testing aid).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::openneuro::{local_path, part_path};
use super::s3::RemoteObject;
use crate::error::{Error, Result};

/// Environment variable that, when set to a number of bytes, replaces the measured free space
/// of the destination (for tests of the free-space check).
pub const FREE_SPACE_ENV: &str = "BF_FREE_SPACE_BYTES";
/// The free-space margin is 1 % of the bytes still to download, and at least this many bytes.
pub const SPACE_MARGIN_MIN: u64 = 64 << 20;

/// The name of the part of the dataset files are grouped under in a plan's table for files
/// outside any folder.
pub const TOP_LEVEL_GROUP: &str = "(top level)";

/// What is on disk for one selected object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LocalState {
    /// Nothing usable: every byte is to download.
    Missing,
    /// A `.part` holding the first `bytes` bytes: the download continues it.
    Partial { bytes: u64 },
    /// The final file with the listing's size: skipped (after its MD5 check, when checkable).
    Complete,
}

/// One selected object and its local state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedFile {
    /// The full key in the bucket.
    pub key: String,
    /// The path relative to the destination (`/`-separated).
    pub rel: String,
    /// The size in the listing.
    pub size: u64,
    #[serde(skip)]
    pub etag: String,
    #[serde(flatten)]
    pub local: LocalState,
}

impl PlannedFile {
    /// Bytes already on disk (a complete file or a `.part`).
    pub fn present(&self) -> u64 {
        match self.local {
            LocalState::Missing => 0,
            LocalState::Partial { bytes } => bytes.min(self.size),
            LocalState::Complete => self.size,
        }
    }

    /// Bytes still to download.
    pub fn remaining(&self) -> u64 {
        self.size - self.present()
    }

    /// The group of the plan's table: the subject folder (`sub-01`), another top-level folder
    /// (`derivatives`, `sourcedata`), or [`TOP_LEVEL_GROUP`].
    pub fn group(&self) -> &str {
        match self.rel.split_once('/') {
            Some((first, _)) => first,
            None => TOP_LEVEL_GROUP,
        }
    }

    pub(crate) fn object(&self) -> RemoteObject {
        RemoteObject { key: self.key.clone(), size: self.size, etag: self.etag.clone() }
    }
}

/// Counts and bytes over a set of planned files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanTotals {
    pub files: u64,
    /// Files already complete on disk.
    pub files_complete: u64,
    /// Files with a `.part` to continue.
    pub files_partial: u64,
    /// Total size of the files (the listing's sizes).
    pub bytes: u64,
    /// Bytes already on disk (complete files and `.part` files).
    pub bytes_present: u64,
    /// Bytes still to download (`bytes - bytes_present`).
    pub bytes_to_download: u64,
}

impl PlanTotals {
    fn add(&mut self, f: &PlannedFile) {
        self.files += 1;
        match f.local {
            LocalState::Complete => self.files_complete += 1,
            LocalState::Partial { .. } => self.files_partial += 1,
            LocalState::Missing => {}
        }
        self.bytes += f.size;
        self.bytes_present += f.present();
        self.bytes_to_download += f.remaining();
    }
}

/// One line of a plan's table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanGroup {
    /// `sub-01`, `derivatives`, [`TOP_LEVEL_GROUP`], ...
    pub name: String,
    #[serde(flatten)]
    pub totals: PlanTotals,
}

/// What a download will do; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPlan {
    /// The accession number, e.g. `ds000117`.
    pub dataset: String,
    pub dest: PathBuf,
    /// The selected objects, in listing order.
    pub files: Vec<PlannedFile>,
    /// `(key, message)` of listed keys refused as paths (they become failures of the download).
    pub refused: Vec<(String, String)>,
}

impl DownloadPlan {
    /// Totals over every selected file.
    pub fn totals(&self) -> PlanTotals {
        let mut t = PlanTotals::default();
        self.files.iter().for_each(|f| t.add(f));
        t
    }

    /// Totals per group: the top-level files first, then the subjects, then other folders.
    pub fn groups(&self) -> Vec<PlanGroup> {
        let mut by: BTreeMap<(u8, &str), PlanTotals> = BTreeMap::new();
        for f in &self.files {
            let name = f.group();
            let rank = if name == TOP_LEVEL_GROUP {
                0
            } else if name.starts_with("sub-") {
                1
            } else {
                2
            };
            by.entry((rank, name)).or_default().add(f);
        }
        by.into_iter().map(|((_, name), totals)| PlanGroup { name: name.to_string(), totals }).collect()
    }

    /// Bytes of free space the download needs: what is still to download plus the margin.
    pub fn space_needed(&self) -> u64 {
        space_needed(self.totals().bytes_to_download)
    }

    /// Measures the free space at the destination (or takes it from [`FREE_SPACE_ENV`]).
    /// Writes nothing. `Err` only when it cannot be measured or the variable is not a number.
    pub fn check_space(&self) -> Result<SpaceCheck> {
        let remaining = self.totals().bytes_to_download;
        let (available, measured_at, overridden) = available_space(&self.dest)?;
        Ok(SpaceCheck { measured_at, available, to_download: remaining, needed: space_needed(remaining), overridden })
    }
}

/// The margin added to `remaining` bytes (see the module docs).
pub fn space_margin(remaining: u64) -> u64 {
    if remaining == 0 {
        0
    } else {
        remaining.div_ceil(100).max(SPACE_MARGIN_MIN)
    }
}

/// `remaining` plus its margin.
pub fn space_needed(remaining: u64) -> u64 {
    remaining.saturating_add(space_margin(remaining))
}

/// The free space held against a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpaceCheck {
    /// The folder measured: the destination or its nearest existing ancestor.
    pub measured_at: PathBuf,
    /// Bytes available to unprivileged users there.
    pub available: u64,
    /// Bytes still to download.
    pub to_download: u64,
    /// `to_download` plus the margin.
    pub needed: u64,
    /// Whether `available` came from [`FREE_SPACE_ENV`] instead of the file system.
    pub overridden: bool,
}

impl SpaceCheck {
    pub fn enough(&self) -> bool {
        self.available >= self.needed
    }

    pub fn shortfall(&self) -> u64 {
        self.needed.saturating_sub(self.available)
    }

    /// Where the available figure came from, for messages.
    pub fn source(&self) -> String {
        if self.overridden {
            format!("{FREE_SPACE_ENV} (instead of measuring {})", self.measured_at.display())
        } else {
            self.measured_at.display().to_string()
        }
    }

    /// `Ok` when there is enough space, else the error naming the destination and the figures.
    pub fn require(&self, dataset: &str, dest: &Path) -> Result<()> {
        if self.enough() {
            return Ok(());
        }
        Err(Error::request(
            dest,
            format!(
                "not enough free disk space to download {dataset}: {} needed ({} still to download + {} margin), \
                 {} available on {}, {} short; nothing was written. Free some space, choose another --dest, \
                 or select less (--subjects, --datatype, --include)",
                both(self.needed),
                human_bytes(self.to_download),
                human_bytes(self.needed - self.to_download),
                both(self.available),
                self.source(),
                both(self.shortfall()),
            ),
        ))
    }
}

/// `1.50 GiB (1610612736 bytes)`.
pub fn both(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{} ({n} bytes)", human_bytes(n))
    }
}

/// Binary units with three significant digits: `512 B`, `1.50 KiB`, `870 MiB`, `160 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    // Round first so that 1023.99 KiB does not print as "1024 KiB".
    let digits = if v < 9.995 {
        2
    } else if v < 99.95 {
        1
    } else {
        0
    };
    if digits == 0 && v >= 1023.5 && u + 1 < UNITS.len() {
        return format!("1.00 {}", UNITS[u + 1]);
    }
    format!("{v:.digits$} {}", UNITS[u])
}

/// What is on disk for an object of `size` bytes whose final path is `path`.
pub fn local_state(path: &Path, size: u64) -> LocalState {
    if fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size) {
        return LocalState::Complete;
    }
    match fs::metadata(part_path(path)) {
        Ok(m) if m.is_file() && m.len() > 0 && m.len() <= size => LocalState::Partial { bytes: m.len() },
        _ => LocalState::Missing,
    }
}

/// Plans the selected objects `(object, relative path)` against what is under `dest`.
pub(crate) fn plan_files(dest: &Path, selected: Vec<(RemoteObject, String)>) -> Vec<PlannedFile> {
    selected
        .into_iter()
        .map(|(o, rel)| {
            let local = local_state(&local_path(dest, &rel), o.size);
            PlannedFile { key: o.key, rel, size: o.size, etag: o.etag, local }
        })
        .collect()
}

/// The nearest existing ancestor of `path` (itself when it exists); `.` for a relative path
/// none of whose ancestors exist.
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path;
    loop {
        if p.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
        if fs::metadata(p).is_ok() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return p.to_path_buf(),
        }
    }
}

/// `(bytes available, folder measured, overridden by FREE_SPACE_ENV)` for `dest` (also the
/// pipeline's check before a run, `dag::space`).
pub fn available_space(dest: &Path) -> Result<(u64, PathBuf, bool)> {
    let at = nearest_existing(dest);
    if let Some(v) = std::env::var_os(FREE_SPACE_ENV) {
        let s = v.to_string_lossy();
        let n = s.trim().parse::<u64>().map_err(|_| {
            Error::request(dest, format!("{FREE_SPACE_ENV}={s:?} is not a number of bytes"))
        })?;
        return Ok((n, at, true));
    }
    let n = fs4::available_space(&at).map_err(|e| Error::io(&at, e))?;
    Ok((n, at, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> (RemoteObject, String) {
        let rel = key.strip_prefix("ds1/").unwrap().to_string();
        (RemoteObject { key: key.into(), size, etag: String::new() }, rel)
    }

    #[test]
    fn plan_counts_complete_partial_and_missing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path();
        std::fs::create_dir_all(dest.join("sub-01/meg")).unwrap();
        std::fs::create_dir_all(dest.join("sub-02/meg")).unwrap();
        std::fs::write(dest.join("README"), b"hello").unwrap(); // complete
        std::fs::write(dest.join("CHANGES"), b"12").unwrap(); // wrong size: missing
        std::fs::write(dest.join("sub-01/meg/a.fif.part"), vec![0u8; 400]).unwrap(); // partial
        std::fs::write(dest.join("sub-01/meg/b.fif.part"), vec![0u8; 2000]).unwrap(); // too long: restarted
        std::fs::write(dest.join("sub-02/meg/c.fif"), vec![0u8; 300]).unwrap(); // complete
        std::fs::write(dest.join("sub-02/meg/d.fif.part"), []).unwrap(); // empty part: missing
        let files = plan_files(
            dest,
            vec![
                obj("ds1/README", 5),
                obj("ds1/CHANGES", 10),
                obj("ds1/sub-01/meg/a.fif", 1000),
                obj("ds1/sub-01/meg/b.fif", 1000),
                obj("ds1/sub-02/meg/c.fif", 300),
                obj("ds1/sub-02/meg/d.fif", 50),
                obj("ds1/derivatives/x/sub-01/meg/e.fif", 7000),
            ],
        );
        let states: Vec<_> = files.iter().map(|f| f.local).collect();
        assert_eq!(
            states,
            vec![
                LocalState::Complete,
                LocalState::Missing,
                LocalState::Partial { bytes: 400 },
                LocalState::Missing,
                LocalState::Complete,
                LocalState::Missing,
                LocalState::Missing,
            ]
        );
        let plan = DownloadPlan { dataset: "ds1".into(), dest: dest.into(), files, refused: vec![] };
        let t = plan.totals();
        assert_eq!(
            t,
            PlanTotals {
                files: 7,
                files_complete: 2,
                files_partial: 1,
                bytes: 5 + 10 + 1000 + 1000 + 300 + 50 + 7000,
                bytes_present: 5 + 400 + 300,
                bytes_to_download: 10 + 600 + 1000 + 50 + 7000,
            }
        );
        let g = plan.groups();
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec![TOP_LEVEL_GROUP, "sub-01", "sub-02", "derivatives"]);
        assert_eq!((g[0].totals.files, g[0].totals.bytes_present, g[0].totals.bytes_to_download), (2, 5, 10));
        assert_eq!((g[1].totals.files_partial, g[1].totals.bytes_to_download), (1, 1600));
        assert_eq!((g[2].totals.files_complete, g[2].totals.bytes_to_download), (1, 50));
        assert_eq!(g[3].totals.bytes_to_download, 7000);
        // The groups add up to the totals.
        assert_eq!(g.iter().map(|g| g.totals.bytes_to_download).sum::<u64>(), t.bytes_to_download);
        assert_eq!(g.iter().map(|g| g.totals.files).sum::<u64>(), t.files);
        assert_eq!(plan.space_needed(), t.bytes_to_download + SPACE_MARGIN_MIN);
    }

    #[test]
    fn margin_and_space_check() {
        assert_eq!(space_needed(0), 0);
        assert_eq!(space_needed(1), 1 + SPACE_MARGIN_MIN);
        assert_eq!(space_needed(100 << 30), (100 << 30) + (1 << 30)); // 1 % of 100 GiB
        assert_eq!(space_needed((100 << 30) + 1), (100 << 30) + 1 + (1 << 30) + 1); // rounded up
        let check = |available| SpaceCheck {
            measured_at: "/data".into(),
            available,
            to_download: 1000,
            needed: space_needed(1000),
            overridden: true,
        };
        assert!(check(space_needed(1000)).require("ds1", Path::new("/data/ds1")).is_ok());
        let e = check(space_needed(1000) - 5).require("ds1", Path::new("/data/ds1")).unwrap_err().to_string();
        assert!(e.starts_with("/data/ds1: not enough free disk space to download ds1"), "{e}");
        assert!(e.contains(&format!("({} bytes) needed", space_needed(1000))), "{e}");
        assert!(e.contains(&format!("({} bytes) available on {FREE_SPACE_ENV}", space_needed(1000) - 5)), "{e}");
        assert!(e.contains("5 bytes short"), "{e}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(870_000_000), "830 MiB");
        assert_eq!(human_bytes(172_162_000_000), "160 GiB");
        assert_eq!(human_bytes((1 << 20) - 1), "1.00 MiB");
        assert_eq!(both(64 << 20), "64.0 MiB (67108864 bytes)");
    }

    #[test]
    fn nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(nearest_existing(&dir.path().join("a/b/c")), dir.path());
        assert_eq!(nearest_existing(dir.path()), dir.path());
        assert_eq!(nearest_existing(Path::new("no-such-folder-xyz/sub")), PathBuf::from("."));
    }
}
