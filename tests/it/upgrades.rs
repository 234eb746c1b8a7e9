//! WebSocket through the gateway: the gate runs first, then the bytes are
//! relayed both ways. No other upgrade reaches the CMS.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A WebSocket echo server playing the CMS; answers one message with the same.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = socket.send(message).await;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(
    url: &str,
    cookie: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

async fn echoes(url: &str, cookie: Option<&str>) {
    let mut socket = connect(url, cookie).await.expect("upgraded");
    for text in ["hello", "again"] {
        socket.send(Message::text(text)).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test]
async fn a_websocket_passes_on_a_public_route_and_for_an_allowed_session_only() {
    let cms = echo_server().await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    echoes(&format!("ws://{}/public/live", gate.addr), None).await;

    match connect(&format!("ws://{}/videos/live", gate.addr), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!(
            "a denied visitor must not be upgraded: {:?}",
            other.map(|_| ())
        ),
    }
    echoes(
        &format!("ws://{}/videos/live", gate.addr),
        Some(&format!("sessionid={MEMBER}")),
    )
    .await;
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_request_idle_limit_but_not_its_own() {
    let cms = echo_server().await;
    let text = with_setting(
        with_setting(config_text(cms, ""), "server", "idle_timeout = \"300ms\""),
        "server",
        "upgrade_idle_timeout = \"1500ms\"",
    );
    let gate = Gate::start_with(&text, &[]).await;
    let mut socket = connect(&format!("ws://{}/public/live", gate.addr), None)
        .await
        .unwrap();
    // Quiet for longer than idle_timeout: an upgraded connection is not a request-less one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    socket.send(Message::text("still here")).await.unwrap();
    let back = socket.next().await.unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "still here");
    // Quiet for longer than upgrade_idle_timeout: closed.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = socket.send(Message::text("gone?")).await;
        socket.next().await
    })
    .await
    .expect("the gateway closed it");
    assert!(
        !matches!(closed, Some(Ok(Message::Text(_)))),
        "no echo after the upgrade idle limit: {closed:?}"
    );
}

/// A CMS that switches to any protocol asked for (as some h2c servers do on
/// `Upgrade: h2c` alone) and then echoes the tunnel's bytes; answers "plain"
/// otherwise. Each head it reads is recorded.
async fn switching_server() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                if let Some(protocol) = head.lines().find_map(|line| line.strip_prefix("upgrade:"))
                {
                    let switch = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {}\r\n\r\n",
                        protocol.trim()
                    );
                    let _ = stream.write_all(switch.as_bytes()).await;
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
                        .await;
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn no_upgrade_but_websocket_reaches_the_cms() {
    let (cms, heads) = switching_server().await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    for protocol in ["h2c", "HTTP/2.0", "TLS/1.2", "x-tunnel"] {
        // Switched, the tunnel would carry requests the gate never reads.
        let request = format!(
            "GET /public/x HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {protocol}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n\
             GET /videos/secret HTTP/1.1\r\nHost: site.example\r\n\r\n"
        );
        let answer =
            String::from_utf8_lossy(&raw(gate.addr, request.as_bytes()).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{protocol}: {answer}");
        assert!(!answer.contains(" 101 "), "{protocol}: {answer}");
        // The request after it is read by the gateway as one of its own: gated.
        assert!(answer.contains("HTTP/1.1 403"), "{protocol}: {answer}");
        let head = heads.lock().unwrap().pop().unwrap();
        assert!(head.starts_with("get /public/x "), "{head}");
        assert!(
            !head.contains("upgrade") && !head.contains("http2-settings"),
            "{protocol} reached the CMS: {head}"
        );
    }

    // WebSocket is still relayed, also when named beside another protocol.
    let request = "GET /public/live HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade\r\n\
                   Upgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let answer = String::from_utf8_lossy(&raw(gate.addr, request.as_bytes()).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let head = heads.lock().unwrap().pop().unwrap();
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_connection_keeps_its_place_under_the_connection_limits() {
    let cms = echo_server().await;
    let config = with_setting(
        config_text(cms, "\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
        "server",
        "max_connections_per_ip = 2",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = format!("ws://{}/public/live", gate.addr);
    let mut first = connect(&url, None).await.expect("upgraded");
    let second = connect(&url, None).await.expect("upgraded");
    // Both still relayed, and both still held against the limit.
    first.send(Message::text("still here")).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), first.next())
        .await
        .expect("an echo")
        .unwrap()
        .unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "still here");
    let refused = raw(gate.addr, b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        refused.is_empty(),
        "a third connection from the address is refused: {:?}",
        String::from_utf8_lossy(&refused)
    );
    let metrics = get(&format!("http://{}/metrics", gate.admin.unwrap()), None)
        .await
        .text();
    assert!(
        metrics.contains("embedgate_open_connections{protocol=\"http1\"} 2"),
        "{metrics}"
    );

    // Closed, an upgraded connection gives its place back.
    drop(second);
    let answered = raw_once_admitted(
        gate.addr,
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !answered.is_empty(),
        "admitted once a place is free: {:?}",
        String::from_utf8_lossy(&answered)
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_open_websockets_instead_of_waiting_for_them() {
    let cms = echo_server().await;
    // Shutdown waits up to 30 s for what is open.
    let config =
        config_text(cms, "").replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"30s\"");
    let mut gate = Gate::start_with(&config, &[]).await;
    let mut socket = connect(&format!("ws://{}/public/live", gate.addr), None)
        .await
        .expect("upgraded");
    socket.send(Message::text("hello")).await.unwrap();
    assert!(socket.next().await.is_some());
    let started = std::time::Instant::now();
    gate.shutdown();
    let task = gate.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the gateway stops without waiting out the shutdown timeout")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    // The WebSocket was closed, not left behind.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket is closed");
}
