//! What the CMS is told of the client: X-Forwarded-For, Forwarded and
//! X-Real-IP kept as far as the peer is trusted, and `trust_forwarded` with
//! `trusted_proxies` refused together.

use std::process::Command;

use embedgate::config::Settings;

use crate::common::*;
use crate::edge::{config_with, fetch};

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_reach_the_cms_as_far_as_the_peer_is_trusted() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let sent = [
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("x-real-ip", "1.2.3.4"),
    ];
    let header = |seen: &Seen, name: &str| -> Vec<String> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };

    // Trusted peer: its chain is kept and the peer appended, as nginx does.
    let trusting = config_with(&cms, &["trusted_proxies = [\"127.0.0.0/8\"]"], "");
    let gate = Gate::start_with(&trusting, &[]).await;
    assert_eq!(fetch(&gate, "/public/a", &sent).await.status, 200);
    let seen = cms.requests().pop().unwrap();
    assert_eq!(header(&seen, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(header(&seen, "forwarded"), ["for=1.2.3.4"]);
    assert_eq!(header(&seen, "x-real-ip"), ["1.2.3.4"]);
    drop(gate);

    // The default trusts no one, loopback included.
    let default = config_with(&cms, &[], "");
    let gate = Gate::start_with(&default, &[]).await;
    assert_eq!(fetch(&gate, "/public/b", &sent).await.status, 200);
    let seen = cms.requests().pop().unwrap();
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert!(header(&seen, "forwarded").is_empty());
    drop(gate);

    // No one trusted: the peer alone, and the client's own claims dropped.
    for lines in [&["trusted_proxies = []"][..], &["trust_forwarded = false"]] {
        let untrusting = config_with(&cms, lines, "");
        let gate = Gate::start_with(&untrusting, &[]).await;
        assert_eq!(fetch(&gate, "/public/c", &sent).await.status, 200);
        let seen = cms.requests().pop().unwrap();
        assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"], "{lines:?}");
        assert!(header(&seen, "forwarded").is_empty(), "{lines:?}");
        assert!(header(&seen, "x-real-ip").is_empty(), "{lines:?}");
    }

    // A trusted proxy's hops that are not trusted themselves stay in the chain.
    let trusting = config_with(&cms, &["trusted_proxies = [\"127.0.0.0/8\"]"], "");
    let gate = Gate::start_with(&trusting, &[]).await;
    let chain = [("x-forwarded-for", "5.6.7.8, 1.2.3.4")];
    assert_eq!(fetch(&gate, "/public/d", &chain).await.status, 200);
    let seen = cms.requests().pop().unwrap();
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        ["5.6.7.8, 1.2.3.4, 127.0.0.1"]
    );
    assert_eq!(cms.requests().len(), 5);
}

#[test]
fn trust_forwarded_and_trusted_proxies_together_are_a_config_error() {
    let upstream = "127.0.0.1:9".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    for trust in ["true", "false"] {
        let text = with_setting(
            with_setting(config_text(upstream, ""), "server", "trusted_proxies = []"),
            "server",
            &format!("trust_forwarded = {trust}"),
        );
        let err = match Settings::from_toml(&text, &path) {
            Ok(_) => panic!("trust_forwarded = {trust} with trusted_proxies was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("server.trusted_proxies"), "{err}");
        assert!(err.contains("trust_forwarded"), "{err}");

        // `embedgate check` says the same, with the line.
        std::fs::write(&path, &text).unwrap();
        std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
        let output = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = text
            .lines()
            .position(|l| l.starts_with("trusted_proxies"))
            .unwrap()
            + 1;
        assert!(
            stderr.contains(&format!("gateway.toml:{line}:")),
            "line {line} in {stderr}"
        );
        assert!(stderr.contains("server.trusted_proxies"), "{stderr}");
    }
    // Either alone is fine.
    for line in [
        "trusted_proxies = [\"10.0.0.0/8\"]",
        "trust_forwarded = true",
    ] {
        let text = with_setting(config_text(upstream, ""), "server", line);
        assert!(Settings::from_toml(&text, &path).is_ok(), "{line}");
    }
}
