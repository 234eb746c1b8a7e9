//! Logouts against the verdict cache: a logout through the gateway drops the
//! cached verdict at once, even when the visitor does not wait for its answer
//! or a session check asked before it answers after it, or a reload puts
//! another session source in force while it is at the CMS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::sessions::{eventually_status, forward_auth_config};

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
    (cms, session_check(logged_out, check_delay).await)
}

/// A session check that allows everyone until `logged_out`, answering after `delay`.
async fn session_check(logged_out: Arc<AtomicBool>, delay: Duration) -> Cms {
    Cms::start(move |_| {
        let mut reply = Reply::with_type("text/plain", "");
        reply.status = if logged_out.load(Ordering::SeqCst) {
            403
        } else {
            200
        };
        reply.head_delay = delay;
        reply
    })
    .await
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
async fn a_logout_answered_after_a_reload_drops_the_verdict_the_new_source_cached() {
    // The CMS ends the session only as it answers the logout, 3 s on. A
    // reload meanwhile builds a new session source, whose cache learns the
    // session while it is still live.
    let logged_out = Arc::new(AtomicBool::new(false));
    let cms = {
        let logged_out = logged_out.clone();
        Cms::start(move |seen| {
            if seen.uri.path() != "/public/logout" {
                return Reply::html("article");
            }
            let logged_out = logged_out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2900)).await;
                logged_out.store(true, Ordering::SeqCst);
            });
            let mut reply = Reply::html("bye").header("set-cookie", "sessionid=; Max-Age=0");
            reply.head_delay = Duration::from_millis(3000);
            reply
        })
        .await
    };
    let auth = session_check(logged_out, Duration::ZERO).await;
    let admin = "\n[reload]\ninterval = \"50ms\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    // The logout takes longer than the tests' usual response_timeout.
    let patient = |config: String| {
        assert!(config.contains("response_timeout = \"2s\""));
        config.replacen("response_timeout = \"2s\"", "response_timeout = \"10s\"", 1)
    };
    let config = patient(forward_auth_config(cms.addr, auth.addr, "", "", admin));
    let gate = Gate::start_with(&config, &[]).await;
    let cookie = Some("sessionid=good-leaving");
    let url = gate.url("/videos/a");
    assert_eq!(get(&url, cookie).await.status, 200);

    let logout = {
        let url = gate.url("/public/logout");
        tokio::spawn(async move { get(&url, cookie).await })
    };
    let longer_ttl = "\n[session.allowlist.cache]\nttl = \"61s\"\n";
    let extra = format!("{admin}{longer_ttl}");
    let reloaded = patient(forward_auth_config(cms.addr, auth.addr, "", "", &extra));
    std::fs::write(gate.config_path(), reloaded).unwrap();
    scrape_until(&gate, "embedgate_reloads_total{result=\"ok\"}", 1.0).await;
    let asked = auth.requests().len();
    assert_eq!(get(&url, cookie).await.status, 200, "still signed in");
    assert_eq!(auth.requests().len(), asked + 1, "asked by the new source");

    let bye = logout.await.unwrap();
    assert!(bye.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        get(&url, cookie).await.status,
        403,
        "the new source's verdict stood"
    );
}
