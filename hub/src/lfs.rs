//! Git LFS upload as the Hub serves it. The batch endpoint (`{repo}.git/info/lfs/objects/batch`,
//! `application/vnd.git-lfs+json`, operation `upload`, transfers `basic` and `multipart`,
//! sha256) answers per object: nothing to do (already stored), a URL to PUT the whole file to
//! (basic), or a multipart plan (`header.chunk_size` and one pre-signed URL per numbered
//! part, plus the `href` that completes the upload with the parts' ETags). Parts go in
//! parallel on the caller's rayon pool, each PUT retried on its own; an optional `verify`
//! action confirms the object. Pre-signed URLs carry their own credentials, so the token is
//! never sent to them.

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use tracing::debug;

use crate::client::{Body, HubClient, Request};
use crate::error::{HubError, Result};
use crate::{Progress, RepoKind};

const LFS_MIME: &str = "application/vnd.git-lfs+json";

/// One object of a batch answer.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchObject {
    pub oid: String,
    pub size: u64,
    #[serde(default)]
    pub actions: Option<BatchActions>,
    #[serde(default)]
    pub error: Option<BatchObjectError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchActions {
    pub upload: Option<Action>,
    pub verify: Option<Action>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub href: String,
    #[serde(default)]
    pub header: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchObjectError {
    pub code: i64,
    pub message: String,
}

#[derive(Deserialize)]
struct BatchResponse {
    objects: Vec<BatchObject>,
}

/// Asks where to upload `objects` (sha256, size), by chunks of 256.
pub fn batch(client: &HubClient, kind: RepoKind, repo_id: &str, revision: &str, objects: &[(String, u64)]) -> Result<Vec<BatchObject>> {
    let mut out = Vec::new();
    for chunk in objects.chunks(256) {
        let payload = serde_json::json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": chunk.iter().map(|(oid, size)| serde_json::json!({"oid": oid, "size": size})).collect::<Vec<_>>(),
            "hash_algo": "sha256",
            "ref": {"name": revision},
        });
        let body = serde_json::to_vec(&payload).expect("json");
        let what = format!("LFS batch request for {} object(s) of {} {repo_id}", chunk.len(), kind.as_str());
        let url = format!("{}/{}{repo_id}.git/info/lfs/objects/batch", client.endpoint(), kind.url_prefix());
        let mut req = Request::new("POST", url, what.clone());
        req.headers.push(("accept", LFS_MIME.into()));
        req.headers.push(("content-type", LFS_MIME.into()));
        req.body = Body::Bytes(&body);
        let parsed: BatchResponse = client.send(&req)?.json(&what)?;
        out.extend(parsed.objects);
    }
    Ok(out)
}

/// How one object goes up.
#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    /// The Hub already has it.
    Present,
    /// One PUT of the whole file.
    Basic { href: String },
    /// Numbered parts of `chunk_size` bytes, then a completion POST to `complete_href`.
    Multipart { complete_href: String, chunk_size: u64, part_urls: Vec<String> },
}

/// A transfer and its optional verify URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub transfer: Transfer,
    pub verify: Option<String>,
}

/// Reads a batch answer's object into a [`Plan`] (checks the part count against the size).
pub fn plan(client: &HubClient, obj: &BatchObject) -> Result<Plan> {
    let what = format!("LFS object {}", obj.oid);
    if let Some(e) = &obj.error {
        return Err(HubError::Http { what, status: u16::try_from(e.code).unwrap_or(0), message: e.message.clone() });
    }
    let Some(actions) = &obj.actions else { return Ok(Plan { transfer: Transfer::Present, verify: None }) };
    let verify = actions.verify.as_ref().map(|v| client.fix_url(&v.href));
    let Some(upload) = &actions.upload else { return Ok(Plan { transfer: Transfer::Present, verify }) };
    let href = client.fix_url(&upload.href);
    let header = upload.header.clone().unwrap_or_default();
    let Some(chunk) = header.get("chunk_size") else { return Ok(Plan { transfer: Transfer::Basic { href }, verify }) };
    let chunk_size = match chunk {
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .filter(|&c| c > 0)
    .ok_or_else(|| HubError::Protocol { what: what.clone(), message: format!("chunk_size {chunk} is not a positive integer") })?;
    let mut parts: Vec<(u64, String)> = header
        .iter()
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        .map(|(k, v)| (k.parse::<u64>().unwrap_or(0), v.as_str().map(|s| client.fix_url(s)).unwrap_or_default()))
        .collect();
    parts.sort_by_key(|(n, _)| *n);
    let expected = obj.size.div_ceil(chunk_size);
    if parts.len() as u64 != expected || parts.iter().any(|(_, u)| u.is_empty()) {
        return Err(HubError::Protocol { what, message: format!("{} part URLs for {} bytes in chunks of {chunk_size} (expected {expected})", parts.len(), obj.size) });
    }
    Ok(Plan { transfer: Transfer::Multipart { complete_href: href, chunk_size, part_urls: parts.into_iter().map(|(_, u)| u).collect() }, verify })
}

/// Where an object's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl<'a> Source<'a> {
    fn body(self, offset: u64, len: u64) -> Body<'a> {
        match self {
            Source::File(path) => Body::File { path, offset, len },
            Source::Bytes(b) => Body::Bytes(&b[offset as usize..(offset + len) as usize]),
        }
    }
}

/// Uploads `source` (sha256 `oid`, `size` bytes) as `plan` says; `name` is its path in the
/// repository (for messages). Multipart parts run in parallel on the current rayon pool.
/// Returns the bytes sent.
pub fn upload(client: &HubClient, source: Source<'_>, name: &str, oid: &str, size: u64, plan: &Plan, progress: &dyn Progress) -> Result<u64> {
    let sent = match &plan.transfer {
        Transfer::Present => return Ok(0),
        Transfer::Basic { href } => {
            let mut req = Request::new("PUT", href.clone(), format!("LFS upload of {name}"));
            req.auth = false;
            req.body = source.body(0, size);
            req.progress = Some(progress);
            client.send(&req)?;
            size
        }
        Transfer::Multipart { complete_href, chunk_size, part_urls } => {
            let n = part_urls.len();
            let etags: Vec<String> = part_urls
                .par_iter()
                .enumerate()
                .map(|(i, url)| {
                    let offset = i as u64 * chunk_size;
                    let len = (*chunk_size).min(size - offset);
                    let what = format!("LFS part {}/{n} of {name}", i + 1);
                    let mut req = Request::new("PUT", url.clone(), what.clone());
                    req.auth = false;
                    req.body = source.body(offset, len);
                    req.progress = Some(progress);
                    let resp = client.send(&req)?;
                    debug!("{what}: done");
                    resp.header("etag").map(str::to_string).filter(|e| !e.is_empty()).ok_or(HubError::Protocol { what, message: "no ETag in the answer".into() })
                })
                .collect::<Result<_>>()?;
            let body = serde_json::to_vec(&completion_payload(oid, &etags)).expect("json");
            let mut req = Request::new("POST", complete_href.clone(), format!("LFS multipart completion of {name}"));
            req.auth = false;
            req.headers.push(("accept", LFS_MIME.into()));
            req.headers.push(("content-type", LFS_MIME.into()));
            req.body = Body::Bytes(&body);
            client.send(&req)?;
            size
        }
    };
    if let Some(v) = &plan.verify {
        let body = serde_json::to_vec(&serde_json::json!({"oid": oid, "size": size})).expect("json");
        let mut req = Request::new("POST", v.clone(), format!("LFS verify of {name}"));
        req.headers.push(("accept", LFS_MIME.into()));
        req.headers.push(("content-type", LFS_MIME.into()));
        req.body = Body::Bytes(&body);
        client.send(&req)?;
    }
    Ok(sent)
}

/// `{"oid": …, "parts": [{"partNumber": 1, "etag": …}, …]}`.
pub fn completion_payload(oid: &str, etags: &[String]) -> serde_json::Value {
    serde_json::json!({
        "oid": oid,
        "parts": etags.iter().enumerate().map(|(i, e)| serde_json::json!({"partNumber": i + 1, "etag": e})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: serde_json::Value) -> BatchObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn plans_from_batch_answers() {
        let c = HubClient::new("http://127.0.0.1:1", None);
        assert_eq!(plan(&c, &obj(serde_json::json!({"oid": "a", "size": 3}))).unwrap().transfer, Transfer::Present);
        let p = plan(&c, &obj(serde_json::json!({"oid": "a", "size": 3, "actions": {"upload": {"href": "https://huggingface.co/up"}, "verify": {"href": "/v"}}}))).unwrap();
        assert_eq!(p, Plan { transfer: Transfer::Basic { href: "http://127.0.0.1:1/up".into() }, verify: Some("http://127.0.0.1:1/v".into()) });
        let p = plan(&c, &obj(serde_json::json!({"oid": "a", "size": 25, "actions": {"upload": {"href": "http://s/done", "header": {"chunk_size": "10", "2": "http://s/2", "10": "x", "1": "http://s/1", "3": "http://s/3"}}}})));
        assert!(p.is_err(), "4 parts for 25 bytes in 10s must be refused");
        let p = plan(&c, &obj(serde_json::json!({"oid": "a", "size": 25, "actions": {"upload": {"href": "http://s/done", "header": {"chunk_size": 10, "2": "http://s/2", "1": "http://s/1", "3": "http://s/3"}}}}))).unwrap();
        assert_eq!(p.transfer, Transfer::Multipart { complete_href: "http://s/done".into(), chunk_size: 10, part_urls: vec!["http://s/1".into(), "http://s/2".into(), "http://s/3".into()] });
        let e = plan(&c, &obj(serde_json::json!({"oid": "a", "size": 3, "error": {"code": 422, "message": "bad"}}))).unwrap_err();
        assert_eq!(e.status(), Some(422));
    }

    #[test]
    fn completion_numbers_parts_from_one() {
        let p = completion_payload("abc", &["e1".into(), "e2".into()]);
        assert_eq!(p, serde_json::json!({"oid": "abc", "parts": [{"partNumber": 1, "etag": "e1"}, {"partNumber": 2, "etag": "e2"}]}));
    }
}
