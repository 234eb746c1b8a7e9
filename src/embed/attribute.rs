//! How an iframe's URL attribute reads as a URL: whitespace, character
//! references, what a browser's URL parser makes of the rest, and the split
//! into path, query and fragment.

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

/// `url` as a browser's URL parser reads it: tabs and newlines dropped
/// anywhere, and before the query `\\` read as `/`, an `http(s)` URL's
/// default port (or an empty one) dropped, and `.` and `..` segments (also
/// as `%2e`) resolved. So every spelling of an embed that a browser loads
/// from the video host matches its pattern, and is rewritten as the URL the
/// browser would load. Borrows when there is nothing to change.
pub(super) fn as_browsers_read(url: &str) -> Cow<'_, str> {
    if !needs_reading(url) {
        return Cow::Borrowed(url);
    }
    let url: String = url
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (base, rest) = url.split_at(url.find(['?', '#']).unwrap_or(url.len()));
    let base = base.replace('\\', "/");
    let Some((default_port, authority_start)) = url_start(&base) else {
        return Cow::Owned(base + rest);
    };
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let (head, path) = base.split_at(authority_end);
    let head = match (default_port, port_at(&head[authority_start..])) {
        (Some(default), Some(colon)) if port_is(&head[authority_start + colon + 1..], default) => {
            &head[..authority_start + colon]
        }
        _ => head,
    };
    Cow::Owned(format!("{head}{}{rest}", resolve_dots(path)))
}

/// Whether [`as_browsers_read`] has anything to change in `url`: one pass
/// over its bytes, which are few (this runs for every iframe's URL).
fn needs_reading(url: &str) -> bool {
    let mut in_base = true;
    let mut slashes = 0;
    let mut previous = 0;
    for &b in url.as_bytes() {
        match b {
            b'\t' | b'\n' | b'\r' => return true,
            _ if !in_base => {}
            b'?' | b'#' => in_base = false,
            b'\\' | b'%' => return true,
            b'.' if previous == b'/' => return true,
            b'/' => slashes += 1,
            // A port (or user info) in "scheme://authority" or "//authority".
            b':' if slashes == 2 => return true,
            _ => {}
        }
        previous = b;
    }
    false
}

/// The default port of an `http(s)://` URL (`None` for a scheme-relative
/// `//` one, whose scheme is the page's) and where its authority starts;
/// `None` for any other URL.
fn url_start(url: &str) -> Option<(Option<u32>, usize)> {
    if starts_ignoring_case(url, "https://") {
        Some((Some(443), 8))
    } else if starts_ignoring_case(url, "http://") {
        Some((Some(80), 7))
    } else if url.starts_with("//") {
        Some((None, 2))
    } else {
        None
    }
}

/// Whether `text` starts with `prefix`, ignoring ASCII case. A match ends on
/// a char boundary when `prefix` is ASCII.
pub(super) fn starts_ignoring_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Where the `:` before the port is in `authority`, if it names one (after
/// any user info and an IPv6 address's brackets).
fn port_at(authority: &str) -> Option<usize> {
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host = &authority[host_start..];
    let after_brackets = host.rfind(']').map_or(0, |at| at + 1);
    host[after_brackets..]
        .rfind(':')
        .map(|at| host_start + after_brackets + at)
}

/// Whether `port` is empty or names `default` (leading zeros allowed).
fn port_is(port: &str, default: u32) -> bool {
    port.is_empty()
        || (port.bytes().all(|b| b.is_ascii_digit())
            && port.trim_start_matches('0').parse::<u32>().ok() == Some(default))
}

/// A URL path with its `.` and `..` segments resolved, as browsers do.
fn resolve_dots(path: &str) -> String {
    let is = |segment: &str, dots: &[&str]| dots.iter().any(|d| segment.eq_ignore_ascii_case(d));
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out_trailing = false;
    for (at, segment) in segments.iter().enumerate() {
        let last = at + 1 == segments.len();
        if is(segment, &[".", "%2e"]) {
            out_trailing = last;
        } else if is(segment, &["..", ".%2e", "%2e.", "%2e%2e"]) {
            kept.pop();
            out_trailing = last;
        } else {
            kept.push(segment);
            out_trailing = false;
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out_trailing || (out.is_empty() && !path.is_empty()) {
        out.push('/');
    }
    out
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

    #[test]
    fn a_url_reads_as_browsers_read_it() {
        for (written, read) in [
            (
                "https:\\\\e.test\\res\\embed\\a.html",
                "https://e.test/res/embed/a.html",
            ),
            (
                "https://e.test:443/res/embed/a.html?x=1",
                "https://e.test/res/embed/a.html?x=1",
            ),
            ("https://e.test:0443/a", "https://e.test/a"),
            ("https://e.test:/a", "https://e.test/a"),
            ("http://e.test:80/a", "http://e.test/a"),
            (
                "https://e.test/res/em\tbed/a\n.html",
                "https://e.test/res/embed/a.html",
            ),
            (
                "https://e.test/res/./embed/x/../a.html",
                "https://e.test/res/embed/a.html",
            ),
            (
                "https://e.test/res/%2E/embed/%2e%2E/embed/a.html",
                "https://e.test/res/embed/a.html",
            ),
            ("https://e.test/res/embed/.", "https://e.test/res/embed/"),
            ("https://e.test/..", "https://e.test/"),
            ("//e.test/res/./a.html", "//e.test/res/a.html"),
            ("HTTPS://e.test:443/a", "HTTPS://e.test/a"),
        ] {
            assert_eq!(as_browsers_read(written), read, "{written:?}");
        }
        for kept in [
            "https://e.test/res/embed/a.html?x=1&y=./..",
            "https://e.test:8443/a",
            "https://e.test:443x/a",
            "//e.test:443/a",
            "https://[::1]:8443/a",
            "https://user:pw@e.test/a",
            "https://e.test/a.b/.c/..d",
        ] {
            assert_eq!(as_browsers_read(kept), kept, "{kept:?}");
        }
        assert!(matches!(
            as_browsers_read("https://e.test/res/embed/a.html?t=1"),
            Cow::Borrowed(_)
        ));
        assert_eq!(as_browsers_read("https://[::1]:443/a"), "https://[::1]/a");
    }
}
