//! Session lookups and allowlist loading:
//!
//! - `session_lookup/cached_forward_auth`: a session the CMS's session check
//!   has answered for, served from the verdict cache (the digest of the id
//!   included, as every gated request pays it).
//! - `session_lookup/file_1m`: a lookup in a file source of a million sessions.
//! - `allowlist_load/file_1m`: reading and indexing a million-line file, a
//!   tenth of them with videos named.

use std::convert::Infallible;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use embedgate::allowlist::{
    CacheSettings, FileSource, ForwardAuthSettings, OnError, SessionKey, Sessions,
    SessionsSettings, SourceSettings, Verdict, Visit,
};
use embedgate::metrics::Metrics;
use http::{HeaderMap, HeaderValue, Method, Response, Uri};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const SESSIONS: usize = 1_000_000;

fn million_line_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    for i in 0..SESSIONS {
        if i % 10 == 0 {
            writeln!(out, "member-{i:016x} share{} share{}", i % 7, i % 13).unwrap();
        } else {
            writeln!(out, "member-{i:016x}").unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    file
}

/// A session check on loopback that allows everyone.
async fn allow_all() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn session_lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (method, uri) = (Method::GET, Uri::from_static("/videos/a"));
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("sessionid=bench-1"));
    let visit = Visit {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let mut group = c.benchmark_group("session_lookup");

    let sessions: Arc<Sessions> = runtime.block_on(async {
        let url: Uri = format!("http://{}/check", allow_all().await)
            .parse()
            .unwrap();
        let settings = SessionsSettings {
            source: SourceSettings::ForwardAuth(ForwardAuthSettings {
                url,
                timeout: Duration::from_secs(2),
                headers: Vec::new(),
                original_request: true,
                shares_header: None,
                max_in_flight: 64,
            }),
            cache: Some(CacheSettings {
                ttl: Duration::from_secs(3600),
                negative_ttl: Duration::from_secs(5),
                max_entries: 100_000,
            }),
            on_error: OnError::Unavailable,
        };
        Sessions::build(&settings, None, &Metrics::new())
            .await
            .unwrap()
    });
    let first = runtime.block_on(sessions.check(&SessionKey::new("bench-1"), &visit));
    assert!(matches!(first, Ok(Verdict::Allowed(_))));
    group.bench_function("cached_forward_auth", |b| {
        b.iter(|| runtime.block_on(sessions.check(&SessionKey::new(black_box("bench-1")), &visit)))
    });

    let file = million_line_file();
    let source = FileSource::load(file.path()).unwrap();
    let id = format!("member-{:016x}", 123_457);
    group.bench_function("file_1m", |b| {
        b.iter(|| runtime.block_on(source.check(&SessionKey::new(black_box(&id)), &visit)))
    });
    group.finish();

    let mut group = c.benchmark_group("allowlist_load");
    group.sample_size(10);
    group.bench_function("file_1m", |b| {
        b.iter(|| FileSource::load(black_box(file.path())).unwrap().len())
    });
    group.finish();
}

criterion_group!(benches, session_lookup);
criterion_main!(benches);
