//! The receiving half of a stream: the reassembly-free receive buffer (capsules arrive in
//! order) and the per-stream window.

use std::collections::VecDeque;

use bytes::Bytes;

use super::state::RecvState;
use crate::engine::flow_control::RecvWindow;

/// A queue of received chunks whose front is held inline, so a stream with one chunk waiting
/// at a time (a message per stream, or a reader that keeps up) allocates nothing for it; a
/// `VecDeque` allocates at its first push, once for every stream.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    /// The front chunk; `None` only when the queue is empty.
    head: Option<Bytes>,
    /// The chunks after it, in order.
    rest: VecDeque<Bytes>,
}

impl Chunks {
    /// Appends a chunk.
    pub fn push_back(&mut self, b: Bytes) {
        if self.head.is_none() {
            self.head = Some(b);
        } else {
            self.rest.push_back(b);
        }
    }

    /// The front chunk.
    pub fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.head.as_mut()
    }

    /// Removes the front chunk.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let b = self.head.take();
        self.head = self.rest.pop_front();
        b
    }

    /// Drops every chunk.
    pub fn clear(&mut self) {
        self.head = None;
        self.rest.clear();
    }
}

/// Receiving half.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    /// Where in the state machine we are.
    pub state: RecvState,
    /// The credit we grant on this stream.
    pub window: RecvWindow,
    /// Received, unread chunks. Their total never exceeds the window.
    pub buf: Chunks,
    /// Total bytes in `buf`.
    pub buffered: u64,
    /// The application no longer reads (it stopped the stream or dropped the handle):
    /// arriving data is discarded, and the half is done once the peer ends it.
    pub app_done: bool,
    /// We sent WT_STOP_SENDING.
    pub stop_sent: bool,
}

impl RecvHalf {
    /// A fresh receiving half granting `window` bytes.
    pub fn new(window: u64) -> Self {
        RecvHalf {
            state: RecvState::Recv,
            window: RecvWindow::new(window),
            buf: Chunks::default(),
            buffered: 0,
            app_done: false,
            stop_sent: false,
        }
    }

    /// Takes up to `max` bytes from the front of the buffer (`max > 0`).
    pub fn take(&mut self, max: usize) -> Option<Bytes> {
        let front = self.buf.front_mut()?;
        let chunk = if front.len() <= max {
            self.buf.pop_front()?
        } else {
            front.split_to(max)
        };
        self.buffered -= chunk.len() as u64;
        Some(chunk)
    }

    /// Drops everything buffered; returns how many bytes were dropped.
    pub fn discard(&mut self) -> u64 {
        self.buf.clear();
        std::mem::take(&mut self.buffered)
    }

    /// Whether the half needs nothing more: the peer ended it and the application either saw
    /// the end or no longer cares.
    pub fn is_done(&self) -> bool {
        match self.state {
            RecvState::DataRead | RecvState::ResetRead => true,
            RecvState::SizeKnown | RecvState::ResetRecvd { .. } => self.app_done,
            RecvState::Recv => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_their_order_like_a_deque() {
        // Pushes and pops interleaved in a fixed pseudo-random pattern, against a VecDeque.
        let mut q = Chunks::default();
        let mut model = VecDeque::new();
        let mut x = 0x2545_f491_u32;
        for i in 0..2_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x % 5 {
                0 | 1 => {
                    let b = Bytes::from(i.to_le_bytes().to_vec());
                    q.push_back(b.clone());
                    model.push_back(b);
                }
                2 => assert_eq!(q.pop_front(), model.pop_front()),
                3 => {
                    // A partial read: the front is cut in place (never to nothing, as in
                    // `RecvHalf::take`).
                    match (q.front_mut(), model.front_mut()) {
                        (Some(f), Some(m)) if m.len() > 1 => {
                            assert_eq!(f.split_to(1), m.split_to(1));
                        }
                        (f, m) => assert_eq!(f.cloned(), m.cloned()),
                    }
                }
                _ if x % 97 == 0 => {
                    q.clear();
                    model.clear();
                }
                _ => assert_eq!(q.front_mut().cloned(), model.front().cloned()),
            }
        }
        while let Some(m) = model.pop_front() {
            assert_eq!(q.pop_front(), Some(m));
        }
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn a_half_takes_across_chunks_and_counts_them() {
        let mut h = RecvHalf::new(100);
        for b in [&b"abc"[..], b"de", b"f"] {
            h.buf.push_back(Bytes::from_static(b));
            h.buffered += b.len() as u64;
        }
        assert_eq!(h.take(2).unwrap(), &b"ab"[..]);
        assert_eq!(h.take(10).unwrap(), &b"c"[..]);
        assert_eq!(h.take(10).unwrap(), &b"de"[..]);
        assert_eq!(h.buffered, 1);
        assert_eq!(h.discard(), 1);
        assert!(h.take(1).is_none());
    }
}
