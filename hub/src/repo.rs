//! Repository-level calls: create the repository (409 "already exists" is success, as
//! `create_repo(exist_ok=True)`), and read a revision's file list with sizes and hashes
//! (the tree endpoint, as `list_repo_tree(recursive=True)`), used for reports and checks.

use serde::Deserialize;
use tracing::info;

use crate::client::{quote, HubClient, Request};
use crate::error::{HubError, Result};
use crate::RepoKind;

/// Splits `namespace/name` (the namespace may be absent: the token's user).
pub fn split_repo_id(repo_id: &str) -> Result<(Option<&str>, &str)> {
    let bad = || HubError::Invalid(format!("{repo_id:?}: a repository id is NAME or NAMESPACE/NAME (letters, digits, '-', '_', '.')"));
    let ok = |s: &str| !s.is_empty() && s.len() <= 96 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !s.starts_with(['-', '.']);
    match repo_id.split_once('/') {
        Some((ns, name)) if ok(ns) && ok(name) => Ok((Some(ns), name)),
        None if ok(repo_id) => Ok((None, repo_id)),
        _ => Err(bad()),
    }
}

/// Creates the repository; `Ok(false)` when it already existed.
pub fn create_repo(client: &HubClient, kind: RepoKind, repo_id: &str, private: bool) -> Result<bool> {
    let (organization, name) = split_repo_id(repo_id)?;
    let mut payload = serde_json::json!({"name": name, "organization": organization, "type": kind.as_str()});
    if private {
        payload["visibility"] = "private".into();
        payload["private"] = true.into();
    }
    let body = serde_json::to_vec(&payload).expect("json");
    let what = format!("create {} repository {repo_id}", kind.as_str());
    let url = format!("{}/api/repos/create", client.endpoint());
    match client.send(&Request::new("POST", url, what).json(&body)) {
        Ok(_) => {
            info!("created {} repository {repo_id}{}", kind.as_str(), if private { " (private)" } else { "" });
            Ok(true)
        }
        Err(HubError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One file of a revision, as the tree endpoint lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// Git blob id (sha1 of the pointer for LFS files).
    pub oid: String,
    /// sha256 of the content, for LFS files.
    pub lfs_sha256: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
}

/// Every file of `revision` (recursive tree listing, following `Link: <…>; rel="next"` pages).
pub fn list_files(client: &HubClient, kind: RepoKind, repo_id: &str, revision: &str) -> Result<Vec<RemoteFile>> {
    let mut url = Some(format!("{}/api/{}/{repo_id}/tree/{}?recursive=true&expand=false", client.endpoint(), kind.api_segment(), quote(revision)));
    let mut out = Vec::new();
    while let Some(u) = url.take() {
        let what = format!("list files of {} {repo_id}@{revision}", kind.as_str());
        let resp = client.send(&Request::new("GET", u, what.clone()))?;
        let entries: Vec<TreeEntry> = resp.json(&what)?;
        out.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| RemoteFile {
            path: e.path,
            size: e.size,
            oid: e.oid,
            lfs_sha256: e.lfs.map(|l| l.oid),
        }));
        url = resp.header("link").and_then(next_link).map(|l| client.fix_url(&l));
    }
    Ok(out)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| {
        let start = p.find('<')? + 1;
        let end = p.find('>')?;
        Some(p[start..end].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert_eq!(split_repo_id("user/ds").unwrap(), (Some("user"), "ds"));
        assert_eq!(split_repo_id("ds").unwrap(), (None, "ds"));
        for bad in ["", "a/b/c", "/x", "x/", "a b/c", "u/-x"] {
            assert!(split_repo_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_header() {
        assert_eq!(next_link("<https://h/api/x?cursor=2>; rel=\"next\"").as_deref(), Some("https://h/api/x?cursor=2"));
        assert_eq!(next_link("<https://h/a>; rel=\"prev\""), None);
    }
}
