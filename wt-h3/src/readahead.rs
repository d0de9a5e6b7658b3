//! Read-ahead of peer stream data under session flow control.
//!
//! quinn reports stream bytes only when they are read, but session flow control must judge
//! bytes against the WT_MAX_DATA the peer had been granted when they *arrived*, not when the
//! application gets round to reading them (by then we may have granted more). So when flow
//! control is on, every receive side of a session stream gets a small pump task that reads
//! from quinn as soon as data arrives, counts it as received (a violation aborts the session),
//! and queues it; the application's reads then take from that queue and count as consumed,
//! which drives the re-grants.
//!
//! ```text
//!   quinn ──read──▶ pump task ──received (vs. advertised limit)──▶ RecvBuffer ──▶ application
//!                                                                      └── consumed → re-grant
//! ```
//!
//! Memory stays bounded: a peer within its limit can have at most the granted window
//! unconsumed across all streams of a session, and one byte more aborts the session. Without
//! flow control none of this exists: the application reads quinn directly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;
use wt_core::codes::H3Code;

use crate::driver::varint;
use crate::session::{lock, SessionShared};

/// Bytes read ahead from a stream but not yet by the application, and how the stream ended.
/// Sans-IO: the pump pushes, the reader pops.
#[derive(Debug)]
pub struct RecvBuffer<E> {
    chunks: VecDeque<Bytes>,
    len: u64,
    end: Option<E>,
    /// The application stopped reading: nothing more is queued.
    closed: bool,
}

impl<E> Default for RecvBuffer<E> {
    fn default() -> Self {
        RecvBuffer {
            chunks: VecDeque::new(),
            len: 0,
            end: None,
            closed: false,
        }
    }
}

impl<E> RecvBuffer<E> {
    /// Queues a chunk read from the stream; `false` (chunk dropped) once the end is known or
    /// the buffer was [`discard`](Self::discard)ed.
    pub fn push(&mut self, chunk: Bytes) -> bool {
        if self.end.is_some() || self.closed {
            return false;
        }
        if !chunk.is_empty() {
            self.len += chunk.len() as u64;
            self.chunks.push_back(chunk);
        }
        true
    }

    /// Takes up to `max` bytes (at least one when anything is queued and `max > 0`).
    pub fn pop(&mut self, max: usize) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        let c = if front.len() <= max {
            self.chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= c.len() as u64;
        Some(c)
    }

    /// Records how the stream ended (the first end wins).
    pub fn finish(&mut self, end: E) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// How the stream ended, once every queued byte has been taken.
    pub fn end(&self) -> Option<&E> {
        if self.chunks.is_empty() {
            self.end.as_ref()
        } else {
            None
        }
    }

    /// Drops everything queued and refuses later pushes (the application stopped reading);
    /// returns the byte count dropped.
    pub fn discard(&mut self) -> u64 {
        self.closed = true;
        self.chunks.clear();
        std::mem::take(&mut self.len)
    }

    /// Bytes queued.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no bytes are queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a read-ahead stream ended.
#[derive(Debug)]
pub(crate) enum End {
    Fin,
    Reset(u64),
    Lost(quinn::ConnectionError),
    Other,
}

/// The pump's queue and the waiting reader, under one lock.
#[derive(Default)]
struct Queued {
    buf: RecvBuffer<End>,
    reader: Option<Waker>,
}

/// State shared by a pump task and the [`RecvStream`](crate::RecvStream) reading from it.
pub(crate) struct ReadAhead {
    /// The quinn stream ID.
    pub id: quinn::StreamId,
    /// What was read ahead, and the reader's waker while it waits for more (one reader: the
    /// stream's [`RecvStream`](crate::RecvStream), which reads through `&mut`).
    buf: Mutex<Queued>,
    /// Reader → pump: STOP_SENDING with this code and quit.
    stop: Mutex<Option<u64>>,
    stop_notify: Notify,
}

impl ReadAhead {
    /// Starts reading `recv` ahead for `session` (which must have flow control); `prefix`
    /// (payload read along with the stream preamble) is handled by the pump first, as if it
    /// had just been read.
    pub(crate) fn spawn(
        recv: quinn::RecvStream,
        prefix: Bytes,
        session: Arc<SessionShared>,
    ) -> Arc<Self> {
        let ra = Arc::new(ReadAhead {
            id: recv.id(),
            buf: Mutex::new(Queued::default()),
            stop: Mutex::new(None),
            stop_notify: Notify::new(),
        });
        tokio::spawn(pump(ra.clone(), recv, prefix, session));
        ra
    }

    /// Asks the pump to stop the stream with `code`; returns the bytes dropped unread.
    pub(crate) fn request_stop(&self, code: u64) -> u64 {
        {
            let mut s = lock(&self.stop);
            if s.is_none() {
                *s = Some(code);
            }
        }
        self.stop_notify.notify_one();
        lock(&self.buf).buf.discard()
    }

    /// Takes up to `max` queued bytes, or the end (`Err`) once all were taken; `Pending` (the
    /// waker kept for the pump) while neither is there. Only one reader may poll.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Bytes, EndKind>> {
        let mut q = lock(&self.buf);
        if let Some(c) = q.buf.pop(max) {
            return Poll::Ready(Ok(c));
        }
        if let Some(e) = q.buf.end() {
            return Poll::Ready(Err(match e {
                End::Fin => EndKind::Fin,
                End::Reset(c) => EndKind::Reset(*c),
                End::Lost(e) => EndKind::Lost(e.clone()),
                End::Other => EndKind::Other,
            }));
        }
        match &mut q.reader {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Queues a chunk the pump read and wakes the reader; `false` (chunk dropped) once the
    /// reader stopped reading.
    fn push(&self, bytes: Bytes) -> bool {
        let reader = {
            let mut q = lock(&self.buf);
            if !q.buf.push(bytes) {
                return false;
            }
            q.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        true
    }

    /// Records how the stream ended and wakes the reader.
    fn finish(&self, end: End) {
        let reader = {
            let mut q = lock(&self.buf);
            q.buf.finish(end);
            q.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }
}

/// How the stream ended, as the reader sees it.
pub(crate) enum EndKind {
    Fin,
    Reset(u64),
    Lost(quinn::ConnectionError),
    Other,
}

async fn pump(
    ra: Arc<ReadAhead>,
    mut recv: quinn::RecvStream,
    prefix: Bytes,
    session: Arc<SessionShared>,
) {
    let mut prefix = (!prefix.is_empty()).then_some(prefix);
    loop {
        let stop = ra.stop_notify.notified();
        let r = tokio::select! {
            biased;
            _ = stop => {
                let code = lock(&ra.stop).unwrap_or(0);
                if code == H3Code::WT_SESSION_GONE.0 {
                    session.hold.stop(recv);
                } else {
                    let _ = recv.stop(varint(code));
                }
                return;
            }
            _ = session.end.wait() => {
                session.hold.stop(recv);
                return ra.finish(End::Other);
            }
            // Payload read along with the preamble first.
            p = std::future::ready(prefix.take()), if prefix.is_some() => Ok(p),
            r = recv.read_chunk(usize::MAX, true) => r.map(|c| c.map(|c| c.bytes)),
        };
        match r {
            Ok(Some(bytes)) => {
                // Counted on arrival, against the limit the peer has been granted so far.
                if !session.on_peer_received(bytes.len() as u64) {
                    // The session is being aborted; the next turn stops the stream.
                    continue;
                }
                let n = bytes.len() as u64;
                if !ra.push(bytes) {
                    // Stopped meanwhile: dropped unread, which frees the credit.
                    session.on_peer_consumed(n);
                }
            }
            Ok(None) => return ra.finish(End::Fin),
            Err(quinn::ReadError::Reset(code)) => return ra.finish(End::Reset(code.into_inner())),
            Err(quinn::ReadError::ConnectionLost(e)) => return ra.finish(End::Lost(e)),
            Err(_) => return ra.finish(End::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_pops_splits_and_ends() {
        let mut b = RecvBuffer::<u8>::default();
        assert_eq!(b.pop(10), None);
        assert_eq!(b.end(), None);
        assert!(b.push(Bytes::from_static(b"hello")));
        assert!(b.push(Bytes::new()));
        assert!(b.push(Bytes::from_static(b"world")));
        assert_eq!(b.len(), 10);
        assert_eq!(b.pop(3).unwrap(), &b"hel"[..]);
        assert_eq!(b.pop(100).unwrap(), &b"lo"[..]);
        assert_eq!(b.len(), 5);
        b.finish(1);
        b.finish(2);
        assert_eq!(b.end(), None, "the end comes after the data");
        assert!(!b.push(Bytes::from_static(b"ignored")));
        assert_eq!(b.pop(5).unwrap(), &b"world"[..]);
        assert_eq!(b.end(), Some(&1));
        assert!(b.is_empty());
    }

    #[test]
    fn buffer_discard_reports_dropped_bytes() {
        let mut b = RecvBuffer::<()>::default();
        assert!(b.push(Bytes::from_static(b"abc")));
        assert!(b.push(Bytes::from_static(b"de")));
        let _ = b.pop(1);
        assert_eq!(b.discard(), 4);
        assert!(
            !b.push(Bytes::from_static(b"late")),
            "refused after a discard"
        );
        assert_eq!(b.pop(10), None);
        assert_eq!(b.discard(), 0);
    }
}
