//! The two commit-side calls of the Hub. `preupload` tells, per file, whether the Hub wants it
//! as a regular git blob or through LFS (by size, content sample and `.gitattributes`),
//! whether it is ignored, and the oid of the file already at that path (git sha1 for regular
//! files, sha256 for LFS ones): that is how unchanged files are skipped. `commit` posts one
//! NDJSON document: a header line, then one line per file (`file` with base64 content for
//! regular files, `lfsFile` with the sha256 pointer for LFS ones). It is the only request
//! that changes the repository's history, and it is sent last.

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::client::{quote, HubClient, Request};
use crate::error::{HubError, Result};
use crate::RepoKind;

/// How the Hub wants a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    Regular,
    Lfs,
}

/// What preupload needs to know of a local file.
#[derive(Debug, Clone)]
pub struct PreuploadFile<'a> {
    pub path: &'a str,
    /// The first 512 bytes.
    pub sample: &'a [u8],
    pub size: u64,
}

/// The Hub's answer for one file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PreuploadAnswer {
    pub path: String,
    #[serde(rename = "uploadMode")]
    pub upload_mode: UploadMode,
    #[serde(rename = "shouldIgnore", default)]
    pub should_ignore: bool,
    /// The oid of the file at this path on the revision, if any.
    #[serde(default)]
    pub oid: Option<String>,
}

#[derive(Deserialize)]
struct PreuploadResponse {
    files: Vec<PreuploadAnswer>,
}

/// Asks the Hub how to upload `files` (by chunks of 256, as `huggingface_hub`).
pub fn preupload(client: &HubClient, kind: RepoKind, repo_id: &str, revision: &str, files: &[PreuploadFile<'_>]) -> Result<HashMap<String, PreuploadAnswer>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = HashMap::new();
    for chunk in files.chunks(256) {
        let payload = serde_json::json!({
            "files": chunk.iter().map(|f| serde_json::json!({"path": f.path, "sample": b64.encode(f.sample), "size": f.size})).collect::<Vec<_>>()
        });
        let body = serde_json::to_vec(&payload).expect("json");
        let what = format!("preupload check of {} file(s) on {} {repo_id}@{revision}", chunk.len(), kind.as_str());
        let url = format!("{}/api/{}/{repo_id}/preupload/{}", client.endpoint(), kind.api_segment(), quote(revision));
        let resp = client.send(&Request::new("POST", url, what.clone()).json(&body))?;
        let parsed: PreuploadResponse = resp.json(&what)?;
        for a in parsed.files {
            out.insert(a.path.clone(), a);
        }
    }
    for f in files {
        if !out.contains_key(f.path) {
            return Err(HubError::Protocol { what: "preupload".into(), message: format!("no answer for {}", f.path) });
        }
    }
    Ok(out)
}

/// One file of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOp {
    /// A small file sent inline.
    Regular { path: String, content: Vec<u8> },
    /// A file whose content was uploaded through LFS.
    Lfs { path: String, sha256: String, size: u64 },
}

/// The NDJSON body of a commit.
pub fn ndjson(summary: &str, description: &str, parent_commit: Option<&str>, ops: &[CommitOp]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut header = serde_json::json!({"summary": summary, "description": description});
    if let Some(p) = parent_commit {
        header["parentCommit"] = p.into();
    }
    let mut lines = vec![serde_json::json!({"key": "header", "value": header})];
    for op in ops {
        lines.push(match op {
            CommitOp::Regular { path, content } => {
                serde_json::json!({"key": "file", "value": {"content": b64.encode(content), "path": path, "encoding": "base64"}})
            }
            CommitOp::Lfs { path, sha256, size } => {
                serde_json::json!({"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": sha256, "size": size}})
            }
        });
    }
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, &l).expect("json");
        out.push(b'\n');
    }
    out
}

/// The commit the Hub made.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CommitInfo {
    #[serde(rename = "commitOid")]
    pub commit_oid: String,
    #[serde(rename = "commitUrl")]
    pub commit_url: String,
}

/// Posts the commit. Retried only when the Hub answered 429/5xx (so it did not apply it);
/// a dropped connection is reported, not repeated (see [`crate::client`]).
pub fn create_commit(client: &HubClient, kind: RepoKind, repo_id: &str, revision: &str, body: &[u8]) -> Result<CommitInfo> {
    let what = format!("commit to {} {repo_id}@{revision}", kind.as_str());
    let url = format!("{}/api/{}/{repo_id}/commit/{}", client.endpoint(), kind.api_segment(), quote(revision));
    let mut req = Request::new("POST", url, what.clone());
    req.headers.push(("content-type", "application/x-ndjson".into()));
    req.body = crate::client::Body::Bytes(body);
    req.retry_network = false;
    client.send(&req)?.json(&what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_as_huggingface_hub_writes_them() {
        let ops = vec![
            CommitOp::Regular { path: "README.md".into(), content: b"# hi\n".to_vec() },
            CommitOp::Lfs { path: "data/a.parquet".into(), sha256: "ab".repeat(32), size: 42 },
        ];
        let body = String::from_utf8(ndjson("Upload", "", None, &ops)).unwrap();
        let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(body.ends_with('\n'));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], serde_json::json!({"key": "header", "value": {"summary": "Upload", "description": ""}}));
        assert_eq!(lines[1], serde_json::json!({"key": "file", "value": {"content": "IyBoaQo=", "path": "README.md", "encoding": "base64"}}));
        assert_eq!(lines[2], serde_json::json!({"key": "lfsFile", "value": {"path": "data/a.parquet", "algo": "sha256", "oid": "ab".repeat(32), "size": 42}}));
        let with_parent = String::from_utf8(ndjson("s", "d", Some("c0ffee"), &[])).unwrap();
        assert!(with_parent.contains("\"parentCommit\":\"c0ffee\""));
    }

    #[test]
    fn preupload_answer_parses() {
        let a: PreuploadResponse = serde_json::from_str(r#"{"files":[{"path":"a","uploadMode":"lfs","shouldIgnore":false,"oid":"x"},{"path":"b","uploadMode":"regular"}],"commitOid":"c"}"#).unwrap();
        assert_eq!(a.files[0].upload_mode, UploadMode::Lfs);
        assert_eq!(a.files[0].oid.as_deref(), Some("x"));
        assert_eq!(a.files[1], PreuploadAnswer { path: "b".into(), upload_mode: UploadMode::Regular, should_ignore: false, oid: None });
    }
}
