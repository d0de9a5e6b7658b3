//! Thin tokio glue: the session handles ([`Session`], [`SendStream`], [`RecvStream`]) and the
//! per-session [`Driver`] share the sans-IO [`Engine`] and the h2 CONNECT stream behind one
//! mutex.
//!
//! When the session is quiet, whoever changes the engine moves its output on at once: a write
//! (or close, reset, grant) hands the capsule bytes to h2 from the caller's own task, within
//! h2's send capacity, and a reader whose stream has nothing buffered polls h2's receive side
//! itself. So a lone request/response costs the same task hops as raw h2. When it is busy
//! (received bytes wait unread, so other tasks are about to run, or the driver is already
//! woken) output is left to one batching point, the driver or the reader polling h2, so many
//! streams share DATA frames (a DATA frame per write costs churn about half its rate). The
//! driver also does what nobody else is waiting for: output blocked on HTTP/2 send capacity
//! (`poll_capacity`), input nobody reads (control capsules, datagrams, data for streams whose
//! readers are not polling h2), the peer's RST_STREAM after its END_STREAM, and the close
//! linger.
//!
//! h2 keeps one receive waker per stream, replaced by whoever polls last. Every poll of ours
//! passes the same one, [`H2Wake`], which at wake-up time wakes the reader currently waiting
//! on h2 (at most one, recorded by stream id), else the driver; so no registration is ever
//! stale. A reader that stops waiting (its read completes or is dropped) clears itself; if
//! h2 woke it since its last poll of h2, that wake-up may have been absorbed (h2 keeps a
//! waker only until it wakes it), so it polls h2 once more, which re-registers the waker now
//! pointing at the driver and picks up what came. Otherwise the registration its last poll
//! left stands and now reaches the driver: no extra poll. For the same reason a reader that
//! starts waiting polls h2 only if h2 woke us since it last answered `Pending` ([`IdleMark`]):
//! until then h2 has nothing new and our registration stands.
//!
//! Flow-control chain: the application reads → the engine grants WT credit and reports the
//! bytes it no longer holds → the reader's task releases that much HTTP/2 receive window. On
//! the send side only as many bytes go to h2 as h2 has send capacity for
//! (`reserve_capacity` / `capacity`), so nothing is buffered without bound in h2; writers
//! block in the engine once its bounded output queue is full.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::watch;
use wt_core::codes::H2Code;
use wt_core::{
    ConnectionError, SessionError, SessionInfo, SessionStats, StreamError, StreamId, WireCode,
};

use crate::engine::streams::Dir;
use crate::engine::tx::Segment;
use crate::engine::{Engine, Event, Read, Write, MAX_DATAGRAM_SIZE};

/// How long a closed session waits for the peer's END_STREAM before resetting the stream.
const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// Most capacity reserved from h2 at once.
const MAX_RESERVE: usize = 1 << 20;

/// Polls of `poll_data` per pump before yielding.
const READ_BUDGET: usize = 64;

/// Waiting tasks. Keyed by stream id like the engine's stream map, with the same hasher
/// (see [`Streams`](crate::engine::streams::Streams)).
#[derive(Default)]
struct Wakers {
    read: FxHashMap<u64, Waker>,
    write: FxHashMap<u64, Waker>,
    stopped: FxHashMap<u64, Waker>,
    /// Watchers from [`stop_notice`](wt_core::SendStream::stop_notice) (any number per stream).
    stop_notice: FxHashMap<u64, Vec<Waker>>,
    accept: [Vec<Waker>; 2],
    open: [Vec<Waker>; 2],
    datagram: Vec<Waker>,
}

fn register(list: &mut Vec<Waker>, w: &Waker) {
    if !list.iter().any(|x| x.will_wake(w)) {
        list.push(w.clone());
    }
}

/// Wakes the [`stop_notice`](wt_core::SendStream::stop_notice) watchers of stream `id` (they poll again and see
/// the stream's new state).
fn wake_stop_notices(w: &mut Wakers, id: u64) {
    if let Some(mut l) = w.stop_notice.remove(&id) {
        wake_list(&mut l);
    }
}

fn wake_list(list: &mut Vec<Waker>) {
    for w in list.drain(..) {
        w.wake();
    }
}

/// Who h2's receive notifications for the CONNECT stream go to (see the module docs).
///
/// Its lock is a leaf: h2 wakes it while holding h2's own lock. Nothing is called while
/// holding it, not even a waker: waking a task on another thread is a system call, and the
/// woken task's first step is [`try_claim`](Self::try_claim) on this very lock, so waking
/// under it had the woken reader wait for its own wake-up to finish.
#[derive(Default)]
struct H2Wake {
    target: Mutex<WakeTarget>,
    /// The driver was woken and has not polled since: output left for it is batched. Written
    /// under `target`'s lock, read without it (a batching hint, checked on every settle).
    driver_woken: AtomicBool,
    /// How many times h2 has woken us, counted before the wake-up is routed (see
    /// [`IdleMark`]).
    wakes: AtomicU64,
}

#[derive(Default)]
struct WakeTarget {
    driver: Option<Waker>,
    /// The reader (stream id) waiting on h2 itself.
    reader: Option<(u64, Waker)>,
    /// h2 woke the reader since it last claimed: that wake-up used up the registration its
    /// pump left in h2, so whoever takes over must poll h2 again.
    reader_woken: bool,
}

/// Locks a std mutex, ignoring poisoning (nothing panics while holding these locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl H2Wake {
    fn lock(&self) -> MutexGuard<'_, WakeTarget> {
        lock(&self.target)
    }

    fn set_driver(&self, w: &Waker) {
        let mut t = self.lock();
        self.driver_woken.store(false, Ordering::Release);
        if !t.driver.as_ref().is_some_and(|d| d.will_wake(w)) {
            t.driver = Some(w.clone());
        }
    }

    fn clear_driver(&self) {
        self.lock().driver = None;
    }

    /// How many times h2 has woken us so far.
    fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Acquire)
    }

    /// Whether the driver was woken and has not run since.
    fn driver_woken(&self) -> bool {
        self.driver_woken.load(Ordering::Acquire)
    }

    fn wake_driver(&self) {
        let w = {
            let t = self.lock();
            self.driver_woken.store(true, Ordering::Release);
            t.driver.clone()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Makes reader `id` the receiver of h2's wake-ups unless another reader is; whether
    /// it now is. The caller polls h2 next, so wake-ups before this one are accounted for.
    fn try_claim(&self, id: u64, w: &Waker) -> bool {
        let mut t = self.lock();
        match &t.reader {
            Some((r, old)) if *r == id && old.will_wake(w) => {}
            Some((r, _)) if *r != id => return false,
            _ => t.reader = Some((id, w.clone())),
        }
        t.reader_woken = false;
        true
    }

    /// Stops sending wake-ups to reader `id`. Returns whether h2 must be polled again: `id`
    /// was the reader and h2 woke it since its claim, so a wake-up may have been absorbed
    /// and h2 may hold no registration of ours. Otherwise the registration the reader's last
    /// poll left in h2 stands, and now wakes the driver.
    fn clear_reader(&self, id: u64) -> bool {
        let mut t = self.lock();
        if t.reader.as_ref().is_some_and(|(r, _)| *r == id) {
            t.reader = None;
            std::mem::take(&mut t.reader_woken)
        } else {
            false
        }
    }
}

impl Wake for H2Wake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Counted before the lock: a reader that claims after this wake-up's routing sees
        // the new count (the lock orders them), one that claimed before is woken.
        self.wakes.fetch_add(1, Ordering::AcqRel);
        // A reader that claims or clears itself meanwhile polls h2 itself, so waking the
        // one taken here is never a lost wake-up, at worst a spurious one.
        let w = {
            let mut t = self.lock();
            match &t.reader {
                Some((_, w)) => {
                    let w = w.clone();
                    t.reader_woken = true;
                    Some(w)
                }
                None => t.driver.clone(),
            }
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// What a [`H2Io::pump`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Pump {
    /// h2 had nothing (more); the wake-up is registered.
    Idle,
    /// Fed the engine, and h2 has nothing more; the wake-up is registered.
    Fed,
    /// Fed the engine and stopped at the budget: h2 may hold more, and no wake-up is
    /// registered, so someone must poll again.
    Budget,
}

/// When h2 last answered a `poll_data` of ours with `Pending`, as the [`H2Wake`] wake-up
/// count read right before that poll; `None` when h2 must be polled (never polled yet, or the
/// last pump stopped at its budget).
///
/// h2 keeps a stream's receive waker (always the `H2Wake` one) until it wakes it, and wakes
/// it for anything new (data, end, reset). So while the count has not moved, h2 has nothing
/// for us and our registration stands: a reader that starts waiting need not poll h2 (one
/// `poll_data`, and one lock h2's connection task also takes, per message).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
struct IdleMark(Option<u64>);

impl IdleMark {
    /// Whether h2 may hold something new for us.
    fn may_have_input(self, wake: &H2Wake) -> bool {
        self.0 != Some(wake.wakes())
    }
}

/// The h2 CONNECT stream of a session, and how far each direction got.
struct H2Io {
    send: h2::SendStream<Segment>,
    recv: h2::RecvStream,
    /// When h2 last said `Pending`.
    idle: IdleMark,
    recv_done: bool,
    end_sent: bool,
    reset_sent: bool,
    send_failed: bool,
}

impl H2Io {
    fn on_h2_error(engine: &mut Engine, e: h2::Error) {
        match h2_error_to_session(e) {
            Ok(code) => engine.recv_reset(code),
            Err(err) => engine.connection_lost(err),
        }
    }

    /// Feeds the engine what h2 has received, polling with `h2cx` (the waker of `wake`).
    fn pump(&mut self, h2cx: &mut Context<'_>, wake: &H2Wake, engine: &mut Engine) -> Pump {
        let mut fed = false;
        self.idle = IdleMark(None);
        for _ in 0..READ_BUDGET {
            if self.recv_done {
                return if fed { Pump::Fed } else { Pump::Idle };
            }
            // Read before the poll: a wake-up after the poll registered us counts after it.
            let seen = wake.wakes();
            match self.recv.poll_data(h2cx) {
                Poll::Ready(Some(Ok(b))) => engine.recv_bytes(b),
                Poll::Ready(Some(Err(e))) => {
                    self.recv_done = true;
                    Self::on_h2_error(engine, e);
                }
                Poll::Ready(None) => {
                    self.recv_done = true;
                    engine.recv_end();
                }
                Poll::Pending => {
                    self.idle = IdleMark(Some(seen));
                    return if fed { Pump::Fed } else { Pump::Idle };
                }
            }
            fed = true;
        }
        Pump::Budget
    }

    /// Hands h2 everything it takes without waiting: released receive window, a reset,
    /// capsule output within the current send capacity, END_STREAM. Returns whether output
    /// is left waiting for send capacity.
    ///
    /// With `data` false the capsule output stays in the engine (for the driver to batch);
    /// the result then says whether there is any.
    fn flush(&mut self, engine: &mut Engine, data: bool) -> bool {
        let n = engine.take_release();
        if n > 0 && !self.recv_done {
            let _ = self.recv.flow_control().release_capacity(n);
        }
        if self.reset_sent || self.send_failed {
            return false;
        }
        if let Some(code) = engine.wants_reset() {
            self.send.send_reset(h2::Reason::from(code.0));
            self.reset_sent = true;
            return false;
        }
        if !data {
            return engine.transmit_len() > 0 || (!self.end_sent && engine.wants_end_stream());
        }
        while !self.end_sent {
            let want = engine.transmit_len();
            if want == 0 {
                break;
            }
            self.send.reserve_capacity(want.min(MAX_RESERVE));
            let cap = self.send.capacity();
            if cap == 0 {
                return true;
            }
            let Some(chunk) = engine.poll_transmit(cap) else {
                break;
            };
            if let Err(e) = self.send.send_data(chunk, false) {
                self.send_failed = true;
                Self::on_h2_error(engine, e);
                return false;
            }
        }
        if !self.end_sent && engine.transmit_len() == 0 && engine.wants_end_stream() {
            self.end_sent = true;
            if let Err(e) = self.send.send_data(Segment::default(), true) {
                self.send_failed = true;
                Self::on_h2_error(engine, e);
            }
        }
        false
    }

    /// Whether the send side is still open and waits on h2 for a reset only
    /// `poll_reset` reports (the peer's RST_STREAM after its END_STREAM; before that,
    /// `poll_data` reports it).
    fn watches_reset(&self) -> bool {
        self.recv_done && !self.end_sent && !self.reset_sent && !self.send_failed
    }

    /// The driver's part: pump, flush, and wait (with the driver's `cx`) for send capacity
    /// and for a reset.
    fn drive(
        &mut self,
        cx: &mut Context<'_>,
        h2cx: &mut Context<'_>,
        wake: &H2Wake,
        engine: &mut Engine,
    ) {
        if self.pump(h2cx, wake, engine) == Pump::Budget {
            cx.waker().wake_by_ref();
        }
        while self.flush(engine, true) {
            match self.send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => {
                    self.send_failed = true;
                    Self::on_h2_error(engine, e);
                }
                Poll::Ready(None) => {
                    self.send_failed = true;
                    engine.connection_lost(SessionError::Connection(ConnectionError::Reset));
                }
                Poll::Pending => break,
            }
        }
        if self.watches_reset() {
            if let Poll::Ready(r) = self.send.poll_reset(cx) {
                self.send_failed = true;
                match r {
                    Ok(reason) => engine.recv_reset(H2Code(reason.into())),
                    Err(e) => Self::on_h2_error(engine, e),
                }
            }
        }
    }
}

pub(crate) struct Inner {
    pub engine: Engine,
    wakers: Wakers,
    /// The CONNECT stream; gone once the driver finished.
    io: Option<H2Io>,
}

/// State shared by the handles and the driver of one session.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    wake: Arc<H2Wake>,
    /// The waker every `poll_data` registers (a [`H2Wake`]).
    h2_waker: Waker,
    closed: watch::Sender<Option<SessionError>>,
    draining: watch::Sender<bool>,
}

impl Shared {
    /// The shared state of a session on the CONNECT stream `send` / `recv`.
    pub fn new(engine: Engine, send: h2::SendStream<Segment>, recv: h2::RecvStream) -> Arc<Self> {
        let wake = Arc::new(H2Wake::default());
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                wakers: Wakers::default(),
                io: Some(H2Io {
                    send,
                    recv,
                    idle: IdleMark::default(),
                    recv_done: false,
                    end_sent: false,
                    reset_sent: false,
                    send_failed: false,
                }),
            }),
            h2_waker: Waker::from(wake.clone()),
            wake,
            closed: watch::Sender::new(None),
            draining: watch::Sender::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Runs `f` on the engine, then moves its output to h2 and wakes whoever its events
    /// concern.
    fn with<R>(&self, f: impl FnOnce(&mut Engine, &mut Wakers) -> R) -> R {
        let mut inner = self.lock();
        let Inner { engine, wakers, .. } = &mut *inner;
        let r = f(engine, wakers);
        self.settle(&mut inner);
        r
    }

    /// After a change to the engine from a handle's task: flushes its output into h2, wakes
    /// the handles its events concern, and wakes the driver if something is left for it.
    fn settle(&self, inner: &mut Inner) {
        let direct = inner.engine.unread() == 0 && !self.wake.driver_woken();
        self.settle_with(inner, direct);
    }

    /// [`settle`](Self::settle), flushing capsule output from this task only if `data`.
    fn settle_with(&self, inner: &mut Inner, data: bool) {
        let Inner { engine, wakers, io } = inner;
        let mut driver = false;
        if let Some(io) = io {
            driver = io.flush(engine, data) || io.watches_reset() || engine.error().is_some();
        }
        self.dispatch(engine, wakers);
        if driver {
            self.wake.wake_driver();
        }
    }

    /// Pumps h2's receive side from a handle's task (see [`RecvStream`]) unless h2 has had
    /// nothing new since it last said `Pending`; whether the engine was fed.
    fn pump(&self, inner: &mut Inner) -> bool {
        let Some(io) = inner.io.as_mut() else {
            return false;
        };
        if !io.idle.may_have_input(&self.wake) {
            return false;
        }
        let mut h2cx = Context::from_waker(&self.h2_waker);
        match io.pump(&mut h2cx, &self.wake, &mut inner.engine) {
            Pump::Idle => false,
            Pump::Fed => true,
            Pump::Budget => {
                self.wake.wake_driver();
                true
            }
        }
    }

    /// Reader `id` stops waiting on h2: wake-ups go to the driver again, and h2 is polled
    /// once more if this reader may have absorbed one (see [`H2Wake::clear_reader`]).
    fn release_reader(&self, inner: &mut Inner, id: u64) {
        if self.wake.clear_reader(id) {
            self.pump(inner);
        }
    }

    fn dispatch(&self, engine: &mut Engine, wakers: &mut Wakers) {
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::Readable(id) => {
                    if let Some(w) = wakers.read.remove(&id) {
                        w.wake();
                    }
                }
                Event::Writable(id) => {
                    if let Some(w) = wakers.write.remove(&id) {
                        w.wake();
                    }
                    if let Some(w) = wakers.stopped.remove(&id) {
                        w.wake();
                    }
                    wake_stop_notices(wakers, id);
                }
                Event::Incoming(d) => wake_list(&mut wakers.accept[d as usize]),
                Event::OpenCredit(d) => wake_list(&mut wakers.open[d as usize]),
                Event::Datagram => wake_list(&mut wakers.datagram),
                Event::Draining => {
                    self.draining.send_replace(true);
                }
                Event::Closed => {
                    self.closed.send_replace(engine.error().cloned());
                    self.draining.send_replace(true);
                    for (_, w) in wakers.read.drain() {
                        w.wake();
                    }
                    for (_, w) in wakers.write.drain() {
                        w.wake();
                    }
                    for (_, w) in wakers.stopped.drain() {
                        w.wake();
                    }
                    for (_, mut l) in wakers.stop_notice.drain() {
                        wake_list(&mut l);
                    }
                    for l in wakers.accept.iter_mut().chain(wakers.open.iter_mut()) {
                        wake_list(l);
                    }
                    wake_list(&mut wakers.datagram);
                }
            }
        }
    }
}

/// Closes the session with code 0 once every handle (session and streams) is gone.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.with(|e, _| e.close(0, ""));
    }
}

/// A WebTransport session over HTTP/2.
///
/// Datagrams are sent as reliable DATAGRAM capsules on the CONNECT stream: they are never
/// lost or reordered in transit (`info().unreliable_datagrams == false`), though a full send
/// buffer or receive queue may drop them. [`max_datagram_size`](wt_core::Session::max_datagram_size)
/// is a fixed 65535 bytes.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    info: Arc<SessionInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("info", &self.info).finish()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, info: SessionInfo) -> Self {
        Session {
            guard: Arc::new(Guard(shared.clone())),
            shared,
            info: Arc::new(info),
        }
    }

    fn send_stream(&self, id: u64) -> SendStream {
        SendStream {
            id,
            shared: self.shared.clone(),
            _guard: self.guard.clone(),
        }
    }

    fn recv_stream(&self, id: u64) -> RecvStream {
        RecvStream {
            id,
            shared: self.shared.clone(),
            _guard: self.guard.clone(),
        }
    }

    async fn open(&self, dir: Dir) -> Result<u64, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.open(dir) {
                Ok(Some(id)) => Poll::Ready(Ok(id)),
                Ok(None) => {
                    register(&mut w.open[dir as usize], cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    async fn accept(&self, dir: Dir) -> Result<u64, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.accept(dir) {
                Ok(Some(id)) => Poll::Ready(Ok(id)),
                Ok(None) => {
                    register(&mut w.accept[dir as usize], cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }
}

impl wt_core::Session for Session {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        let id = self.open(Dir::Bi).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    async fn open_uni(&self) -> Result<SendStream, SessionError> {
        let id = self.open(Dir::Uni).await?;
        Ok(self.send_stream(id))
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        let id = self.accept(Dir::Bi).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    async fn accept_uni(&self) -> Result<RecvStream, SessionError> {
        let id = self.accept(Dir::Uni).await?;
        Ok(self.recv_stream(id))
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.send_datagram(data))
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.recv_datagram() {
                Ok(Some(d)) => Poll::Ready(Ok(d)),
                Ok(None) => {
                    register(&mut w.datagram, cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(MAX_DATAGRAM_SIZE)
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.close(code, reason))
    }

    fn drain(&self) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.drain())
    }

    async fn closed(&self) -> SessionError {
        let mut rx = self.shared.closed.subscribe();
        let r = match rx.wait_for(|e| e.is_some()).await {
            Ok(e) => e.clone(),
            Err(_) => None,
        };
        r.unwrap_or(SessionError::Connection(ConnectionError::Reset))
    }

    async fn draining(&self) {
        let mut rx = self.shared.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    fn info(&self) -> SessionInfo {
        (*self.info).clone()
    }

    fn stats(&self) -> SessionStats {
        self.shared.lock().engine.stats()
    }
}

/// The sending half of a WebTransport-over-HTTP/2 stream.
pub struct SendStream {
    id: u64,
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    fn poll_write_bytes(
        &self,
        cx: &mut Context<'_>,
        data: &Bytes,
    ) -> Poll<Result<usize, StreamError>> {
        self.shared.with(|e, w| match e.write(self.id, data) {
            Ok(Write::Written(n)) => Poll::Ready(Ok(n)),
            Ok(Write::Blocked) => {
                w.write.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Err(err) => Poll::Ready(Err(err)),
        })
    }
}

impl wt_core::SendStream for SendStream {
    fn id(&self) -> StreamId {
        StreamId(self.id)
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Only the accepted prefix is copied, once: small pieces straight into the engine's
        // output buffer, large ones into one `Bytes` each.
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.write_slice(self.id, buf) {
                Ok(Write::Written(n)) => Poll::Ready(Ok(n)),
                Ok(Write::Blocked) => {
                    w.write.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    async fn write_chunk(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        while !data.is_empty() {
            self.write_some(&mut data).await?;
        }
        Ok(())
    }

    async fn write_some(&mut self, data: &mut Bytes) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        // The accepted prefix is queued as slices of `data`, not copied. Cancel safe: the
        // engine takes the bytes in the poll that returns `Ready`, and nothing awaits after.
        let n = poll_fn(|cx| self.poll_write_bytes(cx, data)).await?;
        bytes::Buf::advance(data, n);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.shared.with(|e, w| {
            wake_stop_notices(w, self.id);
            e.finish(self.id)
        })
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        self.shared.with(|e, w| {
            wake_stop_notices(w, self.id);
            e.reset(self.id, code)
        })
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.stopped(self.id) {
                Some(r) => Poll::Ready(r),
                None => {
                    w.stopped.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await
    }

    fn stop_notice(&self) -> impl Future<Output = Option<u32>> + Send + 'static {
        let (id, shared) = (self.id, self.shared.clone());
        poll_fn(move |cx| {
            shared.with(|e, w| match e.stopped(id) {
                Some(Ok(code)) => Poll::Ready(code),
                Some(Err(_)) => Poll::Ready(None),
                None => {
                    register(w.stop_notice.entry(id).or_default(), cx.waker());
                    Poll::Pending
                }
            })
        })
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        self.shared.with(|e, w| {
            w.write.remove(&self.id);
            w.stopped.remove(&self.id);
            wake_stop_notices(w, self.id);
            e.drop_send(self.id)
        });
    }
}

/// The receiving half of a WebTransport-over-HTTP/2 stream.
pub struct RecvStream {
    id: u64,
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl wt_core::RecvStream for RecvStream {
    fn id(&self) -> StreamId {
        StreamId(self.id)
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        ReadChunk {
            stream: self,
            max,
            waiting_on_h2: false,
        }
        .await
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.shared.with(|e, _| e.stop(self.id, code))
    }
}

/// [`read_chunk`](wt_core::RecvStream::read_chunk): reads from the engine; while it has
/// nothing for this stream, polls h2's receive side from this task (see the module docs).
struct ReadChunk<'a> {
    stream: &'a RecvStream,
    max: usize,
    /// h2's wake-ups may be coming to this reader ([`H2Wake`]).
    waiting_on_h2: bool,
}

impl Future for ReadChunk<'_> {
    type Output = Result<Option<Bytes>, StreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (id, shared) = (this.stream.id, &*this.stream.shared);
        let mut inner = shared.lock();
        // Polled now: a Readable event need not wake this task again.
        inner.wakers.read.remove(&id);
        let mut pumped = false;
        let r = loop {
            match inner.engine.read(id, this.max) {
                Ok(Read::Data(d)) => break Ok(Some(d)),
                Ok(Read::Fin) => break Ok(None),
                Err(err) => break Err(err),
                Ok(Read::Blocked) => {}
            }
            // At most once per poll (a pump reads until h2 has nothing), and only as the
            // one reader h2's wake-ups go to: with several readers waiting, one pumps and
            // the events it produces wake the others.
            let recv_open = inner.io.as_ref().is_some_and(|io| !io.recv_done);
            if !pumped && recv_open && shared.wake.try_claim(id, cx.waker()) {
                pumped = true;
                this.waiting_on_h2 = true;
                // Read again only if the pump fed the engine (it may have fed other streams
                // only; then this one still waits).
                if shared.pump(&mut inner) {
                    continue;
                }
            }
            inner.wakers.read.insert(id, cx.waker().clone());
            // The reader waiting on h2 also sends what has queued up meanwhile (it is the
            // batching point, like the driver); others leave that to the driver.
            let direct = this.waiting_on_h2;
            shared.settle_with(&mut inner, direct);
            return Poll::Pending;
        };
        if std::mem::take(&mut this.waiting_on_h2) {
            shared.release_reader(&mut inner, id);
        }
        shared.settle(&mut inner);
        Poll::Ready(r)
    }
}

impl Drop for ReadChunk<'_> {
    fn drop(&mut self) {
        if self.waiting_on_h2 {
            let shared = &*self.stream.shared;
            let mut inner = shared.lock();
            shared.release_reader(&mut inner, self.stream.id);
            shared.settle(&mut inner);
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.shared.with(|e, w| {
            w.read.remove(&self.id);
            e.drop_recv(self.id)
        });
    }
}

/// Something the driver keeps alive while it runs (the client's h2 `SendRequest`).
pub(crate) type KeepAlive = Box<dyn std::any::Any + Send>;

/// Does what no handle's task is waiting to do for one session (see the module docs):
/// output blocked on HTTP/2 send capacity, input nobody reads, the close linger.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    _keep: Option<KeepAlive>,
}

pub(crate) fn h2_error_to_session(e: h2::Error) -> Result<H2Code, SessionError> {
    if e.is_reset() {
        if let Some(r) = e.reason() {
            return Ok(H2Code(r.into()));
        }
    }
    let conn = if e.is_go_away() {
        let code = e
            .reason()
            .map(|r| H2Code(r.into()))
            .unwrap_or(H2Code::NO_ERROR);
        if e.is_remote() {
            ConnectionError::ClosedByPeer {
                code: WireCode::H2(code),
                reason: String::new(),
            }
        } else {
            ConnectionError::ClosedLocally {
                code: WireCode::H2(code),
                reason: String::new(),
            }
        }
    } else if e.is_io() {
        match e.into_io() {
            Some(io) => ConnectionError::Io(Arc::new(io)),
            None => ConnectionError::Reset,
        }
    } else {
        ConnectionError::Reset
    };
    Err(SessionError::Connection(conn))
}

impl Driver {
    pub fn new(shared: Arc<Shared>, keep: Option<KeepAlive>) -> Self {
        Driver {
            shared,
            linger: None,
            _keep: keep,
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let shared = &*this.shared;
        shared.wake.set_driver(cx.waker());
        let mut guard = shared.lock();
        let Inner { engine, wakers, io } = &mut *guard;
        let Some(h2) = io.as_mut() else {
            return Poll::Ready(());
        };
        let mut h2cx = Context::from_waker(&shared.h2_waker);
        h2.drive(cx, &mut h2cx, &shared.wake, engine);
        shared.dispatch(engine, wakers);
        if engine.error().is_none() {
            return Poll::Pending;
        }
        let finished = h2.reset_sent
            || h2.send_failed
            || (h2.recv_done && (h2.end_sent || !engine.wants_end_stream()));
        if !finished {
            let linger = this
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_LINGER)));
            if linger.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            h2.send.send_reset(h2::Reason::CANCEL);
        }
        // Drops the h2 stream handles, as h2 expects once we are done with the stream.
        *io = None;
        drop(guard);
        shared.wake.clear_driver();
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A waker that, when woken, checks whether the [`H2Wake`] lock is free (as it must be
    /// for the woken task's first step, [`H2Wake::try_claim`]).
    struct Probe {
        h2wake: Arc<H2Wake>,
        woken: AtomicUsize,
        lock_free: AtomicUsize,
    }

    impl Wake for Probe {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.fetch_add(1, Ordering::Relaxed);
            if self.h2wake.target.try_lock().is_ok() {
                self.lock_free.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn probe(h2wake: &Arc<H2Wake>) -> (Arc<Probe>, Waker) {
        let p = Arc::new(Probe {
            h2wake: h2wake.clone(),
            woken: AtomicUsize::new(0),
            lock_free: AtomicUsize::new(0),
        });
        (p.clone(), Waker::from(p))
    }

    /// An [`H2Wake`], the waker h2 would hold, and a driver (registered) and a reader probe.
    #[allow(clippy::type_complexity)]
    fn wake_setup() -> (Arc<H2Wake>, Waker, (Arc<Probe>, Waker), (Arc<Probe>, Waker)) {
        let h2wake = Arc::new(H2Wake::default());
        let h2_waker = Waker::from(h2wake.clone());
        let driver = probe(&h2wake);
        let reader = probe(&h2wake);
        h2wake.set_driver(&driver.1);
        (h2wake, h2_waker, driver, reader)
    }

    #[test]
    fn h2_wake_ups_go_out_with_the_lock_released() {
        let (h2wake, h2_waker, (driver, _), (reader, reader_waker)) = wake_setup();

        // Nobody reading: h2's wake-up goes to the driver.
        h2_waker.wake_by_ref();
        assert_eq!(driver.woken.load(Ordering::Relaxed), 1);
        assert_eq!(driver.lock_free.load(Ordering::Relaxed), 1);

        // A reader claimed it: the reader gets it, the driver does not.
        assert!(h2wake.try_claim(4, &reader_waker));
        assert!(!h2wake.try_claim(8, &reader_waker), "one reader at a time");
        h2_waker.wake_by_ref();
        assert_eq!(reader.woken.load(Ordering::Relaxed), 1);
        assert_eq!(reader.lock_free.load(Ordering::Relaxed), 1);
        assert_eq!(driver.woken.load(Ordering::Relaxed), 1);

        // Batching output for the driver wakes it the same way, and marks it woken.
        h2wake.wake_driver();
        assert!(h2wake.driver_woken());
        assert_eq!(driver.woken.load(Ordering::Relaxed), 2);
        assert_eq!(driver.lock_free.load(Ordering::Relaxed), 2);

        // The reader leaves: wake-ups go back to the driver. h2 woke it since its claim, so
        // it must poll h2 once more.
        assert!(h2wake.clear_reader(4));
        h2_waker.wake_by_ref();
        assert_eq!(driver.woken.load(Ordering::Relaxed), 3);
        assert_eq!(reader.woken.load(Ordering::Relaxed), 1);
        assert!(!h2wake.clear_reader(4), "no longer the reader");
    }

    #[test]
    fn h2_is_polled_again_only_once_it_woke_us_after_saying_pending() {
        let (h2wake, h2_waker, ..) = wake_setup();
        // Never polled: poll.
        assert!(IdleMark::default().may_have_input(&h2wake));

        // Pending, and no wake-up since: nothing new, the registration stands.
        let idle = IdleMark(Some(h2wake.wakes()));
        assert!(!idle.may_have_input(&h2wake));
        // Any wake-up since (by reference or by value): poll again.
        h2_waker.wake_by_ref();
        assert!(idle.may_have_input(&h2wake));
        let idle = IdleMark(Some(h2wake.wakes()));
        let by_value = h2_waker.clone();
        by_value.wake();
        assert!(idle.may_have_input(&h2wake));

        // A wake-up between reading the count and h2's `Pending` counts too.
        let seen = h2wake.wakes();
        h2_waker.wake_by_ref();
        assert!(IdleMark(Some(seen)).may_have_input(&h2wake));

        // Wake-ups count whether they go to a reader or to the driver.
        let (_, reader_waker) = probe(&h2wake);
        assert!(h2wake.try_claim(4, &reader_waker));
        let idle = IdleMark(Some(h2wake.wakes()));
        h2_waker.wake_by_ref();
        assert!(idle.may_have_input(&h2wake));
    }

    #[test]
    fn a_reader_polls_h2_again_only_after_a_wake_up_since_its_claim() {
        let (h2wake, h2_waker, _driver, (reader, reader_waker)) = wake_setup();

        // Claimed and left without a wake-up: the registration its poll left in h2 stands.
        assert!(h2wake.try_claim(4, &reader_waker));
        assert!(!h2wake.clear_reader(4));

        // Woken, then claimed again (the woken reader's next poll, which polls h2): the
        // earlier wake-up is accounted for.
        assert!(h2wake.try_claim(4, &reader_waker));
        h2_waker.wake_by_ref();
        assert_eq!(reader.woken.load(Ordering::Relaxed), 1);
        assert!(h2wake.try_claim(4, &reader_waker));
        assert!(!h2wake.clear_reader(4));

        // A wake-up after the claim (during or after the reader's poll of h2), with another
        // waker or the same: poll again.
        assert!(h2wake.try_claim(8, &reader_waker));
        h2_waker.wake_by_ref();
        assert!(h2wake.clear_reader(8));
        // A refused claim leaves the reader's flag alone.
        assert!(h2wake.try_claim(8, &reader_waker));
        h2_waker.wake_by_ref();
        assert!(!h2wake.try_claim(12, &reader_waker));
        assert!(h2wake.clear_reader(8));
    }
}
