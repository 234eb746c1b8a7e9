//! Path spellings: every spelling of a path decodes to its bytes, and none is more open than the plain one.

use super::path_model::{access_name, after_host, longest_prefix, tables, FOLDED_TABLES, S};
use super::*;

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
    /// Only spellings that every reading reads as the plain path: no `;`
    /// parameters (kept by some servers) and none that starts with "//" (a
    /// host to a URL parser).
    same_readings: bool,
    /// Random choices, consumed in order (wrapping).
    choices: Vec<u32>,
}

/// A spelled path: the text sent, the bytes its strict reading must be,
/// and those of its reading that keeps `;` parameters.
struct Spelled {
    text: String,
    strict: Vec<u8>,
    kept: Vec<u8>,
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

    /// The `;` parameters choice `r` spells (none for `same_readings`).
    fn params(&self, r: u32) -> &'static str {
        if self.same_readings {
            ""
        } else {
            PARAMS[r as usize % PARAMS.len()]
        }
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
        let mut kept: Vec<u8> = Vec::new();
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
        let solidus = |text: &mut String, strict: &mut Vec<u8>, kept: &mut Vec<u8>, r: u32| {
            let bytes = "\u{FF0F}".as_bytes();
            if self.raw_unicode && r % 2 == 0 {
                text.push('\u{FF0F}');
            } else {
                escape(text, bytes, r % 4 < 2);
            }
            strict.extend_from_slice(bytes);
            kept.extend_from_slice(bytes);
        };
        for word in &self.words {
            let r = next();
            if full_width && after_plain_word && r % 5 == 0 {
                solidus(&mut text, &mut strict, &mut kept, r >> 3);
            } else {
                // Empty segments before it: "//", "/;x/"; at the start, a
                // "//" is a host to a URL parser.
                let empty = if self.same_readings && text.is_empty() {
                    0
                } else {
                    (r >> 3) % 4 / 2
                };
                for _ in 0..empty {
                    text.push('/');
                    let params = self.params(next());
                    text.push_str(params);
                    if !params.is_empty() {
                        kept.push(b'/');
                        kept.extend_from_slice(params.as_bytes());
                    }
                }
                text.push('/');
                strict.push(b'/');
                kept.push(b'/');
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
                kept.extend_from_slice(&bytes);
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
                    kept.extend_from_slice(invisible.as_bytes());
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
                    kept.extend_from_slice(c.as_bytes());
                }
            }
            let params = self.params(r >> 8);
            text.push_str(params);
            kept.extend_from_slice(params.as_bytes());
            after_plain_word = params.is_empty();
            last_empty = false;
        }
        if self.trailing_slash && !self.words.is_empty() {
            let r = next();
            if full_width && after_plain_word && r % 5 == 0 {
                solidus(&mut text, &mut strict, &mut kept, r >> 3);
            } else {
                let params = self.params(r >> 3);
                text.push('/');
                text.push_str(params);
                kept.push(b'/');
                kept.extend_from_slice(params.as_bytes());
                last_empty = true;
            }
        }
        if text.is_empty() {
            text.push('/');
        }
        if last_empty {
            strict.push(b'/');
        }
        if kept.is_empty() {
            kept.push(b'/');
        }
        Spelled { text, strict, kept }
    }
}

fn spelling(fold: bool, same_readings: bool) -> impl Strategy<Value = Spelling> {
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
                same_readings,
                choices,
            },
        )
}

/// Spellings that differ only in escapes and `//` (not at the start)
/// decode to the plain path's bytes and get the very route of the plain
/// path. (`;params` are a reading of their own to servers that keep them.)
#[test]
fn path_spellings_with_the_same_strict_reading_get_the_same_route() {
    let strategy = (spelling(false, true), any::<u64>()).prop_map(|(mut s, seed)| {
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
        spelling(true, false),
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
                let kept_route = longest_prefix(routes, &spelled.kept);
                prop_assert!(
                    kept_route != S || got.access == S,
                    "{:?}: reading with ';' kept under a session route, got {:?}",
                    spelled.text,
                    got.access
                );
                if let Some(after_host) = after_host(&spelled.text) {
                    let host_strict = normalize(after_host);
                    prop_assert!(host_strict.is_ok(), "{:?}", after_host);
                    let host_route = longest_prefix(routes, &host_strict.unwrap());
                    prop_assert!(
                        host_route != S || got.access == S,
                        "{:?}: path after a host under a session route, got {:?}",
                        spelled.text,
                        got.access
                    );
                }
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
