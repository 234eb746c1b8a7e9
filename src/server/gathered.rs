//! An HTTP/2 connection's writes, gathered and sent once its task has done
//! all it can in one poll.
//!
//! The h2 crate writes each DATA frame that carries more than a few hundred
//! bytes on its own, head and payload in one `writev`, and flushes before it
//! puts the next one in line: a 400 KB page goes out in 27 system calls of
//! 16 KB, each paying the kernel's cost per send (nginx sends the same page
//! in 6). [`Gathered`] takes what hyper writes into one buffer, and
//! [`SendGathered`] sends that buffer after each poll of the connection, when
//! every frame that was ready has been written: a burst of frames leaves in
//! one system call, or a few when the socket takes less.
//!
//! Nothing waits on a timer: the bytes leave in the same poll that wrote
//! them. At most [`GATHER_LIMIT`] bytes are held; a write beyond it sends
//! what is held first, and waits for the socket like any write.
//!
//! The bytes are gathered in one buffer per thread, not per connection:
//! every write of a connection happens within its task's poll, and the
//! buffer is emptied before that poll ends, so thousands of connections
//! share one. Only what a slow socket did not take is kept by its
//! connection, until it does; an idle connection holds nothing.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held before they must be sent: four of h2's 16 KiB DATA frames.
pub(super) const GATHER_LIMIT: usize = 64 * 1024;

thread_local! {
    // The bytes written in the poll running on this thread, and the address
    // of the `Gather` whose they are (0: nobody's).
    static SCRATCH: RefCell<(usize, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// The IO given to hyper: reads pass through, writes are gathered.
pub(super) struct Gathered<IO> {
    shared: Arc<Mutex<Gather<IO>>>,
}

/// Sends what the [`Gathered`] IO holds after each poll of its connection.
pub(super) struct SendGathered<IO, C> {
    shared: Arc<Mutex<Gather<IO>>>,
    // Boxed so that this is `Unpin`; one box per connection.
    connection: Pin<Box<C>>,
}

// The socket and the bytes held for it, shared by the two sides.
struct Gather<IO> {
    io: IO,
    // What the socket did not take when the thread's buffer was sent, and
    // the writes after it, in order; then the thread's buffer is not used.
    held: Vec<u8>,
    // How much of `held` is sent.
    sent: usize,
    // Something went to the socket past `held` (a write too large to
    // gather), and the socket was not flushed since.
    unflushed: bool,
    // Why sending failed: every later read and write fails with it, so that
    // hyper, whose writes only reach `held`, ends the connection.
    broken: Option<io::ErrorKind>,
    // Some of this connection's bytes are in the thread's buffer: a poll
    // that wrote nothing does not look there.
    in_scratch: bool,
}

/// The side of a [`Gathered`] IO that sends what it holds.
pub(super) struct Sender<IO> {
    shared: Arc<Mutex<Gather<IO>>>,
}

/// `io` split into the side to give hyper and the side that sends; the
/// second goes around hyper's connection with [`Sender::after_each_poll`].
pub(super) fn gather<IO>(io: IO) -> (Gathered<IO>, Sender<IO>) {
    let shared = Arc::new(Mutex::new(Gather {
        io,
        held: Vec::new(),
        sent: 0,
        unflushed: false,
        broken: None,
        in_scratch: false,
    }));
    (
        Gathered {
            shared: shared.clone(),
        },
        Sender { shared },
    )
}

fn lock<IO>(shared: &Mutex<Gather<IO>>) -> MutexGuard<'_, Gather<IO>> {
    // Only this connection's task takes the lock, and nothing it holds is left half-changed.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<IO> Gather<IO> {
    fn check(&self) -> io::Result<()> {
        match self.broken {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, err: io::Error) -> io::Error {
        self.broken = Some(err.kind());
        self.held = Vec::new();
        self.sent = 0;
        self.drop_scratch();
        err
    }

    // Bytes of a connection that failed or is gone are not sent, and must
    // not keep the thread's buffer from others.
    fn drop_scratch(&mut self) {
        if !std::mem::take(&mut self.in_scratch) {
            return;
        }
        let me = self.address();
        let _ = SCRATCH.try_with(|cell| {
            if let Ok(mut scratch) = cell.try_borrow_mut() {
                if scratch.0 == me {
                    scratch.1.clear();
                    scratch.0 = 0;
                }
            }
        });
    }
}

impl<IO: AsyncWrite + Unpin> Gather<IO> {
    /// Sends what is held; `Pending` (the socket's wake-up registered) while
    /// some is left.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        self.send_scratch(cx);
        self.check()?;
        if self.held.is_empty() && !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        while self.sent < self.held.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(self.fail(io::ErrorKind::WriteZero.into()))),
                Ok(n) => self.sent += n,
                Err(err) => return Poll::Ready(Err(self.fail(err))),
            }
        }
        // A TLS stream sends its records on flush.
        if let Err(err) = ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            return Poll::Ready(Err(self.fail(err)));
        }
        // Released, not kept: an idle connection holds no buffer.
        self.held = Vec::new();
        self.sent = 0;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Sends this connection's bytes in the thread's buffer, as much as the
    /// socket takes at once; it keeps the rest itself, and the buffer is
    /// left empty. A failure shows on the next send.
    fn send_scratch(&mut self, cx: &mut Context<'_>) {
        if !std::mem::take(&mut self.in_scratch) {
            return;
        }
        let me = self.address();
        SCRATCH.with_borrow_mut(|(owner, scratch)| {
            if *owner != me {
                return;
            }
            let mut sent = 0;
            while sent < scratch.len() {
                match Pin::new(&mut self.io).poll_write(cx, &scratch[sent..]) {
                    Poll::Ready(Ok(n)) if n > 0 => sent += n,
                    Poll::Ready(Ok(_)) => {
                        self.broken = Some(io::ErrorKind::WriteZero);
                        break;
                    }
                    Poll::Ready(Err(err)) => {
                        self.broken = Some(err.kind());
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if sent < scratch.len() && self.broken.is_none() {
                self.held.extend_from_slice(&scratch[sent..]);
            } else if sent > 0 {
                self.unflushed = true;
            }
            scratch.clear();
            if scratch.capacity() > 2 * GATHER_LIMIT {
                scratch.shrink_to(GATHER_LIMIT);
            }
            *owner = 0;
        });
    }

    fn poll_write_gathered(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let len: usize = bufs.iter().map(|buf| buf.len()).sum();
        if self.gather(bufs, len) {
            return Poll::Ready(Ok(len));
        }
        // Past the limit: what is held goes first.
        ready!(self.poll_send(cx))?;
        if len > GATHER_LIMIT {
            // Too large to be worth a copy: straight to the socket.
            let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs));
            self.unflushed = true;
            return Poll::Ready(written.map_err(|err| self.fail(err)));
        }
        // Nothing is held now, so it fits; were it not to, the connection
        // keeps the bytes itself rather than lose them.
        if !self.gather(bufs, len) {
            for buf in bufs {
                self.held.extend_from_slice(buf);
            }
        }
        Poll::Ready(Ok(len))
    }
}

impl<IO> Gather<IO> {
    /// Appends `bufs` (`len` bytes) to what is held, unless that would pass
    /// [`GATHER_LIMIT`]: to the thread's buffer, with one look at it, while
    /// this connection keeps nothing of its own.
    fn gather(&mut self, bufs: &[IoSlice<'_>], len: usize) -> bool {
        if self.held.is_empty() {
            let me = self.address();
            let into_scratch = SCRATCH.with_borrow_mut(|(owner, scratch)| {
                if *owner != me && !scratch.is_empty() {
                    // Another connection's bytes, never sent (its poll ended
                    // without it): left alone, and this one keeps its own.
                    return None;
                }
                let mine = if *owner == me { scratch.len() } else { 0 };
                if mine + len > GATHER_LIMIT {
                    return Some(false);
                }
                *owner = me;
                for buf in bufs {
                    scratch.extend_from_slice(buf);
                }
                Some(true)
            });
            if let Some(gathered) = into_scratch {
                self.in_scratch |= gathered;
                return gathered;
            }
        }
        // Kept here, the thread's buffer then holds none of this connection's bytes.
        if self.held.len() - self.sent + len > GATHER_LIMIT {
            return false;
        }
        for buf in bufs {
            self.held.extend_from_slice(buf);
        }
        true
    }

    // Tells this connection's bytes in the thread's buffer from others'.
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

impl<IO> Drop for Gather<IO> {
    fn drop(&mut self) {
        self.drop_scratch();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Gathered<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut gather = lock(&self.shared);
        gather.check()?;
        Pin::new(&mut gather.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Gathered<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.shared).poll_write_gathered(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.shared).poll_write_gathered(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Ready at once: what is held is sent after the connection's poll
    /// ([`SendGathered`]), with whatever else the poll writes.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(lock(&self.shared).check())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut gather = lock(&self.shared);
        ready!(gather.poll_send(cx))?;
        Pin::new(&mut gather.io).poll_shutdown(cx)
    }
}

impl<IO> Sender<IO> {
    /// `connection`, served over this sender's [`Gathered`] side, with what
    /// it writes sent after each of its polls.
    pub(super) fn after_each_poll<C>(self, connection: C) -> SendGathered<IO, C> {
        SendGathered {
            shared: self.shared,
            connection: Box::pin(connection),
        }
    }
}

impl<IO, C> SendGathered<IO, C> {
    /// The connection, to be told to shut down.
    pub(super) fn connection(&mut self) -> Pin<&mut C> {
        self.connection.as_mut()
    }
}

impl<IO: AsyncWrite + Unpin, C: Future> Future for SendGathered<IO, C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let polled = self.connection.as_mut().poll(cx);
        // `Pending` leaves the socket's wake-up in place. A failure is kept,
        // and shown to hyper's next read or write: woken, it ends the connection.
        if let Poll::Ready(Err(err)) = lock(&self.shared).poll_send(cx) {
            tracing::debug!(error = %err, "an HTTP/2 connection's writes could not be sent");
            cx.waker().wake_by_ref();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A socket that records what it is sent: at most `per_write` bytes a
    /// write, none while `blocked`, an error once `broken`.
    #[derive(Default)]
    struct Socket {
        received: Vec<u8>,
        // How much was received when it was last flushed (as a TLS stream
        // must be, to send its records).
        flushed: usize,
        writes: usize,
        per_write: usize,
        blocked: bool,
        broken: bool,
        shut: bool,
    }

    #[derive(Clone, Default)]
    struct TestIo(Arc<Mutex<Socket>>);

    impl TestIo {
        fn taking(per_write: usize) -> TestIo {
            let io = TestIo::default();
            io.0.lock().unwrap().per_write = per_write;
            io
        }
        fn socket(&self) -> MutexGuard<'_, Socket> {
            self.0.lock().unwrap()
        }
    }

    impl AsyncRead for TestIo {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for TestIo {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut socket = self.socket();
            if socket.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if socket.blocked {
                return Poll::Pending;
            }
            let n = buf.len().min(socket.per_write);
            socket.received.extend_from_slice(&buf[..n]);
            socket.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut socket = self.socket();
            socket.flushed = socket.received.len();
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.socket().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn frames(count: usize, size: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| vec![u8::try_from(i % 251).unwrap(); size])
            .collect()
    }

    /// A connection that writes `frames` (each flushed, as h2 does) and then waits.
    async fn connection(mut io: Gathered<TestIo>, frames: Vec<Vec<u8>>) -> io::Result<()> {
        for frame in frames {
            io.write_all(&frame).await?;
            io.flush().await?;
        }
        std::future::pending::<()>().await;
        Ok(())
    }

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_poll_s_frames_leave_in_one_write_in_order_and_the_buffer_goes() {
        let socket = TestIo::taking(usize::MAX);
        let (io, sender) = gather(socket.clone());
        let sent = frames(3, 16 * 1024 + 9);
        let mut served = sender.after_each_poll(connection(io, sent.clone()));
        assert!(poll_once(&mut served).is_pending());
        assert_eq!(socket.socket().writes, 1, "three frames, one write");
        assert_eq!(socket.socket().received, sent.concat());
        assert_eq!(
            socket.socket().flushed,
            sent.concat().len(),
            "flushed once sent"
        );
        let gather = lock(&served.shared);
        assert_eq!(gather.held.capacity(), 0, "nothing kept once sent");
    }

    #[test]
    fn a_slow_socket_gets_every_byte_in_order_and_holds_writes_back_past_the_limit() {
        let socket = TestIo::taking(1000);
        socket.socket().blocked = true;
        let (io, sender) = gather(socket.clone());
        let sent = frames(6, 16 * 1024 + 9);
        let mut served = sender.after_each_poll(connection(io, sent.clone()));
        assert!(poll_once(&mut served).is_pending());
        {
            let gather = lock(&served.shared);
            assert!(gather.held.len() <= GATHER_LIMIT, "{}", gather.held.len());
            assert!(
                gather.held.len() >= 3 * (16 * 1024 + 9),
                "{}",
                gather.held.len()
            );
        }
        socket.socket().blocked = false;
        for _ in 0..1000 {
            if socket.socket().received.len() == sent.concat().len() {
                break;
            }
            assert!(poll_once(&mut served).is_pending());
        }
        assert_eq!(socket.socket().received, sent.concat());
        assert_eq!(
            socket.socket().flushed,
            sent.concat().len(),
            "flushed once sent"
        );
    }

    #[test]
    fn a_failed_send_fails_every_later_read_and_write() {
        let socket = TestIo::taking(usize::MAX);
        socket.socket().broken = true;
        let (mut io, sender) = gather(socket.clone());
        assert!(poll_once(&mut Box::pin(io.write(b"frame"))).is_ready());
        let mut served = sender.after_each_poll(std::future::pending::<()>());
        assert!(poll_once(&mut served).is_pending());
        let write = poll_once(&mut Box::pin(io.write(b"more")));
        assert!(matches!(write, Poll::Ready(Err(_))), "{write:?}");
        let mut buf = [0; 8];
        let read = poll_once(&mut Box::pin(tokio::io::AsyncReadExt::read(
            &mut io, &mut buf,
        )));
        assert!(matches!(read, Poll::Ready(Err(_))), "{read:?}");
    }

    #[test]
    fn two_connections_on_one_thread_each_send_only_their_own_bytes() {
        let (first_socket, second_socket) =
            (TestIo::taking(usize::MAX), TestIo::taking(usize::MAX));
        let (mut first, first_sender) = gather(first_socket.clone());
        let (mut second, second_sender) = gather(second_socket.clone());
        // The first's bytes wait in the thread's buffer when the second writes.
        assert!(poll_once(&mut Box::pin(first.write(b"first"))).is_ready());
        assert!(poll_once(&mut Box::pin(second.write(b"second"))).is_ready());
        assert!(poll_once(&mut Box::pin(first.write(b" again"))).is_ready());
        let mut second_served = second_sender.after_each_poll(std::future::pending::<()>());
        assert!(poll_once(&mut second_served).is_pending());
        assert_eq!(second_socket.socket().received, b"second");
        assert!(first_socket.socket().received.is_empty());
        let mut first_served = first_sender.after_each_poll(std::future::pending::<()>());
        assert!(poll_once(&mut first_served).is_pending());
        assert_eq!(first_socket.socket().received, b"first again");
        assert_eq!(second_socket.socket().received, b"second");
    }

    #[test]
    fn shutting_down_sends_what_is_held_first() {
        let socket = TestIo::taking(usize::MAX);
        let (mut io, _sender) = gather(socket.clone());
        assert!(poll_once(&mut Box::pin(io.write(b"GOAWAY"))).is_ready());
        assert!(socket.socket().received.is_empty());
        assert!(poll_once(&mut Box::pin(io.shutdown())).is_ready());
        assert_eq!(socket.socket().received, b"GOAWAY");
        assert!(socket.socket().shut);
    }
}
