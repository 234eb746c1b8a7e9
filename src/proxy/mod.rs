//! The upstream (CMS) side: the HTTP client, request preparation and its errors.

mod client_uploads;
pub mod cookies;
pub mod forwarding;
mod framing;
pub mod headers;
pub mod host;
mod pool;
mod request_body;
pub mod tls;
pub mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use thiserror::Error;

use client_uploads::ClientUploads;
use pool::{Pool, PoolError};
pub use request_body::{reset_before_end, TooLarge, VisitorBody};
use request_body::{BadBody, MalformedStream, RequestBody, VisitorQuiet, VisitorSlow};

/// `[upstream]`, validated: where the CMS is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// host:port of the CMS.
    pub authority: Authority,
    /// `authority` as a Host header value, made once.
    pub host_header: HeaderValue,
    /// Path prefix put before every request path ("" for none).
    pub base_path: String,
    /// Limit on establishing a TCP connection to the CMS.
    pub connect_timeout: Duration,
    /// Limit on the CMS sending response headers.
    pub response_timeout: Duration,
    /// Limit on the CMS going quiet in the middle of a response body.
    pub read_timeout: Duration,
    /// Send the visitor's Host header to the CMS rather than the upstream's.
    pub preserve_host: bool,
    /// Pass on request headers whose names hold an underscore.
    pub underscores_in_headers: bool,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept.
    pub pool_max_idle: usize,
    /// How an `https://` CMS is checked.
    pub tls: tls::UpstreamTls,
    /// HTTP/2 to an `https://` CMS that offers it by ALPN.
    pub http2: bool,
    /// Most requests waiting for the CMS's answer at once; 0 for no limit.
    pub max_in_flight: usize,
    /// Most of those requests whose bodies are still coming in (0: no limit of their own).
    pub max_uploads_in_flight: usize,
    /// Most uploads in flight from one client address (0: no limit).
    pub max_uploads_per_client: usize,
    /// Which addresses count as one client for `max_uploads_per_client`.
    pub client_prefix: crate::client::ClientPrefix,
    /// How long a request waits for a place under `max_in_flight` before a 503.
    pub queue_timeout: Duration,
}

impl UpstreamSettings {
    /// Whether a connection to the CMS may speak HTTP/2 (an `https://` CMS
    /// offering it by ALPN, unless turned off).
    pub fn may_use_http2(&self) -> bool {
        self.http2 && self.scheme == Scheme::HTTPS
    }
}

/// Why the CMS gave no response.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// Could not connect, or the connection failed mid-request (502).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No connection or no response headers in time (504).
    #[error("upstream timed out {0}")]
    Timeout(&'static str),
    /// The visitor stopped sending the request body (408).
    #[error("{0}")]
    VisitorTimeout(String),
    /// The request cannot be turned into an upstream request (400).
    #[error("cannot forward request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than allowed (413).
    #[error("{0}")]
    TooLarge(TooLarge),
    /// `max_in_flight` requests were at the CMS for all of `queue_timeout` (503).
    #[error("upstream busy: {0} requests in flight, none finished within the queue timeout")]
    Busy(usize),
    /// `max_uploads_in_flight` uploads were coming in for all of `queue_timeout` (503).
    #[error("upstream busy: {0} uploads in flight, none sent whole within the queue timeout")]
    UploadsBusy(usize),
    /// The client already had `max_uploads_per_client` uploads coming in (429).
    #[error("the client has {0} uploads in flight already, its most")]
    ClientUploadsBusy(usize),
}

/// A pooled HTTP/1.1 client to the CMS, over TLS for an `https://` one.
/// Clones share one pool. A connection on which the CMS sends bytes past the
/// end of a response is closed, never reused ([`framing`]).
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Pool<framing::Framed<HttpsConnector<HttpConnector>>>,
    settings: UpstreamSettings,
    // One permit per request waiting for the CMS's answer; `None` for no limit.
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
    // One more per request whose body is still coming in, so that slow
    // uploads cannot take every place of `in_flight` from page views.
    uploads: Option<Arc<tokio::sync::Semaphore>>,
    // Each client's uploads in flight, so that one cannot take all of `uploads`.
    per_client: Option<ClientUploads>,
}

impl Upstream {
    /// Builds the client with the configured timeouts, pool and TLS.
    pub fn new(settings: &UpstreamSettings) -> Result<Upstream, String> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        // TLS is only set up for an https:// CMS: a cleartext one needs no roots.
        connector.enforce_http(false);
        let tls_config = if settings.scheme == Scheme::HTTPS {
            tls::client_config(&settings.tls)?
        } else {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        if let Some(name) = tls::fixed_server_name(&settings.tls)? {
            builder =
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
        }
        // The certificate is checked for the upstream's name; made here so a
        // host rustls cannot name fails the config, not every request.
        if settings.tls.server_name.is_none() && settings.scheme == Scheme::HTTPS {
            let host = settings
                .authority
                .host()
                .trim_matches(|c| c == '[' || c == ']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|err| format!("upstream host {host:?}: {err}"))?;
            builder =
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
        }
        let target = Uri::builder()
            .scheme(settings.scheme.clone())
            .authority(settings.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|err| err.to_string())?;
        // The pool dials `target` whatever host a request names.
        let https = if settings.may_use_http2() {
            // HTTP/2 when the CMS offers it by ALPN, HTTP/1.1 otherwise.
            builder.enable_all_versions().wrap_connector(connector)
        } else {
            builder.enable_http1().wrap_connector(connector)
        };
        let client = Pool::new(
            framing::Framed(https),
            target,
            settings.pool_max_idle,
            settings.pool_idle_timeout,
        );
        Ok(Upstream {
            client,
            settings: settings.clone(),
            in_flight: (settings.max_in_flight > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight))),
            uploads: (settings.max_uploads_in_flight > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(settings.max_uploads_in_flight))),
            per_client: (settings.max_uploads_per_client > 0).then(|| {
                ClientUploads::new(settings.max_uploads_per_client, settings.client_prefix)
            }),
        })
    }

    /// What this client was built from.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Whether the CMS accepts a TCP connection within `timeout` (for readiness).
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let authority = &self.settings.authority;
        let port = authority.port_u16().unwrap_or(80);
        let target = (
            authority.host().trim_matches(|c| c == '[' || c == ']'),
            port,
        );
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("upstream {authority}: {err}")),
            Err(_) => Err(format!(
                "upstream {authority}: no connection within {timeout:?}"
            )),
        }
    }

    /// Sends `request` from `client` and waits for the response headers: at
    /// most `response_timeout` once the request body has been sent whole,
    /// and at most `body_timeout` between two pieces of that body.
    pub async fn send(
        &self,
        // By reference: by value (17 bytes), it cost every request through
        // here 1.2k instructions of copying (callgrind, HTTP/1.1 passthrough).
        client: &IpAddr,
        body_timeout: Duration,
        body_deadline: Duration,
        max_body: Option<u64>,
        request: Request<VisitorBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let queued_until = tokio::time::Instant::now() + self.settings.queue_timeout;
        let uploading = request
            .body()
            .rest
            .as_ref()
            .is_some_and(|rest| !http_body::Body::is_end_stream(rest));
        // Held until the body has gone whole: the client's own place first,
        // refused at once past its share (only its own uploads could free
        // one), then a place among all uploads, so that uploads waiting for
        // theirs hold none of `in_flight`. Boxed once taken: the states that
        // wait on the CMS carry one word for them.
        let upload = if uploading {
            let own = match &self.per_client {
                Some(per_client) => Some(per_client.take(*client).ok_or(
                    ProxyError::ClientUploadsBusy(self.settings.max_uploads_per_client),
                )?),
                None => None,
            };
            let among_all = match &self.uploads {
                Some(uploads) => Some(
                    acquire(uploads, queued_until)
                        .await
                        .ok_or(ProxyError::UploadsBusy(self.settings.max_uploads_in_flight))?,
                ),
                None => None,
            };
            Some(Box::new(UploadPlaces {
                _own: own,
                _among_all: among_all,
            }))
        } else {
            None
        };
        // Held until the CMS's answer head is in: the CMS does the work meanwhile.
        let _permit = match &self.in_flight {
            None => None,
            Some(in_flight) => Some(
                acquire(in_flight, queued_until)
                    .await
                    .ok_or(ProxyError::Busy(self.settings.max_in_flight))?,
            ),
        };
        let (parts, body) = request.into_parts();
        let (body, sent) = RequestBody::new(body, body_timeout, body_deadline, max_body);
        let response = self.client.send(Request::from_parts(parts, body));
        tokio::pin!(response);
        if let Some(sent) = sent {
            tokio::select! {
                result = &mut response => return classify(result),
                _ = sent => {}
            }
        }
        drop(upload);
        match tokio::time::timeout(self.settings.response_timeout, response).await {
            Err(_) => Err(ProxyError::Timeout("waiting for response headers")),
            Ok(result) => classify(result),
        }
    }
}

/// The places an upload holds until its body has gone whole (held for
/// their drop, never read).
struct UploadPlaces {
    _own: Option<client_uploads::ClientUpload>,
    _among_all: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A place under `limit`, waited for until `deadline`; `None` past it.
async fn acquire(
    limit: &Arc<tokio::sync::Semaphore>,
    deadline: tokio::time::Instant,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout_at(deadline, limit.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

fn classify(
    result: Result<Response<Incoming>, PoolError>,
) -> Result<Response<Incoming>, ProxyError> {
    match result {
        Ok(response) => Ok(response),
        Err(err) => {
            if let Some(too_large) = find_cause::<TooLarge>(&err) {
                return Err(ProxyError::TooLarge(TooLarge(too_large.0)));
            }
            if let Some(quiet) = find_cause::<VisitorQuiet>(&err) {
                return Err(ProxyError::VisitorTimeout(quiet.to_string()));
            }
            if let Some(slow) = find_cause::<VisitorSlow>(&err) {
                return Err(ProxyError::VisitorTimeout(slow.to_string()));
            }
            if find_cause::<BadBody>(&err).is_some()
                || find_cause::<MalformedStream>(&err).is_some()
            {
                return Err(ProxyError::BadRequest(
                    "the request body is malformed or cut off",
                ));
            }
            if is_timeout(&err) {
                return Err(ProxyError::Timeout("connecting"));
            }
            Err(ProxyError::Unavailable(describe(&err)))
        }
    }
}

fn find_cause<'e, E: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e E> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

fn is_timeout(err: &PoolError) -> bool {
    find_cause::<std::io::Error>(err).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// An error with its causes, `: `-separated. An HTTP client's own text says
/// little ("client error (Connect)"); the causes say what happened.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Request headers that would stop a gated page from coming back fresh and
/// readable: a 304 names no type, so one for a page could not be told from
/// one for a video, and would leave the browser showing a copy it kept with
/// stale tokens; Accept-Encoding gives way to identity (the rewriter reads
/// a page uncompressed). Range and
/// If-Range pass (video seeking, resumed downloads), one range at a time, on
/// GET and HEAD: see [`range_kept`]; a page the CMS answers in part is asked
/// for again whole by the gateway.
static UNCACHED_ONLY: [header::HeaderName; 3] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::ACCEPT_ENCODING,
];

/// Whether a gated request's Range goes to the CMS: one range (a
/// multipart/byteranges answer would hide each part's type from the
/// response filter), on GET or HEAD (range handling is defined for GET
/// only; HEAD asks for GET's head). Dropping any other is what a CMS may do
/// anyway: the visitor then gets the whole body, as HTTP allows. If-Range
/// goes only with the Range it conditions.
fn range_kept(parts: &Parts) -> bool {
    let mut ranges = parts.headers.get_all(header::RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return false;
    };
    matches!(parts.method, http::Method::GET | http::Method::HEAD)
        && !range.as_bytes().contains(&b',')
}

/// The visitor's side of a request, as the CMS is told of it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The address of whoever connected to the gateway.
    pub peer: SocketAddr,
    /// Whether that connection was TLS: X-Forwarded-Proto is `https` then.
    pub tls: bool,
}

impl ConnectionInfo {
    fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Rewrites the visitor's request head into the CMS request head.
///
/// On gated routes the CMS is asked for an uncompressed, unconditional
/// answer, so that the rewriter sees every iframe of a page; a single Range
/// (and its If-Range) on a GET or HEAD passes, any other is dropped.
pub fn prepare_request(
    parts: &mut Parts,
    settings: &UpstreamSettings,
    conn: ConnectionInfo,
    gated: bool,
    trusted_peer: bool,
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
    if !settings.underscores_in_headers {
        headers::remove_underscored(&mut parts.headers);
    }
    cookies::join_cookies(&mut parts.headers);
    forwarding::add_forwarded(
        &mut parts.headers,
        conn.peer.ip(),
        conn.proto(),
        visitor_host.clone(),
        trusted_peer,
    );
    if gated {
        headers::remove_all(&mut parts.headers, &UNCACHED_ONLY);
        if !range_kept(parts) {
            parts.headers.remove(header::RANGE);
            parts.headers.remove(header::IF_RANGE);
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
    parts.uri = cms_target(&parts.uri, &host, settings)?;
    parts.headers.insert(header::HOST, host);
    parts.version = Version::HTTP_11;
    Ok(())
}

/// The URL the CMS is asked for. HTTP/1.1 sends only the path (the host goes
/// in Host), so for a CMS that speaks nothing else it is the origin form,
/// taken as it is when there is no base path. Where HTTP/2 may be spoken the
/// URL names the host the CMS is to serve, sent as :authority; the
/// connection goes to the upstream whatever it says, on the one pool every
/// host shares.
fn cms_target(
    visitor: &Uri,
    host: &HeaderValue,
    settings: &UpstreamSettings,
) -> Result<Uri, ProxyError> {
    let path_and_query = visitor.path_and_query();
    if !settings.may_use_http2() && settings.base_path.is_empty() {
        let origin = path_and_query
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        return Ok(Uri::from(origin));
    }
    let path_and_query = path_and_query.map_or("/", |pq| pq.as_str());
    let mut target = String::with_capacity(settings.base_path.len() + path_and_query.len());
    target.push_str(&settings.base_path);
    target.push_str(path_and_query);
    if !settings.may_use_http2() {
        return Uri::try_from(target).map_err(unforwardable);
    }
    let authority = host
        .to_str()
        .ok()
        .and_then(|h| h.parse::<Authority>().ok())
        .filter(|a| !a.as_str().contains('@'))
        .unwrap_or_else(|| settings.authority.clone());
    Uri::builder()
        .scheme(settings.scheme.clone())
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(unforwardable)
}

fn unforwardable<E>(_: E) -> ProxyError {
    ProxyError::BadRequest("request target cannot be forwarded")
}

#[cfg(test)]
mod tests;

/// A header map of `pairs`, in order, for the header modules' tests.
#[cfg(test)]
fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}
