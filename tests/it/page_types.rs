//! A gated page never goes out untokened because of its headers: every
//! Content-Type and Content-Encoding line counts as a browser counts it, what a
//! browser would sniff goes out with nosniff, XHTML is read as XML, and a
//! byte-order mark decides the encoding.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::common::*;

/// A gated page with one embed.
pub(crate) fn page_with_embed() -> String {
    format!("<html><body><p>members only</p><iframe src=\"{EMBED}\"></iframe></body></html>")
}

/// A reply with exactly these headers (and a Content-Length), no Content-Type of its own.
fn reply_with(headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let body = body.into();
    let mut reply = Reply::with_type("x/x", body.clone());
    reply.headers = vec![("content-length".into(), body.len().to_string())];
    for (name, value) in headers {
        reply = reply.header(name, value);
    }
    reply
}

async fn member_gets(reply: Reply) -> Fetched {
    let cms = Cms::fixed(reply).await;
    let gate = Gate::start(&cms).await;
    get_as_member(&gate.url("/videos/page")).await
}

pub(crate) fn assert_tokened(page: &Fetched) {
    assert_eq!(page.status, 200, "{}", page.text());
    let tokens = tokens_in(&page.text());
    assert_eq!(tokens.len(), 1, "{}", page.text());
    check_token(&tokens[0], KEY_HEX);
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_content_type_line_counts_as_a_browser_counts_it() {
    // A browser takes the last valid type: this is an HTML page to it.
    let page = member_gets(reply_with(
        &[
            ("content-type", "text/plain"),
            ("content-type", "text/html"),
        ],
        page_with_embed(),
    ))
    .await;
    assert_tokened(&page);
    let types: Vec<_> = page.headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["text/html"], "one type, as the browser reads it");
    let page = member_gets(reply_with(
        &[("content-type", "text/plain, text/html; charset=utf-8")],
        page_with_embed(),
    ))
    .await;
    assert_tokened(&page);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gated_response_a_browser_would_sniff_is_sent_with_nosniff() {
    for headers in [
        &[][..],
        &[("content-type", "")],
        &[("content-type", "unknown/unknown")],
        &[("content-type", "application/unknown")],
        &[("content-type", "*/*")],
        &[("content-type", "text/html, nonsense/")],
        &[("content-type", "image/png")],
    ] {
        let page = member_gets(reply_with(headers, page_with_embed())).await;
        assert_eq!(page.status, 200);
        assert_eq!(
            page.headers["x-content-type-options"], "nosniff",
            "{headers:?}"
        );
        let text = page.text();
        assert!(
            !tokens_in(&text).is_empty() || text == page_with_embed(),
            "either rewritten or passed on as it is: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xhtml_is_rewritten_and_every_gated_answer_carries_nosniff() {
    let xhtml = format!(
        "<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><body><iframe src=\"{EMBED}\"/></body></html>"
    );
    let page = member_gets(Reply::with_type("application/xhtml+xml", xhtml)).await;
    assert_tokened(&page);
    let cms = Cms::fixed(Reply::html(page_with_embed())).await;
    let gate = Gate::start(&cms).await;
    let denied = get(&gate.url("/videos/page"), None).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.headers["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread")]
async fn xhtml_is_read_as_xml_where_a_self_closing_tag_is_whole() {
    // As XML, `<script/>` and `<iframe/>` hold nothing: the embed after them is
    // an element the browser loads. As HTML, both open raw text to the end.
    let page = format!(
        "<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><head>\
         <script src=\"/a.js\"/><title/><style/></head><body>\
         <iframe src=\"https://maps.example/m\"/><textarea/><noscript/>\
         <iframe src=\"{EMBED}\"></iframe></body></html>"
    );
    let xhtml = member_gets(Reply::with_type("application/xhtml+xml", page.clone())).await;
    assert_eq!(xhtml.status, 200);
    let text = xhtml.text();
    assert_eq!(tokens_in(&text).len(), 1, "{text}");
    assert_tokened(&xhtml);
    let html = member_gets(Reply::html(page.clone())).await;
    assert_eq!(
        html.text(),
        page,
        "as HTML the embed is script text, left as it is"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_utf8_byte_order_mark_decides_the_encoding_even_when_split() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(page_with_embed().as_bytes());
    // The header names an encoding the rewriter cannot read; the mark wins, as in a browser.
    let page = member_gets(reply_with(
        &[("content-type", "text/html; charset=utf-16")],
        body.clone(),
    ))
    .await;
    assert_tokened(&page);
    assert!(page.body.starts_with(b"\xEF\xBB\xBF<html>"));
    let split = Reply::chunked(
        "text/html; charset=utf-16",
        vec![
            Bytes::from_static(b"\xEF"),
            Bytes::from_static(b"\xBB"),
            Bytes::copy_from_slice(&body[2..]),
        ],
    );
    assert_tokened(&member_gets(split).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_utf16_page_under_an_ascii_charset_is_refused_never_sent_untokened() {
    // Read as Latin-1, "<\0i\0f\0r\0a\0m\0e\0" holds no iframe; a browser reads UTF-16.
    let mut body = vec![0xFF, 0xFE];
    body.extend(page_with_embed().encode_utf16().flat_map(u16::to_le_bytes));
    for content_type in ["text/html; charset=iso-8859-1", "text/html"] {
        let page = member_gets(reply_with(&[("content-type", content_type)], body.clone())).await;
        assert_eq!(page.status, 502, "{content_type}");
    }
}

async fn gzip(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(text.as_bytes())
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_content_encoding_line_counts() {
    let body = gzip(&page_with_embed()).await;
    let page = member_gets(reply_with(
        &[
            ("content-type", "text/html"),
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ],
        body.clone(),
    ))
    .await;
    assert_tokened(&page);
    assert!(page.headers.get("content-encoding").is_none());
    // Two codings stacked over two lines: not one the gateway reads.
    let twice = gzip(&String::from_utf8_lossy(&body)).await;
    let page = member_gets(reply_with(
        &[
            ("content-type", "text/html"),
            ("content-encoding", "gzip"),
            ("content-encoding", "gzip"),
        ],
        twice,
    ))
    .await;
    assert_eq!(page.status, 502);
}
