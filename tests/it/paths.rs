//! Every reading a server could make of a request path decides its route:
//! Unicode spellings of a gated path are gated, dot segments in any spelling
//! are refused, and no escape, suffix or format extension hides a gated path.

use crate::common::*;

pub(crate) const PAGE: &str = "<html><body><p>secret article</p></body></html>";

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
pub(crate) fn wordpress(cms: &Cms) -> String {
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
pub(crate) async fn raw_get(gate: &Gate, target: &[u8], cookie: Option<&str>) -> String {
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

pub(crate) fn member() -> String {
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

/// Each of `paths` is a 403 without a session, never asked of the CMS, and
/// reaches the CMS as it was sent for a member.
async fn assert_gated_and_forwarded_as_sent(gate: &Gate, cms: &Cms, paths: &[&str]) {
    for path in paths {
        let status = raw_get(gate, path.as_bytes(), None).await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{path}");
    }
    assert!(cms.requests().is_empty(), "the CMS saw a gated request");
    for path in paths {
        let status = raw_get(gate, path.as_bytes(), Some(&member())).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
    }
    let seen: Vec<String> = cms
        .requests()
        .iter()
        .map(|s| s.uri.path_and_query().unwrap().to_string())
        .collect();
    assert_eq!(seen, paths, "forwarded as sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_that_starts_with_two_slashes_is_gated_as_a_url_parser_reads_it() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let gate = Gate::start_with(&open_site(&cms, ""), &[]).await;
    // PHP's parse_url and Node's URL read "//public/videos/intro" as the
    // host "public" and the path "/videos/intro".
    let paths = ["//public/videos/intro", "///public/videos/intro"];
    assert_gated_and_forwarded_as_sent(&gate, &cms, &paths).await;
    // Public in every reading.
    let status = raw_get(&gate, b"//videos/public/x", None).await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "gated as sent");
    let status = raw_get(&gate, b"//x/public/a", None).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_semicolon_kept_in_its_segment_does_not_open_a_gated_path() {
    let cms = Cms::fixed(Reply::html(PAGE)).await;
    let free = "[[route]]\nprefix = \"/videos/free/\"\naccess = \"public\"\n";
    let gate = Gate::start_with(&open_site(&cms, free), &[]).await;
    // nginx, Apache, PHP, Node and Django read the segment "free;" under
    // the gated "/videos/", not the public "/videos/free/".
    let paths = [
        "/videos/free;/premium-video",
        "/videos/free%3B/premium-video",
        "/Videos/Free;x=1/premium-video",
    ];
    assert_gated_and_forwarded_as_sent(&gate, &cms, &paths).await;
    for path in ["/videos/free/intro", "/videos/free/intro;v=2"] {
        let status = raw_get(&gate, path.as_bytes(), None).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
    }
}
