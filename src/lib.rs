//! embedgate: an edge gateway in front of a CMS that lets only allowlisted
//! sessions see pages with protected video embeds, and mints a fresh
//! EdgeAuth token into every embed for them.
//!
//! A request's way through: [`server`] accepts it, [`gateway`] runs it through
//! [`gate`] (route and session, with [`allowlist`]), [`proxy`] (the CMS), and
//! [`rewrite`] (tokens from [`token`] into iframes matched by [`embed`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allowlist;
pub mod body;
pub mod config;
pub mod demo;
pub mod embed;
pub mod gate;
pub mod gateway;
pub mod idle;
pub mod proxy;
pub mod rewrite;
pub mod server;
pub mod token;
