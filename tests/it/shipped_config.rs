//! The shipped gateway.toml: valid and complete as it is, its commented-out
//! tables valid as written, and every key in it set to either extreme refused
//! or served without a panic.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use embedgate::config::Settings;

#[test]
fn the_shipped_gateway_toml_is_valid_and_complete() {
    let runtime = build_runtime(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/gateway.toml"
    )))
    .unwrap();
    let settings = runtime.settings();
    assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.upstream.authority.as_str(), "127.0.0.1:8081");
    assert_eq!(settings.session.cookie, "sessionid");
    assert_eq!(runtime.embeds.len(), 1);
    assert!(runtime.gate.sessions().known_sessions().unwrap() > 0);
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    assert!(
        text.contains("DEMO KEY"),
        "the inline key is marked as a demo key"
    );
}

/// The commented-out table `header` of the shipped gateway.toml, uncommented.
fn commented_table(text: &str, header: &str) -> String {
    let start = text
        .find(&format!("# {header}\n"))
        .unwrap_or_else(|| panic!("gateway.toml documents {header}"));
    text[start..]
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter(|line| !line.starts_with("# #"))
        .map(|line| line.trim_start_matches('#').trim_start())
        .filter(|line| !line.starts_with("password_file"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_commented_admin_table_in_gateway_toml_is_valid_as_written() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let admin = commented_table(&text, "[admin]");
    let loaded = Settings::from_toml(&format!("{text}\n{admin}\n"), path).unwrap();
    let settings = loaded.settings.admin.expect("the admin table");
    assert_eq!(settings.listen.to_string(), "127.0.0.1:9090");
}

#[test]
fn the_commented_session_sources_in_gateway_toml_are_valid_as_written() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let cache = commented_table(&text, "[session.allowlist.cache]");
    for source in [
        "[session.allowlist.forward_auth]",
        "[session.allowlist.redis]",
    ] {
        let table = commented_table(&text, source);
        assert!(table.lines().count() > 3, "{table}");
        let with_source = format!(
            "{}\n{table}\n\n{cache}\n",
            text.replacen("file = \"allowlist.txt\"\n", "", 1)
        );
        let loaded = Settings::from_toml(&with_source, path)
            .unwrap_or_else(|err| panic!("{source} as documented: {err}"));
        let allowlist = &loaded.settings.session.allowlist;
        assert!(allowlist.source.is_remote(), "{source}");
        assert_eq!(
            allowlist.cache.map(|c| c.ttl),
            Some(std::time::Duration::from_secs(60))
        );
    }
}

#[test]
fn the_commented_tls_table_in_gateway_toml_is_valid_as_written() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let tls = commented_table(&text, "[server.tls]");
    let loaded = Settings::from_toml(&format!("{text}\n{tls}\n"), path).unwrap();
    let settings = loaded.settings.server.tls.expect("the tls table");
    let redirect = settings.redirect.expect("a redirect listener");
    assert_eq!(redirect.listen.port(), 80);
    assert_eq!(
        redirect.except.as_deref(),
        Some("/.well-known/acme-challenge/")
    );
}

/// What a key may be set to at either end: counts, and durations (the
/// longest is ten years; humantime reads up to 2^64 seconds).
const EXTREMES: &[&str] = &[
    "0",
    "1",
    "4294967296",
    "9223372036854775807",
    "\"1ns\"",
    "\"3650d\"",
    "\"18446744073709551615s\"",
];

/// Asks the gateway for a gated page as the member over HTTP/1.1 and
/// HTTP/2, a public page, and an upload; whatever the answers, or none.
async fn ask_everything(gate: &Gate) {
    let asks = [
        (client(), member_request(&gate.url("/videos/page"))),
        (h2_client(), member_request(&gate.url("/videos/page"))),
        (
            client(),
            http::Request::get(gate.url("/page"))
                .body(empty_body())
                .unwrap(),
        ),
        (
            client(),
            http::Request::post(gate.url("/form"))
                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"a=b")))
                .unwrap(),
        ),
    ];
    for (client, request) in asks {
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            if let Ok(response) = client.request(request).await {
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
        })
        .await;
    }
}

/// Every key of the shipped gateway.toml set to each extreme, one at a time:
/// refused when loaded, or served (a gated page over both protocols, a public
/// page, an upload) with no panic in the gateway. A duration past what a
/// clock holds once panicked on the first request.
#[test]
fn every_key_at_either_extreme_is_refused_or_served_without_a_panic() {
    let panics = ThreadPanics::watch("extremes-gateway");
    let tokio = panics.runtime();
    let cms = tokio.block_on(Cms::fixed(Reply::html(format!(
        "<p>members</p><iframe src=\"{EMBED}\"></iframe>"
    ))));
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml"))
            .unwrap()
            .replace("http://127.0.0.1:8081", &format!("http://{}", cms.addr));
    // The keys in force, without the comments around them.
    let lines: Vec<&str> = shipped
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .collect();
    let (mut refused, mut served) = (0, 0);
    for (at, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        for value in EXTREMES {
            let mut text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            text[at] = format!("{key} = {value}");
            let text = text.join("\n");
            tokio.block_on(async {
                match Gate::try_start_with(&text, &[]).await {
                    Err(_) => refused += 1,
                    Ok(gate) => {
                        ask_everything(&gate).await;
                        served += 1;
                    }
                }
            });
            // A panic after an answer went out comes a moment later.
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(
                panics.count(),
                0,
                "the gateway panicked with {key} = {value}"
            );
        }
    }
    eprintln!("config extremes: {refused} refused, {served} served");
    assert!(served > 50, "{served} served");
    assert!(refused > 50, "{refused} refused");
}
