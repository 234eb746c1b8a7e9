//! An HTTP/2 connection, served by one hyper connection for its whole life
//! and watched beside its idle limits: rapid resets ([`super::resets`]) and
//! streams the client takes nothing of ([`super::stalls`]).

use std::sync::Arc;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::InFlight;
use super::gathered;
use super::guarded::Http2Stream;
use super::resets::ResetBudget;
use super::stalls::SendWatch;
use super::ConnectionLimits;
use crate::proxy::ConnectionInfo;

/// What an HTTP/2 connection is watched with, beside its idle limits.
#[derive(Clone)]
pub(super) struct Watches {
    // Counts the streams the client resets.
    resets: Arc<ResetBudget>,
    // Times each stream's waits on the client.
    sends: Arc<SendWatch>,
    // The connection's requests and writes.
    in_flight: InFlight,
}

impl Watches {
    /// The watches of a connection held to `limits`, whose requests and writes `in_flight` counts.
    pub fn new(limits: &ConnectionLimits, in_flight: InFlight) -> Watches {
        Watches {
            resets: ResetBudget::new(limits.http2_max_resets()),
            sends: SendWatch::new(limits.send_timeout),
            in_flight,
        }
    }

    /// The watches of a new stream, for its response body.
    pub fn stream(&self) -> Http2Stream {
        Http2Stream::new(self.resets.stream(), self.sends.stream())
    }
}

/// Serves an HTTP/2 connection until it closes: told GOAWAY at shutdown or
/// when its client resets too many streams, dropped when a stream stalls.
pub(super) async fn serve<IO, S>(
    builder: &http2::Builder<TokioExecutor>,
    io: IO,
    service: S,
    mut closing: tokio::sync::watch::Receiver<bool>,
    watches: Watches,
    limits: &ConnectionLimits,
    info: ConnectionInfo,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Watches {
        resets,
        sends,
        in_flight,
    } = watches;
    let (io, sender) = gathered::gather(io);
    let mut connection =
        sender.after_each_poll(builder.serve_connection(TokioIo::new(io), service));
    let stalled = sends.stalled(|| in_flight.writes_wait());
    tokio::pin!(stalled);
    let mut goaway_sent = false;
    let ended = loop {
        tokio::select! {
            ended = &mut connection => break ended,
            _ = closing.wait_for(|closing| *closing), if !goaway_sent => {
                connection.connection().graceful_shutdown();
                goaway_sent = true;
            }
            () = resets.tripped(), if !goaway_sent => {
                tracing::warn!(
                    peer = %info.peer,
                    limit = limits.http2_max_resets(),
                    "HTTP/2 client reset too many streams it had opened: GOAWAY"
                );
                connection.connection().graceful_shutdown();
                goaway_sent = true;
            }
            limit = stalled.as_mut() => {
                // The stream cannot be reset from here; the connection goes,
                // as a stalled HTTP/1.1 one does, and its CMS connections with it.
                tracing::warn!(
                    peer = %info.peer,
                    "connection closed: an HTTP/2 stream's client took no bytes for {limit:?}"
                );
                return;
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(peer = %info.peer, error = %err, "connection ended with an error");
    }
}
