//! Property tests: fuzzing on stable Rust, in the test suite.
//!
//! Each property draws generated inputs with proptest, runs them through the
//! public API and checks what must hold for every input:
//!
//! - `path_spellings_*`: a path spelled with mixed case, percent-escapes of
//!   the same bytes, `;params`, `//`, trailing dots and spaces, full-width,
//!   accented and invisible characters (UTF-8, or Windows-1252 escapes) is
//!   decoded to the bytes it spells; spellings with the same strict reading
//!   get the same route; no spelling is more open than the plain one; a path
//!   whose strict reading is under a session route is never let through.
//! - `path_lookup_*`: `RouteTable::lookup` and `normalize` never panic on any
//!   text; an ASCII path gets exactly the access of its two documented readings.
//! - `cookie_*`: any `Cookie` / `Set-Cookie` lines never panic; the session
//!   values found among other cookies (any order, whitespace, quotes,
//!   duplicates, several header lines) are the ones the module's rule gives.
//! - `config_*`: `Settings::from_toml` (and, when it accepts, building the
//!   runtime) never panics on random text or on mutations of gateway.toml.
//! - `rewrite_*`: for generated pages and any split into chunks (empty ones
//!   too), `RewriteBody` gives the bytes of the one-chunk run; those are the
//!   page with exactly one verifiable token in each matching iframe URL
//!   outside comments, scripts and other raw text, and nothing else changed
//!   (a tag that gets a token is written as lol_html writes a modified tag:
//!   one space before each attribute, the new value in double quotes). For
//!   byte soup in any charset (meta charsets too), any split gives the
//!   one-chunk bytes and counts.
//!
//! Token parsing and verification are covered in src/token/edgeauth/tests.rs.
//!
//! Cases per property: the `DEFAULT_*` constants below (the whole file runs
//! in a few seconds in a debug build), or `PROPTEST_CASES` for all of them.
//! Every property prints its case count and time (`-- --nocapture`). Longer
//! manual run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release --test it properties:: -- --nocapture
//! ```
//!
//! `PROPERTIES_SHOW=1` prints the generated path spellings and pages.
//! A failure prints the minimal (shrunk) input; nothing is written to disk
//! (no proptest-regressions files): turn a failure into a plain `#[test]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use embedgate::allowlist::{Principal, SessionKey};
use embedgate::config::Settings;
use embedgate::embed::EmbedRewrite;
use embedgate::gate::cookie::{
    clears_session, every_session_value, session_cookies, CookieError, CookieName,
    MAX_SESSION_VALUES,
};
use embedgate::gate::{normalize, Access, PathError, RouteSpec, RouteTable};
use embedgate::rewrite::{encoding_for, PageTokens, RewriteBody, RewriteStats};
use embedgate::runtime::Runtime;
use embedgate::token::{Algorithm, EdgeAuth, KeyMaterial, Visitor};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::common::{config_text, KEY_HEX};

const DEFAULT_PATH_CASES: u32 = 256;
const DEFAULT_COOKIE_CASES: u32 = 256;
const DEFAULT_CONFIG_CASES: u32 = 128;
const DEFAULT_REWRITE_CASES: u32 = 96;

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases(default)` inputs from `strategy`, prints how many
/// ran and how long it took, and fails with the shrunk input on a failure.
fn check<S: Strategy>(
    name: &str,
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    let runs = ran.load(Ordering::Relaxed);
    match result {
        Ok(()) => eprintln!(
            "properties::{name}: {runs} cases passed in {:.2?}",
            started.elapsed()
        ),
        Err(err) => panic!(
            "properties::{name}: failed after {runs} runs (shrinking included) in {:.2?}: {err}",
            started.elapsed()
        ),
    }
}

// ---------------------------------------------------------------------------
// Path reader
// ---------------------------------------------------------------------------

const S: Access = Access::Session;
const P: Access = Access::Public;
const T: Access = Access::Token;

/// Tables whose prefixes are in folded form (ASCII lower case), the usual
/// config: one with "/" public, one where an unrouted path is gated.
const FOLDED_TABLES: [&[(&str, Access)]; 2] = [
    &[
        ("/videos/", S),
        ("/videos/free/", P),
        ("/public/", P),
        ("/hls/", T),
        ("/members", S),
        ("/kids/cafe/", S),
        ("/", P),
    ],
    &[
        ("/public/", P),
        ("/videos/free/", P),
        ("/hls/", T),
        ("/x/", P),
        ("/cafe", P),
    ],
];

/// Prefixes that are not their own folded reading, and a query route.
const MIXED_TABLE: &[(&str, Access)] = &[
    ("/Videos/", S),
    ("/vid\u{e9}os/free/", P),
    ("/public/", P),
    ("/Public/", S),
    ("/hls/", T),
    ("/", P),
];

fn table(routes: &[(&str, Access)], query: &[&str]) -> RouteTable {
    let mut specs: Vec<RouteSpec> = routes
        .iter()
        .map(|&(prefix, access)| RouteSpec {
            prefix: Some(prefix.into()),
            query: Vec::new(),
            access,
            token: None,
        })
        .collect();
    if !query.is_empty() {
        specs.push(RouteSpec {
            prefix: None,
            query: query.iter().map(|q| q.to_string()).collect(),
            access: S,
            token: None,
        });
    }
    RouteTable::new(&specs).expect("test table compiles")
}

fn tables() -> &'static [RouteTable; 3] {
    static TABLES: OnceLock<[RouteTable; 3]> = OnceLock::new();
    TABLES.get_or_init(|| {
        [
            table(FOLDED_TABLES[0], &[]),
            table(FOLDED_TABLES[1], &[]),
            table(MIXED_TABLE, &["p", "page_id"]),
        ]
    })
}

/// The route of `path` by longest prefix alone, as the docs define it (a
/// "/dir/" prefix owns "/dir" and "/dir.json" too); a path no route matches
/// is gated.
fn longest_prefix(routes: &[(&str, Access)], path: &[u8]) -> Access {
    routes
        .iter()
        .filter(|(prefix, _)| {
            let prefix = prefix.as_bytes();
            // A "/videos/" prefix also covers "/videos" and "/videos.json".
            let directory_page = prefix
                .strip_suffix(b"/")
                .filter(|dir| !dir.is_empty())
                .and_then(|dir| path.strip_prefix(dir))
                .is_some_and(|rest| rest.is_empty() || (rest[0] == b'.' && !rest.contains(&b'/')));
            path.starts_with(prefix) || directory_page
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(S, |&(_, access)| access)
}

/// The folded reading of an ASCII strict path, as the module doc describes
/// it: per segment, `;` parameters dropped, trailing dots and spaces
/// dropped, lower case; a segment of only dots and spaces (with a dot) is a
/// dot segment; empty segments collapse.
fn ascii_folded(strict: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::new();
    let mut trailing = false;
    for segment in strict.split(|&b| b == b'/').skip(1) {
        let bare = segment.split(|&b| b == b';').next().unwrap_or_default();
        let mut kept = bare;
        while let Some((last, rest)) = kept.split_last() {
            if *last != b'.' && *last != b' ' {
                break;
            }
            kept = rest;
        }
        if kept.is_empty() {
            if bare.contains(&b'.') {
                return Err(PathError::DotSegment);
            }
            trailing = true;
            continue;
        }
        out.push(b'/');
        out.extend(kept.iter().map(u8::to_ascii_lowercase));
        trailing = false;
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Words of the plain (canonical) paths: lower-case ASCII, no dot segment.
const WORDS: &[&str] = &[
    "videos",
    "free",
    "public",
    "hls",
    "members",
    "secret",
    "a.mp4",
    "x",
    "index.php",
    "kids",
    "cafe",
    "v1.m3u8",
    "seg-01_b.ts",
];

/// Spellings of `c` that the folded reading reads as `c`: case, full-width
/// and other compatibility forms, accents (precomposed or combining).
fn unicode_spellings(c: char) -> Vec<String> {
    let mut out = vec![c.to_string()];
    if c.is_ascii_lowercase() {
        let upper = c.to_ascii_uppercase();
        out.push(upper.to_string());
        let offset = c as u32 - 'a' as u32;
        out.push(char::from_u32(0xFF41 + offset).unwrap().to_string());
        out.push(char::from_u32(0xFF21 + offset).unwrap().to_string());
        out.push(format!("{c}\u{301}"));
        out.push(format!("{upper}\u{308}"));
        out.push(format!("{c}\u{327}\u{300}"));
        let special: &[char] = match c {
            'a' => &['á', 'à', 'â', 'ä', 'ã', 'å', 'Á', 'Å'],
            'e' => &['é', 'è', 'ê', 'ë', 'É', 'Ê'],
            'i' => &['í', 'ì', 'î', 'ï', 'Í', '\u{130}', '\u{131}'],
            'o' => &['ó', 'ò', 'ô', 'ö', 'õ', 'ø', 'Ø', 'Ó'],
            'u' => &['ú', 'ù', 'û', 'ü', 'Ú'],
            'c' => &['ç', 'Ç'],
            'n' => &['ñ', 'Ñ'],
            's' => &['\u{17F}'],
            'k' => &['\u{212A}'],
            'y' => &['ý', 'ÿ'],
            'd' => &['đ', 'Đ'],
            'l' => &['ł', 'Ł'],
            'h' => &['ħ'],
            't' => &['ŧ'],
            _ => &[],
        };
        out.extend(special.iter().map(char::to_string));
    } else if c.is_ascii_digit() {
        let offset = c as u32 - '0' as u32;
        out.push(char::from_u32(0xFF10 + offset).unwrap().to_string());
        // Circled digits: ⓪, then ① to ⑨.
        let circled = if offset == 0 {
            0x24EA
        } else {
            0x2460 + offset - 1
        };
        out.push(char::from_u32(circled).unwrap().to_string());
        out.push(char::from_u32(0x1D7CE + offset).unwrap().to_string());
    } else {
        let more: &[char] = match c {
            '.' => &['\u{FF0E}', '\u{2024}'],
            '-' => &['\u{FF0D}', '\u{FE63}'],
            '_' => &['\u{FF3F}'],
            _ => &[],
        };
        out.extend(more.iter().map(char::to_string));
    }
    out
}

/// Windows-1252 single bytes that read as `c` once folded (accents, case).
fn latin1_spellings(c: char) -> Vec<Vec<u8>> {
    let mut out = vec![vec![c as u8]];
    if c.is_ascii_lowercase() {
        out.push(vec![c.to_ascii_uppercase() as u8]);
    }
    let bytes: &[u8] = match c {
        'a' => &[0xE1, 0xE0, 0xE2, 0xE4, 0xE3, 0xE5, 0xC1],
        'e' => &[0xE9, 0xE8, 0xEA, 0xEB, 0xC9],
        'i' => &[0xED, 0xEC, 0xEE, 0xEF, 0xCD],
        'o' => &[0xF3, 0xF2, 0xF4, 0xF6, 0xF5, 0xF8, 0xD8, 0xD3],
        'u' => &[0xFA, 0xF9, 0xFB, 0xFC, 0xDA],
        'c' => &[0xE7, 0xC7],
        'n' => &[0xF1, 0xD1],
        'y' => &[0xFD, 0xFF],
        _ => &[],
    };
    out.extend(bytes.iter().map(|&b| vec![b]));
    out
}

/// Characters with no visible form that the folded reading drops.
const INVISIBLES: &[char] = &[
    '\u{200B}', '\u{00AD}', '\u{FEFF}', '\u{2060}', '\u{200D}', '\u{034F}',
];

/// Trailing dots and spaces of a segment, which the folded reading drops.
const SUFFIXES: &[&str] = &["", ".", "..", " ", ". ", " .", "\u{FF0E}", "\u{3000}"];

/// `;` parameters, which the strict reading drops.
const PARAMS: &[&str] = &["", ";", ";x=1", ";jsessionid=0AB9", ";a;b=c"];

/// How one path is spelled: the plain words, and the random choices that
/// turn them into a spelling.
#[derive(Debug, Clone)]
struct Spelling {
    words: Vec<&'static str>,
    trailing_slash: bool,
    /// Case, compatibility, accent, invisible and trailing-dot spellings.
    fold: bool,
    /// Accents as single Windows-1252 bytes (%XX) instead of UTF-8.
    latin1: bool,
    /// Whether non-ASCII characters are sent raw or percent-encoded.
    raw_unicode: bool,
    /// Random choices, consumed in order (wrapping).
    choices: Vec<u32>,
}

/// A spelled path: the text sent, and the bytes its strict reading must be.
struct Spelled {
    text: String,
    strict: Vec<u8>,
}

impl Spelling {
    fn canonical(&self) -> String {
        let mut path = String::from("/");
        path.push_str(&self.words.join("/"));
        if self.trailing_slash && !self.words.is_empty() {
            path.push('/');
        }
        path
    }

    fn spell(&self) -> Spelled {
        let mut next = {
            let mut at = 0usize;
            let choices = &self.choices;
            move || {
                let c = choices[at % choices.len()];
                at += 1;
                c
            }
        };
        let mut text = String::new();
        let mut strict: Vec<u8> = Vec::new();
        let mut last_empty = true;
        // Percent-encodes `bytes` with random hex case, or writes `raw` as it is.
        let escape = |text: &mut String, bytes: &[u8], upper: bool| {
            for b in bytes {
                if upper {
                    text.push_str(&format!("%{b:02X}"));
                } else {
                    text.push_str(&format!("%{b:02x}"));
                }
            }
        };
        // A full-width solidus, which the folded reading reads as a `/`,
        // joins two segments for the strict reading; only after a word
        // without `;` parameters (which would swallow the rest).
        let full_width = self.fold && !self.latin1;
        let mut after_plain_word = false;
        let solidus = |text: &mut String, strict: &mut Vec<u8>, r: u32| {
            let bytes = "\u{FF0F}".as_bytes();
            if self.raw_unicode && r % 2 == 0 {
                text.push('\u{FF0F}');
            } else {
                escape(text, bytes, r % 4 < 2);
            }
            strict.extend_from_slice(bytes);
        };
        for word in &self.words {
            let r = next();
            if full_width && after_plain_word && r % 5 == 0 {
                solidus(&mut text, &mut strict, r >> 3);
            } else {
                // Empty segments before it: "//", "/;x/".
                for _ in 0..(r >> 3) % 4 / 2 {
                    text.push('/');
                    text.push_str(PARAMS[next() as usize % PARAMS.len()]);
                }
                text.push('/');
                strict.push(b'/');
            }
            for c in word.chars() {
                let r = next();
                // The character's bytes as the strict reading decodes them.
                let (bytes, ascii): (Vec<u8>, bool) = if !self.fold {
                    (vec![c as u8], true)
                } else if self.latin1 {
                    let options = latin1_spellings(c);
                    let pick = options[r as usize % options.len()].clone();
                    let ascii = pick.is_ascii();
                    (pick, ascii)
                } else {
                    let options = unicode_spellings(c);
                    let pick = &options[r as usize % options.len()];
                    (pick.as_bytes().to_vec(), pick.is_ascii())
                };
                let encode = (r >> 8) % 4 == 0 || (!ascii && (self.latin1 || !self.raw_unicode));
                if encode {
                    escape(&mut text, &bytes, (r >> 12) % 2 == 0);
                } else {
                    text.push_str(std::str::from_utf8(&bytes).expect("raw text is UTF-8"));
                }
                strict.extend_from_slice(&bytes);
                if self.fold && !self.latin1 && (r >> 16) % 6 == 0 {
                    let invisible = INVISIBLES[(r >> 20) as usize % INVISIBLES.len()];
                    let mut buf = [0; 4];
                    let invisible = invisible.encode_utf8(&mut buf);
                    if self.raw_unicode && (r >> 24) % 2 == 0 {
                        text.push_str(invisible);
                    } else {
                        escape(&mut text, invisible.as_bytes(), true);
                    }
                    strict.extend_from_slice(invisible.as_bytes());
                }
            }
            let r = next();
            if self.fold {
                let options = if self.latin1 {
                    &SUFFIXES[..6]
                } else {
                    SUFFIXES
                };
                let suffix = options[r as usize % options.len()];
                for c in suffix.chars() {
                    let mut buf = [0; 4];
                    let c = c.encode_utf8(&mut buf);
                    if c == "." && (r >> 4) % 2 == 0 {
                        text.push('.');
                    } else {
                        escape(&mut text, c.as_bytes(), (r >> 5) % 2 == 0);
                    }
                    strict.extend_from_slice(c.as_bytes());
                }
            }
            let params = PARAMS[(r >> 8) as usize % PARAMS.len()];
            text.push_str(params);
            after_plain_word = params.is_empty();
            last_empty = false;
        }
        if self.trailing_slash && !self.words.is_empty() {
            let r = next();
            if full_width && after_plain_word && r % 5 == 0 {
                solidus(&mut text, &mut strict, r >> 3);
            } else {
                text.push('/');
                text.push_str(PARAMS[(r >> 3) as usize % PARAMS.len()]);
                last_empty = true;
            }
        }
        if text.is_empty() {
            text.push('/');
        }
        if last_empty {
            strict.push(b'/');
        }
        Spelled { text, strict }
    }
}

fn spelling(fold: bool) -> impl Strategy<Value = Spelling> {
    (
        prop::collection::vec(select(WORDS), 0..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 1..48),
    )
        .prop_map(
            move |(words, trailing_slash, latin1, raw_unicode, choices)| Spelling {
                words,
                trailing_slash,
                fold,
                latin1: fold && latin1,
                raw_unicode,
                choices,
            },
        )
}

fn access_name(result: &Result<embedgate::gate::RouteMatch, PathError>) -> String {
    match result {
        Ok(m) => format!("{:?} via {:?}", m.access, m.prefix),
        Err(err) => format!("error {err:?}"),
    }
}

/// Spellings that differ only in escapes, `;params` and `//` decode to the
/// plain path's bytes and get the very route of the plain path.
#[test]
fn path_spellings_with_the_same_strict_reading_get_the_same_route() {
    let strategy = (spelling(false), any::<u64>()).prop_map(|(mut s, seed)| {
        let other = Spelling {
            choices: s.choices.iter().map(|c| c ^ seed as u32).collect(),
            ..s.clone()
        };
        let len = s.choices.len();
        s.choices.rotate_left((seed as usize) % len);
        (s, other)
    });
    check(
        "path_spellings_with_the_same_strict_reading_get_the_same_route",
        DEFAULT_PATH_CASES,
        strategy,
        |(one, two)| {
            let plain = one.canonical();
            for spelling in [&one, &two] {
                let spelled = spelling.spell();
                let strict = normalize(&spelled.text);
                prop_assert_eq!(
                    strict.as_deref().ok(),
                    Some(plain.as_bytes()),
                    "strict reading of {:?}",
                    spelled.text
                );
                prop_assert_eq!(&spelled.strict, plain.as_bytes());
                for (at, table) in tables().iter().enumerate() {
                    let expected = table.lookup(&plain, None);
                    let got = table.lookup(&spelled.text, None);
                    prop_assert_eq!(
                        &got,
                        &expected,
                        "table {}: {:?} ({}) vs plain {:?} ({})",
                        at,
                        spelled.text,
                        access_name(&got),
                        plain,
                        access_name(&expected)
                    );
                }
            }
            Ok(())
        },
    );
}

static STRICTER_THAN_PLAIN: AtomicU64 = AtomicU64::new(0);

/// Spellings a lenient server reads as the plain path (case, trailing dots,
/// full-width, accents, invisibles, Windows-1252) are read without error, to
/// the bytes they spell, and are never more open than the plain path.
#[test]
fn path_spellings_are_never_more_open_than_the_plain_path() {
    STRICTER_THAN_PLAIN.store(0, Ordering::Relaxed);
    check(
        "path_spellings_are_never_more_open_than_the_plain_path",
        DEFAULT_PATH_CASES,
        spelling(true),
        |spelling| {
            let plain = spelling.canonical();
            let spelled = spelling.spell();
            if std::env::var_os("PROPERTIES_SHOW").is_some() {
                eprintln!("{plain:?} spelled {:?}", spelled.text);
            }
            let strict = normalize(&spelled.text);
            prop_assert_eq!(
                strict.as_deref().ok(),
                Some(&spelled.strict[..]),
                "strict reading of {:?}",
                spelled.text
            );
            for (at, routes) in FOLDED_TABLES.iter().enumerate() {
                let table = &tables()[at];
                let expected = table.lookup(&plain, None).expect("a plain path is read");
                prop_assert_eq!(
                    expected.access,
                    longest_prefix(routes, plain.as_bytes()),
                    "plain {:?}",
                    plain
                );
                let got = table.lookup(&spelled.text, None);
                let Ok(got) = got else {
                    return Err(TestCaseError::fail(format!(
                        "table {at}: {:?} refused ({got:?}), plain {plain:?} is {:?}",
                        spelled.text, expected.access
                    )));
                };
                prop_assert!(
                    got.access >= expected.access,
                    "table {}: {:?} is {:?} via {:?}, more open than plain {:?}: {:?} via {:?}",
                    at,
                    spelled.text,
                    got.access,
                    got.prefix,
                    plain,
                    expected.access,
                    expected.prefix
                );
                if got.access > expected.access {
                    STRICTER_THAN_PLAIN.fetch_add(1, Ordering::Relaxed);
                }
                let strict_route = longest_prefix(routes, &spelled.strict);
                prop_assert!(
                    strict_route != S || got.access == S,
                    "{:?}: strict reading under a session route, got {:?}",
                    spelled.text,
                    got.access
                );
            }
            Ok(())
        },
    );
    eprintln!(
        "properties::path_spellings_are_never_more_open_than_the_plain_path: \
         {} lookups stricter than the plain path (fail closed)",
        STRICTER_THAN_PLAIN.load(Ordering::Relaxed)
    );
}

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
                    (Ok(_), Err(err)) => prop_assert!(
                        matches!(err, PathError::DotSegment | PathError::Ambiguous),
                        "{:?}: only the folded reading may refuse a path the strict one reads: {:?}",
                        path,
                        err
                    ),
                }
            }
            Ok(())
        },
    );
}

/// An ASCII path gets exactly the stricter access of its two documented
/// readings (against tables whose prefixes are in folded form), and a dot
/// segment in either reading is refused.
#[test]
fn path_lookup_of_ascii_paths_follows_both_documented_readings() {
    let ascii = (
        any::<bool>(),
        prop::collection::vec((select(&PATH_PIECES[..41]), any::<bool>()), 0..10),
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
                let want = normalize(&path).and_then(|strict| {
                    if !strict.is_ascii() {
                        // A decoded escape made it non-ASCII: not this model's case.
                        return Ok(None);
                    }
                    let folded = ascii_folded(&strict)?;
                    Ok(Some(
                        longest_prefix(routes, &strict).max(longest_prefix(routes, &folded)),
                    ))
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

// ---------------------------------------------------------------------------
// Cookie reader
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Config loader
// ---------------------------------------------------------------------------

/// The config texts mutations start from: the shipped gateway.toml and the
/// integration tests' config.
fn config_seeds() -> &'static [String; 2] {
    static SEEDS: OnceLock<[String; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml"))
                .expect("gateway.toml");
        let test = config_text("127.0.0.1:9".parse().unwrap(), "");
        [shipped, test]
    })
}

/// Values of every TOML type, some of them near what the keys expect.
const VALUES: &[&str] = &[
    "\"x\"",
    "\"\"",
    "42",
    "0",
    "-1",
    "9223372036854775807",
    "99999999999999999999",
    "1.5",
    "nan",
    "-inf",
    "true",
    "false",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "\"0s\"",
    "\"-5m\"",
    "\"1h 30m\"",
    "\"999999999999h\"",
    "\"\u{1F4A5}\"",
    "\"\\u00e9\"",
    "'''multi\nline'''",
    "\"/\"",
    "\"*\"",
    "\"0.0.0.0:0\"",
    "\"[::1]:99999\"",
    "\"https://\"",
    "\"http://\u{e9}/\"",
    "\"{share}\"",
    "\"/hls/{share}/{share}\"",
    "[\"/a/\", \"/b/\"]",
    "\"session\"",
    "\"token\"",
    "\"remote\"",
    "\"127.0.0.0/33\"",
    "=",
    "",
];

/// One change to a config text's lines.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    /// Another value, of any type, for a `key = value` line.
    Retype(Index, &'static str),
    /// A commented-out line put in force.
    Uncomment(Index),
    /// A line of random text.
    Insert(Index, String),
    /// The text cut at a byte (moved back to a character boundary).
    Truncate(Index),
    /// A character put anywhere in the text.
    Inject(Index, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Delete),
        2 => any::<Index>().prop_map(Mutation::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        4 => (any::<Index>(), select(VALUES)).prop_map(|(a, v)| Mutation::Retype(a, v)),
        4 => any::<Index>().prop_map(Mutation::Uncomment),
        1 => (any::<Index>(), "[\\[\\]a-z_.=\"' 0-9{},#-]{0,30}").prop_map(|(a, s)| Mutation::Insert(a, s)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<char>()).prop_map(|(a, c)| Mutation::Inject(a, c)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut text_cut: Option<String> = None;
    for mutation in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match mutation {
            Mutation::Delete(at) => {
                lines.remove(at.index(n));
            }
            Mutation::Duplicate(at) => {
                let at = at.index(n);
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            Mutation::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            Mutation::Retype(at, value) => {
                // The nearest `key = value` line from `at` on.
                let start = at.index(n);
                if let Some(i) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains('='))
                {
                    let eq = lines[i].find('=').unwrap();
                    lines[i] = format!("{}= {value}", &lines[i][..eq]);
                }
            }
            Mutation::Uncomment(at) => {
                let start = at.index(n);
                if let Some(i) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| lines[i].trim_start().starts_with('#'))
                {
                    let line = lines[i].trim_start();
                    let line = line.trim_start_matches('#').trim_start();
                    lines[i] = line.to_string();
                }
            }
            Mutation::Insert(at, line) => lines.insert(at.index(n + 1), line.clone()),
            Mutation::Truncate(at) => {
                let joined = lines.join("\n");
                let mut cut = at.index(joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                text_cut = Some(joined[..cut].to_string());
                break;
            }
            Mutation::Inject(at, c) => {
                let i = at.index(n);
                let line = &mut lines[i];
                let mut pos = at.index(line.len() + 1);
                while !line.is_char_boundary(pos) {
                    pos -= 1;
                }
                line.insert(pos, *c);
            }
        }
    }
    text_cut.unwrap_or_else(|| lines.join("\n"))
}

static CONFIGS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static RUNTIMES_BUILT: AtomicU64 = AtomicU64::new(0);

/// Loads `text` as a config in `dir`, and builds its runtime when the
/// settings are accepted; neither step may panic.
fn load_and_build(text: &str, dir: &Path, tokio: &tokio::runtime::Runtime) {
    let path = dir.join("gateway.toml");
    if let Ok(loaded) = Settings::from_toml(text, &path) {
        CONFIGS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
        if tokio.block_on(Runtime::from_loaded(loaded, None)).is_ok() {
            RUNTIMES_BUILT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allowlist.txt"),
        "member-0123456789abcdef\n",
    )
    .unwrap();
    dir
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Mutations of the real configs (lines deleted, repeated, swapped, put in
/// force, retyped, cut off) are accepted or refused, never a panic.
#[test]
fn config_mutations_of_gateway_toml_never_panic() {
    let dir = config_dir();
    let tokio = current_thread();
    CONFIGS_ACCEPTED.store(0, Ordering::Relaxed);
    RUNTIMES_BUILT.store(0, Ordering::Relaxed);
    check(
        "config_mutations_of_gateway_toml_never_panic",
        DEFAULT_CONFIG_CASES,
        (any::<bool>(), prop::collection::vec(mutation(), 1..6)),
        |(shipped, mutations)| {
            let seed = &config_seeds()[usize::from(!shipped)];
            let text = mutate(seed, &mutations);
            load_and_build(&text, dir.path(), &tokio);
            Ok(())
        },
    );
    eprintln!(
        "properties::config_mutations_of_gateway_toml_never_panic: {} accepted, {} runtimes built",
        CONFIGS_ACCEPTED.load(Ordering::Relaxed),
        RUNTIMES_BUILT.load(Ordering::Relaxed)
    );
}

/// Random text, TOML-shaped or not, is accepted or refused, never a panic.
#[test]
fn config_random_text_never_panics() {
    let dir = config_dir();
    let tokio = current_thread();
    let tomlish = prop::collection::vec(
        prop_oneof![
            select(
                &[
                    "[server]\n",
                    "[[route]]\n",
                    "[[embed]]\n",
                    "[embed.token]\n",
                    "[session]\n",
                    "[upstream]\n",
                    "[session.allowlist]\n",
                    "prefix = ",
                    "access = ",
                    "src = ",
                    "url = ",
                    "cookie = ",
                    "listen = ",
                    "kind = ",
                    "key = ",
                    "acl = ",
                    "file = ",
                    "\"",
                    "'",
                    "=",
                    "\n",
                    " ",
                    "#",
                    "[",
                    "]",
                    "{",
                    "}",
                    ",",
                    ".",
                    "\\",
                    "\u{e9}",
                    "\u{1F4A5}",
                    "\r\n",
                    "\t",
                    "\"\"\"",
                    "0",
                    "1e9",
                    "true",
                ][..]
            )
            .prop_map(str::to_string),
            select(VALUES).prop_map(str::to_string),
            "[a-z_]{1,8}",
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat());
    check(
        "config_random_text_never_panics",
        DEFAULT_CONFIG_CASES,
        prop_oneof![3 => tomlish, 1 => any::<String>()],
        |text| {
            load_and_build(&text, dir.path(), &tokio);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// Rewriter
// ---------------------------------------------------------------------------

/// The moment every token is minted at, so that outputs compare.
const NOW: u64 = 1_767_225_600;

/// The integration tests' config: one EdgeAuth embed for
/// `https://api.vod2.infomaniak.com/res/embed/{share}.html`, ACL `/hls/{share}/*`.
fn rewrite_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let dir = config_dir();
        let path = dir.path().join("gateway.toml");
        let text = config_text("127.0.0.1:9".parse().unwrap(), "");
        std::fs::write(&path, text).unwrap();
        crate::common::build_runtime(&path).expect("test config builds")
    })
}

/// How a URL attribute's value relates to the embed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    /// Matches, with a capture that may go in a token: gets one.
    Minted,
    /// Matches, but the capture could smuggle token fields: left as it is.
    Refused,
    /// Not the embed: left as it is.
    Other,
}

#[derive(Debug, Clone)]
struct Url {
    text: String,
    kind: UrlKind,
    /// The captured share, for a URL that gets a token.
    share: String,
}

#[derive(Debug, Clone, Copy)]
enum Quote {
    Double,
    Single,
    Bare,
}

#[derive(Debug, Clone)]
struct Attr {
    name: &'static str,
    /// `None` for an attribute without a value.
    value: Option<String>,
    quote: Quote,
    /// Set for `src` and `data-src`.
    url: Option<Url>,
}

impl Attr {
    fn raw(&self) -> String {
        match (&self.value, self.quote) {
            (None, _) => self.name.to_string(),
            (Some(v), Quote::Double) => format!("{}=\"{v}\"", self.name),
            (Some(v), Quote::Single) => format!("{}='{v}'", self.name),
            (Some(v), Quote::Bare) => format!("{}={v}", self.name),
        }
    }
}

#[derive(Debug, Clone)]
struct Iframe {
    tag: &'static str,
    attrs: Vec<Attr>,
    /// Whitespace before each attribute.
    gaps: Vec<&'static str>,
    self_closing: bool,
    /// Raw text inside (an iframe's content is never markup).
    inner: String,
}

#[derive(Debug, Clone)]
enum Part {
    /// Bytes that must come out unchanged, holding no live iframe.
    Verbatim(String),
    Iframe(Iframe),
}

const SHARE: &str = "[a-z0-9]{1,13}";

fn embed_url() -> impl Strategy<Value = Url> {
    let origin = select(
        &[
            "https://api.vod2.infomaniak.com",
            "HTTPS://API.VOD2.Infomaniak.COM",
            "//api.vod2.infomaniak.com",
        ][..],
    );
    let param = select(
        &[
            "autoplay=0",
            "muted=1",
            "token=old",
            "token=exp=2~acl=/*~hmac=00",
            "t=5",
            "q=caf\u{e9}",
            "e=\u{1F3AC}",
            "",
        ][..],
    );
    let amp = select(&["&", "&amp;", "&#038;", "&#x26;"][..]);
    let matching = (
        origin,
        prop_oneof![
            4 => SHARE.prop_map(|s| (s, UrlKind::Minted)),
            1 => select(&["a~b", "a!b", "...", "a=b", "a%20b", "a&amp;b", "\u{e9}t\u{e9}"][..])
                .prop_map(|s| (s.to_string(), UrlKind::Refused)),
        ],
        any::<bool>(),
        prop::collection::vec((param, amp), 0..4),
        select(&["", "#t=10", "#", "#a&b"][..]),
        select(&["", " ", "\n ", "\t"][..]),
    )
        .prop_map(|(origin, (share, kind), dot_ref, params, fragment, pad)| {
            // A `.` written as a character reference reads as a `.`.
            let dot = if dot_ref { "&#46;" } else { "." };
            let mut text = format!("{pad}{origin}/res/embed/{share}{dot}html");
            for (i, (param, amp)) in params.iter().enumerate() {
                text.push_str(if i == 0 { "?" } else { amp });
                text.push_str(param);
            }
            text.push_str(fragment);
            text.push_str(pad);
            Url { text, kind, share }
        });
    let other = select(
        &[
            "https://www.youtube-nocookie.com/embed/aBcDeFgHiJk",
            "https://api.vod2.infomaniak.com/res/embed/abc.htm",
            "https://api.vod2.infomaniak.com/res/embed/a/b.html",
            "https://api.vod2.infomaniak.com/res/embed/.html",
            "https://api.vod2.infomaniak.com.evil.example/res/embed/abc.html",
            "http://api.vod2.infomaniak.com/res/embed/abc.html",
            "https://evil.example/?u=https://api.vod2.infomaniak.com/res/embed/abc.html",
            "https://api.vod2.infomaniak.com/res/embed/abc.html.evil",
            "about:blank",
            "",
        ][..],
    )
    .prop_map(|text| Url {
        text: text.to_string(),
        kind: UrlKind::Other,
        share: String::new(),
    });
    prop_oneof![3 => matching, 1 => other]
}

fn plain_attr() -> impl Strategy<Value = Attr> {
    (
        select(
            &[
                "width",
                "height",
                "title",
                "allow",
                "class",
                "allowfullscreen",
                "style",
                "loading",
            ][..],
        ),
        prop_oneof![
            select(
                &[
                    "560",
                    "x y",
                    "autoplay; fullscreen",
                    "a &quot;b&quot;",
                    "it's",
                    "say \"hi\"",
                    "\u{e9}\u{1F600}",
                    "a>b",
                    ""
                ][..]
            )
            .prop_map(|v| Some(v.to_string())),
            Just(None),
        ],
        0u8..3,
    )
        .prop_map(|(name, value, q)| {
            let v = value.as_deref().unwrap_or("x");
            // A bare value cannot be empty or hold whitespace, quotes, `=`, `<`, `>` or `` ` ``.
            let bare_ok =
                !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || "\"'=<>`".contains(c));
            let quote = if v.contains('"') {
                Quote::Single
            } else if v.contains('\'') {
                Quote::Double
            } else {
                match q {
                    0 => Quote::Double,
                    1 => Quote::Single,
                    _ if bare_ok => Quote::Bare,
                    _ => Quote::Double,
                }
            };
            Attr {
                name,
                value,
                quote,
                url: None,
            }
        })
}

fn url_attr(name: &'static str) -> impl Strategy<Value = Attr> {
    (embed_url(), 0u8..3).prop_map(move |(url, q)| {
        let quote = match q {
            // An unquoted value cannot hold whitespace, and may not be empty.
            2 if !url.text.is_empty() && !url.text.contains(char::is_whitespace) => Quote::Bare,
            1 => Quote::Single,
            _ => Quote::Double,
        };
        Attr {
            name,
            value: Some(url.text.clone()),
            quote,
            url: Some(url),
        }
    })
}

fn iframe() -> impl Strategy<Value = Iframe> {
    (
        select(&["iframe", "IFRAME", "iFrame"][..]),
        prop::option::of(url_attr("src")),
        prop::option::of(select(&["src", "SRC", "Src"][..])),
        prop::option::of(url_attr("data-src")),
        prop::collection::vec(plain_attr(), 0..3),
        any::<Index>(),
        prop::collection::vec(select(&[" ", "  ", "\n", "\t", " \n "][..]), 6),
        any::<bool>(),
        select(
            &[
                "",
                "fallback",
                " <iframe src=\"https://api.vod2.infomaniak.com/res/embed/inner.html\"> ",
                "&lt;b&gt;",
            ][..],
        ),
    )
        .prop_map(
            |(tag, src, src_name, data_src, plain, at, gaps, self_closing, inner)| {
                let mut attrs = plain;
                let mut urls = Vec::new();
                if let Some(mut src) = src {
                    src.name = src_name.unwrap_or("src");
                    urls.push(src);
                }
                urls.extend(data_src);
                for url in urls {
                    let at = at.index(attrs.len() + 1);
                    attrs.insert(at, url);
                }
                // No attribute twice (the first would win).
                let mut seen: Vec<String> = Vec::new();
                attrs.retain(|a| {
                    let lower = a.name.to_ascii_lowercase();
                    let new = !seen.contains(&lower);
                    seen.push(lower);
                    new
                });
                Iframe {
                    tag,
                    attrs,
                    gaps,
                    self_closing,
                    inner: inner.to_string(),
                }
            },
        )
}

/// Text with references, non-ASCII and lone `<` and `&`, but no markup.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 .,!?\n]{1,12}",
            select(
                &[
                    "&amp;",
                    "&lt;iframe src=\"https://api.vod2.infomaniak.com/res/embed/t.html\"&gt;",
                    "&#38;",
                    "&copy",
                    "a < b",
                    "a & b",
                    "\u{e9}t\u{e9}",
                    "\u{20AC}",
                    "\u{1F600}",
                    "\u{FFFD}",
                ][..]
            )
            .prop_map(str::to_string),
        ],
        1..4,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A live iframe written as text: inside a comment or raw text it stays text.
const DEAD_IFRAME: &str =
    "<iframe src=\"https://api.vod2.infomaniak.com/res/embed/dead1.html\"></iframe>";

fn verbatim() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => (text(), any::<bool>()).prop_map(|(t, dead)| {
            format!("<!-- {t} {} -->", if dead { DEAD_IFRAME } else { "" })
        }),
        1 => (
            select(&["script", "style", "textarea", "title", "SCRIPT", "noembed", "xmp"][..]),
            text(),
        )
            .prop_map(|(tag, t)| {
                format!("<{tag}>var s = '{DEAD_IFRAME}'; {t}</{tag}>")
            }),
        1 => (
            select(&["img", "a", "div", "iframes", "x-iframe", "video", "p"][..]),
            select(&["src", "href", "data-src"][..]),
            select(&["\"", "'"][..]),
            SHARE,
        )
            .prop_map(|(tag, attr, q, share)| {
                format!(
                    "<{tag} {attr}={q}https://api.vod2.infomaniak.com/res/embed/{share}.html{q}>"
                )
            }),
        1 => select(&[
            "<!DOCTYPE html>", "<p>", "</p>", "<br/>", "<div class=\"a\" id='b' data-x=c>",
            "</div>", "</iframe>", "<?php echo 1 ?>", "<meta charset=\"utf-8\">",
        ][..])
        .prop_map(str::to_string),
    ]
}

fn page() -> impl Strategy<Value = Vec<Part>> {
    prop::collection::vec(
        prop_oneof![3 => verbatim().prop_map(Part::Verbatim), 2 => iframe().prop_map(Part::Iframe)],
        0..16,
    )
}

/// The page's bytes, and what the rewriter must give for them: unmodified
/// bytes as they are, an iframe with a token written as lol_html writes a
/// modified tag (each attribute after one space, a new value in double
/// quotes), with the value `Embed::rewrite` gives.
struct Expected {
    input: String,
    output: String,
    minted: u32,
    refused: u32,
    /// The share of every token, in page order.
    shares: Vec<String>,
}

fn expect(parts: &[Part]) -> Result<Expected, TestCaseError> {
    let runtime = rewrite_runtime();
    let principal = Principal::of(&SessionKey::new("prop-visitor"));
    let visitor = Visitor {
        principal: &principal,
        addr: None,
        now: NOW,
    };
    let mut expected = Expected {
        input: String::new(),
        output: String::new(),
        minted: 0,
        refused: 0,
        shares: Vec::new(),
    };
    for part in parts {
        let iframe = match part {
            Part::Verbatim(text) => {
                expected.input.push_str(text);
                expected.output.push_str(text);
                continue;
            }
            Part::Iframe(iframe) => iframe,
        };
        let mut raw = format!("<{}", iframe.tag);
        let mut rewritten = format!("<{}", iframe.tag);
        let mut modified = false;
        for (attr, gap) in iframe.attrs.iter().zip(iframe.gaps.iter().cycle()) {
            raw.push_str(gap);
            raw.push_str(&attr.raw());
            rewritten.push(' ');
            let Some(url) = &attr.url else {
                rewritten.push_str(&attr.raw());
                continue;
            };
            let result = runtime.embeds.rewrite(&url.text, &visitor);
            match (url.kind, result) {
                (UrlKind::Minted, Some((_, EmbedRewrite::Minted(new)))) => {
                    prop_assert_eq!(
                        new.matches("token=").count(),
                        1,
                        "one token parameter in {:?} from {:?}",
                        new,
                        url.text
                    );
                    rewritten.push_str(&format!(
                        "{}=\"{}\"",
                        attr.name,
                        new.replace('"', "&quot;")
                    ));
                    modified = true;
                    expected.minted += 1;
                    expected.shares.push(url.share.clone());
                }
                (UrlKind::Refused, Some((_, EmbedRewrite::Unsafe(_)))) => {
                    rewritten.push_str(&attr.raw());
                    expected.refused += 1;
                }
                (UrlKind::Other, None) => rewritten.push_str(&attr.raw()),
                (kind, result) => {
                    return Err(TestCaseError::fail(format!(
                        "{:?} generated as {kind:?}, rewritten as {result:?}",
                        url.text
                    )))
                }
            }
        }
        let end = if iframe.self_closing { " />" } else { ">" };
        raw.push_str(end);
        rewritten.push_str(end);
        let close = format!("{}</{}>", iframe.inner, iframe.tag);
        raw.push_str(&close);
        rewritten.push_str(&close);
        expected.input.push_str(&raw);
        expected
            .output
            .push_str(if modified { &rewritten } else { &raw });
    }
    Ok(expected)
}

/// An upstream body with every chunk ready at once.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// What one rewrite gave: the bytes sent, tokens minted and embeds refused,
/// or the error that cut the page off (with the bytes sent before it).
type Rewritten = Result<(Vec<u8>, u32, u32), (Vec<u8>, String)>;

/// Rewrites `chunks` as one response whose Content-Type charset is
/// `charset`, with tokens minted at `NOW`.
fn rewrite_in(chunks: Vec<Bytes>, charset: Option<&str>) -> Rewritten {
    let runtime = rewrite_runtime();
    let stats = Arc::new(RewriteStats::default());
    let tokens = PageTokens {
        embeds: runtime.embeds.clone(),
        now: NOW,
        principal: Principal::of(&SessionKey::new("prop-visitor")),
        addr: None,
        metrics: runtime.metrics.clone(),
    };
    let mut body = RewriteBody::new(
        Chunks(chunks.into()),
        tokens,
        runtime.settings().rewrite,
        encoding_for(charset).expect("an encoding lol_html reads"),
        stats.clone(),
    );
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                }
            }
            Poll::Ready(Some(Err(err))) => return Err((out, err.to_string())),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a local token never waits"),
        }
    }
    Ok((out, stats.minted(), stats.refused()))
}

/// [`rewrite_in`] for a page declared UTF-8, which must not fail.
fn rewrite(chunks: Vec<Bytes>) -> (Vec<u8>, u32, u32) {
    rewrite_in(chunks, Some("utf-8")).unwrap_or_else(|(_, err)| panic!("rewrite failed: {err}"))
}

/// `page` cut at `cuts` (byte offsets, any order, repeats make empty chunks).
fn split(page: &[u8], cuts: &[Index], every_byte: bool) -> Vec<Bytes> {
    let page = Bytes::copy_from_slice(page);
    if every_byte {
        return (0..page.len()).map(|i| page.slice(i..i + 1)).collect();
    }
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(page.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in at {
        chunks.push(page.slice(from..cut));
        from = cut;
    }
    chunks.push(page.slice(from..));
    chunks
}

/// The tokens of `output`, each checked against the key at `NOW` and read
/// for its ACL.
fn tokens_in(output: &str) -> Result<Vec<String>, TestCaseError> {
    let key = KeyMaterial::from_hex(KEY_HEX).unwrap();
    let verifier = EdgeAuth::new(Algorithm::Sha256, &key);
    let mut acls = Vec::new();
    for (at, _) in output.match_indices("token=st=") {
        let token: String = output[at + "token=".len()..]
            .chars()
            .take_while(|c| !matches!(c, '&' | '"' | '\'' | '#' | ' ' | '>'))
            .collect();
        if let Err(err) = verifier.verify_with(&token, NOW + 1, 0, "") {
            return Err(TestCaseError::fail(format!(
                "token {token:?} does not verify: {err:?}"
            )));
        }
        let acl = token
            .split('~')
            .find_map(|field| field.strip_prefix("acl="))
            .unwrap_or_default();
        acls.push(acl.to_string());
    }
    Ok(acls)
}

/// For any page and any split into chunks, the rewriter sends the bytes of
/// the one-chunk run; those are the page with exactly one token (which
/// verifies, for the iframe's video) in every matching iframe URL outside
/// comments and raw text, and every other byte as it was.
#[test]
fn rewrite_is_the_same_for_any_split_and_touches_only_matching_iframes() {
    check(
        "rewrite_is_the_same_for_any_split_and_touches_only_matching_iframes",
        DEFAULT_REWRITE_CASES,
        (
            page(),
            prop::collection::vec(any::<Index>(), 0..12),
            prop::collection::vec(any::<Index>(), 1..4),
            prop::bool::weighted(0.1),
        ),
        |(parts, cuts, more_cuts, every_byte)| {
            let expected = expect(&parts)?;
            let page = expected.input.as_bytes();
            let (whole, minted, refused) = rewrite(vec![Bytes::copy_from_slice(page)]);
            let whole_text = String::from_utf8(whole.clone()).expect("UTF-8 in, UTF-8 out");
            prop_assert_eq!(&whole_text, &expected.output, "page {:?}", expected.input);
            prop_assert_eq!(minted, expected.minted);
            prop_assert_eq!(refused, expected.refused);
            if std::env::var_os("PROPERTIES_SHOW").is_some() {
                eprintln!("--- input\n{}\n--- output\n{whole_text}", expected.input);
            }
            let acls = tokens_in(&whole_text)?;
            let want: Vec<String> = expected
                .shares
                .iter()
                .map(|s| format!("/hls/{s}/*"))
                .collect();
            prop_assert_eq!(acls, want, "one token per matching URL, in page order");
            for (cuts, every_byte) in [(&cuts, every_byte), (&more_cuts, false)] {
                let chunks = split(page, cuts, every_byte);
                let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
                let (out, minted_split, refused_split) = rewrite(chunks);
                prop_assert!(
                    out == whole,
                    "chunks {:?} of {:?}:\n split: {:?}\n whole: {:?}",
                    sizes,
                    expected.input,
                    String::from_utf8_lossy(&out),
                    whole_text
                );
                prop_assert_eq!(minted_split, minted);
                prop_assert_eq!(refused_split, refused);
            }
            Ok(())
        },
    );
}

/// Pieces of markup soup: tags cut anywhere, quotes, comments, raw text,
/// character references, meta charsets, and bytes that are not UTF-8.
const SOUP: &[&[u8]] = &[
    b"<iframe src=\"https://api.vod2.infomaniak.com/res/embed/abc.html\">",
    b"<iframe data-src='//api.vod2.infomaniak.com/res/embed/v1.html?q=\xe9'>",
    b"<iframe src=https://api.vod2.infomaniak.com/res/embed/sj.html?q=\x82\xa0>",
    b"<iframe src=\"https://api.vod2.infomaniak.com/res/embed/u8.html?q=\xc3\xa9\">",
    b"<iframe title=\"\xe9\" src=\"https://api.vod2.infomaniak.com/res/embed/t.html#\x82\">",
    b"<iframe",
    b"<IFRAME ",
    b" src=",
    b" data-src=",
    b"\"",
    b"'",
    b">",
    b"/>",
    b"</iframe>",
    b"https://api.vod2.infomaniak.com/res/embed/",
    b"//api.vod2.infomaniak.com/res/embed/abc",
    b".html",
    b"&#46;html",
    b"?a=1",
    b"&amp;",
    b"&token=x",
    b"#f",
    b"<!--",
    b"-->",
    b"--!>",
    b"<!-->",
    b"<script>",
    b"</script>",
    b"<style>",
    b"</style",
    b"<textarea>",
    b"</textarea>",
    b"<plaintext>",
    b"<svg>",
    b"</svg>",
    b"<math>",
    b"<![CDATA[",
    b"]]>",
    b"<template>",
    b"<noscript>",
    b"</noscript>",
    b"<meta charset=\"windows-1252\">",
    b"<meta charset=shift_jis>",
    b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb18030\">",
    b"<meta charset=\"utf-16\">",
    b"<?xml version=\"1.0\"?>",
    b"<!DOCTYPE html>",
    b"\xe9",
    b"\x82\xa0",
    b"\xc3\xa9",
    b"\xf0\x9f\x98",
    b"\xef\xbf\xbd",
    b"\x00",
    b" ",
    b"\n",
    b"=",
    b"<",
    b"&",
];

/// Charsets a response may declare (`None`: not declared, a meta tag may say).
const CHARSETS: &[Option<&str>] = &[
    None,
    Some("utf-8"),
    Some("windows-1252"),
    Some("iso-8859-1"),
    Some("shift_jis"),
    Some("gb18030"),
    Some("euc-kr"),
    Some("koi8-r"),
];

/// For any byte soup, in any charset and any split into chunks, the
/// rewriter sends the bytes of the one-chunk run (or fails alike), with the
/// same counts.
static SOUP_TOKENS: AtomicU64 = AtomicU64::new(0);

#[test]
fn rewrite_of_any_byte_soup_is_the_same_for_any_split() {
    SOUP_TOKENS.store(0, Ordering::Relaxed);
    check(
        "rewrite_of_any_byte_soup_is_the_same_for_any_split",
        DEFAULT_REWRITE_CASES,
        (
            prop::collection::vec(
                prop_oneof![
                    4 => select(SOUP).prop_map(<[u8]>::to_vec),
                    1 => prop::collection::vec(any::<u8>(), 1..4),
                    1 => "[a-z0-9]{1,6}".prop_map(String::into_bytes),
                ],
                0..48,
            ),
            select(CHARSETS),
            prop::collection::vec(any::<Index>(), 0..12),
            prop::bool::weighted(0.15),
        ),
        |(pieces, charset, cuts, every_byte)| {
            let page = pieces.concat();
            let whole = rewrite_in(vec![Bytes::copy_from_slice(&page)], charset);
            if let Ok((_, minted, _)) = &whole {
                SOUP_TOKENS.fetch_add(u64::from(*minted), Ordering::Relaxed);
            }
            let chunks = split(&page, &cuts, every_byte);
            let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
            let parts = rewrite_in(chunks, charset);
            prop_assert!(
                parts == whole,
                "charset {:?}, chunks {:?} of {:?}:\n split: {:?}\n whole: {:?}",
                charset,
                sizes,
                String::from_utf8_lossy(&page),
                parts.as_ref().map(|(out, ..)| String::from_utf8_lossy(out)),
                whole.as_ref().map(|(out, ..)| String::from_utf8_lossy(out)),
            );
            Ok(())
        },
    );
    eprintln!(
        "properties::rewrite_of_any_byte_soup_is_the_same_for_any_split: {} tokens minted",
        SOUP_TOKENS.load(Ordering::Relaxed)
    );
}
