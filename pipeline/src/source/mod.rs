//! Sources of BIDS datasets. Today: OpenNeuro's public S3 bucket (`s3://openneuro.org/<dataset>/`),
//! read anonymously over path-style HTTPS URLs `{endpoint}/{bucket}/{key}`.
//!
//! [`download_dataset`] lists the dataset (`ListObjectsV2`, following continuation tokens),
//! keeps what the [`Selection`] asks for, and downloads with `jobs` threads. Each object is
//! written to `<dest>/<key without the dataset prefix>.part` and renamed into place once its
//! size equals the listing's and, when the ETag is a plain MD5 (single-part upload), its MD5
//! equals the ETag; multipart ETags (`<hex>-<n>`) are checked on size only.
//!
//! Reruns are cheap and safe: a complete file with the right size (and MD5 when checkable) is
//! skipped; a `.part` is continued with `Range: bytes=N-`; if the finished file does not verify,
//! it is fetched once more from scratch. Connection errors, timeouts, 5xx and 429 are retried
//! with exponential backoff (`retries` consecutive attempts without progress; an attempt that
//! received bytes resets the count, and the next one resumes where it broke off). 403 and 404
//! are not retried and name the URL. The failure of one object is recorded in
//! [`DownloadSummary::failures`] and does not stop the others.
//!
//! Plan first: [`plan_download`] lists and selects without writing anything and tells, per
//! subject folder, what is already on disk (complete files, `.part` files) and what is still to
//! download ([`DownloadPlan`]); [`execute_plan`] then checks the free disk space at the
//! destination against the bytes still to download plus a margin (1 %, at least 64 MiB) and
//! refuses, before creating anything, when it is short. The environment variable
//! `BF_FREE_SPACE_BYTES` replaces the measured free space (a testing aid).
//!
//! Selection: everything not under a `sub-*/` folder (dataset_description.json,
//! participants.tsv, README, task sidecars, `derivatives/<name>/` files outside subject folders)
//! is always downloaded. For keys under a `sub-XX/` folder (at the top or inside
//! `derivatives/<name>/` / `sourcedata/`), the subject filter applies; the datatype filter
//! (the folder in `sub-XX[/ses-YY]/<datatype>/`) and the include globs (matched against the key
//! relative to the dataset, `*` also crossing `/`) apply to files in datatype folders, while
//! subject- and session-level files (`sessions.tsv`, `scans.tsv`) of selected subjects are kept.

mod openneuro;
mod plan;
mod s3;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use openneuro::{local_path, part_path, relative_path};
pub use plan::{
    available_space, both, human_bytes, local_state, nearest_existing, space_margin, space_needed, DownloadPlan, LocalState,
    PlanGroup, PlanTotals, PlannedFile, SpaceCheck, FREE_SPACE_ENV, SPACE_MARGIN_MIN, TOP_LEVEL_GROUP,
};
pub use s3::{describe_error_body, etag_kind, parse_list_page, EtagKind, ListPage, RemoteObject, S3Client};

use crate::error::{Error, Result};
use openneuro::{check_dataset, fetch_object, Filter, Outcome};

/// The default S3 endpoint (path-style, anonymous).
pub const DEFAULT_ENDPOINT: &str = "https://s3.amazonaws.com";
/// OpenNeuro's public bucket.
pub const DEFAULT_BUCKET: &str = "openneuro.org";

/// Which part of a dataset to download. Empty lists select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Subject labels, `"01"` or `"sub-01"`.
    pub subjects: Vec<String>,
    /// Glob patterns on the key relative to the dataset, e.g. `*run-01*`,
    /// `sub-01/ses-meg/meg/*_meg.fif`.
    pub include: Vec<String>,
    /// BIDS datatype folders, e.g. `"meg"`, `"eeg"`, `"anat"`.
    pub datatypes: Vec<String>,
}

/// Where and how to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// S3 endpoint without the bucket, e.g. `https://s3.amazonaws.com` or `http://127.0.0.1:5000`.
    pub endpoint: String,
    pub bucket: String,
    /// Parallel downloads (at least 1).
    pub jobs: usize,
    /// Retries of an object or listing page after a transient failure (see the module docs).
    pub retries: u32,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            bucket: DEFAULT_BUCKET.to_string(),
            jobs: 8,
            retries: 5,
        }
    }
}

/// Progress reports, called from the download threads.
pub trait Progress: Sync {
    /// Once, before any transfer: the selected files and their total size.
    fn total(&self, files: u64, bytes: u64);
    /// Bytes now on disk: received bytes, plus the size of files skipped as complete and the
    /// bytes of resumed `.part` files (so the sum reaches `total` when everything succeeds;
    /// a file fetched again from scratch counts twice).
    fn advance(&self, bytes: u64);
    /// A file is complete (downloaded or already there). Not called for failed files.
    fn file_done(&self, key: &str);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn total(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn file_done(&self, _: &str) {}
}

/// What [`download_dataset`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DownloadSummary {
    /// Files selected (downloaded + skipped + failed).
    pub files_total: u64,
    pub files_downloaded: u64,
    pub files_skipped_complete: u64,
    /// Bytes received over the network (including any fetched again).
    pub bytes_downloaded: u64,
    /// `(key, error message)` of every object that could not be downloaded.
    pub failures: Vec<(String, String)>,
}

/// Lists the objects of `dataset` (every key under `<dataset>/`).
pub fn list_dataset(dataset: &str, opts: &DownloadOptions) -> Result<Vec<RemoteObject>> {
    let dataset = check_dataset(dataset, Path::new(&opts.endpoint))?;
    S3Client::new(&opts.endpoint, &opts.bucket, opts.retries).list(&format!("{dataset}/"))
}

/// Lists `dataset`, applies the selection and looks at what is already under `dest`, writing
/// nothing (see [`DownloadPlan`]). `Err` as [`download_dataset`], for everything but the download itself.
pub fn plan_download(dataset: &str, dest: &Path, sel: &Selection, opts: &DownloadOptions) -> Result<DownloadPlan> {
    let dataset = check_dataset(dataset, dest)?;
    let filter = Filter::new(sel, dest)?;
    let client = S3Client::new(&opts.endpoint, &opts.bucket, opts.retries);
    let prefix = format!("{dataset}/");
    let objects = client.list(&prefix)?;
    if objects.is_empty() {
        return Err(Error::Remote {
            url: client.list_url(&prefix, None),
            what: format!(
                "nothing was found for dataset {dataset} in bucket {} (no key starts with {prefix:?}); \
                 check the accession number, e.g. ds000117",
                opts.bucket
            ),
        });
    }

    let mut refused = Vec::new();
    let mut all_rel = Vec::new();
    let mut work = Vec::new();
    for obj in objects {
        match relative_path(&prefix, &obj.key) {
            Ok(None) => {}
            Ok(Some(rel)) => {
                if filter.keep(&rel) {
                    work.push((obj, rel.clone()));
                }
                all_rel.push(rel);
            }
            Err(why) => {
                let msg = format!("{}: refused: {why}", client.object_url(&obj.key));
                refused.push((obj.key, msg));
            }
        }
    }
    let (missing_subjects, missing_datatypes) =
        filter.unmatched(work.iter().map(|(_, r)| r.as_str()), all_rel.iter().map(|r| r.as_str()));
    if !missing_subjects.is_empty() || !missing_datatypes.is_empty() {
        let mut what = Vec::new();
        if !missing_subjects.is_empty() {
            what.push(format!(
                "no subject folder sub-{} in dataset {dataset}",
                missing_subjects.join(", sub-")
            ));
        }
        if !missing_datatypes.is_empty() {
            what.push(format!(
                "no {} folder for the selected subjects of dataset {dataset}",
                missing_datatypes.join(" or ")
            ));
        }
        return Err(Error::Remote { url: client.list_url(&prefix, None), what: what.join("; ") });
    }
    Ok(DownloadPlan { dataset, dest: dest.to_path_buf(), files: plan::plan_files(dest, work), refused })
}

/// Downloads the selected part of `dataset` into `dest` (created if needed); see the module docs.
/// The same as [`plan_download`] followed by [`execute_plan`].
///
/// `Err` when nothing can be done: a bad dataset name or include pattern, a listing that fails
/// (network, 403, 404, malformed), a dataset with no objects, a requested subject or datatype
/// absent from the dataset, not enough free disk space, or a `dest` that cannot be created.
/// Failures of single objects are in the summary's `failures` (the caller decides the exit
/// status).
pub fn download_dataset(
    dataset: &str,
    dest: &Path,
    sel: &Selection,
    opts: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<DownloadSummary> {
    let plan = plan_download(dataset, dest, sel, opts)?;
    execute_plan(&plan, opts, progress)
}

/// Downloads what `plan` selected. First checks the free space ([`DownloadPlan::check_space`]):
/// when it is short, returns the error before writing anything (not even `dest`).
pub fn execute_plan(plan: &DownloadPlan, opts: &DownloadOptions, progress: &dyn Progress) -> Result<DownloadSummary> {
    plan.check_space()?.require(&plan.dataset, &plan.dest)?;
    let dest = plan.dest.as_path();
    let client = S3Client::new(&opts.endpoint, &opts.bucket, opts.retries);
    let mut summary = DownloadSummary { failures: plan.refused.clone(), ..Default::default() };
    let mut work: Vec<(RemoteObject, &str)> = plan.files.iter().map(|f| (f.object(), f.rel.as_str())).collect();
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    summary.files_total = (work.len() + summary.failures.len()) as u64;
    progress.total(work.len() as u64, work.iter().map(|(o, _)| o.size).sum());
    // Largest first, so the big files do not all wait for one thread at the end.
    work.sort_by(|a, b| b.0.size.cmp(&a.0.size).then_with(|| a.0.key.cmp(&b.0.key)));

    let next = AtomicUsize::new(0);
    let transferred = AtomicU64::new(0);
    let downloaded = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = opts.jobs.max(1).min(work.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((obj, rel)) = work.get(i) else { break };
                let path = local_path(dest, rel);
                match fetch_object(&client, obj, &path, progress, &transferred) {
                    Ok(outcome) => {
                        let counter = match outcome {
                            Outcome::Downloaded => &downloaded,
                            Outcome::SkippedComplete => &skipped,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("{}: {outcome:?}", obj.key);
                        progress.file_done(&obj.key);
                    }
                    Err(e) => {
                        tracing::error!("{}: {e}", obj.key);
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((obj.key.clone(), e.to_string()));
                    }
                }
            });
        }
    });

    summary.files_downloaded = downloaded.into_inner();
    summary.files_skipped_complete = skipped.into_inner();
    summary.bytes_downloaded = transferred.into_inner();
    summary.failures.extend(failures.into_inner().unwrap_or_else(|p| p.into_inner()));
    summary.failures.sort();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    //! The download loop against a tiny HTTP/1.0 server on loopback (the full suite against a
    //! real S3 server is tests/oracle/test_s3_download.py).
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// Serves `objects` (key → bytes) as an S3 bucket `b` on a free port; returns the endpoint
    /// and the log of (path, Range header) per request. Handles `max` requests, then stops.
    fn serve(objects: Vec<(String, Vec<u8>)>, max: usize) -> (String, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(max) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut range = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() <= 2 {
                        break;
                    }
                    if let Some(v) = h.strip_prefix("range: ").or_else(|| h.strip_prefix("Range: ")) {
                        range = Some(v.trim().to_string());
                    }
                }
                log2.lock().unwrap().push((path.clone(), range.clone()));
                let (status, extra, body) = if path.starts_with("/b?list-type=2") {
                    let prefix = path.split("prefix=").nth(1).unwrap_or("").replace("%2F", "/");
                    let mut xml = String::from("<ListBucketResult><IsTruncated>false</IsTruncated>");
                    for (k, v) in objects.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                        let md5 = super::s3::hex(&<md5::Md5 as md5::Digest>::digest(v));
                        xml += &format!(
                            "<Contents><Key>{k}</Key><Size>{}</Size><ETag>\"{md5}\"</ETag></Contents>",
                            v.len()
                        );
                    }
                    ("200 OK", String::new(), (xml + "</ListBucketResult>").into_bytes())
                } else if let Some((_, v)) = objects.iter().find(|(k, _)| path == format!("/b/{k}")) {
                    match range
                        .as_deref()
                        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok())
                    {
                        Some(from) => (
                            "206 Partial Content",
                            format!("Content-Range: bytes {from}-{}/{}\r\n", v.len() - 1, v.len()),
                            v[from..].to_vec(),
                        ),
                        None => ("200 OK", String::new(), v.clone()),
                    }
                } else {
                    ("404 Not Found", String::new(), b"<Error><Code>NoSuchKey</Code></Error>".to_vec())
                };
                let head = format!("HTTP/1.0 {status}\r\nContent-Length: {}\r\n{extra}\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        (endpoint, log)
    }

    fn opts(endpoint: &str) -> DownloadOptions {
        DownloadOptions { endpoint: endpoint.into(), bucket: "b".into(), jobs: 2, retries: 0 }
    }

    #[test]
    fn resumes_a_part_file_and_refetches_a_corrupted_one() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let other: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        let objects = vec![
            ("ds1/README".to_string(), b"hello".to_vec()),
            ("ds1/sub-01/meg/a.fif".to_string(), data.clone()),
            ("ds1/sub-01/meg/b.fif".to_string(), other.clone()),
        ];
        let (endpoint, log) = serve(objects, 5);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path();
        std::fs::create_dir_all(dest.join("sub-01/meg")).unwrap();
        std::fs::write(dest.join("README"), b"hello").unwrap(); // complete: skipped
        std::fs::write(dest.join("sub-01/meg/a.fif.part"), &data[..40_000]).unwrap();
        let mut bad = other[..10_000].to_vec();
        bad[5] ^= 0xff;
        std::fs::write(dest.join("sub-01/meg/b.fif.part"), &bad).unwrap();

        let s = download_dataset("ds1", dest, &Selection::default(), &opts(&endpoint), &NoProgress).unwrap();
        assert_eq!(s.failures, vec![]);
        assert_eq!((s.files_total, s.files_downloaded, s.files_skipped_complete), (3, 2, 1));
        assert_eq!(s.bytes_downloaded, 60_000 + 40_000 + 50_000);
        assert_eq!(std::fs::read(dest.join("sub-01/meg/a.fif")).unwrap(), data);
        assert_eq!(std::fs::read(dest.join("sub-01/meg/b.fif")).unwrap(), other);
        assert!(!dest.join("sub-01/meg/a.fif.part").exists());
        let mut log = log.lock().unwrap().clone();
        log.sort();
        assert_eq!(
            log,
            vec![
                ("/b/ds1/sub-01/meg/a.fif".to_string(), Some("bytes=40000-".to_string())),
                ("/b/ds1/sub-01/meg/b.fif".to_string(), None),
                ("/b/ds1/sub-01/meg/b.fif".to_string(), Some("bytes=10000-".to_string())),
                ("/b?list-type=2&prefix=ds1%2F".to_string(), None),
            ]
        );
    }

    #[test]
    fn missing_object_is_a_failure_naming_the_url_and_others_go_on() {
        let (endpoint, _log) = serve(vec![("ds1/README".to_string(), b"hi".to_vec())], 10);
        // List two keys but serve only one: swap in a listing with a ghost key.
        let client = S3Client::new(&endpoint, "b", 0);
        let listed = client.list("ds1/").unwrap();
        assert_eq!(listed.len(), 1);
        let ghost = RemoteObject { key: "ds1/ghost.json".into(), size: 3, etag: String::new() };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ghost.json");
        let err = openneuro::fetch_object(&client, &ghost, &path, &NoProgress, &AtomicU64::new(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{endpoint}/b/ds1/ghost.json")) && err.contains("HTTP 404"), "{err}");
        assert!(err.contains("NoSuchKey"), "{err}");
        assert!(!dir.path().join("ghost.json.part").exists(), "an empty .part was left behind");

        let e = download_dataset("ds2", dir.path(), &Selection::default(), &opts(&endpoint), &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing was found for dataset ds2"), "{e}");
        // ds1 lists fine, but has no sub-09.
        let sel = Selection { subjects: vec!["09".into()], ..Default::default() };
        let e =
            download_dataset("ds1", dir.path(), &sel, &opts(&endpoint), &NoProgress).unwrap_err().to_string();
        assert!(e.contains("sub-09"), "{e}");
    }
}
