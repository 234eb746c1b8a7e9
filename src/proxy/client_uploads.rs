//! Uploads in flight per client address: one client may hold at most so
//! many of the upload places (`max_uploads_per_client`), so that uploads
//! trickling in from one address cannot take every place from the others.
//!
//! The client is the address read through the trusted proxies, as for the
//! rate limit, an IPv6 one counted by its prefix (`server.ipv6_client_prefix`). Only requests whose bodies are still coming in count, so a
//! page view never touches the map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::client::ClientPrefix;

/// The uploads each client has in flight; clones share the counts.
#[derive(Debug, Clone)]
pub struct ClientUploads {
    most: usize,
    prefix: ClientPrefix,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One client's place, given back when dropped.
#[derive(Debug)]
pub struct ClientUpload {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl ClientUploads {
    /// At most `most` uploads in flight per client (at least 1), clients
    /// told apart by `prefix`.
    pub fn new(most: usize, prefix: ClientPrefix) -> ClientUploads {
        ClientUploads {
            most,
            prefix,
            held: Arc::default(),
        }
    }

    /// A place for one more upload from `client`; `None` when it holds all
    /// of its own already.
    pub fn take(&self, client: IpAddr) -> Option<ClientUpload> {
        let client = self.prefix.client_of(client);
        // Plain counts: whole whatever panicked while the lock was held.
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.most {
            return None;
        }
        *count += 1;
        Some(ClientUpload {
            held: self.held.clone(),
            client,
        })
    }

    /// How many clients hold a place now.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for ClientUpload {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                // The map holds only clients uploading now.
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let uploads = ClientUploads::new(2, ClientPrefix::default());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = uploads.take(one).unwrap();
        let second = uploads.take(one).unwrap();
        assert!(uploads.take(one).is_none());
        // The same client spelled as an IPv4-mapped IPv6 address.
        assert!(uploads.take("::ffff:192.0.2.1".parse().unwrap()).is_none());
        let others = uploads.take(other).unwrap();
        drop(first);
        let third = uploads.take(one).unwrap();
        drop((second, third, others));
        assert_eq!(uploads.clients(), 0, "nobody uploading, nobody kept");
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_are_one_client() {
        let uploads = ClientUploads::new(1, ClientPrefix::default());
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let _held = uploads.take(ip("2001:db8:0:1::1")).unwrap();
        assert!(uploads.take(ip("2001:db8:0:1:ffff::2")).is_none());
        assert!(uploads.take(ip("2001:db8:0:2::1")).is_some());
    }
}
