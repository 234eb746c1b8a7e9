//! The request's way through, in one place:
//! route -> gate -> upstream -> response filter -> body rewrite.
//!
//! Every refusal is mapped to its status in [`Refusal::status`], and nothing
//! from the CMS reaches a visitor the gate turned away.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use thiserror::Error;

use crate::allowlist::AllowlistError;
use crate::body::{AccessLog, Decision, ResponseBody};
use crate::config::Config;
use crate::gate::{self, Admission, PathError};
use crate::proxy::{self, headers, ProxyError, Upstream};
use crate::rewrite::{self, PageEncoding, RewriteBody, RewriteStats};
use crate::token;

/// Why the gateway answered a request itself instead of with the CMS response.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The path cannot be judged safely.
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    /// The allowlist could not answer: fail closed.
    #[error("allowlist unavailable: {0}")]
    Allowlist(#[from] AllowlistError),
    /// The CMS could not be reached or was too slow.
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    /// A gated HTML page the rewriter cannot read; sending it would leave embeds without tokens.
    #[error("cannot rewrite gated page: {0}")]
    Unrewritable(&'static str),
}

impl Refusal {
    /// The one place where failures become statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadPath(_) | Refusal::Upstream(ProxyError::BadRequest(_)) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::Allowlist(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Upstream(ProxyError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Upstream(ProxyError::VisitorTimeout(_)) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Upstream(ProxyError::Unavailable(_)) | Refusal::Unrewritable(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }
}

/// The gateway: current config and the upstream client.
pub struct Gateway {
    config: ArcSwap<Config>,
    upstream: Upstream,
}

impl Gateway {
    /// Builds the gateway around a validated config.
    pub fn new(config: Config) -> Gateway {
        let upstream = Upstream::new(&config.upstream);
        Gateway {
            config: ArcSwap::from_pointee(config),
            upstream,
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Serves one request from `client`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ResponseBody> {
        let config = self.config.load_full();
        let mut log = AccessLog::start(request.method(), request.uri().path(), Instant::now());
        match self.forward(&config, request, client, &mut log).await {
            Ok((parts, body, None)) => Response::from_parts(
                parts,
                ResponseBody::upstream(body, log, config.upstream.read_timeout),
            ),
            Ok((parts, body, Some(encoding))) => {
                let stats = Arc::new(RewriteStats::default());
                log.rewrite = Some(stats.clone());
                let idle_limit = config.upstream.read_timeout;
                let body = RewriteBody::new(body, config, encoding, token::unix_now(), stats);
                Response::from_parts(parts, ResponseBody::rewritten(body, log, idle_limit))
            }
            Err(Outcome::Denied) => deny(&config, log),
            Err(Outcome::Refused(refusal)) => refuse(refusal, log),
        }
    }

    /// Runs the request through gate and upstream; returns the CMS response
    /// head and body, and the encoding to rewrite the body with, if it is to be.
    async fn forward(
        &self,
        config: &Config,
        request: Request<Incoming>,
        client: SocketAddr,
        log: &mut AccessLog,
    ) -> Result<(http::response::Parts, Incoming, Option<PageEncoding>), Outcome> {
        let route = config
            .routes
            .lookup(request.uri().path())
            .map_err(Refusal::from)?;
        log.route = route.prefix;
        let allowed = if route.gated {
            match gate::admit(config, request.headers())
                .await
                .map_err(Refusal::from)?
            {
                Admission::Allowed(tag) => {
                    log.session = Some(tag);
                    true
                }
                Admission::Denied(reason) => {
                    if let gate::DenyReason::UnknownSession(tag) = reason {
                        log.session = Some(tag);
                    }
                    log.reason = Some(Cow::Borrowed(reason.as_str()));
                    return Err(Outcome::Denied);
                }
            }
        } else {
            false
        };
        log.decision = if allowed {
            Decision::Allowed
        } else {
            Decision::Passthrough
        };
        let head_only = request.method() == Method::HEAD;

        let (mut parts, body) = request.into_parts();
        let trust_forwarded = config.server.trust_forwarded;
        proxy::prepare_request(
            &mut parts,
            &config.upstream,
            client,
            route.gated,
            trust_forwarded,
        )
        .map_err(Refusal::from)?;
        let response = self
            .upstream
            .send(
                &config.upstream,
                config.server.body_timeout,
                Request::from_parts(parts, body),
            )
            .await
            .map_err(Refusal::from)?;

        let (mut parts, body) = response.into_parts();
        log.upstream_status = Some(parts.status.as_u16());
        log.status = parts.status.as_u16();
        headers::remove_hop_by_hop(&mut parts.headers);
        let rewrite = if allowed {
            filter_gated_response(config, &mut parts, head_only)?
        } else {
            None
        };
        Ok((parts, body, rewrite))
    }
}

/// Response filter for an allowed visitor on a gated route: decides whether
/// the body is rewritten, and keeps shared caches from storing what the gate protects.
fn filter_gated_response(
    config: &Config,
    parts: &mut http::response::Parts,
    head_only: bool,
) -> Result<Option<PageEncoding>, Refusal> {
    if !is_html(&parts.headers) {
        if let Some(value) = &config.session.cache_control {
            headers::set_cache_control(&mut parts.headers, value.clone());
        }
        return Ok(None);
    }
    for name in [header::CONTENT_LENGTH, header::ETAG, header::LAST_MODIFIED] {
        parts.headers.remove(name);
    }
    headers::set_cache_control(
        &mut parts.headers,
        HeaderValue::from_static("private, no-store"),
    );
    let has_body = !(head_only
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED);
    if !has_body {
        return Ok(None);
    }
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(Refusal::Unrewritable(
            "the CMS compressed it despite Accept-Encoding: identity",
        ));
    }
    rewrite::encoding_for(charset(&parts.headers))
        .map(Some)
        .ok_or(Refusal::Unrewritable("its charset is not ASCII-compatible"))
}

/// How `forward` ended when it did not produce a CMS response.
enum Outcome {
    Denied,
    Refused(Refusal),
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::Refused(refusal)
    }
}

fn deny(config: &Config, mut log: AccessLog) -> Response<ResponseBody> {
    log.decision = Decision::Denied;
    log.status = StatusCode::FORBIDDEN.as_u16();
    let body = config.session.deny_page.clone();
    let mut response = Response::new(ResponseBody::full(body, log));
    *response.status_mut() = StatusCode::FORBIDDEN;
    set_own_headers(response.headers_mut(), "text/html; charset=utf-8");
    response
}

fn refuse(refusal: Refusal, mut log: AccessLog) -> Response<ResponseBody> {
    let status = refusal.status();
    log.decision = Decision::Error;
    log.status = status.as_u16();
    log.reason = Some(Cow::Owned(refusal.to_string()));
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ResponseBody::full(Bytes::from(text), log));
    *response.status_mut() = status;
    set_own_headers(response.headers_mut(), "text/plain; charset=utf-8");
    response
}

fn set_own_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

fn is_html(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|t| {
        t.eq_ignore_ascii_case("text/html") || t.eq_ignore_ascii_case("application/xhtml+xml")
    })
}

fn charset(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn recognises_html_and_its_charset() {
        assert!(is_html(&content_type("text/html")));
        assert!(is_html(&content_type("Text/HTML; charset=UTF-8")));
        assert!(!is_html(&content_type("text/htmlx")));
        assert!(!is_html(&content_type("application/json")));
        assert!(!is_html(&HeaderMap::new()));
        assert_eq!(
            charset(&content_type("text/html; charset=\"ISO-8859-1\"")),
            Some("ISO-8859-1")
        );
        assert_eq!(charset(&content_type("text/html")), None);
    }

    #[test]
    fn each_refusal_has_its_status() {
        assert_eq!(
            Refusal::BadPath(PathError::AboveRoot).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Refusal::Upstream(ProxyError::Timeout("x")).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            Refusal::Upstream(ProxyError::Unavailable("x".into())).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(Refusal::Unrewritable("x").status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            Refusal::Upstream(ProxyError::BadRequest("x")).status(),
            StatusCode::BAD_REQUEST
        );
        let io = std::io::Error::other("down");
        let allowlist = AllowlistError::Read {
            path: "a".into(),
            source: io,
        };
        assert_eq!(
            Refusal::Allowlist(allowlist).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
