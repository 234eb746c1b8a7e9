//! Matching embed URLs and setting their tokens.

use super::*;
use crate::allowlist::{Entitlements, SessionKey};
use crate::secret::SecretSource;
use crate::token::{Algorithm, LocalSettings, SignerSettings};
use std::time::Duration;

/// An embed with a local EdgeAuth token over `acl`, for tests here and in the rewriter's.
pub(crate) fn settings(src: &str, acl: &str) -> EmbedSettings {
    EmbedSettings {
        name: None,
        src: src.into(),
        param: "token".into(),
        entitled_by: "share".into(),
        token: TokenSettings::Local(LocalSettings {
            signer: SignerSettings {
                key: SecretSource::Inline("00112233445566778899aabbccddeeff".into()),
                algorithm: Algorithm::Sha256,
                salt: None,
                field_delimiter: '~',
                acl_delimiter: '!',
                escape_early: false,
            },
            ttl: Duration::from_secs(300),
            start_offset: Some(Duration::ZERO),
            scope: ScopeTemplate::Acl(vec![acl.into()]),
            ip: false,
            id: false,
            data: None,
        }),
    }
}

fn embed(src: &str, acl: &str) -> Embed {
    Embed::build(&settings(src, acl)).unwrap()
}

fn visitor() -> Principal {
    Principal::of(&SessionKey::new("visitor"))
}

impl Embed {
    /// `rewrite` for the test visitor, who may watch everything.
    fn rewrite_at(&self, url: &str, now: u64) -> Option<Result<String, UnsafeCapture>> {
        self.rewrite_for(url, now, &visitor()).map(|r| match r {
            EmbedRewrite::Minted(url) => Ok(url),
            EmbedRewrite::Unsafe(err) => Err(err),
            other => panic!("the test visitor may watch everything: {other:?}"),
        })
    }

    /// `rewrite` for `principal` at `now`, from no known address.
    fn rewrite_for(&self, url: &str, now: u64, principal: &Principal) -> Option<EmbedRewrite> {
        self.rewrite(
            url,
            &Visitor {
                principal,
                addr: None,
                now,
            },
        )
    }
}

fn infomaniak() -> Embed {
    embed(
        "https://api.vod2.infomaniak.com/res/embed/{share}.html",
        "/hls/{share}/*",
    )
}

fn token_for(e: &Embed, acl: &str, now: u64) -> String {
    match e.minter() {
        Minter::Local(local) => local.signer().mint(now, now + 300, acl),
        Minter::Remote(_) => unreachable!("test embeds mint locally"),
    }
}

#[test]
fn appends_the_token_with_a_question_mark_or_an_ampersand() {
    let e = infomaniak();
    let t = token_for(&e, "/hls/1jhvl2uqa5rdf/*", 1000);
    let base = "https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html";
    assert_eq!(
        e.rewrite_at(base, 1000).unwrap().unwrap(),
        format!("{base}?token={t}")
    );
    assert_eq!(
        e.rewrite_at(&format!("{base}?autoplay=1"), 1000)
            .unwrap()
            .unwrap(),
        format!("{base}?autoplay=1&amp;token={t}")
    );
    assert_eq!(
        e.rewrite_at(&format!("{base}?a=1&amp;b=2#t=5"), 1000)
            .unwrap()
            .unwrap(),
        format!("{base}?a=1&amp;b=2&amp;token={t}#t=5")
    );
}

#[test]
fn replaces_a_token_that_is_already_there() {
    let e = infomaniak();
    let t = token_for(&e, "/hls/abc/*", 7);
    let base = "https://api.vod2.infomaniak.com/res/embed/abc.html";
    assert_eq!(
        e.rewrite_at(&format!("{base}?token=old&x=1&token=older"), 7)
            .unwrap()
            .unwrap(),
        format!("{base}?x=1&amp;token={t}")
    );
    assert_eq!(
        e.rewrite_at(&format!("{base}?token=old"), 7)
            .unwrap()
            .unwrap(),
        format!("{base}?token={t}")
    );
    assert_eq!(
        e.rewrite_at(&format!("{base}?tokens=keep"), 7)
            .unwrap()
            .unwrap(),
        format!("{base}?tokens=keep&amp;token={t}")
    );
}

#[test]
fn reads_character_references_as_html_does() {
    let e = infomaniak();
    let t = token_for(&e, "/hls/abc/*", 7);
    let base = "https://api.vod2.infomaniak.com/res/embed/abc.html";
    // WordPress writes & as &#038;: its '#' is not a fragment.
    assert_eq!(
        e.rewrite_at(&format!("{base}?autoplay=1&#038;muted=1"), 7)
            .unwrap()
            .unwrap(),
        format!("{base}?autoplay=1&amp;muted=1&amp;token={t}")
    );
    assert_eq!(
        e.rewrite_at(
            &format!("{base}?x=1&#38;token=old&AMP;y=2&#x26;token=older"),
            7
        )
        .unwrap()
        .unwrap(),
        format!("{base}?x=1&amp;y=2&amp;token={t}")
    );
    // An encoded character in the path is read too.
    assert!(e
        .rewrite_at("https://api.vod2.infomaniak.com/res/embed/abc&#46;html", 7)
        .is_some());
    // An unknown reference is left as it is.
    assert_eq!(
        e.rewrite_at(&format!("{base}?a=&bogus;"), 7)
            .unwrap()
            .unwrap(),
        format!("{base}?a=&amp;bogus;&amp;token={t}")
    );
}

#[test]
fn ignores_surrounding_whitespace_and_the_case_of_scheme_and_host() {
    let e = infomaniak();
    for url in [
        " https://api.vod2.infomaniak.com/res/embed/abc.html\n",
        "HTTPS://API.vod2.Infomaniak.com/res/embed/abc.html",
        "//API.VOD2.INFOMANIAK.COM/res/embed/abc.html",
    ] {
        assert!(e.rewrite_at(url, 1).is_some(), "{url:?}");
        assert!(e.is_match(url));
    }
    // The path stays case-sensitive.
    assert!(e
        .rewrite_at("https://api.vod2.infomaniak.com/RES/embed/abc.html", 1)
        .is_none());
}

#[test]
fn a_long_run_of_ampersands_is_read_in_linear_time() {
    let e = infomaniak();
    let url = format!(
        "https://api.vod2.infomaniak.com/res/embed/abc.html?{};",
        "&".repeat(200_000)
    );
    assert!(e.rewrite_at(&url, 1).is_some());
}

#[test]
fn leaves_other_urls_alone() {
    let e = infomaniak();
    for url in [
        "https://www.youtube.com/embed/xyz",
        "https://api.vod2.infomaniak.com/res/embed/a/b.html",
        "https://api.vod2.infomaniak.com/res/embed/.html",
        "http://api.vod2.infomaniak.com/res/embed/abc.html",
        "https://api.vod2.infomaniak.com/res/embed/abc.htmlx",
        "",
    ] {
        assert!(e.rewrite_at(url, 1).is_none(), "{url}");
    }
}

#[test]
fn matches_protocol_relative_urls() {
    let e = infomaniak();
    let out = e
        .rewrite_at("//api.vod2.infomaniak.com/res/embed/abc.html", 1)
        .unwrap()
        .unwrap();
    assert!(out.starts_with(
        "https://api.vod2.infomaniak.com/res/embed/abc.html?token=st=1~exp=301~acl=/hls/abc/*~hmac="
    ));
}

#[test]
fn a_protocol_relative_url_that_gets_a_token_gets_the_patterns_https() {
    let e = infomaniak();
    let token = token_for(&e, "/hls/abc/*", 1);
    for (written, read) in [
        (
            "//api.vod2.infomaniak.com/res/embed/abc.html",
            "https://api.vod2.infomaniak.com/res/embed/abc.html",
        ),
        // The host's case as written; the rest as browsers read it.
        (
            " //API.vod2.Infomaniak.COM/res/./embed/abc.html\n",
            "https://API.vod2.Infomaniak.COM/res/embed/abc.html",
        ),
        (
            "//api.vod2.infomaniak.com/res/embed/abc.html?autoplay=1&#038;token=old#t=5",
            "https://api.vod2.infomaniak.com/res/embed/abc.html?autoplay=1",
        ),
    ] {
        let out = e.rewrite_at(written, 1).unwrap().unwrap();
        let (want_base, fragment) = if written.ends_with("#t=5") {
            (format!("{read}&amp;token={token}"), "#t=5")
        } else {
            (format!("{read}?token={token}"), "")
        };
        assert_eq!(out, format!("{want_base}{fragment}"), "{written:?}");
    }
    // Written with a scheme, it keeps the one it has.
    let out = e
        .rewrite_at("HTTPS://api.vod2.infomaniak.com/res/embed/abc.html", 1)
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTPS://api.vod2.infomaniak.com/"), "{out}");
}

#[test]
fn a_protocol_relative_url_without_a_token_keeps_its_spelling() {
    let e = infomaniak();
    let only_abc = Principal::entitled(&SessionKey::new("v"), Entitlements::only(["abc"]));
    let url = |share: &str, query: &str| {
        format!("//api.vod2.infomaniak.com/res/embed/{share}.html{query}")
    };
    // Not entitled: left as it is, or only its old token taken out.
    assert_eq!(
        e.rewrite_for(&url("xyz", ""), 7, &only_abc),
        Some(EmbedRewrite::Unentitled(None))
    );
    assert_eq!(
        e.rewrite_for(&url("xyz", "?token=old&a=1"), 7, &only_abc),
        Some(EmbedRewrite::Unentitled(Some(url("xyz", "?a=1"))))
    );
    // A capture that could smuggle token fields: no token, no change.
    assert!(matches!(
        e.rewrite_at(&url("a~b", ""), 1),
        Some(Err(UnsafeCapture(_)))
    ));
    // Not this embed at all.
    assert!(e.rewrite_at("//www.youtube.com/embed/xyz", 1).is_none());
    // An http pattern's `//host` URL stays protocol-relative: `http:` would
    // only make it cleartext on an https page.
    let plain = embed("http://cdn.example/v/{share}.html", "/hls/{share}/*");
    let out = plain
        .rewrite_at("//cdn.example/v/a.html", 1)
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("//cdn.example/v/a.html?token=st=1~"),
        "{out}"
    );
}

#[test]
fn refuses_captures_that_could_smuggle_token_fields() {
    let e = infomaniak();
    for share in ["abc~acl=*", "a%2Fb", "..", "a!b"] {
        let url = format!("https://api.vod2.infomaniak.com/res/embed/{share}.html");
        assert!(matches!(e.rewrite_at(&url, 1), Some(Err(_))), "{share}");
    }
}

#[test]
fn captures_several_segments_into_the_acl() {
    let e = embed(
        "https://cdn.example/{channel}/v/{id}.html",
        "/hls/{channel}/{id}/*",
    );
    let out = e
        .rewrite_at("https://cdn.example/c1/v/v.2.html", 5)
        .unwrap()
        .unwrap();
    assert!(out.contains("acl=/hls/c1/v.2/*"), "{out}");
}

#[test]
fn rejects_bad_patterns_and_templates() {
    let make = |src: &str, acl: &str| EmbedPattern::compile(&settings(src, acl));
    assert!(matches!(
        make("ftp://x/{a}", "/{a}"),
        Err(EmbedError::Src(_))
    ));
    assert!(matches!(
        make("https://{a}.x/", "/{a}"),
        Err(EmbedError::Src(_))
    ));
    assert!(matches!(
        make("https://x/{a}{b}", "/"),
        Err(EmbedError::Src(_))
    ));
    assert!(matches!(
        make("https://x/{a}?q=1", "/"),
        Err(EmbedError::Src(_))
    ));
    assert!(matches!(
        make("https://x/{a}/{a}", "/"),
        Err(EmbedError::Src(_))
    ));
    assert!(matches!(
        make("https://x/{a}", "/{b}/*"),
        Err(EmbedError::Template("acl", _))
    ));
    assert!(matches!(
        make("https://x/{a}", "/{a}~x"),
        Err(EmbedError::Template("acl", _))
    ));
}

#[test]
fn a_video_the_visitor_is_not_entitled_to_gets_no_token_and_loses_an_old_one() {
    let e = infomaniak();
    let only_abc = Principal::entitled(&SessionKey::new("v"), Entitlements::only(["abc"]));
    let url = |share: &str, query: &str| {
        format!("https://api.vod2.infomaniak.com/res/embed/{share}.html{query}")
    };
    assert!(matches!(
        e.rewrite_for(&url("abc", ""), 7, &only_abc),
        Some(EmbedRewrite::Minted(_))
    ));
    assert_eq!(
        e.rewrite_for(&url("xyz", "?autoplay=1"), 7, &only_abc),
        Some(EmbedRewrite::Unentitled(None)),
        "no token to remove: left as it is"
    );
    assert_eq!(
        e.rewrite_for(
            &url("xyz", "?token=st=1~exp=2~acl=/*~hmac=00&autoplay=1#t"),
            7,
            &only_abc
        ),
        Some(EmbedRewrite::Unentitled(Some(url("xyz", "?autoplay=1#t"))))
    );
    assert_eq!(
        e.rewrite_for(&url("xyz", "?token=old"), 7, &only_abc),
        Some(EmbedRewrite::Unentitled(Some(url("xyz", ""))))
    );
}

#[test]
fn a_pattern_without_the_entitlement_placeholder_serves_only_the_fully_entitled() {
    let e = embed("https://cdn.example/v/{id}.html", "/hls/{id}/*");
    let some = Principal::entitled(&SessionKey::new("v"), Entitlements::only(["a"]));
    assert!(matches!(
        e.rewrite_for("https://cdn.example/v/a.html", 7, &some),
        Some(EmbedRewrite::Unentitled(None))
    ));
    assert!(matches!(
        e.rewrite_for("https://cdn.example/v/a.html", 7, &visitor()),
        Some(EmbedRewrite::Minted(_))
    ));
}

#[test]
fn a_url_that_would_make_a_many_placeholder_pattern_backtrack_long_is_no_match() {
    let e = embed("https://h/e/{a}-{b}-{c}-{share}.html", "/hls/{share}/*");
    assert!(e.rewrite_at("https://h/e/w-x-y-z.html", 1).is_some());
    // Without a budget this takes minutes; with it, a moment.
    let hostile = format!("https://h/e/{}x", "a-".repeat(400));
    assert!(e.rewrite_at(&hostile, 1).is_none());
}

#[test]
fn a_protocol_relative_url_waiting_for_a_remote_token_gets_the_patterns_https() {
    let mut remote = settings(
        "https://api.vod2.infomaniak.com/res/embed/{share}.html",
        "/hls/{share}/*",
    );
    remote.token = TokenSettings::Remote(crate::token::RemoteSettings {
        url: "http://127.0.0.1:9/share/{share}/token".into(),
        method: http::Method::POST,
        bearer: SecretSource::Inline("bearer".into()),
        body: None,
        pointer: "/data".into(),
        timeout: Duration::from_secs(1),
        concurrency: 1,
        on_error: Default::default(),
        reuse: None,
        ca_file: None,
    });
    let e = Embed::build(&remote).unwrap();
    let deferred = |url: &str| match e.rewrite_for(url, 1, &visitor()) {
        Some(EmbedRewrite::Deferred(deferred)) => deferred,
        other => panic!("{url}: {other:?}"),
    };
    let d = deferred("//api.vod2.infomaniak.com/res/embed/abc.html?autoplay=1#t");
    assert_eq!(
        (d.head.as_str(), d.param.as_str(), d.tail.as_str()),
        (
            "https://api.vod2.infomaniak.com/res/embed/abc.html?autoplay=1",
            "&amp;token=",
            "#t"
        )
    );
    assert_eq!(d.call.url, "http://127.0.0.1:9/share/abc/token");
    let d = deferred("https://api.vod2.infomaniak.com/res/embed/abc.html");
    assert_eq!(d.head, "https://api.vod2.infomaniak.com/res/embed/abc.html");
}
