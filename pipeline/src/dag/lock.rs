//! Advisory locks on `derivatives/brainformer`, so two pipeline processes never interleave
//! their writes (two terminals, two SLURM submissions with different settings).
//!
//! - **The folder's lock** is `flock` on `derivatives/brainformer/.lock`. A process that runs
//!   stages over all runs (split, tokenizer fit, shards; every command without `--shard i/n`)
//!   takes it exclusively, before it reads any stamp; the per-run tasks of a job array
//!   (`--shard i/n`, n > 1) take it shared, so they never block each other, and a global run
//!   waits for all of them (and they for it).
//! - **A run's lock** (`derivatives/brainformer/locks/<run>.lock`) is held while one of its
//!   per-run targets is built and stamped: two shared holders with different settings that
//!   reach the same run build it one after the other, so its outputs and stamp always agree.
//!
//! The lock file holds one JSON line per holder (pid, host, mode, start time, command) so a
//! process that has to wait can say who it waits for. `flock` locks end with the process,
//! killed or not: nothing is ever left to clean up by hand. On NFS, Linux maps `flock` onto
//! the server's byte-range locks (NFSv4), so the array tasks of different nodes see each other.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lock file inside the derivatives folder (kept by `bf-pipeline clean`).
pub const LOCK_FILE: &str = ".lock";
/// The folder of per-run lock files inside the derivatives folder.
pub const RUN_LOCKS: &str = "locks";

/// How the folder's lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Per-run targets of a `--shard i/n` task: other shared holders may run at once.
    Shared,
    /// Anything that touches the stages over all runs, or removes derivatives.
    Exclusive,
}

/// Who holds (or held) the lock: one line of the lock file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub mode: LockMode,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since: u64,
    pub command: String,
}

impl Holder {
    fn me(mode: LockMode, command: &str) -> Holder {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Holder { pid: std::process::id(), host: hostname(), mode, since, command: command.to_string() }
    }

    /// `pid 123 on node1 (exclusive, for 42 s): bf-pipeline tokenize --window 128`.
    pub fn describe(&self) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mode = match self.mode {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        };
        format!("pid {} on {} ({mode}, for {} s): {}", self.pid, self.host, now.saturating_sub(self.since), self.command)
    }

    /// False only when the holder is known to be gone (same host, its process ended).
    fn may_be_alive(&self) -> bool {
        self.host != hostname() || !bf_atomic::process_ended(self.pid)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "this host".into())
}

/// The folder's lock, held until dropped.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
    mode: LockMode,
}

impl FolderLock {
    /// Tries once to lock the derivatives folder `der` (created if missing) in `mode`.
    /// `Ok(None)`: another process holds it in a conflicting mode (see [`holders`]).
    /// `command` is recorded for the processes that will wait on this one.
    pub fn try_acquire(der: &Path, mode: LockMode, command: &str) -> Result<Option<FolderLock>> {
        std::fs::create_dir_all(der).map_err(|e| Error::io(der, e))?;
        let path = der.join(LOCK_FILE);
        loop {
            let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(|e| Error::io(&path, e))?;
            let got = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match got {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // The file may have been removed or replaced between open and lock (a `rm -r` of
            // the folder): a lock on an unlinked file protects nothing, so take the new one.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let lock = FolderLock { file, path, mode };
            lock.record(command)?;
            return Ok(Some(lock));
        }
    }

    /// Adds this process to the holders' list: alone when exclusive, appended when shared.
    fn record(&self, command: &str) -> Result<()> {
        let mut line = serde_json::to_string(&Holder::me(self.mode, command)).expect("holders serialise");
        line.push('\n');
        let mut f = &self.file;
        if self.mode == LockMode::Exclusive {
            f.set_len(0).map_err(|e| Error::io(&self.path, e))?;
        }
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if self.mode == LockMode::Exclusive {
            let _ = self.file.set_len(0);
        }
        // Closing the file releases the lock.
    }
}

/// The processes that hold (or may hold) the lock of `der`, as recorded in its lock file;
/// holders known to be gone (this host, no such process) are left out.
pub fn holders(der: &Path) -> Vec<Holder> {
    let mut text = String::new();
    let path = der.join(LOCK_FILE);
    if let Ok(mut f) = File::open(&path) {
        let _ = f.seek(SeekFrom::Start(0));
        let _ = f.read_to_string(&mut text);
    }
    text.lines().filter_map(|l| serde_json::from_str::<Holder>(l).ok()).filter(Holder::may_be_alive).collect()
}

/// A per-run lock (see the module doc), held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Blocks until this process holds the lock of run `run_id` under `der`.
pub fn lock_run(der: &Path, run_id: &str) -> Result<RunLock> {
    let dir = der.join(RUN_LOCKS);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("{run_id}.lock"));
    let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("derivatives/brainformer");
        let a = FolderLock::try_acquire(&der, LockMode::Shared, "task 0").unwrap().expect("free");
        let b = FolderLock::try_acquire(&der, LockMode::Shared, "task 1").unwrap().expect("shared with shared");
        assert!(FolderLock::try_acquire(&der, LockMode::Exclusive, "final").unwrap().is_none());
        let who: Vec<String> = holders(&der).into_iter().map(|h| h.command).collect();
        assert_eq!(who, ["task 0", "task 1"]);
        drop(a);
        assert!(FolderLock::try_acquire(&der, LockMode::Exclusive, "final").unwrap().is_none());
        drop(b);
        let x = FolderLock::try_acquire(&der, LockMode::Exclusive, "final").unwrap().expect("free again");
        assert!(FolderLock::try_acquire(&der, LockMode::Shared, "task 2").unwrap().is_none());
        assert!(FolderLock::try_acquire(&der, LockMode::Exclusive, "other").unwrap().is_none());
        let who = holders(&der);
        assert_eq!(who.len(), 1, "{who:?}");
        assert_eq!(who[0].command, "final");
        assert!(who[0].describe().contains("exclusive"), "{}", who[0].describe());
        drop(x);
        assert!(holders(&der).is_empty());
    }

    #[test]
    fn a_removed_lock_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("d");
        let a = FolderLock::try_acquire(&der, LockMode::Exclusive, "a").unwrap().unwrap();
        std::fs::remove_dir_all(&der).unwrap();
        // The old lock is on an unlinked file: the folder's new lock file is free.
        let b = FolderLock::try_acquire(&der, LockMode::Exclusive, "b").unwrap();
        assert!(b.is_some());
        drop(a);
    }

    #[test]
    fn run_locks_serialise_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock_run(dir.path(), "sub-01_run-01").unwrap();
        let f = File::open(dir.path().join(RUN_LOCKS).join("sub-01_run-01.lock")).unwrap();
        assert!(matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        drop(l);
        assert!(f.try_lock().is_ok());
    }
}
