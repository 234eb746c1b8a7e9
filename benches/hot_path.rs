//! The gateway's per-request CPU work, without the network:
//!
//! - `mint_token`: one EdgeAuth token (sha256, sha1, md5), and one embed URL
//!   rewritten (pattern match + ACL + token), as the iframe handler does it.
//! - `verify_token`: one EdgeAuth token checked with `verify_with`, as an edge
//!   does it: an ACL token (sha256), and a URL token signed with escape_early,
//!   whose request path is escaped into the HMAC on every check.
//! - `rewrite_40k_5_embeds`: `bench/page.html` (~40 KB, 5 Infomaniak embeds,
//!   one other iframe) through `RewriteBody` in 16 KB chunks, as a gated
//!   response is streamed; the rewriter's construction is included, since
//!   every response builds one.
//! - `gate`: the gate's steps for one request: the route lookup, reading the
//!   session cookie out of a Cookie header of five, and the allowlist check
//!   (cookie read and file-source lookup, as a gated request does it).
//! - `rewrite_page`: generated pages of 8 KB (2 embeds), 40 KB (5) and
//!   400 KB (20), the sizes of bench/compare.sh, through `RewriteBody`;
//!   and the 40 KB page once more with no charset in its Content-Type,
//!   which is held and looked through for a `<meta>` charset.
//! - `passthrough_baseline`: the same page and chunks through lol_html with no
//!   handlers, with a no-op `iframe` handler, and plain copying, so the share
//!   of selector matching and minting is visible.
//!
//! Generate the page with `bench/load.sh --page-only` if it is missing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use embedgate::allowlist::{Principal, SessionKey};
use embedgate::config::Settings as GatewaySettings;
use embedgate::embed::EmbedRewrite;
use embedgate::rewrite::{encoding_for, PageTokens, RewriteBody, RewriteStats};
use embedgate::runtime::Runtime;
use embedgate::token::{Algorithm, Claims, EdgeAuth, KeyMaterial, Scope, TokenFormat};
use http_body::{Body, Frame};
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, Selector};

const KEY_HEX: &str = "5be0b1f4a3c29d8e7f60152a4c3b2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c";
const CHUNK: usize = 16 * 1024;
const EMBEDS_ON_PAGE: usize = 5;
// A fixed clock keeps every iteration's output the same length.
const NOW: u64 = 1_767_225_600;

/// The runtime of the shipped gateway.toml: the bench rewrites with the embeds users start from.
fn load_runtime() -> Runtime {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let loaded = GatewaySettings::load(&path).unwrap_or_else(|err| panic!("bench config: {err}"));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(Runtime::from_loaded(loaded, None))
        .unwrap_or_else(|err| panic!("bench config: {err}"))
}

fn visitor() -> Principal {
    Principal::of(&SessionKey::new("bench-visitor"))
}

fn load_page() -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/page.html");
    let page = std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; generate it with bench/load.sh --page-only",
            path.display()
        )
    });
    Bytes::from(page)
}

/// The page cut into upstream-sized chunks (cheap: slices of one buffer).
fn chunks(page: &Bytes) -> VecDeque<Bytes> {
    (0..page.len())
        .step_by(CHUNK)
        .map(|at| page.slice(at..(at + CHUNK).min(page.len())))
        .collect()
}

/// An upstream body that has every chunk ready at once.
struct ChunkBody(VecDeque<Bytes>);

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// Polls `body` to its end without a runtime, handing each data chunk to `sink`.
fn drain<B>(mut body: B, mut sink: impl FnMut(&[u8]))
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    sink(data);
                }
            }
            Poll::Ready(Some(Err(err))) => panic!("body failed: {err:?}"),
            Poll::Ready(None) => return,
            Poll::Pending => unreachable!("every chunk is ready at once"),
        }
    }
}

fn rewrite_page(runtime: &Runtime, page: &Bytes, sink: impl FnMut(&[u8])) -> u32 {
    // As the load test's upstream declares it: `text/html; charset=utf-8`.
    rewrite_page_in(runtime, page, Some("utf-8"), sink)
}

/// [`rewrite_page`] for a page whose Content-Type names `charset`, or none.
fn rewrite_page_in(
    runtime: &Runtime,
    page: &Bytes,
    charset: Option<&str>,
    sink: impl FnMut(&[u8]),
) -> u32 {
    let stats = Arc::new(RewriteStats::default());
    let tokens = PageTokens {
        embeds: runtime.embeds.clone(),
        now: NOW,
        principal: visitor(),
        addr: None,
        metrics: runtime.metrics.clone(),
    };
    let body = RewriteBody::new(
        ChunkBody(chunks(page)),
        tokens,
        runtime.settings().rewrite,
        encoding_for(charset).expect("an ASCII-compatible charset"),
        stats.clone(),
    );
    drain(body, sink);
    stats.minted()
}

fn mint_token(c: &mut Criterion) {
    let key = KeyMaterial::from_hex(KEY_HEX).expect("hex key");
    let acl = "/hls/1jhvl2uqa5rdf/*";
    let mut group = c.benchmark_group("mint_token");
    for (name, algorithm) in [
        ("sha256", Algorithm::Sha256),
        ("sha1", Algorithm::Sha1),
        ("md5", Algorithm::Md5),
    ] {
        let minter = EdgeAuth::new(algorithm, &key);
        let mut out = String::with_capacity(256);
        group.bench_function(format!("{name}/mint_into"), |b| {
            b.iter(|| {
                out.clear();
                minter.mint_into(
                    black_box(NOW),
                    black_box(NOW + 300),
                    black_box(acl),
                    &mut out,
                );
                black_box(out.len())
            })
        });
        if algorithm == Algorithm::Sha256 {
            group.bench_function(format!("{name}/mint"), |b| {
                b.iter(|| minter.mint(black_box(NOW), black_box(NOW + 300), black_box(acl)))
            });
        }
    }
    let runtime = load_runtime();
    let embed = runtime.embeds.iter().next().expect("an embed");
    let principal = visitor();
    let at = |now| embedgate::token::Visitor {
        principal: &principal,
        addr: None,
        now,
    };
    let url = "https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html?autoplay=0&amp;muted=1";
    assert!(matches!(
        embed.rewrite(url, &at(NOW)),
        Some(EmbedRewrite::Minted(_))
    ));
    group.bench_function("sha256/embed_rewrite_url", |b| {
        b.iter(|| embed.rewrite(black_box(url), &at(black_box(NOW))))
    });
    group.finish();
}

fn verify_token(c: &mut Criterion) {
    let key = KeyMaterial::from_hex(KEY_HEX).expect("hex key");
    let mut group = c.benchmark_group("verify_token");

    let acl_signer = EdgeAuth::new(Algorithm::Sha256, &key);
    let acl_token = acl_signer.mint(NOW, NOW + 300, "/hls/1jhvl2uqa5rdf/*");
    // Once, outside the timed loop: the bench must not measure a rejection.
    assert!(acl_signer.verify_with(&acl_token, NOW + 1, 30, "").is_ok());
    group.bench_function("sha256/acl_verify_with", |b| {
        b.iter(|| {
            acl_signer.verify_with(
                black_box(&acl_token),
                black_box(NOW + 1),
                black_box(30),
                black_box(""),
            )
        })
    });

    let url_signer = EdgeAuth::new(Algorithm::Sha256, &key).with_format(TokenFormat {
        escape_early: true,
        ..TokenFormat::default()
    });
    // Every `/` of the path is escaped, as an edge sees a segment request.
    let path = "/hls/1jhvl2uqa5rdf/1080p/segment-00042.ts";
    let mut url_token = String::with_capacity(256);
    url_signer.mint_claims_into(
        &Claims {
            ip: None,
            start: Some(NOW),
            end: NOW + 300,
            scope: Scope::Url(path),
            id: None,
            data: None,
        },
        &mut url_token,
    );
    assert!(url_signer
        .verify_with(&url_token, NOW + 1, 30, path)
        .is_ok());
    group.bench_function("sha256/url_escape_early_verify_with", |b| {
        b.iter(|| {
            url_signer.verify_with(
                black_box(&url_token),
                black_box(NOW + 1),
                black_box(30),
                black_box(path),
            )
        })
    });
    group.finish();
}

fn rewrite_40k_5_embeds(c: &mut Criterion) {
    let runtime = load_runtime();
    let page = load_page();

    // Once, outside the timed loop: the bench must not measure a no-op.
    let mut output = Vec::new();
    let minted = rewrite_page(&runtime, &page, |d| output.extend_from_slice(d));
    let output = String::from_utf8(output).expect("utf-8 output");
    assert_eq!(minted as usize, EMBEDS_ON_PAGE);
    assert_eq!(output.matches("token=st=").count(), EMBEDS_ON_PAGE);
    assert!(output.contains("https://www.youtube-nocookie.com/embed/aBcDeFgHiJk\""));

    let mut group = c.benchmark_group("rewrite_40k_5_embeds");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("rewrite_body", |b| {
        b.iter(|| {
            let mut sent = 0;
            rewrite_page(&runtime, black_box(&page), |d| sent += d.len());
            black_box(sent)
        })
    });
    group.finish();
}

/// lol_html set up as `RewriteBody` sets it up for a declared UTF-8 page, with a
/// no-op iframe handler or none.
fn lol_html_pass(page: &Bytes, with_iframe_handler: bool) -> usize {
    let utf8 = AsciiCompatibleEncoding::new(encoding_rs::UTF_8).expect("ascii-compatible");
    let settings = Settings::new_send()
        .with_encoding(utf8)
        // The charset is declared in Content-Type, so a <meta charset> does not switch it.
        .with_adjust_charset_on_meta_tag(false)
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(4 << 20));
    let settings = if with_iframe_handler {
        let iframe: Selector = "iframe".parse().expect("selector");
        settings.append_element_content_handler((
            std::borrow::Cow::Owned(iframe),
            ElementContentHandlers::default().element(
                |el: &mut lol_html::send::Element<'_, '_>| {
                    black_box(el.get_attribute("src"));
                    Ok(())
                },
            ),
        ))
    } else {
        settings
    };
    // Output collected behind a mutex, as `RewriteBody` collects it.
    let out = Arc::new(Mutex::new(BytesMut::new()));
    let sink = out.clone();
    let mut rewriter = HtmlRewriter::new(settings, move |c: &[u8]| {
        sink.lock().expect("sink").extend_from_slice(c)
    });
    let mut sent = 0;
    for chunk in chunks(page) {
        rewriter.write(&chunk).expect("write");
        // Hand on what came out, as the gateway does after each chunk.
        sent += black_box(out.lock().expect("sink").split().freeze()).len();
    }
    rewriter.end().expect("end");
    let rest = out.lock().expect("sink").len();
    sent + rest
}

fn passthrough_baseline(c: &mut Criterion) {
    let page = load_page();
    assert_eq!(lol_html_pass(&page, false), page.len());
    assert_eq!(lol_html_pass(&page, true), page.len());

    let mut group = c.benchmark_group("passthrough_baseline");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("lol_html_no_handlers", |b| {
        b.iter(|| lol_html_pass(black_box(&page), false))
    });
    group.bench_function("lol_html_iframe_noop_handler", |b| {
        b.iter(|| lol_html_pass(black_box(&page), true))
    });
    group.bench_function("copy_chunks", |b| {
        b.iter(|| {
            let mut out = BytesMut::new();
            let mut sent = 0;
            drain(ChunkBody(chunks(black_box(&page))), |d| {
                out.extend_from_slice(d);
                sent += out.split().len();
            });
            black_box(sent)
        })
    });
    group.finish();
}

/// A page of about `kib` KiB with `embeds` Infomaniak embeds, made like
/// bench/make_page.py's: paragraphs, an embed every other section.
fn sized_page(kib: usize, embeds: usize) -> Bytes {
    let mut page = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Members</title><style>p { margin: 0 }</style></head><body><main><article>\n",
    );
    let sections = 2 * embeds;
    let per_section = kib * 1024 / sections;
    for section in 0..sections {
        let start = page.len();
        page.push_str("<section><h2>Lesson</h2>\n");
        while page.len() - start < per_section.saturating_sub(200) {
            page.push_str(
                "<p>Gateway session token stream chunk <a href=\"/videos/notes\">notes</a> \
                 &amp; <em>more</em> member lesson video module archive editor.</p>\n",
            );
        }
        if section % 2 == 0 {
            page.push_str(&format!(
                "<iframe width=\"720\" height=\"405\" \
                 src=\"https://api.vod2.infomaniak.com/res/embed/share{section}.html\" \
                 allowfullscreen></iframe>\n"
            ));
        }
        page.push_str("</section>\n");
    }
    page.push_str("</article></main></body></html>\n");
    Bytes::from(page)
}

/// One page view's rewrite at each page size of bench/compare.sh.
fn rewrite_page_sizes(c: &mut Criterion) {
    let runtime = load_runtime();
    let mut group = c.benchmark_group("rewrite_page");
    for (name, kib, embeds) in [
        ("8k_2_embeds", 8, 2),
        ("40k_5_embeds", 40, 5),
        ("400k_20_embeds", 400, 20),
    ] {
        let page = sized_page(kib, embeds);
        let mut out = 0;
        assert_eq!(
            rewrite_page(&runtime, &page, |c| out += c.len()),
            embeds as u32
        );
        group.throughput(Throughput::Bytes(page.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                rewrite_page(&runtime, black_box(&page), |chunk| {
                    black_box(chunk);
                })
            })
        });
    }
    // A Content-Type without a charset: the page's first bytes are held and
    // looked through for a `<meta>` charset, up to the first iframe.
    let page = sized_page(40, 5);
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("40k_5_embeds_no_declared_charset", |b| {
        b.iter(|| {
            rewrite_page_in(&runtime, black_box(&page), None, |chunk| {
                black_box(chunk);
            })
        })
    });
    group.finish();
}

/// The gate's per-request steps: which route, which cookie, whose session.
fn gate_steps(c: &mut Criterion) {
    let runtime = load_runtime();
    let mut group = c.benchmark_group("gate");
    group.bench_function("route_lookup", |b| {
        b.iter(|| {
            runtime
                .routes
                .lookup(black_box("/videos/course/lesson-3"), None)
                .is_ok()
        })
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        http::HeaderValue::from_static(
            "_ga=GA1.2.1234567890.1700000000; theme=dark; lang=en; \
             sessionid=demo-member-7f3c9a2e41b8; consent=yes",
        ),
    );
    let cookie = embedgate::gate::CookieName::new("sessionid");
    group.bench_function("cookie_read", |b| {
        b.iter(|| {
            embedgate::gate::session_cookies(black_box(&headers), &cookie)
                .map(|values| values.as_slice().len())
                .unwrap_or_default()
        })
    });
    let (method, uri) = (http::Method::GET, http::Uri::from_static("/videos/intro"));
    let visit = embedgate::allowlist::Visit {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let executor = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    assert!(matches!(
        executor.block_on(runtime.gate.admit(&visit)),
        Ok(embedgate::gate::Admission::Allowed(_))
    ));
    group.bench_function("allowlist_check", |b| {
        b.iter(|| {
            matches!(
                executor.block_on(runtime.gate.admit(black_box(&visit))),
                Ok(embedgate::gate::Admission::Allowed(_))
            )
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    gate_steps,
    mint_token,
    verify_token,
    rewrite_page_sizes,
    rewrite_40k_5_embeds,
    passthrough_baseline
);
criterion_main!(benches);
