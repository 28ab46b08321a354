//! The whole upload, as `huggingface_hub.upload_folder`: list the files (sorted, hidden ones
//! left out), hash each (sha256 for LFS, git blob sha1 for regular files, one read), create
//! the repository if needed, ask the Hub (preupload) how each file goes and what it already
//! has, skip identical files, upload the missing LFS objects (the batch endpoint also skips
//! objects stored by an earlier, interrupted run), and make one commit last. Failures of
//! single files do not stop the others: every object that can reach the Hub does, then the
//! error lists what is there and nothing is committed, so a rerun sends only the rest.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;
use sha1::Digest as _;
use tracing::info;

use crate::commit::{self, CommitInfo, CommitOp, PreuploadFile, UploadMode};
use crate::error::{HubError, Result};
use crate::lfs::{self, Source, Transfer};
use crate::{HubClient, Progress, RepoKind};

/// What to upload where.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Branch to commit to.
    pub revision: String,
    /// Create the repository private (only when it is created here).
    pub private: bool,
    /// Commit title (default: "Upload N files with brainformer").
    pub commit_message: Option<String>,
    pub commit_description: String,
    /// Parallel uploads (files and multipart parts).
    pub jobs: usize,
    /// Create the repository when missing.
    pub create_repo: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions { revision: "main".into(), private: false, commit_message: None, commit_description: String::new(), jobs: 8, create_repo: true }
    }
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    pub repo_id: String,
    pub repo_type: &'static str,
    pub revision: String,
    pub url: String,
    pub created_repo: bool,
    pub files: usize,
    /// Files in the commit.
    pub files_committed: usize,
    /// Files identical on the Hub already (not sent, not committed).
    pub files_unchanged: usize,
    pub files_ignored: usize,
    pub lfs_objects_sent: usize,
    pub lfs_bytes_sent: u64,
    /// LFS objects the Hub already stored (e.g. from an interrupted run).
    pub lfs_objects_present: usize,
    pub regular_bytes_committed: u64,
    pub commit: Option<CommitInfo>,
}

/// A file to upload: its path in the repository and where its bytes are.
#[derive(Debug, Clone)]
pub enum LocalContent {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// A file ready for upload, hashed.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path_in_repo: String,
    pub content: LocalContent,
    pub size: u64,
    pub sha256: String,
    /// Git blob id of the content (what the Hub reports for regular files).
    pub git_sha1: String,
    pub sample: Vec<u8>,
}

impl LocalFile {
    /// Reads and hashes `content` (one pass).
    pub fn new(path_in_repo: impl Into<String>, content: LocalContent) -> Result<LocalFile> {
        let path_in_repo = path_in_repo.into();
        let (size, sha256, git_sha1, sample) = match &content {
            LocalContent::Bytes(b) => {
                let (s256, s1) = hash_bytes(b);
                (b.len() as u64, s256, s1, b[..b.len().min(512)].to_vec())
            }
            LocalContent::File(p) => hash_file(p)?,
        };
        Ok(LocalFile { path_in_repo, content, size, sha256, git_sha1, sample })
    }

    fn source(&self) -> Source<'_> {
        match &self.content {
            LocalContent::File(p) => Source::File(p),
            LocalContent::Bytes(b) => Source::Bytes(b),
        }
    }

    fn read(&self) -> Result<Vec<u8>> {
        match &self.content {
            LocalContent::File(p) => std::fs::read(p).map_err(|source| HubError::Io { path: p.clone(), source }),
            LocalContent::Bytes(b) => Ok(b.clone()),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (sha256, git blob sha1) of bytes.
pub fn hash_bytes(b: &[u8]) -> (String, String) {
    let s256 = sha2::Sha256::digest(b);
    let mut s1 = sha1::Sha1::new();
    s1.update(format!("blob {}\0", b.len()).as_bytes());
    s1.update(b);
    (hex(&s256), hex(&s1.finalize()))
}

fn hash_file(path: &Path) -> Result<(u64, String, String, Vec<u8>)> {
    use std::io::Read;
    let io = |source| HubError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let mut s256 = sha2::Sha256::new();
    let mut s1 = sha1::Sha1::new();
    s1.update(format!("blob {size}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut sample = Vec::new();
    let mut seen = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        if sample.len() < 512 {
            sample.extend_from_slice(&buf[..n.min(512 - sample.len())]);
        }
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
        seen += n as u64;
    }
    if seen != size {
        return Err(HubError::Io { path: path.to_path_buf(), source: std::io::Error::other("file changed while hashing") });
    }
    Ok((size, hex(&s256.finalize()), hex(&s1.finalize()), sample))
}

/// The files under `dir`, sorted by path, with `/` separators; names starting with `.` are
/// left out (caches, editor files).
pub fn scan_folder(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let io = |source| HubError::Io { path: dir.to_path_buf(), source };
        let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.collect::<std::io::Result<_>>().map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let path = e.path();
            if path.is_dir() {
                walk(&path, &rel, out)?;
            } else if path.is_file() {
                out.push((rel, path));
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return Err(HubError::Io { path: dir.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory") });
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Pushes every file under `dir` to `repo_id` (see the module doc).
pub fn upload_folder(client: &HubClient, kind: RepoKind, repo_id: &str, dir: &Path, opts: &UploadOptions, progress: &dyn Progress) -> Result<UploadReport> {
    let files: Vec<(String, LocalContent)> = scan_folder(dir)?.into_iter().map(|(rel, p)| (rel, LocalContent::File(p))).collect();
    if files.is_empty() {
        return Err(HubError::Invalid(format!("{}: no files to upload", dir.display())));
    }
    upload_files(client, kind, repo_id, files, opts, progress)
}

/// Pushes a checkpoint directory to a model repository: `config.json`, `model.safetensors`,
/// `metrics.json` when present, and a model card README.md (the directory's own README.md if
/// it has one, else one written from `metrics` and the config). For `bf-train --push-to-hub`.
pub fn upload_checkpoint(client: &HubClient, repo_id: &str, ckpt_dir: &Path, metrics: Option<&serde_json::Value>, opts: &UploadOptions, progress: &dyn Progress) -> Result<UploadReport> {
    let mut files = Vec::new();
    for required in ["config.json", "model.safetensors"] {
        let p = ckpt_dir.join(required);
        if !p.is_file() {
            return Err(HubError::Invalid(format!("{}: missing; a checkpoint directory holds config.json and model.safetensors (written by bf-train)", p.display())));
        }
        files.push((required.to_string(), LocalContent::File(p)));
    }
    if ckpt_dir.join("metrics.json").is_file() {
        files.push(("metrics.json".into(), LocalContent::File(ckpt_dir.join("metrics.json"))));
    }
    let readme = ckpt_dir.join("README.md");
    if readme.is_file() {
        files.push(("README.md".into(), LocalContent::File(readme)));
    } else {
        let cfg_path = ckpt_dir.join("config.json");
        let config: Option<serde_json::Value> = std::fs::read(&cfg_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let card = crate::card::model_card(repo_id, metrics, config.as_ref());
        files.push(("README.md".into(), LocalContent::Bytes(card.into_bytes())));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    upload_files(client, RepoKind::Model, repo_id, files, opts, progress)
}

/// Pushes `files` (path in repository, content) to `repo_id` in one commit.
pub fn upload_files(client: &HubClient, kind: RepoKind, repo_id: &str, files: Vec<(String, LocalContent)>, opts: &UploadOptions, progress: &dyn Progress) -> Result<UploadReport> {
    client.require_token()?;
    crate::repo::split_repo_id(repo_id)?;
    let jobs = opts.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).thread_name(|i| format!("bf-hub-{i}")).build().map_err(|e| HubError::Invalid(e.to_string()))?;

    progress.message("hashing");
    let files: Vec<LocalFile> = pool.install(|| files.into_par_iter().map(|(p, c)| LocalFile::new(p, c)).collect::<Result<_>>())?;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    info!("{} files, {} bytes to push to {} {repo_id}@{}", files.len(), total_bytes, kind.as_str(), opts.revision);

    let created_repo = if opts.create_repo { crate::repo::create_repo(client, kind, repo_id, opts.private)? } else { false };

    progress.message("preupload check");
    let pre: Vec<PreuploadFile<'_>> = files.iter().map(|f| PreuploadFile { path: &f.path_in_repo, sample: &f.sample, size: f.size }).collect();
    let answers = commit::preupload(client, kind, repo_id, &opts.revision, &pre)?;

    let mut report = UploadReport {
        repo_id: repo_id.to_string(),
        repo_type: kind.as_str(),
        revision: opts.revision.clone(),
        url: format!("{}/{}{repo_id}", client.endpoint(), kind.url_prefix()),
        created_repo,
        files: files.len(),
        files_committed: 0,
        files_unchanged: 0,
        files_ignored: 0,
        lfs_objects_sent: 0,
        lfs_bytes_sent: 0,
        lfs_objects_present: 0,
        regular_bytes_committed: 0,
        commit: None,
    };
    // Files to commit, with their mode (empty files are regular: LFS cannot store them).
    let mut to_commit: Vec<(&LocalFile, UploadMode)> = Vec::new();
    for f in &files {
        let a = &answers[&f.path_in_repo];
        if a.should_ignore {
            report.files_ignored += 1;
            continue;
        }
        let mode = if f.size == 0 { UploadMode::Regular } else { a.upload_mode };
        let local_oid = match mode {
            UploadMode::Lfs => &f.sha256,
            UploadMode::Regular => &f.git_sha1,
        };
        if a.oid.as_deref() == Some(local_oid.as_str()) {
            report.files_unchanged += 1;
            continue;
        }
        to_commit.push((f, mode));
    }
    if to_commit.is_empty() {
        info!("{repo_id}: all {} files are already on the Hub; nothing to commit", files.len());
        return Ok(report);
    }

    // LFS objects: one per distinct sha256.
    let mut lfs_files: Vec<&LocalFile> = to_commit.iter().filter(|(_, m)| *m == UploadMode::Lfs).map(|(f, _)| *f).collect();
    lfs_files.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    lfs_files.dedup_by(|a, b| a.sha256 == b.sha256);
    let mut work = Vec::new();
    if !lfs_files.is_empty() {
        progress.message("LFS batch");
        let objects: Vec<(String, u64)> = lfs_files.iter().map(|f| (f.sha256.clone(), f.size)).collect();
        let answers = lfs::batch(client, kind, repo_id, &opts.revision, &objects)?;
        for f in &lfs_files {
            let obj = answers.iter().find(|o| o.oid == f.sha256).ok_or_else(|| HubError::Protocol {
                what: "LFS batch".into(),
                message: format!("no answer for {} ({})", f.path_in_repo, f.sha256),
            })?;
            work.push((*f, lfs::plan(client, obj)));
        }
    }
    let send_bytes: u64 = work.iter().filter(|(_, p)| matches!(p, Ok(p) if p.transfer != Transfer::Present)).map(|(f, _)| f.size).sum();
    progress.start(send_bytes);
    progress.message("uploading");
    let uploaded = Mutex::new(Vec::<(String, u64, bool)>::new());
    let failed = Mutex::new(Vec::<(String, HubError)>::new());
    pool.install(|| {
        work.into_par_iter().for_each(|(f, plan)| {
            let result = plan.and_then(|plan| {
                let present = plan.transfer == Transfer::Present;
                lfs::upload(client, f.source(), &f.path_in_repo, &f.sha256, f.size, &plan, progress).map(|n| (n, present))
            });
            match result {
                Ok((n, present)) => uploaded.lock().unwrap().push((f.path_in_repo.clone(), n, present)),
                Err(e) => failed.lock().unwrap().push((f.path_in_repo.clone(), e)),
            }
        })
    });
    let mut uploaded = uploaded.into_inner().unwrap();
    let mut failed = failed.into_inner().unwrap();
    uploaded.sort_by(|a, b| a.0.cmp(&b.0));
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, n, present) in &uploaded {
        if *present {
            report.lfs_objects_present += 1;
        } else {
            report.lfs_objects_sent += 1;
            report.lfs_bytes_sent += n;
        }
    }
    if !failed.is_empty() {
        let mut there: Vec<String> = uploaded.iter().map(|(p, _, _)| p.clone()).collect();
        there.extend(files.iter().filter(|f| answers[&f.path_in_repo].oid.is_some() && !to_commit.iter().any(|(c, _)| c.path_in_repo == f.path_in_repo)).map(|f| format!("{} (unchanged)", f.path_in_repo)));
        return Err(HubError::Incomplete { repo: repo_id.to_string(), total: files.len(), uploaded: there, failed });
    }

    // The commit: last, one request.
    let mut ops = Vec::new();
    for (f, mode) in &to_commit {
        ops.push(match mode {
            UploadMode::Lfs => CommitOp::Lfs { path: f.path_in_repo.clone(), sha256: f.sha256.clone(), size: f.size },
            UploadMode::Regular => {
                report.regular_bytes_committed += f.size;
                CommitOp::Regular { path: f.path_in_repo.clone(), content: f.read()? }
            }
        });
    }
    let summary = opts.commit_message.clone().unwrap_or_else(|| format!("Upload {} files with brainformer", ops.len()));
    let body = commit::ndjson(&summary, &opts.commit_description, None, &ops);
    progress.message("commit");
    let info = commit::create_commit(client, kind, repo_id, &opts.revision, &body)
        .map_err(|e| HubError::CommitFailed { repo: repo_id.to_string(), uploaded: uploaded.len(), source: Box::new(e) })?;
    info!("{repo_id}: committed {} files as {}", ops.len(), info.commit_oid);
    report.files_committed = ops.len();
    report.commit = Some(info);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_sha256_and_git() {
        // `printf 'hello\n' | sha256sum` and `printf 'hello\n' | git hash-object --stdin`.
        let (s256, s1) = hash_bytes(b"hello\n");
        assert_eq!(s256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(s1, "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(hash_bytes(b"").1, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn file_and_bytes_hash_alike_and_scan_is_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join(".cache")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("data/b.parquet"), &big).unwrap();
        std::fs::write(dir.path().join("data/a.parquet"), b"x").unwrap();
        std::fs::write(dir.path().join("README.md"), b"# card\n").unwrap();
        std::fs::write(dir.path().join(".cache/junk"), b"j").unwrap();
        let scanned: Vec<String> = scan_folder(dir.path()).unwrap().into_iter().map(|(r, _)| r).collect();
        assert_eq!(scanned, ["README.md", "data/a.parquet", "data/b.parquet"]);
        let a = LocalFile::new("b", LocalContent::File(dir.path().join("data/b.parquet"))).unwrap();
        let b = LocalFile::new("b", LocalContent::Bytes(big.clone())).unwrap();
        assert_eq!((a.size, &a.sha256, &a.git_sha1, &a.sample), (b.size, &b.sha256, &b.git_sha1, &b.sample));
        assert_eq!(a.sample.len(), 512);
    }

    #[test]
    fn upload_without_token_says_how_to_get_one() {
        let c = HubClient::new("http://127.0.0.1:1", None);
        let e = upload_files(&c, RepoKind::Dataset, "u/x", vec![("a".into(), LocalContent::Bytes(b"a".to_vec()))], &UploadOptions::default(), &crate::NoProgress).unwrap_err();
        assert!(matches!(e, HubError::NoToken { .. }), "{e}");
        assert!(e.to_string().contains("HF_TOKEN"));
    }
}
