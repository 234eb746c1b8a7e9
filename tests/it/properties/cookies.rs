//! Cookie reader: any header lines never panic, and the session values found are the documented rule's.

use super::*;

/// Bytes a header value may hold, some of them `;`, `=` and quotes.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => select(&b"sessionid=;= \"\t,abc"[..]),
            2 => 0x20u8..0x7f,
            1 => 0x80u8..=0xff,
            1 => any::<u8>(),
        ],
        0..64,
    )
}

/// Arbitrary `Cookie` and `Set-Cookie` lines, under any cookie name (exact
/// or prefix), never make the readers panic.
#[test]
fn cookie_readers_never_panic() {
    let names = prop_oneof![
        select(
            &[
                "sessionid",
                "wordpress_logged_in_*",
                "*",
                "",
                "a=b",
                "s\u{e9}ssion"
            ][..]
        )
        .prop_map(str::to_string),
        any::<String>(),
    ];
    check(
        "cookie_readers_never_panic",
        DEFAULT_COOKIE_CASES,
        (
            names,
            prop::collection::vec(header_bytes(), 0..4),
            prop::collection::vec(header_bytes(), 0..3),
            any::<u32>(),
            0usize..20,
        ),
        |(name, lines, set_lines, clock, limit)| {
            let name = CookieName::new(&name);
            let mut request = HeaderMap::new();
            for line in &lines {
                if let Ok(value) = HeaderValue::from_bytes(line) {
                    request.append(COOKIE, value);
                }
            }
            let mut response = HeaderMap::new();
            for line in &set_lines {
                if let Ok(value) = HeaderValue::from_bytes(line) {
                    response.append(SET_COOKIE, value);
                }
            }
            if let Ok(values) = session_cookies(&request, &name) {
                prop_assert!(values.as_slice().len() <= MAX_SESSION_VALUES);
            }
            let forgotten = every_session_value(&request, &name, limit.max(1));
            prop_assert!(forgotten.len() <= limit.max(1));
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(clock));
            let _ = clears_session(&response, &name, now);
            Ok(())
        },
    );
}

/// One cookie of a generated `Cookie` header.
#[derive(Debug, Clone)]
enum CookiePiece {
    /// The session cookie: name suffix (for a prefix name), value, quoted,
    /// and whether the value is well formed.
    Session {
        suffix: String,
        value: String,
        quoted: bool,
        valid: bool,
    },
    /// Another cookie, whose value may hold any byte but `;`.
    Other { name: &'static str, value: Vec<u8> },
    /// A piece without `=`, or an empty one.
    Junk(&'static str),
}

const OTHER_NAMES: &[&str] = &[
    "theme",
    "a",
    "sessionid2",
    "xsessionid",
    "SESSIONID",
    "session",
    "sessionid ",
    " sessionid_",
    "wordpress_logged_in",
    "wordpress_test_cookie",
    "_ga",
];

/// Cookie-octets (RFC 6265): what a session value may hold.
const COOKIE_OCTETS: &str = "[!#$%&'()*+./0-9:<=>?@A-Z\\[\\]^_`a-z{|}~-]";

/// Strings of `min..=max` cookie-octets.
fn octets(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{COOKIE_OCTETS}{{{min},{max}}}")).unwrap()
}

fn cookie_piece(prefix_name: bool) -> impl Strategy<Value = CookiePiece> {
    let suffix = if prefix_name {
        "[0-9a-f]{0,3}".boxed()
    } else {
        Just(String::new()).boxed()
    };
    let valid = (
        suffix.clone(),
        prop_oneof![
            octets(1, 10),
            // A few values, so that repeats are common.
            select(&["abc", "stale", "fresh", "a=b", "%7C"][..]).prop_map(str::to_string),
        ],
        any::<bool>(),
    )
        .prop_map(|(suffix, value, quoted)| CookiePiece::Session {
            suffix,
            value,
            quoted,
            valid: true,
        });
    let invalid = (
        suffix,
        octets(0, 4),
        select(&[" ", ",", "\"", "\\", "\u{e9}", "\t", "x\"", ""][..]),
        octets(0, 4),
        any::<bool>(),
    )
        .prop_map(|(suffix, head, bad, tail, quoted)| {
            // A bad byte inside (whitespace at either end is trimmed), or nothing at all.
            let value = if bad.is_empty() {
                String::new()
            } else {
                format!("a{head}{bad}{tail}z")
            };
            CookiePiece::Session {
                suffix,
                value,
                quoted,
                valid: false,
            }
        });
    let other = (
        select(OTHER_NAMES),
        prop::collection::vec(
            prop_oneof![4 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')],
            0..10,
        ),
    )
        .prop_map(|(name, mut value)| {
            value.retain(|&b| b != b';');
            CookiePiece::Other { name, value }
        });
    let junk = select(&["flag", "", " ", "sessionid", "=x", "=", "sessionid\t"][..])
        .prop_map(CookiePiece::Junk);
    prop_oneof![4 => valid, 1 => invalid, 3 => other, 1 => junk]
}

/// Header lines from pieces: each piece goes to one line, pieces joined by
/// `;` with random whitespace around them.
/// Also gives the pieces in the order they are sent: line by line.
fn cookie_lines(pieces: &[CookiePiece], layout: &[u8], base: &str) -> (Vec<Vec<u8>>, Vec<usize>) {
    let spaces: [&[u8]; 4] = [b" ", b"", b"  ", b"\t"];
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line_of = Vec::new();
    for (i, _) in pieces.iter().enumerate() {
        let l = layout[i % layout.len()];
        let line = (l % 3) as usize;
        line_of.push(line);
    }
    let mut sent: Vec<usize> = (0..pieces.len()).collect();
    sent.sort_by_key(|&i| line_of[i]);
    let line_count = line_of.iter().copied().max().map_or(1, |m| m + 1);
    lines.resize(line_count, Vec::new());
    for (i, piece) in pieces.iter().enumerate() {
        let l = layout[(i + 1) % layout.len()];
        let line = &mut lines[line_of[i]];
        if !line.is_empty() {
            line.extend_from_slice(spaces[(l >> 2) as usize % 4]);
            line.push(b';');
        }
        line.extend_from_slice(spaces[(l >> 4) as usize % 4]);
        match piece {
            CookiePiece::Session {
                suffix,
                value,
                quoted,
                ..
            } => {
                line.extend_from_slice(base.as_bytes());
                line.extend_from_slice(suffix.as_bytes());
                line.push(b'=');
                if *quoted {
                    line.push(b'"');
                }
                line.extend_from_slice(value.as_bytes());
                if *quoted {
                    line.push(b'"');
                }
            }
            CookiePiece::Other { name, value } => {
                line.extend_from_slice(name.as_bytes());
                line.push(b'=');
                line.extend_from_slice(value);
            }
            CookiePiece::Junk(text) => line.extend_from_slice(text.as_bytes()),
        }
        if l & 0x40 != 0 {
            line.extend_from_slice(spaces[(l >> 6) as usize % 4]);
        }
    }
    (lines, sent)
}

/// The module's rule: every session cookie in the order sent (across header
/// lines), quotes around a value removed, each distinct (name, value) once;
/// a malformed value is an error, and so is a fifth distinct value, whichever
/// comes first. A logout forgets every well-formed distinct value, at most
/// `limit`, however many or malformed the others.
#[test]
fn cookie_session_values_follow_the_documented_rule() {
    let strategy = any::<bool>().prop_flat_map(|prefix_name| {
        (
            Just(prefix_name),
            prop::collection::vec(cookie_piece(prefix_name), 0..10),
            prop::collection::vec(any::<u8>(), 1..12),
            1usize..8,
        )
    });
    check(
        "cookie_session_values_follow_the_documented_rule",
        DEFAULT_COOKIE_CASES,
        strategy,
        |(prefix_name, pieces, layout, limit)| {
            let (written, base) = if prefix_name {
                ("wordpress_logged_in_*", "wordpress_logged_in_")
            } else {
                ("sessionid", "sessionid")
            };
            let name = CookieName::new(written);
            let mut headers = HeaderMap::new();
            let (lines, sent) = cookie_lines(&pieces, &layout, base);
            for line in lines {
                headers.append(
                    COOKIE,
                    HeaderValue::from_bytes(&line).expect("generated header is valid"),
                );
            }
            // The rule, over what was generated.
            let mut want: Result<Vec<(String, String)>, CookieError> = Ok(Vec::new());
            let mut forget: Vec<String> = Vec::new();
            let mut forgetting = true;
            for piece in sent.iter().map(|&i| &pieces[i]) {
                let CookiePiece::Session {
                    suffix,
                    value,
                    valid,
                    ..
                } = piece
                else {
                    continue;
                };
                if forgetting {
                    if *valid && !forget.contains(value) {
                        forget.push(value.clone());
                    }
                    forgetting = forget.len() < limit;
                }
                if let Ok(found) = &mut want {
                    let cookie = (format!("{base}{suffix}"), value.clone());
                    if !valid {
                        want = Err(CookieError::Malformed);
                    } else if found.contains(&cookie) {
                    } else if found.len() == MAX_SESSION_VALUES {
                        want = Err(CookieError::TooMany);
                    } else {
                        found.push(cookie);
                    }
                }
            }
            let got = session_cookies(&headers, &name).map(|values| {
                values
                    .as_slice()
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.to_string()))
                    .collect::<Vec<_>>()
            });
            prop_assert_eq!(&got, &want, "headers {:?}", headers);
            let forgotten = every_session_value(&headers, &name, limit);
            prop_assert_eq!(forgotten, forget, "headers {:?}", headers);
            Ok(())
        },
    );
}
