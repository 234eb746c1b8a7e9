//! The streaming iframe rewriter: an `http_body::Body` around lol_html.
//!
//! Each upstream chunk goes through the rewriter as it arrives and what comes
//! out is sent on at once; the page is never held whole. lol_html keeps a tag
//! that is split across chunks until it is complete, so it is still rewritten,
//! and every byte the handler does not touch comes out as it went in.
//!
//! A token from the video host's API cannot be had inside the synchronous
//! handler: the handler leaves a marker ([`output`]) and announces the call
//! ([`minting`]); the body sends everything up to the first unresolved
//! marker and keeps feeding the rewriter meanwhile.

mod minting;
mod output;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use lol_html::errors::RewritingError;
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, Selector};
use thiserror::Error;

use crate::allowlist::Principal;
use crate::embed::{EmbedRewrite, EmbedSet};
use crate::metrics::{RuntimeMetrics, TokenResult};
use crate::token::{MintError, OnMintError, Visitor};
use minting::{Job, Minting, Resolution};
use output::{Output, Piece, Sink};

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
    /// The visitor's address, for tokens bound to it.
    pub addr: Option<IpAddr>,
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
    /// The video host's API gave no token and the embed's `on_error` is "page".
    #[error("no token for embed[{embed}]: {error}")]
    Mint {
        /// The embed's index.
        embed: usize,
        /// Why.
        error: MintError,
    },
}

/// Counts shared between the element handler and whoever logs the request.
#[derive(Debug, Default)]
pub struct RewriteStats {
    minted: AtomicU32,
    refused: AtomicU32,
    unentitled: AtomicU32,
    failed: AtomicU32,
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

    /// Embeds whose token the video host's API did not give.
    pub fn failed(&self) -> u32 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Extra output room per input chunk, for the tokens the chunk's iframes get.
const OUTPUT_SLACK: usize = 1024;

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
    // Calls to the video host's API; `None` until the page has a remote embed.
    minting: Option<Minting>,
    // Whether any embed mints remotely: if not, no call is ever announced.
    remote: bool,
    embeds: Arc<EmbedSet>,
    principal: Principal,
    metrics: Arc<RuntimeMetrics>,
    stats: Arc<RewriteStats>,
    // Most output held back behind a token still being fetched.
    max_held: usize,
    upstream_done: bool,
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
        let output = Arc::new(Output::new(output::page_nonce()));
        let PageTokens {
            embeds,
            now,
            principal,
            addr,
            metrics,
        } = tokens;
        let (handler_embeds, handler_principal, handler_metrics, handler_stats, handler_output) = (
            embeds.clone(),
            principal.clone(),
            metrics.clone(),
            stats.clone(),
            output.clone(),
        );
        let mut next_slot = 0usize;
        let handler = move |el: &mut lol_html::send::Element<'_, '_>| {
            let (embeds, metrics, stats) = (&handler_embeds, &handler_metrics, &handler_stats);
            let visitor = Visitor {
                principal: &handler_principal,
                addr,
                now,
            };
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
                match embeds.rewrite(&url, &visitor) {
                    None => {}
                    Some((embed, EmbedRewrite::Deferred(deferred))) => {
                        let slot = next_slot;
                        next_slot += 1;
                        let mut state = handler_output.lock();
                        let marker = state.marker(slot);
                        let marker = std::str::from_utf8(&marker).unwrap_or_default();
                        let value =
                            [deferred.head.as_str(), marker, deferred.tail.as_str()].concat();
                        state.announce(Job {
                            slot,
                            embed,
                            param: deferred.param,
                            call: deferred.call,
                        });
                        drop(state);
                        el.set_attribute(attribute, &value)?;
                    }
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
            minting: None,
            remote: embeds.has_remote(),
            embeds,
            principal,
            metrics,
            stats,
            max_held: limits.max_memory,
            upstream_done: false,
        }
    }

    /// The next bytes that may be sent, resolving token places whose call
    /// has ended. `Err` when a failed call cuts the page off.
    fn next_ready(&mut self) -> Result<Option<Bytes>, RewriteError> {
        loop {
            let mut state = self.output.lock();
            match state.next() {
                None => return Ok(None),
                Some(Piece::Bytes(bytes)) if bytes.is_empty() => continue,
                Some(Piece::Bytes(bytes)) => return Ok(Some(bytes)),
                Some(Piece::Token(slot)) => {
                    let Some(minting) = self.minting.as_mut() else {
                        // A marker with no call: nothing fills it.
                        continue;
                    };
                    let embed = minting.embed_of(slot);
                    match minting.resolve(slot) {
                        None if embed.is_some() => {
                            state.put_back(slot);
                            return Ok(None);
                        }
                        None => continue,
                        Some(Resolution::Token(text)) => {
                            self.stats.minted.fetch_add(1, Ordering::Relaxed);
                            if let Some(embed) = embed {
                                self.metrics.token(embed, TokenResult::Minted);
                            }
                            return Ok(Some(Bytes::from(text)));
                        }
                        Some(Resolution::Failed(error, on_error)) => {
                            let embed = embed.unwrap_or_default();
                            self.stats.failed.fetch_add(1, Ordering::Relaxed);
                            self.metrics.token(embed, TokenResult::Failed);
                            if on_error == OnMintError::Page {
                                drop(state);
                                return Err(RewriteError::Mint { embed, error });
                            }
                            tracing::warn!(embed, %error, "embed left without a token: the video host gave none");
                            continue;
                        }
                    }
                }
            }
        }
    }

    // Takes the calls the handler announced and starts those the limits allow.
    fn start_calls(&mut self) {
        if !self.remote {
            return;
        }
        let jobs = self.output.lock().take_jobs();
        if !jobs.is_empty() {
            self.minting
                .get_or_insert_with(|| Minting::new(self.embeds.clone(), self.principal.clone()))
                .add(jobs);
        }
        if let Some(minting) = self.minting.as_mut() {
            minting.start();
        }
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
            // Calls start before the bytes ahead of their embed are handed on.
            this.start_calls();
            match this.next_ready() {
                Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => {}
                Err(err) => {
                    this.fail();
                    return Poll::Ready(Some(Err(err)));
                }
            }
            if let Some(minting) = this.minting.as_mut() {
                if minting.poll_finished(cx) {
                    continue;
                }
            }
            let (held, nothing_held) = {
                let state = this.output.lock();
                (state.buffered(), state.is_empty())
            };
            if this.upstream_done {
                if nothing_held {
                    this.ended = true;
                    return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                // Waiting on a call; its task wakes us.
                return Poll::Pending;
            }
            if held >= this.max_held {
                // Enough held behind a token still being fetched: stop reading the CMS.
                return Poll::Pending;
            }
            let frame = match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => return Poll::Pending,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(rewriter) = this.rewriter.as_mut() {
                            // Room for the chunk and its tokens up front: once the
                            // last frame has been sent, this takes its buffer back
                            // instead of growing a new one piece by piece.
                            this.output.lock().reserve(data.len() + OUTPUT_SLACK);
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
                    this.upstream_done = true;
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
        self.ended && self.trailers.is_none() && self.output.lock().is_empty()
    }
}

impl<B> RewriteBody<B> {
    // After an error nothing more is sent: a half page must not be completed
    // with unrewritten bytes.
    fn fail(&mut self) {
        self.rewriter = None;
        self.ended = true;
        self.upstream_done = true;
        self.trailers = None;
        // Calls still in flight are cancelled with the page.
        self.minting = None;
        self.output.lock().clear();
    }
}
