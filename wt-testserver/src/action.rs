//! What a handler asks the session runner to do: [`Action`], and why one failed:
//! [`ActionError`].

use bytes::Bytes;
use wt_core::{SessionError, StreamError, StreamId, StreamKind};

use crate::wake::Wakeup;

/// One thing a [`Handler`](crate::Handler) callback asks the session runner to do.
///
/// Callbacks return a `Vec<Action>`; the runner applies the actions in order before it looks at
/// the next event of the session. An action that cannot be carried out is reported back through
/// [`Handler::handle_action_failed`](crate::Handler::handle_action_failed) — it never ends the
/// session or the server by itself. [`Action::CloseSession`] and [`Action::Stop`] end the session:
/// actions after them in the same batch are dropped, and every stream is reset by the
/// transport, so stream data still queued may never reach the peer (to deliver data before
/// closing, finish the stream and close after the handler sees the stream end).
///
/// Stream actions are applied in order, stream by stream: by the session's own task while
/// the transport takes each write whole, then by a writer task of the stream's own; `Send`
/// waits (applying backpressure to the whole session) when the stream's queue or the
/// session's write budget is full — see [`session`](crate::session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Writes `data` on the stream (which must have a sending half: a bidirectional stream or a
    /// unidirectional stream this side opened).
    Send(StreamId, Bytes),
    /// Writes `data` (possibly empty), then ends the sending half cleanly (FIN).
    SendFin(StreamId, Bytes),
    /// Sends a datagram (unreliable over HTTP/3, a reliable capsule over HTTP/2).
    SendDatagram(Bytes),
    /// Opens a stream of this kind. Once it is open the runner calls
    /// [`Handler::handle_stream_opened`](crate::Handler::handle_stream_opened) with its ID;
    /// streams of one kind are opened, and reported, in the order the actions were given.
    OpenStream(StreamKind),
    /// Ends the sending half of the stream cleanly (FIN), after the data already queued.
    CloseStream(StreamId),
    /// Abruptly ends the sending half with an application error code (RESET_STREAM /
    /// WT_RESET_STREAM); data not yet delivered may be discarded.
    ResetStream(StreamId, u32),
    /// Asks the peer to stop sending on the stream's receiving half (STOP_SENDING /
    /// WT_STOP_SENDING) with an application error code; nothing more is delivered from it.
    StopSending(StreamId, u32),
    /// Asks the peer to wrap the session up (WT_DRAIN_SESSION). The session keeps working.
    Drain,
    /// Closes the session with an application error code and a reason of at most 1024 bytes
    /// (WT_CLOSE_SESSION). Ends the session; the handler's `terminate` is called with
    /// [`TerminateReason::Closed`](crate::TerminateReason::Closed).
    CloseSession(u32, String),
    /// Ends the session normally: it is closed with code 0 and an empty reason, and `terminate`
    /// is called with [`TerminateReason::Normal`](crate::TerminateReason::Normal).
    Stop,
    /// Asks for one [`Handler::handle_wake`](crate::Handler::handle_wake) call with `tag`:
    /// when `wakeup` fires ([`Woken::Signalled`](crate::wake::Woken::Signalled)) or at
    /// `deadline` ([`Woken::DeadlineReached`](crate::wake::Woken::DeadlineReached)),
    /// whichever comes first, unless the session ends before. The session goes on meanwhile;
    /// each such action holds one small task until then. See [`wake`](crate::wake).
    WakeOn {
        /// What to wait for.
        wakeup: Wakeup,
        /// When to give up waiting.
        deadline: tokio::time::Instant,
        /// Handed back to `handle_wake`, to tell several waits apart.
        tag: u64,
    },
}

impl Action {
    /// The stream the action is about, if any.
    pub fn stream(&self) -> Option<StreamId> {
        match self {
            Action::Send(id, _)
            | Action::SendFin(id, _)
            | Action::CloseStream(id)
            | Action::ResetStream(id, _)
            | Action::StopSending(id, _) => Some(*id),
            _ => None,
        }
    }
}

/// Why an [`Action`] could not be carried out.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The stream ID names no stream of this session that the runner knows (never opened, or
    /// already fully closed and forgotten).
    #[error("no such stream: {0}")]
    UnknownStream(StreamId),
    /// The half of the stream the action needs is absent (e.g. sending on a peer's
    /// unidirectional stream) or already ended (finished, reset or stopped).
    #[error("stream {0} is closed in the direction the action needs")]
    StreamClosed(StreamId),
    /// The transport refused a stream operation.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The transport refused a session operation (datagram too large, reason too long,
    /// stream open failed, ...).
    #[error(transparent)]
    Session(#[from] SessionError),
}
