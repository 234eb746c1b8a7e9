//! Log lines batched in memory and written out by a thread of their own,
//! and the access log file that logrotate moves away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::{DROPPED, MAX_BATCH, WRITE_AT, WRITE_EVERY};

/// Log lines batched in memory, written out by a thread of their own.
#[derive(Clone)]
pub(super) struct BatchWriter(Arc<Batching>);

struct Batching {
    batch: Mutex<Vec<u8>>,
    ready: Condvar,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl BatchWriter {
    /// Starts the thread that writes batches to `output`.
    pub(super) fn start(
        name: &str,
        mut output: impl Write + Send + 'static,
    ) -> io::Result<BatchWriter> {
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
    pub(super) fn close(&self) {
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

impl BatchWriter {
    /// Adds `line` to the batch; drops and counts it when the batch is full.
    pub(super) fn append(&self, line: &[u8]) {
        let mut batch = self.0.batch.lock().unwrap_or_else(PoisonError::into_inner);
        if batch.len() + line.len() > MAX_BATCH {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        batch.extend_from_slice(line);
        if batch.len() >= WRITE_AT {
            self.0.ready.notify_one();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
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
pub(super) struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenableFile {
    pub(super) fn open(path: PathBuf) -> io::Result<ReopenableFile> {
        let file = Self::append(&path)?;
        Ok(ReopenableFile {
            path,
            file: Mutex::new(file),
        })
    }

    fn append(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    pub(super) fn reopen(&self) -> io::Result<()> {
        let fresh = Self::append(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// The writer the batch thread writes the access log through.
pub(super) struct SharedFile(pub(super) Arc<ReopenableFile>);

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
    use crate::logging::dropped_lines;
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
