//! Tokens for the video host: how keys are loaded and how tokens are made.
//!
//! A [`Minter`] turns an ACL into a token; [`edgeauth`] mints Akamai
//! EdgeAuth v2 tokens locally. Remote minting through the host's API will be
//! a sibling module and one more kind of minter.

pub mod edgeauth;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use thiserror::Error;

use crate::allowlist::Principal;
use crate::secret::{SecretError, SecretSource};

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

/// Reads and decodes a hex key.
pub fn load_key(source: &SecretSource) -> Result<KeyMaterial, KeyError> {
    KeyMaterial::from_hex(source.read()?.expose())
}

/// How tokens for an embed are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Minted locally as an Akamai EdgeAuth v2 token.
    Edgeauth,
}

/// `[embed.token]`, validated: which minter, its key and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// Which minter makes the tokens.
    pub kind: TokenKind,
    /// Where the shared secret comes from.
    pub key: SecretSource,
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// How long a token stays valid from the moment it is minted (whole seconds, at least 1).
    pub ttl: Duration,
}

/// Turns an ACL into a token for one page view.
///
/// A token is fresh for each page view; it is tied to one visitor only when
/// it carries something of theirs (the `ip`/`id` fields of EdgeAuth).
#[derive(Debug)]
pub enum Minter {
    /// Minted locally with the shared secret.
    EdgeAuth {
        /// The keyed signer.
        signer: EdgeAuth,
        /// Validity of each token, in seconds.
        ttl_secs: u64,
    },
}

impl Minter {
    /// Loads the key and prepares the minter `settings.kind` names.
    pub fn build(settings: &TokenSettings) -> Result<Minter, KeyError> {
        match settings.kind {
            TokenKind::Edgeauth => Ok(Minter::EdgeAuth {
                signer: EdgeAuth::new(settings.algorithm, &load_key(&settings.key)?),
                ttl_secs: settings.ttl.as_secs(),
            }),
        }
    }

    /// Appends the token opening `acl`, minted at `now` (unix seconds) for `principal`, to `out`.
    pub fn mint(&self, acl: &str, now: u64, _principal: &Principal, out: &mut String) {
        match self {
            Minter::EdgeAuth { signer, ttl_secs } => {
                signer.mint_into(now, now.saturating_add(*ttl_secs), acl, out)
            }
        }
    }

    /// The EdgeAuth signer, to verify tokens with (`embedgate verify`).
    pub fn signer(&self) -> &EdgeAuth {
        match self {
            Minter::EdgeAuth { signer, .. } => signer,
        }
    }
}
