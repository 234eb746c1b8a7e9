//! How an iframe's URL attribute reads as a URL: whitespace, character
//! references, and the split into path, query and fragment.

use std::borrow::Cow;

/// Whitespace HTML strips from around a URL attribute.
pub(super) fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C')
}

/// Splits a URL into what comes before `?`, the query, and `#fragment`.
pub(super) fn split_url(url: &str) -> (&str, &str, &str) {
    // Byte searches: `?` and `#` are ASCII, so they fall on char boundaries.
    let split = memchr::memchr2(b'?', b'#', url.as_bytes()).unwrap_or(url.len());
    let (base, tail) = url.split_at(split);
    match tail.strip_prefix('?') {
        Some(q) => {
            let (query, fragment) =
                q.split_at(memchr::memchr(b'#', q.as_bytes()).unwrap_or(q.len()));
            (base, query, fragment)
        }
        None => (base, "", tail),
    }
}

/// Decodes the character references in a URL attribute as a browser reads
/// an attribute value: the complete HTML5 table of named references (from
/// the `htmlize` crate), legacy ones without `;` left alone before `=` or a
/// letter or digit, and numeric ones with their replacements. Text that is
/// no reference is kept as it is; borrows when there are none.
pub(super) fn decode_references(value: &str) -> Cow<'_, str> {
    htmlize::unescape_attribute(value)
}

/// `text` as a double-quoted attribute value that HTML and XHTML read
/// alike: `&`, `<`, `>` and `"` written as references. Borrows when there
/// is nothing to escape.
pub(super) fn escape_attribute(text: &str) -> Cow<'_, str> {
    // Byte searches and slices: the four are ASCII, so they fall on char
    // boundaries; this runs for every token minted. Each search starts
    // where the last one stopped, so the work stays linear.
    let bytes = text.as_bytes();
    let quote_from = |from: usize| memchr::memchr(b'"', &bytes[from..]).map(|i| from + i);
    let other_from =
        |from: usize| memchr::memchr3(b'&', b'<', b'>', &bytes[from..]).map(|i| from + i);
    let (mut quote, mut other) = (quote_from(0), other_from(0));
    if quote.is_none() && other.is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = 0;
    loop {
        let at = match (quote, other) {
            (Some(q), Some(o)) => q.min(o),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => break,
        };
        out.push_str(&text[done..at]);
        out.push_str(match bytes[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => "&quot;",
        });
        done = at + 1;
        if quote == Some(at) {
            quote = quote_from(done);
        } else {
            other = other_from(done);
        }
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
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
    fn decodes_references_as_a_browser_reads_an_attribute() {
        assert_eq!(
            decode_references("a&#038;b&#x26;c&amp;d&AMP;e"),
            "a&b&c&d&e"
        );
        assert_eq!(decode_references("&quot;&lt;&gt;&apos;"), "\"<>'");
        // The whole table, not a few names.
        assert_eq!(
            decode_references("&nbsp;&hellip;&CounterClockwiseContourIntegral;&eacute"),
            "\u{a0}\u{2026}\u{2233}\u{e9}"
        );
        // Numbers a browser replaces.
        assert_eq!(
            decode_references("&#0;&#xD800;&#x110000;&#128;&#99999999999;"),
            "\u{fffd}\u{fffd}\u{fffd}\u{20ac}\u{fffd}"
        );
        // Legacy names without `;` are left alone before `=` or a letter or digit.
        assert_eq!(
            decode_references("?a=1&copy=2&not3&amp-x&ampx"),
            "?a=1&copy=2&not3&-x&ampx"
        );
        // What is no reference stays.
        for kept in [
            "&",
            "&#",
            "&#x;",
            "&#;",
            "&;",
            "a & b",
            "&unknown;",
            "&&amp",
        ] {
            assert_eq!(
                decode_references(kept),
                kept.replace("&amp", "&").as_str(),
                "{kept}"
            );
        }
        assert!(matches!(decode_references("a=1&b=2"), Cow::Borrowed(_)));
    }

    #[test]
    fn an_escaped_value_reads_back_as_it_was() {
        assert!(matches!(
            escape_attribute("https://x/a?b=1"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_attribute("https://x/a?b=1&token=st=1~acl=/*<\">"),
            "https://x/a?b=1&amp;token=st=1~acl=/*&lt;&quot;&gt;"
        );
        assert_eq!(
            escape_attribute("\"\u{e9}&<>\"x\"&"),
            "&quot;\u{e9}&amp;&lt;&gt;&quot;x&quot;&amp;"
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_drops_text(text in "[a-z0-9&#;=x<> \\u{a0}-\\u{3000}]{0,40}") {
            let escaped = escape_attribute(&text);
            let decoded = decode_references(&escaped);
            proptest::prop_assert_eq!(decoded.as_ref(), text.as_str());
            // Without a reference in it, a text comes back unchanged.
            let plain = text.replace('&', "");
            let decoded = decode_references(&plain);
            proptest::prop_assert_eq!(decoded.as_ref(), plain.as_str());
        }
    }
}
