//! Hardening over real sockets: nothing crosses between visitors on a reused
//! CMS connection, safe defaults for odd requests, and logs without sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;
use crate::page_types::{assert_tokened, page_with_embed};

/// Log lines written while the guard lives, on this thread (a current-thread
/// test runtime runs the gateway's tasks here too).
struct Captured {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> Captured {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(lines.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        Captured {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }
}

/// What a raw CMS answers the first request of each connection with: `head`,
/// then `extra` (bytes past its end) at once or after `pause`.
#[derive(Clone)]
struct Misbehaving {
    head: &'static [u8],
    extra: &'static [u8],
    pause: Option<Duration>,
}

/// A second response the CMS sends nobody asked for: what another visitor
/// must never get.
const SMUGGLED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nSMUGGLED-DATA";

/// A CMS stand-in over raw TCP (a real server would never send what it
/// sends): the first request it gets is answered with `answer`, every later
/// one with a well-formed "fresh" page. Returns its address and its
/// connection count.
async fn raw_cms(answer: Misbehaving) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let misbehaved = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            let misbehaved = misbehaved.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // Requests here have no body: a head is one request.
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buffer.drain(..end);
                    if !misbehaved.swap(true, Ordering::SeqCst) {
                        match answer.pause {
                            None => {
                                let mut all = answer.head.to_vec();
                                all.extend_from_slice(answer.extra);
                                let _ = stream.write_all(&all).await;
                            }
                            Some(pause) => {
                                let _ = stream.write_all(answer.head).await;
                                tokio::time::sleep(pause).await;
                                let _ = stream.write_all(answer.extra).await;
                            }
                        }
                    } else {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfresh",
                            )
                            .await;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// Visitor one asks `first` (method, path) and gets `answer`; visitor two,
/// on the connection the gateway would reuse, must get a fresh page of its own.
async fn second_visitor_gets_only_its_own_answer(
    answer: Misbehaving,
    first: (&str, &str),
    first_status: u16,
    wait: Duration,
) {
    let log = Captured::start();
    let (cms, connections) = raw_cms(answer).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let one = send(
        &client(),
        http::Request::builder()
            .method(first.0)
            .uri(gate.url(first.1))
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(one.status, first_status, "{}", one.text());
    assert!(!one.text().contains("SMUGGLED"), "{}", one.text());
    tokio::time::sleep(wait).await;
    let two = get(&gate.url("/public/two"), None).await;
    assert_eq!((two.status, two.text().as_str()), (200, "fresh"));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the spoiled connection was not reused"
    );
    let log = log.text();
    assert!(
        log.contains("past the end of a response") && log.contains("not reused"),
        "the event is logged: {log}"
    );
}

#[tokio::test]
async fn an_over_long_body_never_reaches_the_next_visitor() {
    let answer = Misbehaving {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        extra: SMUGGLED,
        pause: None,
    };
    second_visitor_gets_only_its_own_answer(answer, ("GET", "/public/one"), 200, Duration::ZERO)
        .await;
}

#[tokio::test]
async fn a_body_on_a_head_response_never_reaches_the_next_visitor() {
    let answer = Misbehaving {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n",
        extra: SMUGGLED,
        pause: None,
    };
    second_visitor_gets_only_its_own_answer(answer, ("HEAD", "/public/one"), 200, Duration::ZERO)
        .await;
}

#[tokio::test]
async fn a_body_on_a_304_never_reaches_the_next_visitor() {
    let answer = Misbehaving {
        head: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n",
        extra: SMUGGLED,
        pause: None,
    };
    second_visitor_gets_only_its_own_answer(answer, ("GET", "/public/one"), 304, Duration::ZERO)
        .await;
}

#[tokio::test]
async fn bytes_after_a_chunked_body_never_reach_the_next_visitor() {
    let answer = Misbehaving {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        extra: SMUGGLED,
        pause: None,
    };
    second_visitor_gets_only_its_own_answer(answer, ("GET", "/public/one"), 200, Duration::ZERO)
        .await;
}

#[tokio::test]
async fn bytes_sent_late_on_an_idle_pooled_connection_never_reach_the_next_visitor() {
    let answer = Misbehaving {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        extra: SMUGGLED,
        pause: Some(Duration::from_millis(100)),
    };
    second_visitor_gets_only_its_own_answer(
        answer,
        ("GET", "/public/one"),
        200,
        Duration::from_millis(400),
    )
    .await;
}

// Safe defaults.

/// Sends `request` on a fresh connection and reads the answer's head only
/// (the connection may stay open after it).
async fn head_of(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    head
}

fn status_of(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .split("\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_is_not_a_valid_host_and_port_is_a_400() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    for head in [
        "Host: evil example",
        "Host: me@site.example",
        "Host: site.example:99999",
        "Host: site.example, other.example",
        "Host: a.example\r\nHost: b.example",
        "X-No-Host: 1",
    ] {
        let request = format!("GET /public/a HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n");
        let answer = raw(gate.addr, request.as_bytes()).await;
        assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request", "{head}");
    }
    assert!(cms.requests().is_empty(), "the CMS was never asked");
    for head in [
        "Host: site.example:8080",
        "Host: [::1]:80",
        "Host: 127.0.0.1",
    ] {
        let request = format!("GET /public/a HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n");
        let answer = raw(gate.addr, request.as_bytes()).await;
        assert_eq!(status_of(&answer), "HTTP/1.1 200 OK", "{head}");
    }
}

/// An HTTP/2 request with a header value padded with a space or tab, or a
/// header name that is not a token, is malformed (RFC 9113, 8.2.1): a 400,
/// and the CMS never sees it. Over HTTP/1.1 the parser trims the padding and
/// the request goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_request_http1_parsing_would_refuse_is_a_400() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    let with = |path: &str, name: &str, value: &'static str| {
        Request::get(gate.url(path))
            .header(name, http::HeaderValue::from_static(value))
            .body(empty_body())
            .unwrap()
    };
    let cookie = format!("sessionid={MEMBER}");
    for (path, name, value) in [
        ("/public/a", "x-note", " padded"),
        ("/public/a", "x-note", "padded\t"),
        ("/public/a", "accept", "*/* "),
        ("/videos/page", "x-note", "\t"),
    ] {
        let got = send(&h2_client(), with(path, name, value)).await;
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_eq!(got.status, 400, "{name}: {value:?}: {}", got.text());
    }
    let padded_cookie = Request::get(gate.url("/videos/page"))
        .header("cookie", format!("{cookie} "))
        .body(empty_body())
        .unwrap();
    assert_eq!(send(&h2_client(), padded_cookie).await.status, 400);
    let quoted_name = Request::get(gate.url("/public/a"))
        // As HPACK decodes it: the token check of `from_bytes` refuses it.
        .header(http::HeaderName::from_lowercase(b"x\"a").unwrap(), "v")
        .body(empty_body())
        .unwrap();
    assert_eq!(send(&h2_client(), quoted_name).await.status, 400);
    assert!(cms.requests().is_empty(), "the CMS was never asked");

    // Equal Content-Length fields are merged into one, as over HTTP/1.1.
    let twice = Request::post(gate.url("/public/a"))
        .header("content-length", "5")
        .header("content-length", "5")
        .body(http_body_util::Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(send(&h2_client(), twice).await.status, 200);
    let upload = cms.requests().pop().unwrap();
    let lengths: Vec<_> = upload.headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, ["5"]);
    assert_eq!(&upload.body[..], b"hello");

    let inner = send(&h2_client(), with("/public/a", "x-note", "in\tner space")).await;
    assert_eq!(inner.status, 200, "{}", inner.text());
    let over_http1 = send(&client(), with("/public/a", "x-note", " padded\t")).await;
    assert_eq!(over_http1.version, http::Version::HTTP_11);
    assert_eq!(over_http1.status, 200, "{}", over_http1.text());
    let notes: Vec<String> = cms.requests()[1..]
        .iter()
        .map(|seen| seen.headers["x-note"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(notes, ["in\tner space", "padded"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn of_several_session_cookies_the_cms_gets_only_the_admitted_one() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    let page = get(
        &gate.url("/videos/a"),
        Some(&format!(
            "sessionid=intruder-1; theme=dark; sessionid={MEMBER}; sessionid=stale-2"
        )),
    )
    .await;
    assert_eq!(page.status, 200);
    let seen = cms.requests();
    assert_eq!(
        seen[0].headers["cookie"],
        format!("theme=dark; sessionid={MEMBER}").as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_is_a_405() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    let answer = head_of(
        gate.addr,
        b"CONNECT cms.internal:443 HTTP/1.1\r\nHost: cms.internal:443\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert_eq!(status_of(&answer), "HTTP/1.1 405 Method Not Allowed");
    assert!(text.contains("\r\nallow: get, head, post"), "{text}");
    assert!(cms.requests().is_empty());
}

#[tokio::test]
async fn a_101_the_visitor_did_not_ask_for_is_a_502() {
    let switching = Misbehaving {
        head:
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        extra: b"",
        pause: None,
    };
    let (cms, _) = raw_cms(switching.clone()).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let answer = raw(
        gate.addr,
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 502 Bad Gateway");
    // Asked for one protocol, switched to another.
    let (cms, _) = raw_cms(switching).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let answer = head_of(
        gate.addr,
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 502 Bad Gateway");
}

// Logs hold no session; a visitor's bad upload is the visitor's fault.

#[tokio::test]
async fn logged_paths_carry_no_path_parameters() {
    let log = Captured::start();
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start(&cms).await;
    for path in [
        "/public/a;jsessionid=SECRET-SESSION-1/b",
        "/public/c%3Bjsessionid=SECRET-SESSION-2",
    ] {
        assert_eq!(get(&gate.url(path), None).await.status, 200);
    }
    // The access line is written when the body is done: give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = log.text();
    assert!(log.contains("path=/public/a/b"), "{log}");
    assert!(log.contains("path=/public/c "), "{log}");
    assert!(!log.contains("SECRET-SESSION"), "{log}");
    assert!(!log.contains("jsessionid"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunked_upload_is_a_400() {
    let cms = Cms::fixed(Reply::html("stored")).await;
    let gate = Gate::start(&cms).await;
    let answer = raw(
        gate.addr,
        b"POST /public/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request");
    assert!(
        cms.requests().iter().all(|seen| !seen.body_complete),
        "the CMS never saw the upload as whole"
    );
}

/// Every duration at the longest a config takes (ten years) serves pages,
/// uploads and HTTP/2: deadlines reckoned from them stay within the clock.
#[tokio::test(flavor = "multi_thread")]
async fn the_longest_durations_serve_pages_uploads_and_http2() {
    let cms = Cms::fixed(Reply::html(page_with_embed())).await;
    let mut config = config_text(cms.addr, "");
    for key in [
        "header_timeout",
        "idle_timeout",
        "send_timeout",
        "body_timeout",
        "body_deadline",
        "upgrade_idle_timeout",
    ] {
        config = with_setting(config, "server", &format!("{key} = \"3650d\""));
    }
    for key in ["read_timeout", "queue_timeout", "pool_idle_timeout"] {
        config = with_setting(config, "upstream", &format!("{key} = \"3650d\""));
    }
    let gate = Gate::start_with(&config, &[]).await;
    assert_tokened(&get_as_member(&gate.url("/videos/page")).await);
    let upload = http::Request::post(gate.url("/public/form"))
        .body(http_body_util::Full::new(Bytes::from_static(
            b"field=value",
        )))
        .unwrap();
    assert_eq!(send(&client(), upload).await.status, 200);
    let over_http2 = send(&h2_client(), member_request(&gate.url("/videos/page"))).await;
    assert_eq!(over_http2.version, http::Version::HTTP_2);
    assert_tokened(&over_http2);
}
