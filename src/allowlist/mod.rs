//! Who is allowed in: the session ids a gated page opens for.
//!
//! Each source is its own module; [`Allowlist`] dispatches to the one the
//! config names. Ids are looked up by their SHA-256 digest and then compared
//! in constant time, so lookup timing tells nothing about the ids themselves.

mod file;

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use file::{entries, FileAllowlist};

/// Why a source could not be loaded or asked.
#[derive(Debug, Error)]
pub enum AllowlistError {
    /// The allowlist file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the allowlist file is not a usable session id.
    #[error("{path}:{line}: {message}")]
    BadEntry {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: &'static str,
    },
}

/// The configured source of allowed sessions.
#[derive(Debug)]
pub enum Allowlist {
    /// Ids listed in a file, loaded at start.
    File(FileAllowlist),
}

impl Allowlist {
    /// Loads a file source.
    pub fn from_file(path: &Path) -> Result<Allowlist, AllowlistError> {
        FileAllowlist::load(path).map(Allowlist::File)
    }

    /// Whether the session is allowed. Async because remote sources will be.
    pub async fn contains(&self, session: &SessionKey<'_>) -> Result<bool, AllowlistError> {
        match self {
            Allowlist::File(file) => Ok(file.contains(session)),
        }
    }

    /// Number of entries (for start-up logs).
    pub fn len(&self) -> usize {
        match self {
            Allowlist::File(file) => file.len(),
        }
    }

    /// True when nobody can get in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A presented session id with its digest, computed once per request.
pub struct SessionKey<'a> {
    id: &'a str,
    digest: [u8; 32],
}

impl<'a> SessionKey<'a> {
    /// Hashes `id` for lookup.
    pub fn new(id: &'a str) -> Self {
        SessionKey {
            id,
            digest: Sha256::digest(id.as_bytes()).into(),
        }
    }

    /// A short, non-reversible tag for logs.
    pub fn tag(&self) -> SessionTag {
        SessionTag([
            self.digest[0],
            self.digest[1],
            self.digest[2],
            self.digest[3],
        ])
    }
}

impl fmt::Debug for SessionKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.tag())
    }
}

/// First four bytes of a session id's SHA-256: enough to follow one visitor through the logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionTag([u8; 4]);

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
