//! One visitor connection, from its first byte to its close.
//!
//! The first bytes tell HTTP/2's preface from an HTTP/1 request. HTTP/2 is
//! served by one hyper connection for the connection's whole life. HTTP/1.1
//! is served by a hyper connection while requests keep coming; a kept-alive
//! connection quiet for a while is taken back from hyper and waits for its
//! next request holding nothing but its socket (see [`super::kept`]).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::{IdleIo, InFlight};
use super::guarded::Guarded;
use super::kept::{join, may_keep, says_close, HandBack, Kept, KeptIo};
use super::{http2_connection, limit, ConnectionLimits};
use crate::gateway::Gateway;
use crate::metrics::ConnectionGuard;
use crate::proxy::upgrade::HoldConnection;
use crate::proxy::ConnectionInfo;

/// What every HTTP/2 connection opens with.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most bytes read at once while a connection waits for its next request.
const FIRST_READ: usize = 4096;
/// What a new connection is served with.
pub(super) struct Connection {
    /// Held until the connection ends.
    pub slot: limit::Slot,
    pub gateway: Arc<Gateway>,
    /// Shared by all connections accepted under the same limits.
    pub builders: Arc<super::Builders>,
    pub limits: ConnectionLimits,
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Time already taken from the header limit before serving (a TLS handshake).
    pub spent: std::time::Duration,
}

impl Connection {
    /// Serves the requests of one connection until it closes.
    pub(super) async fn serve<IO>(self, stream: IO, info: ConnectionInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let in_flight = InFlight::default();
        let mut serving = std::pin::pin!(self.serve_counted(stream, info, in_flight.clone()));
        std::future::poll_fn(|cx| in_flight.poll_within(serving.as_mut(), cx)).await
    }

    async fn serve_counted<IO>(self, stream: IO, info: ConnectionInfo, in_flight: InFlight)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            slot,
            gateway,
            builders,
            limits,
            mut closing,
            spent,
        } = self;
        let kept = Arc::new(Kept::default());
        // Shared with an upgraded connection's relay, which outlives this task.
        let slot = Arc::new(slot);
        let mut io = IdleIo::new(stream, in_flight.clone(), &limits);
        if !spent.is_zero() {
            // The header limit counts from the connection's start.
            io.first_head_within(limits.head_limit().saturating_sub(spent));
        }
        let Some(prefix) = first_bytes_unless_closing(&mut io, &mut closing).await else {
            return;
        };
        // A stream's reset and its waits on the client are watched over HTTP/2.
        let http2_watches = prefix
            .starts_with(PREFACE)
            .then(|| http2_connection::Watches::new(&limits, in_flight.clone()));
        let service = {
            let kept = kept.clone();
            let watches = http2_watches.clone();
            let in_flight = in_flight.clone();
            let slot = slot.clone();
            let closing = closing.clone();
            // Counted as open, by protocol, from its first request until it closes.
            let counted: Arc<OnceLock<ConnectionGuard>> = Arc::default();
            service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                // An upgraded connection lives on after its response, and after
                // this task: it holds a request count of its own so the idle
                // limit leaves it alone, its place under the connection limits,
                // and its count among the open connections.
                if request.headers().contains_key(http::header::UPGRADE) {
                    let held: Arc<dyn Send + Sync> =
                        Arc::new((in_flight.enter(), slot.clone(), counted.clone()));
                    request.extensions_mut().insert(HoldConnection {
                        held,
                        closing: closing.clone(),
                    });
                }
                let http2 = request.version() == http::Version::HTTP_2;
                counted
                    .get_or_init(|| gateway.runtime().metrics.process().connection_opened(http2));
                let gateway = gateway.clone();
                let guard = in_flight.enter();
                let stream = watches
                    .as_ref()
                    .filter(|_| http2)
                    .map(http2_connection::Watches::stream);
                if !http2 {
                    // A pipelined request hyper has begun before the task
                    // acted on the last response's arming: closing now
                    // would put `Connection: close` on this one's head.
                    // hyper keeps the connection, and this response may arm again.
                    kept.disarm();
                }
                let keep = (!http2 && may_keep(&request)).then(|| kept.clone());
                // Not boxed: hyper keeps an HTTP/1.1 connection's request future
                // in a slot boxed once per connection, and an HTTP/2 stream's in
                // the stream's task, so a box here would be a second allocation
                // per request.
                async move {
                    let response = gateway.handle(request, info).await;
                    if let Some(kept) = keep {
                        if !says_close(response.headers())
                            && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
                        {
                            kept.arm();
                        }
                    }
                    Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard, stream)))
                }
            })
        };
        match http2_watches {
            Some(watches) => {
                io.serves_http2();
                let io = KeptIo::new(prefix, io, kept);
                // Boxed: an HTTP/1.1 connection's task does not carry its size.
                Box::pin(http2_connection::serve(
                    &builders.http2,
                    io,
                    service,
                    closing,
                    watches,
                    &limits,
                    info,
                ))
                .await;
            }
            None => {
                let http1 = Http1 {
                    builder: &builders.http1,
                    kept,
                    closing,
                    info,
                };
                http1.serve(prefix, io, service).await
            }
        }
        drop(slot);
    }
}

/// The first bytes of a connection ([`read_preface_or_request`]); `None`
/// when it closed or timed out before a request, or the listener is closing.
pub(super) async fn first_bytes_unless_closing<IO: AsyncRead + Unpin>(
    io: &mut IO,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Bytes> {
    tokio::select! {
        first = read_preface_or_request(io) => first.ok().filter(|first| !first.is_empty()),
        _ = closing.wait_for(|closing| *closing) => None,
    }
}

/// Reads the first bytes of a connection: the whole HTTP/2 preface, or as
/// much of an HTTP/1 request as one read brings. Empty when the peer closed.
async fn read_preface_or_request<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<Bytes> {
    let mut first = BytesMut::new();
    loop {
        let read = read_some(io).await?;
        if read.is_empty() {
            return Ok(first.freeze());
        }
        first.extend_from_slice(&read);
        let seen = first.len().min(PREFACE.len());
        if first[..seen] != PREFACE[..seen] || first.len() >= PREFACE.len() {
            return Ok(first.freeze());
        }
    }
}

/// One read of up to [`FIRST_READ`] bytes into a buffer of just their size.
/// The read buffer lives on the stack of one poll, never in the waiting
/// task: an idle connection holds no buffer.
async fn read_some<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<Bytes> {
    std::future::poll_fn(|cx| {
        // Not zeroed: a read fills what it reports and no more is looked at.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut read = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Bytes::copy_from_slice(read.filled()))),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What every request of one HTTP/1.1 connection is served with.
struct Http1<'a> {
    builder: &'a http1::Builder,
    kept: Arc<Kept>,
    closing: tokio::sync::watch::Receiver<bool>,
    info: ConnectionInfo,
}

impl Http1<'_> {
    async fn serve<IO, S>(mut self, mut prefix: Bytes, mut io: IdleIo<IO>, mut service: S)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<hyper::body::Incoming> + Unpin + Send,
        S::Future: Send + 'static,
        S::ResBody: Send + 'static,
        <S::ResBody as http_body::Body>::Data: Send,
        <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        loop {
            // Boxed: what serving a request needs is freed once it is served.
            let served = Box::pin(serve_request(
                self.builder,
                KeptIo::new(prefix, io, self.kept.clone()),
                service,
                &self.kept,
                &mut self.closing,
                self.info,
            ))
            .await;
            let Some((unread, back, again)) = served else {
                return;
            };
            (io, service, prefix) = (back, again, unread);
            if prefix.is_empty() {
                // Idle: only the socket and this small task are held while
                // waiting, within the head's limit counted since the last
                // response ended (`IdleIo`).
                prefix = tokio::select! {
                    read = read_some(&mut io) => match read {
                        Ok(read) if !read.is_empty() => read,
                        // Closed by the client, or idle too long.
                        _ => return,
                    },
                    _ = self.closing.wait_for(|closing| *closing) => return,
                };
            }
        }
    }
}

/// Serves requests on one hyper connection until it ends; returns the
/// bytes read ahead, the IO and the service when the connection is kept.
async fn serve_request<IO, S>(
    builder: &http1::Builder,
    io: KeptIo<IdleIo<IO>>,
    service: S,
    kept: &Kept,
    closing: &mut tokio::sync::watch::Receiver<bool>,
    info: ConnectionInfo,
) -> Option<(Bytes, IdleIo<IO>, S)>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Unpin + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut asked_to_close = false;
    let mut shutting_down = false;
    let mut hand_back = HandBack::new();
    let ended = loop {
        tokio::select! {
            // The connection first: `Kept` changes only while it is polled.
            biased;
            ended = &mut connection => break ended,
            () = std::future::poll_fn(|cx| hand_back.poll_due(kept, cx)), if !asked_to_close => {
                // Quiet since its last response's head: hyper closes now, or
                // once that response's body is out.
                Pin::new(&mut connection).graceful_shutdown();
                asked_to_close = true;
            }
            _ = closing.wait_for(|closing| *closing), if !shutting_down => {
                kept.disarm();
                Pin::new(&mut connection).graceful_shutdown();
                shutting_down = true;
                asked_to_close = true;
            }
        }
    };
    if let Err(err) = ended {
        log_http1_error(&err, info);
        return None;
    }
    if !kept.disarm() || shutting_down {
        return None;
    }
    // None when upgraded: the connection is the upgrade's now.
    let parts = connection.into_parts()?;
    let (unread, io) = parts.io.into_inner().into_parts();
    Some((join(unread, parts.read_buf), io, parts.service))
}

/// Logs why an HTTP/1.1 connection failed: a request head that did not
/// come whole in time (the only timeout hyper reports as an error: a quiet
/// connection with no head begun just ends) is worth an operator's eye.
fn log_http1_error(err: &hyper::Error, info: ConnectionInfo) {
    let timed_out = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .filter(|io| io.kind() == io::ErrorKind::TimedOut);
    match timed_out {
        Some(reason) => tracing::info!(peer = %info.peer, "{reason}"),
        None => tracing::debug!(peer = %info.peer, error = %err, "connection ended with an error"),
    }
}
