//! A response body as its connection sees it: its request counted as in
//! flight until the body ends, and over HTTP/2 its stream watched for a
//! reset by the client ([`super::resets`]) and for waits on the client
//! ([`super::stalls`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::connection::InFlightGuard;
use super::resets::StreamWatch;
use super::stalls::StreamClock;

/// The most an HTTP/2 answer hands hyper at once: one DATA frame of the
/// default size. A body piece can be hundreds of kilobytes, which a client
/// reading slowly but steadily takes longer than the send limit to open its
/// window for; a stream's wait on the client is timed per frame instead.
const HTTP2_PIECE: usize = 16 * 1024;

/// What watches one HTTP/2 stream: a reset by the client, and its waits on the client.
pub struct Http2Stream {
    reset: StreamWatch,
    sends: Arc<StreamClock>,
    // What is left of a body piece larger than `HTTP2_PIECE`.
    rest: Bytes,
}

impl Http2Stream {
    /// A stream counted as reset if it ends before its response, its waits on the client timed.
    pub fn new(reset: StreamWatch, sends: Arc<StreamClock>) -> Http2Stream {
        Http2Stream {
            reset,
            sends,
            rest: Bytes::new(),
        }
    }

    // Hands hyper at most `HTTP2_PIECE` of `data`, keeping the rest.
    fn hand<E>(&mut self, mut data: Bytes) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        if data.len() > HTTP2_PIECE {
            self.rest = data.split_off(HTTP2_PIECE);
        }
        self.sends.handed();
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

/// A response body that keeps its request counted until it is done.
pub struct Guarded<B> {
    body: B,
    _guard: InFlightGuard,
    stream: Option<Http2Stream>,
}

impl<B> Guarded<B> {
    /// Ties `guard` (and an HTTP/2 stream's watches) to `body`.
    pub fn new(body: B, guard: InFlightGuard, stream: Option<Http2Stream>) -> Self {
        if let Some(stream) = &stream {
            // The head is ready: the stream waits on the client until hyper
            // asks for the body, or drops it (a body already over).
            stream.sends.handed();
        }
        Guarded {
            body,
            _guard: guard,
            stream,
        }
    }

    // The body is over; its last piece may still wait on the client: hyper
    // keeps it, and this body, until the stream's window has room for it,
    // so the wait ends when hyper drops the body.
    fn completed(&self) {
        if let Some(stream) = &self.stream {
            stream.reset.complete();
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
        let this = &mut *self;
        if let Some(stream) = &mut this.stream {
            stream.sends.asked();
            if !stream.rest.is_empty() {
                let rest = std::mem::take(&mut stream.rest);
                return stream.hand(rest);
            }
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => match &mut this.stream {
                Some(stream) => match frame.into_data() {
                    Ok(data) => stream.hand(data),
                    Err(trailers) => {
                        stream.sends.handed();
                        Poll::Ready(Some(Ok(trailers)))
                    }
                },
                None => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None | Some(Err(_))) => {
                this.completed();
                polled
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        if self
            .stream
            .as_ref()
            .is_some_and(|stream| !stream.rest.is_empty())
        {
            return false;
        }
        let ended = self.body.is_end_stream();
        if ended {
            self.completed();
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.body.size_hint();
        let Some(rest) = self.stream.as_ref().map(|stream| stream.rest.len() as u64) else {
            return hint;
        };
        let mut with_rest = SizeHint::new();
        with_rest.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            with_rest.set_upper(upper.saturating_add(rest));
        }
        with_rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::connection::InFlight;
    use std::task::Waker;
    use std::time::Duration;

    #[test]
    fn an_http2_answer_is_handed_to_hyper_a_frame_s_worth_at_a_time() {
        let piece = Bytes::from(vec![7u8; 5 * HTTP2_PIECE + 100]);
        let body = http_body_util::Full::new(piece.clone());
        let stream = Http2Stream::new(
            super::super::resets::ResetBudget::new(10).stream(),
            super::super::stalls::SendWatch::new(Duration::from_secs(60)).stream(),
        );
        let mut guarded = Guarded::new(body, InFlight::default().enter(), Some(stream));
        let mut cx = Context::from_waker(Waker::noop());
        let mut handed = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut guarded).poll_frame(&mut cx) {
            let data = frame.unwrap().into_data().unwrap();
            handed.push(data.len());
            let left = piece.len() - handed.iter().sum::<usize>();
            assert_eq!(guarded.is_end_stream(), left == 0);
            assert_eq!(guarded.size_hint().exact(), Some(left as u64));
        }
        assert_eq!(
            handed,
            [
                HTTP2_PIECE,
                HTTP2_PIECE,
                HTTP2_PIECE,
                HTTP2_PIECE,
                HTTP2_PIECE,
                100
            ]
        );
        // Over HTTP/1.1 the body's pieces go as they are.
        let body = http_body_util::Full::new(piece.clone());
        let mut whole = Guarded::new(body, InFlight::default().enter(), None);
        match Pin::new(&mut whole).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_data().unwrap(), piece),
            _ => panic!("the whole piece at once"),
        }
    }
}
