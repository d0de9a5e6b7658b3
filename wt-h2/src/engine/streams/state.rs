//! Per-direction stream state machines. They mirror QUIC's (RFC 9000 §3) with every transition
//! that QUIC ties to an acknowledgement taken immediately: TCP already guarantees delivery, so
//! "Data Sent" and "Data Recvd", "Reset Sent" and "Reset Recvd" collapse.
//!
//! Send side:
//!
//! ```text
//!        open (local) / first WT_STREAM from peer on its bidi stream
//!            |
//!            v
//!        +-------+  write   +------+
//!        | Ready |--------->| Send |
//!        +-------+          +------+
//!            |  finish: WT_STREAM with FIN   |
//!            +---------------+---------------+
//!            |               v               |
//!            |         +----------+          |
//!            |         | DataSent |  (terminal: FIN is delivered by TCP)
//!            |         +----------+          |
//!            | reset, or WT_STOP_SENDING     |
//!            | received (answered with       |
//!            | WT_RESET_STREAM)              |
//!            +---------------+---------------+
//!                            v
//!                      +-----------+
//!                      | ResetSent |  (terminal)
//!                      +-----------+
//! ```
//!
//! Receive side:
//!
//! ```text
//!        first WT_STREAM / WT_RESET_STREAM (or implicit open by a higher id)
//!            |
//!            v
//!        +------+  WT_STREAM with FIN  +-----------+  app read all  +----------+
//!        | Recv |--------------------->| SizeKnown |--------------->| DataRead |
//!        +------+                      +-----------+                +----------+
//!            |  WT_RESET_STREAM              | WT_RESET_STREAM
//!            +---------------+---------------+
//!                            v
//!                     +------------+  app saw the reset  +-----------+
//!                     | ResetRecvd |-------------------->| ResetRead |
//!                     +------------+                     +-----------+
//! ```
//!
//! A WT_STREAM, second WT_RESET_STREAM or WT_STREAM_DATA_BLOCKED arriving in a terminal
//! receive state, or a second WT_STOP_SENDING, is a WT_STREAM_STATE_ERROR (ordering is
//! guaranteed, so the redundancy QUIC tolerates cannot happen legitimately).

/// State of the sending half.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// Opened, nothing sent yet.
    Ready,
    /// Some data sent.
    Send,
    /// FIN sent (terminal).
    DataSent,
    /// WT_RESET_STREAM sent (terminal).
    ResetSent,
}

impl SendState {
    /// FIN or reset sent.
    pub fn is_terminal(self) -> bool {
        matches!(self, SendState::DataSent | SendState::ResetSent)
    }
}

/// State of the receiving half.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Receiving data.
    Recv,
    /// FIN received, data still buffered.
    SizeKnown,
    /// FIN received and everything read (terminal).
    DataRead,
    /// WT_RESET_STREAM received; the data up to the reliable size may still be buffered.
    ResetRecvd {
        /// The application code (checked to fit 32 bits).
        code: u32,
    },
    /// The application was told about the reset (terminal).
    ResetRead,
}

impl RecvState {
    /// The peer will send nothing more on this half (FIN or reset received).
    pub fn peer_done(self) -> bool {
        !matches!(self, RecvState::Recv)
    }
}
