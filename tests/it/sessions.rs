//! The CMS's own session check as the session source: one check per new
//! visitor behind the verdict cache, what it is sent, which cookie it judges,
//! and how its failures are answered and logged.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;

/// The standard test config with the CMS's session check at `auth` as the
/// session source; `source_lines` go into its table, `allowlist_lines` into
/// `[session.allowlist]`, `extra` at the end.
pub(crate) fn forward_auth_config(
    cms: SocketAddr,
    auth: SocketAddr,
    allowlist_lines: &str,
    source_lines: &str,
    extra: &str,
) -> String {
    config_text(cms, extra).replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!(
            "[session.allowlist]\n{allowlist_lines}\n\n[session.allowlist.forward_auth]\nurl = \"http://{auth}/check\"\n{source_lines}\n"
        ),
        1,
    )
}

pub(crate) fn cookie_of(seen: &Seen) -> String {
    seen.headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A session check answering by the session cookie's value:
/// `good-*` 200, `slow-*` 200 after 3 s, `broken-*` 500, anything else 403.
async fn session_check() -> Cms {
    Cms::start(|seen| {
        let cookie = cookie_of(seen);
        let mut reply = Reply::with_type("text/plain", "");
        reply.status = if cookie.contains("sessionid=good-") {
            200
        } else if cookie.contains("sessionid=slow-") {
            reply.head_delay = Duration::from_secs(3);
            200
        } else if cookie.contains("sessionid=broken-") {
            500
        } else {
            403
        };
        if cookie.contains("sessionid=good-newbie") {
            // Long enough for every concurrent first request to arrive meanwhile.
            reply.head_delay = Duration::from_millis(500);
        }
        reply
    })
    .await
}

fn calls_for(auth: &Cms, session: &str) -> usize {
    let needle = format!("sessionid={session}");
    auth.requests()
        .iter()
        .filter(|seen| cookie_of(seen).contains(&needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_visitors_concurrent_first_requests_make_one_session_check() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "",
        "[session.allowlist.cache]\nttl = \"1500ms\"\n",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    let client = client();
    let requests = (0..200).map(|_| {
        let request = http::Request::get(&url)
            .header("cookie", "sessionid=good-newbie")
            .body(empty_body())
            .unwrap();
        let client = client.clone();
        async move { send(&client, request).await }
    });
    let responses = futures_join_all(requests).await;
    // The check's answer was cached before the last of these responses left,
    // however slowly a loaded machine ran them: the ttl is counted from here.
    let cached_by = Instant::now();
    assert!(responses.iter().all(|r| r.status == 200));
    assert_eq!(
        calls_for(&auth, "good-newbie"),
        1,
        "200 requests, one check"
    );

    // Within the ttl: served from the cache.
    assert_eq!(get(&url, Some("sessionid=good-newbie")).await.status, 200);
    assert_eq!(calls_for(&auth, "good-newbie"), 1);
    // After it: asked again, once.
    let expiry = Duration::from_millis(1500) + Duration::from_millis(600);
    tokio::time::sleep(expiry.saturating_sub(cached_by.elapsed())).await;
    assert_eq!(get(&url, Some("sessionid=good-newbie")).await.status, 200);
    assert_eq!(get(&url, Some("sessionid=good-newbie")).await.status, 200);
    assert_eq!(calls_for(&auth, "good-newbie"), 2);
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_denied_verdict_is_cached_for_the_negative_ttl_only() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "",
        "[session.allowlist.cache]\nnegative_ttl = \"400ms\"\n",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    for _ in 0..3 {
        assert_eq!(get(&url, Some("sessionid=stranger-1")).await.status, 403);
    }
    assert_eq!(calls_for(&auth, "stranger-1"), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&url, Some("sessionid=stranger-1")).await.status, 403);
    assert_eq!(calls_for(&auth, "stranger-1"), 2);
    assert!(
        cms.requests().is_empty(),
        "the CMS never saw a denied request"
    );
}

#[tokio::test]
async fn a_failing_or_slow_session_check_is_a_503_that_is_not_cached() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(cms.addr, auth.addr, "", "timeout = \"300ms\"", "");
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    for session in ["broken-1", "slow-1"] {
        for _ in 0..2 {
            let response = get(&url, Some(&format!("sessionid={session}"))).await;
            assert_eq!(response.status, 503, "{session}");
            assert_eq!(response.headers["retry-after"], "5");
            assert!(!response.text().contains("article"));
        }
        assert_eq!(
            calls_for(&auth, session),
            2,
            "{session}: errors are not cached"
        );
    }
    assert!(cms.requests().is_empty());
    // Public pages do not ask the session source at all.
    assert_eq!(
        get(&gate.url("/public/a"), Some("sessionid=broken-1"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn on_error_403_answers_a_failing_check_with_the_deny_page() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(cms.addr, auth.addr, "on_error = \"403\"", "", "");
    let gate = Gate::start_with(&config, &[]).await;
    let response = get(&gate.url("/videos/a"), Some("sessionid=broken-2")).await;
    assert_eq!(response.status, 403);
    assert!(response.text().contains("403 Forbidden"));
}

#[tokio::test]
async fn a_dead_session_check_is_a_503() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = forward_auth_config(cms.addr, closed, "", "", "");
    let gate = Gate::start_with(&config, &[]).await;
    assert_eq!(
        get(&gate.url("/videos/a"), Some("sessionid=good-1"))
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn the_session_check_gets_the_cookies_fixed_headers_and_the_original_request() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "headers = { \"X-Check-Secret\" = \"s3\" }",
        "",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let response = send(
        &h2_client(),
        http::Request::get(gate.url("/videos/a?x=1"))
            .header("cookie", "theme=dark")
            .header("cookie", "sessionid=good-h2")
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = auth.requests().pop().unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri.path(), "/check");
    assert_eq!(
        cookie_of(&seen),
        "sessionid=good-h2",
        "only the session cookie being checked"
    );
    assert_eq!(seen.headers["x-check-secret"], "s3");
    assert_eq!(seen.headers["x-original-method"], "GET");
    assert_eq!(seen.headers["x-original-uri"], "/videos/a?x=1");
}

#[tokio::test]
async fn the_cache_survives_a_reload_that_keeps_the_session_source() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "",
        "[reload]\ninterval = \"50ms\"\n",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let cookie = Some("sessionid=good-stays");
    assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 200);
    assert_eq!(auth.requests().len(), 1);

    // Routes change; [session.allowlist] does not.
    let routes_changed = config.replacen("gated = false", "gated = true", 1);
    std::fs::write(gate.config_path(), &routes_changed).unwrap();
    eventually_status(&gate.url("/public/a"), None, 403).await;
    assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 200);
    assert_eq!(auth.requests().len(), 1, "still cached after the reload");

    // The session check's settings change: a new source, a new cache.
    let source_changed = routes_changed.replacen("/check\"", "/check\"\ntimeout = \"3s\"", 1);
    std::fs::write(gate.config_path(), &source_changed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the new source asks again");
        assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn eventually_status(url: &str, cookie: Option<&str>, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(url, cookie).await.status != want {
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cookie_name_ending_in_a_star_takes_the_wordpress_cookie() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = Cms::start(|seen| {
        let mut reply = Reply::with_type("text/plain", "");
        reply.status = if cookie_of(seen).contains("wordpress_logged_in_abc123=alice%7C1%7Ct") {
            200
        } else {
            403
        };
        reply
    })
    .await;
    let config = forward_auth_config(cms.addr, auth.addr, "", "", "").replacen(
        "cookie = \"sessionid\"",
        "cookie = \"wordpress_logged_in_*\"",
        1,
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    let wordpress = "wordpress_test_cookie=WP; wordpress_logged_in_abc123=alice%7C1%7Ct";
    assert_eq!(get(&url, Some(wordpress)).await.status, 200);
    assert_eq!(
        get(&url, Some("wordpress_test_cookie=WP")).await.status,
        403
    );
    assert_eq!(
        get(&url, Some("wordpress_logged_in_abc123=mallory%7C1%7Ct"))
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_source_failures_is_logged_once_with_its_cause() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, forward_auth_config(cms.addr, closed, "", "", "")).unwrap();
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    for i in 0..5 {
        let cookie = format!("sessionid=good-{i}");
        assert_eq!(
            get(&format!("{base}/videos/a"), Some(&cookie)).await.status,
            503
        );
    }
    let log = gateway.terminate();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session source failing"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("Connection refused"),
        "the cause: {}",
        warnings[0]
    );
    assert_eq!(
        log.matches("status=503").count(),
        5,
        "each request has its line"
    );
    assert!(!log.contains("good-"), "no session id in the log");
}

#[tokio::test]
async fn a_second_cookie_value_cannot_ride_on_the_answer_for_the_first() {
    // The CMS reads the last value of a repeated cookie, as Django does.
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = Cms::start(|seen| {
        let cookie = cookie_of(seen);
        let last = cookie
            .split(';')
            .rev()
            .find_map(|pair| pair.trim().strip_prefix("sessionid="))
            .unwrap_or_default()
            .to_string();
        let mut reply = Reply::with_type("text/plain", "");
        reply.status = if last == "good-real" { 200 } else { 403 };
        reply
    })
    .await;
    let gate = Gate::start_with(&forward_auth_config(cms.addr, auth.addr, "", "", ""), &[]).await;
    let url = gate.url("/videos/a");
    let planted = "sessionid=backdoor; sessionid=good-real";
    assert_eq!(get(&url, Some(planted)).await.status, 200);
    assert_eq!(
        get(&url, Some("sessionid=backdoor")).await.status,
        403,
        "the planted value was never vouched for"
    );
}

#[tokio::test]
async fn a_value_the_source_cannot_answer_for_does_not_hide_an_allowed_one() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = session_check().await;
    let gate = Gate::start_with(&forward_auth_config(cms.addr, auth.addr, "", "", ""), &[]).await;
    let url = gate.url("/videos/a");
    for cookie in [
        "sessionid=broken-stale; sessionid=good-member",
        "sessionid=good-member; sessionid=broken-stale",
    ] {
        assert_eq!(get(&url, Some(cookie)).await.status, 200, "{cookie}");
    }
    // With no value let in, the failure still decides: fail closed, as a 503.
    assert_eq!(
        get(&url, Some("sessionid=broken-stale; sessionid=nobody"))
            .await
            .status,
        503
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crowd_of_new_sessions_takes_at_most_max_in_flight_checks_at_once() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let auth = Cms::start(|_| {
        let mut reply = Reply::with_type("text/plain", "");
        reply.head_delay = Duration::from_millis(100);
        reply
    })
    .await;
    let config = forward_auth_config(cms.addr, auth.addr, "", "max_in_flight = 2", "");
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    let visitors: Vec<_> = (0..12)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, Some(&format!("sessionid=new-{n}"))).await.status })
        })
        .collect();
    for visitor in visitors {
        assert_eq!(visitor.await.unwrap(), 200, "each waited for a place");
    }
    assert_eq!(auth.requests().len(), 12);
    let connections = auth.accepted.load(Ordering::SeqCst);
    // Two places, and a connection handed back may be a moment late for
    // the next check: far from one connection per visitor.
    assert!(connections <= 4, "{connections} connections to the check");
}
