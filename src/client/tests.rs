//! The client address through every shape of forwarding header.

use super::*;

use http::HeaderValue;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn trusted(cidrs: &[&str]) -> TrustedProxies {
    TrustedProxies::parse(cidrs).expect("test CIDRs")
}

/// The client behind a proxy at 10.0.0.1 trusting 10.0.0.0/8.
fn via_proxy(lines: &[(&str, &str)]) -> IpAddr {
    client_addr(ip("10.0.0.1"), &headers(lines), &trusted(&["10.0.0.0/8"]))
}

// --- TrustedProxies ---

#[test]
fn parses_cidrs_and_bare_addresses() {
    let t = trusted(&[
        "10.0.0.0/8",
        "::1/128",
        "192.0.2.7",
        "2001:db8::5",
        " 172.16.0.0/12 ",
    ]);
    assert!(t.trusts(ip("10.255.1.2")));
    assert!(t.trusts(ip("::1")));
    assert!(t.trusts(ip("192.0.2.7")));
    assert!(!t.trusts(ip("192.0.2.8")));
    assert!(t.trusts(ip("2001:db8::5")));
    assert!(!t.trusts(ip("2001:db8::6")));
    assert!(t.trusts(ip("172.31.255.255")));
    assert!(!t.trusts(ip("172.32.0.0")));
    assert!(!t.is_empty());
}

#[test]
fn an_empty_list_trusts_no_one() {
    let t = TrustedProxies::parse::<&str>(&[]).expect("empty list");
    assert!(t.is_empty());
    assert_eq!(t, TrustedProxies::none());
}

#[test]
fn host_bits_are_a_typo_not_a_range() {
    let err = TrustedProxies::parse(&["10.0.0.0/8", "10.1.2.3/8"]).unwrap_err();
    assert_eq!(
        err,
        ClientError::HostBitsSet {
            index: 1,
            entry: "10.1.2.3/8".into(),
            network: "10.0.0.0/8".parse().expect("net"),
        }
    );
    let message = err.to_string();
    assert!(message.contains("trusted proxy 1"), "{message}");
    assert!(message.contains("\"10.1.2.3/8\""), "{message}");
    assert!(message.contains("10.0.0.0/8"), "{message}");
    assert!(TrustedProxies::parse(&["2001:db8::1/32"]).is_err());
}

#[test]
fn malformed_entries_name_index_text_and_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("localhost", "not an IPv4 or IPv6"),
        ("10.0.0/8", "not an IPv4 or IPv6"),
        ("10.0.0.0/", "not a number"),
        ("10.0.0.0/+8", "not a number"),
        ("10.0.0.0/x", "not a number"),
        ("10.0.0.0/33", "over 32"),
        ("::/129", "over 32"),
        ("10.0.0.0/999", "over 32"),
        ("10.0.0.0/8/8", "not a number"),
        ("[::1]/128", "not an IPv4 or IPv6"),
    ];
    for (entry, problem) in cases {
        let err = TrustedProxies::parse(&["127.0.0.1", entry]).unwrap_err();
        match &err {
            ClientError::Malformed {
                index, entry: e, ..
            } => {
                assert_eq!(*index, 1);
                assert_eq!(e, entry);
            }
            other => panic!("{entry:?}: {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(problem), "{entry:?}: {message}");
        assert!(message.contains("trusted proxy 1"), "{message}");
    }
}

#[test]
fn parse_accepts_owned_strings() {
    let owned = vec![String::from("10.0.0.0/8")];
    assert!(TrustedProxies::parse(&owned)
        .expect("owned")
        .trusts(ip("10.1.1.1")));
}

#[test]
fn none_everyone_and_private() {
    assert!(TrustedProxies::none().is_empty());
    assert!(!TrustedProxies::none().trusts(ip("127.0.0.1")));
    let all = TrustedProxies::everyone();
    for a in [
        "0.0.0.0",
        "203.0.113.9",
        "255.255.255.255",
        "::",
        "2001:db8::1",
        "::ffff:1.2.3.4",
    ] {
        assert!(all.trusts(ip(a)), "{a}");
    }
    let private = TrustedProxies::private_networks();
    for a in [
        "127.0.0.1",
        "127.255.0.1",
        "::1",
        "10.9.8.7",
        "172.16.0.1",
        "172.31.9.9",
        "192.168.1.1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(private.trusts(ip(a)), "{a}");
    }
    for a in [
        "8.8.8.8",
        "172.32.0.1",
        "192.169.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "fe80::1",
        "2001:db8::1",
        "::2",
        "fe00::1",
    ] {
        assert!(!private.trusts(ip(a)), "{a}");
    }
}

#[test]
fn mapped_peers_match_ipv4_ranges() {
    let t = trusted(&["10.0.0.0/8"]);
    assert!(t.trusts(ip("::ffff:10.0.0.1")));
    assert!(!t.trusts(ip("::ffff:11.0.0.1")));
    // ::10.0.0.1 (IPv4-compatible, deprecated) is not a mapped address.
    assert!(!t.trusts(ip("::10.0.0.1")));
}

#[test]
fn mapped_ranges_become_ipv4_ranges() {
    let t = trusted(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);
    assert_eq!(t, trusted(&["10.0.0.0/8", "192.0.2.1/32"]));
    assert!(t.trusts(ip("10.2.3.4")));
    assert!(t.trusts(ip("::ffff:10.2.3.4")));
    assert!(t.trusts(ip("192.0.2.1")));
}

// --- client_addr: basics ---

#[test]
fn an_untrusted_peer_is_the_client() {
    let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
    let t = trusted(&["10.0.0.0/8"]);
    assert_eq!(client_addr(ip("203.0.113.5"), &h, &t), ip("203.0.113.5"));
}

#[test]
fn trusting_no_one_ignores_headers() {
    let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
    let t = TrustedProxies::none();
    assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("127.0.0.1"));
    assert_eq!(client_addr(ip("::ffff:10.0.0.1"), &h, &t), ip("10.0.0.1"));
}

#[test]
fn a_trusted_peer_without_headers_is_the_client() {
    assert_eq!(via_proxy(&[]), ip("10.0.0.1"));
    assert_eq!(via_proxy(&[("x-real-ip", "1.2.3.4")]), ip("10.0.0.1"));
}

#[test]
fn the_right_most_untrusted_hop_is_the_client() {
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "203.0.113.7")]),
        ip("203.0.113.7")
    );
    assert_eq!(
        via_proxy(&[(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3"
        )]),
        ip("203.0.113.7")
    );
}

#[test]
fn every_hop_trusted_gives_the_left_most() {
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "10.0.0.9, 10.0.0.8, 10.0.0.7")]),
        ip("10.0.0.9")
    );
}

#[test]
fn trusting_everyone_takes_the_left_most_readable() {
    let t = TrustedProxies::everyone();
    let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2")]);
    assert_eq!(client_addr(ip("192.0.2.1"), &h, &t), ip("198.51.100.1"));
    let h = headers(&[("x-forwarded-for", "bogus, 203.0.113.7, 10.0.0.2")]);
    assert_eq!(client_addr(ip("192.0.2.1"), &h, &t), ip("203.0.113.7"));
}

// --- header lines ---

#[test]
fn every_forwarded_for_line_counts_in_order() {
    let lines = [
        ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-forwarded-for", "10.0.0.3"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
    // The untrusted hop in the last line wins over everything before it.
    let lines = [
        ("x-forwarded-for", "10.0.0.5"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.3"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
    let lines = [
        ("x-forwarded-for", "203.0.113.1"),
        ("x-forwarded-for", "10.0.0.5, 10.0.0.6"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.1"));
}

#[test]
fn every_forwarded_line_counts_in_order() {
    let lines = [
        ("forwarded", "for=198.51.100.1, for=203.0.113.7"),
        ("forwarded", "for=10.0.0.2"),
        ("forwarded", "for=10.0.0.3"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
    let lines = [
        ("forwarded", "for=203.0.113.1"),
        ("forwarded", "for=10.0.0.5"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.1"));
}

#[test]
fn entries_are_trimmed_of_spaces_and_tabs() {
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "\t203.0.113.7 \t,\t 10.0.0.2\t")]),
        ip("203.0.113.7")
    );
    assert_eq!(
        via_proxy(&[(
            "forwarded",
            " for=203.0.113.7 ;\tproto=https\t, \tfor = 10.0.0.2 "
        )]),
        ip("203.0.113.7")
    );
}

// --- entry shapes ---

#[test]
fn forwarded_for_entry_shapes() {
    for (entry, want) in [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:5678", "203.0.113.7"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
    ] {
        let line = format!("{entry}, 10.0.0.2");
        assert_eq!(
            via_proxy(&[("x-forwarded-for", &line)]),
            ip(want),
            "{entry}"
        );
    }
}

#[test]
fn unreadable_forwarded_for_entries() {
    for entry in [
        "",
        "unknown",
        "garbage",
        "_hidden",
        "203.0.113.7:",
        "203.0.113.7:65536",
        "203.0.113.7:123456",
        "203.0.113.7:+80",
        "203.0.113.7:_obf",
        "203.0.113.7:80:80",
        "[203.0.113.7]",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
        "2001:db8::1:443x",
        "fe80::1%eth0",
        "203.0.113.7 extra",
        "\"203.0.113.7\"",
        "1.2.3",
        "01.2.3.4",
    ] {
        // The left-most entry would be chosen if the bad one were skipped.
        let line = format!("198.51.100.1, {entry}, 10.0.0.2");
        assert_eq!(
            via_proxy(&[("x-forwarded-for", &line)]),
            ip("10.0.0.2"),
            "{entry:?}"
        );
    }
}

#[test]
fn forwarded_for_shapes() {
    for (element, want) in [
        ("for=203.0.113.7", "203.0.113.7"),
        ("for=\"203.0.113.7\"", "203.0.113.7"),
        ("for=\"203.0.113.7:8080\"", "203.0.113.7"),
        ("for=\"203.0.113.7:_abc\"", "203.0.113.7"),
        ("for=\"[2001:db8::1]\"", "2001:db8::1"),
        ("for=\"[2001:db8::1]:443\"", "2001:db8::1"),
        ("for=\"[2001:db8::1]:_p-1.x\"", "2001:db8::1"),
        ("FOR=203.0.113.7", "203.0.113.7"),
        ("For=203.0.113.7", "203.0.113.7"),
        ("proto=https;for=203.0.113.7;by=10.0.0.2", "203.0.113.7"),
        (
            "by=\"[2001:db8::9]\";FoR=\"[2001:db8::1]\";host=example.com",
            "2001:db8::1",
        ),
        ("for=203.0.113.7;;proto=http;", "203.0.113.7"),
        ("for=203.0.113.7;ext=\"a,b;c\\\"d\"", "203.0.113.7"),
        ("ext=\"x,for=9.9.9.9\";for=203.0.113.7", "203.0.113.7"),
    ] {
        let line = format!("{element}, for=10.0.0.2");
        assert_eq!(via_proxy(&[("forwarded", &line)]), ip(want), "{element}");
    }
}

#[test]
fn unreadable_forwarded_elements() {
    for element in [
        "",
        "for=unknown",
        "for=\"unknown\"",
        "for=_hidden",
        "for=\"_hidden:80\"",
        "for=\"_hidden\"",
        "proto=https",
        "for=",
        "for=\"\"",
        "for=\"203.0.113.7",
        "for=203.0.113.7\"",
        "for=\"203.0.113.\\7\"",
        "for=\"20\"3.0.113.7\"",
        "for=203.0.113.7;for=203.0.113.8",
        "for=203.0.113.7;garbage",
        "for=203.0.113.7;=x",
        "for=203.0.113.7:_",
        "for=\"[2001:db8::1]:_\"",
        "forx=203.0.113.7",
        "fo=203.0.113.7",
    ] {
        let line = format!("for=198.51.100.1, {element}, for=10.0.0.2");
        assert_eq!(
            via_proxy(&[("forwarded", &line)]),
            ip("10.0.0.2"),
            "{element:?}"
        );
    }
}

#[test]
fn quoted_commas_do_not_split_elements() {
    // Split naively, `for=10.0.0.3"` would be unreadable and end the walk.
    let line = "for=203.0.113.7, for=10.0.0.4;ext=\"a, for=10.0.0.3\"";
    assert_eq!(via_proxy(&[("forwarded", line)]), ip("203.0.113.7"));
    // Escaped quotes and backslashes inside a quoted-string.
    let line = "for=203.0.113.7, for=10.0.0.4;ext=\"\\\\\\\", \\\\\"";
    assert_eq!(via_proxy(&[("forwarded", line)]), ip("203.0.113.7"));
}

#[test]
fn an_unclosed_quote_on_the_left_does_not_spoil_our_hops() {
    let line = "for=\"198.51.100.1, for=203.0.113.7, for=10.0.0.2";
    assert_eq!(via_proxy(&[("forwarded", line)]), ip("203.0.113.7"));
    // When the unreadable piece is reached the walk stops at the last good hop.
    let line = "for=\"198.51.100.1, for=10.0.0.5, for=10.0.0.2";
    assert_eq!(via_proxy(&[("forwarded", line)]), ip("10.0.0.5"));
}

// --- the walk stops at unreadable entries ---

#[test]
fn a_bad_entry_stops_at_the_last_good_hop() {
    assert_eq!(
        via_proxy(&[(
            "x-forwarded-for",
            "198.51.100.1, garbage, 10.0.0.2, 10.0.0.3"
        )]),
        ip("10.0.0.2")
    );
    // Right next to us: the peer is the last good hop.
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "198.51.100.1, garbage")]),
        ip("10.0.0.1")
    );
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "198.51.100.1,")]),
        ip("10.0.0.1")
    );
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "198.51.100.1,,10.0.0.2")]),
        ip("10.0.0.2")
    );
    assert_eq!(via_proxy(&[("x-forwarded-for", "")]), ip("10.0.0.1"));
    assert_eq!(via_proxy(&[("x-forwarded-for", "unknown")]), ip("10.0.0.1"));
    assert_eq!(
        via_proxy(&[("forwarded", "for=198.51.100.1, for=unknown")]),
        ip("10.0.0.1")
    );
    assert_eq!(
        via_proxy(&[("forwarded", "for=198.51.100.1,")]),
        ip("10.0.0.1")
    );
}

#[test]
fn a_bad_line_stops_at_the_last_good_hop() {
    let lines = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", "nope"),
        ("x-forwarded-for", "10.0.0.2"),
    ];
    assert_eq!(via_proxy(&lines), ip("10.0.0.2"));
    let lines = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", ""),
        ("x-forwarded-for", "10.0.0.2"),
    ];
    assert_eq!(via_proxy(&lines), ip("10.0.0.2"));
}

#[test]
fn bytes_that_are_not_visible_ascii_are_unreadable() {
    let mut map = HeaderMap::new();
    map.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
    map.append(
        X_FORWARDED_FOR,
        HeaderValue::from_bytes(b"203.0.113.\xff7, 10.0.0.2").expect("obs-text"),
    );
    map.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.3"));
    let t = trusted(&["10.0.0.0/8"]);
    assert_eq!(client_addr(ip("10.0.0.1"), &map, &t), ip("10.0.0.2"));

    let mut map = HeaderMap::new();
    map.append(
        X_FORWARDED_FOR,
        HeaderValue::from_bytes("198.51.100.1, ２０３.0.113.7, 10.0.0.2".as_bytes())
            .expect("utf-8"),
    );
    assert_eq!(client_addr(ip("10.0.0.1"), &map, &t), ip("10.0.0.2"));

    let mut map = HeaderMap::new();
    map.append(
        FORWARDED,
        HeaderValue::from_bytes(b"for=198.51.100.1, for=\"\xc0\xaf\", for=10.0.0.2")
            .expect("obs-text"),
    );
    assert_eq!(client_addr(ip("10.0.0.1"), &map, &t), ip("10.0.0.2"));
}

// --- precedence between the headers ---

#[test]
fn x_forwarded_for_wins_over_forwarded() {
    let lines = [
        ("forwarded", "for=198.51.100.1"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
    // Even when X-Forwarded-For leads nowhere, Forwarded is not consulted.
    let lines = [
        ("forwarded", "for=198.51.100.1"),
        ("x-forwarded-for", "junk"),
    ];
    assert_eq!(via_proxy(&lines), ip("10.0.0.1"));
}

#[test]
fn forwarded_is_used_without_x_forwarded_for() {
    assert_eq!(
        via_proxy(&[(
            "forwarded",
            "for=198.51.100.1;proto=https, for=\"[2001:db8::7]:1\""
        )]),
        ip("2001:db8::7")
    );
}

// --- canonical addresses ---

#[test]
fn mapped_addresses_come_back_as_ipv4() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.7, ::ffff:10.0.0.2")]);
    assert_eq!(
        client_addr(ip("::ffff:10.0.0.1"), &h, &t),
        ip("203.0.113.7")
    );
    assert!(matches!(
        client_addr(ip("::ffff:10.0.0.1"), &h, &t),
        IpAddr::V4(_)
    ));
    let none = TrustedProxies::none();
    assert_eq!(
        client_addr(ip("::ffff:203.0.113.9"), &h, &none),
        ip("203.0.113.9")
    );
    // All hops trusted: the answer is still canonical.
    let h = headers(&[("x-forwarded-for", "::ffff:10.0.0.9")]);
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.0.0.9"));
    let h = headers(&[("forwarded", "for=\"[::ffff:203.0.113.7]:80\"")]);
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("203.0.113.7"));
}

#[test]
fn ipv6_peers_and_hops() {
    let t = trusted(&["2001:db8:1::/48", "10.0.0.0/8"]);
    let h = headers(&[(
        "x-forwarded-for",
        "203.0.113.7, [2001:db8:1::2]:443, 10.0.0.2",
    )]);
    assert_eq!(client_addr(ip("2001:db8:1::1"), &h, &t), ip("203.0.113.7"));
    assert_eq!(
        client_addr(ip("2001:db8:2::1"), &h, &t),
        ip("2001:db8:2::1")
    );
}

// --- limits ---

#[test]
fn the_walk_reads_at_most_max_hops() {
    // 100 trusted hops 10.0.0.100 .. 10.0.0.1 left to right behind a client.
    let mut line = String::from("203.0.113.7");
    for i in (1..=100).rev() {
        line.push_str(&format!(", 10.0.0.{i}"));
    }
    let got = via_proxy(&[("x-forwarded-for", &line)]);
    assert_eq!(got, ip(&format!("10.0.0.{MAX_HOPS}")));
    // Within the bound, the untrusted hop is reached.
    let line = format!("203.0.113.7, {}", vec!["10.0.0.2"; MAX_HOPS - 1].join(", "));
    assert_eq!(via_proxy(&[("x-forwarded-for", &line)]), ip("203.0.113.7"));
    let line = format!("203.0.113.7, {}", vec!["10.0.0.2"; MAX_HOPS].join(", "));
    assert_eq!(via_proxy(&[("x-forwarded-for", &line)]), ip("10.0.0.2"));
}

#[test]
fn the_bound_spans_lines() {
    let mut lines = vec![("x-forwarded-for", "203.0.113.7")];
    lines.extend(std::iter::repeat_n(
        ("x-forwarded-for", "10.0.0.2"),
        MAX_HOPS,
    ));
    assert_eq!(via_proxy(&lines), ip("10.0.0.2"));
    lines.remove(1);
    assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
}

#[test]
fn huge_headers_are_cheap() {
    let t = TrustedProxies::everyone();
    let line = vec!["10.0.0.2"; 10_000].join(", ");
    let h = headers(&[("x-forwarded-for", &line)]);
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.0.0.2"));

    let line = vec!["for=10.0.0.2"; 10_000].join(", ");
    let h = headers(&[("forwarded", &line)]);
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.0.0.2"));

    // One enormous element, and a run of backslashes, are scanned once.
    let mut element = String::from("for=10.0.0.2;ext=\"");
    element.push_str(&"\\".repeat(200_000));
    element.push_str(&"\\\"".repeat(100_000));
    element.push('"');
    let h = headers(&[("forwarded", &element)]);
    let start = std::time::Instant::now();
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.0.0.2"));
    assert!(start.elapsed() < std::time::Duration::from_secs(2));

    let element = format!("for=10.0.0.2{}", ";".repeat(300_000));
    let h = headers(&[("forwarded", &element)]);
    assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.0.0.2"));
}

// --- the splitters on their own ---

#[test]
fn elements_rev_splits_outside_quotes_only() {
    let got: Vec<&[u8]> = ElementsRev::new(b"a=1, b=\"x,y\" ,c=\"\\\",\"").collect();
    assert_eq!(got, vec![&b"c=\"\\\",\""[..], b" b=\"x,y\" ", b"a=1"]);
    let got: Vec<&[u8]> = ElementsRev::new(b"").collect();
    assert_eq!(got, vec![&b""[..]]);
    let got: Vec<&[u8]> = ElementsRev::new(b",").collect();
    assert_eq!(got, vec![&b""[..], b""]);
}

#[test]
fn split_unquoted_reports_open_quotes() {
    assert_eq!(
        split_unquoted(b"a;b", b';'),
        Some((&b"a"[..], Some(&b"b"[..])))
    );
    assert_eq!(
        split_unquoted(b"a=\";\";b", b';'),
        Some((&b"a=\";\""[..], Some(&b"b"[..])))
    );
    assert_eq!(split_unquoted(b"a=\"\\\";b", b';'), None);
    assert_eq!(
        split_unquoted(b"a;", b';'),
        Some((&b"a"[..], Some(&b""[..])))
    );
}

proptest::proptest! {
    #[test]
    fn never_panics_and_answers_from_the_request(
        xff in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..4),
        fwd in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..4),
    ) {
        let mut map = HeaderMap::new();
        for line in &xff {
            if let Ok(value) = HeaderValue::from_bytes(line) {
                map.append(X_FORWARDED_FOR, value);
            }
        }
        for line in &fwd {
            if let Ok(value) = HeaderValue::from_bytes(line) {
                map.append(FORWARDED, value);
            }
        }
        let peer = ip("10.0.0.1");
        for t in [TrustedProxies::none(), TrustedProxies::everyone(), trusted(&["10.0.0.0/8"])] {
            let got = client_addr(peer, &map, &t);
            proptest::prop_assert!(got == peer || !t.is_empty());
            proptest::prop_assert_eq!(got, got.to_canonical());
        }
    }

    #[test]
    fn readable_chains_round_trip(
        hops in proptest::collection::vec(proptest::num::u32::ANY, 1..10),
    ) {
        let line = hops
            .iter()
            .map(|&h| Ipv4Addr::from(h).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let elements = hops
            .iter()
            .map(|&h| format!("for=\"{}:1\"", Ipv4Addr::from(h)))
            .collect::<Vec<_>>()
            .join(", ");
        let t = TrustedProxies::everyone();
        let want = IpAddr::V4(Ipv4Addr::from(hops[0]));
        let h = headers(&[("x-forwarded-for", &line)]);
        proptest::prop_assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), want);
        let h = headers(&[("forwarded", &elements)]);
        proptest::prop_assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), want);
    }
}

#[test]
fn ipv6_clients_are_counted_by_their_prefix_and_ipv4_ones_by_address() {
    let per_64 = ClientPrefix::default();
    assert_eq!(
        per_64.client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
        ip("2001:db8:1:2::")
    );
    assert_eq!(
        per_64.client_of(ip("2001:db8:1:2::1")),
        per_64.client_of(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(
        per_64.client_of(ip("2001:db8:1:2::1")),
        per_64.client_of(ip("2001:db8:1:3::1"))
    );
    // IPv4, written either way, is one client per address.
    assert_eq!(per_64.client_of(ip("192.0.2.7")), ip("192.0.2.7"));
    assert_eq!(per_64.client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));

    let whole = ClientPrefix::new(128).unwrap();
    assert_eq!(whole.client_of(ip("2001:db8::1")), ip("2001:db8::1"));
    let per_48 = ClientPrefix::new(48).unwrap();
    assert_eq!(
        per_48.client_of(ip("2001:db8:1:ffff::1")),
        ip("2001:db8:1::")
    );
    let per_32 = ClientPrefix::new(ClientPrefix::SHORTEST).unwrap();
    assert_eq!(per_32.client_of(ip("2001:db8:ffff::1")), ip("2001:db8::"));
    assert_eq!(ClientPrefix::new(31), None);
    assert_eq!(ClientPrefix::new(129), None);
}
