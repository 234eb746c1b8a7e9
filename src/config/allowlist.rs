//! `[session.allowlist]`: which session source, its cache, and what its failure means.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::Scheme;
use toml::Spanned;

use super::raw::{self, RawAllowlist};
use super::validate::Validator;
use super::ConfigError;
use crate::allowlist::{
    CacheSettings, ForwardAuthSettings, OnError, RedisSettings, SessionsSettings, SourceSettings,
};
use crate::secret::{Secret, SecretSource};

const KEY: &str = "session.allowlist";
/// Default `forward_auth.max_in_flight`: what a CMS's worker pool may take
/// beside its page views.
const DEFAULT_CHECKS_IN_FLIGHT: usize = 64;

impl Validator<'_> {
    /// The session source settings, and the entitlement placeholder name.
    pub(super) fn allowlist(
        &mut self,
        raw: Spanned<RawAllowlist>,
    ) -> Result<(SessionsSettings, String), ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let source = match (raw.file, raw.forward_auth, raw.redis) {
            (Some(file), None, None) => {
                self.place("session.allowlist.file", file.span());
                SourceSettings::File {
                    path: self.resolve(file.get_ref()),
                }
            }
            (None, Some(cms), None) => SourceSettings::ForwardAuth(self.forward_auth(cms)?),
            (None, None, Some(redis)) => SourceSettings::Redis(self.redis(redis)?),
            _ => {
                return Err(self.invalid(
                    span,
                    KEY,
                    "set exactly one source: file, [session.allowlist.forward_auth] or [session.allowlist.redis]",
                ));
            }
        };
        let cache = self.cache(raw.cache, source.is_remote())?;
        let on_error = match raw.on_error {
            None | Some(raw::RawOnError::Unavailable) => OnError::Unavailable,
            Some(raw::RawOnError::Forbidden) => OnError::Forbidden,
        };
        let entitled_by = match raw.entitlement {
            None => "share".to_string(),
            Some(name) => {
                let text = name.get_ref();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(self.invalid(
                        name.span(),
                        "session.allowlist.entitlement",
                        "must be the name of an embed placeholder (letters, digits, _), without braces",
                    ));
                }
                name.into_inner()
            }
        };
        Ok((
            SessionsSettings {
                source,
                cache,
                on_error,
            },
            entitled_by,
        ))
    }

    fn cache(
        &self,
        raw: Option<Spanned<raw::RawCache>>,
        remote: bool,
    ) -> Result<Option<CacheSettings>, ConfigError> {
        let key = |field: &str| format!("session.allowlist.cache.{field}");
        let (enabled, ttl, negative_ttl, max_entries) = match raw {
            None => (remote, None, None, None),
            Some(raw) => {
                let raw = raw.into_inner();
                (
                    raw.enabled.unwrap_or(true),
                    raw.ttl,
                    raw.negative_ttl,
                    raw.max_entries,
                )
            }
        };
        let settings = CacheSettings {
            ttl: self.positive(ttl, &key("ttl"), Duration::from_secs(60))?,
            negative_ttl: self.positive(
                negative_ttl,
                &key("negative_ttl"),
                Duration::from_secs(5),
            )?,
            max_entries: match max_entries {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(self.invalid(n.span(), key("max_entries"), "must be at least 1"));
                }
                Some(n) => n.into_inner(),
                None => 100_000,
            },
        };
        Ok(enabled.then_some(settings))
    }

    fn forward_auth(
        &self,
        raw: Spanned<raw::RawForwardAuth>,
    ) -> Result<ForwardAuthSettings, ConfigError> {
        let key = |field: &str| format!("{KEY}.forward_auth.{field}");
        let raw = raw.into_inner();
        let url_span = raw.url.span();
        let url: http::Uri = raw.url.get_ref().parse().map_err(|_| {
            self.invalid(
                url_span.clone(),
                key("url"),
                "not a URL such as \"http://cms:8081/session-check\"",
            )
        })?;
        if url.scheme() != Some(&Scheme::HTTP) || url.authority().is_none() {
            return Err(self.invalid(url_span, key("url"), "must be an http:// URL with a host"));
        }
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(self.invalid(
                url_span,
                key("url"),
                "must not carry credentials: send them in `headers`",
            ));
        }
        let mut headers = Vec::new();
        if let Some(raw_headers) = raw.headers {
            let span = raw_headers.span();
            for (name, value) in raw_headers.into_inner() {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    self.invalid(
                        span.clone(),
                        key("headers"),
                        format_args!("{name:?} is not a header name"),
                    )
                })?;
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    self.invalid(
                        span.clone(),
                        key("headers"),
                        format_args!("the value of {name} is not a header value"),
                    )
                })?;
                headers.push((name, value));
            }
        }
        let shares_header = match raw.shares_header {
            None => None,
            Some(name) => Some(HeaderName::from_bytes(name.get_ref().as_bytes()).map_err(
                |_| self.invalid(name.span(), key("shares_header"), "not a header name"),
            )?),
        };
        Ok(ForwardAuthSettings {
            url,
            timeout: self.positive(raw.timeout, &key("timeout"), Duration::from_secs(2))?,
            headers,
            original_request: raw.original_request.unwrap_or(true),
            shares_header,
            max_in_flight: self
                .places_at_most(raw.max_in_flight, &key("max_in_flight"))?
                .unwrap_or(DEFAULT_CHECKS_IN_FLIGHT),
        })
    }

    fn redis(&mut self, raw: Spanned<raw::RawRedis>) -> Result<RedisSettings, ConfigError> {
        let key = |field: &str| format!("{KEY}.redis.{field}");
        let span = raw.span();
        let raw = raw.into_inner();
        let url = raw.url.get_ref();
        let tls = url.starts_with("rediss://");
        if !(tls || url.starts_with("redis://")) {
            return Err(self.invalid(
                raw.url.span(),
                key("url"),
                "must start with redis:// or rediss:// (TLS)",
            ));
        }
        // Where a build error (an unusable URL, an unreadable password or CA file) points.
        self.place(KEY, raw.url.span());
        let ca_file = match raw.ca_file {
            Some(file) if !tls => {
                return Err(self.invalid(
                    file.span(),
                    key("ca_file"),
                    "is for rediss:// URLs only",
                ));
            }
            Some(file) => Some(self.resolve(file.get_ref())),
            None => None,
        };
        let template =
            |value: Option<Spanned<String>>, field: &str| -> Result<Option<String>, ConfigError> {
                match value {
                    None => Ok(None),
                    Some(t) if !t.get_ref().contains("{id}") => Err(self.invalid(
                        t.span(),
                        key(field),
                        "must contain {id}, where the session id goes",
                    )),
                    Some(t) => Ok(Some(t.into_inner())),
                }
            };
        let session_key = template(raw.key, "key")?.unwrap_or_else(|| "session:{id}".to_string());
        let shares_key = template(raw.shares_key, "shares_key")?;
        let password = match (raw.password_env, raw.password_file) {
            (None, None) => None,
            (Some(env), None) => Some(SecretSource::Env(env.into_inner())),
            (None, Some(file)) => Some(SecretSource::File(self.resolve(file.get_ref()))),
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    span,
                    key("password_env"),
                    "set password_env or password_file, not both",
                ));
            }
        };
        Ok(RedisSettings {
            url: Secret::from(raw.url.into_inner()),
            ca_file,
            key: session_key,
            shares_key,
            password,
            timeout: self.positive(raw.timeout, &key("timeout"), Duration::from_millis(500))?,
        })
    }
}
