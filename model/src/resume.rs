//! What makes a training run "the same run" for `bf-train --resume`, and the shards' content
//! key.
//!
//! A run's identity ([`RunIdentity`], saved in `trainer_state.json`) is what changes the
//! weights it computes:
//! - the shards, by **content** ([`ShardContent`]: BLAKE3 of every training and validation
//!   shard file, so shards rebuilt in place with other data are noticed, and shards rebuilt
//!   with the same bytes, which the deterministic writers give for the same inputs, are not)
//!   and by **canonical path** of their `data/` folder (so `./x/`, `x`, an absolute path or
//!   another working directory are the same shards). The same content at another path (a
//!   copy on a node's local disk) is the same shards, reported as a move; checkpoints written
//!   before content keys existed are compared by path alone;
//! - the settings that shape the model or the optimisation (a name → value map filled by the
//!   binary: model size, objective, batch, learning rate, schedule, seed, ...);
//! - `max_steps`, which may be raised on resume (to extend a run) but not lowered.
//!
//! Settings that only stop, print or place the computation (`--stop_after`, `--quiet`,
//! `--device`, `--threads`, validation cadence and patience) are not part of it.
//!
//! Hashing reads every shard once per new run; the per-file keys are cached by (size, mtime)
//! in the checkpoint, so a resume rereads only the files whose size or mtime moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// One shard file's key: BLAKE3 of its bytes, with the size and mtime it was computed at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime_ns: u64,
    pub blake3: String,
}

/// The content key of a set of shard files.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardContent {
    /// BLAKE3 over the files' names and content keys, in name order.
    pub key: String,
    /// File name (inside the shards' `data/` folder) → its key.
    pub files: BTreeMap<String, FileKey>,
}

impl ShardContent {
    /// Hashes `files` (all in one folder); a file whose name, size and mtime equal an entry of
    /// `cache` takes that entry's hash without being read.
    pub fn of(files: &[PathBuf], cache: Option<&ShardContent>) -> Result<ShardContent> {
        let mut out = BTreeMap::new();
        for f in files {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let meta = std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
            let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
            let cached = cache.and_then(|c| c.files.get(&name)).filter(|k| k.size == meta.len() && k.mtime_ns == mtime_ns);
            let blake3 = match cached {
                Some(k) => k.blake3.clone(),
                None => {
                    let mut h = blake3::Hasher::new();
                    h.update_mmap_rayon(f).map_err(|e| Error::io(f, e))?;
                    h.finalize().to_hex().to_string()
                }
            };
            out.insert(name, FileKey { size: meta.len(), mtime_ns, blake3 });
        }
        let mut h = blake3::Hasher::new();
        for (name, k) in &out {
            h.update(name.as_bytes());
            h.update(&[0]);
            h.update(k.blake3.as_bytes());
            h.update(&[0]);
        }
        Ok(ShardContent { key: h.finalize().to_hex().to_string(), files: out })
    }

    /// The files that differ from `then`'s: `NAME (changed)`, `NAME (new)`, `NAME (gone)`.
    pub fn changed_files(&self, then: &ShardContent) -> Vec<String> {
        let mut v = Vec::new();
        for (name, k) in &self.files {
            match then.files.get(name) {
                None => v.push(format!("{name} (new)")),
                Some(old) if old.blake3 != k.blake3 => v.push(format!("{name} (changed)")),
                Some(_) => {}
            }
        }
        v.extend(then.files.keys().filter(|n| !self.files.contains_key(*n)).map(|n| format!("{n} (gone)")));
        v
    }
}

/// The shards' identity: the canonical path of the folder that holds the files.
pub fn canonical_shards_dir(dir: &Path) -> Result<PathBuf> {
    let data = crate::data::data_dir(dir);
    std::fs::canonicalize(&data).map_err(|e| Error::io(&data, e))
}

/// What `--resume` compares (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunIdentity {
    /// Canonical path of the shards' data folder.
    pub shards: PathBuf,
    /// Content key of the training and validation shards; `None` for checkpoints written
    /// before content keys existed.
    pub shards_content: Option<ShardContent>,
    /// Settings that change the weights, by their command-line names.
    pub settings: BTreeMap<String, Value>,
    pub max_steps: i64,
}

/// One setting that differs between a checkpoint and the command resuming it.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub key: String,
    pub then: String,
    pub now: String,
    /// Why it matters or what to do, when the key alone does not say.
    pub note: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} → {}", self.key, self.then, self.now)?;
        if let Some(n) = &self.note {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(unset)".into(),
        other => other.to_string(),
    }
}

impl RunIdentity {
    /// The identity of a checkpoint written before identities were saved: its arguments as
    /// JSON (same setting names), the shards path as given then (resolved against the current
    /// folder when possible), no content key.
    pub fn from_legacy_args(args: &Value, setting_names: &[&str]) -> RunIdentity {
        let settings = setting_names.iter().map(|k| (k.to_string(), args.get(*k).cloned().unwrap_or(Value::Null))).collect();
        let shards = args.get("shards").and_then(Value::as_str).map(PathBuf::from).unwrap_or_default();
        let shards = canonical_shards_dir(&shards).unwrap_or(shards);
        RunIdentity { shards, shards_content: None, settings, max_steps: args.get("max_steps").and_then(Value::as_i64).unwrap_or(0) }
    }

    /// What differs from `then` (the checkpoint's identity) in ways that forbid resuming:
    /// any setting, and a lower `max_steps`. The shards are checked separately
    /// ([`RunIdentity::shards_check`]), after hashing.
    pub fn differences(&self, then: &RunIdentity) -> Vec<Difference> {
        let mut v = Vec::new();
        let keys: std::collections::BTreeSet<&String> = self.settings.keys().chain(then.settings.keys()).collect();
        for k in keys {
            let (a, b) = (then.settings.get(k).unwrap_or(&Value::Null), self.settings.get(k).unwrap_or(&Value::Null));
            if a != b {
                v.push(Difference { key: k.clone(), then: show(a), now: show(b), note: None });
            }
        }
        if self.max_steps < then.max_steps {
            v.push(Difference {
                key: "max_steps".into(),
                then: then.max_steps.to_string(),
                now: self.max_steps.to_string(),
                note: Some("it may be raised, not lowered; --stop_after stops earlier".into()),
            });
        }
        v
    }

    /// How the shards compare with `then`'s (see the module docs).
    pub fn shards_check(&self, then: &RunIdentity) -> ShardsCheck {
        let moved = self.shards != then.shards;
        match (&self.shards_content, &then.shards_content) {
            (Some(now), Some(old)) if now.key != old.key => ShardsCheck::Changed { files: now.changed_files(old), moved },
            (Some(_), Some(_)) if moved => ShardsCheck::Moved,
            (_, None) if moved => ShardsCheck::OtherPath,
            _ => ShardsCheck::Same,
        }
    }
}

/// The shards of a resumed run against its checkpoint's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardsCheck {
    Same,
    /// Same content key, another canonical path.
    Moved,
    /// Another content key: the files that differ, and whether the path differs too.
    Changed { files: Vec<String>, moved: bool },
    /// Another path, and the checkpoint has no content key to compare.
    OtherPath,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(shards: &str, lr: f64, max_steps: i64) -> RunIdentity {
        RunIdentity {
            shards: PathBuf::from(shards),
            shards_content: None,
            settings: BTreeMap::from([("lr".to_string(), Value::from(lr)), ("channel_attention".to_string(), Value::from("router"))]),
            max_steps,
        }
    }

    #[test]
    fn differences_name_each_key_with_both_values() {
        let then = identity("/a/data", 1e-3, 100);
        assert!(identity("/a/data", 1e-3, 100).differences(&then).is_empty());
        assert!(identity("/a/data", 1e-3, 200).differences(&then).is_empty(), "raising max_steps is allowed");
        let d: Vec<String> = identity("/b/data", 3e-3, 50).differences(&then).iter().map(|d| d.to_string()).collect();
        assert_eq!(d, ["lr 0.001 → 0.003", "max_steps 100 → 50 (it may be raised, not lowered; --stop_after stops earlier)"]);
    }

    #[test]
    fn shards_are_the_same_by_content_wherever_they_are() {
        let with_key = |path: &str, key: &str| RunIdentity {
            shards_content: Some(ShardContent { key: key.into(), files: BTreeMap::new() }),
            ..identity(path, 1e-3, 100)
        };
        let then = with_key("/a/data", "k1");
        assert_eq!(with_key("/a/data", "k1").shards_check(&then), ShardsCheck::Same);
        assert_eq!(with_key("/b/data", "k1").shards_check(&then), ShardsCheck::Moved);
        assert_eq!(with_key("/b/data", "k2").shards_check(&then), ShardsCheck::Changed { files: vec![], moved: true });
        // Without a key in the checkpoint, only the path can be compared.
        let legacy = identity("/a/data", 1e-3, 100);
        assert_eq!(with_key("/a/data", "k1").shards_check(&legacy), ShardsCheck::Same);
        assert_eq!(with_key("/b/data", "k1").shards_check(&legacy), ShardsCheck::OtherPath);
    }

    #[test]
    fn checkpoints_without_an_identity_compare_through_their_arguments() {
        let args = serde_json::json!({"shards": "/nowhere/shards", "lr": 0.001, "channel_attention": "router", "max_steps": 100,
                                      "quiet": true});
        let then = RunIdentity::from_legacy_args(&args, &["lr", "channel_attention"]);
        assert_eq!(then, identity("/nowhere/shards", 1e-3, 100), "unresolvable paths stay as given; other keys are ignored");
        assert_eq!(then.differences(&identity("/nowhere/shards", 1e-3, 100)), []);
        assert_eq!(identity("/nowhere/shards", 1e-3, 100).shards_check(&then), ShardsCheck::Same, "no content key: the path decides");
    }

    #[test]
    fn content_key_follows_bytes_and_reuses_the_cache() {
        let dir = std::env::temp_dir().join(format!("bf-resume-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("train-0.parquet"), dir.join("validation-0.parquet"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        let files = [a.clone(), b.clone()];
        let first = ShardContent::of(&files, None).unwrap();
        assert_eq!(ShardContent::of(&files, None).unwrap(), first);
        // A cache entry with the file's size and mtime is trusted (that is what it is for).
        let mut lying = first.clone();
        lying.files.get_mut("train-0.parquet").unwrap().blake3 = "cached".into();
        assert_eq!(ShardContent::of(&files, Some(&lying)).unwrap().files["train-0.parquet"].blake3, "cached");
        // Other bytes (other size) change the key and name the file.
        std::fs::write(&a, b"three").unwrap();
        let second = ShardContent::of(&files, Some(&first)).unwrap();
        assert_ne!(second.key, first.key);
        assert_eq!(second.changed_files(&first), ["train-0.parquet (changed)"]);
        // Same bytes again, new mtime: the same key.
        std::fs::write(&a, b"one").unwrap();
        assert_eq!(ShardContent::of(&files, Some(&second)).unwrap().key, first.key);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
