//! What a browser takes a response to be: its media type and charset, read
//! from every Content-Type line as browsers read them.

use std::borrow::Cow;

use http::{header, HeaderMap, HeaderValue};

use crate::rewrite::{self, PageEncoding};
use crate::syntax::is_token;

/// What a browser takes a response's type to be, as far as rewriting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaType {
    /// `text/html`: rewritten.
    Html,
    /// `application/xhtml+xml`: rewritten.
    Xhtml,
    /// No type a browser can read (missing, empty, unparseable, only `*/*`)
    /// or one it sniffs (`unknown/unknown`, `application/unknown`): with
    /// nosniff it is never read as HTML.
    Unknown,
    /// Anything else.
    Other,
}

/// A response's Content-Type, read as a browser reads it.
pub(super) struct Declared {
    pub(super) media: MediaType,
    /// The encoding its charset names (UTF-8 when none); `None` when the
    /// rewriter cannot read that one, or it is no known label.
    pub(super) encoding: Option<PageEncoding>,
    /// The type as one plain value, when the header held several.
    pub(super) normalized: Option<HeaderValue>,
}

impl Declared {
    pub(super) fn is_markup(&self) -> bool {
        matches!(self.media, MediaType::Html | MediaType::Xhtml)
    }
}

/// Reads Content-Type as Fetch's "extract a MIME type" does: every header
/// line and every comma-separated value counts, the last valid one wins,
/// and it keeps the charset of an earlier value of the same type. Allocates
/// only for a header of several lines.
pub(super) fn declared_type(headers: &HeaderMap) -> Declared {
    let mut lines = headers.get_all(header::CONTENT_TYPE).iter();
    let joined: Vec<u8>;
    let (input, several_lines) = match (lines.next(), lines.next()) {
        (None, _) => {
            return Declared {
                media: MediaType::Unknown,
                encoding: rewrite::encoding_for(None),
                normalized: None,
            }
        }
        (Some(one), None) => (one.as_bytes(), false),
        (Some(first), Some(second)) => {
            let mut all = first.as_bytes().to_vec();
            for line in std::iter::once(second).chain(lines) {
                all.extend_from_slice(b", ");
                all.extend_from_slice(line.as_bytes());
            }
            joined = all;
            (joined.as_slice(), true)
        }
    };
    let mut essence: Option<&[u8]> = None;
    let mut charset: Option<Cow<'_, [u8]>> = None;
    let mut values = 0;
    let mut last: Option<Mime<'_>> = None;
    split_values(input, |value| {
        values += 1;
        let Some(mime) = parse_mime(value) else {
            return;
        };
        if mime.essence == b"*/*" {
            return;
        }
        if essence.is_none_or(|e| !e.eq_ignore_ascii_case(mime.essence)) {
            charset = mime.charset.clone();
            essence = Some(mime.essence);
        }
        last = Some(mime);
    });
    let Some(mime) = last else {
        return Declared {
            media: MediaType::Unknown,
            encoding: rewrite::encoding_for(None),
            normalized: None,
        };
    };
    let charset = mime.charset.or(charset);
    let is = |essence: &[u8]| mime.essence.eq_ignore_ascii_case(essence);
    let media = if is(b"text/html") {
        MediaType::Html
    } else if is(b"application/xhtml+xml") {
        MediaType::Xhtml
    } else if is(b"unknown/unknown") || is(b"application/unknown") {
        MediaType::Unknown
    } else {
        MediaType::Other
    };
    let label = match &charset {
        None => Ok(None),
        Some(label) => std::str::from_utf8(label).map(Some),
    };
    let encoding = label.ok().and_then(rewrite::encoding_for);
    let normalized = (several_lines || values > 1).then(|| {
        let mut text = mime.essence.to_ascii_lowercase();
        if let Some(label) = &charset {
            text.extend_from_slice(b"; charset=");
            text.extend_from_slice(label);
        }
        HeaderValue::from_bytes(&text).ok()
    });
    Declared {
        media,
        encoding,
        normalized: normalized.flatten(),
    }
}

/// One value of a Content-Type: its essence as written, and its charset.
#[derive(Debug, Clone)]
pub(super) struct Mime<'v> {
    pub(super) essence: &'v [u8],
    pub(super) charset: Option<Cow<'v, [u8]>>,
}

pub(super) fn is_http_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\r' | b' ')
}

pub(super) fn trim_http_space(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_http_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_http_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Calls `each` with every value of a header, split at commas outside
/// quoted strings and trimmed (Fetch's "get, decode, and split").
pub(super) fn split_values<'i>(input: &'i [u8], mut each: impl FnMut(&'i [u8])) {
    let (mut start, mut at) = (0, 0);
    loop {
        while at < input.len() && !matches!(input[at], b'"' | b',') {
            at += 1;
        }
        if at < input.len() && input[at] == b'"' {
            at += quoted(&input[at..]).1;
            if at < input.len() {
                continue;
            }
        }
        let mut value = &input[start..at];
        while let [b' ' | b'\t', rest @ ..] = value {
            value = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        each(value);
        if at >= input.len() {
            return;
        }
        at += 1;
        start = at;
    }
}

/// The value of the HTTP quoted string `input` starts with (its escapes
/// undone) and how many bytes it takes, its quotes included.
pub(super) fn quoted(input: &[u8]) -> (Cow<'_, [u8]>, usize) {
    let mut value: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut at = 1;
    loop {
        let run = input[at..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')
            .unwrap_or(input.len() - at);
        let text = &input[at..at + run];
        if value.is_empty() {
            value = Cow::Borrowed(text);
        } else {
            value.to_mut().extend_from_slice(text);
        }
        at += run;
        if at >= input.len() {
            return (value, at);
        }
        let quote_or_backslash = input[at];
        at += 1;
        if quote_or_backslash == b'"' {
            return (value, at);
        }
        match input.get(at) {
            Some(&escaped) => {
                value.to_mut().push(escaped);
                at += 1;
            }
            None => {
                value.to_mut().push(b'\\');
                return (value, at);
            }
        }
    }
}

/// Parses one MIME type as the MIME Sniffing standard does; `None` for failure.
pub(super) fn parse_mime(value: &[u8]) -> Option<Mime<'_>> {
    let value = trim_http_space(value);
    let slash = value.iter().position(|&b| b == b'/')?;
    let kind = &value[..slash];
    let rest = &value[slash + 1..];
    let semicolon = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let subtype = trim_http_space(&rest[..semicolon]);
    if kind.is_empty()
        || subtype.is_empty()
        || !kind.iter().copied().all(is_token)
        || !subtype.iter().copied().all(is_token)
        || rest[..semicolon]
            .first()
            .copied()
            .is_some_and(is_http_space)
    {
        return None;
    }
    let essence = &value[..slash + 1 + subtype.len()];
    let mut charset = None;
    let mut params = &rest[semicolon..];
    while let Some(after) = params.strip_prefix(b";") {
        let after = &after[after.iter().take_while(|&&b| is_http_space(b)).count()..];
        let name_end = after
            .iter()
            .position(|&b| b == b';' || b == b'=')
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let after = &after[name_end..];
        let Some(after) = after.strip_prefix(b"=") else {
            params = after;
            continue;
        };
        let (param, rest) = if after.first() == Some(&b'"') {
            let (param, used) = quoted(after);
            let rest = &after[used..];
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            (param, &rest[end..])
        } else {
            let end = after.iter().position(|&b| b == b';').unwrap_or(after.len());
            let param = trim_http_space(&after[..end]);
            if param.is_empty() {
                params = &after[end..];
                continue;
            }
            (Cow::Borrowed(param), &after[end..])
        };
        params = rest;
        let readable = param
            .iter()
            .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80);
        if charset.is_none() && name.eq_ignore_ascii_case(b"charset") && readable {
            charset = Some(param);
        }
    }
    Some(Mime { essence, charset })
}
