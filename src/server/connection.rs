//! One visitor connection: closed when it sits idle, kept while it is busy.
//!
//! hyper bounds how long HTTP/1.1 request headers may take, but a connection
//! that never sends a byte (the HTTP version is not even known yet), or an
//! HTTP/2 connection with no stream open, would otherwise hold a file
//! descriptor forever. [`IdleIo`] closes such a connection once nothing has
//! moved for the idle limit while no request is in flight ([`InFlight`]).

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

use crate::idle::IdleTimer;

/// Requests in flight on one connection.
#[derive(Clone, Default)]
pub struct InFlight(Arc<InFlightState>);

#[derive(Default)]
struct InFlightState {
    count: AtomicUsize,
    // The connection's task, woken when its last request is done so that the
    // idle limit starts counting then.
    connection: AtomicWaker,
}

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.count.load(Ordering::Acquire) > 0
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

/// A connection's IO that fails reads once it has been idle too long.
pub struct IdleIo<T> {
    inner: T,
    in_flight: InFlight,
    idle: IdleTimer,
    busy: bool,
}

impl<T> IdleIo<T> {
    /// The first bytes must come within `first`; later, at most `limit` may
    /// pass with nothing moving and no request in flight.
    pub fn new(inner: T, in_flight: InFlight, first: Duration, limit: Duration) -> Self {
        IdleIo {
            inner,
            in_flight,
            idle: IdleTimer::with_first(Some(limit), first),
            busy: false,
        }
    }
}

impl<T> IdleIo<T> {
    /// The next bytes must come within `within` (a kept-alive connection's
    /// wait for its next request), counted from now.
    pub fn next_within(&mut self, within: Duration) {
        self.busy = false;
        self.idle.next_within(within);
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
                if buf.filled().len() > before {
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
                if std::mem::take(&mut this.busy) {
                    // The last request just ended: the idle limit starts now.
                    this.idle.progressed();
                }
                match this.idle.expired(cx) {
                    Some(timeout) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("idle connection closed: {timeout}"),
                    ))),
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
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
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
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
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
