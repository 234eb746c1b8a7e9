//! Who the visitor is: the client address, read through the proxies we trust.
//!
//! The TCP peer is only the last hop. When that hop is a proxy we trust, its
//! forwarding header says who it was talking to, and so on leftwards, until a
//! hop we do not trust: that hop is the client (nginx's `real_ip_recursive
//! on`). Everything left of it was written by the client itself and is never
//! believed.
//!
//! Which header: `X-Forwarded-For` when the request carries one, otherwise
//! `Forwarded` (RFC 7239). X-Forwarded-For wins because it is what nearly
//! every proxy, this gateway included, appends to; reading both would let a
//! client fill whichever one our proxies leave alone. A deployment whose
//! proxies only write `Forwarded` must make them strip X-Forwarded-For.
//!
//! Limits: at most [`MAX_HOPS`] entries are read, right to left, without
//! allocating; an entry that cannot be read ends the walk at the last hop
//! that could.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, FORWARDED};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

/// How many forwarding entries are read at most, counting from the right.
///
/// Real chains are a handful of hops; the cap keeps a hostile header with
/// thousands of entries from costing more than a few dozen parses. When all
/// of them are trusted, the client is the left-most entry read, which a
/// trusted proxy wrote.
pub const MAX_HOPS: usize = 64;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A trusted-proxy entry that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The entry is not an address or a CIDR.
    #[error("trusted proxy {index} ({entry:?}) is not an IP address or CIDR: {problem}")]
    Malformed {
        /// Position of the entry in the list, from 0.
        index: usize,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The CIDR's address has bits set past its prefix.
    #[error(
        "trusted proxy {index} ({entry:?}) has host bits set past its prefix; \
         write {network} if that whole range is meant"
    )]
    HostBitsSet {
        /// Position of the entry in the list, from 0.
        index: usize,
        /// The entry as written.
        entry: String,
        /// The range the entry would cover, as it should be written.
        network: IpNet,
    },
}

/// CIDRs of proxies whose forwarding headers are believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    // Kept canonical: IPv4-mapped IPv6 ranges are stored as IPv4, matching
    // how addresses are canonicalised before the lookup.
    nets: Vec<IpNet>,
}

// Link-local (169.254.0.0/16, fe80::/10) is left out: any host on the segment
// gives itself such an address with no administrator involved, so it says
// nothing about being our proxy. Shared CGNAT space (100.64.0.0/10) is left
// out too: it holds an ISP's customers, not our machines.
const PRIVATE_NETWORKS: [IpNet; 6] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
    )),
];

const EVERYONE: [IpNet; 2] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0)),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 0)),
];

impl TrustedProxies {
    /// Parses CIDRs such as "10.0.0.0/8", "::1/128"; a bare address means a single host (/32 or /128).
    ///
    /// A CIDR with host bits set ("10.1.2.3/8") is rejected rather than
    /// truncated: it is far more often a typo for a single host than a
    /// deliberate range, and silently trusting 16 million addresses is the
    /// wrong way to find out.
    pub fn parse<S: AsRef<str>>(cidrs: &[S]) -> Result<TrustedProxies, ClientError> {
        let nets = cidrs
            .iter()
            .enumerate()
            .map(|(index, entry)| parse_net(index, entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Trusts no one: the TCP peer is the client.
    pub fn none() -> TrustedProxies {
        TrustedProxies { nets: Vec::new() }
    }

    /// Trusts every peer (the old `trust_forwarded = true`).
    pub fn everyone() -> TrustedProxies {
        TrustedProxies {
            nets: EVERYONE.to_vec(),
        }
    }

    /// Loopback and private ranges: 127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7.
    ///
    /// Link-local ranges are not included: addresses there are self-assigned
    /// by any host on the segment, so they do not mark a proxy we run.
    pub fn private_networks() -> TrustedProxies {
        TrustedProxies {
            nets: PRIVATE_NETWORKS.to_vec(),
        }
    }

    /// Whether `addr` is a trusted proxy. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged as their IPv4 address.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.nets.iter().any(|net| net.contains(&addr))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// How many IPv6 addresses the per-client limits count as one client
/// (`server.ipv6_client_prefix`): those that share their first bits.
///
/// An ISP hands a home or a server a /64 or more, so one visitor can send
/// from any of 2^64 addresses; counted by the whole address, each would get
/// limits of its own. An IPv4 address is one client, as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPrefix {
    ipv6_bits: u8,
}

impl ClientPrefix {
    /// The narrowest prefix accepted: a /32 is a whole ISP's allocation.
    pub const SHORTEST: u8 = 32;

    /// IPv6 clients counted by their first `ipv6_bits` bits;
    /// `None` outside `SHORTEST..=128`.
    pub fn new(ipv6_bits: u8) -> Option<ClientPrefix> {
        (Self::SHORTEST..=128)
            .contains(&ipv6_bits)
            .then_some(ClientPrefix { ipv6_bits })
    }

    /// The key `addr` is counted under: IPv4 (IPv4-mapped IPv6 included) as
    /// it is, IPv6 with the bits past the prefix cleared.
    pub fn client_of(self, addr: IpAddr) -> IpAddr {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(self.ipv6_bits));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            v4 => v4,
        }
    }
}

impl Default for ClientPrefix {
    /// /64: one household's or one server's network.
    fn default() -> ClientPrefix {
        ClientPrefix { ipv6_bits: 64 }
    }
}

fn parse_net(index: usize, entry: &str) -> Result<IpNet, ClientError> {
    let malformed = |problem| ClientError::Malformed {
        index,
        entry: entry.to_owned(),
        problem,
    };
    let text = entry.trim();
    if text.is_empty() {
        return Err(malformed("it is empty"));
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| malformed("the address is not an IPv4 or IPv6 address"))?;
    let Some(prefix) = prefix else {
        let addr = addr.to_canonical();
        return Ok(IpNet::from(addr));
    };
    // u8::from_str takes a leading '+', which no one means in a CIDR.
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the prefix length is not a number"));
    }
    let net = prefix
        .parse::<u8>()
        .ok()
        .and_then(|len| IpNet::new(addr, len).ok())
        .ok_or_else(|| malformed("the prefix length is over 32 (IPv4) or 128 (IPv6)"))?;
    if net.trunc() != net {
        return Err(ClientError::HostBitsSet {
            index,
            entry: entry.to_owned(),
            network: net.trunc(),
        });
    }
    Ok(canonical_net(net))
}

// Addresses are canonicalised before matching, so a range written in the
// IPv4-mapped block (::ffff:0:0/96) has to become the IPv4 range it means or
// it would never match anything.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(v4net);
                }
            }
        }
    }
    net
}

/// The client address of a request arriving from `peer`: the peer itself unless it is trusted; then the right-most untrusted address of the forwarding chain, or the left-most one read if every hop is trusted.
///
/// The chain is `X-Forwarded-For` if the request has that header (every line,
/// in order), else `Forwarded: for=` (every line, in order). An entry that is
/// not an address (garbage, empty, `unknown`, an obfuscated `_name`, bytes
/// that are not visible ASCII) ends the walk at the last hop read before it.
/// At most [`MAX_HOPS`] entries are read. The result is canonical: an
/// IPv4-mapped IPv6 address comes back as IPv4.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return peer;
    }
    if headers.contains_key(X_FORWARDED_FOR) {
        let hops = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
            .map(|entry| parse_node(trim(entry), false));
        walk(peer, hops, trusted)
    } else {
        let hops = headers
            .get_all(FORWARDED)
            .iter()
            .rev()
            .flat_map(|line| ElementsRev::new(line.as_bytes()))
            .map(forwarded_for);
        walk(peer, hops, trusted)
    }
}

/// Follows `hops` (nearest first) while they are trusted.
fn walk(
    peer: IpAddr,
    hops: impl Iterator<Item = Option<IpAddr>>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = peer;
    for hop in hops.take(MAX_HOPS) {
        let Some(addr) = hop else {
            break;
        };
        client = addr;
        if !trusted.trusts(addr) {
            break;
        }
    }
    client
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Reads one hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`. Forwarded also allows obfuscated ports (`:_a1`).
fn parse_node(node: &[u8], obfuscated_port: bool) -> Option<IpAddr> {
    if node.is_empty() || !node.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let node = std::str::from_utf8(node).ok()?;
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| valid_port(port, obfuscated_port));
        if !port_ok {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|addr| IpAddr::V6(addr).to_canonical());
    }
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    // Only IPv4 may carry a port unbracketed; with IPv6 the colon is ambiguous.
    let (host, port) = node.split_once(':')?;
    if !valid_port(port, obfuscated_port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(port: &str, obfuscated: bool) -> bool {
    if let Some(name) = port.strip_prefix('_') {
        // RFC 7239 obfport: "_" 1*(ALPHA / DIGIT / "." / "_" / "-").
        return obfuscated
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// The `for=` address of one Forwarded element, if it has a readable one.
///
/// An element that is malformed (a pair without `=`, an unclosed quote, `for`
/// given twice) has no address: none of it can be trusted to mean anything.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut found: Option<&[u8]> = None;
    let mut rest = element;
    loop {
        let (pair, tail) = split_unquoted(rest, b';')?;
        let pair = trim(pair);
        // RFC 7239 allows empty pairs ("for=1.2.3.4;;proto=http").
        if !pair.is_empty() {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let name = trim(&pair[..eq]);
            let value = trim(&pair[eq + 1..]);
            if name.is_empty() {
                return None;
            }
            if name.eq_ignore_ascii_case(b"for") {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
        match tail {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    let value = match found? {
        [b'"', inner @ .., b'"'] => inner,
        bare => bare,
    };
    // No legitimate node needs escaping, so a quote or backslash left over is
    // either a broken quoted-string or an attempt to smuggle one.
    if value.iter().any(|&b| b == b'"' || b == b'\\') {
        return None;
    }
    parse_node(value, true)
}

/// Splits `bytes` at its first `sep` outside a quoted-string; `None` when a
/// quoted-string is left open.
fn split_unquoted(bytes: &[u8], sep: u8) -> Option<(&[u8], Option<&[u8]>)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == sep {
            return Some((&bytes[..i], bytes.get(i + 1..)));
        }
    }
    (!quoted).then_some((bytes, None))
}

/// The `,`-separated elements of one Forwarded line, right to left, with
/// commas inside quoted-strings left alone.
///
/// Scanning from the right means the elements our proxies appended are split
/// correctly whatever the client put on the left, even an unclosed quote:
/// that only spoils the left-most piece.
struct ElementsRev<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> ElementsRev<'a> {
    fn new(line: &'a [u8]) -> ElementsRev<'a> {
        ElementsRev { rest: Some(line) }
    }
}

impl<'a> Iterator for ElementsRev<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let bytes = self.rest?;
        let mut quoted = false;
        let mut i = bytes.len();
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b'"' if quoted => {
                    // Read backwards, a quote ends the quoted-string unless an
                    // odd run of backslashes escapes it. Skipping the run keeps
                    // a string of backslashes from being counted twice.
                    let run = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                    quoted = run % 2 == 1;
                    i -= run;
                }
                b'"' => quoted = true,
                b',' if !quoted => {
                    self.rest = Some(&bytes[..i]);
                    return bytes.get(i + 1..);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests;
