//! The streaming iframe rewriter: an `http_body::Body` around lol_html.
//!
//! Each upstream chunk goes through the rewriter as it arrives and what comes
//! out is sent on at once; the page is never held whole. lol_html keeps a tag
//! that is split across chunks until it is complete, so it is still rewritten,
//! and every byte the handler does not touch comes out as it went in.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use lol_html::errors::RewritingError;
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, OutputSink, Selector};
use thiserror::Error;

use crate::allowlist::Principal;
use crate::embed::{EmbedRewrite, EmbedSet};
use crate::metrics::{RuntimeMetrics, TokenResult};

static IFRAME: LazyLock<Selector> = LazyLock::new(|| "iframe".parse().expect("static selector"));

/// Attributes that carry an iframe's URL (`data-src` for lazy-loading plugins).
const URL_ATTRIBUTES: [&str; 2] = ["src", "data-src"];

/// `[rewrite]`, validated: limits of one page's rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteLimits {
    /// Memory cap of one page's rewriter (bytes), bounding what a huge tag can cost.
    pub max_memory: usize,
}

/// The tokens of one page view: which embeds, minted when and for whom.
pub struct PageTokens {
    /// The configured embeds.
    pub embeds: Arc<EmbedSet>,
    /// The moment the tokens are minted at (unix seconds).
    pub now: u64,
    /// The visitor they are minted for.
    pub principal: Principal,
    /// Where each embed's result is counted.
    pub metrics: Arc<RuntimeMetrics>,
}

/// Why a rewritten body stopped early.
#[derive(Debug, Error)]
pub enum RewriteError {
    /// The upstream body failed.
    #[error("upstream body: {0}")]
    Upstream(Box<dyn std::error::Error + Send + Sync>),
    /// lol_html refused the input (e.g. a tag larger than the memory cap).
    #[error("rewriter: {0}")]
    Rewriter(#[from] RewritingError),
}

/// Counts shared between the element handler and whoever logs the request.
#[derive(Debug, Default)]
pub struct RewriteStats {
    minted: AtomicU32,
    refused: AtomicU32,
    unentitled: AtomicU32,
}

impl RewriteStats {
    /// Tokens put into iframes so far.
    pub fn minted(&self) -> u32 {
        self.minted.load(Ordering::Relaxed)
    }

    /// Embeds that matched but were left without a token (unsafe capture).
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Embeds of videos the visitor is not entitled to: no token, and any old one removed.
    pub fn unentitled(&self) -> u32 {
        self.unentitled.load(Ordering::Relaxed)
    }
}

// What the rewriter emits, collected until the body hands it on. Only this
// response's task touches it, one poll at a time, so the lock never waits;
// it exists because the sink must be Send and is owned by the rewriter.
#[derive(Default)]
struct Output(Mutex<BytesMut>);

/// Extra output room per input chunk, for the tokens the chunk's iframes get.
const OUTPUT_SLACK: usize = 1024;

impl Output {
    fn reserve(&self, additional: usize) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(additional);
    }
}

struct Sink(Arc<Output>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            self.0
                 .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(chunk);
        }
    }
}

/// How a page's bytes are to be read.
#[derive(Clone, Copy)]
pub struct PageEncoding {
    encoding: AsciiCompatibleEncoding,
    // A charset in Content-Type wins over a <meta charset> in the page.
    declared: bool,
}

impl PageEncoding {
    /// The encoding lol_html is to read with.
    pub fn encoding(&self) -> AsciiCompatibleEncoding {
        self.encoding
    }
}

/// The encoding to parse with, from the response's `charset` (UTF-8 unless
/// the page says otherwise); `None` if lol_html cannot handle it.
pub fn encoding_for(charset: Option<&str>) -> Option<PageEncoding> {
    let encoding = match charset {
        None => encoding_rs::UTF_8,
        Some(label) => encoding_rs::Encoding::for_label_no_replacement(label.as_bytes())?,
    };
    Some(PageEncoding {
        encoding: AsciiCompatibleEncoding::new(encoding)?,
        declared: charset.is_some(),
    })
}

/// An HTML body with a token minted into every matching iframe.
pub struct RewriteBody<B = Incoming> {
    upstream: B,
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    output: Arc<Output>,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl<B> RewriteBody<B> {
    /// Wraps `upstream`, minting `tokens` into every matching iframe.
    pub fn new(
        upstream: B,
        tokens: PageTokens,
        limits: RewriteLimits,
        encoding: PageEncoding,
        stats: Arc<RewriteStats>,
    ) -> RewriteBody<B> {
        let output = Arc::new(Output::default());
        let PageTokens {
            embeds,
            now,
            principal,
            metrics,
        } = tokens;
        let handler = move |el: &mut lol_html::send::Element<'_, '_>| {
            for attribute in URL_ATTRIBUTES {
                let Some(url) = el.get_attribute(attribute) else {
                    continue;
                };
                if url.contains(char::REPLACEMENT_CHARACTER) {
                    // Bytes the page's encoding cannot read: rewriting would change them.
                    if embeds.is_match(&url) {
                        tracing::warn!(
                            attribute,
                            "embed left without a token: URL not in the page's encoding"
                        );
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                match embeds.rewrite(&url, now, &principal) {
                    None => {}
                    Some((embed, EmbedRewrite::Minted(with_token))) => {
                        el.set_attribute(attribute, &with_token)?;
                        stats.minted.fetch_add(1, Ordering::Relaxed);
                        metrics.token(embed, TokenResult::Minted);
                    }
                    Some((embed, EmbedRewrite::Unentitled(stripped))) => {
                        if let Some(without_token) = stripped {
                            el.set_attribute(attribute, &without_token)?;
                        }
                        stats.unentitled.fetch_add(1, Ordering::Relaxed);
                        metrics.token(embed, TokenResult::Unentitled);
                    }
                    Some((embed, EmbedRewrite::Unsafe(unsafe_capture))) => {
                        tracing::warn!(attribute, %unsafe_capture, "embed left without a token");
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        metrics.token(embed, TokenResult::Refused);
                    }
                }
            }
            Ok(())
        };
        let settings = Settings::new_send()
            .with_encoding(encoding.encoding)
            .with_adjust_charset_on_meta_tag(!encoding.declared)
            // Strict mode aborts on markup it cannot parse without a DOM; a
            // member would get half a page. The worst a rare misparse can do
            // here is leave an iframe without a token.
            .with_strict(false)
            .with_memory_settings(
                MemorySettings::new().with_max_allowed_memory_usage(limits.max_memory),
            )
            .append_element_content_handler((
                std::borrow::Cow::Borrowed(&*IFRAME),
                ElementContentHandlers::default().element(handler),
            ));
        let rewriter = HtmlRewriter::new(settings, Sink(output.clone()));
        RewriteBody {
            upstream,
            rewriter: Some(rewriter),
            output,
            trailers: None,
            ended: false,
        }
    }

    fn take_output(&self) -> Option<Bytes> {
        let mut buffer = self.output.0.lock().unwrap_or_else(PoisonError::into_inner);
        (!buffer.is_empty()).then(|| buffer.split().freeze())
    }
}

impl<B> Body for RewriteBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = RewriteError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RewriteError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.take_output() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.upstream).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(rewriter) = this.rewriter.as_mut() {
                            // Room for the chunk and its tokens up front: once the
                            // last frame has been sent, this takes its buffer back
                            // instead of growing a new one piece by piece.
                            this.output.reserve(data.len() + OUTPUT_SLACK);
                            if let Err(err) = rewriter.write(&data) {
                                this.fail();
                                return Poll::Ready(Some(Err(err.into())));
                            }
                        }
                    }
                    Err(frame) => this.trailers = frame.into_trailers().ok(),
                },
                Some(Err(err)) => {
                    this.fail();
                    return Poll::Ready(Some(Err(RewriteError::Upstream(err.into()))));
                }
                None => {
                    this.ended = true;
                    if let Some(rewriter) = this.rewriter.take() {
                        if let Err(err) = rewriter.end() {
                            this.fail();
                            return Poll::Ready(Some(Err(err.into())));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none() && self.output.0.lock().map_or(true, |b| b.is_empty())
    }
}

impl<B> RewriteBody<B> {
    // After an error nothing more is sent: a half page must not be completed
    // with unrewritten bytes.
    fn fail(&mut self) {
        self.rewriter = None;
        self.ended = true;
        self.trailers = None;
        self.output
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
