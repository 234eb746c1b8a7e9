//! Edge verification: routes with `access = "token"` let a request reach the
//! CMS only with an EdgeAuth token that holds for its path and client, read
//! where the route says, and a refusal says why in the log, never to the client.

use std::process::Command;

use embedgate::config::DEFAULT_DENY_PAGE;
use embedgate::token::{Algorithm, Claims, EdgeAuth, KeyMaterial, Scope};
use http::Request;

use crate::common::*;

/// What the CMS stand-in answers for media paths.
fn media_for(path: &str) -> String {
    format!("media bytes of {path}")
}

/// A CMS that serves `page` for /videos/ paths and media everywhere else.
pub(crate) async fn media_cms(page: &'static str) -> Cms {
    Cms::start(move |seen| {
        let path = seen.uri.path();
        if path.starts_with("/videos/") {
            Reply::html(page)
        } else {
            Reply::with_type("video/mp2t", media_for(path))
        }
    })
    .await
}

/// A `[[route]]` with `access = "token"` checked with the test key; `settings`
/// are more lines of its `[route.token]` table.
pub(crate) fn token_route(prefix: &str, settings: &str) -> String {
    format!(
        "\n[[route]]\nprefix = \"{prefix}\"\naccess = \"token\"\n\n[route.token]\nkey = \"{KEY_HEX}\"\n{settings}\n"
    )
}

/// The standard test config with `extra`, and `server_lines` added to `[server]`.
pub(crate) fn config_with(cms: &Cms, server_lines: &[&str], extra: &str) -> String {
    let mut config = config_text(cms.addr, extra);
    for line in server_lines {
        config = with_setting(config, "server", line);
    }
    config
}

pub(crate) fn signer() -> EdgeAuth {
    EdgeAuth::new(Algorithm::Sha256, &KeyMaterial::from_hex(KEY_HEX).unwrap())
}

/// An ACL token with the test key, bound to `ip` if given.
fn mint(ip: Option<&str>, start: u64, end: u64, acl: &str) -> String {
    let mut out = String::new();
    signer().mint_claims_into(
        &Claims {
            ip,
            start: Some(start),
            end,
            scope: Scope::Acl(acl),
            id: None,
            data: None,
        },
        &mut out,
    );
    out
}

/// GET `path_and_query` from the gateway with `headers`.
pub(crate) async fn fetch(gate: &Gate, path_and_query: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = Request::get(gate.url(path_and_query));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(empty_body()).unwrap()).await
}

/// The request targets (path and query) the CMS has seen, in order.
pub(crate) fn seen_targets(cms: &Cms) -> Vec<String> {
    cms.requests()
        .iter()
        .map(|seen| seen.uri.path_and_query().unwrap().to_string())
        .collect()
}

/// The answer is the plain deny page: a 403 that says nothing of why.
#[track_caller]
pub(crate) fn assert_refused(got: &Fetched, what: &str) {
    assert_eq!(got.status, 403, "{what}: {}", got.text());
    assert_eq!(got.text(), DEFAULT_DENY_PAGE, "{what}: the deny page");
    let body = got.text().to_ascii_lowercase();
    for word in [
        "expired",
        "signature",
        "acl",
        "valid yet",
        "malformed",
        "outside",
        "no token",
        "client is",
        "window",
    ] {
        assert!(!body.contains(word), "{what}: 403 body says {word:?}");
    }
}

/// The answer is the CMS's media for `path`.
#[track_caller]
pub(crate) fn assert_served(got: &Fetched, path: &str, what: &str) {
    assert_eq!(got.status, 200, "{what}: {}", got.text());
    assert_eq!(got.text(), media_for(path), "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_tokens_open_only_what_they_sign() {
    let cms = media_cms("<p>page</p>").await;
    let config = config_with(
        &cms,
        &["trusted_proxies = []"],
        &token_route("/hls/", "leeway = \"10s\""),
    );
    let gate = Gate::start_with(&config, &[]).await;
    let now = unix_now();
    let good = mint(None, now - 60, now + 300, "/hls/abc/*");
    let mut served = Vec::new();

    // A valid token: the request reaches the CMS as it was sent, token included.
    let target = format!("/hls/abc/seg1.ts?token={good}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc/seg1.ts",
        "valid",
    );
    served.push(target);
    let target = format!("/hls/abc/1080p/seg2.ts?token={good}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc/1080p/seg2.ts",
        "valid, deeper path",
    );
    served.push(target);
    assert_eq!(seen_targets(&cms), served);

    // Inside the leeway on either end of the window.
    let lately_expired = mint(None, now - 300, now - 5, "/hls/abc/*");
    let target = format!("/hls/abc/seg3.ts?token={lately_expired}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc/seg3.ts",
        "expired 5 s ago, leeway 10 s",
    );
    served.push(target);
    let nearly_valid = mint(None, now + 5, now + 300, "/hls/abc/*");
    let target = format!("/hls/abc/seg4.ts?token={nearly_valid}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc/seg4.ts",
        "starts in 5 s, leeway 10 s",
    );
    served.push(target);

    // A list ACL opens each of its entries, and nothing else.
    let list = mint(None, now - 60, now + 300, "/hls/a/*!/hls/b/*");
    for path in ["/hls/a/x.ts", "/hls/b/y.ts"] {
        let target = format!("{path}?token={list}");
        assert_served(&fetch(&gate, &target, &[]).await, path, "list ACL");
        served.push(target);
    }
    assert_eq!(seen_targets(&cms), served);

    let expired = mint(None, now - 600, now - 60, "/hls/abc/*");
    let not_yet = mint(None, now + 60, now + 600, "/hls/abc/*");
    let other_acl = mint(None, now - 60, now + 300, "/hls/other/*");
    let other_key = EdgeAuth::new(
        Algorithm::Sha256,
        &KeyMaterial::from_hex(&"ab".repeat(32)).unwrap(),
    )
    .mint(now - 60, now + 300, "/hls/abc/*");
    let sha1 = EdgeAuth::new(Algorithm::Sha1, &KeyMaterial::from_hex(KEY_HEX).unwrap()).mint(
        now - 60,
        now + 300,
        "/hls/abc/*",
    );
    // One hex digit of the hmac changed.
    let (signed, mac) = good.rsplit_once("~hmac=").unwrap();
    let flipped = if mac.starts_with('0') { '1' } else { '0' };
    let bad_mac = format!("{signed}~hmac={flipped}{}", &mac[1..]);
    // One digit of exp changed (to a later expiry).
    let exp_at = good.find("exp=").unwrap() + "exp=".len();
    let mut later = good.clone().into_bytes();
    later[exp_at] += 1;
    let later = String::from_utf8(later).unwrap();
    assert_ne!(later, good);
    // The token with its ACL widened to everything, signature kept.
    let widened = good.replacen("acl=/hls/abc/*", "acl=/*", 1);
    let truncated = &good[..good.len() - 1];
    let no_mac = signed;
    let refused: Vec<(String, &str)> = vec![
        (format!("/hls/abc/seg1.ts?token={expired}"), "expired"),
        (format!("/hls/abc/seg1.ts?token={not_yet}"), "not yet valid"),
        (format!("/hls/abc/seg1.ts?token={other_acl}"), "wrong ACL"),
        (format!("/hls/c/x.ts?token={list}"), "outside a list ACL"),
        (format!("/hls/abc/seg1.ts?token={other_key}"), "other key"),
        (format!("/hls/abc/seg1.ts?token={sha1}"), "other hash"),
        (format!("/hls/abc/seg1.ts?token={bad_mac}"), "hmac changed"),
        (format!("/hls/abc/seg1.ts?token={later}"), "exp changed"),
        (format!("/hls/abc/seg1.ts?token={widened}"), "acl widened"),
        (format!("/hls/abc/seg1.ts?token={truncated}"), "truncated"),
        (format!("/hls/abc/seg1.ts?token={no_mac}"), "no hmac"),
        ("/hls/abc/seg1.ts?token=".to_string(), "empty"),
        ("/hls/abc/seg1.ts".to_string(), "missing"),
        (format!("/hls/abc/seg1.ts?tok={good}"), "other parameter"),
        (
            format!("/hls/abc/seg1.ts?xtoken={good}"),
            "parameter name as a suffix",
        ),
        // The token opens /hls/abc/*, not /hls/abc itself.
        (format!("/hls/abc?token={good}"), "the bare directory"),
    ];
    for (target, what) in &refused {
        assert_refused(&fetch(&gate, target, &[]).await, what);
    }
    assert_eq!(seen_targets(&cms), served, "the CMS saw no refused request");
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_cannot_climb_out_of_the_acl() {
    let cms = media_cms("<p>page</p>").await;
    let config = config_with(&cms, &[], &token_route("/hls/", ""));
    let gate = Gate::start_with(&config, &[]).await;
    let now = unix_now();
    let token = mint(None, now - 60, now + 300, "/hls/abc/*");
    for path in [
        "/hls/abc/../secret/x.ts",
        "/hls/abc/%2e%2e/secret/x.ts",
        "/hls/abc/%2E%2E/secret/x.ts",
        "/hls/abc/.%2e/secret/x.ts",
        "/hls/abc/..;/secret/x.ts",
        "/hls/abc/x/../../secret/x.ts",
        "/hls/abc/..%2fsecret/x.ts",
        "/hls/abc/..%5csecret/x.ts",
        "/hls/abc%2f..%2fsecret/x.ts",
    ] {
        let got = fetch(&gate, &format!("{path}?token={token}"), &[]).await;
        assert!(
            got.status == 400 || got.status == 403,
            "{path}: {} {}",
            got.status,
            got.text()
        );
        if got.status == 403 {
            assert_refused(&got, path);
        }
    }
    assert_eq!(seen_targets(&cms), Vec::<String>::new());

    // A dot segment is refused even where it would stay inside the ACL:
    // browsers never send one.
    let target = format!("/hls/abc/x/../seg1.ts?token={token}");
    let got = fetch(&gate, &target, &[]).await;
    assert_eq!(got.status, 400, "{}", got.text());
    assert_eq!(seen_targets(&cms), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_bound_tokens_hold_only_for_the_client_read_through_trusted_proxies() {
    let cms = media_cms("<p>page</p>").await;
    let now = unix_now();
    let for_visitor = mint(Some("203.0.113.9"), now - 60, now + 300, "/hls/abc/*");
    let for_loopback = mint(Some("127.0.0.1"), now - 60, now + 300, "/hls/abc/*");
    let target = format!("/hls/abc/seg1.ts?token={for_visitor}");

    // No proxy trusted: the client is the TCP peer, whatever the headers say.
    let untrusting = config_with(&cms, &["trusted_proxies = []"], &token_route("/hls/", ""));
    let gate = Gate::start_with(&untrusting, &[]).await;
    assert_refused(&fetch(&gate, &target, &[]).await, "wrong address");
    assert_refused(
        &fetch(&gate, &target, &[("x-forwarded-for", "203.0.113.9")]).await,
        "X-Forwarded-For from an untrusted peer",
    );
    assert_refused(
        &fetch(&gate, &target, &[("forwarded", "for=203.0.113.9")]).await,
        "Forwarded from an untrusted peer",
    );
    assert_eq!(seen_targets(&cms), Vec::<String>::new());
    let loopback_target = format!("/hls/abc/seg1.ts?token={for_loopback}");
    assert_served(
        &fetch(
            &gate,
            &loopback_target,
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await,
        "/hls/abc/seg1.ts",
        "the peer's own address",
    );
    assert_eq!(seen_targets(&cms), vec![loopback_target.clone()]);
    drop(gate);

    // Loopback trusted: the right-most untrusted hop is the client.
    let trusting = config_with(
        &cms,
        &["trusted_proxies = [\"127.0.0.0/8\"]"],
        &token_route("/hls/", ""),
    );
    let gate = Gate::start_with(&trusting, &[]).await;
    let mut served = vec![loopback_target.clone()];
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        // What the client wrote left of its own address is not believed.
        ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
        ("x-forwarded-for", "203.0.113.9, 127.0.0.5"),
        ("forwarded", "for=203.0.113.9;proto=https"),
    ] {
        assert_served(
            &fetch(&gate, &target, &[(name, value)]).await,
            "/hls/abc/seg1.ts",
            &format!("{name}: {value}"),
        );
        served.push(target.clone());
    }
    for (headers, what) in [
        (vec![], "no forwarding header: the client is loopback"),
        (
            vec![("x-forwarded-for", "203.0.113.9, 198.51.100.1")],
            "a later untrusted hop is the client",
        ),
        (
            vec![("x-forwarded-for", "203.0.113.9, 10.1.2.3")],
            "10/8 is not trusted here",
        ),
        (vec![("x-forwarded-for", "203.0.113.10")], "another address"),
    ] {
        assert_refused(&fetch(&gate, &target, &headers).await, what);
    }
    assert_refused(
        &fetch(
            &gate,
            &loopback_target,
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await,
        "the proxy's address is not the client's",
    );
    assert_eq!(seen_targets(&cms), served, "the CMS saw no refused request");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_read_only_where_the_route_says() {
    let cms = media_cms("<p>page</p>").await;
    let extra = [
        token_route("/hls/", ""),
        token_route("/named/", "param = \"auth\""),
        token_route("/cookie/", "cookie = \"__token__\""),
        token_route("/header/", "header = \"X-Token\""),
    ]
    .concat();
    let config = config_with(&cms, &[], &extra);
    let gate = Gate::start_with(&config, &[]).await;
    let now = unix_now();
    let token = mint(None, now - 60, now + 300, "/*");
    let in_cookie = format!("other=1; __token__={token}");
    let served = [
        (format!("/hls/a.ts?x=1&token={token}"), vec![]),
        (format!("/named/a.ts?auth={token}"), vec![]),
        (
            "/cookie/a.ts".to_string(),
            vec![("cookie", in_cookie.as_str())],
        ),
        (
            "/header/a.ts".to_string(),
            vec![("x-token", token.as_str())],
        ),
    ];
    for (target, headers) in &served {
        let path = target.split('?').next().unwrap();
        assert_served(&fetch(&gate, target, headers).await, path, target);
    }
    let refused = [
        (format!("/named/a.ts?token={token}"), vec![]),
        (format!("/cookie/a.ts?token={token}"), vec![]),
        (
            "/cookie/a.ts".to_string(),
            vec![("x-token", token.as_str())],
        ),
        (
            "/cookie/a.ts".to_string(),
            vec![("cookie", "__token__=nothing")],
        ),
        (format!("/header/a.ts?token={token}"), vec![]),
        (
            "/header/a.ts".to_string(),
            vec![("cookie", in_cookie.as_str())],
        ),
        (
            "/hls/a.ts".to_string(),
            vec![("cookie", in_cookie.as_str()), ("x-token", token.as_str())],
        ),
    ];
    for (target, headers) in &refused {
        assert_refused(&fetch(&gate, target, headers).await, target);
    }
    let seen: Vec<String> = seen_targets(&cms);
    let expected: Vec<String> = served.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(seen, expected, "the CMS saw no refused request");
    // The token travels on to the CMS where the visitor put it.
    let requests = cms.requests();
    assert_eq!(requests[2].headers["cookie"], in_cookie.as_str());
    assert_eq!(requests[3].headers["x-token"], token.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_logs_its_reason_but_never_the_token() {
    let cms = media_cms("<p>page</p>").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        config_with(&cms, &["trusted_proxies = []"], &token_route("/hls/", "")),
    )
    .unwrap();
    let mut gateway = Running::spawn(Command::new(BIN).arg("--config").arg(&config));
    let base = listening_url(&gateway.wait_for("listening on"));
    let now = unix_now();
    let expired = mint(None, now - 600, now - 60, "/hls/abc/*");
    let outside = mint(None, now - 60, now + 300, "/hls/other/*");
    let (signed, _) = outside.rsplit_once("~hmac=").unwrap();
    let forged = format!("{signed}~hmac={}", "0".repeat(64));
    for (path, token) in [
        ("/hls/abc/one.ts", &expired),
        ("/hls/abc/two.ts", &outside),
        ("/hls/abc/three.ts", &forged),
    ] {
        let got = get(&format!("{base}{path}?token={token}"), None).await;
        assert_refused(&got, path);
    }
    assert_refused(&get(&format!("{base}/hls/abc/four.ts"), None).await, "none");

    for (path, reason) in [
        ("path=/hls/abc/one.ts", "token has expired"),
        ("path=/hls/abc/two.ts", "is outside"),
        ("path=/hls/abc/three.ts", "signature does not match"),
        ("path=/hls/abc/four.ts", "no token"),
    ] {
        let line = gateway.wait_for(path);
        assert!(line.contains("status=403"), "{line}");
        assert!(line.contains(reason), "{reason} in {line}");
    }
    let log = gateway.terminate();
    for token in [&expired, &outside, &forged] {
        let (_, mac) = token.rsplit_once("~hmac=").unwrap();
        assert!(!log.contains(mac), "log leaks a token:\n{log}");
    }
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_token_opened_is_never_kept_by_a_shared_cache() {
    // A cache in front checks no token: were it to keep a segment, it would
    // hand it to the next visitor with no token, or after the token expired.
    let cms = Cms::start(|seen| {
        Reply::with_type("video/mp2t", media_for(seen.uri.path()))
            .header("cache-control", "public, max-age=86400")
            .header("cdn-cache-control", "max-age=86400")
            .header("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
    })
    .await;
    let extra = token_route("/cookie/", "cookie = \"__token__\"");
    let gate = Gate::start_with(&config_with(&cms, &[], &extra), &[]).await;
    let now = unix_now();
    let token = format!("__token__={}", mint(None, now - 60, now + 300, "/*"));
    let got = fetch(&gate, "/cookie/seg1.ts", &[("cookie", token.as_str())]).await;
    assert_served(&got, "/cookie/seg1.ts", "with a token");
    assert_eq!(got.headers["cache-control"], "private, no-store");
    for gone in ["cdn-cache-control", "expires"] {
        assert!(!got.headers.contains_key(gone), "{gone}: {:?}", got.headers);
    }
    // A public route keeps the CMS's own caching.
    let public = fetch(&gate, "/public/seg1.ts", &[]).await;
    assert_eq!(public.headers["cache-control"], "public, max-age=86400");
}
