//! The upstream (CMS) side: the HTTP client, request preparation and its errors.

pub mod headers;

use std::error::Error as _;
use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;

use crate::config::UpstreamSettings;

/// Why the CMS gave no response.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// Could not connect, or the connection failed mid-request (502).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No connection or no response headers in time (504).
    #[error("upstream timed out {0}")]
    Timeout(&'static str),
    /// The request cannot be turned into an upstream request (400).
    #[error("cannot forward request: {0}")]
    BadRequest(&'static str),
}

/// A pooled HTTP/1.1 client to the CMS.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
}

impl Upstream {
    /// Builds the client with the configured timeouts and pool.
    pub fn new(settings: &UpstreamSettings) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector);
        Upstream { client }
    }

    /// Sends `request` and waits for the response headers.
    pub async fn send(
        &self,
        settings: &UpstreamSettings,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, ProxyError> {
        match tokio::time::timeout(settings.response_timeout, self.client.request(request)).await {
            Err(_) => Err(ProxyError::Timeout("waiting for response headers")),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) if is_timeout(&err) => Err(ProxyError::Timeout("connecting")),
            Ok(Err(err)) => Err(ProxyError::Unavailable(describe(&err))),
        }
    }
}

fn is_timeout(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

// The client's Display says little ("client error (Connect)"); the causes say what happened.
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Request headers that would stop a gated page from coming back whole and fresh.
const UNCACHED_ONLY: [header::HeaderName; 5] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::ACCEPT_ENCODING,
];

/// Rewrites the visitor's request head into the CMS request head.
///
/// On gated routes the CMS is asked for the whole, uncompressed, unconditional
/// page, so that the rewriter sees every iframe.
pub fn prepare_request(
    parts: &mut Parts,
    settings: &UpstreamSettings,
    client: SocketAddr,
    gated: bool,
    trust_forwarded: bool,
) -> Result<(), ProxyError> {
    // HTTP/2 carries the host in :authority, HTTP/1.1 in Host; an
    // absolute-form target's authority wins over Host (RFC 9112 §3.2.2).
    let visitor_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::remove_route_overrides(&mut parts.headers);
    headers::join_cookies(&mut parts.headers);
    headers::add_forwarded(
        &mut parts.headers,
        client.ip(),
        "http",
        visitor_host.clone(),
        trust_forwarded,
    );
    if gated {
        for name in &UNCACHED_ONLY {
            parts.headers.remove(name);
        }
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let host = match visitor_host {
        Some(host) if settings.preserve_host => host,
        _ => settings.host_header.clone(),
    };
    parts.headers.insert(header::HOST, host);

    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut target = String::with_capacity(settings.base_path.len() + path_and_query.len());
    target.push_str(&settings.base_path);
    target.push_str(path_and_query);
    parts.uri = Uri::builder()
        .scheme(settings.scheme.clone())
        .authority(settings.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;
    Ok(())
}
