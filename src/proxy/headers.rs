//! Header hygiene between visitor, gateway and CMS.
//!
//! RFC 9110 §7.6.1: a proxy removes the `Connection` header, every header it
//! names, and the hop-by-hop headers that apply only to one connection, in
//! both directions. `Set-Cookie` and other repeated headers are never joined:
//! `HeaderMap` keeps each value separate and nothing here merges them.

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

/// Whether `name` only means something on one connection. (`Trailer` is
/// end-to-end in RFC 9110, so it stays; the CMS's trailers are dropped,
/// though, and its `Trailer` with them, see [`crate::body::ReadLimit`].)
/// `HTTP2-Settings` belongs to an `Upgrade: h2c` on one connection (RFC 7540
/// §3.2.1); over HTTP/2 a client may send it unnamed by any `Connection`.
///
/// The name's text is matched once: comparing it with each name of a list
/// cost every proxied message about 400 instructions (callgrind), twice
/// per request.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "http2-settings"
    )
}

/// Removes `Connection`, the headers it names, and the fixed hop-by-hop set.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually none is there, `Connection` included: one pass finds out.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
    remove_where(headers, is_hop_by_hop);
}

/// Why the CMS's response head cannot be passed on as it is framed, if it
/// cannot: a `Transfer-Encoding` other than `chunked` alone (the coding
/// would be lost with the header, leaving a body nobody can read), or one
/// beside a `Content-Length` (RFC 9112 §6.3: the two disagree on where the
/// body ends). nginx refuses both from a backend too.
pub fn response_framing_fault(headers: &HeaderMap) -> Option<&'static str> {
    if !headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    if !only_chunked(headers) {
        return Some("a Transfer-Encoding other than chunked");
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    None
}

/// Whether a request's body comes in a transfer coding other than chunked
/// (`gzip, chunked`, or `gzip` and `chunked` on two lines), which the
/// gateway cannot pass on: it answers 501, as RFC 9112 §6.1 asks and nginx does.
pub fn unknown_request_coding(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) && !only_chunked(headers)
}

// Whether every `Transfer-Encoding` line together names `chunked` alone.
fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    codings
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Removes each of `names` from `headers`.
pub fn remove_all(headers: &mut HeaderMap, names: &[HeaderName]) {
    // Usually none is there: one pass over the message's few names costs
    // less than a hashed lookup for each of ours.
    if headers.keys().any(|key| names.contains(key)) {
        for name in names {
            headers.remove(name);
        }
    }
}

/// Gives the values in `headers` bytes of their own, all in one allocation.
///
/// Values parsed from the CMS's answer are views into the buffer its
/// connection read them into, up to 400 KB. An HTTP/2 connection
/// keeps the fields it sends in its HPACK table for as long as it lives, so
/// each idle HTTP/2 visitor would keep a whole read buffer.
pub fn own_values(headers: &mut HeaderMap) {
    let mut store = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        store.extend_from_slice(value.as_bytes());
    }
    let store = store.freeze();
    let mut start = 0;
    for value in headers.values_mut() {
        let end = start + value.len();
        // The same bytes, so valid again; were they not, the view stays.
        if let Ok(mut owned) = HeaderValue::from_maybe_shared(store.slice(start..end)) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
        start = end;
    }
}

/// Sets `Cache-Control` and removes every header a cache in front would
/// obey instead of it: `Expires`, `Surrogate-Control`, `Edge-Control`,
/// `X-Accel-Expires`, and every targeted cache control (RFC 9213), which
/// its cache reads in place of `Cache-Control`: `CDN-Cache-Control` and the
/// vendors' own, such as `Akamai-Cache-Control` or `Cloudflare-CDN-Cache-Control`.
pub fn set_cache_control(headers: &mut HeaderMap, value: HeaderValue) {
    static OVERRIDES: [HeaderName; 4] = [
        header::EXPIRES,
        HeaderName::from_static("surrogate-control"),
        HeaderName::from_static("edge-control"),
        HeaderName::from_static("x-accel-expires"),
    ];
    remove_all(headers, &OVERRIDES);
    remove_where(headers, |name| name.as_str().ends_with("-cache-control"));
    headers.insert(header::CACHE_CONTROL, value);
}

/// Whether an HTTP/2 request's `:path` is "/..." or "*" (RFC 9113, 8.3.1):
/// the h2 crate takes "?a=1" alone, which would read as "/?a=1".
pub fn check_http2_path(uri: &http::Uri) -> Result<(), &'static str> {
    let path = uri.path_and_query().map_or("", |target| target.as_str());
    if path.starts_with('/') || path == "*" {
        Ok(())
    } else {
        Err("the :path does not begin with /")
    }
}

/// What makes an HTTP/2 request's fields malformed that the h2 crate lets
/// through. An intermediary must not forward such a request (RFC 9113,
/// 8.1.1); over HTTP/1.1, hyper's parser refuses or trims each of these.
/// Equal `Content-Length` fields, which HTTP/1.1's parser merges, are
/// merged here too (the h2 crate has refused unequal ones).
pub fn check_http2_fields(headers: &mut HeaderMap) -> Result<(), &'static str> {
    if headers
        .keys()
        .any(|name| !name.as_str().bytes().all(crate::syntax::is_token))
    {
        return Err("a header name is not a token");
    }
    let blank = |byte: Option<&u8>| matches!(byte, Some(b' ' | b'\t'));
    if headers.values().any(|value| {
        let bytes = value.as_bytes();
        blank(bytes.first()) || blank(bytes.last())
    }) {
        return Err("a header value begins or ends with a space or tab");
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let (Some(first), Some(second)) = (lengths.next(), lengths.next()) {
        if second != first || lengths.any(|length| length != first) {
            return Err("Content-Length fields disagree");
        }
        let first = first.clone();
        headers.insert(header::CONTENT_LENGTH, first);
    }
    Ok(())
}

/// Request headers some frameworks take as the real path: the gate judged
/// the request line, so the CMS must not be told another path.
static ROUTE_OVERRIDES: [HeaderName; 2] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Removes headers that would let the CMS route a request elsewhere than the gate judged.
pub fn remove_route_overrides(headers: &mut HeaderMap) {
    remove_all(headers, &ROUTE_OVERRIDES);
}

/// Removes the headers whose names hold an underscore, as nginx does by
/// default. A CGI-style server (PHP, IIS) reads `X_Forwarded_For` and
/// `X-Forwarded-For` as one variable, `HTTP_X_FORWARDED_FOR`, so such a
/// header could stand in for one the gateway sets or removes (the client's
/// address, `X-Original-URL`), whichever of the two the server keeps.
pub fn remove_underscored(headers: &mut HeaderMap) {
    remove_where(headers, |name| name.as_str().as_bytes().contains(&b'_'));
}

/// Removes every header whose name `matches`.
pub fn remove_where(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    // Looked for first: almost no message has one, and removing needs the names owned.
    if !headers.keys().any(&matches) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| matches(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_map as map;

    #[test]
    fn an_http2_request_is_refused_for_what_http1_parsing_would_refuse() {
        let check = |target: &'static str, pairs: &[(&str, &str)]| {
            let uri = http::Uri::builder()
                .scheme("http")
                .authority("site.example")
                .path_and_query(target)
                .build()
                .unwrap();
            let mut headers = map(pairs);
            check_http2_path(&uri)?;
            check_http2_fields(&mut headers).map(|()| headers)
        };
        for padded in [" a", "a ", "\ta", "a\t", " ", "\t"] {
            let got = check("/", &[("accept", "*/*"), ("x-note", padded)]);
            assert_eq!(
                got.unwrap_err(),
                "a header value begins or ends with a space or tab"
            );
        }
        // As HPACK decodes it: the token check of `from_bytes` refuses it.
        let mut quoted = HeaderMap::new();
        let name = HeaderName::from_lowercase(b"x\"a").unwrap();
        quoted.insert(name, HeaderValue::from_static("v"));
        let refused = check_http2_fields(&mut quoted);
        assert_eq!(refused.unwrap_err(), "a header name is not a token");
        let query_alone = check("?a=1", &[]);
        assert_eq!(query_alone.unwrap_err(), "the :path does not begin with /");
        let unequal = check("/", &[("content-length", "5"), ("content-length", "3")]);
        assert_eq!(unequal.unwrap_err(), "Content-Length fields disagree");
        let third = [
            ("content-length", "5"),
            ("content-length", "5"),
            ("content-length", "3"),
        ];
        assert_eq!(
            check("/", &third).unwrap_err(),
            "Content-Length fields disagree"
        );

        let equal = check("/", &[("content-length", "5"), ("content-length", "5")]).unwrap();
        let lengths: Vec<_> = equal.get_all(header::CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, ["5"]);
        let plain = [("cookie", "a=1; b=2"), ("x-empty", ""), ("x-in", "a\tb c")];
        assert_eq!(check("/p?q=1", &plain).unwrap(), map(&plain));
        assert!(check("*", &[]).is_ok());
    }

    #[test]
    fn owned_values_are_the_same_values_in_a_buffer_of_their_own() {
        let read = bytes::Bytes::from_static(b"text/html; charset=utf-8a=1; Path=/b=2");
        let mut headers = HeaderMap::new();
        let view = |range: std::ops::Range<usize>| {
            HeaderValue::from_maybe_shared(read.slice(range)).unwrap()
        };
        headers.insert(header::CONTENT_TYPE, view(0..24));
        headers.append(header::SET_COOKIE, view(24..34));
        headers.append(header::SET_COOKIE, view(34..37));
        let mut secret = HeaderValue::from_static("secret");
        secret.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, secret);
        let before = headers.clone();

        own_values(&mut headers);

        assert_eq!(headers, before);
        assert!(headers[header::AUTHORIZATION].is_sensitive());
        let within = |value: &HeaderValue| read.as_ptr_range().contains(&value.as_bytes().as_ptr());
        assert!(
            !headers.values().any(within),
            "no value is a view into the read buffer"
        );
        assert!(before.values().any(within));
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
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ("Content-Type", "text/html"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn the_hop_by_hop_set_is_matched_by_name_alone() {
        let set = [
            header::CONNECTION,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            header::TE,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::PROXY_AUTHENTICATE,
            header::PROXY_AUTHORIZATION,
            HeaderName::from_static("http2-settings"),
        ];
        for name in &set {
            assert!(is_hop_by_hop(name), "{name}");
            let upper = HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes()).unwrap();
            assert!(is_hop_by_hop(&upper), "{name} read in capitals");
        }
        for other in [
            "content-type",
            "connections",
            "t",
            "tes",
            "x-upgrade",
            "trailer",
            "host",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(other)), "{other}");
        }
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
    fn a_response_framed_two_ways_or_in_an_unknown_coding_cannot_be_passed_on() {
        const BOTH: Option<&str> = Some("both Content-Length and Transfer-Encoding");
        const CODING: Option<&str> = Some("a Transfer-Encoding other than chunked");
        let te = "transfer-encoding";
        // The headers; what a response with them is; whether a request is refused.
        for (pairs, fault, refused) in [
            (&[(te, "chunked")][..], None, false),
            (&[(te, "Chunked ")][..], None, false),
            (&[("content-length", "5")][..], None, false),
            (&[][..], None, false),
            (&[(te, "chunked"), ("content-length", "2")][..], BOTH, false),
            (&[(te, "gzip, chunked")][..], CODING, true),
            (&[(te, "gzip"), (te, "chunked")][..], CODING, true),
            (
                &[(te, "identity"), ("content-length", "2")][..],
                CODING,
                true,
            ),
            (&[(te, "chunked, chunked")][..], CODING, true),
            (&[(te, "")][..], CODING, true),
        ] {
            let h = map(pairs);
            assert_eq!(response_framing_fault(&h), fault, "{pairs:?}");
            // Hyper refuses a request framed both ways itself.
            assert_eq!(unknown_request_coding(&h), refused, "{pairs:?}");
        }
    }

    #[test]
    fn cache_control_overrides_for_caches_in_front_are_removed() {
        let mut h = map(&[
            ("cache-control", "public, max-age=600"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
            ("surrogate-control", "max-age=600"),
            ("cdn-cache-control", "max-age=600"),
            ("Cloudflare-CDN-Cache-Control", "max-age=600"),
            ("Akamai-Cache-Control", "max-age=600"),
            ("Netlify-CDN-Cache-Control", "public, durable, s-maxage=600"),
            ("edge-control", "cache-maxage=600"),
            ("x-accel-expires", "600"),
            ("x-kept", "1"),
        ]);
        set_cache_control(&mut h, HeaderValue::from_static("private, no-store"));
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["cache-control"], "private, no-store");
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

    #[test]
    fn only_headers_named_with_an_underscore_are_removed() {
        let mut headers = HeaderMap::new();
        for name in [
            "x_forwarded_for",
            "x-forwarded-for",
            "accept",
            "x-original_url",
            "_",
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        headers.append(
            HeaderName::from_static("x_forwarded_for"),
            HeaderValue::from_static("w"),
        );
        remove_underscored(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwarded-for"]);
        assert_eq!(headers.len(), 2);
    }
}
