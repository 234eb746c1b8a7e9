//! Which iframe URLs are protected embeds, and how a token goes into them.
//!
//! An `[[embed]]` has a `src` pattern such as
//! `https://api.vod2.infomaniak.com/res/embed/{share}.html`, where each
//! `{name}` captures one path segment, and an ACL template such as
//! `/hls/{share}/*` filled from those captures.

mod attribute;

use std::borrow::Cow;
use std::fmt::Write as _;

use thiserror::Error;

use attribute::{decode_references, is_html_space, split_url};

use crate::allowlist::Principal;
use crate::syntax::is_path_segment_byte;
use crate::token::{KeyError, Minter, TokenSettings};

/// At most this many placeholders in one pattern, so captures live on the stack.
const MAX_CAPTURES: usize = 4;

/// `[[embed]]`, validated: which URLs, which parameter, and how the token is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSettings {
    /// URL pattern with `{name}` placeholders in the path.
    pub src: String,
    /// Query parameter that carries the token.
    pub param: String,
    /// ACL template filled from the pattern's captures.
    pub acl: String,
    /// The placeholder whose value names the video for entitlements (`share`).
    pub entitled_by: String,
    /// The minter and its key.
    pub token: TokenSettings,
}

/// A pattern, template or key that cannot be used.
#[derive(Debug, Error)]
pub enum EmbedError {
    /// The `src` pattern.
    #[error("{0}")]
    Src(String),
    /// The ACL template.
    #[error("{0}")]
    Acl(String),
    /// The token key could not be loaded.
    #[error("{0}")]
    Key(#[from] KeyError),
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

/// One configured embed: its URL pattern and ACL template, and its minter.
#[derive(Debug)]
pub struct Embed {
    pattern: EmbedPattern,
    minter: Minter,
}

/// Which URLs an embed matches and the ACL it opens; pure, checked without I/O.
#[derive(Debug)]
pub struct EmbedPattern {
    // `https://host`, compared ignoring ASCII case as URLs allow.
    origin: String,
    // Length of `https:`, cut off to match protocol-relative `//host/...` URLs.
    scheme_len: usize,
    // The path part after the origin.
    pattern: Vec<Piece>,
    // How many `{name}` captures the pattern has.
    captures: usize,
    param: String,
    acl: Vec<Piece>,
    // The capture checked against a principal's entitlements, if the pattern has it.
    entitlement_slot: Option<usize>,
}

/// What became of an iframe URL that matched an embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedRewrite {
    /// The new URL, carrying a fresh token.
    Minted(String),
    /// The visitor may not watch this video: the URL with any token it
    /// carried removed, or `None` when it carried none and stays as it is.
    Unentitled(Option<String>),
    /// A captured segment could smuggle token fields: no token.
    Unsafe(UnsafeCapture),
}

// Captures go into the ACL and the token, where `~`, `!`, `=` and `/` are syntax.
fn is_safe_capture(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_path_segment_byte) && text.bytes().any(|b| b != b'.')
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

impl EmbedPattern {
    /// Compiles the URL pattern and the ACL template of `settings`.
    pub fn compile(settings: &EmbedSettings) -> Result<EmbedPattern, EmbedError> {
        let (src, acl) = (settings.src.as_str(), settings.acl.as_str());
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
        let pattern = parse_template(&src[host_end..], |name| {
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
        Ok(EmbedPattern {
            origin: src[..host_end].to_string(),
            scheme_len,
            pattern,
            captures: names.len(),
            param: settings.param.clone(),
            acl,
            entitlement_slot: names.iter().position(|n| *n == settings.entitled_by),
        })
    }

    fn matches<'u>(&self, base: &'u str, captures: &mut [&'u str; MAX_CAPTURES]) -> bool {
        let starts = |prefix: &str| {
            base.as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        let schemeless = &self.origin[self.scheme_len..];
        // An ASCII-insensitive match of these prefixes ends on a char boundary.
        let path = if starts(&self.origin) {
            &base[self.origin.len()..]
        } else if base.starts_with("//") && starts(schemeless) {
            &base[schemeless.len()..]
        } else {
            return false;
        };
        let mut budget = MATCH_BUDGET;
        match_pieces(&self.pattern, path, captures, &mut budget)
    }
}

impl Embed {
    /// Compiles the pattern and loads the key of `settings`.
    pub fn build(settings: &EmbedSettings) -> Result<Embed, EmbedError> {
        Ok(Embed {
            pattern: EmbedPattern::compile(settings)?,
            minter: Minter::build(&settings.token)?,
        })
    }

    /// The minter for this embed.
    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// Whether the iframe attribute value `attribute` is this embed.
    pub fn is_match(&self, attribute: &str) -> bool {
        let url = decode_references(attribute.trim_matches(is_html_space));
        let mut captures = [""; MAX_CAPTURES];
        self.pattern.matches(split_url(&url).0, &mut captures)
    }

    /// If the iframe attribute value `attribute` is this embed, returns what
    /// becomes of it: a token minted at `now` (unix seconds) for `principal`,
    /// or, for a video the principal is not entitled to, no token at all. An
    /// embed whose pattern lacks the entitlement placeholder is entitled only
    /// to a principal who may watch everything.
    ///
    /// The value is read as HTML reads it (character references decoded, so
    /// WordPress's `&#038;` is an `&`); if it had references, every `&` of
    /// the result is written `&amp;`.
    pub fn rewrite(
        &self,
        attribute: &str,
        now: u64,
        principal: &Principal,
    ) -> Option<EmbedRewrite> {
        let pattern = &self.pattern;
        let url = decode_references(attribute.trim_matches(is_html_space));
        let (base, query, fragment) = split_url(&url);
        let mut captures = [""; MAX_CAPTURES];
        if !pattern.matches(base, &mut captures) {
            return None;
        }
        let captures = &captures[..pattern.captures];
        if let Some(bad) = captures.iter().find(|c| !is_safe_capture(c)) {
            return Some(EmbedRewrite::Unsafe(UnsafeCapture((*bad).to_string())));
        }
        let entitlements = principal.entitlements();
        let entitled = match pattern.entitlement_slot {
            Some(slot) => entitlements.allows(captures[slot]),
            None => entitlements.is_all(),
        };
        let is_param = |part: &&str| part.split('=').next() == Some(pattern.param.as_str());
        let parts = || query.split('&').filter(|p| !p.is_empty());
        if !entitled && !parts().any(|p| is_param(&p)) {
            return Some(EmbedRewrite::Unentitled(None));
        }
        let mut out = String::with_capacity(url.len() + pattern.param.len() + 176);
        out.push_str(base);
        let mut separator = '?';
        for part in parts().filter(|p| !is_param(p)) {
            out.push(separator);
            out.push_str(part);
            separator = '&';
        }
        if entitled {
            let mut acl = String::with_capacity(64);
            for piece in &pattern.acl {
                match piece {
                    Piece::Literal(text) => acl.push_str(text),
                    Piece::Capture(slot) => acl.push_str(captures[*slot]),
                }
            }
            let _ = write!(out, "{separator}{}=", pattern.param);
            self.minter.mint(&acl, now, principal, &mut out);
        }
        out.push_str(fragment);
        if let Cow::Owned(_) = url {
            out = out.replace('&', "&amp;");
        }
        Some(if entitled {
            EmbedRewrite::Minted(out)
        } else {
            EmbedRewrite::Unentitled(Some(out))
        })
    }
}

/// The configured embeds, in config order: the first that matches a URL wins.
#[derive(Debug, Default)]
pub struct EmbedSet {
    embeds: Vec<Embed>,
}

impl EmbedSet {
    /// Builds every embed; an error names the index of the `[[embed]]` at fault.
    pub fn build(settings: &[EmbedSettings]) -> Result<EmbedSet, (usize, EmbedError)> {
        let embeds = settings
            .iter()
            .enumerate()
            .map(|(index, embed)| Embed::build(embed).map_err(|err| (index, err)))
            .collect::<Result<_, _>>()?;
        Ok(EmbedSet { embeds })
    }

    /// The embeds, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Embed> {
        self.embeds.iter()
    }

    /// Number of embeds.
    pub fn len(&self) -> usize {
        self.embeds.len()
    }

    /// True when no iframe gets a token.
    pub fn is_empty(&self) -> bool {
        self.embeds.is_empty()
    }

    /// Whether any embed matches `attribute`.
    pub fn is_match(&self, attribute: &str) -> bool {
        self.embeds.iter().any(|e| e.is_match(attribute))
    }

    /// [`Embed::rewrite`] with the first embed that matches, and its index.
    pub fn rewrite(
        &self,
        attribute: &str,
        now: u64,
        principal: &Principal,
    ) -> Option<(usize, EmbedRewrite)> {
        self.embeds
            .iter()
            .enumerate()
            .find_map(|(index, embed)| Some((index, embed.rewrite(attribute, now, principal)?)))
    }
}

/// Most steps one URL may cost a pattern with several placeholders in a
/// segment (which backtracks): past it the URL is taken as no match, so page
/// content cannot make matching slow. Real embed URLs need a few dozen.
const MATCH_BUDGET: u32 = 10_000;

fn match_pieces<'u>(
    pieces: &[Piece],
    text: &'u str,
    captures: &mut [&'u str; MAX_CAPTURES],
    budget: &mut u32,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(lit), rest)) => {
            text.starts_with(lit.as_str())
                && match_pieces(rest, &text[lit.len()..], captures, budget)
        }
        Some((Piece::Capture(slot), rest)) => {
            // One path segment: never across '/'. Prefer the longest capture.
            let segment_end = text.find('/').unwrap_or(text.len());
            (1..=segment_end)
                .rev()
                .filter(|&end| text.is_char_boundary(end))
                .any(|end| {
                    captures[*slot] = &text[..end];
                    match_pieces(rest, &text[end..], captures, budget)
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::{Entitlements, SessionKey};
    use crate::secret::SecretSource;
    use crate::token::{Algorithm, TokenKind};
    use std::time::Duration;

    fn settings(src: &str, acl: &str) -> EmbedSettings {
        EmbedSettings {
            src: src.into(),
            param: "token".into(),
            acl: acl.into(),
            entitled_by: "share".into(),
            token: TokenSettings {
                kind: TokenKind::Edgeauth,
                key: SecretSource::Inline("00112233".into()),
                algorithm: Algorithm::Sha256,
                ttl: Duration::from_secs(300),
            },
        }
    }

    fn embed(src: &str, acl: &str) -> Embed {
        Embed::build(&settings(src, acl)).unwrap()
    }

    fn visitor() -> Principal {
        Principal::of(&SessionKey::new("visitor"))
    }

    impl Embed {
        /// `rewrite` for the test visitor, who may watch everything.
        fn rewrite_at(&self, url: &str, now: u64) -> Option<Result<String, UnsafeCapture>> {
            self.rewrite(url, now, &visitor()).map(|r| match r {
                EmbedRewrite::Minted(url) => Ok(url),
                EmbedRewrite::Unsafe(err) => Err(err),
                EmbedRewrite::Unentitled(_) => panic!("the test visitor may watch everything"),
            })
        }
    }

    fn infomaniak() -> Embed {
        embed(
            "https://api.vod2.infomaniak.com/res/embed/{share}.html",
            "/hls/{share}/*",
        )
    }

    fn token_for(e: &Embed, acl: &str, now: u64) -> String {
        e.minter().signer().mint(now, now + 300, acl)
    }

    #[test]
    fn appends_the_token_with_a_question_mark_or_an_ampersand() {
        let e = infomaniak();
        let t = token_for(&e, "/hls/1jhvl2uqa5rdf/*", 1000);
        let base = "https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html";
        assert_eq!(
            e.rewrite_at(base, 1000).unwrap().unwrap(),
            format!("{base}?token={t}")
        );
        assert_eq!(
            e.rewrite_at(&format!("{base}?autoplay=1"), 1000)
                .unwrap()
                .unwrap(),
            format!("{base}?autoplay=1&token={t}")
        );
        assert_eq!(
            e.rewrite_at(&format!("{base}?a=1&amp;b=2#t=5"), 1000)
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
            e.rewrite_at(&format!("{base}?token=old&x=1&token=older"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?x=1&token={t}")
        );
        assert_eq!(
            e.rewrite_at(&format!("{base}?token=old"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?token={t}")
        );
        assert_eq!(
            e.rewrite_at(&format!("{base}?tokens=keep"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?tokens=keep&token={t}")
        );
    }

    #[test]
    fn reads_character_references_as_html_does() {
        let e = infomaniak();
        let t = token_for(&e, "/hls/abc/*", 7);
        let base = "https://api.vod2.infomaniak.com/res/embed/abc.html";
        // WordPress writes & as &#038;: its '#' is not a fragment.
        assert_eq!(
            e.rewrite_at(&format!("{base}?autoplay=1&#038;muted=1"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?autoplay=1&amp;muted=1&amp;token={t}")
        );
        assert_eq!(
            e.rewrite_at(
                &format!("{base}?x=1&#38;token=old&AMP;y=2&#x26;token=older"),
                7
            )
            .unwrap()
            .unwrap(),
            format!("{base}?x=1&amp;y=2&amp;token={t}")
        );
        // An encoded character in the path is read too.
        assert!(e
            .rewrite_at("https://api.vod2.infomaniak.com/res/embed/abc&#46;html", 7)
            .is_some());
        // An unknown reference is left as it is.
        assert_eq!(
            e.rewrite_at(&format!("{base}?a=&bogus;"), 7)
                .unwrap()
                .unwrap(),
            format!("{base}?a=&bogus;&token={t}")
        );
    }

    #[test]
    fn ignores_surrounding_whitespace_and_the_case_of_scheme_and_host() {
        let e = infomaniak();
        for url in [
            " https://api.vod2.infomaniak.com/res/embed/abc.html\n",
            "HTTPS://API.vod2.Infomaniak.com/res/embed/abc.html",
            "//API.VOD2.INFOMANIAK.COM/res/embed/abc.html",
        ] {
            assert!(e.rewrite_at(url, 1).is_some(), "{url:?}");
            assert!(e.is_match(url));
        }
        // The path stays case-sensitive.
        assert!(e
            .rewrite_at("https://api.vod2.infomaniak.com/RES/embed/abc.html", 1)
            .is_none());
    }

    #[test]
    fn a_long_run_of_ampersands_is_read_in_linear_time() {
        let e = infomaniak();
        let url = format!(
            "https://api.vod2.infomaniak.com/res/embed/abc.html?{};",
            "&".repeat(200_000)
        );
        assert!(e.rewrite_at(&url, 1).is_some());
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
            assert!(e.rewrite_at(url, 1).is_none(), "{url}");
        }
    }

    #[test]
    fn matches_protocol_relative_urls() {
        let e = infomaniak();
        let out = e
            .rewrite_at("//api.vod2.infomaniak.com/res/embed/abc.html", 1)
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
            assert!(matches!(e.rewrite_at(&url, 1), Some(Err(_))), "{share}");
        }
    }

    #[test]
    fn captures_several_segments_into_the_acl() {
        let e = embed(
            "https://cdn.example/{channel}/v/{id}.html",
            "/hls/{channel}/{id}/*",
        );
        let out = e
            .rewrite_at("https://cdn.example/c1/v/v.2.html", 5)
            .unwrap()
            .unwrap();
        assert!(out.contains("acl=/hls/c1/v.2/*"), "{out}");
    }

    #[test]
    fn rejects_bad_patterns_and_templates() {
        let make = |src: &str, acl: &str| EmbedPattern::compile(&settings(src, acl));
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

    #[test]
    fn a_video_the_visitor_is_not_entitled_to_gets_no_token_and_loses_an_old_one() {
        let e = infomaniak();
        let only_abc = Principal::entitled(&SessionKey::new("v"), Entitlements::only(["abc"]));
        let url = |share: &str, query: &str| {
            format!("https://api.vod2.infomaniak.com/res/embed/{share}.html{query}")
        };
        assert!(matches!(
            e.rewrite(&url("abc", ""), 7, &only_abc),
            Some(EmbedRewrite::Minted(_))
        ));
        assert_eq!(
            e.rewrite(&url("xyz", "?autoplay=1"), 7, &only_abc),
            Some(EmbedRewrite::Unentitled(None)),
            "no token to remove: left as it is"
        );
        assert_eq!(
            e.rewrite(
                &url("xyz", "?token=st=1~exp=2~acl=/*~hmac=00&autoplay=1#t"),
                7,
                &only_abc
            ),
            Some(EmbedRewrite::Unentitled(Some(url("xyz", "?autoplay=1#t"))))
        );
        assert_eq!(
            e.rewrite(&url("xyz", "?token=old"), 7, &only_abc),
            Some(EmbedRewrite::Unentitled(Some(url("xyz", ""))))
        );
    }

    #[test]
    fn a_pattern_without_the_entitlement_placeholder_serves_only_the_fully_entitled() {
        let e = embed("https://cdn.example/v/{id}.html", "/hls/{id}/*");
        let some = Principal::entitled(&SessionKey::new("v"), Entitlements::only(["a"]));
        assert!(matches!(
            e.rewrite("https://cdn.example/v/a.html", 7, &some),
            Some(EmbedRewrite::Unentitled(None))
        ));
        assert!(matches!(
            e.rewrite("https://cdn.example/v/a.html", 7, &visitor()),
            Some(EmbedRewrite::Minted(_))
        ));
    }

    #[test]
    fn a_url_that_would_make_a_many_placeholder_pattern_backtrack_long_is_no_match() {
        let e = embed("https://h/e/{a}-{b}-{c}-{share}.html", "/hls/{share}/*");
        assert!(e.rewrite_at("https://h/e/w-x-y-z.html", 1).is_some());
        // Without a budget this takes minutes; with it, a moment.
        let hostile = format!("https://h/e/{}x", "a-".repeat(400));
        assert!(e.rewrite_at(&hostile, 1).is_none());
    }
}
