//! Visitors who stop taking the answer: cut off after `[server] send_timeout`,
//! with the CMS connection behind them, over HTTP/1.1 and per HTTP/2 stream;
//! and one who takes it slowly but steadily, served whole.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::*;

/// Big enough that no socket or window buffers it whole.
const MEDIA: usize = 16 << 20;

/// A CMS answering `.ts` paths with `MEDIA` bytes of video, a 1 MB one for
/// `mid.ts`, anything else with a small page on a connection it closes.
async fn media_cms() -> Cms {
    Cms::start(|seen| {
        let path = seen.uri.path();
        if path.ends_with("mid.ts") {
            Reply::with_type("video/mp2t", vec![b'm'; 1 << 20])
        } else if path.ends_with(".ts") {
            Reply::with_type("video/mp2t", vec![b'v'; MEDIA])
        } else {
            Reply::html("small").header("connection", "close")
        }
    })
    .await
}

async fn gate_with_send_limit(cms: &Cms, limit: &str) -> Gate {
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        &format!("send_timeout = \"{limit}\""),
    );
    Gate::start_with(&config, &[]).await
}

async fn no_cms_connection_open(cms: &Cms) {
    for _ in 0..50 {
        if cms.open_connections() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cms.open_connections(), 0, "the CMS connections were closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_that_stops_reading_is_cut_off_after_the_send_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = media_cms().await;
    let gate = gate_with_send_limit(&cms, "500ms").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gate.addr).await.unwrap();
    stream
        .write_all(b"GET /public/media.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Takes nothing for well past the limit, then reads what is left.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            got += n;
        }
    })
    .await;
    assert!(ended.is_ok(), "the gateway closed the connection");
    assert!(got < MEDIA, "cut off, not sent whole: {got} bytes");
    // The CMS connection that fed it is closed, not kept busy.
    no_cms_connection_open(&cms).await;
}

/// An HTTP/2 connection whose connection window is wide open: only a
/// stream's own window can hold its answer back.
async fn h2_connection(
    gate: &Gate,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_connection_window_size(1 << 30)
        .handshake(tcp)
        .await
        .unwrap();
    (client, tokio::spawn(connection))
}

/// Reads `body` to its end, giving each piece's window back after a pause
/// of `pause_per_16k` for every 16 KiB of it.
async fn read_all(body: &mut h2::RecvStream, pause_per_16k: Duration) -> Result<usize, h2::Error> {
    let mut got = 0;
    while let Some(piece) = body.data().await {
        let piece = piece?;
        got += piece.len();
        tokio::time::sleep(pause_per_16k.mul_f64(piece.len() as f64 / 16384.0)).await;
        body.flow_control().release_capacity(piece.len())?;
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_stream_whose_window_stays_shut_is_cut_off_while_others_flow() {
    let cms = media_cms().await;
    let gate = gate_with_send_limit(&cms, "500ms").await;
    let (mut client, connection) = h2_connection(&gate).await;
    let stuck = h2_get(&mut client, "/public/media.ts").await.unwrap();
    assert_eq!(stuck.status(), 200);
    // Its window is never given back. Meanwhile the connection is busy:
    // other streams are answered whole, and its writes never wait.
    let started = Instant::now();
    let mut answered = 0;
    while !connection.is_finished() && started.elapsed() < Duration::from_secs(10) {
        if let Ok(mut small) = h2_get(&mut client, "/public/small").await {
            if matches!(read_all(small.body_mut(), Duration::ZERO).await, Ok(5)) {
                answered += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connection.is_finished(),
        "the gateway closed the connection"
    );
    assert!(answered >= 3, "other streams flowed meanwhile: {answered}");
    drop(stuck);
    no_cms_connection_open(&cms).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_stream_whose_window_is_never_opened_is_cut_off_though_its_body_is_over() {
    let cms = media_cms().await;
    let gate = gate_with_send_limit(&cms, "500ms").await;
    // The page's only piece has been read from the CMS; hyper holds it for
    // a window that never opens.
    assert_a_shut_window_is_cut_off(gate.addr, "/public/small").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_stream_read_slowly_but_steadily_is_served_whole() {
    let cms = media_cms().await;
    let gate = gate_with_send_limit(&cms, "1s").await;
    let (mut client, connection) = h2_connection(&gate).await;
    let mut response = h2_get(&mut client, "/public/mid.ts").await.unwrap();
    assert_eq!(response.status(), 200);
    // At 400 KB/s the answer takes more than twice the limit in all, while
    // the window is shut for well under the limit at a time.
    let got = read_all(response.body_mut(), Duration::from_millis(40)).await;
    assert_eq!(got.unwrap(), 1 << 20);
    assert!(!connection.is_finished(), "the connection stays open");
}
