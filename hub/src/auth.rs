//! Where the Hub is and who we are: the access token and the endpoint, resolved the way
//! `huggingface_hub` resolves them so that a user logged in with `hf auth login` needs nothing
//! else. Token: `HF_TOKEN`, else the file `$HF_HOME/token` (`HF_HOME` defaults to
//! `~/.cache/huggingface`, itself under `$XDG_CACHE_HOME` when that is set). Endpoint:
//! `HF_ENDPOINT`, else the public Hub. The token type never shows its value in `Debug` or
//! `Display`, so it cannot leak through logs or error messages.

use std::fmt;
use std::path::{Path, PathBuf};

/// The public Hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// An access token. Its value is only reachable through [`Token::secret`] (for the
/// `Authorization` header); formatting it prints a redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token value (surrounding whitespace, e.g. a trailing newline, is dropped).
    pub fn new(value: impl Into<String>) -> Option<Token> {
        let v = value.into().trim().to_string();
        if v.is_empty() {
            None
        } else {
            Some(Token(v))
        }
    }

    /// The value, for the `Authorization: Bearer` header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted token>")
    }
}

/// Where a token was found (for messages: "token from HF_TOKEN was rejected").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env => f.write_str("HF_TOKEN"),
            TokenSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The environment variables that matter here, read once (a struct so tests need not touch
/// the process environment).
#[derive(Debug, Clone, Default)]
pub struct HubEnv {
    pub hf_token: Option<String>,
    pub hf_token_path: Option<String>,
    pub hf_home: Option<String>,
    pub xdg_cache_home: Option<String>,
    pub home: Option<String>,
    pub hf_endpoint: Option<String>,
}

impl HubEnv {
    /// Reads the process environment.
    pub fn from_process() -> HubEnv {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        HubEnv {
            hf_token: get("HF_TOKEN"),
            hf_token_path: get("HF_TOKEN_PATH"),
            hf_home: get("HF_HOME"),
            xdg_cache_home: get("XDG_CACHE_HOME"),
            home: get("HOME"),
            hf_endpoint: get("HF_ENDPOINT"),
        }
    }

    /// `huggingface_hub`'s HF_HOME: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
    /// `~/.cache/huggingface`.
    pub fn hf_home(&self) -> Option<PathBuf> {
        if let Some(h) = &self.hf_home {
            return Some(expand_home(h, self.home.as_deref()));
        }
        if let Some(x) = &self.xdg_cache_home {
            return Some(Path::new(x).join("huggingface"));
        }
        self.home.as_ref().map(|h| Path::new(h).join(".cache").join("huggingface"))
    }

    /// The token file `huggingface_hub` writes on login: `$HF_TOKEN_PATH`, else `HF_HOME/token`.
    pub fn token_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.hf_token_path {
            return Some(expand_home(p, self.home.as_deref()));
        }
        self.hf_home().map(|h| h.join("token"))
    }

    /// The token: `HF_TOKEN`, else the token file; `None` when neither has one.
    pub fn token(&self) -> Option<(Token, TokenSource)> {
        if let Some(t) = self.hf_token.as_deref().and_then(Token::new) {
            return Some((t, TokenSource::Env));
        }
        let path = self.token_path()?;
        let text = std::fs::read_to_string(&path).ok()?;
        Token::new(text).map(|t| (t, TokenSource::File(path)))
    }

    /// The endpoint without a trailing slash: `HF_ENDPOINT`, else the public Hub.
    pub fn endpoint(&self) -> String {
        self.hf_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_string()
    }
}

fn expand_home(p: &str, home: Option<&str>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => Path::new(h).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_in_debug_and_display() {
        let t = Token::new("hf_secret123\n").unwrap();
        assert_eq!(t.secret(), "hf_secret123");
        assert!(!format!("{t:?} {t}").contains("secret123"));
    }

    #[test]
    fn env_token_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
        let mut env = HubEnv { hf_home: Some(dir.path().to_string_lossy().into()), ..Default::default() };
        let (t, src) = env.token().unwrap();
        assert_eq!((t.secret(), src), ("hf_from_file", TokenSource::File(dir.path().join("token"))));
        env.hf_token = Some("hf_from_env".into());
        assert_eq!(env.token().unwrap(), (Token::new("hf_from_env").unwrap(), TokenSource::Env));
    }

    #[test]
    fn default_paths_follow_huggingface_hub() {
        let env = HubEnv { home: Some("/home/u".into()), ..Default::default() };
        assert_eq!(env.token_path().unwrap(), PathBuf::from("/home/u/.cache/huggingface/token"));
        assert_eq!(env.endpoint(), "https://huggingface.co");
        assert!(env.token().is_none());
        let env = HubEnv { home: Some("/home/u".into()), xdg_cache_home: Some("/x".into()), hf_endpoint: Some("http://127.0.0.1:9/".into()), ..Default::default() };
        assert_eq!(env.token_path().unwrap(), PathBuf::from("/x/huggingface/token"));
        assert_eq!(env.endpoint(), "http://127.0.0.1:9");
        let env = HubEnv { home: Some("/home/u".into()), hf_home: Some("~/hf".into()), ..Default::default() };
        assert_eq!(env.token_path().unwrap(), PathBuf::from("/home/u/hf/token"));
    }
}
