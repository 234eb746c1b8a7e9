//! The admin listener, never the visitors' port: `/healthz` (alive),
//! `/readyz` (fit to take traffic), `/metrics` (Prometheus text).
//!
//! Readiness is checked in the background, not per probe: the upstream
//! accepts a connection, and the session source answers, within
//! `check_timeout`, every `check_interval`. A draining gateway is not ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin endpoints listen (fixed at start).
    pub listen: SocketAddr,
    /// How often readiness is checked.
    pub check_interval: Duration,
    /// How long each readiness check may take.
    pub check_timeout: Duration,
}

/// The last readiness checks' results: `None` for a check that passed.
#[derive(Debug, Default)]
pub struct Readiness {
    failures: Mutex<Option<Failures>>,
}

#[derive(Debug, Clone, Default)]
struct Failures {
    upstream: Option<String>,
    sessions: Option<String>,
}

impl Readiness {
    fn set(&self, failures: Failures) {
        *self.failures.lock().unwrap_or_else(|p| p.into_inner()) = Some(failures);
    }

    fn get(&self) -> Option<Failures> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Checks readiness every `check_interval`, for as long as the task runs.
/// A reload that drops `[admin]` leaves the listener serving until a
/// restart, so the checks go on too, as the last `[admin]` in force said.
pub async fn check_readiness(gateway: Arc<Gateway>, readiness: Arc<Readiness>) {
    let mut admin: Option<AdminSettings> = None;
    loop {
        let runtime = gateway.runtime();
        if let Some(now) = &runtime.settings().admin {
            admin = Some(now.clone());
        }
        let Some(admin) = admin.clone() else {
            // Only started with an admin listener, so only without a config that has one.
            return;
        };
        let upstream = runtime.upstream.probe(admin.check_timeout);
        let sessions = runtime.gate.sessions().probe(admin.check_timeout);
        let (upstream, sessions) = tokio::join!(upstream, sessions);
        readiness.set(Failures {
            upstream: upstream.err(),
            sessions: sessions.err(),
        });
        drop(runtime);
        tokio::time::sleep(admin.check_interval).await;
    }
}

/// Serves the admin endpoints on `listener` until `closing`, then drains them.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    readiness: Arc<Readiness>,
    closing: crate::server::Closing,
) {
    let answering = gateway.clone();
    let answer = move |request: Request<Incoming>, _peer| {
        let response = answer(&request, &answering, &readiness);
        std::future::ready(response)
    };
    crate::server::serve_side(listener, gateway, "admin", answer, closing).await;
}

fn answer(
    request: &Request<Incoming>,
    gateway: &Gateway,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness_report(gateway, readiness);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, "application/json", body)
        }
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.runtime().metrics.process().encode(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Whether the gateway is ready, and a small JSON body that says which check failed.
fn readiness_report(gateway: &Gateway, readiness: &Readiness) -> (bool, String) {
    let draining = gateway.is_draining();
    let (upstream, sessions) = match readiness.get() {
        None => (
            Some("not checked yet".to_string()),
            Some("not checked yet".to_string()),
        ),
        Some(failures) => (failures.upstream, failures.sessions),
    };
    let ready = !draining && upstream.is_none() && sessions.is_none();
    let check = |failure: &Option<String>| match failure {
        None => "\"ok\"".to_string(),
        Some(why) => json_string(why),
    };
    let body = format!(
        "{{\"ready\":{ready},\"draining\":{draining},\"checks\":{{\"runtime\":\"ok\",\"upstream\":{},\"sessions\":{}}}}}\n",
        check(&upstream),
        check(&sessions)
    );
    (ready, body)
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
