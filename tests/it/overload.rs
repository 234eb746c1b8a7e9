//! More than the gateway takes at once: connections over the limits, HTTP/2
//! clients that reset their streams, requests over `max_in_flight`, and
//! uploads held to their share of the places.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;

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
