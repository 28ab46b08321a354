//! OpenNeuro datasets on S3: which keys a [`Selection`] keeps, where each key lands on disk,
//! and the resumable, verified download of one object.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use md5::{Digest, Md5};

use super::s3::{etag_kind, hex, read_body, EtagKind, Failure, RemoteObject, S3Client};
use super::{Progress, Selection};
use crate::error::{Error, Result};

/// Checks an accession number such as `ds000117` (a trailing `/` is dropped) and returns it.
pub(crate) fn check_dataset(dataset: &str, dest: &Path) -> Result<String> {
    let d = dataset.trim().trim_end_matches('/');
    let ok = !d.is_empty()
        && d != "."
        && d != ".."
        && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(Error::request(
            dest,
            format!("{dataset:?} is not a dataset name (expected an accession number such as ds000117)"),
        ));
    }
    Ok(d.to_string())
}

/// Maps a key to its path relative to the dataset folder.
///
/// `Ok(None)` for keys that are folder markers (ending in `/`, or the prefix itself);
/// `Err` (with the reason) for keys that would escape the destination or cannot be a path:
/// `..` or `.` components, empty components (a leading `/` or `//`), backslashes, NUL.
pub fn relative_path(prefix: &str, key: &str) -> Result<Option<String>, String> {
    let rel = key.strip_prefix(prefix).ok_or_else(|| format!("the key does not start with {prefix:?}"))?;
    if rel.is_empty() || rel.ends_with('/') {
        return Ok(None);
    }
    if rel.contains('\\') || rel.contains('\0') {
        return Err("the key contains a backslash or NUL, which cannot be a portable path".into());
    }
    for comp in rel.split('/') {
        match comp {
            "" => return Err("the key has an empty path component (absolute path or `//`)".into()),
            "." | ".." => {
                return Err(format!("the key has a {comp:?} component, which would escape the destination"))
            }
            _ => {}
        }
    }
    if rel.ends_with(".part") {
        return Err("the key ends in .part, which this downloader uses for partial files".into());
    }
    Ok(Some(rel.to_string()))
}

/// Where a relative key lands under `dest`.
pub fn local_path(dest: &Path, rel: &str) -> PathBuf {
    let mut p = dest.to_path_buf();
    p.extend(rel.split('/'));
    p
}

/// The partial file next to `final_path`.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    final_path.with_file_name(name)
}

/// Where a key sits in the BIDS tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// Not under a `sub-*/` folder: dataset-level files (always kept).
    TopLevel,
    /// Directly in `sub-XX/` or `sub-XX/ses-YY/` (sessions.tsv, scans.tsv).
    SubjectLevel { subject: &'a str },
    /// In a datatype folder: `sub-XX[/ses-YY]/<datatype>/...`.
    Datatype { subject: &'a str, datatype: &'a str },
}

/// Finds the first `sub-*` folder of a relative key (also under `derivatives/<name>/` or
/// `sourcedata/`) and the datatype folder after it.
pub(crate) fn place(rel: &str) -> Place<'_> {
    let comps: Vec<&str> = rel.split('/').collect();
    let last = comps.len() - 1;
    let Some(i) = comps[..last].iter().position(|c| c.starts_with("sub-")) else {
        return Place::TopLevel;
    };
    let subject = &comps[i]["sub-".len()..];
    let mut j = i + 1;
    if j < last && comps[j].starts_with("ses-") {
        j += 1;
    }
    if j < last {
        Place::Datatype { subject, datatype: comps[j] }
    } else {
        Place::SubjectLevel { subject }
    }
}

/// A compiled [`Selection`].
pub(crate) struct Filter {
    subjects: Vec<String>,
    datatypes: Vec<String>,
    include: Option<GlobSet>,
}

impl Filter {
    pub(crate) fn new(sel: &Selection, dest: &Path) -> Result<Filter> {
        let subjects = sel
            .subjects
            .iter()
            .map(|s| s.trim().trim_start_matches("sub-").to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let datatypes =
            sel.datatypes.iter().map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
        let include = if sel.include.is_empty() {
            None
        } else {
            let mut b = GlobSetBuilder::new();
            for pat in &sel.include {
                let glob = GlobBuilder::new(pat.trim_start_matches('/'))
                    .build()
                    .map_err(|e| Error::request(dest, format!("invalid include pattern {pat:?}: {e}")))?;
                b.add(glob);
            }
            Some(b.build().map_err(|e| Error::request(dest, format!("invalid include patterns: {e}")))?)
        };
        Ok(Filter { subjects, datatypes, include })
    }

    fn subject_ok(&self, subject: &str) -> bool {
        self.subjects.is_empty() || self.subjects.iter().any(|s| s == subject)
    }

    /// Whether the relative key `rel` is selected.
    pub(crate) fn keep(&self, rel: &str) -> bool {
        match place(rel) {
            Place::TopLevel => true,
            Place::SubjectLevel { subject } => self.subject_ok(subject),
            Place::Datatype { subject, datatype } => {
                self.subject_ok(subject)
                    && (self.datatypes.is_empty() || self.datatypes.iter().any(|d| d == datatype))
                    && self.include.as_ref().is_none_or(|g| g.is_match(rel))
            }
        }
    }

    /// Requested subjects that no key belongs to, and requested datatypes that no kept key has.
    pub(crate) fn unmatched<'a>(
        &self,
        kept: impl Iterator<Item = &'a str> + Clone,
        all: impl Iterator<Item = &'a str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut present = std::collections::BTreeSet::new();
        for rel in all {
            if let Place::SubjectLevel { subject } | Place::Datatype { subject, .. } = place(rel) {
                present.insert(subject.to_string());
            }
        }
        let subjects = self.subjects.iter().filter(|s| !present.contains(*s)).cloned().collect();
        let mut kinds = std::collections::BTreeSet::new();
        for rel in kept {
            if let Place::Datatype { datatype, .. } = place(rel) {
                kinds.insert(datatype.to_string());
            }
        }
        let datatypes = self.datatypes.iter().filter(|d| !kinds.contains(*d)).cloned().collect();
        (subjects, datatypes)
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Downloaded,
    SkippedComplete,
}

const BUF: usize = 256 << 10;

/// The MD5 of the first `len` bytes of `file` (from its start).
fn md5_prefix(file: &mut File, len: u64, path: &Path) -> Result<Md5> {
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut r = BufReader::with_capacity(BUF, file.take(len));
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h)
}

fn md5_file(path: &Path) -> Result<[u8; 16]> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let h = md5_prefix(&mut f, len, path)?;
    Ok(h.finalize().into())
}

/// Whether a complete file at `path` matches the listing (size, and MD5 when the ETag is one).
fn already_complete(path: &Path, obj: &RemoteObject) -> Result<bool> {
    let Ok(meta) = fs::metadata(path) else { return Ok(false) };
    if !meta.is_file() || meta.len() != obj.size {
        return Ok(false);
    }
    match etag_kind(&obj.etag) {
        EtagKind::Md5(want) => Ok(md5_file(path)? == want),
        _ => Ok(true),
    }
}

/// Downloads one object to `final_path`: resumes `<final>.part` with a `Range` request,
/// verifies size and MD5, renames into place; a verification failure (or a 416 on resume)
/// restarts from scratch once. Bytes received are added to `transferred`.
pub(crate) fn fetch_object(
    client: &S3Client,
    obj: &RemoteObject,
    final_path: &Path,
    progress: &dyn Progress,
    transferred: &AtomicU64,
) -> Result<Outcome> {
    if already_complete(final_path, obj)? {
        progress.advance(obj.size);
        return Ok(Outcome::SkippedComplete);
    }
    if let Some(parent) = final_path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let part = part_path(final_path);
    let url = client.object_url(&obj.key);
    let mut fresh_restart_left = true;
    loop {
        let result = download_to_part(client, obj, &part, &url, progress, transferred)
            .and_then(|md5| verify(&part, final_path, &url, obj, md5));
        match result {
            Ok(()) => {
                crate::fsutil::persist(&part, final_path)?;
                return Ok(Outcome::Downloaded);
            }
            Err(e @ (Error::Verify { .. } | Error::Http { status: 416, .. })) if fresh_restart_left => {
                tracing::warn!("{e}; downloading {} again from the start", obj.key);
                fresh_restart_left = false;
                fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
            }
            Err(e) => {
                // Leave no empty `.part` behind a request that failed before any byte arrived.
                if fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
                    let _ = fs::remove_file(&part);
                }
                return Err(e);
            }
        }
    }
}

/// Checks the finished `.part` against the listing. `md5` is the running hash, when checkable.
fn verify(part: &Path, final_path: &Path, url: &str, obj: &RemoteObject, md5: Option<Md5>) -> Result<()> {
    let len = fs::metadata(part).map_err(|e| Error::io(part, e))?.len();
    let bad = |what: String| Error::Verify { path: final_path.to_path_buf(), url: url.to_string(), what };
    if len != obj.size {
        return Err(bad(format!("{len} bytes received, the listing says {}", obj.size)));
    }
    if let (EtagKind::Md5(want), Some(h)) = (etag_kind(&obj.etag), md5) {
        let got: [u8; 16] = h.finalize().into();
        if got != want {
            return Err(bad(format!(
                "MD5 {} differs from the ETag {} (corrupted partial file or transfer)",
                hex(&got),
                hex(&want)
            )));
        }
    }
    Ok(())
}

/// Brings `part` to the object's full size, continuing what it holds with `Range` requests,
/// retrying transient failures. Returns the MD5 of the whole part when the ETag is checkable.
fn download_to_part(
    client: &S3Client,
    obj: &RemoteObject,
    part: &Path,
    url: &str,
    progress: &dyn Progress,
    transferred: &AtomicU64,
) -> Result<Option<Md5>> {
    let io = |e| Error::io(part, e);
    let mut file =
        OpenOptions::new().create(true).truncate(false).read(true).write(true).open(part).map_err(io)?;
    let mut have = file.metadata().map_err(io)?.len();
    if have > obj.size {
        file.set_len(0).map_err(io)?;
        have = 0;
    }
    let checkable = matches!(etag_kind(&obj.etag), EtagKind::Md5(_));
    let mut md5 = if checkable { Some(md5_prefix(&mut file, have, part)?) } else { None };
    if have > 0 {
        tracing::info!("resuming {} from byte {have} of {}", obj.key, obj.size);
        progress.advance(have);
    }
    file.seek(SeekFrom::Start(have)).map_err(io)?;
    let mut attempt = 0u32;
    let mut buf = vec![0u8; BUF];
    while have < obj.size {
        let before = have;
        let r = stream_once(
            client,
            obj,
            &mut file,
            part,
            url,
            &mut have,
            &mut md5,
            &mut buf,
            progress,
            transferred,
        );
        match r {
            Ok(()) => {}
            Err(Failure::Transient(e)) if attempt < client.retries() || have > before => {
                // Progress resets the count: only consecutive fruitless attempts are limited.
                attempt = if have > before { 0 } else { attempt + 1 };
                tracing::warn!("{e}; retrying {} from byte {have}", obj.key);
                std::thread::sleep(client.backoff(attempt.max(1)));
            }
            Err(f) => return Err(f.into_error()),
        }
    }
    file.flush().map_err(io)?;
    Ok(md5)
}

/// One `GET` from byte `*have` on, appended to `file` until the body ends.
#[allow(clippy::too_many_arguments)]
fn stream_once(
    client: &S3Client,
    obj: &RemoteObject,
    file: &mut File,
    part: &Path,
    url: &str,
    have: &mut u64,
    md5: &mut Option<Md5>,
    buf: &mut [u8],
    progress: &dyn Progress,
    transferred: &AtomicU64,
) -> Result<(), Failure> {
    let disk = |e| Failure::Permanent(Error::io(part, e));
    let mut resp = client.get_object(&obj.key, *have)?;
    if resp.status == 200 && *have > 0 {
        // The server ignored the Range header: start over with what it sends.
        tracing::warn!("{url}: the server ignored the Range request; restarting the file");
        file.set_len(0).map_err(disk)?;
        file.seek(SeekFrom::Start(0)).map_err(disk)?;
        *have = 0;
        if md5.is_some() {
            *md5 = Some(Md5::new());
        }
    } else if resp.status == 206 && resp.range_start != *have {
        return Err(Failure::Permanent(Error::Remote {
            url: url.to_string(),
            what: format!("asked for bytes from {}, the server sent bytes from {}", *have, resp.range_start),
        }));
    }
    loop {
        let n = read_body(&mut resp.body, buf, url)?;
        if n == 0 {
            break;
        }
        if *have + n as u64 > obj.size {
            return Err(Failure::Permanent(Error::Verify {
                path: part.to_path_buf(),
                url: url.to_string(),
                what: format!(
                    "the server sent more than the listing's {} bytes (did the object change?)",
                    obj.size
                ),
            }));
        }
        file.write_all(&buf[..n]).map_err(disk)?;
        if let Some(h) = md5.as_mut() {
            h.update(&buf[..n]);
        }
        *have += n as u64;
        transferred.fetch_add(n as u64, Ordering::Relaxed);
        progress.advance(n as u64);
    }
    if *have < obj.size {
        return Err(Failure::Transient(Error::Network {
            url: url.to_string(),
            what: format!("the connection closed after {} of {} bytes", *have, obj.size),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_to_paths() {
        let p = "ds000117/";
        assert_eq!(relative_path(p, "ds000117/README").unwrap().as_deref(), Some("README"));
        assert_eq!(
            relative_path(p, "ds000117/sub-01/ses-meg/meg/x.fif").unwrap().as_deref(),
            Some("sub-01/ses-meg/meg/x.fif")
        );
        assert_eq!(relative_path(p, "ds000117/").unwrap(), None);
        assert_eq!(relative_path(p, "ds000117/sub-01/").unwrap(), None);
        for bad in [
            "ds000117//etc/passwd",
            "ds000117/../x",
            "ds000117/sub-01/../../x",
            "ds000117/a/./b",
            "ds000117/a//b",
            "ds000117/a\\..\\b",
            "ds000117/x.fif.part",
            "ds000118/x",
        ] {
            assert!(relative_path(p, bad).is_err(), "{bad}");
        }
        let dest = Path::new("/data/ds");
        assert_eq!(local_path(dest, "sub-01/meg/x.fif"), PathBuf::from("/data/ds/sub-01/meg/x.fif"));
        assert_eq!(part_path(Path::new("/d/x.fif")), PathBuf::from("/d/x.fif.part"));
    }

    #[test]
    fn checks_dataset_names() {
        let d = Path::new("/tmp");
        assert_eq!(check_dataset("ds000117", d).unwrap(), "ds000117");
        assert_eq!(check_dataset("ds000117/", d).unwrap(), "ds000117");
        for bad in ["", "/", "..", "ds/x", "../ds", "ds 1"] {
            assert!(check_dataset(bad, d).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn places_keys() {
        assert_eq!(place("README"), Place::TopLevel);
        assert_eq!(place("task-facerecognition_meg.json"), Place::TopLevel);
        assert_eq!(place("sub-01_extra.tsv"), Place::TopLevel);
        assert_eq!(place("sub-01/sub-01_sessions.tsv"), Place::SubjectLevel { subject: "01" });
        assert_eq!(place("sub-01/ses-meg/sub-01_ses-meg_scans.tsv"), Place::SubjectLevel { subject: "01" });
        assert_eq!(
            place("sub-01/ses-meg/meg/sub-01_ses-meg_task-x_run-01_meg.fif"),
            Place::Datatype { subject: "01", datatype: "meg" }
        );
        assert_eq!(
            place("sub-02/anat/sub-02_T1w.nii.gz"),
            Place::Datatype { subject: "02", datatype: "anat" }
        );
        assert_eq!(
            place("derivatives/meg_derivatives/sub-03/ses-meg/meg/x_proc-sss_meg.fif"),
            Place::Datatype { subject: "03", datatype: "meg" }
        );
        assert_eq!(place("derivatives/many/k0001"), Place::TopLevel);
    }

    fn sel(subjects: &[&str], include: &[&str], datatypes: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Filter::new(
            &Selection { subjects: s(subjects), include: s(include), datatypes: s(datatypes) },
            Path::new("/tmp"),
        )
        .unwrap()
    }

    #[test]
    fn filters_selection() {
        let keys = [
            "README",
            "dataset_description.json",
            "sub-01/ses-meg/sub-01_ses-meg_scans.tsv",
            "sub-01/ses-meg/meg/sub-01_ses-meg_task-f_run-01_meg.fif",
            "sub-01/ses-meg/meg/sub-01_ses-meg_task-f_run-02_meg.fif",
            "sub-01/ses-mri/anat/sub-01_ses-mri_T1w.nii.gz",
            "sub-02/ses-meg/meg/sub-02_ses-meg_task-f_run-01_meg.fif",
            "sub-02/ses-meg/sub-02_ses-meg_scans.tsv",
        ];
        let kept = |f: &Filter| keys.iter().filter(|k| f.keep(k)).copied().collect::<Vec<_>>();
        assert_eq!(kept(&sel(&[], &[], &[])).len(), keys.len());
        assert_eq!(
            kept(&sel(&["01"], &[], &["meg"])),
            vec![
                "README",
                "dataset_description.json",
                "sub-01/ses-meg/sub-01_ses-meg_scans.tsv",
                "sub-01/ses-meg/meg/sub-01_ses-meg_task-f_run-01_meg.fif",
                "sub-01/ses-meg/meg/sub-01_ses-meg_task-f_run-02_meg.fif",
            ]
        );
        assert_eq!(
            kept(&sel(&["sub-02"], &[], &[])),
            vec![
                "README",
                "dataset_description.json",
                "sub-02/ses-meg/meg/sub-02_ses-meg_task-f_run-01_meg.fif",
                "sub-02/ses-meg/sub-02_ses-meg_scans.tsv",
            ]
        );
        assert_eq!(
            kept(&sel(&[], &["*run-01*"], &[])),
            vec![
                "README",
                "dataset_description.json",
                "sub-01/ses-meg/sub-01_ses-meg_scans.tsv",
                "sub-01/ses-meg/meg/sub-01_ses-meg_task-f_run-01_meg.fif",
                "sub-02/ses-meg/meg/sub-02_ses-meg_task-f_run-01_meg.fif",
                "sub-02/ses-meg/sub-02_ses-meg_scans.tsv",
            ]
        );
        assert_eq!(kept(&sel(&[], &["sub-0[12]/ses-mri/**"], &[])).len(), 5);
        let f = sel(&["01", "07"], &[], &["meg", "eeg"]);
        let all = keys.iter().copied();
        let k: Vec<&str> = keys.iter().filter(|k| f.keep(k)).copied().collect();
        assert_eq!(f.unmatched(k.iter().copied(), all), (vec!["07".to_string()], vec!["eeg".to_string()]));
    }

    #[test]
    fn rejects_bad_globs() {
        let e = Filter::new(
            &Selection { include: vec!["sub-[01".into()], ..Default::default() },
            Path::new("/dest"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("/dest") && e.contains("sub-[01"), "{e}");
    }
}
