//! The shapes an X-Forwarded-For entry or a Forwarded element may take:
//! ports, brackets, quotes and parameters that are read, and all that is
//! unreadable; and the splitters on their own.

use super::*;

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
