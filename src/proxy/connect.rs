//! The CMS's address, whatever the request's URL says.
//!
//! Requests to the CMS carry the visitor's host in their URL when
//! `preserve_host` is on, so that HTTP/2's `:authority` (and HTTP/1.1's
//! Host) name the site the visitor asked for; the connection still goes to
//! the configured upstream.

use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

/// Connects to `target` for every request.
#[derive(Clone, Debug)]
pub struct FixedAddress {
    inner: HttpConnector,
    target: Uri,
}

impl FixedAddress {
    /// Dials `target` (scheme and authority of the upstream) through `inner`.
    pub fn new(inner: HttpConnector, target: Uri) -> FixedAddress {
        FixedAddress { inner, target }
    }
}

impl Service<Uri> for FixedAddress {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = <HttpConnector as Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _asked: Uri) -> Self::Future {
        self.inner.call(self.target.clone())
    }
}
