//! Finding the session cookie in a request.

use http::header::COOKIE;
use http::HeaderMap;
use thiserror::Error;

use crate::syntax::is_cookie_value_byte;

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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
