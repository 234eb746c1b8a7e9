//! The runtime: everything a request needs, built from [`Settings`] at start
//! and at each reload, and swapped in whole.
//!
//! Building reads the files the settings name (allowlist, deny page, keys)
//! and makes the upstream client. Parts whose settings did not change are
//! carried over from the runtime in force, so that a reload keeps the
//! upstream connection pool, and a remote session source with its
//! connections and its verdict cache.

use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::allowlist::{LoadError, Sessions};
use crate::config::{ConfigError, Loaded, Settings, DEFAULT_DENY_PAGE};
use crate::embed::{EmbedError, EmbedSet};
use crate::gate::rate::ClientRateLimit;
use crate::gate::{RouteTable, SessionGate};
use crate::metrics::{Metrics, RuntimeMetrics};
use crate::proxy::Upstream;
use crate::server::tls::{self, TlsError};
use crate::token::verify::EdgeVerifier;

/// A part of the settings that could not be built; names the config key at fault.
#[derive(Debug, Error)]
#[error("{key}: {message}")]
pub struct BuildError {
    /// Dotted config key, e.g. `embed[0].token.key`.
    pub key: String,
    /// What went wrong.
    pub message: String,
}

impl BuildError {
    fn new(key: impl Into<String>, message: impl std::fmt::Display) -> BuildError {
        BuildError {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// Everything one request runs on, built from its settings (plain values
/// are read from [`Runtime::settings`]). Immutable; replaced whole by a reload.
#[derive(Debug)]
pub struct Runtime {
    settings: Settings,
    /// Which paths ask what of visitors.
    pub routes: RouteTable,
    /// The token check of each `[[route]]`, in config order (`None` for routes without one).
    pub route_tokens: Vec<Option<EdgeVerifier>>,
    /// The session cookie and the source that answers for it.
    pub gate: SessionGate,
    /// Gated requests per client, carried over a reload that keeps its settings.
    pub rate_limit: Option<Arc<ClientRateLimit>>,
    /// The embeds and their minters, shared with the rewriters of pages in flight.
    pub embeds: Arc<EmbedSet>,
    /// The client to the CMS.
    pub upstream: Upstream,
    /// Body of every 403.
    pub deny_page: Bytes,
    /// The metrics series this runtime's requests record into.
    pub metrics: Arc<RuntimeMetrics>,
    /// The TLS config of connections accepted under this runtime.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Runtime {
    /// Builds a runtime from `settings`, taking over from `previous` every
    /// part whose settings are unchanged.
    pub async fn build(
        settings: Settings,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, BuildError> {
        let routes = RouteTable::new(&settings.routes)
            .map_err(|err| BuildError::new(format!("route[{}].prefix", err.index), err))?;
        let process_metrics = match previous {
            Some(old) => old.metrics.process().clone(),
            None => Metrics::new(),
        };
        let sessions = Sessions::build(
            &settings.session.allowlist,
            previous.map(|old| old.gate.sessions()),
            &process_metrics,
        )
        .await
        .map_err(|err| BuildError::new(source_key(&err), err))?;
        let gate = SessionGate::new(&settings.session.cookie, sessions);
        let rate_limit = settings.session.rate_limit.map(|limit| {
            previous
                .and_then(|old| old.rate_limit.clone())
                .filter(|old| old.settings() == limit)
                .unwrap_or_else(|| Arc::new(ClientRateLimit::new(limit)))
        });
        let embeds = EmbedSet::build(&settings.embeds).map_err(|(index, err)| {
            let field = match &err {
                EmbedError::Src(_) => "src".to_string(),
                EmbedError::Template(field, _) => format!("token.{field}"),
                EmbedError::Key(key) => format!("token.{}", key.field()),
            };
            BuildError::new(format!("embed[{index}].{field}"), err)
        })?;
        let route_tokens = settings
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                route
                    .token
                    .as_ref()
                    .map(|token| {
                        EdgeVerifier::build(token).map_err(|err| {
                            BuildError::new(format!("route[{index}].token.{}", err.field()), err)
                        })
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let deny_page = match &settings.session.deny_page {
            None => Bytes::from_static(DEFAULT_DENY_PAGE.as_bytes()),
            Some(path) => {
                let body = tokio::fs::read(path).await.map_err(|err| {
                    BuildError::new(
                        "session.deny_page",
                        format_args!("{}: {err}", path.display()),
                    )
                })?;
                Bytes::from(body)
            }
        };
        let tls = match &settings.server.tls {
            None => None,
            Some(tls) => Some(tls::server_config(tls).map_err(|err| {
                let key = match err {
                    TlsError::Key { .. } => "server.tls.key",
                    TlsError::Cert { .. } | TlsError::Config(_) => "server.tls.cert",
                };
                BuildError::new(key, err)
            })?),
        };
        let upstream = match previous {
            Some(old) if *old.upstream.settings() == settings.upstream => old.upstream.clone(),
            _ => Upstream::new(&settings.upstream)
                .map_err(|why| BuildError::new("upstream.ca_file", why))?,
        };
        let prefixes: Vec<String> = routes.prefixes().map(str::to_string).collect();
        let metrics = Arc::new(RuntimeMetrics::new(
            process_metrics,
            &prefixes,
            settings.embeds.len(),
        ));
        Ok(Runtime {
            tls,
            metrics,
            routes,
            route_tokens,
            gate,
            rate_limit,
            embeds: Arc::new(embeds),
            upstream,
            deny_page,
            settings,
        })
    }

    /// Builds from freshly loaded settings; a failure is placed in the config file.
    pub async fn from_loaded(
        loaded: Loaded,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let Loaded {
            settings,
            places,
            digest,
        } = loaded;
        let runtime = Runtime::build(settings, previous)
            .await
            .map_err(|err| places.error(&err.key, err.message))?;
        runtime.metrics.process().config_loaded(&digest);
        Ok(runtime)
    }

    /// The settings this runtime was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

fn source_key(err: &LoadError) -> &'static str {
    match err {
        LoadError::Read { .. } | LoadError::BadEntry { .. } => "session.allowlist.file",
        LoadError::Remote(_) => "session.allowlist",
    }
}
