//! Who is allowed in, and to which videos: the session sources behind one seam.
//!
//! A source answers [`SessionSource::check`] for a presented session with a
//! [`Verdict`]; an allowed verdict carries the [`Principal`] the rest of the
//! request acts for, with its [`Entitlements`]. Each source is its own module
//! (a file, the CMS's own session check, Redis); [`Sessions`] holds the one
//! the settings name, behind a verdict cache when one is configured. Sessions
//! are looked up and cached by the SHA-256 digest of their id, never the id.

mod cache;
mod file;
mod forward_auth;
mod redis;
mod sessions;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use cache::CacheSettings;
pub use file::{entries, FileSource};
pub use forward_auth::{ForwardAuth, ForwardAuthSettings};
pub use redis::{RedisSettings, RedisSource};
pub use sessions::{OnError, Sessions, SessionsSettings, Source, SourceSettings};

/// The request a session is checked for: the CMS's session check is sent
/// its cookies, and may be told the original method and path.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// A source could not be built.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The allowlist file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the allowlist file is not a usable session id.
    #[error("{path}:{line}: {message}")]
    BadEntry {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: &'static str,
    },
    /// A remote source's settings cannot be used.
    #[error("{0}")]
    Remote(String),
}

/// A source could not answer for a session: the gate fails closed.
#[derive(Debug, Clone, Error)]
pub enum SourceError {
    /// The source did not answer (a remote source that is down or too slow).
    #[error("session source unavailable: {0}")]
    Unavailable(String),
}

/// A source's answer for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The session may see gated pages, as this principal.
    Allowed(Principal),
    /// The session is unknown or no longer valid.
    Denied,
}

/// Who an allowed request acts for: what it is logged as, and which videos it may watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    // The session id's SHA-256, never the id itself.
    session: [u8; 32],
    entitlements: Entitlements,
}

/// Which videos a principal may watch: values of the embed pattern's
/// entitlement placeholder (`{share}` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entitlements {
    /// Every video.
    All,
    /// Only these values, sorted and without repeats; empty for none.
    Only(Arc<[Box<str>]>),
}

impl Entitlements {
    /// Only the given values.
    pub fn only<S: Into<Box<str>>>(values: impl IntoIterator<Item = S>) -> Entitlements {
        let mut values: Vec<Box<str>> = values.into_iter().map(Into::into).collect();
        values.sort_unstable();
        values.dedup();
        Entitlements::Only(values.into())
    }

    /// Whether the video whose placeholder value is `value` may be watched.
    pub fn allows(&self, value: &str) -> bool {
        match self {
            Entitlements::All => true,
            Entitlements::Only(values) => values.binary_search_by(|v| (**v).cmp(value)).is_ok(),
        }
    }

    /// True when every video may be watched.
    pub fn is_all(&self) -> bool {
        matches!(self, Entitlements::All)
    }
}

impl Principal {
    /// The principal of the session `key`, entitled to every video.
    pub fn of(key: &SessionKey<'_>) -> Principal {
        Principal::entitled(key, Entitlements::All)
    }

    /// The principal of the session `key`, entitled to `entitlements`.
    pub fn entitled(key: &SessionKey<'_>, entitlements: Entitlements) -> Principal {
        Principal {
            session: key.digest,
            entitlements,
        }
    }

    /// The principal of tokens minted by hand (`embedgate mint`), for no visitor.
    pub fn operator() -> Principal {
        Principal {
            session: [0; 32],
            entitlements: Entitlements::All,
        }
    }

    /// Which videos this principal may watch.
    pub fn entitlements(&self) -> &Entitlements {
        &self.entitlements
    }

    /// The short hash that names this visitor in logs.
    pub fn tag(&self) -> SessionTag {
        SessionTag::of(&self.session)
    }

    /// The SHA-256 of the session id: what tokens and caches key on, never the id.
    pub fn session_digest(&self) -> &[u8; 32] {
        &self.session
    }
}

/// Answers whether a session may see gated pages, and which videos.
pub trait SessionSource {
    /// Looks the session up for `visit`. An error means the source could not
    /// answer, never "denied".
    fn check(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> impl Future<Output = Result<Verdict, SourceError>> + Send;
}

/// A presented session id with its digest, computed once per request.
pub struct SessionKey<'a> {
    cookie: &'a str,
    id: &'a str,
    digest: [u8; 32],
}

impl<'a> SessionKey<'a> {
    /// Hashes `id` for lookup.
    pub fn new(id: &'a str) -> Self {
        SessionKey::sent_as("", id)
    }

    /// The session `id` as sent in the cookie called `cookie`.
    pub fn sent_as(cookie: &'a str, id: &'a str) -> Self {
        SessionKey {
            cookie,
            id,
            digest: Sha256::digest(id.as_bytes()).into(),
        }
    }

    /// The name of the cookie the id came in ("" when not from a cookie).
    pub fn cookie(&self) -> &'a str {
        self.cookie
    }

    /// The id as the browser sent it.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The id's SHA-256: what sessions are cached and looked up by.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// A short, non-reversible tag for logs.
    pub fn tag(&self) -> SessionTag {
        SessionTag::of(&self.digest)
    }
}

impl fmt::Debug for SessionKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.tag())
    }
}

/// First four bytes of a session id's SHA-256: enough to follow one visitor through the logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionTag([u8; 4]);

impl SessionTag {
    fn of(digest: &[u8; 32]) -> SessionTag {
        SessionTag([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 8];
        hex::encode_to_slice(self.0, &mut hex).expect("8 hex digits for 4 bytes");
        f.write_str(std::str::from_utf8(&hex).expect("hex is ascii"))
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_tag_reads_as_the_digests_first_four_bytes_in_lower_case_hex() {
        let mut digest = [0xffu8; 32];
        digest[..4].copy_from_slice(&[0x0a, 0xbc, 0x00, 0xf1]);
        let tag = SessionTag::of(&digest);
        assert_eq!(tag.to_string(), "0abc00f1");
        assert_eq!(format!("{tag:?}"), "0abc00f1");
    }

    #[test]
    fn entitlements_allow_only_their_values() {
        let only = Entitlements::only(["b", "a", "b"]);
        assert!(only.allows("a") && only.allows("b"));
        assert!(!only.allows("c") && !only.allows(""));
        assert!(!Entitlements::only(Vec::<String>::new()).allows("a"));
        assert!(Entitlements::All.allows("anything"));
    }
}
