//! Response bodies as layers over one boxed body:
//! upstream -> [`ReadLimit`] -> [rewrite] -> [`ResponseBody`] (the finished hook).
//!
//! A new step (decoding, encoding, an upgrade) is one more layer wrapped
//! around the stream before it is boxed, not a new kind of response body.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use crate::finished::{finished, RequestRecord};
use crate::idle::{IdleTimeout, IdleTimer};
use crate::runtime::Runtime;

/// Boxed error of a response body.
pub type BodyError = Box<dyn StdError + Send + Sync>;

/// A stream of body layers, boxed once per response.
pub type BoxBody = UnsyncBoxBody<Bytes, BodyError>;

/// The CMS stopped sending a body it had begun.
#[derive(Debug, thiserror::Error)]
#[error("upstream went quiet mid-body: {0}")]
pub struct UpstreamQuiet(IdleTimeout);

/// Layer: fails the body once its source has sent nothing for the limit
/// while it was being waited for, and drops the CMS's trailers, as nginx
/// does: a trailer field (`Cache-Control`, `Set-Cookie`, `Connection`) would
/// reach the visitor without the hygiene every header goes through.
pub struct ReadLimit<B> {
    inner: B,
    idle: IdleTimer,
    failed: bool,
    // Set while the source is being waited for; the clock starts when the
    // wait does, so a visitor who reads slowly is not blamed on the CMS.
    waiting: bool,
}

impl<B> ReadLimit<B> {
    /// Wraps `inner`, allowing at most `limit` between two of its frames.
    pub fn new(inner: B, limit: Duration) -> ReadLimit<B> {
        ReadLimit {
            inner,
            idle: IdleTimer::new(Some(limit)),
            failed: false,
            waiting: false,
        }
    }
}

impl<B> Body for ReadLimit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            // Trailers come last: the body ends without them.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                this.waiting = false;
                Poll::Ready(None)
            }
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !std::mem::replace(&mut this.waiting, true) {
                    this.idle.progressed();
                }
                match this.idle.expired(cx) {
                    Some(timeout) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(UpstreamQuiet(timeout).into())))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A byte-order mark at the start of a page: what decides its encoding in a
/// browser, before any charset in the headers or the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bom {
    /// EF BB BF.
    Utf8,
    /// FE FF or FF FE.
    Utf16,
}

/// What the first bytes of a page say: `None` while they cannot tell yet.
fn bom_of(start: &[u8]) -> Option<Option<Bom>> {
    match start {
        [] | [0xEF] | [0xEF, 0xBB] | [0xFE] | [0xFF] => None,
        [0xEF, 0xBB, 0xBF, ..] => Some(Some(Bom::Utf8)),
        [0xFE, 0xFF, ..] | [0xFF, 0xFE, ..] => Some(Some(Bom::Utf16)),
        _ => Some(None),
    }
}

/// Reads no more of `body` than it takes to see whether it starts with a
/// byte-order mark (usually its first frame; the first byte decides most
/// pages), and gives it back whole, those bytes in front.
pub async fn sniff_bom<B>(mut body: B) -> Result<(Option<Bom>, Prefixed<B>), BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    use http_body_util::BodyExt;
    let mut head = Bytes::new();
    let mut held = None;
    let bom = loop {
        if let Some(bom) = bom_of(&head) {
            break bom;
        }
        match body.frame().await {
            None => break None,
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if head.is_empty() => head = data,
                Ok(data) => {
                    // A mark split across frames: rare, and a few bytes.
                    let mut joined = bytes::BytesMut::from(&head[..]);
                    joined.extend_from_slice(&data);
                    head = joined.freeze();
                }
                Err(frame) => {
                    held = Some(frame);
                    break None;
                }
            },
        }
    };
    let body = Prefixed {
        head: (!head.is_empty()).then_some(head),
        held,
        inner: body,
    };
    Ok((bom, body))
}

/// Layer: a body with what was already read of it put back in front.
pub struct Prefixed<B> {
    head: Option<Bytes>,
    held: Option<Frame<Bytes>>,
    inner: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

enum Content {
    /// Made by the gateway itself (403 page, error text).
    Own(Option<Bytes>),
    /// The CMS body through its layers.
    Stream(BoxBody),
}

/// The body the visitor gets. It keeps the runtime the request started
/// with until it is done, and hands the request's record to [`finished`]
/// when it is dropped.
pub struct ResponseBody {
    content: Content,
    record: Option<Box<RequestRecord>>,
    // Set when the stream said it had no more: some bodies (chunked ones)
    // only know they are at the end once asked once more.
    ended: bool,
    _runtime: Option<Arc<Runtime>>,
}

impl ResponseBody {
    /// A body made by the gateway itself.
    pub fn own(bytes: Bytes, record: Box<RequestRecord>) -> ResponseBody {
        ResponseBody {
            content: Content::Own((!bytes.is_empty()).then_some(bytes)),
            record: Some(record),
            ended: false,
            _runtime: None,
        }
    }

    /// A stream of layers, served under `runtime` to its end.
    pub fn stream(
        body: BoxBody,
        record: Box<RequestRecord>,
        runtime: Arc<Runtime>,
    ) -> ResponseBody {
        ResponseBody {
            content: Content::Stream(body),
            record: Some(record),
            ended: false,
            _runtime: Some(runtime),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.content {
            Content::Own(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Content::Stream(body) => Pin::new(body).poll_frame(cx),
        };
        match (&polled, this.record.as_mut()) {
            (Poll::Ready(Some(Ok(frame))), Some(record)) => {
                record.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            (Poll::Ready(Some(Err(err))), Some(record)) => record.failure = Some(err.to_string()),
            (Poll::Ready(None), _) => this.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Own(bytes) => bytes.is_none(),
            Content::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Own(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Content::Stream(body) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            let complete = self.ended || self.is_end_stream();
            let complete = complete && record.failure.is_none();
            finished(&mut record, complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A body that is pending until told otherwise.
    struct Later(bool);

    impl Body for Later {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
            } else {
                Poll::Pending
            }
        }
    }

    /// A body of these pieces, one frame each.
    struct Pieces(std::collections::VecDeque<&'static [u8]>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|piece| Ok(Frame::data(Bytes::from_static(piece)))),
            )
        }
    }

    async fn sniffed(pieces: &[&'static [u8]]) -> (Option<Bom>, usize, Vec<u8>) {
        use http_body_util::BodyExt;
        let (bom, body) = sniff_bom(Pieces(pieces.iter().copied().collect()))
            .await
            .unwrap();
        let left = match &body.inner {
            Pieces(rest) => rest.len(),
        };
        let whole = body.collect().await.unwrap().to_bytes().to_vec();
        (bom, left, whole)
    }

    #[tokio::test]
    async fn a_byte_order_mark_is_seen_from_the_first_bytes_and_nothing_is_lost() {
        assert_eq!(
            sniffed(&[b"<html>", b"rest"]).await,
            (None, 1, b"<html>rest".to_vec())
        );
        assert_eq!(
            sniffed(&[b"\xEF\xBB\xBF<p>", b"rest"]).await,
            (Some(Bom::Utf8), 1, b"\xEF\xBB\xBF<p>rest".to_vec())
        );
        // A mark split across frames: read until it is whole, no further.
        assert_eq!(
            sniffed(&[b"\xEF", b"\xBB", b"\xBF<", b"p>"]).await,
            (Some(Bom::Utf8), 1, b"\xEF\xBB\xBF<p>".to_vec())
        );
        assert_eq!(
            sniffed(&[b"\xFF", b"\xFE<\0", b"p\0"]).await,
            (Some(Bom::Utf16), 1, b"\xFF\xFE<\0p\0".to_vec())
        );
        assert_eq!(
            sniffed(&[b"\xEF", b"\xBBx", b"y"]).await,
            (None, 1, b"\xEF\xBBxy".to_vec())
        );
        assert_eq!(sniffed(&[b"\xFE"]).await, (None, 0, b"\xFE".to_vec()));
        assert_eq!(sniffed(&[]).await, (None, 0, Vec::new()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_limit_counts_from_when_the_wait_began_not_from_the_last_frame() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut body = ReadLimit::new(Later(true), Duration::from_secs(10));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
        // The visitor reads slowly: nobody polls for longer than the limit.
        tokio::time::advance(Duration::from_secs(30)).await;
        body.inner.0 = false;
        assert!(
            Pin::new(&mut body).poll_frame(&mut cx).is_pending(),
            "not the CMS's fault"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Err(_)))
        ));
    }
}
