//! The body the gateway answers with, and the access log line it writes when done.
//!
//! The log line is written when the body is dropped, so it carries what only
//! the end of a streamed response knows: bytes sent, tokens minted, whether
//! the stream finished, and the full latency.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::allowlist::SessionTag;
use crate::idle::IdleTimer;
use crate::rewrite::{RewriteBody, RewriteStats};

/// Boxed error of a response body.
pub type BodyError = Box<dyn StdError + Send + Sync>;

/// Paths are cut to this many bytes in logs.
const MAX_LOGGED_PATH: usize = 256;

/// What the gateway decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Ungated route, forwarded untouched.
    Passthrough,
    /// Gated route, session allowed.
    Allowed,
    /// Gated route, visitor turned away.
    Denied,
    /// The gateway could not serve the request (bad path, upstream failure...).
    Error,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Passthrough => "passthrough",
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Error => "error",
        }
    }
}

/// The facts of one request, logged as one line when its response body is dropped.
#[derive(Debug)]
pub struct AccessLog {
    started: Instant,
    method: Method,
    path: String,
    /// Route prefix that matched.
    pub route: Option<Arc<str>>,
    /// What the gateway decided.
    pub decision: Decision,
    /// Why it was denied or failed.
    pub reason: Option<Cow<'static, str>>,
    /// Short hash of the session id, never the id.
    pub session: Option<SessionTag>,
    /// Status the visitor got.
    pub status: u16,
    /// Status the CMS answered with.
    pub upstream_status: Option<u16>,
    /// Rewrite counters, when the page was rewritten.
    pub rewrite: Option<Arc<RewriteStats>>,
    bytes: u64,
    failure: Option<String>,
}

impl AccessLog {
    /// Starts the record of a request.
    pub fn start(method: &Method, path: &str, started: Instant) -> AccessLog {
        let mut end = path.len().min(MAX_LOGGED_PATH);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        AccessLog {
            started,
            method: method.clone(),
            path: path[..end].to_string(),
            route: None,
            decision: Decision::Error,
            reason: None,
            session: None,
            status: 0,
            upstream_status: None,
            rewrite: None,
            bytes: 0,
            failure: None,
        }
    }

    fn emit(&self, complete: bool) {
        let route = self.route.as_deref().unwrap_or("-");
        let reason = self.reason.as_deref().unwrap_or("-");
        let session = OrDash(self.session);
        let upstream_status = self.upstream_status.unwrap_or(0);
        let tokens = self.rewrite.as_ref().map_or(0, |s| s.minted());
        let refused = self.rewrite.as_ref().map_or(0, |s| s.refused());
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let latency_ms = (latency_ms * 1000.0).round() / 1000.0;
        let decision = self.decision.as_str();
        if let Some(failure) = &self.failure {
            tracing::warn!(
                method = %self.method, path = %self.path, route, decision, reason, session = %session,
                status = self.status, upstream_status, tokens, refused, bytes = self.bytes,
                latency_ms, failure = %failure, "response aborted"
            );
        } else {
            tracing::info!(
                method = %self.method, path = %self.path, route, decision, reason, session = %session,
                status = self.status, upstream_status, tokens, refused, bytes = self.bytes,
                latency_ms, complete, "request"
            );
        }
    }
}

/// Shows the value, or `-` when there is none, without allocating.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The CMS stopped sending a body it had begun.
#[derive(Debug, thiserror::Error)]
#[error("upstream went quiet mid-body: {0}")]
struct UpstreamQuiet(crate::idle::IdleTimeout);

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
    Rewrite(Box<RewriteBody>),
}

/// A response body: fixed bytes, the CMS body as is, or the CMS body rewritten.
pub struct ResponseBody {
    kind: Kind,
    log: Option<AccessLog>,
    idle: IdleTimer,
}

impl ResponseBody {
    /// A body made by the gateway itself (403 page, error text).
    pub fn full(bytes: Bytes, log: AccessLog) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            log: Some(log),
            idle: IdleTimer::new(None),
        }
    }

    /// The CMS body, byte for byte; fails if the CMS goes quiet for `idle_limit`.
    pub fn upstream(body: Incoming, log: AccessLog, idle_limit: Duration) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream(body),
            log: Some(log),
            idle: IdleTimer::new(Some(idle_limit)),
        }
    }

    /// The CMS body through the iframe rewriter; fails if the CMS goes quiet for `idle_limit`.
    pub fn rewritten(body: RewriteBody, log: AccessLog, idle_limit: Duration) -> ResponseBody {
        ResponseBody {
            kind: Kind::Rewrite(Box::new(body)),
            log: Some(log),
            idle: IdleTimer::new(Some(idle_limit)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let mut polled: Poll<Option<Result<Frame<Bytes>, BodyError>>> = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Rewrite(body) => Pin::new(body.as_mut()).poll_frame(cx).map_err(Into::into),
        };
        match polled {
            Poll::Pending => {
                if let Some(timeout) = this.idle.expired(cx) {
                    // Stop reading: the CMS connection is dropped with the body.
                    this.kind = Kind::Full(None);
                    polled = Poll::Ready(Some(Err(UpstreamQuiet(timeout).into())));
                }
            }
            Poll::Ready(_) => this.idle.progressed(),
        }
        if let (Poll::Ready(Some(result)), Some(log)) = (&polled, this.log.as_mut()) {
            match result {
                Ok(frame) => log.bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(err) => log.failure = Some(err.to_string()),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Rewrite(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.size_hint(),
            Kind::Rewrite(_) => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.emit(self.is_end_stream());
        }
    }
}
