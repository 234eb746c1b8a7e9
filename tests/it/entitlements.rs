//! Per-video entitlements: embeds the visitor is not entitled to get no token
//! and lose any they carried, whether the allowlist file (plain or hashed
//! entries) or the session check names the videos.

use std::process::Command;

use crate::common::*;
use crate::sessions::{cookie_of, forward_auth_config};

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
