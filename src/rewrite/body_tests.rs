//! `RewriteBody` against the rewriter it replaced: lol_html, set up as the
//! oracle sets it up, with the old iframe handler's decisions (kept here, for
//! local tokens), the same embeds, visitor and clock. Same bytes out, same counts.

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::StreamBody;

use super::scan::oracle::{lol_html, Decide, Setup};
use super::*;
use crate::allowlist::{Entitlements, SessionKey};
use crate::embed::tests::settings as embed;
use crate::embed::EmbedRewrite;
use crate::metrics::Metrics;
use crate::token::Visitor;

const NOW: u64 = 1_767_225_600;

fn embeds() -> Arc<EmbedSet> {
    Arc::new(
        EmbedSet::build(&[
            embed(
                "https://api.vod2.infomaniak.com/res/embed/{share}.html",
                "/hls/{share}/*",
            ),
            embed("http://e.test/embed/{share}", "/e/{share}/*"),
        ])
        .expect("test embeds"),
    )
}

/// A visitor entitled to two videos only, so pages get every outcome.
fn visitor() -> Principal {
    Principal::entitled(
        &SessionKey::new("body-tests"),
        Entitlements::only(["1jhvl2uqa5rdf", "v1"]),
    )
}

/// Minted, refused, unentitled.
type Counts = (u32, u32, u32);

/// The page through lol_html with the handler `RewriteBody` had before the
/// scanner, as the oracle's per-attribute decision.
fn old_rewriter(
    chunks: &[&[u8]],
    encoding: PageEncoding,
    max_memory: usize,
) -> Result<(Vec<u8>, Counts), String> {
    let embeds = embeds();
    let principal = visitor();
    let stats = Arc::new(RewriteStats::default());
    let counted = stats.clone();
    let decide: Decide = Arc::new(move |_attribute: &str, url: &str| {
        let visitor = Visitor {
            principal: &principal,
            addr: None,
            now: NOW,
        };
        if url.contains(char::REPLACEMENT_CHARACTER) {
            if embeds.matching(url).is_some() {
                counted.refused.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        match embeds.rewrite(url, &visitor) {
            None => None,
            Some((_, EmbedRewrite::Deferred(_))) => unreachable!("local embeds"),
            Some((_, EmbedRewrite::Minted(with_token))) => {
                counted.minted.fetch_add(1, Ordering::Relaxed);
                Some(with_token)
            }
            Some((_, EmbedRewrite::Unentitled(stripped))) => {
                counted.unentitled.fetch_add(1, Ordering::Relaxed);
                stripped
            }
            Some((_, EmbedRewrite::Unsafe(_))) => {
                counted.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    });
    let setup = Setup {
        encoding: encoding.encoding.get(),
        declared: encoding.declared,
        max_memory,
    };
    let bytes = lol_html(chunks, setup, &decide)?;
    Ok((bytes, (stats.minted(), stats.refused(), stats.unentitled())))
}

/// The page through `RewriteBody`.
fn new_rewriter(
    chunks: &[&[u8]],
    encoding: PageEncoding,
    max_memory: usize,
) -> Result<(Vec<u8>, Counts), String> {
    let embeds = embeds();
    let stats = Arc::new(RewriteStats::default());
    let metrics = Arc::new(RuntimeMetrics::new(Metrics::new(), &[], embeds.len()));
    let tokens = PageTokens {
        embeds,
        now: NOW,
        principal: visitor(),
        addr: None,
        metrics,
    };
    let upstream = StreamBody::new(futures_util::stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c)))),
    ));
    let mut body = RewriteBody::new(
        upstream,
        tokens,
        RewriteLimits { max_memory },
        encoding,
        stats.clone(),
    );
    let (out, ended) = drain(&mut body);
    ended?;
    Ok((out, (stats.minted(), stats.refused(), stats.unentitled())))
}

/// Counts the wake-ups a body asks for.
#[derive(Default)]
struct WakeCount(AtomicUsize);

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `body` to its end: the bytes it gave, and its error if it failed.
/// A local page may only wait when it woke itself first (a cut, held for
/// one poll), never on its own.
fn drain<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> (Vec<u8>, Result<(), String>)
where
    B::Error: std::fmt::Display,
{
    let wakes = Arc::new(WakeCount::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    loop {
        let woken = wakes.0.load(Ordering::SeqCst);
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                }
            }
            Poll::Ready(Some(Err(err))) => return (out, Err(err.to_string())),
            Poll::Ready(None) => return (out, Ok(())),
            Poll::Pending => assert!(
                wakes.0.load(Ordering::SeqCst) > woken,
                "local tokens never wait"
            ),
        }
    }
}

/// A page with every outcome: minted, unentitled with and without an old
/// token, an unsafe capture, a URL the page's encoding cannot read, an
/// iframe in a comment and in raw text, and one split by `>` in a value.
fn mixed_page() -> Vec<u8> {
    let mut page = concat!(
        "<!doctype html><title>t <iframe src=\"http://e.test/embed/v1\"></title>",
        "<iframe src=\"https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html?autoplay=0&amp;muted=1\" allowfullscreen></iframe>\n",
        "<IFRAME title=\"a>b\" DATA-SRC='http://e.test/embed/v1#t=3' src=http://e.test/embed/v2?token=old></IFRAME>\n",
        "<iframe src=\"http://e.test/embed/v3\"></iframe><!-- <iframe src=\"http://e.test/embed/v1\"> -->\n",
        "<iframe src=\"http://e.test/embed/a~b\"></iframe>",
        "<script>document.write('<iframe src=\"http://e.test/embed/v1\">')</script>",
        "<svg><![CDATA[<iframe src=\"http://e.test/embed/v1\">]]></svg>",
        "<iframe data-src=\"http://e.test/embed/v1\" src=\"http://e.test/embed/v",
    )
    .as_bytes()
    .to_vec();
    // A URL with a byte UTF-8 cannot read: refused, left as it is.
    page.push(0xFF);
    page.extend_from_slice(b"1\"></iframe><iframe src=http://e.test/embed/v1 />");
    page
}

fn compare(page: &[u8], encoding: PageEncoding, cuts: &[Vec<usize>]) {
    let max_memory = 1 << 20;
    let (expected, counts) = old_rewriter(&[page], encoding, max_memory).expect("lol_html");
    for at in cuts {
        let chunks = super::scan::oracle::split(page, at);
        let (out, new_counts) = new_rewriter(&chunks, encoding, max_memory).expect("RewriteBody");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "cut at {at:?}"
        );
        assert_eq!(
            new_counts, counts,
            "minted, refused, unentitled; cut at {at:?}"
        );
    }
}

#[test]
fn rewrites_a_page_with_every_outcome_as_lol_html_did() {
    let page = mixed_page();
    let cuts = super::scan::oracle::cuts(page.len(), true);
    compare(&page, encoding_for(Some("utf-8")).unwrap(), &cuts);
    compare(&page, encoding_for(None).unwrap(), &cuts);
    let (_, counts) = new_rewriter(&[&page], encoding_for(None).unwrap(), 1 << 20).unwrap();
    assert_eq!(counts, (4, 2, 2), "every outcome is on the page");
}

#[test]
fn rewrites_the_benchmark_page_as_lol_html_did() {
    let page = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/page.html"))
        .expect("bench/page.html is in the repository");
    let mut cuts = super::scan::oracle::cuts(page.len(), false);
    // As the benchmark and a CMS send it: 16 KiB chunks.
    cuts.push((16 * 1024..page.len()).step_by(16 * 1024).collect());
    compare(&page, encoding_for(Some("utf-8")).unwrap(), &cuts);
    compare(
        &page,
        encoding_for(Some("windows-1252")).unwrap(),
        &cuts[..8],
    );
}

#[test]
fn a_tag_over_the_memory_cap_fails_the_page() {
    let page = format!(
        "<p>a</p><iframe src=\"http://e.test/embed/{}\">",
        "x".repeat(20_000)
    );
    for at in [vec![], vec![5_000, 10_000]] {
        let chunks = super::scan::oracle::split(page.as_bytes(), &at);
        let err = new_rewriter(&chunks, encoding_for(None).unwrap(), 16 * 1024).unwrap_err();
        assert!(err.contains("memory cap"), "{err}");
    }
}

/// The server drops what it holds when a body fails, so the error comes one
/// poll after the last good bytes, with a wake-up in between: the server
/// writes out what it has while the body waits.
#[test]
fn a_failing_page_waits_one_woken_poll_between_its_last_bytes_and_the_error() {
    struct FailsAfter(Option<Bytes>);
    impl Body for FailsAfter {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(match self.0.take() {
                Some(chunk) => Ok(Frame::data(chunk)),
                None => Err(std::io::Error::other("the CMS went away")),
            }))
        }
    }
    let upstream = FailsAfter(Some(Bytes::from_static(b"<p>before</p><ifr")));
    let metrics = Arc::new(RuntimeMetrics::new(Metrics::new(), &[], 1));
    let tokens = PageTokens {
        embeds: embeds(),
        now: NOW,
        principal: visitor(),
        addr: None,
        metrics,
    };
    let mut body = RewriteBody::new(
        upstream,
        tokens,
        RewriteLimits {
            max_memory: 1 << 16,
        },
        // Declared: a page that does not declare its charset is held until its
        // first 1024 bytes are in (the meta prescan), and one cut before
        // them sends nothing.
        encoding_for(Some("utf-8")).unwrap(),
        Arc::default(),
    );
    let wakes = Arc::new(WakeCount::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut poll = || Pin::new(&mut body).poll_frame(&mut cx);
    let Poll::Ready(Some(Ok(first))) = poll() else {
        panic!("the bytes before the cut come first");
    };
    assert_eq!(first.data_ref().unwrap(), &b"<p>before</p>"[..]);
    assert!(poll().is_pending(), "the error waits one poll");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and asks for it");
    assert!(!body.is_end_stream(), "a cut page never ends cleanly");
    let mut poll = || Pin::new(&mut body).poll_frame(&mut cx);
    let Poll::Ready(Some(Err(err))) = poll() else {
        panic!("then the error");
    };
    assert!(err.to_string().contains("CMS"), "{err}");
}

#[test]
fn rewrites_generated_pages_as_lol_html_did() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let cases = std::env::var("ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (
        super::scan::oracle_gen::page(),
        any::<bool>(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    );
    let compared = std::cell::Cell::new(0);
    let skipped = std::cell::Cell::new(0);
    let result = TestRunner::new(config).run(&strategy, |(page, declared, cuts)| {
        let encoding = encoding_for(declared.then_some("utf-8")).unwrap();
        let setup = super::scan::oracle::Setup::new(encoding.encoding.get(), declared);
        // Pages where the scanner parts from lol_html, as documented, are
        // compared in the scanner's own tests.
        let decide = super::scan::oracle::appending();
        let (_, fidelity) = super::scan::oracle::scanner(&[page.as_bytes()], setup, &decide, false);
        if fidelity.deviations + fidelity.unemulated > 0 {
            skipped.set(skipped.get() + 1);
            return Ok(());
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(page.len() + 1)).collect();
        at.sort_unstable();
        let chunks = super::scan::oracle::split(page.as_bytes(), &at);
        let old =
            old_rewriter(&[page.as_bytes()], encoding, 1 << 20).map_err(TestCaseError::fail)?;
        let new = new_rewriter(&chunks, encoding, 1 << 20).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            String::from_utf8_lossy(&new.0),
            String::from_utf8_lossy(&old.0)
        );
        prop_assert_eq!(new.1, old.1, "minted, refused, unentitled");
        compared.set(compared.get() + 1);
        Ok(())
    });
    eprintln!(
        "body_tests::generated: {} pages compared, {} with a documented difference left to the scanner's tests",
        compared.get(),
        skipped.get()
    );
    if let Err(err) = result {
        panic!("{err}");
    }
}
