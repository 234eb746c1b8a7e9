//! The verdict cache in front of a session source.
//!
//! Keyed by the SHA-256 of the session id, never the id. Allowed and denied
//! verdicts live for their own times; errors are never cached. Concurrent
//! misses for one session wait for one lookup.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::{SourceError, Verdict};

/// `[session.allowlist.cache]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long an allowed verdict is kept.
    pub ttl: Duration,
    /// How long a denied verdict is kept.
    pub negative_ttl: Duration,
    /// Most verdicts kept; the least used go first.
    pub max_entries: u64,
}

/// Verdicts by session digest.
#[derive(Debug)]
pub struct VerdictCache {
    verdicts: Cache<[u8; 32], Verdict>,
}

struct VerdictExpiry {
    allowed: Duration,
    denied: Duration,
}

impl Expiry<[u8; 32], Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _session: &[u8; 32],
        verdict: &Verdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            Verdict::Allowed(_) => self.allowed,
            Verdict::Denied => self.denied,
        })
    }
}

impl VerdictCache {
    /// An empty cache.
    pub fn new(settings: &CacheSettings) -> VerdictCache {
        VerdictCache {
            verdicts: Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(VerdictExpiry {
                    allowed: settings.ttl,
                    denied: settings.negative_ttl,
                })
                .build(),
        }
    }

    /// The cached verdict for `session`, or the result of `lookup`, cached if
    /// it is a verdict; and whether this call ran `lookup` (a miss).
    pub async fn get_or_check(
        &self,
        session: [u8; 32],
        lookup: impl Future<Output = Result<Verdict, SourceError>>,
    ) -> (Result<Verdict, SourceError>, bool) {
        let ran = AtomicBool::new(false);
        let verdict = self
            .verdicts
            .try_get_with(session, async {
                ran.store(true, Ordering::Relaxed);
                lookup.await
            })
            .await
            .map_err(|shared| (*shared).clone());
        (verdict, ran.load(Ordering::Relaxed))
    }

    /// Drops the verdict for `session`.
    pub async fn forget(&self, session: &[u8; 32]) {
        self.verdicts.invalidate(session).await;
    }
}
