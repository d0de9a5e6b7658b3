//! The one error type of this crate.

use wt_core::{ConnectError, SessionError, StreamError};

use crate::StreamId;

/// Everything a [`Connection`](crate::Connection) call can fail with: the errors `hackney_wt`
/// defines, plus the transport errors of `wt-core`.
///
/// The type is `Clone` so that the driver can hand the same terminal error to every waiting
/// reader.
///
/// ```
/// use wt_client::Error;
/// let e = Error::Closed { code: 7, reason: "bye".into() };
/// assert_eq!(e.to_string(), "session closed with code 7 (\"bye\")");
/// assert!(matches!(Error::Timeout, Error::Timeout));
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A receive (or connect) did not complete in time. Nothing is lost: data that arrives
    /// later is still readable.
    #[error("timed out")]
    Timeout,
    /// The session is closed and everything buffered was already read. `code` and `reason`
    /// are the peer's when the peer closed, ours when we did.
    #[error("session closed with code {code}{}", fmt_reason(reason))]
    Closed {
        /// Application close code.
        code: u32,
        /// Close reason (UTF-8, at most 1024 bytes).
        reason: String,
    },
    /// `recv` / `stream_recv` was called while events are delivered actively (see
    /// [`Connection::set_active`](crate::Connection::set_active)).
    #[error("the connection is in active mode: read events from the EventReceiver")]
    ActiveMode,
    /// The frame has no WebTransport equivalent (`Ping`, `Pong`).
    #[error("frame type not supported by WebTransport")]
    UnsupportedFrame,
    /// No stream with this ID can be used for the operation: never opened, already fully
    /// closed and drained, opened by the server (for `stream_recv`), or without the needed
    /// direction (sending on a server-opened unidirectional stream, receiving on one we
    /// opened).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// Another task is already waiting on this channel.
    #[error("another receive is already waiting on this channel")]
    RecvBusy,
    /// More than `max_recv_buffer` bytes arrived unread; the session was closed.
    #[error("receive buffer limit exceeded; the session was closed")]
    RecvBufferOverflow,
    /// A close reason longer than 1024 bytes (its length); nothing was sent.
    #[error("close reason of {0} bytes exceeds the 1024-byte limit")]
    InvalidReason(usize),
    /// Establishing the session failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A session-level failure (the session ended abnormally, datagram too large, …).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A stream-level failure (reset or stopped by the peer, already closed, …).
    #[error(transparent)]
    Stream(#[from] StreamError),
}

fn fmt_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason:?})")
    }
}

impl From<wt_core::RequestError> for Error {
    fn from(e: wt_core::RequestError) -> Self {
        Error::Connect(ConnectError::InvalidRequest(e))
    }
}

impl Error {
    /// The error reported when the connection's driver task is gone (its runtime shut down).
    pub(crate) fn driver_gone() -> Self {
        Error::Session(SessionError::ClosedLocally {
            code: 0,
            reason: "connection driver stopped".into(),
        })
    }

    /// Maps how a session ended to what readers see once their buffers are drained.
    pub(crate) fn from_session_end(e: SessionError) -> Self {
        match e {
            SessionError::ClosedByPeer { code, reason }
            | SessionError::ClosedLocally { code, reason } => Error::Closed { code, reason },
            other => Error::Session(other),
        }
    }
}
