//! Rewriter: any split of a page gives the one-chunk bytes, with a token in each matching iframe and nothing else changed.

use super::*;

/// The moment every token is minted at, so that outputs compare.
const NOW: u64 = 1_767_225_600;

/// The integration tests' config: one EdgeAuth embed for
/// `https://api.vod2.infomaniak.com/res/embed/{share}.html`, ACL `/hls/{share}/*`.
fn rewrite_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let dir = config_dir();
        let path = dir.path().join("gateway.toml");
        let text = config_text("127.0.0.1:9".parse().unwrap(), "");
        std::fs::write(&path, text).unwrap();
        crate::common::build_runtime(&path).expect("test config builds")
    })
}

/// How a URL attribute's value relates to the embed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    /// Matches, with a capture that may go in a token: gets one.
    Minted,
    /// Matches, but the capture could smuggle token fields: left as it is.
    Refused,
    /// Not the embed: left as it is.
    Other,
}

#[derive(Debug, Clone)]
struct Url {
    text: String,
    kind: UrlKind,
    /// The captured share, for a URL that gets a token.
    share: String,
}

#[derive(Debug, Clone, Copy)]
enum Quote {
    Double,
    Single,
    Bare,
}

#[derive(Debug, Clone)]
struct Attr {
    name: &'static str,
    /// `None` for an attribute without a value.
    value: Option<String>,
    quote: Quote,
    /// Set for `src` and `data-src`.
    url: Option<Url>,
}

impl Attr {
    fn raw(&self) -> String {
        match (&self.value, self.quote) {
            (None, _) => self.name.to_string(),
            (Some(v), Quote::Double) => format!("{}=\"{v}\"", self.name),
            (Some(v), Quote::Single) => format!("{}='{v}'", self.name),
            (Some(v), Quote::Bare) => format!("{}={v}", self.name),
        }
    }
}

#[derive(Debug, Clone)]
struct Iframe {
    tag: &'static str,
    attrs: Vec<Attr>,
    /// Whitespace before each attribute.
    gaps: Vec<&'static str>,
    self_closing: bool,
    /// Raw text inside (an iframe's content is never markup).
    inner: String,
}

#[derive(Debug, Clone)]
enum Part {
    /// Bytes that must come out unchanged, holding no live iframe.
    Verbatim(String),
    Iframe(Iframe),
}

const SHARE: &str = "[a-z0-9]{1,13}";

fn embed_url() -> impl Strategy<Value = Url> {
    let origin = select(
        &[
            "https://api.vod2.infomaniak.com",
            "HTTPS://API.VOD2.Infomaniak.COM",
            "//api.vod2.infomaniak.com",
        ][..],
    );
    let param = select(
        &[
            "autoplay=0",
            "muted=1",
            "token=old",
            "token=exp=2~acl=/*~hmac=00",
            "t=5",
            "q=caf\u{e9}",
            "e=\u{1F3AC}",
            "",
        ][..],
    );
    let amp = select(&["&", "&amp;", "&#038;", "&#x26;"][..]);
    let matching = (
        origin,
        prop_oneof![
            4 => SHARE.prop_map(|s| (s, UrlKind::Minted)),
            1 => select(&["a~b", "a!b", "...", "a=b", "a%20b", "a&amp;b", "\u{e9}t\u{e9}"][..])
                .prop_map(|s| (s.to_string(), UrlKind::Refused)),
        ],
        any::<bool>(),
        prop::collection::vec((param, amp), 0..4),
        select(&["", "#t=10", "#", "#a&b"][..]),
        select(&["", " ", "\n ", "\t"][..]),
    )
        .prop_map(|(origin, (share, kind), dot_ref, params, fragment, pad)| {
            // A `.` written as a character reference reads as a `.`.
            let dot = if dot_ref { "&#46;" } else { "." };
            let mut text = format!("{pad}{origin}/res/embed/{share}{dot}html");
            for (i, (param, amp)) in params.iter().enumerate() {
                text.push_str(if i == 0 { "?" } else { amp });
                text.push_str(param);
            }
            text.push_str(fragment);
            text.push_str(pad);
            Url { text, kind, share }
        });
    let other = select(
        &[
            "https://www.youtube-nocookie.com/embed/aBcDeFgHiJk",
            "https://api.vod2.infomaniak.com/res/embed/abc.htm",
            "https://api.vod2.infomaniak.com/res/embed/a/b.html",
            "https://api.vod2.infomaniak.com/res/embed/.html",
            "https://api.vod2.infomaniak.com.evil.example/res/embed/abc.html",
            "http://api.vod2.infomaniak.com/res/embed/abc.html",
            "https://evil.example/?u=https://api.vod2.infomaniak.com/res/embed/abc.html",
            "https://api.vod2.infomaniak.com/res/embed/abc.html.evil",
            "about:blank",
            "",
        ][..],
    )
    .prop_map(|text| Url {
        text: text.to_string(),
        kind: UrlKind::Other,
        share: String::new(),
    });
    prop_oneof![3 => matching, 1 => other]
}

fn plain_attr() -> impl Strategy<Value = Attr> {
    (
        select(
            &[
                "width",
                "height",
                "title",
                "allow",
                "class",
                "allowfullscreen",
                "style",
                "loading",
            ][..],
        ),
        prop_oneof![
            select(
                &[
                    "560",
                    "x y",
                    "autoplay; fullscreen",
                    "a &quot;b&quot;",
                    "it's",
                    "say \"hi\"",
                    "\u{e9}\u{1F600}",
                    "a>b",
                    ""
                ][..]
            )
            .prop_map(|v| Some(v.to_string())),
            Just(None),
        ],
        0u8..3,
    )
        .prop_map(|(name, value, q)| {
            let v = value.as_deref().unwrap_or("x");
            // A bare value cannot be empty or hold whitespace, quotes, `=`, `<`, `>` or `` ` ``.
            let bare_ok =
                !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || "\"'=<>`".contains(c));
            let quote = if v.contains('"') {
                Quote::Single
            } else if v.contains('\'') {
                Quote::Double
            } else {
                match q {
                    0 => Quote::Double,
                    1 => Quote::Single,
                    _ if bare_ok => Quote::Bare,
                    _ => Quote::Double,
                }
            };
            Attr {
                name,
                value,
                quote,
                url: None,
            }
        })
}

fn url_attr(name: &'static str) -> impl Strategy<Value = Attr> {
    (embed_url(), 0u8..3).prop_map(move |(url, q)| {
        let quote = match q {
            // An unquoted value cannot hold whitespace, and may not be empty.
            2 if !url.text.is_empty() && !url.text.contains(char::is_whitespace) => Quote::Bare,
            1 => Quote::Single,
            _ => Quote::Double,
        };
        Attr {
            name,
            value: Some(url.text.clone()),
            quote,
            url: Some(url),
        }
    })
}

fn iframe() -> impl Strategy<Value = Iframe> {
    (
        select(&["iframe", "IFRAME", "iFrame"][..]),
        prop::option::of(url_attr("src")),
        prop::option::of(select(&["src", "SRC", "Src"][..])),
        prop::option::of(url_attr("data-src")),
        prop::collection::vec(plain_attr(), 0..3),
        any::<Index>(),
        prop::collection::vec(select(&[" ", "  ", "\n", "\t", " \n "][..]), 6),
        any::<bool>(),
        select(
            &[
                "",
                "fallback",
                " <iframe src=\"https://api.vod2.infomaniak.com/res/embed/inner.html\"> ",
                "&lt;b&gt;",
            ][..],
        ),
    )
        .prop_map(
            |(tag, src, src_name, data_src, plain, at, gaps, self_closing, inner)| {
                let mut attrs = plain;
                let mut urls = Vec::new();
                if let Some(mut src) = src {
                    src.name = src_name.unwrap_or("src");
                    urls.push(src);
                }
                urls.extend(data_src);
                for url in urls {
                    let at = at.index(attrs.len() + 1);
                    attrs.insert(at, url);
                }
                // No attribute twice (the first would win).
                let mut seen: Vec<String> = Vec::new();
                attrs.retain(|a| {
                    let lower = a.name.to_ascii_lowercase();
                    let new = !seen.contains(&lower);
                    seen.push(lower);
                    new
                });
                Iframe {
                    tag,
                    attrs,
                    gaps,
                    self_closing,
                    inner: inner.to_string(),
                }
            },
        )
}

/// Text with references, non-ASCII and lone `<` and `&`, but no markup.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 .,!?\n]{1,12}",
            select(
                &[
                    "&amp;",
                    "&lt;iframe src=\"https://api.vod2.infomaniak.com/res/embed/t.html\"&gt;",
                    "&#38;",
                    "&copy",
                    "a < b",
                    "a & b",
                    "\u{e9}t\u{e9}",
                    "\u{20AC}",
                    "\u{1F600}",
                    "\u{FFFD}",
                ][..]
            )
            .prop_map(str::to_string),
        ],
        1..4,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A live iframe written as text: inside a comment or raw text it stays text.
const DEAD_IFRAME: &str =
    "<iframe src=\"https://api.vod2.infomaniak.com/res/embed/dead1.html\"></iframe>";

fn verbatim() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => (text(), any::<bool>()).prop_map(|(t, dead)| {
            format!("<!-- {t} {} -->", if dead { DEAD_IFRAME } else { "" })
        }),
        1 => (
            select(&["script", "style", "textarea", "title", "SCRIPT", "noembed", "xmp"][..]),
            text(),
        )
            .prop_map(|(tag, t)| {
                format!("<{tag}>var s = '{DEAD_IFRAME}'; {t}</{tag}>")
            }),
        1 => (
            select(&["img", "a", "div", "iframes", "x-iframe", "video", "p"][..]),
            select(&["src", "href", "data-src"][..]),
            select(&["\"", "'"][..]),
            SHARE,
        )
            .prop_map(|(tag, attr, q, share)| {
                format!(
                    "<{tag} {attr}={q}https://api.vod2.infomaniak.com/res/embed/{share}.html{q}>"
                )
            }),
        1 => select(&[
            "<!DOCTYPE html>", "<p>", "</p>", "<br/>", "<div class=\"a\" id='b' data-x=c>",
            "</div>", "</iframe>", "<?php echo 1 ?>", "<meta charset=\"utf-8\">",
        ][..])
        .prop_map(str::to_string),
    ]
}

fn page() -> impl Strategy<Value = Vec<Part>> {
    prop::collection::vec(
        prop_oneof![3 => verbatim().prop_map(Part::Verbatim), 2 => iframe().prop_map(Part::Iframe)],
        0..16,
    )
}

/// The page's bytes, and what the rewriter must give for them: unmodified
/// bytes as they are, an iframe with a token written as lol_html writes a
/// modified tag (each attribute after one space, a new value in double
/// quotes), with the value `Embed::rewrite` gives.
struct Expected {
    input: String,
    output: String,
    minted: u32,
    refused: u32,
    /// The share of every token, in page order.
    shares: Vec<String>,
}

fn expect(parts: &[Part]) -> Result<Expected, TestCaseError> {
    let runtime = rewrite_runtime();
    let principal = Principal::of(&SessionKey::new("prop-visitor"));
    let visitor = Visitor {
        principal: &principal,
        addr: None,
        now: NOW,
    };
    let mut expected = Expected {
        input: String::new(),
        output: String::new(),
        minted: 0,
        refused: 0,
        shares: Vec::new(),
    };
    for part in parts {
        let iframe = match part {
            Part::Verbatim(text) => {
                expected.input.push_str(text);
                expected.output.push_str(text);
                continue;
            }
            Part::Iframe(iframe) => iframe,
        };
        let mut raw = format!("<{}", iframe.tag);
        let mut rewritten = format!("<{}", iframe.tag);
        let mut modified = false;
        for (attr, gap) in iframe.attrs.iter().zip(iframe.gaps.iter().cycle()) {
            raw.push_str(gap);
            raw.push_str(&attr.raw());
            rewritten.push(' ');
            let Some(url) = &attr.url else {
                rewritten.push_str(&attr.raw());
                continue;
            };
            let result = runtime.embeds.rewrite(&url.text, &visitor);
            match (url.kind, result) {
                (UrlKind::Minted, Some((_, EmbedRewrite::Minted(new)))) => {
                    prop_assert_eq!(
                        new.matches("token=").count(),
                        1,
                        "one token parameter in {:?} from {:?}",
                        new,
                        url.text
                    );
                    rewritten.push_str(&format!(
                        "{}=\"{}\"",
                        attr.name,
                        new.replace('"', "&quot;")
                    ));
                    modified = true;
                    expected.minted += 1;
                    expected.shares.push(url.share.clone());
                }
                (UrlKind::Refused, Some((_, EmbedRewrite::Unsafe(_)))) => {
                    rewritten.push_str(&attr.raw());
                    expected.refused += 1;
                }
                (UrlKind::Other, None) => rewritten.push_str(&attr.raw()),
                (kind, result) => {
                    return Err(TestCaseError::fail(format!(
                        "{:?} generated as {kind:?}, rewritten as {result:?}",
                        url.text
                    )))
                }
            }
        }
        let end = if iframe.self_closing { " />" } else { ">" };
        raw.push_str(end);
        rewritten.push_str(end);
        let close = format!("{}</{}>", iframe.inner, iframe.tag);
        raw.push_str(&close);
        rewritten.push_str(&close);
        expected.input.push_str(&raw);
        expected
            .output
            .push_str(if modified { &rewritten } else { &raw });
    }
    Ok(expected)
}

/// An upstream body with every chunk ready at once.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// What one rewrite gave: the bytes sent, tokens minted and embeds refused,
/// or the error that cut the page off (with the bytes sent before it).
type Rewritten = Result<(Vec<u8>, u32, u32), (Vec<u8>, String)>;

/// Rewrites `chunks` as one response whose Content-Type charset is
/// `charset`, with tokens minted at `NOW`.
pub(super) fn rewrite_in(chunks: Vec<Bytes>, charset: Option<&str>) -> Rewritten {
    let runtime = rewrite_runtime();
    let stats = Arc::new(RewriteStats::default());
    let tokens = PageTokens {
        embeds: runtime.embeds.clone(),
        now: NOW,
        principal: Principal::of(&SessionKey::new("prop-visitor")),
        addr: None,
        metrics: runtime.metrics.clone(),
    };
    let mut body = RewriteBody::new(
        Chunks(chunks.into()),
        tokens,
        runtime.settings().rewrite,
        encoding_for(charset).expect("an encoding lol_html reads"),
        stats.clone(),
    );
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                }
            }
            Poll::Ready(Some(Err(err))) => return Err((out, err.to_string())),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a local token never waits"),
        }
    }
    Ok((out, stats.minted(), stats.refused()))
}

/// [`rewrite_in`] for a page declared UTF-8, which must not fail.
fn rewrite(chunks: Vec<Bytes>) -> (Vec<u8>, u32, u32) {
    rewrite_in(chunks, Some("utf-8")).unwrap_or_else(|(_, err)| panic!("rewrite failed: {err}"))
}

/// `page` cut at `cuts` (byte offsets, any order, repeats make empty chunks).
pub(super) fn split(page: &[u8], cuts: &[Index], every_byte: bool) -> Vec<Bytes> {
    let page = Bytes::copy_from_slice(page);
    if every_byte {
        return (0..page.len()).map(|i| page.slice(i..i + 1)).collect();
    }
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(page.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in at {
        chunks.push(page.slice(from..cut));
        from = cut;
    }
    chunks.push(page.slice(from..));
    chunks
}

/// The tokens of `output`, each checked against the key at `NOW` and read
/// for its ACL.
fn tokens_in(output: &str) -> Result<Vec<String>, TestCaseError> {
    let key = KeyMaterial::from_hex(KEY_HEX).unwrap();
    let verifier = EdgeAuth::new(Algorithm::Sha256, &key);
    let mut acls = Vec::new();
    for (at, _) in output.match_indices("token=st=") {
        let token: String = output[at + "token=".len()..]
            .chars()
            .take_while(|c| !matches!(c, '&' | '"' | '\'' | '#' | ' ' | '>'))
            .collect();
        if let Err(err) = verifier.verify_with(&token, NOW + 1, 0, "") {
            return Err(TestCaseError::fail(format!(
                "token {token:?} does not verify: {err:?}"
            )));
        }
        let acl = token
            .split('~')
            .find_map(|field| field.strip_prefix("acl="))
            .unwrap_or_default();
        acls.push(acl.to_string());
    }
    Ok(acls)
}

/// For any page and any split into chunks, the rewriter sends the bytes of
/// the one-chunk run; those are the page with exactly one token (which
/// verifies, for the iframe's video) in every matching iframe URL outside
/// comments and raw text, and every other byte as it was.
#[test]
fn rewrite_is_the_same_for_any_split_and_touches_only_matching_iframes() {
    check(
        "rewrite_is_the_same_for_any_split_and_touches_only_matching_iframes",
        DEFAULT_REWRITE_CASES,
        (
            page(),
            prop::collection::vec(any::<Index>(), 0..12),
            prop::collection::vec(any::<Index>(), 1..4),
            prop::bool::weighted(0.1),
        ),
        |(parts, cuts, more_cuts, every_byte)| {
            let expected = expect(&parts)?;
            let page = expected.input.as_bytes();
            let (whole, minted, refused) = rewrite(vec![Bytes::copy_from_slice(page)]);
            let whole_text = String::from_utf8(whole.clone()).expect("UTF-8 in, UTF-8 out");
            prop_assert_eq!(&whole_text, &expected.output, "page {:?}", expected.input);
            prop_assert_eq!(minted, expected.minted);
            prop_assert_eq!(refused, expected.refused);
            if std::env::var_os("PROPERTIES_SHOW").is_some() {
                eprintln!("--- input\n{}\n--- output\n{whole_text}", expected.input);
            }
            let acls = tokens_in(&whole_text)?;
            let want: Vec<String> = expected
                .shares
                .iter()
                .map(|s| format!("/hls/{s}/*"))
                .collect();
            prop_assert_eq!(acls, want, "one token per matching URL, in page order");
            for (cuts, every_byte) in [(&cuts, every_byte), (&more_cuts, false)] {
                let chunks = split(page, cuts, every_byte);
                let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
                let (out, minted_split, refused_split) = rewrite(chunks);
                prop_assert!(
                    out == whole,
                    "chunks {:?} of {:?}:\n split: {:?}\n whole: {:?}",
                    sizes,
                    expected.input,
                    String::from_utf8_lossy(&out),
                    whole_text
                );
                prop_assert_eq!(minted_split, minted);
                prop_assert_eq!(refused_split, refused);
            }
            Ok(())
        },
    );
}
