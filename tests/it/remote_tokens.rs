//! Remote minting: each embed's token comes from a real local HTTP server
//! playing the video host's token API, while the page streams.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::common::*;

const BEARER: &str = "api-bearer-0123456789";

/// One call the API received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

/// The video host's token API. The share id in the path says how to answer:
/// `fail` (500), `badjson`, `missing` (no `data`), `stall` (never in time),
/// `hold` (waits for [`TokenApi::release`]), `weird` (a token with characters
/// that must be escaped in a URL); anything else gets `tok-<share>-<n>`.
struct TokenApi {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenApi {
    async fn start(delay: Duration) -> TokenApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let task = {
            let (calls, in_flight, most, release) = (
                calls.clone(),
                in_flight.clone(),
                most_in_flight.clone(),
                release.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (calls, in_flight, most, release) = (
                        calls.clone(),
                        in_flight.clone(),
                        most.clone(),
                        release.clone(),
                    );
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let (calls, in_flight, most, release) = (
                                calls.clone(),
                                in_flight.clone(),
                                most.clone(),
                                release.clone(),
                            );
                            async move {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                let answer = answer(request, &calls, &release, delay).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(answer)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        TokenApi {
            addr,
            calls,
            in_flight,
            most_in_flight,
            release,
            task,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn answer(
    request: Request<Incoming>,
    calls: &Mutex<Vec<Call>>,
    release: &Notify,
    delay: Duration,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let share = path.split('/').rev().nth(1).unwrap_or_default().to_string();
    let number = {
        let mut calls = calls.lock().unwrap();
        calls.push(Call {
            method: parts.method.to_string(),
            path: path.clone(),
            authorization: parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        calls.len()
    };
    tokio::time::sleep(delay).await;
    let json = |status: u16, text: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(text)))
            .unwrap()
    };
    match share.as_str() {
        "fail" => json(500, r#"{"result":"error"}"#.into()),
        "badjson" => json(200, "<html>maintenance</html>".into()),
        "missing" => json(200, r#"{"result":"success"}"#.into()),
        "stall" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            json(200, r#"{"data":"too-late"}"#.into())
        }
        "hold" => {
            release.notified().await;
            json(200, r#"{"result":"success","data":"tok-hold"}"#.into())
        }
        "weird" => json(200, r#"{"data":"a&b\"c<d> e#f%"}"#.into()),
        _ => json(
            200,
            format!(r#"{{"result":"success","data":"tok-{share}-{number}"}}"#),
        ),
    }
}

/// The test config with its embed switched to the remote minter at `api`.
fn remote_config(cms: &Cms, api: &TokenApi, extra_token_keys: &str) -> String {
    remote_config_with_timeout(cms, api, extra_token_keys, "1s")
}

fn remote_config_with_timeout(
    cms: &Cms,
    api: &TokenApi,
    extra_token_keys: &str,
    timeout: &str,
) -> String {
    let local = format!(
        "[embed.token]\nkind = \"edgeauth\"\nkey = \"{KEY_HEX}\"\nttl = \"5m\"\nacl = \"/hls/{{share}}/*\"\n"
    );
    let remote = format!(
        "[embed.token]\nkind = \"remote\"\nprovider = \"infomaniak\"\napi_base = \"http://{}\"\nchannel = \"ch42\"\nbearer = \"{BEARER}\"\ntimeout = \"{timeout}\"\n{extra_token_keys}\n",
        api.addr
    );
    let config = config_text(cms.addr, "");
    assert!(
        config.contains(&local),
        "the standard config has a local embed"
    );
    config.replacen(&local, &remote, 1)
}

fn iframe(share: &str) -> String {
    format!(
        r#"<iframe width="640" src="https://api.vod2.infomaniak.com/res/embed/{share}.html?autoplay=0"></iframe>"#
    )
}

fn page(shares: &[&str]) -> String {
    let mut page = String::from("<!DOCTYPE html><html><body><h1>Before the videos</h1>\n");
    for share in shares {
        page.push_str(&iframe(share));
        page.push('\n');
    }
    page.push_str("<p>After the videos</p></body></html>\n");
    page
}

fn with_token(share: &str, token: &str) -> String {
    format!(
        r#"<iframe width="640" src="https://api.vod2.infomaniak.com/res/embed/{share}.html?autoplay=0&amp;token={token}"></iframe>"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_embed_gets_the_token_the_api_gave_with_the_bearer_and_the_preset_url() {
    let api = TokenApi::start(Duration::ZERO).await;
    let cms = Cms::fixed(Reply::html(page(&["v1", "v2", "weird"]))).await;
    let mut gate = Gate::start_with(&remote_config(&cms, &api, ""), &[]).await;
    let response = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(response.status, 200);
    let text = response.text();
    let calls = api.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(call.authorization, format!("Bearer {BEARER}"));
        assert!(
            call.path.starts_with("/api/pub/v1/channel/ch42/share/")
                && call.path.ends_with("/token"),
            "{}",
            call.path
        );
        assert_eq!(call.body, "", "the preset sends no body");
    }
    let mut paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/pub/v1/channel/ch42/share/v1/token",
            "/api/pub/v1/channel/ch42/share/v2/token",
            "/api/pub/v1/channel/ch42/share/weird/token",
        ]
    );
    for share in ["v1", "v2"] {
        let number = calls
            .iter()
            .position(|c| c.path.contains(&format!("/share/{share}/")))
            .unwrap()
            + 1;
        assert!(
            text.contains(&with_token(share, &format!("tok-{share}-{number}"))),
            "{text}"
        );
    }
    // A token is a query value inside an attribute: nothing in it may end either.
    assert!(
        text.contains(&with_token("weird", "a%26b%22c%3Cd%3E%20e%23f%25")),
        "{text}"
    );
    assert!(text.ends_with("<p>After the videos</p></body></html>\n"));
    assert_eq!(response.headers["cache-control"], "private, no-store");
    gate.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_embeds_never_have_more_calls_in_flight_than_the_concurrency() {
    let api = TokenApi::start(Duration::from_millis(40)).await;
    let shares: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let shares: Vec<&str> = shares.iter().map(String::as_str).collect();
    let cms = Cms::fixed(Reply::html(page(&shares))).await;
    let mut gate = Gate::start_with(&remote_config(&cms, &api, "concurrency = 4"), &[]).await;
    let text = get_as_member(&gate.url("/videos/many")).await.text();
    assert_eq!(api.calls().len(), 20);
    let most = api.most_in_flight.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} calls in flight at once");
    assert!(most > 1, "the calls ran one at a time");
    assert_eq!(api.in_flight.load(Ordering::SeqCst), 0);
    for share in &shares {
        assert!(
            text.contains(&format!("{share}.html?autoplay=0&amp;token=tok-{share}-")),
            "{share}: {text}"
        );
    }
    gate.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_before_the_first_embed_reaches_the_visitor_before_the_api_answers() {
    let api = TokenApi::start(Duration::ZERO).await;
    let cms = Cms::fixed(Reply::html(page(&["hold", "v2"]))).await;
    let mut gate = Gate::start_with(&remote_config(&cms, &api, ""), &[]).await;
    let mut response = Streaming::open(member_request(&gate.url("/videos/slow"))).await;
    let prefix = r#"<iframe width="640" src="https://api.vod2.infomaniak.com/res/embed/hold.html?autoplay=0"#;
    response
        .read_until("the page up to the held embed's token", |got| {
            String::from_utf8_lossy(got).contains(prefix)
        })
        .await;
    let early = String::from_utf8(response.received.clone()).unwrap();
    assert!(early.starts_with("<!DOCTYPE html><html><body><h1>Before the videos</h1>"));
    assert!(!early.contains("tok-"), "no token before the API answered");
    assert!(
        !early.contains(&format!("{prefix}\"")),
        "the embed is never sent without its token: {early}"
    );
    // The second embed's call starts while the first is held (bounded wait:
    // the call may still be on its way).
    for _ in 0..250 {
        if api.calls().iter().any(|c| c.path.contains("/share/v2/")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        api.calls().iter().any(|c| c.path.contains("/share/v2/")),
        "the second embed's call started while the first was held: {:?}",
        api.calls()
    );
    api.release.notify_one();
    let text = String::from_utf8(response.finish().await).unwrap();
    assert!(text.contains(&with_token("hold", "tok-hold")), "{text}");
    assert!(
        text.contains("v2.html?autoplay=0&amp;token=tok-v2-"),
        "{text}"
    );
    gate.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_keeps_a_visitor_token_per_video_and_no_reuse_calls_every_view() {
    let api = TokenApi::start(Duration::ZERO).await;
    let cms = Cms::fixed(Reply::html(page(&["v1", "v2", "v1"]))).await;
    let mut fresh = Gate::start_with(&remote_config(&cms, &api, ""), &[]).await;
    for _ in 0..2 {
        get_as_member(&fresh.url("/videos/a")).await;
    }
    assert_eq!(
        api.calls().len(),
        6,
        "a fresh token per embed and view by default"
    );
    fresh.shutdown();

    let api = TokenApi::start(Duration::ZERO).await;
    let mut reusing = Gate::start_with(&remote_config(&cms, &api, "reuse = \"4m\""), &[]).await;
    let first = get_as_member(&reusing.url("/videos/a")).await.text();
    let calls_after_first = api.calls().len();
    assert!(
        calls_after_first == 2,
        "two videos on the page, {calls_after_first} calls"
    );
    let second = get_as_member(&reusing.url("/videos/a")).await.text();
    assert_eq!(api.calls().len(), 2, "the reload cost no call");
    assert_eq!(first, second);
    // Another visitor never gets the first one's tokens.
    let other = get(&reusing.url("/videos/a"), Some("sessionid=other-member"))
        .await
        .text();
    assert_eq!(api.calls().len(), 4);
    assert_ne!(other, first);
    reusing.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_cuts_the_page_off_at_that_embed_by_default() {
    let api = TokenApi::start(Duration::ZERO).await;
    let cms = Cms::fixed(Reply::html(page(&["v1", "fail", "v3"]))).await;
    let mut gate = Gate::start_with(&remote_config(&cms, &api, ""), &[]).await;
    let response = client()
        .request(member_request(&gate.url("/videos/a")))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the head went out before the call failed"
    );
    let mut body = response.into_body();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => received.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        failed,
        "the body ended in an error, not a clean end: {text}"
    );
    assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
    // The connection is cut after what came before the failed embed has
    // been written out: the page ends at the latest inside that embed's
    // unfinished tag, which a browser drops at the end of input.
    assert!(
        !text.contains("fail.html?autoplay=0\""),
        "never sent untokened: {text}"
    );
    assert!(!text.contains("After the videos"), "{text}");
    gate.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_on_error_embed_every_kind_of_bad_answer_leaves_only_that_embed_untokened() {
    let api = TokenApi::start(Duration::ZERO).await;
    let shares = ["fail", "badjson", "missing", "stall", "v5"];
    let cms = Cms::fixed(Reply::html(page(&shares))).await;
    let config = remote_config_with_timeout(&cms, &api, "on_error = \"embed\"", "300ms");
    let mut gate = Gate::start_with(&config, &[]).await;
    let response = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(response.status, 200);
    let text = response.text();
    for share in ["fail", "badjson", "missing", "stall"] {
        assert!(
            text.contains(&iframe(share)),
            "{share} left as it was: {text}"
        );
    }
    assert!(
        text.contains("v5.html?autoplay=0&amp;token=tok-v5-"),
        "{text}"
    );
    assert!(text.ends_with("<p>After the videos</p></body></html>\n"));
    gate.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_template_and_pointer_are_sent_and_read_as_configured() {
    let api = TokenApi::start(Duration::ZERO).await;
    let cms = Cms::fixed(Reply::html(page(&["v1"]))).await;
    let keys = r#"endpoint = "{api_base}/v2/{channel}/{share}/token"
body = '{"share":"{share}","channel":"{channel}","window":300}'
pointer = "/data"
method = "PUT""#;
    let config = remote_config(&cms, &api, keys).replacen("provider = \"infomaniak\"\n", "", 1);
    let mut gate = Gate::start_with(&config, &[]).await;
    let text = get_as_member(&gate.url("/videos/a")).await.text();
    let calls = api.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(calls[0].path, "/v2/ch42/v1/token");
    assert_eq!(
        calls[0].body,
        r#"{"share":"v1","channel":"ch42","window":300}"#
    );
    assert!(text.contains(&with_token("v1", "tok-v1-1")), "{text}");
    gate.shutdown();
}
