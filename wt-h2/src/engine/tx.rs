//! The engine's output: capsule bytes for the CONNECT stream, as a queue of `Bytes` segments.
//! Small capsules are encoded into a shared scratch buffer (the logical tail of the queue);
//! large WT_STREAM and DATAGRAM payloads are chained after their header without copying.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use wt_core::capsule::{encode_header, encode_stream_header, Capsule, CapsuleOptions};
use wt_core::codes::CapsuleType;

/// Payloads at least this long are chained instead of copied into the scratch buffer.
const CHAIN_THRESHOLD: usize = 1024;

/// Segments shorter than this are coalesced with their neighbours when transmitted.
const COALESCE_BELOW: usize = 8 * 1024;

/// The scratch buffer grows by at least this much at a time, so the headers and small
/// capsules of many writes share one allocation (growing it by each header's few bytes cost
/// two allocations per capsule: the bytes, and the shared block `split` makes of them).
const SCRATCH_BLOCK: usize = 1024;

/// Room for a capsule header: type, length and stream ID, 8 bytes each at most.
const MAX_HEADER: usize = 24;

/// Outgoing capsule bytes.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    queue: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

impl Tx {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.scratch.clear();
        self.len = 0;
    }

    /// Queues a control capsule. Encoding failures (values above 2^62) cannot happen for the
    /// values the engine produces; they are logged and the capsule dropped.
    pub fn capsule(&mut self, cap: &Capsule, opts: &CapsuleOptions) {
        self.room(2 * MAX_HEADER);
        let before = self.scratch.len();
        if let Err(e) = cap.encode(opts, &mut self.scratch) {
            tracing::warn!("dropping unencodable capsule {cap:?}: {e}");
            self.scratch.truncate(before);
            return;
        }
        self.len += self.scratch.len() - before;
    }

    /// Queues a WT_STREAM capsule carrying `data`.
    pub fn stream(&mut self, id: u64, fin: bool, data: Bytes, opts: &CapsuleOptions) {
        self.room(MAX_HEADER + inline_len(&data));
        let before = self.scratch.len();
        if encode_stream_header(id, fin, data.len(), opts.fin_mapping, &mut self.scratch).is_err() {
            self.scratch.truncate(before);
            return;
        }
        self.len += self.scratch.len() - before;
        self.payload(data);
    }

    /// Queues a WT_STREAM capsule carrying a copy of `data` (into the scratch buffer when
    /// small, into its own `Bytes` otherwise).
    pub fn stream_slice(&mut self, id: u64, fin: bool, data: &[u8], opts: &CapsuleOptions) {
        if data.len() >= CHAIN_THRESHOLD {
            self.stream(id, fin, Bytes::copy_from_slice(data), opts);
            return;
        }
        self.room(MAX_HEADER + data.len());
        let before = self.scratch.len();
        if encode_stream_header(id, fin, data.len(), opts.fin_mapping, &mut self.scratch).is_err() {
            self.scratch.truncate(before);
            return;
        }
        self.scratch.extend_from_slice(data);
        self.len += self.scratch.len() - before;
    }

    /// Queues a DATAGRAM capsule.
    pub fn datagram(&mut self, data: Bytes) {
        self.room(MAX_HEADER + inline_len(&data));
        let before = self.scratch.len();
        if encode_header(CapsuleType::DATAGRAM, data.len() as u64, &mut self.scratch).is_err() {
            self.scratch.truncate(before);
            return;
        }
        self.len += self.scratch.len() - before;
        self.payload(data);
    }

    /// Makes room for `need` more bytes in the scratch buffer, a block at a time.
    fn room(&mut self, need: usize) {
        if self.scratch.capacity() - self.scratch.len() < need {
            self.scratch.reserve(need.max(SCRATCH_BLOCK));
        }
    }

    fn payload(&mut self, data: Bytes) {
        self.len += data.len();
        if data.len() < CHAIN_THRESHOLD {
            self.scratch.extend_from_slice(&data);
        } else {
            self.flush_scratch();
            self.queue.push_back(data);
        }
    }

    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            let b = self.scratch.split().freeze();
            self.queue.push_back(b);
        }
    }

    /// Takes at most `max` (> 0) bytes from the front, coalescing small segments.
    pub fn pop(&mut self, max: usize) -> Option<Bytes> {
        if self.queue.is_empty() {
            self.flush_scratch();
        }
        let mut first = self.queue.pop_front()?;
        if first.len() > max {
            let rest = first.split_off(max);
            self.queue.push_front(rest);
            self.len -= first.len();
            return Some(first);
        }
        let small_next = |q: &mut VecDeque<Bytes>, scratch: &BytesMut| {
            q.front()
                .map(|b| b.len() < COALESCE_BELOW)
                .unwrap_or(!scratch.is_empty() && scratch.len() < COALESCE_BELOW)
        };
        if first.len() >= COALESCE_BELOW || !small_next(&mut self.queue, &self.scratch) {
            self.len -= first.len();
            return Some(first);
        }
        let mut out = BytesMut::with_capacity(max.min(64 * 1024));
        out.extend_from_slice(&first);
        loop {
            if self.queue.is_empty() {
                self.flush_scratch();
            }
            let Some(next) = self.queue.front() else {
                break;
            };
            if next.len() >= COALESCE_BELOW || out.len() + next.len() > max {
                break;
            }
            out.extend_from_slice(next);
            self.queue.pop_front();
        }
        self.len -= out.len();
        Some(out.freeze())
    }
}

/// How much of a payload goes into the scratch buffer (small ones are copied there).
fn inline_len(data: &Bytes) -> usize {
    if data.len() < CHAIN_THRESHOLD {
        data.len()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_kept_and_coalesced() {
        let o = CapsuleOptions::default();
        let mut tx = Tx::default();
        tx.capsule(&Capsule::MaxData(5), &o);
        tx.stream(0, false, Bytes::from(vec![7u8; 20_000]), &o);
        tx.capsule(&Capsule::MaxData(6), &o);
        tx.datagram(Bytes::from_static(b"hi"));
        let total = tx.len();
        let mut all = Vec::new();
        while let Some(b) = tx.pop(5000) {
            assert!(b.len() <= 5000);
            all.extend_from_slice(&b);
        }
        assert_eq!(all.len(), total);
        assert!(tx.is_empty());
        let mut expect = BytesMut::new();
        Capsule::MaxData(5).encode(&o, &mut expect).unwrap();
        encode_stream_header(0, false, 20_000, o.fin_mapping, &mut expect).unwrap();
        expect.extend_from_slice(&[7u8; 20_000]);
        Capsule::MaxData(6).encode(&o, &mut expect).unwrap();
        expect.extend_from_slice(&[0, 2, b'h', b'i']);
        assert_eq!(all, expect.to_vec());
    }

    #[test]
    fn headers_of_consecutive_writes_share_one_block() {
        let o = CapsuleOptions::default();
        let mut tx = Tx::default();
        let payload = Bytes::from(vec![1u8; 2 * COALESCE_BELOW]);
        let mut headers = Vec::new();
        for id in 0..20 {
            tx.stream(id * 4, false, payload.clone(), &o);
            let header = tx.pop(usize::MAX).unwrap();
            assert!(header.len() < MAX_HEADER, "the header alone");
            assert_eq!(
                tx.pop(usize::MAX).unwrap(),
                payload,
                "then the payload itself"
            );
            headers.push(header);
        }
        // Each header follows the one before it in memory: one allocation for all of them.
        for w in headers.windows(2) {
            assert_eq!(w[1].as_ptr() as usize, w[0].as_ptr() as usize + w[0].len());
        }
    }
}
