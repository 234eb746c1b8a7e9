//! `client_addr` walking leftwards from the peer: which hop is the client,
//! over several header lines and either header, where an unreadable entry
//! stops the walk, canonical addresses, and the bound on the hops read.

use super::*;

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
