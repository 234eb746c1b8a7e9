//! The request's way through, in one place:
//! route -> gate -> upstream request -> response filter -> body layers -> finished.
//!
//! A request loads the runtime once and keeps it to its end, so a reload in
//! the middle never mixes two configs in one response. Every refusal is
//! mapped to its status in [`Refusal::status`], and nothing from the CMS
//! reaches a visitor the gate turned away.

mod form;
mod page_type;
mod response;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either};
use hyper::body::{Body as _, Incoming};
use thiserror::Error;

use crate::allowlist::{OnError, Principal, SourceError, Visit};
use crate::body::{sniff_bom, Bom, BoxBody, ReadLimit, ResponseBody};
use crate::compression::{self, Decoded, Encoded};
use crate::finished::{Decision, RequestRecord};
use crate::gate::{Access, Admission, DenyReason, PathError, RouteMatch};
use crate::metrics::UpstreamError;
use crate::proxy::upgrade::{self, HoldConnection};
use crate::proxy::{self, headers, ConnectionInfo, ProxyError, TooLarge, VisitorBody};
use crate::rewrite::{self, PageTokens, RewriteBody, RewriteStats};
use crate::runtime::Runtime;
use crate::token;
use response::{filter_gated_response, partial_page, without_range, PagePlan};

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

/// The gateway: the runtime in force, behind one swap.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    shutdown_timeout: Duration,
    draining: AtomicBool,
}

impl Gateway {
    /// The gateway around its first runtime. `shutdown_timeout` is read at start only.
    pub fn new(runtime: Runtime) -> Gateway {
        Gateway {
            shutdown_timeout: runtime.settings().server.shutdown_timeout,
            runtime: ArcSwap::from_pointee(runtime),
            draining: AtomicBool::new(false),
        }
    }

    /// Marks the gateway as shutting down: from now on it reports not ready.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The runtime in force.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Puts `runtime` in force for every request that starts from now on.
    pub fn install(&self, runtime: Arc<Runtime>) {
        self.runtime.store(runtime);
    }

    /// How long shutdown waits for requests in flight.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Serves one request that came in on `conn`.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        conn: ConnectionInfo,
    ) -> Response<ResponseBody> {
        let runtime = self.runtime.load_full();
        let trusted_peer = runtime
            .settings()
            .server
            .trusted_proxies
            .trusts(conn.peer.ip());
        let request_id = headers::request_id(request.headers(), trusted_peer);
        let mut record = RequestRecord::start(
            request.method(),
            request.uri().path(),
            Instant::now(),
            request_id.clone(),
            runtime.metrics.clone(),
        );
        // An HTTP/1.1 request body the gateway may answer before reading
        // whole: the connection cannot carry another request after it.
        let unread_body =
            request.version() < http::Version::HTTP_2 && !request.body().is_end_stream();
        let mut own_answer = false;
        let mut response = match admit(&runtime, &mut request, conn, &mut record).await {
            // Boxed: a request the gate turns away never carries the CMS
            // exchange's state (5 KB) in its future.
            Ok(admitted) => {
                match Box::pin(from_cms(&runtime, request, conn, &mut record, admitted)).await {
                    Ok((parts, body)) => {
                        Response::from_parts(parts, ResponseBody::stream(body, record, runtime))
                    }
                    Err(refusal) => {
                        own_answer = true;
                        refuse(refusal, record)
                    }
                }
            }
            Err(Outcome::Denied) => {
                own_answer = true;
                deny(&runtime, record)
            }
            Err(Outcome::Refused(refusal)) => {
                own_answer = true;
                refuse(refusal, record)
            }
        };
        let answer_headers = response.headers_mut();
        answer_headers.insert(headers::X_REQUEST_ID, request_id);
        if own_answer && unread_body {
            // Said, so the client opens a new connection for its next request
            // instead of losing it on this one.
            answer_headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The body layers of a forwarded response: read-limited, and for a gated
/// page decoded, rewritten and encoded. A page's first bytes are read before
/// its head goes out, since a byte-order mark decides how it is read.
async fn response_body(
    runtime: &Runtime,
    forwarded: Forwarded,
    record: &mut RequestRecord,
) -> Result<(http::response::Parts, BoxBody), Refusal> {
    let Forwarded {
        parts,
        body,
        rewrite,
    } = forwarded;
    let settings = runtime.settings();
    let body = ReadLimit::new(body, settings.upstream.read_timeout);
    let Some((plan, principal, client)) = rewrite else {
        return Ok((parts, body.boxed_unsync()));
    };
    let source = match plan.decode {
        None => Either::Left(body),
        Some(coding) => Either::Right(Decoded::new(body, coding)),
    };
    let (bom, source) = sniff_bom(source).await.map_err(|err| {
        Refusal::Upstream(ProxyError::Unavailable(format!(
            "reading the page's first bytes: {err}"
        )))
    })?;
    let encoding = match bom {
        // As browsers do: the mark wins over the header and any <meta>.
        Some(Bom::Utf8) => rewrite::encoding_for(Some("utf-8")),
        Some(Bom::Utf16) => None,
        None => plan.encoding,
    }
    .ok_or(Refusal::Unrewritable(
        "its encoding is not ASCII-compatible (or not known)",
    ))?;
    let encoding = if plan.xml {
        encoding.as_xml()
    } else {
        encoding
    };
    let stats = Arc::new(RewriteStats::default());
    record.rewrite = Some(stats.clone());
    let tokens = PageTokens {
        embeds: runtime.embeds.clone(),
        now: token::unix_now(),
        principal,
        addr: Some(client),
        metrics: runtime.metrics.clone(),
    };
    let page = RewriteBody::new(source, tokens, settings.rewrite, encoding, stats);
    let body = match plan.encode {
        None => page.map_err(Into::into).boxed_unsync(),
        Some(coding) => Encoded::new(page, coding, settings.compression.level).boxed_unsync(),
    };
    Ok((parts, body))
}

/// Checks the EdgeAuth token a request to a `access = "token"` route carries.
fn check_token(
    runtime: &Runtime,
    route: &RouteMatch,
    request: &Request<Incoming>,
    client: std::net::IpAddr,
) -> Result<(), token::verify::Rejection> {
    use token::verify::Rejection;
    let verifier = route
        .spec
        .and_then(|index| runtime.route_tokens.get(index))
        .and_then(Option::as_ref)
        .ok_or(Rejection::Failed(
            "route",
            "no token check configured".into(),
        ))?;
    let token = verifier
        .token_in(request.uri(), request.headers())
        .ok_or(Rejection::Missing)?;
    let path = route
        .normal
        .as_deref()
        .and_then(|path| std::str::from_utf8(path).ok())
        .ok_or(Rejection::Failed("acl", "path is not UTF-8".into()))?;
    verifier
        .check(&token, path, Some(client), token::unix_now())
        .verdict()
}

/// The CMS response head and body, and how the body is to be rewritten, if it is.
struct Forwarded {
    parts: http::response::Parts,
    body: Incoming,
    rewrite: Option<(PagePlan, Principal, std::net::IpAddr)>,
}

/// What the gate let through: whether its route is gated, the visitor it
/// admitted there, the client's address, and what was read of the body.
struct Admitted {
    gated: bool,
    principal: Option<Principal>,
    client: std::net::IpAddr,
    read: Option<form::FormRead>,
}

/// Runs the request through route and gate: whether it may reach the CMS.
async fn admit(
    runtime: &Runtime,
    request: &mut Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
) -> Result<Admitted, Outcome> {
    if request.method() == Method::CONNECT {
        return Err(Refusal::MethodNotAllowed.into());
    }
    headers::check_host(request.version(), request.uri(), request.headers())
        .map_err(Refusal::BadRequest)?;
    let mut route = runtime
        .routes
        .lookup(request.uri().path(), request.uri().query())
        .map_err(Refusal::from)?;
    let read = match form_to_read(runtime, request, &route) {
        // Boxed: rare, and its timers would otherwise make every request's future larger.
        Some(kind) => Some(Box::pin(read_form(runtime, request, &mut route, kind)).await?),
        None => None,
    };
    record.route = route.prefix.clone();
    record.route_index = route.index;
    let server = &runtime.settings().server;
    let client =
        crate::client::client_addr(conn.peer.ip(), request.headers(), &server.trusted_proxies);
    let token_checked = route.access == Access::Token;
    if token_checked {
        if let Err(rejection) = check_token(runtime, &route, request, client) {
            record.reason = Some(Cow::Owned(rejection.to_string()));
            return Err(Outcome::Denied);
        }
    }
    let gated = route.access.is_gated();
    if let (true, Some(limit)) = (gated, &runtime.rate_limit) {
        // Before the session source is asked: a flood costs it nothing.
        limit.check(client).map_err(Refusal::TooManyRequests)?;
    }
    let principal = if gated {
        let visit = Visit {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
        };
        // Not boxed: a source that must be waited for is boxed inside
        // (`Sessions::check`), so a 403 or a listed session costs no box.
        let admission = match runtime.gate.admit(&visit).await {
            Ok(admission) => admission,
            Err(err) => match runtime.gate.sessions().on_error() {
                OnError::Unavailable => return Err(Refusal::from(err).into()),
                OnError::Forbidden => {
                    record.reason = Some(Cow::Owned(err.to_string()));
                    return Err(Outcome::Denied);
                }
            },
        };
        match admission {
            Admission::Allowed(principal) => {
                record.session = Some(principal.tag());
                Some(principal)
            }
            Admission::Denied(reason) => {
                if let DenyReason::UnknownSession(tag) = reason {
                    record.session = Some(tag);
                }
                record.reason = Some(Cow::Borrowed(reason.as_str()));
                return Err(Outcome::Denied);
            }
        }
    } else {
        None
    };
    record.decision = if principal.is_some() || token_checked {
        Decision::Allowed
    } else {
        Decision::Passthrough
    };
    Ok(Admitted {
        gated,
        principal,
        client,
        read,
    })
}

/// The kind of form body `request` carries, if it is one a query route
/// could be named in that would make `route` stricter (see [`form`]).
fn form_to_read(
    runtime: &Runtime,
    request: &Request<Incoming>,
    route: &RouteMatch,
) -> Option<form::FormKind> {
    if !runtime.routes.query_may_raise(route) || request.body().is_end_stream() {
        return None;
    }
    form::kind(request.headers())
}

/// Reads a form body of `kind` and raises `route` by the names in it; what
/// was read goes to the CMS ahead of the rest.
async fn read_form(
    runtime: &Runtime,
    request: &mut Request<Incoming>,
    route: &mut RouteMatch,
    kind: form::FormKind,
) -> Result<form::FormRead, Refusal> {
    let server = &runtime.settings().server;
    let limit = server.max_body_bytes.map_or(form::READ_LIMIT, |max| {
        form::READ_LIMIT.min(usize::try_from(max).unwrap_or(usize::MAX))
    });
    let read = form::read(
        request.body_mut(),
        server.body_timeout,
        server.body_deadline,
        limit,
    )
    .await
    .map_err(|err| {
        Refusal::from(match err {
            form::FormError::Slow(_) => ProxyError::VisitorTimeout(err.to_string()),
            form::FormError::Bad(_) => {
                ProxyError::BadRequest("the request body is malformed or cut off")
            }
        })
    })?;
    runtime
        .routes
        .raise_by_form(route, read.names(kind).as_deref());
    Ok(read)
}

/// The CMS's answer to an admitted request: its head filtered, its body
/// layered (see [`response_body`]).
async fn from_cms(
    runtime: &Runtime,
    request: Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
    admitted: Admitted,
) -> Result<(http::response::Parts, BoxBody), Refusal> {
    let forwarded = forward(runtime, request, conn, record, admitted).await?;
    response_body(runtime, forwarded, record).await
}

/// Sends an admitted request to the CMS and filters the response head.
async fn forward(
    runtime: &Runtime,
    mut request: Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
    admitted: Admitted,
) -> Result<Forwarded, Refusal> {
    let Admitted {
        gated,
        principal,
        client,
        read,
    } = admitted;
    let server = &runtime.settings().server;
    let head_only = request.method() == Method::HEAD;
    if let Some(max) = server.max_body_bytes {
        // Known up front: refused before anything reaches the CMS.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > max) {
            return Err(Refusal::from(ProxyError::TooLarge(TooLarge(max))));
        }
    }
    // Kept only while verdicts are cached: a logout in the answer must drop this visitor's.
    let logout_cookies: Vec<HeaderValue> = if runtime.gate.sessions().caches() {
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };

    let accepts = if gated {
        compression::preferred(request.headers())
    } else {
        None
    };
    let visitor_http2 = request.version() == http::Version::HTTP_2;
    let upgrade_to = upgrade::requested(request.version(), request.headers());
    let visitor_upgrade = upgrade_to
        .is_some()
        .then(|| hyper::upgrade::on(&mut request));
    let hold = request.extensions_mut().remove::<HoldConnection>();

    let (mut parts, body) = request.into_parts();
    proxy::prepare_request(
        &mut parts,
        runtime.upstream.settings(),
        conn,
        gated,
        server.trusted_proxies.trusts(conn.peer.ip()),
    )
    .map_err(Refusal::from)?;
    // Only now, for the CMS: a refusal never needed it in the request.
    parts
        .headers
        .insert(headers::X_REQUEST_ID, record.request_id().clone());
    if let Some(principal) = &principal {
        // Of several session cookies, the CMS gets the one the gate let in.
        headers::keep_admitted_session(
            &mut parts.headers,
            &runtime.settings().session.cookie,
            principal.session_digest(),
        );
    }
    if let Some(protocol) = &upgrade_to {
        upgrade::restore(&mut parts.headers, protocol.clone());
    }
    // A Range reaches the CMS on gated routes (see prepare_request): a page
    // it answers in part is asked for again whole, which only a request
    // without a body can be.
    let ranged = gated && parts.headers.contains_key(header::RANGE);
    let again = (ranged
        && matches!(parts.method, Method::GET | Method::HEAD)
        && read.is_none()
        && body.is_end_stream())
    .then(|| without_range(&parts));
    let body = match read {
        None => VisitorBody::unread(body),
        // Read whole: hyper may not call a chunked body ended once it has
        // given its last piece, so it is not handed on as still coming.
        Some(read) => VisitorBody {
            rest: (!read.whole).then_some(body),
            read: read.bytes,
            spent: read.spent,
        },
    };
    let mut response = ask(runtime, client, Request::from_parts(parts, body)).await?;
    if gated && partial_page(response.status(), response.headers()) {
        record.upstream_status = Some(response.status().as_u16());
        let Some(whole) = again else {
            return Err(Refusal::BadUpstream(if ranged {
                "a page in part, for a request with a body, which cannot be sent again"
            } else {
                "a page in part, though no range was asked for"
            }));
        };
        // The part is dropped unread; its connection is not reused.
        drop(response);
        response = ask(
            runtime,
            client,
            Request::from_parts(whole, VisitorBody::none()),
        )
        .await?;
        if partial_page(response.status(), response.headers()) {
            record.upstream_status = Some(response.status().as_u16());
            return Err(Refusal::BadUpstream(
                "a page in part, though asked for it whole",
            ));
        }
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && !upgrade_to
            .as_ref()
            .is_some_and(|asked| upgrade::grants(asked, response.headers()))
    {
        // The visitor asked for no such protocol: passing the 101 on would
        // leave the visitor's connection in a state nobody agreed to.
        record.upstream_status = Some(response.status().as_u16());
        return Err(Refusal::BadUpstream(
            "a 101 for a protocol the visitor did not ask for",
        ));
    }
    if let (Some(visitor_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (visitor_upgrade, response.status())
    {
        let protocol = response.headers().get(header::UPGRADE).cloned();
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(upgrade::relay(
            visitor_upgrade,
            upstream_upgrade,
            server.upgrade_idle_timeout,
            hold,
        ));
        let (mut parts, body) = response.into_parts();
        record.upstream_status = Some(parts.status.as_u16());
        record.status = parts.status.as_u16();
        headers::remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = protocol {
            upgrade::restore(&mut parts.headers, protocol);
        }
        return Ok(Forwarded {
            parts,
            body,
            rewrite: None,
        });
    }
    let (mut parts, body) = response.into_parts();
    record.upstream_status = Some(parts.status.as_u16());
    record.status = parts.status.as_u16();
    // The visitor is answered in HTTP/1.1 whatever the CMS spoke (hyper
    // brings it down to 1.0 for an HTTP/1.0 visitor). An HTTP/1.0 answer
    // to an HTTP/1.1 visitor would be ended by closing the connection
    // whenever its length is not known, as a rewritten page's never is,
    // while the connection is kept for the visitor's next request.
    parts.version = http::Version::HTTP_11;
    if !logout_cookies.is_empty() {
        Box::pin(
            runtime
                .gate
                .forget_if_logged_out(&logout_cookies, &parts.headers),
        )
        .await;
    }
    headers::remove_hop_by_hop(&mut parts.headers);
    if visitor_http2 {
        headers::own_values(&mut parts.headers);
    }
    let rewrite = match principal {
        Some(principal) => filter_gated_response(runtime, &mut parts, head_only, accepts)?
            .map(|plan| (plan, principal, client)),
        None => None,
    };
    Ok(Forwarded {
        parts,
        body,
        rewrite,
    })
}

/// Sends `request` from `client` to the CMS and counts its answer, or why
/// there was none.
async fn ask(
    runtime: &Runtime,
    client: std::net::IpAddr,
    request: Request<VisitorBody>,
) -> Result<Response<Incoming>, Refusal> {
    let server = &runtime.settings().server;
    let asked = Instant::now();
    let response = runtime
        .upstream
        .send(
            client,
            server.body_timeout,
            server.body_deadline,
            server.max_body_bytes,
            request,
        )
        .await;
    let process = runtime.metrics.process();
    match response {
        Ok(response) => {
            process.upstream_answered(asked.elapsed());
            Ok(response)
        }
        Err(err) => {
            match err {
                ProxyError::Unavailable(_) => process.upstream_error(UpstreamError::Unavailable),
                ProxyError::Timeout(_) => process.upstream_error(UpstreamError::Timeout),
                ProxyError::VisitorTimeout(_)
                | ProxyError::Busy(_)
                | ProxyError::UploadsBusy(_)
                | ProxyError::ClientUploadsBusy(_)
                | ProxyError::BadRequest(_)
                | ProxyError::TooLarge(_) => {}
            }
            Err(Refusal::from(err))
        }
    }
}

/// What a 503 tells a visitor to wait before trying again: long enough for
/// a restarted session store, short enough not to lose the visitor.
const RETRY_AFTER_SECS: &str = "5";

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

fn deny(runtime: &Runtime, mut record: Box<RequestRecord>) -> Response<ResponseBody> {
    record.decision = Decision::Denied;
    record.status = StatusCode::FORBIDDEN.as_u16();
    let body = runtime.deny_page.clone();
    let mut response = Response::new(ResponseBody::own(body, record));
    *response.status_mut() = StatusCode::FORBIDDEN;
    set_own_headers(response.headers_mut(), "text/html; charset=utf-8");
    response
}

fn refuse(refusal: Refusal, mut record: Box<RequestRecord>) -> Response<ResponseBody> {
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

const X_CONTENT_TYPE_OPTIONS: header::HeaderName = header::X_CONTENT_TYPE_OPTIONS;
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

fn set_own_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
}

#[cfg(test)]
mod tests;
