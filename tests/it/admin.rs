//! Operating it: the admin endpoints, metrics, logs, request ids and drain.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// The standard config with an admin listener checking every 100 ms.
pub(crate) fn with_admin(config: String) -> String {
    format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\ncheck_interval = \"100ms\"\ncheck_timeout = \"300ms\"\n")
}

pub(crate) fn admin_url(gate: &Gate, path: &str) -> String {
    format!("http://{}{path}", gate.admin.expect("an admin listener"))
}

#[tokio::test]
async fn metrics_count_a_known_mix_of_requests_exactly() {
    let page = format!("<iframe src=\"{EMBED}\"></iframe>");
    let cms = Cms::fixed(Reply::html(page)).await;
    let gate = Gate::start_with(&with_admin(config_text(cms.addr, "")), &[]).await;
    for _ in 0..2 {
        assert_eq!(get(&gate.url("/public/a"), None).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&gate.url("/videos/a"), None).await.status, 403);
    }
    assert_eq!(
        get(&gate.url("/videos/a"), Some("sessionid=nobody"))
            .await
            .status,
        403
    );
    assert_eq!(get_as_member(&gate.url("/videos/a")).await.status, 200);
    assert_eq!(get(&gate.url("/elsewhere"), None).await.status, 403);
    assert_eq!(get(&gate.url("/a/%2e%2e/%2e%2e/x"), None).await.status, 400);

    let scrape = get(&admin_url(&gate, "/metrics"), None).await;
    assert_eq!(scrape.status, 200);
    let text = scrape.text();
    let requests = |route: &str, decision: &str, status: &str| {
        sample(
            &text,
            &format!("embedgate_requests_total{{route=\"{route}\",decision=\"{decision}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(requests("/public/", "passthrough", "2xx"), 2.0);
    assert_eq!(requests("/videos/", "denied", "4xx"), 4.0);
    assert_eq!(requests("/videos/", "allowed", "2xx"), 1.0);
    assert_eq!(requests("-", "denied", "4xx"), 1.0);
    assert_eq!(requests("-", "refused", "4xx"), 1.0);
    let count = |decision: &str| {
        sample(
            &text,
            &format!("embedgate_request_duration_seconds_count{{decision=\"{decision}\"}}"),
        )
    };
    assert_eq!(count("passthrough"), 2.0);
    assert_eq!(count("denied"), 5.0);
    assert_eq!(count("allowed"), 1.0);
    assert_eq!(count("refused"), 1.0);
    assert_eq!(
        sample(&text, "embedgate_upstream_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "embedgate_tokens_total{embed=\"0\",result=\"minted\"}"
        ),
        1.0
    );
    // The file source is asked for every cookie it sees: "nobody" and the member.
    assert_eq!(
        sample(&text, "embedgate_session_lookups_total{result=\"miss\"}"),
        2.0
    );
    assert_eq!(
        sample(&text, "embedgate_session_lookups_total{result=\"hit\"}"),
        0.0
    );
    assert!(sample(&text, "embedgate_rewritten_bytes_total") > 0.0);
    assert_eq!(sample(&text, "embedgate_reloads_total{result=\"ok\"}"), 0.0);
    assert!(text.contains("embedgate_config_info{hash=\""), "{text}");
    // Each client above closed its connection; the gateway notices soon after.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = get(&admin_url(&gate, "/metrics"), None).await.text();
        if sample(&now, "embedgate_open_connections{protocol=\"http1\"}") == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections still counted open:\n{now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A connection is counted by protocol while it is open.
    let h2_client = h2_client();
    let h2 = send(
        &h2_client,
        http::Request::get(gate.url("/public/a"))
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(h2.status, 200);
    let now = get(&admin_url(&gate, "/metrics"), None).await.text();
    assert_eq!(
        sample(&now, "embedgate_open_connections{protocol=\"http2\"}"),
        1.0
    );
    for secret in [MEMBER, "nobody", "%2e", KEY_HEX] {
        assert!(!text.contains(secret), "{secret} in metrics");
    }
}

#[tokio::test]
async fn embeds_left_without_a_token_are_counted_as_refused() {
    // One embed whose URL the page's encoding cannot read, one after markup a
    // browser may read otherwise (an HTML end tag in SVG, then a style), one
    // minted before both.
    let mut page = format!("<iframe src=\"{EMBED}\"></iframe>").into_bytes();
    page.extend_from_slice(
        b"<iframe src=\"https://api.vod2.infomaniak.com/res/embed/\xff.html\"></iframe>",
    );
    page.extend_from_slice(
        format!("<div><svg></div><style>p {{}}</style><iframe src=\"{EMBED}\"></iframe>")
            .as_bytes(),
    );
    let cms = Cms::fixed(Reply::with_type("text/html; charset=utf-8", page)).await;
    let gate = Gate::start_with(&with_admin(config_text(cms.addr, "")), &[]).await;

    let answer = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(tokens_in(&answer.text()).len(), 1);

    let text = get(&admin_url(&gate, "/metrics"), None).await.text();
    let tokens = |result: &str| {
        sample(
            &text,
            &format!("embedgate_tokens_total{{embed=\"0\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(tokens("minted"), 1.0);
    assert_eq!(tokens("refused"), 2.0);
}

#[tokio::test]
async fn the_admin_listener_closes_silent_and_slow_connections() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "header_timeout = \"400ms\"",
    );
    let gate = Gate::start_with(&with_admin(config), &[]).await;
    let admin = gate.admin.expect("an admin listener");
    assert_waiting_connections_are_closed(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\n\r\nok",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_holds_http2_clients_to_the_idle_and_send_limits() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let config = with_setting(
        with_setting(
            with_setting(
                config_text(cms.addr, ""),
                "server",
                "header_timeout = \"300ms\"",
            ),
            "server",
            "idle_timeout = \"2s\"",
        ),
        "server",
        "send_timeout = \"500ms\"",
    );
    let gate = Gate::start_with(&with_admin(config), &[]).await;
    let admin = gate.admin.expect("an admin listener");

    // Quiet between requests for longer than the head limit but within the
    // idle limit: the connection is still there for the next request.
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..2 {
        let response = h2_get(&mut client, "/healthz").await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert!(!connection.is_finished(), "kept between requests");
    // Past the idle limit it is closed.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed after the idle limit")
        .unwrap()
        .ok();

    // A scrape whose stream window the client never opens: closed at the send limit.
    assert_a_shut_window_is_cut_off(admin, "/metrics").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readyz_off_at_once_and_serves_through_the_drain_delay() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let text = with_admin(with_setting(
        config_text(cms.addr, ""),
        "server",
        "drain_delay = \"1500ms\"",
    ));
    std::fs::write(dir.path().join("gateway.toml"), text).unwrap();
    let mut gateway = Running::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("gateway.toml")),
    );
    let base = listening_url(&gateway.wait_for("listening on"));
    let admin = listening_url(&gateway.wait_for("admin endpoints on"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&format!("{admin}/readyz"), None).await.status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    gateway.signal("TERM");
    gateway.wait_for("drain delay");
    let during = get(&format!("{admin}/readyz"), None).await;
    assert_eq!(during.status, 503);
    assert!(
        during.text().contains("\"draining\":true"),
        "{}",
        during.text()
    );
    for _ in 0..3 {
        assert_eq!(get(&format!("{base}/public/a"), None).await.text(), "page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = gateway.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(
        tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err(),
        "stopped accepting after the delay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_with_the_access_fields_and_no_secrets() {
    let cms = Cms::fixed(Reply::html(format!("<iframe src=\"{EMBED}\"></iframe>"))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let text = format!("{}\n[log]\nformat = \"json\"\n", config_text(cms.addr, ""));
    std::fs::write(dir.path().join("gateway.toml"), text).unwrap();
    let mut gateway = Running::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("gateway.toml")),
    );
    let listening = gateway.wait_for("listening on");
    let base = listening_url(&listening);
    let response = get_as_member(&format!("{base}/videos/a?q=secret-query")).await;
    let request_id = response.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&format!("{base}/videos/a"), Some("sessionid=intruder-9"))
            .await
            .status,
        403
    );
    let log = gateway.terminate();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "embedgate::access")
        .collect();
    assert_eq!(access.len(), 2, "{log}");
    let allowed = access[0];
    for field in [
        "method",
        "path",
        "route",
        "decision",
        "reason",
        "session",
        "status",
        "upstream_status",
        "tokens",
        "refused",
        "unentitled",
        "bytes",
        "latency_ms",
        "complete",
        "request_id",
    ] {
        assert!(!allowed[field].is_null(), "{field} in {allowed}");
    }
    assert_eq!(allowed["decision"], "allowed");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["tokens"], 1);
    assert_eq!(allowed["path"], "/videos/a");
    assert_eq!(allowed["request_id"], request_id.as_str());
    assert_eq!(access[1]["decision"], "denied");
    for secret in [MEMBER, "intruder-9", KEY_HEX, "secret-query"] {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
}

#[tokio::test]
async fn a_request_id_is_kept_from_a_trusted_proxy_and_made_otherwise() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let trusting = Gate::start_with(&trusting_loopback(config_text(cms.addr, "")), &[]).await;
    let sent = send(
        &client(),
        http::Request::get(trusting.url("/public/a"))
            .header("x-request-id", "edge-7f3a")
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(sent.headers["x-request-id"], "edge-7f3a");
    assert_eq!(cms.requests()[0].headers["x-request-id"], "edge-7f3a");

    let made = get(&trusting.url("/videos/a"), None).await;
    let id = made.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "made for a 403 too: {id}");

    let edge = Gate::start_with(
        &with_setting(
            config_text(cms.addr, ""),
            "server",
            "trust_forwarded = false",
        ),
        &[],
    )
    .await;
    let replaced = send(
        &client(),
        http::Request::get(edge.url("/public/a"))
            .header("x-request-id", "visitor-chosen")
            .body(empty_body())
            .unwrap(),
    )
    .await;
    let id = replaced.headers["x-request-id"].to_str().unwrap();
    assert_ne!(id, "visitor-chosen");
    assert_eq!(cms.requests()[1].headers["x-request-id"], id);

    // Named as hop-by-hop by the visitor: the CMS still gets the gateway's id.
    let named = send(
        &client(),
        http::Request::get(edge.url("/public/a"))
            .header("connection", "x-request-id")
            .header("x-request-id", "visitor-chosen")
            .body(empty_body())
            .unwrap(),
    )
    .await;
    let id = named.headers["x-request-id"].to_str().unwrap();
    assert_eq!(cms.requests()[2].headers["x-request-id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_file_is_reopened_on_sigusr1() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let text = format!(
        "{}\n[log]\naccess_file = \"access.log\"\n",
        config_text(cms.addr, "")
    );
    std::fs::write(dir.path().join("gateway.toml"), text).unwrap();
    let mut gateway = Running::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("gateway.toml")),
    );
    let base = listening_url(&gateway.wait_for("listening on"));
    let access = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let wait_for_line = |file: &std::path::Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle} never in {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    get(&format!("{base}/public/first"), None).await;
    wait_for_line(&access, "path=/public/first");

    std::fs::rename(&access, &rotated).unwrap();
    gateway.signal("USR1");
    gateway.wait_for("access log reopened");
    get(&format!("{base}/public/second"), None).await;
    let fresh = wait_for_line(&access, "path=/public/second");
    assert!(!fresh.contains("path=/public/first"));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("path=/public/first") && !old.contains("path=/public/second"));
    let log = gateway.terminate();
    assert!(
        !log.contains("path=/public/"),
        "access lines go to the file only: {log}"
    );
}

#[tokio::test]
async fn reloads_are_counted_by_result_and_the_config_hash_follows_the_file() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let text = with_admin(format!(
        "{}\n[reload]\ninterval = \"50ms\"\n",
        config_text(cms.addr, "")
    ));
    let gate = Gate::start_with(&text, &[]).await;
    let metrics = admin_url(&gate, "/metrics");
    let hash = |scrape: &str| {
        let start = scrape.find("embedgate_config_info{hash=\"").unwrap() + 28;
        scrape[start..start + 16].to_string()
    };
    let scrape_until = |series: &'static str, want: f64| {
        let metrics = metrics.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let scrape = get(&metrics, None).await.text();
                if sample(&scrape, series) == want {
                    return scrape;
                }
                assert!(Instant::now() < deadline, "{series} never {want}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let before = hash(&get(&metrics, None).await.text());
    std::fs::write(
        gate.config_path(),
        text.replacen("gated = false", "gated = true", 1),
    )
    .unwrap();
    let after = scrape_until("embedgate_reloads_total{result=\"ok\"}", 1.0).await;
    assert_ne!(hash(&after), before);
    std::fs::write(gate.config_path(), "not toml at all [").unwrap();
    let failed = scrape_until("embedgate_reloads_total{result=\"error\"}", 1.0).await;
    assert_eq!(
        hash(&failed),
        hash(&after),
        "the config in force did not change"
    );
}

#[tokio::test]
async fn a_request_the_visitor_gives_up_on_is_still_counted() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let auth = Cms::start(|_| {
        let mut reply = Reply::with_type("text/plain", "");
        reply.head_delay = Duration::from_secs(3);
        reply
    })
    .await;
    let text = with_admin(config_text(cms.addr, "").replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!(
            "[session.allowlist.forward_auth]\nurl = \"http://{}/check\"\ntimeout = \"10s\"\n",
            auth.addr
        ),
        1,
    ));
    let gate = Gate::start_with(&text, &[]).await;
    let h2 = h2_client();
    let request = http::Request::get(gate.url("/videos/a"))
        .header("cookie", "sessionid=patience-1")
        .body(empty_body())
        .unwrap();
    // The visitor resets the stream while the session check is still out.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), h2.request(request)).await;
    assert!(gave_up.is_err());
    let series = "embedgate_requests_total{route=\"/videos/\",decision=\"refused\",status=\"4xx\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let scrape = get(&admin_url(&gate, "/metrics"), None).await.text();
        if scrape.contains(series) {
            assert_eq!(sample(&scrape, series), 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled request was never counted:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_yet_to_send_a_request_show_in_accepted_connections() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let gate = Gate::start_with(&with_admin(config_text(cms.addr, "")), &[]).await;
    let main = "embedgate_accepted_connections{listener=\"main\"}";
    scrape_until(&gate, main, 0.0).await;
    let silent: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(gate.addr)))
            .await;
    let text = scrape_until(&gate, main, 3.0).await;
    assert_eq!(
        sample(&text, "embedgate_open_connections{protocol=\"http1\"}"),
        0.0,
        "no request yet"
    );
    assert!(sample(&text, "embedgate_accepted_connections{listener=\"admin\"}") >= 1.0);
    drop(silent);
    scrape_until(&gate, main, 0.0).await;
}
