//! `gateway.toml`, validated once into the runtime form the hot path reads.
//!
//! [`raw`] is what serde sees; [`Config`] is what the gateway runs on:
//! compiled routes and embed patterns, decoded keys, a loaded allowlist.
//! Every error names the file, line and column and the key at fault.

pub mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::HeaderValue;
use thiserror::Error;
use toml::Spanned;

use crate::allowlist::Allowlist;
use crate::embed::Embed;
use crate::gate::RouteTable;
use crate::token::KeySource;
use raw::RawConfig;

/// The validated, compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    /// Listener settings.
    pub server: ServerSettings,
    /// Where the CMS is and how long to wait for it.
    pub upstream: UpstreamSettings,
    /// Which paths are gated.
    pub routes: RouteTable,
    /// The session cookie and the page denied visitors get.
    pub session: SessionSettings,
    /// Who is allowed in.
    pub allowlist: Allowlist,
    /// Which iframes get a token, and how it is made.
    pub embeds: Vec<Embed>,
    /// Limits of the streaming rewriter.
    pub rewrite: RewriteSettings,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Runtime worker threads; 0 means one per core.
    pub workers: usize,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Append to the visitor's X-Forwarded-For (behind a trusted proxy) rather than replace it.
    pub trust_forwarded: bool,
    /// Longest gap allowed between two pieces of a visitor's request body.
    pub body_timeout: Duration,
    /// How long a connection may sit with no request in flight and no bytes moving.
    pub idle_timeout: Duration,
}

/// `[upstream]`, validated.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `http` (TLS to the CMS is not supported yet).
    pub scheme: Scheme,
    /// host:port of the CMS.
    pub authority: Authority,
    /// `authority` as a Host header value, made once.
    pub host_header: HeaderValue,
    /// Path prefix put before every request path ("" for none).
    pub base_path: String,
    /// Limit on establishing a TCP connection to the CMS.
    pub connect_timeout: Duration,
    /// Limit on the CMS sending response headers.
    pub response_timeout: Duration,
    /// Limit on the CMS going quiet in the middle of a response body.
    pub read_timeout: Duration,
    /// Send the visitor's Host header to the CMS rather than the upstream's.
    pub preserve_host: bool,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept.
    pub pool_max_idle: usize,
}

/// `[session]`, validated.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Name of the session cookie.
    pub cookie: String,
    /// Body of the 403 page.
    pub deny_page: Bytes,
    /// `Cache-Control` put on allowed responses of gated routes that are not
    /// rewritten (rewritten pages always get `private, no-store`); `None` keeps the CMS's.
    pub cache_control: Option<HeaderValue>,
}

/// `[rewrite]`, validated.
#[derive(Debug, Clone)]
pub struct RewriteSettings {
    /// Memory cap of one page's rewriter (bytes), bounding what a huge tag can cost.
    pub max_memory: usize,
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

/// Why a config could not be loaded.
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

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Validates `text` as if read from `path`; relative paths in it are
    /// taken from `path`'s folder.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            at: position(text, err.span().unwrap_or(0..0)),
            message: err.message().trim_end().to_string(),
        })?;
        let base_dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Validator {
            text,
            path,
            base_dir,
        }
        .config(raw)
    }
}

fn position(text: &str, span: Range<usize>) -> Position {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// Turns a [`RawConfig`] into a [`Config`], reporting positions in `text`.
struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    base_dir: &'a Path,
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

    fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        let upstream = self.upstream(raw.upstream)?;
        let (session, allowlist) = self.session(raw.session)?;
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
        let spans: Vec<Range<usize>> = raw
            .routes
            .iter()
            .map(|r| r.get_ref().prefix.span())
            .collect();
        let routes = RouteTable::new(
            raw.routes
                .into_iter()
                .map(|r| {
                    let r = r.into_inner();
                    (r.prefix.into_inner(), r.gated)
                })
                .collect(),
        )
        .map_err(|err| {
            let span = spans.get(err.index).cloned().unwrap_or(0..0);
            self.invalid(span, format!("route[{}].prefix", err.index), err.message)
        })?;
        let mut embeds = Vec::with_capacity(raw.embeds.len());
        for (i, embed) in raw.embeds.into_iter().enumerate() {
            embeds.push(self.embed(i, embed)?);
        }
        Ok(Config {
            source: self.path.to_path_buf(),
            server,
            upstream,
            routes,
            session,
            allowlist,
            embeds,
            rewrite: RewriteSettings { max_memory },
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
            header_timeout,
            max_header_bytes,
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(Duration::from_secs(30), |d| d.0),
            trust_forwarded: raw.trust_forwarded.unwrap_or(true),
            body_timeout: self.positive(
                raw.body_timeout,
                "server.body_timeout",
                Duration::from_secs(60),
            )?,
            idle_timeout: self.positive(
                raw.idle_timeout,
                "server.idle_timeout",
                Duration::from_secs(60),
            )?,
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

    fn session(
        &self,
        raw: Spanned<raw::RawSession>,
    ) -> Result<(SessionSettings, Allowlist), ConfigError> {
        let raw = raw.into_inner();
        let cookie = raw.cookie.get_ref();
        if cookie.is_empty() || !cookie.bytes().all(crate::gate::is_cookie_name_byte) {
            return Err(self.invalid(
                raw.cookie.span(),
                "session.cookie",
                format_args!("{cookie:?} is not a valid cookie name"),
            ));
        }
        let deny_page = match raw.deny_page {
            None => Bytes::from_static(DEFAULT_DENY_PAGE.as_bytes()),
            Some(file) => {
                let resolved = self.resolve(file.get_ref());
                let body = std::fs::read(&resolved).map_err(|err| {
                    self.invalid(
                        file.span(),
                        "session.deny_page",
                        format_args!("{}: {err}", resolved.display()),
                    )
                })?;
                Bytes::from(body)
            }
        };
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
        let allowlist = match raw.allowlist.into_inner().file {
            Some(file) => {
                let resolved = self.resolve(file.get_ref());
                Allowlist::from_file(&resolved)
                    .map_err(|err| self.invalid(file.span(), "session.allowlist.file", err))?
            }
            None => {
                return Err(self.invalid(
                    allowlist_span,
                    "session.allowlist",
                    "needs a source: file = \"allowlist.txt\"",
                ));
            }
        };
        Ok((
            SessionSettings {
                cookie: cookie.clone(),
                deny_page,
                cache_control,
            },
            allowlist,
        ))
    }

    fn embed(&self, index: usize, raw: Spanned<raw::RawEmbed>) -> Result<Embed, ConfigError> {
        let key = |field: &str| format!("embed[{index}].{field}");
        let raw = raw.into_inner();
        let token_span = raw.token.span();
        let token = raw.token.into_inner();
        let param = match raw.param {
            None => "token".to_string(),
            Some(p) => {
                if p.get_ref().is_empty()
                    || !p.get_ref().bytes().all(crate::embed::is_query_name_byte)
                {
                    return Err(self.invalid(
                        p.span(),
                        key("param"),
                        "must be a plain query parameter name",
                    ));
                }
                p.into_inner()
            }
        };
        let key_source = match (token.key_env, token.key_file, token.key) {
            (Some(env), None, None) => (KeySource::Env(env.get_ref().clone()), env.span()),
            (None, Some(file), None) => {
                (KeySource::File(self.resolve(file.get_ref())), file.span())
            }
            (None, None, Some(inline)) => {
                let span = inline.span();
                (KeySource::Inline(inline.into_inner()), span)
            }
            _ => {
                return Err(self.invalid(
                    token_span,
                    key("token"),
                    "set exactly one of key_env, key_file or key",
                ));
            }
        };
        let ttl_span = token.ttl.span();
        let ttl = token.ttl.into_inner().0;
        if ttl.as_secs() == 0 {
            return Err(self.invalid(ttl_span, key("token.ttl"), "must be at least one second"));
        }
        let key_material = key_source
            .0
            .load()
            .map_err(|err| self.invalid(key_source.1, key("token.key"), err))?;
        let minter = crate::token::EdgeAuth::new(token.algorithm, &key_material);
        Embed::new(raw.src.get_ref(), param, token.acl.get_ref(), minter, ttl).map_err(|err| {
            match err {
                crate::embed::EmbedError::Src(why) => self.invalid(raw.src.span(), key("src"), why),
                crate::embed::EmbedError::Acl(why) => {
                    self.invalid(token.acl.span(), key("token.acl"), why)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(position(text, 0..1), Position { line: 1, column: 1 });
        assert_eq!(position(text, 9..10), Position { line: 2, column: 4 });
    }
}
