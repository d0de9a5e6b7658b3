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
//! The slot tells the driver how its stream ended ([`Note::SendEnded`]); the driver keeps
//! the bookkeeping (notices to the application, forgetting finished streams) and removes
//! the slot from the shared map, after which sends to that stream are answered by the
//! driver from its records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};
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

/// What the handles and the driver see of a send half, with the transport type erased.
pub(crate) trait SendHalf: Send + Sync {
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
    state: Mutex<State<W>>,
    notes: mpsc::UnboundedSender<Note>,
}

impl<W: SendStream> Slot<W> {
    pub(crate) fn new(stream: W, notes: mpsc::UnboundedSender<Note>) -> Arc<Self> {
        Arc::new(Slot {
            id: stream.id(),
            state: Mutex::new(State::Open {
                stream,
                pending: Bytes::new(),
                fin: false,
            }),
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
        if r.is_ok() && *fin {
            r = stream.finish();
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
            let guard = OrphanGuard {
                slot: Some(self.clone() as Arc<dyn SendHalf>),
                notes: self.notes.clone(),
            };
            let r = self.drive(&mut state).await;
            guard.disarm();
            r
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
