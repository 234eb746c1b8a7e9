//! A per-client rate limit on gated routes: a visitor (by client address,
//! read through the trusted proxies) may ask for so many gated pages a
//! minute, so that a leaked session cannot be used to scrape tokens fast.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::client::ClientPrefix;

/// `[session.rate_limit]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Gated requests a client may make per minute, on average.
    pub per_minute: NonZeroU32,
    /// How many it may make at once before the average applies.
    pub burst: NonZeroU32,
    /// Which addresses count as one client (an IPv6 one by its prefix).
    pub client_prefix: ClientPrefix,
}

/// The limiter: a token bucket per client address.
pub struct ClientRateLimit {
    settings: RateLimitSettings,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl std::fmt::Debug for ClientRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRateLimit")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How often idle clients' buckets are dropped, in checks: keeps memory
/// bounded by the clients of the last minutes, not of all time.
const PRUNE_EVERY: u64 = 8192;

impl ClientRateLimit {
    /// An empty limiter for `settings`.
    pub fn new(settings: RateLimitSettings) -> ClientRateLimit {
        let quota = Quota::per_minute(settings.per_minute).allow_burst(settings.burst);
        ClientRateLimit {
            settings,
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// What this limiter was built from.
    pub fn settings(&self) -> RateLimitSettings {
        self.settings
    }

    /// Takes one request from `client`'s bucket; `Err` with how long until
    /// the next is allowed when it is empty.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&self.settings.client_prefix.client_of(client))
            .map_err(|not_until| {
                not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_affected() {
        let limit = ClientRateLimit::new(RateLimitSettings {
            per_minute: NonZeroU32::new(60).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
            client_prefix: ClientPrefix::default(),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limit.check(a).is_ok());
        assert!(
            limit.check(mapped).is_ok(),
            "the same client in either spelling"
        );
        assert!(limit.check(a).is_ok());
        let wait = limit.check(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limit.check(b).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_bucket() {
        let limit = ClientRateLimit::new(RateLimitSettings {
            per_minute: NonZeroU32::new(60).unwrap(),
            burst: NonZeroU32::new(2).unwrap(),
            client_prefix: ClientPrefix::default(),
        });
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(limit.check(ip("2001:db8:0:1::1")).is_ok());
        assert!(limit.check(ip("2001:db8:0:1::2")).is_ok());
        assert!(
            limit.check(ip("2001:db8:0:1:abcd::3")).is_err(),
            "a new address in the same /64 is the same client"
        );
        assert!(limit.check(ip("2001:db8:0:2::1")).is_ok());
    }
}
