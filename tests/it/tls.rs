//! TLS termination: real rustls clients that trust a CA of the test's own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::common::*;

/// A CA and a certificate (`server.pem`, `server.key`) in the gate's dir, before it starts.
fn certificates(dir: &Path) {
    make_ca(dir);
    make_leaf(dir, "server", "rsa");
}

/// [`certificates`] in `dir`, and the server's certificate and key as text.
fn certified(dir: &Path) -> (String, String) {
    certificates(dir);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    (read("server.pem"), read("server.key"))
}

/// The standard config over TLS with `server.pem` and `server.key`; `lines` go into `[server.tls]`.
fn tls_config(cms: SocketAddr, lines: &str) -> String {
    let text = with_setting(config_text(cms, ""), "server", "header_timeout = \"1s\"");
    format!("{text}\n[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n{lines}\n")
}

/// A gateway serving TLS under [`tls_config`], and the folder of its CA.
async fn tls_gate(cms: &Cms) -> (Gate, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    let gate = Gate::start_with(
        &tls_config(cms.addr, ""),
        &[("server.pem", &cert), ("server.key", &key)],
    )
    .await;
    (gate, dir)
}

/// A TLS connection to `addr` trusting `ca.pem` in `dir`, offering `alpn`.
async fn connect(addr: SocketAddr, dir: &Path, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    connect_as(addr, dir, alpn, "127.0.0.1").await
}

/// As [`connect`], asking for the server name `name` (SNI).
async fn connect_as(
    addr: SocketAddr,
    dir: &Path,
    alpn: &[&[u8]],
    name: &str,
) -> TlsStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    connector(dir, alpn)
        .connect(ServerName::try_from(name.to_string()).unwrap(), stream)
        .await
        .expect("TLS handshake")
}

/// A TLS client trusting `ca.pem` in `dir`, offering `alpn`.
fn connector(dir: &Path, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

fn leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// GETs `path` over an HTTP/1.1 connection on `stream`.
async fn get_h1(stream: TlsStream<TcpStream>, path: &str) -> (u16, String) {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn https_serves_http1_and_http2_by_alpn_and_tells_the_cms_it_was_https() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let (gate, dir) = tls_gate(&cms).await;

    let h1 = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get_h1(h1, "/public/a").await, (200, "page".to_string()));
    assert_eq!(cms.requests()[0].headers["x-forwarded-proto"], "https");

    let h2 = connect(gate.addr, dir.path(), &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("https://127.0.0.1/videos/a")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 403, "gated over HTTP/2 as well");
    assert_eq!(response.version(), http::Version::HTTP_2);

    // Cleartext on the TLS port gets nothing served.
    let plain = raw(gate.addr, b"GET /public/a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!String::from_utf8_lossy(&plain).contains("page"));
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections_and_a_bad_one_keeps_the_last() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    make_leaf(dir.path(), "renewed", "ec");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let gate = Gate::start_with(
        &format!(
            "{}\n[reload]\ninterval = \"50ms\"\n",
            tls_config(cms.addr, "")
        ),
        &[("server.pem", &cert), ("server.key", &key)],
    )
    .await;
    let first = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    let old_leaf = leaf(&first);
    let (mut open, connection) = hyper::client::conn::http1::handshake(TokioIo::new(first))
        .await
        .unwrap();
    tokio::spawn(connection);

    // The renewed pair replaces the files in place, key first.
    std::fs::write(gate.dir.path().join("server.key"), read("renewed.key")).unwrap();
    std::fs::write(gate.dir.path().join("server.pem"), read("renewed.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let renewed_leaf = loop {
        let stream = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
        if leaf(&stream) != old_leaf {
            break leaf(&stream);
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The connection opened before the renewal goes on.
    let request = http::Request::get("/public/a")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(open.send_request(request).await.unwrap().status(), 200);

    // A broken certificate file keeps the renewed one in force.
    std::fs::write(gate.dir.path().join("server.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stream = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    assert_eq!(leaf(&stream), renewed_leaf);
    assert_eq!(get_h1(stream, "/public/a").await.0, 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let (gate, _ca) = tls_gate(&cms).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(gate.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "after header_timeout"
    );
}

#[tokio::test]
async fn the_handshake_and_the_first_request_head_share_header_timeout() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let (gate, dir) = tls_gate(&cms).await;
    let started = Instant::now();
    let tcp = TcpStream::connect(gate.addr).await.unwrap();
    // Silent for most of header_timeout (1 s), then a quick handshake and no
    // request: closed when header_timeout has passed since the connection's
    // start, not a whole header_timeout after the handshake (1.8 s).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let name = ServerName::try_from("127.0.0.1".to_string()).unwrap();
    let mut stream = connector(dir.path(), &[b"http/1.1"])
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert!(closed_by_server(&mut stream).await, "closed");
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_millis(1600),
        "closed {closed_after:?} after the connection's start"
    );
}

/// A TLS config with a redirect listener that lets ACME challenges through;
/// they are served like any request: through the route table.
fn acme_config(cms: SocketAddr) -> String {
    tls_config(
        cms,
        "redirect_listen = \"127.0.0.1:0\"\nredirect_except = \"/.well-known/acme-challenge/\"",
    )
    .replacen(
        "[[route]]",
        "[[route]]\nprefix = \"/.well-known/acme-challenge/\"\naccess = \"public\"\n\n[[route]]",
        1,
    )
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_except_acme_challenges() {
    let cms = Cms::fixed(Reply::html("challenge-token")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    let config = acme_config(cms.addr);
    let gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;
    let plain = gate.redirect.expect("a redirect listener");
    let moved = get(&format!("http://{plain}/videos/a?x=1"), None).await;
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.headers["location"],
        format!("https://127.0.0.1:{}/videos/a?x=1", gate.addr.port()).as_str()
    );
    assert!(cms.requests().is_empty());
    let challenge = get(
        &format!("http://{plain}/.well-known/acme-challenge/abc"),
        None,
    )
    .await;
    assert_eq!(challenge.status, 200);
    assert_eq!(challenge.text(), "challenge-token");
    assert_eq!(cms.requests()[0].headers["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_challenges_are_served_until_a_restart_after_a_reload_drops_the_redirect() {
    let cms = Cms::fixed(Reply::html("challenge-token")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    let reloading = "\n[reload]\ninterval = \"50ms\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let config = format!("{}{reloading}", acme_config(cms.addr));
    let gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;
    let plain = gate.redirect.expect("a redirect listener");
    let challenge = format!("http://{plain}/.well-known/acme-challenge/abc");
    assert_eq!(get(&challenge, None).await.status, 200);
    // The listener only goes at a restart, and serves as it was started.
    let redirect_lines =
        "redirect_listen = \"127.0.0.1:0\"\nredirect_except = \"/.well-known/acme-challenge/\"";
    assert!(config.contains(redirect_lines));
    std::fs::write(gate.config_path(), config.replacen(redirect_lines, "", 1)).unwrap();
    scrape_until(&gate, "embedgate_reloads_total{result=\"ok\"}", 1.0).await;
    assert_eq!(
        get(&challenge, None).await.status,
        200,
        "redirected after the reload"
    );
    let other = get(&format!("http://{plain}/videos/a"), None).await;
    assert_eq!(other.status, 308);
}

#[tokio::test]
async fn the_redirect_listener_closes_silent_and_slow_connections() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    // header_timeout is 1 s here (`tls_config`); the idle limit is 60 s.
    let config = tls_config(cms.addr, "redirect_listen = \"127.0.0.1:0\"");
    let gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;
    let plain = gate.redirect.expect("a redirect listener");
    assert_waiting_connections_are_closed(
        plain,
        "GET /videos/a HTTP/1.1\r\nHost: x\r\n\r\n",
        "308 Permanent Redirect",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_redirect_listener_holds_to_the_connection_and_head_limits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    let text = with_setting(
        with_setting(
            config_text(cms.addr, ""),
            "server",
            "max_connections_per_ip = 2",
        ),
        "server",
        "max_header_bytes = 8192",
    );
    let config = format!(
        "{text}\n[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nredirect_listen = \"127.0.0.1:0\"\n"
    );
    let gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;
    let plain = gate.redirect.expect("a redirect listener");
    let request = b"GET /videos/a HTTP/1.1\r\nHost: x\r\n\r\n";

    // Two held open from loopback: the third from the same address is closed unread.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(plain).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 308");
        held.push(stream);
    }
    let refused = raw(plain, request).await;
    assert!(
        refused.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&refused)
    );
    // The TLS listener counts its own connections.
    let stream = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    assert_eq!(get_h1(stream, "/public/a").await.0, 200);

    // Places freed are taken again; a head over the limit is refused as on
    // the TLS listener.
    held.clear();
    let padded = format!(
        "GET /videos/a HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw_once_admitted(plain, padded.as_bytes()).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
}

#[test]
fn rsa_pkcs1_and_sec1_keys_load_and_a_bad_certificate_names_its_place() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    for (name, key) in [("pkcs8", "rsa"), ("pkcs1", "rsa-pkcs1"), ("sec1", "ec")] {
        make_leaf(dir.path(), name, key);
        let settings = embedgate::server::tls::TlsSettings {
            certs: vec![embedgate::server::tls::NamedCert {
                names: Vec::new(),
                cert: dir.path().join(format!("{name}.pem")),
                key: dir.path().join(format!("{name}.key")),
            }],
            redirect: None,
        };
        embedgate::server::tls::server_config(&settings).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let text = tls_config("127.0.0.1:9".parse().unwrap(), "");
    let config = dir.path().join("gateway.toml");
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    std::fs::write(dir.path().join("server.pem"), "garbage").unwrap();
    std::fs::copy(dir.path().join("pkcs8.key"), dir.path().join("server.key")).unwrap();
    std::fs::write(&config, &text).unwrap();
    let err = build_runtime(&config).unwrap_err().to_string();
    let line = text[..text.find("cert = \"server.pem\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert!(
        err.contains(&format!(
            "gateway.toml:{line}:8: server.tls.cert: certificate"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn sni_picks_between_certificates_and_the_first_is_the_default() {
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "server", "rsa");
    make_leaf_for(
        dir.path(),
        "shop",
        "ec",
        "DNS:shop.example,DNS:*.shop.example",
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let files = [
        ("server.pem", read("server.pem")),
        ("server.key", read("server.key")),
        ("shop.pem", read("shop.pem")),
        ("shop.key", read("shop.key")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let text = with_setting(
        config_text(cms.addr, ""),
        "server",
        "header_timeout = \"1s\"",
    );
    let text = format!(
        "{text}\n[[server.tls.cert]]\nnames = []\ncert = \"server.pem\"\nkey = \"server.key\"\n\n[[server.tls.cert]]\nnames = [\"shop.example\", \"*.shop.example\"]\ncert = \"shop.pem\"\nkey = \"shop.key\"\n"
    );
    let gate = Gate::start_with(&text, &files).await;
    let default = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    for name in ["shop.example", "www.shop.example"] {
        let shop = connect_as(gate.addr, dir.path(), &[b"http/1.1"], name).await;
        assert_ne!(leaf(&shop), leaf(&default), "{name}");
        assert_eq!(get_h1(shop, "/public/a").await.0, 200);
    }
    assert_eq!(get_h1(default, "/public/a").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_the_redirect_listener_with_the_main_one() {
    use tokio::io::AsyncWriteExt;
    // The CMS answers the challenge only when released: in flight at shutdown.
    let cms = Cms::held("text/plain", b"challenge-", b"token").await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    // Longer than `closed_by_server` waits: only shutdown closes them.
    let config =
        acme_config(cms.addr).replacen("header_timeout = \"1s\"", "header_timeout = \"30s\"", 1);
    let mut gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;
    let plain = gate.redirect.expect("a redirect listener");
    let url = format!("http://{plain}/.well-known/acme-challenge/abc");
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    cms.wait_for_a_request().await;
    // One connection kept alive after its redirect, one that never spoke.
    let mut kept = TcpStream::connect(plain).await.unwrap();
    kept.write_all(b"GET /videos/a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut kept).await.expect("a redirect");
    assert!(head.starts_with(b"HTTP/1.1 308"), "{head:?}");
    let mut silent = TcpStream::connect(plain).await.unwrap();

    gate.shutdown();
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(plain).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the redirect listener stops accepting");
    assert!(
        closed_by_server(&mut kept).await,
        "the kept-alive connection"
    );
    assert!(closed_by_server(&mut silent).await, "the silent connection");
    let task = gate.task.take().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the gateway waits for the challenge");
    cms.release_rest();
    let answered = in_flight.await.unwrap();
    assert_eq!(answered.status, 200);
    assert_eq!(answered.text(), "challenge-token");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the gateway stops once every listener is drained")
        .unwrap();
}

/// Waits (up to 5 s) until `embedgate_tls_handshake_failures_total` for `reason` reads `count`.
async fn assert_handshake_failures(gate: &Gate, reason: &str, count: f64) {
    let series = format!("embedgate_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    scrape_until(gate, &series, count).await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_answered_400_and_each_failed_handshake_counted() {
    use tokio::io::AsyncWriteExt;
    let cms = Cms::fixed(Reply::html("page")).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certified(dir.path());
    let config = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        tls_config(cms.addr, "")
    );
    let gate = Gate::start_with(&config, &[("server.pem", &cert), ("server.key", &key)]).await;

    // A request head in two pieces, and a body after it that the gateway
    // never reads as a request: the answer arrives whole, then the close.
    let mut plain = TcpStream::connect(gate.addr).await.unwrap();
    plain
        .write_all(b"POST /public/a HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    plain
        .write_all(b"Host: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer),
    )
    .await
    .expect("closed after the answer");
    assert!(read.is_ok(), "{read:?}: closed cleanly, not reset");
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("this port speaks HTTPS, not plain HTTP. Use https.\n"),
        "{answer}"
    );
    assert!(cms.requests().is_empty(), "nothing reached the CMS");
    // Counted once the client has closed too.
    drop(plain);
    assert_handshake_failures(&gate, "plain_http", 1.0).await;

    // Whatever does not begin as TLS is taken for plain HTTP, as nginx takes it.
    let lowercase = raw(gate.addr, b"\r\nget /public/a HTTP/1.1\r\n\r\n").await;
    assert!(lowercase.starts_with(b"HTTP/1.1 400 "), "{lowercase:?}");
    assert_handshake_failures(&gate, "plain_http", 2.0).await;
    // A ClientHello of one byte: a TLS alert (21), and the close.
    let refused = raw(gate.addr, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff").await;
    assert_eq!(refused.first(), Some(&21), "{refused:?}");
    assert_handshake_failures(&gate, "refused", 1.0).await;
    // A client that connects and goes without a word is nobody's concern.
    drop(TcpStream::connect(gate.addr).await.unwrap());
    // One that says nothing is closed at header_timeout (1 s), and counted.
    let mut silent = TcpStream::connect(gate.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "closed");
    assert_handshake_failures(&gate, "timeout", 1.0).await;
    assert_handshake_failures(&gate, "refused", 1.0).await;

    // TLS itself is served as before.
    let stream = connect(gate.addr, dir.path(), &[b"http/1.1"]).await;
    assert_eq!(get_h1(stream, "/public/a").await, (200, "page".to_string()));
    assert_handshake_failures(&gate, "plain_http", 2.0).await;
}

#[test]
fn what_a_client_sends_as_its_server_name_puts_no_line_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cms = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = tls_config(cms.local_addr().unwrap(), "");
    std::fs::write(dir.path().join("allowlist.txt"), format!("{MEMBER}\n")).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let mut gateway = Running::spawn(std::process::Command::new(BIN).arg("--config").arg(&path));
    let url = listening_url(&gateway.wait_for("listening on"));
    let addr = url.trim_start_matches("https://").to_string();
    // An IP address sent as the server name, which rustls warns of.
    let handshake = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-servername", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (run scripts/test.sh)");
    let said = String::from_utf8_lossy(&handshake.stdout);
    assert!(said.contains("BEGIN CERTIFICATE"), "a handshake: {said}");
    let output = gateway.terminate();
    assert!(!output.contains("SNI"), "{output}");
    assert!(!output.contains("WARN"), "{output}");
}
