//! Compressed pages: decoded before the rewriter, compressed again for a
//! visitor who accepts it, streamed, and a corrupt one never sent as whole.

use std::time::Duration;

use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, DeflateEncoder, GzipDecoder, GzipEncoder, ZlibEncoder,
    ZstdEncoder,
};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::common::*;

fn page() -> String {
    let embed = format!("<iframe src=\"{EMBED}\"></iframe>");
    format!(
        "<html><body><p>{}</p>{embed}</body></html>",
        "words ".repeat(400)
    )
}

async fn compressed(coding: &str, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let input = text.as_bytes();
    match coding {
        "gzip" => GzipEncoder::new(input).read_to_end(&mut out).await,
        "br" => BrotliEncoder::new(input).read_to_end(&mut out).await,
        // HTTP's deflate: the zlib format (RFC 1950).
        "zlib" => ZlibEncoder::new(input).read_to_end(&mut out).await,
        // Raw deflate (RFC 1951), as some servers send for deflate.
        "raw-deflate" => DeflateEncoder::new(input).read_to_end(&mut out).await,
        _ => ZstdEncoder::new(input).read_to_end(&mut out).await,
    }
    .unwrap();
    out
}

async fn decoded(coding: Option<&str>, body: &[u8]) -> String {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            GzipDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some("br") => {
            BrotliDecoder::new(body)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    String::from_utf8(out).unwrap()
}

async fn fetch(url: &str, accept: Option<&str>) -> Fetched {
    let mut request = http::Request::get(url).header("cookie", format!("sessionid={MEMBER}"));
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    send(&client(), request.body(empty_body()).unwrap()).await
}

#[tokio::test]
async fn gzip_br_and_zstd_pages_are_rewritten_and_sent_as_each_visitor_accepts() {
    for upstream in ["gzip", "br", "zstd"] {
        let body = compressed(upstream, &page()).await;
        let cms = Cms::fixed(
            Reply::with_type("text/html; charset=utf-8", body).header("content-encoding", upstream),
        )
        .await;
        let gate = Gate::start(&cms).await;
        for (accept, expected) in [
            (Some("gzip, deflate, br"), Some("br")),
            (Some("gzip"), Some("gzip")),
            (None, None),
        ] {
            let response = fetch(&gate.url("/videos/a"), accept).await;
            assert_eq!(response.status, 200, "{upstream} for {accept:?}");
            let coding = response
                .headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(coding.as_deref(), expected, "{upstream} for {accept:?}");
            assert!(response.headers["vary"]
                .to_str()
                .unwrap()
                .contains("Accept-Encoding"));
            let text = decoded(coding.as_deref(), &response.body).await;
            let tokens = tokens_in(&text);
            assert_eq!(tokens.len(), 1, "{upstream} for {accept:?}: {text}");
            check_token(&tokens[0], KEY_HEX);
            assert_eq!(
                text.replace(&format!("?token={}", tokens[0]), ""),
                page(),
                "nothing else changed"
            );
        }
    }
}

#[tokio::test]
async fn public_and_non_html_responses_keep_their_encoding() {
    let body = compressed("gzip", "plain bytes").await;
    let cms = Cms::fixed(
        Reply::with_type("application/octet-stream", body.clone())
            .header("content-encoding", "gzip"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    for path in ["/public/a", "/videos/file.bin"] {
        let response = fetch(&gate.url(path), Some("br")).await;
        assert_eq!(response.headers["content-encoding"], "gzip", "{path}");
        assert_eq!(response.body, body, "{path}: untouched");
    }
}

#[tokio::test]
async fn a_compressed_page_is_sent_on_as_it_comes() {
    // A gzip stream cut in two, with the CMS holding back the second half.
    let body = compressed("gzip", &page()).await;
    let (first, rest) = body.split_at(body.len() / 2);
    let cms = Cms::fixed(
        Reply::chunked(
            "text/html; charset=utf-8",
            vec![
                Bytes::copy_from_slice(first),
                Bytes::from_static(GATE),
                Bytes::copy_from_slice(rest),
            ],
        )
        .header("content-encoding", "gzip"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    let mut request = member_request(&gate.url("/videos/a"));
    request
        .headers_mut()
        .insert("accept-encoding", http::HeaderValue::from_static("gzip"));
    let mut streaming = Streaming::open(request).await;
    // Something of the page arrives before the CMS sends the rest.
    streaming
        .read_until("the first compressed bytes", |got| got.len() > 20)
        .await;
    cms.release_rest();
    let whole = streaming.finish().await;
    let text = decoded(Some("gzip"), &whole).await;
    assert_eq!(tokens_in(&text).len(), 1);
}

#[tokio::test]
async fn a_corrupt_compressed_page_ends_the_response_and_is_never_sent_as_whole() {
    let mut body = compressed("gzip", &page()).await;
    let middle = body.len() / 2;
    body[middle..middle + 16].fill(0xAB);
    let cms = Cms::fixed(
        Reply::with_type("text/html; charset=utf-8", body).header("content-encoding", "gzip"),
    )
    .await;
    let gate = Gate::start(&cms).await;
    // The connection is cut: before the head was flushed, or mid-body.
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let response = client()
            .request(member_request(&gate.url("/videos/a")))
            .await?;
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(Into::into)
    })
    .await
    .expect("the response ends");
    let whole: Result<_, Box<dyn std::error::Error + Send + Sync>> = answer;
    assert!(whole.is_err(), "a cut-off response, never a complete one");
}

/// `body` as the CMS streams it: its first two bytes one at a time, the
/// rest cut at `cuts` (offsets into `body`) too.
fn in_pieces(body: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at = vec![0, 1, 2];
    at.extend(
        cuts.iter()
            .copied()
            .filter(|&cut| cut > 2 && cut < body.len()),
    );
    at.sort_unstable();
    at.dedup();
    at.push(body.len());
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

/// The gateway in front of a CMS that streams `chunks` as a gated page in
/// `coding`: each visitor gets the whole page, rewritten, and nothing else
/// changed.
async fn assert_rewritten_whole(coding: &str, chunks: Vec<Bytes>, what: &str) {
    assert!(chunks.len() > 3, "{what}: sent in pieces");
    let mut reply =
        Reply::chunked("text/html; charset=utf-8", chunks).header("content-encoding", coding);
    reply.chunk_delay = Duration::from_millis(2);
    let cms = Cms::fixed(reply).await;
    let gate = Gate::start(&cms).await;
    for accept in [None, Some("gzip"), Some("br")] {
        let response = fetch(&gate.url("/videos/a"), accept).await;
        assert_eq!(response.status, 200, "{what} for {accept:?}");
        let sent = response
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(sent.as_deref(), accept, "{what} for {accept:?}");
        let text = decoded(sent.as_deref(), &response.body).await;
        let tokens = tokens_in(&text);
        assert_eq!(tokens.len(), 1, "{what} for {accept:?}: {text}");
        check_token(&tokens[0], KEY_HEX);
        assert_eq!(
            text.replace(&format!("?token={}", tokens[0]), ""),
            page(),
            "{what} for {accept:?}: nothing else changed"
        );
    }
}

#[tokio::test]
async fn a_zlib_deflate_page_is_decoded_and_rewritten() {
    let body = compressed("zlib", &page()).await;
    assert!(body[0] & 0x0F == 8 && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0);
    let third = body.len() / 3;
    let chunks = in_pieces(&body, &[third, 2 * third]);
    assert_rewritten_whole("deflate", chunks, "zlib deflate").await;
}

#[tokio::test]
async fn a_raw_deflate_page_is_decoded_and_rewritten_as_browsers_do() {
    let body = compressed("raw-deflate", &page()).await;
    let third = body.len() / 3;
    let chunks = in_pieces(&body, &[third, 2 * third]);
    assert_rewritten_whole("deflate", chunks, "raw deflate").await;
}

#[tokio::test]
async fn every_member_of_a_multi_member_gzip_page_is_decoded_and_rewritten() {
    // The embed is in the second member.
    let page = page();
    let (head, tail) = page.split_at(page.len() / 2);
    let first = compressed("gzip", head).await;
    let second = compressed("gzip", tail).await;
    let body = [first.as_slice(), second.as_slice()].concat();
    // Cut in each member, at their seam, and inside the second's header.
    let cuts = [
        first.len() / 2,
        first.len(),
        first.len() + 4,
        first.len() + second.len() / 2,
    ];
    let chunks = in_pieces(&body, &cuts);
    assert_rewritten_whole("gzip", chunks, "two gzip members").await;
}
