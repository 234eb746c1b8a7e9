//! Test harness: a real CMS stand-in and the real gateway on loopback sockets,
//! driven by a real HTTP client.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use embedgate::config::{ConfigError, Settings};
use embedgate::gateway::Gateway;
use embedgate::reload::Reloader;
use embedgate::runtime::Runtime;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

mod certs;
mod cms;
mod process;

pub use certs::*;
pub use cms::*;
pub use process::*;

/// The hex key of the test config's first embed.
pub const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// A session id on the test allowlist.
pub const MEMBER: &str = "member-0123456789abcdef";
/// An Infomaniak-style embed URL the test config matches.
pub const EMBED: &str = "https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html";

/// The gateway under test, on an ephemeral port.
pub struct Gate {
    pub addr: SocketAddr,
    /// The admin endpoints, when the config has an [admin] table.
    pub admin: Option<SocketAddr>,
    /// The plain-HTTP listener that redirects to HTTPS, when configured.
    pub redirect: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

/// The standard test config in front of `upstream`; `extra` is appended (more routes, embeds...).
pub fn config_text(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"
response_timeout = "2s"

[session]
cookie = "sessionid"

[session.allowlist]
file = "allowlist.txt"

[[route]]
prefix = "/videos/"
gated = true

[[route]]
prefix = "/public/"
gated = false

[[embed]]
src = "https://api.vod2.infomaniak.com/res/embed/{{share}}.html"

[embed.token]
kind = "edgeauth"
key = "{KEY_HEX}"
ttl = "5m"
acl = "/hls/{{share}}/*"
{extra}
"#
    )
}

/// `config` with loopback peers trusted as proxies: their X-Forwarded-* and
/// X-Request-Id are kept.
pub fn trusting_loopback(config: String) -> String {
    with_setting(config, "server", "trusted_proxies = [\"127.0.0.0/8\"]")
}

/// Adds `line` (a new key) at the top of the `[table]` of a config text.
pub fn with_setting(config: String, table: &str, line: &str) -> String {
    let header = format!("[{table}]\n");
    assert!(config.contains(&header), "config has a [{table}] table");
    config.replacen(&header, &format!("{header}{line}\n"), 1)
}

impl Gate {
    /// Starts the gateway with `config_text` (relative paths resolve in a fresh temp dir holding the allowlist).
    pub async fn start_with(config_text: &str, files: &[(&str, &str)]) -> Gate {
        Gate::try_start_with(config_text, files)
            .await
            .unwrap_or_else(|e| panic!("test config invalid: {e}"))
    }

    /// As [`Gate::start_with`], or why the config was refused.
    pub async fn try_start_with(
        config_text: &str,
        files: &[(&str, &str)],
    ) -> Result<Gate, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("allowlist.txt"),
            format!("# test members\n{MEMBER}\n\nother-member\n"),
        )
        .unwrap();
        for (name, contents) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config_text).unwrap();
        let loaded = Settings::load(&path)?;
        let runtime = Runtime::from_loaded(loaded, None).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let admin_listener = match &runtime.settings().admin {
            Some(admin) => Some(TcpListener::bind(admin.listen).await.unwrap()),
            None => None,
        };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let redirect_listener = match runtime
            .settings()
            .server
            .tls
            .as_ref()
            .and_then(|tls| tls.redirect.as_ref())
        {
            Some(redirect) => Some(TcpListener::bind(redirect.listen).await.unwrap()),
            None => None,
        };
        let redirect = redirect_listener.as_ref().map(|l| l.local_addr().unwrap());
        let gateway = Arc::new(Gateway::new(runtime));
        // As `embedgate run` does: reload on SIGHUP and on file changes, and
        // serve the admin endpoints when configured.
        let reloader = Reloader::new(gateway.clone()).unwrap();
        let listeners = embedgate::listeners::Listeners {
            main: listener,
            redirect: redirect_listener,
            admin: admin_listener,
        };
        let task = tokio::spawn(async move {
            let serving = embedgate::listeners::serve(listeners, gateway, async {
                let _ = rx.await;
            });
            tokio::select! {
                () = serving => {}
                () = reloader.run() => {}
            }
        });
        Ok(Gate {
            addr,
            admin,
            redirect,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The standard config in front of `cms`.
    pub async fn start(cms: &Cms) -> Gate {
        Gate::start_with(&config_text(cms.addr, ""), &[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Begins graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Loads `path` and builds its runtime, as `embedgate check` does (outside any async runtime).
pub fn build_runtime(path: &std::path::Path) -> Result<Runtime, ConfigError> {
    let loaded = Settings::load(path)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Runtime::from_loaded(loaded, None))
}

/// A real HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A real HTTP/2 (prior knowledge, cleartext) client.
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A fetched response with its whole body.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Fetched {
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("gateway answered within 10s")
        .expect("request went through");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Fetched {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// GET `url` with optional Cookie header.
pub async fn get(url: &str, cookie: Option<&str>) -> Fetched {
    let mut request = Request::get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await
}

/// GET as the allowlisted member.
pub async fn get_as_member(url: &str) -> Fetched {
    get(url, Some(&format!("sessionid={MEMBER}"))).await
}

/// A GET request for `url` carrying the member's session cookie.
pub fn member_request(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("cookie", format!("sessionid={MEMBER}"))
        .body(empty_body())
        .unwrap()
}

/// A response read frame by frame, while the CMS may still hold back the rest.
pub struct Streaming {
    body: Incoming,
    pub received: Vec<u8>,
}

impl Streaming {
    /// Sends `request` and waits for the response head.
    pub async fn open(request: Request<Full<Bytes>>) -> Streaming {
        let response = client().request(request).await.expect("response head");
        Streaming {
            body: response.into_body(),
            received: Vec::new(),
        }
    }

    /// Reads until `done` holds for what was received; fails if 5 s pass first
    /// (a gateway that held the body back would never get there).
    pub async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        while !done(&self.received) {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{what} never arrived; got {:?}",
                        String::from_utf8_lossy(&self.received)
                    )
                })
                .expect("body continues")
                .expect("body frame");
            if let Some(data) = frame.data_ref() {
                self.received.extend_from_slice(data);
            }
        }
    }

    /// Reads the rest of the body and returns all of it.
    pub async fn finish(mut self) -> Vec<u8> {
        let rest = self.body.collect().await.expect("rest of body").to_bytes();
        self.received.extend_from_slice(&rest);
        self.received
    }
}

/// Reads a request head from `stream` a byte at a time, so that nothing
/// after it is taken; `None` if the peer closed first.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Sends raw bytes on a fresh connection and reads until the server closes (5 s at most).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    out
}

/// As [`raw`], again every 20 ms (up to a second) while the connection is
/// closed unanswered: until a place freed under the connection limits is
/// free for the server too.
pub async fn raw_once_admitted(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    for _ in 0..50 {
        let answer = raw(addr, request).await;
        if !answer.is_empty() {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

/// Every `token=` value in `html`, up to the closing quote or `&`.
pub fn tokens_in(html: &str) -> Vec<String> {
    html.match_indices("token=st=")
        .map(|(i, _)| {
            let rest = &html[i + "token=".len()..];
            let end = rest.find(['"', '&', '#', '\'']).unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

/// Independently recomputes an EdgeAuth v2 HMAC-SHA256 token and checks it:
/// returns (st, exp, acl) if the signature is right.
pub fn check_token(token: &str, key_hex: &str) -> (u64, u64, String) {
    let (signed, mac_hex) = token.rsplit_once("~hmac=").expect("token has ~hmac=");
    let key = hex::decode(key_hex).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(mac_hex, expected, "HMAC of {signed:?}");
    let fields: Vec<&str> = signed.split('~').collect();
    assert_eq!(fields.len(), 3, "st, exp, acl: {signed}");
    let st = fields[0].strip_prefix("st=").unwrap().parse().unwrap();
    let exp = fields[1].strip_prefix("exp=").unwrap().parse().unwrap();
    let acl = fields[2].strip_prefix("acl=").unwrap().to_string();
    (st, exp, acl)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn empty_body() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// Reads from `stream` until every text in `wanted` has come, within 5 s,
/// failing if the gateway closes first; returns what was read.
pub async fn read_answers(
    stream: &mut tokio::net::TcpStream,
    wanted: &[&str],
    what: &str,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !wanted.iter().all(|text| seen.contains(text)) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what} within 5 s"))
            .unwrap();
        assert_ne!(n, 0, "closed before {what}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

/// The value of the sample `series` (name and labels, exactly) in a scrape.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} in\n{scrape}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Scrapes `gate`'s /metrics until `series` reads `want`, for up to 5 s; the last scrape.
pub async fn scrape_until(gate: &Gate, series: &str, want: f64) -> String {
    let url = format!("http://{}/metrics", gate.admin.expect("an admin listener"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get(&url, None).await.text();
        if sample(&text, series) == want {
            return text;
        }
        assert!(Instant::now() < deadline, "{series} is not {want}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the server closes; true if it did within 5 s.
pub async fn closed_by_server(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Checks that the listener at `addr` closes, each within 5 s, a connection
/// that sends nothing, one whose head never ends, and a kept-alive one left
/// waiting once `request` (a whole head) has been answered with `answer`.
pub async fn assert_waiting_connections_are_closed(addr: SocketAddr, request: &str, answer: &str) {
    use tokio::io::AsyncWriteExt;
    let unfinished = request.strip_suffix("\r\n").expect("a whole head");
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "a silent connection");
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(unfinished.as_bytes()).await.unwrap();
    assert!(closed_by_server(&mut slow).await, "a head never finished");
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(request.as_bytes()).await.unwrap();
    read_answers(&mut kept, &[answer], "the answer").await;
    assert!(
        closed_by_server(&mut kept).await,
        "an idle kept-alive connection"
    );
}

/// Sends a GET for `path` on an HTTP/2 connection and waits for its response head.
pub async fn h2_get(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> Result<http::Response<h2::RecvStream>, h2::Error> {
    let request = http::Request::get(format!("http://x{path}"))
        .body(())
        .unwrap();
    let (response, _) = client.clone().ready().await?.send_request(request, true)?;
    response.await
}

/// Asks `addr` for `path` over HTTP/2 with every stream's window shut, and
/// asserts that the server closes the connection within 5 s of the answer's
/// head (its send limit), though nothing of the body can be sent.
pub async fn assert_a_shut_window_is_cut_off(addr: SocketAddr, path: &str) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let answer = h2_get(&mut client, path).await.unwrap();
    assert_eq!(answer.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server closed the connection")
        .unwrap()
        .ok();
}

/// What the probe of [`ThreadPanics::watch`] panics with.
const PROBE: &str = "a probe: panics on these threads are counted";

/// Panics on the threads of one name: a runtime of their own runs the
/// gateway, so that a panic there is the gateway's, whatever else runs in
/// the test process.
pub struct ThreadPanics {
    name: &'static str,
    count: Arc<AtomicUsize>,
}

impl ThreadPanics {
    /// Counts, from now on, the panics on threads named `name`, still
    /// reporting them as usual.
    pub fn watch(name: &'static str) -> ThreadPanics {
        let count = Arc::new(AtomicUsize::new(0));
        // proptest puts its own hook in once, the first time a property runs
        // in this process; one that lands between our take and set drops
        // ours. So a probe panic must be counted before the hook is trusted.
        for _ in 0..10 {
            let counted = count.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if std::thread::current().name() == Some(name) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    if info.payload().downcast_ref::<&str>() == Some(&PROBE) {
                        // Counted, not reported: it is no failure.
                        return;
                    }
                }
                previous(info);
            }));
            let probe = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(|| std::panic::panic_any(PROBE))
                .unwrap();
            assert!(probe.join().is_err());
            if count.swap(0, Ordering::SeqCst) == 1 {
                return ThreadPanics { name, count };
            }
        }
        panic!("the panic hook did not stay in place");
    }

    /// How many panics there were on the watched threads.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// A runtime of two worker threads with the watched name.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(self.name)
            .enable_all()
            .build()
            .unwrap()
    }
}
