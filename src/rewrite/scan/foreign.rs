//! Whether the tokenizer is in HTML, SVG or MathML, in place of a tree
//! builder: the namespace decides whether `<![CDATA[` opens a CDATA
//! section and whether `<script>`, `<style>` and co. switch the tokenizer
//! to a text state.
//!
//! Without the stack of open elements this can only be a simulation. It is
//! lol_html's (its `TreeBuilderSimulator`, with `strict` off), corrected
//! where lol_html's answer is wrong for markup a browser reads unambiguously
//! and the wrong answer can hide an iframe (a CDATA section or a raw text
//! element that the browser does not see swallows the iframe after it):
//!
//! - `<svg/>` and `<math/>` open nothing: a self-closing foreign element is
//!   popped at once (HTML §13.2.6.4.7, "A start tag whose tag name is
//!   svg"); lol_html enters SVG until a breakout tag.
//! - A breakout start tag, `</p>` or `</br>` leaves all the foreign levels
//!   up to the nearest HTML one (§13.2.6.5: pop "until the current node is
//!   a MathML text integration point, an HTML integration point, or an
//!   element in the HTML namespace"); lol_html leaves one level.
//! - `</svg>` / `</math>` close the matching foreign level even under
//!   another one (§13.2.6.5, "Any other end tag"); lol_html only closes the
//!   innermost.
//! - `<math>` inside SVG and `<svg>` inside MathML (outside
//!   `annotation-xml`) are plain foreign elements of the outer namespace
//!   (§13.2.6.5, "Any other start tag"), so `<svg><math><mi>` is not an
//!   integration point; lol_html opens the inner namespace.
//! - An integration point is left by its own end tag only; lol_html leaves
//!   on any integration point name (`</title>` of an HTML title inside
//!   `<foreignObject>`).
//! - `annotation-xml` reads its first `encoding` attribute, references
//!   decoded (§13.2.6, "HTML integration point", and §13.2.5.33, duplicates
//!   dropped); lol_html any of them, raw.
//!
//! Each of these goes through [`Fidelity::pick`], so the oracle tests can
//! follow lol_html and see when the two part.

use super::attributes::Parsed;
use super::names::{Kind, Name};
use super::Fidelity;

/// The text state a start tag switches the tokenizer to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TextState {
    RcData,
    RawText,
    Script,
    PlainText,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    // The document (`None`) or the integration point that opened HTML again.
    Html(Option<Kind>),
    Svg,
    // `annotations`: `annotation-xml` elements open in it that hold SVG, not HTML.
    Math { annotations: u32 },
}

/// Deepest nesting tracked; deeper levels are counted, not kept, so a page
/// cannot grow the stack without bound.
const MAX_DEPTH: usize = 1024;

/// The namespace levels of the document, outermost first.
pub(super) struct Foreign {
    // Above the document's own HTML level, which is implied (most pages
    // never open another, and then nothing is allocated).
    stack: Vec<Level>,
    // Levels opened past `MAX_DEPTH`, taken as repeats of the top one.
    excess: u32,
    // The elements open in foreign content (not `svg`, `math` or the
    // integration points, which are levels) and the HTML ones open at an
    // integration point, innermost last: a name, the number of levels open
    // when it was opened, and how many of it are open there in a row
    // (`<g><g><g>` is one entry).
    elements: Vec<(Name, usize, u32)>,
    // A browser may be in HTML here as well as in foreign content, or the
    // other way round: an end tag named no element this simulation knows to
    // be open, so a browser may have closed an HTML element (and the
    // foreign content within it) that is open below (§13.2.6.5, "Any other
    // end tag"). Until every foreign level is closed.
    unsure: bool,
    // In a `select` of plain HTML, where browsers part on which tags switch
    // to a text state (parsers before the 2025 select relaxation ignore
    // them).
    in_select: bool,
}

impl Foreign {
    /// At the start of a document: HTML.
    pub(super) fn new() -> Foreign {
        Foreign {
            stack: Vec::new(),
            excess: 0,
            elements: Vec::new(),
            unsure: false,
            in_select: false,
        }
    }

    /// True in plain HTML inside a `select` (where `</select>` matters).
    pub(super) fn in_select(&self) -> bool {
        self.in_select
    }

    /// True when a browser may read the start tag of `kind` as switching to
    /// a text state while this simulation does not, or the other way round:
    /// from there on the two may read the page differently.
    pub(super) fn start_tag_diverges(&self, kind: Kind) -> bool {
        let text = text_state(kind).is_some();
        (self.unsure && (text || matches!(kind, Kind::Svg | Kind::Math)))
            || (self.in_select
                && self.stack.is_empty()
                && ((text && kind != Kind::Script) || matches!(kind, Kind::Svg | Kind::Math)))
    }

    /// True when `<![CDATA[` may open a CDATA section for a browser and a
    /// bogus comment for this simulation, or the other way round.
    pub(super) fn cdata_diverges(&self) -> bool {
        self.unsure
    }

    fn top(&self) -> Level {
        self.stack.last().copied().unwrap_or(Level::Html(None))
    }

    /// True inside SVG or MathML (not at an integration point).
    pub(super) fn is_foreign(&self) -> bool {
        !matches!(self.top(), Level::Html(_))
    }

    /// True in MathML (where `annotation-xml` needs its attributes read).
    pub(super) fn in_math(&self) -> bool {
        matches!(self.top(), Level::Math { .. })
    }

    /// True outside any SVG or MathML: end tags change nothing here.
    pub(super) fn is_plain_html(&self) -> bool {
        self.stack.is_empty()
    }

    /// A start tag of `kind` ended; returns the text state it switches to.
    /// `attrs` are given for the tags whose effect depends on them (`font`
    /// and `annotation-xml` in foreign content).
    pub(super) fn start_tag(
        &mut self,
        kind: Kind,
        name: &Name,
        self_closing: bool,
        attrs: Option<&Parsed<'_>>,
        fidelity: &mut Fidelity,
    ) -> Option<TextState> {
        let top = self.top();
        if let Level::Html(at) = top {
            if at.is_some_and(is_math_text_point)
                && !self_closing
                && matches!(name.get(), Some(b"mglyph" | b"malignmark"))
            {
                // These two stay MathML at a MathML text integration point
                // (§13.2.6, tree construction dispatcher), and so does what
                // opens inside them (`<svg>` there is a MathML element, its
                // `<desc>` no integration point). This simulation keeps
                // reading HTML: until every foreign level is closed, a tag
                // the two readings tokenize differently loses track.
                self.unsure = true;
            }
            if at.is_some() {
                // Kept until its end tag: an HTML element still open there
                // (a special one) makes a browser ignore the integration
                // point's own end tag.
                if !matches!(kind, Kind::Svg | Kind::Math) && !is_void(name) {
                    self.open_element(name);
                }
            } else if kind == Kind::Select && self.stack.is_empty() {
                self.in_select = true;
            }
            return match kind {
                Kind::Svg | Kind::Math => {
                    if fidelity.pick(!self_closing, true) {
                        self.push(opened(kind));
                    }
                    None
                }
                _ => text_state(kind),
            };
        }
        if let Kind::Svg | Kind::Math = kind {
            let nests = match (kind, top) {
                (Kind::Svg, Level::Svg) | (Kind::Math, Level::Math { .. }) => true,
                (Kind::Svg, Level::Math { annotations }) => annotations > 0,
                _ => false,
            };
            if fidelity.pick(nests && !self_closing, true) {
                self.push(opened(kind));
            }
            return None;
        }
        let font_breakout = kind == Kind::Font
            && attrs.is_some_and(|a| {
                a.names().any(|n| {
                    [&b"color"[..], b"face", b"size"]
                        .iter()
                        .any(|k| n.eq_ignore_ascii_case(k))
                })
            });
        if kind.breaks_out() || font_breakout {
            let levels = fidelity.pick(self.foreign_levels(), 1);
            self.pop(levels);
            return None;
        }
        match (top, kind) {
            (Level::Svg, Kind::ForeignObject | Kind::Desc | Kind::Title) if !self_closing => {
                self.push(Level::Html(Some(kind)));
            }
            (Level::Math { .. }, _) if is_math_text_point(kind) && !self_closing => {
                self.push(Level::Html(Some(kind)));
            }
            (Level::Math { .. }, Kind::AnnotationXml) if !self_closing => {
                let spec =
                    attrs.is_some_and(|a| a.first(b"encoding").is_some_and(is_html_encoding));
                let lol_html = attrs.is_some_and(|a| a.all(b"encoding").any(is_html_encoding_raw));
                if fidelity.pick(spec, lol_html) {
                    self.push(Level::Html(Some(kind)));
                } else if let Some(Level::Math { annotations }) = self.stack.last_mut() {
                    *annotations += 1;
                }
            }
            _ if !self_closing => self.open_element(name),
            _ => {}
        }
        None
    }

    /// An end tag of `kind`, named `name`, ended.
    pub(super) fn end_tag(&mut self, kind: Kind, name: &Name, fidelity: &mut Fidelity) {
        match self.top() {
            Level::Html(exit) => {
                let Some(inner) = self.stack.len().checked_sub(1) else {
                    if kind == Kind::Select {
                        self.in_select = false;
                    }
                    return;
                };
                let outer = inner
                    .checked_sub(1)
                    .map_or(Level::Html(None), |i| self.stack[i]);
                let lol_html = match outer {
                    Level::Svg => matches!(kind, Kind::ForeignObject | Kind::Desc | Kind::Title),
                    Level::Math { .. } => is_math_text_point(kind) || kind == Kind::AnnotationXml,
                    Level::Html(_) => false,
                };
                let closed = self.closes_html_element(name);
                if fidelity.pick(!closed && exit == Some(kind), lol_html) {
                    if self
                        .elements
                        .last()
                        .is_some_and(|(_, at, _)| *at == self.stack.len())
                    {
                        self.unsure = true;
                    }
                    self.pop(1);
                }
            }
            top => match kind {
                Kind::P | Kind::Br => {
                    let levels = fidelity.pick(self.foreign_levels(), 1);
                    self.pop(levels);
                }
                Kind::Svg | Kind::Math => {
                    let innermost = usize::from(opened(kind).same_kind(top));
                    let levels = fidelity.pick(self.levels_to(kind), innermost);
                    self.pop(levels);
                }
                Kind::AnnotationXml => {
                    if let Some(Level::Math { annotations }) = self.stack.last_mut() {
                        *annotations = annotations.saturating_sub(1);
                    }
                }
                _ => self.close_element(name),
            },
        }
    }

    fn open_element(&mut self, name: &Name) {
        let level = self.stack.len();
        let tracked = self.elements.len();
        match self.elements.last_mut() {
            Some((open, opened_in, count))
                if *opened_in == level && open.get().is_some() && open.get() == name.get() =>
            {
                *count = count.saturating_add(1);
            }
            _ if tracked < 2 * MAX_DEPTH => self.elements.push((*name, level, 1)),
            // Past what is tracked, an end tag may close what is not known.
            _ => self.unsure = true,
        }
    }

    // At an integration point, an end tag that names the innermost HTML
    // element open there closes it. Any other is left to the integration
    // point's own end tag, or kept: what is not closed here counts as open.
    fn closes_html_element(&mut self, name: &Name) -> bool {
        let level = self.stack.len();
        let Some((open, at, count)) = self.elements.last_mut() else {
            return false;
        };
        if *at != level || open.get().is_none() || open.get() != name.get() {
            return false;
        }
        *count -= 1;
        if *count == 0 {
            self.elements.pop();
        }
        true
    }

    // An end tag in foreign content closes the innermost element of its
    // name in the current level; with none open, a browser goes on to the
    // HTML element below, which this simulation cannot see.
    fn close_element(&mut self, name: &Name) {
        let level = self.stack.len();
        let wanted = name.get();
        let found = self
            .elements
            .iter()
            .rev()
            .take_while(|(_, opened_in, _)| *opened_in == level)
            .position(|(open, _, _)| wanted.is_some() && open.get() == wanted);
        let Some(from_top) = found else {
            self.unsure = true;
            return;
        };
        let at = self.elements.len() - 1 - from_top;
        self.elements.truncate(at + 1);
        let (_, _, count) = &mut self.elements[at];
        *count -= 1;
        if *count == 0 {
            self.elements.pop();
        }
    }

    // Foreign levels above the nearest HTML one.
    fn foreign_levels(&self) -> usize {
        let kept = self
            .stack
            .iter()
            .rev()
            .take_while(|l| !matches!(l, Level::Html(_)))
            .count();
        if kept == 0 {
            0
        } else {
            kept + self.excess as usize
        }
    }

    // Levels to pop to close the nearest foreign level of `kind`, or 0.
    fn levels_to(&self, kind: Kind) -> usize {
        let wanted = opened(kind);
        for (i, level) in self.stack.iter().rev().enumerate() {
            if matches!(level, Level::Html(_)) {
                return 0;
            }
            if level.same_kind(wanted) {
                // The innermost (a repeat of it, past the tracked depth), or
                // down to this one with every repeat of the innermost.
                return if i == 0 {
                    1
                } else {
                    i + 1 + self.excess as usize
                };
            }
        }
        0
    }

    fn push(&mut self, level: Level) {
        if self.stack.len() < MAX_DEPTH {
            self.stack.push(level);
        } else {
            self.excess += 1;
        }
    }

    fn pop(&mut self, mut levels: usize) {
        while levels > 0 && self.excess > 0 {
            self.excess -= 1;
            levels -= 1;
        }
        self.stack.truncate(self.stack.len().saturating_sub(levels));
        let open = self.stack.len();
        self.elements.retain(|(_, opened_in, _)| *opened_in <= open);
        if open == 0 {
            // Every reading is back in plain HTML.
            self.unsure = false;
            self.elements.clear();
        }
    }
}

impl Level {
    fn same_kind(self, other: Level) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

fn opened(kind: Kind) -> Level {
    if kind == Kind::Svg {
        Level::Svg
    } else {
        Level::Math { annotations: 0 }
    }
}

/// MathML's text integration points (§13.2.6.5).
fn is_math_text_point(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Mi | Kind::Mo | Kind::Mn | Kind::Ms | Kind::Mtext
    )
}

/// The text state an HTML start tag switches to (scripting enabled, as
/// lol_html assumes: `noscript` is raw text).
fn text_state(kind: Kind) -> Option<TextState> {
    match kind {
        Kind::Textarea | Kind::Title => Some(TextState::RcData),
        Kind::Plaintext => Some(TextState::PlainText),
        Kind::Script => Some(TextState::Script),
        Kind::Style
        | Kind::Iframe
        | Kind::Xmp
        | Kind::Noembed
        | Kind::Noframes
        | Kind::Noscript => Some(TextState::RawText),
        _ => None,
    }
}

fn is_html_encoding_raw(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"text/html") || value.eq_ignore_ascii_case(b"application/xhtml+xml")
}

fn is_html_encoding(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    let text = htmlize::unescape_attribute(text.as_ref());
    text.eq_ignore_ascii_case("text/html") || text.eq_ignore_ascii_case("application/xhtml+xml")
}

/// Elements that have no end tag in HTML.
fn is_void(name: &Name) -> bool {
    matches!(
        name.get(),
        Some(
            b"area"
                | b"base"
                | b"basefont"
                | b"bgsound"
                | b"br"
                | b"col"
                | b"embed"
                | b"frame"
                | b"hr"
                | b"img"
                | b"input"
                | b"keygen"
                | b"link"
                | b"meta"
                | b"param"
                | b"source"
                | b"track"
                | b"wbr"
        )
    )
}
