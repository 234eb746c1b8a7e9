//! Live reload: SIGHUP, or a change to gateway.toml or any file it names,
//! rebuilds the runtime and swaps it in whole.
//!
//! A config that fails to load or build leaves the running one in force and
//! logs the same file:line:column message `embedgate check` prints; the
//! files it names are watched too, until a reload succeeds. Files are
//! watched by polling their metadata, which also sees a Kubernetes ConfigMap
//! swapping its symlink, and costs a few `stat` calls per interval.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{ConfigError, Settings};
use crate::gateway::Gateway;
use crate::runtime::Runtime;

/// After a change is seen, wait for the files to stop changing for this long,
/// so that an editor's or a deploy tool's several writes make one reload.
const SETTLE: Duration = Duration::from_millis(100);
/// A file still changing after this many settle periods is reloaded anyway.
const MAX_SETTLE_ROUNDS: u32 = 20;

/// What set a reload off, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A watched file changed.
    FileChange,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        }
    }
}

/// Loads the config the running runtime came from and, if it is good,
/// builds a new runtime and puts it in force. On error nothing changes.
pub async fn reload(gateway: &Gateway, trigger: Trigger) -> Result<(), ConfigError> {
    reload_watching(gateway, trigger)
        .await
        .map(|_| ())
        .map_err(|failed| failed.error)
}

/// The files a config names, as they looked before a build read them: an
/// edit after that is seen as a change.
type Named = (Vec<PathBuf>, Vec<Fingerprint>);

/// A reload that failed, with the files its config names if it got as far
/// as reading them (a file it could not read may yet appear).
struct Failed {
    error: ConfigError,
    named: Option<Named>,
}

impl From<ConfigError> for Failed {
    fn from(error: ConfigError) -> Failed {
        Failed { error, named: None }
    }
}

/// [`reload`], returning the files the new runtime was built from.
async fn reload_watching(gateway: &Gateway, trigger: Trigger) -> Result<Named, Failed> {
    let current = gateway.runtime();
    let old = current.settings();
    let path = old.source.clone();
    let loaded = tokio::task::spawn_blocking(move || Settings::load(&path))
        .await
        .map_err(|join| ConfigError::Read {
            path: old.source.clone(),
            source: std::io::Error::other(join.to_string()),
        })??;
    let new = &loaded.settings;
    let new_files = new.files();
    let new_seen = fingerprints(&new_files).await;
    if new == old {
        // Nothing in gateway.toml changed: a named file did, or a signal came.
        tracing::debug!("settings unchanged; rebuilding for the files they name");
    }
    let fixed = [
        ("server.listen", new.server.listen != old.server.listen),
        ("server.workers", new.server.workers != old.server.workers),
        (
            "server.shutdown_timeout",
            new.server.shutdown_timeout != old.server.shutdown_timeout,
        ),
        (
            "admin.listen",
            new.admin.as_ref().map(|a| a.listen) != old.admin.as_ref().map(|a| a.listen),
        ),
        ("log", new.log != old.log),
        (
            "server.tls (on or off)",
            new.server.tls.is_some() != old.server.tls.is_some(),
        ),
        (
            "server.tls.redirect_listen",
            redirect_listen(new) != redirect_listen(old),
        ),
    ];
    for (key, differs) in fixed {
        if differs {
            tracing::warn!(
                key,
                "changed in the config, but only takes effect on restart"
            );
        }
    }
    let upstream_kept = new.upstream == old.upstream;
    let runtime = match Runtime::from_loaded(loaded, Some(&current)).await {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            return Err(Failed {
                error,
                named: Some((new_files, new_seen)),
            })
        }
    };
    gateway.install(runtime.clone());
    // Logged once in force: whoever reads this line gets the new config.
    tracing::info!(
        trigger = trigger.as_str(),
        config = %runtime.settings().source.display(),
        routes = runtime.routes.len(),
        embeds = runtime.embeds.len(),
        sessions = runtime.gate.sessions().known_sessions().unwrap_or(0),
        upstream_pool = if upstream_kept { "kept" } else { "new" },
        "config reloaded"
    );
    warn_if_nobody_gets_in(&runtime);
    Ok((new_files, new_seen))
}

fn redirect_listen(settings: &Settings) -> Option<std::net::SocketAddr> {
    let tls = settings.server.tls.as_ref()?;
    tls.redirect.as_ref().map(|r| r.listen)
}

/// Warns about settings that work but should not stay: nobody can get in,
/// or the CMS's certificate is not checked.
pub fn warn_if_nobody_gets_in(runtime: &Runtime) {
    if runtime.gate.sessions().known_sessions() == Some(0) {
        tracing::warn!("the allowlist is empty: every gated request will be denied");
    }
    if runtime.settings().upstream.tls.insecure_skip_verify {
        tracing::warn!(
            "upstream.insecure_skip_verify is on: the CMS's certificate is NOT checked, and \
             anyone between the gateway and the CMS can read and change every page; \
             for a test bench only"
        );
    }
}

/// Reloads on SIGHUP and, while `[reload] watch` is on, when a file changes.
pub struct Reloader {
    gateway: Arc<Gateway>,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    files: Vec<PathBuf>,
    seen: Vec<Fingerprint>,
}

impl Reloader {
    /// Starts listening for SIGHUP, and takes note of the watched files as
    /// they are, at once: a signal sent or a file changed from now on
    /// reloads. Must run inside a tokio runtime.
    pub fn new(gateway: Arc<Gateway>) -> std::io::Result<Reloader> {
        let files = watched(&gateway.runtime());
        let seen = files.iter().map(|f| fingerprint(f)).collect();
        Ok(Reloader {
            gateway,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
            files,
            seen,
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut files = std::mem::take(&mut self.files);
        let mut seen = std::mem::take(&mut self.seen);
        loop {
            let reload_settings = self.gateway.runtime().settings().reload.clone();
            let trigger = tokio::select! {
                () = self.hangup() => Trigger::Signal,
                () = tokio::time::sleep(reload_settings.interval), if reload_settings.watch => {
                    let now = fingerprints(&files).await;
                    if now == seen {
                        continue;
                    }
                    seen = settled(&files, now).await;
                    Trigger::FileChange
                }
            };
            let result = reload_watching(&self.gateway, trigger).await;
            let metrics = self.gateway.runtime().metrics.process().clone();
            metrics.reloaded(result.is_ok());
            match result {
                Ok((new_files, new_seen)) => {
                    // Taken before the build read them: an edit since then differs.
                    files = new_files;
                    seen = new_seen;
                }
                Err(Failed { error, named }) => {
                    tracing::error!(
                        trigger = trigger.as_str(),
                        "reload failed, keeping the running config: {error}"
                    );
                    // Also watch what the failed config names: a file it
                    // could not read, once there, is a change to try again on.
                    if let Some((new_files, new_seen)) = named {
                        for (file, look) in new_files.into_iter().zip(new_seen) {
                            if !files.contains(&file) {
                                files.push(file);
                                seen.push(look);
                            }
                        }
                    }
                }
            }
        }
    }

    async fn hangup(&mut self) {
        #[cfg(unix)]
        {
            if self.hangup.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

fn watched(runtime: &Runtime) -> Vec<PathBuf> {
    runtime.settings().files()
}

/// What identifies one version of a file: its metadata, or `None` when it cannot be read.
type Fingerprint = Option<(Option<SystemTime>, u64, u64, i64, i64)>;

async fn fingerprints(files: &[PathBuf]) -> Vec<Fingerprint> {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || files.iter().map(|f| fingerprint(f)).collect())
        .await
        .unwrap_or_default()
}

fn fingerprint(path: &std::path::Path) -> Fingerprint {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, ctime, ctime_nsec) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    #[cfg(not(unix))]
    let (inode, ctime, ctime_nsec) = (0, 0, 0);
    Some((meta.modified().ok(), meta.len(), inode, ctime, ctime_nsec))
}

/// Waits until the files look the same twice in a row, and returns how they look.
async fn settled(files: &[PathBuf], mut last: Vec<Fingerprint>) -> Vec<Fingerprint> {
    for _ in 0..MAX_SETTLE_ROUNDS {
        tokio::time::sleep(SETTLE).await;
        let now = fingerprints(files).await;
        if now == last {
            break;
        }
        last = now;
    }
    last
}
