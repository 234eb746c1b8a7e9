//! `gateway.toml` exactly as serde reads it: no validation beyond types.
//!
//! Every table denies unknown keys, so a typo is an error instead of a
//! silently ignored setting that could leave a page open. No type here
//! derives `Debug`: `[embed.token]` may hold an inline key.

// Field names are the gateway.toml keys; gateway.toml documents each one.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: Spanned<RawUpstream>,
    pub session: Spanned<RawSession>,
    #[serde(default)]
    pub reload: RawReload,
    pub admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub rewrite: RawRewrite,
    #[serde(default)]
    pub compression: RawCompression,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default, rename = "embed")]
    pub embeds: Vec<Spanned<RawEmbed>>,
}

/// A duration written the human way ("5m", "250ms"), at most `MOST_DURATION`.
#[derive(Debug, Clone, Copy)]
pub struct HumanDuration(pub Duration);

/// The longest duration any key takes: ten years. Far beyond any timeout or
/// token lifetime, and far enough below what a clock can add that no
/// deadline reckoned from it overflows (humantime reads up to 2^64 seconds).
pub const MOST_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let duration: Duration = humantime_serde::deserialize(deserializer)?;
        if duration > MOST_DURATION {
            return Err(serde::de::Error::custom(
                "a duration must be at most 10 years (\"3650d\")",
            ));
        }
        Ok(HumanDuration(duration))
    }
}

/// `[server]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Spanned<String>,
    pub workers: Option<Spanned<usize>>,
    pub header_timeout: Option<Spanned<HumanDuration>>,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub shutdown_timeout: Option<HumanDuration>,
    pub trust_forwarded: Option<bool>,
    pub trusted_proxies: Option<Spanned<Vec<String>>>,
    pub max_connections: Option<usize>,
    pub http2_max_concurrent_streams: Option<Spanned<u32>>,
    pub max_connections_per_ip: Option<usize>,
    pub ipv6_client_prefix: Option<Spanned<i64>>,
    pub body_timeout: Option<Spanned<HumanDuration>>,
    pub body_deadline: Option<Spanned<HumanDuration>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub send_timeout: Option<Spanned<HumanDuration>>,
    pub drain_delay: Option<HumanDuration>,
    pub max_body_bytes: Option<u64>,
    pub upgrade_idle_timeout: Option<Spanned<HumanDuration>>,
    pub tls: Option<Spanned<RawTls>>,
}

/// `[server.tls] cert`: one certificate file (with `key` beside it), or
/// `[[server.tls.cert]]` tables, one per certificate, picked by SNI.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawCerts {
    One(PathBuf),
    Many(Vec<RawNamedCert>),
}

/// One `[[server.tls.cert]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[server.tls]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Spanned<RawCerts>,
    pub key: Option<Spanned<PathBuf>>,
    pub redirect_listen: Option<Spanned<String>>,
    pub redirect_except: Option<Spanned<String>>,
}

/// `[admin]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Spanned<String>,
    pub check_interval: Option<Spanned<HumanDuration>>,
    pub check_timeout: Option<Spanned<HumanDuration>>,
}

/// `[log]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<RawLogFormat>,
    pub level: Option<Spanned<String>>,
    pub access_file: Option<Spanned<PathBuf>>,
}

/// `[log] format`
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    Text,
    Json,
}

/// `[upstream]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Spanned<String>,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub response_timeout: Option<Spanned<HumanDuration>>,
    pub read_timeout: Option<Spanned<HumanDuration>>,
    pub preserve_host: Option<bool>,
    pub underscores_in_headers: Option<bool>,
    pub pool_idle_timeout: Option<HumanDuration>,
    pub pool_max_idle: Option<usize>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub server_name: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
    pub http2: Option<RawHttp2>,
    pub max_in_flight: Option<Spanned<usize>>,
    pub max_uploads_in_flight: Option<Spanned<usize>>,
    pub max_uploads_per_client: Option<Spanned<usize>>,
    pub queue_timeout: Option<Spanned<HumanDuration>>,
}

/// `[upstream] http2`
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHttp2 {
    Auto,
    Never,
}

/// `[session]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie: Spanned<String>,
    pub deny_page: Option<Spanned<PathBuf>>,
    pub cache_control: Option<Spanned<String>>,
    pub allowlist: Spanned<RawAllowlist>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
}

/// `[session.rate_limit]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_minute: u32,
    pub burst: Option<u32>,
}

/// `[session.allowlist]`: exactly one source, its cache, and what a failure means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowlist {
    pub file: Option<Spanned<PathBuf>>,
    pub forward_auth: Option<Spanned<RawForwardAuth>>,
    pub redis: Option<Spanned<RawRedis>>,
    pub cache: Option<Spanned<RawCache>>,
    pub on_error: Option<RawOnError>,
    pub entitlement: Option<Spanned<String>>,
}

/// `[session.allowlist.forward_auth]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub url: Spanned<String>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    pub original_request: Option<bool>,
    pub shares_header: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<usize>>,
}

/// `[session.allowlist.redis]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Spanned<String>,
    pub ca_file: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<String>>,
    pub shares_key: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub timeout: Option<Spanned<HumanDuration>>,
}

/// `[session.allowlist.cache]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub ttl: Option<Spanned<HumanDuration>>,
    pub negative_ttl: Option<Spanned<HumanDuration>>,
    pub max_entries: Option<Spanned<u64>>,
}

/// `on_error`: the status a visitor gets when the session source cannot answer.
#[derive(Clone, Copy, Deserialize)]
pub enum RawOnError {
    #[serde(rename = "503")]
    Unavailable,
    #[serde(rename = "403")]
    Forbidden,
}

/// `[reload]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub watch: Option<bool>,
    pub interval: Option<Spanned<HumanDuration>>,
}

/// `[compression]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    pub enabled: Option<bool>,
    pub level: Option<Spanned<i32>>,
    pub min_size: Option<u64>,
}

/// `[rewrite]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub max_memory: Option<Spanned<usize>>,
}

/// One `[[route]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// A path prefix; a query route has none.
    pub prefix: Option<Spanned<String>>,
    /// Query parameter names: a request carrying one takes this route, whatever its path.
    pub query: Option<Spanned<Vec<String>>>,
    pub access: Option<Spanned<RawAccess>>,
    /// Shorthand kept from before `access`: true = "session", false = "public".
    pub gated: Option<bool>,
    pub token: Option<Spanned<RawRouteToken>>,
}

/// A route's `access`.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAccess {
    Public,
    Session,
    Token,
}

impl From<RawAccess> for crate::gate::Access {
    fn from(raw: RawAccess) -> Self {
        match raw {
            RawAccess::Public => crate::gate::Access::Public,
            RawAccess::Session => crate::gate::Access::Session,
            RawAccess::Token => crate::gate::Access::Token,
        }
    }
}

/// The shared secret and token layout, as `[embed.token]` and `[route.token]`
/// both write them (serde cannot flatten a table that denies unknown keys).
pub struct RawSigner {
    pub key_env: Option<Spanned<String>>,
    pub key_file: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<String>>,
    pub algorithm: Option<crate::token::Algorithm>,
    pub salt_env: Option<Spanned<String>>,
    pub salt_file: Option<Spanned<PathBuf>>,
    pub salt: Option<Spanned<String>>,
    pub field_delimiter: Option<Spanned<String>>,
    pub acl_delimiter: Option<Spanned<String>>,
    pub escape_early: Option<bool>,
}

/// Moves the signer keys out of a token table.
macro_rules! take_signer {
    ($table:expr) => {
        RawSigner {
            key_env: $table.key_env.take(),
            key_file: $table.key_file.take(),
            key: $table.key.take(),
            algorithm: $table.algorithm.take(),
            salt_env: $table.salt_env.take(),
            salt_file: $table.salt_file.take(),
            salt: $table.salt.take(),
            field_delimiter: $table.field_delimiter.take(),
            acl_delimiter: $table.acl_delimiter.take(),
            escape_early: $table.escape_early.take(),
        }
    };
}

impl RawRouteToken {
    /// The key and layout keys.
    pub fn take_signer(&mut self) -> RawSigner {
        take_signer!(self)
    }
}

impl RawToken {
    /// The key and layout keys.
    pub fn take_signer(&mut self) -> RawSigner {
        take_signer!(self)
    }
}

/// `[route.token]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteToken {
    pub key_env: Option<Spanned<String>>,
    pub key_file: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<String>>,
    pub algorithm: Option<crate::token::Algorithm>,
    pub salt_env: Option<Spanned<String>>,
    pub salt_file: Option<Spanned<PathBuf>>,
    pub salt: Option<Spanned<String>>,
    pub field_delimiter: Option<Spanned<String>>,
    pub acl_delimiter: Option<Spanned<String>>,
    pub escape_early: Option<bool>,
    pub param: Option<Spanned<String>>,
    pub cookie: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
    pub leeway: Option<Spanned<HumanDuration>>,
}

/// One `[[embed]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbed {
    pub name: Option<Spanned<String>>,
    pub src: Spanned<String>,
    pub param: Option<Spanned<String>>,
    pub token: Spanned<RawToken>,
}

/// `[embed.token]`: a local EdgeAuth minter's keys, or a remote one's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub kind: Spanned<RawTokenKind>,
    pub key_env: Option<Spanned<String>>,
    pub key_file: Option<Spanned<PathBuf>>,
    pub key: Option<Spanned<String>>,
    pub algorithm: Option<crate::token::Algorithm>,
    pub salt_env: Option<Spanned<String>>,
    pub salt_file: Option<Spanned<PathBuf>>,
    pub salt: Option<Spanned<String>>,
    pub field_delimiter: Option<Spanned<String>>,
    pub acl_delimiter: Option<Spanned<String>>,
    pub escape_early: Option<bool>,
    pub ttl: Option<Spanned<HumanDuration>>,
    pub acl: Option<Spanned<RawAcl>>,
    pub url: Option<Spanned<String>>,
    pub ip: Option<bool>,
    pub id: Option<bool>,
    pub data: Option<Spanned<String>>,
    pub start_offset: Option<Spanned<RawStartOffset>>,
    pub provider: Option<Spanned<RawProvider>>,
    pub api_base: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub pointer: Option<Spanned<String>>,
    pub bearer_env: Option<Spanned<String>>,
    pub bearer_file: Option<Spanned<PathBuf>>,
    pub bearer: Option<Spanned<String>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub concurrency: Option<Spanned<usize>>,
    pub on_error: Option<crate::token::OnMintError>,
    pub reuse: Option<Spanned<HumanDuration>>,
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// `[embed.token] kind`
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTokenKind {
    Edgeauth,
    Remote,
}

/// `[embed.token] provider`: a preset for a remote minter.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProvider {
    Infomaniak,
}

/// `acl`: one pattern or several.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawAcl {
    One(String),
    Many(Vec<String>),
}

/// `start_offset`: a duration, or "none" to leave `st` out.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawStartOffset {
    Duration(HumanDuration),
    Word(String),
}
