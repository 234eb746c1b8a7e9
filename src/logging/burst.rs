//! A burst of like events (failures, refusals) logged once: a flood makes
//! one line, and another only after a quiet spell, with the count of the
//! events in between, so an attacker cannot fill the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Events closer together than this belong to one burst.
const BURST_GAP: Duration = Duration::from_secs(10);

/// Tells which event of a stream begins a burst.
#[derive(Debug)]
pub struct Bursts {
    epoch: Instant,
    gap_ms: u64,
    // Milliseconds since `epoch` of the last event, plus one (0: never).
    last: AtomicU64,
    // Events since the last one that began a burst.
    unlogged: AtomicU64,
}

impl Default for Bursts {
    fn default() -> Self {
        Bursts::with_gap(BURST_GAP)
    }
}

impl Bursts {
    /// Bursts whose events come closer together than `gap`.
    pub fn with_gap(gap: Duration) -> Bursts {
        Bursts {
            epoch: Instant::now(),
            gap_ms: u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
            last: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Records an event. When it begins a burst (it is to be logged),
    /// returns how many events were not logged since the last such one.
    pub fn begins(&self) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last.load(Ordering::Relaxed);
        let quiet = last == 0 || now.saturating_sub(last) >= self.gap_ms;
        if quiet
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        self.last.fetch_max(now, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_of_each_burst_is_logged_with_the_count_before_it() {
        let bursts = Bursts::with_gap(Duration::from_millis(200));
        assert_eq!(bursts.begins(), Some(0));
        for _ in 0..5 {
            assert_eq!(bursts.begins(), None, "the same burst");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(bursts.begins(), Some(5), "after a quiet spell");
        assert_eq!(bursts.begins(), None);
    }
}
