//! A minimal static HTTP/1.1 upstream for load tests: answers every request,
//! whatever its method, with a file as `text/html; charset=utf-8`.
//!
//! ```text
//! static_upstream ADDR FILE|DIR [SECONDS]
//! static_upstream 127.0.0.1:9101 bench/page.html 300
//! ```
//!
//! With a FILE every path gets that file. With a DIR, a path gets the file of
//! the directory named by its last segment (`/videos/page-8k.html` ->
//! `DIR/page-8k.html`), and a 404 when there is none. One thread, keep-alive,
//! the files read once at start. With SECONDS it exits by itself after that
//! long, so a forgotten server does not linger.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str = "usage: static_upstream ADDR FILE|DIR [SECONDS]";

/// What is served: one page for every path, or pages by their file name.
enum Pages {
    One(Bytes),
    ByName(HashMap<String, Bytes>),
}

impl Pages {
    fn read(path: &str) -> Result<Pages, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
        if !meta.is_dir() {
            return Ok(Pages::One(Bytes::from(
                std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
            )));
        }
        let mut pages = HashMap::new();
        for entry in std::fs::read_dir(path).map_err(|e| format!("{path}: {e}"))? {
            let entry = entry.map_err(|e| format!("{path}: {e}"))?;
            if entry
                .file_type()
                .map_err(|e| format!("{path}: {e}"))?
                .is_file()
            {
                let body = std::fs::read(entry.path()).map_err(|e| format!("{path}: {e}"))?;
                pages.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    body.into(),
                );
            }
        }
        Ok(Pages::ByName(pages))
    }

    fn describe(&self) -> String {
        match self {
            Pages::One(page) => format!("{} bytes", page.len()),
            Pages::ByName(pages) => format!("{} files", pages.len()),
        }
    }

    fn get(&self, path: &str) -> Option<Bytes> {
        match self {
            Pages::One(page) => Some(page.clone()),
            Pages::ByName(pages) => {
                let name = path.rsplit('/').next().unwrap_or_default();
                pages.get(name).cloned()
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, file, lifetime) = match args.as_slice() {
        [addr, file] => (addr, file, None),
        [addr, file, secs] => (addr, file, Some(secs)),
        _ => return Err(USAGE.into()),
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("ADDR {addr:?}: {e}"))?;
    let lifetime = lifetime
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()
        .map_err(|e| format!("SECONDS: {e}"))?;
    let pages = Arc::new(Pages::read(file)?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!(
            "serving {file} ({}) on http://{}",
            pages.describe(),
            listener.local_addr()?
        );
        let serve = serve(listener, pages);
        match lifetime {
            Some(limit) => {
                // Ok(never) or Err(elapsed): either way, time is up.
                let _ = tokio::time::timeout(limit, serve).await;
                Ok(())
            }
            None => serve.await,
        }
    })
}

async fn serve(listener: TcpListener, pages: Arc<Pages>) -> Result<(), Box<dyn std::error::Error>> {
    let content_type = HeaderValue::from_static("text/html; charset=utf-8");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait rather than spin.
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pages = pages.clone();
        let content_type = content_type.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = match pages.get(request.uri().path()) {
                Some(page) => {
                    let mut response = Response::new(Full::new(page));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, content_type.clone());
                    response
                }
                None => {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                }
            };
            std::future::ready(Ok::<_, Infallible>(response))
        });
        tokio::spawn(async move {
            // Clients closing mid-response is normal under load; nothing to report.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
