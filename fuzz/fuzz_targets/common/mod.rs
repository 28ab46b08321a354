//! Shared by the fuzz targets: a per-process scratch directory (file names are reused on
//! every run so the disk never fills) and the checks run on every reader that opens.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bf_pipeline::{Error, RawReader};

/// `$TMPDIR/bf-fuzz-<pid>`, created once. Per process so parallel fuzz jobs never share files.
pub fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bf-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create fuzz scratch dir");
        dir
    })
}

/// Writes `bytes` to `name` inside the scratch directory and returns the path.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = workdir().join(name);
    std::fs::write(&path, bytes).expect("write fuzz input");
    path
}

/// The contract for a failed open: an error, and its message names a file. Every `Error`
/// variant carries a path; `expect_in` is the directory the named file must lie in (the
/// scratch dir), or `None` when the input may legitimately name a file elsewhere.
pub fn check_err(err: &Error, expect_in: Option<&Path>) {
    let msg = err.to_string();
    if let Some(dir) = expect_in {
        assert!(msg.contains(&*dir.to_string_lossy()), "error does not name the file: {msg}");
    }
}

/// Reads the info and a few small sample ranges. Errors are fine, panics are not.
pub fn exercise(r: &dyn RawReader) {
    let info = r.info();
    let mut acc = info.sfreq + info.duration() + info.n_samples as f64 + info.first_samp as f64;
    for c in &info.channels {
        acc += c.cal * c.range + c.name.len() as f64 + c.kind.as_str().len() as f64;
        let _ = c.unit.symbol();
    }
    for a in &info.annotations {
        acc += a.onset + a.duration + a.description.len() as f64;
    }
    for p in &info.projs {
        acc += p.vectors.iter().map(|v| v.len()).sum::<usize>() as f64;
    }
    std::hint::black_box(acc);

    let picks = r.all_picks();
    let n = info.n_samples;
    // The first and the last ≤1000 samples of every channel, and one empty read.
    for (start, stop) in [(0, n.min(1000)), (n.saturating_sub(1000), n), (n / 2, n / 2)] {
        if let Ok(a) = r.read_f64(&picks, start, stop) {
            assert_eq!(a.shape(), [picks.len(), stop - start]);
            std::hint::black_box(a.sum());
        }
    }
    // One channel, f32, a short stretch from the middle.
    if let Some(&last) = picks.last() {
        let (start, stop) = (n / 2, (n / 2 + 10).min(n));
        let _ = std::hint::black_box(r.read_f32(&[last], start, stop));
    }
}
