//! Readiness: /readyz follows the upstream and the session source, with
//! checks that go on for as long as the admin listener serves.

use std::time::{Duration, Instant};

use crate::admin::{admin_url, with_admin};
use crate::common::*;

/// Asks `/readyz` until it answers `want`, for up to 10 s; its body.
async fn readyz_until(gate: &Gate, want: u16) -> String {
    let readyz = admin_url(gate, "/readyz");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&readyz, None).await;
        if answer.status == want {
            return answer.text();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_follows_the_upstream_and_healthz_only_says_alive() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let cms_addr = cms.addr;
    let gate = Gate::start_with(&with_admin(config_text(cms.addr, "")), &[]).await;
    let ready = readyz_until(&gate, 200).await;
    assert!(ready.contains("\"upstream\":\"ok\""), "{ready}");

    drop(cms);
    let not_ready = readyz_until(&gate, 503).await;
    let json: serde_json::Value = serde_json::from_str(&not_ready).unwrap();
    assert_eq!(json["ready"], false);
    assert_ne!(json["checks"]["upstream"], "ok", "{not_ready}");
    assert_eq!(json["checks"]["sessions"], "ok");
    assert_eq!(get(&admin_url(&gate, "/healthz"), None).await.status, 200);

    let _back = Cms::start_on(cms_addr, |_| Reply::html("page")).await;
    readyz_until(&gate, 200).await;
    assert_eq!(get(&admin_url(&gate, "/nothing"), None).await.status, 404);
}

#[tokio::test]
async fn readyz_says_when_the_session_source_does_not_answer() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = with_admin(config_text(cms.addr, "").replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!("[session.allowlist.forward_auth]\nurl = \"http://{closed}/check\"\n"),
        1,
    ));
    let gate = Gate::start_with(&text, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let answer = get(&admin_url(&gate, "/readyz"), None).await;
        let json: serde_json::Value = serde_json::from_str(&answer.text()).unwrap();
        if json["checks"]["sessions"] != "not checked yet" {
            assert_eq!(answer.status, 503);
            break json;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["checks"]["upstream"], "ok");
    let why = body["checks"]["sessions"].as_str().unwrap();
    assert!(why.contains("session check"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_is_still_checked_after_a_reload_drops_the_admin_table() {
    // The admin listener runs until a restart whatever the config says now,
    // so what it reports must go on being checked.
    let cms = Cms::fixed(Reply::html("page")).await;
    let text = with_admin(format!(
        "{}\n[reload]\ninterval = \"50ms\"\n",
        config_text(cms.addr, "")
    ));
    let gate = Gate::start_with(&text, &[]).await;
    readyz_until(&gate, 200).await;
    let without_admin = text.split("\n[admin]\n").next().unwrap().to_string();
    assert!(without_admin.contains("[reload]"), "{without_admin}");
    std::fs::write(gate.config_path(), without_admin).unwrap();
    scrape_until(&gate, "embedgate_reloads_total{result=\"ok\"}", 1.0).await;
    drop(cms);
    let not_ready = readyz_until(&gate, 503).await;
    assert!(!not_ready.contains("\"upstream\":\"ok\""), "{not_ready}");
}
