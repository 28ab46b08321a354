//! Atomic file output, the one helper every Brainformer crate writes through: the bytes go
//! to a hidden temporary sibling (`.NAME.tmp-PID`), are synced to disk, and the file is
//! renamed into place. After an interruption or a crash, `path` is absent, the old file or
//! the whole new one, never half of one; the temporary name says which process left it, so
//! sweepers (`dag::sweep_temporaries`, `bf_model::train`) can remove those of dead
//! processes.
//!
//! A crate of its own because the evaluation crate builds without the pipeline (and the
//! pipeline without the model): a shared helper must sit below both. Errors are
//! `std::io::Error`; callers add the path to their own error type.

use std::io;
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `.NAME.tmp-PID` beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The process id in a temporary's name: `.NAME.tmp-PID` ([`temp_path`]) or
/// `.NAME.tmp-PID.EXT` ([`temp_path_keeping_extension`]); `None` for any other name.
pub fn temporary_pid(name: &str) -> Option<u32> {
    let (head, tail) = name.rsplit_once(".tmp-")?;
    if !head.starts_with('.') || head.len() < 2 {
        return None;
    }
    let digits = tail.split_once('.').map_or(tail, |(pid, _ext)| pid);
    digits.parse().ok().filter(|&p: &u32| p > 0 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether process `pid` of this host has ended, for the sweepers of what dead processes
/// left: no `/proc/PID`, or a zombie (`/proc/PID/stat` state `Z` or `X`: killed but not yet
/// reaped, which a container whose PID 1 reaps nothing keeps for good). Where `/proc` does
/// not exist nothing is known to have ended (false: keep what you would remove). The caller
/// decides what its own id means (a sweeper that runs before writing anything may treat it
/// as a leftover of an earlier process that had the same id).
pub fn process_ended(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|state| state == "Z" || state == "X"),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// [`temp_path`] with `path`'s extension appended again (`.NAME.tmp-PID.EXT`), for writers
/// that choose the format from the extension (plotters' PNG backend).
pub fn temp_path_keeping_extension(path: &Path) -> PathBuf {
    let tmp = temp_path(path);
    match path.extension() {
        Some(ext) => tmp.with_file_name(format!("{}.{}", tmp.file_name().unwrap_or_default().to_string_lossy(), ext.to_string_lossy())),
        None => tmp,
    }
}

/// Moves the complete file `tmp` to `path`: its bytes are synced to disk first, so after a
/// crash `path` is either absent, the old file, or the whole new one. `tmp` is removed if
/// either step fails.
pub fn persist(tmp: &Path, path: &Path) -> io::Result<()> {
    let result = std::fs::File::open(tmp).and_then(|f| f.sync_all()).and_then(|()| std::fs::rename(tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Creates `path` atomically from the file `body` writes at the temporary path `tmp` it is
/// given (use [`temp_path`] or [`temp_path_keeping_extension`]). The parent folder is
/// created; the temporary file is removed if `body` fails, else synced and renamed into place.
/// `io_error` turns an error of those steps into the caller's error type, given the path at
/// fault: the folder when it cannot be created, else `path` (sync, rename).
pub fn write_via<E>(path: &Path, tmp: &Path, body: impl FnOnce(&Path) -> Result<(), E>, io_error: impl Fn(&Path, io::Error) -> E) -> Result<(), E> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let result = body(tmp).and_then(|()| persist(tmp, path).map_err(|e| io_error(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via(path, &temp_path(path), |tmp| std::fs::write(tmp, bytes), |_, e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_give_their_process_id() {
        assert_eq!(temporary_pid(".last.tmp-123"), Some(123));
        assert_eq!(temporary_pid(".metrics.jsonl.tmp-7"), Some(7));
        assert_eq!(temporary_pid(".report.png.tmp-42.png"), Some(42));
        let tmp = temp_path_keeping_extension(Path::new("out/curve.png"));
        assert_eq!(temporary_pid(&tmp.file_name().unwrap().to_string_lossy()), Some(std::process::id()));
        for not_ours in ["last.tmp-123", ".last.tmp-x", ".last", "last", ".tmp-5", ".a.tmp-0", ".a.tmp-+5", ".a.tmp-", ".a.tmp-12x.png"] {
            assert_eq!(temporary_pid(not_ours), None, "{not_ours}");
        }
    }

    /// A running process has not ended; one that never ran has; a killed child nobody has
    /// reaped yet (a zombie, which still has a `/proc/PID`) has.
    #[test]
    fn ended_processes_include_zombies() {
        assert!(!process_ended(std::process::id()));
        assert!(process_ended(4_194_304 + 17), "pid_max is at most 2^22");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z") {
            assert!(std::time::Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "a zombie keeps its /proc entry");
        assert!(process_ended(pid));
        child.wait().unwrap();
        assert!(process_ended(pid));
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("a.json");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_failing_body_keeps_the_old_file_and_removes_the_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        write(&p, b"old").unwrap();
        let tmp = temp_path(&p);
        let r: io::Result<()> = write_via(
            &p,
            &tmp,
            |t| {
                std::fs::write(t, b"half")?;
                Err(io::Error::other("interrupted"))
            },
            |_, e| e,
        );
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!tmp.exists());
    }

    #[test]
    fn io_errors_name_the_path_at_fault() {
        let d = tempfile::tempdir().unwrap();
        let not_a_folder = d.path().join("stamps");
        std::fs::write(&not_a_folder, b"").unwrap();
        let p = not_a_folder.join("a.json");
        let at = write_via(&p, &temp_path(&p), |t| std::fs::write(t, b"x").map_err(|_| PathBuf::new()), |at, _| at.to_path_buf()).unwrap_err();
        assert_eq!(at, not_a_folder);
        let missing_tmp = d.path().join("never-written");
        let q = d.path().join("b.json");
        let at = write_via(&q, &missing_tmp, |_| Ok::<(), PathBuf>(()), |at, _| at.to_path_buf()).unwrap_err();
        assert_eq!(at, q);
    }

    #[test]
    fn temporary_names_are_hidden_and_carry_the_pid() {
        let pid = std::process::id();
        assert_eq!(temp_path(Path::new("d/x.png")), PathBuf::from(format!("d/.x.png.tmp-{pid}")));
        assert_eq!(temp_path_keeping_extension(Path::new("d/x.png")), PathBuf::from(format!("d/.x.png.tmp-{pid}.png")));
        assert_eq!(temp_path_keeping_extension(Path::new("d/x")), PathBuf::from(format!("d/.x.tmp-{pid}")));
    }
}
