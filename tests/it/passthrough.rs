//! Ungated routes pass through untouched: status, headers (less hop-by-hop), body bytes.

use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;

fn page_with_embed() -> String {
    format!("<!doctype html>\n<p>public</p>\n<iframe src=\"{EMBED}\"></iframe>\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungated_page_comes_back_byte_for_byte_with_its_headers() {
    let page = page_with_embed();
    let cms = Cms::fixed(
        Reply::html(page.clone())
            .header("etag", "\"p1\"")
            .header("cache-control", "public, max-age=60")
            .header("x-cms", "wordpress"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    for cookie in [None, Some(format!("sessionid={MEMBER}"))] {
        let response = get(&gate.url("/public/page"), cookie.as_deref()).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, page.as_bytes(), "no token on ungated routes");
        assert_eq!(response.headers["etag"], "\"p1\"");
        assert_eq!(response.headers["cache-control"], "public, max-age=60");
        assert_eq!(response.headers["x-cms"], "wordpress");
        assert_eq!(
            response.headers["content-length"],
            page.len().to_string().as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_body_comes_back_byte_for_byte() {
    let binary: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let chunks: Vec<Bytes> = binary.chunks(7_919).map(Bytes::copy_from_slice).collect();
    let cms = Cms::fixed(Reply::chunked("application/octet-stream", chunks)).await;
    let gate = Gate::start(&cms).await;
    let public = get(&gate.url("/public/blob.bin"), None).await;
    assert_eq!(public.body.as_ref(), binary.as_slice());
    // Non-HTML on a gated route is not touched either.
    let gated = get_as_member(&gate.url("/videos/poster.bin")).await;
    assert_eq!(gated.body.as_ref(), binary.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_pass_through() {
    let cms = Cms::start(|seen| {
        let mut reply = Reply::html("moved");
        reply.status = match seen.uri.path() {
            "/public/missing" => 404,
            "/public/old" => 301,
            _ => 500,
        };
        reply.header("location", "/public/new")
    })
    .await;
    let gate = Gate::start(&cms).await;
    assert_eq!(get(&gate.url("/public/missing"), None).await.status, 404);
    let moved = get(&gate.url("/public/old"), None).await;
    assert_eq!(
        (moved.status, moved.headers["location"].to_str().unwrap()),
        (301, "/public/new")
    );
    assert_eq!(get(&gate.url("/public/boom"), None).await.status, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_are_dropped_both_ways_and_set_cookies_stay_apart() {
    let cms = Cms::fixed(
        Reply::html("ok")
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/; HttpOnly"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let request =
        b"GET /public/h HTTP/1.1\r\nHost: site.example\r\nConnection: close, X-Visitor-Hop\r\n\
X-Visitor-Hop: 1\r\nKeep-Alive: timeout=1\r\nTE: trailers\r\nProxy-Authorization: Basic abc\r\n\
Upgrade: websocket\r\nX-Kept: yes\r\n\r\n";
    let answer = String::from_utf8_lossy(&raw(gate.addr, request).await).into_owned();
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{answer}");
    assert!(!head.contains("x-upstream-hop"), "{head}");
    assert!(!head.contains("keep-alive: timeout=5"), "{head}");
    assert!(!head.contains("proxy-authenticate"), "{head}");
    assert!(head.contains("set-cookie: a=1; path=/\r\n"), "{head}");
    assert!(
        head.contains("set-cookie: b=2; path=/; httponly\r\n"),
        "{head}"
    );

    let seen = &cms.requests()[0];
    for gone in [
        "x-visitor-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(!seen.headers.contains_key(gone), "{gone} reached the CMS");
    }
    assert_eq!(seen.headers["x-kept"], "yes");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cms_gets_the_visitors_cookies_host_and_forwarded_headers() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start_with(&trusting_loopback(config_text(cms.addr, "")), &[]).await;
    let request = http::Request::post(gate.url("/public/form?x=1"))
        .header("host", "site.example")
        .header("cookie", "sessionid=abc; theme=dark")
        .header("x-forwarded-for", "203.0.113.9")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"name=value&other=2")))
        .unwrap();
    assert_eq!(send(&client(), request).await.status, 200);
    let seen = &cms.requests()[0];
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/public/form?x=1"
    );
    assert_eq!(seen.body.as_ref(), b"name=value&other=2");
    assert_eq!(seen.headers["cookie"], "sessionid=abc; theme=dark");
    assert_eq!(seen.headers["host"], "site.example");
    assert_eq!(seen.headers["x-forwarded-host"], "site.example");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn visitors_naming_many_hosts_share_one_cms_connection() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start(&cms).await;
    let client = client();
    for n in 0..20 {
        let request = http::Request::get(gate.url("/public/"))
            .header("host", format!("site{n}.example"))
            .body(empty_body())
            .unwrap();
        assert_eq!(send(&client, request).await.status, 200);
    }
    let hosts: Vec<_> = cms
        .requests()
        .iter()
        .map(|seen| seen.headers["host"].to_str().unwrap().to_string())
        .collect();
    let expected: Vec<_> = (0..20).map(|n| format!("site{n}.example")).collect();
    assert_eq!(hosts, expected, "each request names its own site");
    assert_eq!(
        cms.connections(),
        1,
        "a new Host is not a new connection to the CMS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_host_is_sent_when_preserve_host_is_off() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "upstream",
        "preserve_host = false",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let request = http::Request::get(gate.url("/public/"))
        .header("host", "site.example")
        .body(empty_body())
        .unwrap();
    send(&client(), request).await;
    let seen = &cms.requests()[0];
    assert_eq!(seen.headers["host"], cms.addr.to_string().as_str());
    assert_eq!(seen.headers["x-forwarded-host"], "site.example");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_visitors_are_served_and_gated_like_http1() {
    let page = page_with_embed();
    let cms = Cms::fixed(
        Reply::html(page.clone())
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let h2 = h2_client();

    let public = send(
        &h2,
        http::Request::get(gate.url("/public/p"))
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(public.version, http::Version::HTTP_2);
    assert_eq!(public.body, page.as_bytes());
    let cookies: Vec<_> = public.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);

    let denied = send(
        &h2,
        http::Request::get(gate.url("/videos/p"))
            .body(empty_body())
            .unwrap(),
    )
    .await;
    assert_eq!(denied.status, 403);

    // HTTP/2 clients may send each cookie as its own header field.
    let split_cookies = http::Request::get(gate.url("/videos/p"))
        .header("cookie", "a=1")
        .header("cookie", format!("sessionid={MEMBER}"))
        .header("cookie", "b=2")
        .body(empty_body())
        .unwrap();
    let allowed = send(&h2, split_cookies).await;
    assert_eq!(allowed.status, 200);
    let tokens = tokens_in(&allowed.text());
    assert_eq!(tokens.len(), 1);
    check_token(&tokens[0], KEY_HEX);

    // The CMS speaks HTTP/1.1 and gets the :authority as Host.
    let seen = cms.requests();
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_11));
    assert_eq!(seen[0].headers["host"], gate.addr.to_string().as_str());
    // ...and a single Cookie header, as RFC 9113 §8.2.3 asks.
    let cookies: Vec<_> = seen[1].headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, [format!("a=1; sessionid={MEMBER}; b=2").as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_streamed_body_is_passed_on_as_it_arrives() {
    let chunks = vec![
        Bytes::from_static(b"first "),
        Bytes::from_static(GATE),
        Bytes::from_static(b"second"),
    ];
    let cms = Cms::fixed(Reply::chunked("text/plain", chunks)).await;
    let gate = Gate::start(&cms).await;
    let request = http::Request::get(gate.url("/public/s"))
        .body(empty_body())
        .unwrap();
    let mut response = Streaming::open(request).await;
    response
        .read_until("the first chunk, while the CMS holds the rest", |got| {
            got == b"first "
        })
        .await;
    cms.release_rest();
    assert_eq!(response.finish().await, b"first second");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_from_the_visitor_are_overwritten_or_dropped() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let config = with_setting(
        config_text(cms.addr, ""),
        "server",
        "trust_forwarded = false",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let request = http::Request::get(gate.url("/public/f"))
        .header("host", "site.example")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=203.0.113.9")
        .header("x-real-ip", "203.0.113.9")
        .header("x-original-url", "/videos/secret")
        .header("x-rewrite-url", "/videos/secret")
        .header("x-forwarded-prefix", "/videos")
        .header("x-forwarded-port", "443")
        .header("x-original-host", "evil.example")
        .header("true-client-ip", "203.0.113.9")
        .header("cf-connecting-ip", "203.0.113.9")
        .header("front-end-https", "on")
        .body(empty_body())
        .unwrap();
    send(&client(), request).await;
    let seen = &cms.requests()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "site.example");
    for gone in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x-original-host",
        "true-client-ip",
        "cf-connecting-ip",
        "front-end-https",
    ] {
        assert!(!seen.headers.contains_key(gone), "{gone} reached the CMS");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_named_with_underscores_are_dropped_unless_asked_for() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    // Read by a CGI-style CMS as HTTP_X_FORWARDED_FOR and HTTP_X_ORIGINAL_URL.
    let spoofs = [
        ("x_forwarded_for", "203.0.113.9"),
        ("x-original_url", "/videos/secret"),
        ("x_rewrite_url", "/videos/secret"),
    ];
    let request = |gate: &Gate| {
        let mut request = http::Request::get(gate.url("/public/u"))
            .header("x-kept", "1")
            .body(empty_body())
            .unwrap();
        for (name, value) in spoofs {
            request.headers_mut().insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        request
    };
    let gate = Gate::start(&cms).await;
    assert_eq!(send(&client(), request(&gate)).await.status, 200);
    let seen = &cms.requests()[0];
    assert_eq!(seen.headers["x-kept"], "1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    for (name, _) in spoofs {
        assert!(!seen.headers.contains_key(name), "{name} reached the CMS");
    }

    let config = with_setting(
        config_text(cms.addr, ""),
        "upstream",
        "underscores_in_headers = true",
    );
    let passing = Gate::start_with(&config, &[]).await;
    send(&client(), request(&passing)).await;
    let seen = &cms.requests()[1];
    for (name, value) in spoofs {
        assert_eq!(seen.headers[name], value, "{name} passed on when asked for");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_target_names_the_host() {
    let cms = Cms::fixed(Reply::html("ok")).await;
    let gate = Gate::start(&cms).await;
    let request = b"GET http://site.example/public/a?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n";
    let answer = String::from_utf8_lossy(&raw(gate.addr, request).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = &cms.requests()[0];
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/public/a?x=1");
    assert_eq!(seen.headers["host"], "site.example");
    assert_eq!(seen.headers["x-forwarded-host"], "site.example");
}

#[tokio::test]
async fn a_kept_alive_connection_serves_pipelined_and_later_requests_in_order() {
    use tokio::io::AsyncWriteExt;
    let cms = Cms::start(|seen| Reply::html(format!("page {}", seen.uri.path()))).await;
    let gate = Gate::start(&cms).await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    // Two requests in one write: the second is read ahead while the first
    // is served.
    stream
        .write_all(
            b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\nGET /public/b HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let seen = read_answers(
        &mut stream,
        &["page /public/a", "page /public/b"],
        "both answers",
    )
    .await;
    assert!(
        seen.find("page /public/a") < seen.find("page /public/b"),
        "{seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("connection: close"),
        "{seen}"
    );
    // Idle, then a third request on the same socket, sent in two pieces.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send_in_two(&mut stream, "/public/c", 50).await;
    read_answers(&mut stream, &["page /public/c"], "the third answer").await;
    // A fourth begun at once and finished after the quiet period: its
    // first piece is in hyper's hands when the connection is taken back.
    send_in_two(&mut stream, "/public/d", 100).await;
    let fourth = read_answers(&mut stream, &["page /public/d"], "the fourth answer").await;
    assert!(fourth.starts_with("HTTP/1.1 200"), "{fourth}");
    assert_eq!(
        cms.connections(),
        1,
        "one connection to the CMS for all four"
    );
}

/// A GET for `path` cut inside its Host line, the rest sent `pause_ms` later.
async fn send_in_two(stream: &mut tokio::net::TcpStream, path: &str, pause_ms: u64) {
    use tokio::io::AsyncWriteExt;
    let head = format!("GET {path} HTTP/1.1\r\nHo");
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    stream.write_all(b"st: x\r\n\r\n").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_larger_than_one_read_comes_back_whole_to_many_visitors_at_once() {
    // Well over one read from the CMS (hyper reads up to about 400 KB), with embeds
    // throughout, fetched by visitors whose HTTP/2 streams hold on to what
    // was read while the next read is made.
    let mut page = String::from("<!doctype html>\n");
    let mut embeds = 0;
    for block in 0..1_300u32 {
        let text: String = (0..1_000u32)
            .map(|i| char::from(b'a' + (block.wrapping_mul(31).wrapping_add(i) % 26) as u8))
            .collect();
        page.push_str(&format!("<p>{text}</p>\n"));
        if block % 100 == 50 {
            page.push_str(&format!("<iframe src=\"{EMBED}\"></iframe>\n"));
            embeds += 1;
        }
    }
    assert!(page.len() > 1_300_000);
    let cms = Cms::fixed(Reply::html(page.clone())).await;
    let gate = Gate::start(&cms).await;
    let (h1, h2) = (client(), h2_client());

    let mut fetches = tokio::task::JoinSet::new();
    for visitor in 0..16 {
        let client = if visitor % 2 == 0 {
            h1.clone()
        } else {
            h2.clone()
        };
        let (path, member) = if visitor % 4 < 2 {
            ("/public/big", false)
        } else {
            ("/videos/big", true)
        };
        let request = if member {
            member_request(&gate.url(path))
        } else {
            http::Request::get(gate.url(path))
                .body(empty_body())
                .unwrap()
        };
        fetches.spawn(async move { (member, send(&client, request).await) });
    }
    let mut versions = Vec::new();
    while let Some(fetched) = fetches.join_next().await {
        let (member, fetched) = fetched.unwrap();
        assert_eq!(fetched.status, 200);
        versions.push(fetched.version);
        if !member {
            assert!(fetched.body == page.as_bytes(), "passed on byte for byte");
            continue;
        }
        let text = fetched.text();
        let tokens = tokens_in(&text);
        assert_eq!(tokens.len(), embeds, "a token in every embed");
        for token in &tokens {
            check_token(token, KEY_HEX);
        }
        let mut without = text.clone();
        for token in &tokens {
            without = without.replacen(&format!("?token={token}"), "", 1);
        }
        assert!(without == page, "nothing but the tokens added");
    }
    assert!(versions.contains(&http::Version::HTTP_11));
    assert!(versions.contains(&http::Version::HTTP_2));
}
