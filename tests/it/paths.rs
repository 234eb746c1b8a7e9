//! Every reading a server could make of a request decides its route: Unicode
//! spellings of a gated path are gated, dot segments in any spelling are
//! refused, and query routes gate the URLs a CMS serves a page under.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use embedgate::config::Settings;

const PAGE: &str = "<html><body><p>secret article</p></body></html>";

/// The test config, with "/" public and a "/secret/" route gated beside "/videos/".
fn open_site(cms: &Cms, extra: &str) -> String {
    let routes = r#"
[[route]]
prefix = "/"
access = "public"

[[route]]
prefix = "/secret/"
access = "session"
"#;
    config_text(cms.addr, &format!("{routes}{extra}"))
}

/// A WordPress site: everything public but the pages reached by id or preview.
fn wordpress(cms: &Cms) -> String {
    open_site(
        cms,
        r#"
[[route]]
query = ["p", "page_id", "preview"]
access = "session"
"#,
    )
}

/// Sends `target` as it is (a client library might normalise it) and returns the status line.
async fn raw_get(gate: &Gate, target: &[u8], cookie: Option<&str>) -> String {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = raw(gate.addr, &request).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

fn member() -> String {
    format!("sessionid={MEMBER}")
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_spellings_of_a_gated_path_are_gated_and_the_cms_is_not_asked() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    let spellings = [
        // Full-width "／ｖｉｄｅｏｓ／".
        "/%EF%BC%8F%EF%BD%96%EF%BD%89%EF%BD%84%EF%BD%85%EF%BD%8F%EF%BD%93%EF%BC%8Fintro",
        // Full-width letters after a real slash.
        "/%EF%BD%96%EF%BD%89%EF%BD%84%EF%BD%85%EF%BD%8F%EF%BD%93/intro",
        // "/VİDEOS/", capital I with a dot above.
        "/V%C4%B0DEOS/intro",
        // "/vídeos/", precomposed and with a combining accent.
        "/v%C3%ADdeos/intro",
        "/vi%CC%81deos/intro",
        // Latin-1 "/vídeos/", not UTF-8.
        "/v%EDdeos/intro",
        // Zero-width space, soft hyphen, byte order mark inside the word.
        "/vid%E2%80%8Beos/intro",
        "/vid%C2%ADeos/intro",
        "/vid%EF%BB%BFeos/intro",
        // Long s: "/ſecret/".
        "/%C5%BFecret/plans",
        "/%C5%BFECRET/plans",
        // Case and trailing dots, as before.
        "/Videos/intro",
        "/videos./intro",
    ];
    for path in spellings {
        let response = get(&gate.url(path), None).await;
        assert_eq!(response.status, 403, "{path}: {}", response.text());
        assert!(!response.text().contains("secret article"), "{path}");
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");

    // A member gets through, and the CMS gets the path as it was sent.
    for path in spellings {
        let response = get_as_member(&gate.url(path)).await;
        assert_eq!(response.status, 200, "{path}");
    }
    let seen: Vec<String> = cms
        .requests()
        .iter()
        .map(|s| s.uri.path_and_query().unwrap().to_string())
        .collect();
    assert_eq!(seen, spellings);

    // Other non-ASCII paths stay public.
    for path in [
        "/caf%C3%A9/menu",
        "/%E6%97%A5%E6%9C%AC/",
        "/v%C3%ADdeo-tips/",
    ] {
        assert_eq!(get(&gate.url(path), None).await.status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_non_ascii_bytes_in_a_gated_path_are_read_the_same_way() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    // Sent as raw UTF-8, which the HTTP parser lets through.
    let paths = [
        "/v\u{ED}deos/intro",
        "/vid\u{200B}eos/intro",
        "/\u{17F}ecret/x",
    ];
    for path in paths {
        let status = raw_get(&gate, path.as_bytes(), None).await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{path}");
    }
    assert!(cms.requests().is_empty());
    let member = member();
    for path in paths {
        let status = raw_get(&gate, path.as_bytes(), Some(&member)).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
    }
    assert_eq!(cms.requests().len(), paths.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dot_segment_in_any_spelling_is_answered_400_even_on_public_routes() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    let member = member();
    for path in [
        "/videos/./intro",
        "/public/../videos/intro",
        "/public/..;/videos/intro",
        "/public/..;jsessionid=1/videos/intro",
        "/public/.;x/videos/intro",
        "/public/%2e%2e/videos/intro",
        "/public/%2E%2E/videos/intro",
        "/public/%2e./videos/intro",
        "/public/.%2e/videos/intro",
        "/public/%2e/videos/intro",
        "/public/./x",
        "/public/x/..",
        "/public/x/.",
        "/public/.../x",
        "/public/..%20/videos/intro",
        // Full-width, small and leader dots that NFKC turns into ".".
        "/public/%EF%BC%8E%EF%BC%8E/videos/intro",
        "/public/%EF%BC%8E/x",
        "/public/%EF%B9%92%EF%B9%92/videos/intro",
        "/public/%E2%80%A5/videos/intro",
        // Dots kept apart by invisible characters.
        "/public/.%E2%80%8B./videos/intro",
        "/public/.%C2%AD./videos/intro",
        "/..",
        "/../etc/passwd",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 400 Bad Request",
            "{path}"
        );
        assert_eq!(
            raw_get(&gate, path.as_bytes(), Some(&member)).await,
            "HTTP/1.1 400 Bad Request",
            "{path}, as a member"
        );
    }
    assert!(cms.requests().is_empty());
    // Dots inside a name are no dot segment.
    for path in ["/public/.well-known/x", "/public/a..b", "/public/v1.2/"] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 200 OK",
            "{path}"
        );
    }
    assert_eq!(cms.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn spaces_stream_suffixes_and_escaped_query_marks_do_not_hide_a_gated_path() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&wordpress(&cms), &[]).await;
    // Read as "/videos/x" (or a query naming `p`) by a server that trims
    // segments, strips an NTFS stream, or decodes before splitting the query.
    for path in [
        "/%20videos/x",
        "/%20%20videos/x",
        "/%C2%A0videos/x",
        "/%E3%80%80videos/x",
        "/VIDEOS%20/x",
        "/videos::$INDEX_ALLOCATION/x",
        "/videos:$i30:$INDEX_ALLOCATION/x",
        "/videos::$DATA/x",
        "/videos%3Fx",
        "/videos%3f/x",
        "/videos%23/x",
        "/%3Fp=42",
        "/index.php%3Fp=42",
        "/videos.json/",
        "/Videos.JSON/",
        "/videos.json;v=1/",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 403 Forbidden",
            "{path}"
        );
    }
    // Control characters mean different things to different servers: refused.
    for path in [
        "/videos%09/x",
        "/%09videos/x",
        "/videos%0a/x",
        "/videos%0d%0a/x",
        "/videos%0b/x",
        "/videos%1f/x",
        "/videos%7f",
        "/public/x%09",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), Some(&member())).await,
            "HTTP/1.1 400 Bad Request",
            "{path}"
        );
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");
    for path in [
        "/about%20us",
        "/wiki/Special:Search",
        "/faq/what%3F",
        "/%3Fq=1",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 200 OK",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn double_escapes_and_overlong_utf8_are_answered_400() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    // What a server that decodes twice, or an old UTF-8 decoder, reads as a gated path.
    for path in [
        "/vid%2565os/intro",
        "/public/%252e%252e/videos/intro",
        "/public/%252Fvideos",
        "/public/%25%32%65",
        "/public/%C0%AE%C0%AE/videos/intro",
        "/vid%C1%A5os/intro",
        "/public/%E0%80%AE%E0%80%AE/videos/intro",
        "/public/%F0%80%80%AE/x",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), Some(&member())).await,
            "HTTP/1.1 400 Bad Request",
            "{path}"
        );
    }
    assert!(cms.requests().is_empty());
    // A % that escapes nothing once decoded, and real UTF-8, are fine.
    for path in [
        "/public/50%25off",
        "/public/100%25",
        "/public/caf%C3%A9",
        "/public/%E0%A4%85",
        // Windows-1252: "Álamo".
        "/public/%C1lamo",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 200 OK",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_covers_its_directory_page_in_any_format() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    // Rails and Spring serve "/videos.json" as "/videos" in that format.
    for path in [
        "/videos",
        "/videos.json",
        "/videos.html",
        "/Videos.JSON",
        "/secret.xml",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 403 Forbidden",
            "{path}"
        );
    }
    for path in [
        "/videosx",
        "/videos.old/x",
        "/videos-archive",
        "/public/videos.json",
    ] {
        assert_eq!(
            raw_get(&gate, path.as_bytes(), None).await,
            "HTTP/1.1 200 OK",
            "{path}"
        );
    }
}

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
    let gated: [(&str, &[u8]); 7] = [
        (FORM, b"p=42"),
        (FORM, b"author=x&P%5B%5D=42"),
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
