//! The send limit of each HTTP/2 stream. A client can keep one stream's
//! flow-control window shut while its connection stays quiet or busy with
//! other streams: no write of the connection ever waits, so `IdleIo`'s send
//! limit never fires, and the stream's response (with the CMS connection
//! behind it) would be held for as long as the client likes. A stream waits
//! on the client from the moment its body hands hyper a piece until hyper
//! asks for the next, or drops the body once its last piece has gone (hyper
//! holds each piece until the stream's window has room for it). Once one
//! has waited `send_timeout` while the
//! connection's own writes were not waiting (those are `IdleIo`'s to time),
//! the connection is closed, as a stalled HTTP/1.1 connection is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::time::Instant;

/// One HTTP/2 connection's streams, watched for the send limit.
#[derive(Debug)]
pub struct SendWatch {
    limit: Duration,
    epoch: Instant,
    streams: Mutex<Vec<Weak<StreamClock>>>,
    // The watcher is timing a waiting stream, or about to look: a stream
    // that starts to wait need not wake it.
    armed: AtomicBool,
    watcher: AtomicWaker,
}

/// One stream's wait on the client.
#[derive(Debug)]
pub struct StreamClock {
    watch: Arc<SendWatch>,
    // Milliseconds from the watch's epoch, plus one, to when the body last
    // handed hyper a piece; 0 while hyper is asking for the next or the
    // body has ended.
    handed_at: AtomicU64,
}

impl SendWatch {
    /// Streams may wait at most `limit` on the client.
    pub fn new(limit: Duration) -> Arc<SendWatch> {
        Arc::new(SendWatch {
            limit,
            epoch: Instant::now(),
            streams: Mutex::default(),
            armed: AtomicBool::new(true),
            watcher: AtomicWaker::new(),
        })
    }

    /// The clock of a new stream.
    pub fn stream(self: &Arc<Self>) -> Arc<StreamClock> {
        let clock = Arc::new(StreamClock {
            watch: self.clone(),
            handed_at: AtomicU64::new(0),
        });
        let mut streams = self.streams();
        if streams.len() == streams.capacity() {
            // Ended streams go before the list grows, and room is made for
            // as many again as are left: a sweep comes only after that many
            // new streams, so its cost stays a step per stream.
            streams.retain(|stream| stream.strong_count() > 0);
            let open = streams.len();
            streams.reserve(open.max(4));
        }
        streams.push(Arc::downgrade(&clock));
        clock
    }

    /// Resolves once a stream has waited the limit on the client while
    /// `writes_wait` said the connection's writes were not waiting.
    pub async fn stalled(&self, writes_wait: impl Fn() -> bool) -> Duration {
        loop {
            let Some(since) = self.longest_wait() else {
                // Disarmed before the second look: a stream that began to
                // wait after the first saw the watch armed and did not wake it.
                self.armed.store(false, Ordering::SeqCst);
                if self.longest_wait().is_none() {
                    self.until_armed().await;
                }
                self.armed.store(true, Ordering::SeqCst);
                continue;
            };
            let deadline = since + self.limit;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if writes_wait() {
                // The client is slow to take what was written: the
                // connection's own send limit applies; look again later.
                tokio::time::sleep(self.limit).await;
            } else {
                return self.limit;
            }
        }
    }

    // When the stream waiting longest began to wait.
    fn longest_wait(&self) -> Option<Instant> {
        let mut streams = self.streams();
        streams.retain(|stream| stream.strong_count() > 0);
        let handed = streams
            .iter()
            .filter_map(Weak::upgrade)
            .map(|clock| clock.handed_at.load(Ordering::SeqCst))
            .filter(|&at| at != 0)
            .min()?;
        Some(self.epoch + Duration::from_millis(handed - 1))
    }

    async fn until_armed(&self) {
        std::future::poll_fn(|cx| {
            self.watcher.register(cx.waker());
            if self.armed.load(Ordering::SeqCst) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Vec<Weak<StreamClock>>> {
        // Plain data, whole whatever panicked while it was held.
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StreamClock {
    /// The body handed hyper a piece: the stream waits until it is asked for the next.
    pub fn handed(&self) {
        let since_epoch = Instant::now().saturating_duration_since(self.watch.epoch);
        let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX - 1);
        self.handed_at.store(millis + 1, Ordering::SeqCst);
        let watch = &self.watch;
        if !watch.armed.load(Ordering::SeqCst) && !watch.armed.swap(true, Ordering::SeqCst) {
            watch.watcher.wake();
        }
    }

    /// hyper asks for the next piece: the last one has gone, no wait on the client.
    pub fn asked(&self) {
        self.handed_at.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    const LIMIT: Duration = Duration::from_secs(60);

    /// Polls `stalled` for `for_how_long` of paused time: whether it resolved.
    async fn stalls_within(
        watch: &SendWatch,
        writes_wait: &AtomicBool,
        for_how_long: Duration,
    ) -> bool {
        tokio::time::timeout(
            for_how_long,
            watch.stalled(|| writes_wait.load(Ordering::SeqCst)),
        )
        .await
        .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_handed_a_piece_and_not_asked_again_stalls_after_the_limit() {
        let watch = SendWatch::new(LIMIT);
        let writes_wait = AtomicBool::new(false);
        let flowing = watch.stream();
        let stuck = watch.stream();
        assert!(!stalls_within(&watch, &writes_wait, LIMIT * 2).await);
        stuck.handed();
        for _ in 0..5 {
            // Another stream moving does not move this one's wait.
            flowing.handed();
            tokio::time::advance(Duration::from_secs(10)).await;
            flowing.asked();
        }
        assert!(stalls_within(&watch, &writes_wait, Duration::from_secs(11)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_asked_again_within_the_limit_never_stalls() {
        let watch = SendWatch::new(LIMIT);
        let writes_wait = AtomicBool::new(false);
        let stream = watch.stream();
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.stalled(|| false).await }
        });
        for _ in 0..10 {
            stream.handed();
            tokio::time::sleep(Duration::from_secs(50)).await;
            stream.asked();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!waiting.is_finished());
        waiting.abort();
        // Ended while waiting: nothing left to time.
        stream.handed();
        drop(stream);
        assert!(!stalls_within(&watch, &writes_wait, LIMIT * 3).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_while_the_connection_s_writes_wait_is_left_to_the_connection() {
        let watch = SendWatch::new(LIMIT);
        let writes_wait = AtomicBool::new(true);
        let stream = watch.stream();
        stream.handed();
        assert!(!stalls_within(&watch, &writes_wait, LIMIT * 3).await);
        writes_wait.store(false, Ordering::SeqCst);
        assert!(stalls_within(&watch, &writes_wait, LIMIT + Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn ended_streams_leave_the_list_with_a_sweep_every_so_many_new_ones() {
        let watch = SendWatch::new(LIMIT);
        let open: Vec<_> = (0..300).map(|_| watch.stream()).collect();
        let mut sweeps = 0;
        for _ in 0..3000 {
            let before = watch.streams().len();
            drop(watch.stream());
            sweeps += usize::from(watch.streams().len() <= before);
        }
        let streams = watch.streams();
        assert!(
            streams.capacity() <= 4 * open.len(),
            "{} kept",
            streams.capacity()
        );
        // With 300 open, a sweep at most every 300 new streams.
        assert!(sweeps <= 10, "{sweeps} sweeps");
        assert!(streams[..300]
            .iter()
            .zip(&open)
            .all(|(kept, open)| kept.upgrade().is_some_and(|kept| Arc::ptr_eq(&kept, open))));
    }
}
