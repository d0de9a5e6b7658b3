//! The sending half of a stream.

use super::state::SendState;
use crate::engine::flow_control::SendCredit;

/// Sending half: state, offset and the peer's per-stream credit.
#[derive(Debug)]
pub(crate) struct SendHalf {
    /// Where in the state machine we are.
    pub state: SendState,
    /// The peer's WT_MAX_STREAM_DATA credit; `used()` is the number of bytes sent.
    pub credit: SendCredit,
    /// The peer's WT_STOP_SENDING code (`Some(None)`: code outside the 32-bit range cannot
    /// happen, such a capsule ends the session), once received.
    pub stopped: Option<u32>,
    /// Whether a writer waits for credit or buffer space.
    pub write_blocked: bool,
}

impl SendHalf {
    /// A fresh sending half with `credit` bytes of initial credit.
    pub fn new(credit: u64) -> Self {
        SendHalf {
            state: SendState::Ready,
            credit: SendCredit::new(credit),
            stopped: None,
            write_blocked: false,
        }
    }

    /// Bytes sent so far.
    pub fn offset(&self) -> u64 {
        self.credit.used()
    }
}
