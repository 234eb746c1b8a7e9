//! Integration tests over real sockets: a real CMS stand-in, the real
//! gateway (in process, or as a child process where signals are involved),
//! and real HTTP clients. One binary, so the harness compiles once.

mod admin;
mod browser;
mod cli;
mod client_timeouts;
mod cms_framing;
mod common;
mod compression;
mod config;
mod deploy;
mod edge;
mod edge_pages;
mod entitlements;
mod failures;
mod forwarding;
mod gate;
mod gated_headers;
mod h2_frames;
mod hardening;
mod https_upstream;
mod overload;
mod page_types;
mod passthrough;
mod paths;
mod properties;
mod query_routes;
mod ranges;
mod readiness;
mod redis;
mod reload;
mod remote_tokens;
mod rewrite;
mod session_logouts;
mod sessions;
mod shipped_config;
mod slow_readers;
mod tls;
mod upgrades;
mod uploads;
mod upstream_pool;
mod wire;
