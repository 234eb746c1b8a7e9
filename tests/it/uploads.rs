//! Request bodies: streamed to the CMS, and refused past `max_body_bytes`.

use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use crate::common::*;

fn limited(cms: std::net::SocketAddr, max: u64) -> String {
    with_setting(
        config_text(cms, ""),
        "server",
        &format!("max_body_bytes = {max}"),
    )
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_413_before_the_cms_is_asked() {
    let cms = Cms::fixed(Reply::html("stored")).await;
    let gate = Gate::start_with(&limited(cms.addr, 1000), &[]).await;
    let response = send(
        &client(),
        http::Request::post(gate.url("/public/upload"))
            .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 1001])))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 413);
    assert!(cms.requests().is_empty());
    let fits = send(
        &client(),
        http::Request::post(gate.url("/public/upload"))
            .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 1000])))
            .unwrap(),
    )
    .await;
    assert_eq!(fits.status, 200);
    assert_eq!(cms.requests()[0].body.len(), 1000);
}

/// A chunked upload (no Content-Length) of `chunks` pieces of `size` bytes.
struct ChunkedUpload {
    next: usize,
    chunks: usize,
    size: usize,
}

fn chunked_upload(chunks: usize, size: usize) -> ChunkedUpload {
    ChunkedUpload {
        next: 0,
        chunks,
        size,
    }
}

/// Chunk `index` of `size` bytes: its bytes depend on the index, so a
/// reordered or dropped chunk changes the checksum.
fn chunk(index: usize, size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(31) ^ index.wrapping_mul(7)) as u8)
            .collect::<Vec<u8>>(),
    )
}

impl http_body::Body for ChunkedUpload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.next == self.chunks {
            return std::task::Poll::Ready(None);
        }
        let data = chunk(self.next, self.size);
        self.next += 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_and_the_cms_sees_it_aborted() {
    let cms = Cms::fixed(Reply::html("stored")).await;
    let gate = Gate::start_with(&limited(cms.addr, 100_000), &[]).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(gate.url("/public/upload"))
        .body(chunked_upload(20, 10_000))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("answered")
        .expect("a response");
    assert_eq!(response.status(), 413);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cms.requests().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(seen) = cms.requests().first() {
        assert!(
            !seen.body_complete,
            "the CMS must not see a complete-looking body"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_streams_through_whole() {
    let cms = Cms::start(|seen| {
        let digest = hex::encode(Sha256::digest(&seen.body));
        Reply::with_type("text/plain", digest)
    })
    .await;
    // 0 turns the limit off.
    let gate = Gate::start_with(&limited(cms.addr, 0), &[]).await;
    let (chunks, size) = (256, 64 * 1024);
    let mut expected = Sha256::new();
    for index in 0..chunks {
        expected.update(chunk(index, size));
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(gate.url("/public/upload"))
        .body(chunked_upload(chunks, size))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, hex::encode(expected.finalize()).as_bytes());
    let seen = &cms.requests()[0];
    assert!(seen.body_complete);
    assert_eq!(seen.body.len(), chunks * size);
}
