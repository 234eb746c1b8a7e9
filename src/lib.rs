//! embedgate: an edge gateway in front of a CMS that lets only allowed
//! sessions see pages with protected video embeds, and mints a fresh
//! EdgeAuth token into every embed for each page view.
//!
//! gateway.toml is read by [`config`] into plain settings, from which
//! [`runtime`] builds what requests run on; [`reload`] rebuilds it on SIGHUP
//! or a file change. A request's way through: [`server`] accepts it,
//! [`gateway`] runs it through [`gate`] (route and session, asking
//! [`allowlist`]), [`proxy`] (the CMS), and the [`body`] layers, where
//! [`rewrite`] puts tokens from [`token`] into iframes matched by [`embed`];
//! [`finished`] records its end.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod allowlist;
pub mod body;
pub mod client;
pub mod compression;
pub mod config;
pub mod demo;
pub mod embed;
pub mod finished;
pub mod gate;
pub mod gateway;
pub mod idle;
pub mod ip_text;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod rewrite;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod syntax;
pub mod token;
pub mod unguessable;
