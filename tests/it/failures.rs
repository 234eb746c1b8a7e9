//! A dead or slow CMS, bad input, oversized headers, and shutdown with requests in flight.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_is_a_502() {
    // Bind then drop: nothing listens on that port any more.
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let gate = Gate::start_with(&config_text(dead, ""), &[]).await;
    let public = get(&gate.url("/public/x"), None).await;
    assert_eq!(public.status, 502);
    assert_eq!(public.text(), "502 Bad Gateway\n");
    assert_eq!(get_as_member(&gate.url("/videos/x")).await.status, 502);
    // Denied visitors still get 403: the CMS is not asked for them.
    assert_eq!(get(&gate.url("/videos/x"), None).await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_is_a_504() {
    let mut reply = Reply::html("too late");
    reply.head_delay = Duration::from_secs(4);
    let cms = Cms::fixed(reply).await;
    // The test config allows the CMS 2s for its response headers.
    let gate = Gate::start(&cms).await;
    let response = get(&gate.url("/public/slow"), None).await;
    assert_eq!(response.status, 504);
    assert_eq!(response.text(), "504 Gateway Timeout\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_request_headers_are_refused() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start(&cms).await;
    // The default limit is 64 KiB.
    let request = format!(
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = String::from_utf8_lossy(&raw(gate.addr, request.as_bytes()).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_instead_of_http_gets_a_400_and_the_gateway_carries_on() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start(&cms).await;
    let answer =
        String::from_utf8_lossy(&raw(gate.addr, b"\x16\x03\x01 not http at all\r\n\r\n").await)
            .into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(get(&gate.url("/public/x"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_requests_in_flight_and_refuses_new_connections() {
    // The CMS answers only when released, so the request is in flight when shutdown begins.
    let cms = Cms::held("text/html", b"<p>start", b" end</p>").await;
    let mut gate = Gate::start(&cms).await;
    let url = gate.url("/videos/long");
    let in_flight = tokio::spawn(async move { get_as_member(&url).await });
    cms.wait_for_a_request().await;
    gate.shutdown();
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(gate.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "listener closed during shutdown");
    cms.release_rest();
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "<p>start end</p>");
    let task = gate.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops once drained")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cms_that_goes_quiet_mid_body_has_the_response_cut_off() {
    let cms = Cms::fixed(Reply::chunked(
        "text/html",
        vec![
            Bytes::from_static(b"<p>first part"),
            Bytes::from_static(GATE),
            Bytes::from_static(b"never</p>"),
        ],
    ))
    .await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "upstream",
        "read_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    for (path, cookie) in [
        ("/public/quiet", None),
        ("/videos/quiet", Some(format!("sessionid={MEMBER}"))),
    ] {
        let mut request = http::Request::get(gate.url(path));
        if let Some(cookie) = &cookie {
            request = request.header("cookie", cookie);
        }
        let response = client()
            .request(request.body(empty_body()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            http_body_util::BodyExt::collect(response.into_body()),
        )
        .await
        .expect("the gateway gives up on its own");
        assert!(
            outcome.is_err(),
            "{path}: body must end in an error, not look complete"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_completes_the_connection_is_a_504() {
    // A listener that never accepts, its backlog filled: further connection
    // attempts get no answer, as from a host that drops packets.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = socket.listen(1).unwrap();
    let addr = stuck.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let config =
        config_text(addr, "").replace("connect_timeout = \"1s\"", "connect_timeout = \"300ms\"");
    let gate = Gate::start_with(&config, &[]).await;
    let response = get(&gate.url("/public/x"), None).await;
    assert_eq!(response.status, 504, "{}", response.text());
    drop(stuck);
}

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
async fn connections_over_the_limits_are_closed_at_once_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        with_setting(
            config_text(cms.addr, "\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
            "server",
            "max_connections_per_ip = 2",
        ),
        "server",
        "max_connections = 3",
    );
    let gate = Gate::start_with(&config, &[]).await;
    // Two held open from loopback: the third from the same address is closed unread.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
        stream
            .write_all(b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(stream);
    }
    let refused = raw(gate.addr, b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        refused.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&refused)
    );
    let metrics = get(&format!("http://{}/metrics", gate.admin.unwrap()), None)
        .await
        .text();
    assert!(
        metrics.contains("embedgate_connections_refused_total 1"),
        "{metrics}"
    );
    // A place freed is a place taken again.
    drop(held.pop());
    let answered = raw_once_admitted(
        gate.addr,
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answered.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answered)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_refused_connections_is_logged_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "max_connections_per_ip = 1",
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let mut gateway = Running::spawn(std::process::Command::new(BIN).arg("--config").arg(&path));
    let base = listening_url(&gateway.wait_for("listening on"));
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    held.read_exact(&mut head).await.unwrap();
    for _ in 0..5 {
        let refused = raw(addr, b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            refused.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&refused)
        );
    }
    gateway.wait_for("connection refused: too many open");
    drop(held);
    let output = gateway.terminate();
    let warnings: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("connection refused"))
        .collect();
    assert_eq!(warnings.len(), 1, "{output}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("PerIp"), "{}", warnings[0]);
}

/// Opens a stream for `path` on `client` and waits for its response head.
async fn h2_stream(
    client: &mut h2::client::SendRequest<Bytes>,
    authority: &str,
    path: &str,
) -> Result<(h2::SendStream<Bytes>, h2::RecvStream), h2::Error> {
    let request = http::Request::get(format!("http://{authority}{path}"))
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await?;
    let (response, stream) = ready.send_request(request, true)?;
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("response head in time")?;
    Ok((stream, response.into_body()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_resets_the_streams_it_opened_is_told_goaway() {
    // Bodies that never end: every stream is in flight when the client resets it.
    let cms = Cms::fixed(Reply::chunked(
        "video/mp2t",
        vec![Bytes::from_static(b"first"), Bytes::from_static(GATE)],
    ))
    .await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "http2_max_concurrent_streams = 10",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let authority = gate.addr.to_string();

    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut accepted_then_reset = 0;
    let refused = loop {
        match h2_stream(&mut client, &authority, "/public/media.ts").await {
            Ok((mut stream, _body)) => {
                stream.send_reset(h2::Reason::CANCEL);
                accepted_then_reset += 1;
            }
            Err(err) => break err,
        }
        assert!(accepted_then_reset <= 150, "never told GOAWAY");
    };
    assert!(
        accepted_then_reset > 100,
        "the budget is 100 resets: told after {accepted_then_reset}"
    );
    assert!(
        refused.is_go_away() || refused.is_io() || refused.reason().is_some(),
        "{refused:?}"
    );
    // The connection ends.
    let _ = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("connection closed after GOAWAY");

    // A client whose streams complete is never counted.
    let quick = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start_with(
        &with_setting(
            config_text(quick.addr, ""),
            "server",
            "http2_max_concurrent_streams = 10",
        ),
        &[],
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    for _ in 0..250 {
        let (_, mut body) = h2_stream(&mut client, &gate.addr.to_string(), "/public/a")
            .await
            .expect("completed streams are never refused");
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_max_in_flight_wait_then_get_a_503_with_retry_after() {
    let mut slow = Reply::html("slow page");
    slow.head_delay = Duration::from_millis(1500);
    let cms = Cms::fixed(slow).await;
    let config = with_setting(
        with_setting(config_text(cms.addr, ""), "upstream", "max_in_flight = 2"),
        "upstream",
        "queue_timeout = \"200ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let first = tokio::spawn(get_as_member_owned(gate.url("/public/a")));
    let second = tokio::spawn(get_as_member_owned(gate.url("/public/b")));
    // Both are at the CMS before the third asks.
    for _ in 0..100 {
        if cms.requests().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = get(&gate.url("/public/c"), None).await;
    assert_eq!(third.status, 503);
    assert!(third.headers.contains_key("retry-after"));
    assert_eq!(cms.requests().len(), 2, "the third never reached the CMS");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    // A place freed is a place taken.
    assert_eq!(get(&gate.url("/public/d"), None).await.status, 200);
}

/// Opens `count` uploads of 10 bytes to `addr`, each sending its head (with
/// `lines`, each ending in CRLF) and its first byte only.
async fn trickling_uploads(
    addr: std::net::SocketAddr,
    count: usize,
    lines: &str,
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let head =
        format!("POST /public/upload HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: 10\r\n\r\nx");
    let mut uploads = Vec::new();
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        uploads.push(stream);
    }
    uploads
}

/// Sends the rest of an upload from [`trickling_uploads`] and reads the
/// status line of its answer.
async fn finish_upload(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"123456789").await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    status_line(&answer[..n])
}

/// The first line of an answer.
fn status_line(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_holds_at_most_its_share_of_the_upload_places() {
    use tokio::io::AsyncReadExt;
    let cms = Cms::fixed(Reply::html("ok")).await;
    // Clients told apart by X-Forwarded-For from loopback.
    let config = with_setting(
        trusting_loopback(config_text(cms.addr, "")),
        "upstream",
        "max_uploads_per_client = 2",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let one = "X-Forwarded-For: 192.0.2.1\r\n";
    let mut holding = trickling_uploads(gate.addr, 2, one).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third from the same client is turned away at once, with when to retry.
    let mut third = trickling_uploads(gate.addr, 1, one).await.remove(0);
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 5"), "{answer}");
    // Another client uploads meanwhile.
    let other = "X-Forwarded-For: 192.0.2.2\r\n";
    let mut others = trickling_uploads(gate.addr, 1, other).await;
    assert!(finish_upload(&mut others[0])
        .await
        .starts_with("HTTP/1.1 200"));
    // The first client's uploads go through; its places come back.
    for stream in &mut holding {
        assert!(finish_upload(stream).await.starts_with("HTTP/1.1 200"));
    }
    let mut again = trickling_uploads(gate.addr, 2, one).await;
    for stream in &mut again {
        assert!(finish_upload(stream).await.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_uploads_cannot_take_every_place_from_page_views() {
    use tokio::io::AsyncReadExt;
    let cms = Cms::fixed(Reply::html("ok")).await;
    // Half of the four places may go to uploads still coming in.
    let config = with_setting(
        with_setting(config_text(cms.addr, ""), "upstream", "max_in_flight = 4"),
        "upstream",
        "queue_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let mut uploads = trickling_uploads(gate.addr, 4, "").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Page views still find places while the uploads trickle.
    for path in ["/public/a", "/public/b", "/public/c"] {
        assert_eq!(get(&gate.url(path), None).await.status, 200, "{path}");
    }
    // Two uploads were turned away; the other two are sent whole and answered.
    let mut statuses = Vec::new();
    for stream in &mut uploads {
        let mut answer = vec![0u8; 1024];
        let status = match tokio::time::timeout(
            Duration::from_millis(300),
            stream.read(&mut answer),
        )
        .await
        {
            Ok(Ok(n)) => status_line(&answer[..n]),
            Ok(Err(_)) | Err(_) => finish_upload(stream).await,
        };
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 503 Service Unavailable",
            "HTTP/1.1 503 Service Unavailable"
        ]
    );
    let uploaded = cms
        .requests()
        .iter()
        .filter(|seen| seen.uri.path() == "/public/upload")
        .count();
    assert_eq!(uploaded, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_max_uploads_in_flight_0_uploads_may_take_every_place() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        with_setting(
            with_setting(config_text(cms.addr, ""), "upstream", "max_in_flight = 2"),
            "upstream",
            "queue_timeout = \"300ms\"",
        ),
        "upstream",
        "max_uploads_in_flight = 0",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let mut uploads = trickling_uploads(gate.addr, 2, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No places of their own: both uploads hold theirs, and a page view waits
    // out the queue.
    assert_eq!(get(&gate.url("/public/a"), None).await.status, 503);
    for stream in &mut uploads {
        assert!(finish_upload(stream).await.starts_with("HTTP/1.1 200 OK"));
    }
    assert_eq!(get(&gate.url("/public/b"), None).await.status, 200);
}

async fn get_as_member_owned(url: String) -> u16 {
    get_as_member(&url).await.status
}

/// A CMS that reads each request and never answers; counts the connections
/// the gateway closes while it waits.
async fn silent_cms() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, closed)
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_who_goes_away_cancels_the_request_to_the_cms() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    let (cms, closed) = silent_cms().await;
    let config =
        config_text(cms, "").replacen("response_timeout = \"2s\"", "response_timeout = \"30s\"", 1);
    let gate = Gate::start_with(&config, &[]).await;

    // HTTP/1.1: the visitor closes its connection while the CMS thinks.
    let mut visitor = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    visitor
        .write_all(b"GET /public/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(closed.load(Ordering::SeqCst), 0, "the CMS is still asked");
    drop(visitor);
    wait_until(
        "the CMS connection closing after an HTTP/1.1 visitor left",
        || closed.load(Ordering::SeqCst) == 1,
    )
    .await;

    // HTTP/2: the visitor resets the stream; its connection stays open.
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/public/slow", gate.addr))
        .body(())
        .unwrap();
    let mut ready = client.ready().await.unwrap();
    let (response, mut stream) = ready.send_request(request, true).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.send_reset(h2::Reason::CANCEL);
    drop(response);
    wait_until("the CMS connection closing after an HTTP/2 reset", || {
        closed.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_given_before_the_body_is_read_says_the_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start(&cms).await;
    // Denied before the upload is read: the client is told not to reuse the connection.
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(
            b"POST /videos/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nfirst part",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // A bodiless request keeps its connection.
    let kept = raw(gate.addr, b"GET /videos/x HTTP/1.1\r\nHost: x\r\n\r\nGET /videos/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let kept = String::from_utf8_lossy(&kept).to_ascii_lowercase();
    assert_eq!(kept.matches("http/1.1 403").count(), 2, "{kept}");
}
