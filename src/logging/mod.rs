//! Logs: text or JSON lines on stderr, the access log optionally to a file
//! reopened on SIGUSR1 (logrotate's habit), and never a blocked worker: a
//! line is copied into a batch in memory and a writer thread of its own
//! writes the batch out every few milliseconds, so a request pays no system
//! call and wakes no thread for its log line. A batch that has grown too big
//! (the output is stuck) drops lines and counts them rather than stall a
//! request.

mod access;
mod batch;
mod burst;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use access::{write_access_line, AccessLine};
use batch::{BatchWriter, ReopenableFile, SharedFile};
pub use burst::Bursts;

use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The target of access log events.
pub const ACCESS_TARGET: &str = "embedgate::access";

/// How often the writer thread writes out what has been logged.
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// A batch this big is written out at once.
const WRITE_AT: usize = 256 * 1024;
/// A batch this big means the output is stuck: further lines are dropped.
const MAX_BATCH: usize = 16 * 1024 * 1024;

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

/// Keeps the writer threads running; what is still batched is written out
/// when it is dropped.
pub struct LogGuard {
    writers: Vec<BatchWriter>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        for writer in &self.writers {
            writer.close();
        }
    }
}

static DROPPED: AtomicU64 = AtomicU64::new(0);
static ACCESS_FILE: OnceLock<Arc<ReopenableFile>> = OnceLock::new();

/// Log lines dropped so far because a writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
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
    let filter = || {
        quiet_rustls(
            &level,
            EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info")),
        )
    };
    let stderr = BatchWriter::start("embedgate-log", io::stderr())?;
    let mut writers = vec![stderr.clone()];
    let ansi =
        settings.format == LogFormat::Text && std::io::IsTerminal::is_terminal(&io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let access_writer = match &settings.access_file {
        None => {
            layers.push(format_layer(
                settings.format,
                stderr.clone(),
                ansi,
                filter(),
            ));
            stderr
        }
        Some(path) => {
            let file = Arc::new(ReopenableFile::open(path.clone())?);
            let _ = ACCESS_FILE.set(file.clone());
            let access = BatchWriter::start("embedgate-access", SharedFile(file))?;
            writers.push(access.clone());
            let not_access = filter().and(filter_fn(|meta| meta.target() != ACCESS_TARGET));
            layers.push(format_layer(settings.format, stderr, ansi, not_access));
            let only_access = filter().and(filter_fn(|meta| meta.target() == ACCESS_TARGET));
            layers.push(format_layer(
                settings.format,
                access.clone(),
                false,
                only_access,
            ));
            access
        }
    };
    // The first init wins, as it does for the subscriber below.
    let _ = access::SINK.set(access::AccessSink {
        format: settings.format,
        writer: access_writer,
    });
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(LogGuard { writers })
}

/// `filter`, with rustls held to errors unless `level` names it: rustls
/// warns of every odd name a client sends (an IP address as SNI, say), one
/// line per ClientHello with no peer in it, so any client could fill the log.
fn quiet_rustls(level: &str, filter: EnvFilter) -> EnvFilter {
    if level.contains("rustls") {
        return filter;
    }
    match "rustls=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
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
