//! The engine's output: capsule bytes for the CONNECT stream, as a queue of `Bytes` segments.
//! Small capsules are encoded into a shared scratch buffer (the logical tail of the queue);
//! large WT_STREAM and DATAGRAM payloads are chained after their header without copying.

use std::collections::VecDeque;

use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use wt_core::capsule::{encode_header, encode_stream_header, Capsule, CapsuleOptions};
use wt_core::codes::CapsuleType;

/// Payloads at least this long are chained instead of copied into the scratch buffer.
const CHAIN_THRESHOLD: usize = 1024;

/// The scratch buffer grows by at least this much at a time, so the headers and small
/// capsules of many writes share one allocation (growing it by each header's few bytes cost
/// two allocations per capsule: the bytes, and the shared block `split` makes of them).
const SCRATCH_BLOCK: usize = 1024;

/// A new scratch block also has room for this many capsules the size of the one that needed
/// it. With [`SCRATCH_BLOCK`] alone, a capsule whose payload is just under
/// [`CHAIN_THRESHOLD`] (a 1,000-byte datagram) filled a block by itself: two allocations per
/// capsule again. This keeps them to two per eight, and a session keeps at most one block
/// (about 8 KiB for such capsules, 1 KiB for small ones).
const SCRATCH_CAPSULES: usize = 8;

/// Room for a capsule header: type, length and stream ID, 8 bytes each at most.
const MAX_HEADER: usize = 24;

/// Output handed to h2 in one `send_data`: queued segments in order (capsule headers,
/// control capsules, payloads), none of them copied. h2 cuts DATA frames out of it
/// continuously, so a capsule's header shares frames with payloads instead of taking a
/// frame (and a TLS record) of its own. One segment is held inline; a chain of several
/// allocates once per `send_data`, however many bytes it carries.
#[derive(Debug, Default)]
pub struct Segment {
    first: Bytes,
    more: VecDeque<Bytes>,
    len: usize,
}

impl Segment {
    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        if self.first.is_empty() {
            self.first = b;
        } else {
            self.more.push_back(b);
        }
    }

    /// The segments, in order.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first)
            .chain(self.more.iter())
            .filter(|b| !b.is_empty())
    }

    /// All the bytes in one `Bytes` (copied when there are several segments).
    #[cfg(test)]
    pub fn into_bytes(mut self) -> Bytes {
        if self.more.is_empty() {
            return self.first;
        }
        self.copy_to_bytes(self.len)
    }
}

impl Buf for Segment {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        &self.first
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of a segment");
        self.len -= cnt;
        while cnt > 0 {
            let n = cnt.min(self.first.len());
            self.first.advance(n);
            cnt -= n;
            if self.first.is_empty() {
                match self.more.pop_front() {
                    Some(next) => self.first = next,
                    None => break,
                }
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        if len <= self.first.len() {
            self.len -= len;
            let out = self.first.split_to(len);
            if self.first.is_empty() {
                if let Some(next) = self.more.pop_front() {
                    self.first = next;
                }
            }
            return out;
        }
        assert!(len <= self.len, "copy_to_bytes past the end of a segment");
        let mut b = BytesMut::with_capacity(len);
        b.put(self.take(len));
        b.freeze()
    }
}

/// Outgoing capsule bytes.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    queue: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
    /// The front of `queue` is the rest of a large segment cut by [`Tx::pop`].
    front_cut: bool,
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
        self.front_cut = false;
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

    /// Queues a WT_STREAM capsule carrying the first `n` bytes of `data`: copied into the
    /// scratch buffer when small, a slice of `data` otherwise. A small payload is copied
    /// anyway, and slicing first would cost an allocation for a `Bytes` made from a `Vec`
    /// (its shared header), so it is never sliced.
    pub fn stream_prefix(
        &mut self,
        id: u64,
        fin: bool,
        data: &Bytes,
        n: usize,
        opts: &CapsuleOptions,
    ) {
        if n < CHAIN_THRESHOLD {
            self.stream_slice(id, fin, &data[..n], opts);
        } else {
            self.stream(id, fin, data.slice(..n), opts);
        }
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

    /// Makes room for `need` more bytes in the scratch buffer, a block at a time (see
    /// [`SCRATCH_CAPSULES`]).
    fn room(&mut self, need: usize) {
        if self.scratch.capacity() - self.scratch.len() < need {
            self.scratch
                .reserve((need * SCRATCH_CAPSULES).max(SCRATCH_BLOCK));
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

    /// Takes at most `max` (> 0) bytes from the front, as a chain of the queued segments:
    /// large ones as they are, runs of small ones (capsules of many streams) copied together.
    pub fn pop(&mut self, max: usize) -> Option<Segment> {
        let mut out = Gather::default();
        while out.len < max {
            if self.queue.is_empty() {
                self.flush_scratch();
            }
            let Some(mut next) = self.queue.pop_front() else {
                break;
            };
            // A large segment cut at `max` stays uncopied, however short its pieces.
            let large = next.len() >= COALESCE_BELOW || std::mem::take(&mut self.front_cut);
            let room = max - out.len;
            if next.len() > room {
                let rest = next.split_off(room);
                self.queue.push_front(rest);
                self.front_cut = large;
            }
            out.add(next, large, max);
        }
        if out.len == 0 {
            return None;
        }
        self.len -= out.len;
        Some(out.finish())
    }
}

/// Segments below this size are copied together when several follow each other.
const COALESCE_BELOW: usize = 8 * 1024;

/// A [`Segment`] being put together by [`Tx::pop`].
#[derive(Default)]
struct Gather {
    seg: Segment,
    /// A small segment that may be followed by more.
    small: Option<Bytes>,
    /// Consecutive small segments, copied together.
    run: BytesMut,
    len: usize,
}

impl Gather {
    fn add(&mut self, b: Bytes, large: bool, max: usize) {
        self.len += b.len();
        if large {
            self.end_run();
            self.seg.push(b);
        } else if let Some(prev) = self.small.take() {
            self.run = BytesMut::with_capacity(max.min(64 * 1024));
            self.run.extend_from_slice(&prev);
            self.run.extend_from_slice(&b);
        } else if !self.run.is_empty() {
            self.run.extend_from_slice(&b);
        } else {
            self.small = Some(b);
        }
    }

    fn end_run(&mut self) {
        if let Some(s) = self.small.take() {
            self.seg.push(s);
        }
        if !self.run.is_empty() {
            self.seg.push(std::mem::take(&mut self.run).freeze());
        }
    }

    fn finish(mut self) -> Segment {
        self.end_run();
        self.seg
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
        while let Some(b) = tx.pop(5000).map(Segment::into_bytes) {
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
        let payload = Bytes::from(vec![1u8; 16 * 1024]);
        let mut headers = Vec::new();
        for id in 0..20 {
            tx.stream(id * 4, false, payload.clone(), &o);
            let seg = tx.pop(usize::MAX).unwrap();
            let parts: Vec<&Bytes> = seg.parts().collect();
            assert_eq!(parts.len(), 2, "the header, then the payload");
            assert!(parts[0].len() < MAX_HEADER);
            assert_eq!(parts[1].as_ptr(), payload.as_ptr(), "the payload uncopied");
            headers.push(parts[0].clone());
        }
        assert!(tx.pop(usize::MAX).is_none());
        // Each header follows the one before it in memory: one allocation for all of them.
        for w in headers.windows(2) {
            assert_eq!(w[1].as_ptr() as usize, w[0].as_ptr() as usize + w[0].len());
        }
    }

    #[test]
    fn capsules_just_under_the_chain_threshold_share_blocks() {
        // Each queued and handed on at once, as a quiet session does with its datagrams.
        let mut tx = Tx::default();
        let payload = Bytes::from(vec![3u8; CHAIN_THRESHOLD - 24]);
        let mut sent = Vec::new();
        for _ in 0..8 {
            tx.datagram(payload.clone());
            let seg = tx.pop(usize::MAX).unwrap();
            let parts: Vec<&Bytes> = seg.parts().collect();
            assert_eq!(parts.len(), 1, "header and payload copied together");
            let header = parts[0].len() - payload.len();
            assert!((1..MAX_HEADER).contains(&header));
            assert_eq!(&parts[0][header..], &payload[..]);
            sent.push(parts[0].clone());
        }
        // Each follows the one before it in memory: one block for all of them.
        for w in sent.windows(2) {
            assert_eq!(w[1].as_ptr() as usize, w[0].as_ptr() as usize + w[0].len());
        }
    }

    #[test]
    fn a_segment_reads_as_its_parts_in_order() {
        let mut seg = Segment::default();
        for p in [&b"head"[..], b"", b"-and-", b"body"] {
            seg.push(Bytes::from_static(p));
        }
        assert_eq!(seg.remaining(), 13);
        let mut io = [IoSlice::new(&[]); 4];
        assert_eq!(seg.chunks_vectored(&mut io), 3);
        assert_eq!(
            (&*io[0], &*io[1], &*io[2]),
            (&b"head"[..], &b"-and-"[..], &b"body"[..])
        );
        let mut two = [IoSlice::new(&[]); 2];
        assert_eq!(seg.chunks_vectored(&mut two), 2, "as many as fit");
        assert_eq!(seg.copy_to_bytes(2), &b"he"[..]);
        assert_eq!(seg.copy_to_bytes(4), &b"ad-a"[..]);
        assert_eq!(seg.chunk(), b"nd-");
        seg.advance(5);
        assert_eq!(seg.remaining(), 2);
        assert_eq!(seg.chunk(), b"dy");
        assert_eq!(seg.into_bytes(), &b"dy"[..]);
    }

    #[test]
    fn pop_takes_a_chain_of_segments_up_to_max() {
        let o = CapsuleOptions::default();
        let mut tx = Tx::default();
        tx.capsule(&Capsule::MaxData(5), &o);
        let payload = Bytes::from(vec![7u8; 20_000]);
        tx.stream(0, false, payload.clone(), &o);
        tx.capsule(&Capsule::MaxData(6), &o);
        let total = tx.len();
        let mut seen = 0;
        let mut payload_parts = 0;
        while let Some(seg) = tx.pop(8_000) {
            assert!(seg.remaining() <= 8_000);
            assert!(
                seg.remaining() == 8_000 || tx.is_empty(),
                "full until the end"
            );
            seen += seg.remaining();
            let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
            payload_parts += seg
                .parts()
                .filter(|b| range.contains(&(b.as_ptr() as usize)))
                .count();
        }
        assert_eq!(seen, total);
        assert_eq!(tx.len(), 0);
        assert_eq!(
            payload_parts, 3,
            "the payload cut at the limits, never copied"
        );
        // Small capsules of many streams (2 KiB writes, each payload its own segment) go
        // out copied together, as one part.
        let mut want = BytesMut::new();
        for id in 0..10 {
            let data = Bytes::from(vec![id as u8; 2048]);
            tx.stream(id * 4, true, data.clone(), &o);
            encode_stream_header(id * 4, true, data.len(), o.fin_mapping, &mut want).unwrap();
            want.extend_from_slice(&data);
        }
        let seg = tx.pop(usize::MAX).unwrap();
        assert_eq!(seg.parts().count(), 1);
        assert_eq!(seg.into_bytes(), want.freeze());
    }
}
