//! HTTP/2 requests that no HTTP/2 client library sends, written frame by
//! frame on a raw socket: no malformed one reaches the CMS whole, and a
//! well-formed one written the same way goes through.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;

/// A frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string length with a 7-bit prefix, no Huffman coding (RFC 7541, 5.1).
fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 127 {
        out.push(length as u8);
        return;
    }
    out.push(127);
    let mut rest = length - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// `fields` as one header block: each a literal never added to the table.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        push_length(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        push_length(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// What the gateway answered stream 1 with.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A response head whose `:status` the static table holds.
    Status(u16),
    /// A response head with any other first field.
    OtherHead(u8),
    Reset(u32),
    GoAway(u32),
}

/// Sends one GET on stream 1 of a new HTTP/2 connection to `addr`, with
/// `fields` as its whole header block, and reads what stream 1 gets.
async fn answer_to(addr: SocketAddr, fields: &[(&str, &str)]) -> Answer {
    let request = frame(HEADERS, END_STREAM | END_HEADERS, 1, &header_block(fields));
    let mut stream = connect(addr).await;
    stream.write_all(&request).await.unwrap();
    answer_of(&mut stream).await
}

/// A new HTTP/2 connection to `addr`, its preface and settings sent.
async fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&out).await.unwrap();
    stream
}

/// Reads what stream 1 gets on `stream`.
async fn answer_of(stream: &mut TcpStream) -> Answer {
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
            .await
            .expect("a frame within 5 s")
            .expect("the connection open until stream 1 is answered");
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.unwrap();
        match kind {
            SETTINGS if flags & ACK == 0 => {
                stream
                    .write_all(&frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
            }
            GOAWAY => return Answer::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
            RST_STREAM if id == 1 => {
                return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            HEADERS if id == 1 => {
                let mut block = &payload[..];
                if flags & PADDED != 0 {
                    let pad = usize::from(block[0]);
                    block = &block[1..block.len() - pad];
                }
                if flags & PRIORITY != 0 {
                    block = &block[5..];
                }
                // The static table's :status entries (RFC 7541, appendix A).
                return match block[0] {
                    0x88 => Answer::Status(200),
                    0x89 => Answer::Status(204),
                    0x8a => Answer::Status(206),
                    0x8b => Answer::Status(304),
                    0x8c => Answer::Status(400),
                    0x8d => Answer::Status(404),
                    0x8e => Answer::Status(500),
                    other => Answer::OtherHead(other),
                };
            }
            // DATA, WINDOW_UPDATE, PING, and frames of other streams.
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_written_frame_by_frame_are_a_400_never_forwarded() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    let authority = gate.addr.to_string();
    let request = |path: &'static str| {
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority.as_str()),
        ]
    };

    // Written the same way, a well-formed request goes through: the frames
    // above are what a client sends.
    let mut same_host = request("/public/a");
    same_host.push(("host", authority.as_str()));
    assert_eq!(answer_to(gate.addr, &same_host).await, Answer::Status(200));
    // One host written two ways: in another case, and with the port http
    // implies in one of them only (RFC 3986, 6.2.2 and 6.2.3).
    let written_twice = |host: &'static str| {
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/public/a"),
            (":authority", "site.example"),
            ("host", host),
        ]
    };
    let same_host_normalised = written_twice("SITE.example:80");
    assert_eq!(
        answer_to(gate.addr, &same_host_normalised).await,
        Answer::Status(200)
    );
    assert_eq!(cms.requests().len(), 2);

    // A query with no path: the h2 crate takes it, and it would read as "/?a=1".
    let query_only = request("?a=1");
    // No :authority and no Host: no host to judge or to tell the CMS.
    let no_host = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/public/a"),
    ];
    // A Host that names another host than :authority (RFC 9113, 8.3.1).
    let mut other_host = request("/public/a");
    other_host.push(("host", "other.example"));
    let other_port = written_twice("site.example:8080");
    for (what, fields) in [
        ("a :path of a query alone", &query_only[..]),
        ("no host at all", &no_host[..]),
        ("a Host other than :authority", &other_host[..]),
        (
            "a Host with a port :authority does not imply",
            &other_port[..],
        ),
    ] {
        assert_eq!(
            answer_to(gate.addr, fields).await,
            Answer::Status(400),
            "{what}"
        );
    }
    assert_eq!(cms.requests().len(), 2, "none of them reached the CMS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_is_not_sent_whole_until_its_stream_has_ended() {
    let cms = Cms::fixed(Reply::html("stored")).await;
    let gate = Gate::start(&cms).await;
    let authority = gate.addr.to_string();
    let post = |length: Option<&str>| {
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/public/comments"),
            (":authority", authority.as_str()),
        ];
        fields.extend(length.map(|length| ("content-length", length)));
        frame(HEADERS, END_HEADERS, 1, &header_block(&fields))
    };
    // Each upload: a head, five bytes in a frame that does not end the
    // stream, then, once the CMS has the head and a while to get the five,
    // `last`. Returns the connection, and what the CMS saw of the upload.
    let mut heads = 0;
    let mut upload = async |length: Option<&str>, last: Vec<u8>| {
        let mut stream = connect(gate.addr).await;
        stream.write_all(&post(length)).await.unwrap();
        stream
            .write_all(&frame(DATA, 0, 1, b"hello"))
            .await
            .unwrap();
        heads += 1;
        cms.wait_for_heads(heads).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(&last).await.unwrap();
        // The CMS reads each upload to its end, or to where it is cut off.
        cms.wait_for_requests(heads, Duration::from_secs(5)).await;
        (stream, cms.requests()[heads - 1].clone())
    };

    // Ended by an empty frame: the body is whole, and the CMS has it.
    let (mut stream, seen) = upload(Some("5"), frame(DATA, END_STREAM, 1, b"")).await;
    assert_eq!(answer_of(&mut stream).await, Answer::Status(200));
    assert!(seen.body_complete);
    assert_eq!(seen.body, "hello");

    // Ended by trailers: the piece held for the end goes on before them,
    // and the body is whole (the trailers themselves stop at the gateway,
    // as an HTTP/1.1 body of a declared length cannot carry them).
    let trailers = header_block(&[("x-checksum", "5d41402a")]);
    let ended_by_trailers = frame(HEADERS, END_STREAM | END_HEADERS, 1, &trailers);
    let (mut stream, seen) = upload(Some("5"), ended_by_trailers).await;
    assert_eq!(answer_of(&mut stream).await, Answer::Status(200));
    assert!(seen.body_complete, "ended by trailers: {seen:?}");
    assert_eq!(seen.body, "hello");

    // Five bytes past the declared length: the request is malformed (RFC
    // 9113, 8.1.1). The stream is reset and the CMS sees the body cut off.
    let (mut stream, seen) = upload(Some("5"), frame(DATA, END_STREAM, 1, b"world")).await;
    assert_eq!(answer_of(&mut stream).await, Answer::Reset(PROTOCOL_ERROR));
    assert!(!seen.body_complete, "past its Content-Length: {seen:?}");

    // A reset with NO_ERROR, which hyper reads as the body's end: a visitor
    // who gave up, with the declared length sent or with none declared.
    let give_up = frame(RST_STREAM, 0, 1, &NO_ERROR.to_be_bytes());
    for length in [Some("5"), None] {
        let (_stream, seen) = upload(length, give_up.clone()).await;
        assert!(!seen.body_complete, "reset, length {length:?}: {seen:?}");
    }
}
