//! A minimal anonymous S3 client: `ListObjectsV2` with pagination and `GET` (optionally ranged),
//! over path-style URLs `{endpoint}/{bucket}/{key}`, unsigned, as OpenNeuro's public bucket allows.
//!
//! Retries: connection failures, timeouts and 5xx/429 answers are retried with exponential
//! backoff; 4xx answers are not (they will not change), and they are reported with S3's own
//! error code and message (`NoSuchKey`, `AccessDenied`, ...).

use std::io::Read;
use std::time::Duration;

use crate::error::{Error, Result};

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// The full key in the bucket, e.g. `ds000117/sub-01/ses-meg/meg/sub-01_..._meg.fif`.
    pub key: String,
    pub size: u64,
    /// The ETag without its quotes.
    pub etag: String,
}

/// What an S3 ETag lets us check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagKind {
    /// A single-part upload: the ETag is the MD5 of the object's bytes.
    Md5([u8; 16]),
    /// A multipart upload (`<hex>-<parts>`): only the size can be checked.
    Multipart,
    /// Anything else (encrypted objects, other stores): only the size can be checked.
    Opaque,
}

/// Classifies an ETag (with or without its surrounding quotes).
pub fn etag_kind(etag: &str) -> EtagKind {
    let e = etag.trim().trim_matches('"');
    if let Some((hex, parts)) = e.rsplit_once('-') {
        if hex.len() == 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && !parts.is_empty()
            && parts.bytes().all(|b| b.is_ascii_digit())
        {
            return EtagKind::Multipart;
        }
        return EtagKind::Opaque;
    }
    match parse_hex16(e) {
        Some(md5) => EtagKind::Md5(md5),
        None => EtagKind::Opaque,
    }
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page of a `ListObjectsV2` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<RemoteObject>,
    /// `Some` when the listing continues: the `NextContinuationToken` to send.
    pub next_token: Option<String>,
}

/// Parses a `ListObjectsV2` XML answer. `url` only serves the error message.
pub fn parse_list_page(xml: &str, url: &str) -> Result<ListPage> {
    let bad = |what: String| Error::Remote { url: url.to_string(), what };
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| bad(format!("the listing is not valid XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "ListBucketResult" {
        return Err(bad(format!("expected a <ListBucketResult> listing, got <{}>", root.tag_name().name())));
    }
    let text = |node: roxmltree::Node, name: &str| -> Option<String> {
        node.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .map(|c| c.text().unwrap_or("").to_string())
    };
    let mut objects = Vec::new();
    for c in root.children().filter(|c| c.is_element() && c.tag_name().name() == "Contents") {
        let key = text(c, "Key").ok_or_else(|| bad("a <Contents> entry has no <Key>".into()))?;
        let size_s =
            text(c, "Size").ok_or_else(|| bad(format!("the listing entry of {key:?} has no <Size>")))?;
        let size = size_s
            .trim()
            .parse::<u64>()
            .map_err(|_| bad(format!("the listing entry of {key:?} has an invalid <Size> {size_s:?}")))?;
        let etag = text(c, "ETag").unwrap_or_default().trim().trim_matches('"').to_string();
        objects.push(RemoteObject { key, size, etag });
    }
    let truncated = text(root, "IsTruncated").map(|t| t.trim() == "true").unwrap_or(false);
    let next_token = if truncated {
        let token = text(root, "NextContinuationToken").filter(|t| !t.is_empty());
        Some(token.ok_or_else(|| {
            bad("the listing says it is truncated but gives no <NextContinuationToken>".into())
        })?)
    } else {
        None
    };
    Ok(ListPage { objects, next_token })
}

/// S3's error document: `<Error><Code>NoSuchKey</Code><Message>...</Message>...</Error>`.
/// Returns `"Code: Message"` when the body is one, else a short, printable excerpt of the body.
pub fn describe_error_body(body: &str) -> String {
    if let Ok(doc) = roxmltree::Document::parse(body) {
        let root = doc.root_element();
        if root.tag_name().name() == "Error" {
            let get = |name: &str| {
                root.children()
                    .find(|c| c.is_element() && c.tag_name().name() == name)
                    .and_then(|c| c.text())
                    .map(|t| t.trim().to_string())
            };
            return match (get("Code"), get("Message")) {
                (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
                (Some(c), _) => c,
                (None, Some(m)) => m,
                (None, None) => "the server sent an empty <Error>".into(),
            };
        }
    }
    let t: String = body.trim().chars().take(200).collect();
    if t.is_empty() {
        "the server sent no explanation".into()
    } else {
        t
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The outcome of one HTTP attempt that did not give a usable answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth trying again (connection error, timeout, 5xx, 429).
    Transient(Error),
    /// Will not get better (4xx, malformed answers, local disk errors).
    Permanent(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Transient(e) | Failure::Permanent(e) => e,
        }
    }
}

/// An anonymous S3 client for one bucket.
#[derive(Clone)]
pub struct S3Client {
    agent: ureq::Agent,
    endpoint: String,
    bucket: String,
    retries: u32,
    backoff_base: Duration,
}

/// A `GET` answer whose body can be streamed.
pub(crate) struct GetResponse {
    /// 200 (the whole object) or 206 (the requested range).
    pub status: u16,
    /// For a 206: the first byte of the range the server sends (`Content-Range`).
    pub range_start: u64,
    pub body: ureq::BodyReader<'static>,
}

impl S3Client {
    pub fn new(endpoint: &str, bucket: &str, retries: u32) -> S3Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("brainformer-pipeline/", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            .build();
        S3Client {
            agent: config.new_agent(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            retries,
            backoff_base: Duration::from_millis(250),
        }
    }

    /// Sets the first backoff delay (doubling at each retry, at most 8 s).
    pub fn with_backoff(mut self, base: Duration) -> S3Client {
        self.backoff_base = base;
        self
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The URL of an object.
    pub fn object_url(&self, key: &str) -> String {
        format!("{}/{}/{}", self.endpoint, self.bucket, percent_encode(key, true))
    }

    /// The URL of one listing page.
    pub fn list_url(&self, prefix: &str, token: Option<&str>) -> String {
        let mut url =
            format!("{}/{}?list-type=2&prefix={}", self.endpoint, self.bucket, percent_encode(prefix, false));
        if let Some(t) = token {
            url.push_str("&continuation-token=");
            url.push_str(&percent_encode(t, false));
        }
        url
    }

    /// The delay before retry number `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let d = self.backoff_base.saturating_mul(1u32 << (attempt - 1).min(6));
        d.min(Duration::from_secs(8))
    }

    /// Runs `f` up to `retries + 1` times while it fails transiently.
    pub(crate) fn with_retries<T>(&self, mut f: impl FnMut() -> Result<T, Failure>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(Failure::Transient(e)) if attempt < self.retries => {
                    attempt += 1;
                    tracing::warn!("{e}; retry {attempt}/{}", self.retries);
                    std::thread::sleep(self.backoff(attempt));
                }
                Err(f) => return Err(f.into_error()),
            }
        }
    }

    /// Lists every object under `prefix`, following continuation tokens.
    pub fn list(&self, prefix: &str) -> Result<Vec<RemoteObject>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = self.list_url(prefix, token.as_deref());
            let page = self.with_retries(|| {
                let body = self.get_small(&url)?;
                parse_list_page(&body, &url).map_err(Failure::Permanent)
            })?;
            objects.extend(page.objects);
            match page.next_token {
                Some(t) if Some(&t) == token.as_ref() => {
                    return Err(Error::Remote {
                        url,
                        what: "the listing repeats its continuation token (the server loops)".into(),
                    })
                }
                Some(t) => token = Some(t),
                None => return Ok(objects),
            }
        }
    }

    /// One `GET` of a small document (a listing page), read whole.
    fn get_small(&self, url: &str) -> Result<String, Failure> {
        let resp = self.agent.get(url).call().map_err(|e| transport_failure(url, e))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let text =
            body.with_config().limit(64 << 20).read_to_string().map_err(|e| transport_failure(url, e))?;
        if status != 200 {
            return Err(status_failure(url, status, &text));
        }
        Ok(text)
    }

    /// One `GET` attempt of an object, from byte `from` on (a `Range` request when `from > 0`).
    /// The caller streams the body.
    pub(crate) fn get_object(&self, key: &str, from: u64) -> Result<GetResponse, Failure> {
        let url = self.object_url(key);
        let mut req = self.agent.get(&url);
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        let resp = req.call().map_err(|e| transport_failure(&url, e))?;
        let status = resp.status().as_u16();
        match status {
            200 => Ok(GetResponse { status, range_start: 0, body: resp.into_body().into_reader() }),
            206 => {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                // "bytes 100-199/200"
                let start = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        Failure::Permanent(Error::Remote {
                            url: url.clone(),
                            what: format!("a 206 answer with an unusable Content-Range {cr:?}"),
                        })
                    })?;
                Ok(GetResponse { status, range_start: start, body: resp.into_body().into_reader() })
            }
            _ => {
                let mut body = resp.into_body();
                let text = body.with_config().limit(1 << 20).read_to_string().unwrap_or_default();
                Err(status_failure(&url, status, &text))
            }
        }
    }
}

/// Classifies a ureq error: everything at transport level is worth a retry, except malformed
/// URLs and answers that exceed our limits.
fn transport_failure(url: &str, e: ureq::Error) -> Failure {
    let err = Error::Network { url: url.to_string(), what: e.to_string() };
    match e {
        ureq::Error::BadUri(_)
        | ureq::Error::BodyExceedsLimit(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::Tls(_) => Failure::Permanent(err),
        // rustls reports certificate and protocol errors as InvalidData: retrying will not help.
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => Failure::Permanent(err),
        _ => Failure::Transient(err),
    }
}

/// An HTTP error status: 5xx, 429 (and S3's 503 SlowDown) are transient, the rest permanent.
fn status_failure(url: &str, status: u16, body: &str) -> Failure {
    let detail = describe_error_body(body);
    let what = match status {
        403 => {
            format!("access denied ({detail}); the bucket or object is not public, or the endpoint is wrong")
        }
        404 => format!("not found ({detail})"),
        _ => detail,
    };
    let err = Error::Http { url: url.to_string(), status, what };
    if status >= 500 || status == 429 || status == 408 {
        Failure::Transient(err)
    } else {
        Failure::Permanent(err)
    }
}

/// Reads from `r` into `buf`, mapping errors to a network error on `url`.
pub(crate) fn read_body(r: &mut impl Read, buf: &mut [u8], url: &str) -> Result<usize, Failure> {
    r.read(buf).map_err(|e| {
        Failure::Transient(Error::Network {
            url: url.to_string(),
            what: format!("the transfer broke off: {e}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>openneuro.org</Name><Prefix>ds000117/</Prefix><KeyCount>2</KeyCount>
  <MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
  <Contents><Key>ds000117/README</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;0123456789abcdef0123456789ABCDEF&quot;</ETag><Size>123</Size>
    <StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>ds000117/sub-01/ses-meg/meg/a &amp; b.fif</Key>
    <ETag>"d41d8cd98f00b204e9800998ecf8427e-12"</ETag><Size>870000000</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;

    #[test]
    fn parses_listing_with_continuation() {
        let p = parse_list_page(PAGE1, "u").unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "ds000117/README");
        assert_eq!(p.objects[0].size, 123);
        assert_eq!(p.objects[0].etag, "0123456789abcdef0123456789ABCDEF");
        assert_eq!(p.objects[1].key, "ds000117/sub-01/ses-meg/meg/a & b.fif");
        assert_eq!(p.objects[1].size, 870_000_000);
        assert_eq!(p.next_token.as_deref(), Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
    }

    #[test]
    fn parses_last_and_empty_pages() {
        let last = r#"<ListBucketResult><IsTruncated>false</IsTruncated>
            <Contents><Key>k</Key><Size>0</Size><ETag>"x"</ETag></Contents></ListBucketResult>"#;
        let p = parse_list_page(last, "u").unwrap();
        assert_eq!(p.objects.len(), 1);
        assert_eq!(p.next_token, None);
        let empty = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert!(parse_list_page(empty, "u").unwrap().objects.is_empty());
    }

    #[test]
    fn rejects_bad_listings() {
        let e = parse_list_page("<html>nope", "http://x/b").unwrap_err().to_string();
        assert!(e.contains("http://x/b") && e.contains("not valid XML"), "{e}");
        let e = parse_list_page("<Error><Code>X</Code></Error>", "u").unwrap_err().to_string();
        assert!(e.contains("<Error>"), "{e}");
        let e = parse_list_page(
            "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
            "u",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid <Size>"), "{e}");
        let e = parse_list_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("NextContinuationToken"), "{e}");
    }

    #[test]
    fn classifies_etags() {
        let md5 = etag_kind("\"d41d8cd98f00b204e9800998ecf8427e\"");
        assert_eq!(
            md5,
            EtagKind::Md5([
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42,
                0x7e
            ])
        );
        assert!(matches!(etag_kind("D41D8CD98F00B204E9800998ECF8427E"), EtagKind::Md5(_)));
        assert_eq!(etag_kind("d41d8cd98f00b204e9800998ecf8427e-2"), EtagKind::Multipart);
        assert_eq!(etag_kind("\"d41d8cd98f00b204e9800998ecf8427e-123\""), EtagKind::Multipart);
        assert_eq!(etag_kind(""), EtagKind::Opaque);
        assert_eq!(etag_kind("d41d8cd98f00b204e9800998ecf8427"), EtagKind::Opaque);
        assert_eq!(etag_kind("g41d8cd98f00b204e9800998ecf8427e"), EtagKind::Opaque);
        assert_eq!(etag_kind("d41d8cd98f00b204e9800998ecf8427e-"), EtagKind::Opaque);
    }

    #[test]
    fn describes_s3_errors() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>"#;
        assert_eq!(describe_error_body(body), "AccessDenied: Access Denied");
        assert_eq!(describe_error_body(""), "the server sent no explanation");
        assert_eq!(describe_error_body("plain text"), "plain text");
    }

    #[test]
    fn builds_urls() {
        let c = S3Client::new("http://127.0.0.1:9000/", "openneuro.org", 0);
        assert_eq!(
            c.list_url("ds000117/", Some("a+b/=")),
            "http://127.0.0.1:9000/openneuro.org?list-type=2&prefix=ds000117%2F&continuation-token=a%2Bb%2F%3D"
        );
        assert_eq!(
            c.object_url("ds000117/sub-01/a b.json"),
            "http://127.0.0.1:9000/openneuro.org/ds000117/sub-01/a%20b.json"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = S3Client::new("http://x", "b", 3).with_backoff(Duration::from_millis(100));
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(2), Duration::from_millis(200));
        assert_eq!(c.backoff(30), Duration::from_millis(6400));
        assert_eq!(S3Client::new("http://x", "b", 3).backoff(10), Duration::from_secs(8));
    }
}
