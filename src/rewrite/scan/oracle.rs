//! The oracle: lol_html set up as the gateway's rewriter set it up before
//! the scanner (encoding, `adjust_charset_on_meta_tag` when no charset was
//! declared, `strict` off, an `iframe` element handler changing `src` and
//! `data-src`), and the scanner with the same decisions, each run over a
//! page cut into chunks.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use encoding_rs::Encoding;
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, Selector};

use super::{Fidelity, IframeTag, ScanError, ScanSettings, ScanSink, Scanner};
use crate::rewrite::iframe::URL_ATTRIBUTES;

/// What becomes of a URL attribute's value (`None`: left alone), given the
/// attribute's name and value as the handler reads them.
pub(crate) type Decide = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// How a page is read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    pub encoding: &'static Encoding,
    /// A charset came with the response: `<meta>` does not switch it.
    pub declared: bool,
    pub max_memory: usize,
}

impl Setup {
    /// A page in `encoding`, declared or not.
    pub(crate) fn new(encoding: &'static Encoding, declared: bool) -> Setup {
        Setup {
            encoding,
            declared,
            max_memory: 4 << 20,
        }
    }
}

/// The page through lol_html, in `chunks`.
pub(crate) fn lol_html(chunks: &[&[u8]], setup: Setup, decide: &Decide) -> Result<Vec<u8>, String> {
    let iframe: Selector = "iframe".parse().expect("selector");
    let decide = decide.clone();
    let handler = move |el: &mut lol_html::send::Element<'_, '_>| {
        for attribute in URL_ATTRIBUTES {
            let Some(value) = el.get_attribute(attribute) else {
                continue;
            };
            if let Some(new) = decide(attribute, &value) {
                el.set_attribute(attribute, &new)?;
            }
        }
        Ok(())
    };
    let settings = Settings::new_send()
        .with_encoding(AsciiCompatibleEncoding::new(setup.encoding).expect("ascii-compatible"))
        .with_adjust_charset_on_meta_tag(!setup.declared)
        .with_strict(false)
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(setup.max_memory))
        .append_element_content_handler((
            Cow::Owned(iframe),
            ElementContentHandlers::default().element(handler),
        ));
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let mut rewriter = HtmlRewriter::new(settings, move |c: &[u8]| {
        sink.lock().expect("sink").extend_from_slice(c)
    });
    for chunk in chunks {
        rewriter.write(chunk).map_err(|e| e.to_string())?;
    }
    rewriter.end().map_err(|e| e.to_string())?;
    let bytes = std::mem::take(&mut *out.lock().expect("sink"));
    Ok(bytes)
}

/// Collects the scanner's output and applies `decide` to each iframe.
pub(crate) struct Collect {
    pub out: Vec<u8>,
    decide: Decide,
    /// Iframes seen.
    pub iframes: usize,
}

impl Collect {
    pub(crate) fn new(decide: &Decide) -> Collect {
        Collect {
            out: Vec::new(),
            decide: decide.clone(),
            iframes: 0,
        }
    }
}

impl ScanSink for Collect {
    fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn iframe(&mut self, tag: &mut IframeTag<'_, '_>) {
        self.iframes += 1;
        for attribute in URL_ATTRIBUTES {
            let Some(value) = tag.get_attribute(attribute) else {
                continue;
            };
            if let Some(new) = (self.decide)(attribute, &value) {
                tag.set_attribute(attribute, &new);
            }
        }
    }
}

/// The page through the scanner, in `chunks`; `quirks` follows lol_html
/// where the scanner knows it to be wrong.
pub(crate) fn scanner(
    chunks: &[&[u8]],
    setup: Setup,
    decide: &Decide,
    quirks: bool,
) -> (Result<Vec<u8>, ScanError>, Fidelity) {
    let settings = ScanSettings {
        encoding: super::AsciiCompatible::new(setup.encoding).expect("ascii-compatible"),
        adjust_charset: !setup.declared,
        max_memory: setup.max_memory,
        xml: false,
    };
    let mut scanner = if quirks {
        Scanner::with_lol_html_quirks(settings)
    } else {
        Scanner::new(settings)
    };
    let mut sink = Collect::new(decide);
    let result = chunks
        .iter()
        .try_for_each(|chunk| scanner.write(chunk, &mut sink))
        .and_then(|()| scanner.end(&mut sink));
    (result.map(|()| sink.out), scanner.fidelity())
}

/// A decision that changes every URL holding `embed`: it appends text with
/// `"` (escaped on writing), `&amp;` (kept) and a non-ASCII letter (encoded
/// in the page's encoding, or as a reference where it has none).
pub(crate) fn appending() -> Decide {
    Arc::new(|attribute: &str, value: &str| {
        (value.contains("embed") && !value.contains(char::REPLACEMENT_CHARACTER))
            .then(|| format!("{value}&amp;by=\"{attribute}\u{e9}\""))
    })
}

/// Every way to cut `len` bytes in two, then in single bytes, then at a
/// few places at once (the cuts may repeat, giving empty chunks).
pub(crate) fn cuts(len: usize, every: bool) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = if every || len < 64 {
        (0..=len).map(|at| vec![at]).collect()
    } else {
        // A sample for big pages: near the start and end, and spread out.
        let step = (len / 97).max(1);
        (0..8)
            .chain((0..len).step_by(step))
            .chain(len.saturating_sub(8)..=len)
            .map(|at| vec![at.min(len)])
            .collect()
    };
    all.push((0..=len).collect());
    let third = len / 3;
    all.push(vec![third, third, 2 * third, len.saturating_sub(1)]);
    all
}

/// `page` cut at `at` (ascending).
pub(crate) fn split<'p>(page: &'p [u8], at: &[usize]) -> Vec<&'p [u8]> {
    let mut chunks = Vec::with_capacity(at.len() + 1);
    let mut from = 0;
    for &cut in at {
        let cut = cut.clamp(from, page.len());
        chunks.push(&page[from..cut]);
        from = cut;
    }
    chunks.push(&page[from..]);
    chunks
}

/// What checking one page found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Checked {
    /// Splits run through the scanner (each in both modes).
    pub splits: usize,
    /// The scanner (spec mode) parted from lol_html, as it may, documented.
    pub deviated: bool,
    /// lol_html's course could not be followed even in quirks mode.
    pub unemulated: bool,
}

/// Checks `page` at every cut of `cuts`: the scanner gives the same bytes
/// for every split; in quirks mode those are lol_html's bytes (unless lol_html's
/// course cannot be followed); in spec mode too, unless a documented
/// difference came up.
pub(crate) fn check(
    page: &[u8],
    setup: Setup,
    decide: &Decide,
    cuts: &[Vec<usize>],
) -> Result<Checked, String> {
    let expected = lol_html(&[page], setup, decide)?;
    let (quirk_whole, quirk_fidelity) = scanner(&[page], setup, decide, true);
    let (spec_whole, spec_fidelity) = scanner(&[page], setup, decide, false);
    let quirk_whole = quirk_whole.map_err(|e| e.to_string())?;
    let spec_whole = spec_whole.map_err(|e| e.to_string())?;
    let show = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let unemulated = quirk_fidelity.unemulated > 0;
    if !unemulated && quirk_whole != expected {
        return Err(format!(
            "quirks mode differs from lol_html\n page: {:?}\n lol_html: {:?}\n scanner:  {:?}",
            show(page),
            show(&expected),
            show(&quirk_whole)
        ));
    }
    let deviated = spec_fidelity.deviations > 0 || spec_fidelity.unemulated > 0;
    if !deviated && spec_whole != expected {
        return Err(format!(
            "the scanner differs from lol_html with no documented reason\n page: {:?}\n lol_html: {:?}\n scanner:  {:?}",
            show(page),
            show(&expected),
            show(&spec_whole)
        ));
    }
    for at in cuts {
        let chunks = split(page, at);
        for (quirks, whole) in [(true, &quirk_whole), (false, &spec_whole)] {
            let (out, _) = scanner(&chunks, setup, decide, quirks);
            let out = out.map_err(|e| e.to_string())?;
            if &out != whole {
                return Err(format!(
                    "cut at {at:?} (quirks: {quirks}) gives other bytes\n page: {:?}\n whole: {:?}\n split: {:?}",
                    show(page),
                    show(whole),
                    show(&out)
                ));
            }
        }
    }
    Ok(Checked {
        splits: cuts.len(),
        deviated,
        unemulated,
    })
}
