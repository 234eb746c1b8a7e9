//! What becomes of one iframe: for each URL attribute that is an embed, a
//! token minted into it, a marker where a fetched token will go, or the
//! URL left as it is (with any old token removed for a video the visitor
//! may not watch), counted in the page's stats and the metrics.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::minting::Job;
use super::output::OutputState;
use super::scan::{IframeTag, ScanSink};
use super::RewriteStats;
use crate::allowlist::Principal;
use crate::embed::{EmbedRewrite, EmbedSet};
use crate::metrics::{RuntimeMetrics, TokenResult};
use crate::token::Visitor;

/// Attributes that carry an iframe's URL (`data-src` for lazy-loading plugins).
pub(super) const URL_ATTRIBUTES: [&str; 2] = ["src", "data-src"];

/// The decisions of one page view, shared by all its iframes.
pub(super) struct IframeRewriter {
    pub(super) embeds: Arc<EmbedSet>,
    pub(super) principal: Principal,
    pub(super) addr: Option<IpAddr>,
    pub(super) now: u64,
    pub(super) metrics: Arc<RuntimeMetrics>,
    pub(super) stats: Arc<RewriteStats>,
    // The next marker's slot.
    pub(super) next_slot: usize,
}

impl IframeRewriter {
    /// Rewrites the URL attributes of `tag`; markers and calls go to `output`.
    pub(super) fn rewrite(&mut self, tag: &mut IframeTag<'_, '_>, output: &mut OutputState) {
        let (embeds, metrics, stats) = (&self.embeds, &self.metrics, &self.stats);
        let visitor = Visitor {
            principal: &self.principal,
            addr: self.addr,
            now: self.now,
        };
        for attribute in URL_ATTRIBUTES {
            // As written: `EmbedSet` reads the references in it as a browser
            // does, and gives back a value with its own escaped.
            let Some(url) = tag.get_attribute(attribute) else {
                continue;
            };
            if tag.is_untrusted() {
                // Markup before it a browser may read otherwise: this may be
                // no iframe, or sit in another tag's attribute.
                if let Some(embed) = embeds.matching(&url) {
                    tracing::warn!(
                        attribute,
                        "embed left without a token: the page's markup before it is ambiguous"
                    );
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    metrics.token(embed, TokenResult::Refused);
                }
                continue;
            }
            if url.contains(char::REPLACEMENT_CHARACTER) {
                // Bytes the page's encoding cannot read: rewriting would change them.
                if let Some(embed) = embeds.matching(&url) {
                    tracing::warn!(
                        attribute,
                        "embed left without a token: URL not in the page's encoding"
                    );
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    metrics.token(embed, TokenResult::Refused);
                }
                continue;
            }
            match embeds.rewrite(&url, &visitor) {
                None => {}
                Some((embed, EmbedRewrite::Deferred(deferred))) => {
                    let slot = self.next_slot;
                    self.next_slot += 1;
                    let marker = output.marker(slot);
                    let marker = std::str::from_utf8(&marker).unwrap_or_default();
                    let value = [deferred.head.as_str(), marker, deferred.tail.as_str()].concat();
                    output.announce(Job {
                        slot,
                        embed,
                        param: deferred.param,
                        call: deferred.call,
                    });
                    tag.set_attribute(attribute, &value);
                }
                Some((embed, EmbedRewrite::Minted(with_token))) => {
                    tag.set_attribute(attribute, &with_token);
                    stats.minted.fetch_add(1, Ordering::Relaxed);
                    metrics.token(embed, TokenResult::Minted);
                }
                Some((embed, EmbedRewrite::Unentitled(stripped))) => {
                    if let Some(without_token) = stripped {
                        tag.set_attribute(attribute, &without_token);
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
    }
}

/// The scanner's sink for one chunk: output into the page's held output,
/// iframes to the page's rewriter.
pub(super) struct PageSink<'a> {
    pub(super) output: &'a mut OutputState,
    pub(super) iframes: &'a mut IframeRewriter,
}

impl ScanSink for PageSink<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.output.push(bytes);
    }

    fn iframe(&mut self, tag: &mut IframeTag<'_, '_>) {
        self.iframes.rewrite(tag, self.output);
    }
}
