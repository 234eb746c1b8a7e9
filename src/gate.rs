//! Route match and session check: is this request passed through, let in, or turned away?
//!
//! Routes match on a normalised path (percent-decoded, `//` collapsed, dot
//! segments resolved) so that `/public/../videos/x` or `/vid%65os/x` is
//! judged as the CMS will see it, while the request is forwarded as sent.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::COOKIE;
use http::HeaderMap;
use thiserror::Error;

use crate::allowlist::{AllowlistError, SessionKey, SessionTag};
use crate::config::Config;

/// Routes ordered so that the longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct RouteTable {
    // Sorted by descending prefix length.
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    prefix: Arc<str>,
    gated: bool,
}

/// A route prefix that cannot be used.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct RouteError {
    /// Index of the offending `[[route]]`.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// The route a path fell under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matching prefix, or `None` when no route matched (then the path is gated).
    pub prefix: Option<Arc<str>>,
    /// Whether the session must be checked.
    pub gated: bool,
}

impl RouteMatch {
    /// Label for logs: the prefix, or `-` for no route.
    pub fn label(&self) -> &str {
        self.prefix.as_deref().unwrap_or("-")
    }
}

/// A request path the gateway refuses to judge (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// `..` would climb above the root.
    #[error("path climbs above the root")]
    AboveRoot,
    /// A backslash or NUL, raw or percent-encoded: servers disagree on what they mean.
    #[error("path holds a backslash or NUL")]
    ForbiddenByte,
    /// A `%` not followed by two hex digits.
    #[error("path has a bad percent-escape")]
    BadEscape,
}

impl RouteTable {
    /// Compiles `(prefix, gated)` pairs in config order.
    pub fn new(routes: Vec<(String, bool)>) -> Result<RouteTable, RouteError> {
        let mut compiled: Vec<Route> = Vec::with_capacity(routes.len());
        for (index, (prefix, gated)) in routes.into_iter().enumerate() {
            let fail = |message: String| RouteError { index, message };
            if !prefix.starts_with('/') {
                return Err(fail(format!("{prefix:?} must start with '/'")));
            }
            let normal =
                matches!(normalize(&prefix), Ok(norm) if norm.as_ref() == prefix.as_bytes());
            if !normal {
                let why = "is not in normal form (no %-escapes, '//', '.' or '..' segments)";
                return Err(fail(format!("{prefix:?} {why}")));
            }
            if compiled.iter().any(|r| *r.prefix == *prefix) {
                return Err(fail(format!("{prefix:?} is listed twice")));
            }
            compiled.push(Route {
                prefix: prefix.into(),
                gated,
            });
        }
        compiled.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(RouteTable { routes: compiled })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when there are no routes (then every path is gated).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the route for a request path; a path no route matches is gated.
    pub fn lookup(&self, path: &str) -> Result<RouteMatch, PathError> {
        let normalized = normalize(path)?;
        let found = self
            .routes
            .iter()
            .find(|r| normalized.starts_with(r.prefix.as_bytes()));
        Ok(match found {
            Some(route) => RouteMatch {
                prefix: Some(route.prefix.clone()),
                gated: route.gated,
            },
            None => RouteMatch {
                prefix: None,
                gated: true,
            },
        })
    }
}

/// Normalises a request path for matching; borrows when nothing needs changing.
pub fn normalize(path: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = bytes.windows(2).any(|w| w == b"//" || w == b"/.")
        || bytes.iter().any(|&b| b == b'%' || b == b'\\' || b == 0);
    if !needs_work {
        return Ok(Cow::Borrowed(bytes));
    }
    let decoded = percent_decode(bytes)?;
    if decoded.iter().any(|&b| b == b'\\' || b == 0) {
        return Err(PathError::ForbiddenByte);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        // Path parameters (`..;x`) must not hide a dot segment from us.
        let bare = segment.split(|&b| b == b';').next().unwrap_or_default();
        match bare {
            b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ if segment.is_empty() => {}
            _ => segments.push(segment),
        }
    }
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    let mut out = Vec::with_capacity(decoded.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if trailing || segments.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// What the cookie header says about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CookieError {
    /// A `Cookie` header that is not visible ASCII, or a session value with bytes a cookie may not hold.
    #[error("malformed cookie header")]
    Malformed,
    /// The session cookie appears more than once with different values.
    #[error("session cookie sent twice with different values")]
    Ambiguous,
}

/// True for bytes allowed in a cookie name (an RFC 9110 token).
pub fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True for bytes allowed in a cookie value (RFC 6265 cookie-octet).
pub fn is_cookie_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Finds the value of cookie `name` across all `Cookie` headers (HTTP/2 may split them).
pub fn session_cookie<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, CookieError> {
    let mut found: Option<&str> = None;
    for header in headers.get_all(COOKIE) {
        let text = header.to_str().map_err(|_| CookieError::Malformed)?;
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim_matches(|c| c == ' ' || c == '\t').split_once('=')
            else {
                continue;
            };
            if key != name {
                continue;
            }
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if value.is_empty() || !value.bytes().all(is_cookie_value_byte) {
                return Err(CookieError::Malformed);
            }
            match found {
                Some(previous) if previous != value => return Err(CookieError::Ambiguous),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

/// The gate's answer for a request on a gated route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The session is on the allowlist.
    Allowed(SessionTag),
    /// The visitor is turned away with 403.
    Denied(DenyReason),
}

/// Why a visitor was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No session cookie.
    NoCookie,
    /// The cookie header could not be read.
    BadCookie(CookieError),
    /// The session id is not on the allowlist.
    UnknownSession(SessionTag),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoCookie => f.write_str("no session cookie"),
            DenyReason::BadCookie(err) => write!(f, "{err}"),
            DenyReason::UnknownSession(_) => f.write_str("session not on the allowlist"),
        }
    }
}

/// Checks the session of a request on a gated route.
pub async fn admit(config: &Config, headers: &HeaderMap) -> Result<Admission, AllowlistError> {
    let id = match session_cookie(headers, &config.session.cookie) {
        Ok(Some(id)) => id,
        Ok(None) => return Ok(Admission::Denied(DenyReason::NoCookie)),
        Err(err) => return Ok(Admission::Denied(DenyReason::BadCookie(err))),
    };
    let key = SessionKey::new(id);
    Ok(if config.allowlist.contains(&key).await? {
        Admission::Allowed(key.tag())
    } else {
        Admission::Denied(DenyReason::UnknownSession(key.tag()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn table() -> RouteTable {
        RouteTable::new(vec![
            ("/videos/".into(), true),
            ("/".into(), false),
            ("/videos/free/".into(), false),
        ])
        .unwrap()
    }

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn longest_prefix_wins_whatever_the_config_order() {
        let t = table();
        assert!(t.lookup("/videos/a").unwrap().gated);
        assert!(!t.lookup("/videos/free/a").unwrap().gated);
        assert!(!t.lookup("/about").unwrap().gated);
        assert_eq!(t.lookup("/videos/free/x").unwrap().label(), "/videos/free/");
    }

    #[test]
    fn a_path_no_route_matches_is_gated() {
        let t = RouteTable::new(vec![("/public/".into(), false)]).unwrap();
        let m = t.lookup("/other").unwrap();
        assert!(m.gated);
        assert_eq!(m.label(), "-");
    }

    #[test]
    fn tricks_that_reach_a_gated_path_are_still_gated() {
        let t = table();
        for path in [
            "//videos/a",
            "/public/../videos/a",
            "/vid%65os/a",
            "/videos%2Fa",
            "/./videos/a",
            "/x/..;/videos/a",
            "/videos/free/../a",
        ] {
            assert!(t.lookup(path).unwrap().gated, "{path} must be gated");
        }
    }

    #[test]
    fn normalisation_resolves_dots_and_keeps_trailing_slash() {
        assert_eq!(norm("/a/./b/../c/").unwrap(), "/a/c/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(norm("/a%5cb").unwrap_err(), PathError::ForbiddenByte);
        assert_eq!(norm("/a%zz").unwrap_err(), PathError::BadEscape);
        assert_eq!(norm("*").unwrap_err(), PathError::NotAbsolute);
        assert!(matches!(
            normalize("/plain/path").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn route_prefixes_must_be_normal_and_unique() {
        assert!(RouteTable::new(vec![("videos/".into(), true)]).is_err());
        assert!(RouteTable::new(vec![("/a/../b".into(), true)]).is_err());
        let err = RouteTable::new(vec![("/a".into(), true), ("/a".into(), false)]).unwrap_err();
        assert_eq!(err.index, 1);
    }

    fn cookies(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_session_cookie_among_others_and_across_headers() {
        let h = cookies(&[b"a=1; theme=dark", b"sessionid=abc123; b=2"]);
        assert_eq!(session_cookie(&h, "sessionid"), Ok(Some("abc123")));
        assert_eq!(session_cookie(&h, "missing"), Ok(None));
        let quoted = cookies(&[b"sessionid=\"abc\""]);
        assert_eq!(session_cookie(&quoted, "sessionid"), Ok(Some("abc")));
    }

    #[test]
    fn rejects_malformed_and_ambiguous_session_cookies() {
        let bad = cookies(&[b"sessionid=a\xffb"]);
        assert_eq!(
            session_cookie(&bad, "sessionid"),
            Err(CookieError::Malformed)
        );
        let comma = cookies(&[b"sessionid=a,b"]);
        assert_eq!(
            session_cookie(&comma, "sessionid"),
            Err(CookieError::Malformed)
        );
        let empty = cookies(&[b"sessionid="]);
        assert_eq!(
            session_cookie(&empty, "sessionid"),
            Err(CookieError::Malformed)
        );
        let twice = cookies(&[b"sessionid=a; sessionid=b"]);
        assert_eq!(
            session_cookie(&twice, "sessionid"),
            Err(CookieError::Ambiguous)
        );
        let same = cookies(&[b"sessionid=a", b"sessionid=a"]);
        assert_eq!(session_cookie(&same, "sessionid"), Ok(Some("a")));
    }
}
