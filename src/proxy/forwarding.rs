//! Who the request is from, as the CMS is told: `X-Forwarded-*` set by the
//! gateway, the visitor's own forwarding headers dropped unless a trusted
//! proxy sent them, and the request id.

use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

use crate::ip_text::IpText;

/// The request id header: kept from a trusted proxy, otherwise made here;
/// sent to the CMS and back to the visitor.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a proxy.
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the one a trusted proxy sent, if it is short, visible
/// ASCII; otherwise a new one.
///
/// Marked sensitive: new for every request, it gains nothing from an HPACK
/// table, so over HTTP/2 (to the visitor, or on the CMS's one shared
/// connection) it goes out as a literal never indexed instead of pushing
/// out fields that do recur.
pub fn request_id(headers: &HeaderMap, trust: bool) -> HeaderValue {
    let mut id = trust
        .then(|| headers.get(&X_REQUEST_ID))
        .flatten()
        .filter(|sent| {
            let bytes = sent.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(new_request_id);
    id.set_sensitive(true);
    id
}

/// 32 hex digits: a process-wide counter hashed with keys the OS chose at start,
/// unique within the process and not guessable from the last one.
fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&crate::unguessable::next_hex())
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Headers by which a proxy in front tells where a request came from and
/// how (beside `X-Forwarded-*` and `X-Original-*`, taken by prefix): from
/// a peer that is no trusted proxy they are the visitor's own words, and
/// frameworks take the client's address, scheme or host from them.
static FORWARDING: [HeaderName; 11] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-url-scheme"),
];

/// Removes every forwarding header a visitor could send (see `FORWARDING`).
fn remove_visitor_forwarding(headers: &mut HeaderMap) {
    super::headers::remove_where(headers, |name| {
        let text = name.as_str();
        text.starts_with("x-forwarded-")
            || text.starts_with("x-original-")
            || FORWARDING.contains(name)
    });
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
///
/// With `trust` (a trusted proxy is in front) the client is appended to the
/// `X-Forwarded-For` chain and a proto or host already set is kept; without
/// it all three are replaced and every other forwarding header is dropped
/// (`Forwarded`, `X-Real-IP`, `X-Forwarded-Port`, `X-Original-Host`, ...).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
    trust: bool,
) {
    let mut client_text = IpText::default();
    let client = client_text.format(client);
    let value = if trust && headers.contains_key(&XFF) {
        // Earlier hops may have sent several X-Forwarded-For lines: fold them into one list.
        let mut chain = String::new();
        for value in headers.get_all(&XFF) {
            if let Ok(text) = value.to_str() {
                chain.push_str(text.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(client);
        HeaderValue::from_str(&chain)
    } else {
        if !trust {
            remove_visitor_forwarding(headers);
        }
        HeaderValue::from_str(client)
    };
    if let Ok(value) = value {
        headers.insert(XFF, value);
    }
    // Behind a trusted proxy (one that terminates TLS, say) its view of
    // the scheme and host is the visitor's: keep it.
    if !(trust && headers.contains_key(&XFP)) {
        headers.insert(XFP, HeaderValue::from_static(proto));
    }
    if !(trust && headers.contains_key(&XFH)) {
        match host {
            Some(host) => {
                headers.insert(XFH, host);
            }
            None => {
                headers.remove(XFH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

    #[test]
    fn a_request_id_is_kept_from_a_trusted_proxy_only_and_made_otherwise() {
        let sent = map(&[("x-request-id", "edge-42")]);
        assert_eq!(request_id(&sent, true), "edge-42");
        assert_ne!(request_id(&sent, false), "edge-42");
        let made = request_id(&HeaderMap::new(), true);
        assert_eq!(made.len(), 32);
        assert!(made
            .to_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
        assert_ne!(made, request_id(&HeaderMap::new(), true), "each one new");
        let spaced = map(&[("x-request-id", "a b")]);
        assert_ne!(request_id(&spaced, true), "a b");
        let long = map(&[("x-request-id", &"x".repeat(200))]);
        assert_eq!(request_id(&long, true).len(), 32);
        // Never indexed by HPACK, kept or made.
        assert!(request_id(&sent, true).is_sensitive());
        assert!(made.is_sensitive());
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
        let more = [
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-server",
            "x-forwarded-uri",
            "x-original-uri",
            "x-original-host",
            "x-host",
            "x-client-ip",
            "client-ip",
            "true-client-ip",
            "x-cluster-client-ip",
            "fastly-client-ip",
            "cf-connecting-ip",
            "front-end-https",
            "x-url-scheme",
        ];
        for name in more {
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static("on"),
            );
        }
        h.insert("x-forwarded", HeaderValue::from_static("kept"));
        add_forwarded(&mut h, "::1".parse().unwrap(), "http", None, false);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        for gone in ["x-forwarded-host", "forwarded", "x-real-ip"]
            .into_iter()
            .chain(more)
        {
            assert!(!h.contains_key(gone), "{gone}");
        }
        // Only names of the family go.
        assert_eq!(h["x-forwarded"], "kept");
        // A trusted proxy's are kept.
        let mut h = map(&[("x-forwarded-port", "443"), ("true-client-ip", "1.2.3.4")]);
        add_forwarded(&mut h, "10.0.0.1".parse().unwrap(), "http", None, true);
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["true-client-ip"], "1.2.3.4");
    }

    #[test]
    fn a_trusted_proxys_proto_and_host_are_kept() {
        let mut h = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.site.example"),
        ]);
        let host = Some(HeaderValue::from_static("internal:8080"));
        add_forwarded(&mut h, "10.0.0.2".parse().unwrap(), "http", host, true);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "www.site.example");
        assert_eq!(h["x-forwarded-for"], "10.0.0.2");
    }
}
