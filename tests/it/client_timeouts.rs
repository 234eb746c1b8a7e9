//! Clients too slow for the limits: request heads that trickle in, silent
//! kept-alive and HTTP/2 connections, and uploads past their body timeout or
//! deadline.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "header_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let mut silent = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a silent connection must not hold a descriptor"
    );
}

/// Sends `bytes` one at a time, `every` apart, until the gateway closes the
/// connection; returns what it sent meanwhile, or `None` if it never closed.
async fn trickle_until_closed(
    stream: &mut tokio::net::TcpStream,
    bytes: &[u8],
    every: Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut answered = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return Some(String::from_utf8_lossy(&answered).into_owned());
        }
        let pause = tokio::time::sleep(every);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return Some(String::from_utf8_lossy(&answered).into_owned()),
                    Ok(n) => answered.extend_from_slice(&buf[..n]),
                },
                () = &mut pause => break,
            }
        }
    }
    None
}

/// A gateway whose request heads must be whole within 400 ms.
async fn gate_with_head_limit() -> (Cms, Gate) {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "header_timeout = \"400ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    (cms, gate)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_that_trickles_in_is_cut_off_at_the_header_limit() {
    let (_cms, gate) = gate_with_head_limit().await;
    // 60 bytes, one every 50 ms: 3 s for a head that must take at most 400 ms.
    let slow_head = format!(
        "GET /public/slow HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
        "z".repeat(24)
    );
    let every = Duration::from_millis(50);
    // On a new connection, and on kept-alive ones: right after an answer
    // (the connection still with hyper) and once it has been handed back.
    for pause_after_first in [None, Some(0), Some(200)] {
        let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
        if let Some(pause) = pause_after_first {
            use tokio::io::AsyncWriteExt;
            stream
                .write_all(b"GET /public/first HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            read_answers(&mut stream, &["\r\n\r\nok"], "the first answer").await;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let answered = trickle_until_closed(&mut stream, slow_head.as_bytes(), every).await;
        let answered = answered
            .unwrap_or_else(|| panic!("still open after a 3 s head ({pause_after_first:?})"));
        assert!(
            !answered.contains("HTTP/1.1"),
            "closed without an answer: {answered}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_head_left_unfinished_is_cut_off_at_the_header_limit() {
    use tokio::io::AsyncWriteExt;
    let (_cms, gate) = gate_with_head_limit().await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\nGET /public/b HTTP/1.1\r\nHo")
        .await
        .unwrap();
    read_answers(&mut stream, &["\r\n\r\nok"], "the first answer").await;
    // The idle limit (60 s) is not what applies: the second head has begun.
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_left_silent_after_its_answer_is_closed_at_the_header_limit() {
    use tokio::io::AsyncWriteExt;
    let (_cms, gate) = gate_with_head_limit().await;
    // A request with a body keeps its connection with hyper; one without is
    // handed back after its answer. Either way the wait for the next head
    // starts when the answer is out, with nothing else to wake the task.
    for request in [
        "POST /public/form HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        "GET /public/page HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        read_answers(&mut stream, &["\r\n\r\nok"], "the answer").await;
        assert!(
            closed_by_server(&mut stream).await,
            "still open 5 s after the answer, with a 400 ms header limit: {request}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_header_limit_counts_from_each_answer_not_from_the_connection_start() {
    use tokio::io::AsyncWriteExt;
    let (_cms, gate) = gate_with_head_limit().await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    // Eight requests 200 ms apart: four times the head limit on one
    // connection. Refusals too, which are answered without ever waiting.
    for n in 0..8 {
        let (path, answer) = if n % 4 == 0 {
            ("public", "\r\n\r\nok")
        } else {
            ("videos", "403 Forbidden")
        };
        stream
            .write_all(format!("GET /{path}/{n} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        read_answers(&mut stream, &[answer], "an answer").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_but_a_slow_answer_is_waited_for() {
    let mut reply = Reply::html("slow but sure");
    reply.head_delay = Duration::from_millis(900);
    let cms = Cms::fixed(reply).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "idle_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    // The CMS takes three idle limits to answer: the request in flight keeps the connection.
    let request = http::Request::get(gate.url("/public/slow"))
        .body(empty_body())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.as_ref(), b"slow but sure");
    // Then, with nothing in flight, the gateway closes it.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("idle HTTP/2 connection closed by the gateway")
        .unwrap()
        .ok();
}

/// Sends PINGs on `connection` every 100 ms until the gateway ends it;
/// how long that took, or `None` if it was still open after `within`.
async fn pinged_until_closed(
    ping_pong: &mut h2::PingPong,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    within: Duration,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if connection.is_finished() {
            return Some(started.elapsed());
        }
        let ping = tokio::time::timeout(Duration::from_secs(1), ping_pong.ping(h2::Ping::opaque()));
        if !matches!(ping.await, Ok(Ok(_))) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_do_not_hold_an_http2_connection_open() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        with_setting(
            config_text(cms.addr, ""),
            "server",
            "idle_timeout = \"800ms\"",
        ),
        "server",
        "header_timeout = \"500ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;

    // No request at all: closed at the header limit, PINGs or not.
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (_client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let connection = tokio::spawn(connection);
    let closed = pinged_until_closed(&mut ping_pong, connection, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a connection that only pings is closed");

    // After a request: closed at the idle limit from its end, PINGs or not.
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(gate.url("/public/a")).body(()).unwrap();
    let (answer, _) = client.send_request(request, true).unwrap();
    let mut body = answer.await.unwrap().into_body();
    while let Some(chunk) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.unwrap().len());
    }
    let closed = pinged_until_closed(&mut ping_pong, connection, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "an idle connection that pings is closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_is_not_cut_off_by_the_response_timeout() {
    use tokio::io::AsyncWriteExt;
    let cms = Cms::fixed(Reply::html("stored")).await;
    let config = config_text(cms.addr, "")
        .replace("response_timeout = \"2s\"", "response_timeout = \"500ms\"");
    let gate = Gate::start_with(&config, &[]).await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // 30 bytes over 1.2 s: longer than the response timeout, never idle for long.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(b"0123456789").await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        cms.requests()[0].body.as_ref(),
        "0123456789".repeat(3).as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_who_stops_sending_the_body_gets_a_408() {
    use tokio::io::AsyncWriteExt;
    let cms = Cms::fixed(Reply::html("never")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "body_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(
            b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut answer),
    )
    .await
    .expect("the gateway answers on its own")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_trickles_past_the_body_deadline_gets_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html("never")).await;
    let config = with_setting(
        with_setting(config_text(cms.addr, ""), "server", "body_timeout = \"2s\""),
        "server",
        "body_deadline = \"600ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    // A byte every 100 ms: never quiet for body_timeout, never done.
    let mut answer = Vec::new();
    for _ in 0..60 {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}
