//! Secrets from the config: where they come from, and how they are held.
//!
//! A [`Secret`] is wiped when dropped, prints as `[REDACTED]`, and compares
//! in constant time, so settings that hold one can still be compared on reload.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// A secret string.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// The secret's text, for the one place that must use it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(SecretString::from(text))
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(SecretString::from(text))
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// The file's contents, surrounding whitespace trimmed.
    File(PathBuf),
    /// Written in the config itself (demo and tests only).
    Inline(Secret),
}

/// A secret could not be read. Never carries the secret itself.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The environment variable is unset or not unicode.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SecretSource {
    /// Reads the secret, trimmed of surrounding whitespace.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let raw = match self {
            SecretSource::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| SecretError::MissingEnv(name.clone()))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(SecretString::from)
                .map_err(|source| SecretError::File {
                    path: path.display().to_string(),
                    source,
                })?,
            SecretSource::Inline(secret) => return Ok(Secret::from(secret.expose().trim())),
        };
        Ok(Secret::from(raw.expose_secret().trim()))
    }

    /// The file the secret is read from, if it is.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SecretSource::File(path) => Some(path),
            SecretSource::Env(_) | SecretSource::Inline(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_compares_by_value() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(
            format!("{:?}", SecretSource::Inline(secret.clone())),
            "Inline([REDACTED])"
        );
        assert_eq!(secret, Secret::from("hunter2"));
        assert_ne!(secret, Secret::from("hunter3"));
    }

    #[test]
    fn secrets_are_trimmed_and_a_missing_source_is_named() {
        let inline = SecretSource::Inline(Secret::from(" s3cret\n"));
        assert_eq!(inline.read().unwrap().expose(), "s3cret");
        let missing = SecretSource::Env("EMBEDGATE_TEST_UNSET_VARIABLE".into());
        assert_eq!(
            missing.read().unwrap_err().to_string(),
            "environment variable EMBEDGATE_TEST_UNSET_VARIABLE is not set"
        );
    }
}
