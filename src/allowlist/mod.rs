//! Who is allowed in: the session sources behind one seam.
//!
//! A source answers [`SessionSource::check`] for a presented session with a
//! [`Verdict`]; an allowed verdict carries the [`Principal`] the rest of the
//! request acts for. Each source is its own module; [`Source`] holds the one
//! the settings name. A cache will wrap a source, not live inside one.
//! Session ids are looked up by their SHA-256 digest and then compared in
//! constant time, so lookup timing tells nothing about the ids themselves.

mod file;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use file::{entries, FileSource};

/// Which source answers for sessions, and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSettings {
    /// Session ids listed in a file.
    File {
        /// The file, already resolved against the config file's folder.
        path: PathBuf,
    },
}

impl SourceSettings {
    /// Files this source reads, whose change must rebuild it.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            SourceSettings::File { path } => vec![path.clone()],
        }
    }
}

/// A source could not be built.
#[derive(Debug, Error)]
pub enum LoadError {
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

/// A source could not answer for a session: the gate fails closed.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The source did not answer (a remote source that is down or too slow).
    #[error("session source unavailable: {0}")]
    Unavailable(String),
}

/// A source's answer for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The session may see gated pages, as this principal.
    Allowed(Principal),
    /// The session is unknown or no longer valid.
    Denied,
}

/// Who an allowed request acts for: what it may be logged as and, later, watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    tag: SessionTag,
}

impl Principal {
    /// The principal of the session `key`.
    pub fn of(key: &SessionKey<'_>) -> Principal {
        Principal { tag: key.tag() }
    }

    /// The principal of tokens minted by hand (`embedgate mint`), for no visitor.
    pub fn operator() -> Principal {
        Principal {
            tag: SessionTag([0; 4]),
        }
    }

    /// The short hash that names this visitor in logs.
    pub fn tag(&self) -> SessionTag {
        self.tag
    }
}

/// Answers whether a session may see gated pages.
pub trait SessionSource {
    /// Looks the session up. An error means the source could not answer, never "denied".
    fn check(
        &self,
        session: &SessionKey<'_>,
    ) -> impl Future<Output = Result<Verdict, SourceError>> + Send;
}

/// The configured session source.
#[derive(Debug)]
pub enum Source {
    /// Ids listed in a file.
    File(FileSource),
}

impl Source {
    /// Builds the source `settings` name. A file source is always read
    /// afresh: a reload happens because something, maybe the file, changed.
    pub async fn build(settings: &SourceSettings) -> Result<Source, LoadError> {
        match settings {
            SourceSettings::File { path } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || FileSource::load(&path))
                    .await
                    .map_err(|join| LoadError::Read {
                        path: "allowlist".into(),
                        source: std::io::Error::other(join.to_string()),
                    })?
                    .map(Source::File)
            }
        }
    }

    /// Number of sessions known up front, if the source can tell (for start-up logs).
    pub fn known_sessions(&self) -> Option<usize> {
        match self {
            Source::File(file) => Some(file.len()),
        }
    }
}

impl SessionSource for Source {
    fn check(
        &self,
        session: &SessionKey<'_>,
    ) -> impl Future<Output = Result<Verdict, SourceError>> + Send {
        match self {
            Source::File(file) => file.check(session),
        }
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
