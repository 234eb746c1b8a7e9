//! Raw requests: whatever bytes a client sends, a running gateway answers
//! or closes, never panics, and never answers 500.

use super::*;
use crate::common::{
    trusting_loopback, with_setting, Cms, Gate, Reply, ThreadPanics, EMBED, MEMBER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFAULT_REQUEST_CASES: u32 = 256;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "OPTIONS", "CONNECT", "TRACE", "DELETE", "PRI", "get", "G T", "",
];

const TARGETS: &[&str] = &[
    "/videos/a",
    "/public/b",
    "/",
    "*",
    "http://x/videos/a",
    "//videos/a",
    "/videos/%2e%2e/public/b",
    "/VIDEOS/a",
    "/videos/a?x=1#f",
    "/public/..%2fvideos/a",
    "/public/%2e%2e/videos/a;x",
    "a:1",
    "/%00",
    "/\u{e9}",
    "/videos/a?token=st=1~exp=2~acl=/*~hmac=00",
];

const VERSIONS: &[&str] = &[
    "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "http/1.1", "",
];

const NAMES: &[&str] = &[
    "Host",
    "Cookie",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Forwarded",
    "X-Request-Id",
    "Content-Length",
    "Transfer-Encoding",
    "Range",
    "If-Range",
    "Expect",
    "Upgrade",
    "Connection",
    "Accept-Encoding",
    "Content-Type",
    "TE",
    "Trailer",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Authorization",
    "X-Y",
];

const VALUES: &[&str] = &[
    "",
    "x",
    "127.0.0.1",
    "[::1]:80",
    "sessionid=",
    "a=b; sessionid=\"x\"; sessionid=y",
    "5",
    "0",
    "-1",
    "99999999999999999999",
    "5, 5",
    "chunked",
    "gzip, chunked",
    "chunked, gzip",
    "bytes=0-10",
    "bytes=-5",
    "bytes=5-1,0-0,9-",
    "100-continue",
    "websocket",
    "h2c",
    "close",
    "keep-alive, Upgrade",
    "gzip, br;q=0.5, *;q=0",
    "zstd;q=1.1, deflate;q=nan",
    "1.2.3.4, ::1, unknown",
    "for=\"[::1]:80\";proto=https, for=_hidden",
    "https",
    "text/html; charset=utf-16",
    "multipart/form-data; boundary=x",
    "dGhlIHNhbXBsZSBub25jZQ==",
    "13",
];

/// One of `known` mostly; now and then printable text or any bytes.
fn text_or_bytes(known: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => select(known).prop_map(|text| text.as_bytes().to_vec()),
        1 => "[ -~]{0,16}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Mostly `usual`, else anything [`text_or_bytes`] gives.
fn mostly(usual: &'static str, known: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => Just(usual.as_bytes().to_vec()),
        1 => text_or_bytes(known),
    ]
}

/// Header lines a client would send, each on its own.
const LINES: &[&str] = &[
    "Accept-Encoding: gzip, br",
    "Accept-Encoding: identity",
    "Range: bytes=0-10",
    "Range: bytes=-5",
    "If-Range: \"x\"",
    "X-Forwarded-For: 1.2.3.4",
    "X-Forwarded-Proto: https",
    "Forwarded: for=1.2.3.4;proto=https",
    "X-Request-Id: abc",
    "Content-Length: 5",
    "Transfer-Encoding: chunked",
    "Expect: 100-continue",
    "Connection: close",
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "Content-Type: application/x-www-form-urlencoded",
];

fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(format!("Cookie: sessionid={MEMBER}").into_bytes()),
        6 => select(LINES).prop_map(|line| line.as_bytes().to_vec()),
        3 => (text_or_bytes(NAMES), text_or_bytes(VALUES))
            .prop_map(|(name, value)| [name, b": ".to_vec(), value].concat()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        1 => Just(b"ffffffffffffffffff\r\nx".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// One request: a request line, a Host line (mostly), header lines, a blank
/// line and a body; lines end in CRLF or, sometimes, a bare LF.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        mostly("GET", METHODS),
        text_or_bytes(TARGETS),
        mostly("HTTP/1.1", VERSIONS),
        mostly(
            "Host: gateway",
            &["", "Host: a b", "Host: [::1", "Host: x:99999"],
        ),
        prop::collection::vec(header(), 0..6),
        body(),
        prop_oneof![5 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..])],
    )
        .prop_map(|(method, target, version, host, headers, body, eol)| {
            let mut out = [method, b" ".to_vec(), target, b" ".to_vec(), version].concat();
            out.extend_from_slice(eol);
            for line in std::iter::once(host).chain(headers) {
                out.extend_from_slice(&line);
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(eol);
            out.extend_from_slice(&body);
            out
        })
}

/// Sends `bytes` on a fresh connection, ends the sending side, and reads
/// whatever comes back until the gateway closes, or for 2 s.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    answer
}

#[test]
fn raw_requests_are_answered_or_closed_never_a_panic_or_a_500() {
    let panics = ThreadPanics::watch("raw-requests-gateway");
    let tokio = panics.runtime();
    let (cms, gate) = tokio.block_on(async {
        let cms = Cms::fixed(Reply::html(format!(
            "<p>members</p><iframe src=\"{EMBED}\"></iframe>"
        )))
        .await;
        // Short limits: a request that never ends costs little. Forwarding
        // headers from loopback are read, so that they are parsed.
        let mut config = trusting_loopback(config_text(cms.addr, ""));
        for line in ["header_timeout = \"500ms\"", "body_timeout = \"500ms\""] {
            config = with_setting(config, "server", line);
        }
        let gate = Gate::start_with(&config, &[]).await;
        (cms, gate)
    });
    check(
        "raw_requests_are_answered_or_closed_never_a_panic_or_a_500",
        DEFAULT_REQUEST_CASES,
        prop::collection::vec(request(), 1..3),
        |requests| {
            let bytes = requests.concat();
            // Counted per case, so that shrinking looks for the input that panics.
            let before = panics.count();
            let answer = tokio.block_on(exchange(gate.addr, &bytes));
            prop_assert!(
                !answer.windows(13).any(|w| w == b"HTTP/1.1 500 "),
                "a 500 for {:?}: {}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&answer)
            );
            prop_assert_eq!(
                panics.count(),
                before,
                "the gateway panicked on {:?}",
                String::from_utf8_lossy(&bytes)
            );
            Ok(())
        },
    );
    // A panic after an answer went out comes a moment later.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(panics.count(), 0);
    drop((gate, cms));
}
