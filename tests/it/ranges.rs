//! Range requests on gated routes: media answers in part pass through (video
//! seeking, resumed downloads), a page never goes out in part: it is asked
//! for again whole, rewritten, and sent as a 200 that offers no ranges.

use crate::common::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

const CLIP: &str = "/videos/clip.mp4";
const PAGE: &str = "/videos/page";
const ETAG: &str = "\"v1\"";

/// The clip's bytes: no two neighbours alike, so a slice off by one shows.
fn clip() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

/// A page long enough to be compressed (over `min_size`), its embed in the middle.
fn page() -> String {
    let filler = "<p>Members only: the talk, its slides and its notes.</p>\n".repeat(12);
    format!(
        "<!doctype html>\n<html><body>\n{filler}<iframe src=\"{EMBED}\"></iframe>\n{filler}</body></html>\n"
    )
}

/// The one range `value` asks of `len` bytes, as first and last index; `None`
/// for anything else (several ranges, other units).
fn one_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => (len.checked_sub(suffix.parse().ok()?)?, len - 1),
        (first, "") => (first.parse().ok()?, len - 1),
        (first, last) => (
            first.parse().ok()?,
            last.parse::<usize>().ok()?.min(len - 1),
        ),
    };
    (first <= last && last < len).then_some((first, last))
}

/// Serves `body` as a CMS (or nginx in front of one) serves a file: with an
/// ETag and Accept-Ranges, one byte range honoured as a 206 unless If-Range
/// names another version.
fn serve(seen: &Seen, content_type: &str, body: &[u8]) -> Reply {
    let whole = Reply::with_type(content_type, Bytes::copy_from_slice(body))
        .header("accept-ranges", "bytes")
        .header("etag", ETAG);
    let Some(range) = seen.headers.get("range") else {
        return whole;
    };
    if seen.headers.get("if-range").is_some_and(|v| v != ETAG) {
        return whole;
    }
    let Some((first, last)) = one_range(range.to_str().unwrap(), body.len()) else {
        return whole;
    };
    let mut part = Reply::with_type(content_type, Bytes::copy_from_slice(&body[first..=last]))
        .header("accept-ranges", "bytes")
        .header("etag", ETAG)
        .header(
            "content-range",
            &format!("bytes {first}-{last}/{}", body.len()),
        );
    part.status = 206;
    part
}

/// A CMS that serves the clip and the page (gated and public), honouring Range.
async fn ranged_cms() -> Cms {
    Cms::start(|seen| match seen.uri.path() {
        CLIP => serve(seen, "video/mp4", &clip()),
        "/videos/poster.jpg" => serve(seen, "image/jpeg", &clip()),
        _ => serve(seen, "text/html; charset=utf-8", page().as_bytes()),
    })
    .await
}

/// A request for `path` as the member, with these extra headers.
fn member(
    method: Method,
    gate: &Gate,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut request = member_request(&gate.url(path));
    *request.method_mut() = method;
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

fn header<'a>(fetched: &'a Fetched, name: &str) -> Option<&'a str> {
    fetched.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The page as the gateway must send it: whole, with a valid token in its embed.
fn assert_whole_rewritten_page(fetched: &Fetched) {
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    let tokens = tokens_in(&fetched.text());
    assert_eq!(tokens.len(), 1, "{}", fetched.text());
    check_token(&tokens[0], KEY_HEX);
    let expected = page().replacen(EMBED, &format!("{EMBED}?token={}", tokens[0]), 1);
    assert_eq!(
        fetched.text(),
        expected,
        "the whole page, only the embed changed"
    );
    assert_no_range_headers(fetched);
}

fn assert_no_range_headers(fetched: &Fetched) {
    for name in ["content-range", "accept-ranges", "content-length", "etag"] {
        assert_eq!(header(fetched, name), None, "{name} on a rewritten page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_seeking_in_a_video_gets_exactly_the_bytes_asked_for() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let clip = clip();
    for (range, first, last) in [
        ("bytes=100-199", 100, 199),
        ("bytes=9990-", 9990, 9999),
        ("bytes=-16", 9984, 9999),
        ("bytes=0-0", 0, 0),
    ] {
        let fetched = send(
            &client(),
            member(Method::GET, &gate, CLIP, &[("range", range)]),
        )
        .await;
        assert_eq!(fetched.status, 206, "{range}");
        assert_eq!(fetched.body.as_ref(), &clip[first..=last], "{range}");
        assert_eq!(
            header(&fetched, "content-range"),
            Some(format!("bytes {first}-{last}/10000").as_str())
        );
        assert_eq!(
            header(&fetched, "content-length"),
            Some((last - first + 1).to_string().as_str())
        );
        assert_eq!(header(&fetched, "accept-ranges"), Some("bytes"));
        assert_eq!(header(&fetched, "content-type"), Some("video/mp4"));
        // Still gated content: kept out of shared caches, never sniffed.
        assert_eq!(header(&fetched, "cache-control"), Some("private, no-store"));
        assert_eq!(header(&fetched, "x-content-type-options"), Some("nosniff"));
        let asked = cms.requests();
        let last_asked = asked.last().unwrap();
        assert_eq!(last_asked.headers["range"], range);
        assert_eq!(last_asked.headers["accept-encoding"], "identity");
    }
    assert_eq!(cms.requests().len(), 4, "each part asked for once");

    // Images too.
    let fetched = send(
        &client(),
        member(
            Method::GET,
            &gate,
            "/videos/poster.jpg",
            &[("range", "bytes=10-19")],
        ),
    )
    .await;
    assert_eq!(fetched.status, 206);
    assert_eq!(fetched.body.as_ref(), &clip[10..20]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_without_a_session_is_refused_before_the_cms_is_asked() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    for path in [CLIP, PAGE] {
        let request = Request::get(gate.url(path))
            .header("range", "bytes=0-99")
            .header("if-range", ETAG)
            .body(empty_body())
            .unwrap();
        let fetched = send(&client(), request).await;
        assert_eq!(fetched.status, 403, "{path}");
        assert_eq!(header(&fetched, "content-range"), None);
        let request = Request::get(gate.url(path))
            .header("range", "bytes=0-99")
            .header("cookie", "sessionid=not-on-the-list")
            .body(empty_body())
            .unwrap();
        assert_eq!(send(&client(), request).await.status, 403, "{path}");
    }
    assert!(cms.requests().is_empty(), "the CMS never asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_on_a_page_gets_the_whole_page_rewritten_as_a_200() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    for range in ["bytes=0-9", "bytes=40-", "bytes=-5"] {
        let fetched = send(
            &client(),
            member(
                Method::GET,
                &gate,
                PAGE,
                &[("range", range), ("if-range", ETAG)],
            ),
        )
        .await;
        assert_whole_rewritten_page(&fetched);
        assert_eq!(
            header(&fetched, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&fetched, "cache-control"), Some("private, no-store"));
    }
    let asked = cms.requests();
    assert_eq!(asked.len(), 6, "each page asked for twice");
    for pair in asked.chunks(2) {
        let (part, whole) = (&pair[0], &pair[1]);
        assert!(part.headers.contains_key("range"), "first with its range");
        assert_eq!(part.headers["if-range"], ETAG);
        assert_eq!(whole.method, Method::GET);
        assert_eq!(whole.uri, part.uri);
        assert_eq!(whole.headers.get("range"), None, "then whole");
        assert_eq!(whole.headers.get("if-range"), None);
        assert_eq!(whole.headers["cookie"], format!("sessionid={MEMBER}"));
        assert!(whole.body.is_empty() && whole.body_complete);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_asked_for_whole_offers_no_ranges() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let fetched = get_as_member(&gate.url(PAGE)).await;
    assert_whole_rewritten_page(&fetched);
    assert_eq!(cms.requests().len(), 1);
    // A range beyond the page: the CMS's answer is whole (this one ignores
    // what it cannot serve), and so is the gateway's.
    let fetched = send(
        &client(),
        member(Method::GET, &gate, PAGE, &[("range", "bytes=99999-")]),
    )
    .await;
    assert_whole_rewritten_page(&fetched);
    assert_eq!(
        cms.requests().len(),
        2,
        "a whole answer is not asked for again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn if_range_goes_with_the_range_for_media() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let clip = clip();
    // The visitor's copy is the CMS's: the rest of it.
    let fetched = send(
        &client(),
        member(
            Method::GET,
            &gate,
            CLIP,
            &[("range", "bytes=5000-"), ("if-range", ETAG)],
        ),
    )
    .await;
    assert_eq!(fetched.status, 206);
    assert_eq!(fetched.body.as_ref(), &clip[5000..]);
    assert_eq!(
        header(&fetched, "content-range"),
        Some("bytes 5000-9999/10000")
    );
    assert_eq!(header(&fetched, "etag"), Some(ETAG));
    // Another version: the whole clip, as the CMS says.
    let fetched = send(
        &client(),
        member(
            Method::GET,
            &gate,
            CLIP,
            &[("range", "bytes=5000-"), ("if-range", "\"v0\"")],
        ),
    )
    .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body.as_ref(), clip.as_slice());
    assert_eq!(header(&fetched, "content-range"), None);
    let asked = cms.requests();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].headers["if-range"], ETAG);
    assert_eq!(asked[1].headers["if-range"], "\"v0\"");
    assert!(asked
        .iter()
        .all(|seen| seen.headers["range"] == "bytes=5000-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn head_with_a_range_on_a_page_is_the_whole_pages_head() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let fetched = send(
        &client(),
        member(Method::HEAD, &gate, PAGE, &[("range", "bytes=0-9")]),
    )
    .await;
    assert_eq!(fetched.status, 200);
    assert!(fetched.body.is_empty());
    assert_no_range_headers(&fetched);
    assert_eq!(
        header(&fetched, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let asked = cms.requests();
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|seen| seen.method == Method::HEAD));
    assert_eq!(asked[0].headers["range"], "bytes=0-9");
    assert_eq!(asked[1].headers.get("range"), None);

    // HEAD on media with a range: the part's head, as the CMS gave it.
    let fetched = send(
        &client(),
        member(Method::HEAD, &gate, CLIP, &[("range", "bytes=0-9")]),
    )
    .await;
    assert_eq!(fetched.status, 206);
    assert_eq!(header(&fetched, "content-range"), Some("bytes 0-9/10000"));
    assert_eq!(cms.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_ranges_and_ranges_on_other_methods_are_not_passed_on() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let clip = clip();
    // A multipart answer would hide each part's type: the CMS is asked whole.
    let fetched = send(
        &client(),
        member(
            Method::GET,
            &gate,
            CLIP,
            &[("range", "bytes=0-9,20-29"), ("if-range", ETAG)],
        ),
    )
    .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body.as_ref(), clip.as_slice());
    let post = member(Method::POST, &gate, PAGE, &[("range", "bytes=0-9")]);
    assert_whole_rewritten_page(&send(&client(), post).await);
    let asked = cms.requests();
    assert_eq!(asked.len(), 2);
    for seen in &asked {
        assert_eq!(seen.headers.get("range"), None, "{}", seen.method);
        assert_eq!(seen.headers.get("if-range"), None, "{}", seen.method);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validators_of_a_cached_copy_do_not_reach_the_cms_on_gated_routes() {
    // A 304 says no type: one for a page would keep a copy with stale tokens.
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    for path in [CLIP, PAGE] {
        let fetched = send(
            &client(),
            member(
                Method::GET,
                &gate,
                path,
                &[
                    ("if-none-match", ETAG),
                    ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ],
            ),
        )
        .await;
        assert_eq!(fetched.status, 200, "{path}");
    }
    for seen in cms.requests() {
        assert_eq!(seen.headers.get("if-none-match"), None);
        assert_eq!(seen.headers.get("if-modified-since"), None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_the_cms_will_only_send_in_part_is_a_502() {
    // Whatever it is asked, this CMS answers the first ten bytes.
    let cms = Cms::start(|_| {
        let page = page();
        let mut part = Reply::html(Bytes::copy_from_slice(&page.as_bytes()[..10]))
            .header("content-range", &format!("bytes 0-9/{}", page.len()));
        part.status = 206;
        part
    })
    .await;
    let gate = Gate::start(&cms).await;
    let fetched = send(
        &client(),
        member(Method::GET, &gate, PAGE, &[("range", "bytes=0-9")]),
    )
    .await;
    assert_eq!(fetched.status, 502);
    assert_eq!(header(&fetched, "content-range"), None);
    assert_eq!(cms.requests().len(), 2, "asked again whole, in vain");
    // Unasked: not asked again.
    let fetched = get_as_member(&gate.url(PAGE)).await;
    assert_eq!(fetched.status, 502);
    assert_eq!(cms.requests().len(), 3);
    // A 200 that says it holds a range is no whole page either.
    let cms = Cms::fixed(Reply::html(page()).header("content-range", "bytes 0-99/5000")).await;
    let gate = Gate::start(&cms).await;
    assert_eq!(get_as_member(&gate.url(PAGE)).await.status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_on_a_get_with_a_body_cannot_be_asked_again() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let mut request = member(Method::GET, &gate, PAGE, &[("range", "bytes=0-9")]);
    *request.body_mut() = Full::new(Bytes::from_static(b"odd, but allowed"));
    let fetched = send(&client(), request).await;
    assert_eq!(fetched.status, 502);
    assert_eq!(cms.requests().len(), 1);
    // Media in part is fine all the same.
    let mut request = member(Method::GET, &gate, CLIP, &[("range", "bytes=0-9")]);
    *request.body_mut() = Full::new(Bytes::from_static(b"odd, but allowed"));
    let fetched = send(&client(), request).await;
    assert_eq!(fetched.status, 206);
    assert_eq!(fetched.body.as_ref(), &clip()[..10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_in_part_on_a_public_route_passes_as_it_came() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let request = Request::get(gate.url("/public/page"))
        .header("range", "bytes=0-9")
        .body(empty_body())
        .unwrap();
    let fetched = send(&client(), request).await;
    assert_eq!(fetched.status, 206);
    assert_eq!(fetched.body.as_ref(), &page().as_bytes()[..10]);
    assert_eq!(
        header(&fetched, "content-range"),
        Some(format!("bytes 0-9/{}", page().len()).as_str())
    );
    assert_eq!(cms.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_on_a_page_over_http2_and_compressed_is_the_whole_page() {
    let cms = ranged_cms().await;
    let gate = Gate::start(&cms).await;
    let fetched = send(
        &h2_client(),
        member(Method::GET, &gate, PAGE, &[("range", "bytes=0-9")]),
    )
    .await;
    assert_eq!(fetched.version, http::Version::HTTP_2);
    assert_whole_rewritten_page(&fetched);
    let fetched = send(
        &client(),
        member(
            Method::GET,
            &gate,
            PAGE,
            &[("range", "bytes=0-9"), ("accept-encoding", "gzip")],
        ),
    )
    .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(header(&fetched, "content-encoding"), Some("gzip"));
    assert_no_range_headers(&fetched);
    assert_eq!(header(&fetched, "content-length"), None);
    assert_eq!(cms.requests().len(), 4);
}
