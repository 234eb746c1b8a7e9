//! Reading a request the way servers behind us might.
//!
//! A path has several readings, and routes judge it by the strictest (see
//! [`super::route`]):
//!
//! - the strict reading ([`normalize`]): percent-decoded, `;` parameters
//!   dropped from each segment, `//` collapsed, so that `/vid%65os/x` or
//!   `/videos;x=1/y` is judged as the CMS will see it;
//! - the folded reading (`folded_reading`): the strict one as a lenient
//!   server or database reads it: case folded, trailing dots and spaces of
//!   a segment dropped (Windows, IIS), and, for a path that holds non-ASCII
//!   characters, compatibility forms (full-width letters, `ſ`), accents
//!   (MySQL's `utf8mb4_0900_ai_ci`), invisible characters (zero-width
//!   space, soft hyphen) and Unicode spaces and C1 controls (read as
//!   spaces) folded as well. Route prefixes are folded the same way;
//! - the trimmed reading (`trimmed_reading`), of paths only: the folded one
//!   with spaces at the start of a segment dropped too (Java's `trim`,
//!   .NET's `Trim`) and an NTFS stream suffix (`videos::$DATA`) cut off;
//! - for a path with a `;` (or `%3B`), the kept reading ([`kept_reading`]):
//!   the strict one with `;` parameters kept as part of their segment, as
//!   nginx, Apache, PHP, Node and Django read them (`/videos/free;/x` is a
//!   segment `free;` under `/videos/`), then folded and trimmed alike;
//! - for a path with an escaped `?` or `#` (`%3F`, `%23`), each of these of
//!   the path cut there, as a server that decodes before it splits off the
//!   query reads it, with what follows the `%3F` read as a query (see
//!   [`super::route`]);
//! - for a path that starts with `//`, each of these of the path a URL
//!   parser reads after a host ([`host_reading`]).
//!
//! A dot segment, in any spelling any reading finds (`..`, `.;x`, `%2e%2e`,
//! `...`, `．．`), is refused: browsers resolve them before sending, and
//! servers disagree on what they mean (`..;` is `..` to Tomcat only).
//! So are ASCII control characters. The request is forwarded as sent.
//!
//! Query parameter names are read in [`super::params`].

use std::borrow::Cow;

use caseless::Caseless;
use thiserror::Error;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A request path the gateway refuses to judge (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// `..` at the root, which would climb above it.
    #[error("path climbs above the root")]
    AboveRoot,
    /// A `.` or `..` segment in any spelling: browsers never send one, and
    /// servers disagree on what it means.
    #[error("path holds a dot segment")]
    DotSegment,
    /// A backslash, control character (NUL, tab, CR, LF, ...) or encoded
    /// slash: servers disagree on what they mean.
    #[error("path holds a backslash, control character or encoded slash")]
    Ambiguous,
    /// A %-escape left once the path is decoded (`%2565`), or an overlong
    /// UTF-8 form (`%C0%AE`): a server that decodes twice, or an old
    /// decoder, reads another path than the one judged.
    #[error("path holds a double %-escape or an overlong UTF-8 form")]
    DoubleEncoded,
    /// A `%` not followed by two hex digits.
    #[error("path has a bad percent-escape")]
    BadEscape,
}

/// Whether `path` is its own strict and folded reading: absolute, ASCII,
/// lower case, with nothing to decode or drop (`%`, `;`, `:`, `\`, control
/// characters), no empty segment, none that starts with a dot or space or
/// ends with a dot or space.
/// One pass, so the path nearly every request has costs one look per byte;
/// any other path is read by [`normalize`] and `folded_reading`.
pub(super) fn is_plain(path: &[u8]) -> bool {
    let Some((b'/', rest)) = path.split_first() else {
        return false;
    };
    let mut after_slash = true;
    let mut after_dot_or_space = false;
    for &byte in rest {
        match byte {
            b'/' if after_slash || after_dot_or_space => return false,
            b'/' => after_slash = true,
            b'.' | b' ' if after_slash => return false,
            b'.' | b' ' => {
                after_slash = false;
                after_dot_or_space = true;
                continue;
            }
            b'%' | b';' | b':' | b'\\' | 0..=0x1F | 0x7F | b'A'..=b'Z' | 0x80.. => return false,
            _ => after_slash = false,
        }
        after_dot_or_space = false;
    }
    !after_dot_or_space
}

/// What a reading does with the `;` parameters of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Params {
    /// Dropped, from the first `;` of a segment: Tomcat, Jetty, Spring.
    Dropped,
    /// Kept as part of the segment: nginx, Apache, PHP, Node, Django.
    Kept,
}

/// The strict reading of a request path; borrows when nothing needs changing.
///
/// Percent-escapes are decoded, `;` parameters dropped from each segment and
/// `//` collapsed. A `.` or `..` segment (also `%2e`, `.%2e`, `..;x`) is
/// refused, and so are encoded slashes, backslashes and control characters:
/// servers disagree on them, so no single reading is safe.
pub fn normalize(path: &str) -> Result<Cow<'_, [u8]>, PathError> {
    strict_reading(path, Params::Dropped)
}

/// The strict reading of `path` with `;` parameters kept (see
/// [`Params::Kept`]), or `None` when it holds no `;`, raw or `%3B`, so that
/// the reading is [`normalize`]'s. Judge it after `normalize`, which refuses
/// what both refuse and more (`..;x` is no dot segment here).
pub(super) fn kept_reading(path: &str) -> Result<Option<Vec<u8>>, PathError> {
    let escaped = |w: &[u8]| w[0] == b'%' && w[1] == b'3' && w[2].eq_ignore_ascii_case(&b'b');
    let bytes = path.as_bytes();
    if !bytes.contains(&b';') && !bytes.windows(3).any(escaped) {
        return Ok(None);
    }
    strict_reading(path, Params::Kept).map(|kept| Some(kept.into_owned()))
}

/// Whether a strict reading holds a character the folded reading reads as
/// `;` (full-width, small, or the Greek question mark), so that a folded
/// reading that keeps `;` parameters differs from one that drops them.
pub(super) fn folds_to_semicolon(strict: &[u8]) -> bool {
    const SEMICOLONS: [&[u8]; 3] = [
        "\u{FF1B}".as_bytes(),
        "\u{FE54}".as_bytes(),
        "\u{37E}".as_bytes(),
    ];
    !strict.is_ascii()
        && SEMICOLONS
            .iter()
            .any(|semicolon| strict.windows(semicolon.len()).any(|w| w == *semicolon))
}

fn strict_reading(path: &str, params: Params) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = bytes.windows(2).any(|w| w == b"//" || w == b"/.")
        || bytes
            .iter()
            .any(|&b| matches!(b, b'%' | b'\\' | b';' | 0..=0x1F | 0x7F));
    if !needs_work {
        return Ok(Cow::Borrowed(bytes));
    }
    let decoded = percent_decode(bytes)?;
    if decoded.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return Err(PathError::Ambiguous);
    }
    if has_escape(&decoded) || has_overlong(&decoded) {
        return Err(PathError::DoubleEncoded);
    }
    let mut out = Vec::with_capacity(decoded.len());
    let mut trailing = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        let bare = match params {
            Params::Dropped => segment.split(|&b| b == b';').next().unwrap_or_default(),
            Params::Kept => segment,
        };
        match bare {
            b"" => trailing = true,
            b".." if out.is_empty() => return Err(PathError::AboveRoot),
            b"." | b".." => return Err(PathError::DotSegment),
            _ => {
                out.push(b'/');
                out.extend_from_slice(bare);
                trailing = false;
            }
        }
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

/// The path a URL parser reads in a request path that starts with `//`, or
/// `None` for one that does not. PHP's `parse_url` and Node's `URL` (which
/// skips any number of slashes first) take what comes before the next `/`
/// for a host: to them "//public/videos/x" is the path "/videos/x", and
/// "//public" the path "/".
pub(super) fn host_reading(path: &str) -> Option<&str> {
    let host = path.strip_prefix("//")?.trim_start_matches('/');
    Some(host.find('/').map_or("/", |end| &host[end..]))
}

/// The folded reading of a strict path (see the module doc), or `None` when
/// it is the strict path itself (ASCII, lower case, no segment ending in a
/// dot or space): then nothing is computed or allocated. Route prefixes are
/// folded this way too; see [`trimmed_reading`] for what only paths get.
///
/// The Unicode folding runs only for a path that holds non-ASCII bytes; one
/// that is not UTF-8 is read as Windows-1252, as legacy servers do.
pub(super) fn folded_reading(strict: &[u8], params: Params) -> Result<Option<Vec<u8>>, PathError> {
    if strict.is_ascii() {
        let loose = strict.iter().any(u8::is_ascii_uppercase)
            || strict
                .split(|&b| b == b'/')
                .any(|segment| segment.ends_with(b".") || segment.ends_with(b" "));
        if !loose {
            return Ok(None);
        }
        return lenient_segments(strict, false, params).map(Some);
    }
    let text = match std::str::from_utf8(strict) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(strict)
                .0
        }
    };
    lenient_segments(unicode_fold(&text).as_bytes(), false, params).map(Some)
}

/// The folded reading `folded` (or a strict path that is its own) as a
/// server that also trims a segment's leading spaces (Java's `trim`, .NET's
/// `Trim`) or drops an NTFS stream suffix (`videos::$DATA`) reads it, or
/// `None` when that changes nothing.
///
/// A reading of paths only, never of route prefixes: folded so, the prefix
/// of a public route such as "/wiki/Special:Login/" would grow to cover
/// "/wiki/special/" and take paths from a gated "/wiki/".
pub(super) fn trimmed_reading(folded: &[u8], params: Params) -> Result<Option<Vec<u8>>, PathError> {
    let trims = folded.contains(&b':') || folded.windows(2).any(|pair| pair == b"/ ");
    if !trims {
        return Ok(None);
    }
    lenient_segments(folded, true, params).map(Some)
}

/// Rebuilds `path` (starting with `/`) segment by segment as a lenient
/// server reads it: ASCII lower case, `;` parameters (as `params` says) and
/// trailing dots and spaces dropped, empty segments collapsed; with `trim`,
/// also an NTFS stream suffix (from the first `:`) and leading spaces. A
/// segment of only dots (and spaces) is a dot segment to such a server.
fn lenient_segments(path: &[u8], trim: bool, params: Params) -> Result<Vec<u8>, PathError> {
    // Folding can make a backslash of a full-width one (U+FF3C).
    if path.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return Err(PathError::Ambiguous);
    }
    let mut out = Vec::with_capacity(path.len());
    let mut trailing = false;
    for segment in path.split(|&b| b == b'/').skip(1) {
        let mut bare = match params {
            Params::Dropped => segment.split(|&b| b == b';').next().unwrap_or_default(),
            Params::Kept => segment,
        };
        if trim {
            bare = bare.split(|&b| b == b':').next().unwrap_or_default();
            bare = &bare[bare.iter().take_while(|&&b| b == b' ').count()..];
        }
        let kept = bare.len()
            - bare
                .iter()
                .rev()
                .take_while(|&&b| b == b'.' || b == b' ')
                .count();
        if kept == 0 {
            if bare.contains(&b'.') {
                return Err(PathError::DotSegment);
            }
            trailing = true;
            continue;
        }
        out.push(b'/');
        out.extend(bare[..kept].iter().map(u8::to_ascii_lowercase));
        trailing = false;
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Compatibility caseless form (NFKD of the case-folded NFKD, as Unicode
/// defines it), without marks (accents) or default-ignorable characters, and
/// with the letters an accent-insensitive collation reads as plain ones.
/// Left decomposed: what the route table compares are both folded alike.
fn unicode_fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let folded = text
        .chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkd();
    for c in folded {
        if is_combining_mark(c) || is_default_ignorable(c) {
            continue;
        }
        match c {
            // Trimmed as spaces by .NET's `Trim` and Python's `strip`; NFKD
            // already made a space of most (no-break, ideographic, thin).
            c if c.is_whitespace() || c.is_control() => out.push(' '),
            // Ligatures and letters with a stroke: a base letter with a
            // secondary difference to a collation at primary strength.
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            'ø' => out.push('o'),
            'đ' => out.push('d'),
            'ħ' => out.push('h'),
            'ł' => out.push('l'),
            'ŧ' => out.push('t'),
            // Dotless i: upper-cased it is "I", so a server comparing upper case reads "i".
            'ı' => out.push('i'),
            _ => out.push(c),
        }
    }
    out
}

/// Unicode's Default_Ignorable_Code_Point: characters with no visible form
/// that text processes (and some databases' collations) skip.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Whether `bytes` holds a `%` and two hex digits.
fn has_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Whether `bytes` holds an overlong UTF-8 form: a two-byte one (`C0` or
/// `C1` and a continuation byte), or a three- or four-byte one too short for
/// its length (`E0 80..9F`, `F0 80..8F`). Old decoders read `C0 AE` as `.`.
/// A Windows-1252 path keeps its `À` and `Á` (`C0`, `C1`) before a letter.
fn has_overlong(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| match pair[0] {
        0xC0 | 0xC1 => (0x80..=0xBF).contains(&pair[1]),
        0xE0 => (0x80..=0x9F).contains(&pair[1]),
        0xF0 => (0x80..=0x8F).contains(&pair[1]),
        _ => false,
    })
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

#[cfg(test)]
mod tests;
