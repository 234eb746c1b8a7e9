//! The end of a request: one record of what happened, handed to one hook.
//!
//! [`finished`] runs once per request, when its response body is done or
//! dropped, so it knows what only the end of a streamed response knows:
//! bytes sent, tokens minted, whether the stream finished, the full latency.
//! It writes the access log line and records the request's metrics.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method};

use crate::allowlist::SessionTag;
use crate::logging::{write_access_line, AccessLine, ACCESS_TARGET};
use crate::metrics::{RuntimeMetrics, UpstreamError};
use crate::rewrite::RewriteStats;

/// Paths are cut to this many bytes in logs.
const MAX_LOGGED_PATH: usize = 256;

/// What the gateway decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Public route, forwarded untouched.
    Passthrough,
    /// Gated route, session allowed.
    Allowed,
    /// Gated route, visitor turned away.
    Denied,
    /// The gateway could not serve the request (bad path, upstream failure...).
    Error,
}

impl Decision {
    /// The decision's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Passthrough => "passthrough",
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Error => "error",
        }
    }
}

/// The facts of one request, filled in as it goes through the phases.
#[derive(Debug)]
pub struct RequestRecord {
    started: Instant,
    method: Method,
    path: String,
    request_id: HeaderValue,
    metrics: Arc<RuntimeMetrics>,
    /// Route prefix that matched.
    pub route: Option<Arc<str>>,
    /// The route's index in the route table, for metrics.
    pub route_index: Option<usize>,
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
    /// Body bytes sent to the visitor.
    pub bytes: u64,
    /// Why the response body stopped early, if it did.
    pub failure: Option<String>,
    // Set once `finished` has run for this record.
    done: bool,
}

impl RequestRecord {
    /// Starts the record of a request known as `request_id`, to be counted
    /// in `metrics`. Boxed: it goes from the request to its response body,
    /// and each move would otherwise copy it whole.
    pub fn start(
        method: &Method,
        path: &str,
        started: Instant,
        request_id: HeaderValue,
        metrics: Arc<RuntimeMetrics>,
    ) -> Box<RequestRecord> {
        Box::new(RequestRecord {
            started,
            method: method.clone(),
            path: loggable_path(path),
            request_id,
            metrics,
            route: None,
            route_index: None,
            decision: Decision::Error,
            reason: None,
            session: None,
            status: 0,
            upstream_status: None,
            rewrite: None,
            bytes: 0,
            failure: None,
            done: false,
        })
    }

    /// The id the request is known by, in logs and to the CMS.
    pub fn request_id(&self) -> &HeaderValue {
        &self.request_id
    }
}

/// The path as it may be logged: each segment's parameters (`;jsessionid=...`,
/// also written `%3B`) left out, since servers carry sessions in them, and cut
/// to [`MAX_LOGGED_PATH`] bytes. The query is never logged at all.
fn loggable_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len().min(MAX_LOGGED_PATH));
    // `copied`: where the part still to copy starts; `at`: where to look on.
    let (mut copied, mut at) = (0, 0);
    while let Some(found) = memchr::memchr2(b';', b'%', &bytes[at..]) {
        let start = at + found;
        let parameters = bytes[start] == b';'
            || bytes
                .get(start + 1..start + 3)
                .is_some_and(|escape| escape.eq_ignore_ascii_case(b"3b"));
        if !parameters {
            at = start + 1;
            continue;
        }
        out.push_str(&path[copied..start]);
        // They run to the end of the segment.
        let end = memchr::memchr(b'/', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        (copied, at) = (end, end);
    }
    out.push_str(&path[copied..]);
    let mut end = out.len().min(MAX_LOGGED_PATH);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// The status logged for a request whose visitor went away before it had
/// an answer (nginx's habit).
const CANCELLED: u16 = 499;

impl Drop for RequestRecord {
    // A request dropped before it had a response (the visitor reset the
    // stream or went away) still gets its line and its count.
    fn drop(&mut self) {
        if !self.done {
            self.status = CANCELLED;
            self.failure
                .get_or_insert_with(|| "cancelled before the response".to_string());
            finished(self, false);
        }
    }
}

/// The one hook every request ends in: writes its access log line and
/// records its metrics. `complete` tells whether the whole body went out.
pub fn finished(record: &mut RequestRecord, complete: bool) {
    record.done = true;
    let took = record.started.elapsed();
    let metrics = &record.metrics;
    metrics.request(record.route_index, record.decision, record.status, took);
    if record.rewrite.is_some() {
        metrics.rewritten(record.bytes);
    }
    if record.failure.is_some() && record.upstream_status.is_some() {
        metrics.process().upstream_error(UpstreamError::Body);
    }
    let route = record.route.as_deref().unwrap_or("-");
    let reason = record.reason.as_deref().unwrap_or("-");
    let session = OrDash(record.session);
    let upstream_status = record.upstream_status.unwrap_or(0);
    let tokens = record.rewrite.as_ref().map_or(0, |s| s.minted());
    let refused = record.rewrite.as_ref().map_or(0, |s| s.refused());
    let unentitled = record.rewrite.as_ref().map_or(0, |s| s.unentitled());
    // To the nearest microsecond, as the line always showed it.
    let latency_us = u64::try_from((took.as_nanos() + 500) / 1000).unwrap_or(u64::MAX);
    let decision = record.decision.as_str();
    let (method, path, status, bytes) = (&record.method, &record.path, record.status, record.bytes);
    // Made by the gateway or checked for visible ASCII before it was kept.
    let request_id = record.request_id.to_str().unwrap_or("-");
    let line = AccessLine {
        request_id,
        method: method.as_str(),
        path,
        route,
        decision,
        reason,
        session: &session,
        status,
        upstream_status,
        tokens,
        refused,
        unentitled,
        bytes,
        latency_us,
        failure: record.failure.as_deref(),
        complete,
    };
    if write_access_line(&line) {
        return;
    }
    // No logger of ours (a library user's subscriber): a `tracing` event.
    let latency_ms = latency_us as f64 / 1000.0;
    if let Some(failure) = &record.failure {
        tracing::warn!(
            target: ACCESS_TARGET,
            request_id, %method, %path, route, decision, reason, session = %session,
            status, upstream_status, tokens, refused, unentitled, bytes,
            latency_ms, failure = %failure, "response aborted"
        );
    } else {
        tracing::info!(
            target: ACCESS_TARGET,
            request_id, %method, %path, route, decision, reason, session = %session,
            status, upstream_status, tokens, refused, unentitled, bytes,
            latency_ms, complete, "request"
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_carry_no_path_parameters() {
        for (sent, logged) in [
            ("/videos/a", "/videos/a"),
            ("/videos/a;jsessionid=ABC123/b", "/videos/a/b"),
            ("/shop;JSESSIONID=x", "/shop"),
            ("/a;x=1;sid=2/b;c/d", "/a/b/d"),
            ("/a%3Bjsessionid=ABC/b", "/a/b"),
            ("/a%3bsid=ABC", "/a"),
            ("/caf%C3%A9/50%", "/caf%C3%A9/50%"),
            ("/%", "/%"),
            ("/;", "/"),
        ] {
            assert_eq!(loggable_path(sent), logged, "{sent}");
        }
        let long = format!("/{}é", "x".repeat(MAX_LOGGED_PATH - 2));
        assert_eq!(loggable_path(&long).len(), MAX_LOGGED_PATH - 1);
    }
}
