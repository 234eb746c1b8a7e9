//! Logs: text or JSON lines on stderr, the access log optionally to a file
//! reopened on SIGUSR1 (logrotate's habit), and never a blocked worker: lines
//! go through a queue to a writer thread, and a full queue drops lines and
//! counts them rather than stall a request.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The target of access log events.
pub const ACCESS_TARGET: &str = "embedgate::access";

/// Lines kept waiting for the writer before new ones are dropped.
const QUEUED_LINES: usize = 128 * 1024;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text, for people.
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// `[log]`, validated. Applied at start only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// A filter such as `info` or `embedgate=debug`; `EMBEDGATE_LOG` wins over it.
    pub level: String,
    /// Where access lines go instead of stderr.
    pub access_file: Option<PathBuf>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
            access_file: None,
        }
    }
}

/// Keeps the writer threads running; logs are flushed when it is dropped.
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

static DROPPED: OnceLock<Vec<ErrorCounter>> = OnceLock::new();
static ACCESS_FILE: OnceLock<Arc<ReopenableFile>> = OnceLock::new();

/// Log lines dropped so far because a writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counters| {
        counters.iter().map(|c| c.dropped_lines() as u64).sum()
    })
}

/// Reopens the access log file (after logrotate moved it away).
pub fn reopen_access_file() -> io::Result<()> {
    match ACCESS_FILE.get() {
        Some(file) => file.reopen(),
        None => Ok(()),
    }
}

/// Installs the process's logger. `EMBEDGATE_LOG`, if set, replaces `settings.level`.
pub fn init(settings: &LogSettings) -> io::Result<LogGuard> {
    let level = std::env::var("EMBEDGATE_LOG").unwrap_or_else(|_| settings.level.clone());
    let filter = || EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let queue = || {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUED_LINES)
    };
    let (stderr, stderr_guard) = queue().finish(io::stderr());
    let mut counters = vec![stderr.error_counter()];
    let mut guards = vec![stderr_guard];
    let ansi =
        settings.format == LogFormat::Text && std::io::IsTerminal::is_terminal(&io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    match &settings.access_file {
        None => layers.push(format_layer(settings.format, stderr, ansi, filter())),
        Some(path) => {
            let file = Arc::new(ReopenableFile::open(path.clone())?);
            let _ = ACCESS_FILE.set(file.clone());
            let (access, access_guard) = queue().finish(SharedFile(file));
            counters.push(access.error_counter());
            guards.push(access_guard);
            let not_access = filter().and(filter_fn(|meta| meta.target() != ACCESS_TARGET));
            layers.push(format_layer(settings.format, stderr, ansi, not_access));
            let only_access = filter().and(filter_fn(|meta| meta.target() == ACCESS_TARGET));
            layers.push(format_layer(settings.format, access, false, only_access));
        }
    }
    let _ = DROPPED.set(counters);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(LogGuard { _guards: guards })
}

fn format_layer<W, F>(
    format: LogFormat,
    writer: W,
    ansi: bool,
    filter: F,
) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    F: tracing_subscriber::layer::Filter<Registry> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).with_filter(filter).boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    }
}

/// An append-only file that can be reopened under its name.
struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    fn open(path: PathBuf) -> io::Result<ReopenableFile> {
        let file = Self::append(&path)?;
        Ok(ReopenableFile {
            path,
            file: Mutex::new(file),
        })
    }

    fn append(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn reopen(&self) -> io::Result<()> {
        let fresh = Self::append(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// The writer the queue's thread writes the access log through.
struct SharedFile(Arc<ReopenableFile>);

impl Write for SharedFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Only the writer thread writes; a reopen is the only other taker.
        self.0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}
