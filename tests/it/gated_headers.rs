//! The head of a rewritten page says what the visitor gets: no digest of
//! the CMS's bytes, the same Vary and Content-Encoding for a HEAD as for its
//! GET, and an embed's token never sent where the page's scheme could make
//! it cleartext.

use http::Method;

use crate::common::*;

/// Integrity headers of the CMS's bytes, with the values the CMS gives.
const DIGESTS: [(&str, &str); 4] = [
    ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
    (
        "digest",
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
    ),
    (
        "content-digest",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
    ),
    (
        "repr-digest",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
    ),
];

fn page() -> String {
    format!(
        "<html><body><p>{}</p><iframe src=\"{EMBED}\"></iframe></body></html>",
        "words ".repeat(400)
    )
}

fn with_digests(mut reply: Reply) -> Reply {
    for (name, value) in DIGESTS {
        reply = reply.header(name, value);
    }
    reply.header("want-digest", "sha-256")
}

/// A request for `url` by `method`, as the member when `member`, with
/// `accept` as its Accept-Encoding.
async fn fetch(method: Method, url: &str, member: bool, accept: Option<&str>) -> Fetched {
    let mut request = http::Request::builder().method(method).uri(url);
    if member {
        request = request.header("cookie", format!("sessionid={MEMBER}"));
    }
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    send(&client(), request.body(empty_body()).unwrap()).await
}

/// The CMS answers a HEAD with its GET's head and no body, as HTTP says.
fn head_like_get(reply: Reply) -> impl Fn(&Seen) -> Reply {
    move |seen| {
        let mut reply = reply.clone();
        if seen.method == Method::HEAD {
            reply.chunks.clear();
        }
        reply
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn digests_of_the_cms_bytes_are_dropped_from_rewritten_pages_only() {
    let cms = Cms::start(|seen| {
        let mut reply = if seen.uri.path().ends_with(".bin") {
            with_digests(Reply::with_type("application/octet-stream", "bytes"))
        } else {
            with_digests(Reply::html(page()))
        };
        if seen.method == Method::HEAD {
            reply.chunks.clear();
        }
        reply
    })
    .await;
    let gate = Gate::start(&cms).await;
    for (method, accept) in [
        (Method::GET, None),
        (Method::GET, Some("gzip")),
        (Method::HEAD, None),
    ] {
        let response = fetch(method.clone(), &gate.url("/videos/a"), true, accept).await;
        assert_eq!(response.status, 200, "{method} {accept:?}");
        for (name, _) in DIGESTS {
            assert!(
                !response.headers.contains_key(name),
                "{name} on a rewritten page ({method} {accept:?})"
            );
        }
        if method == Method::GET && accept.is_none() {
            assert_eq!(tokens_in(&response.text()).len(), 1, "rewritten");
        }
    }
    // Passed through: a public page, and what is not a page on a gated route.
    for (path, member) in [("/public/a", false), ("/videos/clip.bin", true)] {
        let response = fetch(Method::GET, &gate.url(path), member, Some("gzip")).await;
        assert_eq!(response.status, 200, "{path}");
        for (name, value) in DIGESTS {
            assert_eq!(response.headers[name], value, "{name} on {path}");
        }
        assert_eq!(response.headers["want-digest"], "sha-256", "{path}");
    }
    let public = get(&gate.url("/public/a"), None).await;
    assert_eq!(public.text(), page(), "untouched");
}

/// The headers the gateway decides for a page, beside those of the framing
/// of the body (which a HEAD has none of) and of this one exchange.
fn decided(response: &Fetched) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "date" | "x-request-id" | "transfer-encoding" | "content-length"
            )
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap().to_string(),
            )
        })
        .collect();
    headers.sort();
    headers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_of_a_gated_page_has_the_head_of_its_get() {
    let big = page();
    let small = "<p>short</p>".to_string();
    let gzipped = {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(big.as_bytes())
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    };
    let cases = [
        ("plain", Reply::html(big.clone())),
        ("small", Reply::html(small)),
        (
            "compressed by the CMS",
            Reply::with_type("text/html; charset=utf-8", gzipped)
                .header("content-encoding", "gzip"),
        ),
    ];
    for (case, reply) in cases {
        let cms = Cms::start(head_like_get(reply.header("etag", "\"v1\""))).await;
        let gate = Gate::start(&cms).await;
        for accept in [Some("gzip"), Some("br, gzip"), None] {
            let url = gate.url("/videos/a");
            let got = fetch(Method::GET, &url, true, accept).await;
            let head = fetch(Method::HEAD, &url, true, accept).await;
            assert_eq!((got.status, head.status), (200, 200), "{case} {accept:?}");
            assert!(head.body.is_empty());
            assert_eq!(decided(&head), decided(&got), "{case} {accept:?}");
            let vary = head.headers.get("vary").map(|v| v.to_str().unwrap());
            assert_eq!(vary, Some("Accept-Encoding"), "{case} {accept:?}");
            let coding = head
                .headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap());
            let expected = match (case, accept) {
                ("small", _) | (_, None) => None,
                (_, Some("gzip")) => Some("gzip"),
                _ => Some("br"),
            };
            assert_eq!(coding, expected, "{case} {accept:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protocol_relative_embed_comes_back_over_https_with_its_token() {
    let relative = EMBED.strip_prefix("https:").unwrap();
    let untouched = [
        "<iframe src=\"//www.youtube.com/embed/xyz\"></iframe>",
        "<iframe src=\"//api.vod2.infomaniak.com/res/embed/a~acl=*.html\"></iframe>",
    ];
    let page = format!(
        "<html><body>{}<iframe width=\"640\" src=\"{relative}?autoplay=1\"></iframe>\n\
         <iframe data-src=\"{relative}#t=5\"></iframe>{}</body></html>",
        untouched[0], untouched[1]
    );
    let cms = Cms::fixed(Reply::html(page.clone())).await;
    let gate = Gate::start(&cms).await;
    let response = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(response.status, 200);
    let text = response.text();
    let tokens = tokens_in(&text);
    assert_eq!(tokens.len(), 2, "{text}");
    for token in &tokens {
        let (_, _, acl) = check_token(token, KEY_HEX);
        assert_eq!(acl, "/hls/1jhvl2uqa5rdf/*");
    }
    let want = format!(
        "<html><body>{}<iframe width=\"640\" src=\"{EMBED}?autoplay=1&amp;token={}\"></iframe>\n\
         <iframe data-src=\"{EMBED}?token={}#t=5\"></iframe>{}</body></html>",
        untouched[0], tokens[0], tokens[1], untouched[1]
    );
    assert_eq!(text, want);
    // On a public route the page is not touched at all.
    let public = get(&gate.url("/public/a"), None).await;
    assert_eq!(public.text(), page);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protocol_relative_embed_waiting_for_a_remote_token_comes_back_over_https() {
    let api = Cms::fixed(Reply::with_type(
        "application/json",
        r#"{"result":"success","data":"tok-remote"}"#,
    ))
    .await;
    let relative = EMBED.strip_prefix("https:").unwrap();
    let cms = Cms::fixed(Reply::html(format!(
        "<p>before</p><iframe src=\"{relative}\"></iframe><p>after</p>"
    )))
    .await;
    let local = format!(
        "[embed.token]\nkind = \"edgeauth\"\nkey = \"{KEY_HEX}\"\nttl = \"5m\"\nacl = \"/hls/{{share}}/*\"\n"
    );
    let remote = format!(
        "[embed.token]\nkind = \"remote\"\nprovider = \"infomaniak\"\napi_base = \"http://{}\"\nchannel = \"ch42\"\nbearer = \"api-bearer\"\ntimeout = \"2s\"\n",
        api.addr
    );
    let config = config_text(cms.addr, "");
    assert!(config.contains(&local));
    let gate = Gate::start_with(&config.replacen(&local, &remote, 1), &[]).await;
    let response = get_as_member(&gate.url("/videos/a")).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        format!("<p>before</p><iframe src=\"{EMBED}?token=tok-remote\"></iframe><p>after</p>")
    );
    assert_eq!(api.requests().len(), 1);
}
