//! The scanner on hand-written pages: what it keeps across chunks and what
//! it hands on at once.

use encoding_rs::UTF_8;

use super::{AsciiCompatible, IframeTag, ScanSettings, ScanSink, Scanner};

/// Records each `bytes` call; sets `src` of every iframe to `new`.
struct Record {
    calls: Vec<Vec<u8>>,
    new: Option<&'static str>,
}

impl ScanSink for Record {
    fn bytes(&mut self, bytes: &[u8]) {
        self.calls.push(bytes.to_vec());
    }

    fn iframe(&mut self, tag: &mut IframeTag<'_, '_>) {
        if let Some(new) = self.new {
            tag.set_attribute("src", new);
        }
    }
}

fn scanner() -> Scanner {
    Scanner::new(ScanSettings {
        encoding: AsciiCompatible::new(UTF_8).unwrap(),
        adjust_charset: false,
        max_memory: 1 << 20,
        xml: false,
    })
}

/// The calls to `bytes` for `chunks`, each call as text, with `|` where a
/// chunk was written.
fn calls(chunks: &[&str], new: Option<&'static str>) -> Vec<String> {
    let mut scanner = scanner();
    let mut sink = Record {
        calls: Vec::new(),
        new,
    };
    let mut seen = Vec::new();
    for chunk in chunks {
        scanner.write(chunk.as_bytes(), &mut sink).unwrap();
        seen.extend(sink.calls.drain(..).map(|c| String::from_utf8(c).unwrap()));
        seen.push("|".to_string());
    }
    scanner.end(&mut sink).unwrap();
    seen.extend(sink.calls.drain(..).map(|c| String::from_utf8(c).unwrap()));
    seen
}

#[test]
fn text_and_other_tags_go_out_with_the_chunk_they_came_in() {
    assert_eq!(
        calls(
            &[
                "<p class=\"a",
                "b\">text <!-- a",
                "<iframe src=x> --> <di",
                "v>"
            ],
            None
        ),
        [
            "<p class=\"a",
            "|",
            "b\">text <!-- a",
            "|",
            "<iframe src=x> --> <di",
            "|",
            "v>",
            "|"
        ]
    );
}

#[test]
fn only_what_may_begin_a_captured_tag_is_held() {
    // `<` and `<ifr` might begin an iframe; `<div` and `</i` cannot.
    assert_eq!(
        calls(
            &["a<", "ifr", "ame src=x", ">b<div", " x>", "</i", "frame>"],
            Some("y")
        ),
        [
            "a",
            "|",
            "|",
            "|",
            "<iframe src=\"y\">",
            "b<div",
            "|",
            " x>",
            "|",
            "</i",
            "|",
            "frame>",
            "|"
        ]
    );
    // Held bytes that turn out to be no iframe go out as they were.
    assert_eq!(
        calls(&["<", "ifx>", "<me", "nu>", "<"], None),
        ["|", "<", "ifx>", "|", "|", "<me", "nu>", "|", "|", "<"]
    );
}

#[test]
fn an_unchanged_iframe_comes_out_byte_for_byte() {
    let tag = "<IFRAME\n\tSRC = 'http://x/y' data-src=z a=\"b\"c d/ >";
    assert_eq!(calls(&[tag], None), [tag, "|"]);
    // Changed, it is written as lol_html writes a modified tag.
    assert_eq!(
        calls(&[tag], Some("n\"ew")),
        ["<IFRAME SRC=\"n&quot;ew\" data-src=z a=\"b\" c d>", "|"]
    );
    assert_eq!(
        calls(&["<iframe src=a />"], Some("b")),
        ["<iframe src=\"b\" />", "|"]
    );
}
