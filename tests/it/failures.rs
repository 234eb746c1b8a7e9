//! A dead, slow or silent CMS, bad input, oversized headers, a visitor who
//! goes away, and shutdown with requests in flight.

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
