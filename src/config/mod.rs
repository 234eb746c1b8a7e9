//! `gateway.toml`, read into plain, comparable [`Settings`].
//!
//! [`raw`] is what serde sees; [`Settings`] is what it means, validated:
//! plain data with no open files or clients, so that two loads of the same
//! file compare equal and a reload can tell which parts changed. Files the
//! settings name (allowlist, deny page, keys) are read when a runtime is
//! built from them; [`Places`] remembers where each such key was written, so
//! that a failure then still names file, line and column.

pub mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::Scheme;
use http::HeaderValue;
use secrecy::SecretString;
use thiserror::Error;
use toml::Spanned;

use crate::allowlist::SourceSettings;
use crate::embed::{EmbedPattern, EmbedSettings};
use crate::gate::{Access, RouteSpec, RouteTable};
use crate::proxy::UpstreamSettings;
use crate::rewrite::RewriteLimits;
use crate::server::ConnectionLimits;
use crate::syntax::{is_cookie_name_byte, is_query_name_byte};
use crate::token::{KeySource, TokenSettings};
use raw::RawConfig;

/// The validated settings of one gateway.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file this was read from.
    pub source: PathBuf,
    /// Listener settings.
    pub server: ServerSettings,
    /// How changes are picked up while running.
    pub reload: ReloadSettings,
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
    /// Append to the visitor's X-Forwarded-For (behind a trusted proxy) rather than replace it.
    pub trust_forwarded: bool,
    /// Longest gap allowed between two pieces of a visitor's request body.
    pub body_timeout: Duration,
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
    /// Who answers whether a session is allowed.
    pub source: SourceSettings,
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
        let mut validator = Validator {
            text,
            path,
            base_dir,
            places: Places::default(),
        };
        let settings = validator.settings(raw)?;
        Ok(Loaded {
            settings,
            places: validator.places,
        })
    }

    /// Every file these settings read: the config itself, the allowlist,
    /// the deny page and key files. A change to any of them is a reason to reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.source.clone()];
        files.extend(self.session.source.files());
        files.extend(self.session.deny_page.clone());
        for embed in &self.embeds {
            files.extend(embed.token.key.file().map(Path::to_path_buf));
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

fn position(text: &str, span: Range<usize>) -> Position {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// Turns a [`RawConfig`] into [`Settings`], reporting positions in `text`.
struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    base_dir: &'a Path,
    places: Places,
}

impl Validator<'_> {
    fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl fmt::Display,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            at: position(self.text, span),
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// Remembers where `key` was written, for errors found when its file is read.
    fn place(&mut self, key: impl Into<String>, span: Range<usize>) {
        self.places.at.insert(key.into(), position(self.text, span));
    }

    fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        }
    }

    fn settings(&mut self, raw: RawConfig) -> Result<Settings, ConfigError> {
        self.places.path = self.path.to_path_buf();
        let server = self.server(raw.server)?;
        let reload = self.reload(raw.reload)?;
        let upstream = self.upstream(raw.upstream)?;
        let session = self.session(raw.session)?;
        let max_memory = match raw.rewrite.max_memory {
            Some(v) if *v.get_ref() < 16 * 1024 => {
                return Err(self.invalid(
                    v.span(),
                    "rewrite.max_memory",
                    "must be at least 16384 bytes",
                ));
            }
            Some(v) => v.into_inner(),
            None => 4 * 1024 * 1024,
        };
        let routes = self.routes(raw.routes)?;
        let mut embeds = Vec::with_capacity(raw.embeds.len());
        for (i, embed) in raw.embeds.into_iter().enumerate() {
            embeds.push(self.embed(i, embed)?);
        }
        Ok(Settings {
            source: self.path.to_path_buf(),
            server,
            reload,
            upstream,
            session,
            routes,
            embeds,
            rewrite: RewriteLimits { max_memory },
        })
    }

    fn server(&self, raw: raw::RawServer) -> Result<ServerSettings, ConfigError> {
        let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                raw.listen.span(),
                "server.listen",
                format_args!(
                    "{:?} is not an address:port such as \"127.0.0.1:8080\"",
                    raw.listen.get_ref()
                ),
            )
        })?;
        let header_timeout = self.positive(
            raw.header_timeout,
            "server.header_timeout",
            Duration::from_secs(10),
        )?;
        let max_header_bytes = match raw.max_header_bytes {
            // hyper refuses smaller read buffers.
            Some(v) if *v.get_ref() < 8192 => {
                return Err(self.invalid(
                    v.span(),
                    "server.max_header_bytes",
                    "must be at least 8192",
                ));
            }
            Some(v) => v.into_inner(),
            None => 64 * 1024,
        };
        Ok(ServerSettings {
            listen,
            workers: raw.workers.unwrap_or(0),
            connections: ConnectionLimits {
                header_timeout,
                idle_timeout: self.positive(
                    raw.idle_timeout,
                    "server.idle_timeout",
                    Duration::from_secs(60),
                )?,
                max_header_bytes,
            },
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(Duration::from_secs(30), |d| d.0),
            trust_forwarded: raw.trust_forwarded.unwrap_or(true),
            body_timeout: self.positive(
                raw.body_timeout,
                "server.body_timeout",
                Duration::from_secs(60),
            )?,
        })
    }

    fn reload(&self, raw: raw::RawReload) -> Result<ReloadSettings, ConfigError> {
        Ok(ReloadSettings {
            watch: raw.watch.unwrap_or(true),
            interval: self.positive(raw.interval, "reload.interval", Duration::from_secs(1))?,
        })
    }

    fn positive(
        &self,
        value: Option<Spanned<raw::HumanDuration>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if v.get_ref().0.is_zero() => {
                Err(self.invalid(v.span(), key, "must be longer than zero"))
            }
            Some(v) => Ok(v.into_inner().0),
        }
    }

    fn upstream(&self, raw: Spanned<raw::RawUpstream>) -> Result<UpstreamSettings, ConfigError> {
        let raw = raw.into_inner();
        let url_span = raw.url.span();
        let bad_url = |why: &str| self.invalid(url_span.clone(), "upstream.url", why);
        let uri: http::Uri = raw
            .url
            .get_ref()
            .parse()
            .map_err(|_| bad_url("not a URL such as \"http://127.0.0.1:8081\""))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad_url("needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(bad_url("only http:// upstreams are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad_url("needs a host"))?;
        if authority.as_str().contains('@') {
            return Err(bad_url("must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(bad_url("must not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad_url("bad host"))?;
        Ok(UpstreamSettings {
            scheme,
            authority,
            host_header,
            base_path,
            connect_timeout: self.positive(
                raw.connect_timeout,
                "upstream.connect_timeout",
                Duration::from_secs(5),
            )?,
            response_timeout: self.positive(
                raw.response_timeout,
                "upstream.response_timeout",
                Duration::from_secs(30),
            )?,
            read_timeout: self.positive(
                raw.read_timeout,
                "upstream.read_timeout",
                Duration::from_secs(60),
            )?,
            preserve_host: raw.preserve_host.unwrap_or(true),
            pool_idle_timeout: raw
                .pool_idle_timeout
                .map_or(Duration::from_secs(90), |d| d.0),
            pool_max_idle: raw.pool_max_idle.unwrap_or(256),
        })
    }

    fn session(&mut self, raw: Spanned<raw::RawSession>) -> Result<SessionSettings, ConfigError> {
        let raw = raw.into_inner();
        let cookie = raw.cookie.get_ref();
        if cookie.is_empty() || !cookie.bytes().all(is_cookie_name_byte) {
            return Err(self.invalid(
                raw.cookie.span(),
                "session.cookie",
                format_args!("{cookie:?} is not a valid cookie name"),
            ));
        }
        let deny_page = raw.deny_page.map(|file| {
            self.place("session.deny_page", file.span());
            self.resolve(file.get_ref())
        });
        let cache_control = match raw.cache_control {
            None => Some(HeaderValue::from_static("private, no-store")),
            Some(v) if v.get_ref().trim().is_empty() => None,
            Some(v) => Some(HeaderValue::from_str(v.get_ref()).map_err(|_| {
                self.invalid(
                    v.span(),
                    "session.cache_control",
                    "not a valid header value",
                )
            })?),
        };
        let allowlist_span = raw.allowlist.span();
        let source = match raw.allowlist.into_inner().file {
            Some(file) => {
                self.place("session.allowlist.file", file.span());
                SourceSettings::File {
                    path: self.resolve(file.get_ref()),
                }
            }
            None => {
                return Err(self.invalid(
                    allowlist_span,
                    "session.allowlist",
                    "needs a source: file = \"allowlist.txt\"",
                ));
            }
        };
        Ok(SessionSettings {
            cookie: cookie.clone(),
            deny_page,
            cache_control,
            source,
        })
    }

    fn routes(&self, raw: Vec<Spanned<raw::RawRoute>>) -> Result<Vec<RouteSpec>, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        let mut prefix_spans = Vec::with_capacity(raw.len());
        for (index, route) in raw.into_iter().enumerate() {
            let span = route.span();
            let route = route.into_inner();
            let access = match (route.access, route.gated) {
                (Some(access), None) => access.into_inner().into(),
                (None, Some(true)) => Access::Session,
                (None, Some(false)) => Access::Public,
                (Some(_), Some(_)) => {
                    return Err(self.invalid(
                        span,
                        format!("route[{index}]"),
                        "set access or gated, not both",
                    ));
                }
                (None, None) => {
                    return Err(self.invalid(
                        span,
                        format!("route[{index}]"),
                        "needs access = \"public\" or \"session\"",
                    ));
                }
            };
            prefix_spans.push(route.prefix.span());
            routes.push(RouteSpec {
                prefix: route.prefix.into_inner(),
                access,
            });
        }
        // Compiling checks every prefix; the runtime compiles them again.
        RouteTable::new(&routes).map_err(|err| {
            let span = prefix_spans.get(err.index).cloned().unwrap_or(0..0);
            self.invalid(span, format!("route[{}].prefix", err.index), err.message)
        })?;
        Ok(routes)
    }

    fn embed(
        &mut self,
        index: usize,
        raw: Spanned<raw::RawEmbed>,
    ) -> Result<EmbedSettings, ConfigError> {
        let key = |field: &str| format!("embed[{index}].{field}");
        let raw = raw.into_inner();
        let token_span = raw.token.span();
        let token = raw.token.into_inner();
        let param = match raw.param {
            None => "token".to_string(),
            Some(p) => {
                if p.get_ref().is_empty() || !p.get_ref().bytes().all(is_query_name_byte) {
                    return Err(self.invalid(
                        p.span(),
                        key("param"),
                        "must be a plain query parameter name",
                    ));
                }
                p.into_inner()
            }
        };
        let (key_source, key_span) = match (token.key_env, token.key_file, token.key) {
            (Some(env), None, None) => (KeySource::Env(env.get_ref().clone()), env.span()),
            (None, Some(file), None) => {
                (KeySource::File(self.resolve(file.get_ref())), file.span())
            }
            (None, None, Some(inline)) => {
                let span = inline.span();
                (
                    KeySource::Inline(SecretString::from(inline.into_inner())),
                    span,
                )
            }
            _ => {
                return Err(self.invalid(
                    token_span,
                    key("token"),
                    "set exactly one of key_env, key_file or key",
                ));
            }
        };
        self.place(key("token.key"), key_span);
        let ttl_span = token.ttl.span();
        let ttl = token.ttl.into_inner().0;
        if ttl.as_secs() == 0 {
            return Err(self.invalid(ttl_span, key("token.ttl"), "must be at least one second"));
        }
        let settings = EmbedSettings {
            src: raw.src.get_ref().clone(),
            param,
            acl: token.acl.get_ref().clone(),
            token: TokenSettings {
                kind: token.kind,
                key: key_source,
                algorithm: token.algorithm,
                ttl,
            },
        };
        // Checks the pattern and template without touching the key.
        EmbedPattern::compile(&settings).map_err(|err| match err {
            crate::embed::EmbedError::Acl(why) => {
                self.invalid(token.acl.span(), key("token.acl"), why)
            }
            other => self.invalid(raw.src.span(), key("src"), other),
        })?;
        Ok(settings)
    }
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
key = "00112233"
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
            "[upstream]\nconnect_timeout = \"5s\"\npreserve_host = true\n",
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
            .replace("key = \"00112233\"", "key_file = \"keys/video.key\"")
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

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(position(text, 0..1), Position { line: 1, column: 1 });
        assert_eq!(position(text, 9..10), Position { line: 2, column: 4 });
    }
}
