//! `gateway.toml`, read into plain, comparable [`Settings`].
//!
//! [`raw`] is what serde sees; [`Settings`] is what it means, validated:
//! plain data with no open files or clients, so that two loads of the same
//! file compare equal and a reload can tell which parts changed. Files the
//! settings name (allowlist, deny page, keys) are read when a runtime is
//! built from them; [`Places`] remembers where each such key was written, so
//! that a failure then still names file, line and column.

mod allowlist;
mod embed;
pub mod raw;
mod routes;
mod token;
mod upstream;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use thiserror::Error;

use crate::admin::AdminSettings;
use crate::allowlist::SessionsSettings;
use crate::compression::CompressionSettings;
use crate::embed::EmbedSettings;
use crate::gate::RouteSpec;
use crate::logging::LogSettings;
use crate::proxy::UpstreamSettings;
use crate::rewrite::RewriteLimits;
use crate::server::tls::TlsSettings;
use crate::server::ConnectionLimits;
use raw::RawConfig;
use validate::{position, Validator};

/// The validated settings of one gateway.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file this was read from.
    pub source: PathBuf,
    /// Listener settings.
    pub server: ServerSettings,
    /// How changes are picked up while running.
    pub reload: ReloadSettings,
    /// The admin endpoints; `None` when off.
    pub admin: Option<AdminSettings>,
    /// How logs are written (at start only).
    pub log: LogSettings,
    /// Where the CMS is and how long to wait for it.
    pub upstream: UpstreamSettings,
    /// The session cookie, its source, and what denied visitors get.
    pub session: SessionSettings,
    /// Which paths ask what of visitors.
    pub routes: Vec<RouteSpec>,
    /// Which iframes get a token, and how it is made.
    pub embeds: Vec<EmbedSettings>,
    /// Limits of the streaming rewriter.
    pub rewrite: RewriteLimits,
    /// Compression of rewritten pages.
    pub compression: CompressionSettings,
}

/// `[server]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Address the gateway listens on (fixed at start).
    pub listen: SocketAddr,
    /// Runtime worker threads; 0 means one per core (fixed at start).
    pub workers: usize,
    /// Per-connection limits.
    pub connections: ConnectionLimits,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// How long the listener keeps accepting after SIGTERM, while not ready.
    pub drain_delay: Duration,
    /// TLS termination; `None` for cleartext (on or off is fixed at start).
    pub tls: Option<TlsSettings>,
    /// Most connections at once, in all and per address.
    pub admission: crate::server::Admission,
    /// Peers whose X-Forwarded-For, Forwarded and X-Request-Id are believed.
    pub trusted_proxies: crate::client::TrustedProxies,
    /// Longest gap allowed between two pieces of a visitor's request body.
    pub body_timeout: Duration,
    /// Longest a visitor's whole request body may take to arrive.
    pub body_deadline: Duration,
    /// Largest request body passed on to the CMS; `None` for no limit.
    pub max_body_bytes: Option<u64>,
    /// How long an upgraded connection may sit with nothing moving.
    pub upgrade_idle_timeout: Duration,
}

/// `[reload]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Watch gateway.toml and the files it names, and reload when one changes.
    pub watch: bool,
    /// How often the files are looked at.
    pub interval: Duration,
}

/// `[session]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Name of the session cookie.
    pub cookie: String,
    /// File whose contents are the 403 page; `None` for the built-in page.
    pub deny_page: Option<PathBuf>,
    /// `Cache-Control` put on allowed responses of gated routes that are not
    /// rewritten (rewritten pages always get `private, no-store`); `None` keeps the CMS's.
    pub cache_control: Option<HeaderValue>,
    /// Who answers whether a session is allowed, behind which cache.
    pub allowlist: SessionsSettings,
    /// The embed placeholder whose values name videos for entitlements.
    pub entitled_by: String,
    /// Gated requests per client address; `None` for no limit.
    pub rate_limit: Option<crate::gate::rate::RateLimitSettings>,
}

impl Settings {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Settings::from_toml(&text, path)
    }

    /// Validates `text` as if read from `path`; relative paths in it are
    /// taken from `path`'s folder.
    pub fn from_toml(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            at: position(text, err.span().unwrap_or(0..0)),
            message: err.message().trim_end().to_string(),
        })?;
        let base_dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut validator = Validator::new(text, path, base_dir);
        let settings = validator.settings(raw)?;
        use sha2::Digest as _;
        Ok(Loaded {
            settings,
            places: validator.into_places(),
            digest: sha2::Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Every file these settings read: the config itself, the allowlist,
    /// the deny page, key, salt, bearer and CA files. A change to any of them is a reason to reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.source.clone()];
        files.extend(self.session.allowlist.source.files());
        files.extend(self.session.deny_page.clone());
        files.extend(self.server.tls.iter().flat_map(TlsSettings::files));
        for embed in &self.embeds {
            files.extend(embed.token.files());
        }
        for route in &self.routes {
            files.extend(route.token.iter().flat_map(|t| t.signer.files()));
        }
        files.sort();
        files.dedup();
        files
    }
}

/// Settings just read, with the places of the keys whose files are read later.
#[derive(Debug)]
pub struct Loaded {
    /// The settings.
    pub settings: Settings,
    /// Where keys were written.
    pub places: Places,
    /// SHA-256 of the file's text, to tell which config is in force.
    pub digest: [u8; 32],
}

/// Where in the config file each key that names a file or a key was written.
#[derive(Debug, Default, Clone)]
pub struct Places {
    path: PathBuf,
    at: HashMap<String, Position>,
}

impl Places {
    /// The error for `key` (a dotted key such as `embed[0].token.key`), placed
    /// where the key was written, or at the top of the file if it was not.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            at: self
                .at
                .get(key)
                .copied()
                .unwrap_or(Position { line: 1, column: 1 }),
            key: key.to_string(),
            message: message.to_string(),
        }
    }
}

/// The built-in 403 page, used when `session.deny_page` is not set.
pub const DEFAULT_DENY_PAGE: &str = "<!doctype html>\n<html><head><title>403 Forbidden</title></head>\n<body><h1>403 Forbidden</h1><p>You need to be signed in to view this page.</p></body></html>\n";

/// A position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a config could not be loaded or built.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{path}:{at}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Where.
        at: Position,
        /// What the parser said.
        message: String,
    },
    /// A value parsed but does not make sense.
    #[error("{path}:{at}: {key}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Where.
        at: Position,
        /// Dotted key, e.g. `embed[0].token.acl`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[upstream]
url = "http://127.0.0.1:8081"

[session]
cookie = "sessionid"

[session.allowlist]
file = "allowlist.txt"

[[route]]
prefix = "/videos/"
gated = true

[[route]]
prefix = "/"
gated = false

[[embed]]
src = "https://api.vod2.infomaniak.com/res/embed/{share}.html"

[embed.token]
kind = "edgeauth"
key = "00112233445566778899aabbccddeeff"
ttl = "5m"
acl = "/hls/{share}/*"
"#;

    fn settings(text: &str) -> Settings {
        Settings::from_toml(text, Path::new("/etc/embedgate/gateway.toml"))
            .map(|loaded| loaded.settings)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn error(text: &str) -> String {
        Settings::from_toml(text, Path::new("gateway.toml"))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn the_same_file_read_twice_gives_equal_settings() {
        assert_eq!(settings(BASE), settings(BASE));
        let reformatted = format!("# a comment\n{}", BASE.replace(" = ", "="));
        assert_eq!(settings(BASE), settings(&reformatted));
        let explicit_defaults = BASE.replace(
            "[upstream]\n",
            "[upstream]\nconnect_timeout = \"5s\"\npreserve_host = true\nunderscores_in_headers = false\n",
        );
        assert_eq!(settings(BASE), settings(&explicit_defaults));
    }

    #[test]
    fn any_changed_value_makes_settings_differ_in_that_part_only() {
        let base = settings(BASE);
        let other_key = settings(&BASE.replace("00112233", "00112234"));
        assert_ne!(base, other_key, "an inline key is compared");
        assert_eq!(base.upstream, other_key.upstream);
        assert_eq!(base.routes, other_key.routes);
        assert_ne!(base.embeds, other_key.embeds);

        let other_timeout =
            settings(&BASE.replace("[upstream]\n", "[upstream]\nread_timeout = \"61s\"\n"));
        assert_ne!(base.upstream, other_timeout.upstream);
        assert_eq!(base.embeds, other_timeout.embeds);

        let other_route = settings(&BASE.replacen("gated = true", "gated = false", 1));
        assert_ne!(base.routes, other_route.routes);
        assert_eq!(base.upstream, other_route.upstream);
    }

    #[test]
    fn settings_name_every_file_they_read() {
        let text = BASE
            .replace(
                "key = \"00112233445566778899aabbccddeeff\"",
                "key_file = \"keys/video.key\"",
            )
            .replace("[session]\n", "[session]\ndeny_page = \"/srv/403.html\"\n");
        let files = settings(&text).files();
        for file in [
            "/etc/embedgate/gateway.toml",
            "/etc/embedgate/allowlist.txt",
            "/etc/embedgate/keys/video.key",
            "/srv/403.html",
        ] {
            assert!(files.contains(&PathBuf::from(file)), "{file} in {files:?}");
        }
    }

    use crate::gate::Access;

    #[test]
    fn gated_is_shorthand_for_access() {
        let shorthand = settings(BASE);
        let spelled_out = settings(
            &BASE
                .replacen("gated = true", "access = \"session\"", 1)
                .replacen("gated = false", "access = \"public\"", 1),
        );
        assert_eq!(shorthand.routes, spelled_out.routes);
        assert_eq!(shorthand.routes[0].access, Access::Session);
        assert_eq!(shorthand.routes[1].access, Access::Public);
    }

    #[test]
    fn a_route_needs_exactly_one_of_access_and_gated() {
        let both = error(&BASE.replacen("gated = true", "gated = true\naccess = \"public\"", 1));
        assert!(
            both.contains("route[0]: set access or gated, not both"),
            "{both}"
        );
        let neither = error(&BASE.replacen("gated = true\n", "", 1));
        assert!(neither.contains("route[0]: needs access"), "{neither}");
        let unknown = error(&BASE.replacen("gated = true", "access = \"token\"", 1));
        assert!(unknown.contains("gateway.toml:"), "{unknown}");
    }
}
