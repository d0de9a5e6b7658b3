//! Waiting without blocking: a [`Signal`] that wakes handlers which asked for it with
//! [`Action::WakeOn`](crate::Action::WakeOn).
//!
//! Handler callbacks are synchronous and must not block, so a handler that has to wait for
//! something outside its session (another session's state, a shared table) takes a
//! [`Wakeup`] from the [`Signal`] that guards that state, checks the state, and if it is not
//! ready yet returns [`Action::WakeOn`](crate::Action::WakeOn). The runner then calls
//! [`Handler::handle_wake`](crate::Handler::handle_wake) once: at the first
//! [`Signal::notify`] after the wakeup was taken, or at the deadline. Taking the wakeup
//! *before* checking the state means no notification can be missed in between.

use std::sync::Arc;

use tokio::sync::watch;

/// A cheap, cloneable notifier: every [`notify`](Signal::notify) fires the [`Wakeup`]s taken
/// from it before that call. Clones notify the same wakeups.
#[derive(Clone, Debug)]
pub struct Signal {
    tx: Arc<watch::Sender<()>>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal::new()
    }
}

impl Signal {
    /// A new signal with no wakeups.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(());
        Signal { tx: Arc::new(tx) }
    }

    /// Fires every wakeup taken so far (a wakeup fires at most once).
    pub fn notify(&self) {
        self.tx.send_replace(());
    }

    /// A wakeup that fires at the next [`notify`](Signal::notify) after this call.
    pub fn wakeup(&self) -> Wakeup {
        Wakeup {
            rx: self.tx.subscribe(),
        }
    }
}

/// One subscription to a [`Signal`], taken at one moment; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Wakeup {
    rx: watch::Receiver<()>,
}

impl PartialEq for Wakeup {
    /// Wakeups are equal when they come from the same signal.
    fn eq(&self, other: &Self) -> bool {
        self.rx.same_channel(&other.rx)
    }
}

impl Eq for Wakeup {}

impl Wakeup {
    /// Resolves when the signal is notified after the wakeup was taken: `true`; or, if every
    /// clone of the signal is dropped first, `false` (it will never fire).
    pub async fn fired(mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

/// Why [`Handler::handle_wake`](crate::Handler::handle_wake) was called.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The signal was notified.
    Signalled,
    /// The deadline passed first (or the signal can no longer fire).
    DeadlineReached,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakeup_fires_only_for_later_notifications() {
        let signal = Signal::new();
        signal.notify();
        let w = signal.wakeup();
        let pending = tokio::time::timeout(std::time::Duration::ZERO, w.clone().fired()).await;
        assert!(
            pending.is_err(),
            "an earlier notify does not fire a later wakeup"
        );
        signal.clone().notify();
        assert!(w.fired().await);
        let w = signal.wakeup();
        assert_eq!(w, signal.wakeup());
        assert_ne!(w, Signal::new().wakeup());
        drop(signal);
        assert!(!w.fired().await, "a dropped signal never fires");
    }
}
