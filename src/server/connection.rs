//! One visitor connection: closed when it sits idle, kept while it is busy.
//!
//! [`IdleIo`] closes a connection that waited too long. With no request in
//! flight ([`InFlight`]): over HTTP/1.1, for a request head that is not
//! whole within the header limit of the connection's start or of the last
//! response's end (however slowly its bytes trickle in); over HTTP/2, for a
//! first request not begun within the header limit, or once its last
//! request ended the idle limit ago (whatever frames moved meanwhile: a PING
//! is no request). At any time: once a write has waited for the send limit
//! with the client taking no bytes (a client that stopped reading). The
//! head's limit is kept here rather than by hyper, which would make and drop
//! a timer for every request; it also holds across the hand-back of a
//! kept-alive connection (see `serve`), so a slow head gets one limit, not
//! two.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
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
    // The connection's task, woken when its last request ends outside the
    // task's own poll, so that the wait for the next one starts then.
    connection: AtomicWaker,
    // The connection's task is in a poll (`InFlight::poll_within`).
    polling: AtomicBool,
    // The last request ended during that poll and the IO has not looked
    // since: the task looks once the poll is over.
    unseen_end: AtomicBool,
    // What the connection's IO waits for; its limits are set by `IdleIo::new`.
    waiting: Mutex<Waiting>,
}

impl InFlightState {
    // The last request in flight is done: the wait for the next one must
    // start. Inside the task's own poll, the task looks once the poll is
    // over (`InFlight::poll_within`), unless the IO looked after the end
    // in that poll; a wake-up would only make hyper poll the whole
    // connection again for the IO's look. Outside it (an HTTP/2 stream's
    // task, an upgrade, a listener that does not poll within), the task is
    // woken, and the IO looks when hyper reads.
    fn ended(&self) {
        if self.polling.load(Ordering::SeqCst) {
            self.unseen_end.store(true, Ordering::SeqCst);
            // Still polling, so the task will see the flag; otherwise its
            // poll ended in between and may have missed it.
            if self.polling.load(Ordering::SeqCst) {
                return;
            }
        }
        self.connection.wake();
    }
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

    /// Polls `future` as the connection's task. When the last request in
    /// flight ends in this poll and the IO does not look at the connection
    /// after it, the task looks itself once the poll is over: the wait for
    /// the next request starts, its timer set with this task's waker. hyper
    /// reads again only in its next poll, so a wake-up instead would cost a
    /// second poll of the whole connection per request.
    pub fn poll_within<F: Future>(
        &self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        self.0.polling.store(true, Ordering::SeqCst);
        let polled = future.poll(cx);
        self.0.polling.store(false, Ordering::SeqCst);
        if self.0.unseen_end.swap(false, Ordering::SeqCst)
            && !self.any()
            && self.waiting().look(self.started(), cx).is_some()
        {
            // Already over: the IO fails the read when hyper next reads.
            cx.waker().wake_by_ref();
        }
        polled
    }

    // Bytes moved on the connection.
    fn moved(&self) {
        let started = self.started();
        self.waiting().moved(started);
    }

    // Bytes went to the client.
    fn wrote(&self) {
        let started = self.started();
        let mut waiting = self.waiting();
        waiting.moved(started);
        waiting.writes = waiting.writes.wrapping_add(1);
        waiting.write_waits = false;
    }

    /// Whether the connection's last write is still waiting for the client to take bytes.
    pub fn writes_wait(&self) -> bool {
        self.waiting().write_waits
    }

    // What the connection waits for.
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // Plain data, whole whatever panicked while it was held.
        self.0
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // The IO looks at a connection with no request in flight: starts the
    // wait for the next request if the last one ended since, and tells
    // whether that wait is over.
    fn look(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.0.unseen_end.store(false, Ordering::SeqCst);
        self.waiting().look(self.started(), cx)
    }
}

/// Held while a request is served, up to the end of its response body.
pub struct InFlightGuard(Arc<InFlightState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ended();
        }
    }
}

/// A connection's IO that fails reads once it has waited too long with no
/// request in flight.
pub struct IdleIo<T> {
    inner: T,
    in_flight: InFlight,
}

/// What a connection with no request in flight waits for, and until when.
struct Waiting {
    idle: IdleTimer,
    // HTTP/1: how long a request head may take (never past the idle limit);
    // `None` over HTTP/2.
    head_limit: Option<Duration>,
    // `InFlight::started` when last looked at: a request has begun since
    // when it differs (a look comes only with none in flight).
    seen_started: usize,
    // Writes that took bytes so far.
    writes: usize,
    // The last write had to wait, and none has taken bytes since.
    write_waits: bool,
    // How long a write may wait for the client to take bytes.
    send_timeout: Option<Duration>,
    // Made when a write first has to wait: its timer, and `writes` when it
    // was last set (a write that took bytes since moves it on).
    send_wait: Option<Box<(IdleTimer, usize)>>,
}

impl Default for Waiting {
    // No limit: for an `InFlight` with no `IdleIo`.
    fn default() -> Self {
        Waiting {
            idle: IdleTimer::new(None),
            head_limit: None,
            seen_started: 0,
            writes: 0,
            write_waits: false,
            send_timeout: None,
            send_wait: None,
        }
    }
}

impl Waiting {
    // Bytes moved. Over HTTP/1.1 a quiet spell starts again, unless a head
    // is awaited (no request since the last look), whose deadline bytes do
    // not move. Over HTTP/2 bytes move nothing: frames that are no request
    // (PINGs, a HEADERS frame a byte at a time) must not hold a connection
    // open; its quiet spells count from its last request's end (`look`).
    fn moved(&mut self, started: usize) {
        if self.head_limit.is_some() && started != self.seen_started {
            self.idle.progressed();
        }
    }

    // A write has to wait: `Some` once the client has taken no bytes for
    // the send limit; otherwise arranges for `cx` to be woken when it would.
    fn send_stalled(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.write_waits = true;
        let limit = self.send_timeout?;
        let writes = self.writes;
        let (timer, seen) = &mut **self
            .send_wait
            .get_or_insert_with(|| Box::new((IdleTimer::new(Some(limit)), writes)));
        if *seen != writes {
            *seen = writes;
            timer.progressed();
        }
        timer.expired(cx)?;
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection closed: the client took no bytes for {limit:?}"),
        ))
    }

    // See `InFlight::look`; `started` is `InFlight::started` now.
    fn look(&mut self, started: usize, cx: &mut Context<'_>) -> Option<io::Error> {
        if started != self.seen_started {
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

impl<T> IdleIo<T> {
    /// A connection held to `limits`: its first request head must be whole
    /// within the header limit, as must each later one, counted from the end
    /// of the last response; the idle limit bounds any quiet spell with no
    /// request in flight.
    pub fn new(inner: T, in_flight: InFlight, limits: &ConnectionLimits) -> Self {
        let head_limit = limits.head_limit();
        *in_flight.waiting() = Waiting {
            idle: IdleTimer::with_first(Some(limits.idle_timeout), head_limit),
            head_limit: Some(head_limit),
            seen_started: 0,
            writes: 0,
            write_waits: false,
            send_timeout: Some(limits.send_timeout),
            send_wait: None,
        };
        IdleIo { inner, in_flight }
    }

    /// The first request head must be whole within `within` from now (what
    /// a TLS handshake left of the header limit).
    pub fn first_head_within(&self, within: Duration) {
        self.in_flight.waiting().idle.next_within(within);
    }

    // Counts a write that took bytes; times one that has to wait.
    fn after_write(
        &self,
        written: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) if n > 0 => self.in_flight.wrote(),
            Poll::Pending => {
                if let Some(err) = self.in_flight.waiting().send_stalled(cx) {
                    return Poll::Ready(Err(err));
                }
            }
            _ => {}
        }
        written
    }

    /// The connection speaks HTTP/2: its first request must still begin
    /// within the header limit of the connection's start; after that only
    /// spells with no request in flight are timed, from the last one's end.
    pub fn serves_http2(&mut self) {
        self.in_flight.waiting().head_limit = None;
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
                    this.in_flight.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                // Registered before the count is read: a request ending in
                // between still wakes this task.
                this.in_flight.0.connection.register(cx.waker());
                if this.in_flight.any() {
                    // A request is being served: its own timeouts apply.
                    return Poll::Pending;
                }
                match this.in_flight.look(cx) {
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
        this.after_write(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(written, cx)
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
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
            http2_max_concurrent_streams: 100,
        }
    }

    fn read_once<T: AsyncRead + Unpin>(io: &mut IdleIo<T>) -> Poll<io::Result<()>> {
        read_with(io, Waker::noop())
    }

    fn read_with<T: AsyncRead + Unpin>(io: &mut IdleIo<T>, waker: &Waker) -> Poll<io::Result<()>> {
        let mut buf = [0u8; 16];
        Pin::new(io).poll_read(&mut Context::from_waker(waker), &mut ReadBuf::new(&mut buf))
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Counted {
        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A connection held to a 1 s head limit, its requests counted, and a
    /// task's waker that counts its wake-ups (the client end is kept open).
    fn counted_connection() -> (
        tokio::io::DuplexStream,
        IdleIo<tokio::io::DuplexStream>,
        InFlight,
        Arc<Counted>,
        Waker,
    ) {
        let (client, server) = tokio::io::duplex(64);
        let in_flight = InFlight::default();
        let io = IdleIo::new(server, in_flight.clone(), &limits(Duration::from_secs(1)));
        let task = Arc::new(Counted::default());
        let waker = Waker::from(task.clone());
        (client, io, in_flight, task, waker)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_in_the_task_s_poll_starts_the_wait_with_no_wake_up() {
        let (_client, mut io, in_flight, task, waker) = counted_connection();
        assert!(read_with(&mut io, &waker).is_pending());
        tokio::time::advance(Duration::from_millis(900)).await;
        // A request served whole in one poll, the IO not read after it (as
        // hyper does not read again before its next poll).
        let mut served = std::pin::pin!(std::future::poll_fn(|_| {
            drop(in_flight.enter());
            Poll::<()>::Pending
        }));
        let polled = in_flight.poll_within(served.as_mut(), &mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        assert_eq!(task.wakes(), 0, "no wake-up: the task looked itself");
        tokio::time::advance(Duration::from_millis(600)).await;
        // The timer set before fires early once and is set again at the
        // read (see `IdleTimer`): the head limit counts from the end.
        assert!(read_with(&mut io, &waker).is_pending());
        let before = task.wakes();
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(task.wakes() > before, "woken when the head limit is over");
        assert!(matches!(
            read_with(&mut io, &waker),
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::TimedOut
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_outside_the_task_s_poll_wakes_the_task() {
        let (_client, mut io, in_flight, task, waker) = counted_connection();
        let guard = in_flight.enter();
        // Read while the request is in flight: the IO waits on it.
        assert!(read_with(&mut io, &waker).is_pending());
        // Ended elsewhere (an HTTP/2 stream's task, an upgrade).
        drop(guard);
        assert_eq!(task.wakes(), 1);
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

    fn write_with<T: AsyncWrite + Unpin>(
        io: &mut IdleIo<T>,
        waker: &Waker,
    ) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_write(&mut Context::from_waker(waker), &[b'x'; 64])
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_takes_nothing_of_fails_after_the_send_limit() {
        use tokio::io::AsyncReadExt;
        let (mut client, mut io, in_flight, task, waker) = counted_connection();
        let _request = in_flight.enter();
        // The pipe holds 64 bytes: full after one write, which the client never reads.
        assert!(matches!(write_with(&mut io, &waker), Poll::Ready(Ok(64))));
        assert!(write_with(&mut io, &waker).is_pending());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(write_with(&mut io, &waker).is_pending());
        // The client takes the bytes at 50 s: the limit counts from there.
        let mut taken = [0u8; 64];
        client.read_exact(&mut taken).await.unwrap();
        assert!(matches!(write_with(&mut io, &waker), Poll::Ready(Ok(64))));
        assert!(write_with(&mut io, &waker).is_pending());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            write_with(&mut io, &waker).is_pending(),
            "59 s since the client took bytes"
        );
        let woken = task.wakes();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(task.wakes() > woken, "the task is woken at the limit");
        match write_with(&mut io, &waker) {
            Poll::Ready(Err(err)) => assert_eq!(err.kind(), io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
    }
}
