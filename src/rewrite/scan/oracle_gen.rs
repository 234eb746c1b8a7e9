//! Generated pages for the oracle: markup soup from the pieces that move
//! the tokenizer, and pages built from well-formed and malformed parts of
//! every kind the scanner must tell apart.

use proptest::prelude::*;
use proptest::sample::select;

/// Significant pieces, glued in any order: every state meets every byte
/// that moves it.
const SOUP: &[&str] = &[
    "<",
    ">",
    "</",
    "/",
    "/>",
    "!",
    "?",
    "-",
    "--",
    "<!--",
    "-->",
    "--!>",
    "<!",
    "<?",
    "=",
    "=\"",
    "\"",
    "'",
    " ",
    "\n",
    "\t",
    "\r",
    "a",
    "x",
    "3",
    "é",
    "&amp;",
    "&#62;",
    "&quot;",
    "]",
    "]]>",
    "<![CDATA[",
    "[CDATA[",
    "DOCTYPE",
    "<!DOCTYPE html>",
    "iframe",
    "<iframe",
    "<IFRAME ",
    "</iframe>",
    " src=",
    " SRC=",
    " data-src=",
    "src",
    "http://e.test/embed/v",
    "embed",
    "<script>",
    "</script>",
    "script",
    "<!--<script>",
    "</script ",
    "<style>",
    "</style>",
    "<title>",
    "</title>",
    "<textarea>",
    "</textarea>",
    "<xmp>",
    "</xmp>",
    "<noscript>",
    "</noscript>",
    "<noembed>",
    "<noframes>",
    "<plaintext>",
    "<svg>",
    "</svg>",
    "<svg/>",
    "<math>",
    "</math>",
    "<foreignObject>",
    "</foreignObject>",
    "<desc>",
    "</desc>",
    "<mi>",
    "</mi>",
    "<annotation-xml encoding=text/html>",
    "<annotation-xml>",
    "</annotation-xml>",
    "<font color=red>",
    "<font>",
    "<p>",
    "</p>",
    "<br>",
    "</br>",
    "<div>",
    "<meta charset=",
    "windows-1252",
    "shift_jis",
    "<meta http-equiv=content-type content=\"text/html; charset=",
    "\0",
];

/// Markup soup of up to `max` pieces.
pub(crate) fn soup(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(SOUP), 0..max).prop_map(|pieces| pieces.concat())
}

const TEXT: &[&str] = &[
    "Some text. ",
    "a < b",
    "x>y",
    "&amp;",
    "&lt;iframe src=x&gt;",
    "caf\u{e9} ",
    "\u{20ac}",
    "\u{1F600}",
    "1 > 0\n",
    "& ",
    "<",
    "< p",
    "<3",
    "</>",
    "</ x>",
];

const URLS: &[&str] = &[
    "http://e.test/embed/v1",
    "http://e.test/embed/v2?a=1&amp;b=2",
    "  http://e.test/embed/v3#f  ",
    "http://e.test/embed/a>b",
    "http://e.test/embed/caf\u{e9}",
    "http://e.test/embed/&#x76;4",
    "http://e.test/other",
    "",
    "embed\"quoted",
    "embed'quoted",
    "embed\u{FFFD}",
];

fn text() -> impl Strategy<Value = String> {
    select(TEXT).prop_map(str::to_string)
}

/// One attribute of a generated tag, with what comes before it.
fn attribute() -> impl Strategy<Value = String> {
    (
        select(&[" ", "  ", "\n", "\t", "\r\n", ""][..]),
        select(
            &[
                "src", "SRC", "Src", "data-src", "DATA-SRC", "title", "allow", "x", "=y",
            ][..],
        ),
        0u8..6,
        select(URLS),
    )
        .prop_map(|(gap, name, quoting, url)| {
            // No gap only fits after a quoted value; a missing one elsewhere
            // would just glue two names.
            let gap = if gap.is_empty() { " " } else { gap };
            match quoting {
                0 => format!("{gap}{name}=\"{}\"", url.replace('"', "&quot;")),
                1 => format!("{gap}{name}='{}'", url.replace('\'', "&#39;")),
                2 if !url.is_empty() && !url.contains([' ', '>', '"', '\'']) => {
                    format!("{gap}{name}={url}")
                }
                3 => format!("{gap}{name}"),
                4 => format!("{gap}{name} = \"{}\"", url.replace('"', "")),
                _ => format!("{gap}{name}=\"{}\"\"", url.replace('"', "")),
            }
        })
}

/// An iframe start tag: any case, attributes in all quotings, duplicated
/// ones, `>` in quoted values, self-closing or not.
fn iframe_tag() -> impl Strategy<Value = String> {
    (
        select(&["iframe", "IFRAME", "iFrame"][..]),
        prop::collection::vec(attribute(), 0..5),
        select(&[">", "/>", " />", " >", "\n>"][..]),
    )
        .prop_map(|(name, attrs, end)| format!("<{name}{}{end}", attrs.concat()))
}

fn iframe() -> impl Strategy<Value = String> {
    (
        iframe_tag(),
        select(&["", "fallback", "<b>x</b>"][..]),
        any::<bool>(),
    )
        .prop_map(|(tag, inner, closed)| {
            if closed {
                format!("{tag}{inner}</iframe>")
            } else {
                tag
            }
        })
}

fn comment() -> impl Strategy<Value = String> {
    (iframe_tag(), 0u8..9).prop_map(|(tag, shape)| match shape {
        0 => format!("<!-- {tag} -->"),
        1 => "<!-->".to_string(),
        2 => "<!--->".to_string(),
        3 => format!("<!--{tag}--!>"),
        4 => format!("<!-- <!-- {tag} --> -->"),
        5 => format!("<!--{tag}--->"),
        6 => format!("<?php {tag} ?>"),
        7 => format!("</3 {tag}>"),
        _ => format!("<!x {tag}>"),
    })
}

fn doctype() -> impl Strategy<Value = String> {
    select(
        &[
            "<!DOCTYPE html>",
            "<!doctype html>",
            "<!DocType html PUBLIC \"-//W3C//DTD a>b\" \"x\">",
            "<!DOCTYPE>",
            "<!DOCTYPEhtml SYSTEM 'a'>",
        ][..],
    )
    .prop_map(str::to_string)
}

/// Script data with its escapes: `<!--`, `<script>` inside, `-->`.
fn script() -> impl Strategy<Value = String> {
    (
        select(&["script", "SCRIPT"][..]),
        prop::collection::vec(
            prop_oneof![
                select(
                    &[
                        "var a = 1 < 2;",
                        "<!--",
                        "-->",
                        "--",
                        "-",
                        "<script>",
                        "<script ",
                        "</script",
                        "</scriptx>",
                        "</SCRIPT ",
                        "<scrip",
                        "<",
                        "</",
                        "<!-x",
                        "if (a<!--b) c();",
                    ][..]
                )
                .prop_map(str::to_string),
                iframe_tag(),
            ],
            0..8,
        ),
        select(
            &[
                "</script>",
                "</script >",
                "</script x=\">\">",
                "</SCRIPT/>",
                "",
            ][..],
        ),
    )
        .prop_map(|(name, body, end)| format!("<{name}>{}{end}", body.concat()))
}

/// Raw text and RCDATA elements with iframes (which are text there) inside.
fn text_element() -> impl Strategy<Value = String> {
    (
        select(
            &[
                "style", "title", "textarea", "xmp", "noscript", "noembed", "noframes", "iframe",
                "TITLE",
            ][..],
        ),
        iframe_tag(),
        select(&["", "a <b> c", "</x>", "</titl", "<!-- -->"][..]),
        select(&[">", " >", " a=\">\">", "/>"][..]),
    )
        .prop_map(|(name, tag, text, end)| format!("<{name}>{text}{tag}</{name}{end}"))
}

/// SVG and MathML with CDATA, integration points and breakout tags.
fn foreign() -> impl Strategy<Value = String> {
    let inner = prop_oneof![
        iframe_tag(),
        iframe_tag().prop_map(|t| format!("<![CDATA[ {t} ]]>")),
        iframe_tag().prop_map(|t| format!("<![CDATA[ ]]]]>{t}")),
        iframe_tag().prop_map(|t| format!("<foreignObject>{t}<![CDATA[>]]></foreignObject>")),
        iframe_tag().prop_map(|t| format!("<desc><style>{t}</style></desc>")),
        iframe_tag().prop_map(|t| format!("<title>{t}</title>")),
        iframe_tag().prop_map(|t| format!("<mi><script>{t}</script></mi>")),
        iframe_tag().prop_map(|t| {
            format!("<annotation-xml encoding=\"text/html\"><style>{t}</style></annotation-xml>")
        }),
        select(
            &[
                "<p>",
                "</p>",
                "<br>",
                "<font color=red>",
                "<font size=1>",
                "<font>",
                "<style>x",
                "<g>",
                "</g>",
                "<svg/>",
                "<svg>",
                "</svg>",
                "<math>",
                "</math>",
                "<mi/>",
            ][..]
        )
        .prop_map(str::to_string),
    ];
    (
        select(&["svg", "math", "SVG"][..]),
        prop::collection::vec(inner, 0..5),
        any::<bool>(),
    )
        .prop_map(|(root, inner, closed)| {
            let end = if closed {
                format!("</{root}>")
            } else {
                String::new()
            };
            format!("<{root}>{}{end}", inner.concat())
        })
}

fn meta() -> impl Strategy<Value = String> {
    select(
        &[
            "<meta charset=\"windows-1252\">",
            "<META CHARSET=shift_jis>",
            "<meta charset=utf-16>",
            "<meta charset=nonsense>",
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-5\">",
            "<meta http-equiv=content-type content=\"text/html ; charset=gbk\">",
            "<meta content=\"text/html;charset=koi8-r\" http-equiv=\"CONTENT-TYPE\">",
            "<meta charset=\"utf-8\">",
        ][..],
    )
    .prop_map(str::to_string)
}

/// What a page may end with: nothing, or a construct cut off by the end.
fn ending() -> impl Strategy<Value = String> {
    select(
        &[
            "",
            "",
            "",
            "<",
            "<ifr",
            "<iframe",
            "<iframe src=\"http://e.test/embed/v",
            "<!--",
            "<!-- x -",
            "<!DOCTYPE",
            "<![CDATA[",
            "</scr",
            "<plaintext><iframe src=x>",
            "<iframe src=embed x=",
        ][..],
    )
    .prop_map(str::to_string)
}

/// A page: a sequence of parts and an ending.
pub(crate) fn page() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![
                3 => text(),
                4 => iframe(),
                2 => comment(),
                1 => doctype(),
                2 => script(),
                2 => text_element(),
                2 => foreign(),
                1 => meta(),
                1 => select(&["<p class=\"a>b\">", "<a href='x'>", "</a>", "<div/>", "<img src=embed>"][..])
                    .prop_map(str::to_string),
            ],
            0..10,
        ),
        ending(),
    )
        .prop_map(|(parts, end)| parts.concat() + &end)
}
