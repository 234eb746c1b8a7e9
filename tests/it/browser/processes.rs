//! The processes the browser test drives: the demo, and chromedriver with
//! the Chromium it starts.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::WAIT;
use crate::common::{Running, BIN};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The running demo and what it printed.
pub(super) struct Demo {
    _process: Running,
    pub(super) gateway: String,
    pub(super) video: String,
    pub(super) password: String,
}

impl Demo {
    pub(super) fn start() -> Demo {
        let mut process = Running::spawn(
            Command::new(BIN)
                .args([
                    "demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--cms-listen",
                    "127.0.0.1:0",
                    "--video-listen",
                    "127.0.0.1:0",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env_remove("EMBEDGATE_KEY"),
        );
        // The lines as the demo prints them: "  gateway     http://...".
        let mut value_of = |label: &str, needle: &str| {
            let line = process.wait_for(needle);
            let rest = &line[line.find(label).unwrap() + label.len()..];
            rest.split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("nothing after {label:?} in {line:?}"))
                .to_string()
        };
        let video = value_of("video host", "video host  http://");
        let gateway = value_of("gateway", "gateway     http://");
        let password = value_of("password", "  password    ");
        for url in [&video, &gateway] {
            assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        }
        Demo {
            _process: process,
            gateway,
            video,
            password,
        }
    }

    pub(super) fn article(&self) -> String {
        format!("{}/videos/intro", self.gateway)
    }
}

/// chromedriver in its own process group, so that the Chromium it starts
/// goes with it: on drop (a panic too) the whole group is killed.
pub(super) struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    pub(super) fn start(dir: &Path) -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: run scripts/test.sh, which installs Debian's \
                 chromium and chromium-driver (or: apt-get install chromium chromium-driver)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("{CHROMEDRIVER} does not start: {err}"));
        let mut driver = Driver { child, port, log };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("chromedriver exited ({exit}):\n{}", driver.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not listening on port {port} within {WAIT:?}:\n{}",
                driver.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    pub(super) fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A headless Chromium session with a fresh profile in `profile`.
    pub(super) async fn session(&self, profile: &Path) -> Client {
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    // Without these, Chromium's attempts to reach its services
                    // on a closed network pile up.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }) else {
            unreachable!()
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let url = format!("http://127.0.0.1:{}", self.port);
        let connect = builder.connect(&url);
        match tokio::time::timeout(WAIT * 2, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => panic!(
                "no Chromium session from chromedriver: {err}\n{}",
                self.log_tail()
            ),
            Err(_) => panic!(
                "no Chromium session within {:?}:\n{}",
                WAIT * 2,
                self.log_tail()
            ),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
