//! A listener beside the visitors' one (the redirect listener, the admin
//! endpoints): the same limits on its connections, a simpler service.
//!
//! Each connection is admitted under the connection limits, its open
//! connections counted apart from the main listener's; it is held to the
//! header, idle and send times ([`IdleIo`]), and hyper to the largest head
//! and the most HTTP/2 streams. HTTP/2 is served as on the main listener
//! ([`super::http2_connection`]): its idle time counted from its last
//! request, GOAWAY for a client that resets too many streams, and the
//! connection closed when a stream's client takes nothing for the send
//! limit. A stray or hostile client so cannot hold more of the port's
//! descriptors or memory than it could of the visitors' port.
//!
//! It stops with the main listener ([`super::Closing`]): it accepts no
//! more, and its connections finish their requests in flight (an ACME
//! challenge on its way to the CMS, a metrics scrape) within
//! `shutdown_timeout` and close.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::connection::{IdleIo, InFlight};
use super::guarded::Guarded;
use super::kept::KeptIo;
use super::serve::{first_bytes_unless_closing, PREFACE};
use super::{http2_connection, limit, Closing};
use crate::gateway::Gateway;
use crate::proxy::ConnectionInfo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `listener` (named `name` in logs) until `closing`, then drains
/// its connections; each request answered by `answer` with the request and
/// the peer's address.
pub async fn serve_side<A, F, B>(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    name: &'static str,
    answer: A,
    mut closing: Closing,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(limit::Slots::shown_in(
        gateway
            .runtime()
            .metrics
            .process()
            .accepted_connections(name),
    ));
    // Made again only when a reload changes the limits, as on the main listener.
    let mut limits = gateway.runtime().settings().server.connections;
    let mut builders = super::connection_builders(&limits);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.wait_for(|closing| *closing) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::error!(listener = name, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let runtime = gateway.runtime();
        let Some(slot) = super::admit(&slots, &runtime, peer, name) else {
            continue;
        };
        let current = runtime.settings().server.connections;
        drop(runtime);
        if current != limits {
            limits = current;
            builders = super::connection_builders(&limits);
        }
        let builders = builders.clone();
        let answer = answer.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let in_flight = InFlight::default();
            let mut io = IdleIo::new(stream, in_flight.clone(), &limits);
            let Some(first) = first_bytes_unless_closing(&mut io, &mut closing).await else {
                return;
            };
            let http2_watches = first
                .starts_with(PREFACE)
                .then(|| http2_connection::Watches::new(&limits, in_flight.clone()));
            let service = {
                let watches = http2_watches.clone();
                let in_flight = in_flight.clone();
                service_fn(move |request: Request<Incoming>| {
                    let guard = in_flight.enter();
                    let stream = watches.as_ref().map(http2_connection::Watches::stream);
                    let response = answer(request, peer);
                    async move {
                        let response = response.await;
                        Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard, stream)))
                    }
                })
            };
            match http2_watches {
                Some(watches) => {
                    io.serves_http2();
                    let info = ConnectionInfo { peer, tls: false };
                    let io = KeptIo::never_kept(first, io);
                    http2_connection::serve(
                        &builders.http2,
                        io,
                        service,
                        closing,
                        watches,
                        &limits,
                        info,
                    )
                    .await;
                }
                None => {
                    let io = TokioIo::new(KeptIo::never_kept(first, io));
                    let connection = builders.http1.serve_connection(io, service);
                    tokio::pin!(connection);
                    let served = tokio::select! {
                        served = &mut connection => Some(served),
                        _ = closing.wait_for(|closing| *closing) => None,
                    };
                    let served = match served {
                        Some(served) => served,
                        None => {
                            // Its request in flight is answered; then it closes.
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(err) = served {
                        tracing::debug!(listener = name, %peer, error = %err, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    let shutdown_timeout = gateway.shutdown_timeout();
    if tokio::time::timeout(shutdown_timeout, slots.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(listener = name, timeout = ?shutdown_timeout, "shutdown timeout: closing remaining connections");
    }
}
