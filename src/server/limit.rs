//! How many connections are served at once: in all, and from one address.
//!
//! A connection over either limit is closed as soon as it is accepted, before
//! a byte is read, and counted. Per-address counts use the TCP peer; trusted
//! proxies (a load balancer carrying many visitors) are exempt from them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;

use crate::client::ClientPrefix;

/// The limits in force for new connections (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections served at once from one address.
    pub max_per_ip: usize,
    /// Which addresses count as one (an IPv6 peer by its prefix).
    pub client_prefix: ClientPrefix,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Full,
    /// `max_connections_per_ip` are open from this address.
    PerIp,
}

/// The open connections, counted.
#[derive(Debug, Default)]
pub struct Slots {
    // Also what /metrics shows, when the gauge is registered there.
    open: Gauge,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    // Woken when the last connection closes.
    all_closed: tokio::sync::Notify,
    /// Refused connections, logged once per burst.
    pub refusals: crate::logging::Bursts,
}

/// One admitted connection; frees its place when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Slots {
    /// No connection open yet; the count shown in `gauge` as well.
    pub fn shown_in(gauge: Gauge) -> Slots {
        Slots {
            open: gauge,
            ..Slots::default()
        }
    }

    /// Admits a connection from `peer` under `limits`; `exempt` peers skip the per-address limit.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        limits: Admission,
        exempt: bool,
    ) -> Result<Slot, Refused> {
        let open = usize::try_from(self.open.inc()).unwrap_or(0) + 1;
        let mut slot = Slot {
            slots: self.clone(),
            ip: None,
        };
        if limits.max_connections > 0 && open > limits.max_connections {
            return Err(Refused::Full);
        }
        // Every connection is counted by its address, checked or not: a
        // reload may turn the per-address limit on, or stop trusting a
        // proxy, and the connections open then count against it.
        let client = limits.client_prefix.client_of(peer);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(client).or_insert(0);
        if limits.max_per_ip > 0 && !exempt && *count >= limits.max_per_ip {
            return Err(Refused::PerIp);
        }
        *count += 1;
        slot.ip = Some(client);
        Ok(slot)
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.slots.open.dec() == 1 {
            self.slots.all_closed.notify_waiters();
        }
        if let Some(ip) = self.ip {
            let mut per_ip = self
                .slots
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_admitted_without_the_per_address_check_count_once_it_applies() {
        let slots = Arc::new(Slots::default());
        let off = Admission {
            max_connections: 0,
            max_per_ip: 0,
            client_prefix: ClientPrefix::default(),
        };
        let on = Admission {
            max_per_ip: 2,
            ..off
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let proxy: IpAddr = "192.0.2.9".parse().unwrap();
        // Admitted while the limit is off, and while the proxy is trusted.
        let held: Vec<Slot> = (0..3)
            .map(|_| slots.admit(a, off, false).unwrap())
            .chain((0..2).map(|_| slots.admit(proxy, on, true).unwrap()))
            .collect();
        assert_eq!(slots.admit(a, on, false).unwrap_err(), Refused::PerIp);
        assert_eq!(slots.admit(proxy, on, false).unwrap_err(), Refused::PerIp);
        assert!(
            slots.admit(proxy, on, true).is_ok(),
            "still trusted: exempt"
        );
        drop(held);
        assert!(slots.per_ip.lock().unwrap().is_empty(), "all freed");
        assert!(slots.admit(a, on, false).is_ok());
    }

    #[test]
    fn counts_in_all_and_per_address_and_frees_on_drop() {
        let slots = Arc::new(Slots::default());
        let limits = Admission {
            max_connections: 3,
            max_per_ip: 2,
            client_prefix: ClientPrefix::default(),
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.admit(a, limits, false).unwrap();
        let _second = slots.admit(mapped, limits, false).unwrap();
        assert_eq!(slots.admit(a, limits, false).unwrap_err(), Refused::PerIp);
        let _third = slots.admit(b, limits, false).unwrap();
        assert_eq!(slots.admit(b, limits, true).unwrap_err(), Refused::Full);
        assert_eq!(slots.open.get(), 3, "refused connections hold no place");
        drop(first);
        assert!(slots.admit(a, limits, false).is_ok());
        let none = Admission {
            max_connections: 0,
            max_per_ip: 0,
            client_prefix: ClientPrefix::default(),
        };
        let many: Vec<Slot> = (0..100)
            .map(|_| slots.admit(a, none, false).unwrap())
            .collect();
        assert_eq!(slots.open.get(), 102);
        drop(many);
        assert!(slots.per_ip.lock().unwrap().len() <= 2);
    }

    #[test]
    fn ipv6_peers_in_one_prefix_share_the_per_address_count() {
        let slots = Arc::new(Slots::default());
        let mut limits = Admission {
            max_connections: 0,
            max_per_ip: 2,
            client_prefix: ClientPrefix::default(),
        };
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let _one = slots.admit(ip("2001:db8:0:1::1"), limits, false).unwrap();
        let _two = slots.admit(ip("2001:db8:0:1::2"), limits, false).unwrap();
        assert_eq!(
            slots
                .admit(ip("2001:db8:0:1:ffff::3"), limits, false)
                .unwrap_err(),
            Refused::PerIp,
            "a third address of the same /64"
        );
        assert!(slots.admit(ip("2001:db8:0:2::1"), limits, false).is_ok());
        limits.client_prefix = ClientPrefix::new(128).unwrap();
        assert!(slots.admit(ip("2001:db8:0:1::3"), limits, false).is_ok());
    }
}
