//! Where each HTTP/1.1 message to and from the CMS ends, so that nothing the
//! CMS sends past the end of a response can become the answer to the next
//! visitor's request on the same keep-alive connection.
//!
//! The connection to the CMS is wrapped ([`Tracked`]) below hyper: it follows
//! the framing of each request hyper writes and of each response the CMS
//! sends (RFC 9112 §6.3, as hyper reads it). Bytes that arrive when no
//! response is due (an over-long body, a body on a HEAD, 204 or 304, a
//! second response nobody asked for) never reach hyper: the read stops at the
//! end of the response, the event is logged, and the connection fails from
//! then on, so it is closed and never pooled again.
//!
//! A response that ends before its request was written whole (the CMS
//! answered without reading the body: a redirect, a 413) also ends the
//! connection: what is left of the body is dropped, never sent, because the
//! CMS would read it as the next request, one the gate never judged; and
//! the connection fails at its next read, so it is never pooled again.
//!
//! Whatever this cannot follow (HTTP/2, an upgrade, a head hyper would refuse
//! anyway) is passed through untouched and judged by hyper alone.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_service::Service;

mod head;
#[cfg(test)]
mod tests;

use head::*;

/// Where one direction of the connection is.
#[derive(Debug)]
enum Phase {
    /// Between messages.
    Idle,
    Head(Head),
    Length(u64),
    Chunked(Chunk),
    /// The body runs until the connection closes.
    UntilClose,
    /// Not followed any more (HTTP/2, an upgrade, a head hyper refuses).
    Lost,
}

/// What a run of bytes did to a phase.
enum Step {
    /// All bytes belong to the current message, which goes on.
    More,
    /// The head ended after this many bytes.
    Head(usize, HeadInfo),
    /// The message ended after this many bytes.
    End(usize),
}

impl Phase {
    fn advance(&mut self, bytes: &[u8], role: Role) -> Step {
        match self {
            Phase::Idle | Phase::UntilClose | Phase::Lost => Step::More,
            Phase::Length(left) => {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                if *left == 0 {
                    *self = Phase::Idle;
                    Step::End(take as usize)
                } else {
                    Step::More
                }
            }
            Phase::Head(head) => {
                if head.untouched() {
                    if let Some((used, info)) = whole_head(bytes, role) {
                        return Step::Head(used, info);
                    }
                }
                let mut i = 0;
                while i < bytes.len() {
                    match head.name_at_once(&bytes[i..]) {
                        Ok(0) => {}
                        Ok(taken) => {
                            i += taken;
                            continue;
                        }
                        Err(()) => {
                            *self = Phase::Lost;
                            return Step::More;
                        }
                    }
                    if head.skips_to_line_end() {
                        // Bytes that change nothing up to the line's end: most of a head.
                        match memchr::memchr2(b'\r', b'\n', &bytes[i..]) {
                            Some(at) => i += at,
                            None => return Step::More,
                        }
                    }
                    match head.byte(bytes[i], role) {
                        Ok(None) => {}
                        Ok(Some(info)) => return Step::Head(i + 1, info),
                        Err(()) => {
                            *self = Phase::Lost;
                            return Step::More;
                        }
                    }
                    i += 1;
                }
                Step::More
            }
            Phase::Chunked(state) => {
                let mut i = 0;
                while i < bytes.len() {
                    if let Chunk::Data(left) = *state {
                        let take = left.min((bytes.len() - i) as u64);
                        i += take as usize;
                        *state = if take == left {
                            Chunk::DataCr
                        } else {
                            Chunk::Data(left - take)
                        };
                        continue;
                    }
                    match state.byte(bytes[i]) {
                        Ok(Some(next)) => *state = next,
                        Ok(None) => {
                            *self = Phase::Idle;
                            return Step::End(i + 1);
                        }
                        Err(()) => {
                            *self = Phase::Lost;
                            return Step::More;
                        }
                    }
                    i += 1;
                }
                Step::More
            }
        }
    }
}

/// The framing of both directions of one connection to the CMS.
#[derive(Debug)]
pub struct Tracker {
    request: Phase,
    response: Phase,
    // The method of the request whose response is due.
    method: Method,
    // A request has begun whose response has not ended.
    due: bool,
    // The status of the last response head, for the log.
    status: u16,
    // A response ended before its request was written whole.
    answered_early: bool,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Every byte is part of a response that was due.
    Due,
    /// Only the first `due` bytes were; the rest came when no response was.
    Stray { due: usize },
}

impl Tracker {
    /// A tracker for a fresh HTTP/1.1 connection, or one that follows
    /// nothing (an HTTP/2 one).
    pub fn new(http1: bool) -> Tracker {
        let phase = || if http1 { Phase::Idle } else { Phase::Lost };
        Tracker {
            request: phase(),
            response: phase(),
            method: Method::Unknown,
            due: false,
            status: 0,
            answered_early: false,
        }
    }

    /// Whether a response ended before its request was written whole: the
    /// rest of the request must not reach the CMS, nor the connection be reused.
    pub fn answered_early(&self) -> bool {
        self.answered_early
    }

    // A response just ended.
    fn ended(&mut self) {
        self.due = false;
        if !matches!(self.request, Phase::Idle | Phase::Lost) {
            self.answered_early = true;
        }
    }

    fn lose(&mut self) {
        self.request = Phase::Lost;
        self.response = Phase::Lost;
    }

    /// Follows bytes written to the CMS.
    pub fn wrote(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if matches!(self.request, Phase::Idle) {
                // A new request: hyper sends one only once the last
                // response has ended.
                if self.due || !matches!(self.response, Phase::Idle) {
                    self.lose();
                    return;
                }
                self.request = Phase::Head(Head::new());
                self.response = Phase::Head(Head::new());
                self.method = Method::Unknown;
                self.due = true;
            }
            match self.request.advance(bytes, Role::Request) {
                Step::More => return,
                Step::End(used) => bytes = &bytes[used..],
                Step::Head(used, info) => {
                    bytes = &bytes[used..];
                    self.method = info.method;
                    self.request = if info.has_coding {
                        if info.chunked {
                            Phase::Chunked(Chunk::Start)
                        } else {
                            Phase::Lost
                        }
                    } else {
                        match info.length {
                            _ if info.bad_length => Phase::Lost,
                            Some(length) if length > 0 => Phase::Length(length),
                            _ => Phase::Idle,
                        }
                    };
                }
            }
        }
    }

    /// Follows bytes read from the CMS.
    pub fn read(&mut self, bytes: &[u8]) -> Read {
        let mut used = 0;
        while used < bytes.len() {
            if matches!(self.response, Phase::Idle) && !self.due {
                return Read::Stray { due: used };
            }
            match self.response.advance(&bytes[used..], Role::Response) {
                Step::More => return Read::Due,
                Step::End(n) => {
                    used += n;
                    self.ended();
                }
                Step::Head(n, info) => {
                    used += n;
                    self.status = info.status;
                    self.response = self.body_of(&info);
                    if matches!(self.response, Phase::Idle) {
                        self.ended();
                    }
                }
            }
        }
        Read::Due
    }

    // The framing of a response body (RFC 9112 §6.3, in hyper's order).
    fn body_of(&self, info: &HeadInfo) -> Phase {
        match info.status {
            // Switched to another protocol: nothing more to follow.
            101 => return Phase::Lost,
            // Interim: the final head follows.
            100..=199 => return Phase::Head(Head::new()),
            204 | 304 => return Phase::Idle,
            _ => {}
        }
        match self.method {
            Method::Head => return Phase::Idle,
            Method::Connect if (200..300).contains(&info.status) => return Phase::Lost,
            Method::Unknown => return Phase::Lost,
            _ => {}
        }
        if info.has_coding {
            if info.http10 {
                Phase::Lost
            } else if info.chunked {
                Phase::Chunked(Chunk::Start)
            } else {
                Phase::UntilClose
            }
        } else if info.bad_length {
            Phase::Lost
        } else {
            match info.length {
                Some(0) => Phase::Idle,
                Some(length) => Phase::Length(length),
                None => Phase::UntilClose,
            }
        }
    }
}

/// A connection to the CMS whose responses are held to their framing.
pub struct Tracked<T> {
    inner: T,
    tracker: Tracker,
    // Set once the CMS sent bytes past a response: the connection is done.
    spoiled: bool,
    // Writes are dropped since the CMS answered early (see `drops_writes`).
    dropping: bool,
    // ALPN chose HTTP/2: nothing is followed.
    http2: bool,
}

impl<T> Tracked<T> {
    /// Whether the connection speaks HTTP/2 (chosen by ALPN).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    fn spoiled() -> io::Error {
        io::Error::other("the CMS sent bytes past the end of a response")
    }

    fn answered_early() -> io::Error {
        io::Error::other("the CMS answered before the request was sent whole")
    }

    // Once the CMS answered early, what hyper writes is dropped (reported as
    // written, so the visitor's body is still read to its end); logged once.
    fn drops_writes(&mut self) -> bool {
        if !self.tracker.answered_early() {
            return false;
        }
        if !self.dropping {
            self.dropping = true;
            tracing::warn!(
                status = self.tracker.status,
                method = self.tracker.method.as_str(),
                "the CMS answered before the request body was sent whole: the rest is \
                 dropped, and the connection closed, not reused"
            );
        }
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.spoiled {
            return Poll::Ready(Err(Self::spoiled()));
        }
        if this.tracker.answered_early() {
            return Poll::Ready(Err(Self::answered_early()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match this.tracker.read(read) {
            Read::Due => Poll::Ready(Ok(())),
            Read::Stray { due } => {
                let stray = read.len() - due;
                this.spoiled = true;
                tracing::warn!(
                    stray_bytes = stray,
                    after_status = this.tracker.status,
                    method = this.tracker.method.as_str(),
                    "the CMS sent bytes past the end of a response: connection closed, not reused"
                );
                buf.set_filled(before + due);
                if due == 0 {
                    Poll::Ready(Err(Self::spoiled()))
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.spoiled {
            return Poll::Ready(Err(Self::spoiled()));
        }
        if this.drops_writes() {
            return Poll::Ready(Ok(data.len()));
        }
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        this.tracker.wrote(&data[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.spoiled {
            return Poll::Ready(Err(Self::spoiled()));
        }
        if this.drops_writes() {
            return Poll::Ready(Ok(slices.iter().map(|slice| slice.len()).sum()));
        }
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, slices))?;
        let mut left = written;
        for slice in slices {
            if left == 0 {
                break;
            }
            let take = left.min(slice.len());
            this.tracker.wrote(&slice[..take]);
            left -= take;
        }
        Poll::Ready(Ok(written))
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

/// A connector whose connections are [`Tracked`].
#[derive(Clone, Debug)]
pub struct Framed<C>(pub C);

/// The connection the CMS client gets: tracked, in hyper's I/O traits.
pub type FramedIo<R> = TokioIo<Tracked<TokioIo<R>>>;

impl<C> Service<http::Uri> for Framed<C>
where
    C: Service<http::Uri>,
    C::Future: Unpin,
    C::Response: Connection,
{
    type Response = FramedIo<C::Response>;
    type Error = C::Error;
    type Future = Connecting<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, target: http::Uri) -> Self::Future {
        Connecting(self.0.call(target))
    }
}

/// A connection being made, tracked once it is.
pub struct Connecting<F>(F);

impl<F, R, E> std::future::Future for Connecting<F>
where
    F: std::future::Future<Output = Result<R, E>> + Unpin,
    R: Connection,
{
    type Output = Result<FramedIo<R>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let io = std::task::ready!(Pin::new(&mut self.0).poll(cx))?;
        let http1 = !io.connected().is_negotiated_h2();
        Poll::Ready(Ok(TokioIo::new(Tracked {
            inner: TokioIo::new(io),
            tracker: Tracker::new(http1),
            spoiled: false,
            dropping: false,
            http2: !http1,
        })))
    }
}
