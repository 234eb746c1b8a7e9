//! An `https://` CMS: its certificate checked against the system's roots and
//! `ca_file`, an optional fixed server name, and a refused certificate is a 502.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::common::*;

/// A CMS over TLS with the certificate `{name}.pem` in `dir`; answers "tls page".
async fn tls_cms(dir: &Path, name: &str) -> SocketAddr {
    tls_cms_with(dir, name, &[]).await.0
}

/// As [`tls_cms`], offering `alpn`, and answering with the HTTP version it
/// was asked in and the host it was asked for (`:authority`, else Host);
/// with the count of connections it accepted.
async fn tls_cms_with(dir: &Path, name: &str, alpn: &[&[u8]]) -> (SocketAddr, Arc<AtomicUsize>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let describe = !alpn.is_empty();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(
                    move |request: http::Request<hyper::body::Incoming>| async move {
                        let text = if describe {
                            let host = request
                                .uri()
                                .authority()
                                .map(|a| a.to_string())
                                .or_else(|| {
                                    let host = request.headers().get("host")?;
                                    Some(host.to_str().ok()?.to_string())
                                })
                                .unwrap_or_default();
                            format!("{:?} {host}", request.version())
                        } else {
                            "tls page".to_string()
                        };
                        let mut response = http::Response::new(Full::new(Bytes::from(text)));
                        response
                            .headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("text/html"));
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn https_config(cms: SocketAddr, lines: &str) -> String {
    with_setting(config_text(cms, ""), "upstream", lines).replacen(
        &format!("url = \"http://{cms}\""),
        &format!("url = \"https://{cms}\""),
        1,
    )
}

#[tokio::test]
async fn an_https_cms_is_trusted_through_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "cms", "rsa");
    let cms = tls_cms(dir.path(), "cms").await;
    let ca = dir.path().join("ca.pem");

    let trusting = Gate::start_with(
        &https_config(cms, &format!("ca_file = \"{}\"", ca.display())),
        &[],
    )
    .await;
    let page = get(&trusting.url("/public/a"), None).await;
    assert_eq!((page.status, page.text().as_str()), (200, "tls page"));

    let strict = Gate::start_with(&https_config(cms, ""), &[]).await;
    assert_eq!(
        get(&strict.url("/public/a"), None).await.status,
        502,
        "a certificate from an unknown CA is refused"
    );
}

#[tokio::test]
async fn a_fixed_server_name_is_what_the_certificate_is_checked_against() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf_for(dir.path(), "internal", "ec", "DNS:cms.internal");
    let cms = tls_cms(dir.path(), "internal").await;
    let ca = format!("ca_file = \"{}\"", dir.path().join("ca.pem").display());

    let by_address = Gate::start_with(&https_config(cms, &ca), &[]).await;
    assert_eq!(get(&by_address.url("/public/a"), None).await.status, 502);
    let named = Gate::start_with(
        &https_config(cms, &format!("{ca}\nserver_name = \"cms.internal\"")),
        &[],
    )
    .await;
    assert_eq!(get(&named.url("/public/a"), None).await.status, 200);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "cms", "rsa");
    let cms = tls_cms(dir.path(), "cms").await;
    let gate = Gate::start_with(&https_config(cms, "insecure_skip_verify = true"), &[]).await;
    assert_eq!(get(&gate.url("/public/a"), None).await.text(), "tls page");
}

#[tokio::test]
async fn http2_to_the_cms_when_it_offers_it_with_the_visitors_host_as_authority() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "cms", "rsa");
    let (cms, accepted) = tls_cms_with(dir.path(), "cms", &[b"h2", b"http/1.1"]).await;
    let ca = format!("ca_file = \"{}\"", dir.path().join("ca.pem").display());

    let auto = Gate::start_with(&https_config(cms, &ca), &[]).await;
    let answer = get(&auto.url("/public/a"), None).await.text();
    assert_eq!(
        answer,
        format!("HTTP/2.0 {}", auto.addr),
        "h2, :authority = the visitor's host"
    );
    // Every host a visitor names goes over the one HTTP/2 connection.
    for n in 0..5 {
        let request = http::Request::get(auto.url("/public/a"))
            .header("host", format!("site{n}.example"))
            .body(empty_body())
            .unwrap();
        let answer = send(&client(), request).await.text();
        assert_eq!(answer, format!("HTTP/2.0 site{n}.example"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for all hosts"
    );

    let never =
        Gate::start_with(&https_config(cms, &format!("{ca}\nhttp2 = \"never\"")), &[]).await;
    let answer = get(&never.url("/public/a"), None).await.text();
    assert_eq!(answer, format!("HTTP/1.1 {}", never.addr));

    let upstream_host = Gate::start_with(
        &https_config(cms, &format!("{ca}\npreserve_host = false")),
        &[],
    )
    .await;
    let answer = get(&upstream_host.url("/public/a"), None).await.text();
    assert_eq!(answer, format!("HTTP/2.0 {cms}"), "the upstream's own host");
}
