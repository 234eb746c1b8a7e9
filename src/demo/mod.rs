//! `embedgate demo`: the whole story on loopback. A sample CMS with a
//! sign-in form ([`cms`]), a sample video host that plays the provider's
//! part ([`video_host`]), and the gateway in front of the CMS, configured
//! from gateway.toml with two changes: sessions are checked by the CMS's
//! session check, and a second `[[embed]]` gives the sample host's players
//! their tokens (valid 60 seconds, so that an expired link can be seen).

mod cms;
mod video_host;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::header::HeaderName;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::allowlist::{ForwardAuthSettings, OnError, SessionsSettings, SourceSettings};
use crate::config::Loaded;
use crate::embed::EmbedSettings;
use crate::gateway::Gateway;
use crate::runtime::Runtime;
use crate::server;
use crate::token::verify::{EdgeSettings, EdgeVerifier, TokenCarrier};
use crate::token::{LocalSettings, ScopeTemplate, TokenSettings};

pub use video_host::{EXPIRED, NOT_INCLUDED};

/// The sample videos: share id and title. The limited member may watch the first only.
pub const VIDEOS: [(&str, &str); 2] = [
    ("1jhvl2uqa5rdf", "Getting started"),
    ("2kqwm3vrb6seg", "Going further"),
];

/// How long the demo's tokens last: short, so an expired link can be tried.
const DEMO_TTL: Duration = Duration::from_secs(60);

/// 32 hex digits no one can guess from the last ones: session ids and the password.
fn random_hex() -> String {
    format!("{:032x}", crate::unguessable::next_u128())
}

fn deny_page() -> String {
    r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>403 Forbidden</title>
<style>body { font-family: sans-serif; max-width: 30em; margin: 2em auto; }</style></head>
<body><h1>403 Forbidden</h1>
<p>This article is for members. <a id="sign-in" href="/login">Sign in</a> to watch its videos.</p>
</body></html>
"#
    .to_string()
}

/// Serves every request accepted on `listener` with `answer`, HTTP/1.1 or
/// HTTP/2, until the task is dropped: the demo's CMS and video host alike.
async fn serve_each<F, Fut>(listener: TcpListener, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let answered = answer(request);
                async move { Ok::<_, Infallible>(answered.await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    if !addr.ip().is_loopback() {
        bail!("the demo's {what} only runs on loopback, not {addr}");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot start the {what} on {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Runs the demo: sample CMS, sample video host and gateway, until SIGTERM or Ctrl-C.
///
/// The demo does not reload: its upstream is the sample CMS it started, not
/// the one in the file.
pub async fn run(
    loaded: Loaded,
    listen: Option<SocketAddr>,
    cms_listen: Option<SocketAddr>,
    video_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let Loaded {
        mut settings,
        places,
        ..
    } = loaded;
    let cms_addr = match cms_listen {
        Some(addr) => addr,
        None => tokio::net::lookup_host(settings.upstream.authority.as_str())
            .await?
            .next()
            .with_context(|| {
                format!("upstream {} does not resolve", settings.upstream.authority)
            })?,
    };
    let (cms_listener, cms_addr) = bind(cms_addr, "sample CMS").await?;
    let video_default = SocketAddr::new(cms_addr.ip(), cms_addr.port().wrapping_add(1));
    let (video_listener, video_addr) =
        bind(video_listen.unwrap_or(video_default), "sample video host").await?;
    let listen = listen.unwrap_or(settings.server.listen);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let gateway_addr = listener.local_addr()?;

    let upstream = &mut settings.upstream;
    upstream.authority = cms_addr.to_string().parse()?;
    upstream.host_header = cms_addr.to_string().parse()?;
    upstream.base_path.clear();

    // Signing in at the CMS is what lets a visitor in: no fixed allowlist, no cache.
    settings.session.allowlist = SessionsSettings {
        source: SourceSettings::ForwardAuth(ForwardAuthSettings {
            url: format!("http://{cms_addr}/session-check").parse()?,
            timeout: Duration::from_secs(2),
            headers: Vec::new(),
            original_request: true,
            shares_header: Some(HeaderName::from_static(cms::SHARES_HEADER)),
            max_in_flight: 64,
        }),
        cache: None,
        on_error: OnError::Unavailable,
    };

    // The sample host's players get tokens made with the first embed's key.
    let Some(TokenSettings::Local(first)) = settings.embeds.first().map(|e| e.token.clone()) else {
        bail!("the demo needs a first [[embed]] with kind = \"edgeauth\" and a key");
    };
    let video_host = format!("http://{video_addr}");
    settings.embeds.push(EmbedSettings {
        name: Some("demo-video-host".into()),
        src: format!(
            "{video_host}/res/embed/{{{}}}.html",
            settings.session.entitled_by
        ),
        param: "token".into(),
        entitled_by: settings.session.entitled_by.clone(),
        token: TokenSettings::Local(LocalSettings {
            ttl: DEMO_TTL,
            start_offset: Some(Duration::ZERO),
            scope: ScopeTemplate::Acl(vec![format!("/hls/{{{}}}/*", settings.session.entitled_by)]),
            ip: false,
            id: false,
            data: None,
            signer: first.signer.clone(),
        }),
    });
    let verifier = EdgeVerifier::build(&EdgeSettings {
        signer: first.signer,
        carrier: TokenCarrier::Query("token".into()),
        leeway: Duration::ZERO,
    })
    .context("cannot load the first embed's key for the sample video host")?;

    let password = random_hex()[..12].to_string();
    let sample_cms = Arc::new(cms::SampleCms::new(
        &settings.session.cookie,
        &password,
        &video_host,
    ));
    let mut runtime = Runtime::build(settings, None)
        .await
        .map_err(|err| places.error(&err.key, err.message))?;
    // Its own 403 page, with a link to sign in; never written to disk, so a
    // demo that is killed leaves nothing behind.
    runtime.deny_page = deny_page().into();
    println!("embedgate demo");
    println!("  sample CMS  http://{cms_addr}");
    println!("  video host  {video_host}");
    println!("  gateway     http://{gateway_addr}");
    println!("  password    {password}");
    println!();
    println!("Open http://{gateway_addr}/videos/intro in a browser:");
    println!("  1. signed out, the article is refused (403) with a link to sign in;");
    println!("  2. sign in with any name and the password above: both players load,");
    println!("     each with a token minted for this page view;");
    println!(
        "  3. sign out and in as \"{}\": that plan includes the first video only,",
        cms::LIMITED_MEMBER
    );
    println!("     so the second player is refused by the video host;");
    println!("  4. copy a player's address into a new tab after 60 seconds: expired.");
    println!();
    println!("Ctrl-C to stop.");

    let cms_task = tokio::spawn(cms::serve(cms_listener, sample_cms));
    let video_task = tokio::spawn(video_host::serve(video_listener, Arc::new(verifier)));
    server::serve(
        listener,
        Arc::new(Gateway::new(runtime)),
        server::shutdown_signal(),
    )
    .await;
    cms_task.abort();
    video_task.abort();
    Ok(())
}
