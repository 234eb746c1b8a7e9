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

/// Verdicts by session digest, and the sessions logged out lately.
#[derive(Debug)]
pub struct VerdictCache {
    verdicts: Cache<[u8; 32], Verdict>,
    // A lookup already under way when a session logs out would put its
    // verdict back after the logout dropped it: a session forgotten lately is
    // asked afresh each time, until any such verdict would have expired.
    forgotten: Cache<[u8; 32], ()>,
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
    /// An empty cache in front of a source whose lookups take at most `longest_lookup`.
    pub fn new(settings: &CacheSettings, longest_lookup: Duration) -> VerdictCache {
        VerdictCache {
            verdicts: Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(VerdictExpiry {
                    allowed: settings.ttl,
                    denied: settings.negative_ttl,
                })
                .build(),
            forgotten: Cache::builder()
                .max_capacity(settings.max_entries)
                // Until a lookup under way at the logout has ended, and
                // anything it cached before that has expired.
                .time_to_live(settings.ttl.max(settings.negative_ttl) + longest_lookup)
                .build(),
        }
    }

    /// Whether the session logged out lately: its verdicts are not to be cached.
    pub fn was_forgotten(&self, session: &[u8; 32]) -> bool {
        self.forgotten.contains_key(session)
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
        // Only a lookup that began before a logout caches a verdict for a
        // session forgotten since (later ones skip the cache): that verdict
        // would outlive the logout's mark, so it goes now. The request that
        // waited for it still gets it: it came before the logout.
        if self.forgotten.contains_key(&session) {
            self.verdicts.invalidate(&session).await;
        }
        (verdict, ran.load(Ordering::Relaxed))
    }

    /// Drops the verdict for `session`, and keeps it from coming back.
    pub async fn forget(&self, session: &[u8; 32]) {
        self.forgotten.insert(*session, ()).await;
        self.verdicts.invalidate(session).await;
    }
}
