//! CMS answers: whatever a CMS sends for a gated page, the member gets no
//! 500 the CMS did not send, no panic, and no HTML with an embed that went
//! out without its token.

use super::*;
use crate::common::{check_token, client, member_request, tokens_in, Gate, ThreadPanics, EMBED};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFAULT_ANSWER_CASES: u32 = 192;

const STATUSES: &[u16] = &[200, 200, 200, 200, 206, 204, 301, 304, 404, 500];

const CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/html; charset=utf-8",
    "TEXT/HTML",
    "application/xhtml+xml",
    "text/plain",
    "",
    "text/html; charset=utf-16",
    "text/html; charset=windows-1252",
    "image/png",
    "text/html, text/plain",
];

const HEADERS: &[&str] = &[
    "Cache-Control: public, max-age=60",
    "Set-Cookie: a=b",
    "Vary: Accept-Encoding",
    "X-Content-Type-Options: nosniff",
    "Content-Disposition: attachment",
    "ETag: \"x\"",
    "Content-Range: bytes 0-10/100",
    "Content-Security-Policy: default-src 'none'",
    "Connection: close",
];

/// How the body is coded: as sent plainly, or gzip of it, or a coding
/// named over bytes that are not in it.
#[derive(Debug, Clone, Copy)]
enum Coding {
    Plain,
    Gzip,
    Named(&'static str),
}

/// Where the body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    UntilClose,
    LengthOff(i8),
}

#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    content_type: &'static str,
    coding: Coding,
    framing: Framing,
    headers: Vec<&'static str>,
    body: String,
}

fn page() -> impl Strategy<Value = String> {
    let embed = |template: &'static str| Just(template.replace("EMBED", EMBED));
    prop::collection::vec(
        prop_oneof![
            embed("<iframe src=\"EMBED\"></iframe>"),
            // Closed: an iframe's content is raw text, where a tag is no tag.
            embed("<iframe src='EMBED' allow=x></iframe>"),
            embed("<IFRAME SRC=EMBED></IFRAME>"),
            Just("<p>text</p>".to_string()),
            Just("<html><head><meta charset=\"utf-8\"></head><body>".to_string()),
            Just("\u{feff}".to_string()),
            Just("\u{e9}".to_string()),
            // No `<`: it could open a tag or comment that hides what follows.
            "[a-z =\"'/>]{0,20}",
        ],
        0..8,
    )
    .prop_map(|pieces| pieces.concat())
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        select(STATUSES),
        select(CONTENT_TYPES),
        prop_oneof![
            4 => Just(Coding::Plain),
            2 => Just(Coding::Gzip),
            1 => select(&["gzip", "identity", "br", "gzip, gzip"][..]).prop_map(Coding::Named),
        ],
        prop_oneof![
            3 => Just(Framing::Length),
            2 => Just(Framing::Chunked),
            1 => Just(Framing::UntilClose),
            1 => (-3i8..3).prop_map(Framing::LengthOff),
        ],
        prop::collection::vec(select(HEADERS), 0..3),
        page(),
    )
        .prop_map(
            |(status, content_type, coding, framing, headers, body)| Answer {
                status,
                content_type,
                coding,
                framing,
                headers,
                body,
            },
        )
}

async fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// The bytes of `answer` on the wire.
async fn wire(answer: &Answer) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} X\r\n", answer.status);
    if !answer.content_type.is_empty() {
        head.push_str(&format!("Content-Type: {}\r\n", answer.content_type));
    }
    let body = match answer.coding {
        Coding::Plain => answer.body.clone().into_bytes(),
        Coding::Gzip => {
            head.push_str("Content-Encoding: gzip\r\n");
            gzip(answer.body.as_bytes()).await
        }
        Coding::Named(coding) => {
            head.push_str(&format!("Content-Encoding: {coding}\r\n"));
            answer.body.clone().into_bytes()
        }
    };
    for line in &answer.headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    let body = match answer.framing {
        Framing::Length => {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            body
        }
        Framing::LengthOff(off) => {
            let length = body.len() as i64 + i64::from(off);
            head.push_str(&format!("Content-Length: {}\r\n", length.max(0)));
            body
        }
        Framing::Chunked => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            let mut chunked = Vec::new();
            for piece in body.chunks(7) {
                chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                chunked.extend_from_slice(piece);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            chunked
        }
        Framing::UntilClose => body,
    };
    head.push_str("\r\n");
    [head.into_bytes(), body].concat()
}

/// A CMS that answers each request with the bytes in `answer`, then closes.
async fn scripted_cms(answer: Arc<Mutex<Vec<u8>>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Every embed URL in `body` carries a token.
fn every_embed_tokened(body: &str) -> bool {
    body.match_indices(EMBED)
        .all(|(at, _)| body[at + EMBED.len()..].starts_with("?token="))
}

#[test]
fn whatever_the_cms_answers_no_embed_goes_out_untokened() {
    let panics = ThreadPanics::watch("cms-answers-gateway");
    let tokio = panics.runtime();
    let scripted = Arc::new(Mutex::new(Vec::new()));
    let gate = tokio.block_on(async {
        let cms = scripted_cms(scripted.clone()).await;
        Gate::start_with(&config_text(cms, ""), &[]).await
    });
    let url = gate.url("/videos/page");
    check(
        "whatever_the_cms_answers_no_embed_goes_out_untokened",
        DEFAULT_ANSWER_CASES,
        answer(),
        |answer| {
            *scripted.lock().unwrap() = tokio.block_on(wire(&answer));
            let before = panics.count();
            let fetched = tokio.block_on(async {
                let request = client().request(member_request(&url));
                let response = tokio::time::timeout(Duration::from_secs(5), request).await;
                let Ok(Ok(response)) = response else {
                    return None;
                };
                let (parts, body) = response.into_parts();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .ok()?
                    .to_bytes();
                Some((parts, body))
            });
            prop_assert_eq!(panics.count(), before, "the gateway panicked");
            let Some((parts, body)) = fetched else {
                return Ok(());
            };
            let status = parts.status.as_u16();
            prop_assert!(status != 500 || answer.status == 500, "a 500 of its own");
            if !parts.status.is_success() {
                return Ok(());
            }
            prop_assert_eq!(
                parts
                    .headers
                    .get("x-content-type-options")
                    .map(|v| v.as_bytes()),
                Some(&b"nosniff"[..])
            );
            let content_type = parts
                .headers
                .get("content-type")
                .map_or(String::new(), |v| {
                    String::from_utf8_lossy(v.as_bytes()).to_lowercase()
                });
            // A 204 has no body for a coding to apply to.
            let has_body = status != 204;
            // As a browser reads the type: the last one the line names. With
            // nosniff (above) a page of no type is never read as HTML.
            let read_as = content_type
                .rsplit(',')
                .find(|t| t.contains('/'))
                .unwrap_or("");
            if has_body && read_as.contains("html") {
                prop_assert!(parts.headers.get("content-encoding").is_none());
                let text = String::from_utf8_lossy(&body);
                prop_assert!(every_embed_tokened(&text), "untokened: {}", text);
                for token in tokens_in(&text) {
                    check_token(&token, KEY_HEX);
                }
            }
            Ok(())
        },
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(panics.count(), 0);
}
