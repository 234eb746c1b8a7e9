//! Tokens for the video host: how keys are loaded and how tokens are made.
//!
//! [`edgeauth`] mints Akamai EdgeAuth v2 tokens locally. Remote minting
//! through the host's API will be a sibling module behind the same seam.

pub mod edgeauth;

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

pub use edgeauth::{EdgeAuth, VerifyError};

/// The wall clock in unix seconds, as tokens count time (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The HMAC hash of an EdgeAuth token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA256 (the EdgeAuth default).
    #[default]
    Sha256,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-MD5.
    Md5,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Algorithm::Sha256),
            "sha1" => Ok(Algorithm::Sha1),
            "md5" => Ok(Algorithm::Md5),
            _ => Err(format!("unknown algorithm {s:?} (sha256, sha1 or md5)")),
        }
    }
}

/// Where a token key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The named environment variable.
    Env(String),
    /// The file's contents (surrounding whitespace ignored).
    File(PathBuf),
    /// Written in the config itself (demo and tests only).
    Inline(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(name) => write!(f, "Env({name})"),
            KeySource::File(path) => write!(f, "File({})", path.display()),
            KeySource::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

/// A key could not be loaded. Never carries the key itself.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The environment variable is unset or not unicode.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key is not an even number of hex digits.
    #[error("key is not hex (an even number of 0-9, a-f digits)")]
    NotHex,
    /// The key is empty.
    #[error("key is empty")]
    Empty,
}

/// Decoded key bytes; redacted in Debug.
pub struct KeyMaterial(Vec<u8>);

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial(<{} bytes>)", self.0.len())
    }
}

impl KeyMaterial {
    /// Decodes a hex key as the EdgeAuth reference does (either case).
    pub fn from_hex(text: &str) -> Result<KeyMaterial, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        hex::decode(text)
            .map(KeyMaterial)
            .map_err(|_| KeyError::NotHex)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl KeySource {
    /// Reads and decodes the key.
    pub fn load(&self) -> Result<KeyMaterial, KeyError> {
        match self {
            KeySource::Env(name) => {
                let value = std::env::var(name).map_err(|_| KeyError::MissingEnv(name.clone()))?;
                KeyMaterial::from_hex(&value)
            }
            KeySource::File(path) => {
                let value = std::fs::read_to_string(path).map_err(|source| KeyError::File {
                    path: path.display().to_string(),
                    source,
                })?;
                KeyMaterial::from_hex(&value)
            }
            KeySource::Inline(value) => KeyMaterial::from_hex(value),
        }
    }
}
