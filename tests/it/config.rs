//! gateway.toml: what is accepted, and how every mistake is reported.

use std::path::Path;

use crate::common::*;
use embedgate::config::{ConfigError, Settings};
use embedgate::runtime::Runtime;

fn load(text: &str) -> Result<Runtime, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    build_runtime(&path)
}

fn base() -> String {
    config_text("127.0.0.1:9".parse().unwrap(), "")
}

fn error_of(text: &str) -> String {
    load(text).expect_err("config must be refused").to_string()
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn an_unknown_key_is_an_error_with_its_line_and_column() {
    let text = base().replace("gated = true", "gated = true\ngatd = false");
    let err = error_of(&text);
    let line = line_of(&text, "gatd");
    assert!(err.contains(&format!("gateway.toml:{line}:1")), "{err}");
    assert!(err.contains("unknown field `gatd`"), "{err}");
}

#[test]
fn a_wrong_type_names_its_place() {
    let text = base().replace("gated = true", "gated = \"yes\"");
    let err = error_of(&text);
    assert!(
        err.contains(&format!(":{}:", line_of(&text, "gated = \"yes\""))),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key_and_position() {
    let cases = [
        (
            "listen = \"127.0.0.1:0\"",
            "listen = \"localhost\"",
            "server.listen",
        ),
        (
            "url = \"http://127.0.0.1:9\"",
            "url = \"ftp://cms.example\"",
            "upstream.url",
        ),
        (
            // A typo rustls cannot check a certificate for.
            "url = \"http://127.0.0.1:9\"",
            "url = \"https://10.0.0.300:8443\"",
            "upstream.url",
        ),
        (
            "prefix = \"/videos/\"",
            "prefix = \"videos/\"",
            "route[0].prefix",
        ),
        (
            "prefix = \"/public/\"",
            "prefix = \"/videos/\"",
            "route[1].prefix",
        ),
        (
            "cookie = \"sessionid\"",
            "cookie = \"session id\"",
            "session.cookie",
        ),
        (
            "acl = \"/hls/{share}/*\"",
            "acl = \"/hls/{shar}/*\"",
            "embed[0].token.acl",
        ),
        (
            "acl = \"/hls/{share}/*\"",
            "acl = \"/hls/{share}~exp=9/*\"",
            "embed[0].token.acl",
        ),
        ("ttl = \"5m\"", "ttl = \"0s\"", "embed[0].token.ttl"),
        ("key = \"0011", "key = \"zz11", "embed[0].token.key"),
        (
            "file = \"allowlist.txt\"",
            "file = \"missing.txt\"",
            "session.allowlist.file",
        ),
        (
            "src = \"https://api.vod2.infomaniak.com/res/embed/{share}.html\"",
            "src = \"https://api.vod2.infomaniak.com/res/embed/{share}.html?x=1\"",
            "embed[0].src",
        ),
    ];
    for (from, to, key) in cases {
        let text = base().replacen(from, to, 1);
        assert_ne!(text, base(), "fixture has {from}");
        let err = error_of(&text);
        // The changed value stands where `from` stood.
        let line = line_of(&base(), from);
        assert!(
            err.contains(&format!("gateway.toml:{line}:")),
            "{key}: {err}"
        );
        assert!(err.contains(key), "{key}: {err}");
    }
}

/// Counts past their bounds: more places than a semaphore can count was a
/// panic while the runtime was built, and millions of workers would be as
/// many threads. Each is refused where it was written; the bound is taken.
#[test]
fn counts_beyond_their_bounds_are_refused_where_written() {
    let url = "url = \"http://127.0.0.1:9\"";
    let listen = "listen = \"127.0.0.1:0\"";
    for (after, key, most) in [
        (url, "upstream.max_in_flight", "1000000"),
        (url, "upstream.max_uploads_in_flight", "1000000"),
        (listen, "server.workers", "1024"),
    ] {
        let name = key.split_once('.').unwrap().1;
        let set = |value: &str| base().replacen(after, &format!("{after}\n{name} = {value}"), 1);
        let one_more = (most.parse::<u64>().unwrap() + 1).to_string();
        for too_many in [one_more.as_str(), "9223372036854775807"] {
            let text = set(too_many);
            let err = error_of(&text);
            let line = line_of(&text, &format!("{name} = {too_many}"));
            assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
            assert!(
                err.contains(&format!("{key}: must be at most {most}")),
                "{err}"
            );
        }
        load(&set(most)).expect("the bound itself is accepted");
    }
}

/// A duration past what a clock can add to was a panic on the first request
/// (idle_timeout = "18446744073709551615s"); past ten years, every
/// duration key is refused where it was written.
#[test]
fn durations_past_ten_years_are_refused_where_written() {
    for (from, key) in [
        ("shutdown_timeout = \"5s\"", "shutdown_timeout"),
        ("connect_timeout = \"1s\"", "connect_timeout"),
        ("ttl = \"5m\"", "ttl"),
    ] {
        for too_long in ["3651d", "18446744073709551615s"] {
            let text = base().replacen(from, &format!("{key} = \"{too_long}\""), 1);
            let err = error_of(&text);
            let line = line_of(&base(), from);
            assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
            assert!(err.contains("a duration must be at most 10 years"), "{err}");
        }
        let longest = base().replacen(from, &format!("{key} = \"3650d\""), 1);
        load(&longest).expect("ten years itself is accepted");
    }
}

#[test]
fn polling_intervals_under_ten_milliseconds_are_refused_where_written() {
    for (section, key) in [("reload", "interval"), ("admin", "check_interval")] {
        let with = |value: &str| {
            let extra = if section == "admin" {
                "listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            };
            format!("{}\n[{section}]\n{extra}{key} = \"{value}\"\n", base())
        };
        for too_short in ["1ns", "9ms", "9999us"] {
            let text = with(too_short);
            let err = error_of(&text);
            let line = line_of(&text, &format!("{key} = "));
            assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
            assert!(err.contains(&format!("{section}.{key}")), "{err}");
            assert!(err.contains("must be at least 10ms"), "{err}");
        }
        load(&with("10ms")).expect("ten milliseconds itself is accepted");
    }
}

#[test]
fn an_ipv6_client_prefix_outside_32_to_128_is_refused_where_written() {
    let with = |bits: &str| with_setting(base(), "server", &format!("ipv6_client_prefix = {bits}"));
    for bits in ["31", "129", "0", "-1", "300"] {
        let text = with(bits);
        let err = error_of(&text);
        let line = line_of(&text, "ipv6_client_prefix");
        assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
        assert!(err.contains("server.ipv6_client_prefix"), "{err}");
        assert!(err.contains("from 32 to 128"), "{err}");
    }
    for bits in ["32", "64", "128"] {
        load(&with(bits)).expect("a prefix from 32 to 128 is accepted");
    }
}

#[test]
fn exactly_one_key_source_is_required() {
    let two = base().replace(
        "kind = \"edgeauth\"",
        "kind = \"edgeauth\"\nkey_env = \"X\"",
    );
    assert!(error_of(&two).contains("exactly one of key_env, key_file or key"));
    let none = base().replace(&format!("key = \"{KEY_HEX}\""), "");
    assert!(error_of(&none).contains("exactly one of key_env, key_file or key"));
}

#[test]
fn a_missing_key_env_variable_is_named_and_the_key_never_printed() {
    let text = base().replace(
        &format!("key = \"{KEY_HEX}\""),
        "key_env = \"EMBEDGATE_TEST_UNSET_VARIABLE_9F2\"",
    );
    let err = error_of(&text);
    assert!(
        err.contains("EMBEDGATE_TEST_UNSET_VARIABLE_9F2 is not set"),
        "{err}"
    );
    let debug = format!("{:?}", load(&base()).unwrap());
    assert!(
        !debug.contains(KEY_HEX) && !debug.contains(MEMBER),
        "Debug leaks a secret: {debug}"
    );
}

#[test]
fn relative_paths_are_taken_from_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(conf.join("lists")).unwrap();
    std::fs::write(conf.join("lists/members.txt"), format!("{MEMBER}\n")).unwrap();
    std::fs::write(conf.join("deny.html"), "no").unwrap();
    std::fs::write(conf.join("video.key"), format!("{KEY_HEX}\n")).unwrap();
    let text = base()
        .replace("file = \"allowlist.txt\"", "file = \"lists/members.txt\"")
        .replace(
            "cookie = \"sessionid\"",
            "cookie = \"sessionid\"\ndeny_page = \"deny.html\"",
        )
        .replace(&format!("key = \"{KEY_HEX}\""), "key_file = \"video.key\"");
    std::fs::write(conf.join("gateway.toml"), &text).unwrap();
    // Loaded from another working directory: paths still resolve beside the file.
    let runtime = build_runtime(&conf.join("gateway.toml")).unwrap();
    assert_eq!(runtime.gate.sessions().known_sessions(), Some(1));
    assert_eq!(runtime.deny_page.as_ref(), b"no");
}

#[test]
fn an_unreadable_config_file_is_named() {
    let err = Settings::load(Path::new("/nonexistent/gateway.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/gateway.toml: cannot read config"),
        "{err}"
    );
}

#[test]
fn a_bad_allowlist_line_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowlist.txt"), "# ok\ngood-id\nbad,id\n").unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, base()).unwrap();
    let err = build_runtime(&path).unwrap_err().to_string();
    assert!(err.contains("allowlist.txt:3"), "{err}");
    let at = format!(
        "gateway.toml:{}:",
        line_of(&base(), "file = \"allowlist.txt\"")
    );
    assert!(err.contains(&at), "the allowlist key is placed: {err}");
}

#[test]
fn session_source_mistakes_name_their_key() {
    let with_source = |table: &str| {
        base().replacen(
            "[session.allowlist]\nfile = \"allowlist.txt\"\n",
            &format!("[session.allowlist]\n{table}\n"),
            1,
        )
    };
    let two = error_of(&with_source(
        "file = \"allowlist.txt\"\n[session.allowlist.redis]\nurl = \"redis://127.0.0.1/0\"",
    ));
    assert!(
        two.contains("session.allowlist: set exactly one source"),
        "{two}"
    );
    for (table, expected) in [
        (
            "[session.allowlist.redis]\nurl = \"http://cache:6380/0\"",
            "session.allowlist.redis.url: must start with redis:// or rediss://",
        ),
        (
            "[session.allowlist.redis]\nurl = \"redis://cache/0\"\nca_file = \"ca.pem\"",
            "session.allowlist.redis.ca_file: is for rediss:// URLs only",
        ),
        (
            "[session.allowlist.redis]\nurl = \"redis://127.0.0.1/0\"\nkey = \"session\"",
            "session.allowlist.redis.key: must contain {id}",
        ),
        (
            "[session.allowlist.forward_auth]\nurl = \"https://cms/check\"",
            "session.allowlist.forward_auth.url: must be an http:// URL",
        ),
        (
            "[session.allowlist.forward_auth]\nurl = \"http://cms/check\"\nshares_header = \"bad header\"",
            "session.allowlist.forward_auth.shares_header: not a header name",
        ),
        (
            "file = \"allowlist.txt\"\n[session.allowlist.cache]\nmax_entries = 0",
            "session.allowlist.cache.max_entries: must be at least 1",
        ),
    ] {
        let text = with_source(table);
        let err = error_of(&text);
        assert!(err.contains(expected), "{expected} in {err}");
        assert!(err.contains("gateway.toml:"), "{err}");
    }
    let star = error_of(&base().replacen("cookie = \"sessionid\"", "cookie = \"*\"", 1));
    assert!(star.contains("session.cookie"), "{star}");
}

#[test]
fn token_keys_are_checked_and_each_refusal_names_its_key() {
    let acl = "acl = \"/hls/{share}/*\"";
    let remote = "kind = \"remote\"\nprovider = \"infomaniak\"\nchannel = \"c1\"\nbearer = \"b\"";
    let local_keys = format!("kind = \"edgeauth\"\nkey = \"{KEY_HEX}\"\nttl = \"5m\"\n{acl}");
    let in_place_of_acl = |lines: &str| base().replacen(acl, lines, 1);
    let in_place_of_token = |lines: &str| base().replacen(&local_keys, lines, 1);
    let cases = [
        (
            in_place_of_acl("acl = []"),
            "embed[0].token.acl",
            "at least one",
        ),
        (
            in_place_of_acl(&format!("{acl}\nurl = \"/x\"")),
            "embed[0].token",
            "exactly one of acl",
        ),
        (
            in_place_of_acl("url = \"hls/x\""),
            "embed[0].token.url",
            "'/'",
        ),
        (
            in_place_of_acl(&format!("{acl}\nstart_offset = \"soon\"")),
            "embed[0].token.start_offset",
            "none",
        ),
        (
            in_place_of_acl(&format!("{acl}\nfield_delimiter = \"=\"")),
            "embed[0].token.field_delimiter",
            "one character",
        ),
        (
            in_place_of_acl(&format!("{acl}\nip = true\nfield_delimiter = \":\"")),
            "embed[0].token.ip",
            "IPv6",
        ),
        (
            in_place_of_acl(&format!("{acl}\nacl_delimiter = \"~\"")),
            "embed[0].token",
            "must differ",
        ),
        (
            in_place_of_acl(&format!("{acl}\nbearer = \"x\"")),
            "embed[0].token.bearer",
            "kind = \"remote\"",
        ),
        (
            in_place_of_acl(&format!("{acl}\ndata = \"a~b\"")),
            "embed[0].token.data",
            "separates the token's fields",
        ),
        (
            in_place_of_acl(&format!("{acl}\nsalt_file = \"no-such-salt\"")),
            "embed[0].token.salt",
            "no-such-salt",
        ),
        (
            in_place_of_token(&format!("{remote}\nttl = \"5m\"")),
            "embed[0].token.ttl",
            "only applies with kind = \"edgeauth\"",
        ),
        (
            in_place_of_token(&remote.replace("channel = \"c1\"\n", "")),
            "embed[0].token.channel",
            "{channel}",
        ),
        (
            in_place_of_token(&remote.replace("bearer = \"b\"", "")),
            "embed[0].token",
            "bearer_env",
        ),
        (
            in_place_of_token(&format!("{remote}\nconcurrency = 0")),
            "embed[0].token.concurrency",
            "1 to 64",
        ),
    ];
    for (index, (text, key, why)) in cases.into_iter().enumerate() {
        assert_ne!(text, base(), "case {index}");
        let err = error_of(&text);
        assert!(
            err.contains(key) && err.contains(why),
            "case {index}: {err}"
        );
        assert!(
            err.contains("gateway.toml:"),
            "case {index} is placed: {err}"
        );
    }
    let route = "[[route]]\nprefix = \"/hls/\"\naccess = \"token\"\n";
    let err = error_of(&base().replacen("[[route]]\n", &format!("{route}\n[[route]]\n"), 1));
    assert!(
        err.contains("route[0].token") && err.contains("[route.token]"),
        "{err}"
    );
    let err = error_of(&base().replacen(
        "gated = false\n",
        &format!("gated = false\n[route.token]\nkey = \"{KEY_HEX}\"\n"),
        1,
    ));
    assert!(
        err.contains("route[1].token") && err.contains("only applies"),
        "{err}"
    );
}

#[test]
fn every_token_option_is_accepted_together() {
    let acl = "acl = \"/hls/{share}/*\"";
    let all = "acl = [\"/hls/{share}/*\", \"/thumbs/{share}/*\"]\nip = true\nid = true\n\
               data = \"v={share}\"\nsalt = \"pepper\"\nfield_delimiter = \";\"\n\
               acl_delimiter = \",\"\nescape_early = true\nstart_offset = \"none\"\nalgorithm = \"md5\"";
    let text = base().replacen(acl, all, 1).replacen(
        "[[route]]\n",
        &format!(
            "[[route]]\nprefix = \"/hls/\"\naccess = \"token\"\n[route.token]\nkey = \"{KEY_HEX}\"\n\
             cookie = \"__token__\"\nleeway = \"10s\"\nsalt = \"pepper\"\n\n[[route]]\n"
        ),
        1,
    );
    let runtime = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runtime.embeds.len(), 1);
    assert!(runtime.route_tokens.iter().flatten().count() == 1);
}
