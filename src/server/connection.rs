//! One visitor connection: closed when it sits idle, kept while it is busy.
//!
//! [`IdleIo`] closes a connection that has no request in flight
//! ([`InFlight`]) once it waited too long: over HTTP/1.1, for a request head
//! that is not whole within the header limit of the connection's start or
//! of the last response's end (however slowly its bytes trickle in); over
//! HTTP/2, once nothing has moved for the idle limit. The head's limit is
//! kept here rather than by hyper, which would make and drop a timer for
//! every request; it also holds across the hand-back of a kept-alive
//! connection (see `serve`), so a slow head gets one limit, not two.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnectionLimits;
use crate::idle::IdleTimer;

/// Requests in flight on one connection.
#[derive(Clone, Default)]
pub struct InFlight(Arc<InFlightState>);

#[derive(Default)]
struct InFlightState {
    count: AtomicUsize,
    // Requests begun so far: tells that one came and went between two looks.
    started: AtomicUsize,
    // The connection's task, woken when its last request is done so that the
    // idle limit starts counting then.
    connection: AtomicWaker,
}

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.started.fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.count.load(Ordering::Acquire) > 0
    }

    fn started(&self) -> usize {
        self.0.started.load(Ordering::Relaxed)
    }
}

/// Held while a request is served, up to the end of its response body.
pub struct InFlightGuard(Arc<InFlightState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.connection.wake();
        }
    }
}

/// A response body that keeps its request counted until it is done.
pub struct Guarded<B> {
    body: B,
    _guard: InFlightGuard,
    // An HTTP/2 stream's watch: completed once the body ends or fails.
    stream: Option<super::resets::StreamWatch>,
}

impl<B> Guarded<B> {
    /// Ties `guard` (and an HTTP/2 stream's watch) to `body`.
    pub fn new(body: B, guard: InFlightGuard, stream: Option<super::resets::StreamWatch>) -> Self {
        Guarded {
            body,
            _guard: guard,
            stream,
        }
    }

    fn completed(&self) {
        if let Some(stream) = &self.stream {
            stream.complete();
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.completed();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.body.is_end_stream();
        if ended {
            self.completed();
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's IO that fails reads once it has waited too long with no
/// request in flight.
pub struct IdleIo<T> {
    inner: T,
    in_flight: InFlight,
    idle: IdleTimer,
    // HTTP/1: how long a request head may take (never past the idle limit);
    // `None` over HTTP/2.
    head_limit: Option<Duration>,
    // A request was seen in flight since the last look.
    busy: bool,
    // `InFlight::started` when last looked at.
    seen_started: usize,
}

impl<T> IdleIo<T> {
    /// A connection held to `limits`: its first request head must be whole
    /// within the header limit, as must each later one, counted from the end
    /// of the last response; the idle limit bounds any quiet spell with no
    /// request in flight.
    pub fn new(inner: T, in_flight: InFlight, limits: &ConnectionLimits) -> Self {
        let head_limit = limits.header_timeout.min(limits.idle_timeout);
        IdleIo {
            inner,
            in_flight,
            idle: IdleTimer::with_first(Some(limits.idle_timeout), head_limit),
            head_limit: Some(head_limit),
            busy: false,
            seen_started: 0,
        }
    }

    /// The connection speaks HTTP/2: no heads are timed here (hyper's
    /// HTTP/2 connection reads them), only quiet spells.
    pub fn serves_http2(&mut self) {
        self.head_limit = None;
        self.idle.progressed();
    }

    // A head is awaited: its deadline is fixed, bytes do not move it.
    fn awaiting_head(&self) -> bool {
        self.head_limit.is_some() && !self.busy
    }

    // No request is in flight: starts the wait for the next one if the
    // last ended since the previous look, and tells whether it is over.
    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let started = self.in_flight.started();
        if std::mem::take(&mut self.busy) || started != self.seen_started {
            self.seen_started = started;
            match self.head_limit {
                Some(head_limit) => self.idle.next_within(head_limit),
                None => self.idle.progressed(),
            }
        }
        let timeout = self.idle.expired(cx)?;
        let message = match self.head_limit {
            Some(head_limit) => {
                format!("connection closed: no whole request head within {head_limit:?}")
            }
            None => format!("idle connection closed: {timeout}"),
        };
        Some(io::Error::new(io::ErrorKind::TimedOut, message))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before && !this.awaiting_head() {
                    this.idle.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                // Registered before the count is read: a request ending in
                // between still wakes this task.
                this.in_flight.0.connection.register(cx.waker());
                if this.in_flight.any() {
                    // A request is being served: its own timeouts apply.
                    this.busy = true;
                    return Poll::Pending;
                }
                match this.waited_too_long(cx) {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Pending,
                }
            }
        }
    }
}
impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && !this.awaiting_head() {
            this.idle.progressed();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && !this.awaiting_head() {
            this.idle.progressed();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn limits(header_timeout: Duration) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout,
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
            http2_max_concurrent_streams: 100,
        }
    }

    fn read_once<T: AsyncRead + Unpin>(io: &mut IdleIo<T>) -> Poll<io::Result<()>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 16];
        Pin::new(io).poll_read(&mut cx, &mut ReadBuf::new(&mut buf))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_came_and_went_unseen_restarts_the_head_limit() {
        let (_client, server) = tokio::io::duplex(64);
        let in_flight = InFlight::default();
        let mut io = IdleIo::new(server, in_flight.clone(), &limits(Duration::from_secs(1)));
        assert!(read_once(&mut io).is_pending());
        tokio::time::advance(Duration::from_millis(900)).await;
        // Served and answered between two reads: never seen in flight.
        drop(in_flight.enter());
        assert!(read_once(&mut io).is_pending());
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(
            read_once(&mut io).is_pending(),
            "the limit counts from the answer, not from the start"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(matches!(
            read_once(&mut io),
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::TimedOut
        ));
    }
}
