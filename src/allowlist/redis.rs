//! Session source: the Redis the CMS keeps its sessions in.
//!
//! A session is allowed while its key exists (`session:{id}`, as Django's,
//! Laravel's, Rails' and PHP's Redis session stores keep them); an optional
//! set (`entitlements:{id}`) lists the videos it may watch. The connection is
//! made on first use (over TLS for `rediss://`) and remade by itself after an
//! outage; while Redis does not answer, the source cannot answer, and the
//! gate fails closed.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;

use super::{Entitlements, LoadError, Principal, SessionKey, SourceError, Verdict, Visit};
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
    manager: ConnectionManager,
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
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| bad("Redis connection", err))?;
        Ok(RedisSource {
            manager,
            key: settings.key.clone(),
            shares_key: settings.shares_key.clone(),
            timeout: settings.timeout,
        })
    }

    /// Whether Redis answers a PING within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let mut connection = self.manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("Redis: {err}")),
            Err(_) => Err(format!("Redis did not answer within {timeout:?}")),
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
        let mut connection = self.manager.clone();
        let lookup = pipe.query_async::<Vec<redis::Value>>(&mut connection);
        let values = tokio::time::timeout(self.timeout, lookup)
            .await
            .map_err(|_| {
                SourceError::Unavailable(format!("Redis did not answer within {:?}", self.timeout))
            })?
            .map_err(|err| SourceError::Unavailable(format!("Redis: {err}")))?;
        let mut values = values.into_iter();
        let exists: bool = values
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|err| SourceError::Unavailable(format!("Redis EXISTS: {err}")))?
            .unwrap_or(false);
        if !exists {
            return Ok(Verdict::Denied);
        }
        let entitlements = match values.next() {
            None => Entitlements::All,
            Some(set) => {
                let videos: Vec<String> = redis::from_redis_value(set)
                    .map_err(|err| SourceError::Unavailable(format!("Redis SMEMBERS: {err}")))?;
                Entitlements::only(videos)
            }
        };
        Ok(Verdict::Allowed(Principal::entitled(session, entitlements)))
    }
}
