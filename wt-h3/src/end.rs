//! The end of a session as something to test and to wait on.
//!
//! Every blocked read and write of every stream also waits for its session to end, so this is
//! on the per-stream path. A `CancellationToken` would do, but it takes its node's mutex on
//! every poll and is watched from the first poll on. [`EndSignal`] is a flag plus a `Notify`:
//! testing it is one atomic load, and [`EndSignal::or_end`] only starts watching once the
//! operation it guards has had to wait, so an operation that completes at once never touches
//! the `Notify`.
//!
//! Waiters register from whichever runtime thread polls them, so the `Notify` (its lock and
//! waiter list) is split like the session's counters (see [`crate::stats`]): one per thread
//! cell, each on a block of its own, and setting the signal notifies them all.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::stats::{thread_shard, SHARDS};

/// A one-way flag that wakes every waiter when set.
#[derive(Debug, Default)]
pub(crate) struct EndSignal {
    set: AtomicBool,
    notify: [Waiters; SHARDS],
}

/// One thread cell's waiters, alone on a 128-byte block.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Waiters(Notify);

impl EndSignal {
    /// Whether the signal is set (one atomic load).
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// The waiters of this thread's cell (any cell would do: `set` notifies all).
    fn waiters(&self) -> &Notify {
        &self.notify[thread_shard()].0
    }

    /// Sets the signal and wakes every waiter.
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        for w in &self.notify {
            w.0.notify_waiters();
        }
    }

    /// Resolves once the signal is set.
    pub(crate) async fn wait(&self) {
        // A `Notified` sees every `notify_waiters` from its creation on, so setting the flag
        // between this line and the check below still wakes it.
        let notified = self.waiters().notified();
        if self.is_set() {
            return;
        }
        notified.await;
    }

    /// Runs `op` to its end, unless the signal is set first: then `None`, and `op` is dropped.
    /// `op` is polled first on every turn, so an `op` that is ready wins over a signal set at
    /// the same time. The signal is only watched from the first turn on which `op` was not
    /// ready.
    pub(crate) fn or_end<F: Future>(&self, op: F) -> OrEnd<'_, F> {
        OrEnd {
            op,
            watch: None,
            end: self,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`EndSignal::or_end`]: a plain struct (an `async fn` would hold `op`
    /// twice), since it sits inside every stream read and write future.
    pub(crate) struct OrEnd<'a, F> {
        #[pin]
        op: F,
        #[pin]
        watch: Option<Notified<'a>>,
        end: &'a EndSignal,
    }
}

impl<F: Future> Future for OrEnd<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.op.poll(cx) {
            return Poll::Ready(Some(v));
        }
        if this.watch.is_none() {
            this.watch.set(Some(this.end.waiters().notified()));
        }
        if this.end.is_set() {
            return Poll::Ready(None);
        }
        match this.watch.as_pin_mut().map(|w| w.poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            // Only `set` notifies this `Notify`.
            _ => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::Arc;

    /// Polls once: `Some(output)` if ready.
    fn now<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        f.now_or_never()
    }

    #[tokio::test]
    async fn wait_resolves_when_set_and_after() {
        let end = Arc::new(EndSignal::default());
        let mut waiting = Box::pin({
            let end = end.clone();
            async move { end.wait().await }
        });
        assert!(now(&mut waiting).is_none());
        assert!(!end.is_set());
        end.set();
        assert!(end.is_set());
        assert!(now(&mut waiting).is_some());
        // Set before the wait begins.
        assert!(now(&mut Box::pin(end.wait())).is_some());
    }

    #[tokio::test]
    async fn or_end_prefers_a_ready_op_and_ends_a_waiting_one() {
        let end = EndSignal::default();
        assert_eq!(end.or_end(async { 7 }).await, Some(7));
        // Ready op wins even when the signal is already set.
        end.set();
        assert_eq!(end.or_end(async { 8 }).await, Some(8));
        assert_eq!(end.or_end(std::future::pending::<u8>()).await, None);
    }

    /// Waiters on other threads sit in other cells: setting wakes them all.
    #[test]
    fn set_wakes_waiters_of_every_thread() {
        let end = Arc::new(EndSignal::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for _ in 0..SHARDS + 1 {
            let (end, ready_tx, done_tx) = (end.clone(), ready_tx.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut guarded = Box::pin(end.or_end(std::future::pending::<()>()));
                    let mut waiting = Box::pin(end.wait());
                    // First polls register both in this thread's cell.
                    assert!(now(&mut guarded).is_none());
                    assert!(now(&mut waiting).is_none());
                    ready_tx.send(()).unwrap();
                    assert_eq!(guarded.await, None);
                    waiting.await;
                });
                done_tx.send(()).unwrap();
            });
        }
        for _ in 0..SHARDS + 1 {
            ready_rx.recv().unwrap();
        }
        end.set();
        for _ in 0..SHARDS + 1 {
            // A bound on a failure (a waiter never woken), not a wait for a race.
            done_rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("a waiter was not woken");
        }
    }

    #[tokio::test]
    async fn or_end_wakes_an_op_already_waiting() {
        let end = Arc::new(EndSignal::default());
        let mut guarded = Box::pin({
            let end = end.clone();
            async move { end.or_end(std::future::pending::<()>()).await }
        });
        assert!(now(&mut guarded).is_none());
        assert!(now(&mut guarded).is_none());
        end.set();
        assert_eq!(now(&mut guarded), Some(None));
    }
}
