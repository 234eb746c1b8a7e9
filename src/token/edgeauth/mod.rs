//! Akamai EdgeAuth v2 tokens, minted and verified.
//!
//! A token is `[ip=..~][st=..~]exp=..[~acl=..][~id=..][~data=..]~hmac=<hex>`,
//! the fields always in that order and joined by the field delimiter (`~`).
//! The HMAC, keyed with the hex-decoded shared secret, covers the fields
//! before it; a URL token (one without `acl=`) also signs `url=<path>`, and a
//! salted token `salt=<salt>`, neither of which appears in the token. With
//! `escape_early`, ip, id, data and url are percent-escaped first; the ACL
//! and the salt never are.
//!
//! Output is byte-identical to the reference implementation,
//! `akamai-edgeauth` 0.3.2 (`tests/data/edgeauth_vectors.json`, made by
//! `scripts/gen_edgeauth_vectors.py`). Minting and verifying are pure
//! functions of key, format and claims; callers pass the clock in.

use std::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::Md5;
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::{Algorithm, KeyMaterial};

/// A keyed minter and verifier. Cloning the prepared HMAC state per token skips re-hashing the key.
#[derive(Clone)]
pub struct EdgeAuth {
    mac: KeyedMac,
    format: TokenFormat,
}

#[derive(Clone)]
enum KeyedMac {
    Sha256(Hmac<Sha256>),
    Sha1(Hmac<Sha1>),
    Md5(Hmac<Md5>),
}

impl fmt::Debug for EdgeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // TokenFormat's Debug already redacts the salt.
        write!(
            f,
            "EdgeAuth({:?}, {:?}, key: <redacted>)",
            self.algorithm(),
            self.format
        )
    }
}

/// How tokens are laid out beyond the key: delimiters, escaping and salt.
///
/// Neither delimiter may occur in the values it separates, or tokens cannot
/// be read back; escaping keeps `~`, so it does not protect against the
/// default field delimiter.
#[derive(Clone, Debug)]
pub struct TokenFormat {
    /// Separates the fields of a token (`~`).
    pub field_delimiter: char,
    /// Separates several ACLs in one `acl=` field (`!`).
    pub acl_delimiter: char,
    /// Escape ip, id, data and url as the reference's `escape_early` does.
    pub escape_early: bool,
    /// Signed as `salt=<salt>` after every field, never sent; empty counts as none.
    pub salt: Option<SecretString>,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat {
            field_delimiter: '~',
            acl_delimiter: '!',
            escape_early: false,
            salt: None,
        }
    }
}

/// What one token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The client address the token is bound to (`ip=`); empty counts as none.
    pub ip: Option<&'a str>,
    /// Start, unix seconds (`st=`); `None` or 0 leaves it out, as the reference does.
    pub start: Option<u64>,
    /// Expiry, unix seconds (`exp=`).
    pub end: u64,
    /// What the token opens.
    pub scope: Scope<'a>,
    /// A session id (`id=`); empty counts as none.
    pub id: Option<&'a str>,
    /// A payload (`data=`); empty counts as none.
    pub data: Option<&'a str>,
}

/// What a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Paths matching an ACL: one pattern, or several already joined by the ACL delimiter.
    Acl(&'a str),
    /// Exactly this path, signed but not written into the token.
    Url(&'a str),
}

/// Why a token failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// Fields missing, unknown, repeated, out of order or unparsable.
    #[error("token is malformed")]
    Malformed,
    /// The HMAC does not match.
    #[error("token signature does not match")]
    BadSignature,
    /// Valid signature, but `now` is before `st`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Valid signature, but `now` is at or after `exp`.
    #[error("token has expired")]
    Expired,
}

/// The fields of a token whose signature checked out, as written in the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken<'a> {
    /// The client address (`ip=`), escaped if it was minted so.
    pub ip: Option<&'a str>,
    /// Start, unix seconds; `None` if the token has no `st=`.
    pub start: Option<u64>,
    /// Expiry, unix seconds.
    pub end: u64,
    /// The path patterns the token opens; `None` for a URL token.
    pub acl: Option<&'a str>,
    /// The session id (`id=`), escaped if it was minted so.
    pub id: Option<&'a str>,
    /// The payload (`data=`), escaped if it was minted so.
    pub data: Option<&'a str>,
}

// Longest hex digest (SHA-256) is 64 characters.
const MAX_HEX: usize = 64;

impl EdgeAuth {
    /// Prepares a minter for `key` with `algorithm` and the default format.
    pub fn new(algorithm: Algorithm, key: &KeyMaterial) -> EdgeAuth {
        let key = key.as_bytes();
        let mac = match algorithm {
            Algorithm::Sha256 => KeyedMac::Sha256(keyed(key)),
            Algorithm::Sha1 => KeyedMac::Sha1(keyed(key)),
            Algorithm::Md5 => KeyedMac::Md5(keyed(key)),
        };
        EdgeAuth {
            mac,
            format: TokenFormat::default(),
        }
    }

    /// The same key and algorithm, laying tokens out as `format` says.
    pub fn with_format(self, format: TokenFormat) -> EdgeAuth {
        EdgeAuth { format, ..self }
    }

    /// How tokens are laid out.
    pub fn format(&self) -> &TokenFormat {
        &self.format
    }

    /// The hash in use.
    pub fn algorithm(&self) -> Algorithm {
        match self.mac {
            KeyedMac::Sha256(_) => Algorithm::Sha256,
            KeyedMac::Sha1(_) => Algorithm::Sha1,
            KeyedMac::Md5(_) => Algorithm::Md5,
        }
    }

    /// Appends the ACL token for `[start, end)` and `acl` to `out`.
    pub fn mint_into(&self, start: u64, end: u64, acl: &str, out: &mut String) {
        let claims = Claims {
            ip: None,
            start: Some(start),
            end,
            scope: Scope::Acl(acl),
            id: None,
            data: None,
        };
        self.mint_claims_into(&claims, out);
    }

    /// The ACL token for `[start, end)` and `acl`.
    pub fn mint(&self, start: u64, end: u64, acl: &str) -> String {
        let mut out = String::with_capacity(64 + acl.len() + MAX_HEX);
        self.mint_into(start, end, acl, &mut out);
        out
    }

    /// Appends the token for `claims` to `out`.
    pub fn mint_claims_into(&self, claims: &Claims<'_>, out: &mut String) {
        let delimiter = self.format.field_delimiter;
        let signed_from = out.len();
        // Python truthiness decides in the reference: empty strings and a zero start are left out.
        if let Some(ip) = claims.ip.filter(|ip| !ip.is_empty()) {
            out.push_str("ip=");
            self.push_value(ip, out);
            out.push(delimiter);
        }
        // Numbers through itoa: `write!` costs more than the rest of the text.
        if let Some(start) = claims.start.filter(|&start| start != 0) {
            out.push_str("st=");
            out.push_str(itoa::Buffer::new().format(start));
            out.push(delimiter);
        }
        out.push_str("exp=");
        out.push_str(itoa::Buffer::new().format(claims.end));
        let url = match claims.scope {
            Scope::Acl(acl) => {
                out.push(delimiter);
                out.push_str("acl=");
                out.push_str(acl);
                None
            }
            Scope::Url(url) => Some(url),
        };
        if let Some(id) = claims.id.filter(|id| !id.is_empty()) {
            out.push(delimiter);
            out.push_str("id=");
            self.push_value(id, out);
        }
        if let Some(data) = claims.data.filter(|data| !data.is_empty()) {
            out.push(delimiter);
            out.push_str("data=");
            self.push_value(data, out);
        }
        let mut hex = [0u8; MAX_HEX];
        let hex = self.sign(&out.as_bytes()[signed_from..], url, &mut hex);
        out.push(delimiter);
        out.push_str("hmac=");
        out.push_str(hex);
    }

    /// Checks an ACL token's signature and that `now` is within its window (no leeway).
    pub fn verify<'t>(&self, token: &'t str, now: u64) -> Result<VerifiedToken<'t>, VerifyError> {
        self.verify_with(token, now, 0, "")
    }

    /// Checks the signature (in constant time), then the window widened by `leeway` seconds at both ends.
    ///
    /// `request_path` is what a URL token (one without `acl=`) is checked
    /// against, escaped first if the format escapes early. An ACL token
    /// ignores it: match its `acl` with [`acl_allows`](super::acl::acl_allows).
    pub fn verify_with<'t>(
        &self,
        token: &'t str,
        now: u64,
        leeway: u64,
        request_path: &str,
    ) -> Result<VerifiedToken<'t>, VerifyError> {
        let (signed, presented) = self.split_token(token)?;
        let fields = parse_fields(signed, self.format.field_delimiter)?;
        let url = fields.acl.is_none().then_some(request_path);
        let mut expected = [0u8; MAX_HEX];
        let expected = self.sign(signed.as_bytes(), url, &mut expected);
        if !hex_eq_ignore_case(expected.as_bytes(), presented.as_bytes()) {
            return Err(VerifyError::BadSignature);
        }
        if let Some(start) = fields.start {
            if now < start.saturating_sub(leeway) {
                return Err(VerifyError::NotYetValid);
            }
        }
        if now >= fields.end.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        Ok(fields)
    }

    /// Splits off the `hmac=` field, which must be last and a digest's worth of hex.
    fn split_token<'t>(&self, token: &'t str) -> Result<(&'t str, &'t str), VerifyError> {
        let (signed, last) = token
            .rsplit_once(self.format.field_delimiter)
            .ok_or(VerifyError::Malformed)?;
        let hex = last.strip_prefix("hmac=").ok_or(VerifyError::Malformed)?;
        // Every byte is checked, without early exits, so the loop stays branch-free.
        let all_hex = hex.bytes().fold(true, |all, b| all & b.is_ascii_hexdigit());
        if hex.len() != self.mac.hex_len() || !all_hex {
            return Err(VerifyError::Malformed);
        }
        Ok((signed, hex))
    }

    /// Writes `value` into the token, escaped if the format says so.
    fn push_value(&self, value: &str, out: &mut String) {
        if self.format.escape_early {
            escape_early(value, out);
        } else {
            out.push_str(value);
        }
    }

    /// The hex HMAC of `fields` (the token up to `hmac=`), then `url=` if a URL token, then the salt.
    fn sign<'b>(
        &self,
        fields: &[u8],
        url: Option<&str>,
        hex_out: &'b mut [u8; MAX_HEX],
    ) -> &'b str {
        let mut mac = self.mac.clone();
        mac.update(fields);
        let mut delimiter = [0u8; 4];
        let delimiter = self
            .format
            .field_delimiter
            .encode_utf8(&mut delimiter)
            .as_bytes();
        if let Some(url) = url {
            mac.update(delimiter);
            mac.update(b"url=");
            if self.format.escape_early {
                escape_pieces(url, |piece| mac.update(piece.as_bytes()));
            } else {
                mac.update(url.as_bytes());
            }
        }
        if let Some(salt) = &self.format.salt {
            let salt = salt.expose_secret();
            if !salt.is_empty() {
                mac.update(delimiter);
                mac.update(b"salt=");
                mac.update(salt.as_bytes());
            }
        }
        mac.finish_hex(hex_out)
    }
}

fn keyed<M: KeyInit>(key: &[u8]) -> M {
    // HMAC pads or hashes a key of any length, so the error arm cannot be reached; it
    // exists only so that no input can make this panic.
    M::new_from_slice(key).unwrap_or_else(|_| M::new(&Default::default()))
}

impl KeyedMac {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            KeyedMac::Sha256(mac) => mac.update(bytes),
            KeyedMac::Sha1(mac) => mac.update(bytes),
            KeyedMac::Md5(mac) => mac.update(bytes),
        }
    }

    fn hex_len(&self) -> usize {
        match self {
            KeyedMac::Sha256(_) => 64,
            KeyedMac::Sha1(_) => 40,
            KeyedMac::Md5(_) => 32,
        }
    }

    /// Finishes the HMAC as lower-case hex in `out`.
    fn finish_hex(self, out: &mut [u8; MAX_HEX]) -> &str {
        let len = self.hex_len();
        match self {
            KeyedMac::Sha256(mac) => encode_hex(&mac.finalize().into_bytes(), out),
            KeyedMac::Sha1(mac) => encode_hex(&mac.finalize().into_bytes(), out),
            KeyedMac::Md5(mac) => encode_hex(&mac.finalize().into_bytes(), out),
        }
        std::str::from_utf8(&out[..len]).unwrap_or_default()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Whether `presented` hex (either case, already checked to be hex) equals `expected` (lower case), in constant time.
fn hex_eq_ignore_case(expected: &[u8], presented: &[u8]) -> bool {
    if expected.len() != presented.len() {
        return false;
    }
    // Compared a word at a time: subtle guards every element it compares, which
    // byte by byte costs about as much as the HMAC itself.
    fn words(hex: &[u8], fold: u8) -> [u64; MAX_HEX / 8] {
        let mut bytes = [0u8; MAX_HEX];
        for (to, &from) in bytes.iter_mut().zip(hex) {
            *to = from | fold;
        }
        let mut words = [0u64; MAX_HEX / 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        words
    }
    // Setting 0x20 lower-cases A-F and leaves 0-9 as they are.
    words(expected, 0).ct_eq(&words(presented, 0x20)).into()
}

/// Reads the fields before `hmac=`: ip, st, exp, acl, id, data, in that order, each at most once, exp required.
fn parse_fields(signed: &str, delimiter: char) -> Result<VerifiedToken<'_>, VerifyError> {
    let mut token = VerifiedToken {
        ip: None,
        start: None,
        end: 0,
        acl: None,
        id: None,
        data: None,
    };
    let mut end = None;
    let mut next = 0;
    for field in signed.split(delimiter) {
        let (name, value) = field.split_once('=').ok_or(VerifyError::Malformed)?;
        // The position of each name in the only order allowed.
        let at = match name {
            "ip" => 0,
            "st" => 1,
            "exp" => 2,
            "acl" => 3,
            "id" => 4,
            "data" => 5,
            _ => return Err(VerifyError::Malformed),
        };
        if at < next {
            return Err(VerifyError::Malformed);
        }
        next = at + 1;
        match at {
            0 => token.ip = Some(value),
            1 => token.start = Some(parse_time(value)?),
            2 => end = Some(parse_time(value)?),
            3 => token.acl = Some(value),
            4 => token.id = Some(value),
            _ => token.data = Some(value),
        }
    }
    token.end = end.ok_or(VerifyError::Malformed)?;
    Ok(token)
}

/// Unix seconds as plain decimal digits: no sign, no spaces, no overflow.
fn parse_time(text: &str) -> Result<u64, VerifyError> {
    if text.is_empty() {
        return Err(VerifyError::Malformed);
    }
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => u64::from(b - b'0'),
            _ => return Err(VerifyError::Malformed),
        };
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(digit))
            .ok_or(VerifyError::Malformed)
    })
}

/// Appends `text` as the reference's `escape_early` writes it: `quote_plus(text, safe='')`, hex in lower case.
///
/// `A-Z a-z 0-9 _ . - ~` are kept, a space becomes `+`, and every other byte
/// of the UTF-8 text becomes `%xx`.
pub fn escape_early(text: &str, out: &mut String) {
    escape_pieces(text, |piece| out.push_str(piece));
}

/// Hands `text`, escaped, to `emit` in pieces, so it can be hashed without a buffer.
fn escape_pieces(text: &str, mut emit: impl FnMut(&str)) {
    let mut kept_from = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        if is_unreserved(byte) {
            continue;
        }
        // A run of kept bytes is ASCII, so it starts and ends on character boundaries.
        if let Some(kept) = text.get(kept_from..at) {
            if !kept.is_empty() {
                emit(kept);
            }
        }
        if byte == b' ' {
            emit("+");
        } else {
            let escaped = [
                b'%',
                HEX_DIGITS[usize::from(byte >> 4)],
                HEX_DIGITS[usize::from(byte & 0x0f)],
            ];
            if let Ok(escaped) = std::str::from_utf8(&escaped) {
                emit(escaped);
            }
        }
        kept_from = at + 1;
    }
    if let Some(kept) = text.get(kept_from..) {
        if !kept.is_empty() {
            emit(kept);
        }
    }
}

/// Python's `quote` never escapes these (RFC 3986 unreserved, `~` included since 3.7).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~')
}

#[cfg(test)]
mod tests;
