//! Session source from a file: one session id per line, `#` comments and blank lines ignored.

use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Ready};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::{LoadError, Principal, SessionKey, SourceError, Verdict};
use crate::syntax::is_cookie_value_byte;

/// Session ids read from a file, keyed by digest. The ids are live
/// credentials: held as secrets, wiped when a reload drops the old list.
pub struct FileSource {
    ids: HashMap<[u8; 32], SecretString>,
}

/// The non-comment lines of an allowlist file, trimmed, with 1-based line numbers.
pub fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, id)| !id.is_empty() && !id.starts_with('#'))
}

impl fmt::Debug for FileSource {
    // A count says all a log needs; a map of a million entries does not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileSource({} ids)", self.ids.len())
    }
}

impl FileSource {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<FileSource, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| LoadError::BadEntry {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    /// Parses file contents; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<FileSource, (usize, &'static str)> {
        let mut ids = HashMap::new();
        for (line, id) in entries(text) {
            // A cookie can only carry RFC 6265 cookie-octets; anything else could never match.
            if !id.bytes().all(is_cookie_value_byte) {
                return Err((line, "session id holds a character a cookie cannot carry"));
            }
            let key = SessionKey::new(id);
            ids.insert(key.digest, SecretString::from(id));
        }
        Ok(FileSource { ids })
    }

    /// The verdict for `session`: allowed if listed.
    pub fn check(&self, session: &SessionKey<'_>) -> Ready<Result<Verdict, SourceError>> {
        let listed = self.ids.get(&session.digest).is_some_and(|stored| {
            bool::from(
                stored
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(session.id.as_bytes()),
            )
        });
        ready(Ok(if listed {
            Verdict::Allowed(Principal::of(session))
        } else {
            Verdict::Denied
        }))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn allowed(source: &FileSource, id: &str) -> bool {
        matches!(
            source.check(&SessionKey::new(id)).await,
            Ok(Verdict::Allowed(_))
        )
    }

    #[tokio::test]
    async fn skips_comments_and_blank_lines_and_trims() {
        let list = FileSource::parse("# staff\n\n  alice-1  \nbob-2\n#carol\n").unwrap();
        assert_eq!(list.len(), 2);
        assert!(allowed(&list, "alice-1").await);
        assert!(allowed(&list, "bob-2").await);
        assert!(!allowed(&list, "carol").await);
        assert!(!allowed(&list, "alice").await);
    }

    #[tokio::test]
    async fn an_allowed_verdict_names_the_session_by_its_tag_only() {
        let list = FileSource::parse("alice-1\n").unwrap();
        let key = SessionKey::new("alice-1");
        match list.check(&key).await {
            Ok(Verdict::Allowed(principal)) => assert_eq!(principal.tag(), key.tag()),
            other => panic!("expected allowed, got {other:?}"),
        }
    }

    #[test]
    fn reports_the_line_of_an_unusable_id() {
        let err = FileSource::parse("ok\nhas space\n").err().unwrap();
        assert_eq!(err.0, 2);
    }
}
