//! WebTransport sessions: the shared session state, the task that owns the CONNECT stream,
//! and the public [`Session`] handle.
//!
//! ```text
//!            2xx sent/received
//!   pending ───────────────────▶ open ──── close() / WT_CLOSE_SESSION / FIN / reset ───▶ ended
//!      │                          │                                                      ▲
//!      └── rejected ──▶ gone      └── connection lost / protocol error ──────────────────┘
//! ```
//!
//! The session task reads the CONNECT stream (DATA frames carrying capsules) and writes our
//! capsules. When the session ends it sends WT_CLOSE_SESSION and FIN (local close) or FIN
//! (peer close), waits — bounded — for the peer's side of the CONNECT stream, and for a client
//! then closes the QUIC connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wt_core::capsule::{Capsule, CapsuleDecoder, CapsuleOptions};
use wt_core::codes::{CapsuleType, H3Code};
use wt_core::{
    Dialect, FlowLimits, ProtocolError, SessionError, SessionInfo, SessionStats, WireCode,
};

use crate::close_hold::CloseHold;
use crate::conn::flow::{Credit, FlowError, SessionFlow};
use crate::driver::{varint, Conn, FrameReader, Incoming, ReadFail};
use crate::end::EndSignal;
use crate::proto::frame::{self, Frame};
use crate::proto::stream_type::{self, Role};
use crate::queue::{AcceptQueue, PushError};
use crate::stats::{Counter, Stats};
use crate::stream::{RecvStream, SendStream, Source};

#[derive(Default)]
struct Ctrl {
    /// `close` was called (see [`SessionShared::request_close`]).
    close: bool,
    /// What `close` could not write of its close capsule (all of it when another write was
    /// under way): the task writes it, then the FIN. `None` once `close` wrote it all and
    /// the FIN (see [`SessionShared::request_close`]).
    close_rest: Option<Bytes>,
    drain: bool,
    /// Abort the CONNECT stream with this code (a violation found outside the session task).
    abort: Option<H3Code>,
}

/// State shared by every handle of a session and its streams.
pub(crate) struct SessionShared {
    pub id: u64,
    pub conn: Arc<Conn>,
    pub info: SessionInfo,
    /// Set when the session ends: tested on every read and write, waited on by every blocked
    /// one (see [`EndSignal::or_end`]).
    pub end: EndSignal,
    reason: OnceLock<SessionError>,
    pub draining: CancellationToken,
    /// Peer-opened streams waiting for `accept_bi` / `accept_uni`.
    bidi: AcceptQueue<(quinn::SendStream, Source)>,
    uni: AcceptQueue<Source>,
    datagrams: Mutex<VecDeque<Bytes>>,
    /// Mirrors `datagrams.len()`, so a reader skips the lock when nothing is queued.
    dgram_queued: AtomicUsize,
    dgram_notify: Notify,
    /// This session reads the connection's datagrams straight from quinn
    /// ([`Conn::claim_datagrams`]).
    direct_datagrams: AtomicBool,
    /// Held by the one `recv_datagram` call that reads straight from quinn without the
    /// `dgram_notify` registration (see [`DirectReader`]); others wait on `dgram_notify`.
    direct_reader: AtomicBool,
    /// Woken with `dgram_notify` (end of session, mode switch, queued datagram) for the
    /// holder of `direct_reader`.
    direct_waker: AtomicWaker,
    ctrl: Mutex<Ctrl>,
    ctrl_notify: Notify,
    /// The CONNECT stream's send half (set when the session task starts), shared by the task
    /// and [`request_close`](Self::request_close).
    connect_send: Mutex<Option<ConnectSend>>,
    /// `close` was called: capsules not begun yet are not started (one begun is finished
    /// first, and `close` then leaves its own to the task).
    closing: AtomicBool,
    pub stats: Stats,
    /// The quarter-stream-ID prefix of our datagrams.
    dgram_prefix: Bytes,
    /// The headers of the bidirectional and unidirectional streams we open, encoded once (on
    /// first use) and shared by every stream.
    stream_headers: [OnceLock<Bytes>; 2],
    close_timeout: Duration,
    /// Peer streams reset before their preamble was read: stream → reset code.
    pre_reset: Mutex<rustc_hash::FxHashMap<quinn::StreamId, u64>>,
    /// Whether `pre_reset` may be non-empty (spares every stream a lock and a lookup).
    any_pre_reset: AtomicBool,
    /// Session flow control, when negotiated.
    flow: Option<Mutex<SessionFlow>>,
    /// Woken when our flow-control credit grows.
    flow_notify: Notify,
    /// WT_SESSION_GONE resets and stops of data streams, held while our close capsule is on
    /// its way.
    pub hold: Arc<CloseHold>,
}

/// Locks a std mutex, ignoring poisoning (nothing panics while holding these locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SessionShared {
    pub(crate) fn new(
        conn: Arc<Conn>,
        id: u64,
        dialect: Dialect,
        protocol: Option<String>,
        close_timeout: Duration,
        flow: Option<SessionFlow>,
    ) -> Arc<Self> {
        let info = SessionInfo {
            transport: wt_core::TransportKind::Http3,
            dialect,
            session_id: id,
            protocol,
            peer_addr: conn.quic.remote_address(),
            unreliable_datagrams: true,
        };
        let draining = CancellationToken::new();
        if conn.goaway.is_cancelled() {
            draining.cancel();
        }
        let shared = Arc::new(SessionShared {
            id,
            conn,
            info,
            end: EndSignal::default(),
            reason: OnceLock::new(),
            draining,
            bidi: AcceptQueue::new(wt_core::limits::MAX_PENDING_ACCEPT),
            uni: AcceptQueue::new(wt_core::limits::MAX_PENDING_ACCEPT),
            datagrams: Mutex::new(VecDeque::new()),
            dgram_queued: AtomicUsize::new(0),
            dgram_notify: Notify::new(),
            direct_datagrams: AtomicBool::new(false),
            direct_reader: AtomicBool::new(false),
            direct_waker: AtomicWaker::new(),
            ctrl: Mutex::new(Ctrl::default()),
            ctrl_notify: Notify::new(),
            connect_send: Mutex::new(None),
            closing: AtomicBool::new(false),
            stats: Stats::default(),
            dgram_prefix: stream_type::datagram_prefix(id),
            stream_headers: Default::default(),
            close_timeout,
            pre_reset: Mutex::new(Default::default()),
            any_pre_reset: AtomicBool::new(false),
            flow: flow.map(Mutex::new),
            flow_notify: Notify::new(),
            hold: Arc::default(),
        });
        if let Some(flow) = &shared.flow {
            // A window above the initial limits is granted at once (stored permit: the session
            // task picks it up when it starts).
            shared.kick_if_pending(&lock(flow));
        }
        shared
    }

    /// Wakes the session task when flow control has capsules to send.
    fn kick_if_pending(&self, f: &SessionFlow) {
        if f.clone().poll_capsule().is_some() {
            self.ctrl_notify.notify_one();
        }
    }

    /// Reserves up to `want` units of our credit, waiting while there is none (cancel safe:
    /// dropping the future or the reservation returns the credit). `None` without flow
    /// control: there is no credit to take, commit or give back, and callers go ahead with the
    /// whole amount.
    ///
    /// Every open and write of every stream comes through here, and the future sits inside
    /// theirs: credit that is there is taken at once (when called) and handed over as a ready
    /// future; only a wait for credit is a state machine, boxed, so that it does not make every
    /// read and write future as large as itself.
    pub(crate) fn acquire(
        &self,
        credit: Credit,
        want: u64,
    ) -> impl Future<Output = Result<Option<Reservation<'_>>, SessionError>> + '_ {
        let Some(flow) = &self.flow else {
            return Either::Left(std::future::ready(Ok(None)));
        };
        if self.is_ended() {
            return Either::Left(std::future::ready(Err(self.end_reason())));
        }
        if let Some(r) = self.take_credit(flow, credit, want) {
            return Either::Left(std::future::ready(Ok(Some(r))));
        }
        Either::Right(Box::pin(self.acquire_from(flow, credit, want)).map(|r| r.map(Some)))
    }

    /// Takes up to `want` units of credit if there is any (or `want` is 0); else asks the
    /// session task to tell the peer we are blocked.
    fn take_credit(
        &self,
        flow: &Mutex<SessionFlow>,
        credit: Credit,
        want: u64,
    ) -> Option<Reservation<'_>> {
        let mut f = lock(flow);
        let n = f.take(credit, want);
        if n > 0 || want == 0 {
            return Some(Reservation {
                shared: self,
                credit,
                n,
            });
        }
        self.kick_if_pending(&f);
        None
    }

    /// [`acquire`](Self::acquire) with flow control.
    async fn acquire_from(
        &self,
        flow: &Mutex<SessionFlow>,
        credit: Credit,
        want: u64,
    ) -> Result<Reservation<'_>, SessionError> {
        loop {
            let notified = self.flow_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_ended() {
                return Err(self.end_reason());
            }
            if let Some(r) = self.take_credit(flow, credit, want) {
                return Ok(r);
            }
            self.until_end(notified).await?;
        }
    }

    fn give_back(&self, credit: Credit, n: u64) {
        if let (Some(flow), true) = (&self.flow, n > 0) {
            lock(flow).give_back(credit, n);
            self.flow_notify.notify_waiters();
        }
    }

    /// Whether session flow control is on (peer stream data is then read ahead).
    pub(crate) fn has_flow_control(&self) -> bool {
        self.flow.is_some()
    }

    /// `n` payload bytes arrived from the peer (counted on arrival, against the limit we have
    /// advertised so far). `false` when that exceeds it: the session is then being aborted.
    pub(crate) fn on_peer_received(&self, n: u64) -> bool {
        let Some(flow) = &self.flow else {
            return true;
        };
        let r = lock(flow).on_received(Credit::Data, n);
        match r {
            Ok(()) => true,
            Err(e) => {
                self.flow_violation(e);
                false
            }
        }
    }

    /// `n` received payload bytes were consumed (read by the application, or dropped unread):
    /// their credit may be granted again.
    pub(crate) fn on_peer_consumed(&self, n: u64) {
        if let (Some(flow), true) = (&self.flow, n > 0) {
            let mut f = lock(flow);
            f.release(Credit::Data, n);
            self.kick_if_pending(&f);
        }
    }

    /// The peer opened a stream of this session. `false` when beyond its stream credit: the
    /// session is then being aborted.
    fn on_peer_stream(&self, credit: Credit) -> bool {
        let Some(flow) = &self.flow else {
            return true;
        };
        let r = lock(flow).on_received(credit, 1);
        match r {
            Ok(()) => true,
            Err(e) => {
                self.flow_violation(e);
                false
            }
        }
    }

    /// A peer-opened stream is done: its credit may be granted again.
    fn release_stream(&self, credit: Credit) {
        if let Some(flow) = &self.flow {
            let mut f = lock(flow);
            f.release(credit, 1);
            self.kick_if_pending(&f);
        }
    }

    /// Closes the session for a flow-control violation found outside the session task.
    fn flow_violation(&self, e: FlowError) {
        debug!(session = self.id, error = %e, "session flow-control violation");
        lock(&self.ctrl).abort = Some(H3Code::WT_FLOW_CONTROL_ERROR);
        self.terminate(SessionError::Protocol(ProtocolError::h3(
            H3Code::WT_FLOW_CONTROL_ERROR,
            "session flow-control violation",
        )));
    }

    /// Flow-control limits for `stats()`.
    fn flow_limits(&self) -> (Option<FlowLimits>, Option<FlowLimits>) {
        match &self.flow {
            Some(flow) => {
                let f = lock(flow);
                (Some(f.local_limits()), Some(f.peer_limits()))
            }
            None => (None, None),
        }
    }

    /// Why the session ended (or a generic reason if it has not).
    pub(crate) fn end_reason(&self) -> SessionError {
        self.reason
            .get()
            .cloned()
            .unwrap_or(SessionError::Connection(wt_core::ConnectionError::Reset))
    }

    /// Sends the data-stream resets held while our close capsule was on its way (see
    /// [`CloseHold`]); streams the peer opens for the session from now on are refused at once.
    fn release_hold(&self) {
        self.hold.release();
        self.conn.close_delivered(self.id);
    }

    /// Whether the session has ended (lock-free; the reason is set by then).
    pub(crate) fn is_ended(&self) -> bool {
        self.end.is_set()
    }

    /// Runs `op` unless the session ends first, then fails with why it ended (see
    /// [`EndSignal::or_end`]). A plain combinator, not an `async fn`, so `op` is held once.
    pub(crate) fn until_end<'a, F: Future + 'a>(
        &'a self,
        op: F,
    ) -> impl Future<Output = Result<F::Output, SessionError>> + 'a {
        self.end
            .or_end(op)
            .map(move |r| r.ok_or_else(|| self.end_reason()))
    }

    /// Ends the session (first reason wins).
    pub(crate) fn terminate(&self, reason: SessionError) {
        if self.reason.set(reason).is_ok() {
            debug!(session = self.id, reason = %self.end_reason(), "session ended");
        }
        self.end.set();
        // Out of the connection's table before the peer can see the end (a reset or FIN of
        // the CONNECT stream): its next CONNECT must not find this session still counted
        // against the connection's session limit.
        self.conn.unregister_closing(self.id, Some(&self.hold));
        self.draining.cancel();
        {
            let mut q = lock(&self.datagrams);
            q.clear();
            self.dgram_queued.store(0, Relaxed);
        }
        // Readers waiting on quinn directly wait on these, not on `ended`.
        self.dgram_notify.notify_waiters();
        self.direct_waker.wake();
        for (s, r) in self.bidi.close() {
            self.hold.reset(s);
            r.refuse_gone(self);
        }
        for r in self.uni.close() {
            r.refuse_gone(self);
        }
    }

    /// Hands an incoming stream to the accept queue, waiting for room (backpressure). With
    /// flow control its data is read ahead (and counted) from now on.
    pub(crate) async fn deliver(self: &Arc<Self>, stream: Incoming) {
        if let Some(a) = self.admit(stream) {
            self.queue(a).await;
        }
    }

    /// Whether the accept queue for new bidirectional (`bidi`) or unidirectional streams has
    /// room, so that [`deliver_now`](Self::deliver_now) takes no waiting.
    pub(crate) fn has_room(&self, bidi: bool) -> bool {
        if bidi {
            self.bidi.has_room()
        } else {
            self.uni.has_room()
        }
    }

    /// Hands an incoming stream (its halves and the payload read with its preamble) to its
    /// accept queue, which the caller saw [room](Self::has_room) in, as
    /// [`deliver`](Self::deliver) does without the waiting.
    pub(crate) fn deliver_now(self: &Arc<Self>, stream: Incoming) {
        if let Some(a) = self.admit(stream) {
            self.try_queue(a);
        }
    }

    /// Queues an admitted stream the caller saw room for. Should another producer have taken
    /// that room since (the intake, run by the driver or a waiting accept, and
    /// [`Conn::register`](crate::driver::Conn::register), whose overflow task is the only one
    /// that waits), the stream, already admitted and counted, waits for room in a task of its
    /// own.
    fn try_queue(self: &Arc<Self>, a: Admitted) {
        let pushed = match a {
            Admitted::Bidi(s, r) => self.bidi.try_push((s, r)).map_err(|e| match e {
                PushError::Closed((s, r)) => PushError::Closed(Admitted::Bidi(s, r)),
                PushError::Full((s, r)) => PushError::Full(Admitted::Bidi(s, r)),
            }),
            Admitted::Uni(r) => self.uni.try_push(r).map_err(|e| match e {
                PushError::Closed(r) => PushError::Closed(Admitted::Uni(r)),
                PushError::Full(r) => PushError::Full(Admitted::Uni(r)),
            }),
        };
        match pushed {
            Ok(()) => {}
            Err(PushError::Closed(a)) => a.refuse(self),
            Err(PushError::Full(a)) => {
                let session = self.clone();
                tokio::spawn(async move { session.queue(a).await });
            }
        }
    }

    /// Admits an incoming stream: it counts against the session's stream credit, and with
    /// flow control its data is read ahead from now on. `None` when it was refused (the
    /// session has ended, or the peer exceeded its stream credit).
    fn admit(self: &Arc<Self>, stream: Incoming) -> Option<Admitted> {
        let credit = match &stream {
            Incoming::Bidi(..) => Credit::Bidi,
            Incoming::Uni(..) => Credit::Uni,
        };
        if !self.admits(credit) {
            self.hold.refuse(stream);
            return None;
        }
        Some(match stream {
            Incoming::Bidi(s, r, prefix) => Admitted::Bidi(s, Source::new(r, prefix, self)),
            Incoming::Uni(r, prefix) => Admitted::Uni(Source::new(r, prefix, self)),
        })
    }

    /// Whether a new peer stream of kind `credit` is admitted, counting it against the
    /// session's stream credit: not once the session has ended, nor beyond the credit (which
    /// aborts the session).
    fn admits(&self, credit: Credit) -> bool {
        !self.is_ended() && self.on_peer_stream(credit)
    }

    /// Queues an admitted stream, waiting for room; a closed queue (the session ended) hands
    /// it back to be refused.
    async fn queue(&self, a: Admitted) {
        match a {
            Admitted::Bidi(s, r) => {
                if let Err((s, r)) = self.bidi.push((s, r)).await {
                    Admitted::Bidi(s, r).refuse(self);
                }
            }
            Admitted::Uni(r) => {
                if let Err(r) = self.uni.push(r).await {
                    Admitted::Uni(r).refuse(self);
                }
            }
        }
    }

    /// Records that the peer reset stream `id` before its preamble could be read.
    pub(crate) fn note_pre_reset(&self, id: quinn::StreamId, code: u64) {
        lock(&self.pre_reset).insert(id, code);
        self.any_pre_reset.store(true, Ordering::Release);
    }

    /// Takes the pre-preamble reset code of stream `id`, if any.
    pub(crate) fn take_pre_reset(&self, id: quinn::StreamId) -> Option<u64> {
        if !self.any_pre_reset.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.pre_reset).remove(&id)
    }

    /// Queues a received datagram, dropping the oldest past the limit.
    pub(crate) fn push_datagram(&self, d: Bytes) {
        if self.is_ended() {
            return;
        }
        {
            let mut q = lock(&self.datagrams);
            if q.len() >= wt_core::limits::MAX_PENDING_DATAGRAMS {
                q.pop_front();
            }
            q.push_back(d);
            self.dgram_queued.store(q.len(), Relaxed);
        }
        self.stats.add(Counter::DatagramsReceived, 1);
        self.dgram_notify.notify_one();
        self.direct_waker.wake();
    }

    /// Takes the oldest queued datagram (no lock when none is queued).
    fn pop_datagram(&self) -> Option<Bytes> {
        if self.dgram_queued.load(Relaxed) == 0 {
            return None;
        }
        let mut q = lock(&self.datagrams);
        let d = q.pop_front();
        self.dgram_queued.store(q.len(), Relaxed);
        d
    }

    /// `prefix + payload` as one `Bytes`, cut from this thread's datagram arena.
    fn datagram_frame(&self, payload: &[u8]) -> Bytes {
        let need = self.dgram_prefix.len() + payload.len();
        DATAGRAM_OUT.with(|out| {
            let mut b = out.borrow_mut();
            if b.capacity() < need {
                // A fresh arena, or the old one again once every datagram cut from it is gone.
                b.reserve(need.max(DATAGRAM_ARENA));
            }
            b.extend_from_slice(&self.dgram_prefix);
            b.extend_from_slice(payload);
            b.split().freeze()
        })
    }

    /// The header of a stream we open (shared, encoded once per session and direction).
    pub(crate) fn stream_header(&self, bidi: bool) -> &Bytes {
        self.stream_headers[usize::from(bidi)]
            .get_or_init(|| stream_type::wt_stream_header(bidi, self.id))
    }

    /// Switches direct datagram reading on or off (by the connection, under its lock); a
    /// reader waiting in `recv_datagram` wakes up to look again.
    pub(crate) fn set_direct_datagrams(&self, on: bool) {
        self.direct_datagrams.store(on, Ordering::Release);
        self.dgram_notify.notify_one();
        self.direct_waker.wake();
    }

    /// Whether a direct reader must stop waiting on quinn and look again: the session ended,
    /// direct reading was revoked, or a datagram was queued for it meanwhile.
    fn direct_read_interrupted(&self) -> bool {
        self.is_ended()
            || !self.direct_datagrams.load(Ordering::Acquire)
            || self.dgram_queued.load(Relaxed) > 0
    }

    /// One datagram straight from quinn for the holder of `direct_reader`: `Ok(None)` when
    /// interrupted (see [`direct_read_interrupted`](Self::direct_read_interrupted)), `Err`
    /// when the connection is gone. Registers with `direct_waker` (no lock) instead of
    /// `dgram_notify`.
    async fn read_direct(&self, _claim: &DirectReader<'_>) -> Result<Option<Bytes>, ()> {
        let mut read = std::pin::pin!(self.conn.quic.read_datagram());
        std::future::poll_fn(|cx| {
            self.direct_waker.register(cx.waker());
            // Checked after registering: a change from now on wakes this task.
            if self.direct_read_interrupted() {
                return std::task::Poll::Ready(Ok(None));
            }
            read.as_mut().poll(cx).map(|r| r.map(Some).map_err(|_| ()))
        })
        .await
    }

    /// A datagram read straight from quinn: its payload when it is this session's, else
    /// `None` after routing it (another session's, or malformed).
    fn take_direct(&self, mut d: Bytes) -> Option<Bytes> {
        match stream_type::datagram_payload(&d, self.id) {
            Some(n) => {
                d.advance(n);
                self.stats.add(Counter::DatagramsReceived, 1);
                Some(d)
            }
            None => {
                self.conn.route_datagram(d);
                None
            }
        }
    }

    /// Claims the lock-free direct reader role, if no other `recv_datagram` holds it.
    fn claim_direct_reader(&self) -> Option<DirectReader<'_>> {
        // `then`, not `then_some`: a guard built for a failed claim would release the role
        // of its holder when dropped.
        (!self.direct_reader.swap(true, Ordering::Acquire)).then(|| DirectReader(self))
    }

    fn request_drain(&self) {
        lock(&self.ctrl).drain = true;
        self.ctrl_notify.notify_one();
    }

    /// Closes the session: the close capsule and FIN go into the CONNECT stream here, before
    /// [`terminate`](Self::terminate) resets the data streams, whenever the stream takes them
    /// at once (no other capsule half-written, flow control not exhausted); the session task
    /// writes what is left. Queued after the resets, the capsule can reach the peer later
    /// than they do, and Chromium then rejects `closed` with "Connection lost" instead of
    /// reporting the code and reason (about one run in fourteen of the interop check).
    fn request_close(&self, code: u32, reason: String) {
        self.hold.begin();
        self.closing.store(true, Ordering::Release);
        let frame = data_frame_with(&Capsule::CloseSession {
            code,
            reason: reason.clone(),
        });
        let rest = self.write_close_now(frame);
        {
            let mut c = lock(&self.ctrl);
            c.close = true;
            c.close_rest = rest;
        }
        self.terminate(SessionError::ClosedLocally { code, reason });
    }

    /// Writes what the CONNECT stream takes of `frame` without waiting, then the FIN if all
    /// of it went; returns what is left for the session task (`None`: all written).
    fn write_close_now(&self, mut frame: Bytes) -> Option<Bytes> {
        let mut guard = lock(&self.connect_send);
        let Some(cs) = guard.as_mut().filter(|cs| !cs.writing) else {
            return Some(frame);
        };
        match cs.poll_write_all(&mut Context::from_waker(Waker::noop()), &mut frame) {
            Poll::Ready(true) => {
                let _ = cs.send.finish();
                None
            }
            // Blocked, or the stream is gone (the task finds out itself).
            _ => Some(frame),
        }
    }
}

/// The direct reader role of a session, released when dropped (also when the
/// `recv_datagram` future holding it is dropped).
struct DirectReader<'a>(&'a SessionShared);

impl Drop for DirectReader<'_> {
    fn drop(&mut self) {
        self.0.direct_reader.store(false, Ordering::Release);
    }
}

/// Flow-control credit taken from the session; what is not [`commit`](Self::commit)ted is
/// given back when dropped.
pub(crate) struct Reservation<'a> {
    shared: &'a SessionShared,
    credit: Credit,
    /// Units reserved.
    pub n: u64,
}

impl Reservation<'_> {
    /// `used` units (at most the reserved amount) were spent; the rest goes back.
    pub(crate) fn commit(mut self, used: u64) {
        self.n -= used.min(self.n);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.shared.give_back(self.credit, self.n);
    }
}

/// A peer stream admitted to its session ([`SessionShared::admit`]), on its way to the
/// accept queue.
enum Admitted {
    Bidi(quinn::SendStream, Source),
    Uni(Source),
}

impl Admitted {
    /// Refuses a stream whose session ended before it could be queued.
    fn refuse(self, session: &SessionShared) {
        match self {
            Admitted::Bidi(s, r) => {
                session.hold.reset(s);
                r.refuse_gone(session);
            }
            Admitted::Uni(r) => r.refuse_gone(session),
        }
    }
}

/// The wait of `accept_bi` for a session's next bidirectional stream. While it waits, the
/// connection's [intake](crate::intake) sends its wake-ups to its task rather than the
/// driver's, and on such a wake-up it runs the intake itself: a new stream is accepted
/// from quinn, routed and taken in one turn of the accepting task.
struct AcceptBidi<'a> {
    shared: &'a Arc<SessionShared>,
    pop: crate::queue::Pop<'a, (quinn::SendStream, Source)>,
    /// Its registration with the intake, while it waits.
    waiting: Option<u64>,
}

impl Future for AcceptBidi<'_> {
    type Output = Option<(quinn::SendStream, Source)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let conn = &this.shared.conn;
        // Whether a wake-up of the intake came to this wait.
        let woken = this
            .waiting
            .take()
            .is_some_and(|id| !conn.intake.withdraw(id));
        // The intake runs here only for a wake-up it sent: whatever came before this wait
        // registered went to the driver, which has routed it or is routing it. So an accept
        // polled once and dropped (a `select!` loop that recreates it on every turn) costs
        // no run of the intake.
        let sole = conn.is_sole(this.shared.id);
        if woken && sole {
            // Out of the queue's waiters, so that streams the intake routes to this session
            // now do not wake this task for nothing; the poll below finds them.
            this.pop.withdraw_quietly();
            conn.intake.run(conn);
        } else if woken {
            conn.intake.wake_driver();
        }
        let r = Pin::new(&mut this.pop).poll(cx);
        if sole && r.is_pending() {
            let id = conn.intake.wait(cx.waker());
            // Should another session have come meanwhile, its update (which withdraws the
            // waiting accept) either ran after this registration, or before, and shows here.
            if conn.is_sole(this.shared.id) {
                this.waiting = Some(id);
            } else {
                conn.intake.hand_back(id);
            }
        }
        r
    }
}

impl Drop for AcceptBidi<'_> {
    fn drop(&mut self) {
        // A wake-up that came for this wait and was not acted on goes to the driver.
        if let Some(id) = self.waiting.take() {
            self.shared.conn.intake.hand_back(id);
        }
    }
}

/// Held by both halves of a stream the peer opened; when the last half is dropped the stream
/// counts as closed and its stream credit is granted again.
pub(crate) struct PeerStreamSlot {
    shared: Arc<SessionShared>,
    credit: Credit,
}

impl PeerStreamSlot {
    fn new(shared: &Arc<SessionShared>, credit: Credit) -> Option<Arc<Self>> {
        shared.flow.as_ref()?;
        Some(Arc::new(PeerStreamSlot {
            shared: shared.clone(),
            credit,
        }))
    }
}

impl Drop for PeerStreamSlot {
    fn drop(&mut self) {
        self.shared.release_stream(self.credit);
    }
}

/// Capsule types the session task looks at; everything else is skipped.
fn capsule_filter(ty: CapsuleType) -> bool {
    ty == CapsuleType::WT_CLOSE_SESSION
        || ty == CapsuleType::WT_DRAIN_SESSION
        || ty == CapsuleType::WT_MAX_STREAM_DATA
        || ty == CapsuleType::WT_STREAM_DATA_BLOCKED
        || ty == CapsuleType::WT_MAX_DATA
        || ty == CapsuleType::WT_MAX_STREAMS_BIDI
        || ty == CapsuleType::WT_MAX_STREAMS_UNI
        || ty == CapsuleType::WT_DATA_BLOCKED
        || ty == CapsuleType::WT_STREAMS_BLOCKED_BIDI
        || ty == CapsuleType::WT_STREAMS_BLOCKED_UNI
}

/// Size of the allocation outgoing datagrams are cut from (about sixty full-size ones; the
/// allocation is freed when the last of them has been sent).
const DATAGRAM_ARENA: usize = 64 * 1024;

thread_local! {
    /// Where outgoing datagrams are assembled (prefix + payload) and split off, so a burst of
    /// sends shares an allocation of [`DATAGRAM_ARENA`] bytes instead of taking one each. One
    /// per thread (no lock; at most one arena kept per thread, not per session); a frame is
    /// never borrowed across an await.
    static DATAGRAM_OUT: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Largest capsule the session task buffers (a close capsule is at most 1028 bytes).
const MAX_CONTROL_CAPSULE: usize = 4096;

fn data_frame_with(c: &Capsule) -> Bytes {
    data_frame_with_all(std::slice::from_ref(c))
}

/// One DATA frame carrying `caps`.
fn data_frame_with_all(caps: &[Capsule]) -> Bytes {
    let mut cap = BytesMut::new();
    for c in caps {
        // Encoding our own capsules cannot fail: reasons are checked before.
        let _ = c.encode(&CapsuleOptions::default(), &mut cap);
    }
    let mut out = BytesMut::new();
    frame::encode_frame(frame::DATA, &cap, &mut out);
    out.freeze()
}

/// The CONNECT stream's send half, shared by the session task and `close`.
struct ConnectSend {
    send: quinn::SendStream,
    /// A capsule is half-written: nobody else writes until it is done.
    writing: bool,
}

impl ConnectSend {
    /// Writes `data` (consumed as it goes) as far as the stream takes it: `true` once all is
    /// written, `false` if the stream failed. [`writing`](Self::writing) is set while a part
    /// is out and the rest is not.
    fn poll_write_all(&mut self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<bool> {
        while !data.is_empty() {
            match Pin::new(&mut self.send).poll_write(cx, data) {
                Poll::Ready(Ok(n)) => {
                    self.writing = true;
                    data.advance(n);
                }
                Poll::Ready(Err(_)) => {
                    self.writing = false;
                    return Poll::Ready(false);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.writing = false;
        Poll::Ready(true)
    }
}

enum PeerEnd {
    /// Close capsule (or FIN) received and the session terminated.
    Closed,
    /// We reset/aborted the CONNECT stream.
    Aborted,
    /// The peer reset the CONNECT stream, or the connection went away.
    Gone,
}

struct Task {
    shared: Arc<SessionShared>,
    reader: FrameReader,
    caps: CapsuleDecoder,
    cbuf: BytesMut,
}

impl Task {
    fn abort(&mut self, code: H3Code, what: &'static str) -> PeerEnd {
        // Ended (and unregistered) before the peer can see it.
        self.shared
            .terminate(SessionError::Protocol(ProtocolError::h3(code, what)));
        self.send_reset(code.0);
        let _ = self.reader.recv.stop(varint(code.0));
        PeerEnd::Aborted
    }

    fn conn_error(&mut self, e: ProtocolError) -> PeerEnd {
        self.shared.conn.fail(e.clone());
        self.shared.terminate(SessionError::Protocol(e));
        PeerEnd::Gone
    }

    /// Processes one frame-read result; `Some` when the CONNECT stream is done.
    fn on_frame(&mut self, r: Result<Option<Frame>, ReadFail>) -> Option<PeerEnd> {
        match r {
            Ok(Some(Frame::Data(d))) => {
                self.cbuf.extend_from_slice(&d);
                self.on_capsules()
            }
            Ok(Some(Frame::WtStream)) => Some(self.conn_error(ProtocolError::h3(
                H3Code::H3_FRAME_ERROR,
                "WT_STREAM signal after HEADERS",
            ))),
            Ok(Some(_)) => Some(self.conn_error(ProtocolError::h3(
                H3Code::H3_FRAME_UNEXPECTED,
                "unexpected frame on the CONNECT stream",
            ))),
            Ok(None) => {
                if self.caps.finish(&self.cbuf).is_err() {
                    return Some(self.abort(
                        H3Code::H3_MESSAGE_ERROR,
                        "capsule truncated by end of stream",
                    ));
                }
                self.shared.terminate(SessionError::ClosedByPeer {
                    code: 0,
                    reason: String::new(),
                });
                Some(PeerEnd::Closed)
            }
            Err(ReadFail::Proto(e)) => Some(self.conn_error(e)),
            Err(ReadFail::Read(quinn::ReadError::Reset(code))) => {
                self.shared
                    .terminate(SessionError::ResetByPeer(WireCode::H3(H3Code(
                        code.into_inner(),
                    ))));
                Some(PeerEnd::Gone)
            }
            Err(ReadFail::Read(quinn::ReadError::ConnectionLost(e))) => {
                let e = self.shared.conn.map_error(&e);
                self.shared.terminate(SessionError::Connection(e));
                Some(PeerEnd::Gone)
            }
            Err(ReadFail::Read(_)) => {
                self.shared
                    .terminate(SessionError::Connection(wt_core::ConnectionError::Reset));
                Some(PeerEnd::Gone)
            }
        }
    }

    fn on_capsules(&mut self) -> Option<PeerEnd> {
        loop {
            let raw = match self.caps.decode(&mut self.cbuf) {
                Ok(Some(raw)) => raw,
                Ok(None) => return None,
                Err(_) => return Some(self.abort(H3Code::H3_MESSAGE_ERROR, "malformed capsule")),
            };
            match Capsule::parse(raw, &CapsuleOptions::default()) {
                Ok(Capsule::CloseSession { code, reason }) => {
                    self.shared
                        .terminate(SessionError::ClosedByPeer { code, reason });
                    if !self.cbuf.is_empty() {
                        self.send_reset(H3Code::H3_MESSAGE_ERROR.0);
                        let _ = self.reader.recv.stop(varint(H3Code::H3_MESSAGE_ERROR.0));
                        return Some(PeerEnd::Aborted);
                    }
                    return Some(PeerEnd::Closed);
                }
                Ok(Capsule::DrainSession) => {
                    debug!(session = self.shared.id, "peer asked to drain");
                    self.shared.draining.cancel();
                }
                Ok(Capsule::MaxStreamData { .. }) | Ok(Capsule::StreamDataBlocked { .. }) => {
                    return Some(self.abort(
                        H3Code::H3_MESSAGE_ERROR,
                        "WT_MAX_STREAM_DATA / WT_STREAM_DATA_BLOCKED over HTTP/3",
                    ))
                }
                Ok(
                    c @ (Capsule::MaxData(_)
                    | Capsule::MaxStreamsBidi(_)
                    | Capsule::MaxStreamsUni(_)),
                ) => {
                    // Without negotiated flow control these are ignored.
                    let Some(flow) = &self.shared.flow else {
                        continue;
                    };
                    let r = lock(flow).on_capsule(&c);
                    match r {
                        Ok(true) => self.shared.flow_notify.notify_waiters(),
                        Ok(false) => {}
                        Err(e) => {
                            debug!(session = self.shared.id, error = %e, "peer flow-control error");
                            return Some(self.abort(
                                H3Code::WT_FLOW_CONTROL_ERROR,
                                "invalid WT_MAX_DATA / WT_MAX_STREAMS",
                            ));
                        }
                    }
                }
                Ok(
                    c @ (Capsule::DataBlocked(_)
                    | Capsule::StreamsBlockedBidi(_)
                    | Capsule::StreamsBlockedUni(_)),
                ) => {
                    // Advisory: we grant credit as data is consumed and streams close.
                    tracing::trace!(session = self.shared.id, capsule = ?c, "peer is blocked");
                }
                Ok(_) => {}
                Err(_) => {
                    return Some(self.abort(H3Code::H3_MESSAGE_ERROR, "malformed capsule"));
                }
            }
        }
    }

    /// After the peer's close capsule: the stream must end with nothing more.
    async fn await_peer_fin(&mut self) {
        let t = self.shared.close_timeout;
        let r = tokio::time::timeout(t, async {
            loop {
                match self.reader.next().await {
                    Ok(Some(Frame::Data(d))) if d.is_empty() => {}
                    Ok(Some(_)) => return false,
                    Ok(None) => return true,
                    Err(_) => return true,
                }
            }
        })
        .await;
        if r == Ok(false) {
            self.send_reset(H3Code::H3_MESSAGE_ERROR.0);
            let _ = self.reader.recv.stop(varint(H3Code::H3_MESSAGE_ERROR.0));
        }
    }

    /// Writes `data` to the CONNECT stream (bounded by the close timeout). The stream is
    /// locked for each poll only, and marked as being written between the first and the last
    /// byte, so `close` does not put its capsule in the middle of this one. Once `close` was
    /// called, only the rest of its capsule (`close_rest`) or a write already begun goes on.
    async fn write_data(&mut self, mut data: Bytes, close_rest: bool) -> bool {
        let t = self.shared.close_timeout;
        let shared = &self.shared;
        let len = data.len();
        let write = std::future::poll_fn(|cx| {
            let mut guard = lock(&shared.connect_send);
            let Some(cs) = guard.as_mut() else {
                return Poll::Ready(false);
            };
            // Not begun yet (nothing of `data` written): not started once closing.
            if !close_rest && data.len() == len && shared.closing.load(Ordering::Acquire) {
                return Poll::Ready(false);
            }
            cs.poll_write_all(cx, &mut data)
        });
        matches!(tokio::time::timeout(t, write).await, Ok(true))
    }

    fn send_reset(&self, code: u64) {
        if let Some(cs) = lock(&self.shared.connect_send).as_mut() {
            let _ = cs.send.reset(varint(code));
        }
    }

    fn send_finish(&self) {
        if let Some(cs) = lock(&self.shared.connect_send).as_mut() {
            let _ = cs.send.finish();
        }
    }

    /// Resolves once the peer has all of the CONNECT stream's data, or stopped it.
    fn send_stopped(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>>>
    {
        lock(&self.shared.connect_send)
            .as_ref()
            .map(|cs| cs.send.stopped())
    }

    async fn run(mut self) {
        let mut end = None;
        while end.is_none() {
            let notified = self.shared.ctrl_notify.notified();
            tokio::select! {
                biased;
                _ = self.shared.end.wait() => break,
                _ = notified => {
                    let mut caps = Vec::new();
                    if std::mem::take(&mut lock(&self.shared.ctrl).drain) {
                        caps.push(Capsule::DrainSession);
                    }
                    if let Some(flow) = &self.shared.flow {
                        let mut f = lock(flow);
                        caps.extend(std::iter::from_fn(|| f.poll_capsule()));
                    }
                    if !caps.is_empty() {
                        let _ = self.write_data(data_frame_with_all(&caps), false).await;
                    }
                }
                r = self.reader.next() => end = self.on_frame(r),
            }
        }
        let (local_close, close_rest, abort) = {
            let mut c = lock(&self.shared.ctrl);
            (c.close, c.close_rest.take(), c.abort.take())
        };
        if let (None, Some(code)) = (&end, abort) {
            self.send_reset(code.0);
            let _ = self.reader.recv.stop(varint(code.0));
            end = Some(PeerEnd::Aborted);
        }
        match (end, local_close) {
            (None, true) => {
                // We closed: capsule and FIN (written by `close` unless it left some of it),
                // then wait for the peer's side.
                let written = match close_rest {
                    None => true,
                    Some(rest) => {
                        let ok = self.write_data(rest, true).await;
                        if ok {
                            self.send_finish();
                        }
                        ok
                    }
                };
                if written {
                    // Data-stream resets wait until the peer has the capsule and the FIN
                    // (see `close_hold`).
                    if let Some(stopped) = self.send_stopped() {
                        let _ = tokio::time::timeout(self.shared.close_timeout, stopped).await;
                    }
                    self.shared.release_hold();
                    self.await_peer_fin().await;
                }
            }
            (None, false) => {
                // Ended from outside (connection lost or failed).
                self.send_reset(H3Code::WT_SESSION_GONE.0);
                let _ = self.reader.recv.stop(varint(H3Code::WT_SESSION_GONE.0));
            }
            (Some(PeerEnd::Closed), _) => {
                self.send_finish();
                self.await_peer_fin().await;
            }
            (Some(PeerEnd::Gone), _) => {
                self.send_reset(H3Code::WT_SESSION_GONE.0);
            }
            (Some(PeerEnd::Aborted), _) => {}
        }
        // Whatever ended the session, nothing stays held (a no-op unless a close that was
        // not written is held).
        self.shared.release_hold();
        let conn = self.shared.conn.clone();
        conn.unregister(self.shared.id);
        if conn.role == Role::Client {
            // Let our last bytes of the CONNECT stream be acknowledged, then close.
            if let Some(stopped) = self.send_stopped() {
                let _ = tokio::time::timeout(self.shared.close_timeout, stopped).await;
            }
            conn.close_ok();
        }
    }
}

/// Starts the task that owns the CONNECT stream of an established session.
pub(crate) fn spawn_session_task(
    shared: Arc<SessionShared>,
    send: quinn::SendStream,
    reader: FrameReader,
) {
    *lock(&shared.connect_send) = Some(ConnectSend {
        send,
        writing: false,
    });
    let task = Task {
        shared,
        reader,
        caps: CapsuleDecoder::with_filter(MAX_CONTROL_CAPSULE, capsule_filter),
        cbuf: BytesMut::new(),
    };
    tokio::spawn(task.run());
}

/// Closes the session (code 0) when the last application handle is dropped.
struct HandleGuard(Arc<SessionShared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        if !self.0.is_ended() {
            self.0.request_close(0, String::new());
        }
    }
}

/// An established WebTransport session over HTTP/3. Cheap to clone; dropping the last clone
/// closes the session with code 0.
///
/// # Accepting streams
///
/// On a connection that carries one session at a time (every client connection; a server
/// connection whose session limit is one, as it is without WebTransport flow control), a
/// waiting
/// [`accept_bi`](wt_core::Session::accept_bi) accepts new bidirectional streams from QUIC
/// itself, in its own task, which saves a task wake-up per stream. While such an accept
/// future is kept but not polled (pinned across the iterations of a `select!` loop whose
/// other branch is busy), a surplus CONNECT or plain HTTP request on the same connection is
/// answered only once the future is polled again or dropped; the session's own streams wait
/// as they would anyway. Dropping the future, or polling it, hands the work back.
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.shared.id)
            .field("dialect", &self.shared.info.dialect)
            .field("peer", &self.shared.info.peer_addr)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<SessionShared>) -> Self {
        Session {
            _guard: Arc::new(HandleGuard(shared.clone())),
            shared,
        }
    }

    /// The subprotocol the server selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.info.protocol.as_deref()
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.shared.info.dialect
    }

    /// The session ID (the CONNECT stream's QUIC stream ID).
    pub fn session_id(&self) -> u64 {
        self.shared.id
    }

    /// The current round-trip time estimate of the QUIC connection.
    pub fn rtt(&self) -> std::time::Duration {
        self.shared.conn.quic.rtt()
    }

    /// Statistics of the QUIC connection under the session: packets and bytes sent, lost
    /// and received, frames by type, the path's congestion window and RTT. They count the
    /// whole connection: every session it carries, and HTTP/3's own streams.
    ///
    /// ```no_run
    /// # async fn f(session: wt_h3::Session) {
    /// let stats = session.quic_stats();
    /// println!(
    ///     "{} packets lost of {} sent, congestion window {} bytes",
    ///     stats.path.lost_packets, stats.path.sent_packets, stats.path.cwnd
    /// );
    /// # }
    /// ```
    pub fn quic_stats(&self) -> quinn::ConnectionStats {
        self.shared.conn.quic.stats()
    }

    fn check_open(&self) -> Result<(), SessionError> {
        if self.shared.is_ended() {
            Err(self.shared.end_reason())
        } else {
            Ok(())
        }
    }

    /// Hands a framed datagram (prefix + `size` payload bytes) to quinn, which checks the
    /// size (nothing is sent when too large; the limit is only looked up to report it).
    fn send_frame(&self, frame: Bytes, size: usize) -> Result<(), SessionError> {
        match self.shared.conn.quic.send_datagram(frame) {
            Ok(()) => {
                self.shared.stats.add(Counter::DatagramsSent, 1);
                Ok(())
            }
            Err(quinn::SendDatagramError::TooLarge) => Err(SessionError::DatagramTooLarge {
                size,
                max: wt_core::Session::max_datagram_size(self).unwrap_or(0),
            }),
            Err(quinn::SendDatagramError::ConnectionLost(e)) => Err(self.lost(e)),
            Err(_) => Err(SessionError::DatagramsUnsupported),
        }
    }

    /// quinn reported the connection gone while reading datagrams: waits for the session to
    /// end with it (the driver records why) and reports that.
    async fn connection_gone(&self) -> SessionError {
        self.shared.end.wait().await;
        self.shared.end_reason()
    }

    fn lost(&self, e: quinn::ConnectionError) -> SessionError {
        if self.shared.is_ended() {
            return self.shared.end_reason();
        }
        SessionError::Connection(self.shared.conn.map_error(&e))
    }
}

impl wt_core::Session for Session {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        self.check_open()?;
        let credit = self.shared.acquire(Credit::Bidi, 1).await?;
        // The open is usually ready at once, and then the session's end is not watched.
        let (send, recv) = self
            .shared
            .until_end(self.shared.conn.quic.open_bi())
            .await?
            .map_err(|e| self.lost(e))?;
        // From here on the stream counts. Its header goes out with the first payload.
        if let Some(credit) = credit {
            credit.commit(1);
        }
        self.shared.stats.add(Counter::BidiLocal, 1);
        Ok((
            SendStream::new(send, self.shared.clone()).with_header(),
            RecvStream::new(
                Source::new(recv, Bytes::new(), &self.shared),
                self.shared.clone(),
            ),
        ))
    }

    async fn open_uni(&self) -> Result<SendStream, SessionError> {
        self.check_open()?;
        let credit = self.shared.acquire(Credit::Uni, 1).await?;
        let send = self
            .shared
            .until_end(self.shared.conn.quic.open_uni())
            .await?
            .map_err(|e| self.lost(e))?;
        if let Some(credit) = credit {
            credit.commit(1);
        }
        self.shared.stats.add(Counter::UniLocal, 1);
        Ok(SendStream::new(send, self.shared.clone()).with_header())
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        self.check_open()?;
        let Some((send, recv)) = (AcceptBidi {
            shared: &self.shared,
            pop: self.shared.bidi.pop(),
            waiting: None,
        })
        .await
        else {
            return Err(self.shared.end_reason());
        };
        self.shared.stats.add(Counter::BidiRemote, 1);
        let slot = PeerStreamSlot::new(&self.shared, Credit::Bidi);
        Ok((
            SendStream::new(send, self.shared.clone()).with_slot(slot.clone()),
            RecvStream::new(recv, self.shared.clone()).with_slot(slot),
        ))
    }

    async fn accept_uni(&self) -> Result<RecvStream, SessionError> {
        self.check_open()?;
        let Some(recv) = self.shared.uni.pop().await else {
            return Err(self.shared.end_reason());
        };
        self.shared.stats.add(Counter::UniRemote, 1);
        let slot = PeerStreamSlot::new(&self.shared, Credit::Uni);
        Ok(RecvStream::new(recv, self.shared.clone()).with_slot(slot))
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        self.check_open()?;
        let frame = self.shared.datagram_frame(&data);
        self.send_frame(frame, data.len())
    }

    fn datagram_headroom(&self) -> usize {
        self.shared.dgram_prefix.len()
    }

    fn send_datagram_with_headroom(
        &self,
        mut frame: BytesMut,
        headroom: usize,
    ) -> Result<(), SessionError> {
        let prefix = &self.shared.dgram_prefix;
        if headroom < prefix.len() || headroom > frame.len() {
            // Too little room (copied) or too much (refused): the trait's way.
            let payload = wt_core::transport::payload_after(frame, headroom)?;
            return self.send_datagram(payload);
        }
        self.check_open()?;
        let size = frame.len() - headroom;
        let start = headroom - prefix.len();
        frame[start..headroom].copy_from_slice(prefix);
        let mut frame = frame.freeze();
        frame.advance(start);
        self.send_frame(frame, size)
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        let shared = &self.shared;
        loop {
            // Created before the checks, so the end of the session (`notify_waiters` in
            // `terminate`) reaches it; pushes use notify_one, which leaves a permit. Creating it
            // registers nothing: the direct reader below drops it unpolled, at no cost.
            let notified = shared.dgram_notify.notified();
            if let Some(d) = shared.pop_datagram() {
                return Ok(d);
            }
            self.check_open()?;
            let direct = shared.direct_datagrams.load(Ordering::Acquire)
                || shared.conn.claim_datagrams(shared);
            if direct {
                // The fast path: straight from quinn, no task hop, no queue, and (for the
                // one reader holding the role) no waiter list to join and leave per datagram.
                if let Some(claim) = shared.claim_direct_reader() {
                    match shared.read_direct(&claim).await {
                        Ok(Some(d)) => match shared.take_direct(d) {
                            Some(d) => return Ok(d),
                            None => continue,
                        },
                        Ok(None) => continue,
                        Err(()) => return Err(self.connection_gone().await),
                    }
                }
            }
            if !direct {
                shared.until_end(notified).await?;
                continue;
            }
            // Another reader holds the direct role: read from quinn too, waking on
            // `dgram_notify` for the end of the session (see `terminate`) and mode switches.
            tokio::select! {
                biased;
                r = shared.conn.quic.read_datagram() => match r {
                    Ok(d) => if let Some(d) = shared.take_direct(d) {
                        return Ok(d);
                    },
                    Err(_) => return Err(self.connection_gone().await),
                },
                _ = notified => {}
            }
        }
    }

    fn max_datagram_size(&self) -> Option<usize> {
        let max = self.shared.conn.quic.max_datagram_size()?;
        Some(max.saturating_sub(self.shared.dgram_prefix.len()))
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        if reason.len() > wt_core::capsule::MAX_CLOSE_REASON {
            return Err(SessionError::ReasonTooLong(reason.len()));
        }
        if self.shared.is_ended() {
            return Ok(());
        }
        self.shared.request_close(code, reason.to_owned());
        Ok(())
    }

    fn drain(&self) -> Result<(), SessionError> {
        self.check_open()?;
        self.shared.request_drain();
        Ok(())
    }

    async fn closed(&self) -> SessionError {
        self.shared.end.wait().await;
        self.shared.end_reason()
    }

    async fn draining(&self) {
        tokio::select! {
            _ = self.shared.draining.cancelled() => {}
            _ = self.shared.end.wait() => {}
        }
    }

    fn info(&self) -> SessionInfo {
        self.shared.info.clone()
    }

    fn stats(&self) -> SessionStats {
        let s = &self.shared.stats;
        let (local_limits, peer_limits) = self.shared.flow_limits();
        SessionStats {
            bidi_opened_local: s.get(Counter::BidiLocal),
            uni_opened_local: s.get(Counter::UniLocal),
            bidi_opened_remote: s.get(Counter::BidiRemote),
            uni_opened_remote: s.get(Counter::UniRemote),
            bytes_sent: s.get(Counter::BytesSent),
            bytes_received: s.get(Counter::BytesReceived),
            datagrams_sent: s.get(Counter::DatagramsSent),
            datagrams_received: s.get(Counter::DatagramsReceived),
            local_limits,
            peer_limits,
        }
    }
}
