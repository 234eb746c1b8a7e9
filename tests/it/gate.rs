//! Gated routes turn away everyone not on the allowlist, without asking the CMS.

use crate::common::*;

const SECRET_PAGE: &str = "<html><body><p>secret article</p></body></html>";

async fn setup() -> (Cms, Gate) {
    let cms = Cms::fixed(Reply::html(SECRET_PAGE)).await;
    let gate = Gate::start(&cms).await;
    (cms, gate)
}

fn assert_denied(response: &Fetched) {
    assert_eq!(response.status, 403);
    assert!(
        response.text().contains("403 Forbidden"),
        "{}",
        response.text()
    );
    assert!(!response.text().contains("secret"));
    assert_eq!(response.headers["cache-control"], "no-store");
    assert!(response.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cookie_is_forbidden_and_the_cms_is_not_asked() {
    let (cms, gate) = setup().await;
    assert_denied(&get(&gate.url("/videos/intro"), None).await);
    assert_denied(&get(&gate.url("/videos/intro"), Some("theme=dark; other=1")).await);
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_session_is_forbidden() {
    let (cms, gate) = setup().await;
    assert_denied(
        &get(
            &gate.url("/videos/intro"),
            Some("sessionid=not-on-the-list"),
        )
        .await,
    );
    // A prefix or extension of a real id is not the id.
    assert_denied(
        &get(
            &gate.url("/videos/intro"),
            Some(&format!("sessionid={}", &MEMBER[..10])),
        )
        .await,
    );
    assert_denied(
        &get(
            &gate.url("/videos/intro"),
            Some(&format!("sessionid={MEMBER}x")),
        )
        .await,
    );
    // The id must be in the session cookie, not another one.
    assert_denied(&get(&gate.url("/videos/intro"), Some(&format!("other={MEMBER}"))).await);
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_cookie_headers_are_forbidden() {
    let (cms, gate) = setup().await;
    for cookie in [
        format!("sessionid={MEMBER},x"),
        format!("sessionid={MEMBER} x"),
        "sessionid=".to_string(),
        format!("sessionid=a; sessionid=b; sessionid=c; sessionid=d; sessionid={MEMBER}"),
    ] {
        assert_denied(&get(&gate.url("/videos/intro"), Some(&cookie)).await);
    }
    // Bytes that are not visible ASCII, sent raw.
    let mut request =
        b"GET /videos/intro HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: sessionid="
            .to_vec();
    request.extend_from_slice(MEMBER.as_bytes());
    request.extend_from_slice(b"\xff\xfe\r\n\r\n");
    let answer = String::from_utf8_lossy(&raw(gate.addr, &request).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("secret"));
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_member_is_let_in() {
    let (cms, gate) = setup().await;
    let response = get_as_member(&gate.url("/videos/intro")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), SECRET_PAGE);
    // Also with the cookie among others, quoted, or in a second Cookie header.
    let quoted = get(
        &gate.url("/videos/intro"),
        Some(&format!("a=1; sessionid=\"{MEMBER}\"; b=2")),
    )
    .await;
    assert_eq!(quoted.status, 200);
    let split = http::Request::get(gate.url("/videos/intro"))
        .header("cookie", "a=1")
        .header("cookie", format!("sessionid={MEMBER}"))
        .body(empty_body())
        .unwrap();
    assert_eq!(send(&client(), split).await.status, 200);
    assert_eq!(cms.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_cookies_do_not_matter_and_a_stale_duplicate_does_not_lock_a_member_out() {
    let (cms, gate) = setup().await;
    // A raw, non-ASCII cookie of the site's own beside the session.
    let mut request = b"GET /videos/intro HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: city=Z\xc3\xbcrich; sessionid=".to_vec();
    request.extend_from_slice(MEMBER.as_bytes());
    request.extend_from_slice(b"\r\n\r\n");
    let answer = String::from_utf8_lossy(&raw(gate.addr, &request).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A parent-domain cookie left from an old session, sent first.
    let stale = get(
        &gate.url("/videos/intro"),
        Some(&format!("sessionid=expired-1; sessionid={MEMBER}")),
    )
    .await;
    assert_eq!(stale.status, 200);
    // Two values, neither allowed.
    assert_denied(
        &get(
            &gate.url("/videos/intro"),
            Some("sessionid=x1; sessionid=x2"),
        )
        .await,
    );
    assert_eq!(cms.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cms_is_handed_no_session_a_lenient_reading_of_a_cookie_name_finds() {
    let (cms, gate) = setup().await;
    // Flask reads "sessionid =x" as sessionid, PHP "session%69d=x", ASP.NET "SESSIONID=x".
    let sent = format!(
        "sessionid =intruder; theme=dark; SESSIONID=intruder; sessionid={MEMBER}; \
         session%69d=intruder; a=1, sessionid=intruder"
    );
    let page = get(&gate.url("/videos/intro"), Some(&sent)).await;
    assert_eq!(page.status, 200);
    let seen = cms.requests();
    assert_eq!(
        seen[0].headers["cookie"],
        format!("theme=dark; sessionid={MEMBER}").as_str()
    );
    // Alone, a lenient spelling of an allowed session lets no one in.
    for spelling in [
        format!("sessionid ={MEMBER}"),
        format!("SESSIONID={MEMBER}"),
    ] {
        assert_denied(&get(&gate.url("/videos/intro"), Some(&spelling)).await);
    }
    assert_eq!(cms.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cms_is_handed_no_session_php_reads_from_a_bracket_never_closed() {
    let cms = Cms::fixed(Reply::html(SECRET_PAGE)).await;
    let config = config_text(cms.addr, "").replace(
        "cookie = \"sessionid\"",
        "cookie = \"wordpress_logged_in_*\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    // PHP reads "wordpress[logged_in_abc" as "wordpress_logged_in_abc" and
    // keeps the first: the CMS would act for the intruder's session.
    let sent =
        format!("wordpress[logged_in_abc=intruder; theme=dark; wordpress_logged_in_abc={MEMBER}");
    let page = get(&gate.url("/videos/intro"), Some(&sent)).await;
    assert_eq!(page.status, 200);
    let seen = cms.requests();
    assert_eq!(
        seen[0].headers["cookie"],
        format!("theme=dark; wordpress_logged_in_abc={MEMBER}").as_str()
    );
    // Alone, it lets no one in.
    let alone = format!("wordpress[logged_in_abc={MEMBER}");
    assert_denied(&get(&gate.url("/videos/intro"), Some(&alone)).await);
    assert_eq!(cms.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_matching_no_route_is_gated() {
    let cms = Cms::fixed(Reply::html(SECRET_PAGE)).await;
    // No "/" route: everything outside /public/ and /videos/ is gated.
    let gate = Gate::start(&cms).await;
    assert_denied(&get(&gate.url("/admin"), None).await);
    assert_denied(&get(&gate.url("/"), None).await);
    assert_eq!(get(&gate.url("/public/x"), None).await.status, 200);
    assert_eq!(cms.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_do_not_get_around_the_gate() {
    let (cms, gate) = setup().await;
    for path in [
        "//videos/intro",
        "/vid%65os/intro",
        "/videos;/intro",
        "/videos;jsessionid=1/intro",
        "/Videos/intro",
        "/VIDEOS/intro",
        "/videos./intro",
        "/videos",
    ] {
        // Sent raw: a client library might normalise the path itself.
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer =
            String::from_utf8_lossy(&raw(gate.addr, request.as_bytes()).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
    }
    // Dot segments are refused, not resolved: browsers never send them.
    for path in [
        "/public/../videos/intro",
        "/public/%2e%2e/videos/intro",
        "/public/..;/videos/intro",
        "/./videos/intro",
        "/../etc/passwd",
        "/public/%5c..%5cvideos",
        "/public/%zz",
        "/public/%00",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer =
            String::from_utf8_lossy(&raw(gate.addr, request.as_bytes()).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deny_page_can_be_configured_relative_to_the_config_file() {
    let cms = Cms::fixed(Reply::html(SECRET_PAGE)).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "session",
        "deny_page = \"pages/denied.html\"",
    );
    let page = "<!doctype html><h1>Members only</h1><a href=/login>Sign in</a>\n";
    let gate = Gate::start_with(&config, &[("pages/denied.html", page)]).await;
    let response = get(&gate.url("/videos/intro"), None).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.text(), page);
    assert!(cms.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_visitors_of_one_prefix_share_one_rate_limit() {
    let cms = Cms::fixed(Reply::html("<p>page</p>")).await;
    let limited = |prefix: &str| {
        let config = config_text(cms.addr, "").replacen(
            "[session.allowlist]\n",
            "[session.rate_limit]\nper_minute = 60\nburst = 2\n\n[session.allowlist]\n",
            1,
        );
        with_setting(trusting_loopback(config), "server", prefix)
    };
    // Behind a trusted proxy, the visitor is the address it forwards for.
    async fn as_visitor(gate: &Gate, visitor: &str) -> Fetched {
        let mut request = member_request(&gate.url("/videos/a"));
        request
            .headers_mut()
            .insert("x-forwarded-for", visitor.parse().unwrap());
        send(&client(), request).await
    }

    // Default: a /64 is one client, whichever of its addresses it sends from.
    let gate = Gate::start_with(&limited(""), &[]).await;
    assert_eq!(as_visitor(&gate, "2001:db8:0:1::1").await.status, 200);
    assert_eq!(as_visitor(&gate, "2001:db8:0:1::2").await.status, 200);
    assert_eq!(
        as_visitor(&gate, "2001:db8:0:1:a:b:c:d").await.status,
        429,
        "a third address of the same /64 is the same client"
    );
    assert_eq!(as_visitor(&gate, "2001:db8:0:2::1").await.status, 200);

    // Each address its own client when the prefix is the whole address.
    let gate = Gate::start_with(&limited("ipv6_client_prefix = 128"), &[]).await;
    for visitor in ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1::3"] {
        assert_eq!(as_visitor(&gate, visitor).await.status, 200, "{visitor}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_the_rate_limit_gets_429_before_the_session_source_is_asked() {
    let cms = Cms::fixed(Reply::html("<p>page</p>")).await;
    let config = config_text(cms.addr, "").replacen(
        "[session.allowlist]\n",
        "[session.rate_limit]\nper_minute = 60\nburst = 3\n\n[session.allowlist]\n",
        1,
    );
    let gate = Gate::start_with(&config, &[]).await;
    for _ in 0..3 {
        assert_eq!(get_as_member(&gate.url("/videos/a")).await.status, 200);
    }
    let limited = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(
        cms.requests().len(),
        3,
        "the limited request never reached the CMS"
    );
    // Public routes are not limited; denied visitors count too.
    assert_eq!(get(&gate.url("/public/x"), None).await.status, 200);
    assert_eq!(get(&gate.url("/videos/a"), None).await.status, 429);
}
