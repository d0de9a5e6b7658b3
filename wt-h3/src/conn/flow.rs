//! Session flow-control arithmetic (H3 draft-15/16 §5.6; wire reference §3.8), without I/O.
//!
//! One [`SessionFlow`] per session when flow control is negotiated. It holds six counters:
//!
//! ```text
//!   what the peer allows us (SendCredit)        what we allow the peer (RecvWindow)
//!   ─────────────────────────────────────       ───────────────────────────────────
//!   data: payload bytes we may send             data: payload bytes it may send
//!   bidi / uni: streams we may open             bidi / uni: streams it may open
//!   raised by WT_MAX_* capsules (must grow)     re-granted as data is consumed and
//!   WT_*_BLOCKED sent once per limit            streams close (half-window rule)
//! ```
//!
//! The glue reserves credit before writing or opening (and gives unused credit back), reports
//! what the peer sent or opened, and asks [`SessionFlow::poll_capsule`] for the WT_MAX_* and
//! WT_*_BLOCKED capsules to write on the CONNECT stream. Every violation is a
//! [`FlowError`], which closes the session with WT_FLOW_CONTROL_ERROR.

use wt_core::capsule::Capsule;
use wt_core::FlowLimits;

/// Largest WT_MAX_STREAMS value (2^60).
pub const MAX_STREAMS_LIMIT: u64 = 1 << 60;

/// Largest value a varint carries (2^62 − 1): the cap of WT_MAX_DATA.
const MAX_VARINT: u64 = (1 << 62) - 1;

/// Which counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credit {
    /// Stream payload bytes (WT_MAX_DATA).
    Data,
    /// Bidirectional streams (WT_MAX_STREAMS_BIDI).
    Bidi,
    /// Unidirectional streams (WT_MAX_STREAMS_UNI).
    Uni,
}

/// A flow-control violation by the peer (answered with WT_FLOW_CONTROL_ERROR).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The peer sent more data, or opened more streams, than we allowed.
    #[error("peer exceeded its {what:?} limit of {max}")]
    Exceeded {
        /// Which limit.
        what: Credit,
        /// The limit.
        max: u64,
    },
    /// A WT_MAX_DATA / WT_MAX_STREAMS that does not increase the current limit (draft-16).
    #[error("{what:?} limit update {new} does not increase {current}")]
    NotIncreasing {
        /// Which limit.
        what: Credit,
        /// The limit in force.
        current: u64,
        /// The value received.
        new: u64,
    },
    /// A WT_MAX_STREAMS above 2^60.
    #[error("{what:?} stream limit {new} exceeds 2^60")]
    TooManyStreams {
        /// Which limit.
        what: Credit,
        /// The value received.
        new: u64,
    },
}

/// Credit the peer granted us for one counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SendCredit {
    max: u64,
    used: u64,
    /// The limit at which we last reported being blocked.
    blocked_at: Option<u64>,
    blocked_pending: bool,
}

impl SendCredit {
    /// Credit with the peer's initial limit.
    pub fn new(max: u64) -> Self {
        SendCredit {
            max,
            used: 0,
            blocked_at: None,
            blocked_pending: false,
        }
    }

    /// The current limit.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Credit used so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Credit left.
    pub fn available(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Takes up to `want` units; returns how many were taken (0 when blocked, in which case a
    /// BLOCKED notice is scheduled once per limit).
    pub fn take(&mut self, want: u64) -> u64 {
        let n = want.min(self.available());
        self.used += n;
        if n == 0 && want > 0 && self.blocked_at != Some(self.max) {
            self.blocked_at = Some(self.max);
            self.blocked_pending = true;
        }
        n
    }

    /// Returns `n` units taken but not used.
    pub fn give_back(&mut self, n: u64) {
        self.used = self.used.saturating_sub(n);
    }

    /// Applies a limit update from the peer; `strict` refuses values that do not increase the
    /// limit (draft-16), otherwise a non-increasing update is ignored.
    pub fn raise(&mut self, new: u64, strict: bool) -> Result<(), (u64, u64)> {
        if new <= self.max {
            return if strict { Err((self.max, new)) } else { Ok(()) };
        }
        self.max = new;
        self.blocked_pending = false;
        Ok(())
    }

    /// The limit to report in a BLOCKED capsule, once.
    pub fn poll_blocked(&mut self) -> Option<u64> {
        if std::mem::take(&mut self.blocked_pending) && self.available() == 0 {
            Some(self.max)
        } else {
            None
        }
    }
}

/// Credit we grant the peer for one counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecvWindow {
    /// The limit the peer knows (last advertised).
    max: u64,
    /// How far ahead of consumption we grant.
    window: u64,
    /// Cap of the limit (2^60 for streams).
    cap: u64,
    received: u64,
    consumed: u64,
}

impl RecvWindow {
    /// A window whose advertised limit is `initial` (the SETTINGS value) and which re-grants
    /// `window` ahead of consumption. With `window > initial` the first update is due at once.
    pub fn new(initial: u64, window: u64, cap: u64) -> Self {
        RecvWindow {
            max: initial,
            window: window.min(cap),
            cap,
            received: 0,
            consumed: 0,
        }
    }

    /// The limit the peer knows.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// What the peer used so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The peer used `n` more units; `Err` (the limit) when that exceeds what we allowed.
    pub fn on_received(&mut self, n: u64) -> Result<(), u64> {
        let r = self.received.saturating_add(n);
        if r > self.max {
            return Err(self.max);
        }
        self.received = r;
        Ok(())
    }

    /// `n` units were consumed (data read, stream closed) and may be granted again.
    pub fn release(&mut self, n: u64) {
        self.consumed = self.consumed.saturating_add(n).min(self.received);
    }

    /// The new limit to advertise, when less than half a window is left.
    pub fn poll_update(&mut self) -> Option<u64> {
        if self.window == 0 || self.max.saturating_sub(self.consumed) > self.window / 2 {
            return None;
        }
        let new = self.consumed.saturating_add(self.window).min(self.cap);
        if new <= self.max {
            return None;
        }
        self.max = new;
        Some(new)
    }
}

/// All session flow-control state of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFlow {
    send_data: SendCredit,
    send_bidi: SendCredit,
    send_uni: SendCredit,
    recv_data: RecvWindow,
    recv_bidi: RecvWindow,
    recv_uni: RecvWindow,
    /// Refuse non-increasing limit updates (draft-16); older drafts only forbid decreases.
    strict: bool,
}

impl SessionFlow {
    /// State for a new session: `peer` is what the peer's SETTINGS grant us, `local` what our
    /// SETTINGS granted, `window` how much we re-grant ahead of consumption.
    pub fn new(peer: FlowLimits, local: FlowLimits, window: FlowLimits, strict: bool) -> Self {
        SessionFlow {
            send_data: SendCredit::new(peer.max_data),
            send_bidi: SendCredit::new(peer.max_streams_bidi),
            send_uni: SendCredit::new(peer.max_streams_uni),
            recv_data: RecvWindow::new(local.max_data, window.max_data, MAX_VARINT),
            recv_bidi: RecvWindow::new(
                local.max_streams_bidi,
                window.max_streams_bidi,
                MAX_STREAMS_LIMIT,
            ),
            recv_uni: RecvWindow::new(
                local.max_streams_uni,
                window.max_streams_uni,
                MAX_STREAMS_LIMIT,
            ),
            strict,
        }
    }

    fn send(&mut self, c: Credit) -> &mut SendCredit {
        match c {
            Credit::Data => &mut self.send_data,
            Credit::Bidi => &mut self.send_bidi,
            Credit::Uni => &mut self.send_uni,
        }
    }

    fn recv(&mut self, c: Credit) -> &mut RecvWindow {
        match c {
            Credit::Data => &mut self.recv_data,
            Credit::Bidi => &mut self.recv_bidi,
            Credit::Uni => &mut self.recv_uni,
        }
    }

    /// Takes up to `want` units of our credit (see [`SendCredit::take`]).
    pub fn take(&mut self, c: Credit, want: u64) -> u64 {
        self.send(c).take(want)
    }

    /// Returns unused credit.
    pub fn give_back(&mut self, c: Credit, n: u64) {
        self.send(c).give_back(n)
    }

    /// Our credit left.
    pub fn available(&self, c: Credit) -> u64 {
        match c {
            Credit::Data => self.send_data.available(),
            Credit::Bidi => self.send_bidi.available(),
            Credit::Uni => self.send_uni.available(),
        }
    }

    /// The peer used `n` units (sent bytes, opened a stream).
    pub fn on_received(&mut self, c: Credit, n: u64) -> Result<(), FlowError> {
        self.recv(c)
            .on_received(n)
            .map_err(|max| FlowError::Exceeded { what: c, max })
    }

    /// `n` units the peer used were consumed (read, or the stream closed).
    pub fn release(&mut self, c: Credit, n: u64) {
        self.recv(c).release(n)
    }

    /// Applies a capsule from the peer. Returns `Ok(true)` when our credit grew (waiters
    /// should retry), `Ok(false)` for capsules that change nothing.
    pub fn on_capsule(&mut self, capsule: &Capsule) -> Result<bool, FlowError> {
        let (what, new) = match capsule {
            Capsule::MaxData(v) => (Credit::Data, *v),
            Capsule::MaxStreamsBidi(v) => (Credit::Bidi, *v),
            Capsule::MaxStreamsUni(v) => (Credit::Uni, *v),
            _ => return Ok(false),
        };
        if what != Credit::Data && new > MAX_STREAMS_LIMIT {
            return Err(FlowError::TooManyStreams { what, new });
        }
        let strict = self.strict;
        let credit = self.send(what);
        let before = credit.max();
        credit
            .raise(new, strict)
            .map_err(|(current, new)| FlowError::NotIncreasing { what, current, new })?;
        Ok(credit.max() > before)
    }

    /// The next capsule to send: limit updates first, then BLOCKED notices.
    pub fn poll_capsule(&mut self) -> Option<Capsule> {
        if let Some(v) = self.recv_data.poll_update() {
            return Some(Capsule::MaxData(v));
        }
        if let Some(v) = self.recv_bidi.poll_update() {
            return Some(Capsule::MaxStreamsBidi(v));
        }
        if let Some(v) = self.recv_uni.poll_update() {
            return Some(Capsule::MaxStreamsUni(v));
        }
        if let Some(v) = self.send_data.poll_blocked() {
            return Some(Capsule::DataBlocked(v));
        }
        if let Some(v) = self.send_bidi.poll_blocked() {
            return Some(Capsule::StreamsBlockedBidi(v));
        }
        if let Some(v) = self.send_uni.poll_blocked() {
            return Some(Capsule::StreamsBlockedUni(v));
        }
        None
    }

    /// What we currently allow the peer.
    pub fn local_limits(&self) -> FlowLimits {
        FlowLimits {
            max_data: self.recv_data.max(),
            max_streams_bidi: self.recv_bidi.max(),
            max_streams_uni: self.recv_uni.max(),
        }
    }

    /// What the peer currently allows us.
    pub fn peer_limits(&self) -> FlowLimits {
        FlowLimits {
            max_data: self.send_data.max(),
            max_streams_bidi: self.send_bidi.max(),
            max_streams_uni: self.send_uni.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(d: u64, b: u64, u: u64) -> FlowLimits {
        FlowLimits {
            max_data: d,
            max_streams_bidi: b,
            max_streams_uni: u,
        }
    }

    fn drain(f: &mut SessionFlow) -> Vec<Capsule> {
        std::iter::from_fn(|| f.poll_capsule()).collect()
    }

    #[test]
    fn send_credit_blocks_and_unblocks() {
        let mut c = SendCredit::new(1000);
        assert_eq!(c.take(600), 600);
        assert_eq!(c.take(600), 400);
        assert_eq!(c.available(), 0);
        assert_eq!(c.poll_blocked(), None, "not blocked until a take fails");
        assert_eq!(c.take(1), 0);
        assert_eq!(c.poll_blocked(), Some(1000));
        // Reported once per limit.
        assert_eq!(c.take(1), 0);
        assert_eq!(c.poll_blocked(), None);
        c.give_back(100);
        assert_eq!(c.available(), 100);
        assert_eq!(c.take(1000), 100);
        assert!(c.raise(2000, true).is_ok());
        assert_eq!(c.available(), 1000);
        assert_eq!(c.take(2000), 1000);
        assert_eq!(c.take(1), 0);
        assert_eq!(c.poll_blocked(), Some(2000));
    }

    #[test]
    fn send_credit_updates_must_increase() {
        let mut c = SendCredit::new(10);
        assert_eq!(c.raise(10, true), Err((10, 10)));
        assert_eq!(c.raise(5, true), Err((10, 5)));
        assert_eq!(c.raise(10, false), Ok(()));
        assert_eq!(c.raise(5, false), Ok(()));
        assert_eq!(c.max(), 10);
        assert_eq!(c.raise(11, true), Ok(()));
        assert_eq!(c.max(), 11);
    }

    #[test]
    fn recv_window_detects_violation_and_regrants() {
        let mut w = RecvWindow::new(1000, 1000, MAX_VARINT);
        assert_eq!(w.poll_update(), None);
        assert_eq!(w.on_received(400), Ok(()));
        w.release(400);
        assert_eq!(w.poll_update(), None, "600 left of a 1000 window");
        assert_eq!(w.on_received(200), Ok(()));
        w.release(200);
        assert_eq!(w.poll_update(), Some(1600));
        assert_eq!(w.max(), 1600);
        assert_eq!(w.on_received(1000), Ok(()));
        assert_eq!(w.on_received(1), Err(1600));
        // Release never exceeds what was received.
        w.release(10_000);
        assert_eq!(w.poll_update(), Some(2600));
    }

    #[test]
    fn recv_window_for_one_stream() {
        let mut w = RecvWindow::new(1, 1, MAX_STREAMS_LIMIT);
        assert_eq!(w.on_received(1), Ok(()));
        assert_eq!(w.on_received(1), Err(1));
        assert_eq!(w.poll_update(), None, "stream still open");
        w.release(1);
        assert_eq!(w.poll_update(), Some(2));
        assert_eq!(w.on_received(1), Ok(()));
        assert_eq!(w.poll_update(), None);
    }

    #[test]
    fn zero_window_never_grants_and_window_above_initial_grants_at_once() {
        let mut w = RecvWindow::new(0, 0, MAX_VARINT);
        assert_eq!(w.poll_update(), None);
        assert_eq!(w.on_received(1), Err(0));
        let mut w = RecvWindow::new(0, 100, MAX_STREAMS_LIMIT);
        assert_eq!(w.poll_update(), Some(100));
        let mut w = RecvWindow::new(0, u64::MAX, MAX_STREAMS_LIMIT);
        assert_eq!(w.poll_update(), Some(MAX_STREAMS_LIMIT));
        w.release(5);
        assert_eq!(w.poll_update(), None, "capped");
    }

    #[test]
    fn session_flow_capsules() {
        let mut f = SessionFlow::new(
            limits(1000, 1, 0),
            limits(500, 2, 2),
            limits(500, 2, 2),
            true,
        );
        assert_eq!(drain(&mut f), vec![]);
        assert_eq!(f.peer_limits(), limits(1000, 1, 0));
        assert_eq!(f.local_limits(), limits(500, 2, 2));
        // Our side: one bidi stream, no uni stream.
        assert_eq!(f.take(Credit::Bidi, 1), 1);
        assert_eq!(f.take(Credit::Bidi, 1), 0);
        assert_eq!(f.take(Credit::Uni, 1), 0);
        assert_eq!(f.take(Credit::Data, 1500), 1000);
        assert_eq!(f.take(Credit::Data, 1), 0);
        assert_eq!(
            drain(&mut f),
            vec![
                Capsule::DataBlocked(1000),
                Capsule::StreamsBlockedBidi(1),
                Capsule::StreamsBlockedUni(0)
            ]
        );
        assert_eq!(f.on_capsule(&Capsule::MaxStreamsBidi(2)), Ok(true));
        assert_eq!(f.available(Credit::Bidi), 1);
        assert_eq!(f.on_capsule(&Capsule::DrainSession), Ok(false));
        // Peer side: data and streams.
        assert_eq!(f.on_received(Credit::Data, 300), Ok(()));
        f.release(Credit::Data, 300);
        assert_eq!(drain(&mut f), vec![Capsule::MaxData(800)]);
        assert_eq!(f.on_received(Credit::Bidi, 2), Ok(()));
        assert_eq!(
            f.on_received(Credit::Bidi, 1),
            Err(FlowError::Exceeded {
                what: Credit::Bidi,
                max: 2
            })
        );
        f.release(Credit::Bidi, 1);
        assert_eq!(drain(&mut f), vec![Capsule::MaxStreamsBidi(3)]);
        assert_eq!(f.local_limits(), limits(800, 3, 2));
        assert_eq!(
            f.on_received(Credit::Data, 501),
            Err(FlowError::Exceeded {
                what: Credit::Data,
                max: 800
            })
        );
    }

    #[test]
    fn arrivals_are_judged_against_the_advertised_limit_not_later_grants() {
        // Received (on arrival) and consumed (on read) are separate: a byte past the limit
        // that arrives before the application read anything is a violation, whatever would
        // have been granted had the reads come first.
        let mut f = SessionFlow::new(
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            true,
        );
        assert_eq!(f.on_received(Credit::Data, 1000), Ok(()));
        assert_eq!(
            f.on_received(Credit::Data, 1),
            Err(FlowError::Exceeded {
                what: Credit::Data,
                max: 1000
            })
        );
        // Same arrivals, but the application consumes half before the last byte arrives: the
        // re-grant is advertised first, so the byte is within the (new) limit.
        let mut f = SessionFlow::new(
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            true,
        );
        assert_eq!(f.on_received(Credit::Data, 1000), Ok(()));
        f.release(Credit::Data, 500);
        assert_eq!(drain(&mut f), vec![Capsule::MaxData(1500)]);
        assert_eq!(f.on_received(Credit::Data, 1), Ok(()));
        // Consumption alone never raises what may arrive before the grant is advertised.
        let mut f = SessionFlow::new(
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            limits(1000, 1, 1),
            true,
        );
        assert_eq!(f.on_received(Credit::Data, 1000), Ok(()));
        f.release(Credit::Data, 1000);
        assert!(f.on_received(Credit::Data, 1).is_err());
    }

    #[test]
    fn session_flow_violations() {
        let mut f = SessionFlow::new(limits(1000, 10, 10), limits(0, 0, 0), limits(0, 0, 0), true);
        assert_eq!(
            f.on_capsule(&Capsule::MaxData(1000)),
            Err(FlowError::NotIncreasing {
                what: Credit::Data,
                current: 1000,
                new: 1000
            })
        );
        assert!(matches!(
            f.on_capsule(&Capsule::MaxStreamsUni(3)),
            Err(FlowError::NotIncreasing { .. })
        ));
        assert_eq!(
            f.on_capsule(&Capsule::MaxStreamsBidi(MAX_STREAMS_LIMIT + 1)),
            Err(FlowError::TooManyStreams {
                what: Credit::Bidi,
                new: MAX_STREAMS_LIMIT + 1
            })
        );
        assert_eq!(
            f.on_capsule(&Capsule::MaxStreamsBidi(MAX_STREAMS_LIMIT)),
            Ok(true)
        );
        assert!(f.on_received(Credit::Uni, 1).is_err());
        // Lenient (pre-draft-16): equal or lower values are ignored.
        let mut f = SessionFlow::new(
            limits(1000, 10, 10),
            limits(0, 0, 0),
            limits(0, 0, 0),
            false,
        );
        assert_eq!(f.on_capsule(&Capsule::MaxData(10)), Ok(false));
        assert_eq!(f.peer_limits().max_data, 1000);
    }
}
