//! The streaming iframe rewriter: an `http_body::Body` around the scanner
//! ([`scan`]).
//!
//! Each upstream chunk goes through the scanner as it arrives and what comes
//! out is sent on at once; the page is never held whole. The scanner keeps
//! an iframe tag that is split across chunks until it is complete, so it is
//! still rewritten, and every byte outside the iframes it rewrites comes out
//! as it went in.
//!
//! A token from the video host's API cannot be had while a tag is being
//! rewritten: the rewriter leaves a marker ([`output`]) and announces the
//! call ([`minting`]); the body sends everything up to the first unresolved
//! marker and keeps feeding the scanner meanwhile.

#[cfg(test)]
mod body_tests;
mod iframe;
mod minting;
mod output;
pub mod scan;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use encoding_rs::Encoding;
use http::HeaderMap;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use thiserror::Error;

use crate::allowlist::Principal;
use crate::embed::EmbedSet;
use crate::metrics::{RuntimeMetrics, TokenResult};
use crate::token::{MintError, OnMintError};
use iframe::{IframeRewriter, PageSink};
use minting::{Minting, Resolution};
use output::{OutputState, Piece};
use scan::{AsciiCompatible, ScanError, ScanSettings, Scanner};

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
    /// The scanner refused the input (an iframe tag larger than the memory cap).
    #[error("rewriter: {0}")]
    Rewriter(#[from] ScanError),
    /// The video host's API gave no token and the embed's `on_error` is "page".
    #[error("no token for embed[{embed}]: {error}")]
    Mint {
        /// The embed's index.
        embed: usize,
        /// Why.
        error: MintError,
    },
}

/// Counts shared between the iframe rewriter and whoever logs the request.
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
#[derive(Clone, Copy, Debug)]
pub struct PageEncoding {
    encoding: AsciiCompatible,
    // A charset in Content-Type wins over a <meta charset> in the page.
    declared: bool,
    // XHTML, read by browsers as XML.
    xml: bool,
}

impl PageEncoding {
    /// The same, for a page browsers read with their XML parser (XHTML).
    pub fn as_xml(self) -> PageEncoding {
        PageEncoding { xml: true, ..self }
    }

    /// The encoding the page is read with (until a `<meta>` says otherwise,
    /// when the response declared none).
    pub fn encoding(&self) -> AsciiCompatible {
        self.encoding
    }
}

/// The encoding to parse with, from the response's `charset` (UTF-8 unless
/// the page says otherwise); `None` if it is unknown or not ASCII-compatible.
pub fn encoding_for(charset: Option<&str>) -> Option<PageEncoding> {
    let encoding = match charset {
        None => encoding_rs::UTF_8,
        Some(label) => Encoding::for_label_no_replacement(label.as_bytes())?,
    };
    Some(PageEncoding {
        encoding: AsciiCompatible::new(encoding)?,
        declared: charset.is_some(),
        xml: false,
    })
}

/// An HTML body with a token minted into every matching iframe.
pub struct RewriteBody<B = Incoming> {
    upstream: B,
    scanner: Option<Scanner>,
    iframes: IframeRewriter,
    output: OutputState,
    trailers: Option<HeaderMap>,
    ended: bool,
    // Calls to the video host's API; `None` until the page has a remote embed.
    minting: Option<Minting>,
    // Whether any embed mints remotely: if not, no call is ever announced.
    remote: bool,
    // Most output held back behind a token still being fetched.
    max_held: usize,
    upstream_done: bool,
    // The error that ends the page, held for one poll so that what was sent
    // before it leaves the server's buffers first (see `cut`).
    cut: Option<RewriteError>,
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
        let output = OutputState::new(output::page_nonce());
        let PageTokens {
            embeds,
            now,
            principal,
            addr,
            metrics,
        } = tokens;
        let scanner = Scanner::new(ScanSettings {
            encoding: encoding.encoding,
            adjust_charset: !encoding.declared,
            max_memory: limits.max_memory,
            xml: encoding.xml,
        });
        RewriteBody {
            upstream,
            scanner: Some(scanner),
            output,
            trailers: None,
            ended: false,
            minting: None,
            remote: embeds.has_remote(),
            iframes: IframeRewriter {
                embeds,
                principal,
                addr,
                now,
                metrics,
                stats,
                next_slot: 0,
            },
            max_held: limits.max_memory,
            upstream_done: false,
            cut: None,
        }
    }

    /// The next bytes that may be sent, resolving token places whose call
    /// has ended. `Err` when a failed call cuts the page off.
    fn next_ready(&mut self) -> Result<Option<Bytes>, RewriteError> {
        loop {
            let state = &mut self.output;
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
                            self.iframes.stats.minted.fetch_add(1, Ordering::Relaxed);
                            if let Some(embed) = embed {
                                self.iframes.metrics.token(embed, TokenResult::Minted);
                            }
                            return Ok(Some(Bytes::from(text)));
                        }
                        Some(Resolution::Failed(error, on_error)) => {
                            let embed = embed.unwrap_or_default();
                            self.iframes.stats.failed.fetch_add(1, Ordering::Relaxed);
                            self.iframes.metrics.token(embed, TokenResult::Failed);
                            if on_error == OnMintError::Page {
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
        let jobs = self.output.take_jobs();
        if !jobs.is_empty() {
            let iframes = &self.iframes;
            self.minting
                .get_or_insert_with(|| {
                    Minting::new(iframes.embeds.clone(), iframes.principal.clone())
                })
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
        if let Some(err) = this.cut.take() {
            return Poll::Ready(Some(Err(err)));
        }
        loop {
            // Calls start before the bytes ahead of their embed are handed on.
            this.start_calls();
            match this.next_ready() {
                Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => {}
                Err(err) => return this.cut(err, cx),
            }
            if let Some(minting) = this.minting.as_mut() {
                if minting.poll_finished(cx) {
                    continue;
                }
            }
            let (held, nothing_held) = (this.output.buffered(), this.output.is_empty());
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
                        if let Some(scanner) = this.scanner.as_mut() {
                            // Room for the chunk and its tokens up front: once the
                            // last frame has been sent, this takes its buffer back
                            // instead of growing a new one piece by piece.
                            this.output.reserve(data.len() + OUTPUT_SLACK);
                            let mut sink = PageSink {
                                output: &mut this.output,
                                iframes: &mut this.iframes,
                            };
                            if let Err(err) = scanner.write(&data, &mut sink) {
                                return this.cut(err.into(), cx);
                            }
                        }
                    }
                    Err(frame) => this.trailers = frame.into_trailers().ok(),
                },
                Some(Err(err)) => {
                    return this.cut(RewriteError::Upstream(err.into()), cx);
                }
                None => {
                    this.upstream_done = true;
                    if let Some(mut scanner) = this.scanner.take() {
                        let mut sink = PageSink {
                            output: &mut this.output,
                            iframes: &mut this.iframes,
                        };
                        if let Err(err) = scanner.end(&mut sink) {
                            return this.cut(err.into(), cx);
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.cut.is_none() && self.trailers.is_none() && self.output.is_empty()
    }
}

impl<B> RewriteBody<B> {
    // After an error nothing more is sent: a half page must not be completed
    // with unrewritten bytes.
    fn fail(&mut self) {
        self.scanner = None;
        self.ended = true;
        self.upstream_done = true;
        self.trailers = None;
        // Calls still in flight are cancelled with the page.
        self.minting = None;
        self.output.clear();
    }

    // Ends the page with `err`, one poll later: the server writes out what it
    // holds when the body has nothing ready, and drops it when the body fails,
    // so the visitor gets the page up to the cut instead of nothing at all.
    fn cut<T>(&mut self, err: RewriteError, cx: &mut Context<'_>) -> Poll<T> {
        self.fail();
        self.cut = Some(err);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
