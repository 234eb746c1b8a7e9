//! Allowed visitors get the CMS page with a fresh token in every protected embed,
//! and nothing else in the page changes.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;

const OTHER_HOST: &str = r#"<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/xyz?token=keep" title="Other"></iframe>"#;

fn article(embeds: &[&str]) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\"><title>Vidéo &amp; co</title>\n\
         <!-- <iframe src=\"https://api.vod2.infomaniak.com/res/embed/incomment.html\"> -->\n\
         <script>var s = '<iframe src=\"https://api.vod2.infomaniak.com/res/embed/inscript.html\">';</script>\n\
         </head>\n<body class=x>\n  <p>Ünïcödé text, <b>bold</b>, <img src=/a.png alt='a'></p>\n",
    );
    for embed in embeds {
        page.push_str("  ");
        page.push_str(embed);
        page.push('\n');
    }
    page.push_str("  ");
    page.push_str(OTHER_HOST);
    page.push_str("\n</body></html>\n");
    page
}

fn iframe(attribute: &str, url: &str) -> String {
    format!(
        r#"<iframe frameborder="0" width="720" height="360" {attribute}="{url}" allowfullscreen></iframe>"#
    )
}

/// The page as it must come out: only the embed URLs differ.
fn expected(page: &str, replacements: &[(&str, String)]) -> String {
    let mut out = page.to_string();
    for (from, to) in replacements {
        assert!(out.contains(from), "fixture holds {from}");
        out = out.replacen(from, to, 1);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_matching_iframe_gets_a_fresh_valid_token_and_nothing_else_changes() {
    let lazy = format!("{EMBED_2}?autoplay=1&amp;muted=1");
    let stale = format!("{EMBED_3}?token=st=1~exp=2~acl=/*~hmac=00&start=10");
    let embeds = [
        iframe("src", EMBED),
        format!(r#"<iframe class="lazyload" src="about:blank" data-src="{lazy}"></iframe>"#),
        iframe("src", &stale),
        iframe("src", &format!("{EMBED}#t=30")),
    ];
    let page = article(&embeds.iter().map(String::as_str).collect::<Vec<_>>());
    let cms = Cms::fixed(
        Reply::html(page.clone())
            .header("etag", "\"v1\"")
            .header("last-modified", "Wed, 21 Oct 2026 07:28:00 GMT")
            .header("cache-control", "public, max-age=600"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let before = unix_now();
    let response = get_as_member(&gate.url("/videos/intro")).await;
    let after = unix_now();
    assert_eq!(response.status, 200);
    let body = response.text();

    let tokens = tokens_in(&body);
    assert_eq!(tokens.len(), 4, "{body}");
    let mut acls = Vec::new();
    for token in &tokens {
        let (st, exp, acl) = check_token(token, KEY_HEX);
        assert!(before <= st && st <= after, "st {st} is now");
        assert_eq!(exp, st + 300, "ttl is 5m");
        acls.push(acl);
    }
    assert_eq!(
        acls,
        [
            "/hls/1jhvl2uqa5rdf/*",
            "/hls/2kqwm3vrb6seg/*",
            "/hls/3lrxn4wsc7tfh/*",
            "/hls/1jhvl2uqa5rdf/*"
        ]
    );
    let want = expected(
        &page,
        &[
            (
                &format!("src=\"{EMBED}\""),
                format!("src=\"{EMBED}?token={}\"", tokens[0]),
            ),
            (
                &format!("data-src=\"{lazy}\""),
                format!("data-src=\"{lazy}&amp;token={}\"", tokens[1]),
            ),
            (
                &format!("src=\"{stale}\""),
                format!("src=\"{EMBED_3}?start=10&amp;token={}\"", tokens[2]),
            ),
            (
                &format!("src=\"{EMBED}#t=30\""),
                format!("src=\"{EMBED}?token={}#t=30\"", tokens[3]),
            ),
        ],
    );
    assert_eq!(body, want);

    assert_eq!(response.headers["cache-control"], "private, no-store");
    for gone in ["content-length", "etag", "last-modified"] {
        assert!(
            !response.headers.contains_key(gone),
            "{gone} must be dropped"
        );
    }
}

const EMBED_2: &str = "https://api.vod2.infomaniak.com/res/embed/2kqwm3vrb6seg.html";
const EMBED_3: &str = "https://api.vod2.infomaniak.com/res/embed/3lrxn4wsc7tfh.html";

#[tokio::test(flavor = "multi_thread")]
async fn each_visit_mints_its_own_token() {
    let page = article(&[&iframe("src", EMBED)]);
    let cms = Cms::fixed(Reply::html(page)).await;
    let gate = Gate::start(&cms).await;
    let first = tokens_in(&get_as_member(&gate.url("/videos/a")).await.text());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = tokens_in(&get_as_member(&gate.url("/videos/a")).await.text());
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first, second, "a later visit gets a later token");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_split_across_upstream_chunks_is_still_rewritten() {
    let page = article(&[&iframe("src", EMBED)]);
    let tag_start = page.find("<iframe frameborder").unwrap();
    // Cut inside the embed's own src, not the copy in the comment.
    let cut = tag_start + page[tag_start..].find("api.vod2").unwrap() + 10;
    let chunks = vec![
        Bytes::copy_from_slice(&page.as_bytes()[..cut]),
        Bytes::from_static(GATE),
        Bytes::copy_from_slice(&page.as_bytes()[cut..]),
    ];
    // Declared: an undeclared charset holds the first 1024 bytes (the
    // meta prescan), and the cut is within them.
    let cms = Cms::fixed(Reply::chunked("text/html; charset=utf-8", chunks)).await;
    let gate = Gate::start(&cms).await;
    let mut response = Streaming::open(member_request(&gate.url("/videos/split"))).await;
    // Everything before the half tag arrives while the CMS holds the rest:
    // the gateway really had the tag in two pieces.
    response
        .read_until("the part before the split tag", |got| {
            got.len() >= tag_start
        })
        .await;
    assert_eq!(
        &response.received[..],
        &page.as_bytes()[..tag_start],
        "the half tag is held back"
    );
    cms.release_rest();
    let received = response.finish().await;
    let body = String::from_utf8(received).unwrap();
    let tokens = tokens_in(&body);
    assert_eq!(tokens.len(), 1, "{body}");
    check_token(&tokens[0], KEY_HEX);
    let want = expected(&page, &[(EMBED, format!("{EMBED}?token={}", tokens[0]))]);
    assert_eq!(body, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_streams_and_is_never_held_whole() {
    // The CMS sends the first half, then waits until the visitor has it: a
    // gateway that buffered the page would never send it, and the test would time out.
    let page = article(&[&iframe("src", EMBED), &iframe("src", EMBED_2)]);
    let middle = page.find(EMBED_2).unwrap() - 30;
    let chunks = vec![
        Bytes::copy_from_slice(&page.as_bytes()[..middle]),
        Bytes::from_static(GATE),
        Bytes::copy_from_slice(&page.as_bytes()[middle..]),
    ];
    let cms = Cms::fixed(Reply::chunked("text/html; charset=utf-8", chunks)).await;
    let gate = Gate::start(&cms).await;
    let mut response = Streaming::open(member_request(&gate.url("/videos/stream"))).await;
    response
        .read_until("the first half", |got| {
            String::from_utf8_lossy(got).contains("1jhvl2uqa5rdf.html?token=st=")
        })
        .await;
    cms.release_rest();
    let received = response.finish().await;
    let text = String::from_utf8(received).unwrap();
    assert_eq!(tokens_in(&text).len(), 2);
    assert!(text.ends_with("</body></html>\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cms_is_asked_for_a_whole_uncompressed_fresh_page() {
    let cms = Cms::fixed(Reply::html(article(&[]))).await;
    let gate = Gate::start(&cms).await;
    let request = http::Request::get(gate.url("/videos/x?q=1"))
        .header("cookie", format!("theme=dark; sessionid={MEMBER}"))
        .header("accept-encoding", "gzip, br")
        .header("range", "bytes=0-10")
        .header("if-none-match", "\"v1\"")
        .header("if-modified-since", "Wed, 21 Oct 2026 07:28:00 GMT")
        .body(empty_body())
        .unwrap();
    assert_eq!(send(&client(), request).await.status, 200);
    let seen = &cms.requests()[0];
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/videos/x?q=1");
    assert_eq!(seen.headers["accept-encoding"], "identity");
    for gone in ["if-none-match", "if-modified-since"] {
        assert!(!seen.headers.contains_key(gone), "{gone}");
    }
    // The CMS needs its own session: cookies go through untouched.
    assert_eq!(
        seen.headers["cookie"],
        format!("theme=dark; sessionid={MEMBER}").as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_html_on_a_gated_route_keeps_its_body_but_is_never_shared_cached() {
    let json = format!(r#"{{"embed":"<iframe src=\"{EMBED}\">"}}"#);
    let cms = Cms::fixed(
        Reply::with_type("application/json", json.clone())
            .header("etag", "\"j\"")
            .header("cache-control", "public, max-age=600")
            .header("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
            .header("surrogate-control", "max-age=600")
            .header("akamai-cache-control", "max-age=600")
            .header("x-accel-expires", "600"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let response = get_as_member(&gate.url("/videos/data.json")).await;
    assert_eq!(response.text(), json);
    assert_eq!(response.headers["etag"], "\"j\"");
    assert_eq!(
        response.headers["content-length"],
        json.len().to_string().as_str()
    );
    // A shared cache must not hand gated content to the next visitor.
    assert_eq!(response.headers["cache-control"], "private, no-store");
    for gone in [
        "expires",
        "surrogate-control",
        "akamai-cache-control",
        "x-accel-expires",
    ] {
        assert!(
            !response.headers.contains_key(gone),
            "{gone} would let a cache in front keep it"
        );
    }
    // On an ungated route the CMS's own caching stands.
    let public = get(&gate.url("/public/data.json"), None).await;
    assert_eq!(public.headers["cache-control"], "public, max-age=600");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gated_cache_control_can_be_left_to_the_cms() {
    let cms = Cms::fixed(
        Reply::with_type("image/png", "png").header("cache-control", "private, max-age=60"),
    )
    .await;
    let config = with_setting(config_text(cms.addr, ""), "session", "cache_control = \"\"");
    let gate = Gate::start_with(&config, &[]).await;
    let response = get_as_member(&gate.url("/videos/poster.png")).await;
    assert_eq!(response.headers["cache-control"], "private, max-age=60");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_and_no_content_answers_on_gated_pages_get_the_rewritten_headers() {
    let cms = Cms::start(|seen| {
        let mut reply = Reply::html(article(&[&iframe("src", EMBED)])).header("etag", "\"v\"");
        if seen.uri.path() == "/videos/empty" {
            reply = Reply::chunked("text/html; charset=utf-16", vec![]);
            reply.status = 204;
        }
        if seen.method == http::Method::HEAD {
            reply.chunks.clear();
        }
        reply
    })
    .await;
    let gate = Gate::start(&cms).await;
    let head = http::Request::head(gate.url("/videos/a"))
        .header("cookie", format!("sessionid={MEMBER}"))
        .body(empty_body())
        .unwrap();
    let response = send(&client(), head).await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(response.headers["cache-control"], "private, no-store");
    assert!(!response.headers.contains_key("etag"));
    // No body to read, so its charset does not matter.
    let empty = get_as_member(&gate.url("/videos/empty")).await;
    assert_eq!(empty.status, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_in_a_legacy_charset_keeps_its_bytes() {
    // "café" in ISO-8859-1 around the embed; the embed URL itself is ASCII.
    let mut page = b"<html><head><title>caf\xe9</title></head><body><p>\xe9t\xe9</p>".to_vec();
    page.extend_from_slice(iframe("src", EMBED).as_bytes());
    page.extend_from_slice(b"<p>fin \xe0 bient\xf4t</p></body></html>");
    let cms = Cms::fixed(Reply::with_type(
        "text/html; charset=ISO-8859-1",
        page.clone(),
    ))
    .await;
    let gate = Gate::start(&cms).await;
    let response = get_as_member(&gate.url("/videos/latin")).await;
    let tokens = tokens_in(&String::from_utf8_lossy(&response.body));
    assert_eq!(tokens.len(), 1);
    let expected =
        String::from_utf8_lossy(&page).replace(EMBED, &format!("{EMBED}?token={}", tokens[0]));
    // Compare bytes: the Latin-1 letters must come out as the same single bytes.
    let mut want = page.clone();
    let at = want
        .windows(EMBED.len())
        .position(|w| w == EMBED.as_bytes())
        .unwrap()
        + EMBED.len();
    want.splice(at..at, format!("?token={}", tokens[0]).into_bytes());
    assert_eq!(response.body.as_ref(), want.as_slice(), "{expected}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_the_rewriter_cannot_read_is_refused() {
    // UTF-16 with its byte-order mark ("\u{feff}" in a Rust string is the
    // UTF-8 mark, which a browser reads as UTF-8 whatever the header says).
    let utf16: Vec<u8> = "\u{feff}<html>"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let cms = Cms::fixed(Reply::with_type("text/html; charset=utf-16", utf16)).await;
    let gate = Gate::start(&cms).await;
    let response = get_as_member(&gate.url("/videos/utf16")).await;
    assert_eq!(response.status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn wordpress_style_escaped_ampersands_are_understood() {
    let wp = format!("{EMBED}?autoplay=1&#038;muted=1");
    let xhtml = format!("<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><body>{}</body></html>", iframe("src", &wp));
    let cms = Cms::fixed(Reply::with_type("application/xhtml+xml", xhtml.clone())).await;
    let gate = Gate::start(&cms).await;
    let body = get_as_member(&gate.url("/videos/wp")).await.text();
    let tokens = tokens_in(&body);
    assert_eq!(tokens.len(), 1, "{body}");
    let want = xhtml.replace(
        &wp,
        &format!("{EMBED}?autoplay=1&amp;muted=1&amp;token={}", tokens[0]),
    );
    assert_eq!(body, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gated_page_in_a_coding_the_gateway_cannot_read_is_refused() {
    let cms = Cms::fixed(
        Reply::html(article(&[&iframe("src", EMBED)])).header("content-encoding", "compress"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let response = get_as_member(&gate.url("/videos/z")).await;
    assert_eq!(response.status, 502);
    assert!(!response.text().contains("iframe"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embed_whose_id_could_smuggle_token_fields_gets_no_token() {
    let evil = "https://api.vod2.infomaniak.com/res/embed/x~acl=*.html";
    let page = article(&[&iframe("src", evil), &iframe("src", EMBED)]);
    let cms = Cms::fixed(Reply::html(page.clone())).await;
    let gate = Gate::start(&cms).await;
    let body = get_as_member(&gate.url("/videos/evil")).await.text();
    let tokens = tokens_in(&body);
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        body,
        expected(
            &page,
            &[(
                &format!("\"{EMBED}\""),
                format!("\"{EMBED}?token={}\"", tokens[0])
            )]
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn several_embeds_each_use_their_own_key_and_template() {
    let second_key = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let extra = r#"
[[embed]]
src = "https://player.example.net/{channel}/watch/{video}"
param = "auth"

[embed.token]
kind = "edgeauth"
key_file = "keys/second.hex"
algorithm = "sha256"
ttl = "1h"
acl = "/{channel}/{video}/*"
"#;
    let other = "https://player.example.net/news/watch/v42?lang=fr";
    let page = article(&[&iframe("src", EMBED), &iframe("src", other)]);
    let cms = Cms::fixed(Reply::html(page)).await;
    let key_file = format!("{second_key}\n");
    let gate = Gate::start_with(
        &config_text(cms.addr, extra),
        &[("keys/second.hex", &key_file)],
    )
    .await;
    let body = get_as_member(&gate.url("/videos/two")).await.text();
    let first = tokens_in(&body);
    assert_eq!(first.len(), 1, "{body}");
    assert_eq!(check_token(&first[0], KEY_HEX).2, "/hls/1jhvl2uqa5rdf/*");
    let auth_at = body
        .find("lang=fr&amp;auth=")
        .expect("second embed gets its own param")
        + "lang=fr&amp;auth=".len();
    let auth = &body[auth_at..auth_at + body[auth_at..].find('"').unwrap()];
    let (st, exp, acl) = check_token(auth, second_key);
    assert_eq!((exp - st, acl.as_str()), (3600, "/news/v42/*"));
}

/// A CMS that speaks HTTP/1.0: it answers `page` with no length and closes.
async fn http10_cms(page: &'static str) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(_head) = read_head(&mut stream).await else {
                    return;
                };
                let answer = format!("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n{page}");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http10_cms_page_reaches_an_http11_visitor_in_http11_on_a_kept_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PAGE: &str =
        "<p><iframe src=\"https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html\"></iframe>";
    let cms = http10_cms(PAGE).await;
    let gate = Gate::start_with(&config_text(cms, ""), &[]).await;
    let mut visitor = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    for path in ["/videos/a", "/public/a", "/videos/b"] {
        let cookie = format!("Cookie: sessionid={MEMBER}\r\n");
        let request = format!("GET {path} HTTP/1.1\r\nHost: site.example\r\n{cookie}\r\n");
        visitor.write_all(request.as_bytes()).await.unwrap();
        // The answer's end is in its framing, not in the connection closing.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.ends_with(b"0\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(3), visitor.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{path}: no end within 3 s: {}",
                        String::from_utf8_lossy(&answer)
                    )
                })
                .unwrap();
            assert!(
                n > 0,
                "{path}: closed: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8(answer).unwrap().to_ascii_lowercase();
        assert!(
            answer.starts_with("http/1.1 200 ok\r\n"),
            "{path}: {answer}"
        );
        if path.starts_with("/videos") {
            assert!(
                answer.contains("transfer-encoding: chunked\r\n"),
                "{answer}"
            );
            assert_eq!(tokens_in(&answer).len(), 1, "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embed_spelled_as_a_browser_still_reads_it_gets_its_token() {
    // Each loads the embed from the video host in a browser.
    let spellings = [
        "https:\\\\api.vod2.infomaniak.com\\res\\embed\\1jhvl2uqa5rdf.html",
        "https://api.vod2.infomaniak.com:443/res/embed/1jhvl2uqa5rdf.html",
        "https://api.vod2.infomaniak.com/res/embed/1jhvl2&#9;uqa5rdf.html",
        "https://api.vod2.infomaniak.com/res/./embed/x/../1jhvl2uqa5rdf.html",
    ];
    let embeds: Vec<String> = spellings.iter().map(|src| iframe("src", src)).collect();
    let page = article(&embeds.iter().map(String::as_str).collect::<Vec<_>>());
    let cms = Cms::fixed(Reply::html(page)).await;
    let gate = Gate::start(&cms).await;
    let body = get_as_member(&gate.url("/videos/intro")).await.text();
    assert_eq!(tokens_in(&body).len(), spellings.len(), "{body}");
    // Written back as the URL the browser loads.
    let written = format!("src=\"{EMBED}?token=");
    assert_eq!(body.matches(&written).count(), spellings.len(), "{body}");
}
