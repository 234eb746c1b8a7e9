//! Whether a request goes on to the CMS: its route, a token where the route
//! asks for one, the rate limit, and the session gate.

use std::borrow::Cow;

use http::{Method, Request};
use hyper::body::{Body as _, Incoming};

use super::form;
use super::refusal::{Outcome, Refusal};
use crate::allowlist::{OnError, Principal, Visit};
use crate::finished::{Decision, RequestRecord};
use crate::gate::{Access, Admission, DenyReason, RouteMatch};
use crate::proxy::{headers, host, ConnectionInfo, ProxyError};
use crate::runtime::Runtime;
use crate::token;

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

/// What the gate let through: whether its route is gated, the visitor it
/// admitted there, whether a token let it in, the client's address, and
/// what was read of the body.
pub(super) struct Admitted {
    pub(super) gated: bool,
    pub(super) principal: Option<Principal>,
    pub(super) token_checked: bool,
    pub(super) client: std::net::IpAddr,
    pub(super) read: Option<form::FormRead>,
}

/// Runs the request through route and gate: whether it may reach the CMS.
pub(super) async fn admit(
    runtime: &Runtime,
    request: &mut Request<Incoming>,
    conn: ConnectionInfo,
    record: &mut RequestRecord,
) -> Result<Admitted, Outcome> {
    if request.method() == Method::CONNECT {
        return Err(Refusal::MethodNotAllowed.into());
    }
    // Only a body of unknown length can come in a transfer coding.
    let body = request.body();
    let unknown_length = !body.is_end_stream() && body.size_hint().exact().is_none();
    if unknown_length && headers::unknown_request_coding(request.headers()) {
        return Err(Refusal::UnknownCoding.into());
    }
    host::check_host(request.version(), request.uri(), request.headers())
        .map_err(Refusal::BadRequest)?;
    if request.version() == http::Version::HTTP_2 {
        headers::check_http2_path(request.uri()).map_err(Refusal::BadRequest)?;
        headers::check_http2_fields(request.headers_mut()).map_err(Refusal::BadRequest)?;
    }
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
        token_checked,
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
    let http2 = request.version() == http::Version::HTTP_2;
    let coded = form::coded(request.headers());
    let read = form::read(
        request.body_mut(),
        http2,
        server.body_timeout,
        server.body_deadline,
        limit,
    )
    .await
    .map_err(|err| {
        Refusal::from(match err {
            form::FormError::Slow(_) => ProxyError::VisitorTimeout(err.to_string()),
            form::FormError::Bad(_) | form::FormError::Reset => {
                ProxyError::BadRequest("the request body is malformed or cut off")
            }
        })
    })?;
    runtime
        .routes
        .raise_by_form(route, read.names(kind, coded).as_deref());
    Ok(read)
}
