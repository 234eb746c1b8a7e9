//! A listener beside the visitors' one (the redirect listener, the admin
//! endpoints): the same limits on its connections, a simpler service.
//!
//! Each connection is admitted under the connection limits, its open
//! connections counted apart from the main listener's; it is held to the
//! header and idle times ([`IdleIo`]), and hyper to the largest head and the
//! most HTTP/2 streams. A stray or hostile client so cannot hold more of the
//! port's descriptors or memory than it could of the visitors' port.

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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::connection::{IdleIo, InFlight};
use super::guarded::Guarded;
use super::{limit, ConnectionLimits};
use crate::gateway::Gateway;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `listener` (named `name` in logs) until the task is dropped, each
/// request answered by `answer` with the request and the peer's address.
pub async fn serve_side<A, F, B>(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    name: &'static str,
    answer: A,
) where
    A: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(limit::Slots::default());
    loop {
        let (stream, peer) = match listener.accept().await {
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
        let limits = runtime.settings().server.connections;
        drop(runtime);
        let answer = answer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let in_flight = InFlight::default();
            let io = IdleIo::new(stream, in_flight.clone(), &limits);
            let service = service_fn(move |request: Request<Incoming>| {
                let guard = in_flight.enter();
                let response = answer(request, peer);
                async move {
                    let response = response.await;
                    Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard, None)))
                }
            });
            let served = builder(&limits)
                .serve_connection(TokioIo::new(io), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(listener = name, %peer, error = %err, "connection ended with an error");
            }
        });
    }
}

/// hyper's settings for a connection under `limits`.
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .max_header_list_size(limits.http2_max_header_list_size())
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    builder
}
