//! The visitor's request body on its way to the CMS.
//!
//! It tells when it has been sent whole, so the wait for the CMS's answer
//! starts then and not while a slow upload is still coming in, and it gives
//! up on a visitor who stops sending mid-body, or who has not sent the whole
//! body by the deadline (a trickle that never goes quiet).
//!
//! An HTTP/2 body can reach its declared `Content-Length` before its stream
//! ends; more data after that makes the request malformed (RFC 9113, 8.1.1),
//! and such a request must not reach the CMS. The piece that completes the
//! declared length is therefore held until the stream's end is known: the
//! CMS never has a whole body of a request found malformed after it.
//! hyper reads an HTTP/2 stream reset with NO_ERROR as the body's end; with
//! no END_STREAM received, it is a visitor who gave up, and the CMS sees the
//! upload cut off, never a shorter body that looks complete.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::idle::{IdleTimeout, IdleTimer};

/// The visitor stopped sending a body it had begun.
#[derive(Debug, thiserror::Error)]
#[error("visitor went quiet mid-body: {0}")]
pub struct VisitorQuiet(IdleTimeout);

/// The visitor did not send the whole body in the time allowed.
#[derive(Debug, thiserror::Error)]
#[error("visitor's request body not complete within {0:?}")]
pub struct VisitorSlow(Duration);

/// The visitor's body could not be read: a malformed chunked encoding, or
/// an upload cut off before its end. The visitor's fault, not the CMS's.
#[derive(Debug, thiserror::Error)]
#[error("visitor's request body unreadable: {0}")]
pub struct BadBody(hyper::Error);

/// The visitor's HTTP/2 body did not end as framed: data past its declared
/// `Content-Length`, or a reset before END_STREAM.
#[derive(Debug, thiserror::Error)]
#[error("visitor's HTTP/2 request body {0}")]
pub struct MalformedStream(&'static str);

/// The visitor sent more body than allowed.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// The body of a request to the CMS: what the gateway already read of the
/// visitor's body (to look into a form), then the rest as it comes.
pub struct VisitorBody {
    /// Read ahead, sent first.
    pub read: Bytes,
    /// The rest; `None` when there is no more (a page asked again whole, a
    /// form read whole).
    pub rest: Option<Incoming>,
    /// How long the reading ahead took, out of the body's deadline.
    pub spent: Duration,
    /// Whether it comes over HTTP/2, where only END_STREAM ends a body.
    pub http2: bool,
}

impl VisitorBody {
    /// The visitor's body as it comes, none of it read yet.
    pub fn unread(body: Incoming, http2: bool) -> VisitorBody {
        VisitorBody {
            read: Bytes::new(),
            rest: Some(body),
            spent: Duration::ZERO,
            http2,
        }
    }

    /// No body.
    pub fn none() -> VisitorBody {
        VisitorBody {
            read: Bytes::new(),
            rest: None,
            spent: Duration::ZERO,
            http2: false,
        }
    }
}

/// A request body that reports its end and enforces an idle limit and a size limit.
pub struct RequestBody {
    // Read ahead by the gateway; sent before `inner`.
    read: Option<Bytes>,
    inner: Option<Incoming>,
    // The piece that completed the declared length, until the stream ends;
    // and trailers that ended the stream while it was held, sent after it.
    // Boxed: both are rare, and every request's body moves through hyper's
    // client (unboxed, 0.9% more instructions on a passthrough).
    held: Option<Box<Bytes>>,
    trailers: Option<Box<HeaderMap>>,
    http2: bool,
    sent: Option<oneshot::Sender<()>>,
    idle: IdleTimer,
    received: u64,
    max: Option<u64>,
    deadline: Option<(Instant, Duration)>,
    // Made on the first wait only: wakes the body at the deadline.
    alarm: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    /// Wraps `body`. The receiver resolves once the body has gone to the CMS
    /// whole; there is none when the request has no body.
    /// Past `max` bytes the body fails, so the CMS sees an aborted upload,
    /// never a shorter one that looks complete.
    /// The whole body must have come within `deadline` of the request.
    pub fn new(
        body: VisitorBody,
        idle_limit: Duration,
        deadline: Duration,
        max: Option<u64>,
    ) -> (RequestBody, Option<oneshot::Receiver<()>>) {
        let read = Some(body.read).filter(|read| !read.is_empty());
        // What reading ahead took is gone from the deadline.
        let left = deadline.saturating_sub(body.spent);
        let http2 = body.http2;
        let body = body.rest;
        let (sent, done) = if read.is_none() && body.as_ref().is_none_or(Body::is_end_stream) {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let body = RequestBody {
            read,
            inner: body,
            held: None,
            trailers: None,
            http2,
            sent,
            idle: IdleTimer::new(Some(idle_limit)),
            received: 0,
            max,
            deadline: done.is_some().then(|| (Instant::now() + left, deadline)),
            alarm: None,
        };
        (body, done)
    }
}

/// Tells whoever waits on `sent` that the body has gone whole, once.
fn report_sent(sent: &mut Option<oneshot::Sender<()>>) {
    if let Some(sent) = sent.take() {
        let _ = sent.send(());
    }
}

/// Whether `body`, which gave no more, was reset before its end: hyper reads
/// an HTTP/2 reset with NO_ERROR as the end of the body, and only a received
/// END_STREAM makes `is_end_stream` true. Over HTTP/1.1 an end is an end.
pub fn reset_before_end(body: &Incoming, http2: bool) -> bool {
    http2 && !body.is_end_stream()
}

/// Whether `body` has brought all its declared length but its stream has not
/// ended yet: only an HTTP/2 stream can be so (HTTP/1.1's framing ends a body
/// at its length).
fn declared_length_reached_open(body: &Incoming) -> bool {
    body.size_hint().exact() == Some(0) && !body.is_end_stream()
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl RequestBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(read) = self.read.take() {
            self.received += read.len() as u64;
            if let Some(max) = self.max.filter(|max| self.received > *max) {
                self.max = None;
                return Poll::Ready(Some(Err(TooLarge(max).into())));
            }
            match self.inner.as_ref() {
                Some(inner) if declared_length_reached_open(inner) => {
                    self.held = Some(Box::new(read));
                }
                rest => {
                    if rest.is_none_or(Body::is_end_stream) {
                        report_sent(&mut self.sent);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(read))));
                }
            }
        }
        if let Some(trailers) = self.trailers.take() {
            report_sent(&mut self.sent);
            return Poll::Ready(Some(Ok(Frame::trailers(*trailers))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some((at, allowed)) = self.deadline {
            if Instant::now() >= at {
                self.deadline = None;
                return Poll::Ready(Some(Err(VisitorSlow(allowed).into())));
            }
        }
        loop {
            match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    if reset_before_end(inner, self.http2) {
                        let why = "reset before END_STREAM";
                        return Poll::Ready(Some(Err(MalformedStream(why).into())));
                    }
                    self.inner = None;
                    report_sent(&mut self.sent);
                    return Poll::Ready(self.held.take().map(|held| Ok(Frame::data(*held))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle.progressed();
                    let length = frame.data_ref().map_or(0, |d| d.len() as u64);
                    self.received += length;
                    if let Some(max) = self.max.filter(|max| self.received > *max) {
                        self.max = None;
                        return Poll::Ready(Some(Err(TooLarge(max).into())));
                    }
                    if self.held.is_some() && length > 0 {
                        // The h2 crate refuses such a frame itself; should one
                        // come, the held piece is never sent.
                        let why = "longer than its Content-Length";
                        return Poll::Ready(Some(Err(MalformedStream(why).into())));
                    }
                    let ended = inner.is_end_stream();
                    let hold = frame.is_data() && declared_length_reached_open(inner);
                    let frame = match self.held.take() {
                        // An empty piece ends nothing the held one does not.
                        Some(held) if frame.is_data() && !ended => {
                            self.held = Some(held);
                            continue;
                        }
                        // Sent whole once the trailers after it are.
                        Some(held) if frame.is_trailers() => {
                            self.trailers = frame.into_trailers().ok().map(Box::new);
                            return Poll::Ready(Some(Ok(Frame::data(*held))));
                        }
                        Some(held) => Frame::data(*held),
                        None if hold => {
                            self.held = frame.into_data().ok().map(Box::new);
                            continue;
                        }
                        None => frame,
                    };
                    if ended {
                        report_sent(&mut self.sent);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(err))) => {
                    return Poll::Ready(Some(Err(BadBody(err).into())));
                }
                Poll::Pending => break,
            }
        }
        if let Some(timeout) = self.idle.expired(cx) {
            return Poll::Ready(Some(Err(VisitorQuiet(timeout).into())));
        }
        if let Some((at, allowed)) = self.deadline {
            let alarm = self
                .alarm
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if alarm.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                return Poll::Ready(Some(Err(VisitorSlow(allowed).into())));
            }
        }
        Poll::Pending
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = self.poll_next(cx);
        if let Poll::Ready(Some(Err(_))) = polled {
            // Whatever was held back is never sent after a failure.
            self.held = None;
            self.trailers = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none()
            && self.held.is_none()
            && self.trailers.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let read = self.read.as_ref().map_or(0, |read| read.len() as u64)
            + self.held.as_ref().map_or(0, |held| held.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}
