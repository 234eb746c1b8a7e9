//! Taking an idle HTTP/1.1 connection back from hyper. Once a kept-alive
//! connection has had no request for [`HAND_BACK_AFTER`], hyper's
//! connection (its read and write buffers, its dispatcher) is dropped and the
//! socket waits for the next request holding nothing but itself, the way
//! nginx keeps a connection alive; the next request gets a fresh hyper
//! connection. An idle keep-alive connection so costs about a kilobyte
//! instead of the 30 KiB hyper keeps between requests, and a busy one does
//! not pay for a new hyper connection per request.
//!
//! hyper decides `Connection: close` when it writes a response head, so the
//! connection is taken back only by asking hyper to close after a response
//! whose head has been written ([`Kept::arm`]) while no other request has
//! begun, and by making the shutdown it then asks of the IO leave the
//! socket open ([`KeptIo`]). Only a response to a request without a body
//! arms: hyper would otherwise close while the rest of the request is still
//! being read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a kept-alive HTTP/1.1 connection with no request stays with
/// hyper before it is taken back (between once and twice this): long enough
/// that a busy connection keeps its hyper connection from one request to
/// the next, short enough that few idle ones hold hyper's buffers at once.
const HAND_BACK_AFTER: Duration = Duration::from_millis(10);

/// Whether the connection may be taken back from hyper, shared by the
/// service (which decides), the IO (which then does not shut the socket) and
/// the connection's task (which asks hyper to close).
///
/// The service runs inside the poll of hyper's connection, so the task sees
/// each change when it next looks, with no wake-up: it looks right after
/// polling the connection.
#[derive(Default)]
pub(super) struct Kept {
    armed: AtomicBool,
    // Responses that armed, so far: tells a quiet connection from a busy one.
    arms: AtomicUsize,
}

impl Kept {
    /// The response just made leaves the connection open for another request.
    pub(super) fn arm(&self) {
        self.arms.fetch_add(1, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    /// Whether the last response armed and no request has begun since.
    pub(super) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Disarms; whether it was armed.
    pub(super) fn disarm(&self) -> bool {
        self.armed.swap(false, Ordering::AcqRel)
    }

    fn arms(&self) -> usize {
        self.arms.load(Ordering::Relaxed)
    }
}

/// When a kept connection is to be taken back from hyper: once it stayed
/// armed through a whole [`HAND_BACK_AFTER`] with no other response arming.
/// The timer is reset once per period, not per request, so a busy
/// connection reads no clock for it.
pub(super) struct HandBack {
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    // The arm count when the running period began.
    seen: usize,
}

impl HandBack {
    /// No period running yet.
    pub(super) fn new() -> Self {
        HandBack {
            timer: None,
            seen: 0,
        }
    }

    /// Ready once the connection is to be taken back.
    pub(super) fn poll_due(&mut self, kept: &Kept, cx: &mut Context<'_>) -> Poll<()> {
        if !kept.is_armed() {
            // A request is in flight; its response arms again (see `Kept`).
            return Poll::Pending;
        }
        let arms = kept.arms();
        let timer = match &mut self.timer {
            Some(timer) => timer,
            None => {
                self.seen = arms;
                self.timer
                    .insert(Box::pin(tokio::time::sleep(HAND_BACK_AFTER)))
            }
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if arms == self.seen {
                return Poll::Ready(());
            }
            // Answered again within the period: wait a whole one more.
            self.seen = arms;
            let next = tokio::time::Instant::now() + HAND_BACK_AFTER;
            timer.as_mut().reset(next);
        }
    }
}

/// Whether hyper may be asked to close after the response to `request` and
/// the connection be kept: an HTTP/1.1 request that has no body, asks for
/// no upgrade and does not ask to close.
pub(super) fn may_keep<B: http_body::Body>(request: &hyper::Request<B>) -> bool {
    request.version() == http::Version::HTTP_11
        && request.body().is_end_stream()
        && !request.headers().contains_key(http::header::UPGRADE)
        && !says_close(request.headers())
}

/// Whether `Connection` names `close`.
pub(super) fn says_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|value| {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        })
}

/// `first`, then `second`, copied only when both hold bytes.
pub(super) fn join(first: Bytes, second: Bytes) -> Bytes {
    match (first.is_empty(), second.is_empty()) {
        (_, true) => first,
        (true, false) => second,
        (false, false) => {
            let mut both = BytesMut::with_capacity(first.len() + second.len());
            both.extend_from_slice(&first);
            both.extend_from_slice(&second);
            both.freeze()
        }
    }
}

/// A connection's IO as hyper sees it: bytes read ahead of hyper come
/// first, and a shutdown asked while the connection is kept leaves the
/// socket open.
pub(super) struct KeptIo<T> {
    unread: Bytes,
    inner: T,
    kept: Arc<Kept>,
}

impl<T> KeptIo<T> {
    /// `inner` with `unread` put back in front, on a connection never taken back from hyper.
    pub(super) fn never_kept(unread: Bytes, inner: T) -> Self {
        KeptIo::new(unread, inner, Arc::default())
    }

    pub(super) fn new(unread: Bytes, inner: T, kept: Arc<Kept>) -> Self {
        KeptIo {
            unread,
            inner,
            kept,
        }
    }

    /// The bytes hyper has not read yet, and the IO.
    pub(super) fn into_parts(self) -> (Bytes, T) {
        (self.unread, self.inner)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for KeptIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KeptIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kept.is_armed() {
            // hyper has flushed its buffer before asking: the socket stays
            // open for the next request.
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: http::Version, headers: &[(&str, &str)]) -> hyper::Request<String> {
        let mut request = hyper::Request::new(String::new());
        *request.version_mut() = version;
        for (name, value) in headers {
            request.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        request
    }

    #[test]
    fn only_bodiless_http11_requests_that_do_not_close_or_upgrade_are_kept() {
        assert!(may_keep(&request(http::Version::HTTP_11, &[])));
        assert!(may_keep(&request(
            http::Version::HTTP_11,
            &[("connection", "keep-alive")]
        )));
        assert!(!may_keep(&request(http::Version::HTTP_10, &[])));
        assert!(!may_keep(&request(
            http::Version::HTTP_11,
            &[("connection", "keep-alive, Close")]
        )));
        assert!(!may_keep(&request(
            http::Version::HTTP_11,
            &[("upgrade", "websocket")]
        )));
        let mut with_body = request(http::Version::HTTP_11, &[]);
        *with_body.body_mut() = "x".into();
        assert!(!may_keep(&with_body));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_taken_back_after_a_whole_quiet_period_armed() {
        let kept = Kept::default();
        let mut hand_back = HandBack::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Three quarters and half of a period.
        let most = || tokio::time::advance(HAND_BACK_AFTER * 3 / 4);
        let half = || tokio::time::advance(HAND_BACK_AFTER / 2);
        // Nothing answered yet: never due.
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        tokio::time::advance(HAND_BACK_AFTER * 10).await;
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        // Answered, then answered again within the period: a busy
        // connection stays with hyper past the first period's end.
        kept.arm();
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        most().await;
        kept.disarm();
        kept.arm();
        half().await;
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        // A request in flight (disarmed) is never taken back, however long.
        kept.disarm();
        tokio::time::advance(HAND_BACK_AFTER * 10).await;
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        // Its response arms again: due a whole period from then, not before.
        kept.arm();
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        most().await;
        assert!(hand_back.poll_due(&kept, &mut cx).is_pending());
        half().await;
        assert!(hand_back.poll_due(&kept, &mut cx).is_ready());
    }

    #[test]
    fn joining_keeps_order_and_skips_copies_when_one_side_is_empty() {
        let (a, b) = (
            Bytes::from_static(b"GET / HT"),
            Bytes::from_static(b"TP/1.1"),
        );
        assert_eq!(join(a.clone(), b), Bytes::from_static(b"GET / HTTP/1.1"));
        assert_eq!(join(a.clone(), Bytes::new()).as_ptr(), a.as_ptr());
        assert_eq!(join(Bytes::new(), a.clone()).as_ptr(), a.as_ptr());
    }
}
