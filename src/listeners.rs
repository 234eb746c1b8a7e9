//! The gateway's listeners served together: the visitors' one, and beside
//! it the plain-HTTP redirect and the admin endpoints when configured.
//!
//! They stop together: when the main listener stops accepting (after the
//! drain delay), the others stop too, and each drains its own connections
//! within `shutdown_timeout`. So an ACME challenge on its way through the
//! redirect listener, or a scrape of the last metrics, is answered whole.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::admin::{self, Readiness};
use crate::gateway::Gateway;
use crate::server;

/// The bound listeners: the visitors', and the optional ones beside it.
pub struct Listeners {
    /// The visitors' listener (`[server] listen`).
    pub main: TcpListener,
    /// The plain-HTTP listener that redirects to HTTPS (`[server.tls.redirect]`).
    pub redirect: Option<TcpListener>,
    /// The admin endpoints (`[admin]`).
    pub admin: Option<TcpListener>,
}

/// Serves every listener until `shutdown` completes, then drains them all;
/// returns once each has closed its connections or timed out.
pub async fn serve(
    listeners: Listeners,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, _) = tokio::sync::watch::channel(false);
    // Aborted when this function returns or is dropped.
    let mut background = JoinSet::new();
    let mut beside = JoinSet::new();
    if let Some(listener) = listeners.redirect {
        let https_port = listeners.main.local_addr().map_or_else(
            |_| gateway.runtime().settings().server.listen.port(),
            |addr| addr.port(),
        );
        beside.spawn(server::serve_redirect(
            listener,
            gateway.clone(),
            https_port,
            closing.subscribe(),
        ));
    }
    if let Some(listener) = listeners.admin {
        let readiness = Arc::new(Readiness::default());
        background.spawn(admin::check_readiness(gateway.clone(), readiness.clone()));
        beside.spawn(admin::serve(
            listener,
            gateway.clone(),
            readiness,
            closing.subscribe(),
        ));
    }
    server::serve_then_close(listeners.main, gateway, shutdown, &closing).await;
    // Each drains within `shutdown_timeout`, begun with the main listener's.
    while beside.join_next().await.is_some() {}
}
