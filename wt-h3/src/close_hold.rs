//! Data-stream resets held back while our close capsule is on its way.
//!
//! When a session ends, its data streams are reset (RESET_STREAM) and stopped (STOP_SENDING)
//! with WT_SESSION_GONE. quinn puts those frames ahead of stream data in every packet it
//! builds, so after a local `close` they could reach the peer before the close capsule on
//! the CONNECT stream, and always do when the capsule is larger than what the peer's flow
//! control lets through at once. A peer then sees its streams fail before it learns that
//! the session was closed, and why: Chromium rejects `WebTransport.closed` with "Connection
//! lost" instead of reporting the code and reason.
//!
//! So from the moment `close` is called until the peer has acknowledged the capsule and the
//! FIN (or stopped the CONNECT stream, or the close timeout passed), the session's
//! WT_SESSION_GONE resets and stops wait here, holding the quinn halves, and are sent when
//! the session task [releases](CloseHold::release) them. They are bounded by the streams the
//! session has (QUIC's stream limits) and by the close timeout.

use std::sync::Mutex;

use wt_core::codes::H3Code;

use crate::driver::{varint, Incoming};
use crate::session::lock;

/// Resets and stops with WT_SESSION_GONE, sent now or held while a close is on its way.
#[derive(Default)]
pub(crate) struct CloseHold(Mutex<State>);

#[derive(Default)]
enum State {
    /// No close on its way: sent at once.
    #[default]
    Open,
    /// A local close is on its way: held.
    Holding(Vec<Held>),
    /// Released (once per session): sent at once.
    Released,
}

enum Held {
    Reset(quinn::SendStream),
    Stop(quinn::RecvStream),
}

impl Held {
    fn send(self) {
        let code = varint(H3Code::WT_SESSION_GONE.0);
        match self {
            Held::Reset(mut s) => {
                let _ = s.reset(code);
            }
            Held::Stop(mut r) => {
                let _ = r.stop(code);
            }
        }
    }
}

impl CloseHold {
    /// A local close is on its way: hold what comes from now until [`release`](Self::release).
    /// Only the first call after creation holds.
    pub(crate) fn begin(&self) {
        let mut st = lock(&self.0);
        if matches!(*st, State::Open) {
            *st = State::Holding(Vec::new());
        }
    }

    /// Resets `s` with WT_SESSION_GONE, now or on release.
    pub(crate) fn reset(&self, s: quinn::SendStream) {
        self.hold_or_send(Held::Reset(s));
    }

    /// Stops `r` with WT_SESSION_GONE, now or on release.
    pub(crate) fn stop(&self, r: quinn::RecvStream) {
        self.hold_or_send(Held::Stop(r));
    }

    /// Whether resets are being held now. Takes the hold's lock (a leaf: nothing else is
    /// locked or called while it is held), so it may be called under other locks.
    pub(crate) fn is_holding(&self) -> bool {
        matches!(*lock(&self.0), State::Holding(_))
    }

    /// Refuses a stream the peer opened for the session, with WT_SESSION_GONE, now or on
    /// release.
    pub(crate) fn refuse(&self, stream: Incoming) {
        match stream {
            Incoming::Bidi(s, r, _) => {
                self.reset(s);
                self.stop(r);
            }
            Incoming::Uni(r, _) => self.stop(r),
        }
    }

    fn hold_or_send(&self, h: Held) {
        {
            let mut st = lock(&self.0);
            if let State::Holding(v) = &mut *st {
                v.push(h);
                return;
            }
        }
        h.send();
    }

    /// Sends what was held; from now on, everything is sent at once.
    pub(crate) fn release(&self) {
        let held = std::mem::replace(&mut *lock(&self.0), State::Released);
        if let State::Holding(v) = held {
            v.into_iter().for_each(Held::send);
        }
    }
}

impl Drop for CloseHold {
    /// Never left held: dropped, quinn's halves would finish the stream (send) or stop it
    /// with code 0 (receive) instead.
    fn drop(&mut self) {
        self.release();
    }
}
