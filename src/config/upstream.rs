//! `[upstream]`: the CMS's address, its timeouts, the pool, TLS to it, and
//! the places requests and uploads may hold.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::Scheme;
use http::HeaderValue;
use toml::Spanned;

use super::raw;
use super::validate::Validator;
use super::ConfigError;
use crate::client::ClientPrefix;
use crate::proxy::tls::UpstreamTls;
use crate::proxy::UpstreamSettings;

/// Default `upstream.max_in_flight`: well above what one CMS answers at once.
const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default `upstream.max_uploads_per_client`: an eighth of the default
/// upload places, more than a browser sends at once.
const DEFAULT_MAX_UPLOADS_PER_CLIENT: usize = 32;
/// The most places `upstream.max_in_flight` and `max_uploads_in_flight` may
/// set: far beyond any CMS, and far below what a semaphore can count.
const MOST_PLACES: usize = 1_000_000;

impl Validator<'_> {
    pub(super) fn upstream(
        &mut self,
        raw: Spanned<raw::RawUpstream>,
        client_prefix: ClientPrefix,
    ) -> Result<UpstreamSettings, ConfigError> {
        let raw = raw.into_inner();
        let url_span = raw.url.span();
        let bad_url = |why: &str| self.invalid(url_span.clone(), "upstream.url", why);
        let uri: http::Uri = raw
            .url
            .get_ref()
            .parse()
            .map_err(|_| bad_url("not a URL such as \"http://127.0.0.1:8081\""))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad_url("needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad_url("must be http:// or https://"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad_url("needs a host"))?;
        if authority.as_str().contains('@') {
            return Err(bad_url("must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(bad_url("must not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad_url("bad host"))?;
        if scheme == Scheme::HTTPS && raw.server_name.is_none() {
            // The certificate is checked for the URL's host, which must be a name rustls can check.
            let host = authority.host().trim_matches(|c| c == '[' || c == ']');
            if rustls::pki_types::ServerName::try_from(host).is_err() {
                return Err(bad_url(
                    "its host is not a DNS name or IP address a certificate can be checked for",
                ));
            }
        }
        let tls = self.upstream_tls(
            raw.ca_file,
            raw.server_name,
            raw.insecure_skip_verify,
            &scheme,
        )?;
        let http2 = !matches!(raw.http2, Some(raw::RawHttp2::Never));
        let max_in_flight = self
            .places_at_most(raw.max_in_flight, "upstream.max_in_flight")?
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        let max_uploads_in_flight = self
            .places_at_most(raw.max_uploads_in_flight, "upstream.max_uploads_in_flight")?
            .unwrap_or(max_in_flight / 2);
        let max_uploads_per_client = self
            .places_at_most(
                raw.max_uploads_per_client,
                "upstream.max_uploads_per_client",
            )?
            .unwrap_or(DEFAULT_MAX_UPLOADS_PER_CLIENT);
        Ok(UpstreamSettings {
            http2,
            scheme,
            authority,
            host_header,
            base_path,
            connect_timeout: self.positive(
                raw.connect_timeout,
                "upstream.connect_timeout",
                Duration::from_secs(5),
            )?,
            response_timeout: self.positive(
                raw.response_timeout,
                "upstream.response_timeout",
                Duration::from_secs(30),
            )?,
            read_timeout: self.positive(
                raw.read_timeout,
                "upstream.read_timeout",
                Duration::from_secs(60),
            )?,
            preserve_host: raw.preserve_host.unwrap_or(true),
            underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
            pool_idle_timeout: raw
                .pool_idle_timeout
                .map_or(Duration::from_secs(90), |d| d.0),
            pool_max_idle: raw.pool_max_idle.unwrap_or(256),
            tls,
            max_in_flight,
            max_uploads_in_flight,
            max_uploads_per_client,
            client_prefix,
            queue_timeout: self.positive(
                raw.queue_timeout,
                "upstream.queue_timeout",
                Duration::from_secs(5),
            )?,
        })
    }

    /// A count of places, refused above `MOST_PLACES`.
    pub(super) fn places_at_most(
        &self,
        value: Option<Spanned<usize>>,
        key: &str,
    ) -> Result<Option<usize>, ConfigError> {
        match value {
            Some(n) if *n.get_ref() > MOST_PLACES => Err(self.invalid(
                n.span(),
                key,
                format_args!("must be at most {MOST_PLACES} (0 turns the limit off)"),
            )),
            value => Ok(value.map(Spanned::into_inner)),
        }
    }

    fn upstream_tls(
        &mut self,
        ca_file: Option<Spanned<PathBuf>>,
        server_name: Option<Spanned<String>>,
        insecure_skip_verify: Option<bool>,
        scheme: &Scheme,
    ) -> Result<UpstreamTls, ConfigError> {
        let https = *scheme == Scheme::HTTPS;
        for (span, key) in [
            (ca_file.as_ref().map(Spanned::span), "upstream.ca_file"),
            (
                server_name.as_ref().map(Spanned::span),
                "upstream.server_name",
            ),
        ] {
            if let (Some(span), false) = (span, https) {
                return Err(self.invalid(span, key, "is for an https:// upstream only"));
            }
        }
        if let Some(name) = &server_name {
            if rustls::pki_types::ServerName::try_from(name.get_ref().as_str()).is_err() {
                return Err(self.invalid(
                    name.span(),
                    "upstream.server_name",
                    "not a DNS name or IP address",
                ));
            }
        }
        let ca_file = ca_file.map(|file| {
            self.place("upstream.ca_file", file.span());
            self.resolve(file.get_ref())
        });
        Ok(UpstreamTls {
            ca_file,
            server_name: server_name.map(Spanned::into_inner),
            insecure_skip_verify: https && insecure_skip_verify.unwrap_or(false),
        })
    }
}
