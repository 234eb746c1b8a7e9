//! The visitor's request body on its way to the CMS.
//!
//! It tells when it has been sent whole, so the wait for the CMS's answer
//! starts then and not while a slow upload is still coming in, and it gives
//! up on a visitor who stops sending mid-body, or who has not sent the whole
//! body by the deadline (a trickle that never goes quiet).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use bytes::Bytes;
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
}

impl VisitorBody {
    /// The visitor's body as it comes, none of it read yet.
    pub fn unread(body: Incoming) -> VisitorBody {
        VisitorBody {
            read: Bytes::new(),
            rest: Some(body),
            spent: Duration::ZERO,
        }
    }

    /// No body.
    pub fn none() -> VisitorBody {
        VisitorBody {
            read: Bytes::new(),
            rest: None,
            spent: Duration::ZERO,
        }
    }
}

/// A request body that reports its end and enforces an idle limit and a size limit.
pub struct RequestBody {
    // Read ahead by the gateway; sent before `inner`.
    read: Option<Bytes>,
    inner: Option<Incoming>,
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
            sent,
            idle: IdleTimer::new(Some(idle_limit)),
            received: 0,
            max,
            deadline: done.is_some().then(|| (Instant::now() + left, deadline)),
            alarm: None,
        };
        (body, done)
    }

    fn finished(&mut self) {
        if let Some(sent) = self.sent.take() {
            let _ = sent.send(());
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(read) = this.read.take() {
            this.received += read.len() as u64;
            if let Some(max) = this.max.filter(|max| this.received > *max) {
                this.max = None;
                return Poll::Ready(Some(Err(TooLarge(max).into())));
            }
            if this.inner.as_ref().is_none_or(Body::is_end_stream) {
                this.finished();
            }
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some((at, allowed)) = this.deadline {
            if Instant::now() >= at {
                this.deadline = None;
                return Poll::Ready(Some(Err(VisitorSlow(allowed).into())));
            }
        }
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.progressed();
                this.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                if let Some(max) = this.max.filter(|max| this.received > *max) {
                    this.max = None;
                    return Poll::Ready(Some(Err(TooLarge(max).into())));
                }
                if inner.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(BadBody(err).into()))),
            Poll::Pending => {
                if let Some(timeout) = this.idle.expired(cx) {
                    return Poll::Ready(Some(Err(VisitorQuiet(timeout).into())));
                }
                if let Some((at, allowed)) = this.deadline {
                    let alarm = this
                        .alarm
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if alarm.as_mut().poll(cx).is_ready() {
                        this.deadline = None;
                        return Poll::Ready(Some(Err(VisitorSlow(allowed).into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let read = self.read.as_ref().map_or(0, |read| read.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}
