//! Idle limits: how long a body or a connection may go without progress.
//!
//! Progress only moves a deadline forward; the timer is made when something
//! first has to wait and is re-armed only when it fires early, so a busy
//! stream costs one clock read per step and no timer work.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Something went quiet for longer than its limit.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("nothing moved for {0:?}")]
pub struct IdleTimeout(pub Duration);

/// A deadline pushed back by each step of progress.
#[derive(Debug)]
pub struct IdleTimer {
    limit: Option<Duration>,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    /// A timer allowing `limit` between steps; `None` never fires.
    pub fn new(limit: Option<Duration>) -> IdleTimer {
        IdleTimer::with_first(limit, limit.unwrap_or_default())
    }

    /// As [`IdleTimer::new`], but the first step must come within `first`.
    pub fn with_first(limit: Option<Duration>, first: Duration) -> IdleTimer {
        IdleTimer {
            limit,
            deadline: Instant::now() + first,
            sleep: None,
        }
    }

    /// The next step must come within `within`, whatever the limit.
    pub fn next_within(&mut self, within: Duration) {
        self.deadline = Instant::now() + within;
    }

    /// Records a step of progress.
    pub fn progressed(&mut self) {
        if let Some(limit) = self.limit {
            self.deadline = Instant::now() + limit;
        }
    }

    /// Called while waiting: `Some` once the deadline has passed; otherwise
    /// arranges for `cx` to be woken when it does.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> Option<IdleTimeout> {
        let limit = self.limit?;
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Deadlines usually only move later, but the first one may have been
        // longer than the limit: never wait past the current deadline.
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
            if Instant::now() >= self.deadline {
                return Some(IdleTimeout(limit));
            }
            // Progress since the timer was armed: wait out the rest.
            sleep.as_mut().reset(self.deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[tokio::test(start_paused = true)]
    async fn fires_only_after_a_quiet_limit_and_progress_pushes_it_back() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut timer = IdleTimer::new(Some(Duration::from_secs(10)));
        assert!(timer.expired(&mut cx).is_none());
        tokio::time::advance(Duration::from_secs(6)).await;
        timer.progressed();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            timer.expired(&mut cx).is_none(),
            "progress at 6s moved the deadline to 16s"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(timer.expired(&mut cx).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_first_window_does_not_delay_a_shorter_later_deadline() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut timer =
            IdleTimer::with_first(Some(Duration::from_secs(1)), Duration::from_secs(60));
        // Armed while waiting for the first step, at 60 s.
        assert!(timer.expired(&mut cx).is_none());
        timer.progressed();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            timer.expired(&mut cx).is_some(),
            "1 s after the first step, not 60 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_step_can_have_its_own_limit_and_none_never_fires() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut first =
            IdleTimer::with_first(Some(Duration::from_secs(60)), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(first.expired(&mut cx).is_some());
        let mut never = IdleTimer::new(None);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(never.expired(&mut cx).is_none());
    }
}
