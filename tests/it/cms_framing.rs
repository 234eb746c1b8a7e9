//! A CMS that frames its answers oddly, over raw TCP: what it sends never
//! makes the rest of a request into one the gate did not judge, and what the
//! gateway cannot pass on as framed is a 502, not a body read another way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// What the raw CMS has read: every request line, in order, and how many
/// connections it was sent them on.
#[derive(Clone, Default)]
struct Heard {
    lines: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

impl Heard {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// A CMS stand-in that reads request heads only, records their lines and
/// answers each with `answer(request line)`. Bodies are not read: their
/// bytes are taken as the next request, as a CMS that answers without
/// reading them does.
async fn raw_cms(answer: fn(&str) -> Vec<u8>) -> (SocketAddr, Heard) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heard = Heard::default();
    let shared = heard.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *shared.connections.lock().unwrap() += 1;
            let heard = shared.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let end = loop {
                        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end);
                    let line = head.lines().next().unwrap_or_default().to_string();
                    heard.lines.lock().unwrap().push(line.clone());
                    if stream.write_all(&answer(&line)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heard)
}

/// Answers a request at once with its own path as the body.
fn own_path(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or_default();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn a_body_the_cms_answered_before_reading_never_reaches_it_as_a_request() {
    let (cms, heard) = raw_cms(own_path).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let smuggled = "GET /videos/members-only HTTP/1.1\r\nHost: x\r\nX-Ignore: ";
    let mut visitor = TcpStream::connect(gate.addr).await.unwrap();
    visitor
        .write_all(
            format!(
                "POST /public/early HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    read_answers(&mut visitor, &["/public/early"], "the early answer").await;
    // The body comes once the CMS has answered: the CMS would read it as a
    // request for a gated page, from a visitor without a session.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The gateway may have closed this connection since: the rest of its
    // body was not going anywhere.
    let _ = visitor.write_all(smuggled.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next visitors, on whatever CMS connection the pool offers.
    for path in ["/public/next", "/public/other"] {
        let next = get(&gate.url(path), None).await;
        assert_eq!((next.status, next.text().as_str()), (200, path));
    }
    let lines = heard.lines();
    assert!(
        lines.iter().all(|line| !line.contains("/videos/")),
        "the CMS read the body as a request: {lines:?}"
    );
    assert_eq!(
        lines,
        [
            "POST /public/early HTTP/1.1",
            "GET /public/next HTTP/1.1",
            "GET /public/other HTTP/1.1"
        ]
    );
    assert!(
        heard.connections() >= 2,
        "the early-answered connection was reused"
    );
}

#[tokio::test]
async fn answers_to_whole_requests_leave_the_connection_pooled() {
    // The same exchange read whole by the CMS is no early answer: the
    // connection is kept.
    let (cms, heard) = raw_cms(own_path).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let mut visitor = TcpStream::connect(gate.addr).await.unwrap();
    visitor
        .write_all(
            b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\nGET /public/b HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    read_answers(&mut visitor, &["/public/a", "/public/b"], "both answers").await;
    assert_eq!(heard.lines().len(), 2);
    assert_eq!(heard.connections(), 1);
}

/// Answers `/public/<case>` as the case says, and anything else with its path.
fn odd_answers(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or_default();
    let answer: &[u8] = match path {
        "/public/length-and-chunked" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nokay\r\n0\r\n\r\n"
        }
        "/public/gzip-chunked" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nokay\r\n0\r\n\r\n"
        }
        "/public/identity" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nokSMUGGLED"
        }
        "/public/head-only" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n"
        }
        "/public/not-modified" => {
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        }
        "/public/trailers" => {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
              Trailer: Cache-Control, Set-Cookie\r\n\r\n4\r\nokay\r\n0\r\n\
              Cache-Control: public, max-age=86400\r\nSet-Cookie: sessionid=attacker\r\n\r\n"
        }
        _ => return own_path(line),
    };
    answer.to_vec()
}

#[tokio::test]
async fn an_answer_framed_two_ways_or_in_an_unknown_coding_is_a_502() {
    let (cms, heard) = raw_cms(odd_answers).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    for case in [
        "/public/length-and-chunked",
        "/public/gzip-chunked",
        "/public/identity",
    ] {
        for client in [client(), h2_client()] {
            let answer = send(
                &client,
                http::Request::get(gate.url(case))
                    .body(empty_body())
                    .unwrap(),
            )
            .await;
            assert_eq!(answer.status, 502, "{case}: {}", answer.text());
            assert!(!answer.text().contains("ok"), "{case}: {}", answer.text());
        }
        // The next request gets its own answer, whichever connection it takes.
        let next = get(&gate.url("/public/next"), None).await;
        assert_eq!((next.status, next.text().as_str()), (200, "/public/next"));
    }
    // No body, nothing to frame: a HEAD or 304 may name its GET's framing.
    let head = send(
        &client(),
        http::Request::head(gate.url("/public/head-only"))
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, 200);
    let not_modified = get(&gate.url("/public/not-modified"), None).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(
        heard.lines().len(),
        11,
        "each asked once: {:?}",
        heard.lines()
    );
}

#[tokio::test]
async fn the_cms_s_trailers_are_dropped_and_not_announced() {
    use http_body_util::BodyExt;
    let (cms, _heard) = raw_cms(odd_answers).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    for client in [client(), h2_client()] {
        let response = client
            .request(
                http::Request::get(gate.url("/public/trailers"))
                    .header("te", "trailers")
                    .body(empty_body())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("trailer").is_none());
        let whole = response.into_body().collect().await.unwrap();
        assert_eq!(whole.trailers(), None);
        assert_eq!(whole.to_bytes(), "okay");
    }
}

#[tokio::test]
async fn a_request_body_in_a_coding_other_than_chunked_is_a_501() {
    let (cms, heard) = raw_cms(own_path).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    for codings in [
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let answer = raw(
            gate.addr,
            format!(
                "POST /public/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{codings}\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 501 Not Implemented"),
            "{codings}: {answer}"
        );
    }
    assert!(heard.lines().is_empty(), "{:?}", heard.lines());
    // Chunked alone goes on.
    let answer = raw(
        gate.addr,
        b"POST /public/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
}
