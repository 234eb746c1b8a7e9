//! How a visitor's request is prepared for the CMS: forwarding headers, ranges and validators, the target.

use super::*;

fn settings() -> UpstreamSettings {
    UpstreamSettings {
        scheme: Scheme::HTTP,
        authority: Authority::from_static("cms:8081"),
        host_header: HeaderValue::from_static("cms:8081"),
        base_path: String::new(),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        preserve_host: true,
        underscores_in_headers: false,
        pool_idle_timeout: Duration::from_secs(1),
        pool_max_idle: 1,
        tls: tls::UpstreamTls::default(),
        http2: false,
        max_in_flight: 0,
        max_uploads_in_flight: 0,
        max_uploads_per_client: 0,
        client_prefix: crate::client::ClientPrefix::default(),
        queue_timeout: Duration::from_secs(1),
    }
}

fn forwarded_proto(tls: bool) -> HeaderValue {
    let (mut parts, ()) = Request::get("/x").body(()).unwrap().into_parts();
    let conn = ConnectionInfo {
        peer: "192.0.2.7:5000".parse().unwrap(),
        tls,
    };
    prepare_request(&mut parts, &settings(), conn, false, false).unwrap();
    assert_eq!(parts.headers["x-forwarded-for"], "192.0.2.7");
    parts.headers["x-forwarded-proto"].clone()
}

#[test]
fn the_forwarded_proto_is_the_visitors_connection() {
    assert_eq!(forwarded_proto(false), "http");
    assert_eq!(forwarded_proto(true), "https");
}

/// The CMS request head for `request` on a gated route.
fn gated(request: http::request::Builder) -> http::HeaderMap {
    let (mut parts, ()) = request.body(()).unwrap().into_parts();
    let conn = ConnectionInfo {
        peer: "192.0.2.7:5000".parse().unwrap(),
        tls: false,
    };
    prepare_request(&mut parts, &settings(), conn, true, false).unwrap();
    parts.headers
}

#[test]
fn one_range_on_a_get_or_head_reaches_the_cms_with_its_if_range() {
    for method in ["GET", "HEAD"] {
        let headers = gated(
            Request::builder()
                .method(method)
                .uri("/videos/clip.mp4")
                .header("range", "bytes=100-")
                .header("if-range", "\"v1\""),
        );
        assert_eq!(headers["range"], "bytes=100-", "{method}");
        assert_eq!(headers["if-range"], "\"v1\"", "{method}");
    }
}

#[test]
fn other_ranges_and_every_validator_of_a_cached_copy_are_dropped() {
    let dropped = |request: http::request::Builder| {
        let headers = gated(request);
        (
            headers.contains_key(header::RANGE),
            headers.contains_key(header::IF_RANGE),
        )
    };
    let asked = |method: &str, ranges: &[&str]| {
        let mut request = Request::builder()
            .method(method)
            .uri("/videos/x")
            .header("if-range", "\"v1\"");
        for range in ranges {
            request = request.header("range", *range);
        }
        request
    };
    assert_eq!(dropped(asked("GET", &["bytes=0-9,20-29"])), (false, false));
    assert_eq!(
        dropped(asked("GET", &["bytes=0-9", "bytes=20-29"])),
        (false, false)
    );
    assert_eq!(dropped(asked("POST", &["bytes=0-9"])), (false, false));
    assert_eq!(dropped(asked("PUT", &["bytes=0-9"])), (false, false));
    assert_eq!(dropped(asked("GET", &[])), (false, false), "If-Range alone");
    let headers = gated(
        Request::get("/videos/x")
            .header("if-none-match", "\"v1\"")
            .header("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT")
            .header("accept-encoding", "br, gzip"),
    );
    assert!(!headers.contains_key(header::IF_NONE_MATCH));
    assert!(!headers.contains_key(header::IF_MODIFIED_SINCE));
    assert_eq!(headers[header::ACCEPT_ENCODING], "identity");
}

#[test]
fn the_cms_is_asked_for_the_path_and_query_and_by_name_where_http2_may_be_spoken() {
    let target = |settings: &UpstreamSettings, uri: &str, host: &str| {
        let uri: Uri = uri.parse().unwrap();
        let host = HeaderValue::from_str(host).unwrap();
        cms_target(&uri, &host, settings).unwrap().to_string()
    };
    let plain = settings();
    assert_eq!(target(&plain, "/a/b?c=1", "site"), "/a/b?c=1");
    assert_eq!(target(&plain, "http://other/a?c", "site"), "/a?c");
    let based = UpstreamSettings {
        base_path: "/cms".into(),
        ..settings()
    };
    assert_eq!(target(&based, "/a?c=1", "site"), "/cms/a?c=1");
    let http2 = UpstreamSettings {
        scheme: Scheme::HTTPS,
        http2: true,
        ..based
    };
    assert_eq!(
        target(&http2, "/a?c=1", "site:8443"),
        "https://site:8443/cms/a?c=1"
    );
    assert_eq!(
        target(&http2, "/a", "user@site"),
        "https://cms:8081/cms/a",
        "a host that is no plain authority names the upstream"
    );
}

#[test]
fn on_public_routes_every_range_and_validator_passes() {
    let (mut parts, ()) = Request::post("/public/x")
        .header("range", "bytes=0-9,20-29")
        .header("if-range", "\"v1\"")
        .header("if-none-match", "\"v1\"")
        .body(())
        .unwrap()
        .into_parts();
    let conn = ConnectionInfo {
        peer: "192.0.2.7:5000".parse().unwrap(),
        tls: false,
    };
    prepare_request(&mut parts, &settings(), conn, false, false).unwrap();
    assert_eq!(parts.headers["range"], "bytes=0-9,20-29");
    assert_eq!(parts.headers["if-range"], "\"v1\"");
    assert_eq!(parts.headers["if-none-match"], "\"v1\"");
}
