//! WebSocket (and any HTTP/1.1 upgrade) through the gateway: the gate runs
//! first, then the bytes are relayed both ways.

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
