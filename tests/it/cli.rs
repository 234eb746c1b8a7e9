//! The `embedgate` binary: subcommands, start-up, logs, signals and the demo.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn help_explains_every_subcommand() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in ["run", "demo", "check", "mint", "verify", "--config"] {
        assert!(help.contains(word), "--help mentions {word}:\n{help}");
    }
}

#[test]
fn check_accepts_a_good_config_and_pinpoints_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), &config_text("127.0.0.1:9".parse().unwrap(), ""));
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout)
        .contains("ok (2 routes, 1 embeds, 1 allowlisted sessions)"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n").unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("bad.toml:3:1: unknown field `lisen`"), "{err}");
}

#[test]
fn the_config_path_defaults_to_gateway_toml() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &config_text("127.0.0.1:9".parse().unwrap(), ""));
    let output = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("gateway.toml: ok"));
}

#[test]
fn mint_and_verify_round_trip_and_reject_a_tampered_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text("127.0.0.1:9".parse().unwrap(), ""));
    let output = Command::new(BIN)
        .arg("mint")
        .arg(EMBED)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    let token = &tokens_in(&url)[0];
    let (_, _, acl) = check_token(token, KEY_HEX);
    assert_eq!(acl, "/hls/1jhvl2uqa5rdf/*");

    let verify = |token: &str| {
        Command::new(BIN)
            .arg("verify")
            .arg(token)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let ok = verify(token);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout)
        .contains("valid for embed[0]: acl=/hls/1jhvl2uqa5rdf/*"));
    let tampered = token.replacen("acl=/hls/", "acl=/", 1);
    let bad = verify(&tampered);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signature does not match"));

    let other = Command::new(BIN)
        .args(["mint", "https://example.com/x.html", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_logs_one_line_per_request_without_secrets_and_stops_on_sigterm() {
    let page = format!("<html><iframe src=\"{EMBED}\"></iframe></html>");
    let cms = Cms::fixed(Reply::html(page)).await;
    let dir = tempfile::tempdir().unwrap();
    // The key comes from the environment here, as in production.
    let text = config_text(cms.addr, "").replace(
        &format!("key = \"{KEY_HEX}\""),
        "key_env = \"EMBEDGATE_KEY\"",
    );
    let config = write_config(dir.path(), &text);
    let mut gateway = Running::spawn(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("EMBEDGATE_KEY", KEY_HEX),
    );
    let base = listening_url(&gateway.wait_for("listening on"));

    let allowed = get_as_member(&format!("{base}/videos/a?secret=q")).await;
    assert_eq!(allowed.status, 200);
    check_token(&tokens_in(&allowed.text())[0], KEY_HEX);
    assert_eq!(
        get(&format!("{base}/videos/a"), Some("sessionid=intruder-42"))
            .await
            .status,
        403
    );
    assert_eq!(get(&format!("{base}/public/b"), None).await.status, 200);

    let allowed_line = gateway.wait_for("decision=\"allowed\"").replace('"', "");
    for field in [
        "method=GET",
        "route=/videos/",
        "status=200",
        "upstream_status=200",
        "tokens=1",
        "latency_ms=",
        "session=",
    ] {
        assert!(allowed_line.contains(field), "{field} in {allowed_line}");
    }
    let denied_line = gateway.wait_for("decision=\"denied\"");
    assert!(
        denied_line.contains("session not on the allowlist"),
        "{denied_line}"
    );
    gateway.wait_for("path=/public/b");

    let log = gateway.terminate();
    assert!(log.contains("SIGTERM received"), "{log}");
    for secret in [MEMBER, "intruder-42", KEY_HEX, "secret=q"] {
        assert!(!log.contains(secret), "log leaks {secret}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_is_the_default_subcommand() {
    let cms = Cms::fixed(Reply::html("home")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(cms.addr, ""));
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    assert_eq!(get(&format!("{base}/public/"), None).await.text(), "home");
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_from_the_shipped_config_with_no_edits() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut demo = Running::spawn(
        Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--cms-listen",
                "127.0.0.1:0",
                "--video-listen",
                "127.0.0.1:0",
            ])
            .current_dir(root)
            .env_remove("EMBEDGATE_KEY"),
    );
    let value = |line: String| line.split_whitespace().last().unwrap().to_string();
    let video_host = value(demo.wait_for("  video host  http://"));
    let base = value(demo.wait_for("  gateway     http://"));
    let password = value(demo.wait_for("  password    "));

    let home = get(&format!("{base}/"), None).await;
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Sample CMS"));
    let refused = get(&format!("{base}/videos/intro"), None).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.text().contains("href=\"/login\""),
        "the 403 links to sign-in"
    );

    let sign_in = |name: &str, password: &str| {
        Request::post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!(
                "name={name}&password={password}"
            ))))
            .unwrap()
    };
    assert_eq!(send(&client(), sign_in("alice", "wrong")).await.status, 401);
    let signed_in = send(&client(), sign_in("alice", &password)).await;
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let article = get(&format!("{base}/videos/intro"), Some(&cookie)).await;
    assert_eq!(article.status, 200);
    let body = article.text();
    let demo_key = std::fs::read_to_string(Path::new(root).join("gateway.toml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("key = \"")
                .map(|k| k.trim_end_matches('"').to_string())
        })
        .expect("gateway.toml has an inline demo key");
    let tokens = tokens_in(&body);
    assert_eq!(tokens.len(), 2, "{body}");
    for token in &tokens {
        let (start, end, _) = check_token(token, &demo_key);
        assert_eq!(end - start, 60, "demo tokens last a minute");
    }
    // The video host opens each player with its token, and only with it.
    let player = body
        .split("src=\"")
        .find(|rest| rest.starts_with(&video_host))
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(get(&player, None).await.status, 200);
    let bare = player.split('?').next().unwrap();
    let refused = get(bare, None).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains(embedgate::demo::NOT_INCLUDED));
    let tampered = player.replacen("~hmac=", "~hmac=0", 1);
    assert!(get(&tampered, None)
        .await
        .text()
        .contains(embedgate::demo::EXPIRED));
    demo.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_is_logged_with_its_reason() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(dead, ""));
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    assert_eq!(get(&format!("{base}/public/x"), None).await.status, 502);
    let line = gateway.wait_for("status=502");
    for field in [
        "decision=\"error\"",
        "upstream unavailable",
        "Connection refused",
        "path=/public/x",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_cut_off_at_the_header_limit_is_logged_with_its_client() {
    use tokio::io::AsyncWriteExt;
    let cms = Cms::fixed(Reply::html("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let text = with_setting(
        config_text(cms.addr, ""),
        "server",
        "header_timeout = \"400ms\"",
    );
    let config = write_config(dir.path(), &text);
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    let addr = base.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let line = gateway.wait_for("no whole request head");
    let client = slow.local_addr().unwrap().to_string();
    assert!(line.contains("400ms"), "{line}");
    assert!(line.contains(&client), "{client} in {line}");
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_delivered_whole_is_logged_complete() {
    let chunks = vec![
        bytes::Bytes::from_static(b"<p>one</p>"),
        bytes::Bytes::from_static(b"<p>two</p>"),
        bytes::Bytes::from_static(b"<p>three</p>"),
    ];
    let cms = Cms::fixed(Reply::chunked("text/html", chunks)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(cms.addr, ""));
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    let passed = get(&format!("{base}/public/a"), None).await;
    assert_eq!(passed.text(), "<p>one</p><p>two</p><p>three</p>");
    let rewritten = get_as_member(&format!("{base}/videos/a")).await;
    assert_eq!(rewritten.text(), "<p>one</p><p>two</p><p>three</p>");
    let log = gateway.terminate();
    for path in ["path=/public/a", "path=/videos/a"] {
        let line = log.lines().find(|l| l.contains(path)).unwrap();
        assert!(line.contains("complete=true"), "{line}");
    }
}

/// A config with a named `ip = true` embed and a token route for its videos.
fn edge_config(dir: &Path) -> std::path::PathBuf {
    let extra = format!(
        r#"
[[embed]]
name = "cam"
src = "http://media.test/embed/{{share}}.html"

[embed.token]
kind = "edgeauth"
key = "{KEY_HEX}"
ttl = "5m"
acl = "/hls/{{share}}/*"
ip = true

[[route]]
prefix = "/hls/"
access = "token"

[route.token]
key = "{KEY_HEX}"
"#
    );
    write_config(dir, &config_text("127.0.0.1:9".parse().unwrap(), &extra))
}

/// `embedgate verify --path PATH [--ip IP] TOKEN`: the exit code and the
/// `name: outcome` lines it printed, in order.
fn verify_for(
    config: &Path,
    token: &str,
    path: &str,
    ip: Option<&str>,
) -> (Option<i32>, Vec<(String, String)>) {
    let mut command = Command::new(BIN);
    command.args(["verify", "--path", path]);
    if let Some(ip) = ip {
        command.args(["--ip", ip]);
    }
    let output = command
        .arg(token)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let checks = stdout
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, outcome)| (name.trim().to_string(), outcome.trim().to_string()))
        .filter(|(name, _)| ["signature", "window", "acl", "ip"].contains(&name.as_str()))
        .collect();
    (output.status.code(), checks)
}

/// The outcome `verify` printed for `check`.
fn outcome<'c>(checks: &'c [(String, String)], check: &str) -> &'c str {
    let found = checks.iter().find(|(name, _)| name == check);
    &found
        .unwrap_or_else(|| panic!("no {check} line in {checks:?}"))
        .1
}

#[test]
fn mint_for_an_address_then_verify_every_check_for_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = edge_config(dir.path());
    let output = Command::new(BIN)
        .args([
            "mint",
            "--embed",
            "cam",
            "--share",
            "abc123",
            "--ip",
            "203.0.113.9",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout).unwrap();
    let token = url
        .trim_end()
        .strip_prefix("http://media.test/embed/abc123.html?token=")
        .unwrap_or_else(|| panic!("an embed URL with a token: {url}"));
    assert!(token.starts_with("ip=203.0.113.9~st="), "{token}");

    let (code, checks) = verify_for(&config, token, "/hls/abc123/seg1.ts", Some("203.0.113.9"));
    assert_eq!(code, Some(0), "{checks:?}");
    let names: Vec<&str> = checks.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["signature", "window", "acl", "ip"]);
    for (name, outcome) in &checks {
        assert_eq!(outcome, "ok", "{name}");
    }

    // Another client address: only the ip check fails.
    let (code, checks) = verify_for(&config, token, "/hls/abc123/seg1.ts", Some("198.51.100.1"));
    assert_eq!(code, Some(1), "{checks:?}");
    assert_eq!(outcome(&checks, "signature"), "ok");
    assert_eq!(outcome(&checks, "window"), "ok");
    assert_eq!(outcome(&checks, "acl"), "ok");
    assert!(outcome(&checks, "ip").starts_with("FAILED"), "{checks:?}");
    assert!(
        outcome(&checks, "ip").contains("198.51.100.1"),
        "{checks:?}"
    );

    // No address at all cannot pass an address-bound token.
    let (code, checks) = verify_for(&config, token, "/hls/abc123/seg1.ts", None);
    assert_eq!(code, Some(1), "{checks:?}");
    assert!(outcome(&checks, "ip").starts_with("FAILED"), "{checks:?}");

    // A path outside the ACL.
    let path = "/hls/other/seg1.ts";
    let (code, checks) = verify_for(&config, token, path, Some("203.0.113.9"));
    assert_eq!(code, Some(1), "{path}: {checks:?}");
    assert_eq!(outcome(&checks, "signature"), "ok", "{path}");
    assert!(
        outcome(&checks, "acl").starts_with("FAILED"),
        "{path}: {checks:?}"
    );
    assert_eq!(outcome(&checks, "ip"), "ok", "{path}");

    // One that climbs out of it has a dot segment: refused before any check.
    let (code, checks) = verify_for(&config, token, "/hls/abc123/../other/seg1.ts", None);
    assert_eq!(code, Some(1), "{checks:?}");
    assert!(checks.is_empty(), "{checks:?}");
}

#[test]
fn verify_for_a_path_names_a_bad_signature_and_an_expired_window() {
    use embedgate::token::{Algorithm, Claims, EdgeAuth, KeyMaterial, Scope};

    let dir = tempfile::tempdir().unwrap();
    let config = edge_config(dir.path());
    let signer = EdgeAuth::new(Algorithm::Sha256, &KeyMaterial::from_hex(KEY_HEX).unwrap());
    let now = unix_now();
    let mint = |start: u64, end: u64| {
        let mut token = String::new();
        signer.mint_claims_into(
            &Claims {
                ip: Some("203.0.113.9"),
                start: Some(start),
                end,
                scope: Scope::Acl("/hls/abc123/*"),
                id: None,
                data: None,
            },
            &mut token,
        );
        token
    };
    let path = "/hls/abc123/seg1.ts";

    let expired = mint(now - 7200, now - 3600);
    let (code, checks) = verify_for(&config, &expired, path, Some("203.0.113.9"));
    assert_eq!(code, Some(1), "{checks:?}");
    assert_eq!(outcome(&checks, "signature"), "ok");
    assert!(
        outcome(&checks, "window").starts_with("FAILED"),
        "{checks:?}"
    );
    assert!(outcome(&checks, "window").contains("expired"), "{checks:?}");

    let early = mint(now + 3600, now + 7200);
    let (code, checks) = verify_for(&config, &early, path, Some("203.0.113.9"));
    assert_eq!(code, Some(1), "{checks:?}");
    assert!(
        outcome(&checks, "window").starts_with("FAILED"),
        "{checks:?}"
    );

    let good = mint(now - 60, now + 300);
    let (code, _) = verify_for(&config, &good, path, Some("203.0.113.9"));
    assert_eq!(code, Some(0));
    let forged = good.replacen("ip=203.0.113.9", "ip=198.51.100.1", 1);
    let (code, checks) = verify_for(&config, &forged, path, Some("198.51.100.1"));
    assert_eq!(code, Some(1), "{checks:?}");
    assert!(
        outcome(&checks, "signature").starts_with("FAILED"),
        "{checks:?}"
    );
    for later in ["window", "acl", "ip"] {
        assert_eq!(outcome(&checks, later), "not checked", "{later}");
    }

    // A path no token route protects is not checked at all.
    let output = Command::new(BIN)
        .args(["verify", "--path", "/videos/a", &good, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("access = \"token\""));
}
