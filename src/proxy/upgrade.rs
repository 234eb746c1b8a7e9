//! HTTP/1.1 upgrades to WebSocket passed through: the request's `Upgrade`
//! goes to the CMS, and after its 101 the bytes are relayed both ways until
//! either side closes or nothing moves for the upgrade idle limit.
//!
//! No other protocol is passed on. Inside an `h2c` upgrade (or any other that
//! carries HTTP) a visitor admitted once, on a public route, could send the
//! CMS requests for any path that the gate would never see.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::idle::IdleTimer;

/// Something to hold while an upgraded connection is relayed, so the
/// visitor's connection is not counted idle (nor its place freed)
/// meanwhile, and the signal that the gateway is shutting down.
#[derive(Clone)]
pub struct HoldConnection {
    /// Held to the relay's end.
    pub held: Arc<dyn Send + Sync>,
    /// Becomes true when shutdown begins: the relay then ends.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// The one protocol the gateway relays: WebSocket frames are never read by
/// a CMS as requests.
const RELAYED: &str = "websocket";

/// `websocket`, if the request is an HTTP/1.1 upgrade request
/// (`Connection: upgrade`) whose `Upgrade` names it among its protocols.
/// Any other upgrade goes to the CMS as an ordinary request: its `Upgrade`
/// is hop-by-hop and removed.
pub fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|protocol| protocol.trim().eq_ignore_ascii_case(RELAYED))
        .then(|| HeaderValue::from_static(RELAYED))
}

/// Whether a 101 with `response` headers switches to a protocol the visitor
/// asked for: its `Upgrade` names only protocols of the request's `asked`
/// (compared as tokens, ignoring ASCII case), and at least one.
pub fn grants(asked: &HeaderValue, response: &HeaderMap) -> bool {
    fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
        value
            .to_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
    }
    let mut any = false;
    for protocol in response.get_all(header::UPGRADE).iter().flat_map(tokens) {
        any = true;
        if !tokens(asked).any(|token| token.eq_ignore_ascii_case(protocol)) {
            return false;
        }
    }
    any
}

/// Puts the upgrade back after hop-by-hop headers were removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Relays bytes between the visitor's and the CMS's upgraded connections.
pub async fn relay(
    visitor: OnUpgrade,
    upstream: OnUpgrade,
    idle_limit: Duration,
    hold: Option<HoldConnection>,
) {
    {
        let mut closing = hold.as_ref().map(|hold| hold.closing.clone());
        let _hold = hold;
        let (visitor, upstream) = match tokio::join!(visitor, upstream) {
            (Ok(visitor), Ok(upstream)) => (visitor, upstream),
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!(error = %err, "upgrade did not complete");
                return;
            }
        };
        let mut visitor = Watched::new(TokioIo::new(visitor), idle_limit);
        let mut upstream = TokioIo::new(upstream);
        // A WebSocket lives as long as its page: shutdown would otherwise
        // wait out its whole timeout for every one still open.
        let shutdown = async {
            match closing.as_mut() {
                Some(closing) => {
                    let _ = closing.wait_for(|closing| *closing).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            relayed = tokio::io::copy_bidirectional(&mut visitor, &mut upstream) => match relayed {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(err) => tracing::debug!(error = %err, "upgraded connection ended"),
            },
            () = shutdown => tracing::debug!("upgraded connection closed: shutting down"),
        }
    }
}

/// The visitor's side of a relay, failing once nothing has moved either way
/// for the idle limit.
struct Watched<T> {
    inner: T,
    idle: IdleTimer,
}

impl<T> Watched<T> {
    fn new(inner: T, limit: Duration) -> Watched<T> {
        Watched {
            inner,
            idle: IdleTimer::new(Some(limit)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(result) => {
                this.idle.progressed();
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => match this.idle.expired(cx) {
                Some(timeout) => std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("upgraded connection idle: {timeout}"),
                ))),
                None => std::task::Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = std::pin::Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
            // Bytes from the CMS count as life too.
            this.idle.progressed();
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_101_grants_only_what_was_asked() {
        let asked = HeaderValue::from_static("websocket, h2c");
        let mut response = HeaderMap::new();
        assert!(!grants(&asked, &response), "a 101 must name its protocol");
        response.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(grants(&asked, &response));
        response.insert(
            header::UPGRADE,
            HeaderValue::from_static("websocket, tls/1.3"),
        );
        assert!(!grants(&asked, &response));
    }

    #[test]
    fn only_an_http11_request_with_connection_upgrade_is_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(Version::HTTP_11, &headers), None);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(
            requested(Version::HTTP_11, &headers),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(requested(Version::HTTP_2, &headers), None);
        headers.remove(header::UPGRADE);
        assert_eq!(requested(Version::HTTP_11, &headers), None);
    }

    #[test]
    fn only_websocket_is_relayed_of_the_protocols_asked_for() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for (asked, relayed) in [
            ("WebSocket", true),
            ("h2c, websocket", true),
            ("h2c", false),
            ("HTTP/2.0", false),
            ("TLS/1.2", false),
            ("websocketx", false),
            ("", false),
        ] {
            headers.insert(header::UPGRADE, HeaderValue::from_static(asked));
            assert_eq!(
                requested(Version::HTTP_11, &headers),
                relayed.then(|| HeaderValue::from_static("websocket")),
                "{asked}"
            );
        }
        // Named in a second field.
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(
            requested(Version::HTTP_11, &headers),
            Some(HeaderValue::from_static("websocket"))
        );
    }
}
