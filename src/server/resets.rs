//! Rapid-reset accounting for HTTP/2 (CVE-2023-44487): streams the client
//! resets after they were accepted cost us the work already started, and
//! hyper's own limit counts only streams reset before they are accepted. A
//! connection that resets too many accepted streams in a short time is told
//! GOAWAY, as nginx and Envoy do.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The window over which resets are counted.
const WINDOW: Duration = Duration::from_secs(10);

/// One connection's resets in the current window.
#[derive(Debug)]
pub struct ResetBudget {
    limit: u32,
    started: Instant,
    // Milliseconds from `started` to the current window's start.
    window_start_ms: AtomicU64,
    resets: AtomicU32,
    tripped: AtomicBool,
    notify: Notify,
}

impl ResetBudget {
    /// At most `limit` accepted streams reset per window.
    pub fn new(limit: u32) -> Arc<ResetBudget> {
        Arc::new(ResetBudget {
            limit,
            started: Instant::now(),
            window_start_ms: AtomicU64::new(0),
            resets: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// Watches one accepted stream until it completes.
    pub fn stream(self: &Arc<Self>) -> StreamWatch {
        StreamWatch {
            budget: self.clone(),
            completed: AtomicBool::new(false),
        }
    }

    /// Resolves once the connection has spent its budget.
    pub async fn tripped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.tripped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn count_reset(&self) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let start = self.window_start_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(start) >= window_ms
            && self
                .window_start_ms
                .compare_exchange(start, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.resets.store(0, Ordering::Release);
        }
        let resets = self.resets.fetch_add(1, Ordering::AcqRel) + 1;
        if resets > self.limit && !self.tripped.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

/// An accepted HTTP/2 stream: counted as reset if dropped before it completed.
#[derive(Debug)]
pub struct StreamWatch {
    budget: Arc<ResetBudget>,
    // Set from `Body::is_end_stream(&self)`, hence atomic.
    completed: AtomicBool,
}

impl StreamWatch {
    /// The response went out whole (or failed on our side): not the client's reset.
    pub fn complete(&self) {
        self.completed.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.completed.load(Ordering::Relaxed) {
            self.budget.count_reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trips_once_more_than_the_limit_are_reset_and_not_for_completed_streams() {
        let budget = ResetBudget::new(3);
        for _ in 0..10 {
            budget.stream().complete();
        }
        for _ in 0..3 {
            drop(budget.stream());
        }
        assert!(!budget.tripped.load(Ordering::Acquire));
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.tripped().await }
        });
        drop(budget.stream());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("tripped")
            .unwrap();
    }
}
