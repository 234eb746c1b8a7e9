//! The client address through every shape of forwarding header: here the
//! trusted-proxy list and the IPv6 client prefix, and the helpers the walk
//! (`walk`) and the entry shapes (`shapes`) share.

use super::*;

use http::HeaderValue;

mod shapes;
mod walk;

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

// --- ClientPrefix ---

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
