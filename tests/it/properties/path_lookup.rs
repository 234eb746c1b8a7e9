//! Route lookup on any text: it never panics, never opens a path whose strict
//! reading is gated, and gives an ASCII path the access of its documented readings.

use super::path_model::{
    access_name, after_host, ascii_folded, longest_prefix, tables, FOLDED_TABLES, MIXED_TABLE, S, T,
};
use super::*;

/// Pieces of paths that exercise every branch of both readings.
const PATH_PIECES: &[&str] = &[
    "videos",
    "VIDEOS",
    "Videos.",
    "free",
    "Free",
    "public",
    "PUBLIC",
    "hls",
    "x",
    "members",
    "Members.",
    "cafe",
    ".",
    "..",
    "...",
    ". ",
    "%2e",
    "%2E%2e",
    ".%2e",
    "%20",
    "%20.",
    ";",
    ";x",
    "; ",
    "%3b",
    "%3B..",
    "%",
    "%4",
    "%zz",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "/",
    "//",
    "A.",
    "a ",
    "%41",
    "%7e",
    "~",
    ":x",
    "%3A",
    "%3F",
    "%3fx",
    "%23",
    "%09",
    "%C3%A9",
    "%E9",
    "\u{e9}",
    "\u{FF0E}",
    "\u{FF0F}",
    "\u{FF3C}",
    "%EF%BC%8E",
    "\u{200B}",
    "\u{130}",
    "\u{17F}",
    "\u{2025}",
    "\u{FB01}",
];

fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (any::<bool>(), prop::collection::vec((select(PATH_PIECES), any::<bool>()), 0..10))
            .prop_map(|(rooted, pieces)| {
                let mut path = String::new();
                if rooted {
                    path.push('/');
                }
                for (piece, slash) in pieces {
                    path.push_str(piece);
                    if slash {
                        path.push('/');
                    }
                }
                path
            }),
        1 => any::<String>().prop_map(|s| format!("/{s}")),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(|bytes| {
            let mut path = String::from("/");
            for b in bytes {
                path.push_str(&format!("%{b:02X}"));
                if b % 7 == 0 {
                    path.push('/');
                }
            }
            path
        }),
    ]
}

fn query_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[pP_a-z.\\[\\] =&;%+0-9A-F]{0,24}",
        any::<String>(),
    ])
}

/// `lookup` and `normalize` never panic, whatever the text; a path refused
/// by the strict reading is refused by `lookup` with the same error; a path
/// whose strict reading is under a session route is never let through.
#[test]
fn path_lookup_never_panics_and_never_opens_a_strictly_gated_path() {
    check(
        "path_lookup_never_panics_and_never_opens_a_strictly_gated_path",
        DEFAULT_PATH_CASES,
        (path_text(), query_text()),
        |(path, query)| {
            let strict = normalize(&path);
            let all_routes = [FOLDED_TABLES[0], FOLDED_TABLES[1], MIXED_TABLE];
            for (table, routes) in tables().iter().zip(all_routes) {
                let got = table.lookup(&path, query.as_deref());
                match (&strict, &got) {
                    (Err(want), got) => {
                        prop_assert_eq!(got.as_ref().err(), Some(want), "{:?}", path)
                    }
                    (Ok(strict), Ok(got)) => {
                        if longest_prefix(routes, strict) == S {
                            prop_assert_eq!(got.access, S, "{:?}", path);
                        }
                        if got.access == T {
                            prop_assert_eq!(got.normal.as_deref(), Some(&strict[..]));
                        }
                    }
                    // The folded reading finds dot segments and backslashes
                    // the strict one does not; the path cut at a decoded "?"
                    // may end in a ".." (above the root, too).
                    (Ok(_), Err(err)) => prop_assert!(
                        matches!(
                            err,
                            PathError::DotSegment | PathError::Ambiguous | PathError::AboveRoot
                        ),
                        "{:?}: only another reading may refuse a path the strict one reads: {:?}",
                        path,
                        err
                    ),
                }
            }
            Ok(())
        },
    );
}

/// An ASCII path gets exactly the strictest access of its documented
/// readings, strict and folded, with `;` parameters dropped and kept, whole
/// and cut at a decoded `?` or `#`, and after the host of a path that starts
/// with `//` (against tables whose prefixes are in folded form), and a dot
/// segment in any reading is refused.
#[test]
fn path_lookup_of_ascii_paths_follows_both_documented_readings() {
    let ascii = (
        any::<bool>(),
        prop::collection::vec((select(&PATH_PIECES[..47]), any::<bool>()), 0..10),
    )
        .prop_map(|(rooted, pieces)| {
            let mut path = String::new();
            if rooted {
                path.push('/');
            }
            for (piece, slash) in pieces {
                path.push_str(piece);
                if slash {
                    path.push('/');
                }
            }
            path
        });
    check(
        "path_lookup_of_ascii_paths_follows_both_documented_readings",
        DEFAULT_PATH_CASES,
        ascii,
        |path| {
            for (at, routes) in FOLDED_TABLES.iter().enumerate() {
                let got = tables()[at].lookup(&path, None);
                // Strict, folded, and folded with segments trimmed and
                // streams cut; for a path with a ";", all three again with
                // `;` parameters kept.
                let readings = |raw: &str| -> Result<Option<Access>, PathError> {
                    let strict = normalize(raw)?;
                    if !strict.is_ascii() {
                        // A decoded escape made it non-ASCII: not this model's case.
                        return Ok(None);
                    }
                    let mut access = Access::Public;
                    for (strict, keep_params) in
                        [(Some(strict.to_vec()), false), (kept(raw)?, true)]
                    {
                        let Some(strict) = strict else {
                            continue;
                        };
                        let folded = ascii_folded(&strict, false, keep_params)?;
                        let trimmed = ascii_folded(&folded, true, keep_params)?;
                        access = access
                            .max(longest_prefix(routes, &strict))
                            .max(longest_prefix(routes, &folded))
                            .max(longest_prefix(routes, &trimmed));
                    }
                    Ok(Some(access))
                };
                // Whole and cut before an escaped "?" or "#", as a server
                // that decodes first reads it.
                let whole_and_cut = |raw: &str| -> Result<Option<Access>, PathError> {
                    let whole = readings(raw)?;
                    let lower = raw.to_ascii_lowercase();
                    let cut = [lower.find("%3f"), lower.find("%23")]
                        .into_iter()
                        .flatten()
                        .min();
                    let Some(cut) = cut else {
                        return Ok(whole);
                    };
                    let head = if cut == 0 { "/" } else { &raw[..cut] };
                    Ok(match (whole, readings(head)?) {
                        (Some(whole), Some(head)) => Some(whole.max(head)),
                        _ => None,
                    })
                };
                // And, for a path that starts with "//", all of that again
                // of the path after the host a URL parser reads.
                let want = whole_and_cut(&path).and_then(|whole| {
                    let Some(after) = after_host(&path) else {
                        return Ok(whole);
                    };
                    Ok(match (whole, whole_and_cut(after)?) {
                        (Some(whole), Some(after)) => Some(whole.max(after)),
                        _ => None,
                    })
                });
                match (&want, &got) {
                    (Ok(None), _) => {}
                    (Ok(Some(access)), Ok(m)) => {
                        prop_assert_eq!(m.access, *access, "table {}: {:?}", at, path)
                    }
                    (Err(want), Err(got)) => {
                        prop_assert_eq!(got, want, "table {}: {:?}", at, path)
                    }
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "table {at}: {path:?}: expected {want:?}, got {}",
                            access_name(&got)
                        )))
                    }
                }
            }
            Ok(())
        },
    );
}

/// The strict reading of an ASCII path with its `;` parameters kept, or
/// `None` when it has none (raw or `%3B`): the strict reading of the path
/// with each `;` spelled as a "!", a byte that reading keeps as it is and
/// no piece of these paths holds, read back as a ";".
fn kept(raw: &str) -> Result<Option<Vec<u8>>, PathError> {
    let lower = raw.to_ascii_lowercase();
    if !raw.contains(';') && !lower.contains("%3b") {
        return Ok(None);
    }
    assert!(raw.is_ascii() && !raw.contains('!'), "{raw:?}");
    let mut spelled = String::new();
    let mut at = 0;
    while at < raw.len() {
        if lower[at..].starts_with("%3b") {
            spelled.push('!');
            at += 3;
        } else {
            spelled.push(match raw.as_bytes()[at] {
                b';' => '!',
                other => char::from(other),
            });
            at += 1;
        }
    }
    let strict = normalize(&spelled)?;
    Ok(Some(
        strict
            .iter()
            .map(|&b| if b == b'!' { b';' } else { b })
            .collect(),
    ))
}
