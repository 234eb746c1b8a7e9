//! A minimal static HTTP/1.1 upstream for load tests: answers every request,
//! whatever its method or path, with one file as `text/html; charset=utf-8`.
//!
//! ```text
//! static_upstream ADDR FILE [SECONDS]
//! static_upstream 127.0.0.1:9101 bench/page.html 300
//! ```
//!
//! One thread, keep-alive, the file read once at start. With SECONDS it exits
//! by itself after that long, so a forgotten server does not linger.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str = "usage: static_upstream ADDR FILE [SECONDS]";

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
    let page = Bytes::from(std::fs::read(file).map_err(|e| format!("{file}: {e}"))?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!(
            "serving {file} ({} bytes) on http://{}",
            page.len(),
            listener.local_addr()?
        );
        let serve = serve(listener, page);
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

async fn serve(listener: TcpListener, page: Bytes) -> Result<(), Box<dyn std::error::Error>> {
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
        let page = page.clone();
        let content_type = content_type.clone();
        let service = service_fn(move |_request: Request<Incoming>| {
            let mut response = Response::new(Full::new(page.clone()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
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
