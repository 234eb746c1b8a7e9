//! Values no one can guess from the last one: a process-wide counter hashed
//! with keys the OS chose at start. For request ids, the rewriter's
//! per-page markers and the demo's session ids; not for keys.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// 128 bits, unique within the process.
pub fn next_u128() -> u128 {
    static KEYS: OnceLock<[RandomState; 2]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let [high, low] = KEYS.get_or_init(Default::default);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (u128::from(high.hash_one(n)) << 64) | u128::from(low.hash_one(n))
}

/// [`next_u128`] as 32 lower-case hex digits.
pub fn next_hex() -> [u8; 32] {
    let mut text = [0u8; 32];
    // 16 bytes always fill 32 hex digits.
    let _ = hex::encode_to_slice(next_u128().to_be_bytes(), &mut text);
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_are_hex() {
        let (a, b) = (super::next_hex(), super::next_hex());
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
    }
}
