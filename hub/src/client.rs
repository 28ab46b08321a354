//! The HTTP side: one blocking agent (rustls) and a `send` that retries what is worth
//! retrying. 429 and 5xx answers and network failures (refused, reset, timed out) are
//! retried with exponential backoff, a bounded number of times, honouring `Retry-After`;
//! every other status becomes a [`HubError`] naming the request and carrying the Hub's own
//! message. Requests that must not be repeated blindly (the commit) opt out of network
//! retries: if the connection drops after the Hub received the commit we cannot tell whether
//! it was applied, and a rerun (which skips what is already there) is the safe answer.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use tracing::{debug, warn};

use crate::auth::{HubEnv, Token, TokenSource};
use crate::error::{HubError, Result};
use crate::Progress;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// First backoff; doubled at each retry.
    pub base_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// Cap of a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt + 1` (attempt 0 = after the first failure):
    /// the server's `Retry-After` when given (capped), else `base · 2^attempt` (capped).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(self.max_retry_after);
        }
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Whether an answer with this status is worth another try.
    pub fn retryable_status(status: u16) -> bool {
        matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: exponential backoff then).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A Hub answer, read whole (answers are small JSON documents or empty).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| HubError::Protocol {
            what: what.to_string(),
            message: format!("{e} in {}", String::from_utf8_lossy(&self.body[..self.body.len().min(300)])),
        })
    }

    /// The Hub's error message: `X-Error-Message`, else the JSON `error`/`message`, else text.
    fn error_message(&self) -> String {
        if let Some(m) = self.header("x-error-message") {
            return m.to_string();
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.body) {
            for k in ["error", "message"] {
                if let Some(s) = v.get(k).and_then(|e| e.as_str()) {
                    return s.to_string();
                }
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            "no message".into()
        } else {
            text.chars().take(300).collect()
        }
    }
}

/// A request body that can be produced again for each attempt.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset` (streamed, never all in memory).
    File { path: &'a Path, offset: u64, len: u64 },
}

/// One request, described so that it can be sent again.
pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    /// What it is for, in the words of error messages: "create dataset repo user/x".
    pub what: String,
    /// Send the token (never to pre-signed storage URLs).
    pub auth: bool,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Retry network failures (false for the commit; see the module doc).
    pub retry_network: bool,
    /// Count the body's bytes as they go.
    pub progress: Option<&'a dyn Progress>,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, url: String, what: impl Into<String>) -> Request<'a> {
        Request { method, url, what: what.into(), auth: true, headers: Vec::new(), body: Body::Empty, retry_network: true, progress: None }
    }

    pub fn json(mut self, body: &'a [u8]) -> Self {
        self.headers.push(("content-type", "application/json".into()));
        self.body = Body::Bytes(body);
        self
    }
}

/// A client of one Hub endpoint, with or without a token.
pub struct HubClient {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<Token>,
    token_source: Option<TokenSource>,
    token_hint: String,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient").field("endpoint", &self.endpoint).field("token", &self.token).field("retry", &self.retry).finish()
    }
}

impl HubClient {
    /// A client of `endpoint` (e.g. `https://huggingface.co`).
    pub fn new(endpoint: &str, token: Option<Token>) -> HubClient {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(600)))
            .user_agent(concat!("brainformer-hub/", env!("CARGO_PKG_VERSION")))
            .build();
        HubClient {
            agent: config.into(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            token_source: None,
            token_hint: "HF_TOKEN or ~/.cache/huggingface/token".into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Endpoint and token from the environment (see [`crate::auth`]).
    pub fn from_env(env: &HubEnv) -> HubClient {
        let found = env.token();
        let mut c = HubClient::new(&env.endpoint(), found.as_ref().map(|(t, _)| t.clone()));
        c.token_source = found.map(|(_, s)| s);
        c.token_hint = env.token_path().map(|p| p.display().to_string()).unwrap_or_else(|| "HF_HOME/token".into());
        c
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Where the token came from, for messages.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.token_source.as_ref()
    }

    /// Fails with [`HubError::NoToken`] when there is no token (uploads need one).
    pub fn require_token(&self) -> Result<()> {
        if self.token.is_none() {
            return Err(HubError::NoToken { path: self.token_hint.clone() });
        }
        Ok(())
    }

    /// `url` made absolute against the endpoint; a URL on the public Hub is moved to our
    /// endpoint when that differs (as `huggingface_hub`'s `fix_hf_endpoint_in_url`).
    pub fn fix_url(&self, url: &str) -> String {
        if url.starts_with('/') {
            return format!("{}{url}", self.endpoint);
        }
        if self.endpoint != crate::auth::DEFAULT_ENDPOINT {
            if let Some(rest) = url.strip_prefix(crate::auth::DEFAULT_ENDPOINT) {
                return format!("{}{rest}", self.endpoint);
            }
        }
        url.to_string()
    }

    /// Sends `req`, retrying 429/5xx and network failures per [`RetryPolicy`]; a 2xx answer
    /// is returned, anything else becomes an error.
    pub fn send(&self, req: &Request<'_>) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let outcome = self.once(req);
            let (retry, last, retry_after) = match outcome {
                Ok(r) if (200..300).contains(&r.status) => return Ok(r),
                Ok(r) if RetryPolicy::retryable_status(r.status) => {
                    (true, format!("HTTP {}: {}", r.status, r.error_message()), r.header("retry-after").and_then(parse_retry_after))
                }
                Ok(r) => return Err(HubError::from_status(&req.what, r.status, r.error_message())),
                Err(e) => (req.retry_network, e, None),
            };
            if !retry {
                return Err(HubError::Network { what: req.what.clone(), message: last });
            }
            if attempt >= self.retry.max_retries {
                return Err(HubError::RetriesExhausted { what: req.what.clone(), attempts: attempt + 1, last });
            }
            let wait = self.retry.delay(attempt, retry_after);
            warn!("{}: {last}; retry {}/{} in {:.1} s", req.what, attempt + 1, self.retry.max_retries, wait.as_secs_f64());
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// One attempt; `Err` is a network-level failure (message).
    fn once(&self, req: &Request<'_>) -> std::result::Result<Response, String> {
        debug!("{} {}", req.method, req.url);
        let mut b = ureq::http::Request::builder().method(req.method).uri(&req.url);
        if req.auth {
            if let Some(t) = &self.token {
                b = b.header("authorization", format!("Bearer {}", t.secret()));
            }
        }
        for (k, v) in &req.headers {
            b = b.header(*k, v.as_str());
        }
        let counter = Counter { progress: req.progress, sent: 0 };
        let result = match req.body {
            Body::Empty => {
                let r = b.body(()).map_err(|e| e.to_string())?;
                self.agent.run(r)
            }
            Body::Bytes(bytes) => {
                let b = b.header("content-length", bytes.len().to_string());
                let mut reader = Counted { inner: bytes, counter };
                let r = b.body(ureq::SendBody::from_reader(&mut reader)).map_err(|e| e.to_string())?;
                let out = self.agent.run(r);
                finish(out, reader.counter)
            }
            Body::File { path, offset, len } => {
                let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                f.seek(SeekFrom::Start(offset)).map_err(|e| format!("{}: {e}", path.display()))?;
                let b = b.header("content-length", len.to_string());
                let mut reader = Counted { inner: f.take(len), counter };
                let r = b.body(ureq::SendBody::from_reader(&mut reader)).map_err(|e| e.to_string())?;
                let out = self.agent.run(r);
                finish(out, reader.counter)
            }
        };
        let mut resp = result.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.body_mut().with_config().limit(256 << 20).read_to_vec().map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Response { status, headers, body })
    }
}

/// Rewinds the progress of a failed attempt, network error or non-2xx answer (its bytes will
/// be sent again, or the upload stops).
fn finish(out: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>, counter: Counter<'_>) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let ok = matches!(&out, Ok(r) if r.status().is_success());
    if !ok {
        if let Some(p) = counter.progress {
            p.rewind(counter.sent);
        }
    }
    out
}

struct Counter<'a> {
    progress: Option<&'a dyn Progress>,
    sent: u64,
}

struct Counted<'a, R> {
    inner: R,
    counter: Counter<'a>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.sent += n as u64;
        if let Some(p) = self.counter.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }
}

/// Percent-encodes a path segment as Python's `quote(s, safe="")` (revisions like `refs/pr/1`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let p = RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1), max_retry_after: Duration::from_secs(5) };
        let d: Vec<u128> = (0..6).map(|a| p.delay(a, None).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(0, Some(Duration::from_secs(3600))), Duration::from_secs(5));
        assert_eq!(p.delay(40, None), Duration::from_secs(1));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert!(RetryPolicy::retryable_status(429) && RetryPolicy::retryable_status(503));
        assert!(!RetryPolicy::retryable_status(401) && !RetryPolicy::retryable_status(409) && !RetryPolicy::retryable_status(413));
    }

    #[test]
    fn quote_matches_python() {
        assert_eq!(quote("main"), "main");
        assert_eq!(quote("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(quote("a b"), "a%20b");
    }

    #[test]
    fn urls_move_to_our_endpoint() {
        let c = HubClient::new("http://127.0.0.1:8000/", None);
        assert_eq!(c.endpoint(), "http://127.0.0.1:8000");
        assert_eq!(c.fix_url("https://huggingface.co/x/y"), "http://127.0.0.1:8000/x/y");
        assert_eq!(c.fix_url("/x"), "http://127.0.0.1:8000/x");
        assert_eq!(c.fix_url("https://s3.example/p?sig=1"), "https://s3.example/p?sig=1");
    }

    #[test]
    fn error_statuses_are_classified() {
        assert!(matches!(HubError::from_status("w", 401, "m".into()), HubError::Auth { status: 401, .. }));
        assert!(matches!(HubError::from_status("w", 403, "m".into()), HubError::Auth { status: 403, .. }));
        assert!(matches!(HubError::from_status("w", 404, "m".into()), HubError::NotFound { .. }));
        assert!(matches!(HubError::from_status("w", 409, "m".into()), HubError::Conflict { .. }));
        assert!(matches!(HubError::from_status("w", 413, "m".into()), HubError::TooLarge { .. }));
        let e = HubError::from_status("create dataset repo u/x", 401, "Invalid credentials".into());
        assert!(e.to_string().starts_with("create dataset repo u/x: HTTP 401"), "{e}");
    }
}
