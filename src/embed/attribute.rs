//! How an iframe's URL attribute reads as a URL: whitespace, character
//! references, and the split into path, query and fragment.

use std::borrow::Cow;

/// Whitespace HTML strips from around a URL attribute.
pub(super) fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C')
}

/// Splits a URL into what comes before `?`, the query, and `#fragment`.
pub(super) fn split_url(url: &str) -> (&str, &str, &str) {
    let split = url.find(['?', '#']).unwrap_or(url.len());
    let (base, tail) = url.split_at(split);
    match tail.strip_prefix('?') {
        Some(q) => {
            let (query, fragment) = q.split_at(q.find('#').unwrap_or(q.len()));
            (base, query, fragment)
        }
        None => (base, "", tail),
    }
}

/// Decodes the character references a URL attribute may carry (numeric, and
/// the named ones for `& " < > '`); borrows when there are none.
pub(super) fn decode_references(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut decoded_any = false;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match reference_at(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
                decoded_any = true;
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    if decoded_any {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    }
}

/// The character and length of a reference at the start of `text` (`&...;`).
fn reference_at(text: &str) -> Option<(char, usize)> {
    // The longest reference we read is `&#x10FFFF;`: look no further, so a
    // long run of `&` costs linear time.
    let window = &text.as_bytes()[1..text.len().min(12)];
    let end = window.iter().position(|&b| b == b';')? + 1;
    let body = &text[1..end];
    let c = if let Some(number) = body.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(code).filter(|c| *c != '\0')?
    } else {
        match body {
            "amp" | "AMP" => '&',
            "quot" | "QUOT" => '"',
            "lt" | "LT" => '<',
            "gt" | "GT" => '>',
            "apos" => '\'',
            _ => return None,
        }
    };
    Some((c, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_query_and_fragment() {
        assert_eq!(
            split_url("https://x/a?b=1#c?d"),
            ("https://x/a", "b=1", "#c?d")
        );
        assert_eq!(split_url("https://x/a#c"), ("https://x/a", "", "#c"));
        assert_eq!(split_url("https://x/a"), ("https://x/a", "", ""));
    }

    #[test]
    fn decodes_numeric_and_basic_named_references_only() {
        assert_eq!(
            decode_references("a&#038;b&#x26;c&amp;d&AMP;e"),
            "a&b&c&d&e"
        );
        assert_eq!(decode_references("&quot;&lt;&gt;&apos;"), "\"<>'");
        assert_eq!(
            decode_references("&nbsp;&#0;&#xD800;&"),
            "&nbsp;&#0;&#xD800;&"
        );
        assert!(matches!(decode_references("a=1&b=2"), Cow::Borrowed(_)));
    }
}
