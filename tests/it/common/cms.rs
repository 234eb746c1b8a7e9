//! The CMS stand-in: a real hyper server on an ephemeral port that answers
//! what a test tells it and records what it was asked.

use super::*;

/// What the CMS stand-in answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Bytes>,
    /// Wait this long before sending the response head.
    pub head_delay: Duration,
    /// Wait this long between chunks.
    pub chunk_delay: Duration,
}

impl Reply {
    pub fn html(body: impl Into<Bytes>) -> Reply {
        Reply::with_type("text/html; charset=utf-8", body)
    }

    pub fn with_type(content_type: &str, body: impl Into<Bytes>) -> Reply {
        let body = body.into();
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("content-length".into(), body.len().to_string()),
            ],
            chunks: vec![body],
            head_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }

    /// A streamed reply (no content-length) sent as these chunks.
    pub fn chunked(content_type: &str, chunks: Vec<Bytes>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            chunks,
            head_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request as the CMS stand-in saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// False when the body was cut off before its end.
    pub body_complete: bool,
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// The CMS stand-in: a real hyper server on an ephemeral port.
pub struct Cms {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections the CMS has accepted.
    pub accepted: Arc<AtomicUsize>,
    /// TCP connections open now.
    pub open: Arc<AtomicUsize>,
    /// Request heads received, bodies read or not yet.
    pub heads: Arc<AtomicUsize>,
    /// Releases a reply waiting at a `GATE` chunk; a release that comes
    /// first is kept until a reply gets there.
    pub release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// In a reply's chunks, this marker makes the CMS wait for [`Cms::release_rest`] before going on.
pub const GATE: &[u8] = b"\0GATE\0";

impl Cms {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Cms {
        Cms::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// As [`Cms::start`], on `addr` (to bring a stopped CMS back on its port).
    pub async fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Cms {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let handler: Handler = Arc::new(handler);
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(AtomicUsize::new(0));
        let task = {
            let heads = heads.clone();
            let seen = seen.clone();
            let release = release.clone();
            let accepted = accepted.clone();
            let open = open.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    let seen = seen.clone();
                    let handler = handler.clone();
                    let release = release.clone();
                    let open = open.clone();
                    let heads = heads.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            heads.fetch_add(1, Ordering::SeqCst);
                            let seen = seen.clone();
                            let handler = handler.clone();
                            let release = release.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let (body, body_complete) = match body.collect().await {
                                    Ok(collected) => (collected.to_bytes(), true),
                                    Err(_) => (Bytes::new(), false),
                                };
                                let record = Seen {
                                    method: parts.method,
                                    uri: parts.uri,
                                    version: parts.version,
                                    headers: parts.headers,
                                    body_complete,
                                    body,
                                };
                                let reply = handler(&record);
                                seen.lock().unwrap().push(record);
                                Ok::<_, Infallible>(respond(reply, release).await)
                            }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Cms {
            addr,
            seen,
            accepted,
            open,
            heads,
            release,
            task,
        }
    }

    /// Serves `reply` for every request.
    pub async fn fixed(reply: Reply) -> Cms {
        Cms::start(move |_| reply.clone()).await
    }

    /// How many connections the CMS has accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits up to 5 s for the CMS to have received `count` request heads.
    pub async fn wait_for_heads(&self, count: usize) {
        let within = Duration::from_secs(5);
        poll_until(within, || self.heads.load(Ordering::SeqCst) >= count).await;
        let heads = self.heads.load(Ordering::SeqCst);
        assert!(
            heads >= count,
            "the CMS had {heads} request heads after 5 s, not {count}"
        );
    }

    /// How many connections to the CMS are open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A CMS whose one reply, `before` then `after`, waits at [`GATE`]
    /// between the two until [`Cms::release_rest`].
    pub async fn held(content_type: &str, before: &'static [u8], after: &'static [u8]) -> Cms {
        let chunks = vec![
            Bytes::from_static(before),
            Bytes::from_static(GATE),
            Bytes::from_static(after),
        ];
        Cms::fixed(Reply::chunked(content_type, chunks)).await
    }

    /// Waits up to 2 s for the CMS to have seen one request, and asserts it has.
    pub async fn wait_for_a_request(&self) {
        self.wait_for_requests(1, Duration::from_secs(2)).await;
    }

    /// Waits up to `within` for the CMS to have read `count` requests to the
    /// end of their bodies (or to where they were cut off), and asserts it has.
    pub async fn wait_for_requests(&self, count: usize, within: Duration) {
        poll_until(within, || self.requests().len() >= count).await;
        assert_eq!(self.requests().len(), count, "requests the CMS read");
    }

    /// Lets a reply waiting at [`GATE`] send the rest.
    pub fn release_rest(&self) {
        self.release.notify_one();
    }
}

/// Checks `done` every 10 ms until it holds or `within` has passed.
async fn poll_until(within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for Cms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(reply: Reply, release: Arc<tokio::sync::Notify>) -> Response<ChannelBody> {
    tokio::time::sleep(reply.head_delay).await;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut builder = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    tokio::spawn(async move {
        for chunk in reply.chunks {
            if chunk.as_ref() == GATE {
                release.notified().await;
                continue;
            }
            if !reply.chunk_delay.is_zero() {
                tokio::time::sleep(reply.chunk_delay).await;
            }
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    builder.body(ChannelBody(rx)).unwrap()
}

/// A response body fed chunk by chunk from a channel.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}
