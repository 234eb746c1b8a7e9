//! Session sources beyond a fixed file: the CMS's own session check behind
//! the verdict cache, per-video entitlements, hashed file entries, cookie
//! name prefixes, logouts and failures.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// The standard test config with the CMS's session check at `auth` as the
/// session source; `source_lines` go into its table, `allowlist_lines` into
/// `[session.allowlist]`, `extra` at the end.
fn forward_auth_config(
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

fn cookie_of(seen: &Seen) -> String {
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
    let started = Instant::now();
    let responses = futures_join_all(requests).await;
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
    tokio::time::sleep(expiry.saturating_sub(started.elapsed())).await;
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

/// A CMS whose `/public/logout` clears the session cookie with `set_cookie`
/// (ending the session at once, answering after `logout_delay`), and its
/// session check, which allows everyone until then and answers after
/// `check_delay`.
async fn cms_with_logout(
    set_cookie: &'static str,
    check_delay: Duration,
    logout_delay: Duration,
) -> (Cms, Cms) {
    let logged_out = Arc::new(AtomicBool::new(false));
    let cms = {
        let logged_out = logged_out.clone();
        Cms::start(move |seen| {
            if seen.uri.path() == "/public/logout" {
                logged_out.store(true, Ordering::SeqCst);
                let mut reply = Reply::html("bye").header("set-cookie", set_cookie);
                reply.head_delay = logout_delay;
                reply
            } else {
                Reply::html("article")
            }
        })
        .await
    };
    let auth = Cms::start(move |_| {
        let mut reply = Reply::with_type("text/plain", "");
        reply.status = if logged_out.load(Ordering::SeqCst) {
            403
        } else {
            200
        };
        reply.head_delay = check_delay;
        reply
    })
    .await;
    (cms, auth)
}

#[tokio::test]
async fn a_logout_through_the_gateway_drops_the_cached_verdict_at_once() {
    let (cms, auth) = cms_with_logout(
        "sessionid=; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
        Duration::ZERO,
        Duration::ZERO,
    )
    .await;
    let config = forward_auth_config(cms.addr, auth.addr, "", "", "");
    let gate = Gate::start_with(&config, &[]).await;
    let cookie = Some("sessionid=good-leaving");
    assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 200);
    assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 200);
    assert_eq!(
        auth.requests().len(),
        1,
        "cached for the default ttl of a minute"
    );
    let bye = get(&gate.url("/public/logout"), cookie).await;
    assert!(bye.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(get(&gate.url("/videos/a"), cookie).await.status, 403);
    assert_eq!(auth.requests().len(), 2);
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

async fn eventually_status(url: &str, cookie: Option<&str>, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(url, cookie).await.status != want {
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A page with three embeds: shares `a`, `b` and `c`, where `c` already carries a token.
fn three_embeds() -> String {
    let url = |share: &str| format!("https://api.vod2.infomaniak.com/res/embed/{share}.html");
    format!(
        "<p>one</p><iframe src=\"{}?autoplay=1\"></iframe>\n<iframe src=\"{}\"></iframe>\n<iframe src=\"{}?token=st=1~exp=9999999999~acl=/hls/c/*~hmac=00&amp;autoplay=1\"></iframe>\n",
        url("a"),
        url("b"),
        url("c")
    )
}

fn assert_only_b_has_a_token(page: &str) {
    let tokens = tokens_in(page);
    assert_eq!(tokens.len(), 1, "{page}");
    assert_eq!(check_token(&tokens[0], KEY_HEX).2, "/hls/b/*");
    assert!(
        page.contains("embed/a.html?autoplay=1\""),
        "a untouched: {page}"
    );
    assert!(
        page.contains("embed/c.html?autoplay=1\""),
        "c's old token removed, the rest kept: {page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embeds_the_visitor_is_not_entitled_to_get_no_token_and_lose_old_ones() {
    let cms = Cms::fixed(Reply::html(three_embeds())).await;
    let dir = tempfile::tempdir().unwrap();
    let digest = hex_sha256("hashed-member-1");
    std::fs::write(
        dir.path().join("allowlist.txt"),
        format!("{MEMBER} b\nsha256:{digest} b x\nall-videos-1\n"),
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, config_text(cms.addr, "")).unwrap();
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));

    let page = get_as_member(&format!("{base}/videos/a")).await;
    assert_only_b_has_a_token(&page.text());
    let line = gateway.wait_for("decision=\"allowed\"");
    assert!(
        line.contains("tokens=1") && line.contains("unentitled=2"),
        "{line}"
    );

    let hashed = get(
        &format!("{base}/videos/a"),
        Some("sessionid=hashed-member-1"),
    )
    .await;
    assert_only_b_has_a_token(&hashed.text());
    let everything = get(&format!("{base}/videos/a"), Some("sessionid=all-videos-1")).await;
    assert_eq!(tokens_in(&everything.text()).len(), 3);
    gateway.terminate();
}

fn hex_sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn the_session_check_can_name_the_videos_in_a_header() {
    let cms = Cms::fixed(Reply::html(three_embeds())).await;
    let auth = Cms::start(|seen| {
        let mut reply = Reply::with_type("text/plain", "");
        if cookie_of(seen).contains("sessionid=good-all") {
            reply = reply.header("x-embed-shares", "*");
        } else if cookie_of(seen).contains("sessionid=good-b") {
            reply = reply.header("x-embed-shares", "x, b");
        }
        reply
    })
    .await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "shares_header = \"X-Embed-Shares\"",
        "",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    assert_only_b_has_a_token(&get(&url, Some("sessionid=good-b")).await.text());
    assert_eq!(
        tokens_in(&get(&url, Some("sessionid=good-all")).await.text()).len(),
        3
    );
    let no_header = get(&url, Some("sessionid=good-none")).await;
    assert_eq!(no_header.status, 200, "allowed in");
    assert!(tokens_in(&no_header.text()).is_empty(), "but to no video");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_during_a_slow_session_check_still_wins() {
    // The session check decides when asked and answers late.
    let (cms, auth) = cms_with_logout(
        "sessionid=; Max-Age=0; Path=/",
        Duration::from_millis(600),
        Duration::ZERO,
    )
    .await;
    let gate = Gate::start_with(&forward_auth_config(cms.addr, auth.addr, "", "", ""), &[]).await;
    let cookie = "sessionid=good-racing";
    let url = gate.url("/videos/a");
    let in_flight = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, Some(cookie)).await.status })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        get(&gate.url("/public/logout"), Some(cookie)).await.status,
        200
    );
    assert_eq!(in_flight.await.unwrap(), 200, "asked before the logout");
    assert_eq!(
        get(&url, Some(cookie)).await.status,
        403,
        "the late verdict did not stick"
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
async fn a_logout_the_visitor_did_not_wait_for_still_drops_the_cached_verdict() {
    // The CMS ends the session at once but answers late; the visitor goes
    // away first, so the gateway never sees the answer's Set-Cookie.
    let (cms, auth) = cms_with_logout(
        "sessionid=; Max-Age=0; Path=/",
        Duration::ZERO,
        Duration::from_secs(2),
    )
    .await;
    let gate = Gate::start_with(&forward_auth_config(cms.addr, auth.addr, "", "", ""), &[]).await;
    let cookie = Some("sessionid=good-leaving");
    let url = gate.url("/videos/a");
    assert_eq!(get(&url, cookie).await.status, 200);
    assert_eq!(get(&url, cookie).await.status, 200, "from the cache");
    assert_eq!(auth.requests().len(), 1);
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        get(&gate.url("/public/logout"), cookie),
    )
    .await;
    assert!(abandoned.is_err(), "the visitor left before the answer");
    eventually_status(&url, cookie, 403).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verdict_looked_up_across_a_logout_does_not_come_back_after_it() {
    // The check answers 600 ms after it is asked, as it was when asked; a
    // logout comes meanwhile. Verdicts live a second.
    let (cms, auth) = cms_with_logout(
        "sessionid=; Max-Age=0; Path=/",
        Duration::from_millis(600),
        Duration::ZERO,
    )
    .await;
    let config = forward_auth_config(
        cms.addr,
        auth.addr,
        "",
        "",
        "[session.allowlist.cache]\nttl = \"1s\"\nnegative_ttl = \"1s\"\n",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let cookie = "sessionid=good-crossing";
    let url = gate.url("/videos/a");
    let started = Instant::now();
    let in_flight = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, Some(cookie)).await.status })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        get(&gate.url("/public/logout"), Some(cookie)).await.status,
        200
    );
    assert_eq!(in_flight.await.unwrap(), 200, "asked before the logout");
    // Past the logout's mark as it was (a ttl after the logout), within the
    // late verdict's own ttl: nothing of it may be left.
    let mark_gone = Duration::from_millis(150 + 1000 + 150);
    tokio::time::sleep(mark_gone.saturating_sub(started.elapsed())).await;
    assert_eq!(get(&url, Some(cookie)).await.status, 403);
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
