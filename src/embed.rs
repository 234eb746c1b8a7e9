//! Which iframe URLs are protected embeds, and how a token goes into them.
//!
//! An `[[embed]]` has a `src` pattern such as
//! `https://api.vod2.infomaniak.com/res/embed/{share}.html`, where each
//! `{name}` captures one path segment, and an ACL template such as
//! `/hls/{share}/*` filled from those captures.

use std::fmt::Write as _;
use std::time::Duration;

use thiserror::Error;

use crate::token::EdgeAuth;

/// At most this many placeholders in one pattern, so captures live on the stack.
const MAX_CAPTURES: usize = 4;

/// A pattern or template that cannot be used.
#[derive(Debug, Error)]
pub enum EmbedError {
    /// The `src` pattern.
    #[error("{0}")]
    Src(String),
    /// The ACL template.
    #[error("{0}")]
    Acl(String),
}

/// A matched URL whose captured segment is not safe to put in a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("captured segment {0:?} has characters a token ACL cannot carry")]
pub struct UnsafeCapture(pub String);

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Capture(usize),
}

/// One configured embed: its pattern, query parameter and token recipe.
#[derive(Debug)]
pub struct Embed {
    pattern: Vec<Piece>,
    // Pattern with its scheme cut off, to match protocol-relative `//host/...` URLs.
    scheme_len: usize,
    names: Vec<String>,
    param: String,
    acl: Vec<Piece>,
    minter: EdgeAuth,
    ttl_secs: u64,
}

/// True for bytes allowed in the configured query parameter name.
pub fn is_query_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

// Captures go into the ACL and the token, where `~`, `!`, `=` and `/` are syntax.
fn is_safe_capture(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && text.bytes().any(|b| b != b'.')
}

fn parse_template(
    text: &str,
    mut slot: impl FnMut(&str) -> Result<usize, String>,
) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_string()));
        } else if matches!(pieces.last(), Some(Piece::Capture(_))) {
            return Err("two placeholders in a row cannot be told apart".into());
        }
        let close = rest[open..].find('}').ok_or("unclosed '{'")? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "{{{name}}} is not a placeholder name (letters, digits, _)"
            ));
        }
        pieces.push(Piece::Capture(slot(name)?));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("'}' without '{'".into());
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_string()));
    }
    Ok(pieces)
}

impl Embed {
    /// Compiles an embed from its config values.
    pub fn new(
        src: &str,
        param: String,
        acl: &str,
        minter: EdgeAuth,
        ttl: Duration,
    ) -> Result<Embed, EmbedError> {
        let scheme_len = if src.starts_with("https://") {
            "https:".len()
        } else if src.starts_with("http://") {
            "http:".len()
        } else {
            return Err(EmbedError::Src(
                "must start with https:// or http://".into(),
            ));
        };
        if src.contains(['?', '#']) {
            return Err(EmbedError::Src(
                "must not contain '?' or '#': the query is handled for you".into(),
            ));
        }
        let host_end = src[scheme_len + 2..]
            .find('/')
            .map_or(src.len(), |i| i + scheme_len + 2);
        if src[..host_end].contains('{') {
            return Err(EmbedError::Src(
                "placeholders may only stand in the path, not the host".into(),
            ));
        }
        let mut names: Vec<String> = Vec::new();
        let pattern = parse_template(src, |name| {
            if names.iter().any(|n| n == name) {
                return Err(format!("{{{name}}} is used twice"));
            }
            if names.len() == MAX_CAPTURES {
                return Err(format!("at most {MAX_CAPTURES} placeholders"));
            }
            names.push(name.to_string());
            Ok(names.len() - 1)
        })
        .map_err(EmbedError::Src)?;
        if acl.contains(['~', '!']) {
            return Err(EmbedError::Acl(
                "must not contain '~' or '!': they separate token fields".into(),
            ));
        }
        if acl.is_empty() {
            return Err(EmbedError::Acl("must not be empty".into()));
        }
        let acl = parse_template(acl, |name| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "{{{name}}} is not a placeholder of the src pattern ({})",
                    names.join(", ")
                )
            })
        })
        .map_err(EmbedError::Acl)?;
        Ok(Embed {
            pattern,
            scheme_len,
            names,
            param,
            acl,
            minter,
            ttl_secs: ttl.as_secs(),
        })
    }

    /// The query parameter that carries the token.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// The placeholder names of the src pattern, in order.
    pub fn placeholders(&self) -> &[String] {
        &self.names
    }

    /// The minter for this embed.
    pub fn minter(&self) -> &EdgeAuth {
        &self.minter
    }

    /// Token lifetime in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// If `url` is this embed, returns it with a token minted at `now` (unix seconds).
    pub fn rewrite(&self, url: &str, now: u64) -> Option<Result<String, UnsafeCapture>> {
        let split = url.find(['?', '#']).unwrap_or(url.len());
        let (base, tail) = url.split_at(split);
        let (query, fragment) = match tail.strip_prefix('?') {
            Some(q) => q.split_at(q.find('#').unwrap_or(q.len())),
            None => ("", tail),
        };
        let mut captures = [""; MAX_CAPTURES];
        if !self.matches(base, &mut captures) {
            return None;
        }
        let captures = &captures[..self.names.len()];
        if let Some(bad) = captures.iter().find(|c| !is_safe_capture(c)) {
            return Some(Err(UnsafeCapture((*bad).to_string())));
        }
        let mut acl = String::with_capacity(64);
        for piece in &self.acl {
            match piece {
                Piece::Literal(text) => acl.push_str(text),
                Piece::Capture(slot) => acl.push_str(captures[*slot]),
            }
        }
        let mut out = String::with_capacity(url.len() + self.param.len() + acl.len() + 112);
        out.push_str(base);
        out.push('?');
        let kept = self.copy_other_params(query, &mut out);
        if kept {
            out.push_str(if query.contains("&amp;") {
                "&amp;"
            } else {
                "&"
            });
        }
        let _ = write!(out, "{}=", self.param);
        self.minter
            .mint_into(now, now.saturating_add(self.ttl_secs), &acl, &mut out);
        out.push_str(fragment);
        Some(Ok(out))
    }

    fn matches<'u>(&self, base: &'u str, captures: &mut [&'u str; MAX_CAPTURES]) -> bool {
        if base.starts_with("//") {
            // Protocol-relative: compare without our scheme.
            let Some(Piece::Literal(first)) = self.pattern.first() else {
                return false;
            };
            return match base.strip_prefix(&first[self.scheme_len..]) {
                Some(rest) => match_pieces(&self.pattern[1..], rest, captures),
                None => false,
            };
        }
        match_pieces(&self.pattern, base, captures)
    }

    // Copies every query parameter except ours, byte for byte; true if any was kept.
    fn copy_other_params(&self, query: &str, out: &mut String) -> bool {
        if query.is_empty() {
            return false;
        }
        let mut kept = false;
        let mut first = true;
        for raw in query.split('&') {
            // `&amp;` in an attribute is an `&`: its `amp;` belongs to the separator.
            let (sep, part) = match raw.strip_prefix("amp;") {
                Some(part) if !first => ("&amp;", part),
                _ => ("&", raw),
            };
            first = false;
            let name = part.split('=').next().unwrap_or_default();
            if name == self.param {
                continue;
            }
            if kept {
                out.push_str(sep);
            }
            out.push_str(part);
            kept = true;
        }
        kept
    }
}

fn match_pieces<'u>(
    pieces: &[Piece],
    text: &'u str,
    captures: &mut [&'u str; MAX_CAPTURES],
) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(lit), rest)) => {
            text.starts_with(lit.as_str()) && match_pieces(rest, &text[lit.len()..], captures)
        }
        Some((Piece::Capture(slot), rest)) => {
            // One path segment: never across '/'. Prefer the longest capture.
            let segment_end = text.find('/').unwrap_or(text.len());
            (1..=segment_end)
                .rev()
                .filter(|&end| text.is_char_boundary(end))
                .any(|end| {
                    captures[*slot] = &text[..end];
                    match_pieces(rest, &text[end..], captures)
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Algorithm, KeyMaterial};

    fn embed(src: &str, acl: &str) -> Embed {
        let key = KeyMaterial::from_hex("00112233").unwrap();
        Embed::new(
            src,
            "token".into(),
            acl,
            EdgeAuth::new(Algorithm::Sha256, &key),
            Duration::from_secs(300),
        )
        .unwrap()
    }

    fn infomaniak() -> Embed {
        embed(
            "https://api.vod2.infomaniak.com/res/embed/{share}.html",
            "/hls/{share}/*",
        )
    }

    fn token_for(e: &Embed, acl: &str, now: u64) -> String {
        e.minter().mint(now, now + 300, acl)
    }

    #[test]
    fn appends_the_token_with_a_question_mark_or_an_ampersand() {
        let e = infomaniak();
        let t = token_for(&e, "/hls/1jhvl2uqa5rdf/*", 1000);
        let base = "https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html";
        assert_eq!(
            e.rewrite(base, 1000).unwrap().unwrap(),
            format!("{base}?token={t}")
        );
        assert_eq!(
            e.rewrite(&format!("{base}?autoplay=1"), 1000)
                .unwrap()
                .unwrap(),
            format!("{base}?autoplay=1&token={t}")
        );
        assert_eq!(
            e.rewrite(&format!("{base}?a=1&amp;b=2#t=5"), 1000)
                .unwrap()
                .unwrap(),
            format!("{base}?a=1&amp;b=2&amp;token={t}#t=5")
        );
    }

    #[test]
    fn replaces_a_token_that_is_already_there() {
        let e = infomaniak();
        let t = token_for(&e, "/hls/abc/*", 7);
        let base = "https://api.vod2.infomaniak.com/res/embed/abc.html";
        assert_eq!(
            e.rewrite(&format!("{base}?token=old&x=1&token=older"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?x=1&token={t}")
        );
        assert_eq!(
            e.rewrite(&format!("{base}?token=old"), 7).unwrap().unwrap(),
            format!("{base}?token={t}")
        );
        assert_eq!(
            e.rewrite(&format!("{base}?tokens=keep"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?tokens=keep&token={t}")
        );
    }

    #[test]
    fn leaves_other_urls_alone() {
        let e = infomaniak();
        for url in [
            "https://www.youtube.com/embed/xyz",
            "https://api.vod2.infomaniak.com/res/embed/a/b.html",
            "https://api.vod2.infomaniak.com/res/embed/.html",
            "http://api.vod2.infomaniak.com/res/embed/abc.html",
            "https://api.vod2.infomaniak.com/res/embed/abc.htmlx",
            "",
        ] {
            assert!(e.rewrite(url, 1).is_none(), "{url}");
        }
    }

    #[test]
    fn matches_protocol_relative_urls() {
        let e = infomaniak();
        let out = e
            .rewrite("//api.vod2.infomaniak.com/res/embed/abc.html", 1)
            .unwrap()
            .unwrap();
        assert!(out.starts_with(
            "//api.vod2.infomaniak.com/res/embed/abc.html?token=st=1~exp=301~acl=/hls/abc/*~hmac="
        ));
    }

    #[test]
    fn refuses_captures_that_could_smuggle_token_fields() {
        let e = infomaniak();
        for share in ["abc~acl=*", "a%2Fb", "..", "a!b"] {
            let url = format!("https://api.vod2.infomaniak.com/res/embed/{share}.html");
            assert!(matches!(e.rewrite(&url, 1), Some(Err(_))), "{share}");
        }
    }

    #[test]
    fn captures_several_segments_into_the_acl() {
        let e = embed(
            "https://cdn.example/{channel}/v/{id}.html",
            "/hls/{channel}/{id}/*",
        );
        let out = e
            .rewrite("https://cdn.example/c1/v/v.2.html", 5)
            .unwrap()
            .unwrap();
        assert!(out.contains("acl=/hls/c1/v.2/*"), "{out}");
    }

    #[test]
    fn rejects_bad_patterns_and_templates() {
        let key = KeyMaterial::from_hex("00").unwrap();
        let make = |src: &str, acl: &str| {
            Embed::new(
                src,
                "token".into(),
                acl,
                EdgeAuth::new(Algorithm::Sha256, &key),
                Duration::from_secs(1),
            )
        };
        assert!(matches!(
            make("ftp://x/{a}", "/{a}"),
            Err(EmbedError::Src(_))
        ));
        assert!(matches!(
            make("https://{a}.x/", "/{a}"),
            Err(EmbedError::Src(_))
        ));
        assert!(matches!(
            make("https://x/{a}{b}", "/"),
            Err(EmbedError::Src(_))
        ));
        assert!(matches!(
            make("https://x/{a}?q=1", "/"),
            Err(EmbedError::Src(_))
        ));
        assert!(matches!(
            make("https://x/{a}/{a}", "/"),
            Err(EmbedError::Src(_))
        ));
        assert!(matches!(
            make("https://x/{a}", "/{b}/*"),
            Err(EmbedError::Acl(_))
        ));
        assert!(matches!(
            make("https://x/{a}", "/{a}~x"),
            Err(EmbedError::Acl(_))
        ));
    }
}
