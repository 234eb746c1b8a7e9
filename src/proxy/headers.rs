//! Header hygiene between visitor, gateway and CMS.
//!
//! RFC 9110 §7.6.1: a proxy removes the `Connection` header, every header it
//! names, and the hop-by-hop headers that apply only to one connection, in
//! both directions. `Set-Cookie` and other repeated headers are never joined:
//! `HeaderMap` keeps each value separate and nothing here merges them.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

/// Headers that only mean something on one connection. (`Trailer` is
/// end-to-end in RFC 9110 and trailers are forwarded, so it stays.)
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes `Connection`, the headers it names, and the fixed hop-by-hop set.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Request headers some frameworks take as the real path: the gate judged
/// the request line, so the CMS must not be told another path.
const ROUTE_OVERRIDES: [HeaderName; 2] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Removes headers that would let the CMS route a request elsewhere than the gate judged.
pub fn remove_route_overrides(headers: &mut HeaderMap) {
    for name in &ROUTE_OVERRIDES {
        headers.remove(name);
    }
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Sets `X-Forwarded-Proto` and `X-Forwarded-Host`, and `X-Forwarded-For`:
/// appended to the visitor's chain when `trust` (a trusted proxy is in
/// front), else replaced, together with `Forwarded` and `X-Real-IP`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
    trust: bool,
) {
    let mut chain = String::new();
    if trust {
        // Earlier hops may have sent several X-Forwarded-For lines: fold them into one list.
        for value in headers.get_all(&XFF) {
            if let Ok(text) = value.to_str() {
                chain.push_str(text.trim());
                chain.push_str(", ");
            }
        }
    } else {
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    let _ = write!(chain, "{client}");
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(XFF, value);
    }
    headers.insert(XFP, HeaderValue::from_static(proto));
    match host {
        Some(host) => {
            headers.insert(XFH, host);
        }
        None => {
            headers.remove(XFH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_all_hop_headers_case_insensitively() {
        let mut h = map(&[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("connection", "Upgrade"),
            ("Keep-Alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Connection", "close"),
            ("Content-Type", "text/html"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn keeps_repeated_set_cookie_headers_apart() {
        let mut h = map(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("connection", "close"),
        ]);
        remove_hop_by_hop(&mut h);
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn appends_to_an_existing_forwarded_for_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        add_forwarded(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            "http",
            Some(HeaderValue::from_static("site.example")),
            true,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "site.example");
    }

    #[test]
    fn replaces_forwarding_headers_a_visitor_could_forge_when_not_trusted() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
        ]);
        add_forwarded(&mut h, "::1".parse().unwrap(), "http", None, false);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        for gone in ["x-forwarded-host", "forwarded", "x-real-ip"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn removes_headers_that_would_reroute_the_request() {
        let mut h = map(&[
            ("x-original-url", "/videos/x"),
            ("X-Rewrite-URL", "/videos/x"),
            ("x-kept", "1"),
        ]);
        remove_route_overrides(&mut h);
        assert_eq!(h.len(), 1);
    }
}
