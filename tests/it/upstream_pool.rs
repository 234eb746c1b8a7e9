//! The pool of connections to the CMS: reuse, idle timeout, the idle cap,
//! and a connection the CMS closed while it sat in the pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

fn pool_config(cms: &Cms, lines: &str) -> String {
    let mut config = config_text(cms.addr, "");
    for line in lines.lines() {
        config = with_setting(config, "upstream", line);
    }
    config
}

/// Waits up to 5 s for the CMS to have `count` connections open.
async fn until_open(cms: &Cms, count: usize) -> Result<Duration, usize> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if cms.open_connections() == count {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(cms.open_connections())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_kept_then_closed_after_the_idle_timeout_without_traffic() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start_with(&pool_config(&cms, "pool_idle_timeout = \"600ms\""), &[]).await;
    assert_eq!(get(&gate.url("/public/a"), None).await.status, 200);
    assert_eq!(get(&gate.url("/public/b"), None).await.status, 200);
    assert_eq!(
        cms.connections(),
        1,
        "the second request reused the first's"
    );
    assert_eq!(cms.open_connections(), 1, "kept open while idle");
    let closed_after = until_open(&cms, 0)
        .await
        .expect("closed once idle too long");
    assert!(
        closed_after >= Duration::from_millis(300),
        "not closed before its time: {closed_after:?}"
    );
    assert_eq!(get(&gate.url("/public/c"), None).await.status, 200);
    assert_eq!(cms.connections(), 2, "a new one after the old closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_more_idle_connections_are_kept_than_pool_max_idle() {
    // Each answer is held at GATE until released: all five are in flight at once.
    let reply = Reply::chunked(
        "text/html",
        vec![Bytes::from_static(GATE), Bytes::from_static(b"ok")],
    );
    let cms = Cms::fixed(reply).await;
    let gate = Gate::start_with(&pool_config(&cms, "pool_max_idle = 2"), &[]).await;
    let requests: Vec<_> = (0..5)
        .map(|n| {
            let url = gate.url(&format!("/public/{n}"));
            tokio::spawn(async move { get(&url, None).await.status })
        })
        .collect();
    let started = Instant::now();
    while cms.requests().len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "all five reach the CMS"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cms.connections(), 5, "five at once need five connections");
    // A release made before a reply waits is kept for it: release until all are done.
    while !requests.iter().all(|r| r.is_finished()) {
        cms.release_rest();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    until_open(&cms, 2)
        .await
        .expect("the idle ones beyond two are closed");
    // The two kept are used again.
    let again = tokio::spawn({
        let url = gate.url("/public/again");
        async move { get(&url, None).await.status }
    });
    while !again.is_finished() {
        cms.release_rest();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(again.await.unwrap(), 200);
    assert_eq!(cms.connections(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_pool_max_idle_0_every_request_has_its_own_connection() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start_with(&pool_config(&cms, "pool_max_idle = 0"), &[]).await;
    for n in 0..3 {
        assert_eq!(
            get(&gate.url(&format!("/public/{n}")), None).await.status,
            200
        );
    }
    assert_eq!(cms.connections(), 3);
    until_open(&cms, 0).await.expect("none is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_cms_closed_while_idle_is_not_used_again() {
    // A CMS that answers one request per connection with a keep-alive
    // response, then closes it a moment later without saying so.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                });
            }
        })
    };
    let gate = Gate::start_with(&config_text(addr, ""), &[]).await;
    for n in 0..3 {
        let fetched = get(&gate.url(&format!("/public/{n}")), None).await;
        assert_eq!(fetched.status, 200, "request {n}");
        assert_eq!(fetched.body.as_ref(), b"ok");
        // Long enough for the gateway to see the close even on a busy machine.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    server.abort();
}
