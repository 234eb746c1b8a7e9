//! Finding the session cookie in a request, and seeing a response clear it.

use std::time::SystemTime;

use http::header::{COOKIE, SET_COOKIE};
use http::HeaderMap;
use thiserror::Error;

use crate::syntax::is_cookie_value_byte;

/// The session cookie's name: exact, or, written with a trailing `*`, any
/// name that starts with what comes before it (WordPress names its cookie
/// `wordpress_logged_in_<hash of the site URL>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieName {
    name: Box<str>,
    prefix: bool,
}

impl CookieName {
    /// The name as written in the config.
    pub fn new(written: &str) -> CookieName {
        match written.strip_suffix('*') {
            Some(prefix) => CookieName {
                name: prefix.into(),
                prefix: true,
            },
            None => CookieName {
                name: written.into(),
                prefix: false,
            },
        }
    }

    /// Whether a cookie called `name` is the session cookie.
    pub fn matches(&self, name: &[u8]) -> bool {
        if self.prefix {
            name.starts_with(self.name.as_bytes())
        } else {
            name == self.name.as_bytes()
        }
    }
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

/// One value of the session cookie, with the name it was sent under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCookie<'h> {
    /// The cookie's name (with a prefix name, the full name sent).
    pub name: &'h str,
    /// Its value, as sent.
    pub value: &'h str,
}

/// The distinct session cookies of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionValues<'h> {
    values: [SessionCookie<'h>; MAX_SESSION_VALUES],
    len: usize,
}

impl<'h> SessionValues<'h> {
    /// The cookies, in the order they were sent.
    pub fn as_slice(&self) -> &[SessionCookie<'h>] {
        &self.values[..self.len]
    }
}

/// Calls `each` with the (name, value) of every cookie called `name`, across
/// all `Cookie` headers (HTTP/2 may split them), quotes around a value
/// removed, until it returns false.
fn each_matching<'h>(
    headers: &'h HeaderMap,
    name: &CookieName,
    mut each: impl FnMut(&'h [u8], &'h [u8]) -> bool,
) {
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let cookie = &pair[..eq];
            if !name.matches(cookie) {
                continue;
            }
            let raw = &pair[eq + 1..];
            let value = raw
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(raw);
            if !each(cookie, value) {
                return;
            }
        }
    }
}

/// A well-formed session cookie value, as text.
fn readable<'h>(name: &'h [u8], value: &'h [u8]) -> Option<SessionCookie<'h>> {
    if value.is_empty() || !value.iter().all(|&b| is_cookie_value_byte(b)) {
        return None;
    }
    // Cookie-octets are ASCII; a name that is not UTF-8 is no name we gave.
    Some(SessionCookie {
        name: std::str::from_utf8(name).ok()?,
        value: std::str::from_utf8(value).ok()?,
    })
}

/// Finds the session cookies of a request.
///
/// Only the session cookie's own value is checked: other cookies may hold
/// bytes we do not care about, and they go to the CMS as they are.
pub fn session_cookies<'h>(
    headers: &'h HeaderMap,
    name: &CookieName,
) -> Result<SessionValues<'h>, CookieError> {
    let mut found = SessionValues::default();
    let mut error = None;
    each_matching(headers, name, |cookie, value| {
        let Some(cookie) = readable(cookie, value) else {
            error = Some(CookieError::Malformed);
            return false;
        };
        if found.as_slice().contains(&cookie) {
            return true;
        }
        if found.len == MAX_SESSION_VALUES {
            error = Some(CookieError::TooMany);
            return false;
        }
        found.values[found.len] = cookie;
        found.len += 1;
        true
    });
    match error {
        Some(error) => Err(error),
        None => Ok(found),
    }
}

/// Every readable value of the session cookie, however many or malformed the
/// others: what a logout must forget. At most `limit` of them.
pub fn every_session_value<'h>(
    headers: &'h HeaderMap,
    name: &CookieName,
    limit: usize,
) -> Vec<&'h str> {
    let mut values: Vec<&str> = Vec::new();
    if limit == 0 {
        return values;
    }
    each_matching(headers, name, |cookie, value| {
        if let Some(cookie) = readable(cookie, value) {
            if !values.contains(&cookie.value) {
                values.push(cookie.value);
            }
        }
        values.len() < limit
    });
    values
}

/// Whether a response clears the session cookie: a `Set-Cookie` for it that
/// is empty, or has `Max-Age` of zero or less, or an `Expires` already past
/// at `now`. That is how a CMS logs a visitor out.
pub fn clears_session(response: &HeaderMap, name: &CookieName, now: SystemTime) -> bool {
    response.get_all(SET_COOKIE).iter().any(|header| {
        let mut parts = header.as_bytes().split(|&b| b == b';');
        let Some((cookie, value)) = parts.next().and_then(|first| {
            let eq = first.iter().position(|&b| b == b'=')?;
            Some((first[..eq].trim_ascii(), first[eq + 1..].trim_ascii()))
        }) else {
            return false;
        };
        if !name.matches(cookie) {
            return false;
        }
        if value.is_empty() || value == b"\"\"" {
            return true;
        }
        parts.any(|attribute| {
            let attribute = attribute.trim_ascii();
            let (key, value) = match attribute.iter().position(|&b| b == b'=') {
                Some(eq) => (&attribute[..eq], attribute[eq + 1..].trim_ascii()),
                None => (attribute, &b""[..]),
            };
            if key.eq_ignore_ascii_case(b"max-age") {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|age| age <= 0)
            } else if key.eq_ignore_ascii_case(b"expires") {
                expired(value, now)
            } else {
                false
            }
        })
    })
}

/// Whether a cookie `Expires` date is at or before `now`. Accepts the
/// IMF-fixdate browsers expect and the `01-Jan-1970` form PHP writes.
fn expired(value: &[u8], now: SystemTime) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let normal = text.replace('-', " ");
    httpdate::parse_http_date(&normal)
        .or_else(|_| httpdate::parse_http_date(text))
        .is_ok_and(|at| at <= now)
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
        let name = CookieName::new("sessionid");
        session_cookies(h, &name).map(|v| v.as_slice().iter().map(|c| c.value).collect())
    }

    #[test]
    fn finds_the_session_cookie_among_others_and_across_headers() {
        let h = cookies(&[b"a=1; theme=dark", b"sessionid=abc123; b=2"]);
        assert_eq!(values(&h), Ok(vec!["abc123"]));
        assert_eq!(
            session_cookies(&h, &CookieName::new("missing")).map(|v| v.as_slice().len()),
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

    #[test]
    fn a_trailing_star_names_every_cookie_with_that_prefix() {
        let wordpress = CookieName::new("wordpress_logged_in_*");
        let h = cookies(&[b"wordpress_test_cookie=x; wordpress_logged_in_5f2e=alice%7C17%7Ctok"]);
        let found = session_cookies(&h, &wordpress).unwrap();
        assert_eq!(
            found.as_slice(),
            [SessionCookie {
                name: "wordpress_logged_in_5f2e",
                value: "alice%7C17%7Ctok"
            }],
            "compared as sent, percent-encoded, with the name it came under"
        );
        assert!(!CookieName::new("sessionid").matches(b"sessionid2"));
    }

    fn set_cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn sees_a_response_clear_the_session_cookie_the_ways_cmss_do() {
        let name = CookieName::new("sessionid");
        let now = SystemTime::now();
        for logout in [
            "sessionid=; Path=/",
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
            "sessionid=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0; path=/",
            "sessionid=x; Expires=Mon, 01 Jan 2001 00:00:00 GMT",
        ] {
            assert!(
                clears_session(&set_cookies(&["theme=dark", logout]), &name, now),
                "{logout}"
            );
        }
        for kept in [
            "sessionid=abc; Path=/; HttpOnly",
            "sessionid=abc; Max-Age=3600",
            "sessionid=abc; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
            "other=; Max-Age=0",
        ] {
            assert!(!clears_session(&set_cookies(&[kept]), &name, now), "{kept}");
        }
        let wordpress = CookieName::new("wordpress_logged_in_*");
        assert!(clears_session(
            &set_cookies(&["wordpress_logged_in_5f2e=+; expires=Thu, 01-Jan-1970 00:00:01 GMT"]),
            &wordpress,
            now
        ));
    }

    #[test]
    fn a_logout_finds_every_readable_value_however_many_or_malformed_the_others() {
        let name = CookieName::new("sessionid");
        let h = cookies(&[
            b"sessionid=a; sessionid=b,c; sessionid=d; sessionid=e; sessionid=f; sessionid=g",
        ]);
        assert!(session_cookies(&h, &name).is_err());
        assert_eq!(
            every_session_value(&h, &name, 16),
            ["a", "d", "e", "f", "g"]
        );
        assert_eq!(every_session_value(&h, &name, 2), ["a", "d"]);
    }
}
