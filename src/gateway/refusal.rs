//! Where a request ends without a CMS answer: the refusals, the one place
//! they become statuses, and the gateway's own 403 and error answers.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use thiserror::Error;

use crate::allowlist::SourceError;
use crate::body::ResponseBody;
use crate::finished::{Decision, RequestRecord};
use crate::gate::PathError;
use crate::proxy::ProxyError;
use crate::runtime::Runtime;

/// Why the gateway answered a request itself instead of with the CMS response.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The path cannot be judged safely.
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    /// The session source could not answer: fail closed.
    #[error("{0}")]
    SessionSource(#[from] SourceError),
    /// The CMS could not be reached or was too slow.
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    /// A gated HTML page the rewriter cannot read; sending it would leave embeds without tokens.
    #[error("cannot rewrite gated page: {0}")]
    Unrewritable(&'static str),
    /// A request the gateway does not serve as it is (a bad or missing Host).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A method the gateway never forwards (CONNECT: it is no forward proxy).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request body in a transfer coding other than chunked (501).
    #[error("the request's Transfer-Encoding is not chunked alone")]
    UnknownCoding,
    /// The CMS answered in a way that cannot be passed on (a 101 nobody asked for).
    #[error("cannot pass on the CMS's answer: {0}")]
    BadUpstream(&'static str),
    /// The client asked for more gated pages than `[session.rate_limit]` allows (429).
    #[error("rate limit: next request allowed in {0:?}")]
    TooManyRequests(Duration),
}

impl Refusal {
    /// The one place where failures become statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadPath(_)
            | Refusal::BadRequest(_)
            | Refusal::Upstream(ProxyError::BadRequest(_)) => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            Refusal::TooManyRequests(_) | Refusal::Upstream(ProxyError::ClientUploadsBusy(_)) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Refusal::SessionSource(_)
            | Refusal::Upstream(ProxyError::Busy(_) | ProxyError::UploadsBusy(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::Upstream(ProxyError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Upstream(ProxyError::VisitorTimeout(_)) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Upstream(ProxyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Upstream(ProxyError::Unavailable(_))
            | Refusal::Unrewritable(_)
            | Refusal::BadUpstream(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What a 503 tells a visitor to wait before trying again: long enough for
/// a restarted session store, short enough not to lose the visitor.
const RETRY_AFTER_SECS: &str = "5";

/// How `forward` ended when it did not produce a CMS response.
pub(super) enum Outcome {
    Denied,
    Refused(Refusal),
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::Refused(refusal)
    }
}

pub(super) fn deny(runtime: &Runtime, mut record: Box<RequestRecord>) -> Response<ResponseBody> {
    record.decision = Decision::Denied;
    record.status = StatusCode::FORBIDDEN.as_u16();
    let body = runtime.deny_page.clone();
    let mut response = Response::new(ResponseBody::own(body, record));
    *response.status_mut() = StatusCode::FORBIDDEN;
    set_own_headers(response.headers_mut(), "text/html; charset=utf-8");
    response
}

pub(super) fn refuse(refusal: Refusal, mut record: Box<RequestRecord>) -> Response<ResponseBody> {
    let status = refusal.status();
    record.decision = Decision::Error;
    record.status = status.as_u16();
    record.reason = Some(Cow::Owned(refusal.to_string()));
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ResponseBody::own(Bytes::from(text), record));
    *response.status_mut() = status;
    set_own_headers(response.headers_mut(), "text/plain; charset=utf-8");
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE
        || matches!(refusal, Refusal::Upstream(ProxyError::ClientUploadsBusy(_)))
    {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    if let Refusal::TooManyRequests(wait) = refusal {
        // Whole seconds, rounded up: never sooner than allowed.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// What a 405 says the gateway forwards (every method but CONNECT, in fact).
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub(super) const X_CONTENT_TYPE_OPTIONS: header::HeaderName = header::X_CONTENT_TYPE_OPTIONS;
pub(super) const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

pub(super) fn set_own_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
}
