//! TLS termination with rustls: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`,
//! certificates read with the runtime (so a reload picks up renewed ones and
//! a bad new one keeps the old), and an optional plain-HTTP listener that
//! redirects to HTTPS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use thiserror::Error;

/// `[server.tls]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with its private key (PKCS#8, RSA or SEC1).
    pub key: PathBuf,
    /// The plain-HTTP listener that redirects to HTTPS, if any.
    pub redirect: Option<RedirectSettings>,
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
        vec![self.cert.clone(), self.key.clone()]
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

/// Reads the certificate chain and key and makes the server's TLS config.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |why: String| TlsError::Cert {
        path: settings.cert.display().to_string(),
        why,
    };
    let chain = read_chain(&settings.cert).map_err(cert_error)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|err| TlsError::Key {
        path: settings.key.display().to_string(),
        // The error names the problem, never the key's bytes.
        why: err.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| TlsError::Config(err.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
