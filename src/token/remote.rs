//! Tokens asked of the video host's API: one HTTP call per embed and page view
//! (or per visitor and video, with `reuse`), read from the JSON answer.
//!
//! The call is made while the page streams: the rewriter leaves a placeholder
//! where the token goes and the body waits there, not before (see
//! `rewrite`). Anything unexpected in the answer is a [`MintError`], never an
//! empty token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::KeyError;
use crate::allowlist::Principal;
use crate::secret::SecretSource;

/// What the page does when a token cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMintError {
    /// The page is cut off at that embed: it is never sent with the embed untokened.
    #[default]
    Page,
    /// That embed is left without a token; the rest of the page goes on.
    Embed,
}

/// `[embed.token]` with `kind = "remote"`, validated (a preset already expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The API URL, a template over the src pattern's captures.
    pub url: String,
    /// The HTTP method of the call.
    pub method: Method,
    /// Where the API's bearer token comes from.
    pub bearer: SecretSource,
    /// A JSON body template over the src pattern's captures; `None` sends no body.
    pub body: Option<String>,
    /// JSON pointer (RFC 6901) to the token in the answer.
    pub pointer: String,
    /// Limit on one call, from connecting to the whole answer.
    pub timeout: Duration,
    /// Most calls in flight for one page.
    pub concurrency: usize,
    /// What a failed call does to the page.
    pub on_error: OnMintError,
    /// Keep each visitor's token for a video this long; `None` asks for a fresh one per view.
    pub reuse: Option<Duration>,
    /// A PEM file of CA certificates trusted beside the system's, for an https API.
    pub ca_file: Option<PathBuf>,
}

/// Why the API gave no token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MintError {
    /// The URL filled from the embed is not a URL.
    #[error("API URL {0:?} is not a valid URL")]
    BadUrl(String),
    /// Could not connect or send.
    #[error("API unavailable: {0}")]
    Unavailable(String),
    /// No complete answer in time.
    #[error("API did not answer within {0:?}")]
    Timeout(Duration),
    /// A status other than 2xx.
    #[error("API answered {0}")]
    Status(u16),
    /// The answer is not JSON (or larger than any token answer).
    #[error("API answer is not JSON: {0}")]
    BadJson(String),
    /// The pointer names nothing, or not a non-empty string.
    #[error("API answer has no token string at {0}")]
    Missing(String),
}

/// Largest API answer read: a token answer is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Calls the video host's API for tokens.
pub struct RemoteMinter {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    bearer: HeaderValue,
    method: Method,
    pointer: String,
    timeout: Duration,
    concurrency: usize,
    on_error: OnMintError,
    reused: Option<moka::future::Cache<[u8; 32], Arc<str>>>,
}

impl std::fmt::Debug for RemoteMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteMinter")
            .field("method", &self.method)
            .field("pointer", &self.pointer)
            .field("bearer", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One call to make: the filled URL and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintCall {
    /// The API URL.
    pub url: String,
    /// The request body, if any.
    pub body: Option<String>,
}

/// Most visitor/video tokens kept with `reuse`.
const REUSE_CAPACITY: u64 = 100_000;

impl RemoteMinter {
    /// Reads the bearer token and sets up the HTTP client.
    pub fn build(settings: &RemoteSettings) -> Result<RemoteMinter, KeyError> {
        let bearer = settings.bearer.read().map_err(KeyError::Bearer)?;
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", bearer.expose().trim()))
            .ok()
            .filter(|v| v.len() > "Bearer ".len())
            .ok_or(KeyError::BadBearer)?;
        bearer.set_sensitive(true);
        let tls = crate::proxy::tls::client_config(&crate::proxy::tls::UpstreamTls {
            ca_file: settings.ca_file.clone(),
            ..Default::default()
        })
        .map_err(KeyError::Client)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(RemoteMinter {
            client,
            bearer,
            method: settings.method.clone(),
            pointer: settings.pointer.clone(),
            timeout: settings.timeout,
            concurrency: settings.concurrency.max(1),
            on_error: settings.on_error,
            reused: settings.reuse.map(|ttl| {
                moka::future::Cache::builder()
                    .max_capacity(REUSE_CAPACITY)
                    .time_to_live(ttl)
                    .build()
            }),
        })
    }

    /// Most calls in flight for one page.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// What a failed call does to the page.
    pub fn on_error(&self) -> OnMintError {
        self.on_error
    }

    /// The token for `call` on behalf of `principal`: from the reuse cache, or from the API.
    pub async fn token(
        &self,
        call: &MintCall,
        principal: &Principal,
    ) -> Result<Arc<str>, MintError> {
        let Some(reused) = &self.reused else {
            return self.fetch(call).await;
        };
        // Keyed by visitor and the exact call, so no visitor gets another's token.
        let mut key = Sha256::new();
        key.update(principal.session_digest());
        key.update(call.url.as_bytes());
        key.update([0]);
        key.update(call.body.as_deref().unwrap_or_default().as_bytes());
        let key: [u8; 32] = key.finalize().into();
        reused
            .try_get_with(key, self.fetch(call))
            .await
            .map_err(|err| (*err).clone())
    }

    async fn fetch(&self, call: &MintCall) -> Result<Arc<str>, MintError> {
        let uri: Uri = call
            .url
            .parse()
            .map_err(|_| MintError::BadUrl(call.url.clone()))?;
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, self.bearer.clone())
            .header(header::ACCEPT, "application/json");
        if call.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = Full::new(Bytes::from(call.body.clone().unwrap_or_default()));
        let request = request
            .body(body)
            .map_err(|_| MintError::BadUrl(call.url.clone()))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| MintError::Unavailable(crate::proxy::describe(&err)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(MintError::Status(status.as_u16()));
            }
            Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|err| MintError::BadJson(err.to_string()))
        };
        let bytes = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| MintError::Timeout(self.timeout))??;
        token_at(&bytes, &self.pointer)
    }
}

/// The non-empty string at `pointer` in the JSON `answer`.
pub fn token_at(answer: &[u8], pointer: &str) -> Result<Arc<str>, MintError> {
    let json: serde_json::Value =
        serde_json::from_slice(answer).map_err(|err| MintError::BadJson(err.to_string()))?;
    match json.pointer(pointer) {
        Some(serde_json::Value::String(token)) if !token.is_empty() => Ok(token.as_str().into()),
        _ => Err(MintError::Missing(pointer.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_token_string_at_the_pointer_only() {
        assert_eq!(
            &*token_at(br#"{"data":"st=1~exp=2"}"#, "/data").unwrap(),
            "st=1~exp=2"
        );
        assert_eq!(
            &*token_at(br#"{"a":{"b":["x","tok"]}}"#, "/a/b/1").unwrap(),
            "tok"
        );
        for (answer, why) in [
            (&br#"{"data":""}"#[..], "empty"),
            (br#"{"data":42}"#, "number"),
            (br#"{"data":null}"#, "null"),
            (br#"{"other":"x"}"#, "absent"),
        ] {
            assert_eq!(
                token_at(answer, "/data"),
                Err(MintError::Missing("/data".into())),
                "{why}"
            );
        }
        assert!(matches!(
            token_at(b"<html>", "/data"),
            Err(MintError::BadJson(_))
        ));
    }
}
