//! Inside a tag, after its name: the attribute states of the HTML
//! tokenizer (§13.2.5.32 to §13.2.5.40). One state machine serves both the
//! streaming scan, which only needs to know where a tag ends (a `>` inside
//! a quoted value does not end it), and the reading of a captured tag,
//! which records where each attribute's name and value are.
//!
//! A tag is rewritten as lol_html rewrites a modified tag: `<`, the name as
//! written, each attribute after one space (unchanged ones as written,
//! changed ones as `name="value"`), ` />` or `>`.

use std::borrow::Cow;
use std::ops::Range;

use encoding_rs::Encoding;

/// The tokenizer's attribute states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum InTag {
    BeforeName,
    Name,
    AfterName,
    BeforeValue,
    DoubleQuoted,
    SingleQuoted,
    Unquoted,
    SelfClosing,
}

/// How far the attribute states got in the bytes given.
pub(super) enum Ran {
    /// The bytes ended inside the tag, in this state.
    More(InTag),
    /// The tag ends at `at` (its `>`).
    End {
        at: usize,
        self_closing: bool,
        // Ended by `>` where a value was expected (`<script a=>`), which
        // lol_html follows with the data state whatever the tag.
        missing_value: bool,
    },
}

/// What the attribute states report to a reader that keeps attributes.
pub(super) trait Record {
    fn attr_start(&mut self, at: usize);
    fn name_end(&mut self, at: usize);
    fn value_start(&mut self, at: usize);
    fn value_end(&mut self, at: usize, raw_end: usize);
    fn attr_end(&mut self);
}

/// For the streaming scan, which keeps nothing.
pub(super) struct Skip;

impl Record for Skip {
    #[inline(always)]
    fn attr_start(&mut self, _: usize) {}
    #[inline(always)]
    fn name_end(&mut self, _: usize) {}
    #[inline(always)]
    fn value_start(&mut self, _: usize) {}
    #[inline(always)]
    fn value_end(&mut self, _: usize, _: usize) {}
    #[inline(always)]
    fn attr_end(&mut self) {}
}

// Byte classes, looked up once per byte in the loops below.
const SPACE: u8 = 1;
const SLASH: u8 = 2;
const GT: u8 = 4;
const EQ: u8 = 8;

static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    // HTML whitespace as lol_html reads it (CR too: there is no newline
    // normalisation before the tokenizer here).
    classes[b' ' as usize] = SPACE;
    classes[b'\n' as usize] = SPACE;
    classes[b'\r' as usize] = SPACE;
    classes[b'\t' as usize] = SPACE;
    classes[0x0C] = SPACE;
    classes[b'/' as usize] = SLASH;
    classes[b'>' as usize] = GT;
    classes[b'=' as usize] = EQ;
    classes
};

#[inline(always)]
fn class(byte: u8) -> u8 {
    CLASSES[usize::from(byte)]
}

/// HTML whitespace, as lol_html reads it.
#[inline(always)]
pub(super) fn is_space(byte: u8) -> bool {
    class(byte) == SPACE
}

/// Whether `byte` ends a tag name: whitespace, `/` or `>`.
#[inline(always)]
pub(super) fn ends_name(byte: u8) -> bool {
    class(byte) & NAME_END != 0
}

/// The classes that end a tag name.
pub(super) const NAME_END: u8 = SPACE | SLASH | GT;

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

// The high bit of each byte of `word` that is zero; the lowest one set is
// exact (borrows only run upwards from a real zero).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LOW) & !word & HIGH
}

/// The position of the first byte in `input[from..]` of a class in
/// `classes`, or `input.len()`.
#[inline(always)]
pub(super) fn skip_until(input: &[u8], from: usize, classes: u8) -> usize {
    input[from..]
        .iter()
        .position(|&b| class(b) & classes != 0)
        .map_or(input.len(), |i| from + i)
}

/// The first `needle` in `haystack`. Most gaps in markup are short and
/// `memchr` costs a call to set up, so the first 16 bytes are looked at
/// eight at a time in a register first.
#[inline(always)]
pub(super) fn find(needle: u8, haystack: &[u8]) -> Option<usize> {
    let pattern = LOW * u64::from(needle);
    let mut at = 0;
    while at < 16 {
        let Some(word) = haystack.get(at..at + 8) else {
            return haystack[at..]
                .iter()
                .position(|&b| b == needle)
                .map(|i| at + i);
        };
        let zero = zero_bytes(u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ pattern);
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr::memchr(needle, &haystack[at..]).map(|i| at + i)
}

/// Runs the attribute states from `state` over `input[from..]`.
#[inline]
pub(super) fn run<R: Record>(mut state: InTag, input: &[u8], from: usize, rec: &mut R) -> Ran {
    let mut pos = from;
    loop {
        let Some(&byte) = input.get(pos) else {
            return Ran::More(state);
        };
        match state {
            InTag::DoubleQuoted | InTag::SingleQuoted => {
                let quote = if state == InTag::DoubleQuoted {
                    b'"'
                } else {
                    b'\''
                };
                let Some(found) = find(quote, &input[pos..]) else {
                    return Ran::More(state);
                };
                pos += found;
                rec.value_end(pos, pos + 1);
                rec.attr_end();
                // lol_html goes on in "before attribute name", which reads
                // every byte as the spec's "after attribute value (quoted)" does.
                state = InTag::BeforeName;
            }
            InTag::BeforeName | InTag::AfterName => {
                if is_space(byte) {
                    pos += 1;
                    continue;
                }
                let after_name = state == InTag::AfterName;
                match byte {
                    b'/' => {
                        if after_name {
                            rec.attr_end();
                        }
                        state = InTag::SelfClosing;
                    }
                    b'>' => {
                        if after_name {
                            rec.attr_end();
                        }
                        return end(pos, false, false);
                    }
                    b'=' if after_name => state = InTag::BeforeValue,
                    _ => {
                        if after_name {
                            rec.attr_end();
                        }
                        rec.attr_start(pos);
                        pos = skip_until(input, pos + 1, SPACE | SLASH | GT | EQ);
                        // The common `name="value"` in one step: the states
                        // it passes through decide nothing else.
                        let quote = match (input.get(pos), input.get(pos + 1)) {
                            (Some(b'='), Some(&quote @ (b'"' | b'\''))) => quote,
                            _ => {
                                state = InTag::Name;
                                continue;
                            }
                        };
                        rec.name_end(pos);
                        rec.value_start(pos + 2);
                        let Some(found) = find(quote, &input[pos + 2..]) else {
                            return Ran::More(if quote == b'"' {
                                InTag::DoubleQuoted
                            } else {
                                InTag::SingleQuoted
                            });
                        };
                        pos += 2 + found;
                        rec.value_end(pos, pos + 1);
                        rec.attr_end();
                        state = InTag::BeforeName;
                    }
                }
            }
            InTag::Name => match class(byte) {
                EQ => {
                    rec.name_end(pos);
                    state = InTag::BeforeValue;
                }
                SLASH => {
                    rec.name_end(pos);
                    rec.attr_end();
                    state = InTag::SelfClosing;
                }
                GT => {
                    rec.name_end(pos);
                    rec.attr_end();
                    return end(pos, false, false);
                }
                SPACE => {
                    rec.name_end(pos);
                    state = InTag::AfterName;
                }
                _ => {
                    pos = skip_until(input, pos, SPACE | SLASH | GT | EQ);
                    continue;
                }
            },
            InTag::BeforeValue => match byte {
                b'"' => {
                    rec.value_start(pos + 1);
                    state = InTag::DoubleQuoted;
                }
                b'\'' => {
                    rec.value_start(pos + 1);
                    state = InTag::SingleQuoted;
                }
                b'>' => {
                    rec.attr_end();
                    return end(pos, false, true);
                }
                _ if is_space(byte) => {}
                _ => {
                    rec.value_start(pos);
                    pos = skip_until(input, pos + 1, SPACE | GT);
                    state = InTag::Unquoted;
                    continue;
                }
            },
            InTag::Unquoted => {
                if byte == b'>' {
                    rec.value_end(pos, pos);
                    rec.attr_end();
                    return end(pos, false, false);
                }
                if is_space(byte) {
                    rec.value_end(pos, pos);
                    rec.attr_end();
                    state = InTag::BeforeName;
                } else {
                    pos = skip_until(input, pos, SPACE | GT);
                    continue;
                }
            }
            InTag::SelfClosing => {
                if byte == b'>' {
                    return end(pos, true, false);
                }
                // Reconsumed in "before attribute name".
                state = InTag::BeforeName;
                continue;
            }
        }
        pos += 1;
    }
}

fn end(at: usize, self_closing: bool, missing_value: bool) -> Ran {
    Ran::End {
        at,
        self_closing,
        missing_value,
    }
}

/// Where one attribute of a captured tag is, as offsets into the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AttrSpan {
    name: Range<usize>,
    // `None` for an attribute written without `=value`.
    value: Option<Range<usize>>,
    // The attribute as written runs from `name.start` to here.
    raw_end: usize,
}

#[derive(Default)]
struct Collect {
    attrs: Vec<AttrSpan>,
    current: Option<AttrSpan>,
    value_start: usize,
}

impl Record for Collect {
    fn attr_start(&mut self, at: usize) {
        self.current = Some(AttrSpan {
            name: at..at,
            value: None,
            raw_end: at,
        });
    }

    fn name_end(&mut self, at: usize) {
        if let Some(attr) = self.current.as_mut() {
            attr.name.end = at;
            attr.raw_end = at;
        }
    }

    fn value_start(&mut self, at: usize) {
        self.value_start = at;
    }

    fn value_end(&mut self, at: usize, raw_end: usize) {
        if let Some(attr) = self.current.as_mut() {
            attr.value = Some(self.value_start..at);
            attr.raw_end = raw_end;
        }
    }

    fn attr_end(&mut self) {
        if let Some(attr) = self.current.take() {
            self.attrs.push(attr);
        }
    }
}

/// A complete start tag, read: its name and attributes.
pub(super) struct Parsed<'t> {
    tag: &'t [u8],
    name_end: usize,
    attrs: Vec<AttrSpan>,
    /// Written `<name .../>`.
    pub(super) self_closing: bool,
}

impl<'t> Parsed<'t> {
    /// Reads `tag`, a whole start tag from `<` to its closing `>` (as the
    /// streaming scan found it), reusing `attrs`' allocation.
    pub(super) fn read(tag: &'t [u8], mut attrs: Vec<AttrSpan>) -> Parsed<'t> {
        attrs.clear();
        let name_end = tag
            .iter()
            .skip(1)
            .position(|&b| ends_name(b))
            .map_or(tag.len(), |i| i + 1);
        let mut collect = Collect {
            attrs,
            ..Collect::default()
        };
        let state = match tag.get(name_end) {
            Some(b'/') => InTag::SelfClosing,
            _ => InTag::BeforeName,
        };
        let self_closing = match tag.get(name_end) {
            Some(b'>') | None => false,
            Some(_) => match run(state, tag, name_end + 1, &mut collect) {
                Ran::End {
                    at, self_closing, ..
                } => {
                    debug_assert_eq!(
                        at + 1,
                        tag.len(),
                        "the scan and the reading agree on the end"
                    );
                    self_closing
                }
                Ran::More(_) => false,
            },
        };
        Parsed {
            tag,
            name_end,
            attrs: collect.attrs,
            self_closing,
        }
    }

    /// Gives back the attribute list's allocation.
    pub(super) fn into_spans(self) -> Vec<AttrSpan> {
        self.attrs
    }

    /// The attribute names as written, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &'t [u8]> + '_ {
        self.attrs.iter().map(|a| &self.tag[a.name.clone()])
    }

    fn index_of(&self, name: &[u8]) -> Option<usize> {
        self.attrs
            .iter()
            .position(|a| self.tag[a.name.clone()].eq_ignore_ascii_case(name))
    }

    /// The raw value of the first attribute named `name` (ASCII case
    /// ignored), as the spec keeps the first of duplicates; empty when
    /// written without a value.
    pub(super) fn first(&self, name: &[u8]) -> Option<&'t [u8]> {
        self.index_of(name).map(|i| self.value_at(i))
    }

    /// The raw values of every attribute named `name`, written with a value.
    pub(super) fn all<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'t [u8]> + 's {
        self.attrs
            .iter()
            .filter(move |a| self.tag[a.name.clone()].eq_ignore_ascii_case(name))
            .filter_map(|a| a.value.clone().map(|v| &self.tag[v]))
    }

    fn value_at(&self, index: usize) -> &'t [u8] {
        self.attrs[index]
            .value
            .clone()
            .map_or(&[][..], |v| &self.tag[v])
    }

    /// Writes the tag into `out` with `edits` applied, as lol_html writes a
    /// modified tag. `edits` are (attribute index, or `None` for a new
    /// attribute with its lowercased name, and the new value).
    pub(super) fn write_edited(
        &self,
        edits: &[Edit],
        encoding: &'static Encoding,
        out: &mut Vec<u8>,
    ) {
        out.push(b'<');
        out.extend_from_slice(&self.tag[1..self.name_end]);
        for (index, attr) in self.attrs.iter().enumerate() {
            out.push(b' ');
            match edits.iter().find(|e| e.index == Some(index)) {
                Some(edit) => {
                    write_attribute(&self.tag[attr.name.clone()], &edit.value, encoding, out)
                }
                None => out.extend_from_slice(&self.tag[attr.name.start..attr.raw_end]),
            }
        }
        for edit in edits.iter().filter(|e| e.index.is_none()) {
            out.push(b' ');
            write_attribute(edit.name.as_bytes(), &edit.value, encoding, out);
        }
        if self.self_closing {
            // A space first: after an unquoted value the `/` would be read
            // as part of it.
            if !self.attrs.is_empty() || !edits.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
        }
    }
}

/// A new value for an attribute of a captured tag.
pub(super) struct Edit {
    index: Option<usize>,
    name: String,
    value: String,
}

fn write_attribute(name: &[u8], value: &str, encoding: &'static Encoding, out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b"=\"");
    let (bytes, _, _) = encoding.encode(value);
    // Only `"` can end the value; the embed's URL comes with `&`, `<`, `>`
    // already written as references (see `Embed::rewrite`), so they are
    // not escaped again.
    let mut rest: &[u8] = &bytes;
    while let Some(at) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"&quot;");
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// An iframe start tag the handler may read and change.
pub struct IframeTag<'p, 't> {
    parsed: &'p Parsed<'t>,
    encoding: &'static Encoding,
    quirks: bool,
    lost_track: bool,
    // Values read that lol_html would have read otherwise (a BOM).
    deviations: u32,
    edits: Vec<Edit>,
}

impl<'p, 't> IframeTag<'p, 't> {
    pub(super) fn new(
        parsed: &'p Parsed<'t>,
        encoding: &'static Encoding,
        quirks: bool,
        lost_track: bool,
    ) -> Self {
        IframeTag {
            parsed,
            encoding,
            quirks,
            lost_track,
            deviations: 0,
            edits: Vec::new(),
        }
    }

    /// True when the markup before this tag may be read by a browser
    /// otherwise than by the scanner (foreign content it cannot follow, a
    /// text element in a `select`): the tag may be no iframe at all, or
    /// sit in another tag's attribute, and must get no token.
    pub fn is_untrusted(&self) -> bool {
        self.lost_track
    }

    /// The value of the first attribute named `name` (ASCII case ignored),
    /// decoded from the page's encoding; character references are left as
    /// written. Empty for an attribute written without a value.
    pub fn get_attribute(&mut self, name: &str) -> Option<Cow<'t, str>> {
        let index = self.parsed.index_of(name.as_bytes())?;
        if let Some(edit) = self.edits.iter().find(|e| e.index == Some(index)) {
            return Some(Cow::Owned(edit.value.clone()));
        }
        let (value, deviated) = decode(self.parsed.value_at(index), self.encoding, self.quirks);
        self.deviations += u32::from(deviated);
        Some(value)
    }

    /// Gives the first attribute named `name` the value `value` (written
    /// as it is, `"` escaped), or adds the attribute.
    pub fn set_attribute(&mut self, name: &str, value: &str) {
        let index = self.parsed.index_of(name.as_bytes());
        let name = name.to_ascii_lowercase();
        // Set again, an attribute keeps one place.
        self.edits.retain(|e| {
            if index.is_some() {
                e.index != index
            } else {
                e.name != name
            }
        });
        self.edits.push(Edit {
            index,
            name,
            value: value.to_string(),
        });
    }

    /// The changes made, and how many reads parted from lol_html.
    pub(super) fn finish(self) -> (Vec<Edit>, u32) {
        (self.edits, self.deviations)
    }
}

/// An attribute value as text: decoded with the page's encoding (bytes it
/// cannot read become U+FFFD). lol_html's `Encoding::decode` also sniffs a
/// byte order mark at the value's start, which a browser never does; the
/// flag says when that would have read the value otherwise.
pub(super) fn decode<'r>(
    raw: &'r [u8],
    encoding: &'static Encoding,
    quirks: bool,
) -> (Cow<'r, str>, bool) {
    let has_bom = Encoding::for_bom(raw).is_some();
    if has_bom && quirks {
        return (encoding.decode(raw).0, true);
    }
    (encoding.decode_without_bom_handling(raw).0, has_bom)
}
