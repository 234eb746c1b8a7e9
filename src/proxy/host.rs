//! The host a request names: one, valid, and over HTTP/2 the same in `Host`
//! as in `:authority` once both are normalised as RFC 3986 §6.2 asks.

use std::net::Ipv6Addr;

use http::header;
use http::uri::Scheme;
use http::HeaderMap;

/// Why a request's host cannot be served.
pub const BAD_HOST: &str = "the Host is not a valid host[:port]";

/// Checks the host a request names, as RFC 9112 §3.2 asks of a server: one
/// `Host` line, present on HTTP/1.1 and HTTP/2 unless the target's authority
/// (HTTP/2's `:authority`) names the host; it and that authority a valid
/// `host[:port]` with no user info. Over HTTP/2 a `Host` that names another
/// host than `:authority` makes the request malformed (RFC 9113, 8.3.1):
/// the CMS would be told one and a framework behind it might read the other.
pub fn check_host(
    version: http::Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let authority = match uri.authority() {
        Some(authority) => Some(host_and_port(authority.as_str().as_bytes()).ok_or(BAD_HOST)?),
        None => None,
    };
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("more than one Host"),
        (Some(host), None) => Some(host_and_port(host.as_bytes()).ok_or(BAD_HOST)?),
        (None, _) => None,
    };
    match (authority, host) {
        (Some(authority), Some(host))
            if version == http::Version::HTTP_2 && !same_host(uri.scheme(), authority, host) =>
        {
            Err("the Host differs from :authority")
        }
        (None, None) if version >= http::Version::HTTP_11 => Err("no Host"),
        _ => Ok(()),
    }
}

/// A `host[:port]`, split: the host's text and the port, if one is written
/// (`a.example:` writes none, RFC 3986 §3.2.3).
type HostAndPort<'a> = (&'a [u8], Option<u16>);

/// Whether two hosts are one under `scheme`, normalised as RFC 3986 §6.2.2
/// and §6.2.3 ask: names alike in any case, IPv6 addresses alike as
/// addresses, and a port the scheme implies the same as none, so that
/// `a.example` and `A.example:443` are one host over https.
fn same_host(scheme: Option<&Scheme>, one: HostAndPort, other: HostAndPort) -> bool {
    let implied = match scheme {
        Some(scheme) if *scheme == Scheme::HTTPS => Some(443),
        Some(scheme) if *scheme == Scheme::HTTP => Some(80),
        _ => None,
    };
    let port = |port: Option<u16>| port.filter(|&port| Some(port) != implied);
    let names_alike = match (ipv6_literal(one.0), ipv6_literal(other.0)) {
        (Some(one), Some(other)) => one == other,
        _ => one.0.eq_ignore_ascii_case(other.0),
    };
    names_alike && port(one.1) == port(other.1)
}

/// The address of a host written `[IPv6 address]`.
fn ipv6_literal(name: &[u8]) -> Option<Ipv6Addr> {
    let inner = name.strip_prefix(b"[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// `value` split as `host[:port]`, or `None` when it is not one: a name of
/// letters, digits, `-`, `.` and `_` (DNS names and IPv4 addresses), or an
/// IPv6 address in brackets; then an optional port of at most five digits,
/// no more than 65535.
fn host_and_port(value: &[u8]) -> Option<HostAndPort<'_>> {
    let name_end = if let Some(rest) = value.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        ipv6_literal(&value[..close + 2])?;
        close + 2
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let name = &value[..end];
        let name_ok = !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !name_ok {
            return None;
        }
        end
    };
    let (name, port) = value.split_at(name_end);
    let port = match port {
        [] | [b':'] => None,
        [b':', digits @ ..] => {
            if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let number = digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(number).ok()?)
        }
        _ => return None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

    fn is_host_and_port(value: &[u8]) -> bool {
        host_and_port(value).is_some()
    }

    #[test]
    fn only_a_valid_host_and_port_is_a_host() {
        for good in [
            "example.com",
            "www.site.example:8080",
            "127.0.0.1:65535",
            "[::1]",
            "[2001:db8::7]:443",
            "internal_host",
            "example.com.",
        ] {
            assert!(is_host_and_port(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "a b",
            "user@example.com",
            "example.com:80:80",
            "example.com:65536",
            "example.com:123456",
            "example.com:8o",
            "[::1",
            "[zz::1]",
            "[::1]80",
            "example.com/path",
            "evil.example,good.example",
            "ex%41mple.com",
            "example.com;x",
        ] {
            assert!(!is_host_and_port(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_request_names_one_valid_host() {
        let uri: http::Uri = "/a".parse().unwrap();
        let v11 = http::Version::HTTP_11;
        assert!(check_host(v11, &uri, &map(&[("host", "site.example")])).is_ok());
        assert!(check_host(v11, &uri, &map(&[("host", "a b")])).is_err());
        assert!(check_host(v11, &uri, &HeaderMap::new()).is_err());
        assert!(check_host(http::Version::HTTP_10, &uri, &HeaderMap::new()).is_ok());
        let twice = map(&[("host", "a.example"), ("host", "b.example")]);
        assert!(check_host(v11, &uri, &twice).is_err());
        let absolute: http::Uri = "http://site.example/a".parse().unwrap();
        assert!(check_host(v11, &absolute, &HeaderMap::new()).is_ok());
        let with_user: http::Uri = "http://me@site.example/a".parse().unwrap();
        assert!(check_host(http::Version::HTTP_2, &with_user, &HeaderMap::new()).is_err());
        // HTTP/2 with neither :authority nor Host: no host to send the CMS.
        let v2 = http::Version::HTTP_2;
        assert_eq!(check_host(v2, &uri, &HeaderMap::new()), Err("no Host"));
        assert!(check_host(v2, &uri, &map(&[("host", "site.example")])).is_ok());
        assert!(check_host(v2, &absolute, &HeaderMap::new()).is_ok());
        // Both: they must name the same host, in any case.
        let same = map(&[("host", "SITE.example")]);
        assert!(check_host(v2, &absolute, &same).is_ok());
        let other = map(&[("host", "other.example")]);
        assert_eq!(
            check_host(v2, &absolute, &other),
            Err("the Host differs from :authority")
        );
        let other_port = map(&[("host", "site.example:8080")]);
        assert!(check_host(v2, &absolute, &other_port).is_err());
        // An absolute-form HTTP/1.1 target wins over Host (RFC 9112, 3.2.2).
        assert!(check_host(v11, &absolute, &other).is_ok());
    }

    #[test]
    fn host_and_authority_are_compared_as_normalised() {
        let v2 = http::Version::HTTP_2;
        let check = |authority: &str, host: &str| {
            let uri: http::Uri = format!("{authority}/a").parse().unwrap();
            check_host(v2, &uri, &map(&[("host", host)]))
        };
        for (authority, host) in [
            ("https://site.example", "site.example:443"),
            ("https://site.example:443", "SITE.example"),
            ("https://site.example:", "site.example"),
            ("https://site.example:0443", "site.example"),
            ("http://site.example:80", "site.example"),
            ("http://site.example:8080", "site.example:8080"),
            ("https://[2001:db8::7]", "[2001:DB8:0::7]:443"),
            ("http://127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(check(authority, host), Ok(()), "{authority} / {host}");
        }
        for (authority, host) in [
            // Only the port the scheme implies goes without saying.
            ("https://site.example", "site.example:80"),
            ("http://site.example", "site.example:443"),
            ("https://site.example:8443", "site.example"),
            ("http://site.example:8080", "site.example:8081"),
            ("https://site.example", "site.example.other"),
            ("https://[2001:db8::7]", "[2001:db8::8]"),
            ("https://[::1]", "0.0.0.1"),
        ] {
            assert_eq!(
                check(authority, host),
                Err("the Host differs from :authority"),
                "{authority} / {host}"
            );
        }
    }
}
