//! The tokenizer states that decide where a tag can start (HTML §13.2.5),
//! stepped over raw bytes. Only what moves the state is looked at: no
//! token is built, text is skipped with `memchr`.
//!
//! Every state is resumable at any byte, so a chunk may end anywhere; what
//! a state needs from earlier bytes (a tag name, a partly matched
//! `DOCTYPE`) is kept in the scanner, not as bytes.

use memchr::{memchr, memchr2};

use super::attributes::{self, ends_name, is_space, InTag, Ran, Skip};
use super::foreign::TextState;
use super::names::{Kind, Name};
use super::{ScanError, ScanSink, Scanner};

/// A tokenizer state (several of the spec's merged where they only differ
/// in the token they build).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Data,
    TagOpen,
    EndTagOpen,
    TagName,
    InTag(InTag),
    MarkupDeclarationOpen,
    CommentStart,
    CommentStartDash,
    Comment,
    CommentLessThan,
    CommentLessThanBang,
    CommentLessThanBangDash,
    CommentLessThanBangDashDash,
    CommentEndDash,
    CommentEnd,
    CommentEndBang,
    BogusComment,
    // All DOCTYPE states end at the first `>`, quoted identifiers too.
    Doctype,
    CdataSection,
    CdataSectionBracket,
    CdataSectionEnd,
    Text(TextMode),
    TextLessThan(TextMode),
    TextEndTagOpen(TextMode),
    TextEndTagName(TextMode),
    ScriptEscapeStart,
    ScriptEscapeStartDash,
    ScriptEscaped,
    ScriptEscapedDash,
    ScriptEscapedDashDash,
    ScriptEscapedLessThan,
    ScriptDoubleEscapeStart,
    ScriptDoubleEscaped,
    ScriptDoubleEscapedDash,
    ScriptDoubleEscapedDashDash,
    ScriptDoubleEscapedLessThan,
    ScriptDoubleEscapeEnd,
    Plaintext,
}

/// The text states an appropriate end tag leaves (script data escaped is
/// one: `</script>` ends the script there too).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TextMode {
    RcData,
    RawText,
    Script,
    ScriptEscaped,
}

impl State {
    /// The state a start tag's text state begins in.
    pub(super) fn text(text: TextState) -> State {
        match text {
            TextState::RcData => State::Text(TextMode::RcData),
            TextState::RawText => State::Text(TextMode::RawText),
            TextState::Script => State::Text(TextMode::Script),
            TextState::PlainText => State::Plaintext,
        }
    }

    // Where a text state's `<` that starts no end tag goes back to.
    fn back(text: TextMode) -> State {
        match text {
            TextMode::ScriptEscaped => State::ScriptEscaped,
            text => State::Text(text),
        }
    }
}

// What `<!` may begin.
const DASHES: u8 = 1;
const DOCTYPE: u8 = 2;
const CDATA: u8 = 3;

impl Scanner {
    /// Steps the states over `input`, settling tags as they end.
    pub(super) fn scan(&mut self, input: &[u8], sink: &mut impl ScanSink) -> Result<(), ScanError> {
        let mut pos = 0;
        while pos < input.len() {
            let byte = input[pos];
            // Each arm consumes what it reads; `continue` without moving
            // `pos` reconsumes the byte in the new state.
            match self.state {
                State::Data => {
                    pos = self.data(input, pos, sink)?;
                    continue;
                }
                State::TagOpen => {
                    if byte.is_ascii_alphabetic() {
                        self.name = Name::starting(byte);
                        self.is_end = false;
                        self.state = State::TagName;
                    } else {
                        self.release(sink);
                        self.state = match byte {
                            b'!' => {
                                self.declaration = (0, 0);
                                State::MarkupDeclarationOpen
                            }
                            b'/' => State::EndTagOpen,
                            b'?' => State::BogusComment,
                            _ => {
                                self.state = State::Data;
                                continue;
                            }
                        };
                    }
                }
                State::EndTagOpen => {
                    if byte.is_ascii_alphabetic() {
                        self.name = Name::starting(byte);
                        self.is_end = true;
                        self.state = State::TagName;
                    } else if byte == b'>' {
                        self.state = State::Data;
                    } else {
                        self.state = State::BogusComment;
                        continue;
                    }
                }
                State::TagName => {
                    let end = input[pos..].iter().position(|&b| ends_name(b));
                    let Some(end) = end else {
                        input[pos..].iter().for_each(|&b| self.name.push(b));
                        return Ok(());
                    };
                    input[pos..pos + end]
                        .iter()
                        .for_each(|&b| self.name.push(b));
                    pos += end;
                    self.name_done(sink);
                    let delimiter = input[pos];
                    if delimiter == b'>' {
                        self.tag_end(input, pos, false, false, sink)?;
                    } else {
                        self.state = State::InTag(InTag::after_name(delimiter));
                    }
                }
                State::InTag(state) => match attributes::run(state, input, pos, &mut Skip) {
                    Ran::More(state) => {
                        self.state = State::InTag(state);
                        return Ok(());
                    }
                    Ran::End {
                        at,
                        self_closing,
                        missing_value,
                    } => {
                        self.tag_end(input, at, self_closing, missing_value, sink)?;
                        pos = at;
                    }
                },
                State::MarkupDeclarationOpen => {
                    if !self.declaration_step(byte) {
                        // Anything else begins a bogus comment, this byte in it.
                        self.state = State::BogusComment;
                        continue;
                    }
                }
                State::CommentStart | State::CommentStartDash => match byte {
                    b'-' if self.state == State::CommentStart => {
                        self.state = State::CommentStartDash
                    }
                    b'-' => self.state = State::CommentEnd,
                    // `<!-->` and `<!--->` are whole comments.
                    b'>' => self.state = State::Data,
                    _ => {
                        self.state = State::Comment;
                        continue;
                    }
                },
                State::Comment => match memchr2(b'-', b'<', &input[pos..]) {
                    Some(found) => {
                        pos += found;
                        self.state = if input[pos] == b'-' {
                            State::CommentEndDash
                        } else {
                            State::CommentLessThan
                        };
                    }
                    None => return Ok(()),
                },
                // The `<!--` inside a comment states only report errors; they
                // lead back to where the plain states would.
                State::CommentLessThan => match byte {
                    b'!' => self.state = State::CommentLessThanBang,
                    b'<' => {}
                    _ => {
                        self.state = State::Comment;
                        continue;
                    }
                },
                State::CommentLessThanBang => {
                    if byte == b'-' {
                        self.state = State::CommentLessThanBangDash;
                    } else {
                        self.state = State::Comment;
                        continue;
                    }
                }
                State::CommentLessThanBangDash => {
                    if byte == b'-' {
                        self.state = State::CommentLessThanBangDashDash;
                    } else {
                        self.state = State::CommentEndDash;
                        continue;
                    }
                }
                State::CommentLessThanBangDashDash => {
                    self.state = State::CommentEnd;
                    continue;
                }
                State::CommentEndDash => {
                    if byte == b'-' {
                        self.state = State::CommentEnd;
                    } else {
                        self.state = State::Comment;
                        continue;
                    }
                }
                State::CommentEnd => match byte {
                    b'>' => self.state = State::Data,
                    b'!' => self.state = State::CommentEndBang,
                    b'-' => {}
                    _ => {
                        self.state = State::Comment;
                        continue;
                    }
                },
                State::CommentEndBang => match byte {
                    b'-' => self.state = State::CommentEndDash,
                    // `--!>` ends a comment.
                    b'>' => self.state = State::Data,
                    _ => {
                        self.state = State::Comment;
                        continue;
                    }
                },
                State::BogusComment | State::Doctype => match memchr(b'>', &input[pos..]) {
                    Some(found) => {
                        pos += found;
                        self.state = State::Data;
                    }
                    None => return Ok(()),
                },
                State::CdataSection => match memchr(b']', &input[pos..]) {
                    Some(found) => {
                        pos += found;
                        self.state = State::CdataSectionBracket;
                    }
                    None => return Ok(()),
                },
                State::CdataSectionBracket => {
                    if byte == b']' {
                        self.state = State::CdataSectionEnd;
                    } else {
                        self.state = State::CdataSection;
                        continue;
                    }
                }
                State::CdataSectionEnd => match byte {
                    b']' => {}
                    b'>' => self.state = State::Data,
                    _ => {
                        self.state = State::CdataSection;
                        continue;
                    }
                },
                State::Text(text) => match memchr(b'<', &input[pos..]) {
                    Some(found) => {
                        pos += found;
                        self.state = State::TextLessThan(text);
                    }
                    None => return Ok(()),
                },
                State::TextLessThan(text) => match byte {
                    b'/' => self.state = State::TextEndTagOpen(text),
                    b'!' if text == TextMode::Script => self.state = State::ScriptEscapeStart,
                    _ => {
                        self.state = State::back(text);
                        continue;
                    }
                },
                State::TextEndTagOpen(text) => {
                    if byte.is_ascii_alphabetic() {
                        self.name = Name::starting(byte);
                        self.state = State::TextEndTagName(text);
                    } else {
                        self.state = State::back(text);
                        continue;
                    }
                }
                State::TextEndTagName(text) => {
                    if byte.is_ascii_alphabetic() {
                        self.name.push(byte);
                    } else if (is_space(byte) || byte == b'/' || byte == b'>')
                        && Kind::of(self.name.get()) == self.text_kind
                    {
                        // An appropriate end tag: its attributes are read
                        // like any tag's, quotes and all.
                        self.is_end = true;
                        self.kind = self.text_kind;
                        if byte == b'>' {
                            self.tag_end(input, pos, false, false, sink)?;
                        } else {
                            self.state = State::InTag(InTag::after_name(byte));
                        }
                    } else {
                        self.state = State::back(text);
                        continue;
                    }
                }
                State::ScriptEscapeStart | State::ScriptEscapeStartDash => {
                    if byte != b'-' {
                        self.state = State::Text(TextMode::Script);
                        continue;
                    }
                    self.state = if self.state == State::ScriptEscapeStart {
                        State::ScriptEscapeStartDash
                    } else {
                        State::ScriptEscapedDashDash
                    };
                }
                State::ScriptEscaped | State::ScriptDoubleEscaped => {
                    let double = self.state == State::ScriptDoubleEscaped;
                    match memchr2(b'-', b'<', &input[pos..]) {
                        Some(found) => {
                            pos += found;
                            self.state = match (input[pos], double) {
                                (b'-', false) => State::ScriptEscapedDash,
                                (_, false) => State::ScriptEscapedLessThan,
                                (b'-', true) => State::ScriptDoubleEscapedDash,
                                (_, true) => State::ScriptDoubleEscapedLessThan,
                            };
                        }
                        None => return Ok(()),
                    }
                }
                State::ScriptEscapedDash | State::ScriptEscapedDashDash => match byte {
                    b'-' => self.state = State::ScriptEscapedDashDash,
                    b'<' => self.state = State::ScriptEscapedLessThan,
                    b'>' if self.state == State::ScriptEscapedDashDash => {
                        self.state = State::Text(TextMode::Script)
                    }
                    _ => self.state = State::ScriptEscaped,
                },
                State::ScriptEscapedLessThan => {
                    if byte == b'/' {
                        self.state = State::TextEndTagOpen(TextMode::ScriptEscaped);
                    } else if byte.is_ascii_alphabetic() {
                        self.name = Name::default();
                        self.state = State::ScriptDoubleEscapeStart;
                        continue;
                    } else {
                        self.state = State::ScriptEscaped;
                        continue;
                    }
                }
                State::ScriptDoubleEscapeStart | State::ScriptDoubleEscapeEnd => {
                    let start = self.state == State::ScriptDoubleEscapeStart;
                    if byte.is_ascii_alphabetic() {
                        self.name.push(byte);
                    } else if is_space(byte) || byte == b'/' || byte == b'>' {
                        let script = self.name.get() == Some(b"script");
                        self.state = if script == start {
                            State::ScriptDoubleEscaped
                        } else {
                            State::ScriptEscaped
                        };
                    } else {
                        self.state = if start {
                            State::ScriptEscaped
                        } else {
                            State::ScriptDoubleEscaped
                        };
                        continue;
                    }
                }
                State::ScriptDoubleEscapedDash | State::ScriptDoubleEscapedDashDash => match byte {
                    b'-' => self.state = State::ScriptDoubleEscapedDashDash,
                    b'<' => self.state = State::ScriptDoubleEscapedLessThan,
                    b'>' if self.state == State::ScriptDoubleEscapedDashDash => {
                        self.state = State::Text(TextMode::Script)
                    }
                    _ => self.state = State::ScriptDoubleEscaped,
                },
                State::ScriptDoubleEscapedLessThan => {
                    if byte == b'/' {
                        self.name = Name::default();
                        self.state = State::ScriptDoubleEscapeEnd;
                    } else {
                        self.state = State::ScriptDoubleEscaped;
                        continue;
                    }
                }
                State::Plaintext => return Ok(()),
            }
            pos += 1;
        }
        Ok(())
    }

    // One byte after `<!`; false when it cannot continue `--`, `DOCTYPE`
    // or `[CDATA[` (the byte is then reconsumed in a bogus comment).
    fn declaration_step(&mut self, byte: u8) -> bool {
        let (which, matched) = self.declaration;
        let which = if which == 0 {
            match byte {
                b'-' => DASHES,
                b'D' | b'd' => DOCTYPE,
                b'[' => CDATA,
                _ => return false,
            }
        } else {
            let expected = match which {
                DASHES => &b"--"[..],
                DOCTYPE => b"DOCTYPE",
                _ => b"[CDATA[",
            };
            let fits = match which {
                DOCTYPE => byte.eq_ignore_ascii_case(&expected[usize::from(matched)]),
                _ => byte == expected[usize::from(matched)],
            };
            if !fits {
                return false;
            }
            which
        };
        let matched = matched + 1;
        self.declaration = (which, matched);
        self.state = match (which, matched) {
            (DASHES, 2) => State::CommentStart,
            (DOCTYPE, 7) => State::Doctype,
            // In HTML content `<![CDATA[` is a bogus comment; in XHTML,
            // read by an XML parser, a CDATA section everywhere.
            (CDATA, 7) => {
                if self.foreign.cdata_diverges() {
                    self.lose_track();
                }
                let foreign = self.foreign.is_foreign();
                if self.fidelity.pick(foreign || self.xml, foreign) {
                    State::CdataSection
                } else {
                    State::BogusComment
                }
            }
            _ => State::MarkupDeclarationOpen,
        };
        true
    }
}
