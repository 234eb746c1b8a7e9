//! `<meta charset>` and `<meta http-equiv=content-type>`, read as lol_html's
//! `adjust_charset_on_meta_tag` reads them when the response did not
//! declare a charset: the first meta naming an ASCII-compatible encoding
//! switches the page's encoding for the bytes after it; later ones do not.
//!
//! lol_html reads the `content` attribute with the `mime` crate's parser:
//! the whole value must parse as a media type for its `charset` parameter
//! to count. [`content_charset`] follows that grammar.

use encoding_rs::Encoding;

use super::attributes::{decode, Parsed};
use crate::syntax::is_token;

/// How many of a page's first bytes browsers look through for a meta
/// charset before they parse it (HTML's prescan).
pub(super) const PRESCAN_BYTES: usize = 1024;

/// Whether `bytes`, a page's first, hold a `<meta` that a browser may read
/// as naming an encoding that is not ASCII-compatible. Read more widely than
/// any browser reads: every `<meta` in the bytes wherever it stands (in
/// `noscript`, `script` or a comment), every `charset` in it (duplicates,
/// in `content`), character references decoded.
pub(super) fn prescan_unreadable(bytes: &[u8]) -> bool {
    let mut from = 0;
    while let Some(found) = find_meta(&bytes[from..]) {
        let start = from + found + 5;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(bytes.len(), |n| start + n);
        let tag = String::from_utf8_lossy(&bytes[start..end]);
        let tag = htmlize::unescape_attribute(tag.as_ref()).to_ascii_lowercase();
        if names_unreadable(&tag) {
            return true;
        }
        from = start;
    }
    false
}

// Where the first `<meta` (any case) in `bytes` begins: `memchr` from one
// `<` to the next, since these bytes are looked through on every page that
// declares no charset, up to its first iframe.
fn find_meta(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'<', &bytes[from..]) {
        let lt = from + found;
        if bytes
            .get(lt + 1..lt + 5)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"meta"))
        {
            return Some(lt);
        }
        from = lt + 1;
    }
    None
}

// Whether any "charset" in `tag` (lowercased) is followed by the label of an
// encoding that is not ASCII-compatible.
fn names_unreadable(tag: &str) -> bool {
    tag.match_indices("charset").any(|(at, _)| {
        let rest = tag[at + 7..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '"' | '\''));
        let label: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            .collect();
        match Encoding::for_label(label.as_bytes()) {
            Some(found) => {
                !found.is_ascii_compatible()
                    && found != encoding_rs::UTF_16LE
                    && found != encoding_rs::UTF_16BE
            }
            None => false,
        }
    })
}

/// What a meta tag says of the page's encoding.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MetaCharset {
    /// Nothing the scanner follows.
    None,
    /// The bytes after it are in this encoding.
    Switch(&'static Encoding),
    /// An encoding whose bytes below 0x80 are not always ASCII (ISO-2022-JP,
    /// a replacement encoding): a browser reads the markup after it
    /// otherwise than the scanner can.
    Unreadable,
}

/// What a meta tag says of the encoding. Its attributes are read in the
/// encoding in force before it.
pub(super) fn meta_encoding(
    meta: &Parsed<'_>,
    encoding: &'static Encoding,
    quirks: bool,
) -> (MetaCharset, u32) {
    let mut deviations = 0;
    let mut read = |name: &[u8]| {
        meta.first(name).map(|raw| {
            let (text, deviated) = decode(raw, encoding, quirks);
            deviations += u32::from(deviated);
            text.into_owned()
        })
    };
    let content = match read(b"charset") {
        Some(label) => Err(label),
        None => Ok(read(b"http-equiv")
            .filter(|h| h.eq_ignore_ascii_case("content-type"))
            .and_then(|_| read(b"content"))),
    };
    let label = match content {
        Err(label) => Some(label),
        Ok(None) => None,
        Ok(Some(content)) => {
            // Browsers find the charset as HTML's "extract a character
            // encoding from a meta element" does; lol_html needs a media type.
            let lenient = extract_charset(&content).map(str::to_owned);
            let strict = content_charset(&content).map(str::to_owned);
            if lenient != strict {
                deviations += 1;
            }
            if quirks {
                strict
            } else {
                lenient
            }
        }
    };
    let Some(label) = label else {
        return (MetaCharset::None, deviations);
    };
    let said = match Encoding::for_label(label.as_bytes()) {
        None => MetaCharset::None,
        Some(found) if found.is_ascii_compatible() => {
            if found == encoding_rs::X_USER_DEFINED {
                // HTML reads x-user-defined in a meta as windows-1252.
                MetaCharset::Switch(encoding_rs::WINDOWS_1252)
            } else {
                MetaCharset::Switch(found)
            }
        }
        // HTML reads a meta's UTF-16 as UTF-8: the bytes are ASCII-compatible.
        Some(found) if found == encoding_rs::UTF_16LE || found == encoding_rs::UTF_16BE => {
            MetaCharset::Switch(encoding_rs::UTF_8)
        }
        Some(_) => MetaCharset::Unreadable,
    };
    // lol_html follows ASCII-compatible labels only, with no mapping.
    let lol_html = match Encoding::for_label_no_replacement(label.as_bytes()) {
        Some(found) if found.is_ascii_compatible() => MetaCharset::Switch(found),
        _ => MetaCharset::None,
    };
    if lol_html != said {
        deviations += 1;
    }
    (if quirks { lol_html } else { said }, deviations)
}

/// The charset a meta's `content` names, as HTML's "algorithm for extracting
/// a character encoding from a meta element" finds it: after the first
/// "charset" followed by `=`, quoted or up to a space or `;`.
pub(super) fn extract_charset(content: &str) -> Option<&str> {
    let bytes = content.as_bytes();
    let is_space = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
    let mut from = 0;
    loop {
        let found = bytes[from..]
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"charset"))?;
        let mut at = from + found + 7;
        while bytes.get(at).copied().is_some_and(is_space) {
            at += 1;
        }
        if bytes.get(at) != Some(&b'=') {
            from = at;
            continue;
        }
        at += 1;
        while bytes.get(at).copied().is_some_and(is_space) {
            at += 1;
        }
        return match *bytes.get(at)? {
            quote @ (b'"' | b'\'') => {
                let end = bytes[at + 1..].iter().position(|&b| b == quote)?;
                Some(&content[at + 1..at + 1 + end])
            }
            _ => {
                let end = bytes[at..]
                    .iter()
                    .position(|&b| is_space(b) || b == b';')
                    .map_or(bytes.len(), |n| at + n);
                Some(&content[at..end])
            }
        };
    }
}

/// The `charset` parameter of a media type, if `text` parses as one the
/// way the `mime` crate (0.3) parses it: `type/subtype` of token bytes,
/// then `;`-separated `name=value` parameters, a value a token or a
/// non-empty quoted string; spaces only before a parameter name and after
/// a quoted value.
pub(super) fn content_charset(text: &str) -> Option<&str> {
    if text == "*/*" {
        return None;
    }
    let bytes = text.as_bytes();
    let slash = bytes.iter().position(|&b| !is_token(b))?;
    if slash == 0 || bytes[slash] != b'/' {
        return None;
    }
    let subtype_start = slash + 1;
    let mut i = subtype_start;
    loop {
        match bytes.get(i) {
            None => return None,
            Some(b';') if i > subtype_start => break,
            Some(&b) if is_token(b) => i += 1,
            Some(_) => return None,
        }
    }
    let mut charset = None;
    let mut start = i + 1;
    while start < bytes.len() {
        // The name, after any spaces.
        if bytes[start] == b' ' {
            start += 1;
            continue;
        }
        let mut i = start;
        let name = loop {
            match bytes.get(i) {
                Some(b'=') if i > start => break &text[start..i],
                Some(&b) if is_token(b) => i += 1,
                _ => return None,
            }
        };
        start = i + 1;
        let value;
        if bytes.get(start) == Some(&b'"') {
            start += 1;
            let mut i = start;
            loop {
                match bytes.get(i) {
                    Some(b'"') if i > start => break,
                    Some(&b) if b > 31 && b != 127 => i += 1,
                    _ => return None,
                }
            }
            value = &text[start..i];
            i += 1;
            loop {
                match bytes.get(i) {
                    None => break,
                    Some(b';') => {
                        i += 1;
                        break;
                    }
                    Some(b' ') => i += 1,
                    Some(_) => return None,
                }
            }
            start = i;
        } else {
            let mut i = start;
            loop {
                match bytes.get(i) {
                    None => break,
                    Some(b';') if i > start => break,
                    Some(&b) if is_token(b) => i += 1,
                    Some(_) => return None,
                }
            }
            value = &text[start..i];
            start = i + 1;
        }
        if charset.is_none() && name.eq_ignore_ascii_case("charset") {
            charset = Some(value);
        }
    }
    charset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_charset_as_browsers_do() {
        for (text, charset) in [
            ("text/html; charset=shift_jis; x", Some("shift_jis")),
            ("text/html ; charset = 'iso-2022-jp'", Some("iso-2022-jp")),
            ("charset=koi8-r", Some("koi8-r")),
            ("text/html; charsetx; charset=\"utf-8\" x", Some("utf-8")),
            ("text/html; charset=\"unclosed", None),
            ("text/html; charset=", None),
            ("text/html", None),
        ] {
            assert_eq!(extract_charset(text), charset, "{text:?}");
        }
    }

    #[test]
    fn reads_the_charset_parameter_as_the_mime_crate_does() {
        for (text, charset) in [
            ("text/html; charset=windows-1251", Some("windows-1251")),
            ("text/html;charset=utf-8", Some("utf-8")),
            ("text/html;  charset=\"koi8-r\"  ", Some("koi8-r")),
            ("text/html; a=b; CharSet=latin1", Some("latin1")),
            ("text/html; charset=a; charset=b", Some("a")),
            ("text/html;", None),
            ("text/html", None),
            ("*/*", None),
            // Whatever does not parse as a whole gives nothing.
            ("text/html ; charset=latin1", None),
            ("text/html; charset=latin1; x", None),
            ("text/html; charset= latin1", None),
            ("text/html;\tcharset=latin1", None),
            ("charset=latin1", None),
            ("/html; charset=latin1", None),
            ("text/; charset=latin1", None),
            ("text/html; charset=\"\"", None),
            ("text/html; charset=\"latin1", None),
            ("text/html; charset=\"latin1\"x", None),
        ] {
            assert_eq!(content_charset(text), charset, "{text:?}");
        }
    }
}
