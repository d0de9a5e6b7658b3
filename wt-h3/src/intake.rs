//! The intake of a connection's new bidirectional streams: quinn's accept, and the preamble
//! reads of streams whose header has not arrived yet. Whoever runs it routes what it finds to
//! the sessions' accept queues.
//!
//! The connection's driver task runs it, except while an application task waits in
//! `accept_bi` (on a connection that carries one session at a time). quinn's wake-up for a
//! new stream then goes straight to that task (see [`Relay`]), which runs the intake itself
//! and takes its stream from its session's queue in the same turn. Without that, every new
//! stream costs two task wake-ups, the driver's and then the accepting task's, where a raw
//! quinn application pays one. (On the bench's stream churn the gain is about 1 %, inside
//! the spread: see the README.)
//!
//! Everything the intake polls (quinn's accept, the preamble reads) is polled with the
//! relay's waker, whichever task runs it, so its wake-ups always find the task that should
//! run it next: the waiting accept if there is one, else the driver. One mutex keeps two
//! tasks from running it at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use futures_util::task::AtomicWaker;

use crate::driver::Conn;
use crate::session::lock;

/// quinn's accept of bidirectional streams as an owned stream of streams.
type Accepts = Pin<
    Box<
        dyn Stream<Item = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>>
            + Send,
    >,
>;

/// A new stream's preamble read and routing, once it could not be done at once.
pub(crate) type PreambleRead = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the intake's wake-ups go: to the accept that waits in an application task, if one
/// has [registered](Intake::wait), else to the driver task.
#[derive(Default)]
struct Relay {
    /// The waiting accept (its id, to withdraw it) and its task's waker. A wake-up takes it:
    /// one wake-up, one task.
    taker: Mutex<Option<(u64, Waker)>>,
    next_id: AtomicU64,
    driver: AtomicWaker,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taker = lock(&self.taker).take();
        match taker {
            Some((_, w)) => w.wake(),
            None => self.driver.wake(),
        }
    }
}

/// What the intake holds while it runs (`None` once the driver has ended).
struct State {
    accepts: Accepts,
    /// quinn still accepts (false once the connection is gone).
    open: bool,
    /// Streams waiting for their preamble (or for room in a full accept queue).
    reads: FuturesUnordered<PreambleRead>,
}

/// The intake of one connection (see the module docs).
pub(crate) struct Intake {
    relay: Arc<Relay>,
    /// The relay as a waker, made once.
    waker: Waker,
    state: Mutex<Option<State>>,
    /// quinn's accept has ended and no preamble read is left.
    done: AtomicBool,
}

impl Intake {
    /// The intake of `quic`'s bidirectional streams.
    pub(crate) fn new(quic: quinn::Connection) -> Self {
        let accepts: Accepts = Box::pin(futures_util::stream::unfold(quic, |q| async move {
            let r = q.accept_bi().await;
            Some((r, q))
        }));
        let relay = Arc::new(Relay::default());
        Intake {
            waker: Waker::from(relay.clone()),
            relay,
            state: Mutex::new(Some(State {
                accepts,
                open: true,
                reads: FuturesUnordered::new(),
            })),
            done: AtomicBool::new(false),
        }
    }

    /// Whether quinn's accept has ended and every stream it gave has been routed.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The driver's turn: its task gets the intake's wake-ups nobody waits for, and runs it.
    pub(crate) fn drive(&self, conn: &Arc<Conn>, cx: &Context<'_>) {
        self.relay.driver.register(cx.waker());
        self.run(conn);
    }

    /// Runs the intake: accepts every new stream quinn has, routing each one whose preamble
    /// is in ([`bidi_now`](crate::driver::bidi_now)) and keeping a read for the others, then
    /// polls those reads. A task that finds another one running it waits for that run to end
    /// and runs it again: a run is short (no waiting in it), and leaving the turn to the
    /// running task instead could lose a wake-up that came after that task's last look at
    /// quinn.
    pub(crate) fn run(&self, conn: &Arc<Conn>) {
        let mut guard = lock(&self.state);
        let Some(st) = guard.as_mut() else {
            return;
        };
        let mut cx = Context::from_waker(&self.waker);
        while st.open {
            match st.accepts.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Ok((send, recv)))) => {
                    // Streams are handed on in the order they were accepted: one goes the
                    // quick way only when no earlier one is still being read.
                    let read = if st.reads.is_empty() {
                        crate::driver::bidi_now(conn, send, recv, &mut cx)
                    } else {
                        Some(crate::driver::bidi_later(conn, send, recv))
                    };
                    if let Some(read) = read {
                        st.reads.push(read);
                    }
                }
                Poll::Ready(_) => st.open = false,
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = st.reads.poll_next_unpin(&mut cx) {}
        if !st.open && st.reads.is_empty() && !self.done.swap(true, Ordering::AcqRel) {
            // The driver waits for this to end.
            drop(guard);
            self.relay.driver.wake();
        }
    }

    /// Registers an accept about to wait in `waker`'s task: the intake's next wake-up goes
    /// to it instead of the driver. Returns its id for [`withdraw`](Self::withdraw).
    pub(crate) fn wait(&self, waker: &Waker) -> u64 {
        let id = self.relay.next_id.fetch_add(1, Ordering::Relaxed);
        *lock(&self.relay.taker) = Some((id, waker.clone()));
        id
    }

    /// Withdraws accept `id`; `false` when it was no longer registered: a wake-up took it
    /// (or a later accept took its place).
    pub(crate) fn withdraw(&self, id: u64) -> bool {
        let mut t = lock(&self.relay.taker);
        if t.as_ref().is_some_and(|(i, _)| *i == id) {
            *t = None;
            true
        } else {
            false
        }
    }

    /// Withdraws whichever accept waits on the intake (its session is no longer the
    /// connection's only one): the driver gets the wake-ups from now on.
    pub(crate) fn release_taker(&self) {
        let taker = lock(&self.relay.taker).take();
        drop(taker);
    }

    /// Hands the turn to the driver: for an accept dropped after a wake-up took it but
    /// before it ran the intake.
    pub(crate) fn wake_driver(&self) {
        self.relay.driver.wake();
    }

    /// Withdraws accept `id` for good (dropped, or no longer allowed to run the intake): a
    /// wake-up that already came to it goes on to the driver.
    pub(crate) fn hand_back(&self, id: u64) {
        if !self.withdraw(id) {
            self.wake_driver();
        }
    }

    /// Drops what the intake holds (the reads hold the connection: without this, the two
    /// would keep each other alive). Called when the driver ends or is dropped.
    pub(crate) fn close(&self) {
        let st = lock(&self.state).take();
        drop(st);
    }
}
