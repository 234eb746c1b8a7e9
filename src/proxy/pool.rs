//! The connections to the CMS: one pool, whatever host a visitor names.
//!
//! HTTP/1.1 connections carry one request at a time. Each stays in the pool
//! from its first request until it closes or idles out; a request takes the
//! newest one that is ready (its last response read to the end), so no task
//! is needed to hand a connection back. An `https://` CMS that offers HTTP/2
//! by ALPN gets one shared, multiplexed connection, and every host goes over
//! it as its `:authority`.
//!
//! A request that a pooled connection closed before sending (the CMS ended an
//! idle keep-alive connection at that moment) is sent again on a new one;
//! one that went out is never sent twice.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::Either;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;
use tower_service::Service;

use super::framing::FramedIo;
use super::request_body::RequestBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the CMS got no request, or gave no response.
#[derive(Debug, Error)]
pub enum PoolError {
    /// No connection could be made (refused, timed out, TLS).
    #[error("connecting to the CMS")]
    Connect(#[source] BoxError),
    /// The connection was made but HTTP could not start on it.
    #[error("starting HTTP with the CMS")]
    Handshake(#[source] hyper::Error),
    /// The request or its response failed on the connection.
    #[error("exchanging with the CMS")]
    Exchange(#[source] hyper::Error),
}

/// A pool of connections made by `C`, shared by its clones.
pub struct Pool<C> {
    connector: C,
    // What the connector is asked to dial (it dials the upstream anyway).
    target: Uri,
    shared: Arc<Shared>,
}

impl<C: Clone> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            connector: self.connector.clone(),
            target: self.target.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    max_idle: usize,
    idle_timeout: Duration,
    // Started with the first connection: a task needs a runtime.
    sweeper: OnceLock<()>,
}

#[derive(Default)]
struct State {
    http1: Vec<Http1Entry>,
    http2: Option<http2::SendRequest<RequestBody>>,
}

struct Http1Entry {
    sender: http1::SendRequest<RequestBody>,
    // When it was last seen busy (its last request going out, or a walk or
    // sweep finding it busy): it has been idle at most this long, give or
    // take a sweep.
    used: Instant,
}

/// A response, or why not, with the request when it never went out.
type Exchanged = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

/// A response on its way from a new connection.
type Pending = std::pin::Pin<Box<dyn Future<Output = Exchanged> + Send>>;

impl<C, R> Pool<C>
where
    C: Service<Uri, Response = FramedIo<R>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    R: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    /// A pool dialling through `connector`, keeping at most `max_idle` idle
    /// HTTP/1.1 connections, each for at most `idle_timeout`.
    pub fn new(connector: C, target: Uri, max_idle: usize, idle_timeout: Duration) -> Pool<C> {
        Pool {
            connector,
            target,
            shared: Arc::new(Shared {
                state: Mutex::default(),
                max_idle,
                idle_timeout,
                sweeper: OnceLock::new(),
            }),
        }
    }

    /// Sends `request` on a pooled connection, or a new one, and waits for
    /// the response head. Its URL is absolute where the CMS may speak
    /// HTTP/2, and may be the origin form where it speaks only HTTP/1.1.
    pub async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, PoolError> {
        let url = request.uri().clone();
        let mut unsent = Some(request);
        let request = match self.send_pooled(&mut unsent) {
            Some(pending) => match pending.await {
                Ok(response) => return Ok(response),
                Err(mut err) => match err.take_message() {
                    // Closed before the request went out: a new connection gets it.
                    Some(mut request) => {
                        *request.uri_mut() = url;
                        request
                    }
                    None => return Err(PoolError::Exchange(err.into_error())),
                },
            },
            None => unsent.expect("kept when no connection took it"),
        };
        // Boxed: connecting is rare, and its future would otherwise make
        // every request's future large (and costly to move).
        let pending = Box::pin(self.send_fresh(request)).await?;
        pending
            .await
            .map_err(|err| PoolError::Exchange(err.into_error()))
    }

    // Sends the request on a ready pooled connection, if there is one;
    // otherwise leaves it where it was.
    fn send_pooled(
        &self,
        request: &mut Option<Request<RequestBody>>,
    ) -> Option<impl Future<Output = Exchanged> + Send + 'static> {
        let mut state = self.shared.lock();
        if let Some(sender) = state.http2.as_mut() {
            if !sender.is_closed() {
                return Some(Either::Left(sender.try_send_request(request.take()?)));
            }
            state.http2 = None;
        }
        let now = Instant::now();
        // The newest first: the oldest idle ones are left to time out.
        let mut index = state.http1.len();
        while index > 0 {
            index -= 1;
            let entry = &mut state.http1[index];
            // Busy ones first, in a word each: under load most are busy.
            if !entry.sender.is_ready() {
                if entry.sender.is_closed() {
                    state.http1.swap_remove(index);
                } else {
                    entry.used = now;
                }
                continue;
            }
            if self.shared.idled_out(entry, now) {
                state.http1.swap_remove(index);
                continue;
            }
            let entry = &mut state.http1[index];
            entry.used = now;
            let request = origin_form(request.take()?);
            return Some(Either::Right(entry.sender.try_send_request(request)));
        }
        None
    }

    // A new connection, with the request sent on it.
    async fn send_fresh(&self, request: Request<RequestBody>) -> Result<Pending, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|err| PoolError::Connect(err.into()))?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(|err| PoolError::Connect(err.into()))?;
        self.start_sweeper();
        if io.inner().is_http2() {
            let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(PoolError::Handshake)?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "HTTP/2 connection to the CMS ended");
                }
            });
            let pending = Box::pin(sender.try_send_request(request));
            self.shared.lock().http2 = Some(sender);
            return Ok(pending);
        }
        let (mut sender, connection) = http1::handshake(io).await.map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "connection to the CMS ended");
            }
        });
        let pending = Box::pin(sender.try_send_request(origin_form(request)));
        if self.shared.max_idle > 0 {
            let mut state = self.shared.lock();
            state.http1.push(Http1Entry {
                sender,
                used: Instant::now(),
            });
            self.shared.trim(&mut state);
        }
        // Otherwise the connection closes once this exchange is done.
        Ok(pending)
    }

    // Closes idle connections that timed out, also when no request comes.
    fn start_sweeper(&self) {
        self.shared.sweeper.get_or_init(|| {
            let shared = Arc::downgrade(&self.shared);
            // Often enough that idle connections beyond `max_idle` go soon.
            let every = (self.shared.idle_timeout / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(1));
            tokio::spawn(sweep(shared, every));
        });
    }
}

impl Shared {
    // Not used for the idle timeout or longer, busy or not.
    fn idled_out(&self, entry: &Http1Entry, now: Instant) -> bool {
        now.duration_since(entry.used) >= self.idle_timeout
    }

    // Idle (its last response read) for longer than the idle timeout.
    fn expired(&self, entry: &Http1Entry, now: Instant) -> bool {
        entry.sender.is_ready() && self.idled_out(entry, now)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves a list that is still whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // Drops closed connections, idle ones past the timeout, and the oldest
    // idle ones beyond `max_idle`. Dropping a sender closes its connection.
    fn trim(&self, state: &mut State) {
        let now = Instant::now();
        state.http1.retain_mut(|entry| {
            if entry.sender.is_closed() {
                return false;
            }
            if !entry.sender.is_ready() {
                // Busy: idle time counts from the end of its answer, not its start.
                entry.used = now;
            }
            !self.expired(entry, now)
        });
        let mut idle = state.http1.iter().filter(|e| e.sender.is_ready()).count();
        if idle > self.max_idle {
            state.http1.sort_by_key(|entry| entry.used);
            state.http1.retain(|entry| {
                let drop = idle > self.max_idle && entry.sender.is_ready();
                if drop {
                    idle -= 1;
                }
                !drop
            });
        }
        if state.http2.as_ref().is_some_and(|s| s.is_closed()) {
            state.http2 = None;
        }
    }
}

async fn sweep(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // The pool is gone (a reload replaced the upstream): so is this task.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        shared.trim(&mut state);
    }
}

// HTTP/1.1 sends the path and query; the host goes in Host.
fn origin_form(mut request: Request<RequestBody>) -> Request<RequestBody> {
    if request.uri().authority().is_none() {
        return request;
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    request
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::proxy::framing::Framed;
    use crate::proxy::request_body::VisitorBody;

    /// An "ok" that comes `after` its head.
    struct Late {
        after: std::pin::Pin<Box<tokio::time::Sleep>>,
        sent: bool,
    }

    impl http_body::Body for Late {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.sent {
                return std::task::Poll::Ready(None);
            }
            std::task::ready!(self.after.as_mut().poll(cx));
            self.sent = true;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"ok")))))
        }
    }

    /// A CMS on a free loopback port answering "ok", counting its connections.
    async fn counting_cms() -> (Uri, Arc<AtomicUsize>) {
        slow_counting_cms(Duration::ZERO).await
    }

    /// As [`counting_cms`], the body's "ok" coming `after` the head.
    async fn slow_counting_cms(after: Duration) -> (Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |_| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Late {
                            after: Box::pin(tokio::time::sleep(after)),
                            sent: false,
                        }))
                    }),
                ));
            }
        });
        (url, accepted)
    }

    /// Sends a GET for `/` through `pool` and reads the answer to its end.
    async fn get(pool: &Pool<Framed<HttpConnector>>, url: &Uri) {
        let (body, _) = RequestBody::new(
            VisitorBody::none(),
            Duration::from_secs(5),
            Duration::from_secs(5),
            None,
        );
        let request = Request::get(url.clone()).body(body).unwrap();
        let response = pool.send(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    // Waits until the pooled connection has taken in the end of its answer.
    async fn until_ready(pool: &Pool<Framed<HttpConnector>>) {
        for _ in 0..100 {
            if pool.shared.lock().http1.iter().any(|e| e.sender.is_ready()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the pooled connection never became ready");
    }

    #[tokio::test]
    async fn a_checkout_takes_a_ready_connection_unless_it_idled_out() {
        let (url, accepted) = counting_cms().await;
        let idle_timeout = Duration::from_secs(60);
        let pool = Pool::new(Framed(HttpConnector::new()), url.clone(), 4, idle_timeout);

        get(&pool, &url).await;
        until_ready(&pool).await;
        get(&pool, &url).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the idle connection is reused"
        );

        // Idle for longer than the timeout, though the sweeper has not run yet.
        until_ready(&pool).await;
        {
            let mut state = pool.shared.lock();
            let used = Instant::now().checked_sub(idle_timeout + Duration::from_secs(1));
            state.http1[0].used = used.expect("a clock this far along");
        }
        get(&pool, &url).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a new connection instead"
        );
        assert_eq!(
            pool.shared.lock().http1.len(),
            1,
            "the idled-out one is gone"
        );
    }

    #[tokio::test]
    async fn idle_time_counts_from_the_end_of_an_answer_not_its_start() {
        let (url, accepted) = slow_counting_cms(Duration::from_millis(2500)).await;
        let idle_timeout = Duration::from_secs(1);
        let pool = Pool::new(Framed(HttpConnector::new()), url.clone(), 4, idle_timeout);
        // An answer that takes longer than the idle timeout, swept meanwhile.
        get(&pool, &url).await;
        until_ready(&pool).await;
        get(&pool, &url).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused: it was busy, not idle, for most of that time"
        );
    }
}
