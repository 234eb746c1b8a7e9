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
    // For the lenient reading of a path (see `lookup`).
    prefix_lower: Box<[u8]>,
    gated: bool,
}

impl Route {
    // A "/videos/" route also owns "/videos", which servers redirect or serve alike.
    fn owns(path: &[u8], prefix: &[u8]) -> bool {
        path.starts_with(prefix)
            || prefix
                .strip_suffix(b"/")
                .is_some_and(|dir| !dir.is_empty() && path == dir)
    }
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
    /// A backslash, NUL or encoded slash: servers disagree on what they mean.
    #[error("path holds a backslash, NUL or encoded slash")]
    Ambiguous,
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
                let why = "is not in normal form (no %-escapes, ';', '//', '.' or '..' segments)";
                return Err(fail(format!("{prefix:?} {why}")));
            }
            if compiled.iter().any(|r| *r.prefix == *prefix) {
                return Err(fail(format!("{prefix:?} is listed twice")));
            }
            compiled.push(Route {
                prefix_lower: prefix.to_ascii_lowercase().into_bytes().into(),
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
    ///
    /// The path is read the strict way (decoded, `;` parameters and dot
    /// segments resolved) and, where it differs, the lenient way some servers
    /// read it (ignoring case and trailing dots). If either reading is gated,
    /// the path is gated.
    pub fn lookup(&self, path: &str) -> Result<RouteMatch, PathError> {
        let strict = normalize(path)?;
        let found = self.find(&strict, |r| r.prefix.as_bytes());
        if found.gated {
            return Ok(found);
        }
        if let Some(lenient) = lenient_reading(&strict) {
            let loose = self.find(&lenient, |r| &r.prefix_lower[..]);
            if loose.gated {
                return Ok(loose);
            }
        }
        Ok(found)
    }

    fn find(&self, path: &[u8], prefix: impl Fn(&Route) -> &[u8]) -> RouteMatch {
        match self.routes.iter().find(|r| Route::owns(path, prefix(r))) {
            Some(route) => RouteMatch {
                prefix: Some(route.prefix.clone()),
                gated: route.gated,
            },
            None => RouteMatch {
                prefix: None,
                gated: true,
            },
        }
    }
}

/// Normalises a request path for matching; borrows when nothing needs changing.
///
/// Percent-escapes are decoded, `;` parameters dropped from each segment,
/// `//` collapsed and `.`/`..` resolved. Encoded slashes, backslashes and NUL
/// are refused: servers disagree on them, so no single reading is safe.
pub fn normalize(path: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = bytes.windows(2).any(|w| w == b"//" || w == b"/.")
        || bytes.iter().any(|&b| matches!(b, b'%' | b'\\' | b';' | 0));
    if !needs_work {
        return Ok(Cow::Borrowed(bytes));
    }
    let decoded = percent_decode(bytes)?;
    if decoded.iter().any(|&b| b == b'\\' || b == 0) {
        return Err(PathError::Ambiguous);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        let bare = segment.split(|&b| b == b';').next().unwrap_or_default();
        trailing = matches!(bare, b"" | b"." | b"..");
        match bare {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => segments.push(bare),
        }
    }
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

/// The path as a server that ignores case and trailing dots would read it, if that differs.
fn lenient_reading(strict: &[u8]) -> Option<Vec<u8>> {
    let loose = strict.iter().any(u8::is_ascii_uppercase)
        || strict
            .split(|&b| b == b'/')
            .any(|segment| segment.ends_with(b".") || segment.ends_with(b" "));
    if !loose {
        return None;
    }
    let mut out = Vec::with_capacity(strict.len());
    for (i, segment) in strict.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        let kept = segment.len()
            - segment
                .iter()
                .rev()
                .take_while(|&&b| b == b'.' || b == b' ')
                .count();
        // A segment of only dots is a dot segment, already resolved; keep it as it is.
        let kept = if kept == 0 { segment.len() } else { kept };
        out.extend(segment[..kept].iter().map(u8::to_ascii_lowercase));
    }
    Some(out)
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    let byte = (hi * 16 + lo) as u8;
                    if byte == b'/' {
                        return Err(PathError::Ambiguous);
                    }
                    out.push(byte);
                }
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
    /// The session cookie's value holds bytes a cookie may not hold, or is empty.
    #[error("malformed session cookie")]
    Malformed,
    /// The session cookie is sent with more distinct values than a browser would send.
    #[error("session cookie sent with too many values")]
    TooMany,
}

/// At most this many distinct values of the session cookie are looked up.
///
/// Browsers send one per matching domain and path (a stale parent-domain
/// cookie beside the current one, say); more than this is not a browser.
pub const MAX_SESSION_VALUES: usize = 4;

/// The distinct values of the session cookie in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionValues<'h> {
    values: [&'h str; MAX_SESSION_VALUES],
    len: usize,
}

impl<'h> SessionValues<'h> {
    /// The values, in the order they were sent.
    pub fn as_slice(&self) -> &[&'h str] {
        &self.values[..self.len]
    }
}

/// True for bytes allowed in a cookie name (an RFC 9110 token).
pub fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True for bytes allowed in a cookie value (RFC 6265 cookie-octet).
pub fn is_cookie_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Finds the values of cookie `name` across all `Cookie` headers (HTTP/2 may split them).
///
/// Only the session cookie's own value is checked: other cookies may hold
/// bytes we do not care about, and they go to the CMS as they are.
pub fn session_cookies<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<SessionValues<'h>, CookieError> {
    let mut found = SessionValues::default();
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if &pair[..eq] != name.as_bytes() {
                continue;
            }
            let raw = &pair[eq + 1..];
            let value = raw
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(raw);
            if value.is_empty() || !value.iter().all(|&b| is_cookie_value_byte(b)) {
                return Err(CookieError::Malformed);
            }
            // Cookie-octets are ASCII, so this cannot fail.
            let value = std::str::from_utf8(value).map_err(|_| CookieError::Malformed)?;
            if found.as_slice().contains(&value) {
                continue;
            }
            if found.len == MAX_SESSION_VALUES {
                return Err(CookieError::TooMany);
            }
            found.values[found.len] = value;
            found.len += 1;
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

impl DenyReason {
    /// Text for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::NoCookie => "no session cookie",
            DenyReason::BadCookie(CookieError::Malformed) => "malformed session cookie",
            DenyReason::BadCookie(CookieError::TooMany) => {
                "session cookie sent with too many values"
            }
            DenyReason::UnknownSession(_) => "session not on the allowlist",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks the session of a request on a gated route: allowed if any value
/// of the session cookie is on the allowlist.
pub async fn admit(config: &Config, headers: &HeaderMap) -> Result<Admission, AllowlistError> {
    let values = match session_cookies(headers, &config.session.cookie) {
        Ok(values) => values,
        Err(err) => return Ok(Admission::Denied(DenyReason::BadCookie(err))),
    };
    let mut first_unknown = None;
    for id in values.as_slice() {
        let key = SessionKey::new(id);
        if config.allowlist.contains(&key).await? {
            return Ok(Admission::Allowed(key.tag()));
        }
        first_unknown.get_or_insert(key.tag());
    }
    Ok(Admission::Denied(match first_unknown {
        Some(tag) => DenyReason::UnknownSession(tag),
        None => DenyReason::NoCookie,
    }))
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
            "/./videos/a",
            "/x/..;/videos/a",
            "/videos;/a",
            "/videos;jsessionid=1/a",
            "/videos/a;x=1",
            "/Videos/a",
            "/VIDEOS/FREE/../a",
            "/videos./a",
            "/videos",
            "/videos;x",
        ] {
            assert!(t.lookup(path).unwrap().gated, "{path} must be gated");
        }
        assert!(!t.lookup("/videos/free/x").unwrap().gated);
        assert!(
            !t.lookup("/Videos/Free/x").unwrap().gated,
            "both readings say ungated"
        );
        assert!(!t.lookup("/about.").unwrap().gated);
    }

    #[test]
    fn a_lenient_reading_never_opens_a_strictly_gated_path() {
        // "/Public/" gated, "/public/" open: the strict reading of /Public/x is gated.
        let t =
            RouteTable::new(vec![("/public/".into(), false), ("/Public/".into(), true)]).unwrap();
        assert!(t.lookup("/Public/x").unwrap().gated);
        assert!(t.lookup("/PUBLIC/x").unwrap().gated);
        assert!(!t.lookup("/public/x").unwrap().gated);
    }

    #[test]
    fn normalisation_resolves_dots_and_keeps_trailing_slash() {
        assert_eq!(norm("/a/./b/../c/").unwrap(), "/a/c/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a;p=1/b;q/").unwrap(), "/a/b/");
        assert_eq!(norm("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(norm("/a%5cb").unwrap_err(), PathError::Ambiguous);
        assert_eq!(norm("/a%2Fb").unwrap_err(), PathError::Ambiguous);
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

    fn values(h: &HeaderMap) -> Result<Vec<&str>, CookieError> {
        session_cookies(h, "sessionid").map(|v| v.as_slice().to_vec())
    }

    #[test]
    fn finds_the_session_cookie_among_others_and_across_headers() {
        let h = cookies(&[b"a=1; theme=dark", b"sessionid=abc123; b=2"]);
        assert_eq!(values(&h), Ok(vec!["abc123"]));
        assert_eq!(
            session_cookies(&h, "missing").map(|v| v.as_slice().len()),
            Ok(0)
        );
        let quoted = cookies(&[b"sessionid=\"abc\""]);
        assert_eq!(values(&quoted), Ok(vec!["abc"]));
    }

    #[test]
    fn other_cookies_may_hold_any_bytes() {
        let h = cookies(&[b"city=Z\xc3\xbcrich; sessionid=abc; x=a b,c"]);
        assert_eq!(values(&h), Ok(vec!["abc"]));
    }

    #[test]
    fn keeps_each_distinct_value_of_a_repeated_session_cookie() {
        let twice = cookies(&[b"sessionid=stale; sessionid=fresh", b"sessionid=stale"]);
        assert_eq!(values(&twice), Ok(vec!["stale", "fresh"]));
        let many = cookies(&[b"sessionid=a; sessionid=b; sessionid=c; sessionid=d; sessionid=e"]);
        assert_eq!(values(&many), Err(CookieError::TooMany));
    }

    #[test]
    fn rejects_malformed_session_values() {
        for bad in [
            &b"sessionid=a\xffb"[..],
            b"sessionid=a,b",
            b"sessionid=",
            b"sessionid=a b",
        ] {
            assert_eq!(
                values(&cookies(&[bad])),
                Err(CookieError::Malformed),
                "{bad:?}"
            );
        }
    }
}
