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
    // 0 turns the limit off. The stand-in hashes the 16 MB only once they
    // are all in, in an unoptimised build: on a busy box that takes longer
    // than the 2 s the other tests give the CMS to answer (seen as a 504).
    let config =
        limited(cms.addr, 0).replace("response_timeout = \"2s\"", "response_timeout = \"30s\"");
    assert!(config.contains("response_timeout = \"30s\""));
    let gate = Gate::start_with(&config, &[]).await;
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

/// A CMS that hashes uploads as they stream in and answers the digest.
async fn hashing_cms() -> std::net::SocketAddr {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let mut body = request.into_body();
                        let mut digest = Sha256::new();
                        while let Some(frame) = body.frame().await {
                            if let Some(data) = frame?.data_ref() {
                                digest.update(data);
                            }
                        }
                        let hex = hex::encode(digest.finalize());
                        Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                            Bytes::from(hex),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_200_mb_upload_streams_through_in_little_memory() {
    let cms = hashing_cms().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), limited(cms, 0)).unwrap();
    let mut gateway = Running::spawn(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("gateway.toml"))
            .env("EMBEDGATE_LOG", "warn,embedgate::server=info"),
    );
    let base = listening_url(&gateway.wait_for("listening on"));
    let pid = gateway.child.id();
    let at_rest = rss_kib(pid);

    let (chunks, size) = (3200, 64 * 1024);
    let mut expected = Sha256::new();
    for index in 0..chunks {
        expected.update(chunk(index, size));
    }
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("{base}/public/upload"))
        .body(chunked_upload(chunks, size))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert_eq!(
        body,
        hex::encode(expected.finalize()).as_bytes(),
        "all 200 MiB arrived intact"
    );
    eprintln!("gateway RSS: {at_rest} KiB at rest, {peak} KiB at most during a 200 MiB upload");
    assert!(
        peak < at_rest + 32 * 1024,
        "a 200 MiB upload took the gateway from {at_rest} to {peak} KiB"
    );
    gateway.terminate();
}
