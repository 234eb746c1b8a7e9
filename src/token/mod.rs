//! Tokens for the video host: how keys are loaded, how tokens are made and checked.
//!
//! [`edgeauth`] mints and verifies Akamai EdgeAuth v2 tokens with the shared
//! secret; [`LocalMinter`] fills in one embed's claims for a page view;
//! [`remote`] asks the video host's API for a token instead; [`acl`] matches
//! a token's ACL against a request path, for edge verification.

pub mod acl;
pub mod edgeauth;
mod local;
pub mod remote;
pub mod verify;

use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use thiserror::Error;

use crate::secret::{SecretError, SecretSource};

pub use edgeauth::{Claims, EdgeAuth, Scope, TokenFormat, VerifiedToken, VerifyError};
pub use local::{LocalMinter, LocalSettings, ScopeTemplate, Visitor};
pub use remote::{MintError, OnMintError, RemoteMinter, RemoteSettings};

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

/// A key could not be loaded. Never carries the key itself.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key could not be read from where the config says it is.
    #[error("cannot read the key: {0}")]
    Source(#[from] SecretError),
    /// The key is not an even number of hex digits.
    #[error("key is not hex (an even number of 0-9, a-f digits)")]
    NotHex,
    /// The key is empty.
    #[error("key is empty")]
    Empty,
    /// The key is too short to keep tokens from being forged.
    #[error("key is {bytes} bytes: at least {MIN_KEY_BYTES} are needed (the video host's are 32)")]
    TooShort {
        /// Bytes the key decodes to.
        bytes: usize,
    },
    /// The salt is empty.
    #[error("salt is empty")]
    EmptySalt,
    /// The salt could not be read.
    #[error("cannot read the salt: {0}")]
    Salt(SecretError),
    /// The API bearer token could not be read.
    #[error("cannot read the bearer token: {0}")]
    Bearer(SecretError),
    /// The bearer token of a remote minter cannot be sent in a header.
    #[error("bearer token is empty or not a valid header value")]
    BadBearer,
    /// The remote minter's HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// Decoded key bytes, wiped on drop and never printed.
pub struct KeyMaterial(SecretSlice<u8>);

impl KeyMaterial {
    /// Decodes a hex key as the EdgeAuth reference does (either case).
    pub fn from_hex(text: &str) -> Result<KeyMaterial, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        hex::decode(text)
            .map(|bytes| KeyMaterial(bytes.into()))
            .map_err(|_| KeyError::NotHex)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// Fewest bytes a configured key may have: a shorter one (a typo, a key
/// file caught half-written) would make tokens guessable.
pub const MIN_KEY_BYTES: usize = 16;

/// Reads and decodes a hex key of at least [`MIN_KEY_BYTES`].
pub fn load_key(source: &SecretSource) -> Result<KeyMaterial, KeyError> {
    let key = KeyMaterial::from_hex(source.read()?.expose())?;
    match key.as_bytes().len() {
        bytes if bytes < MIN_KEY_BYTES => Err(KeyError::TooShort { bytes }),
        _ => Ok(key),
    }
}

/// `[embed.token]` or `[route.token]`: the shared secret and the token's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerSettings {
    /// Where the shared secret (hex) comes from.
    pub key: SecretSource,
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// Where the salt comes from, if tokens are salted.
    pub salt: Option<SecretSource>,
    /// Separates the token's fields (`~`).
    pub field_delimiter: char,
    /// Separates the ACLs of one token (`!`).
    pub acl_delimiter: char,
    /// Whether ip, id, data and url are escaped before signing, as the reference's `escape_early`.
    pub escape_early: bool,
}

impl SignerSettings {
    /// The key and salt files these settings read.
    pub fn files(&self) -> impl Iterator<Item = std::path::PathBuf> + '_ {
        [Some(&self.key), self.salt.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|source| source.file().map(std::path::Path::to_path_buf))
    }

    /// Loads the key and salt, and prepares the signer.
    pub fn build(&self) -> Result<EdgeAuth, KeyError> {
        let key = load_key(&self.key)?;
        self.build_with(&key)
    }

    /// Prepares the signer with an already loaded `key`.
    pub fn build_with(&self, key: &KeyMaterial) -> Result<EdgeAuth, KeyError> {
        let salt = match &self.salt {
            None => None,
            Some(source) => {
                let salt = source.read().map_err(KeyError::Salt)?;
                if salt.expose().is_empty() {
                    return Err(KeyError::EmptySalt);
                }
                Some(secrecy::SecretString::from(salt.expose()))
            }
        };
        Ok(EdgeAuth::new(self.algorithm, key).with_format(TokenFormat {
            field_delimiter: self.field_delimiter,
            acl_delimiter: self.acl_delimiter,
            escape_early: self.escape_early,
            salt,
        }))
    }
}

/// `[embed.token]`, validated: how an embed's tokens are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSettings {
    /// Minted here with the shared secret (`kind = "edgeauth"`).
    Local(LocalSettings),
    /// Asked of the video host's API (`kind = "remote"`).
    Remote(RemoteSettings),
}

/// Makes one embed's tokens.
#[derive(Debug)]
// One per embed, read on every mint: kept inline rather than behind a box.
#[allow(clippy::large_enum_variant)]
pub enum Minter {
    /// Minted here, synchronously, while the page streams through.
    Local(LocalMinter),
    /// Fetched from the video host; the page waits at the embed, not before it.
    Remote(std::sync::Arc<RemoteMinter>),
}

impl TokenSettings {
    /// The key, salt, bearer and CA files these settings read.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        match self {
            TokenSettings::Local(local) => local.signer.files().collect(),
            TokenSettings::Remote(remote) => remote
                .bearer
                .file()
                .map(std::path::Path::to_path_buf)
                .into_iter()
                .chain(remote.ca_file.clone())
                .collect(),
        }
    }
}

impl Minter {
    /// Loads the key (or bearer token) and prepares the minter `settings` name.
    pub fn build(settings: &TokenSettings) -> Result<Minter, KeyError> {
        Ok(match settings {
            TokenSettings::Local(local) => Minter::Local(LocalMinter::build(local)?),
            TokenSettings::Remote(remote) => {
                Minter::Remote(std::sync::Arc::new(RemoteMinter::build(remote)?))
            }
        })
    }
}

impl KeyError {
    /// The `[embed.token]`/`[route.token]` key whose value is at fault.
    pub fn field(&self) -> &'static str {
        match self {
            KeyError::Source(_)
            | KeyError::NotHex
            | KeyError::Empty
            | KeyError::TooShort { .. } => "key",
            KeyError::EmptySalt | KeyError::Salt(_) => "salt",
            KeyError::Bearer(_) | KeyError::BadBearer => "bearer",
            KeyError::Client(_) => "ca_file",
        }
    }
}
