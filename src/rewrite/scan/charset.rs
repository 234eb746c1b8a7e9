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

/// The encoding a meta tag switches to, if any. Its attributes are read in
/// the encoding in force before it.
pub(super) fn meta_encoding(
    meta: &Parsed<'_>,
    encoding: &'static Encoding,
    quirks: bool,
) -> (Option<&'static Encoding>, u32) {
    let mut deviations = 0;
    let mut read = |name: &[u8]| {
        meta.first(name).map(|raw| {
            let (text, deviated) = decode(raw, encoding, quirks);
            deviations += u32::from(deviated);
            text.into_owned()
        })
    };
    let from_charset = read(b"charset").and_then(|label| ascii_compatible(label.as_bytes()));
    let found = from_charset.or_else(|| {
        let http_equiv = read(b"http-equiv")?;
        if !http_equiv.eq_ignore_ascii_case("content-type") {
            return None;
        }
        let content = read(b"content")?;
        ascii_compatible(content_charset(&content)?.as_bytes())
    });
    (found, deviations)
}

fn ascii_compatible(label: &[u8]) -> Option<&'static Encoding> {
    Encoding::for_label_no_replacement(label).filter(|e| e.is_ascii_compatible())
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
