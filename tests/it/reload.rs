//! Live reload: SIGHUP and file changes rebuild the runtime; a bad config
//! keeps the running one; requests in flight finish under the runtime they
//! started with; the CMS connection pool survives a reload that keeps [upstream].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::*;

const OTHER_KEY_HEX: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// Config text that turns off file watching, so that only SIGHUP reloads.
fn signal_only(text: String) -> String {
    format!("{text}\n[reload]\nwatch = false\n")
}

/// Config text that watches files every 50 ms.
fn watching(text: String) -> String {
    format!("{text}\n[reload]\ninterval = \"50ms\"\n")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `embedgate run` on `config` (beside an allowlist holding the member); returns it and its base URL.
fn start(dir: &Path, config: &str) -> (Running, String) {
    write(dir, "allowlist.txt", &format!("{MEMBER}\n"));
    let path = write(dir, "gateway.toml", config);
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&path));
    let base = listening_url(&gateway.wait_for("listening on"));
    (gateway, base)
}

/// Rewrites gateway.toml, sends SIGHUP and waits for the reload's log line.
fn reload_with(gateway: &mut Running, dir: &Path, config: &str, expect: &str) -> String {
    let mark = gateway.mark();
    write(dir, "gateway.toml", config);
    gateway.signal("HUP");
    gateway.wait_for_after(mark, expect)
}

/// Polls `url` until its status is `want`; fails after 10 s.
async fn eventually_status(url: &str, cookie: Option<&str>, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(url, cookie).await.status;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_changed_route_table_and_back() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let dir = tempfile::tempdir().unwrap();
    let gated = signal_only(config_text(cms.addr, ""));
    let public = gated.replacen("gated = true", "access = \"public\"", 1);
    assert_ne!(gated, public);
    let (mut gateway, base) = start(dir.path(), &gated);
    let page = format!("{base}/videos/a");

    assert_eq!(get(&page, None).await.status, 403);
    reload_with(&mut gateway, dir.path(), &public, "config reloaded");
    assert_eq!(get(&page, None).await.text(), "article");
    // Back to gated, with a worker count that only a restart can change.
    let restart_only = with_setting(gated, "server", "workers = 3");
    let mark = gateway.mark();
    let warning = reload_with(&mut gateway, dir.path(), &restart_only, "restart");
    assert!(warning.contains("server.workers"), "{warning}");
    gateway.wait_for_after(mark, "config reloaded");
    assert_eq!(get(&page, None).await.status, 403);
    let log = gateway.terminate();
    assert!(log.contains("trigger=\"SIGHUP\""), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_signal_or_watching_nothing_changes() {
    // The counterpart of the test above: the same edit, no SIGHUP, watch off.
    let cms = Cms::fixed(Reply::html("article")).await;
    let dir = tempfile::tempdir().unwrap();
    let gated = signal_only(config_text(cms.addr, ""));
    let (gateway, base) = start(dir.path(), &gated);
    write(
        dir.path(),
        "gateway.toml",
        &gated.replacen("gated = true", "gated = false", 1),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&format!("{base}/videos/a"), None).await.status, 403);
    let log = gateway.terminate();
    assert!(!log.contains("config reloaded"), "{log}");
}

#[tokio::test]
async fn a_changed_allowlist_file_is_picked_up_without_a_signal() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let gate = Gate::start_with(&watching(config_text(cms.addr, "")), &[]).await;
    let page = gate.url("/videos/a");
    let newcomer = "sessionid=newcomer-1";
    let member = format!("sessionid={MEMBER}");
    assert_eq!(get(&page, Some(newcomer)).await.status, 403);
    assert_eq!(get(&page, Some(&member)).await.status, 200);

    // The member leaves and a newcomer signs up.
    write(gate.dir.path(), "allowlist.txt", "newcomer-1\n");
    eventually_status(&page, Some(newcomer), 200).await;
    assert_eq!(get(&page, Some(&member)).await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_with_a_syntax_error_keeps_the_running_one_and_says_where() {
    let cms = Cms::fixed(Reply::html("article")).await;
    let dir = tempfile::tempdir().unwrap();
    let good = signal_only(config_text(cms.addr, ""));
    let (mut gateway, base) = start(dir.path(), &good);

    let broken = good.replacen("gated = true", "gated = maybe", 1);
    let line = broken[..broken.find("gated = maybe").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let failure = reload_with(&mut gateway, dir.path(), &broken, "reload failed");
    assert!(
        failure.contains(&format!("gateway.toml:{line}:9")),
        "file:line:column in {failure}"
    );
    assert!(failure.contains("keeping the running config"), "{failure}");
    // The old runtime still serves: gated stays gated, public stays public.
    assert_eq!(get(&format!("{base}/videos/a"), None).await.status, 403);
    assert_eq!(get_as_member(&format!("{base}/videos/a")).await.status, 200);
    assert_eq!(get(&format!("{base}/public/a"), None).await.status, 200);

    // `embedgate check` prints the same place for the same file.
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    let check_err = String::from_utf8_lossy(&check.stderr);
    assert!(
        check_err.contains(&format!("gateway.toml:{line}:9")),
        "{check_err}"
    );

    // Once the file is fixed, the next signal applies it.
    let fixed = good.replacen("gated = true", "gated = false", 1);
    reload_with(&mut gateway, dir.path(), &fixed, "config reloaded");
    assert_eq!(get(&format!("{base}/videos/a"), None).await.status, 200);
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_key_file_keeps_the_running_key_and_says_where() {
    let cms = Cms::fixed(Reply::html(format!("<iframe src=\"{EMBED}\"></iframe>"))).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "video.key", KEY_HEX);
    let text = watching(config_text(cms.addr, ""))
        .replace(&format!("key = \"{KEY_HEX}\""), "key_file = \"video.key\"");
    let (mut gateway, base) = start(dir.path(), &text);
    let page = format!("{base}/videos/a");
    let value_at = text.find("\"video.key\"").unwrap();
    let key_line = text[..value_at].matches('\n').count() + 1;
    let key_column = value_at - text[..value_at].rfind('\n').map_or(0, |i| i + 1) + 1;

    // The key file disappears: the watcher sees it, the rebuild fails.
    let mark = gateway.mark();
    std::fs::remove_file(dir.path().join("video.key")).unwrap();
    let failure = gateway.wait_for_after(mark, "reload failed");
    assert!(
        failure.contains(&format!(
            "gateway.toml:{key_line}:{key_column}: embed[0].token.key"
        )),
        "{failure}"
    );
    assert!(failure.contains("cannot read the key"), "{failure}");
    let served = get_as_member(&page).await;
    check_token(&tokens_in(&served.text())[0], KEY_HEX);

    // A key file that is there but not a key fails the same way.
    let mark = gateway.mark();
    write(dir.path(), "video.key", "not a key");
    let failure = gateway.wait_for_after(mark, "reload failed");
    assert!(failure.contains("key is not hex"), "{failure}");
    assert!(
        !failure.contains("not a key"),
        "the file's text is not logged"
    );
    let served = get_as_member(&page).await;
    check_token(&tokens_in(&served.text())[0], KEY_HEX);

    // A key caught half-written (or mistyped) short is refused too.
    let mark = gateway.mark();
    write(dir.path(), "video.key", &KEY_HEX[..8]);
    let failure = gateway.wait_for_after(mark, "reload failed");
    assert!(failure.contains("key is 4 bytes"), "{failure}");
    let served = get_as_member(&page).await;
    check_token(&tokens_in(&served.text())[0], KEY_HEX);

    // A new good key is picked up.
    let mark = gateway.mark();
    write(dir.path(), "video.key", OTHER_KEY_HEX);
    gateway.wait_for_after(mark, "config reloaded");
    let served = get_as_member(&page).await;
    check_token(&tokens_in(&served.text())[0], OTHER_KEY_HEX);
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_a_failed_reload_could_not_read_is_watched_until_it_appears() {
    let cms = Cms::fixed(Reply::html("members only")).await;
    let dir = tempfile::tempdir().unwrap();
    let text = watching(config_text(cms.addr, ""));
    let (mut gateway, base) = start(dir.path(), &text);
    let page = format!("{base}/videos/a");
    let newcomer = "sessionid=newcomer-0123456789abcdef";
    assert_eq!(get(&page, Some(newcomer)).await.status, 403);

    // gateway.toml names a list that is not there yet: the reload fails.
    let mark = gateway.mark();
    let moved = text.replacen(
        "file = \"allowlist.txt\"",
        "file = \"new-allowlist.txt\"",
        1,
    );
    assert_ne!(moved, text);
    write(dir.path(), "gateway.toml", &moved);
    let failure = gateway.wait_for_after(mark, "reload failed");
    assert!(failure.contains("new-allowlist.txt"), "{failure}");

    // The list appears, with no signal and no further edit of gateway.toml.
    let mark = gateway.mark();
    write(
        dir.path(),
        "new-allowlist.txt",
        "newcomer-0123456789abcdef\n",
    );
    gateway.wait_for_after(mark, "config reloaded");
    assert_eq!(get(&page, Some(newcomer)).await.status, 200);
    gateway.terminate();
}

/// The `st=..` tokens in `html` carried by query parameter `param`.
fn tokens_under(html: &str, param: &str) -> Vec<String> {
    let needle = format!("{param}=st=");
    html.match_indices(&needle)
        .filter(|(i, _)| matches!(html.as_bytes()[i - 1], b'?' | b';' | b'&'))
        .map(|(i, _)| {
            let rest = &html[i + param.len() + 1..];
            let end = rest.find(['"', '&']).unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_fails_no_request_and_never_mixes_two_configs() {
    const EMBEDS: usize = 3;
    // A page streamed in pieces, so reloads land while pages are in flight.
    let embed = format!("<iframe src=\"{EMBED}\"></iframe>");
    let chunks: Vec<Bytes> = (0..EMBEDS)
        .map(|i| Bytes::from(format!("<p>part {i}</p>{embed}")))
        .collect();
    let mut reply = Reply::chunked("text/html; charset=utf-8", chunks);
    reply.chunk_delay = Duration::from_millis(2);
    let cms = Cms::fixed(reply).await;

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "deny-a.html", "deny page A");
    write(dir.path(), "deny-b.html", "deny page B");
    let base_text = signal_only(config_text(cms.addr, ""));
    let config_a = base_text.replacen(
        "cookie = \"sessionid\"",
        "cookie = \"sessionid\"\ndeny_page = \"deny-a.html\"",
        1,
    );
    let config_b = base_text
        .replacen(
            "cookie = \"sessionid\"",
            "cookie = \"sessionid\"\ndeny_page = \"deny-b.html\"",
            1,
        )
        .replace(
            &format!("key = \"{KEY_HEX}\""),
            &format!("key = \"{OTHER_KEY_HEX}\""),
        )
        .replacen("[embed.token]", "param = \"key\"\n\n[embed.token]", 1);
    let (mut gateway, base) = start(dir.path(), &config_a);

    let stop = Arc::new(AtomicBool::new(false));
    let seen_a = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for n in 0..8 {
        let (stop, seen_a, seen_b) = (stop.clone(), seen_a.clone(), seen_b.clone());
        let url = format!("{base}/videos/a");
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let member = n % 2 == 0;
                let mut request = http::Request::get(&url);
                if member {
                    request = request.header("cookie", format!("sessionid={MEMBER}"));
                }
                let response = send(&client, request.body(empty_body()).unwrap()).await;
                let text = response.text();
                let is_a = if member {
                    assert_eq!(response.status, 200, "{text}");
                    let (a, b) = (tokens_under(&text, "token"), tokens_under(&text, "key"));
                    match (a.len(), b.len()) {
                        (EMBEDS, 0) => a.iter().for_each(|t| drop(check_token(t, KEY_HEX))),
                        (0, EMBEDS) => b.iter().for_each(|t| drop(check_token(t, OTHER_KEY_HEX))),
                        _ => panic!("a page mixing two configs: {text}"),
                    }
                    !a.is_empty()
                } else {
                    assert_eq!(response.status, 403);
                    match text.as_str() {
                        "deny page A" => true,
                        "deny page B" => false,
                        other => panic!("unexpected deny page {other:?}"),
                    }
                };
                if is_a { &seen_a } else { &seen_b }.fetch_add(1, Ordering::Relaxed);
                served += 1;
            }
            served
        }));
    }

    let mut reloads = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let next = if reloads % 2 == 0 {
            &config_b
        } else {
            &config_a
        };
        reload_with(&mut gateway, dir.path(), next, "config reloaded");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for client in clients {
        served += client.await.expect("no client saw a failure");
    }
    eprintln!(
        "{reloads} reloads, {served} requests, {} under A, {} under B",
        seen_a.load(Ordering::Relaxed),
        seen_b.load(Ordering::Relaxed)
    );
    assert!(reloads >= 10, "only {reloads} reloads");
    assert!(served > 100, "only {served} requests");
    assert!(seen_a.load(Ordering::Relaxed) > 0 && seen_b.load(Ordering::Relaxed) > 0);
    gateway.terminate();
}

#[tokio::test]
async fn a_reload_that_keeps_upstream_keeps_the_cms_connection() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let text = watching(config_text(cms.addr, ""));
    let gate = Gate::start_with(&text, &[]).await;
    let public = gate.url("/public/a");
    assert_eq!(get(&public, None).await.status, 200);
    assert_eq!(cms.connections(), 1);

    // Routes change, [upstream] does not: the pooled connection is reused.
    let routes_changed = text.replacen("gated = false", "gated = true", 1);
    write(gate.dir.path(), "gateway.toml", &routes_changed);
    eventually_status(&public, None, 403).await;
    assert_eq!(get_as_member(&public).await.status, 200);
    assert_eq!(cms.connections(), 1, "the keep-alive connection survived");

    // [upstream] changes: a new client, so a new connection.
    let upstream_changed = text.replacen("connect_timeout = \"1s\"", "connect_timeout = \"2s\"", 1);
    write(gate.dir.path(), "gateway.toml", &upstream_changed);
    eventually_status(&public, None, 200).await;
    assert_eq!(
        cms.connections(),
        2,
        "a changed [upstream] opens a new pool"
    );
}
