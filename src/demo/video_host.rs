//! The sample video host: plays the provider's part. Its embed page serves a
//! player only to a token that passes EdgeAuth verification for the video's
//! `/hls/{share}/` (with the gateway's own verification code), and the
//! player fetches its playlist with the same token, as an HLS player does.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::syntax::is_path_segment_byte;
use crate::token::unix_now;
use crate::token::verify::EdgeVerifier;

/// What the host says to an embed without a token (the gateway left it bare).
pub const NOT_INCLUDED: &str = "Not included in your plan";
/// What the host says to a token that does not check out.
pub const EXPIRED: &str = "This link has expired or was not issued to you";

fn refusal(message: &str, detail: &str) -> String {
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Refused</title>
<style>body {{ font-family: sans-serif; background: #222; color: #eee; text-align: center; padding-top: 3em; }}</style></head>
<body><h1 id="refused">{message}</h1><p>{detail}</p></body></html>
"##
    )
}

fn player(share: &str) -> String {
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Player {share}</title>
<style>
body {{ margin: 0; font-family: sans-serif; background: #111; color: #eee; text-align: center; }}
svg {{ display: block; margin: 1em auto .5em; }}
.bar {{ transform-origin: left; animation: play 6s linear infinite; }}
@keyframes play {{ from {{ transform: scaleX(0); }} to {{ transform: scaleX(1); }} }}
body:not(.playing) .bar {{ animation-play-state: paused; }}
</style></head>
<body>
<svg width="320" height="180" viewBox="0 0 320 180" role="img" aria-label="video {share}">
  <rect width="320" height="180" rx="8" fill="#2b4162"/>
  <polygon points="140,60 140,120 190,90" fill="#fff" opacity=".85"/>
  <text x="160" y="150" fill="#fff" font-size="14" text-anchor="middle">video {share}</text>
  <rect class="bar" x="10" y="165" width="300" height="5" fill="#f5a623"/>
</svg>
<p id="status">loading</p>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const status = document.getElementById("status");
// Read the playlist as an HLS player would, then show what became of it.
fetch("/hls/{share}/index.m3u8?token=" + encodeURIComponent(token))
  .then((answer) => answer.text().then(() => {{
    status.textContent = answer.ok ? "playing" : "refused";
    if (answer.ok) document.body.classList.add("playing");
  }}))
  .catch(() => {{ status.textContent = "refused"; }});
</script>
</body></html>
"##
    )
}

fn playlist(share: &str) -> String {
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n/hls/{share}/seg0.ts\n#EXT-X-ENDLIST\n"
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn video_id(text: &str) -> Option<&str> {
    (!text.is_empty() && text.bytes().all(is_path_segment_byte) && text.bytes().any(|b| b != b'.'))
        .then_some(text)
}

/// Answers one request to the video host.
pub fn answer(verifier: &EdgeVerifier, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let token = verifier.token_in(request.uri(), request.headers());
    if let Some(share) = path
        .strip_prefix("/res/embed/")
        .and_then(|rest| rest.strip_suffix(".html"))
        .and_then(video_id)
    {
        let html = "text/html; charset=utf-8";
        let Some(token) = token else {
            let detail = "This player came without a key: the gateway gives none for videos your plan does not include.";
            return respond(StatusCode::FORBIDDEN, html, refusal(NOT_INCLUDED, detail));
        };
        // The same check the video's segments get: the token must open its playlist.
        let checks = verifier.check(
            &token,
            &format!("/hls/{share}/index.m3u8"),
            None,
            unix_now(),
        );
        return match checks.verdict() {
            Ok(()) => respond(StatusCode::OK, html, player(share)),
            Err(_) => {
                let detail = "Reload the article to get a fresh one.";
                respond(StatusCode::FORBIDDEN, html, refusal(EXPIRED, detail))
            }
        };
    }
    // Read as the gateway's route table reads it: `..` cannot climb out of an ACL.
    let normal = crate::gate::normalize(path)
        .ok()
        .and_then(|p| String::from_utf8(p.into_owned()).ok());
    if let Some((normal, share)) = normal.as_deref().and_then(|normal| {
        let share = normal
            .strip_prefix("/hls/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(share, _)| video_id(share))?;
        Some((normal, share))
    }) {
        let allowed = token.is_some_and(|token| {
            verifier
                .check(&token, normal, None, unix_now())
                .verdict()
                .is_ok()
        });
        return if allowed {
            respond(
                StatusCode::OK,
                "application/vnd.apple.mpegurl",
                playlist(share),
            )
        } else {
            respond(StatusCode::FORBIDDEN, "text/plain", "forbidden\n".into())
        };
    }
    respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
}

/// Serves the video host on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, verifier: Arc<EdgeVerifier>) {
    super::serve_each(listener, move |request| {
        let answered = answer(&verifier, &request);
        async move { answered }
    })
    .await;
}
