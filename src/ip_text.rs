//! An IP address as text on the stack, for the headers and tokens each
//! request writes: `Display` for addresses pads and formats digit by digit,
//! at several times the cost of the rest of a forwarded request's headers.

use std::net::IpAddr;

/// Room for the longest address text (an IPv6 one with an embedded IPv4 is 45 bytes).
const MAX_LEN: usize = 48;

/// An address written as text into a buffer of its own.
pub struct IpText {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl Default for IpText {
    fn default() -> IpText {
        IpText {
            bytes: [0; MAX_LEN],
            len: 0,
        }
    }
}

impl IpText {
    /// `addr` as `Display` writes it.
    pub fn format(&mut self, addr: IpAddr) -> &str {
        self.len = 0;
        match addr {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b".");
                    }
                    self.push(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut self.bytes[..]);
                // Always fits: MAX_LEN is past the longest IPv6 text.
                let _ = write!(cursor, "{v6}");
                self.len = usize::try_from(cursor.position()).unwrap_or(0);
            }
        }
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, text: &[u8]) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text);
        self.len += text.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        let addrs = [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::ffff:192.0.2.128",
        ];
        let mut text = IpText::default();
        for addr in addrs {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(text.format(addr), addr.to_string());
        }
    }
}
