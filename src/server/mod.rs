//! The listener: HTTP/1.1 and HTTP/2, in the clear or over TLS ([`tls`]),
//! idle connections closed, a drain delay, and graceful shutdown.
//!
//! The address is bound once; the per-connection limits are read from the
//! runtime in force when each connection is accepted, so a reload changes
//! them for new connections.

pub(crate) mod connection;
mod gathered;
mod guarded;
mod http2_connection;
mod kept;
mod limit;
mod redirect;
mod resets;
mod serve;
mod side;
mod stalls;
pub mod tls;

pub use limit::Admission;
pub use redirect::serve_redirect;
pub use side::serve_side;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::proxy::ConnectionInfo;
use serve::Connection;

/// Limits of one visitor connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a request head may take, from the connection's start or the last response's end.
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in flight (and, over
    /// HTTP/1.1, no bytes moving; over HTTP/2, from its last request's end).
    pub idle_timeout: Duration,
    /// How long a write to the client may wait for the client to take bytes.
    pub send_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Most HTTP/2 streams a client may have open on one connection.
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// How long a request head may take: the header limit, unless the idle one is shorter.
    pub fn head_limit(&self) -> Duration {
        self.header_timeout.min(self.idle_timeout)
    }

    /// Accepted HTTP/2 streams a client may reset in 10 s before it is told GOAWAY.
    pub fn http2_max_resets(&self) -> u32 {
        self.http2_max_concurrent_streams.saturating_mul(2).max(100)
    }

    /// The largest request head, as HTTP/2's header list size.
    fn http2_max_header_list_size(&self) -> u32 {
        u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)
    }
}

/// A place for a connection from `peer` under the limits of `runtime`, or
/// `None` (counted and logged) when there is none; `listener` names it.
fn admit(
    slots: &Arc<limit::Slots>,
    runtime: &crate::runtime::Runtime,
    peer: std::net::SocketAddr,
    listener: &'static str,
) -> Option<limit::Slot> {
    let server = &runtime.settings().server;
    let exempt = server.trusted_proxies.trusts(peer.ip());
    match slots.admit(peer.ip(), server.admission, exempt) {
        Ok(slot) => Some(slot),
        Err(refused) => {
            runtime.metrics.process().connection_refused();
            // One line per burst: a flood of refusals must not flood the log.
            match slots.refusals.begins() {
                Some(unlogged) => tracing::warn!(
                    listener,
                    %peer,
                    ?refused,
                    earlier_refusals_not_logged = unlogged,
                    "connection refused: too many open (server.max_connections or \
                     max_connections_per_ip); more in this burst are only counted"
                ),
                None => {
                    tracing::debug!(listener, %peer, ?refused, "connection refused: too many open")
                }
            }
            None
        }
    }
}

/// hyper's HTTP/1.1 and HTTP/2 connection settings, shared by connections.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// The connection settings for `limits`.
fn connection_builders(limits: &ConnectionLimits) -> Arc<Builders> {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // Timed by `IdleIo` instead, without a timer made per request.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(limits.http2_max_header_list_size())
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    Arc::new(Builders { http1, http2 })
}

/// Becomes `true` when the main listener stops accepting: every listener
/// then stops too, and its connections finish their requests in flight and
/// close.
pub type Closing = tokio::sync::watch::Receiver<bool>;

/// Serves `gateway` on `listener` until `shutdown` completes; then reports
/// not ready, keeps accepting for `drain_delay` (so that a load balancer
/// stops sending first), stops accepting, and drains requests in flight for
/// up to `shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, _) = tokio::sync::watch::channel(false);
    serve_then_close(listener, gateway, shutdown, &closing).await;
}

/// [`serve`], saying on `closing` when it stops accepting, so that the
/// listeners beside it ([`serve_side`]) drain at the same time.
pub async fn serve_then_close(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    closing: &tokio::sync::watch::Sender<bool>,
) {
    log_listening(&gateway, &listener);
    let mut tls = gateway.runtime().tls.clone();
    let tls_at_start = tls.is_some();
    let mut limits = gateway.runtime().settings().server.connections;
    let mut builders = connection_builders(&limits);
    // Tells every connection to finish its requests in flight and close.
    let closing_watch = closing.subscribe();
    let slots = Arc::new(limit::Slots::shown_in(
        gateway
            .runtime()
            .metrics
            .process()
            .accepted_connections("main"),
    ));
    tokio::pin!(shutdown);
    let mut stop_accepting: Option<tokio::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors: back off rather than spin.
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown, if stop_accepting.is_none() => {
                gateway.start_draining();
                let delay = gateway.runtime().settings().server.drain_delay;
                if delay.is_zero() {
                    break;
                }
                tracing::info!(?delay, "not ready: accepting for the drain delay before stopping");
                stop_accepting = Some(tokio::time::Instant::now() + delay);
                continue;
            }
            () = sleep_until_some(stop_accepting) => break,
        };
        let runtime = gateway.runtime();
        let current = runtime.settings().server.connections;
        if current != limits {
            limits = current;
            builders = connection_builders(&limits);
        }
        if tls_at_start {
            // A reload that drops [server.tls] keeps the last certificate: TLS
            // on or off is a restart's business.
            if let Some(config) = &runtime.tls {
                tls = Some(config.clone());
            }
        }
        let Some(slot) = admit(&slots, &runtime, peer, "main") else {
            continue;
        };
        drop(runtime);
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            slot,
            gateway: gateway.clone(),
            builders: builders.clone(),
            limits,
            closing: closing_watch.clone(),
            spent: Duration::ZERO,
        };
        match (tls_at_start, &tls) {
            (true, Some(config)) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                tokio::spawn(async move {
                    // The handshake counts against the time allowed for the request head.
                    let started = tokio::time::Instant::now();
                    let deadline = started + connection.limits.header_timeout;
                    match tls::handshake(&acceptor, stream, deadline, peer).await {
                        Ok(tls_stream) => {
                            let connection = Connection {
                                spent: started.elapsed(),
                                ..connection
                            };
                            connection
                                .serve(tls_stream, ConnectionInfo { peer, tls: true })
                                .await
                        }
                        Err(Some(failure)) => {
                            let runtime = connection.gateway.runtime();
                            runtime.metrics.process().handshake_failed(failure);
                        }
                        Err(None) => {}
                    }
                });
            }
            _ => {
                tokio::spawn(connection.serve(stream, ConnectionInfo { peer, tls: false }));
            }
        }
    }
    drop(listener);
    let shutdown_timeout = gateway.shutdown_timeout();
    tracing::info!("shutting down: draining requests in flight");
    closing.send_replace(true);
    match tokio::time::timeout(shutdown_timeout, slots.all_closed()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(timeout = ?shutdown_timeout, "shutdown timeout: closing remaining connections")
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn log_listening(gateway: &Gateway, listener: &TcpListener) {
    let runtime = gateway.runtime();
    let scheme = if runtime.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let settings = runtime.settings();
    let addr = listener
        .local_addr()
        .map_or_else(|_| settings.server.listen.to_string(), |a| a.to_string());
    tracing::info!(
        config = %settings.source.display(),
        upstream = %settings.upstream.authority,
        routes = runtime.routes.len(),
        embeds = runtime.embeds.len(),
        sessions = runtime.gate.sessions().known_sessions().unwrap_or(0),
        "listening on {scheme}://{addr}"
    );
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
