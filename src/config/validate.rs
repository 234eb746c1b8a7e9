//! From [`RawConfig`] to [`Settings`]: every check that needs no I/O, with
//! errors placed at the file, line and column of the key at fault.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use toml::Spanned;

use super::raw::{self, RawConfig};
use super::{
    ConfigError, Places, Position, ReloadSettings, ServerSettings, SessionSettings, Settings,
};
use crate::admin::AdminSettings;
use crate::client::{ClientPrefix, TrustedProxies};
use crate::compression::CompressionSettings;
use crate::logging::{LogFormat, LogSettings};
use crate::rewrite::RewriteLimits;
use crate::server::tls::{NamedCert, RedirectSettings, TlsSettings};
use crate::server::ConnectionLimits;
use crate::syntax::is_cookie_name_byte;

/// The most `server.workers`: each is a thread started at once, so a slip of
/// the keyboard must not ask the system for millions.
const MOST_WORKERS: usize = 1024;
/// The shortest `reload.interval` and `admin.check_interval`.
const SHORTEST_POLL: Duration = Duration::from_millis(10);
/// Default `server.max_connections`: about 250 MB of idle connections.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `server.max_connections_per_ip`: far above a browser's six, well
/// below what one address needs to hold the whole gateway.
const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

pub(super) fn position(text: &str, span: Range<usize>) -> Position {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// Turns a [`RawConfig`] into [`Settings`], reporting positions in `text`.
/// Default `server.max_body_bytes`: 64 MiB.
const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

pub(super) struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    base_dir: &'a Path,
    places: Places,
    /// `[[embed]] name`s seen so far, to refuse a repeat.
    pub(super) embed_names: Vec<String>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(text: &'a str, path: &'a Path, base_dir: &'a Path) -> Validator<'a> {
        Validator {
            text,
            path,
            base_dir,
            places: Places::default(),
            embed_names: Vec::new(),
        }
    }

    pub(super) fn into_places(self) -> Places {
        self.places
    }

    pub(super) fn invalid(
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
    pub(super) fn place(&mut self, key: impl Into<String>, span: Range<usize>) {
        self.places.at.insert(key.into(), position(self.text, span));
    }

    pub(super) fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        }
    }

    pub(super) fn settings(&mut self, raw: RawConfig) -> Result<Settings, ConfigError> {
        self.places.path = self.path.to_path_buf();
        let server = self.server(raw.server)?;
        let reload = self.reload(raw.reload)?;
        let admin = raw
            .admin
            .map(|admin| self.admin(admin, server.listen))
            .transpose()?;
        let log = self.log(raw.log)?;
        // The per-client limits of [upstream] and [session] count clients as [server] says.
        let client_prefix = server.admission.client_prefix;
        let upstream = self.upstream(raw.upstream, client_prefix)?;
        let session = self.session(raw.session, client_prefix)?;
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
            embeds.push(self.embed(i, embed, &session.entitled_by)?);
        }
        Ok(Settings {
            source: self.path.to_path_buf(),
            server,
            reload,
            admin,
            log,
            upstream,
            session,
            routes,
            embeds,
            rewrite: RewriteLimits { max_memory },
            compression: self.compression(raw.compression)?,
        })
    }

    fn server(&mut self, raw: raw::RawServer) -> Result<ServerSettings, ConfigError> {
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
        let client_prefix = match raw.ipv6_client_prefix {
            None => ClientPrefix::default(),
            Some(bits) => u8::try_from(*bits.get_ref())
                .ok()
                .and_then(ClientPrefix::new)
                .ok_or_else(|| {
                    self.invalid(
                        bits.span(),
                        "server.ipv6_client_prefix",
                        format_args!(
                            "must be a prefix length from {} to 128 (bits of an IPv6 address)",
                            ClientPrefix::SHORTEST
                        ),
                    )
                })?,
        };
        Ok(ServerSettings {
            listen,
            workers: match raw.workers {
                Some(n) if *n.get_ref() > MOST_WORKERS => {
                    return Err(self.invalid(
                        n.span(),
                        "server.workers",
                        format_args!("must be at most {MOST_WORKERS} (0: one per core)"),
                    ));
                }
                n => n.map_or(0, Spanned::into_inner),
            },
            connections: ConnectionLimits {
                header_timeout,
                idle_timeout: self.positive(
                    raw.idle_timeout,
                    "server.idle_timeout",
                    Duration::from_secs(60),
                )?,
                send_timeout: self.positive(
                    raw.send_timeout,
                    "server.send_timeout",
                    Duration::from_secs(60),
                )?,
                max_header_bytes,
                http2_max_concurrent_streams: match raw.http2_max_concurrent_streams {
                    None => 100,
                    Some(n) if *n.get_ref() == 0 => {
                        return Err(self.invalid(
                            n.span(),
                            "server.http2_max_concurrent_streams",
                            "must be at least 1",
                        ));
                    }
                    Some(n) => n.into_inner(),
                },
            },
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(Duration::from_secs(30), |d| d.0),
            drain_delay: raw.drain_delay.map_or(Duration::ZERO, |d| d.0),
            // 0 turns the limit off.
            max_body_bytes: match raw.max_body_bytes {
                None => Some(DEFAULT_MAX_BODY_BYTES),
                Some(0) => None,
                Some(max) => Some(max),
            },
            upgrade_idle_timeout: self.positive(
                raw.upgrade_idle_timeout,
                "server.upgrade_idle_timeout",
                Duration::from_secs(300),
            )?,
            tls: raw.tls.map(|tls| self.tls(tls, listen)).transpose()?,
            admission: crate::server::Admission {
                max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                max_per_ip: raw
                    .max_connections_per_ip
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
                client_prefix,
            },
            trusted_proxies: match (raw.trust_forwarded, raw.trusted_proxies) {
                (Some(_), Some(list)) => {
                    return Err(self.invalid(
                        list.span(),
                        "server.trusted_proxies",
                        "set trusted_proxies or trust_forwarded, not both",
                    ));
                }
                (Some(true), None) => TrustedProxies::everyone(),
                (Some(false), None) => TrustedProxies::none(),
                (None, Some(list)) => TrustedProxies::parse(list.get_ref())
                    .map_err(|err| self.invalid(list.span(), "server.trusted_proxies", err))?,
                (None, None) => TrustedProxies::none(),
            },
            body_timeout: self.positive(
                raw.body_timeout,
                "server.body_timeout",
                Duration::from_secs(60),
            )?,
            body_deadline: self.positive(
                raw.body_deadline,
                "server.body_deadline",
                Duration::from_secs(15 * 60),
            )?,
        })
    }

    fn compression(&self, raw: raw::RawCompression) -> Result<CompressionSettings, ConfigError> {
        let level = match raw.level {
            None => 4,
            Some(level) if !(0..=11).contains(level.get_ref()) => {
                return Err(self.invalid(
                    level.span(),
                    "compression.level",
                    "must be 0 to 11 (brotli's range; gzip uses 1 to 9)",
                ));
            }
            Some(level) => level.into_inner(),
        };
        Ok(CompressionSettings {
            enabled: raw.enabled.unwrap_or(true),
            level,
            min_size: raw.min_size.unwrap_or(1024),
        })
    }

    fn tls(
        &mut self,
        raw: Spanned<raw::RawTls>,
        https: SocketAddr,
    ) -> Result<TlsSettings, ConfigError> {
        let tls_span = raw.span();
        let raw = raw.into_inner();
        self.place("server.tls.cert", raw.cert.span());
        let cert_span = raw.cert.span();
        let certs = match (raw.cert.into_inner(), raw.key) {
            (raw::RawCerts::One(cert), Some(key)) => {
                self.place("server.tls.key", key.span());
                vec![NamedCert {
                    names: Vec::new(),
                    cert: self.resolve(&cert),
                    key: self.resolve(key.get_ref()),
                }]
            }
            (raw::RawCerts::One(_), None) => {
                return Err(self.invalid(tls_span, "server.tls.key", "needs the key of `cert`"));
            }
            (raw::RawCerts::Many(_), Some(key)) => {
                return Err(self.invalid(
                    key.span(),
                    "server.tls.key",
                    "with [[server.tls.cert]] tables, each table has its own key",
                ));
            }
            (raw::RawCerts::Many(list), None) => {
                if list.is_empty() {
                    return Err(self.invalid(cert_span, "server.tls.cert", "no certificate"));
                }
                self.place("server.tls.key", cert_span.clone());
                let mut certs = Vec::with_capacity(list.len());
                for (index, named) in list.into_iter().enumerate() {
                    if index > 0 && named.names.is_empty() {
                        return Err(self.invalid(
                            cert_span.clone(),
                            format!("server.tls.cert[{index}].names"),
                            "only the first certificate may go without names (it is the default)",
                        ));
                    }
                    certs.push(NamedCert {
                        names: named.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                        cert: self.resolve(&named.cert),
                        key: self.resolve(&named.key),
                    });
                }
                certs
            }
        };
        let redirect = match raw.redirect_listen {
            None => None,
            Some(listen) => {
                let addr = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
                    self.invalid(
                        listen.span(),
                        "server.tls.redirect_listen",
                        "not an address:port such as \"0.0.0.0:80\"",
                    )
                })?;
                if addr == https && addr.port() != 0 {
                    return Err(self.invalid(
                        listen.span(),
                        "server.tls.redirect_listen",
                        "must not be server.listen",
                    ));
                }
                let except = match raw.redirect_except {
                    None => None,
                    Some(prefix) if !prefix.get_ref().starts_with('/') => {
                        return Err(self.invalid(
                            prefix.span(),
                            "server.tls.redirect_except",
                            "must be a path prefix starting with '/'",
                        ));
                    }
                    Some(prefix) => Some(prefix.into_inner()),
                };
                Some(RedirectSettings {
                    listen: addr,
                    except,
                })
            }
        };
        Ok(TlsSettings { certs, redirect })
    }

    fn reload(&self, raw: raw::RawReload) -> Result<ReloadSettings, ConfigError> {
        Ok(ReloadSettings {
            watch: raw.watch.unwrap_or(true),
            interval: self.polling(raw.interval, "reload.interval", Duration::from_secs(1))?,
        })
    }

    fn admin(
        &self,
        raw: Spanned<raw::RawAdmin>,
        visitors: SocketAddr,
    ) -> Result<AdminSettings, ConfigError> {
        let raw = raw.into_inner();
        let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                raw.listen.span(),
                "admin.listen",
                format_args!(
                    "{:?} is not an address:port such as \"127.0.0.1:9090\"",
                    raw.listen.get_ref()
                ),
            )
        })?;
        if listen == visitors && listen.port() != 0 {
            return Err(self.invalid(
                raw.listen.span(),
                "admin.listen",
                "must not be the visitors' address (server.listen)",
            ));
        }
        Ok(AdminSettings {
            listen,
            check_interval: self.polling(
                raw.check_interval,
                "admin.check_interval",
                Duration::from_secs(2),
            )?,
            check_timeout: self.positive(
                raw.check_timeout,
                "admin.check_timeout",
                Duration::from_secs(1),
            )?,
        })
    }

    fn log(&self, raw: raw::RawLog) -> Result<LogSettings, ConfigError> {
        let level = match raw.level {
            None => "info".to_string(),
            Some(level) => {
                if tracing_subscriber::EnvFilter::try_new(level.get_ref()).is_err() {
                    return Err(self.invalid(
                        level.span(),
                        "log.level",
                        "not a level or filter such as \"info\" or \"embedgate=debug\"",
                    ));
                }
                level.into_inner()
            }
        };
        Ok(LogSettings {
            format: match raw.format {
                None | Some(raw::RawLogFormat::Text) => LogFormat::Text,
                Some(raw::RawLogFormat::Json) => LogFormat::Json,
            },
            level,
            access_file: raw.access_file.map(|file| self.resolve(file.get_ref())),
        })
    }

    pub(super) fn positive(
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

    /// A period at which something is done over and over (files looked at,
    /// the CMS checked): at least `SHORTEST_POLL`, as shorter ones would
    /// keep a core busy to no use.
    fn polling(
        &self,
        value: Option<Spanned<raw::HumanDuration>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            Some(v) if v.get_ref().0 < SHORTEST_POLL => Err(self.invalid(
                v.span(),
                key,
                format_args!("must be at least {}ms", SHORTEST_POLL.as_millis()),
            )),
            value => self.positive(value, key, default),
        }
    }

    fn session(
        &mut self,
        raw: Spanned<raw::RawSession>,
        client_prefix: ClientPrefix,
    ) -> Result<SessionSettings, ConfigError> {
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
        if cookie == "*" {
            return Err(self.invalid(
                raw.cookie.span(),
                "session.cookie",
                "\"*\" alone would take any cookie for the session",
            ));
        }
        let (allowlist, entitled_by) = self.allowlist(raw.allowlist)?;
        let rate_limit = match raw.rate_limit {
            None => None,
            Some(limit) => {
                let span = limit.span();
                let limit = limit.into_inner();
                let positive = |value: u32, key: &str| {
                    std::num::NonZeroU32::new(value)
                        .ok_or_else(|| self.invalid(span.clone(), key, "must be at least 1"))
                };
                Some(crate::gate::rate::RateLimitSettings {
                    per_minute: positive(limit.per_minute, "session.rate_limit.per_minute")?,
                    burst: positive(
                        limit.burst.unwrap_or(limit.per_minute),
                        "session.rate_limit.burst",
                    )?,
                    client_prefix,
                })
            }
        };
        Ok(SessionSettings {
            cookie: cookie.clone(),
            deny_page,
            cache_control,
            allowlist,
            entitled_by,
            rate_limit,
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
