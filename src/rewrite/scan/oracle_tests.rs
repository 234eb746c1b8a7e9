//! The scanner against lol_html (see [`super::oracle`]): generated pages,
//! the real pages of the repository, and hand-written tricky ones, each
//! split at every chunk boundary (a sample of them for big pages).
//!
//! `ORACLE_CASES` sets the generated cases per property (default 300);
//! each test prints what it covered (`-- --nocapture`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use encoding_rs::{Encoding, GBK, SHIFT_JIS, UTF_8, WINDOWS_1252};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

use super::oracle::{appending, check, cuts, Checked, Decide, Setup};
use super::oracle_gen::{page, soup};

/// The ways a page reaches the rewriter: declared UTF-8 (the common case),
/// undeclared (a `<meta>` may switch), and legacy charsets.
const SETUPS: [(&Encoding, bool); 5] = [
    (UTF_8, true),
    (UTF_8, false),
    (WINDOWS_1252, true),
    (SHIFT_JIS, false),
    (GBK, true),
];

fn cases(default: u32) -> u32 {
    std::env::var("ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    cases: AtomicUsize,
    splits: AtomicUsize,
    deviated: AtomicUsize,
    unemulated: AtomicUsize,
}

impl Tally {
    fn add(&self, checked: Checked) {
        self.cases.fetch_add(1, Ordering::Relaxed);
        self.splits.fetch_add(checked.splits, Ordering::Relaxed);
        self.deviated
            .fetch_add(usize::from(checked.deviated), Ordering::Relaxed);
        self.unemulated
            .fetch_add(usize::from(checked.unemulated), Ordering::Relaxed);
    }

    fn report(&self, name: &str) {
        eprintln!(
            "oracle::{name}: {} pages, {} splits each run in both modes; {} with a documented difference from lol_html (spec mode), {} of them beyond quirks mode",
            self.cases.load(Ordering::Relaxed),
            self.splits.load(Ordering::Relaxed),
            self.deviated.load(Ordering::Relaxed),
            self.unemulated.load(Ordering::Relaxed),
        );
    }
}

/// Runs `check` over generated pages, each encoded in one of the setups,
/// with a few raw bytes the encoding may not read spliced in.
fn run_generated(name: &str, default: u32, pages: impl Strategy<Value = String>) {
    let strategy = (
        pages,
        0..SETUPS.len(),
        prop::collection::vec(
            (
                any::<Index>(),
                prop::sample::select(&[0x80u8, 0xFF, 0xC3, 0x81, 0x5C][..]),
            ),
            0..3,
        ),
    );
    let config = Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    };
    let tally = Tally::default();
    let decide = appending();
    let result = TestRunner::new(config).run(&strategy, |(text, setup, raw)| {
        let (encoding, declared) = SETUPS[setup];
        let mut bytes = encoding.encode(&text).0.into_owned();
        for (at, byte) in raw {
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, byte);
        }
        let setup = Setup::new(encoding, declared);
        let checked = check(&bytes, setup, &decide, &cuts(bytes.len(), true))
            .map_err(|why| TestCaseError::fail(format!("{setup:?}: {why}")))?;
        tally.add(checked);
        Ok(())
    });
    tally.report(name);
    if let Err(err) = result {
        panic!("oracle::{name}: {err}");
    }
}

#[test]
fn markup_soup_is_scanned_as_lol_html_scans_it() {
    run_generated("soup", 400, soup(40));
}

#[test]
fn generated_pages_are_rewritten_as_lol_html_rewrites_them() {
    run_generated("pages", 300, page());
}

/// Pages written to hit one rule each; every cut, every setup.
const TRICKY: &[&str] = &[
    "<iframe src=\"http://e.test/embed/a\"></iframe>",
    "<IFRAME SRC='http://e.test/embed/a' src=\"http://e.test/embed/b\">",
    "<iframe data-src=http://e.test/embed/a src=\"http://e.test/embed/b\"/>",
    "<iframe title=\"a>b\" src=\"http://e.test/embed/a>b\" x='>'>after",
    "<iframe\nsrc\n=\n\"http://e.test/embed/a\"\n>",
    "<iframe src=\"http://e.test/embed/a&amp;b&#38;c&copy\">",
    "<iframe src=\"http://e.test/embed/a\"src=\"x\">",
    "<iframe src=>x<iframe src=http://e.test/embed/b>",
    "<iframe src = 'http://e.test/embed/a' / >",
    "<iframe/src=http://e.test/embed/a>",
    "<iframe src=http://e.test/embed/a/>",
    "<iframe src=\"http://e.test/embed/a\" allowfullscreen/>",
    "<iframe src=\"http://e.test/embed/a\"></iframe><iframe src=\"http://e.test/embed/b\">",
    "<iframe src=\"http://e.test/embed/a\">  <iframe src=\"http://e.test/embed/in-raw-text\"></iframe>",
    "<iframes src=http://e.test/embed/a><x-iframe src=http://e.test/embed/a><iframe",
    "<!--><iframe src=http://e.test/embed/a>",
    "<!---><iframe src=http://e.test/embed/a>",
    "<!-- a --!><iframe src=http://e.test/embed/a>",
    "<!-- <!-- <iframe src=http://e.test/embed/hidden> --><iframe src=http://e.test/embed/a>",
    "<!--<!---><iframe src=http://e.test/embed/a>",
    "<!-- -- -><iframe src=http://e.test/embed/hidden>--><iframe src=http://e.test/embed/a>",
    "<!--a--!-><iframe src=http://e.test/embed/hidden>--!><iframe src=http://e.test/embed/a>",
    "<? x ><iframe src=http://e.test/embed/a>",
    "</ x><iframe src=http://e.test/embed/a></><iframe src=http://e.test/embed/b>",
    "<!x><iframe src=http://e.test/embed/a><!><iframe src=http://e.test/embed/b>",
    "<!DOCTYPE html PUBLIC \"a>b\"><iframe src=http://e.test/embed/a>",
    "<!doctypehtml><iframe src=http://e.test/embed/a>",
    "<![CDATA[ x ><iframe src=http://e.test/embed/a> ]]>",
    "<svg><![CDATA[ > <iframe src=http://e.test/embed/hidden> ]]><iframe src=http://e.test/embed/a></svg>",
    "<svg><![CDATA[ ]]]]><iframe src=http://e.test/embed/a>]]></svg>",
    "<svg><foreignObject><![CDATA[ > <iframe src=http://e.test/embed/a> ]]></foreignObject></svg>",
    "<svg><foreignObject><style><iframe src=http://e.test/embed/hidden></style></foreignObject><style><iframe src=http://e.test/embed/a></style></svg>",
    "<svg><desc/><![CDATA[<iframe src=http://e.test/embed/hidden>]]></svg>",
    "<svg><p><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>",
    "<svg></p><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>",
    "<svg><font color=red><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>",
    "<svg><font><![CDATA[ > <iframe src=http://e.test/embed/hidden> ]]>",
    "<math><mi><xmp><iframe src=http://e.test/embed/hidden></xmp></mi><![CDATA[>]]><iframe src=http://e.test/embed/a>",
    "<math><annotation-xml encoding=\"TEXT/HTML\"><title><iframe src=http://e.test/embed/hidden></title></annotation-xml></math>",
    "<math><annotation-xml><![CDATA[<iframe src=http://e.test/embed/hidden>]]></annotation-xml></math>",
    "<script><iframe src=http://e.test/embed/hidden></script><iframe src=http://e.test/embed/a>",
    "<script><!--<iframe src=http://e.test/embed/hidden>--></script><iframe src=http://e.test/embed/a>",
    "<script><!--<script></script><iframe src=http://e.test/embed/hidden></script>--></script><iframe src=http://e.test/embed/a>",
    "<script><!--<script>--></script><iframe src=http://e.test/embed/a>",
    "<script><!--<scripts></script><iframe src=http://e.test/embed/a>",
    "<script></script x=\"></script><iframe src=http://e.test/embed/hidden>\"><iframe src=http://e.test/embed/a>",
    "<script></scriptx><iframe src=http://e.test/embed/hidden></script><iframe src=http://e.test/embed/a>",
    "<SCRIPT></Script\t><iframe src=http://e.test/embed/a>",
    "<script/><iframe src=http://e.test/embed/hidden></script>",
    "<style></styl></style ><iframe src=http://e.test/embed/a>",
    "<title><iframe src=http://e.test/embed/hidden></title/><iframe src=http://e.test/embed/a>",
    "<textarea></textarea<iframe src=http://e.test/embed/hidden></textarea><iframe src=http://e.test/embed/a>",
    "<xmp><!--</xmp><iframe src=http://e.test/embed/a>-->",
    "<noscript><iframe src=http://e.test/embed/hidden></noscript><iframe src=http://e.test/embed/a>",
    "<noembed><iframe src=x></noembed><noframes><iframe src=x></noframes><iframe src=http://e.test/embed/a>",
    "<plaintext></plaintext><iframe src=http://e.test/embed/hidden>",
    "<iframe src=\"http://e.test/embed/a",
    "<iframe src=http://e.test/embed/a x",
    "<p class=\"<iframe src=http://e.test/embed/hidden>\"><iframe src=http://e.test/embed/a>",
    "<a b='<iframe src=http://e.test/embed/hidden>'c=d><iframe src=http://e.test/embed/a>",
    "a<b<iframe src=http://e.test/embed/hidden>c<<iframe src=http://e.test/embed/a>",
    "<meta charset=windows-1252><iframe src=\"http://e.test/embed/caf\u{e9}\">",
    "<meta http-equiv=content-type content=\"text/html; charset=iso-8859-5\"><iframe src=\"http://e.test/embed/\u{e9}\">",
    "<meta charset=utf-16><meta charset=koi8-r><meta charset=latin1><iframe src=\"http://e.test/embed/\u{e9}\">",
    "<iframe src=\"http://e.test/embed/\u{1F600}\">",
];

#[test]
fn tricky_pages_are_rewritten_as_lol_html_rewrites_them() {
    let tally = Tally::default();
    for page in TRICKY {
        for (encoding, declared) in SETUPS {
            let bytes = encoding.encode(page).0;
            let setup = Setup::new(encoding, declared);
            let checked = check(&bytes, setup, &appending(), &cuts(bytes.len(), true))
                .unwrap_or_else(|why| panic!("{setup:?}: {why}"));
            tally.add(checked);
        }
    }
    tally.report("tricky");
}

/// The repository's own pages and page-like files, big and small.
const REAL_PAGES: &[&str] = &[
    "bench/page.html",
    "examples/static_upstream.rs",
    "examples/wordpress/embedgate.php",
    "src/demo/cms.rs",
    "src/demo/video_host.rs",
    "tests/it/rewrite.rs",
    "tests/it/edge.rs",
    "tests/it/edge_pages.rs",
    "tests/it/properties/answers.rs",
    "tests/it/properties/requests.rs",
    "tests/it/properties/rewrite.rs",
    "tests/it/properties/rewrite_soup.rs",
    "tests/it/remote_tokens.rs",
    "tests/it/compression.rs",
    "tests/it/passthrough.rs",
    "tests/it/browser/mod.rs",
];

/// A file of [`REAL_PAGES`]; one that moved must be listed where it went, not skipped.
fn read_real(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|err| panic!("{path}, listed in REAL_PAGES: {err}"))
}

/// The string literals with markup in a Rust (`"`) or PHP (`"`, `'`)
/// source, unescaped the
/// simple way (`\n`, `\t`, `\"`, `\\`; raw strings as they are): the pages
/// the tests serve, each read from a fresh start.
fn literal_pages(source: &str, quotes: &[char]) -> Vec<String> {
    let mut pages = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find(quotes) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let raw = rest[..open].ends_with("r#");
        let body = &rest[open + 1..];
        let close = if raw {
            body.find("\"#")
        } else {
            let mut escaped = false;
            body.char_indices()
                .find(|&(_, c)| {
                    let end = c == quote && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map(|(i, _)| i)
        };
        let Some(close) = close else { break };
        let text = &body[..close];
        if text.contains('<') && text.len() > 3 {
            let page = if raw {
                text.to_string()
            } else {
                text.replace("\\n", "\n")
                    .replace("\\t", "\t")
                    .replace("\\\"", "\"")
                    .replace("\\'", "'")
                    .replace("\\\\", "\\")
            };
            pages.push(page);
        }
        rest = &body[close + 1..];
    }
    pages
}

#[test]
fn real_pages_are_rewritten_as_lol_html_rewrites_them() {
    let tally = Tally::default();
    for path in REAL_PAGES {
        let bytes = read_real(path);
        for (encoding, declared) in [(UTF_8, true), (UTF_8, false), (WINDOWS_1252, true)] {
            let setup = Setup::new(encoding, declared);
            let checked = check(&bytes, setup, &appending(), &cuts(bytes.len(), false))
                .unwrap_or_else(|why| panic!("{path} {setup:?}: {why}"));
            tally.add(checked);
        }
    }
    tally.report("real");
}

#[test]
fn pages_written_in_the_tests_and_examples_are_rewritten_as_lol_html_rewrites_them() {
    let tally = Tally::default();
    for path in REAL_PAGES.iter().filter(|p| !p.ends_with(".html")) {
        let bytes = read_real(path);
        let quotes: &[char] = if path.ends_with(".php") {
            &['"', '\'']
        } else {
            &['"']
        };
        for page in literal_pages(&String::from_utf8_lossy(&bytes), quotes) {
            for (encoding, declared) in [(UTF_8, true), (UTF_8, false)] {
                let setup = Setup::new(encoding, declared);
                let cuts = cuts(page.len(), page.len() < 2000);
                let checked = check(page.as_bytes(), setup, &appending(), &cuts)
                    .unwrap_or_else(|why| panic!("a page in {path} {setup:?}: {why}"));
                tally.add(checked);
            }
        }
    }
    assert!(
        tally.cases.load(Ordering::Relaxed) > 100,
        "the tests serve pages"
    );
    tally.report("literals");
}

/// lol_html's own answer on a page, and the scanner's, for the documented
/// differences below.
fn both(page: &str, setup: Setup, decide: &Decide) -> (String, String) {
    let lol = super::oracle::lol_html(&[page.as_bytes()], setup, decide).unwrap();
    let (ours, fidelity) = super::oracle::scanner(&[page.as_bytes()], setup, decide, false);
    assert!(
        fidelity.deviations + fidelity.unemulated > 0,
        "{page}: the difference is counted"
    );
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (text(lol), text(ours.unwrap()))
}

/// Where the scanner parts from lol_html, each a case where lol_html
/// misreads markup a browser reads unambiguously and so leaves an iframe
/// the browser creates without its token (or, for the BOM, reads a value
/// no browser reads). The scanner follows the spec; `expect` is the iframe
/// the scanner rewrites and lol_html does not.
#[test]
fn documented_differences_from_lol_html() {
    let setup = Setup::new(UTF_8, true);
    let decide = appending();
    let rewritten = "<iframe src=\"http://e.test/embed/a&amp;by=&quot;src\u{e9}&quot;\">";
    for (page, why) in [
        // §13.2.6.4.7: a self-closing <svg> is popped at once; lol_html stays in SVG,
        // and the bogus comment (§13.2.5.42) becomes a CDATA section.
        ("<svg/><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>", "self-closing svg"),
        // §13.2.6.5: a breakout tag pops every foreign element; lol_html one level.
        ("<svg><svg><p><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>", "breakout"),
        ("<svg><svg></br><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>", "</br>"),
        // §13.2.6.5 "any other end tag": </math> closes the math element under the svg.
        (
            "<math><annotation-xml><svg></math><![CDATA[ > <iframe src=http://e.test/embed/a> ]]>",
            "end tag of an outer foreign element",
        ),
        // §13.2.6.5 "any other start tag": <math> in SVG is an SVG element, so
        // <mi> is no integration point and <xmp> no raw text; <p> breaks out.
        ("<svg><math><mi><xmp><p><iframe src=http://e.test/embed/a>", "math in svg"),
        // The HTML <title> inside <foreignObject> closes, not the integration point:
        // the script after it is script data, its "<!--" no comment.
        (
            "<svg><foreignObject><title>t</title><script>a='<!--'</script><iframe src=http://e.test/embed/a>-->",
            "integration point left by its own end tag",
        ),
        // §13.2.6 "HTML integration point": the first encoding attribute
        // (§13.2.5.33: duplicates are dropped).
        (
            "<math><annotation-xml encoding=x encoding=text/html><xmp><p><iframe src=http://e.test/embed/a>",
            "first encoding attribute",
        ),
        // §13.2.5.35: `>` where a value was expected still ends the start tag,
        // and <script> still switches to script data; lol_html goes on in
        // the data state, where "<!--" hides the iframe.
        (
            "<script a=>x='<!--'</script><iframe src=http://e.test/embed/a>-->",
            "missing attribute value",
        ),
    ] {
        let (lol, ours) = both(page, setup, &decide);
        assert!(ours.contains(rewritten), "{why}: the scanner rewrites\n {ours}");
        assert!(!lol.contains(rewritten), "{why}: lol_html does not (else drop the case)\n {lol}");
    }
    // A byte order mark at a value's start is part of the value (no browser
    // sniffs one there); lol_html's `Encoding::decode` drops it.
    let page = "<iframe src=\"\u{FEFF}http://e.test/embed/a\">";
    let (lol, ours) = both(page, setup, &decide);
    assert_eq!(lol, rewritten);
    assert_eq!(
        ours,
        "<iframe src=\"\u{FEFF}http://e.test/embed/a&amp;by=&quot;src\u{e9}&quot;\">"
    );
}

#[test]
fn a_tag_over_the_memory_cap_is_an_error_in_one_chunk_or_many() {
    let setup = Setup {
        max_memory: 1000,
        ..Setup::new(UTF_8, true)
    };
    let decide = appending();
    let big = format!(
        "<p>x</p><iframe src=\"http://e.test/embed/{}\">",
        "a".repeat(1000)
    );
    for at in [
        vec![],
        vec![10],
        vec![500],
        (0..big.len()).step_by(100).collect(),
    ] {
        let chunks = super::oracle::split(big.as_bytes(), &at);
        let (out, _) = super::oracle::scanner(&chunks, setup, &decide, false);
        assert!(
            matches!(out, Err(super::ScanError::TagTooLarge { limit: 1000, .. })),
            "{at:?}"
        );
    }
    // Tags that are not held whole may be any size.
    let other = format!(
        "<p title=\"{}\"><!-- {} --><iframe src=x>",
        "a".repeat(5000),
        "b".repeat(5000)
    );
    let chunks = super::oracle::split(other.as_bytes(), &[100, 2000, 7000]);
    let (out, _) = super::oracle::scanner(&chunks, setup, &decide, false);
    assert_eq!(out.unwrap(), other.as_bytes());
}

#[test]
fn a_marker_like_decision_reaches_the_sink_in_one_piece() {
    // Deferred tokens put a marker in the value: the whole rewritten tag is
    // one `bytes` call, whatever the chunks.
    struct Pieces(Vec<Vec<u8>>);
    impl super::ScanSink for Pieces {
        fn bytes(&mut self, bytes: &[u8]) {
            self.0.push(bytes.to_vec());
        }
        fn iframe(&mut self, tag: &mut super::IframeTag<'_, '_>) {
            if tag.get_attribute("src").is_some() {
                tag.set_attribute("src", "MARKER0123456789");
            }
        }
    }
    let page = b"<p>a</p><iframe title=x src=\"http://e.test/embed/a\" allow=y>b";
    for at in 0..=page.len() {
        let mut scanner = super::Scanner::new(super::ScanSettings {
            encoding: super::AsciiCompatible::new(UTF_8).unwrap(),
            adjust_charset: false,
            max_memory: 1 << 20,
            xml: false,
        });
        let mut sink = Pieces(Vec::new());
        for chunk in [&page[..at], &page[at..]] {
            scanner.write(chunk, &mut sink).unwrap();
        }
        scanner.end(&mut sink).unwrap();
        assert!(
            sink.0
                .iter()
                .any(|p| p == b"<iframe title=x src=\"MARKER0123456789\" allow=y>"),
            "cut at {at}: {:?}",
            sink.0
        );
    }
}

#[test]
fn deep_foreign_nesting_is_bounded_and_still_read_as_lol_html_reads_it() {
    // Past the tracked depth, levels are counted, not kept; balanced markup
    // comes back to HTML all the same.
    let depth = 3000;
    let page = format!(
        "{}<![CDATA[ > <iframe src=http://e.test/embed/hidden> ]]>{}<![CDATA[ > <iframe src=http://e.test/embed/a> ]]>",
        "<svg><g>".repeat(depth),
        "</g></svg>".repeat(depth)
    );
    let setup = Setup::new(UTF_8, true);
    let checked = check(
        page.as_bytes(),
        setup,
        &appending(),
        &cuts(page.len(), false),
    )
    .unwrap_or_else(|why| panic!("{why}"));
    assert!(!checked.deviated);
}
