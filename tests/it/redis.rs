//! The Redis session source against a real redis-server on a free loopback
//! port, started here with its own temp dir and stopped at the end.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// A redis-server of our own.
struct RedisServer {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
    tls: bool,
    password: Option<String>,
    /// More arguments to redis-server, e.g. `--rename-command`.
    extra: Vec<String>,
}

impl RedisServer {
    fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A server started with `extra` arguments as well.
    fn start_with_args(extra: &[&str]) -> RedisServer {
        let mut server = Self::start();
        server.kill();
        server.extra = extra.iter().map(|arg| arg.to_string()).collect();
        server.restart();
        server
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 from
    /// a CA of its own at `ca.pem` in its dir.
    fn start_tls() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        if tls {
            make_certificates(dir.path());
        }
        let child = spawn_redis(port, dir.path(), tls, None, &[]);
        let server = RedisServer {
            port,
            child,
            dir,
            tls,
            password: None,
            extra: Vec::new(),
        };
        server.wait_ready();
        server
    }

    fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if self.tls {
            command.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs (scripts/test.sh installs redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = spawn_redis(
            self.port,
            self.dir.path(),
            self.tls,
            self.password.as_deref(),
            &self.extra,
        );
        self.wait_ready();
    }

    /// Stops the server and starts it again asking for `password`.
    fn restart_with_password(&mut self, password: &str) {
        self.kill();
        self.password = Some(password.to_string());
        self.restart();
    }
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed (`server.pem`).
fn make_certificates(dir: &Path) {
    make_ca(dir);
    make_leaf(dir, "server", "rsa");
}

fn spawn_redis(
    port: u16,
    dir: &Path,
    tls: bool,
    password: Option<&str>,
    extra: &[String],
) -> Child {
    let mut command = Command::new("redis-server");
    command.args(extra);
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    if tls {
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"]);
    } else {
        command.args(["--port", &port.to_string()]);
    }
    command
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (run scripts/test.sh)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_config(cms: SocketAddr, redis: &RedisServer, source_lines: &str) -> String {
    let scheme = if redis.tls { "rediss" } else { "redis" };
    config_text(cms, "").replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!(
            "[session.allowlist.redis]\nurl = \"{scheme}://127.0.0.1:{}/0\"\n{source_lines}\n\n[session.allowlist.cache]\nenabled = false\n",
            redis.port
        ),
        1,
    )
}

#[tokio::test]
async fn a_session_is_allowed_while_its_key_exists_with_the_videos_of_its_set() {
    let redis = RedisServer::start();
    let page = "<iframe src=\"https://api.vod2.infomaniak.com/res/embed/a.html\"></iframe><iframe src=\"https://api.vod2.infomaniak.com/res/embed/b.html\"></iframe>";
    let cms = Cms::fixed(Reply::html(page)).await;
    let config = redis_config(
        cms.addr,
        &redis,
        "key = \"sess:{id}\"\nshares_key = \"videos:{id}\"",
    );
    let gate = Gate::start_with(&config, &[]).await;
    let url = gate.url("/videos/a");
    let cookie = Some("sessionid=r-member-1");
    assert_eq!(get(&url, cookie).await.status, 403);

    redis.cli(&["SET", "sess:r-member-1", "{}"]);
    let allowed = get(&url, cookie).await;
    assert_eq!(allowed.status, 200);
    assert!(
        tokens_in(&allowed.text()).is_empty(),
        "an empty set: no video"
    );

    redis.cli(&["SADD", "videos:r-member-1", "b"]);
    let tokens = tokens_in(&get(&url, cookie).await.text());
    assert_eq!(tokens.len(), 1);
    assert_eq!(check_token(&tokens[0], KEY_HEX).2, "/hls/b/*");

    redis.cli(&["DEL", "sess:r-member-1"]);
    assert_eq!(
        get(&url, cookie).await.status,
        403,
        "the session ended in the CMS"
    );
}

#[tokio::test]
async fn without_a_set_every_video_is_open_and_the_default_key_is_session_id() {
    let redis = RedisServer::start();
    let cms = Cms::fixed(Reply::html(format!("<iframe src=\"{EMBED}\"></iframe>"))).await;
    let gate = Gate::start_with(&redis_config(cms.addr, &redis, ""), &[]).await;
    redis.cli(&["SET", "session:r-2", "x"]);
    let page = get(&gate.url("/videos/a"), Some("sessionid=r-2")).await;
    assert_eq!(tokens_in(&page.text()).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_is_a_503_and_the_gateway_recovers_when_redis_returns() {
    let mut redis = RedisServer::start();
    let cms = Cms::fixed(Reply::html("article")).await;
    let gate = Gate::start_with(&redis_config(cms.addr, &redis, "timeout = \"300ms\""), &[]).await;
    let url = gate.url("/videos/a");
    let cookie = Some("sessionid=r-3");
    redis.cli(&["SET", "session:r-3", "x"]);
    assert_eq!(get(&url, cookie).await.status, 200);

    redis.kill();
    for _ in 0..3 {
        let response = get(&url, cookie).await;
        assert_eq!(response.status, 503);
        assert_eq!(response.headers["retry-after"], "5");
    }

    redis.restart();
    redis.cli(&["SET", "session:r-3", "x"]);
    let back = Instant::now();
    loop {
        let status = get(&url, cookie).await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not recovered 5 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rediss_url_speaks_tls_and_checks_the_servers_certificate() {
    let redis = RedisServer::start_tls();
    redis.cli(&["SET", "session:tls-1", "x"]);
    let cms = Cms::fixed(Reply::html("article")).await;
    let trusted = format!("ca_file = \"{}\"", redis.ca_file().display());
    let gate = Gate::start_with(&redis_config(cms.addr, &redis, &trusted), &[]).await;
    let url = gate.url("/videos/a");
    assert_eq!(get(&url, Some("sessionid=tls-1")).await.status, 200);
    assert_eq!(get(&url, Some("sessionid=tls-2")).await.status, 403);

    // Without the CA the server's certificate is not trusted: no answer, fail closed.
    let untrusting = Gate::start_with(&redis_config(cms.addr, &redis, ""), &[]).await;
    assert_eq!(
        get(&untrusting.url("/videos/a"), Some("sessionid=tls-1"))
            .await
            .status,
        503
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_password_file_is_used_after_the_reload_it_sets_off() {
    let mut redis = RedisServer::start();
    redis.restart_with_password("first-pass");
    let cms = Cms::fixed(Reply::html("article")).await;
    let config = format!(
        "{}\n[reload]\ninterval = \"50ms\"\n",
        redis_config(cms.addr, &redis, "password_file = \"redis.pass\"")
    );
    let gate = Gate::start_with(&config, &[("redis.pass", "first-pass\n")]).await;
    let url = gate.url("/videos/a");
    let cookie = Some("sessionid=r-rotating");
    redis.cli(&["SET", "session:r-rotating", "x"]);
    assert_eq!(get(&url, cookie).await.status, 200);

    // The password is rotated: Redis restarts with the new one, the file follows.
    std::fs::write(gate.dir.path().join("redis.pass"), "second-pass\n").unwrap();
    redis.restart_with_password("second-pass");
    redis.cli(&["SET", "session:r-rotating", "x"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&url, cookie).await.status != 200 {
        assert!(Instant::now() < deadline, "the new password was never used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis stand-in that misbehaves, for what a real server never does:
/// EXISTS of `session:okay-*` is answered `+OK`; EXISTS of `session:wedge`
/// on the first connection gets the head of a 1 GiB reply and nothing more
/// on that connection, ever; every other EXISTS `:1`, anything else `+OK`.
struct OddRedis {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl OddRedis {
    async fn start() -> OddRedis {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let first = counted.fetch_add(1, AtomicOrdering::SeqCst) == 0;
                tokio::spawn(serve_odd_redis(stream, first));
            }
        });
        OddRedis {
            port,
            connections,
            task,
        }
    }
}

impl Drop for OddRedis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_odd_redis(mut stream: tokio::net::TcpStream, first: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some((used, args)) = resp_command(&pending) {
            pending.drain(..used);
            let exists = args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"EXISTS"));
            let key = args.get(1).map(|k| String::from_utf8_lossy(k).into_owned());
            let reply: &[u8] = match (exists, key.as_deref()) {
                (true, Some("session:wedge")) if first => {
                    let _ = stream.write_all(b"$1073741824\r\n").await;
                    // Silent from here on: the reply never ends.
                    std::future::pending::<()>().await;
                    return;
                }
                (true, Some(key)) if key.starts_with("session:okay-") => b"+OK\r\n",
                (true, _) => b":1\r\n",
                _ => b"+OK\r\n",
            };
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

/// The first RESP command in `bytes` (an array of bulk strings): its length and arguments.
fn resp_command(bytes: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
    fn line(bytes: &[u8], at: usize) -> Option<(usize, &[u8])> {
        let end = bytes[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((end + 2, &bytes[at..end]))
    }
    let (mut at, head) = line(bytes, 0)?;
    let count: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (next, size) = line(bytes, at)?;
        let size: usize = std::str::from_utf8(size.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        if bytes.len() < next + size + 2 {
            return None;
        }
        args.push(bytes[next..next + size].to_vec());
        at = next + size + 2;
    }
    Some((at, args))
}

fn odd_redis_config(cms: SocketAddr, redis: &OddRedis) -> String {
    config_text(cms, "").replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!(
            "[session.allowlist.redis]\nurl = \"redis://127.0.0.1:{}/0\"\ntimeout = \"300ms\"\n\n[session.allowlist.cache]\nenabled = false\n",
            redis.port
        ),
        1,
    )
}

#[tokio::test]
async fn an_exists_reply_that_is_no_count_gives_no_verdict() {
    let redis = OddRedis::start().await;
    let cms = Cms::fixed(Reply::html("article")).await;
    let gate = Gate::start_with(&odd_redis_config(cms.addr, &redis), &[]).await;
    let url = gate.url("/videos/a");
    assert_eq!(get(&url, Some("sessionid=plain-1")).await.status, 200);
    let odd = get(&url, Some("sessionid=okay-1")).await;
    assert_eq!(odd.status, 503, "an +OK is not a key that exists");
    assert!(!odd.text().contains("article"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_redis_stopped_answering_on_is_made_anew() {
    let redis = OddRedis::start().await;
    let cms = Cms::fixed(Reply::html("article")).await;
    let gate = Gate::start_with(&odd_redis_config(cms.addr, &redis), &[]).await;
    let url = gate.url("/videos/a");
    assert_eq!(get(&url, Some("sessionid=wedge")).await.status, 503);
    // Every lookup behind the endless reply times out, until the
    // connection is given up and another one made.
    let wedged = Instant::now();
    loop {
        let status = get(&url, Some("sessionid=plain-2")).await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            wedged.elapsed() < Duration::from_secs(5),
            "still no answer 5 s after the connection wedged"
        );
    }
    assert_eq!(redis.connections.load(AtomicOrdering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_never_answers_is_logged_once_however_often_it_is_connected_to_anew() {
    // Accepts connections and never answers on any of them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, AtomicOrdering::SeqCst);
            held.push(stream);
        }
    });
    let cms = Cms::fixed(Reply::html("article")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(cms.addr, "").replacen(
        "[session.allowlist]\nfile = \"allowlist.txt\"\n",
        &format!(
            "[session.allowlist.redis]\nurl = \"redis://127.0.0.1:{port}/0\"\ntimeout = \"200ms\"\n\n[session.allowlist.cache]\nenabled = false\n"
        ),
        1,
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let mut gateway = Running::spawn(std::process::Command::new(BIN).arg("--config").arg(&path));
    let url = format!(
        "{}/videos/a",
        listening_url(&gateway.wait_for("listening on"))
    );
    // Every lookup times out, and every few in a row give the connection up
    // for a new one, which hangs too: lookups for 3 s, a dozen of them.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(&url, Some("sessionid=anyone")).await.status, 503);
    }
    assert!(accepted.load(AtomicOrdering::SeqCst) >= 4, "connected anew");
    silent.abort();
    let output = gateway.terminate();
    let warnings: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("connecting anew"))
        .collect();
    assert_eq!(warnings.len(), 1, "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_error_that_quotes_the_session_id_is_logged_without_it() {
    // Redis quotes the start of a command it does not know, key and all:
    // "ERR unknown command 'EXISTS', with args beginning with: 'session:<id>'".
    let redis = RedisServer::start_with_args(&["--rename-command", "EXISTS", ""]);
    let cms = Cms::fixed(Reply::html("article")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, redis_config(cms.addr, &redis, "")).unwrap();
    let mut gateway = Running::spawn(std::process::Command::new(BIN).arg("--config").arg(&path));
    let url = format!(
        "{}/videos/a",
        listening_url(&gateway.wait_for("listening on"))
    );
    let secret = "r-secret-4f1c9a";
    let cookie = format!("sessionid={secret}");
    for _ in 0..2 {
        assert_eq!(get(&url, Some(&cookie)).await.status, 503);
    }
    let line = gateway.wait_for("status=503");
    assert!(line.contains("Redis answered an error (ERR)"), "{line}");
    let output = gateway.terminate();
    assert!(
        !output.contains(secret),
        "the session id is logged:\n{output}"
    );
    assert!(cms.requests().is_empty());
}
