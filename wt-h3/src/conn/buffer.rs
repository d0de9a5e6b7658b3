//! Bounded per-connection buffers for streams and datagrams that arrive for a session not yet
//! known (they beat their CONNECT request, or its response), and the bounded memory of
//! sessions that ended.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

/// How many ended sessions a connection remembers (see [`Gone`]).
pub const GONE_MEMORY: usize = 256;

/// The ids of the sessions of a connection that ended, so that streams and datagrams still
/// arriving for them are refused or dropped at once instead of buffered as early. Only the
/// last [`GONE_MEMORY`] are kept, so a connection that carries session after session does
/// not grow: what arrives for a session forgotten here is treated as early, which is
/// bounded too (and a peer still sending for a session hundreds of sessions ago is not
/// one to optimise for).
#[derive(Debug, Default)]
pub struct Gone {
    set: FxHashSet<u64>,
    order: VecDeque<u64>,
}

impl Gone {
    /// Remembers that session `id` ended (again is fine), forgetting the oldest beyond
    /// [`GONE_MEMORY`].
    pub fn insert(&mut self, id: u64) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > GONE_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Whether session `id` is remembered as ended.
    pub fn contains(&self, id: u64) -> bool {
        self.set.contains(&id)
    }
}

/// Items keyed by session ID, at most `max` in total across sessions, except items
/// [held](Self::hold) for a session known to be on its way, which count towards that total
/// but are bounded by their caller instead.
#[derive(Debug)]
pub struct EarlyBuffer<T> {
    items: VecDeque<(u64, T)>,
    max: usize,
}

impl<T> EarlyBuffer<T> {
    /// An empty buffer holding at most `max` items.
    pub fn new(max: usize) -> Self {
        EarlyBuffer {
            items: VecDeque::new(),
            max,
        }
    }

    /// Buffers `item` for `session_id`; gives it back when the buffer is full.
    pub fn push(&mut self, session_id: u64, item: T) -> Result<(), T> {
        if self.items.len() >= self.max {
            return Err(item);
        }
        self.items.push_back((session_id, item));
        Ok(())
    }

    /// Buffers `item` for `session_id` whatever the count: for a session whose CONNECT is in
    /// flight or waiting for the application, whose streams the caller knows to be bounded
    /// otherwise (they stay open until handed on, so QUIC's stream limits bound them).
    pub fn hold(&mut self, session_id: u64, item: T) {
        self.items.push_back((session_id, item));
    }

    /// Removes and returns every item of `session_id`, in arrival order.
    pub fn take(&mut self, session_id: u64) -> Vec<T> {
        let mut out = Vec::new();
        let mut rest = VecDeque::with_capacity(self.items.len());
        for (sid, item) in self.items.drain(..) {
            if sid == session_id {
                out.push(item);
            } else {
                rest.push_back((sid, item));
            }
        }
        self.items = rest;
        out
    }

    /// Removes and returns everything.
    pub fn drain_all(&mut self) -> Vec<T> {
        self.items.drain(..).map(|(_, t)| t).collect()
    }

    /// Number of buffered items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_remembers_only_the_latest_sessions() {
        let mut g = Gone::default();
        g.insert(0);
        g.insert(0);
        assert_eq!(g.set.len(), 1);
        for k in 1..(GONE_MEMORY as u64 + 10) {
            g.insert(4 * k);
            g.insert(4 * k); // ending twice (as sessions do) takes no extra room
        }
        assert_eq!(g.set.len(), GONE_MEMORY);
        assert_eq!(g.order.len(), GONE_MEMORY);
        assert!(!g.contains(0));
        assert!(!g.contains(4 * 9));
        assert!(g.contains(4 * 10));
        assert!(g.contains(4 * (GONE_MEMORY as u64 + 9)));
    }

    #[test]
    fn bounded_and_keyed() {
        let mut b = EarlyBuffer::new(3);
        assert!(b.push(0, "a").is_ok());
        assert!(b.push(4, "b").is_ok());
        assert!(b.push(0, "c").is_ok());
        assert_eq!(b.push(8, "d"), Err("d"));
        assert_eq!(b.take(0), vec!["a", "c"]);
        assert_eq!(b.len(), 1);
        assert!(b.push(8, "d").is_ok());
        assert_eq!(b.take(12), Vec::<&str>::new());
        assert_eq!(b.drain_all(), vec!["b", "d"]);
        assert!(b.is_empty());
    }

    #[test]
    fn held_items_pass_the_cap_and_count_towards_it() {
        let mut b = EarlyBuffer::new(2);
        b.hold(0, "a");
        b.hold(0, "b");
        b.hold(0, "c");
        assert_eq!(b.len(), 3);
        assert_eq!(b.push(4, "d"), Err("d"));
        assert_eq!(b.take(0), vec!["a", "b", "c"]);
        assert!(b.push(4, "d").is_ok());
    }
}
