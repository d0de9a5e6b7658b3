//! A session's bounded queue of peer-opened streams waiting for `accept_bi` / `accept_uni`.
//!
//! The driver pushes, any number of application tasks pop. One `std` mutex guards the items
//! (a `VecDeque`, which allocates nothing until the first stream arrives, so an idle session
//! costs no queue memory) together with the tasks waiting on either side, so a push that
//! finds a waiting consumer hands the item over with one lock: it queues the item and takes
//! the consumer's waker in the same critical section, and wakes it after the lock is released.
//! (A `Notify` per side, as before, took a lock of its own to register and to unregister a
//! waiter on top of the queue's, and kept a permit from every push nobody waited for, which
//! the next wait then used up in an extra round of locking.)
//!
//! Each push or pop wakes at most one waiter of the other side. A waiter that was woken but
//! whose future is dropped before it takes its turn passes the wake on, so an item (or room)
//! never waits while a task sleeps. Closing the queue hands back what is queued, wakes every
//! waiter and refuses later pushes, so nothing is stranded when a session ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// The tasks waiting on one side of the queue, oldest first. Each future that waits keeps
/// the id of its entry, to refresh its waker or withdraw. Bounded by the number of waiting
/// futures: an entry leaves when its future is woken, completes or is dropped.
#[derive(Default)]
struct Waiters {
    list: VecDeque<(u64, Waker)>,
    next_id: u64,
}

impl Waiters {
    /// Makes `id`'s entry wait with `waker`: refreshes it when it is still queued, else
    /// (new, or woken and back for more) queues it last.
    fn register(&mut self, id: &mut Option<u64>, waker: &Waker) {
        if let Some(i) = *id {
            if let Some((_, w)) = self.list.iter_mut().find(|(j, _)| *j == i) {
                w.clone_from(waker);
                return;
            }
        }
        let i = *id.get_or_insert_with(|| {
            self.next_id += 1;
            self.next_id
        });
        self.list.push_back((i, waker.clone()));
    }

    /// Withdraws entry `id`; `false` when it was not queued (it has been woken).
    fn remove(&mut self, id: u64) -> bool {
        match self.list.iter().position(|(j, _)| *j == id) {
            Some(p) => {
                self.list.remove(p);
                true
            }
            None => false,
        }
    }

    /// The oldest waiter's waker, taken out of the list: the caller wakes it once the lock
    /// is released.
    fn pop(&mut self) -> Option<Waker> {
        self.list.pop_front().map(|(_, w)| w)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.list.len()
    }
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Consumers waiting for an item.
    takers: Waiters,
    /// Producers waiting for room.
    givers: Waiters,
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
}

/// Wakes `w`, if any (called with the queue's lock released).
fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl<T> AcceptQueue<T> {
    /// An empty queue holding at most `cap` items (no allocation until the first push).
    pub(crate) fn new(cap: usize) -> Self {
        AcceptQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                takers: Waiters::default(),
                givers: Waiters::default(),
            }),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        crate::session::lock(&self.state)
    }

    /// Queues `item` if there is room, waking the oldest waiting consumer.
    pub(crate) fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        let taker = {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed(item));
            }
            if st.items.len() >= self.cap {
                return Err(PushError::Full(item));
            }
            st.items.push_back(item);
            st.takers.pop()
        };
        wake(taker);
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
    pub(crate) fn push(&self, item: T) -> Push<'_, T> {
        Push {
            queue: self,
            item: Some(item),
            id: None,
        }
    }

    /// Waits for the oldest item; `None` once the queue is closed and empty (the session
    /// closes it when it ends). Cancel safe: an item is only taken when the future resolves
    /// with it.
    pub(crate) fn pop(&self) -> Pop<'_, T> {
        Pop {
            queue: self,
            id: None,
        }
    }

    /// Closes the queue: later pushes fail, waiting consumers and producers wake; returns
    /// what was queued.
    pub(crate) fn close(&self) -> VecDeque<T> {
        let (items, takers, givers) = {
            let mut st = self.lock();
            st.closed = true;
            (
                std::mem::take(&mut st.items),
                std::mem::take(&mut st.takers.list),
                std::mem::take(&mut st.givers.list),
            )
        };
        for (_, w) in takers.into_iter().chain(givers) {
            w.wake();
        }
        items
    }

    /// Withdraws a waiter whose future is dropped. One that had been woken and not taken its
    /// turn passes the wake on to the next waiter of its side, if its turn is still there
    /// (an item for a consumer, room for a producer).
    fn withdraw(
        &self,
        id: u64,
        side: fn(&mut State<T>) -> &mut Waiters,
        turn: fn(&State<T>, usize) -> bool,
    ) {
        let next = {
            let mut st = self.lock();
            if side(&mut st).remove(id) || !turn(&st, self.cap) {
                None
            } else {
                side(&mut st).pop()
            }
        };
        wake(next);
    }
}

/// The future of [`AcceptQueue::pop`].
pub(crate) struct Pop<'a, T> {
    queue: &'a AcceptQueue<T>,
    /// Its entry among the consumers, once it has waited.
    id: Option<u64>,
}

impl<T> Future for Pop<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let q = this.queue;
        let mut st = q.lock();
        if let Some(item) = st.items.pop_front() {
            if let Some(id) = this.id.take() {
                st.takers.remove(id);
            }
            let giver = st.givers.pop();
            drop(st);
            wake(giver);
            return Poll::Ready(Some(item));
        }
        if st.closed {
            if let Some(id) = this.id.take() {
                st.takers.remove(id);
            }
            return Poll::Ready(None);
        }
        st.takers.register(&mut this.id, cx.waker());
        Poll::Pending
    }
}

impl<T> Pop<'_, T> {
    /// Takes this future out of the waiting consumers, without passing a wake-up on: for a
    /// consumer about to poll again in the same turn, which then finds whatever was pushed
    /// meanwhile (and waits again if nothing was), so that its own pushes in between do not
    /// wake its task for nothing.
    pub(crate) fn withdraw_quietly(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue.lock().takers.remove(id);
        }
    }
}

impl<T> Drop for Pop<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue
                .withdraw(id, |st| &mut st.takers, |st, _| !st.items.is_empty());
        }
    }
}

/// The future of [`AcceptQueue::push`].
pub(crate) struct Push<'a, T> {
    queue: &'a AcceptQueue<T>,
    /// The item, until it is queued or handed back.
    item: Option<T>,
    /// Its entry among the producers, once it has waited.
    id: Option<u64>,
}

// The item is only ever moved, never pinned.
impl<T> Unpin for Push<'_, T> {}

impl<T> Future for Push<'_, T> {
    type Output = Result<(), T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T>> {
        let this = self.get_mut();
        let q = this.queue;
        let mut st = q.lock();
        if st.closed || st.items.len() < q.cap {
            if let Some(id) = this.id.take() {
                st.givers.remove(id);
            }
            let Some(item) = this.item.take() else {
                // Polled after it completed: a caller's bug, not a reason to panic.
                return Poll::Pending;
            };
            if st.closed {
                return Poll::Ready(Err(item));
            }
            st.items.push_back(item);
            let taker = st.takers.pop();
            drop(st);
            wake(taker);
            return Poll::Ready(Ok(()));
        }
        st.givers.register(&mut this.id, cx.waker());
        Poll::Pending
    }
}

impl<T> Drop for Push<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue
                .withdraw(id, |st| &mut st.givers, |st, cap| st.items.len() < cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use wt_core::testsuite::WakeCount;

    /// Polls `f` once with a waker counting into `c`.
    fn poll_with<F: Future + Unpin>(f: &mut F, c: &Arc<WakeCount>) -> Poll<F::Output> {
        let waker = Waker::from(c.clone());
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    /// `N` wake-up counters, each to poll one waiter with.
    fn counters<const N: usize>() -> [Arc<WakeCount>; N] {
        std::array::from_fn(|_| Arc::new(WakeCount::default()))
    }

    fn takers<T>(q: &AcceptQueue<T>) -> usize {
        q.lock().takers.len()
    }

    fn givers<T>(q: &AcceptQueue<T>) -> usize {
        q.lock().givers.len()
    }

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
        assert_eq!(q.push(5).await, Err(5));
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

    #[test]
    fn a_push_wakes_one_waiting_consumer_oldest_first() {
        let q = AcceptQueue::new(4);
        let [a, b] = counters();
        let (mut pa, mut pb) = (q.pop(), q.pop());
        assert!(poll_with(&mut pa, &a).is_pending());
        assert!(poll_with(&mut pb, &b).is_pending());
        // Polling again refreshes the entry rather than adding one.
        assert!(poll_with(&mut pa, &a).is_pending());
        assert_eq!(takers(&q), 2);
        assert!(q.try_push(1).is_ok());
        assert_eq!((a.get(), b.get()), (1, 0));
        assert_eq!(poll_with(&mut pa, &a), Poll::Ready(Some(1)));
        assert!(q.try_push(2).is_ok());
        assert_eq!((a.get(), b.get()), (1, 1));
        assert_eq!(poll_with(&mut pb, &b), Poll::Ready(Some(2)));
        assert_eq!(takers(&q), 0);
    }

    #[test]
    fn a_push_with_nobody_waiting_leaves_nothing_behind() {
        // (A `Notify` kept a permit here, which made the next wait take an extra round.)
        let q = AcceptQueue::new(4);
        assert!(q.try_push(1).is_ok());
        assert_eq!(q.pop().now_or_never(), Some(Some(1)));
        let a = Arc::new(WakeCount::default());
        let mut p = q.pop();
        assert!(poll_with(&mut p, &a).is_pending());
        assert_eq!(a.get(), 0);
    }

    #[test]
    fn a_dropped_consumer_leaves_the_list() {
        let q = AcceptQueue::<u32>::new(4);
        for _ in 0..100 {
            let mut p = q.pop();
            assert!(poll_with(&mut p, &Arc::new(WakeCount::default())).is_pending());
        }
        assert_eq!(takers(&q), 0);
    }

    #[test]
    fn a_woken_consumer_dropped_before_its_turn_passes_the_wake_on() {
        let q = AcceptQueue::new(4);
        let [a, b] = counters();
        let (mut pa, mut pb) = (q.pop(), q.pop());
        assert!(poll_with(&mut pa, &a).is_pending());
        assert!(poll_with(&mut pb, &b).is_pending());
        assert!(q.try_push(7).is_ok());
        assert_eq!((a.get(), b.get()), (1, 0));
        drop(pa);
        assert_eq!(b.get(), 1, "the item would wait while b sleeps");
        assert_eq!(poll_with(&mut pb, &b), Poll::Ready(Some(7)));
    }

    #[test]
    fn a_woken_consumer_that_lost_the_item_waits_again() {
        let q = AcceptQueue::new(4);
        let a = Arc::new(WakeCount::default());
        let mut pa = q.pop();
        assert!(poll_with(&mut pa, &a).is_pending());
        assert!(q.try_push(1).is_ok());
        // Someone else takes it first.
        assert_eq!(q.pop().now_or_never(), Some(Some(1)));
        assert!(poll_with(&mut pa, &a).is_pending());
        assert_eq!(takers(&q), 1);
        assert!(q.try_push(2).is_ok());
        assert_eq!(a.get(), 2);
        assert_eq!(poll_with(&mut pa, &a), Poll::Ready(Some(2)));
    }

    #[test]
    fn room_wakes_one_waiting_producer_and_a_dropped_one_passes_it_on() {
        let q = AcceptQueue::new(1);
        assert!(q.try_push(0).is_ok());
        let [a, b] = counters();
        let (mut wa, mut wb) = (q.push(1), q.push(2));
        assert!(poll_with(&mut wa, &a).is_pending());
        assert!(poll_with(&mut wb, &b).is_pending());
        assert_eq!(givers(&q), 2);
        assert_eq!(q.pop().now_or_never(), Some(Some(0)));
        assert_eq!((a.get(), b.get()), (1, 0));
        drop(wa);
        assert_eq!(b.get(), 1);
        assert_eq!(poll_with(&mut wb, &b), Poll::Ready(Ok(())));
        assert_eq!(givers(&q), 0);
        assert_eq!(q.pop().now_or_never(), Some(Some(2)));
    }

    #[test]
    fn a_quietly_withdrawn_consumer_is_not_woken_and_finds_the_item() {
        let q = AcceptQueue::new(4);
        let [a, b] = counters();
        let mut pa = q.pop();
        let mut pb = q.pop();
        assert!(poll_with(&mut pa, &a).is_pending());
        assert!(poll_with(&mut pb, &b).is_pending());
        pa.withdraw_quietly();
        // The push wakes the consumer still waiting, not the withdrawn one.
        assert!(q.try_push(7).is_ok());
        assert_eq!((a.get(), b.get()), (0, 1));
        assert_eq!(poll_with(&mut pa, &a), Poll::Ready(Some(7)));
        // Withdrawn and back: it waits again like any consumer.
        pb.withdraw_quietly();
        assert!(poll_with(&mut pb, &b).is_pending());
        assert!(q.try_push(8).is_ok());
        assert_eq!(b.get(), 2);
        assert_eq!(poll_with(&mut pb, &b), Poll::Ready(Some(8)));
    }

    #[test]
    fn close_wakes_every_waiter() {
        let q = AcceptQueue::new(1);
        let [a, b] = counters();
        let mut pa = q.pop();
        assert!(poll_with(&mut pa, &a).is_pending());
        assert!(q.try_push(0).is_ok());
        assert_eq!(poll_with(&mut pa, &a), Poll::Ready(Some(0)));
        assert!(q.try_push(1).is_ok());
        let mut wb = q.push(2);
        assert!(poll_with(&mut wb, &b).is_pending());
        let mut pc = q.pop();
        // Not waiting: an item is there.
        assert_eq!(poll_with(&mut pc, &a), Poll::Ready(Some(1)));
        assert_eq!(b.get(), 1);
        let mut pd = q.pop();
        assert_eq!(poll_with(&mut wb, &b), Poll::Ready(Ok(())));
        assert_eq!(poll_with(&mut pd, &a), Poll::Ready(Some(2)));
        let mut pe = q.pop();
        assert!(poll_with(&mut pe, &a).is_pending());
        let wakes = a.get();
        assert!(q.close().is_empty());
        assert_eq!(a.get(), wakes + 1);
        assert_eq!(poll_with(&mut pe, &a), Poll::Ready(None));
    }

    /// Producers and consumers on several threads: every item arrives exactly once, and
    /// every one is taken while the queue is open (so no item waits while its consumers
    /// sleep: the run would time out). Consumers also give up a third of their waits half-way
    /// (a dropped `pop`). The deterministic tests above cover the hand-on of a dropped
    /// waiter's wake; this one covers the interleavings.
    #[test]
    fn threads_hand_every_item_over_once() {
        const ITEMS: u64 = 20_000;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        // The timeout bounds a failure (a task asleep with an item waiting), it does not
        // wait for anything.
        let run = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let q = Arc::new(AcceptQueue::new(8));
                let taken = Arc::new(AtomicU64::new(0));
                let all_taken = Arc::new(tokio::sync::Notify::new());
                let mut producers = Vec::new();
                for p in 0..2u64 {
                    let q = q.clone();
                    producers.push(tokio::spawn(async move {
                        for i in 0..ITEMS / 2 {
                            assert!(q.push(p * ITEMS + i).await.is_ok());
                        }
                    }));
                }
                let mut consumers = Vec::new();
                for _ in 0..3 {
                    let (q, taken, all_taken) = (q.clone(), taken.clone(), all_taken.clone());
                    consumers.push(tokio::spawn(async move {
                        let (mut got, mut sum) = (0u64, 0u64);
                        let count = || {
                            if taken.fetch_add(1, Ordering::SeqCst) + 1 == ITEMS {
                                all_taken.notify_one();
                            }
                        };
                        loop {
                            // Every third wait is abandoned after one yield.
                            if got % 3 == 0 {
                                tokio::select! {
                                    biased;
                                    r = q.pop() => match r {
                                        Some(v) => { (got, sum) = (got + 1, sum + v); count(); continue; }
                                        None => break,
                                    },
                                    _ = tokio::task::yield_now() => {}
                                }
                            }
                            match q.pop().await {
                                Some(v) => {
                                    (got, sum) = (got + 1, sum + v);
                                    count();
                                }
                                None => break,
                            }
                        }
                        (got, sum)
                    }));
                }
                for p in producers {
                    p.await.unwrap();
                }
                all_taken.notified().await;
                assert!(q.close().is_empty());
                let (mut got, mut sum) = (0, 0);
                for c in consumers {
                    let (g, s) = c.await.unwrap();
                    got += g;
                    sum += s;
                }
                let want: u64 = (0..ITEMS / 2).map(|i| i + (ITEMS + i)).sum();
                assert_eq!((got, sum), (ITEMS, want));
                assert_eq!((takers(&q), givers(&q)), (0, 0));
            })
            .await
        });
        run.expect("a waiter slept through its turn");
    }
}
