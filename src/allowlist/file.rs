//! Session source from a file: one session per line, optionally followed by
//! the videos it may watch.
//!
//! ```text
//! # comment
//! member-0123456789abcdef                    every video
//! member-fedcba9876543210 1jhvl2uqa5rdf      only this one
//! sha256:<64 hex digits> 1jhvl2uqa5rdf 2kqw  the id's SHA-256 instead of the id
//! ```
//!
//! Entries are held as sorted digests with an index into a table of distinct
//! entitlement sets, so a million sessions cost about 36 MB and a lookup is a
//! binary search. The file never needs to hold live ids: `sha256:` lines
//! name a session by the digest it is looked up by.

use std::collections::HashMap;
use std::fmt;
use std::future::{ready, Ready};
use std::path::Path;

use super::{Entitlements, LoadError, Principal, SessionKey, SourceError, Verdict, Visit};
use crate::syntax::{is_cookie_value_byte, is_path_segment_byte};

/// Sessions read from a file, by digest.
pub struct FileSource {
    // Sorted by digest; the index points into `entitlements`.
    entries: Box<[([u8; 32], u32)]>,
    entitlements: Box<[Entitlements]>,
}

/// The non-comment lines of an allowlist file, trimmed, with 1-based line numbers.
pub fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, id)| !id.is_empty() && !id.starts_with('#'))
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileSource({} sessions)", self.entries.len())
    }
}

const SHA256_PREFIX: &str = "sha256:";

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

    /// Parses file contents; errors carry the 1-based line. A session listed
    /// twice keeps its last line.
    pub fn parse(text: &str) -> Result<FileSource, (usize, &'static str)> {
        let mut listed: Vec<([u8; 32], u32)> = Vec::new();
        let mut entitlements = vec![Entitlements::All];
        let mut interned: HashMap<Vec<&str>, u32> = HashMap::new();
        for (line, entry) in entries(text) {
            let mut words = entry.split_ascii_whitespace();
            let session = words.next().unwrap_or_default();
            let digest = match session.strip_prefix(SHA256_PREFIX) {
                Some(hex_digest) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest, &mut digest)
                        .map_err(|_| (line, "sha256: must be followed by 64 hex digits"))?;
                    digest
                }
                None => {
                    // A cookie can only carry RFC 6265 cookie-octets; anything else could never match.
                    if !session.bytes().all(is_cookie_value_byte) {
                        return Err((line, "session id holds a character a cookie cannot carry"));
                    }
                    *SessionKey::new(session).digest()
                }
            };
            let mut videos: Vec<&str> = words.collect();
            let index = if videos.is_empty() {
                0
            } else {
                if !videos.iter().all(|v| v.bytes().all(is_path_segment_byte)) {
                    return Err((
                        line,
                        "a video id may hold only letters, digits, '-', '_' and '.'",
                    ));
                }
                videos.sort_unstable();
                videos.dedup();
                let next = u32::try_from(entitlements.len())
                    .map_err(|_| (line, "too many distinct sets of videos"))?;
                *interned.entry(videos).or_insert_with_key(|videos| {
                    entitlements.push(Entitlements::only(videos.iter().copied()));
                    next
                })
            };
            listed.push((digest, index));
        }
        // Stable: of two lines for one session, the later stays last in its run.
        listed.sort_by_key(|entry| entry.0);
        let mut kept: Vec<([u8; 32], u32)> = Vec::with_capacity(listed.len());
        for entry in listed {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        Ok(FileSource {
            entries: kept.into_boxed_slice(),
            entitlements: entitlements.into_boxed_slice(),
        })
    }

    /// The verdict for `session`: allowed, with its videos, if listed.
    pub fn check(
        &self,
        session: &SessionKey<'_>,
        _visit: &Visit<'_>,
    ) -> Ready<Result<Verdict, SourceError>> {
        let found = self
            .entries
            .binary_search_by(|(digest, _)| digest.cmp(session.digest()))
            .ok()
            .map(|at| self.entries[at].1 as usize);
        ready(Ok(match found {
            Some(index) => Verdict::Allowed(Principal::entitled(
                session,
                self.entitlements[index].clone(),
            )),
            None => Verdict::Denied,
        }))
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method, Uri};

    async fn verdict(source: &FileSource, id: &str) -> Verdict {
        let (method, uri, headers) = (Method::GET, Uri::from_static("/"), HeaderMap::new());
        let visit = Visit {
            method: &method,
            uri: &uri,
            headers: &headers,
        };
        source.check(&SessionKey::new(id), &visit).await.unwrap()
    }

    async fn allowed(source: &FileSource, id: &str) -> bool {
        matches!(verdict(source, id).await, Verdict::Allowed(_))
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
    async fn a_line_may_name_the_videos_and_the_session_by_its_digest() {
        let digest = hex::encode(SessionKey::new("hidden-1").digest());
        let text = format!("alice-1\nbob-2 v1 v2 v1\ncarol-3 v2 v1\nsha256:{digest} v3\n");
        let list = FileSource::parse(&text).unwrap();
        let videos = |v: Verdict| match v {
            Verdict::Allowed(p) => p.entitlements().clone(),
            Verdict::Denied => panic!("listed"),
        };
        assert!(videos(verdict(&list, "alice-1").await).is_all());
        let bob = videos(verdict(&list, "bob-2").await);
        assert!(bob.allows("v1") && bob.allows("v2") && !bob.allows("v3"));
        assert_eq!(
            bob,
            videos(verdict(&list, "carol-3").await),
            "one set, shared"
        );
        assert_eq!(list.entitlements.len(), 3, "all, {{v1, v2}}, {{v3}}");
        let hidden = videos(verdict(&list, "hidden-1").await);
        assert!(hidden.allows("v3") && !hidden.allows("v1"));
        assert!(!allowed(&list, &format!("sha256:{digest}")).await);
    }

    #[tokio::test]
    async fn a_session_listed_twice_keeps_its_last_line() {
        let list = FileSource::parse("a-1 v1\nb-2\na-1 v2\n").unwrap();
        assert_eq!(list.len(), 2);
        match verdict(&list, "a-1").await {
            Verdict::Allowed(p) => {
                assert!(p.entitlements().allows("v2") && !p.entitlements().allows("v1"))
            }
            Verdict::Denied => panic!("listed"),
        }
    }

    #[tokio::test]
    async fn an_allowed_verdict_names_the_session_by_its_tag_only() {
        let list = FileSource::parse("alice-1\n").unwrap();
        let key = SessionKey::new("alice-1");
        match verdict(&list, "alice-1").await {
            Verdict::Allowed(principal) => assert_eq!(principal.tag(), key.tag()),
            Verdict::Denied => panic!("expected allowed"),
        }
    }

    #[test]
    fn reports_the_line_of_an_unusable_entry() {
        assert_eq!(FileSource::parse("ok\nhas,comma\n").err().unwrap().0, 2);
        assert_eq!(FileSource::parse("ok\nsha256:abc\n").err().unwrap().0, 2);
        assert_eq!(FileSource::parse("ok\n\nid v1 v/2\n").err().unwrap().0, 3);
    }
}
