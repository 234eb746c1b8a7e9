//! What the rewriter emits, held until the body hands it on, with a place
//! kept for each token still being fetched.
//!
//! The iframe handler cannot wait for the video host's API, so it writes a
//! marker where the token goes (a per-page random nonce and the slot
//! number, plain ASCII so any page encoding carries it intact) and announces
//! it. The scanner hands a rewritten tag to the sink in one piece, so a
//! marker is never split across chunks. The sink cuts the output at each
//! marker; the body sends everything up to the first unresolved one.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Nonce hex digits, then slot hex digits.
const NONCE_LEN: usize = 24;
const SLOT_LEN: usize = 8;
/// Length of one marker.
pub const MARKER_LEN: usize = NONCE_LEN + SLOT_LEN;

/// One piece of output in page order.
pub enum Piece {
    /// Bytes ready to send.
    Bytes(Bytes),
    /// The place of the token of this slot.
    Token(usize),
}

/// A page's output not yet handed on, cut at the places of tokens still
/// being fetched.
#[derive(Default)]
pub struct OutputState {
    // Pieces before the newest marker, when markers have been seen.
    queue: VecDeque<Piece>,
    // Bytes after the newest marker (all output while no marker is seen).
    tail: BytesMut,
    // Markers set by the handler and not yet seen by the sink.
    awaited: u32,
    nonce: [u8; NONCE_LEN],
    queued_bytes: usize,
    // Calls announced by the handler, not yet taken by the body.
    jobs: Vec<super::minting::Job>,
}

impl OutputState {
    /// Output for a page whose markers carry `nonce`.
    pub fn new(nonce: [u8; NONCE_LEN]) -> OutputState {
        OutputState {
            nonce,
            ..OutputState::default()
        }
    }

    /// The marker for `slot`, announced: the sink will look for it.
    pub fn marker(&mut self, slot: usize) -> [u8; MARKER_LEN] {
        self.awaited += 1;
        let mut marker = [0u8; MARKER_LEN];
        marker[..NONCE_LEN].copy_from_slice(&self.nonce);
        // The slot as eight lower-case hex digits, most significant first.
        let slot = slot as u32;
        for (place, digit) in marker[NONCE_LEN..].iter_mut().rev().enumerate() {
            *digit = b"0123456789abcdef"[(slot >> (4 * place) & 0xf) as usize];
        }
        marker
    }

    /// Announces the call whose token goes where its marker is.
    pub fn announce(&mut self, job: super::minting::Job) {
        self.jobs.push(job);
    }

    /// The calls announced since the last look.
    pub fn take_jobs(&mut self) -> Vec<super::minting::Job> {
        std::mem::take(&mut self.jobs)
    }

    /// Room for `additional` more bytes of plain output.
    pub fn reserve(&mut self, additional: usize) {
        self.tail.reserve(additional);
    }

    /// Bytes held, queued or not.
    pub fn buffered(&self) -> usize {
        self.queued_bytes + self.tail.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tail.is_empty()
    }

    /// The first piece, if any; plain output when nothing is queued.
    pub fn next(&mut self) -> Option<Piece> {
        match self.queue.pop_front() {
            Some(Piece::Bytes(bytes)) => {
                self.queued_bytes -= bytes.len();
                Some(Piece::Bytes(bytes))
            }
            Some(token) => Some(token),
            None => (!self.tail.is_empty()).then(|| Piece::Bytes(self.tail.split().freeze())),
        }
    }

    /// Puts back a token piece that cannot be sent yet.
    pub fn put_back(&mut self, slot: usize) {
        self.queue.push_front(Piece::Token(slot));
    }

    /// Drops everything held: after an error nothing more is sent.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.tail.clear();
        self.queued_bytes = 0;
    }

    /// Appends the rewriter's next output, cut at the markers awaited.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while self.awaited > 0 {
            let Some(at) = memchr::memmem::find(chunk, &self.nonce) else {
                break;
            };
            let slot = chunk
                .get(at + NONCE_LEN..at + MARKER_LEN)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| usize::from_str_radix(digits, 16).ok());
            let Some(slot) = slot else {
                break;
            };
            self.append(&chunk[..at]);
            self.queue_tail();
            self.queue.push_back(Piece::Token(slot));
            self.awaited -= 1;
            chunk = &chunk[at + MARKER_LEN..];
        }
        self.append(chunk);
    }

    // Adds plain output to the tail. When it has no room left, what it
    // holds is queued as it is rather than copied into a larger buffer: a
    // chunk whose tokens outgrew the room reserved for them (a large read
    // of a page with many embeds) would otherwise be copied whole again.
    fn append(&mut self, bytes: &[u8]) {
        if self.tail.capacity() - self.tail.len() < bytes.len() && !self.tail.is_empty() {
            self.queue_tail();
            self.tail.reserve(bytes.len().max(MIN_RESERVE));
        }
        self.tail.extend_from_slice(bytes);
    }

    // Moves what the tail holds, as it is, to the end of the queue.
    fn queue_tail(&mut self) {
        let held = self.tail.split().freeze();
        self.queued_bytes += held.len();
        self.queue.push_back(Piece::Bytes(held));
    }
}

/// Least room taken for the tail once what it held is queued.
const MIN_RESERVE: usize = 4096;

/// A fresh nonce for one page: not guessable by the page's author.
pub fn page_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&crate::unguessable::next_hex()[..NONCE_LEN]);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(state: &mut OutputState) -> Vec<String> {
        std::iter::from_fn(|| state.next())
            .map(|piece| match piece {
                Piece::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
                Piece::Token(slot) => format!("<{slot}>"),
            })
            .collect()
    }

    #[test]
    fn cuts_output_at_announced_markers_only() {
        let mut state = OutputState::new(*b"0123456789abcdef01234567");
        // Room for all of it, as the body reserves for each chunk.
        state.reserve(256);
        state.push(b"plain 0123456789abcdef0123456700000001 text");
        let m0 = state.marker(0);
        let m3 = state.marker(3);
        let mut chunk = b"<a src=\"x".to_vec();
        chunk.extend_from_slice(&m3);
        chunk.extend_from_slice(b"y\"><b ");
        chunk.extend_from_slice(&m0);
        state.push(&chunk);
        state.push(b" after");
        assert_eq!(
            drain(&mut state),
            [
                "plain 0123456789abcdef0123456700000001 text<a src=\"x",
                "<3>",
                "y\"><b ",
                "<0>",
                " after"
            ]
        );
        assert!(state.is_empty());
    }

    #[test]
    fn output_past_the_reserved_room_queues_what_is_held_instead_of_copying_it() {
        let mut state = OutputState::new(*b"0123456789abcdef01234567");
        state.reserve(10);
        state.push(b"aaaaaaaa");
        let held_at = state.tail.as_ptr();
        state.push(b"bbbbbbbb");
        assert_eq!(state.buffered(), 16);
        let first = match state.next() {
            Some(Piece::Bytes(bytes)) => bytes,
            _ => panic!("the held bytes first"),
        };
        assert_eq!(&first[..], b"aaaaaaaa");
        assert_eq!(
            first.as_ptr(),
            held_at,
            "queued where they were, not copied"
        );
        assert_eq!(drain(&mut state), ["bbbbbbbb"]);
        assert!(state.is_empty());
    }

    #[test]
    fn a_marker_ends_in_its_slot_as_eight_lower_case_hex_digits() {
        let mut state = OutputState::new(*b"0123456789abcdef01234567");
        for slot in [0, 3, 0xa, 0x1f, 0x1a2b_3c4d, 0xffff_ffff] {
            let marker = state.marker(slot);
            assert_eq!(&marker[..NONCE_LEN], b"0123456789abcdef01234567");
            assert_eq!(&marker[NONCE_LEN..], format!("{slot:08x}").as_bytes());
        }
    }

    #[test]
    fn nonces_differ_per_page() {
        assert_ne!(page_nonce(), page_nonce());
        assert!(page_nonce().iter().all(u8::is_ascii_hexdigit));
    }
}
