//! Rewriter on byte soup: in any charset and any split into chunks, it sends
//! the bytes of the one-chunk run, or fails alike, with the same counts.

use super::rewrite::{rewrite_in, split};
use super::*;

/// Pieces of markup soup: tags cut anywhere, quotes, comments, raw text,
/// character references, meta charsets, and bytes that are not UTF-8.
const SOUP: &[&[u8]] = &[
    b"<iframe src=\"https://api.vod2.infomaniak.com/res/embed/abc.html\">",
    b"<iframe data-src='//api.vod2.infomaniak.com/res/embed/v1.html?q=\xe9'>",
    b"<iframe src=https://api.vod2.infomaniak.com/res/embed/sj.html?q=\x82\xa0>",
    b"<iframe src=\"https://api.vod2.infomaniak.com/res/embed/u8.html?q=\xc3\xa9\">",
    b"<iframe title=\"\xe9\" src=\"https://api.vod2.infomaniak.com/res/embed/t.html#\x82\">",
    b"<iframe",
    b"<IFRAME ",
    b" src=",
    b" data-src=",
    b"\"",
    b"'",
    b">",
    b"/>",
    b"</iframe>",
    b"https://api.vod2.infomaniak.com/res/embed/",
    b"//api.vod2.infomaniak.com/res/embed/abc",
    b".html",
    b"&#46;html",
    b"?a=1",
    b"&amp;",
    b"&token=x",
    b"#f",
    b"<!--",
    b"-->",
    b"--!>",
    b"<!-->",
    b"<script>",
    b"</script>",
    b"<style>",
    b"</style",
    b"<textarea>",
    b"</textarea>",
    b"<plaintext>",
    b"<svg>",
    b"</svg>",
    b"<math>",
    b"<![CDATA[",
    b"]]>",
    b"<template>",
    b"<noscript>",
    b"</noscript>",
    b"<meta charset=\"windows-1252\">",
    b"<meta charset=shift_jis>",
    b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb18030\">",
    b"<meta charset=\"utf-16\">",
    b"<?xml version=\"1.0\"?>",
    b"<!DOCTYPE html>",
    b"\xe9",
    b"\x82\xa0",
    b"\xc3\xa9",
    b"\xf0\x9f\x98",
    b"\xef\xbf\xbd",
    b"\x00",
    b" ",
    b"\n",
    b"=",
    b"<",
    b"&",
];

/// Charsets a response may declare (`None`: not declared, a meta tag may say).
const CHARSETS: &[Option<&str>] = &[
    None,
    Some("utf-8"),
    Some("windows-1252"),
    Some("iso-8859-1"),
    Some("shift_jis"),
    Some("gb18030"),
    Some("euc-kr"),
    Some("koi8-r"),
];

/// For any byte soup, in any charset and any split into chunks, the
/// rewriter sends the bytes of the one-chunk run (or fails alike), with the
/// same counts.
static SOUP_TOKENS: AtomicU64 = AtomicU64::new(0);

#[test]
fn rewrite_of_any_byte_soup_is_the_same_for_any_split() {
    SOUP_TOKENS.store(0, Ordering::Relaxed);
    check(
        "rewrite_of_any_byte_soup_is_the_same_for_any_split",
        DEFAULT_REWRITE_CASES,
        (
            prop::collection::vec(
                prop_oneof![
                    4 => select(SOUP).prop_map(<[u8]>::to_vec),
                    1 => prop::collection::vec(any::<u8>(), 1..4),
                    1 => "[a-z0-9]{1,6}".prop_map(String::into_bytes),
                ],
                0..48,
            ),
            select(CHARSETS),
            prop::collection::vec(any::<Index>(), 0..12),
            prop::bool::weighted(0.15),
        ),
        |(pieces, charset, cuts, every_byte)| {
            let page = pieces.concat();
            let whole = rewrite_in(vec![Bytes::copy_from_slice(&page)], charset);
            if let Ok((_, minted, _)) = &whole {
                SOUP_TOKENS.fetch_add(u64::from(*minted), Ordering::Relaxed);
            }
            let chunks = split(&page, &cuts, every_byte);
            let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
            let parts = rewrite_in(chunks, charset);
            prop_assert!(
                parts == whole,
                "charset {:?}, chunks {:?} of {:?}:\n split: {:?}\n whole: {:?}",
                charset,
                sizes,
                String::from_utf8_lossy(&page),
                parts.as_ref().map(|(out, ..)| String::from_utf8_lossy(out)),
                whole.as_ref().map(|(out, ..)| String::from_utf8_lossy(out)),
            );
            Ok(())
        },
    );
    eprintln!(
        "properties::rewrite_of_any_byte_soup_is_the_same_for_any_split: {} tokens minted",
        SOUP_TOKENS.load(Ordering::Relaxed)
    );
}
