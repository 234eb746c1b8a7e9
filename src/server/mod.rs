//! The listener: HTTP/1.1 and cleartext HTTP/2 on one port, idle
//! connections closed, and graceful shutdown.

mod connection;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::ServerSettings;
use crate::gateway::Gateway;
use connection::{Guarded, IdleIo, InFlight};

/// Serves `gateway` on `listener` until `shutdown` completes, then drains
/// requests in flight for up to `settings.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let settings: ServerSettings = gateway.config().server.clone();
    log_listening(&gateway, &listener);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors: back off rather than spin.
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let in_flight = InFlight::default();
        let io = IdleIo::new(
            stream,
            in_flight.clone(),
            settings.header_timeout,
            settings.idle_timeout,
        );
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            let guard = in_flight.enter();
            async move {
                let response = gateway.handle(request, remote).await;
                Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard)))
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining requests in flight");
    match tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(timeout = ?settings.shutdown_timeout, "shutdown timeout: closing remaining connections")
        }
    }
}

fn log_listening(gateway: &Gateway, listener: &TcpListener) {
    let config = gateway.config();
    let addr = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    tracing::info!(
        config = %config.source.display(),
        upstream = %config.upstream.authority,
        routes = config.routes.len(),
        embeds = config.embeds.len(),
        sessions = config.allowlist.len(),
        "listening on http://{addr}"
    );
    if config.allowlist.is_empty() {
        tracing::warn!("the allowlist is empty: every gated request will be denied");
    }
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
