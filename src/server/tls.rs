//! TLS termination with rustls: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`,
//! certificates read with the runtime (so a reload picks up renewed ones and
//! a bad new one keeps the old), plain HTTP sent to the TLS port answered
//! 400, and an optional plain-HTTP listener that redirects to HTTPS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::metrics::HandshakeFailure;

/// `[server.tls]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificates; the first is served when no other's names match.
    pub certs: Vec<NamedCert>,
    /// The plain-HTTP listener that redirects to HTTPS, if any.
    pub redirect: Option<RedirectSettings>,
}

/// A certificate and the server names (SNI) it is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCert {
    /// Lower-case names; `*.example.com` covers one label. Empty for the default.
    pub names: Vec<String>,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with its private key (PKCS#8, RSA or SEC1).
    pub key: PathBuf,
}

/// `[server.tls] redirect_listen` and `redirect_except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectSettings {
    /// Where plain HTTP is answered with 308 to the HTTPS URL (fixed at start).
    pub listen: SocketAddr,
    /// Paths under this prefix are served, not redirected (ACME challenges).
    pub except: Option<String>,
}

impl TlsSettings {
    /// The certificate and key files, for the watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        self.certs
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect()
    }
}

/// Why a certificate or key cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("certificate {path}: {why}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The key file is unreadable or holds no usable key.
    #[error("key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The key does not go with the certificate, or rustls refused them.
    #[error("certificate and key: {0}")]
    Config(String),
}

/// Reads the certificate chains and keys and makes the server's TLS config.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certs = Vec::with_capacity(settings.certs.len());
    for named in &settings.certs {
        certs.push((named.names.clone(), certified_key(named, &provider)?));
    }
    let mut certs = certs.into_iter();
    let (_, default) = certs
        .next()
        .ok_or_else(|| TlsError::Config("no certificate".into()))?;
    let resolver = SniResolver {
        default,
        named: certs.collect(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certified_key(
    named: &NamedCert,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_chain(&named.cert).map_err(|why| TlsError::Cert {
        path: named.cert.display().to_string(),
        why,
    })?;
    let key = PrivateKeyDer::from_pem_file(&named.key).map_err(|err| TlsError::Key {
        path: named.key.display().to_string(),
        // The error names the problem, never the key's bytes.
        why: err.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| TlsError::Key {
            path: named.key.display().to_string(),
            why: err.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|err| TlsError::Config(format!("{}: {err}", named.cert.display())))?;
    Ok(Arc::new(certified))
}

/// Picks the certificate by the name the client asked for (SNI); the
/// first one otherwise.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    named: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(asked) = client_hello.server_name() else {
            return Some(self.default.clone());
        };
        let asked = asked.to_ascii_lowercase();
        let found = self
            .named
            .iter()
            .find(|(names, _)| names.iter().any(|n| name_matches(n, &asked)));
        Some(found.map_or_else(|| self.default.clone(), |(_, key)| key.clone()))
    }
}

/// What a client that sends plain HTTP to the TLS port is told, as nginx tells it.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 68\r\n\
cache-control: no-store\r\n\
connection: close\r\n\
\r\n\
400 Bad Request: this port speaks HTTPS, not plain HTTP. Use https.\n";

/// The most of a plain-HTTP request read before it is answered, and again after.
const PLAIN_HTTP_READ_LIMIT: usize = 16 * 1024;

/// The TLS handshake on `stream`, done by `deadline`. A client that speaks
/// plain HTTP instead is answered 400. `Err` says why there is no TLS
/// stream; `None` when the client closed before sending anything, which
/// nobody needs to hear about.
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    deadline: Instant,
    peer: SocketAddr,
) -> Result<TlsStream<TcpStream>, Option<HandshakeFailure>> {
    let mut first = [0u8; 1];
    let failure = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(0) | Err(_)) => return Err(None),
        Ok(Ok(_)) if !begins_tls(first[0]) => {
            if answer_plain_http(stream, deadline).await {
                HandshakeFailure::PlainHttp
            } else {
                HandshakeFailure::Timeout
            }
        }
        Ok(Ok(_)) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => return Ok(tls_stream),
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake refused");
                return Err(Some(HandshakeFailure::Refused));
            }
            Err(_) => HandshakeFailure::Timeout,
        },
        Err(_) => HandshakeFailure::Timeout,
    };
    tracing::debug!(%peer, ?failure, "no TLS handshake (PlainHttp: answered 400)");
    Err(Some(failure))
}

/// Whether a connection's first byte can begin TLS: a handshake record
/// (22), or a hello in the old SSLv2 framing (high bit set), which rustls
/// then refuses. Anything else is taken for plain HTTP, as nginx takes it.
fn begins_tls(first: u8) -> bool {
    first == 22 || first & 0x80 != 0
}

/// Answers a plain-HTTP request with [`PLAIN_HTTP_ANSWER`], all by
/// `deadline`; whether the answer was sent in time.
async fn answer_plain_http(mut stream: TcpStream, deadline: Instant) -> bool {
    let mut answered = false;
    let answer = async {
        // The request head is read first, and what follows the answer after
        // it: a socket closed with bytes unread is reset, and the reset can
        // reach the client before the answer does.
        let mut buf = vec![0u8; PLAIN_HTTP_READ_LIMIT];
        let mut read = 0;
        while read < buf.len() && memchr::memmem::find(&buf[..read], b"\r\n\r\n").is_none() {
            match stream.read(&mut buf[read..]).await? {
                0 => break,
                n => read += n,
            }
        }
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await?;
        answered = true;
        let mut drained = 0;
        while drained < PLAIN_HTTP_READ_LIMIT {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout_at(deadline, answer).await;
    answered
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| err.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| err.to_string())?;
    if chain.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_is_framed_by_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head} / {} bytes",
            body.len()
        );
    }

    #[test]
    fn a_wildcard_name_covers_one_label() {
        assert!(name_matches("a.example", "a.example"));
        assert!(name_matches("*.example", "www.example"));
        assert!(!name_matches("*.example", "example"));
        assert!(!name_matches("*.example", "a.b.example"));
        assert!(!name_matches("a.example", "b.example"));
    }
}
