//! Query routes gate the URLs a CMS serves a page under: the parameters a
//! WordPress post is reached by, in the query or a POSTed form as PHP reads
//! them, and a mistake in such a route is reported with file, line and key.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::paths::{member, raw_get, wordpress, PAGE};
use embedgate::config::Settings;

#[tokio::test(flavor = "multi_thread")]
async fn query_routes_gate_the_urls_wordpress_serves_a_post_under() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&wordpress(&cms), &[]).await;
    let gated = [
        "/?p=42",
        "/index.php?page_id=7",
        "/?preview=true&p=42",
        "/some/post/?preview=true",
        "/?s=x&p=42",
        "/?x=1;p=42",
        // Names as PHP (or a case-insensitive server) files them.
        "/?P=42",
        "/?p%5B%5D=42",
        "/?p[]=42",
        "/?page.id=7",
        "/?page+id=7",
        "/?%70=42",
        // Classic ASP.NET decodes %uXXXX.
        "/?%u0070=42",
        // PHP reads a "[" never closed as "_": page_id.
        "/?page[id=7",
        "/?page%5Bid=7",
        // Rack 2 reads a name after the brackets it starts with: p.
        "/?[p]=42",
        // Hidden behind encoded separators, for a server that decodes first.
        "/?p%3D=42",
        "/?x=1%26p%3D42",
        "/?p",
    ];
    for target in gated {
        let status = raw_get(&gate, target.as_bytes(), None).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{target}: {status}");
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");

    let member = member();
    for target in ["/?p=42", "/index.php?page_id=7", "/?P=42"] {
        let status = raw_get(&gate, target.as_bytes(), Some(&member)).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{target}: {status}");
    }
    assert_eq!(cms.requests().len(), 3);

    // Parameters the route does not name leave the page public.
    let open = [
        "/",
        "/?s=videos",
        "/?paged=2",
        "/?pp=1",
        "/?p_=1",
        "/?q=p",
        "/?x=p%3D1",
        "/about/?page=2",
    ];
    for target in open {
        let status = raw_get(&gate, target.as_bytes(), None).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{target}: {status}");
    }
    let seen: Vec<String> = cms.requests()[3..]
        .iter()
        .map(|s| s.uri.path_and_query().unwrap().to_string())
        .collect();
    assert_eq!(seen, open, "public requests are forwarded as sent");

    // A path route stricter than the query's keeps its own access.
    let status = raw_get(&gate, b"/videos/intro?p=1", None).await;
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
}

/// POSTs `body` as `content_type` to `path` and returns the status line.
async fn raw_post(
    gate: &Gate,
    path: &str,
    content_type: &str,
    body: &[u8],
    cookie: Option<&str>,
) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(cookie) = cookie {
        request.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    let answer = raw(gate.addr, &request).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn query_routes_gate_a_form_body_that_names_them_as_php_reads_it() {
    const FORM: &str = "application/x-www-form-urlencoded";
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&wordpress(&cms), &[]).await;
    // WordPress reads its query names from a POSTed form first.
    let long = format!("comment={}&p=42", "a".repeat(70_000));
    let gated: [(&str, &[u8]); 8] = [
        (FORM, b"p=42"),
        (FORM, b"author=x&P%5B%5D=42"),
        (FORM, b"author=x&page[id=7"),
        // PHP ends the type at a comma or a space too.
        ("application/x-www-form-urlencoded, x", b"p=42"),
        (
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            b"x=1%26page_id%3D7",
        ),
        // Names not read here: every query name is taken as sent.
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
        ),
        // Too large to read before the gate decides.
        (FORM, long.as_bytes()),
        (FORM, &long.as_bytes()[..65_600]),
    ];
    for (content_type, body) in gated {
        let status = raw_post(&gate, "/", content_type, body, None).await;
        assert!(
            status.starts_with("HTTP/1.1 403"),
            "{content_type}: {status}"
        );
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");

    // A form that names none, or a body PHP does not read as a form, passes,
    // and reaches the CMS whole.
    let open: [(&str, &[u8]); 3] = [
        (FORM, b"author=x&comment=hello&pp=1"),
        ("application/json", b"{\"p\": 42}"),
        (FORM, b""),
    ];
    for (content_type, body) in open {
        let status = raw_post(&gate, "/wp-comments-post.php", content_type, body, None).await;
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{content_type}: {status}"
        );
    }
    let seen = cms.requests();
    assert_eq!(seen.len(), 3);
    for (seen, (_, body)) in seen.iter().zip(open) {
        assert_eq!(seen.body, body);
        assert!(seen.body_complete);
    }

    // A member's forms reach the CMS whole, however large: the part read to
    // look into it, then the rest.
    let member = member();
    for body in [&b"p=42"[..], long.as_bytes()] {
        let status = raw_post(&gate, "/", FORM, body, Some(&member)).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let seen = cms.requests().pop().unwrap();
        assert_eq!(seen.body.len(), body.len());
        assert!(seen.body == body, "the CMS got the member's form unchanged");
        assert_eq!(seen.headers["content-length"], body.len().to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_body_in_a_content_coding_counts_as_naming_every_query_route() {
    use tokio::io::AsyncReadExt;
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&wordpress(&cms), &[]).await;
    // Apache's SetInputFilter DEFLATE and Express's urlencoded() inflate a
    // body before PHP or the app reads its names: unreadable here.
    let mut gzipped = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(&b"comment=hello&p=42"[..])
        .read_to_end(&mut gzipped)
        .await
        .unwrap();
    let post = |coding: &str, cookie: Option<&str>| {
        let mut request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Encoding: {coding}\r\nContent-Length: {}\r\n",
            gzipped.len()
        )
        .into_bytes();
        if let Some(cookie) = cookie {
            request.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(&gzipped);
        let addr = gate.addr;
        async move {
            let answer = raw(addr, &request).await;
            let answer = String::from_utf8_lossy(&answer);
            answer.lines().next().unwrap_or_default().to_string()
        }
    };
    for coding in ["gzip", "deflate", "identity, gzip"] {
        let status = post(coding, None).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{coding}: {status}");
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");

    // A member's reaches the CMS as sent.
    let status = post("gzip", Some(&member())).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let seen = cms.requests().pop().unwrap();
    assert_eq!(seen.body.as_ref(), &gzipped[..]);
    assert_eq!(seen.headers["content-encoding"], "gzip");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_read_ahead_counts_against_the_body_deadline_and_a_whole_one_is_no_upload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let config = with_setting(
        with_setting(
            with_setting(wordpress(&cms), "server", "body_deadline = \"2s\""),
            "upstream",
            "max_in_flight = 2",
        ),
        "upstream",
        "queue_timeout = \"300ms\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let status = |answer: &[u8]| {
        String::from_utf8_lossy(answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };

    // 64 KiB read ahead over 1.6 s, the rest over 1.2 s more: 2.8 s in all.
    let slow = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let (mut from_gate, mut to_gate) = slow.into_split();
    // Read while sending: the answer comes before the body ends, and the
    // connection may be reset once more bytes arrive after it.
    let answer = tokio::spawn(async move {
        let mut answer = vec![0u8; 1024];
        let n = from_gate.read(&mut answer).await.unwrap_or(0);
        answer.truncate(n);
        answer
    });
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n",
        member()
    );
    to_gate.write_all(head.as_bytes()).await.unwrap();
    'sending: for (pieces, size, every) in [(10, 7000, 160), (6, 5000, 200)] {
        for _ in 0..pieces {
            tokio::time::sleep(Duration::from_millis(every)).await;
            if to_gate.write_all(&vec![b'a'; size]).await.is_err() {
                break 'sending;
            }
        }
    }
    let answer = answer.await.unwrap();
    assert!(
        status(&answer).starts_with("HTTP/1.1 408"),
        "past the deadline in all: {}",
        status(&answer)
    );

    // An upload holds the one place uploads may take (half of two)...
    let mut upload = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    upload
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nx")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...and a chunked form read whole ahead of the gate is no upload.
    let form = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ncomment=x\r\n0\r\n\r\n";
    let answer = raw(gate.addr, form).await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
    let seen = cms.requests().pop().unwrap();
    assert_eq!(seen.body.as_ref(), b"comment=x");
    drop(upload);
}

#[test]
fn query_routes_are_checked_with_file_line_and_key() {
    let base = wordpress_text();
    let cases = [
        (
            "query = [\"p\", \"page_id\", \"preview\"]",
            "query = [\"p\"]\nprefix = \"/\"",
            "route[2].query",
            "not both",
        ),
        (
            "query = [\"p\", \"page_id\", \"preview\"]",
            "query = []",
            "route[2].query",
            "names no parameter",
        ),
        (
            "query = [\"p\", \"page_id\", \"preview\"]",
            "query = [\"p=1\"]",
            "route[2].query",
            "not a parameter name",
        ),
        (
            "query = [\"p\", \"page_id\", \"preview\"]\naccess = \"session\"",
            "query = [\"p\", \"page_id\", \"preview\"]\naccess = \"public\"",
            "route[2].access",
            "can only gate",
        ),
        (
            "query = [\"p\", \"page_id\", \"preview\"]\naccess = \"session\"",
            "access = \"session\"",
            "route[2].prefix",
            "needs prefix",
        ),
    ];
    for (from, to, key, why) in cases {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{from}");
        let err = Settings::from_toml(&text, Path::new("gateway.toml"))
            .map(|_| ())
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains(key) && err.contains(why), "{key}: {err}");
        assert!(err.contains("gateway.toml:"), "{err}");
    }
    let gated = base.replace(
        "\"preview\"]\naccess = \"session\"",
        "\"preview\"]\ngated = true",
    );
    assert_ne!(gated, base);
    assert!(Settings::from_toml(&gated, Path::new("gateway.toml")).is_ok());
}

fn wordpress_text() -> String {
    let text = r#"
[server]
listen = "127.0.0.1:0"

[upstream]
url = "http://127.0.0.1:9"

[session]
cookie = "sessionid"

[session.allowlist]
file = "allowlist.txt"

[[route]]
prefix = "/"
access = "public"

[[route]]
prefix = "/videos/"
access = "session"

[[route]]
query = ["p", "page_id", "preview"]
access = "session"
"#;
    text.to_string()
}
