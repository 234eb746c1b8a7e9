//! Tokens the gateway mints into pages for an `[[embed]]` open, on an
//! `access = "token"` route, exactly what they should: their own videos, their
//! URL, their client, in the layout the route checks.

use crate::common::*;
use crate::edge::{
    assert_refused, assert_served, config_with, fetch, media_cms, seen_targets, signer, token_route,
};

const ARTICLE: &str = "<html><body>\
<iframe src=\"http://media.test/embed/abc123.html\"></iframe>\
<iframe src=\"https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html\"></iframe>\
</body></html>";

/// An `[[embed]]` for `http://media.test/embed/{share}.html` with the test key; `lines` are more of its `[embed.token]`.
fn media_embed(lines: &str) -> String {
    format!(
        "\n[[embed]]\nname = \"media\"\nsrc = \"http://media.test/embed/{{share}}.html\"\n\n[embed.token]\nkind = \"edgeauth\"\nkey = \"{KEY_HEX}\"\nttl = \"5m\"\n{lines}\n"
    )
}

/// The value of the `token` parameter in the iframe whose src starts with `src`.
fn token_in_iframe(html: &str, src: &str) -> String {
    let lead = format!("src=\"{src}?token=");
    let found: Vec<&str> = html
        .match_indices(&lead)
        .map(|(at, _)| {
            let rest = &html[at + lead.len()..];
            &rest[..rest.find(['"', '&']).expect("attribute ends")]
        })
        .collect();
    assert_eq!(found.len(), 1, "one token for {src} in {html}");
    found[0].to_string()
}

/// The token's fields before `hmac=` as (name, value) pairs, after checking its signature.
fn fields_of(token: &str) -> Vec<(String, String)> {
    let verified = signer().verify_with(token, unix_now(), 0, "");
    assert!(verified.is_ok(), "{token}: {verified:?}");
    let (signed, _) = token.rsplit_once("~hmac=").unwrap();
    signed
        .split('~')
        .map(|field| {
            let (name, value) = field.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_page_mints_tokens_that_open_its_own_videos_only() {
    let cms = media_cms(ARTICLE).await;
    let extra = media_embed("acl = \"/hls/{share}/*\"") + &token_route("/hls/", "");
    let gate = Gate::start_with(&config_with(&cms, &[], &extra), &[]).await;

    let page = get_as_member(&gate.url("/videos/article")).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    let token = token_in_iframe(&html, "http://media.test/embed/abc123.html");
    let (_, _, acl) = check_token(&token, KEY_HEX);
    assert_eq!(acl, "/hls/abc123/*");
    let infomaniak = token_in_iframe(&html, EMBED);

    let target = format!("/hls/abc123/seg1.ts?token={token}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc123/seg1.ts",
        "its video",
    );
    let other_embed = format!("/hls/1jhvl2uqa5rdf/seg1.ts?token={infomaniak}");
    assert_served(
        &fetch(&gate, &other_embed, &[]).await,
        "/hls/1jhvl2uqa5rdf/seg1.ts",
        "the other embed's video",
    );
    for target in [
        format!("/hls/zzz999/seg1.ts?token={token}"),
        format!("/hls/abc123/seg1.ts?token={infomaniak}"),
        format!("/hls/abc1234/seg1.ts?token={token}"),
    ] {
        assert_refused(&fetch(&gate, &target, &[]).await, &target);
    }
    let seen = seen_targets(&cms);
    assert_eq!(
        seen,
        vec!["/videos/article".to_string(), target, other_embed]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ip_bound_embed_token_carries_the_forwarded_client_and_holds_only_for_it() {
    let cms = media_cms(ARTICLE).await;
    let extra = media_embed("acl = \"/hls/{share}/*\"\nip = true") + &token_route("/hls/", "");
    let config = config_with(&cms, &["trusted_proxies = [\"127.0.0.0/8\"]"], &extra);
    let gate = Gate::start_with(&config, &[]).await;
    let src = "http://media.test/embed/abc123.html";

    let forwarded = [("x-forwarded-for", "198.51.100.7")];
    let cookie = format!("sessionid={MEMBER}");
    let page = fetch(
        &gate,
        "/videos/article",
        &[("cookie", cookie.as_str()), forwarded[0]],
    )
    .await;
    assert_eq!(page.status, 200);
    let token = token_in_iframe(&page.text(), src);
    let fields = fields_of(&token);
    assert_eq!(fields[0], ("ip".into(), "198.51.100.7".into()), "{token}");
    assert!(fields.contains(&("acl".into(), "/hls/abc123/*".into())));

    let target = format!("/hls/abc123/seg1.ts?token={token}");
    assert_served(
        &fetch(&gate, &target, &forwarded).await,
        "/hls/abc123/seg1.ts",
        "from the address it was minted for",
    );
    assert_refused(&fetch(&gate, &target, &[]).await, "from the proxy itself");
    assert_refused(
        &fetch(&gate, &target, &[("x-forwarded-for", "198.51.100.8")]).await,
        "from another client",
    );

    // Without a forwarding header the visitor is the peer, and the token says so.
    let direct = fetch(&gate, "/videos/article", &[("cookie", cookie.as_str())]).await;
    let direct_token = token_in_iframe(&direct.text(), src);
    assert_eq!(
        fields_of(&direct_token)[0],
        ("ip".into(), "127.0.0.1".into())
    );
    let direct_target = format!("/hls/abc123/seg2.ts?token={direct_token}");
    assert_refused(
        &fetch(&gate, &direct_target, &forwarded).await,
        "a loopback token from a forwarded client",
    );
    assert_served(
        &fetch(&gate, &direct_target, &[]).await,
        "/hls/abc123/seg2.ts",
        "a loopback token from loopback",
    );
    assert_eq!(
        seen_targets(&cms),
        vec![
            "/videos/article".to_string(),
            target,
            "/videos/article".to_string(),
            direct_target
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_token_opens_exactly_its_url() {
    let cms = media_cms(ARTICLE).await;
    let extra = media_embed("url = \"/hls/{share}/index.m3u8\"") + &token_route("/hls/", "");
    let gate = Gate::start_with(&config_with(&cms, &[], &extra), &[]).await;

    let page = get_as_member(&gate.url("/videos/article")).await;
    assert_eq!(page.status, 200);
    let token = token_in_iframe(&page.text(), "http://media.test/embed/abc123.html");
    assert!(!token.contains("acl="), "a URL token names no ACL: {token}");
    // The signature covers the URL: it checks out for that path only.
    assert!(signer()
        .verify_with(&token, unix_now(), 0, "/hls/abc123/index.m3u8")
        .is_ok());

    let target = format!("/hls/abc123/index.m3u8?token={token}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc123/index.m3u8",
        "its URL",
    );
    for path in [
        "/hls/abc123/seg1.ts",
        "/hls/abc123/index.m3u8x",
        "/hls/abc123/index.m3u",
        "/hls/abc123/",
        "/hls/abc123/x/index.m3u8",
        "/hls/other/index.m3u8",
    ] {
        assert_refused(
            &fetch(&gate, &format!("{path}?token={token}"), &[]).await,
            path,
        );
    }
    assert_eq!(
        seen_targets(&cms),
        vec!["/videos/article".to_string(), target]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_token_in_a_custom_layout_opens_routes_with_the_same_layout_only() {
    let cms = media_cms(ARTICLE).await;
    let layout =
        "algorithm = \"sha1\"\nsalt = \"pepper\"\nacl_delimiter = \",\"\nescape_early = true";
    let embed = media_embed(&format!(
        "{layout}\nacl = [\"/hls/{{share}}/*\", \"/thumbs/{{share}}/*\"]\nip = true\nid = true\nstart_offset = \"none\""
    ));
    // The route reads its key from a file, next to the config.
    let route = |prefix: &str, layout: &str| {
        format!(
            "\n[[route]]\nprefix = \"{prefix}\"\naccess = \"token\"\n\n[route.token]\nkey_file = \"edge.key\"\n{layout}\n"
        )
    };
    let extra = embed.clone() + &route("/hls/", layout) + &route("/thumbs/", layout);
    let files = [("edge.key", &*format!("{KEY_HEX}\n"))];
    let gate = Gate::start_with(&config_with(&cms, &[], &extra), &files).await;

    let page = get_as_member(&gate.url("/videos/article")).await;
    assert_eq!(page.status, 200);
    let token = token_in_iframe(&page.text(), "http://media.test/embed/abc123.html");
    let names: Vec<&str> = token
        .split('~')
        .map(|field| field.split('=').next().unwrap())
        .collect();
    assert_eq!(names, ["ip", "exp", "acl", "id", "hmac"], "{token}");
    assert!(
        token.contains("~acl=/hls/abc123/*,/thumbs/abc123/*~"),
        "{token}"
    );
    assert_eq!(token.rsplit_once("~hmac=").unwrap().1.len(), 40, "SHA-1");

    let served = [
        format!("/hls/abc123/seg1.ts?token={token}"),
        format!("/thumbs/abc123/poster.jpg?token={token}"),
    ];
    for target in &served {
        let path = target.split('?').next().unwrap();
        assert_served(&fetch(&gate, target, &[]).await, path, target);
    }
    assert_refused(
        &fetch(&gate, &format!("/hls/other/seg1.ts?token={token}"), &[]).await,
        "another video",
    );
    let mut seen = vec!["/videos/article".to_string()];
    seen.extend(served.iter().cloned());
    assert_eq!(seen_targets(&cms), seen);
    drop(gate);

    // The same routes without the salt, or with the default hash, refuse it.
    for other in [
        "algorithm = \"sha1\"\nacl_delimiter = \",\"\nescape_early = true",
        "salt = \"pepper\"\nacl_delimiter = \",\"\nescape_early = true",
        "algorithm = \"sha1\"\nsalt = \"peppers\"\nacl_delimiter = \",\"\nescape_early = true",
    ] {
        let extra = embed.clone() + &route("/hls/", other);
        let gate = Gate::start_with(&config_with(&cms, &[], &extra), &files).await;
        assert_refused(
            &fetch(&gate, &served[0], &[]).await,
            &format!("route with {other:?}"),
        );
    }
    assert_eq!(seen_targets(&cms), seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escaped_early_page_token_opens_its_route() {
    // escape_early writes %-escapes into the token (`data=v%3dabc123`); the
    // route must check the token as the page gave it to the player.
    let cms = media_cms(ARTICLE).await;
    let embed = media_embed("escape_early = true\nacl = \"/hls/{share}/*\"\ndata = \"v={share}\"");
    let extra = embed + &token_route("/hls/", "escape_early = true");
    let gate = Gate::start_with(&config_with(&cms, &[], &extra), &[]).await;

    let page = get_as_member(&gate.url("/videos/article")).await;
    assert_eq!(page.status, 200);
    let token = token_in_iframe(&page.text(), "http://media.test/embed/abc123.html");
    assert!(token.contains("~data="), "{token}");

    let target = format!("/hls/abc123/seg1.ts?token={token}");
    assert_served(
        &fetch(&gate, &target, &[]).await,
        "/hls/abc123/seg1.ts",
        "the page's own token",
    );
    assert_eq!(
        seen_targets(&cms),
        vec!["/videos/article".to_string(), target]
    );
}
