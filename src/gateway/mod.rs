//! The request's way through, in one place:
//! route -> gate -> upstream request -> response filter -> body layers -> finished.
//!
//! A request loads the runtime once and keeps it to its end, so a reload in
//! the middle never mixes two configs in one response. Every refusal is
//! mapped to its status in [`Refusal::status`], and nothing from the CMS
//! reaches a visitor the gate turned away.

mod admit;
mod form;
mod page_type;
mod refusal;
mod response;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either};
use hyper::body::{Body as _, Incoming};

use crate::allowlist::Principal;
use crate::body::{sniff_bom, Bom, BoxBody, ReadLimit, ResponseBody};
use crate::compression::{self, Decoded, Encoded};
use crate::finished::RequestRecord;
use crate::gate::SessionGate;
use crate::metrics::UpstreamError;
use crate::proxy::upgrade::{self, HoldConnection};
use crate::proxy::{
    self, cookies, forwarding, headers, ConnectionInfo, ProxyError, TooLarge, VisitorBody,
};
use crate::rewrite::{self, PageTokens, RewriteBody, RewriteStats};
use crate::runtime::Runtime;
use crate::token;
use admit::{admit, Admitted};
pub use refusal::Refusal;
use refusal::{deny, refuse, Outcome};
use response::{
    filter_gated_response, keep_from_shared_caches, partial_page, without_range, PagePlan,
};

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
        let request_id = forwarding::request_id(request.headers(), trusted_peer);
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
                match Box::pin(from_cms(
                    &runtime,
                    &self.runtime,
                    request,
                    conn,
                    &mut record,
                    admitted,
                ))
                .await
                {
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
        answer_headers.insert(forwarding::X_REQUEST_ID, request_id);
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

/// The CMS response head and body, and how the body is to be rewritten, if it is.
struct Forwarded {
    parts: http::response::Parts,
    body: Incoming,
    rewrite: Option<(PagePlan, Principal, std::net::IpAddr)>,
}

/// The CMS's answer to an admitted request: its head filtered, its body
/// layered (see [`response_body`]).
async fn from_cms(
    runtime: &Runtime,
    latest: &ArcSwap<Runtime>,
    request: Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
    admitted: Admitted,
) -> Result<(http::response::Parts, BoxBody), Refusal> {
    let forwarded = forward(runtime, latest, request, conn, record, admitted).await?;
    response_body(runtime, forwarded, record).await
}

/// Sends an admitted request to the CMS and filters the response head.
async fn forward(
    runtime: &Runtime,
    latest: &ArcSwap<Runtime>,
    mut request: Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
    admitted: Admitted,
) -> Result<Forwarded, Refusal> {
    let Admitted {
        gated,
        principal,
        token_checked,
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
        .insert(forwarding::X_REQUEST_ID, record.request_id().clone());
    if let Some(principal) = &principal {
        // Of several session cookies, the CMS gets the one the gate let in.
        cookies::keep_admitted_session(
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
        None => VisitorBody::unread(body, visitor_http2),
        // Read whole: hyper may not call a chunked body ended once it has
        // given its last piece, so it is not handed on as still coming.
        Some(read) => VisitorBody {
            rest: (!read.whole).then_some(body),
            read: read.bytes,
            spent: read.spent,
            http2: visitor_http2,
        },
    };
    let mut logout = LogoutWatch {
        gate: &runtime.gate,
        latest,
        cookies: logout_cookies,
    };
    let mut response = ask(runtime, &client, Request::from_parts(parts, body)).await?;
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
            &client,
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
        logout.read(&parts.headers).await;
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
    // An answer with no body (to a HEAD, a 204 or 304) may name the framing
    // its GET would have; there is no body to read either way.
    let bodiless = head_only
        || matches!(
            parts.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    if let Some(why) = headers::response_framing_fault(&parts.headers).filter(|_| !bodiless) {
        // The body is dropped, not passed on: its connection is closed
        // unless hyper has read it whole already (framed as hyper and the
        // framing tracker both read it).
        return Err(Refusal::BadUpstream(why));
    }
    record.status = parts.status.as_u16();
    // The visitor is answered in HTTP/1.1 whatever the CMS spoke (hyper
    // brings it down to 1.0 for an HTTP/1.0 visitor). An HTTP/1.0 answer
    // to an HTTP/1.1 visitor would be ended by closing the connection
    // whenever its length is not known, as a rewritten page's never is,
    // while the connection is kept for the visitor's next request.
    parts.version = http::Version::HTTP_11;
    logout.read(&parts.headers).await;
    headers::remove_hop_by_hop(&mut parts.headers);
    // Its trailers are dropped (`ReadLimit`): none is announced.
    parts.headers.remove(header::TRAILER);
    if visitor_http2 {
        headers::own_values(&mut parts.headers);
    }
    let rewrite = match principal {
        Some(principal) => filter_gated_response(runtime, &mut parts, head_only, accepts)?
            .map(|plan| (plan, principal, client)),
        None => {
            if token_checked {
                // A cache in front checks no token: it must not keep what one opened.
                keep_from_shared_caches(runtime, &mut parts.headers);
            }
            None
        }
    };
    Ok(Forwarded {
        parts,
        body,
        rewrite,
    })
}

/// The cookies of a request sent to the CMS while verdicts are cached: its
/// answer may be a logout. Read once the answer's head is in; if the
/// exchange ends before that, the sessions are forgotten all the same
/// ([`SessionGate::forget_carried_later`]).
struct LogoutWatch<'a> {
    gate: &'a SessionGate,
    /// The runtimes as they are put in force: one a reload put in force
    /// while the request was at the CMS may ask another session source,
    /// whose cache must forget the sessions too.
    latest: &'a ArcSwap<Runtime>,
    cookies: Vec<HeaderValue>,
}

impl LogoutWatch<'_> {
    /// Forgets the sessions if `answer` logs them out; the watch is done.
    async fn read(&mut self, answer: &HeaderMap) {
        if !self.cookies.is_empty() {
            Box::pin(self.gate.forget_if_logged_out(&self.cookies, answer)).await;
            if let Some(latest) = self.reloaded() {
                Box::pin(latest.gate.forget_if_logged_out(&self.cookies, answer)).await;
            }
            self.cookies.clear();
        }
    }

    /// The runtime in force now, if its session source is not the one the request was admitted by.
    fn reloaded(&self) -> Option<Arc<Runtime>> {
        let latest = self.latest.load_full();
        (!Arc::ptr_eq(latest.gate.sessions(), self.gate.sessions())).then_some(latest)
    }
}

impl Drop for LogoutWatch<'_> {
    fn drop(&mut self) {
        if !self.cookies.is_empty() {
            if let Some(latest) = self.reloaded() {
                latest.gate.forget_carried_later(self.cookies.clone());
            }
            self.gate
                .forget_carried_later(std::mem::take(&mut self.cookies));
        }
    }
}

/// Sends `request` from `client` to the CMS and counts its answer, or why
/// there was none.
async fn ask(
    runtime: &Runtime,
    client: &std::net::IpAddr,
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

#[cfg(test)]
mod tests;
