//! A streaming scanner for the iframe start tags of an HTML page.
//!
//! It follows the WHATWG tokenizer states that decide where a tag can start
//! (`states`), with lol_html's simulation of the tree builder for the
//! namespace (`foreign`), but builds no tokens: bytes outside the tags it
//! reads are handed on as slices of the input as soon as they are known not
//! to begin one. It reads iframe start tags (to rewrite their URLs), `meta`
//! while the charset may still change (`charset`), and the few foreign
//! tags whose attributes decide the namespace. Only such a tag (or the
//! first bytes of a tag whose name could still make it one), split across
//! chunks, is carried to the next chunk, up to `max_memory` bytes.
//!
//! lol_html, which did this job before, is the oracle of the tests
//! (`oracle_tests`): same settings, same attribute decisions, same bytes.

mod attributes;
mod charset;
mod foreign;
mod names;
mod states;
mod whole;

#[cfg(test)]
pub(crate) mod oracle;
#[cfg(test)]
pub(crate) mod oracle_gen;
#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;

use encoding_rs::Encoding;
use thiserror::Error;

pub use attributes::IframeTag;
use attributes::{AttrSpan, InTag};
use foreign::Foreign;
use names::{Kind, Name};

/// Where the scanner's output goes, and who decides what becomes of an iframe.
pub trait ScanSink {
    /// The page's next bytes: spans of the input as they were, or a tag as rewritten.
    fn bytes(&mut self, bytes: &[u8]);
    /// A complete iframe start tag, whose attributes may be read and set.
    fn iframe(&mut self, tag: &mut IframeTag<'_, '_>);
}

/// Why the scanner stopped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScanError {
    /// A tag the scanner must hold whole (an iframe) outgrew the memory cap.
    #[error("a tag of {size} bytes or more is over the rewriter's memory cap ({limit} bytes)")]
    TagTooLarge {
        /// Bytes of the tag held when the cap was passed.
        size: usize,
        /// The cap (`[rewrite] max_memory`).
        limit: usize,
    },
}

/// An encoding whose bytes below 0x80 are always ASCII, so that markup can
/// be read byte by byte whatever the text around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsciiCompatible(&'static Encoding);

impl AsciiCompatible {
    /// `encoding`, if it is ASCII-compatible (not UTF-16, ISO-2022-JP or replacement).
    pub fn new(encoding: &'static Encoding) -> Option<AsciiCompatible> {
        encoding
            .is_ascii_compatible()
            .then_some(AsciiCompatible(encoding))
    }

    /// The encoding.
    pub fn get(self) -> &'static Encoding {
        self.0
    }
}

impl From<AsciiCompatible> for &'static Encoding {
    fn from(encoding: AsciiCompatible) -> &'static Encoding {
        encoding.0
    }
}

/// How one page is to be scanned.
#[derive(Clone, Copy, Debug)]
pub struct ScanSettings {
    /// The page's encoding, for reading and writing attribute values.
    pub encoding: AsciiCompatible,
    /// Whether a `<meta>` charset may switch the encoding (none in Content-Type).
    pub adjust_charset: bool,
    /// Most bytes of one tag held across chunks.
    pub max_memory: usize,
    /// The page is XHTML, which browsers read with their XML parser: no
    /// element's content is raw text (`<script src="a.js"/>` is whole).
    pub xml: bool,
}

/// Where the scanner parts from lol_html, counted so that the oracle tests
/// know when to expect lol_html's bytes exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fidelity {
    // Follow lol_html where the scanner knows it to be wrong (tests only).
    quirks: bool,
    /// Decisions where the spec and lol_html differ (followed per `quirks`).
    pub deviations: u32,
    /// Decisions where lol_html's course cannot be followed (a text element's
    /// start tag ended by `>` where a value was expected).
    pub unemulated: u32,
}

impl Fidelity {
    /// The spec's answer, or lol_html's in quirks mode; counts a difference.
    pub(crate) fn pick<T: PartialEq>(&mut self, spec: T, lol_html: T) -> T {
        if spec == lol_html {
            return spec;
        }
        self.deviations += 1;
        if self.quirks {
            lol_html
        } else {
            spec
        }
    }
}

/// The tags the scanner may have to hold whole: the first bytes of a start
/// tag are kept at a chunk's end while its name could still be one of them.
const CAPTURED_NAMES: [&[u8]; 4] = [b"iframe", b"meta", b"font", b"annotation-xml"];

/// What the scanner does with the start tag it is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Capture {
    None,
    Iframe,
    Meta,
    // Read for the namespace only (`font`, `annotation-xml` in foreign content).
    Attrs,
}

/// The streaming scanner of one page.
pub struct Scanner {
    state: states::State,
    // The tag name being read (or the text element's end tag, or `script`
    // in script data's double-escape states).
    name: Name,
    // The tag being read is an end tag.
    is_end: bool,
    // The kind of the tag being read, once its name is complete.
    kind: Kind,
    capture: Capture,
    // The element whose end tag leaves the current text state.
    text_kind: Kind,
    // Progress through `--`, `DOCTYPE` or `[CDATA[` after `<!`.
    declaration: (u8, u8),
    // Where the start tag being read began in the current chunk.
    tag_start: Option<usize>,
    // Input bytes before this are handed on (or held in `carry`).
    flushed: usize,
    // The start of a tag split across chunks, not yet handed on.
    carry: Vec<u8>,
    carrying: bool,
    foreign: Foreign,
    encoding: &'static Encoding,
    // A `<meta>` may still switch the encoding.
    charset_watch: bool,
    // The page's first bytes (up to `charset::PRESCAN_BYTES`), held until
    // they can be looked through as a browser's prescan reads them
    // (`charset::prescan_unreadable`); only for a page declaring no charset.
    prescan: Option<Vec<u8>>,
    // Until the first iframe, a meta a browser still reads in the head (past
    // the first 1024 bytes, in a noscript) is looked for in the raw bytes;
    // what may begin one at a chunk's end is kept here for the next.
    meta_watch: Option<Vec<u8>>,
    max_memory: usize,
    // XHTML: start tags never switch to a text state.
    xml: bool,
    // The scanner can no longer tell how a browser reads the page (see
    // `lose_track`): the iframes after it get no token.
    lost_track: bool,
    fidelity: Fidelity,
    // Reused between captured tags.
    spans: Vec<AttrSpan>,
    scratch: Vec<u8>,
}

impl Scanner {
    /// A scanner at the start of a page.
    pub fn new(settings: ScanSettings) -> Scanner {
        Scanner {
            state: states::State::Data,
            name: Name::default(),
            is_end: false,
            kind: Kind::Other,
            capture: Capture::None,
            text_kind: Kind::Other,
            declaration: (0, 0),
            tag_start: None,
            flushed: 0,
            carry: Vec::new(),
            carrying: false,
            foreign: Foreign::new(),
            encoding: settings.encoding.get(),
            charset_watch: settings.adjust_charset,
            prescan: settings.adjust_charset.then(Vec::new),
            meta_watch: settings.adjust_charset.then(Vec::new),
            max_memory: settings.max_memory,
            xml: settings.xml,
            lost_track: false,
            fidelity: Fidelity::default(),
            spans: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A scanner that follows lol_html where the scanner knows lol_html to
    /// be wrong, so the oracle can compare every byte.
    #[cfg(test)]
    pub(crate) fn with_lol_html_quirks(settings: ScanSettings) -> Scanner {
        let mut scanner = Scanner::new(settings);
        scanner.fidelity.quirks = true;
        scanner
    }

    /// Where the scanner has parted from lol_html so far.
    #[cfg(test)]
    pub(crate) fn fidelity(&self) -> Fidelity {
        self.fidelity
    }

    /// Scans the page's next bytes, handing on what is settled.
    pub fn write(&mut self, chunk: &[u8], sink: &mut impl ScanSink) -> Result<(), ScanError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(held) = &mut self.prescan {
            let missing = charset::PRESCAN_BYTES - held.len();
            if chunk.len() < missing {
                held.extend_from_slice(chunk);
                return Ok(());
            }
            // Only the first bytes are copied to be looked at; what was held
            // and this chunk are then scanned as they came.
            held.extend_from_slice(&chunk[..missing]);
            let held_before = held.len() - missing;
            self.prescanned(held_before, sink)?;
            return self.write(chunk, sink);
        }
        self.flushed = 0;
        self.scan(chunk, sink)?;
        self.chunk_end(chunk, sink)?;
        // No iframe in it (the first one ends the watch): all of it counts.
        if self.meta_watch.is_some() {
            self.watch_metas(chunk);
        }
        Ok(())
    }

    // Chromium reads a meta charset past the first 1024 bytes while it has
    // seen only tags of the head, and in a noscript there. No iframe comes
    // before such a meta (an iframe ends the head), so the raw bytes before
    // the first one are looked through for a meta naming an encoding the
    // scanner cannot read.
    fn watch_metas(&mut self, chunk: &[u8]) {
        let Some(mut tail) = self.meta_watch.take() else {
            return;
        };
        let unreadable = charset::prescan_unreadable(chunk)
            || (!tail.is_empty() && {
                // A meta begun in the last chunk, with what follows of it.
                tail.extend_from_slice(&chunk[..chunk.len().min(charset::PRESCAN_BYTES)]);
                charset::prescan_unreadable(&tail)
            });
        if unreadable {
            self.lose_track();
            return;
        }
        // Keep from the last `<` on, if its tag is not closed yet.
        tail.clear();
        if let Some(lt) = chunk.iter().rposition(|&b| b == b'<') {
            if !chunk[lt..].contains(&b'>') && chunk.len() - lt <= charset::PRESCAN_BYTES {
                tail.extend_from_slice(&chunk[lt..]);
            }
        }
        self.meta_watch = Some(tail);
    }

    /// The page has ended: hands on whatever was held. A tag the page
    /// leaves unterminated goes out as it came, as lol_html does.
    pub fn end(&mut self, sink: &mut impl ScanSink) -> Result<(), ScanError> {
        if let Some(held) = &self.prescan {
            self.prescanned(held.len(), sink)?;
        }
        self.release(sink);
        Ok(())
    }

    // The first bytes are in (or all of a shorter page): a browser decides
    // the encoding of the whole page from a meta among them, wherever it
    // stands, so one that names an encoding the scanner cannot read is
    // looked for before any iframe among them is trusted. Then the first
    // `scan` bytes held are scanned (the rest are the next chunk's).
    fn prescanned(&mut self, scan: usize, sink: &mut impl ScanSink) -> Result<(), ScanError> {
        let Some(held) = self.prescan.take() else {
            return Ok(());
        };
        if charset::prescan_unreadable(&held) {
            self.lose_track();
        }
        self.write(&held[..scan], sink)
    }

    // Hands on the held start of a tag that turned out not to be captured.
    fn release(&mut self, sink: &mut impl ScanSink) {
        if self.carrying {
            emit(sink, &self.carry);
            self.carry.clear();
            self.carrying = false;
        }
        self.tag_start = None;
    }

    // The name of the tag being read is complete.
    fn name_done(&mut self, sink: &mut impl ScanSink) {
        if self.is_end {
            // Outside SVG, MathML and `select` no end tag changes anything.
            self.kind = if self.foreign.is_plain_html() && !self.foreign.in_select() {
                Kind::Other
            } else {
                Kind::of(self.name.get())
            };
            return;
        }
        self.kind = Kind::of(self.name.get());
        self.set_capture();
        if self.capture == Capture::None {
            self.release(sink);
        }
    }

    // Whether the start tag of `self.kind` is held whole.
    #[inline]
    fn set_capture(&mut self) {
        self.capture = match self.kind {
            Kind::Iframe => Capture::Iframe,
            Kind::Meta if self.charset_watch => Capture::Meta,
            Kind::Font if self.foreign.is_foreign() => Capture::Attrs,
            Kind::AnnotationXml if self.foreign.in_math() => Capture::Attrs,
            _ => Capture::None,
        };
    }

    // A tag ends at `input[at]`.
    fn tag_end(
        &mut self,
        input: &[u8],
        at: usize,
        self_closing: bool,
        missing_value: bool,
        sink: &mut impl ScanSink,
    ) -> Result<(), ScanError> {
        self.state = states::State::Data;
        if self.is_end {
            if self.kind != Kind::Other || !self.foreign.is_plain_html() {
                self.foreign
                    .end_tag(self.kind, &self.name, &mut self.fidelity);
            }
            return Ok(());
        }
        if self.capture != Capture::None {
            return self.captured(input, at, missing_value, sink);
        }
        self.after_start_tag(self_closing, None, missing_value);
        Ok(())
    }

    // A captured start tag ends at `input[at]`: read, rewritten, handed on.
    #[inline(never)]
    fn captured(
        &mut self,
        input: &[u8],
        at: usize,
        missing_value: bool,
        sink: &mut impl ScanSink,
    ) -> Result<(), ScanError> {
        let mut carry = std::mem::take(&mut self.carry);
        let tag: &[u8] = if self.carrying {
            carry.extend_from_slice(&input[..=at]);
            &carry
        } else {
            let start = self.tag_start.unwrap_or(self.flushed);
            emit(sink, &input[self.flushed..start]);
            &input[start..=at]
        };
        if tag.len() > self.max_memory {
            return Err(ScanError::TagTooLarge {
                size: tag.len(),
                limit: self.max_memory,
            });
        }
        let parsed = attributes::Parsed::read(tag, std::mem::take(&mut self.spans));
        match self.capture {
            Capture::Iframe => {
                if self.meta_watch.is_some() {
                    // The bytes of this chunk before the first iframe; then the
                    // head has ended, and no later meta changes the encoding.
                    let before = match (self.carrying, self.tag_start) {
                        (false, Some(start)) => &input[..start],
                        _ => &[][..],
                    };
                    self.watch_metas(before);
                    self.meta_watch = None;
                }
                // An iframe in SVG or MathML is inert, and a browser's preload
                // scanner, which knows no foreign content, may read a CDATA
                // section around it as markup: it gets no token. Nor does one
                // a browser may read in foreign content where the scanner is
                // unsure (in an `mglyph`).
                let diverges = !self.xml && self.foreign.start_tag_diverges(self.kind);
                let inert =
                    (self.foreign.is_foreign() || diverges) && self.fidelity.pick(true, false);
                let mut iframe = IframeTag::new(
                    &parsed,
                    self.encoding,
                    self.fidelity.quirks,
                    self.lost_track || inert,
                );
                sink.iframe(&mut iframe);
                let (edits, deviations) = iframe.finish();
                self.fidelity.deviations += deviations;
                if edits.is_empty() {
                    emit(sink, tag);
                } else {
                    self.scratch.clear();
                    parsed.write_edited(&edits, self.encoding, &mut self.scratch);
                    // In one piece: a deferred token's marker must reach the sink whole.
                    emit(sink, &self.scratch);
                }
            }
            Capture::Meta => {
                emit(sink, tag);
                let (found, deviations) =
                    charset::meta_encoding(&parsed, self.encoding, self.fidelity.quirks);
                self.fidelity.deviations += deviations;
                match found {
                    charset::MetaCharset::Switch(encoding) => {
                        self.encoding = encoding;
                        self.charset_watch = false;
                    }
                    charset::MetaCharset::Unreadable => {
                        self.lose_track();
                        self.charset_watch = false;
                    }
                    charset::MetaCharset::None => {}
                }
            }
            Capture::Attrs | Capture::None => emit(sink, tag),
        }
        self.after_start_tag(parsed.self_closing, Some(&parsed), missing_value);
        self.spans = parsed.into_spans();
        carry.clear();
        self.carry = carry;
        self.carrying = false;
        self.tag_start = None;
        self.capture = Capture::None;
        self.flushed = at + 1;
        Ok(())
    }

    // A start tag ended: the namespace and the text state after it.
    #[inline(never)]
    fn after_start_tag(
        &mut self,
        self_closing: bool,
        attrs: Option<&attributes::Parsed<'_>>,
        missing_value: bool,
    ) {
        let kind = self.kind;
        if !self.xml && self.foreign.start_tag_diverges(kind) {
            self.lose_track();
        }
        let name = self.name;
        let Some(text) = self
            .foreign
            .start_tag(kind, &name, self_closing, attrs, &mut self.fidelity)
            .filter(|_| !self.xml)
        else {
            return;
        };
        // lol_html goes on in the data state here (and then in the text
        // state from the next tag it reads whole): no browser does.
        if missing_value && kind != Kind::Iframe {
            self.fidelity.unemulated += 1;
        }
        self.text_kind = kind;
        self.state = states::State::text(text);
    }

    // From here on a browser may read the page otherwise than the scanner
    // does, so no iframe after this point is trusted with a token.
    fn lose_track(&mut self) {
        if !self.lost_track && self.fidelity.pick(true, false) {
            self.lost_track = true;
        }
    }

    // The chunk is scanned: hands on what is settled, keeps what is not.
    fn chunk_end(&mut self, input: &[u8], sink: &mut impl ScanSink) -> Result<(), ScanError> {
        let keep = self.capture != Capture::None
            || match self.state {
                states::State::TagOpen => true,
                states::State::TagName => !self.is_end && self.name.may_become(&CAPTURED_NAMES),
                _ => false,
            };
        if !keep {
            self.release(sink);
            emit(sink, &input[self.flushed..]);
            return Ok(());
        }
        if self.carrying {
            self.carry.extend_from_slice(input);
        } else {
            let start = self.tag_start.unwrap_or(self.flushed);
            emit(sink, &input[self.flushed..start]);
            self.carry.extend_from_slice(&input[start..]);
            self.carrying = true;
        }
        if self.carry.len() > self.max_memory {
            return Err(ScanError::TagTooLarge {
                size: self.carry.len(),
                limit: self.max_memory,
            });
        }
        Ok(())
    }
}

fn emit(sink: &mut impl ScanSink, bytes: &[u8]) {
    if !bytes.is_empty() {
        sink.bytes(bytes);
    }
}

impl InTag {
    /// The attribute state a tag name's delimiter leads to.
    fn after_name(delimiter: u8) -> InTag {
        if delimiter == b'/' {
            InTag::SelfClosing
        } else {
            InTag::BeforeName
        }
    }
}
