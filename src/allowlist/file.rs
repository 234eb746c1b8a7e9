//! Allowlist from a file: one session id per line, `#` comments and blank lines ignored.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

use super::{AllowlistError, SessionKey};

/// Session ids read from a file, keyed by digest.
pub struct FileAllowlist {
    path: PathBuf,
    ids: HashMap<[u8; 32], Box<str>>,
}

/// The non-comment lines of an allowlist file, trimmed, with 1-based line numbers.
pub fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, id)| !id.is_empty() && !id.starts_with('#'))
}

impl fmt::Debug for FileAllowlist {
    // Never print the ids: they are live credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileAllowlist({} ids)", self.ids.len())
    }
}

impl FileAllowlist {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<FileAllowlist, AllowlistError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowlistError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut list = Self::parse(&text).map_err(|(line, message)| AllowlistError::BadEntry {
            path: path.display().to_string(),
            line,
            message,
        })?;
        list.path = path.to_path_buf();
        Ok(list)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses file contents; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<FileAllowlist, (usize, &'static str)> {
        let mut ids = HashMap::new();
        for (line, id) in entries(text) {
            // A cookie can only carry RFC 6265 cookie-octets; anything else could never match.
            if !id.bytes().all(crate::gate::is_cookie_value_byte) {
                return Err((line, "session id holds a character a cookie cannot carry"));
            }
            let key = SessionKey::new(id);
            ids.insert(key.digest, id.into());
        }
        Ok(FileAllowlist {
            path: PathBuf::new(),
            ids,
        })
    }

    /// Whether `session` is listed.
    pub fn contains(&self, session: &SessionKey<'_>) -> bool {
        self.ids
            .get(&session.digest)
            .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(session.id.as_bytes())))
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

    #[test]
    fn skips_comments_and_blank_lines_and_trims() {
        let list = FileAllowlist::parse("# staff\n\n  alice-1  \nbob-2\n#carol\n").unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&SessionKey::new("alice-1")));
        assert!(list.contains(&SessionKey::new("bob-2")));
        assert!(!list.contains(&SessionKey::new("carol")));
        assert!(!list.contains(&SessionKey::new("alice")));
    }

    #[test]
    fn reports_the_line_of_an_unusable_id() {
        let err = FileAllowlist::parse("ok\nhas space\n").err().unwrap();
        assert_eq!(err.0, 2);
    }
}
