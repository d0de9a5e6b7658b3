//! Flow-control value types for WT_MAX_DATA / WT_MAX_STREAM_DATA / WT_MAX_STREAMS accounting,
//! in the spirit of h2's `flow_control.rs`: small `Copy` structs whose arithmetic is tested
//! alone.
//!
//! * [`RecvWindow`]: credit we grant the peer. It tracks what the peer knows (`max`, the last
//!   value advertised), what it has used (`received`) and what our application has consumed.
//!   A new limit is advertised once half the window has been consumed, so updates are never
//!   smaller than half a window and never non-increasing.
//! * [`SendCredit`]: credit the peer grants us, with the value at which we last reported being
//!   blocked (so each BLOCKED capsule is sent once per limit).

/// Credit granted to the peer (receive side).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    /// The limit the peer knows (last advertised).
    max: u64,
    /// The window size: how far past `consumed` we are willing to let the peer go.
    window: u64,
    /// Units the peer has used (bytes received, streams opened).
    received: u64,
    /// Units our side is done with (bytes read by the application, streams retired).
    consumed: u64,
}

/// The peer used more credit than it was granted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exceeded {
    /// The limit in force.
    pub limit: u64,
    /// What the peer tried to reach.
    pub attempted: u64,
}

impl RecvWindow {
    /// A window whose initial limit (already known to the peer) is `initial`.
    pub fn new(initial: u64) -> Self {
        RecvWindow {
            max: initial,
            window: initial,
            received: 0,
            consumed: 0,
        }
    }

    /// The advertised limit.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Units received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Records `n` more units from the peer; fails if that passes the advertised limit.
    pub fn on_receive(&mut self, n: u64) -> Result<(), Exceeded> {
        let attempted = self.received.saturating_add(n);
        if attempted > self.max {
            return Err(Exceeded {
                limit: self.max,
                attempted,
            });
        }
        self.received = attempted;
        Ok(())
    }

    /// Records that `n` units were consumed locally (never more than received).
    pub fn consume(&mut self, n: u64) {
        self.consumed = (self.consumed + n).min(self.received);
    }

    /// Units received but not yet consumed.
    pub fn outstanding(&self) -> u64 {
        self.received - self.consumed
    }

    /// A new, strictly larger limit to advertise once at least half the window has been
    /// consumed; `None` otherwise. The returned value becomes the advertised limit.
    pub fn poll_update(&mut self) -> Option<u64> {
        if self.window == 0 {
            return None;
        }
        let available = self.max - self.consumed;
        if available > self.window / 2 {
            return None;
        }
        let new = self
            .consumed
            .saturating_add(self.window)
            .min(wt_core::varint::MAX);
        if new > self.max {
            self.max = new;
            Some(new)
        } else {
            None
        }
    }
}

/// Credit granted to us by the peer (send side).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SendCredit {
    max: u64,
    used: u64,
    blocked_at: Option<u64>,
}

/// The peer lowered a limit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decreased {
    /// The limit before.
    pub old: u64,
    /// The limit the peer sent.
    pub new: u64,
}

impl SendCredit {
    /// Credit starting at `max`.
    pub fn new(max: u64) -> Self {
        SendCredit {
            max,
            used: 0,
            blocked_at: None,
        }
    }

    /// The current limit.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Units used so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Units still available.
    pub fn available(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Uses `n` units (the caller checked [`available`](Self::available)).
    pub fn consume(&mut self, n: u64) {
        self.used += n;
    }

    /// Applies a new limit from the peer: a decrease is an error, an equal value is ignored.
    /// Returns whether the limit grew.
    pub fn update(&mut self, new: u64) -> Result<bool, Decreased> {
        if new < self.max {
            return Err(Decreased { old: self.max, new });
        }
        let grew = new > self.max;
        self.max = new;
        Ok(grew)
    }

    /// Whether a BLOCKED capsule should be sent now (once per limit value); records it.
    pub fn should_report_blocked(&mut self) -> bool {
        if self.available() > 0 || self.blocked_at == Some(self.max) {
            return false;
        }
        self.blocked_at = Some(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_window_grants_after_half() {
        let mut w = RecvWindow::new(100);
        w.on_receive(60).unwrap();
        assert_eq!(w.poll_update(), None);
        w.consume(49);
        assert_eq!(w.poll_update(), None, "51 still available > 50");
        w.consume(1);
        assert_eq!(w.poll_update(), Some(150));
        assert_eq!(w.poll_update(), None, "never non-increasing");
        assert_eq!(
            w.on_receive(91),
            Err(Exceeded {
                limit: 150,
                attempted: 151
            })
        );
        w.on_receive(90).unwrap();
        assert_eq!(w.outstanding(), 100);
    }

    #[test]
    fn window_of_one() {
        let mut w = RecvWindow::new(1);
        w.on_receive(1).unwrap();
        assert_eq!(w.poll_update(), None);
        w.consume(1);
        assert_eq!(w.poll_update(), Some(2));
        assert!(w.on_receive(2).is_err());
    }

    #[test]
    fn zero_window_never_grants() {
        let mut w = RecvWindow::new(0);
        assert!(w.on_receive(1).is_err());
        assert_eq!(w.poll_update(), None);
    }

    #[test]
    fn send_credit() {
        let mut c = SendCredit::new(10);
        c.consume(10);
        assert_eq!(c.available(), 0);
        assert!(c.should_report_blocked());
        assert!(!c.should_report_blocked());
        assert_eq!(c.update(10), Ok(false));
        assert_eq!(c.update(9), Err(Decreased { old: 10, new: 9 }));
        assert_eq!(c.update(20), Ok(true));
        assert_eq!(c.available(), 10);
        c.consume(10);
        assert!(c.should_report_blocked());
    }
}
