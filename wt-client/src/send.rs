//! Send halves shared by the handles and the driver: a [`Connection`](crate::Connection)
//! writes to a stream from the caller's own task, without a round trip through the driver.
//!
//! Each send half sits in a [`Slot`] behind an async mutex, so writes to one stream happen in
//! the order their callers got the lock. A write keeps the bytes it has not written yet in
//! the slot (`pending`) and writes them with the cancel-safe
//! [`write_some`](wt_core::SendStream::write_some): when a caller drops its `send` future
//! half-way, the rest is still written (by the next writer, or by the driver, which the
//! dropped future asks to do it), so a stream never carries a cut-short message.
//!
//! A `send` first tries to write without waiting ([`SendHalf::try_send`]): when the slot is
//! free and the transport takes all the bytes at once, as it does in the steady state of an
//! exchange of messages, the write costs no allocation and no future. Only a write that has
//! to wait is boxed (type-erased), holding the slot's lock until it is done.
//!
//! The slot tells the driver how its stream ended ([`Note::SendEnded`]); the driver keeps
//! the bookkeeping (notices to the application, forgetting finished streams) and removes
//! the slot from the shared map, after which sends to that stream are answered by the
//! driver from its records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::{mpsc, Mutex, OwnedMutexGuard};
use wt_core::{SendStream, StreamError, StreamId};

use crate::store::Item;

/// A boxed future returned by a type-erased send half.
pub(crate) type SendFut = Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send>>;

/// How a send half ended.
#[derive(Debug)]
pub(crate) enum SendEnd {
    /// FIN sent after all data.
    Finished,
    /// Reset by us.
    Reset,
    /// The peer asked us to stop sending, with this code.
    Stopped(u32),
    /// A write failed.
    Failed(StreamError),
}

/// Messages to the driver that need no answer (sent without waiting, also from `Drop`).
pub(crate) enum Note {
    /// A received item taken by a `stream_recv` whose future was dropped: back in its place.
    PutBack(u64, Item),
    /// A send half ended.
    SendEnded(StreamId, SendEnd),
    /// A `send` future was dropped after it began writing: the rest must still go out.
    Orphan(Arc<dyn SendHalf>),
}

/// What [`SendHalf::try_send`] did.
pub(crate) enum TrySend {
    /// All written (and the FIN sent if asked), or the write failed: the send's result.
    Done(Result<(), StreamError>),
    /// Nothing written: another write holds the slot, one abandoned earlier is unfinished,
    /// or the transport takes nothing right now. The bytes back, for [`SendHalf::send`].
    Busy(Bytes),
    /// Part written; the rest (and the FIN) is written by this future, which holds the
    /// slot until then (and, if dropped, leaves the rest to the driver as `send` does).
    Parked(SendFut),
}

/// What the handles and the driver see of a send half, with the transport type erased.
pub(crate) trait SendHalf: Send + Sync {
    /// Writes `data`, then FIN if `fin`, as far as it goes without waiting.
    fn try_send(self: Arc<Self>, data: Bytes, fin: bool) -> TrySend;
    /// Writes `data` (after any bytes left by an abandoned earlier write), then FIN if
    /// `fin`. Resolves once the transport accepted everything.
    fn send(self: Arc<Self>, data: Bytes, fin: bool) -> SendFut;
    /// Resets the stream (discarding what is not written yet).
    fn reset(self: Arc<Self>, code: u32) -> SendFut;
    /// Writes what an abandoned `send` left (nothing if none).
    fn flush(self: Arc<Self>) -> SendFut;
    /// Marks the stream stopped by the peer if no write is under way (one that is will see
    /// the transport's error itself), dropping the transport's handle.
    fn stopped_by_peer(&self, code: u32);
}

enum State<W> {
    Open {
        stream: W,
        /// Bytes of an accepted `send` not written yet.
        pending: Bytes,
        /// FIN after `pending`.
        fin: bool,
    },
    /// Every later send fails with this.
    Ended(StreamError),
}

/// One stream's send half.
pub(crate) struct Slot<W> {
    id: StreamId,
    /// In its own `Arc` so that a write which has to wait can keep the lock it took without
    /// waiting ([`OwnedMutexGuard`]).
    state: Arc<Mutex<State<W>>>,
    notes: mpsc::UnboundedSender<Note>,
}

impl<W: SendStream> Slot<W> {
    pub(crate) fn new(stream: W, notes: mpsc::UnboundedSender<Note>) -> Arc<Self> {
        Arc::new(Slot {
            id: stream.id(),
            state: Arc::new(Mutex::new(State::Open {
                stream,
                pending: Bytes::new(),
                fin: false,
            })),
            notes,
        })
    }

    /// Ends the slot with `err` and tells the driver.
    fn end(&self, state: &mut State<W>, err: StreamError, how: SendEnd) {
        *state = State::Ended(err);
        let _ = self.notes.send(Note::SendEnded(self.id, how));
    }

    /// Writes `pending` (and the FIN) of an open slot; on an error ends the slot.
    async fn drive(&self, state: &mut State<W>) -> Result<(), StreamError> {
        let State::Open {
            stream,
            pending,
            fin,
        } = state
        else {
            return Ok(());
        };
        let mut r = Ok(());
        while !pending.is_empty() {
            r = stream.write_some(pending).await;
            if r.is_err() {
                break;
            }
        }
        let fin = *fin;
        self.conclude(state, r, fin)
    }

    /// After the bytes of a write went (`r` ok) or failed: the FIN if `fin`, and on an error
    /// the end of the slot.
    fn conclude(
        &self,
        state: &mut State<W>,
        mut r: Result<(), StreamError>,
        fin: bool,
    ) -> Result<(), StreamError> {
        if r.is_ok() && fin {
            if let State::Open { stream, .. } = state {
                r = stream.finish();
            }
            if r.is_ok() {
                self.end(state, StreamError::ClosedLocally, SendEnd::Finished);
                return Ok(());
            }
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                let how = match e {
                    StreamError::Stopped(c) => SendEnd::Stopped(c.unwrap_or(0)),
                    ref e => SendEnd::Failed(e.clone()),
                };
                self.end(state, e.clone(), how);
                Err(e)
            }
        }
    }

    /// [`drive`](Self::drive) for a caller's write: should its future be dropped half-way,
    /// the driver is asked to write the rest.
    async fn drive_guarded(self: &Arc<Self>, state: &mut State<W>) -> Result<(), StreamError>
    where
        W: 'static,
    {
        let guard = OrphanGuard {
            slot: Some(self.clone() as Arc<dyn SendHalf>),
            notes: self.notes.clone(),
        };
        let r = self.drive(state).await;
        guard.disarm();
        r
    }

    /// The rest of a write begun by [`try_send`](SendHalf::try_send), with the slot's lock
    /// it kept.
    fn finish_parked(self: Arc<Self>, mut state: OwnedMutexGuard<State<W>>) -> SendFut
    where
        W: 'static,
    {
        Box::pin(async move { self.drive_guarded(&mut state).await })
    }
}

/// Asks the driver to finish an abandoned write unless disarmed.
struct OrphanGuard {
    slot: Option<Arc<dyn SendHalf>>,
    notes: mpsc::UnboundedSender<Note>,
}

impl OrphanGuard {
    fn disarm(mut self) {
        self.slot = None;
    }
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = self.notes.send(Note::Orphan(slot));
        }
    }
}

impl<W: SendStream> SendHalf for Slot<W> {
    fn try_send(self: Arc<Self>, mut data: Bytes, fin: bool) -> TrySend {
        let Ok(mut state) = self.state.clone().try_lock_owned() else {
            return TrySend::Busy(data);
        };
        let len = data.len();
        let r = {
            let stream = match &mut *state {
                // An abandoned write goes first, the usual way.
                State::Open { pending, .. } if !pending.is_empty() => return TrySend::Busy(data),
                State::Open { stream, .. } => stream,
                State::Ended(e) => return TrySend::Done(Err(e.clone())),
            };
            // `write_some` is cancel safe: polled once and dropped while pending, it wrote
            // nothing, and the waker left with the transport is replaced by the next poll.
            let mut cx = Context::from_waker(Waker::noop());
            let mut r = Poll::Ready(Ok(()));
            while !data.is_empty() {
                r = std::pin::pin!(stream.write_some(&mut data)).poll(&mut cx);
                if !matches!(r, Poll::Ready(Ok(()))) {
                    break;
                }
            }
            r
        };
        let r = match r {
            Poll::Ready(r) => r,
            Poll::Pending if data.len() == len => return TrySend::Busy(data),
            Poll::Pending => {
                if let State::Open {
                    pending,
                    fin: pending_fin,
                    ..
                } = &mut *state
                {
                    *pending = data;
                    *pending_fin = fin;
                }
                return TrySend::Parked(self.finish_parked(state));
            }
        };
        TrySend::Done(self.conclude(&mut state, r, fin))
    }

    fn send(self: Arc<Self>, data: Bytes, fin: bool) -> SendFut {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            // An abandoned write comes first (nothing to do if none).
            self.drive(&mut state).await?;
            match &mut *state {
                State::Open {
                    pending,
                    fin: pending_fin,
                    ..
                } => {
                    *pending = data;
                    *pending_fin = fin;
                }
                State::Ended(e) => return Err(e.clone()),
            }
            self.drive_guarded(&mut state).await
        })
    }

    fn reset(self: Arc<Self>, code: u32) -> SendFut {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            let r = match &mut *state {
                State::Open { stream, .. } => stream.reset(code),
                State::Ended(e) => return Err(e.clone()),
            };
            self.end(&mut state, StreamError::ClosedLocally, SendEnd::Reset);
            r
        })
    }

    fn flush(self: Arc<Self>) -> SendFut {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            self.drive(&mut state).await
        })
    }

    fn stopped_by_peer(&self, code: u32) {
        if let Ok(mut state) = self.state.try_lock() {
            if matches!(*state, State::Open { .. }) {
                *state = State::Ended(StreamError::Stopped(Some(code)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wt_core::testsuite::mock::{MockConfig, MockSession};
    use wt_core::{RecvStream, Session};

    /// A slot on a mock stream whose window is `window` bytes, the peer's receive half, and
    /// what must live as long as they do (both sessions, the driver's end of the notes).
    async fn slot(
        window: usize,
    ) -> (
        Arc<dyn SendHalf>,
        impl RecvStream,
        (MockSession, MockSession, mpsc::UnboundedReceiver<Note>),
    ) {
        let (ours, peer) = MockSession::pair(MockConfig {
            stream_window: window,
            ..MockConfig::default()
        });
        let mut s = ours.open_uni().await.unwrap();
        // The peer learns of the stream with its first byte.
        s.write_all(b"#").await.unwrap();
        let incoming = peer.accept_any().await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        (Slot::new(s, tx), incoming.recv, (ours, peer, rx))
    }

    async fn read_n(r: &mut impl RecvStream, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend_from_slice(&r.read_chunk(n - got.len()).await.unwrap().unwrap());
        }
        got
    }

    #[tokio::test]
    async fn a_write_the_stream_takes_at_once_is_done_without_a_future() {
        let (slot, mut peer, _keep) = slot(1024).await;
        assert_eq!(read_n(&mut peer, 1).await, b"#");
        for i in 0..10u8 {
            match slot.clone().try_send(Bytes::from(vec![i; 100]), false) {
                TrySend::Done(Ok(())) => {}
                TrySend::Done(Err(e)) => panic!("write {i}: {e:?}"),
                TrySend::Busy(_) => panic!("write {i}: busy"),
                TrySend::Parked(_) => panic!("write {i}: parked"),
            }
            assert_eq!(read_n(&mut peer, 100).await, vec![i; 100]);
        }
        // The FIN goes with the last one.
        assert!(matches!(
            slot.clone().try_send(Bytes::from_static(b"end"), true),
            TrySend::Done(Ok(()))
        ));
        assert_eq!(read_n(&mut peer, 3).await, b"end");
        assert_eq!(peer.read_chunk(10).await.unwrap(), None);
        // The slot has ended: later writes say so at once.
        assert!(matches!(
            slot.try_send(Bytes::from_static(b"x"), false),
            TrySend::Done(Err(StreamError::ClosedLocally))
        ));
    }

    #[tokio::test]
    async fn a_write_that_must_wait_keeps_the_slot_until_done() {
        let (slot, mut peer, _keep) = slot(16).await;
        // The window holds 15 more bytes: 40 go in part, the rest waits with the lock.
        let TrySend::Parked(rest) = slot.clone().try_send(Bytes::from(vec![1u8; 40]), true) else {
            panic!("expected a parked write");
        };
        // Meanwhile another writer finds the slot taken, and gets its bytes back.
        let TrySend::Busy(b) = slot.clone().try_send(Bytes::from_static(b"later"), false) else {
            panic!("expected busy");
        };
        assert_eq!(&b[..], b"later");
        let reader = tokio::spawn(async move {
            let got = read_n(&mut peer, 41).await;
            (got, peer.read_chunk(10).await.unwrap())
        });
        rest.await.unwrap();
        let (got, end) = reader.await.unwrap();
        assert_eq!(got[0], b'#');
        assert_eq!(&got[1..], &[1u8; 40][..]);
        assert_eq!(end, None, "the FIN follows the rest");
    }

    #[tokio::test]
    async fn a_full_stream_hands_the_bytes_back() {
        let (slot, mut peer, _keep) = slot(1).await;
        // The header byte fills the window: nothing of this write goes.
        let TrySend::Busy(b) = slot.clone().try_send(Bytes::from_static(b"abc"), false) else {
            panic!("expected busy");
        };
        assert_eq!(&b[..], b"abc");
        // The usual way waits for room, then writes everything in order.
        let send = slot.send(b, false);
        let reader = tokio::spawn(async move { read_n(&mut peer, 4).await });
        send.await.unwrap();
        assert_eq!(reader.await.unwrap(), b"#abc");
    }
}
