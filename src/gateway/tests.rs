//! Statuses of refusals, and Content-Type read as a browser reads it.

use super::page_type::*;
use super::*;

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
    assert_eq!(
        Refusal::Upstream(ProxyError::BadRequest("x")).status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        Refusal::SessionSource(SourceError::Unavailable("down".into())).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
