//! The key, salt and layout shared by `[embed.token]` and `[route.token]`, and `[route.token]`.

use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use toml::Spanned;

use super::raw::{self, RawSigner};
use super::validate::Validator;
use super::ConfigError;
use crate::secret::{Secret, SecretSource};
use crate::syntax::{is_cookie_name_byte, is_query_name_byte};
use crate::token::verify::{EdgeSettings, TokenCarrier};
use crate::token::SignerSettings;

/// Delimiters a token may use: none of them can appear in a captured video
/// id, a query string without escaping, or an ACL pattern.
const DELIMITERS: &str = "~!,;:|^@$";

impl Validator<'_> {
    /// One of `{name}_env`, `{name}_file` or `{name}`, placed for errors when the secret is read.
    pub(super) fn secret_source(
        &mut self,
        key: &str,
        table_span: std::ops::Range<usize>,
        env: Option<Spanned<String>>,
        file: Option<Spanned<PathBuf>>,
        inline: Option<Spanned<String>>,
        required: bool,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let (source, span) = match (env, file, inline) {
            (Some(env), None, None) => {
                let span = env.span();
                (SecretSource::Env(env.into_inner()), span)
            }
            (None, Some(file), None) => (
                SecretSource::File(self.resolve(file.get_ref())),
                file.span(),
            ),
            (None, None, Some(inline)) => {
                let span = inline.span();
                (
                    SecretSource::Inline(Secret::from(inline.into_inner())),
                    span,
                )
            }
            (None, None, None) if !required => return Ok(None),
            _ => {
                let name = key.rsplit('.').next().unwrap_or(key);
                let table = key.rsplit_once('.').map_or(key, |(table, _)| table);
                return Err(self.invalid(
                    table_span,
                    table,
                    format_args!("set exactly one of {name}_env, {name}_file or {name}"),
                ));
            }
        };
        self.place(key, span);
        Ok(Some(source))
    }

    fn delimiter(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: char,
    ) -> Result<char, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let mut chars = value.get_ref().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if DELIMITERS.contains(c) => Ok(c),
            _ => Err(self.invalid(
                value.span(),
                key,
                format_args!("must be one character of {DELIMITERS}"),
            )),
        }
    }

    /// The key, salt and layout of a token table at `table` (`embed[0].token`).
    pub(super) fn signer(
        &mut self,
        table: &str,
        span: std::ops::Range<usize>,
        raw: RawSigner,
    ) -> Result<SignerSettings, ConfigError> {
        let key = self
            .secret_source(
                &format!("{table}.key"),
                span.clone(),
                raw.key_env,
                raw.key_file,
                raw.key,
                true,
            )?
            .expect("required");
        let salt = self.secret_source(
            &format!("{table}.salt"),
            span.clone(),
            raw.salt_env,
            raw.salt_file,
            raw.salt,
            false,
        )?;
        let field_delimiter = self.delimiter(
            raw.field_delimiter,
            &format!("{table}.field_delimiter"),
            '~',
        )?;
        let acl_delimiter =
            self.delimiter(raw.acl_delimiter, &format!("{table}.acl_delimiter"), '!')?;
        if field_delimiter == acl_delimiter {
            return Err(self.invalid(span, table, "field_delimiter and acl_delimiter must differ"));
        }
        Ok(SignerSettings {
            key,
            algorithm: raw.algorithm.unwrap_or_default(),
            salt,
            field_delimiter,
            acl_delimiter,
            escape_early: raw.escape_early.unwrap_or(false),
        })
    }

    /// `[route.token]` of the route at `index`.
    pub(super) fn route_token(
        &mut self,
        index: usize,
        raw: Spanned<raw::RawRouteToken>,
    ) -> Result<EdgeSettings, ConfigError> {
        let table = format!("route[{index}].token");
        let key = |field: &str| format!("{table}.{field}");
        let span = raw.span();
        let mut raw = raw.into_inner();
        let signer = self.signer(&table, span.clone(), raw.take_signer())?;
        let carrier = match (raw.param, raw.cookie, raw.header) {
            (None, None, None) => TokenCarrier::Query("token".into()),
            (Some(param), None, None) => {
                if param.get_ref().is_empty() || !param.get_ref().bytes().all(is_query_name_byte) {
                    return Err(self.invalid(
                        param.span(),
                        key("param"),
                        "must be a plain query parameter name",
                    ));
                }
                TokenCarrier::Query(param.into_inner())
            }
            (None, Some(cookie), None) => {
                if cookie.get_ref().is_empty() || !cookie.get_ref().bytes().all(is_cookie_name_byte)
                {
                    return Err(self.invalid(
                        cookie.span(),
                        key("cookie"),
                        "must be a cookie name",
                    ));
                }
                TokenCarrier::Cookie(cookie.into_inner())
            }
            (None, None, Some(header)) => {
                TokenCarrier::Header(HeaderName::from_bytes(header.get_ref().as_bytes()).map_err(
                    |_| self.invalid(header.span(), key("header"), "must be a header name"),
                )?)
            }
            _ => {
                return Err(self.invalid(
                    span,
                    table,
                    "set at most one of param, cookie or header",
                ));
            }
        };
        let leeway = raw.leeway.map_or(Duration::ZERO, |l| l.into_inner().0);
        Ok(EdgeSettings {
            signer,
            carrier,
            leeway,
        })
    }
}
