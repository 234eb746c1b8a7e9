//! `embedgate demo`: a small sample CMS on loopback with the gateway in front of it.
//!
//! The CMS knows nothing of the gateway: it serves a public home page and an
//! article under `/videos/` with an Infomaniak-style embed, a lazy-loaded
//! embed, an iframe to another host and ordinary markup.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::allowlist::SourceSettings;
use crate::config::Loaded;
use crate::gateway::Gateway;
use crate::runtime::Runtime;
use crate::server;

/// The sample CMS's home page (public).
pub const HOME_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sample CMS</title></head>
<body>
  <h1>Sample CMS</h1>
  <p>This page is public. The <a href="/videos/intro">members' video</a> is not.</p>
</body>
</html>
"#;

/// The sample CMS's gated article: the embeds the gateway must give tokens to, and one it must leave alone.
pub const ARTICLE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Introduction (members only)</title>
<style>iframe { display: block; margin: 1em 0; }</style></head>
<body>
  <article>
    <h1>Introduction</h1>
    <p>Welcome, member. Your player below carries a key minted just for you &amp; it expires in minutes.</p>
    <iframe frameborder="0" width="720" height="360" src="https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html" allowfullscreen></iframe>
    <p>A second video, loaded lazily by a plugin:</p>
    <iframe class="lazyload" width="720" height="360" src="about:blank" data-src="https://api.vod2.infomaniak.com/res/embed/2kqwm3vrb6seg.html?autoplay=0" allowfullscreen></iframe>
    <p>An embed from another host stays exactly as the CMS wrote it:</p>
    <iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ" title="Other host"></iframe>
  </article>
</body>
</html>
"#;

fn cms_page(path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/" => (StatusCode::OK, HOME_PAGE),
        "/videos/intro" => (StatusCode::OK, ARTICLE_PAGE),
        _ => (
            StatusCode::NOT_FOUND,
            "<!doctype html><title>404</title><h1>Not found</h1>\n",
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Serves the sample CMS on `listener` until the task is dropped.
pub async fn serve_cms(listener: TcpListener) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                Ok::<_, Infallible>(cms_page(request.uri().path()))
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the demo: sample CMS plus gateway, until SIGTERM or Ctrl-C.
///
/// The demo does not reload: its upstream is the sample CMS it started, not
/// the one in the file.
pub async fn run(
    loaded: Loaded,
    listen: Option<SocketAddr>,
    cms_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let Loaded {
        mut settings,
        places,
        ..
    } = loaded;
    let upstream = &mut settings.upstream;
    let cms_addr = match cms_listen {
        Some(addr) => addr,
        None => tokio::net::lookup_host(upstream.authority.as_str())
            .await?
            .next()
            .with_context(|| format!("upstream {} does not resolve", upstream.authority))?,
    };
    if !cms_addr.ip().is_loopback() {
        bail!("the sample CMS only runs on loopback, not {cms_addr}");
    }
    let cms = TcpListener::bind(cms_addr)
        .await
        .with_context(|| format!("cannot start the sample CMS on {cms_addr}"))?;
    let cms_addr = cms.local_addr()?;
    upstream.authority = cms_addr.to_string().parse()?;
    upstream.host_header = cms_addr.to_string().parse()?;
    upstream.base_path.clear();

    let listen = listen.unwrap_or(settings.server.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let gateway_addr = listener.local_addr()?;

    let member = match &settings.session.allowlist.source {
        SourceSettings::File { path } => std::fs::read_to_string(path).ok().and_then(|text| {
            crate::allowlist::entries(&text)
                .filter_map(|(_, entry)| entry.split_ascii_whitespace().next())
                .find(|id| !id.starts_with("sha256:"))
                .map(str::to_string)
        }),
        SourceSettings::ForwardAuth(_) | SourceSettings::Redis(_) => None,
    };
    let cookie = settings.session.cookie.clone();
    let runtime = Runtime::build(settings, None)
        .await
        .map_err(|err| places.error(&err.key, err.message))?;
    println!("embedgate demo");
    println!("  sample CMS  http://{cms_addr}");
    println!("  gateway     http://{gateway_addr}");
    println!();
    println!("  public page (passed through):  curl -i http://{gateway_addr}/");
    println!("  gated page, no session (403):  curl -i http://{gateway_addr}/videos/intro");
    match member {
        Some(id) => {
            println!("  gated page as a member:        curl -i --cookie '{cookie}={id}' http://{gateway_addr}/videos/intro");
            println!("  session id {id} (from the allowlist); in a browser, set cookie {cookie}={id} for {gateway_addr}");
        }
        None => println!("  the allowlist is empty: add a session id to it to be let in"),
    }
    println!();
    println!("Ctrl-C to stop.");

    let cms_task = tokio::spawn(serve_cms(cms));
    server::serve(
        listener,
        Arc::new(Gateway::new(runtime)),
        server::shutdown_signal(),
    )
    .await;
    cms_task.abort();
    Ok(())
}
