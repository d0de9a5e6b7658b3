//! The receiving halves of a session, read by the session task itself.
//!
//! Each reader has a waker of its own that queues the reader's ID and wakes the session task,
//! so a poll touches only the readers that have something to say. Unlike a
//! `FuturesUnordered`, a poll that finds the woken readers all waiting does not wake the
//! session task again just in case: with one stream per session that would send the task
//! through the scheduler once more for every chunk it reads.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::stream::Stream;
use futures_util::task::AtomicWaker;
use rustc_hash::FxHashMap;
use wt_core::StreamId;

/// A stream of items from one receiving half.
pub(crate) type Reader<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// Readers polled at most per call of [`Reads::poll_next`] before it yields the thread (a
/// reader that wakes itself while polled could otherwise keep the call going).
const POLLS_PER_CALL: usize = 64;

/// The readers of a session, keyed by stream.
pub(crate) struct Reads<T> {
    readers: FxHashMap<StreamId, Slot<T>>,
    ready: Arc<Ready>,
}

struct Slot<T> {
    reader: Reader<T>,
    wake: Arc<ReaderWake>,
    waker: Waker,
}

/// Readers to poll, in the order they were woken.
#[derive(Default)]
struct Ready {
    queue: Mutex<VecDeque<StreamId>>,
    session: AtomicWaker,
}

impl Ready {
    fn queue(&self) -> MutexGuard<'_, VecDeque<StreamId>> {
        // The queue holds plain IDs: a panic elsewhere cannot leave it inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One reader's waker.
struct ReaderWake {
    id: StreamId,
    /// In the ready queue already (so a burst of wake-ups queues it once).
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl ReaderWake {
    /// Queues the reader once; `true` if this call did.
    fn enqueue(&self) -> bool {
        let first = !self.queued.swap(true, Ordering::AcqRel);
        if first {
            self.ready.queue().push_back(self.id);
        }
        first
    }
}

impl Wake for ReaderWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.enqueue() {
            self.ready.session.wake();
        }
    }
}

impl<T> Default for Reads<T> {
    fn default() -> Self {
        Reads {
            readers: FxHashMap::default(),
            ready: Arc::default(),
        }
    }
}

impl<T> Reads<T> {
    /// Adds the reader of stream `id`, polled at the next [`poll_next`](Self::poll_next),
    /// which the caller (the session task) makes before it waits again: nothing is woken.
    pub(crate) fn push(&mut self, id: StreamId, reader: Reader<T>) {
        let wake = Arc::new(ReaderWake {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        let waker = Waker::from(wake.clone());
        wake.enqueue();
        self.readers.insert(
            id,
            Slot {
                reader,
                wake,
                waker,
            },
        );
    }

    /// How many readers have not ended.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.readers.len()
    }

    /// The next item of any reader; readers that end are dropped. `Pending` (with the task's
    /// waker registered) while no reader has an item, including when there are none.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        self.ready.session.register(cx.waker());
        for _ in 0..POLLS_PER_CALL {
            let Some(id) = self.ready.queue().pop_front() else {
                return Poll::Pending;
            };
            let Some(slot) = self.readers.get_mut(&id) else {
                // Woken after it ended.
                continue;
            };
            // Cleared before the poll, so a wake-up during or after it queues it again.
            slot.wake.queued.store(false, Ordering::Release);
            match slot
                .reader
                .as_mut()
                .poll_next(&mut Context::from_waker(&slot.waker))
            {
                Poll::Ready(Some(item)) => {
                    // Its next item may be ready already: look again after the others, at
                    // the caller's next call (it makes one after each item, so its task
                    // need not be woken for it).
                    slot.wake.enqueue();
                    return Poll::Ready(item);
                }
                Poll::Ready(None) => {
                    self.readers.remove(&id);
                }
                Poll::Pending => {}
            }
        }
        // Readers are left in the queue: come back after the runtime's other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use tokio::sync::mpsc;

    fn poll<T>(reads: &mut Reads<T>) -> Poll<T> {
        reads.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    fn channel_reader(rx: mpsc::UnboundedReceiver<u32>) -> Reader<u32> {
        Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|v| (v, rx))
        }))
    }

    #[test]
    fn readers_take_turns_and_are_dropped_when_they_end() {
        let mut reads = Reads::default();
        assert!(poll(&mut reads).is_pending(), "no readers");
        reads.push(StreamId(0), Box::pin(stream::iter([1, 2, 3])));
        reads.push(StreamId(4), Box::pin(stream::iter([10, 20])));
        let mut got = Vec::new();
        while let Poll::Ready(v) = poll(&mut reads) {
            got.push(v);
        }
        assert_eq!(got, [1, 10, 2, 20, 3]);
        assert_eq!(reads.len(), 0);
    }

    #[test]
    fn a_waiting_reader_is_polled_again_only_when_woken() {
        let mut reads = Reads::default();
        let (tx, rx) = mpsc::unbounded_channel();
        reads.push(StreamId(8), channel_reader(rx));
        assert!(poll(&mut reads).is_pending());
        assert!(
            reads.ready.queue().is_empty(),
            "nothing queued while it waits"
        );
        tx.send(5).unwrap();
        tx.send(6).unwrap();
        assert_eq!(reads.ready.queue().len(), 1, "two wake-ups queue it once");
        assert_eq!(poll(&mut reads), Poll::Ready(5));
        assert_eq!(poll(&mut reads), Poll::Ready(6));
        assert!(poll(&mut reads).is_pending());
        drop(tx);
        assert!(poll(&mut reads).is_pending());
        assert_eq!(reads.len(), 0, "ended with its channel");
    }

    /// The session task's waker is woken by a reader's wake-up, and, when a call stops
    /// with readers still queued, by the call itself.
    #[test]
    fn the_session_is_woken() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut reads = Reads::default();
        let (tx, rx) = mpsc::unbounded_channel();
        reads.push(StreamId(12), channel_reader(rx));
        assert!(reads.poll_next(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        tx.send(1).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);

        // More readers with items than one call polls: the call wakes the task itself.
        for i in 0..POLLS_PER_CALL as u64 + 1 {
            reads.push(StreamId(16 + 4 * i), Box::pin(stream::pending::<u32>()));
        }
        assert_eq!(reads.poll_next(&mut cx), Poll::Ready(1), "queued first");
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "an item wakes nothing");
        assert!(reads.poll_next(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }
}
