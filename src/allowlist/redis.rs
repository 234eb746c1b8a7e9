//! Session source: the Redis the CMS keeps its sessions in.
//!
//! A session is allowed while its key exists (`session:{id}`, as Django's,
//! Laravel's, Rails' and PHP's Redis session stores keep them); an optional
//! set (`entitlements:{id}`) lists the videos it may watch. The connection is
//! made on first use (over TLS for `rediss://`) and remade by itself after an
//! outage; while Redis does not answer, the source cannot answer, and the
//! gate fails closed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;

use super::{Entitlements, LoadError, Principal, SessionKey, SourceError, Verdict, Visit};
use crate::logging::Bursts;
use crate::secret::{Secret, SecretSource};

/// `[session.allowlist.redis]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or, over TLS, `rediss://[user:password@]host:port/db`; a
    /// secret, since it may hold a password.
    pub url: Secret,
    /// PEM file of the CA that signed a `rediss://` server's certificate;
    /// `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Key template; `{id}` is replaced by the session id as the browser sent it.
    pub key: String,
    /// Template of a set key listing the session's videos; `None`: every video.
    pub shares_key: Option<String>,
    /// Password, when not in the URL.
    pub password: Option<SecretSource>,
    /// How long a lookup (and a connection attempt) may take.
    pub timeout: Duration,
}

impl RedisSettings {
    /// Files this source reads (a password file, a CA file).
    pub fn files(&self) -> Vec<PathBuf> {
        let password = self
            .password
            .iter()
            .filter_map(|p| p.file().map(|f| f.to_path_buf()));
        password.chain(self.ca_file.iter().cloned()).collect()
    }
}

/// Sessions in Redis.
pub struct RedisSource {
    client: redis::Client,
    config: ConnectionManagerConfig,
    // Replaced whole when its connection stops answering: the manager
    // reconnects by itself only when the connection breaks, and a
    // half-open one (Redis gone behind a firewall, a reply that never
    // ends) would otherwise time every lookup out until TCP gives up.
    manager: ArcSwap<ConnectionManager>,
    timeouts_in_a_row: AtomicU32,
    // A Redis that hangs is connected to anew every few lookups; logged once a burst.
    reconnects: Bursts,
    key: String,
    shares_key: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisSource(key: {:?})", self.key)
    }
}

/// The placeholder of a key template.
const ID: &str = "{id}";

/// Lookups timed out in a row after which the connection is made anew.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

impl RedisSource {
    /// Prepares the connection; it is made on the first lookup.
    pub fn new(settings: &RedisSettings) -> Result<RedisSource, LoadError> {
        // Only the kind of a Redis error is shown: its text could quote the URL and its password.
        let bad = |what: &str, err: redis::RedisError| {
            LoadError::Remote(format!("{what}: {:?}", err.kind()))
        };
        let mut info = settings
            .url
            .expose()
            .into_connection_info()
            .map_err(|err| bad("not a Redis URL", err))?;
        if let Some(password) = &settings.password {
            let password = password
                .read()
                .map_err(|err| LoadError::Remote(format!("password: {err}")))?;
            let redis = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(redis);
        }
        let client = match &settings.ca_file {
            None => redis::Client::open(info),
            Some(ca_file) => {
                let root_cert = std::fs::read(ca_file).map_err(|err| {
                    LoadError::Remote(format!("ca_file {}: {err}", ca_file.display()))
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|err| bad("Redis client", err))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|err| bad("Redis connection", err))?;
        Ok(RedisSource {
            client,
            config,
            manager: ArcSwap::from_pointee(manager),
            timeouts_in_a_row: AtomicU32::new(0),
            reconnects: Bursts::default(),
            key: settings.key.clone(),
            shares_key: settings.shares_key.clone(),
            timeout: settings.timeout,
        })
    }

    /// Whether Redis answers a PING within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let used = self.manager.load_full();
        let mut connection = (*used).clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let answer = tokio::time::timeout(timeout, ping).await;
        self.note_answer(&used, &answer);
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(failure(&err)),
            Err(_) => Err(format!("Redis did not answer within {timeout:?}")),
        }
    }

    /// Counts lookups on `used` that timed out in a row, and makes a new
    /// connection after [`TIMEOUTS_BEFORE_RECONNECT`] of them.
    fn note_answer<T>(
        &self,
        used: &Arc<ConnectionManager>,
        answer: &Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) {
        let timed_out = match answer {
            Err(_) => true,
            Ok(Err(err)) => err.is_timeout(),
            Ok(Ok(_)) => false,
        };
        if !timed_out {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        if self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 < TIMEOUTS_BEFORE_RECONNECT {
            return;
        }
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        // Only the lookup that saw the old connection replaces it, once.
        let previous = self.manager.compare_and_swap(used, Arc::new(fresh));
        if Arc::ptr_eq(&previous, used) {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            match self.reconnects.begins() {
                Some(unlogged) => tracing::warn!(
                    timeouts = TIMEOUTS_BEFORE_RECONNECT,
                    earlier_reconnects_not_logged = unlogged,
                    "Redis stopped answering on its connection: connecting anew \
                     (again each time it stops; only counted while this burst lasts)"
                ),
                None => tracing::debug!("Redis stopped answering again: connecting anew"),
            }
        }
    }

    /// Looks the session's key up (and its set of videos).
    pub async fn check(
        &self,
        session: &SessionKey<'_>,
        _visit: &Visit<'_>,
    ) -> Result<Verdict, SourceError> {
        let id = session.id();
        let mut pipe = redis::pipe();
        pipe.exists(self.key.replace(ID, id));
        if let Some(shares) = &self.shares_key {
            pipe.smembers(shares.replace(ID, id));
        }
        let used = self.manager.load_full();
        let mut connection = (*used).clone();
        let lookup = pipe.query_async::<Vec<redis::Value>>(&mut connection);
        let answer = tokio::time::timeout(self.timeout, lookup).await;
        self.note_answer(&used, &answer);
        let values = answer
            .map_err(|_| {
                SourceError::Unavailable(format!("Redis did not answer within {:?}", self.timeout))
            })?
            .map_err(|err| SourceError::Unavailable(failure(&err)))?;
        let mut values = values.into_iter();
        // EXISTS answers a count and nothing else: any other reply means the
        // connection is out of step or something else answers, so no verdict.
        match values.next() {
            Some(redis::Value::Int(0)) => return Ok(Verdict::Denied),
            Some(redis::Value::Int(count)) if count > 0 => {}
            other => {
                return Err(SourceError::Unavailable(format!(
                    "Redis EXISTS answered {}",
                    reply_kind(other.as_ref())
                )))
            }
        }
        let entitlements = match values.next() {
            None => Entitlements::All,
            Some(set) => {
                let videos: Vec<String> = redis::from_redis_value(set).map_err(|_| {
                    SourceError::Unavailable("Redis SMEMBERS answered no set of names".into())
                })?;
                Entitlements::only(videos)
            }
        };
        Ok(Verdict::Allowed(Principal::entitled(session, entitlements)))
    }
}

/// What went wrong with Redis, in words that never hold what it was sent
/// or what it answered: the text of a server's error can quote the
/// command, key and all ("unknown command 'EXISTS', with args beginning
/// with: 'session:<id>'"), and the key holds the session id.
fn failure(err: &redis::RedisError) -> String {
    let code = err.code().filter(|code| {
        (1..=16).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase())
    });
    if let Some(code) = code {
        return format!("Redis answered an error ({code})");
    }
    let what = if err.is_connection_refusal() {
        "connection refused"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_connection_dropped() {
        "connection dropped"
    } else {
        err.category()
    };
    format!("Redis: {what}")
}

/// What kind of reply `value` is, never what it holds.
fn reply_kind(value: Option<&redis::Value>) -> &'static str {
    match value {
        None => "nothing",
        Some(redis::Value::Int(_)) => "a negative count",
        Some(redis::Value::Nil) => "nil",
        Some(redis::Value::BulkString(_)) => "a bulk string",
        Some(redis::Value::SimpleString(_)) => "a simple string",
        Some(redis::Value::Okay) => "OK",
        Some(redis::Value::ServerError(_)) => "an error",
        Some(_) => "an unexpected type",
    }
}
