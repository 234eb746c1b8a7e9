//! The `Cookie` header on its way to the CMS: joined into one for HTTP/1.1,
//! and holding only the session cookie the gate admitted.

use http::header::{self, HeaderValue};
use http::HeaderMap;

/// Joins several `Cookie` headers into one, as RFC 9113 §8.2.3 asks when an
/// HTTP/2 request goes on over HTTP/1.1 (many HTTP/1.1 servers read only one).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Leaves, of the session cookies in the (joined) `Cookie` header, only the
/// first one whose value the gate admitted (`admitted`: its SHA-256), so
/// the CMS acts for the visitor who was let in and for no one else. The
/// session cookie is named as configured (a trailing `*` for a prefix).
///
/// A pair whose name a lenient server reads as the session cookie's (see
/// [`reads_as`]) goes too, as does a pair that holds one after a comma
/// (`a=1, sessionid=x`, which old servers split): the gate read only the
/// exact name, so the CMS must not be handed another session beside it.
/// The other cookies go on as they are. Costs nothing when there is one
/// session cookie.
pub fn keep_admitted_session(headers: &mut HeaderMap, cookie: &str, admitted: &[u8; 32]) {
    use sha2::{Digest, Sha256};
    let (name, prefix) = match cookie.strip_suffix('*') {
        Some(prefix) => (prefix.as_bytes(), true),
        None => (cookie.as_bytes(), false),
    };
    let Some(value) = headers.get(header::COOKIE) else {
        return;
    };
    let pairs = || {
        value
            .as_bytes()
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
    };
    let names_session = |pair: &[u8]| {
        pair.split(|&b| b == b',').any(|piece| {
            piece
                .iter()
                .position(|&b| b == b'=')
                .is_some_and(|eq| reads_as(&piece[..eq], name, prefix))
        })
    };
    if pairs().filter(|pair| names_session(pair)).count() < 2 {
        return;
    }
    let mut kept = false;
    let mut joined = Vec::with_capacity(value.len());
    for pair in pairs() {
        if names_session(pair) {
            let admitted_here = session_value(pair, name, prefix)
                .is_some_and(|session| Sha256::digest(session).as_slice() == admitted);
            if kept || !admitted_here {
                continue;
            }
            kept = true;
        }
        if pair.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(pair);
    }
    match HeaderValue::from_bytes(&joined) {
        Ok(value) if !joined.is_empty() => {
            headers.insert(header::COOKIE, value);
        }
        _ => {
            headers.remove(header::COOKIE);
        }
    }
}

/// The value of a `name=value` cookie pair if it is the session cookie
/// (`name`, or any name it starts with for a `prefix`), quotes removed.
fn session_value<'p>(pair: &'p [u8], name: &[u8], prefix: bool) -> Option<&'p [u8]> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    let sent = &pair[..eq];
    let matches = if prefix {
        sent.starts_with(name)
    } else {
        sent == name
    };
    matches.then(|| {
        let raw = &pair[eq + 1..];
        raw.strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(raw)
    })
}

/// Whether a cookie sent as `sent` is `name` (or starts with it, for a
/// `prefix`) as some server reads cookie names: spaces around it trimmed,
/// %-escapes decoded (PHP), ASCII case ignored (ASP.NET), `.` and space
/// read as `_` (PHP), and a `[` never closed read as `_` too, with each
/// `[` after it (PHP: `wordpress[logged_in_x` is `wordpress_logged_in_x`).
/// A `[` closed later makes an array in PHP, not this name.
fn reads_as(sent: &[u8], name: &[u8], prefix: bool) -> bool {
    // The name as configured, the usual case, needs no second reading.
    if sent == name || (prefix && sent.starts_with(name)) {
        return true;
    }
    let mut sent = lenient_name(sent.trim_ascii());
    let mut name = lenient_name(name);
    if prefix {
        name.all(|byte| sent.next() == Some(byte))
    } else {
        sent.eq(name)
    }
}

// A cookie name's bytes as `reads_as` compares them, without allocating.
fn lenient_name(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let decoded = move || {
        let hex = move |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        let mut at = 0;
        std::iter::from_fn(move || {
            let mut byte = *bytes.get(at)?;
            at += 1;
            if byte == b'%' {
                if let (Some(high), Some(low)) = (hex(at), hex(at + 1)) {
                    byte = u8::try_from(high * 16 + low).unwrap_or(b'%');
                    at += 2;
                }
            }
            Some(byte)
        })
    };
    // PHP drops a name that starts with `[`: no reading to give it.
    let unclosed = {
        let mut name = decoded();
        name.position(|b| b == b'[').is_some_and(|open| open > 0) && !name.any(|b| b == b']')
    };
    decoded().map(move |byte| match byte {
        b'.' | b' ' => b'_',
        b'[' if unclosed => b'_',
        other => other.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

    #[test]
    fn split_cookie_headers_are_joined_for_http1() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("cookie", "sessionid=x"),
            ("cookie", "b=2"),
        ]);
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; sessionid=x; b=2"]);
        let mut one = map(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1");
    }

    #[test]
    fn only_the_admitted_session_cookie_goes_on() {
        use sha2::{Digest, Sha256};
        let admitted: [u8; 32] = Sha256::digest(b"good").into();
        let mut h = map(&[(
            "cookie",
            "sessionid=stale; theme=dark; sessionid=\"good\"; sessionid=good; b=2",
        )]);
        keep_admitted_session(&mut h, "sessionid", &admitted);
        assert_eq!(h["cookie"], "theme=dark; sessionid=\"good\"; b=2");

        let mut wordpress = map(&[(
            "cookie",
            "wordpress_logged_in_old=x; wordpress_logged_in_new=good; wordpress_test_cookie=1",
        )]);
        keep_admitted_session(&mut wordpress, "wordpress_logged_in_*", &admitted);
        assert_eq!(
            wordpress["cookie"],
            "wordpress_logged_in_new=good; wordpress_test_cookie=1"
        );

        // One session cookie: untouched, byte for byte.
        let mut one = map(&[("cookie", "a=1;sessionid=good ;b")]);
        keep_admitted_session(&mut one, "sessionid", &admitted);
        assert_eq!(one["cookie"], "a=1;sessionid=good ;b");
    }

    #[test]
    fn names_a_lenient_server_reads_as_the_session_cookie_do_not_go_on() {
        use sha2::{Digest, Sha256};
        let admitted: [u8; 32] = Sha256::digest(b"good").into();
        for variant in [
            "sessionid =other",
            " sessionid=other",
            "SESSIONID=other",
            "SessionId=good",
            "session%69d=other",
            "session%49D=other",
            "a=1, sessionid=other",
        ] {
            let mut h = map(&[(
                "cookie",
                &format!("theme=dark; {variant}; sessionid=good; b=2"),
            )]);
            keep_admitted_session(&mut h, "sessionid", &admitted);
            assert_eq!(h["cookie"], "theme=dark; sessionid=good; b=2", "{variant}");
        }
        // PHP reads "." and " " in a name as "_".
        let mut wordpress = map(&[(
            "cookie",
            "wordpress.logged.in_x=other; wordpress_logged_in_x=good; wordpress_test_cookie=1",
        )]);
        keep_admitted_session(&mut wordpress, "wordpress_logged_in_*", &admitted);
        assert_eq!(
            wordpress["cookie"],
            "wordpress_logged_in_x=good; wordpress_test_cookie=1"
        );
        // PHP reads a "[" never closed (and each "[" after it) as "_".
        for variant in [
            "wordpress[logged_in_x=other",
            "wordpress%5Blogged_in_x=other",
            "wordpress[logged[in_x=other",
            "wordpress_logged_in[x=other",
            "Wordpress[Logged.In_x=other",
        ] {
            let mut h = map(&[(
                "cookie",
                &format!("{variant}; wordpress_logged_in_x=good; wordpress_test_cookie=1"),
            )]);
            keep_admitted_session(&mut h, "wordpress_logged_in_*", &admitted);
            assert_eq!(
                h["cookie"], "wordpress_logged_in_x=good; wordpress_test_cookie=1",
                "{variant}"
            );
        }
        // Closed, a "[" makes an array of another name; a name that starts
        // with one PHP drops.
        let sent = "wordpress[logged_in_x]=y; [wordpress_logged_in_x=z; wordpress_logged_in_x=good";
        let mut h = map(&[("cookie", sent)]);
        keep_admitted_session(&mut h, "wordpress_logged_in_*", &admitted);
        assert_eq!(h["cookie"], sent);
        // Names that only look alike stay.
        let mut h = map(&[(
            "cookie",
            "sessionid2=x; my_sessionid=y; SESSIONID=z; sessionid=good",
        )]);
        keep_admitted_session(&mut h, "sessionid", &admitted);
        assert_eq!(h["cookie"], "sessionid2=x; my_sessionid=y; sessionid=good");
    }
}
