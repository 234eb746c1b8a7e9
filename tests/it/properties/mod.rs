//! Property tests: fuzzing on stable Rust, in the test suite.
//!
//! Each property draws generated inputs with proptest, runs them through the
//! public API and checks what must hold for every input:
//!
//! - `path_spellings_*`: a path spelled with mixed case, percent-escapes of
//!   the same bytes, `;params`, `//`, trailing dots and spaces, full-width,
//!   accented and invisible characters (UTF-8, or Windows-1252 escapes) is
//!   decoded to the bytes it spells; spellings with the same strict reading
//!   (no `;params`, which some servers keep, and none starting with `//`, a
//!   host to URL parsers) get the same route; no spelling is more open than
//!   the plain one; a path whose strict reading, reading with `;params`
//!   kept, or path after a host is under a session route is never let through.
//! - `path_lookup_*`: `RouteTable::lookup` and `normalize` never panic on any
//!   text; an ASCII path gets exactly the access of its two documented readings.
//! - `cookie_*`: any `Cookie` / `Set-Cookie` lines never panic; the session
//!   values found among other cookies (any order, whitespace, quotes,
//!   duplicates, several header lines) are the ones the module's rule gives.
//! - `config_*`: `Settings::from_toml` (and, when it accepts, building the
//!   runtime) never panics on random text or on mutations of gateway.toml.
//! - `raw_requests_*`: any bytes sent to a running gateway (request lines,
//!   headers and bodies near what it decides on, pipelined) are answered or
//!   the connection closed; no panic on its threads, never a 500.
//! - `whatever_the_cms_answers_*`: any answer a CMS gives for a gated page
//!   (status, type, coding, framing, headers, pages with embeds) reaches the
//!   member with no 500 of the gateway's own, no panic, and no HTML whose
//!   embed went out without its token.
//! - `rewrite_*`: for generated pages and any split into chunks (empty ones
//!   too), `RewriteBody` gives the bytes of the one-chunk run; those are the
//!   page with exactly one verifiable token in each matching iframe URL
//!   outside comments, scripts and other raw text, and nothing else changed
//!   (a tag that gets a token is written as lol_html writes a modified tag:
//!   one space before each attribute, the new value in double quotes). For
//!   byte soup in any charset (meta charsets too), any split gives the
//!   one-chunk bytes and counts.
//!
//! Token parsing and verification are covered in src/token/edgeauth/tests/.
//!
//! Cases per property: the `DEFAULT_*` constants below (the whole file runs
//! in a few seconds in a debug build), or `PROPTEST_CASES` for all of them.
//! Every property prints its case count and time (`-- --nocapture`). Longer
//! manual run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release --test it properties:: -- --nocapture
//! ```
//!
//! `PROPERTIES_SHOW=1` prints the generated path spellings and pages.
//! A failure prints the minimal (shrunk) input; nothing is written to disk
//! (no proptest-regressions files): turn a failure into a plain `#[test]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use embedgate::allowlist::{Principal, SessionKey};
use embedgate::config::Settings;
use embedgate::embed::EmbedRewrite;
use embedgate::gate::cookie::{
    clears_session, every_session_value, session_cookies, CookieError, CookieName,
    MAX_SESSION_VALUES,
};
use embedgate::gate::{normalize, Access, PathError, RouteSpec, RouteTable};
use embedgate::rewrite::{encoding_for, PageTokens, RewriteBody, RewriteStats};
use embedgate::runtime::Runtime;
use embedgate::token::{Algorithm, EdgeAuth, KeyMaterial, Visitor};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::common::{config_text, KEY_HEX};

const DEFAULT_PATH_CASES: u32 = 256;
const DEFAULT_COOKIE_CASES: u32 = 256;
const DEFAULT_CONFIG_CASES: u32 = 128;
const DEFAULT_REWRITE_CASES: u32 = 96;

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases(default)` inputs from `strategy`, prints how many
/// ran and how long it took, and fails with the shrunk input on a failure.
fn check<S: Strategy>(
    name: &str,
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    let runs = ran.load(Ordering::Relaxed);
    match result {
        Ok(()) => eprintln!(
            "properties::{name}: {runs} cases passed in {:.2?}",
            started.elapsed()
        ),
        Err(err) => panic!(
            "properties::{name}: failed after {runs} runs (shrinking included) in {:.2?}: {err}",
            started.elapsed()
        ),
    }
}

/// A folder with the allowlist the test configs name.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allowlist.txt"),
        "member-0123456789abcdef\n",
    )
    .unwrap();
    dir
}

mod answers;
mod config;
mod cookies;
mod path_lookup;
mod path_model;
mod paths;
mod requests;
mod rewrite;
mod rewrite_soup;
