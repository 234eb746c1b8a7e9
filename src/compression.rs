//! Compression around the rewriter: a gated page the CMS compressed anyway
//! is decoded before it is rewritten, and a rewritten page is compressed for
//! a visitor who accepts br or gzip, flushed at each upstream chunk so the
//! first bytes are never held back. Everything else keeps its encoding.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{
    BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::{poll_read_buf, StreamReader};

use crate::body::BodyError;

/// `[compression]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionSettings {
    /// Compress rewritten pages for visitors who accept it.
    pub enabled: bool,
    /// Compression level (brotli 0-11, gzip 1-9; clamped per codec).
    pub level: i32,
    /// Pages the CMS says are smaller than this are sent as they are.
    pub min_size: u64,
}

/// A content coding the gateway reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// gzip
    Gzip,
    /// deflate (zlib)
    Deflate,
    /// br
    Brotli,
    /// zstd
    Zstd,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// A `Content-Encoding` the gateway cannot read: unknown, or several stacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a content coding the gateway cannot read")]
pub struct UnknownCoding;

/// The coding a response's `Content-Encoding` names: `Ok(None)` for none
/// (or identity).
pub fn content_coding(headers: &HeaderMap) -> Result<Option<Coding>, UnknownCoding> {
    let mut codings = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    let Some(first) = codings.next() else {
        return Ok(None);
    };
    if codings.next().is_some() {
        return Err(UnknownCoding);
    }
    match first.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "deflate" => Ok(Some(Coding::Deflate)),
        "br" => Ok(Some(Coding::Brotli)),
        "zstd" => Ok(Some(Coding::Zstd)),
        _ => Err(UnknownCoding),
    }
}

/// The coding to send a rewritten page in, by the visitor's
/// `Accept-Encoding` and its q-values: br, else gzip, else none. A `*`
/// stands only for the codings the header does not name (RFC 9110,
/// 12.5.3), so `br;q=0, *` never gets br.
pub fn preferred(request: &HeaderMap) -> Option<Coding> {
    let mut best: Option<(Coding, f32)> = None;
    let mut star = None;
    // Whether br and gzip were named, with any q.
    let mut named = [false; 2];
    let slot = |coding: Coding| usize::from(coding == Coding::Gzip);
    let better = |best: Option<(Coding, f32)>, coding: Coding, q: f32| {
        q > 0.0
            && best.is_none_or(|(current, bq)| {
                q > bq || (q == bq && coding == Coding::Brotli && current != Coding::Brotli)
            })
    };
    for value in request.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let coding = match name.as_str() {
                "br" => Coding::Brotli,
                "gzip" | "x-gzip" => Coding::Gzip,
                "*" => {
                    star = Some(q);
                    continue;
                }
                _ => continue,
            };
            named[slot(coding)] = true;
            if better(best, coding, q) {
                best = Some((coding, q));
            }
        }
    }
    if let Some(q) = star {
        for coding in [Coding::Brotli, Coding::Gzip] {
            if !named[slot(coding)] && better(best, coding, q) {
                best = Some((coding, q));
            }
        }
    }
    best.map(|(coding, _)| coding)
}

/// Marks a response as varying with `Accept-Encoding`.
pub fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The content-coding header value for `coding`.
pub fn header_value(coding: Coding) -> HeaderValue {
    HeaderValue::from_static(coding.token())
}

/// A body decoded from `coding`, as it streams.
pub struct Decoded {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    buffer: BytesMut,
    done: bool,
}

/// Room read at a time from a decoder.
const DECODE_CHUNK: usize = 16 * 1024;

impl Decoded {
    /// Decodes `body` from `coding`.
    pub fn new<B>(body: B, coding: Coding) -> Decoded
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BodyError>,
    {
        let stream = body
            .map_err(|err| io::Error::other(err.into()))
            .into_data_stream();
        let reader = StreamReader::new(stream);
        let reader: Pin<Box<dyn AsyncRead + Send>> = match coding {
            Coding::Gzip => {
                // A gzip body may be several members one after another
                // (RFC 1952 2.2): all of them are the page.
                let mut decoder = GzipDecoder::new(reader);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
            Coding::Deflate => Box::pin(Inflate::new(Box::pin(reader))),
            Coding::Brotli => Box::pin(BrotliDecoder::new(reader)),
            Coding::Zstd => Box::pin(ZstdDecoder::new(reader)),
        };
        Decoded {
            reader,
            buffer: BytesMut::new(),
            done: false,
        }
    }
}

/// The body read so far, boxed to be moved between the states of [`Inflate`].
type Source = Pin<Box<dyn AsyncBufRead + Send>>;

/// HTTP's deflate, decoded as browsers do: the zlib format (RFC 1950, as
/// RFC 9110 8.4.1.2 says), or raw deflate (RFC 1951) from a server that
/// sends that instead, told apart by the first two bytes.
enum Inflate {
    /// Reading the first two bytes, which may come in separate chunks.
    Sniffing {
        source: Option<Source>,
        head: [u8; 2],
        len: usize,
    },
    Zlib(ZlibDecoder<Replay>),
    Raw(DeflateDecoder<Replay>),
}

impl Inflate {
    fn new(source: Source) -> Inflate {
        Inflate::Sniffing {
            source: Some(source),
            head: [0; 2],
            len: 0,
        }
    }
}

/// A zlib header: compression method 8 with a window of at most 32 KiB,
/// and the check bits making CMF*256 + FLG a multiple of 31.
fn is_zlib_header([cmf, flg]: [u8; 2]) -> bool {
    cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl AsyncRead for Inflate {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this {
                Inflate::Sniffing { source, head, len } => {
                    let Some(reader) = source.as_mut() else {
                        return Poll::Ready(Err(io::Error::other(
                            "deflate body read after its end",
                        )));
                    };
                    while *len < head.len() {
                        let available = std::task::ready!(reader.as_mut().poll_fill_buf(cx))?;
                        if available.is_empty() {
                            break;
                        }
                        let n = available.len().min(head.len() - *len);
                        head[*len..*len + n].copy_from_slice(&available[..n]);
                        *len += n;
                        reader.as_mut().consume(n);
                    }
                    let Some(rest) = source.take() else {
                        return Poll::Ready(Err(io::Error::other(
                            "deflate body read after its end",
                        )));
                    };
                    let replay = Replay {
                        head: *head,
                        start: 0,
                        end: *len,
                        rest,
                    };
                    // Fewer than two bytes are no zlib header either: raw
                    // deflate, which reports such a body as cut short.
                    *this = if *len == head.len() && is_zlib_header(*head) {
                        Inflate::Zlib(ZlibDecoder::new(replay))
                    } else {
                        Inflate::Raw(DeflateDecoder::new(replay))
                    };
                }
                Inflate::Zlib(decoder) => return Pin::new(decoder).poll_read(cx, buf),
                Inflate::Raw(decoder) => return Pin::new(decoder).poll_read(cx, buf),
            }
        }
    }
}

/// The bytes [`Inflate`] looked at, then the rest of the body.
struct Replay {
    head: [u8; 2],
    start: usize,
    end: usize,
    rest: Source,
}

impl AsyncBufRead for Replay {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.start < this.end {
            Poll::Ready(Ok(&this.head[this.start..this.end]))
        } else {
            this.rest.as_mut().poll_fill_buf(cx)
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        if this.start < this.end {
            this.start = (this.start + amount).min(this.end);
        } else {
            this.rest.as_mut().consume(amount);
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = std::task::ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl Body for Decoded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.buffer.reserve(DECODE_CHUNK);
        match poll_read_buf(this.reader.as_mut(), cx, &mut this.buffer) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze())))),
            Poll::Ready(Err(err)) => {
                this.done = true;
                Poll::Ready(Some(Err(
                    format!("cannot decode the CMS's page: {err}").into()
                )))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

enum Encoder {
    Gzip(GzipEncoder<Vec<u8>>),
    // Brotli's state is some kilobytes: kept behind a pointer.
    Brotli(Box<BrotliEncoder<Vec<u8>>>),
}

impl Encoder {
    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self {
            Encoder::Gzip(encoder) => Pin::new(encoder),
            Encoder::Brotli(encoder) => Pin::new(encoder.as_mut()),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(encoder) => encoder.get_mut(),
            Encoder::Brotli(encoder) => encoder.get_mut(),
        }
    }
}

/// A body encoded as it streams, flushed at each chunk of the inner body.
pub struct Encoded<B> {
    inner: B,
    encoder: Option<Encoder>,
}

impl<B> Encoded<B> {
    /// Encodes `inner` with `coding` (br or gzip) at `level`.
    pub fn new(inner: B, coding: Coding, level: i32) -> Encoded<B> {
        let encoder = match coding {
            Coding::Brotli => Encoder::Brotli(Box::new(BrotliEncoder::with_quality(
                Vec::new(),
                Level::Precise(level.clamp(0, 11)),
            ))),
            _ => Encoder::Gzip(GzipEncoder::with_quality(
                Vec::new(),
                Level::Precise(level.clamp(1, 9)),
            )),
        };
        Encoded {
            inner,
            encoder: Some(encoder),
        }
    }
}

/// Runs a write step on an encoder over a `Vec`, which is never pending.
fn now<T>(step: Poll<io::Result<T>>) -> io::Result<T> {
    match step {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::Error::other("encoder into memory was pending")),
    }
}

fn compress(encoder: &mut Encoder, mut data: &[u8], cx: &mut Context<'_>) -> io::Result<Bytes> {
    while !data.is_empty() {
        let written = now(encoder.writer().poll_write(cx, data))?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[written..];
    }
    now(encoder.writer().poll_flush(cx))?;
    Ok(Bytes::from(std::mem::take(encoder.output())))
}

impl<B> Body for Encoded<B>
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
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers do not survive a re-encoding; drop them.
                        continue;
                    };
                    match compress(encoder, &data, cx) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(err) => {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(err.into())));
                        }
                    }
                }
                Some(Err(err)) => {
                    // Never finish the stream: a cut page must not look whole.
                    this.encoder = None;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    let finished = now(encoder.writer().poll_shutdown(cx))
                        .map(|()| Bytes::from(std::mem::take(encoder.output())));
                    this.encoder = None;
                    return match finished {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(err) => Poll::Ready(Some(Err(err.into()))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn the_visitors_preference_and_q_values_choose_the_coding() {
        assert_eq!(
            preferred(&accept("gzip, deflate, br")),
            Some(Coding::Brotli)
        );
        assert_eq!(preferred(&accept("gzip")), Some(Coding::Gzip));
        assert_eq!(
            preferred(&accept("br;q=0.5, gzip;q=0.9")),
            Some(Coding::Gzip)
        );
        assert_eq!(preferred(&accept("br;q=0, gzip;q=0")), None);
        assert_eq!(preferred(&accept("identity")), None);
        assert_eq!(preferred(&accept("*")), Some(Coding::Brotli));
        // A `*` stands only for the codings not named (RFC 9110, 12.5.3).
        assert_eq!(preferred(&accept("br;q=0, *")), Some(Coding::Gzip));
        assert_eq!(preferred(&accept("br;q=0, gzip;q=0, *")), None);
        assert_eq!(preferred(&accept("gzip;q=0.5, *")), Some(Coding::Brotli));
        assert_eq!(preferred(&accept("br;q=0.2, *;q=0.5")), Some(Coding::Gzip));
        assert_eq!(preferred(&accept("*;q=0")), None);
        assert_eq!(preferred(&HeaderMap::new()), None);
    }

    #[test]
    fn only_one_known_coding_is_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_coding(&headers), Ok(None));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(content_coding(&headers), Ok(Some(Coding::Gzip)));
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        assert_eq!(content_coding(&headers), Err(UnknownCoding));
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("compress"),
        );
        assert_eq!(content_coding(&headers), Err(UnknownCoding));
    }
}
