//! The plain-HTTP listener beside a TLS one: every request is answered with
//! a 308 to the same URL over HTTPS, except paths under a prefix (ACME
//! challenges), which are served as usual. Its connections are held to the
//! main listener's limits ([`super::side`]).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, HOST, LOCATION};
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::body::ResponseBody;
use crate::gateway::Gateway;
use crate::proxy::ConnectionInfo;

type RedirectBody = Either<ResponseBody, Full<Bytes>>;

/// Serves the redirect listener until `closing`, then drains it;
/// `https_port` is where the TLS listener is bound.
pub async fn serve_redirect(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    https_port: u16,
    closing: super::Closing,
) {
    let answering = gateway.clone();
    // A reload that drops the redirect listener leaves it serving until a
    // restart: as it was started, ACME challenges and all.
    let started_except: Arc<Option<String>> =
        Arc::new(except_in(&gateway.runtime()).unwrap_or_default());
    let answer = move |request: Request<Incoming>, peer| {
        let gateway = answering.clone();
        let started_except = started_except.clone();
        async move {
            let info = ConnectionInfo { peer, tls: false };
            answer(&gateway, request, info, https_port, &started_except).await
        }
    };
    super::side::serve_side(listener, gateway, "redirect", answer, closing).await;
}

/// The redirect exception `runtime` sets: `None` when it has no redirect
/// listener at all, `Some(None)` when the listener has no exception.
fn except_in(runtime: &crate::runtime::Runtime) -> Option<Option<String>> {
    let redirect = runtime.settings().server.tls.as_ref()?.redirect.as_ref()?;
    Some(redirect.except.clone())
}

async fn answer(
    gateway: &Gateway,
    request: Request<Incoming>,
    info: ConnectionInfo,
    https_port: u16,
    started_except: &Option<String>,
) -> Response<RedirectBody> {
    let except = except_in(&gateway.runtime()).unwrap_or_else(|| started_except.clone());
    if except.is_some_and(|prefix| request.uri().path().starts_with(&prefix)) {
        return gateway.handle(request, info).await.map(Either::Left);
    }
    match https_url(&request, https_port) {
        Some(location) => {
            let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response.headers_mut().insert(LOCATION, location);
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => {
            let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
                b"400 Bad Request: no valid Host\n",
            ))));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

/// The request's URL over HTTPS on `port`, from its Host (or absolute target).
fn https_url(request: &Request<Incoming>, port: u16) -> Option<HeaderValue> {
    let host = match request.uri().authority() {
        Some(authority) => authority.clone(),
        None => request
            .headers()
            .get(HOST)?
            .to_str()
            .ok()?
            .parse::<Authority>()
            .ok()?,
    };
    if host.as_str().contains('@') {
        return None;
    }
    let name = host.host();
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    HeaderValue::from_str(&url).ok()
}
