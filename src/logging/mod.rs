//! Logs: text or JSON lines on stderr, the access log optionally to a file
//! reopened on SIGUSR1 (logrotate's habit), and never a blocked worker: a
//! line is copied into a batch in memory and a writer thread of its own
//! writes the batch out every few milliseconds, so a request pays no system
//! call and wakes no thread for its log line. A batch that has grown too big
//! (the output is stuck) drops lines and counts them rather than stall a
//! request.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

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
    let filter = || EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = BatchWriter::start("embedgate-log", io::stderr())?;
    let mut writers = vec![stderr.clone()];
    let ansi =
        settings.format == LogFormat::Text && std::io::IsTerminal::is_terminal(&io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    match &settings.access_file {
        None => layers.push(format_layer(settings.format, stderr, ansi, filter())),
        Some(path) => {
            let file = Arc::new(ReopenableFile::open(path.clone())?);
            let _ = ACCESS_FILE.set(file.clone());
            let access = BatchWriter::start("embedgate-access", SharedFile(file))?;
            writers.push(access.clone());
            let not_access = filter().and(filter_fn(|meta| meta.target() != ACCESS_TARGET));
            layers.push(format_layer(settings.format, stderr, ansi, not_access));
            let only_access = filter().and(filter_fn(|meta| meta.target() == ACCESS_TARGET));
            layers.push(format_layer(settings.format, access, false, only_access));
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(LogGuard { writers })
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

/// Log lines batched in memory, written out by a thread of their own.
#[derive(Clone)]
struct BatchWriter(Arc<Batching>);

struct Batching {
    batch: Mutex<Vec<u8>>,
    ready: Condvar,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl BatchWriter {
    /// Starts the thread that writes batches to `output`.
    fn start(name: &str, mut output: impl Write + Send + 'static) -> io::Result<BatchWriter> {
        let shared = Arc::new(Batching {
            batch: Mutex::new(Vec::with_capacity(WRITE_AT)),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let batching = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(WRITE_AT);
                loop {
                    let closed = batching.closed.load(Ordering::Acquire);
                    {
                        let mut batch = batching
                            .batch
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if batch.is_empty() && !closed {
                            batch = batching
                                .ready
                                .wait_timeout(batch, WRITE_EVERY)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                        std::mem::swap(&mut *batch, &mut spare);
                    }
                    if !spare.is_empty() {
                        // Nowhere to report a failing log output; the lines are lost.
                        let _ = output.write_all(&spare).and_then(|()| output.flush());
                        spare.clear();
                        spare.shrink_to(WRITE_AT);
                    }
                    if closed {
                        return;
                    }
                }
            })?;
        *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(BatchWriter(shared))
    }

    /// Writes out what is batched and stops the thread.
    fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
        let thread = self
            .0
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut batch = self.0.batch.lock().unwrap_or_else(PoisonError::into_inner);
        if batch.len() + line.len() > MAX_BATCH {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        batch.extend_from_slice(line);
        if batch.len() >= WRITE_AT {
            self.0.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
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

/// The writer the batch thread writes the access log through.
struct SharedFile(Arc<ReopenableFile>);

impl Write for SharedFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Only the batch thread writes; a reopen is the only other taker.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that says when it is first written to, then stays stuck
    /// until its sender is dropped, then fails.
    struct Stuck {
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    impl Write for Stuck {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.recv();
            Err(io::Error::other(format!(
                "stuck output: {} bytes lost",
                data.len()
            )))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_and_counts_them_instead_of_blocking() {
        let (entered_tx, entered) = mpsc::channel();
        let (unstick, release) = mpsc::channel();
        let output = Stuck {
            entered: entered_tx,
            release,
        };
        let mut writer = BatchWriter::start("test-log", output).unwrap();
        let line = vec![b'x'; 1024];
        writer.write_all(&line).unwrap();
        entered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the writer thread took the first batch and is now stuck");
        let before = dropped_lines();
        // More than a batch holds; every write still returns at once.
        for _ in 0..(MAX_BATCH / line.len() + 100) {
            assert_eq!(writer.write(&line).unwrap(), line.len());
        }
        assert!(
            dropped_lines() >= before + 100,
            "lines past a full batch are counted"
        );
        drop(unstick);
        writer.close();
    }
}
