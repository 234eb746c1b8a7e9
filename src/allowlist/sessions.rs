//! The configured session source, behind the verdict cache when there is one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{CacheSettings, VerdictCache};
use super::file::FileSource;
use super::forward_auth::{ForwardAuth, ForwardAuthSettings};
use super::redis::{RedisSettings, RedisSource};
use super::{LoadError, SessionKey, SessionSource, SourceError, Verdict, Visit};
use crate::logging::Bursts;
use crate::metrics::{Lookup, Metrics};

/// Which source answers for sessions, and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSettings {
    /// Session ids (or their SHA-256) listed in a file, with optional entitlements.
    File {
        /// The file, already resolved against the config file's folder.
        path: PathBuf,
    },
    /// The CMS's own session check, called over HTTP.
    ForwardAuth(ForwardAuthSettings),
    /// Session keys in the Redis the CMS keeps its sessions in.
    Redis(RedisSettings),
}

impl SourceSettings {
    /// Files this source reads, whose change must rebuild it.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            SourceSettings::File { path } => vec![path.clone()],
            SourceSettings::ForwardAuth(_) => Vec::new(),
            SourceSettings::Redis(redis) => redis.files(),
        }
    }

    /// The longest a lookup may take before it counts as failed.
    pub fn longest_lookup(&self) -> Duration {
        match self {
            SourceSettings::File { .. } => Duration::ZERO,
            SourceSettings::ForwardAuth(cms) => cms.timeout,
            SourceSettings::Redis(redis) => redis.timeout,
        }
    }

    /// True for sources asked over the network, whose answers are worth caching.
    pub fn is_remote(&self) -> bool {
        !matches!(self, SourceSettings::File { .. })
    }
}

/// What a visitor gets when the session source cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// 503 Service Unavailable with Retry-After: try again soon.
    Unavailable,
    /// 403 Forbidden with the deny page, as if the session were unknown.
    Forbidden,
}

/// `[session.allowlist]`, validated: the source, its cache, and what a failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsSettings {
    /// Who answers.
    pub source: SourceSettings,
    /// The verdict cache in front of it; `None` for no cache.
    pub cache: Option<CacheSettings>,
    /// What a visitor gets when the source cannot answer.
    pub on_error: OnError,
}

/// The configured source.
#[derive(Debug)]
pub enum Source {
    /// Ids listed in a file.
    File(FileSource),
    /// The CMS's session check.
    ForwardAuth(Box<ForwardAuth>),
    /// Redis.
    Redis(Box<RedisSource>),
}

impl SessionSource for Source {
    async fn check(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> Result<Verdict, SourceError> {
        match self {
            Source::File(file) => file.check(session, visit).await,
            Source::ForwardAuth(cms) => cms.check(session, visit).await,
            Source::Redis(redis) => redis.check(session, visit).await,
        }
    }
}

/// The session source in force, its cache, and a log that speaks once per burst of failures.
#[derive(Debug)]
pub struct Sessions {
    settings: SessionsSettings,
    // SHA-256 of the files the source read (a password or CA file): a source
    // whose settings are unchanged but whose files changed is built anew.
    files: [u8; 32],
    source: Source,
    cache: Option<VerdictCache>,
    failures: FailureLog,
    metrics: Arc<Metrics>,
}

impl Sessions {
    /// Builds what `settings` name. A remote source whose settings did not
    /// change is taken over from `previous` whole, with its connections and
    /// its cache; a file source is always read afresh, since a reload may
    /// have been set off by the file itself.
    pub async fn build(
        settings: &SessionsSettings,
        previous: Option<&Arc<Sessions>>,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Sessions>, LoadError> {
        let files = digest_of(&settings.source.files());
        if let Some(previous) = previous {
            if previous.settings == *settings
                && previous.files == files
                && settings.source.is_remote()
            {
                return Ok(previous.clone());
            }
        }
        let source = match &settings.source {
            SourceSettings::File { path } => {
                let path = path.clone();
                let loaded = tokio::task::spawn_blocking(move || FileSource::load(&path))
                    .await
                    .map_err(|join| LoadError::Remote(join.to_string()))??;
                Source::File(loaded)
            }
            SourceSettings::ForwardAuth(cms) => {
                Source::ForwardAuth(Box::new(ForwardAuth::new(cms)))
            }
            SourceSettings::Redis(redis) => Source::Redis(Box::new(RedisSource::new(redis)?)),
        };
        Ok(Arc::new(Sessions {
            settings: settings.clone(),
            files,
            source,
            cache: settings
                .cache
                .as_ref()
                .map(|cache| VerdictCache::new(cache, settings.source.longest_lookup())),
            failures: FailureLog::default(),
            metrics: metrics.clone(),
        }))
    }

    /// The source itself.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// What a visitor gets when the source cannot answer.
    pub fn on_error(&self) -> OnError {
        self.settings.on_error
    }

    /// Whether verdicts are cached (then a logout must drop one).
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Number of sessions known up front, if the source can tell (for start-up logs).
    pub fn known_sessions(&self) -> Option<usize> {
        match &self.source {
            Source::File(file) => Some(file.len()),
            Source::ForwardAuth(_) | Source::Redis(_) => None,
        }
    }

    /// The verdict for `session`, from the cache or the source. Concurrent
    /// misses for one session make one lookup; errors are not cached.
    pub async fn check(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> Result<Verdict, SourceError> {
        let (verdict, asked) = match (&self.source, &self.cache) {
            // Answered at once, with nothing to wait for.
            (Source::File(file), None) => (file.check(session, visit).await, true),
            // Boxed: a remote source's and the cache's futures are
            // kilobytes, which every gated request's future would
            // otherwise carry (and be copied with), a 403 included.
            _ => Box::pin(self.cached_or_asked(session, visit)).await,
        };
        match &verdict {
            Err(err) => {
                self.metrics.lookup(Lookup::Error);
                self.failures.record(err);
            }
            Ok(_) if asked => self.metrics.lookup(Lookup::Miss),
            Ok(_) => self.metrics.lookup(Lookup::Hit),
        }
        verdict
    }

    // The verdict from the cache or the source, and whether the source was asked.
    async fn cached_or_asked(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> (Result<Verdict, SourceError>, bool) {
        match &self.cache {
            Some(cache) if cache.was_forgotten(session.digest()) => {
                (self.source.check(session, visit).await, true)
            }
            Some(cache) => {
                cache
                    .get_or_check(*session.digest(), self.source.check(session, visit))
                    .await
            }
            None => (self.source.check(session, visit).await, true),
        }
    }

    /// Whether the source answers at all within `timeout` (for readiness).
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match &self.source {
            Source::File(_) => Ok(()),
            Source::ForwardAuth(cms) => cms.probe(timeout).await,
            Source::Redis(redis) => redis.probe(timeout).await,
        }
    }

    /// Drops the cached verdict of the session whose id hashes to `digest` (a logout).
    pub async fn forget(&self, digest: &[u8; 32]) {
        if let Some(cache) = &self.cache {
            cache.forget(digest).await;
        }
    }
}

/// SHA-256 over the names and contents of `files` (an unreadable one counts as such).
fn digest_of(files: &[PathBuf]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.as_os_str().as_encoded_bytes());
        match std::fs::read(file) {
            Ok(contents) => {
                hasher.update(b"\0ok\0");
                hasher.update(&contents);
            }
            Err(err) => hasher.update(format!("\0error\0{}", err.kind()).as_bytes()),
        }
    }
    hasher.finalize().into()
}

/// A burst of failures is logged once, with its cause; the next one after a quiet spell again.
#[derive(Debug, Default)]
struct FailureLog(Bursts);

impl FailureLog {
    fn record(&self, err: &SourceError) {
        if let Some(unlogged) = self.0.begins() {
            tracing::warn!(
                error = %err,
                earlier_failures_not_logged = unlogged,
                "session source failing: gated requests are refused until it answers"
            );
        }
    }
}
