//! The cache of data-file hashes (`derivatives/brainformer/stamps/input-hashes.json`), keyed by
//! (path, size, mtime): ingest fills it while it hashes the runs anyway, and the DAG's input
//! keys ([`crate::dag::inputs`]) read it, so an 870 MB run is read once, not on every `plan`.
//! A file whose size or mtime moved is hashed again; only a change of content changes the
//! hash (a `touch` costs a re-hash, not a rebuild).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{hash_files, write_atomic};
use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct CachedHash {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

/// A data file's hash as the DAG keys it (`hash_files(&[path])`), with the size and mtime
/// the file had before it was read. Ingest computes these while it hashes the runs anyway.
#[derive(Clone, Debug, PartialEq)]
pub struct FileHash {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub blake3: String,
}

/// The size and modification time (ns since the epoch; 0 where unknown) that key the cache.
pub fn size_and_mtime(file: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
    Ok((meta.len(), meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())))
}

/// The cache of one derivatives folder, read at [`HashCache::open`] and written back (only
/// if it changed) by [`HashCache::save`]. Callers hold the folder's exclusive lock.
pub struct HashCache {
    path: PathBuf,
    entries: BTreeMap<String, CachedHash>,
    changed: bool,
}

impl HashCache {
    /// The cache of `derivatives` (empty when absent or unreadable: it is only a cache).
    pub fn open(derivatives: &Path) -> HashCache {
        let path = derivatives.join("stamps").join("input-hashes.json");
        let entries = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        HashCache { path, entries, changed: false }
    }

    /// `file`'s hash: the cached one when its size and mtime are unchanged, else computed
    /// (and cached).
    pub fn hash(&mut self, file: &Path) -> Result<String> {
        let (size, mtime_ns) = size_and_mtime(file)?;
        let key = file.to_string_lossy().into_owned();
        if let Some(c) = self.entries.get(&key) {
            if c.size == size && c.mtime_ns == mtime_ns {
                return Ok(c.blake3.clone());
            }
        }
        let blake3 = hash_files(&[file.to_path_buf()])?;
        self.insert(key, CachedHash { size, mtime_ns, blake3: blake3.clone() });
        Ok(blake3)
    }

    /// Adds a hash computed elsewhere (ingest).
    pub fn remember(&mut self, h: FileHash) {
        self.insert(h.path.to_string_lossy().into_owned(), CachedHash { size: h.size, mtime_ns: h.mtime_ns, blake3: h.blake3 });
    }

    fn insert(&mut self, key: String, value: CachedHash) {
        if self.entries.get(&key) != Some(&value) {
            self.entries.insert(key, value);
            self.changed = true;
        }
    }

    /// Writes the cache back atomically if anything changed.
    pub fn save(self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        write_atomic(&self.path, serde_json::to_string_pretty(&self.entries).expect("JSON").as_bytes())
    }
}

/// Adds hashes computed elsewhere (ingest) to the cache in `derivatives/stamps/`. Callers
/// hold the folder's exclusive lock, as `tokenize` does when it writes the cache.
pub fn remember_hashes(derivatives: &Path, hashes: impl IntoIterator<Item = FileHash>) -> Result<()> {
    let mut cache = HashCache::open(derivatives);
    hashes.into_iter().for_each(|h| cache.remember(h));
    cache.save()
}
