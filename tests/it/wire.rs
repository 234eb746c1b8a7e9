//! HTTP/2 as it goes over the wire: how HPACK sends the answer's fields.
//!
//! A client decodes the fields whatever representation carried them, so
//! these tests read the frames the gateway wrote and walk their HPACK
//! blocks by hand (without Huffman decoding: only the shapes are needed).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::common::*;

/// A TCP stream that keeps a copy of every byte it read and wrote.
struct Recorded {
    inner: TcpStream,
    read: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The HPACK block of stream `stream`'s first HEADERS frame (and its
/// CONTINUATIONs) among `frames`.
fn header_block(mut frames: &[u8], stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    let mut in_block = false;
    while frames.len() >= 9 {
        let length =
            usize::from(frames[0]) << 16 | usize::from(frames[1]) << 8 | usize::from(frames[2]);
        let (kind, flags) = (frames[3], frames[4]);
        let id = u32::from_be_bytes(frames[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let mut payload = &frames[9..9 + length];
        frames = &frames[9 + length..];
        if id != stream {
            continue;
        }
        match kind {
            HEADERS if !in_block => {
                if flags & PADDED != 0 {
                    let pad = usize::from(payload[0]);
                    payload = &payload[1..payload.len() - pad];
                }
                if flags & PRIORITY != 0 {
                    payload = &payload[5..];
                }
            }
            CONTINUATION if in_block => {}
            _ => continue,
        }
        in_block = true;
        block.extend_from_slice(payload);
        if flags & 0x4 != 0 {
            return block;
        }
    }
    panic!("no whole HEADERS block for stream {stream}");
}

/// How an HPACK field is represented (RFC 7541, section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    Indexed,
    IncrementalIndexing,
    WithoutIndexing,
    NeverIndexed,
    SizeUpdate,
}

/// An HPACK integer with a `prefix`-bit prefix at `at`; its value and the next position.
fn integer(block: &[u8], at: usize, prefix: u32) -> (usize, usize) {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(block[at]) & max;
    let mut at = at + 1;
    if value < max {
        return (value, at);
    }
    let mut shift = 0;
    loop {
        let byte = block[at];
        at += 1;
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return (value, at);
        }
    }
}

/// Where the string literal starting at `at` ends.
fn string_end(block: &[u8], at: usize) -> usize {
    let (length, at) = integer(block, at, 7);
    at + length
}

/// Every field of `block`: how it is represented, and its bytes as sent.
fn representations(block: &[u8]) -> Vec<(Representation, &[u8])> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        let (kind, prefix) = match first {
            _ if first & 0x80 != 0 => (Representation::Indexed, 7),
            _ if first & 0x40 != 0 => (Representation::IncrementalIndexing, 6),
            _ if first & 0x20 != 0 => (Representation::SizeUpdate, 5),
            _ if first & 0x10 != 0 => (Representation::NeverIndexed, 4),
            _ => (Representation::WithoutIndexing, 4),
        };
        let (index, mut end) = integer(block, at, prefix);
        if !matches!(kind, Representation::Indexed | Representation::SizeUpdate) {
            if index == 0 {
                end = string_end(block, end);
            }
            end = string_end(block, end);
        }
        fields.push((kind, &block[at..end]));
        at = end;
    }
    fields
}

#[tokio::test]
async fn the_request_id_goes_out_as_a_field_hpack_never_indexes() {
    let cms = Cms::fixed(Reply::html("page")).await;
    // Trusting the client keeps its id, so the answer's field is known.
    let gate = Gate::start_with(&trusting_loopback(config_text(cms.addr, "")), &[]).await;
    let read = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(Mutex::new(Vec::new()));
    let tcp = Recorded {
        inner: TcpStream::connect(gate.addr).await.unwrap(),
        read: read.clone(),
        written: written.clone(),
    };
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();

    let mut id = http::HeaderValue::from_static("edge-7f3a-0042");
    // The client sends it as a literal never indexed too: the bytes to look for.
    id.set_sensitive(true);
    let request = http::Request::get(format!("http://{}/videos/a", gate.addr))
        .header("x-request-id", id)
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(request, true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(answer.headers()["x-request-id"], "edge-7f3a-0042");
    let mut body = answer.into_body();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }

    let written = written.lock().unwrap().clone();
    let sent = header_block(&written[24..], 1);
    let sent = representations(&sent);
    let never: Vec<_> = sent
        .iter()
        .filter(|(kind, _)| *kind == Representation::NeverIndexed)
        .collect();
    assert_eq!(never.len(), 1, "the client's request: {sent:?}");
    let id_field = never[0].1;

    let read = read.lock().unwrap().clone();
    let answered = header_block(&read, 1);
    let answered = representations(&answered);
    assert!(
        answered.contains(&(Representation::NeverIndexed, id_field)),
        "the request id as a literal never indexed ({id_field:02x?}) among {answered:02x?}"
    );
}
