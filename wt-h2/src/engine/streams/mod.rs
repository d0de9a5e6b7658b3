//! Stream bookkeeping of one session: the stream map, QUIC-style numbering with implicit
//! opening (ST-10), and the stream-count credit both ways.

pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod state;

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use self::recv::RecvHalf;
use self::send::SendHalf;

/// Which side of the session we are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Opened the session (even stream ids in the draft's numbering).
    Client,
    /// Accepted it (odd stream ids in the draft's numbering).
    Server,
}

/// Index into per-kind arrays: 0 bidi, 1 uni.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Bidirectional.
    Bi = 0,
    /// Unidirectional.
    Uni = 1,
}

impl Dir {
    /// The direction of `id`.
    pub fn of(id: u64) -> Dir {
        if id & 2 == 0 {
            Dir::Bi
        } else {
            Dir::Uni
        }
    }
}

/// How stream ids map to initiators: the value of bit 0 in the ids this side opens. The
/// engine reasons in "local"/"remote" streams only; this is the one place that knows which
/// wire ids those are. The draft gives client-initiated streams bit 0 clear; some legacy
/// peers number the other way round ([`Numbering::swapped`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Numbering {
    local_bit: u64,
}

impl Numbering {
    /// The draft's numbering for `side`.
    pub fn draft(side: Side) -> Self {
        Numbering {
            local_bit: u64::from(side == Side::Server),
        }
    }

    /// The same side with the initiator bit inverted.
    pub fn swapped(self) -> Self {
        Numbering {
            local_bit: self.local_bit ^ 1,
        }
    }

    /// Whether `id` was opened by this side.
    pub fn is_local(self, id: u64) -> bool {
        id & 1 == self.local_bit
    }

    /// The id of the `index`-th stream of `dir` opened by this side.
    pub fn local_id(self, dir: Dir, index: u64) -> u64 {
        index << 2 | (dir as u64) << 1 | self.local_bit
    }

    /// The id of the `index`-th stream of `dir` opened by the peer.
    pub fn remote_id(self, dir: Dir, index: u64) -> u64 {
        index << 2 | (dir as u64) << 1 | (self.local_bit ^ 1)
    }
}

/// Both halves of a stream (either may be absent for unidirectional streams, or once done).
#[derive(Debug)]
pub(crate) struct Stream {
    /// Our sending half, if we send on this stream.
    pub send: Option<SendHalf>,
    /// Our receiving half, if the peer sends on this stream.
    pub recv: Option<RecvHalf>,
}

impl Stream {
    /// Nothing more will happen on the stream: both halves are terminal.
    pub fn is_done(&self) -> bool {
        self.send.as_ref().is_none_or(|s| s.state.is_terminal())
            && self.recv.as_ref().is_none_or(|r| r.is_done())
    }
}

/// The stream map and counters.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// Live streams. FxHash, not SipHash: hashing was a third of this crate's own
    /// instructions per message, and the peer cannot pile up collisions, since it can only
    /// use ids below the stream limits it was granted.
    pub map: FxHashMap<u64, Stream>,
    /// Streams of each direction we opened (next local index).
    pub opened_local: [u64; 2],
    /// Streams of each direction the peer opened (next remote index).
    pub opened_remote: [u64; 2],
    /// Peer-opened streams not yet taken by the application, per direction.
    pub pending_accept: [VecDeque<u64>; 2],
}
