//! Statuses of refusals, Content-Type read as a browser reads it, and pages
//! answered in part.

use super::page_type::*;
use super::*;
use crate::allowlist::SourceError;
use crate::gate::PathError;
use http::HeaderMap;

fn content_type(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
    h
}

fn lines(values: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for value in values {
        h.append(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    h
}

fn read(values: &[&[u8]]) -> (MediaType, Option<&'static str>, Option<String>) {
    let declared = declared_type(&lines(values));
    (
        declared.media,
        declared
            .encoding
            .map(|e| <&encoding_rs::Encoding>::from(e.encoding()).name()),
        declared.normalized.map(|v| v.to_str().unwrap().to_string()),
    )
}

#[test]
fn recognises_html_and_its_charset() {
    assert!(declared_type(&content_type("text/html")).is_markup());
    assert_eq!(read(&[b"Text/HTML; charset=UTF-8"]).0, MediaType::Html);
    assert_eq!(read(&[b"application/xhtml+xml"]).0, MediaType::Xhtml);
    assert_eq!(read(&[b"text/htmlx"]).0, MediaType::Other);
    assert_eq!(read(&[b"application/json"]).0, MediaType::Other);
    assert_eq!(
        read(&[b"text/html; charset=\"ISO-8859-1\""]).1,
        Some("windows-1252")
    );
    assert_eq!(read(&[b"text/html"]).1, Some("UTF-8"));
    assert_eq!(read(&[b"text/html; charset=utf-16"]).1, None);
    assert_eq!(read(&[b"text/html; charset=nonsense"]).1, None);
}

#[test]
fn content_type_is_read_as_a_browser_reads_it() {
    // No type, or one a browser sniffs.
    for sniffed in [
        &[][..],
        &[&b""[..]],
        &[b"unknown/unknown"],
        &[b"application/unknown"],
        &[b"*/*"],
        &[b"text"],
        &[b"text /html"],
        &[b"text/ html"],
    ] {
        assert_eq!(read(sniffed).0, MediaType::Unknown, "{sniffed:?}");
    }
    // Every line and every value counts: the last valid one wins.
    assert_eq!(
        read(&[b"text/plain", b"text/html"]),
        (MediaType::Html, Some("UTF-8"), Some("text/html".into()))
    );
    assert_eq!(
        read(&[b"text/plain, text/html;charset=gbk"]),
        (
            MediaType::Html,
            Some("GBK"),
            Some("text/html; charset=gbk".into())
        )
    );
    assert_eq!(read(&[b"text/html", b"text/plain"]).0, MediaType::Other);
    assert_eq!(read(&[b"text/html, */*"]).0, MediaType::Html);
    assert_eq!(read(&[b"text/html, nonsense"]).0, MediaType::Html);
    // A charset carries over to a later value of the same type, and the first one stays.
    assert_eq!(
        read(&[b"text/html;charset=gbk", b"text/html"]).1,
        Some("GBK")
    );
    assert_eq!(
        read(&[b"text/html;charset=gbk, text/html;charset=utf-8, text/html"]).1,
        Some("GBK")
    );
    assert_eq!(
        read(&[b"text/html;charset=gbk, text/plain, text/html"]).1,
        Some("UTF-8")
    );
    // Commas in quoted strings do not split; escapes are undone.
    assert_eq!(
        read(&[b"text/html; x=\"a, text/plain\"; charset=\"win\\dows-1252\""]),
        (MediaType::Html, Some("windows-1252"), None)
    );
    // The first charset parameter wins; an empty one is skipped.
    assert_eq!(
        read(&[b"text/html; charset=; charset=iso-8859-2; charset=utf-8"]).1,
        Some("ISO-8859-2")
    );
}

#[test]
fn each_refusal_has_its_status() {
    assert_eq!(
        Refusal::BadPath(PathError::AboveRoot).status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        Refusal::Upstream(ProxyError::Timeout("x")).status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        Refusal::Upstream(ProxyError::Unavailable("x".into())).status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(Refusal::Unrewritable("x").status(), StatusCode::BAD_GATEWAY);
    assert_eq!(Refusal::BadUpstream("x").status(), StatusCode::BAD_GATEWAY);
    assert_eq!(Refusal::BadRequest("x").status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        Refusal::MethodNotAllowed.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(Refusal::UnknownCoding.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        Refusal::Upstream(ProxyError::BadRequest("x")).status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        Refusal::SessionSource(SourceError::Unavailable("down".into())).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn a_page_in_part_is_told_from_media_in_part() {
    let answer = |status: u16, content_type: Option<&str>, range: Option<&str>| {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        }
        if let Some(value) = range {
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(value).unwrap());
        }
        partial_page(StatusCode::from_u16(status).unwrap(), &headers)
    };
    let part = Some("bytes 0-9/100");
    assert!(answer(206, Some("text/html; charset=utf-8"), part));
    assert!(answer(206, Some("application/xhtml+xml"), part));
    assert!(
        answer(206, Some("text/plain, text/html"), part),
        "as a browser reads it"
    );
    assert!(
        answer(206, Some("text/html"), None),
        "a 206 is a part, said or not"
    );
    assert!(
        answer(200, Some("text/html"), part),
        "a success that says it is a part"
    );
    assert!(!answer(200, Some("text/html"), None));
    assert!(
        !answer(416, Some("text/html"), Some("bytes */100")),
        "no part of anything"
    );
    for media in [
        "video/mp4",
        "application/vnd.apple.mpegurl",
        "video/mp2t",
        "image/jpeg",
    ] {
        assert!(!answer(206, Some(media), part), "{media}");
    }
    // Never read as HTML with nosniff: passes as it came, as a whole one does.
    assert!(!answer(206, None, part));
    assert!(!answer(206, Some("unknown/unknown"), part));
}

#[test]
fn the_whole_page_is_asked_for_with_everything_but_the_range() {
    let (parts, ()) = Request::head("http://cms:8081/videos/page?x=1")
        .header(header::RANGE, "bytes=0-9")
        .header(header::IF_RANGE, "\"v1\"")
        .header(header::COOKIE, "sessionid=m")
        .header(header::ACCEPT_ENCODING, "identity")
        .body(())
        .unwrap()
        .into_parts();
    let whole = without_range(&parts);
    assert_eq!(whole.method, Method::HEAD);
    assert_eq!(whole.uri, parts.uri);
    assert_eq!(whole.version, parts.version);
    assert!(!whole.headers.contains_key(header::RANGE));
    assert!(!whole.headers.contains_key(header::IF_RANGE));
    assert_eq!(whole.headers[header::COOKIE], "sessionid=m");
    assert_eq!(whole.headers[header::ACCEPT_ENCODING], "identity");
}
