//! Session source: the CMS's own session check, asked over HTTP the way
//! nginx's `auth_request` does.
//!
//! The check gets the visitor's `Cookie` header (and fixed headers, and the
//! original method and path when asked). 2xx: allowed; 401 or 403: denied;
//! anything else, no answer in time, or no connection: the source cannot
//! answer, and the gate fails closed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, COOKIE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use super::{Entitlements, Principal, SessionKey, SourceError, Verdict, Visit};
use crate::proxy::describe;

/// `[session.allowlist.forward_auth]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardAuthSettings {
    /// The session-check endpoint (http://).
    pub url: Uri,
    /// How long the check may take, connection included.
    pub timeout: Duration,
    /// Headers sent with every check (a shared secret, say).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Send `X-Original-Method` and `X-Original-URI`.
    pub original_request: bool,
    /// Response header listing the videos an allowed session may watch, comma-separated.
    pub shares_header: Option<HeaderName>,
    /// Most checks under way at once (0: no limit); as many idle connections are kept.
    pub max_in_flight: usize,
}

impl std::fmt::Debug for ForwardAuthSettings {
    // The fixed headers may carry a shared secret: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ForwardAuthSettings")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("headers", &names)
            .field("original_request", &self.original_request)
            .field("shares_header", &self.shares_header)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// The CMS's session check, with its own connection pool.
#[derive(Debug)]
pub struct ForwardAuth {
    settings: ForwardAuthSettings,
    client: Client<HttpConnector, Empty<Bytes>>,
    // Places for checks under way: a crowd of new visitors (or of made-up
    // cookies) waits for one instead of opening a connection each.
    places: Option<Semaphore>,
}

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// A check's answer body is read (so the connection can be reused) up to this size.
const MAX_ANSWER_BODY: usize = 64 * 1024;

impl ForwardAuth {
    /// A client for the check at `settings.url`.
    pub fn new(settings: &ForwardAuthSettings) -> ForwardAuth {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let places = (settings.max_in_flight > 0).then(|| {
            builder.pool_max_idle_per_host(settings.max_in_flight);
            Semaphore::new(settings.max_in_flight)
        });
        ForwardAuth {
            settings: settings.clone(),
            client: builder.build(connector),
            places,
        }
    }

    /// Asks the CMS about `session`, sending it that one session cookie.
    ///
    /// Only the cookie being checked is sent: with the whole Cookie header the
    /// CMS could answer for another value the visitor also sent, and that
    /// answer would be cached under this one.
    pub async fn check(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> Result<Verdict, SourceError> {
        let request = self.request(session, visit)?;
        let answer =
            async {
                // Waited for within the check's own time limit.
                let _place =
                    match &self.places {
                        Some(places) => Some(places.acquire().await.map_err(|_| {
                            SourceError::Unavailable("session check closed".into())
                        })?),
                        None => None,
                    };
                let response = self.client.request(request).await.map_err(|err| {
                    SourceError::Unavailable(format!("session check: {}", describe(&err)))
                })?;
                let (parts, body) = response.into_parts();
                // Read what little the check says, so its connection goes back to the pool.
                let _ = Limited::new(body, MAX_ANSWER_BODY).collect().await;
                Ok::<_, SourceError>(parts)
            };
        let parts = tokio::time::timeout(self.settings.timeout, answer)
            .await
            .map_err(|_| {
                SourceError::Unavailable(format!(
                    "session check did not answer within {:?}",
                    self.settings.timeout
                ))
            })??;
        match parts.status {
            status if status.is_success() => Ok(Verdict::Allowed(Principal::entitled(
                session,
                self.entitlements(&parts.headers),
            ))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Verdict::Denied),
            status => Err(SourceError::Unavailable(format!(
                "session check answered {status}"
            ))),
        }
    }

    /// Whether the check answers a request without cookies (with anything
    /// but a server error) within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let request = Request::get(self.settings.url.clone())
            .body(Empty::new())
            .map_err(|err| err.to_string())?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| format!("session check: {}", describe(&err)))?;
            let status = response.status();
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BODY)
                .collect()
                .await;
            if status.is_server_error() {
                Err(format!("session check answered {status}"))
            } else {
                Ok(())
            }
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| format!("session check did not answer within {timeout:?}"))?
    }

    fn request(
        &self,
        session: &SessionKey<'_>,
        visit: &Visit<'_>,
    ) -> Result<Request<Empty<Bytes>>, SourceError> {
        let mut request = Request::get(self.settings.url.clone())
            .body(Empty::new())
            .map_err(|err| SourceError::Unavailable(format!("session check request: {err}")))?;
        let headers = request.headers_mut();
        for (name, value) in &self.settings.headers {
            headers.insert(name.clone(), value.clone());
        }
        // Name and value are cookie-syntax checked, so this is a valid header.
        let cookie = format!("{}={}", session.cookie(), session.id());
        let cookie = HeaderValue::from_str(&cookie)
            .map_err(|_| SourceError::Unavailable("session cookie not sendable".into()))?;
        headers.insert(COOKIE, cookie);
        if self.settings.original_request {
            if let Ok(method) = HeaderValue::from_str(visit.method.as_str()) {
                headers.insert(X_ORIGINAL_METHOD, method);
            }
            let target = visit.uri.path_and_query().map_or("/", |pq| pq.as_str());
            if let Ok(target) = HeaderValue::from_str(target) {
                headers.insert(X_ORIGINAL_URI, target);
            }
        }
        Ok(request)
    }

    /// The videos the answer names; all of them when no header is configured.
    /// With one configured, a missing header means none and `*` means all.
    fn entitlements(&self, answer: &http::HeaderMap) -> Entitlements {
        let Some(name) = &self.settings.shares_header else {
            return Entitlements::All;
        };
        let listed = answer
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|video| !video.is_empty());
        let videos: Vec<&str> = listed.collect();
        if videos.contains(&"*") {
            Entitlements::All
        } else {
            Entitlements::only(videos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_the_fixed_headers_but_not_their_values() {
        let settings = ForwardAuthSettings {
            url: Uri::from_static("http://cms/check"),
            timeout: Duration::from_secs(1),
            headers: vec![(
                HeaderName::from_static("x-check-secret"),
                HeaderValue::from_static("s3cr3t-value"),
            )],
            original_request: true,
            shares_header: None,
            max_in_flight: 64,
        };
        let shown = format!("{settings:?}");
        assert!(shown.contains("x-check-secret"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }
}
