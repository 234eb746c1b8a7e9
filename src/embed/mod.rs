//! Which iframe URLs are protected embeds, and how a token goes into them.
//!
//! An `[[embed]]` has a `src` pattern such as
//! `https://api.vod2.infomaniak.com/res/embed/{share}.html`, where each
//! `{name}` captures one path segment, and an ACL template such as
//! `/hls/{share}/*` filled from those captures.

mod attribute;
mod template;

use std::borrow::Cow;

use thiserror::Error;

use attribute::{
    as_browsers_read, decode_references, escape_attribute, is_html_space, split_url,
    starts_ignoring_case,
};
use template::{fill_into, is_query_value_safe, parse_body_template, parse_template, Piece};

use crate::allowlist::Principal;
use crate::syntax::is_path_segment_byte;
use crate::token::remote::MintCall;
use crate::token::{KeyError, Minter, RemoteMinter, Scope, ScopeTemplate, TokenSettings, Visitor};

/// At most this many placeholders in one pattern, so captures live on the stack.
const MAX_CAPTURES: usize = 4;

/// `[[embed]]`, validated: which URLs, which parameter, and how the token is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSettings {
    /// The name `embedgate mint --embed` knows it by; `None` for unnamed.
    pub name: Option<String>,
    /// URL pattern with `{name}` placeholders in the path.
    pub src: String,
    /// Query parameter that carries the token.
    pub param: String,
    /// The placeholder whose value names the video for entitlements (`share`).
    pub entitled_by: String,
    /// The minter, its key and its templates.
    pub token: TokenSettings,
}

/// A pattern, template or key that cannot be used.
#[derive(Debug, Error)]
pub enum EmbedError {
    /// The `src` pattern.
    #[error("{0}")]
    Src(String),
    /// A template of `[embed.token]`, named by its key (`acl`, `url`, `data`, `body`).
    #[error("{1}")]
    Template(&'static str, String),
    /// The token key could not be loaded.
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// A matched URL whose captured segment is not safe to put in a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("captured segment {0:?} has characters a token ACL cannot carry")]
pub struct UnsafeCapture(pub String);

/// One configured embed: its URL pattern and ACL template, and its minter.
#[derive(Debug)]
pub struct Embed {
    name: Option<String>,
    pattern: EmbedPattern,
    minter: Minter,
}

/// Which URLs an embed matches and the ACL it opens; pure, checked without I/O.
#[derive(Debug)]
pub struct EmbedPattern {
    // `https://host`, compared ignoring ASCII case as URLs allow.
    origin: String,
    // Length of `https:`, cut off to match protocol-relative `//host/...`
    // URLs (and written back before those that get a token).
    scheme_len: usize,
    // The path part after the origin.
    pattern: Vec<Piece>,
    // How many `{name}` captures the pattern has.
    captures: usize,
    param: String,
    fill: Fill,
    // The capture checked against a principal's entitlements, if the pattern has it.
    entitlement_slot: Option<usize>,
}

/// The token's templates, compiled against the pattern's captures.
#[derive(Debug)]
enum Fill {
    Local {
        acls: Vec<Vec<Piece>>,
        acl_delimiter: char,
        url: Option<Vec<Piece>>,
        data: Option<Vec<Piece>>,
    },
    Remote {
        url: Vec<Piece>,
        body: Option<Vec<Piece>>,
    },
}

/// What became of an iframe URL that matched an embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedRewrite {
    /// The new URL, carrying a fresh token.
    Minted(String),
    /// The token must be fetched: the URL around it, and the call to make.
    Deferred(Deferred),
    /// The visitor may not watch this video: the URL with any token it
    /// carried removed, or `None` when it carried none and stays as it is.
    Unentitled(Option<String>),
    /// A captured segment could smuggle token fields: no token.
    Unsafe(UnsafeCapture),
}

/// An embed whose token comes from the video host's API: the new URL is
/// `head` + (`param` + token, or nothing if none can be had) + `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// The URL up to where the token goes.
    pub head: String,
    /// `?token=` or `&amp;token=`, as written in the attribute.
    pub param: String,
    /// The fragment, if any.
    pub tail: String,
    /// The API call that gives the token.
    pub call: MintCall,
}

// Captures go into the ACL and the token, where `~`, `!`, `=` and `/` are syntax.
fn is_safe_capture(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_path_segment_byte) && text.bytes().any(|b| b != b'.')
}

impl EmbedPattern {
    /// Compiles the URL pattern and the ACL template of `settings`.
    pub fn compile(settings: &EmbedSettings) -> Result<EmbedPattern, EmbedError> {
        let src = settings.src.as_str();
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
        let slot = |name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "{{{name}}} is not a placeholder of the src pattern ({})",
                    names.join(", ")
                )
            })
        };
        let template = |key: &'static str, text: &str| {
            parse_template(text, slot).map_err(|why| EmbedError::Template(key, why))
        };
        let fill = match &settings.token {
            TokenSettings::Local(local) => {
                let format = &local.signer;
                let reserved = [format.field_delimiter, format.acl_delimiter];
                let (acls, url) = match &local.scope {
                    ScopeTemplate::Acl(acls) => {
                        let mut compiled = Vec::with_capacity(acls.len());
                        for acl in acls {
                            if acl.is_empty() {
                                return Err(EmbedError::Template(
                                    "acl",
                                    "must not be empty".into(),
                                ));
                            }
                            if acl.contains(reserved) {
                                return Err(EmbedError::Template(
                                    "acl",
                                    format!(
                                        "must not contain {:?} or {:?}: they separate token fields and ACLs",
                                        format.field_delimiter, format.acl_delimiter
                                    ),
                                ));
                            }
                            if !is_query_value_safe(acl) {
                                return Err(EmbedError::Template(
                                    "acl",
                                    "must not contain spaces, quotes, '<', '>', '&', '#', '%', '+' or '\\': it is sent as it is in the URL".into(),
                                ));
                            }
                            compiled.push(template("acl", acl)?);
                        }
                        (compiled, None)
                    }
                    ScopeTemplate::Url(url) => {
                        if !url.starts_with('/') {
                            return Err(EmbedError::Template(
                                "url",
                                "must be a path starting with '/'".into(),
                            ));
                        }
                        (Vec::new(), Some(template("url", url)?))
                    }
                };
                let data = match &local.data {
                    // Escaping early keeps '~' as it is, so it never makes a delimiter safe.
                    Some(data) if data.contains(format.field_delimiter) => {
                        return Err(EmbedError::Template(
                            "data",
                            format!(
                                "must not contain {:?}: it separates the token's fields",
                                format.field_delimiter
                            ),
                        ));
                    }
                    Some(data) if !format.escape_early && !is_query_value_safe(data) => {
                        return Err(EmbedError::Template(
                            "data",
                            "must not contain spaces, quotes, '<', '>', '&', '#', '%', '+' or '\\' unless escape_early = true".into(),
                        ));
                    }
                    Some(data) => Some(template("data", data)?),
                    None => None,
                };
                Fill::Local {
                    acls,
                    acl_delimiter: format.acl_delimiter,
                    url,
                    data,
                }
            }
            TokenSettings::Remote(remote) => Fill::Remote {
                url: template("endpoint", &remote.url)?,
                body: remote
                    .body
                    .as_deref()
                    .map(|b| {
                        parse_body_template(b, slot)
                            .map_err(|why| EmbedError::Template("body", why))
                    })
                    .transpose()?,
            },
        };
        Ok(EmbedPattern {
            origin: src[..host_end].to_string(),
            scheme_len,
            pattern,
            captures: names.len(),
            param: settings.param.clone(),
            fill,
            entitlement_slot: names.iter().position(|n| *n == settings.entitled_by),
        })
    }

    /// What goes before `base`, a URL this pattern matched, when it carries
    /// a token: `https:` for a protocol-relative `//host/...` one (which a
    /// page served over http, or under an http `<base>`, would load in the
    /// clear) when the pattern names https; nothing otherwise. An http
    /// pattern's `//host` URL is left so: `http:` would only make it
    /// cleartext (and blocked) on an https page.
    fn scheme_for(&self, base: &str) -> &str {
        let scheme = &self.origin[..self.scheme_len];
        if base.starts_with("//") && scheme == "https:" {
            scheme
        } else {
            ""
        }
    }

    fn matches<'u>(&self, base: &'u str, captures: &mut [&'u str; MAX_CAPTURES]) -> bool {
        let starts = |prefix: &str| starts_ignoring_case(base, prefix);
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
            name: settings.name.clone(),
            pattern: EmbedPattern::compile(settings)?,
            minter: Minter::build(&settings.token)?,
        })
    }

    /// The configured name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The remote minter, when this embed's tokens come from the video host's API.
    pub fn remote(&self) -> Option<&std::sync::Arc<RemoteMinter>> {
        match &self.minter {
            Minter::Remote(remote) => Some(remote),
            Minter::Local(_) => None,
        }
    }

    /// The minter for this embed.
    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// Whether the iframe attribute value `attribute` is this embed.
    pub fn is_match(&self, attribute: &str) -> bool {
        let decoded = decode_references(attribute.trim_matches(is_html_space));
        let mut captures = [""; MAX_CAPTURES];
        if self.pattern.matches(split_url(&decoded).0, &mut captures) {
            return true;
        }
        let read = as_browsers_read(&decoded);
        matches!(read, Cow::Owned(_)) && self.pattern.matches(split_url(&read).0, &mut captures)
    }

    /// If the iframe attribute value `attribute` is this embed, returns what
    /// becomes of it: a token minted at `now` (unix seconds) for `principal`,
    /// or, for a video the principal is not entitled to, no token at all. An
    /// embed whose pattern lacks the entitlement placeholder is entitled only
    /// to a principal who may watch everything.
    ///
    /// The value is read as HTML reads it (character references decoded, so
    /// WordPress's `&#038;` is an `&`), and the result is written so that
    /// HTML and XHTML read it alike: every `&` as `&amp;` (and `<`, `>`, `"`
    /// as references). A protocol-relative `//host/...` URL that gets a
    /// token (or waits for one) is written with `https:` in front when the
    /// pattern names https, so the token never travels in the clear.
    pub fn rewrite(&self, attribute: &str, visitor: &Visitor<'_>) -> Option<EmbedRewrite> {
        let pattern = &self.pattern;
        let principal: &Principal = visitor.principal;
        let decoded = decode_references(attribute.trim_matches(is_html_space));
        // Read as browsers read it only when the URL as written is not this
        // embed with safe captures: most embeds are written plainly, and
        // are matched once.
        let read: Cow<'_, str>;
        let mut url: &str = &decoded;
        let (mut base, mut query, mut fragment) = split_url(url);
        let mut captures = [""; MAX_CAPTURES];
        let mut matched = pattern.matches(base, &mut captures);
        if !matched
            || !captures[..pattern.captures]
                .iter()
                .all(|c| is_safe_capture(c))
        {
            read = as_browsers_read(&decoded);
            if let Cow::Owned(read) = &read {
                url = read;
                (base, query, fragment) = split_url(url);
                captures = [""; MAX_CAPTURES];
                matched = pattern.matches(base, &mut captures);
            }
        }
        if !matched {
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
        if entitled {
            // A token never goes out on a URL the page's scheme may make
            // cleartext: `//host/...` under an https pattern gets `https:`.
            out.push_str(pattern.scheme_for(base));
        }
        out.push_str(base);
        let mut separator = '?';
        for part in parts().filter(|p| !is_param(p)) {
            out.push(separator);
            out.push_str(part);
            separator = '&';
        }
        if entitled {
            if let (
                Minter::Remote(_),
                Fill::Remote {
                    url: call_url,
                    body,
                },
            ) = (&self.minter, &pattern.fill)
            {
                let mut url = String::with_capacity(128);
                fill_into(&mut url, call_url, captures);
                let body = body.as_ref().map(|body| {
                    let mut text = String::with_capacity(128);
                    fill_into(&mut text, body, captures);
                    text
                });
                let param = format!("{separator}{}=", pattern.param);
                let amp = |text: String| match escape_attribute(&text) {
                    Cow::Owned(escaped) => escaped,
                    Cow::Borrowed(_) => text,
                };
                return Some(EmbedRewrite::Deferred(Deferred {
                    head: amp(out),
                    param: amp(param),
                    tail: amp(fragment.to_string()),
                    call: MintCall { url, body },
                }));
            }
            out.push(separator);
            out.push_str(&pattern.param);
            out.push('=');
            self.mint_local(captures, visitor, &mut out);
        }
        out.push_str(fragment);
        if let Cow::Owned(escaped) = escape_attribute(&out) {
            out = escaped;
        }
        Some(if entitled {
            EmbedRewrite::Minted(out)
        } else {
            EmbedRewrite::Unentitled(Some(out))
        })
    }

    // Fills the scope and data templates and mints with the shared secret.
    fn mint_local(&self, captures: &[&str], visitor: &Visitor<'_>, out: &mut String) {
        let (
            Minter::Local(minter),
            Fill::Local {
                acls,
                acl_delimiter,
                url,
                data,
            },
        ) = (&self.minter, &self.pattern.fill)
        else {
            return;
        };
        let mut scope_text = String::with_capacity(64);
        match url {
            Some(url) => fill_into(&mut scope_text, url, captures),
            None => {
                for (i, acl) in acls.iter().enumerate() {
                    if i > 0 {
                        scope_text.push(*acl_delimiter);
                    }
                    fill_into(&mut scope_text, acl, captures);
                }
            }
        }
        let scope = if url.is_some() {
            Scope::Url(&scope_text)
        } else {
            Scope::Acl(&scope_text)
        };
        let data_text = data.as_ref().map(|data| {
            let mut text = String::new();
            fill_into(&mut text, data, captures);
            text
        });
        minter.mint(scope, data_text.as_deref(), visitor, out);
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

    /// True when some embed's tokens come from the video host's API.
    pub fn has_remote(&self) -> bool {
        self.embeds.iter().any(|e| e.remote().is_some())
    }

    /// The index of the first embed that matches `attribute`.
    pub fn matching(&self, attribute: &str) -> Option<usize> {
        self.embeds.iter().position(|e| e.is_match(attribute))
    }

    /// [`Embed::rewrite`] with the first embed that matches, and its index.
    pub fn rewrite(&self, attribute: &str, visitor: &Visitor<'_>) -> Option<(usize, EmbedRewrite)> {
        self.embeds
            .iter()
            .enumerate()
            .find_map(|(index, embed)| Some((index, embed.rewrite(attribute, visitor)?)))
    }

    /// The embed at `index` (as [`EmbedSet::rewrite`] names it).
    pub fn get(&self, index: usize) -> Option<&Embed> {
        self.embeds.get(index)
    }

    /// The embed named `name`.
    pub fn named(&self, name: &str) -> Option<&Embed> {
        self.embeds.iter().find(|e| e.name() == Some(name))
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
pub(crate) mod tests;
