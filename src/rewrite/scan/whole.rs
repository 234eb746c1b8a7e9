//! The data state's fast path: a tag that ends inside the chunk is read in
//! one go, with the same attribute states as byte-by-byte scanning but
//! without going back to the state dispatch between its parts. Most of a
//! page's tags are read here; whatever is unusual (a comment, `<!`, a tag
//! cut by the chunk's end) is left to [`super::states`].

use super::attributes::{self, find, skip_until, InTag, Ran, Skip, NAME_END};
use super::names::{Kind, Name};
use super::states::State;
use super::{Capture, ScanError, ScanSink, Scanner};

impl Scanner {
    /// The data state from `pos`. Tags that end inside the chunk are read
    /// here in one go (the common case, kept tight); anything else goes on
    /// byte by byte in the states. Returns where the states go on.
    #[inline]
    pub(super) fn data(
        &mut self,
        input: &[u8],
        mut pos: usize,
        sink: &mut impl ScanSink,
    ) -> Result<usize, ScanError> {
        debug_assert!(
            !self.carrying,
            "a held tag is settled before the data state"
        );
        loop {
            let Some(found) = find(b'<', &input[pos..]) else {
                return Ok(input.len());
            };
            let lt = pos + found;
            let next = match input.get(lt + 1) {
                Some(b) if b.is_ascii_alphabetic() => self.whole_start_tag(input, lt, sink)?,
                Some(b'/') if input.get(lt + 2).is_some_and(u8::is_ascii_alphabetic) => {
                    self.whole_end_tag(input, lt)
                }
                _ => None,
            };
            let Some(next) = next else {
                self.tag_start = Some(lt);
                self.state = State::TagOpen;
                return Ok(lt + 1);
            };
            if self.state != State::Data {
                return Ok(next);
            }
            pos = next;
        }
    }

    /// A start tag at `input[lt]`, read up to its end or the chunk's.
    /// `None` when its name runs past the chunk (the states read it then).
    #[inline]
    fn whole_start_tag(
        &mut self,
        input: &[u8],
        lt: usize,
        sink: &mut impl ScanSink,
    ) -> Result<Option<usize>, ScanError> {
        let name_end = skip_until(input, lt + 1, NAME_END);
        if name_end == input.len() {
            return Ok(None);
        }
        let name = &input[lt + 1..name_end];
        let foreign = self.foreign.is_foreign();
        // In HTML content only these first letters and lengths can matter
        // (iframe, meta, math, svg, style, script, title, textarea,
        // plaintext, xmp, noembed, noscript, noframes).
        let may_matter = matches!(
            (name[0] | 0x20, name.len()),
            (b'i', 6)
                | (b'm', 4)
                | (b's', 3 | 5 | 6)
                | (b't', 5 | 8)
                | (b'p', 9)
                | (b'x', 3)
                | (b'n', 7 | 8)
        );
        self.kind = if foreign || may_matter {
            Kind::of_raw(name)
        } else {
            Kind::Other
        };
        if !self.foreign.is_plain_html() {
            // Elements in and below foreign content are kept by name, for their end tags.
            self.name = Name::of_raw(name);
        }
        self.is_end = false;
        self.set_capture();
        self.tag_start = Some(lt);
        let ran = match input[name_end] {
            b'>' => Ran::End {
                at: name_end,
                self_closing: false,
                missing_value: false,
            },
            delimiter => {
                attributes::run(InTag::after_name(delimiter), input, name_end + 1, &mut Skip)
            }
        };
        match ran {
            Ran::End {
                at,
                self_closing,
                missing_value,
            } => {
                if self.capture != Capture::None {
                    self.captured(input, at, missing_value, sink)?;
                } else {
                    self.tag_start = None;
                    // At an integration point every start tag counts.
                    if !self.foreign.is_plain_html() || self.kind.matters_in_html() {
                        self.after_start_tag(self_closing, None, missing_value);
                    }
                }
                Ok(Some(at + 1))
            }
            Ran::More(state) => {
                if self.capture == Capture::None {
                    self.tag_start = None;
                }
                self.state = State::InTag(state);
                Ok(Some(input.len()))
            }
        }
    }

    /// An end tag at `input[lt]` (`</` and a letter), read up to its end or
    /// the chunk's. `None` when its name runs past the chunk.
    #[inline]
    fn whole_end_tag(&mut self, input: &[u8], lt: usize) -> Option<usize> {
        let name_end = skip_until(input, lt + 2, NAME_END);
        let delimiter = *input.get(name_end)?;
        // Outside SVG, MathML and `select` no end tag changes anything.
        let plain = self.foreign.is_plain_html();
        self.kind = if plain && !self.foreign.in_select() {
            Kind::Other
        } else {
            Kind::of_raw(&input[lt + 2..name_end])
        };
        let at = if delimiter == b'>' {
            name_end
        } else {
            match attributes::run(InTag::after_name(delimiter), input, name_end + 1, &mut Skip) {
                Ran::End { at, .. } => at,
                Ran::More(state) => {
                    self.is_end = true;
                    self.state = State::InTag(state);
                    return Some(input.len());
                }
            }
        };
        if self.kind != Kind::Other || !plain {
            let name = Name::of_raw(&input[lt + 2..name_end]);
            self.foreign.end_tag(self.kind, &name, &mut self.fidelity);
        }
        Some(at + 1)
    }
}
