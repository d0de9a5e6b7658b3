//! The per-connection driver task: it owns the session and every receive half but the
//! default stream's (shared, see below), accepts the server's streams, and serves the
//! [`Connection`](crate::Connection) handles' commands (open, stop, close, info, mode, and
//! whatever the handles cannot do themselves).
//!
//! ```text
//!  Connection ── write ─────────────────▶ Shared::sends (send halves, one async lock each)
//!  (any task) ── recv (default channel) ─▶ Shared::rx (buffered items, the waiting reader,
//!             │                                        the default stream's receive half)
//!             ──Command──▶ ┌────────────────────── driver task ──────────────────────┐
//!             ◀──reply──── │ streams: id → read op (future) + STOP_SENDING watch      │
//!                          │ pushes received items to Shared::rx, wakes the reader    │
//!  EventReceiver ◀─Event── │ mode Off: readers take items; On/Once: forwards events   │
//!                          └──────────────────────────────────────────────────────────┘
//! ```
//!
//! The hot paths skip the driver: a write runs in the caller's task on the stream's shared
//! send half ([`crate::send`]), and a `recv` on the default channel takes items from the shared
//! buffer or, with none buffered, reads the default stream itself ([`crate::direct`]), so a
//! round trip on the default stream passes through no other task of ours. The driver reads
//! the default stream whenever no `recv` waits on it.
//! Reads are futures in one `FuturesUnordered` that own their stream and hand it back when
//! they complete; the driver yields to the runtime after [`YIELD_EVERY`] operations.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};
use wt_core::{RecvStream, SendStream, Session, SessionError, StreamError, StreamId, StreamKind};

use crate::direct::{reader, DirectRead, ReadResult};
use crate::send::{Note, SendEnd, SendHalf, Slot};
use crate::store::{Chan, Item, OwnItem, Store};
use crate::{Active, CloseReason, ConnectionInfo, Error, Event, Msg};

/// Commands buffered between the handles and the driver.
pub(crate) const COMMAND_QUEUE: usize = 64;
/// Events buffered in the channel to the [`EventReceiver`](crate::EventReceiver).
pub(crate) const EVENT_QUEUE: usize = 256;
/// The driver yields to the runtime after this many operations in a row.
pub(crate) const YIELD_EVERY: u32 = 32;
/// Largest chunk read from a stream at once.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// How long `close` waits for the transport to report the session closed (so the close
/// reaches the wire before the caller drops everything).
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Sequence number of a reply that is not a buffered item (nothing to put back).
pub(crate) const SYNTHETIC: u64 = u64::MAX;

/// The application close code sent to the peer when `max_recv_buffer` overflows.
///
/// ```
/// assert_eq!(wt_client::OVERFLOW_CLOSE_CODE, 0x0b0f);
/// ```
pub const OVERFLOW_CLOSE_CODE: u32 = 0x0b0f;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;
pub(crate) type RecvReply = oneshot::Sender<Result<(u64, Item), Error>>;

/// A `recv` waiting on the default channel.
pub(crate) struct Waiter {
    pub(crate) token: u64,
    pub(crate) waker: std::task::Waker,
}

/// The receive side shared by the driver (which adds items) and the handles (which take
/// items of the default channel directly).
pub(crate) struct Rx {
    pub(crate) store: Store,
    /// Mirrors the driver's delivery mode.
    pub(crate) mode: Active,
    /// The `recv` waiting for the default channel, if any.
    pub(crate) main: Option<Waiter>,
    /// The default stream's receive half while it is open: read by the driver, and by a
    /// `recv` waiting with nothing buffered ([`crate::direct`]).
    pub(crate) default: Option<DirectRead>,
}

impl Rx {
    /// Forgets the waiting `recv` if it is the one with `token`.
    pub(crate) fn unregister_main(&mut self, token: u64) {
        if self.main.as_ref().is_some_and(|w| w.token == token) {
            self.main = None;
        }
    }

    /// Takes the waker of the `recv` waiting on the default channel, to be woken once the
    /// lock is released: woken under it, the reader's thread could come up only to block on
    /// the lock the waking thread still holds.
    pub(crate) fn take_main(&mut self) -> Option<std::task::Waker> {
        self.main.take().map(|w| w.waker)
    }
}

/// State shared by the handles, the event receiver and the driver.
pub(crate) struct Shared {
    /// Buffered items and the default channel's waiting reader.
    pub(crate) rx: Mutex<Rx>,
    /// Open send halves by stream: handles write through them directly.
    pub(crate) sends: Mutex<FxHashMap<StreamId, Arc<dyn SendHalf>>>,
    /// Set when the driver task ends (it only does once every handle is gone, or if it
    /// panicked), so readers stop waiting.
    pub(crate) driver_gone: AtomicBool,
    /// Unread bytes: buffered in the driver plus queued in the event channel.
    pub(crate) unread: AtomicUsize,
    /// The event receiver while nobody has taken it.
    pub(crate) events: Mutex<Option<mpsc::Receiver<Event>>>,
    /// The error that ended the session, mirrored from the driver once it is set (it never
    /// changes afterwards), so handles can fail fast paths without asking the driver.
    pub(crate) terminal: OnceLock<Error>,
}

/// Locks a std mutex, ignoring poisoning (no code panics while holding these locks, and
/// their data stays consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) enum Command {
    /// A write or reset to a stream without a shared send half: the driver answers why
    /// (see [`Driver::on_no_send_half`]).
    NoSendHalf {
        id: StreamId,
        reply: Reply<()>,
    },
    /// A datagram or write the transport refused when sent directly from a handle: answers
    /// with the error that ended the session if the driver knows of one, else with `err`.
    Failed {
        err: Error,
        reply: Reply<()>,
    },
    Recv {
        chan: Chan,
        reply: RecvReply,
    },
    Open {
        kind: StreamKind,
        reply: Reply<StreamId>,
    },
    StopSending {
        id: StreamId,
        code: u32,
        reply: Reply<()>,
    },
    SetActive {
        mode: Active,
        reply: Reply<()>,
    },
    Close {
        code: u32,
        reason: String,
        reply: Reply<()>,
    },
    Info {
        reply: oneshot::Sender<ConnectionInfo>,
    },
}

/// How a session ended, for [`ConnectionInfo::close`].
///
/// ```no_run
/// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
/// if let Some(close) = conn.info().await?.close {
///     let who = if close.by_peer { "server" } else { "we" };
///     println!("{who} closed with {} {:?}", close.code, close.reason);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// Application close code.
    pub code: u32,
    /// Close reason.
    pub reason: String,
    /// True if the peer closed, false if we did (or the overflow limit did).
    pub by_peer: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Origin {
    Default,
    Local,
    Remote,
}

enum SendSide {
    None,
    /// In [`Shared::sends`].
    Open,
    /// Ended: `None` after a FIN, otherwise how it failed.
    Done(Option<StreamError>),
}

enum RecvSide {
    None,
    Reading {
        cancel: oneshot::Sender<()>,
        stop: Option<(u32, Reply<()>)>,
    },
    /// Ended: `None` cleanly (FIN), otherwise the error stream_recv reports once drained.
    Done(Option<StreamError>),
}

struct Entry {
    origin: Origin,
    send: SendSide,
    recv: RecvSide,
    /// A `StreamClosed` was delivered for this (server-opened or default) stream.
    notified: bool,
}

type Op<S> = Pin<Box<dyn Future<Output = Done<S>> + Send>>;

/// A receive half as the driver reads it.
enum Half<S: Session> {
    /// Owned by the read op.
    Own(S::RecvStream),
    /// The default stream, in [`Rx::default`].
    Default,
}

enum Done<S: Session> {
    Read {
        id: StreamId,
        stream: Half<S>,
        cancel: oneshot::Receiver<()>,
        res: Option<ReadResult>,
    },
    /// The peer's STOP_SENDING (`Some`) or the end of the watch.
    StopNotice {
        id: StreamId,
        code: Option<u32>,
    },
    /// The rest of an abandoned write went out (or failed; the slot reported how).
    Flushed,
    Opened {
        res: Result<(S::SendStream, Option<S::RecvStream>), SessionError>,
        reply: Reply<StreamId>,
    },
    CloseFlushed {
        reply: Reply<()>,
    },
}

/// Reads the next chunk. (Taking further chunks that are ready at once, polling with a
/// no-op waker, measured slower over HTTP/3: every miss costs quinn's connection lock.)
fn read_op<S: Session>(
    id: StreamId,
    mut stream: S::RecvStream,
    mut cancel: oneshot::Receiver<()>,
) -> Op<S> {
    Box::pin(async move {
        let res = tokio::select! {
            r = stream.read_chunk(READ_CHUNK) => Some(r),
            _ = &mut cancel => None,
        };
        Done::Read {
            id,
            stream: Half::Own(stream),
            cancel,
            res,
        }
    })
}

/// Reads the default stream through [`Rx::default`], where a waiting `recv` may read it too.
fn default_op<S: Session>(
    id: StreamId,
    shared: Arc<Shared>,
    cancel: oneshot::Receiver<()>,
) -> Op<S> {
    let mut cancel = Some(cancel);
    Box::pin(std::future::poll_fn(move |cx| {
        // `None` only once this returned Ready, after which it is not polled.
        let Some(c) = cancel.as_mut() else {
            return std::task::Poll::Pending;
        };
        let res = if c.poll_unpin(cx).is_ready() {
            None
        } else {
            let mut rx = lock(&shared.rx);
            match rx.default.as_mut().map(|d| d.poll_driver(cx)) {
                Some(std::task::Poll::Pending) => return std::task::Poll::Pending,
                Some(std::task::Poll::Ready(r)) => Some(r),
                // Taken away (stopped).
                None => None,
            }
        };
        let Some(cancel) = cancel.take() else {
            return std::task::Poll::Pending;
        };
        std::task::Poll::Ready(Done::Read {
            id,
            stream: Half::Default,
            cancel,
            res,
        })
    }))
}

/// Driver configuration taken from the options.
pub(crate) struct DriverConfig {
    pub(crate) max_recv_buffer: usize,
    pub(crate) active: Active,
}

/// The receiving ends and shared state a [`Connection`](crate::Connection) needs.
pub(crate) struct Handles {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) notes: mpsc::UnboundedSender<Note>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) default_stream: StreamId,
}

pub(crate) struct Driver<S: Session> {
    session: S,
    cmd_rx: mpsc::Receiver<Command>,
    notes_tx: mpsc::UnboundedSender<Note>,
    notes_rx: mpsc::UnboundedReceiver<Note>,
    events_tx: Option<mpsc::Sender<Event>>,
    shared: Arc<Shared>,
    ops: FuturesUnordered<Op<S>>,
    streams: FxHashMap<StreamId, Entry>,
    waiters: FxHashMap<Chan, RecvReply>,
    mode: Active,
    terminal: Option<Error>,
    close: Option<CloseInfo>,
    default_stream: StreamId,
    max_recv_buffer: usize,
    accept_bi: bool,
    accept_uni: bool,
    datagrams: bool,
}

impl<S: Session> Driver<S> {
    /// Builds the driver for an established session and its default stream.
    pub(crate) fn new(
        session: S,
        default: (S::SendStream, S::RecvStream),
        cfg: DriverConfig,
    ) -> (Self, Handles) {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            rx: Mutex::new(Rx {
                store: Store::default(),
                mode: cfg.active,
                main: None,
                default: None,
            }),
            sends: Mutex::new(FxHashMap::default()),
            driver_gone: AtomicBool::new(false),
            unread: AtomicUsize::new(0),
            events: Mutex::new(Some(events_rx)),
            terminal: OnceLock::new(),
        });
        let default_stream = default.0.id();
        let mut d = Driver {
            session,
            cmd_rx,
            notes_tx: notes_tx.clone(),
            notes_rx,
            events_tx: Some(events_tx),
            shared: shared.clone(),
            ops: FuturesUnordered::new(),
            streams: FxHashMap::default(),
            waiters: FxHashMap::default(),
            mode: cfg.active,
            terminal: None,
            close: None,
            default_stream,
            max_recv_buffer: cfg.max_recv_buffer,
            accept_bi: true,
            accept_uni: true,
            datagrams: true,
        };
        d.add_stream(Origin::Default, Some(default.0), Some(default.1));
        let handles = Handles {
            cmd: cmd_tx,
            notes: notes_tx,
            shared,
            default_stream,
        };
        (d, handles)
    }

    fn add_stream(
        &mut self,
        origin: Origin,
        send: Option<S::SendStream>,
        recv: Option<S::RecvStream>,
    ) -> StreamId {
        let id = match (&send, &recv) {
            (Some(s), _) => s.id(),
            (None, Some(r)) => r.id(),
            (None, None) => return StreamId(u64::MAX),
        };
        let send = match send {
            Some(s) => {
                let notice = s.stop_notice();
                self.ops.push(Box::pin(async move {
                    Done::StopNotice {
                        id,
                        code: notice.await,
                    }
                }));
                let slot: Arc<dyn SendHalf> = Slot::new(s, self.notes_tx.clone());
                lock(&self.shared.sends).insert(id, slot);
                SendSide::Open
            }
            None => SendSide::None,
        };
        let recv = match recv {
            Some(r) => {
                let (cancel, cancel_rx) = oneshot::channel();
                if origin == Origin::Default {
                    // Shared with a waiting `recv` ([`crate::direct`]).
                    let direct = DirectRead::new(reader(r), self.max_recv_buffer);
                    lock(&self.shared.rx).default = Some(direct);
                    self.ops
                        .push(default_op::<S>(id, self.shared.clone(), cancel_rx));
                } else {
                    self.ops.push(read_op::<S>(id, r, cancel_rx));
                }
                RecvSide::Reading { cancel, stop: None }
            }
            None => RecvSide::None,
        };
        self.streams.insert(
            id,
            Entry {
                origin,
                send,
                recv,
                notified: false,
            },
        );
        id
    }

    /// Runs until every [`Connection`](crate::Connection) handle is dropped.
    pub(crate) async fn run(mut self) {
        let mut ops_in_a_row = 0u32;
        loop {
            ops_in_a_row += 1;
            if ops_in_a_row >= YIELD_EVERY {
                ops_in_a_row = 0;
                tokio::task::yield_now().await;
            }
            let live = self.terminal.is_none();
            let want_permit = self.mode != Active::Off
                && self.events_tx.is_some()
                && (self.terminal.is_some() || !self.rx().store.is_empty());
            let events_tx = self.events_tx.clone();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some(note) = self.notes_rx.recv() => self.on_note(note),
                Some(done) = self.ops.next(), if !self.ops.is_empty() => self.on_done(done),
                r = self.session.accept_bi(), if live && self.accept_bi => match r {
                    Ok((s, r)) => {
                        self.add_stream(Origin::Remote, Some(s), Some(r));
                    }
                    Err(_) => self.accept_bi = false,
                },
                r = self.session.accept_uni(), if live && self.accept_uni => match r {
                    Ok(r) => {
                        self.add_stream(Origin::Remote, None, Some(r));
                    }
                    Err(_) => self.accept_uni = false,
                },
                r = self.session.recv_datagram(), if live && self.datagrams => match r {
                    Ok(d) => self.deliver(Item::Main(Msg::Datagram(d))),
                    Err(_) => self.datagrams = false,
                },
                e = self.session.closed(), if live => {
                    // Data the transport already handed over comes before the end.
                    self.drain_ready_ops();
                    self.on_session_end(e)
                }
                permit = async move {
                    match events_tx {
                        Some(tx) => tx.reserve_owned().await.ok(),
                        None => None,
                    }
                }, if want_permit => {
                    if let Some(p) = permit {
                        self.send_event(p);
                        self.flush_active();
                    }
                }
            }
        }
        // Every handle is gone: close the session (hackney closes when its owner exits).
        if self.terminal.is_none() {
            let _ = self.session.close(0, "");
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.session.closed()).await;
        }
    }

    /// The shared receive state (never held across an await or a call that locks it).
    fn rx(&self) -> MutexGuard<'_, Rx> {
        lock(&self.shared.rx)
    }

    fn drain_notes(&mut self) {
        while let Ok(note) = self.notes_rx.try_recv() {
            self.on_note(note);
        }
    }

    fn on_note(&mut self, note: Note) {
        match note {
            Note::PutBack(seq, item) => self.put_back(seq, item),
            Note::SendEnded(id, how) => self.on_send_end(id, how),
            Note::Orphan(slot) => self.ops.push(Box::pin(async move {
                let _ = slot.flush().await;
                Done::Flushed
            })),
        }
    }

    fn put_back(&mut self, seq: u64, item: Item) {
        if seq == SYNTHETIC {
            return;
        }
        self.shared
            .unread
            .fetch_add(item.accounted(), Ordering::AcqRel);
        let chan = item.chan();
        self.rx().store.put_back(seq, item);
        self.dispatch(chan);
    }

    fn on_command(&mut self, cmd: Command) {
        self.drain_notes();
        match cmd {
            Command::NoSendHalf { id, reply } => self.on_no_send_half(id, reply),
            Command::Failed { err, reply } => {
                let e = match &self.terminal {
                    Some(t) => t.clone(),
                    None => err,
                };
                let _ = reply.send(Err(e));
            }
            Command::Recv { chan, reply } => self.on_recv(chan, reply),
            Command::Open { kind, reply } => {
                if let Some(t) = &self.terminal {
                    let _ = reply.send(Err(t.clone()));
                    return;
                }
                let session = self.session.clone();
                self.ops.push(Box::pin(async move {
                    let res = match kind {
                        StreamKind::Bidi => session.open_bi().await.map(|(s, r)| (s, Some(r))),
                        StreamKind::Uni => session.open_uni().await.map(|s| (s, None)),
                    };
                    Done::Opened { res, reply }
                }));
            }
            Command::StopSending { id, code, reply } => self.on_stop_sending(id, code, reply),
            Command::SetActive { mode, reply } => {
                self.set_mode(mode);
                if mode != Active::Off {
                    for (_, w) in self.waiters.drain() {
                        let _ = w.send(Err(Error::ActiveMode));
                    }
                }
                self.flush_active();
                let _ = reply.send(Ok(()));
            }
            Command::Close {
                code,
                reason,
                reply,
            } => {
                if self.terminal.is_some() {
                    let _ = reply.send(Ok(()));
                    return;
                }
                match self.session.close(code, &reason) {
                    Err(SessionError::ReasonTooLong(n)) => {
                        let _ = reply.send(Err(Error::InvalidReason(n)));
                        return;
                    }
                    Err(e) => tracing::debug!("close on an ended session: {e}"),
                    Ok(()) => {}
                }
                self.close = Some(CloseInfo {
                    code,
                    reason: reason.clone(),
                    by_peer: false,
                });
                self.set_terminal(Error::Closed { code, reason });
                let session = self.session.clone();
                self.ops.push(Box::pin(async move {
                    let _ = tokio::time::timeout(CLOSE_FLUSH, session.closed()).await;
                    Done::CloseFlushed { reply }
                }));
            }
            Command::Info { reply } => {
                let session = self.session.info();
                let _ = reply.send(ConnectionInfo {
                    transport: session.transport,
                    dialect: session.dialect,
                    session,
                    stats: self.session.stats(),
                    default_stream: self.default_stream,
                    open_streams: self.streams.len(),
                    unread_bytes: self.shared.unread.load(Ordering::Acquire),
                    active: self.mode,
                    close: self.close.clone(),
                });
            }
        }
    }

    /// A write or reset a handle could not make itself: the stream has no send half in
    /// [`Shared::sends`] (a slot leaves the map only here in the driver, as its record turns
    /// `Done`), so the answer comes from the stream's record.
    fn on_no_send_half(&mut self, id: StreamId, reply: Reply<()>) {
        let e = if let Some(t) = &self.terminal {
            t.clone()
        } else {
            match self.streams.get(&id).map(|e| &e.send) {
                None | Some(SendSide::None) => Error::UnknownStream(id),
                Some(SendSide::Done(e)) => {
                    Error::Stream(e.clone().unwrap_or(StreamError::ClosedLocally))
                }
                // Not reached (see above); a stream still open is not refused silently.
                Some(SendSide::Open) => Error::Stream(StreamError::ClosedLocally),
            }
        };
        let _ = reply.send(Err(e));
    }

    fn on_stop_sending(&mut self, id: StreamId, code: u32, reply: Reply<()>) {
        if let Some(t) = &self.terminal {
            let _ = reply.send(Err(t.clone()));
            return;
        }
        let Some(entry) = self.streams.get_mut(&id) else {
            let _ = reply.send(Err(Error::UnknownStream(id)));
            return;
        };
        match std::mem::replace(&mut entry.recv, RecvSide::None) {
            RecvSide::Reading { cancel, stop: None } => {
                let _ = cancel.send(());
                // The read op hands the stream back; the stop is applied then.
                let (c2, _) = oneshot::channel();
                entry.recv = RecvSide::Reading {
                    cancel: c2,
                    stop: Some((code, reply)),
                };
            }
            RecvSide::Reading {
                cancel,
                stop: Some(s),
            } => {
                entry.recv = RecvSide::Reading {
                    cancel,
                    stop: Some(s),
                };
                let _ = reply.send(Ok(()));
            }
            RecvSide::None => {
                let _ = reply.send(Err(Error::UnknownStream(id)));
            }
            done @ RecvSide::Done(_) => {
                entry.recv = done;
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn chan_readable(&self, chan: Chan) -> Result<(), Error> {
        if let Chan::Own(id) = chan {
            match self.streams.get(&id) {
                Some(e) if e.origin == Origin::Local && !matches!(e.recv, RecvSide::None) => {}
                _ => return Err(Error::UnknownStream(id)),
            }
        }
        Ok(())
    }

    fn on_recv(&mut self, chan: Chan, reply: RecvReply) {
        if self.mode != Active::Off {
            let _ = reply.send(Err(Error::ActiveMode));
            return;
        }
        if let Err(e) = self.chan_readable(chan) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(old) = self.waiters.get(&chan) {
            if !old.is_closed() {
                let _ = reply.send(Err(Error::RecvBusy));
                return;
            }
        }
        self.waiters.insert(chan, reply);
        self.dispatch(chan);
    }

    /// Serves the waiting reader of `chan` (passive mode), or forwards events (active).
    fn dispatch(&mut self, chan: Chan) {
        if self.mode != Active::Off {
            self.flush_active();
            return;
        }
        if chan == Chan::Main {
            // The reader takes it from the shared store itself.
            self.wake_main();
            return;
        }
        let Some(w) = self.waiters.remove(&chan) else {
            return;
        };
        let popped = self.rx().store.pop(chan);
        if let Some((seq, item)) = popped {
            let size = item.accounted();
            match w.send(Ok((seq, item))) {
                Ok(()) => {
                    self.shared.unread.fetch_sub(size, Ordering::AcqRel);
                    if let Chan::Own(id) = chan {
                        self.maybe_forget(id);
                    }
                }
                Err(Ok((seq, item))) => self.rx().store.put_back(seq, item),
                Err(Err(_)) => {}
            }
            return;
        }
        // Nothing buffered: a finished stream of ours, or the end of the session.
        if let Chan::Own(id) = chan {
            if let Some(Entry {
                recv: RecvSide::Done(end),
                ..
            }) = self.streams.get(&id)
            {
                let r = match end {
                    None => Ok((SYNTHETIC, Item::Own(id, OwnItem::Fin(Bytes::new())))),
                    Some(e) => Err(Error::Stream(e.clone())),
                };
                let _ = w.send(r);
                self.maybe_forget(id);
                return;
            }
        }
        if let Some(t) = &self.terminal {
            let _ = w.send(Err(t.clone()));
            return;
        }
        self.waiters.insert(chan, w);
    }

    /// Buffers a received item (checking the limit) and dispatches it.
    fn deliver(&mut self, item: Item) {
        if self.terminal.is_some() {
            return;
        }
        let size = item.accounted();
        let unread = self.shared.unread.load(Ordering::Acquire);
        if unread.saturating_add(size) > self.max_recv_buffer {
            tracing::warn!(
                unread,
                size,
                limit = self.max_recv_buffer,
                "receive buffer overflow: closing the session"
            );
            let reason = "receive buffer overflow";
            let _ = self.session.close(OVERFLOW_CLOSE_CODE, reason);
            self.close = Some(CloseInfo {
                code: OVERFLOW_CLOSE_CODE,
                reason: reason.into(),
                by_peer: false,
            });
            self.set_terminal(Error::RecvBufferOverflow);
            return;
        }
        self.shared.unread.fetch_add(size, Ordering::AcqRel);
        let chan = item.chan();
        self.rx().store.push(item);
        self.dispatch(chan);
    }

    /// Changes the delivery mode, mirrored for the handles; a reader waiting on the default
    /// channel learns of active mode at once.
    fn set_mode(&mut self, mode: Active) {
        self.mode = mode;
        self.rx().mode = mode;
        if mode != Active::Off {
            self.wake_main();
        }
    }

    /// Wakes the `recv` waiting on the default channel (outside the lock).
    fn wake_main(&self) {
        let waiter = self.rx().take_main();
        if let Some(w) = waiter {
            w.wake();
        }
    }

    fn set_terminal(&mut self, err: Error) {
        if self.terminal.is_some() {
            return;
        }
        self.terminal = Some(err.clone());
        let _ = self.shared.terminal.set(err.clone());
        let waiting: Vec<Chan> = self.waiters.keys().copied().collect();
        for chan in waiting {
            self.dispatch(chan);
        }
        self.wake_main();
        self.flush_active();
    }

    /// Completes every operation that is ready without waiting (reads whose data has already
    /// arrived), so a close racing with the last chunks does not overtake them.
    fn drain_ready_ops(&mut self) {
        while let Some(Some(done)) = self.ops.next().now_or_never() {
            self.on_done(done);
        }
    }

    fn on_session_end(&mut self, e: SessionError) {
        if self.close.is_none() {
            if let SessionError::ClosedByPeer { code, reason } = &e {
                self.close = Some(CloseInfo {
                    code: *code,
                    reason: reason.clone(),
                    by_peer: true,
                });
            }
        }
        self.set_terminal(Error::from_session_end(e));
    }

    fn send_event(&mut self, permit: mpsc::OwnedPermit<Event>) {
        let first = self.rx().store.pop_first();
        if let Some((_, item)) = first {
            let chan = item.chan();
            permit.send(item.into_event());
            if let Chan::Own(id) = chan {
                self.maybe_forget(id);
            }
        } else if let Some(t) = &self.terminal {
            let ev = match t.clone() {
                Error::Closed { code, reason } => Event::Closed { code, reason },
                e => Event::Error(e),
            };
            permit.send(ev);
            // Nothing can follow the final event: end the channel.
            self.events_tx = None;
        } else {
            return;
        }
        if self.mode == Active::Once {
            self.set_mode(Active::Off);
        }
    }

    /// Forwards buffered events while in active mode and the channel has room.
    fn flush_active(&mut self) {
        while self.mode != Active::Off && (self.terminal.is_some() || !self.rx().store.is_empty()) {
            let Some(tx) = self.events_tx.clone() else {
                return;
            };
            match tx.try_reserve_owned() {
                Ok(p) => self.send_event(p),
                Err(_) => return,
            }
        }
    }

    fn on_done(&mut self, done: Done<S>) {
        match done {
            Done::Read {
                id,
                stream,
                cancel,
                res,
            } => self.on_read(id, stream, cancel, res),
            Done::StopNotice { id, code } => {
                if let Some(code) = code {
                    self.on_send_end(id, SendEnd::Stopped(code));
                }
            }
            Done::Flushed => {}
            Done::Opened { res, reply } => {
                let r = match res {
                    Ok((s, r)) => {
                        if self.terminal.is_some() {
                            Err(self.terminal.clone().unwrap_or_else(Error::driver_gone))
                        } else {
                            Ok(self.add_stream(Origin::Local, Some(s), r))
                        }
                    }
                    Err(e) => Err(Error::Session(e)),
                };
                let _ = reply.send(r);
            }
            Done::CloseFlushed { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Reads the next chunk of a receive half that stays open.
    fn read_on(&mut self, id: StreamId, half: Half<S>, cancel: oneshot::Receiver<()>) {
        match half {
            Half::Own(stream) => self.ops.push(read_op::<S>(id, stream, cancel)),
            Half::Default => {
                if let Some(d) = self.rx().default.as_mut() {
                    d.release();
                }
                self.ops
                    .push(default_op::<S>(id, self.shared.clone(), cancel));
            }
        }
    }

    /// Stops a receive half (STOP_SENDING).
    fn stop_half(&mut self, half: &mut Half<S>, code: u32) -> Result<(), Error> {
        match half {
            Half::Own(stream) => stream.stop(code),
            Half::Default => match self.rx().default.as_mut() {
                Some(d) => d.stop(code),
                None => Err(StreamError::ClosedLocally),
            },
        }
        .map_err(Error::Stream)
    }

    fn on_read(
        &mut self,
        id: StreamId,
        stream: Half<S>,
        cancel_rx: oneshot::Receiver<()>,
        res: Option<ReadResult>,
    ) {
        let default = matches!(stream, Half::Default);
        self.read_half(id, stream, cancel_rx, res);
        // A default stream whose receive side is over leaves the shared state (the
        // transport's stream is dropped as the op's stream would be).
        if default {
            let open = matches!(
                self.streams.get(&id).map(|e| &e.recv),
                Some(RecvSide::Reading { .. })
            );
            if !open || self.terminal.is_some() {
                self.rx().default = None;
            }
        }
    }

    fn read_half(
        &mut self,
        id: StreamId,
        mut stream: Half<S>,
        cancel_rx: oneshot::Receiver<()>,
        res: Option<ReadResult>,
    ) {
        if self.terminal.is_some() {
            return;
        }
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        let origin = entry.origin;
        let (cancel_tx, stop) = match std::mem::replace(&mut entry.recv, RecvSide::None) {
            RecvSide::Reading { cancel, stop } => (cancel, stop),
            other => {
                entry.recv = other;
                return;
            }
        };
        match res {
            Some(Ok(Some(chunk))) => {
                let stop = match stop {
                    None => {
                        entry.recv = RecvSide::Reading {
                            cancel: cancel_tx,
                            stop: None,
                        };
                        None
                    }
                    Some(s) => {
                        entry.recv = RecvSide::Done(Some(StreamError::ClosedLocally));
                        Some(s)
                    }
                };
                if let Some((code, reply)) = stop {
                    // A stop raced with this chunk: keep the chunk, then stop.
                    let _ = reply.send(self.stop_half(&mut stream, code));
                }
                if !chunk.is_empty() {
                    let item = match origin {
                        Origin::Default => Item::Main(Msg::Binary(chunk)),
                        Origin::Remote => Item::Main(Msg::Stream(id, chunk)),
                        Origin::Local => Item::Own(id, OwnItem::Data(chunk)),
                    };
                    self.deliver(item);
                }
                // Only now: the default stream's next chunk may be read by a `recv` directly,
                // which must not overtake this one.
                let reading = matches!(
                    self.streams.get(&id).map(|e| &e.recv),
                    Some(RecvSide::Reading { .. })
                );
                if reading && self.terminal.is_none() {
                    self.read_on(id, stream, cancel_rx);
                }
                self.maybe_forget(id);
            }
            None => {
                entry.recv = RecvSide::Done(Some(StreamError::ClosedLocally));
                // Cancelled for stop_sending.
                if let Some((code, reply)) = stop {
                    let _ = reply.send(self.stop_half(&mut stream, code));
                }
                self.maybe_forget(id);
            }
            Some(Ok(None)) => {
                if let Some((_, reply)) = stop {
                    let _ = reply.send(Ok(()));
                }
                entry.recv = RecvSide::Done(None);
                let normal = matches!(entry.send, SendSide::None | SendSide::Done(None))
                    && origin == Origin::Remote
                    && !entry.notified;
                if normal {
                    entry.notified = true;
                }
                match origin {
                    Origin::Local => self.deliver(Item::Own(id, OwnItem::Fin(Bytes::new()))),
                    Origin::Default | Origin::Remote => {
                        self.deliver(Item::Main(Msg::StreamFin(id, Bytes::new())));
                        if normal {
                            self.deliver(Item::Main(Msg::StreamClosed(id, CloseReason::Normal)));
                        }
                    }
                }
                self.maybe_forget(id);
            }
            Some(Err(StreamError::SessionGone(e))) => {
                if let Some((_, reply)) = stop {
                    let _ = reply.send(Ok(()));
                }
                // The session's end is reported once, by `closed()`.
                entry.recv = RecvSide::Done(Some(StreamError::SessionGone(e)));
            }
            Some(Err(e)) => {
                if let Some((_, reply)) = stop {
                    let _ = reply.send(Ok(()));
                }
                entry.recv = RecvSide::Done(Some(e.clone()));
                let code = match &e {
                    StreamError::Reset(c) => c.unwrap_or(0),
                    _ => 0,
                };
                match origin {
                    Origin::Local => self.deliver(Item::Own(id, OwnItem::Err(e))),
                    Origin::Default | Origin::Remote => {
                        entry.notified = true;
                        self.deliver(Item::Main(Msg::StreamClosed(id, CloseReason::Reset(code))))
                    }
                }
                self.maybe_forget(id);
            }
        }
    }

    /// A send half ended (reported by its slot, or the peer's STOP_SENDING seen by the
    /// driver's watch): records it once and tells the application what it needs to know.
    fn on_send_end(&mut self, id: StreamId, how: SendEnd) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        if !matches!(entry.send, SendSide::Open) {
            return;
        }
        if let Some(slot) = lock(&self.shared.sends).remove(&id) {
            if let SendEnd::Stopped(code) = how {
                slot.stopped_by_peer(code);
            }
        }
        let origin = entry.origin;
        let recv_finished = matches!(entry.recv, RecvSide::Done(None) | RecvSide::None);
        let (state, notice) = match how {
            SendEnd::Finished => (None, None),
            SendEnd::Reset => (Some(StreamError::ClosedLocally), None),
            SendEnd::Stopped(code) => (
                Some(StreamError::Stopped(Some(code))),
                Some(CloseReason::StopSending(code)),
            ),
            SendEnd::Failed(StreamError::SessionGone(e)) => {
                (Some(StreamError::SessionGone(e)), None)
            }
            SendEnd::Failed(e) => (Some(e), None),
        };
        let clean = state.is_none();
        entry.send = SendSide::Done(state);
        let notified = entry.notified;
        if self.terminal.is_none() && origin != Origin::Local {
            if let Some(reason) = notice {
                entry.notified = true;
                self.deliver(Item::Main(Msg::StreamClosed(id, reason)));
            } else if clean && recv_finished && origin == Origin::Remote && !notified {
                // The peer's FIN came first; now both directions are done.
                entry.notified = true;
                self.deliver(Item::Main(Msg::StreamClosed(id, CloseReason::Normal)));
            }
        }
        self.maybe_forget(id);
    }

    /// Drops the bookkeeping of a stream that is over in both directions and drained.
    fn maybe_forget(&mut self, id: StreamId) {
        let Some(e) = self.streams.get(&id) else {
            return;
        };
        if e.origin == Origin::Default {
            return;
        }
        let send_over = !matches!(e.send, SendSide::Open);
        let recv_over = !matches!(e.recv, RecvSide::Reading { .. });
        let drained = e.origin == Origin::Remote
            || (!self.rx().store.has(Chan::Own(id)) && !self.waiters.contains_key(&Chan::Own(id)));
        // A stream of ours whose end was not read yet stays known so stream_recv reports it.
        let end_read = match (&e.origin, &e.recv) {
            (Origin::Local, RecvSide::Done(_)) => drained,
            _ => true,
        };
        if send_over && recv_over && drained && end_read {
            self.streams.remove(&id);
        }
    }
}

impl<S: Session> Drop for Driver<S> {
    fn drop(&mut self) {
        // Normally every handle is gone by now; after a panic, waiting readers must not hang.
        self.shared.driver_gone.store(true, Ordering::Release);
        // The default stream goes with the driver, as every other stream does.
        let default = self.rx().default.take();
        drop(default);
        self.wake_main();
    }
}
