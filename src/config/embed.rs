//! `[[embed]]` and its `[embed.token]`: which iframes, and how their tokens are made.

use std::ops::Range;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::raw::{self, RawAcl, RawProvider, RawStartOffset, RawTokenKind};
use super::validate::Validator;
use super::ConfigError;
use crate::embed::{EmbedPattern, EmbedSettings};
use crate::syntax::{is_path_segment_byte, is_query_name_byte};
use crate::token::{LocalSettings, RemoteSettings, ScopeTemplate, TokenSettings};

/// The video host's token API, as the `infomaniak` preset assumes it.
const INFOMANIAK_API_BASE: &str = "https://api.vod2.infomaniak.com";
const INFOMANIAK_ENDPOINT: &str = "{api_base}/api/pub/v1/channel/{channel}/share/{share}/token";
const INFOMANIAK_POINTER: &str = "/data";

/// Where the templates of one `[embed.token]` were written.
pub(super) struct TemplateSpans {
    table: Range<usize>,
    acl: Option<Range<usize>>,
    url: Option<Range<usize>>,
    data: Option<Range<usize>>,
    endpoint: Option<Range<usize>>,
    body: Option<Range<usize>>,
}

impl TemplateSpans {
    /// Where the template of `field` was written (the table if unknown).
    pub(super) fn of(&self, field: &str) -> Range<usize> {
        let span = match field {
            "acl" => &self.acl,
            "url" => &self.url,
            "data" => &self.data,
            "endpoint" => &self.endpoint,
            "body" => &self.body,
            _ => &None,
        };
        span.clone().unwrap_or_else(|| self.table.clone())
    }
}

impl Validator<'_> {
    pub(super) fn embed(
        &mut self,
        index: usize,
        raw: Spanned<raw::RawEmbed>,
        entitled_by: &str,
    ) -> Result<EmbedSettings, ConfigError> {
        let key = |field: &str| format!("embed[{index}].{field}");
        let raw = raw.into_inner();
        let token = raw.token;
        let param = match raw.param {
            None => "token".to_string(),
            Some(p) => {
                if p.get_ref().is_empty() || !p.get_ref().bytes().all(is_query_name_byte) {
                    return Err(self.invalid(
                        p.span(),
                        key("param"),
                        "must be a plain query parameter name",
                    ));
                }
                p.into_inner()
            }
        };
        if let Some(name) = &raw.name {
            let text = name.get_ref();
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(self.invalid(
                    name.span(),
                    key("name"),
                    "must be letters, digits, '-' or '_'",
                ));
            }
            if self.embed_names.iter().any(|n| n == text) {
                return Err(self.invalid(
                    name.span(),
                    key("name"),
                    format_args!("{text:?} names two embeds"),
                ));
            }
            self.embed_names.push(text.clone());
        }
        let (token, template_spans) = self.embed_token(index, token)?;
        let settings = EmbedSettings {
            name: raw.name.as_ref().map(|n| n.get_ref().clone()),
            src: raw.src.get_ref().clone(),
            param,
            entitled_by: entitled_by.to_string(),
            token,
        };
        // Checks the pattern and template without touching the key.
        EmbedPattern::compile(&settings).map_err(|err| match err {
            crate::embed::EmbedError::Template(field, why) => self.invalid(
                template_spans.of(field),
                key(&format!("token.{field}")),
                why,
            ),
            other => self.invalid(raw.src.span(), key("src"), other),
        })?;
        Ok(settings)
    }

    /// `[embed.token]` of the embed at `index`, and where each template
    /// (`acl`, `url`, `data`, `endpoint`, `body`) was written, for errors found compiling them.
    pub(super) fn embed_token(
        &mut self,
        index: usize,
        raw: Spanned<raw::RawToken>,
    ) -> Result<(TokenSettings, TemplateSpans), ConfigError> {
        let table = format!("embed[{index}].token");
        let key = |field: &str| format!("{table}.{field}");
        let span = raw.span();
        let mut raw = raw.into_inner();
        let spans = TemplateSpans {
            table: span.clone(),
            acl: raw.acl.as_ref().map(Spanned::span),
            url: raw.url.as_ref().map(Spanned::span),
            data: raw.data.as_ref().map(Spanned::span),
            endpoint: raw.endpoint.as_ref().map(Spanned::span),
            body: raw.body.as_ref().map(Spanned::span),
        };
        let kind = *raw.kind.get_ref();
        // Keys of the other kind are refused, so a half-switched config is an error.
        let (foreign, other): (Vec<(&str, bool)>, &str) = match kind {
            RawTokenKind::Edgeauth => (
                vec![
                    ("provider", raw.provider.is_some()),
                    ("api_base", raw.api_base.is_some()),
                    ("channel", raw.channel.is_some()),
                    ("endpoint", raw.endpoint.is_some()),
                    ("method", raw.method.is_some()),
                    ("body", raw.body.is_some()),
                    ("pointer", raw.pointer.is_some()),
                    ("bearer_env", raw.bearer_env.is_some()),
                    ("bearer_file", raw.bearer_file.is_some()),
                    ("bearer", raw.bearer.is_some()),
                    ("timeout", raw.timeout.is_some()),
                    ("concurrency", raw.concurrency.is_some()),
                    ("on_error", raw.on_error.is_some()),
                    ("reuse", raw.reuse.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                ],
                "kind = \"remote\"",
            ),
            RawTokenKind::Remote => (
                vec![
                    (
                        "key",
                        raw.key.is_some() || raw.key_env.is_some() || raw.key_file.is_some(),
                    ),
                    ("algorithm", raw.algorithm.is_some()),
                    (
                        "salt",
                        raw.salt.is_some() || raw.salt_env.is_some() || raw.salt_file.is_some(),
                    ),
                    ("field_delimiter", raw.field_delimiter.is_some()),
                    ("acl_delimiter", raw.acl_delimiter.is_some()),
                    ("escape_early", raw.escape_early.is_some()),
                    ("ttl", raw.ttl.is_some()),
                    ("acl", raw.acl.is_some()),
                    ("url", raw.url.is_some()),
                    ("ip", raw.ip.is_some()),
                    ("id", raw.id.is_some()),
                    ("data", raw.data.is_some()),
                    ("start_offset", raw.start_offset.is_some()),
                ],
                "kind = \"edgeauth\"",
            ),
        };
        if let Some((name, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err(self.invalid(span, key(name), format_args!("only applies with {other}")));
        }
        match kind {
            RawTokenKind::Edgeauth => {
                let signer = self.signer(&table, span.clone(), raw.take_signer())?;
                if raw.ip == Some(true) && signer.field_delimiter == ':' && !signer.escape_early {
                    // ip=2001:db8::1:st=... would not split back into its fields.
                    return Err(self.invalid(
                        span,
                        key("ip"),
                        "cannot go with field_delimiter = \":\": an IPv6 address holds ':' \
                         (set escape_early = true, or another delimiter)",
                    ));
                }
                let Some(ttl) = raw.ttl else {
                    return Err(self.invalid(span, key("ttl"), "is required (e.g. \"5m\")"));
                };
                if ttl.get_ref().0.as_secs() == 0 {
                    return Err(self.invalid(
                        ttl.span(),
                        key("ttl"),
                        "must be at least one second",
                    ));
                }
                let scope = match (raw.acl, raw.url) {
                    (Some(acl), None) => ScopeTemplate::Acl(match acl.into_inner() {
                        RawAcl::One(acl) => vec![acl],
                        RawAcl::Many(acls) if acls.is_empty() => {
                            return Err(self.invalid(
                                span,
                                key("acl"),
                                "must list at least one ACL",
                            ));
                        }
                        RawAcl::Many(acls) => acls,
                    }),
                    (None, Some(url)) => ScopeTemplate::Url(url.into_inner()),
                    _ => {
                        return Err(self.invalid(
                            span,
                            table,
                            "set exactly one of acl (ACL token) or url (URL token)",
                        ));
                    }
                };
                let start_offset = match raw.start_offset {
                    None => Some(Duration::ZERO),
                    Some(offset) => match offset.get_ref() {
                        RawStartOffset::Duration(d) => Some(d.0),
                        RawStartOffset::Word(word) if word == "none" => None,
                        RawStartOffset::Word(_) => {
                            return Err(self.invalid(
                                offset.span(),
                                key("start_offset"),
                                "must be a duration such as \"30s\", or \"none\" to leave st out",
                            ));
                        }
                    },
                };
                Ok((
                    TokenSettings::Local(LocalSettings {
                        signer,
                        ttl: ttl.into_inner().0,
                        start_offset,
                        scope,
                        ip: raw.ip.unwrap_or(false),
                        id: raw.id.unwrap_or(false),
                        data: raw.data.map(Spanned::into_inner),
                    }),
                    spans,
                ))
            }
            RawTokenKind::Remote => {
                let bearer = self
                    .secret_source(
                        &key("bearer"),
                        span.clone(),
                        raw.bearer_env,
                        raw.bearer_file,
                        raw.bearer,
                        true,
                    )?
                    .expect("required");
                let preset = raw.provider.as_ref().map(|p| *p.get_ref());
                let api_base = match raw.api_base {
                    Some(base) => {
                        let text = base.get_ref().trim_end_matches('/').to_string();
                        if !(text.starts_with("https://") || text.starts_with("http://"))
                            || text.parse::<http::Uri>().is_err()
                        {
                            return Err(self.invalid(
                                base.span(),
                                key("api_base"),
                                "must be an http:// or https:// URL",
                            ));
                        }
                        Some(text)
                    }
                    None => None,
                };
                let channel = match raw.channel {
                    Some(channel)
                        if channel.get_ref().is_empty()
                            || !channel.get_ref().bytes().all(is_path_segment_byte) =>
                    {
                        return Err(self.invalid(
                            channel.span(),
                            key("channel"),
                            "must be a channel id (letters, digits, '-', '_', '.')",
                        ));
                    }
                    other => other.map(Spanned::into_inner),
                };
                let endpoint = match (raw.endpoint, preset) {
                    (Some(endpoint), _) => endpoint.into_inner(),
                    (None, Some(RawProvider::Infomaniak)) => INFOMANIAK_ENDPOINT.to_string(),
                    (None, None) => {
                        return Err(self.invalid(
                            span,
                            key("endpoint"),
                            "is required without provider = \"infomaniak\"",
                        ));
                    }
                };
                let api_base = api_base.unwrap_or_else(|| INFOMANIAK_API_BASE.to_string());
                // `{api_base}` and `{channel}` are config; the rest come from the src pattern.
                let fixed = |text: &str, field: &str| -> Result<String, ConfigError> {
                    let text = text.replace("{api_base}", &api_base);
                    if text.contains("{channel}") {
                        let Some(channel) = &channel else {
                            return Err(self.invalid(
                                span.clone(),
                                key("channel"),
                                format_args!("is required: {field} uses {{channel}}"),
                            ));
                        };
                        return Ok(text.replace("{channel}", channel));
                    }
                    Ok(text)
                };
                let endpoint = fixed(&endpoint, "endpoint")?;
                let body = raw.body.map(|b| fixed(b.get_ref(), "body")).transpose()?;
                if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                    return Err(self.invalid(
                        span,
                        key("endpoint"),
                        "must be an http:// or https:// URL",
                    ));
                }
                let method = match raw.method {
                    None => Method::POST,
                    Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
                        "GET" => Method::GET,
                        "POST" => Method::POST,
                        "PUT" => Method::PUT,
                        _ => {
                            return Err(self.invalid(
                                m.span(),
                                key("method"),
                                "must be GET, POST or PUT",
                            ))
                        }
                    },
                };
                let pointer = match raw.pointer {
                    None => INFOMANIAK_POINTER.to_string(),
                    Some(p) if p.get_ref().is_empty() || p.get_ref().starts_with('/') => {
                        p.into_inner()
                    }
                    Some(p) => {
                        return Err(self.invalid(
                            p.span(),
                            key("pointer"),
                            "must be a JSON pointer such as \"/data\" or \"/data/token\"",
                        ));
                    }
                };
                let concurrency = match raw.concurrency {
                    None => 4,
                    Some(n) if *n.get_ref() == 0 || *n.get_ref() > 64 => {
                        return Err(self.invalid(n.span(), key("concurrency"), "must be 1 to 64"));
                    }
                    Some(n) => n.into_inner(),
                };
                let reuse = match raw.reuse {
                    None => None,
                    Some(r) if r.get_ref().0.is_zero() => {
                        return Err(self.invalid(
                            r.span(),
                            key("reuse"),
                            "must be longer than zero (leave it out to turn reuse off)",
                        ));
                    }
                    Some(r) => Some(r.into_inner().0),
                };
                let ca_file = raw.ca_file.map(|file| {
                    self.place(key("ca_file"), file.span());
                    self.resolve(file.get_ref())
                });
                Ok((
                    TokenSettings::Remote(RemoteSettings {
                        url: endpoint,
                        method,
                        bearer,
                        body,
                        pointer,
                        timeout: self.positive(
                            raw.timeout,
                            &key("timeout"),
                            Duration::from_secs(5),
                        )?,
                        concurrency,
                        on_error: raw.on_error.unwrap_or_default(),
                        reuse,
                        ca_file,
                    }),
                    spans,
                ))
            }
        }
    }
}
