//! Bounded per-connection buffers for streams and datagrams that arrive for a session not yet
//! known (they beat their CONNECT request, or its response).

use std::collections::VecDeque;

/// Items keyed by session ID, at most `max` in total across sessions.
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
}
