//! A session's bounded queue of peer-opened streams waiting for `accept_bi` / `accept_uni`.
//!
//! The driver pushes, any number of application tasks pop. A plain `std` mutex around a
//! `VecDeque` (which allocates nothing until the first stream arrives, so an idle session
//! costs no queue memory) plus two [`Notify`]s: one for consumers (an item arrived) and one
//! for producers (room was made). Closing the queue hands back what is queued and refuses
//! later pushes, so nothing is stranded when a session ends.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// Why a push failed.
pub(crate) enum PushError<T> {
    /// At capacity: try again once there is room.
    Full(T),
    /// Closed: the item is handed back to be refused.
    Closed(T),
}

/// A bounded multi-consumer queue (see the module docs).
pub(crate) struct AcceptQueue<T> {
    state: Mutex<State<T>>,
    cap: usize,
    /// Consumers: an item was queued (or the queue closed).
    readable: Notify,
    /// Producers: an item was taken (or the queue closed).
    writable: Notify,
}

impl<T> AcceptQueue<T> {
    /// An empty queue holding at most `cap` items (no allocation until the first push).
    pub(crate) fn new(cap: usize) -> Self {
        AcceptQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            cap: cap.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        crate::session::lock(&self.state)
    }

    /// Queues `item` if there is room.
    pub(crate) fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed(item));
            }
            if st.items.len() >= self.cap {
                return Err(PushError::Full(item));
            }
            st.items.push_back(item);
        }
        self.readable.notify_one();
        Ok(())
    }

    /// Whether a push would find room now (it may not by the time it is made, if another
    /// producer pushes first).
    pub(crate) fn has_room(&self) -> bool {
        self.lock().items.len() < self.cap
    }

    /// Queues `item`, waiting for room (backpressure); `Err` hands the item back once the
    /// queue is closed, to be refused. The session closes its queues when it ends, so the end
    /// needs no watch of its own here. Cancel safe in the sense that a dropped future drops
    /// its item.
    pub(crate) async fn push(&self, item: T) -> Result<(), T> {
        let mut item = match self.try_push(item) {
            Ok(()) => return Ok(()),
            Err(PushError::Closed(item)) => return Err(item),
            Err(PushError::Full(item)) => item,
        };
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            item = match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(item)) => return Err(item),
                Err(PushError::Full(item)) => item,
            };
            notified.await;
        }
    }

    /// Takes the oldest item; `Err(())` when the queue is closed and empty.
    pub(crate) fn try_pop(&self) -> Result<Option<T>, ()> {
        let item = {
            let mut st = self.lock();
            match st.items.pop_front() {
                Some(item) => item,
                None if st.closed => return Err(()),
                None => return Ok(None),
            }
        };
        self.writable.notify_one();
        Ok(Some(item))
    }

    /// Waits for the oldest item; `None` once the queue is closed and empty (the session
    /// closes it when it ends). Cancel safe: an item is only taken when the future resolves
    /// with it.
    pub(crate) async fn pop(&self) -> Option<T> {
        loop {
            match self.try_pop() {
                Ok(Some(item)) => return Some(item),
                Err(()) => return None,
                Ok(None) => {}
            }
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_pop() {
                Ok(Some(item)) => return Some(item),
                Err(()) => return None,
                Ok(None) => {}
            }
            notified.await;
        }
    }

    /// Closes the queue: later pushes fail, waiting consumers and producers wake; returns
    /// what was queued.
    pub(crate) fn close(&self) -> VecDeque<T> {
        let items = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.items)
        };
        self.readable.notify_waiters();
        self.writable.notify_waiters();
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_fifo_that_closes() {
        let q = AcceptQueue::new(2);
        assert!(q.has_room());
        assert!(q.try_push(1).is_ok());
        assert!(q.try_push(2).is_ok());
        assert!(!q.has_room());
        assert!(matches!(q.try_push(3), Err(PushError::Full(3))));
        assert_eq!(q.pop().await, Some(1));
        assert!(q.push(3).await.is_ok());
        let rest: Vec<_> = q.close().into_iter().collect();
        assert_eq!(rest, vec![2, 3]);
        assert!(matches!(q.try_push(4), Err(PushError::Closed(4))));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_room_or_the_close() {
        let q = Arc::new(AcceptQueue::new(1));
        assert!(q.try_push(1).is_ok());
        let q2 = q.clone();
        let producer = tokio::spawn(async move { q2.push(2).await });
        tokio::task::yield_now().await;
        assert!(!producer.is_finished());
        assert_eq!(q.pop().await, Some(1));
        assert!(producer.await.unwrap().is_ok());
        assert_eq!(q.pop().await, Some(2));

        assert!(q.try_push(3).is_ok());
        let q2 = q.clone();
        let producer = tokio::spawn(async move { q2.push(4).await });
        tokio::task::yield_now().await;
        assert_eq!(q.close().into_iter().collect::<Vec<_>>(), vec![3]);
        assert_eq!(producer.await.unwrap(), Err(4));
    }

    #[tokio::test]
    async fn a_waiting_pop_ends_at_the_close() {
        let q = Arc::new(AcceptQueue::<u32>::new(1));
        let q2 = q.clone();
        let consumer = tokio::spawn(async move { q2.pop().await });
        tokio::task::yield_now().await;
        assert!(!consumer.is_finished());
        assert!(q.close().is_empty());
        assert_eq!(consumer.await.unwrap(), None);
    }
}
