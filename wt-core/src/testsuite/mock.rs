//! An in-memory transport implementing every [`crate::transport`] trait, for tests that want
//! WebTransport semantics without sockets, TLS or a clock.
//!
//! * [`MockSession::pair`] joins a client and a server [`MockSession`] directly; the test
//!   drives both ends through the [`Session`] trait (plus a few observation hooks such as
//!   [`MockSession::accept_any`], [`MockSession::close_record`] and
//!   [`MockSession::peer_drained`]).
//! * [`network`] returns a [`MockConnector`] and a [`MockAcceptor`] joined in memory: the
//!   connector's requests come out of the acceptor as [`MockRequest`]s carrying a
//!   [`RequestInfo`], and are accepted or rejected like real ones.
//!
//! Semantics follow the [`crate::transport`] docs: streams carry data, FIN, reset and
//! STOP_SENDING codes in order; dropping an unfinished send half finishes it and dropping an
//! unfinished receive half stops it with code 0; datagrams have a size limit; `close` carries
//! a code and a reason and ends every stream; `drain` is advisory. Dropping the last handle of
//! one end closes the session with code 0, as if that side had closed it.
//!
//! Everything is bounded ([`MockConfig`]): a stream buffers at most `stream_window` bytes
//! (writers wait for the reader), at most `accept_backlog` streams of each kind and requests
//! wait to be accepted (openers wait), and at most `datagram_queue` datagrams wait to be read
//! (further ones are dropped, as on a congested HTTP/3 path). Nothing sleeps and nothing
//! panics on misuse: every wait is on an event of the other end.
//!
//! What the mock does not model: loss, reordering, latency, per-session flow-control limits
//! ([`SessionStats::local_limits`] is `None`), and the wire formats themselves.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{oneshot, watch, Notify};

use crate::error::{ConnectError, ConnectionError, SessionError, StreamError};
use crate::transport::{
    AcceptOptions, Acceptor, ConnectRequest, Connector, Dialect, IncomingRequest, RecvStream,
    RequestInfo, SendStream, Session, SessionInfo, SessionStats, StreamId, StreamKind,
    TransportKind,
};

/// The default largest datagram payload (about what fits a 1280-byte QUIC packet).
pub const DEFAULT_MAX_DATAGRAM: usize = 1200;

/// The longest close reason a session accepts, in bytes.
const MAX_REASON: usize = 1024;

/// Knobs of a mock session or network.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The transport reported by [`Session::info`]; also decides whether datagrams are
    /// reported as unreliable (HTTP/3) or reliable (HTTP/2).
    pub transport: TransportKind,
    /// The dialect reported by the sessions and requests.
    pub dialect: Dialect,
    /// Largest datagram payload, or `None` when the peer does not accept datagrams.
    pub max_datagram_size: Option<usize>,
    /// Datagrams that may wait unread at one end; more are dropped (counted as sent).
    pub datagram_queue: usize,
    /// Bytes one direction of a stream buffers before writers wait for the reader (at least 1).
    pub stream_window: usize,
    /// Streams of each kind waiting to be accepted before openers wait, and requests waiting
    /// for the acceptor before connectors wait (at least 1).
    pub accept_backlog: usize,
    /// The server's address (the acceptor's `local_addr`, the client's `peer_addr`).
    pub server_addr: SocketAddr,
}

impl MockConfig {
    /// Defaults for `transport`: the latest dialect, 1200-byte datagrams, a 1 MiB stream
    /// window, a backlog of 100 and a queue of 1024 datagrams.
    pub fn new(transport: TransportKind) -> Self {
        MockConfig {
            transport,
            dialect: match transport {
                TransportKind::Http3 => Dialect::H3Latest,
                TransportKind::Http2 => Dialect::H2Latest,
            },
            max_datagram_size: Some(DEFAULT_MAX_DATAGRAM),
            datagram_queue: 1024,
            stream_window: 1 << 20,
            accept_backlog: 100,
            server_addr: SocketAddr::from(([127, 0, 0, 1], 4433)),
        }
    }
}

impl Default for MockConfig {
    /// [`MockConfig::new`] for HTTP/3.
    fn default() -> Self {
        MockConfig::new(TransportKind::Http3)
    }
}

/// One end of a mock session.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that connected (opens even-numbered streams).
    Client,
    /// The end that accepted.
    Server,
}

impl Side {
    /// The other end.
    pub const fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    const fn idx(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// How a mock session ended: who closed it, with which code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRecord {
    /// The end that closed (or dropped its last handle).
    pub by: Side,
    /// The application error code.
    pub code: u32,
    /// The reason.
    pub reason: String,
}

impl CloseRecord {
    /// The error `side` reports for this end of the session.
    pub fn error_for(&self, side: Side) -> SessionError {
        if self.by == side {
            SessionError::ClosedLocally {
                code: self.code,
                reason: self.reason.clone(),
            }
        } else {
            SessionError::ClosedByPeer {
                code: self.code,
                reason: self.reason.clone(),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Streams

/// How the writer ended one direction of a stream.
#[derive(Copy, Clone, Debug)]
enum PipeEnd {
    Fin,
    Reset(u32),
}

/// One direction of a stream: what the writer queued and the reader has not consumed.
#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    end: Option<PipeEnd>,
    /// STOP_SENDING from the reader, as the writer sees it.
    stop: Option<u32>,
}

struct Pipe {
    state: Mutex<PipeState>,
    /// Woken on every change: data or end for the reader, credit or stop for the writer.
    notify: Notify,
    window: usize,
}

/// Waits until `poll` gives a result, re-polling on every change of the pipe or the session's
/// end. `poll` runs under the pipe's lock and sees how the session ended, if it has.
async fn pipe_wait<R>(
    pipe: &Pipe,
    shared: &Shared,
    mut poll: impl FnMut(&mut PipeState, Option<&CloseRecord>) -> Option<R>,
) -> R {
    let mut closed = shared.closure.subscribe();
    loop {
        let notified = pipe.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let closure = closed.borrow_and_update().clone();
        let ready = {
            let mut st = lock(&pipe.state);
            poll(&mut st, closure.as_ref())
        };
        if let Some(r) = ready {
            return r;
        }
        tokio::select! {
            _ = notified => {}
            // The sender lives in `shared`, which outlives this call: never an error.
            _ = closed.changed() => {}
        }
    }
}

/// The send half of a mock stream.
pub struct MockSendStream {
    id: StreamId,
    side: Side,
    pipe: Arc<Pipe>,
    shared: Arc<Shared>,
    done: bool,
}

/// The receive half of a mock stream.
pub struct MockRecvStream {
    id: StreamId,
    side: Side,
    pipe: Arc<Pipe>,
    shared: Arc<Shared>,
    state: RecvState,
}

#[derive(Copy, Clone, Debug)]
enum RecvState {
    Open,
    Finished,
    Reset(u32),
    Stopped,
}

/// One direction of a stream, written by `writer`.
fn pipe(shared: &Arc<Shared>, id: StreamId, writer: Side) -> (MockSendStream, MockRecvStream) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(PipeState::default()),
        notify: Notify::new(),
        window: shared.config.stream_window.max(1),
    });
    (
        MockSendStream {
            id,
            side: writer,
            pipe: pipe.clone(),
            shared: shared.clone(),
            done: false,
        },
        MockRecvStream {
            id,
            side: writer.peer(),
            pipe,
            shared: shared.clone(),
            state: RecvState::Open,
        },
    )
}

impl MockSendStream {
    /// Whether a write may proceed: `Some(Err)` when it cannot ever, `Some(Ok(n))` with the
    /// bytes (at most `len`) that fit now, `None` to wait for credit.
    fn admit(
        &self,
        st: &PipeState,
        closure: Option<&CloseRecord>,
        len: usize,
    ) -> Option<Result<usize, StreamError>> {
        if self.done {
            return Some(Err(StreamError::ClosedLocally));
        }
        if let Some(code) = st.stop {
            return Some(Err(StreamError::Stopped(Some(code))));
        }
        if let Some(c) = closure {
            return Some(Err(StreamError::SessionGone(c.error_for(self.side))));
        }
        if len == 0 {
            return Some(Ok(0));
        }
        let credit = self.pipe.window.saturating_sub(st.buffered);
        (credit > 0).then(|| Ok(credit.min(len)))
    }

    /// Queues as much of `len` bytes as fits, waiting for credit; `take(n)` yields the first
    /// `n` of them. Returns how many were queued.
    async fn push(
        &mut self,
        len: usize,
        mut take: impl FnMut(usize) -> Bytes,
    ) -> Result<usize, StreamError> {
        let this = &*self;
        let n = pipe_wait(&this.pipe, &this.shared, |st, closure| {
            let r = this.admit(st, closure, len);
            if let Some(Ok(n)) = r {
                if n > 0 {
                    st.chunks.push_back(take(n));
                    st.buffered += n;
                }
            }
            r
        })
        .await?;
        if n > 0 {
            self.pipe.notify.notify_waiters();
            self.shared.counters[self.side.idx()]
                .bytes_sent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// Ends the stream with `end` after checking it may still be ended.
    fn end(&mut self, end: PipeEnd) -> Result<(), StreamError> {
        if self.done {
            return Err(StreamError::ClosedLocally);
        }
        let closure = self.shared.closure.borrow().clone();
        {
            let mut st = lock(&self.pipe.state);
            if let PipeEnd::Fin = end {
                if let Some(Err(e)) = self.admit(&st, closure.as_ref(), 0) {
                    return Err(e);
                }
            }
            st.end = Some(end);
        }
        self.done = true;
        self.pipe.notify.notify_waiters();
        Ok(())
    }
}

impl SendStream for MockSendStream {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        self.push(buf.len(), |n| Bytes::copy_from_slice(&buf[..n]))
            .await
    }

    async fn write_chunk(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        loop {
            self.push(data.len(), |n| data.split_to(n)).await?;
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.end(PipeEnd::Fin)
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        self.end(PipeEnd::Reset(code))
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        let (done, side) = (self.done, self.side);
        pipe_wait(&self.pipe, &self.shared, |st, closure| {
            if let Some(code) = st.stop {
                return Some(Ok(Some(code)));
            }
            if done {
                return Some(Ok(None));
            }
            closure.map(|c| Err(StreamError::SessionGone(c.error_for(side))))
        })
        .await
    }

    fn stop_notice(&self) -> impl Future<Output = Option<u32>> + Send + 'static {
        let (pipe, shared) = (self.pipe.clone(), self.shared.clone());
        async move {
            pipe_wait(&pipe, &shared, |st, closure| {
                if let Some(code) = st.stop {
                    return Some(Some(code));
                }
                (st.end.is_some() || closure.is_some()).then_some(None)
            })
            .await
        }
    }
}

impl Drop for MockSendStream {
    fn drop(&mut self) {
        // Once the session ended there is nobody to tell.
        if !self.done && self.shared.closure.borrow().is_none() {
            lock(&self.pipe.state).end = Some(PipeEnd::Fin);
            self.pipe.notify.notify_waiters();
        }
    }
}

impl MockRecvStream {
    /// Stops the stream with `code` (ignored by a writer that already ended) and discards what
    /// was not read.
    fn stop_with(&mut self, code: u32) {
        {
            let mut st = lock(&self.pipe.state);
            st.chunks.clear();
            st.buffered = 0;
            if st.end.is_none() {
                st.stop = Some(code);
            }
        }
        self.state = RecvState::Stopped;
        self.pipe.notify.notify_waiters();
    }
}

impl RecvStream for MockRecvStream {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        match self.state {
            RecvState::Open => {}
            RecvState::Finished => return Ok(None),
            RecvState::Reset(code) => return Err(StreamError::Reset(Some(code))),
            RecvState::Stopped => return Err(StreamError::ClosedLocally),
        }
        let side = self.side;
        let r = pipe_wait(&self.pipe, &self.shared, |st, closure| {
            if let Some(front) = st.chunks.front_mut() {
                let chunk = if max == 0 {
                    Bytes::new()
                } else if front.len() <= max {
                    st.chunks.pop_front().unwrap_or_default()
                } else {
                    front.split_to(max)
                };
                st.buffered -= chunk.len();
                return Some(Ok(Some(chunk)));
            }
            match st.end {
                Some(PipeEnd::Fin) => Some(Ok(None)),
                Some(PipeEnd::Reset(code)) => Some(Err(StreamError::Reset(Some(code)))),
                None => closure.map(|c| Err(StreamError::SessionGone(c.error_for(side)))),
            }
        })
        .await;
        match &r {
            Ok(Some(chunk)) if !chunk.is_empty() => {
                self.pipe.notify.notify_waiters();
                self.shared.counters[side.idx()]
                    .bytes_received
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Ok(Some(_)) => {}
            Ok(None) => self.state = RecvState::Finished,
            Err(StreamError::Reset(Some(code))) => self.state = RecvState::Reset(*code),
            Err(_) => {}
        }
        r
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        if let RecvState::Open = self.state {
            self.stop_with(code);
        }
        Ok(())
    }
}

impl Drop for MockRecvStream {
    fn drop(&mut self) {
        if let RecvState::Open = self.state {
            if self.shared.closure.borrow().is_none() {
                self.stop_with(0);
            }
        }
    }
}

/// A stream the peer opened, as [`MockSession::accept_any`] hands it out.
pub struct IncomingStream {
    /// The stream's ID.
    pub id: StreamId,
    /// The send half (`None` for a unidirectional stream).
    pub send: Option<MockSendStream>,
    /// The receive half.
    pub recv: MockRecvStream,
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[derive(Default)]
struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    datagrams_sent: AtomicU64,
    datagrams_received: AtomicU64,
}

/// Session state both ends share, indexed by [`Side::idx`] of the end it belongs to.
#[derive(Default)]
struct SessionState {
    /// Streams waiting for the end's `accept_*`, with their opening order.
    incoming_bi: [VecDeque<(u64, MockSendStream, MockRecvStream)>; 2],
    incoming_uni: [VecDeque<(u64, MockRecvStream)>; 2],
    datagrams: [VecDeque<Bytes>; 2],
    next_bi: [u64; 2],
    next_uni: [u64; 2],
    opened: u64,
    drained: [bool; 2],
}

fn take_bi(st: &mut SessionState, me: usize) -> Option<(MockSendStream, MockRecvStream)> {
    st.incoming_bi[me]
        .pop_front()
        .map(|(_, send, recv)| (send, recv))
}

fn take_uni(st: &mut SessionState, me: usize) -> Option<MockRecvStream> {
    st.incoming_uni[me].pop_front().map(|(_, recv)| recv)
}

struct Shared {
    config: MockConfig,
    info: [SessionInfo; 2],
    state: Mutex<SessionState>,
    /// Woken on every change of `state` and when the session ends.
    notify: Notify,
    closure: watch::Sender<Option<CloseRecord>>,
    /// Set when the acceptor that produced the session shuts down (GOAWAY to the client).
    goaway: Option<watch::Receiver<bool>>,
    counters: [Counters; 2],
}

impl Shared {
    /// Ends the session unless it already ended; pending streams and datagrams are dropped.
    fn close(&self, by: Side, code: u32, reason: &str) {
        let record = CloseRecord {
            by,
            code,
            reason: reason.to_owned(),
        };
        let first = self.closure.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(record);
            true
        });
        if first {
            // Dropped outside the lock: dropping a stream half touches its pipe.
            let pending = {
                let mut st = lock(&self.state);
                (
                    std::mem::take(&mut st.incoming_bi),
                    std::mem::take(&mut st.incoming_uni),
                    std::mem::take(&mut st.datagrams),
                )
            };
            drop(pending);
            self.notify.notify_waiters();
        }
    }

    fn closed_error(&self, side: Side) -> Option<SessionError> {
        self.closure.borrow().as_ref().map(|c| c.error_for(side))
    }

    /// Waits until `poll` gives a result, re-polling on every change of the session.
    async fn wait<R>(
        &self,
        mut poll: impl FnMut(&mut SessionState, Option<&CloseRecord>) -> Option<R>,
    ) -> R {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let closure = self.closure.borrow().clone();
            let ready = {
                let mut st = lock(&self.state);
                poll(&mut st, closure.as_ref())
            };
            if let Some(r) = ready {
                return r;
            }
            notified.await;
        }
    }

    fn goaway(&self) -> bool {
        self.goaway.as_ref().is_some_and(|g| *g.borrow())
    }
}

/// Drops the session when the last handle of one end goes.
struct Handle {
    shared: Arc<Shared>,
    side: Side,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close(self.side, 0, "");
    }
}

/// One end of an in-memory session. Clones are handles to the same end; when the last one is
/// dropped, the session is closed with code 0 by this end.
#[derive(Clone)]
pub struct MockSession {
    handle: Arc<Handle>,
}

/// What [`new_pair`] needs beyond the config.
struct PairSetup {
    session_id: u64,
    client_addr: SocketAddr,
    protocol: Option<String>,
    goaway: Option<watch::Receiver<bool>>,
}

fn new_pair(config: MockConfig, setup: PairSetup) -> (MockSession, MockSession) {
    let info = |peer_addr| SessionInfo {
        transport: config.transport,
        dialect: config.dialect,
        session_id: setup.session_id,
        protocol: setup.protocol.clone(),
        peer_addr,
        unreliable_datagrams: config.transport == TransportKind::Http3,
    };
    let shared = Arc::new(Shared {
        info: [info(config.server_addr), info(setup.client_addr)],
        config,
        state: Mutex::new(SessionState::default()),
        notify: Notify::new(),
        closure: watch::channel(None).0,
        goaway: setup.goaway,
        counters: Default::default(),
    });
    let end = |side| MockSession {
        handle: Arc::new(Handle {
            shared: shared.clone(),
            side,
        }),
    };
    (end(Side::Client), end(Side::Server))
}

impl MockSession {
    /// A connected pair, `(client, server)`, with session ID 0.
    pub fn pair(config: MockConfig) -> (MockSession, MockSession) {
        new_pair(
            config,
            PairSetup {
                session_id: 0,
                client_addr: SocketAddr::from(([127, 0, 0, 1], 49152)),
                protocol: None,
                goaway: None,
            },
        )
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.handle.side
    }

    /// How the session ended, or `None` while it is open.
    pub fn close_record(&self) -> Option<CloseRecord> {
        self.shared().closure.borrow().clone()
    }

    /// Whether the peer asked to drain (or, on the client, the acceptor shut down).
    pub fn peer_drained(&self) -> bool {
        let shared = self.shared();
        lock(&shared.state).drained[self.side().peer().idx()]
            || (self.side() == Side::Client && shared.goaway())
    }

    /// Waits for the next stream the peer opened, of either kind, in the order they were
    /// opened. Cancel safe.
    pub async fn accept_any(&self) -> Result<IncomingStream, SessionError> {
        self.take_next(|st, me| {
            let bi = st.incoming_bi[me].front().map(|s| s.0);
            let uni = st.incoming_uni[me].front().map(|s| s.0);
            let (send, recv) = match (bi, uni) {
                (Some(b), Some(u)) if b < u => take_bi(st, me).map(|(s, r)| (Some(s), r))?,
                (Some(_), None) => take_bi(st, me).map(|(s, r)| (Some(s), r))?,
                _ => (None, take_uni(st, me)?),
            };
            Some(IncomingStream {
                id: recv.id,
                send,
                recv,
            })
        })
        .await
    }

    /// Takes the next item `take` finds for this end (given its index), waiting for one;
    /// fails once the session has ended. Wakes openers waiting for room in a backlog.
    async fn take_next<T>(
        &self,
        mut take: impl FnMut(&mut SessionState, usize) -> Option<T>,
    ) -> Result<T, SessionError> {
        let me = self.side();
        let r = self
            .shared()
            .wait(|st, closure| match closure {
                Some(c) => Some(Err(c.error_for(me))),
                None => take(st, me.idx()).map(Ok),
            })
            .await;
        self.shared().notify.notify_waiters();
        r
    }

    /// Opens a stream of `kind` once the peer's backlog has room: `register` queues it for the
    /// peer (given the opening order and the new ID) and returns the local end.
    async fn open<T>(
        &self,
        kind: StreamKind,
        mut register: impl FnMut(&mut SessionState, u64, StreamId, &Arc<Shared>) -> T,
    ) -> Result<T, SessionError> {
        let me = self.side();
        let shared = self.shared();
        let backlog = shared.config.accept_backlog.max(1);
        let opened = shared
            .wait(|st, closure| {
                if let Some(c) = closure {
                    return Some(Err(c.error_for(me)));
                }
                let peer = me.peer().idx();
                let (waiting, counter, kind_bit) = match kind {
                    StreamKind::Bidi => (st.incoming_bi[peer].len(), &mut st.next_bi[me.idx()], 0),
                    StreamKind::Uni => (st.incoming_uni[peer].len(), &mut st.next_uni[me.idx()], 2),
                };
                if waiting >= backlog {
                    return None;
                }
                let id = StreamId(counter.saturating_mul(4) | kind_bit | me.idx() as u64);
                *counter += 1;
                let seq = st.opened;
                st.opened += 1;
                Some(Ok(register(st, seq, id, shared)))
            })
            .await;
        shared.notify.notify_waiters();
        opened
    }
}

impl std::fmt::Debug for MockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSession")
            .field("side", &self.side())
            .field("session_id", &self.shared().info[0].session_id)
            .field("closed", &self.close_record())
            .finish()
    }
}

impl Session for MockSession {
    type SendStream = MockSendStream;
    type RecvStream = MockRecvStream;

    async fn open_bi(&self) -> Result<(MockSendStream, MockRecvStream), SessionError> {
        let me = self.side();
        self.open(StreamKind::Bidi, |st, seq, id, shared| {
            let (send, peer_recv) = pipe(shared, id, me);
            let (peer_send, recv) = pipe(shared, id, me.peer());
            st.incoming_bi[me.peer().idx()].push_back((seq, peer_send, peer_recv));
            (send, recv)
        })
        .await
    }

    async fn open_uni(&self) -> Result<MockSendStream, SessionError> {
        let me = self.side();
        self.open(StreamKind::Uni, |st, seq, id, shared| {
            let (send, peer_recv) = pipe(shared, id, me);
            st.incoming_uni[me.peer().idx()].push_back((seq, peer_recv));
            send
        })
        .await
    }

    async fn accept_bi(&self) -> Result<(MockSendStream, MockRecvStream), SessionError> {
        self.take_next(take_bi).await
    }

    async fn accept_uni(&self) -> Result<MockRecvStream, SessionError> {
        self.take_next(take_uni).await
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        let shared = self.shared();
        if let Some(e) = shared.closed_error(self.side()) {
            return Err(e);
        }
        let max = shared
            .config
            .max_datagram_size
            .ok_or(SessionError::DatagramsUnsupported)?;
        if data.len() > max {
            return Err(SessionError::DatagramTooLarge {
                size: data.len(),
                max,
            });
        }
        {
            let mut st = lock(&shared.state);
            let queue = &mut st.datagrams[self.side().peer().idx()];
            if queue.len() < shared.config.datagram_queue {
                queue.push_back(data);
            }
        }
        shared.counters[self.side().idx()]
            .datagrams_sent
            .fetch_add(1, Ordering::Relaxed);
        shared.notify.notify_waiters();
        Ok(())
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        let d = self
            .take_next(|st, me| st.datagrams[me].pop_front())
            .await?;
        self.shared().counters[self.side().idx()]
            .datagrams_received
            .fetch_add(1, Ordering::Relaxed);
        Ok(d)
    }

    fn max_datagram_size(&self) -> Option<usize> {
        self.shared().config.max_datagram_size
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        if reason.len() > MAX_REASON {
            return Err(SessionError::ReasonTooLong(reason.len()));
        }
        self.shared().close(self.side(), code, reason);
        Ok(())
    }

    fn drain(&self) -> Result<(), SessionError> {
        let shared = self.shared();
        if let Some(e) = shared.closed_error(self.side()) {
            return Err(e);
        }
        lock(&shared.state).drained[self.side().idx()] = true;
        shared.notify.notify_waiters();
        Ok(())
    }

    async fn closed(&self) -> SessionError {
        let me = self.side();
        self.shared()
            .wait(|_, closure| closure.map(|c| c.error_for(me)))
            .await
    }

    async fn draining(&self) {
        let peer = self.side().peer().idx();
        let drained = self
            .shared()
            .wait(|st, closure| (st.drained[peer] || closure.is_some()).then_some(()));
        match (&self.shared().goaway, self.side()) {
            (Some(goaway), Side::Client) => {
                let mut goaway = goaway.clone();
                tokio::select! {
                    _ = drained => {}
                    // An error means the acceptor is gone, which is a GOAWAY as well.
                    _ = goaway.wait_for(|g| *g) => {}
                }
            }
            _ => drained.await,
        }
    }

    fn info(&self) -> SessionInfo {
        self.shared().info[self.side().idx()].clone()
    }

    fn stats(&self) -> SessionStats {
        let shared = self.shared();
        let (me, peer) = (self.side().idx(), self.side().peer().idx());
        let st = lock(&shared.state);
        let c = &shared.counters[me];
        SessionStats {
            bidi_opened_local: st.next_bi[me],
            uni_opened_local: st.next_uni[me],
            bidi_opened_remote: st.next_bi[peer],
            uni_opened_remote: st.next_uni[peer],
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            datagrams_sent: c.datagrams_sent.load(Ordering::Relaxed),
            datagrams_received: c.datagrams_received.load(Ordering::Relaxed),
            local_limits: None,
            peer_limits: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connector and acceptor

struct NetState {
    queue: VecDeque<MockRequest>,
    shut: bool,
}

/// What a connector and its acceptor share.
struct Network {
    config: MockConfig,
    state: Mutex<NetState>,
    /// Woken when a request is queued or taken and on shutdown.
    notify: Notify,
    goaway: watch::Sender<bool>,
    next_session: AtomicU64,
}

impl Network {
    async fn wait<R>(&self, mut poll: impl FnMut(&mut NetState) -> Option<R>) -> R {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ready = poll(&mut lock(&self.state));
            if let Some(r) = ready {
                return r;
            }
            notified.await;
        }
    }
}

/// Makes client sessions with a [`MockAcceptor`] (see [`network`]). Clones share the network.
#[derive(Clone)]
pub struct MockConnector {
    net: Arc<Network>,
}

/// Yields the requests of the [`MockConnector`]s of its [`network`]. Dropping it shuts it down.
pub struct MockAcceptor {
    net: Arc<Network>,
}

/// A request waiting for the server's decision; dropping it rejects it with 500.
pub struct MockRequest {
    info: RequestInfo,
    config: MockConfig,
    session_id: u64,
    goaway: watch::Receiver<bool>,
    reply: oneshot::Sender<Result<MockSession, ConnectError>>,
}

/// A connector and an acceptor joined in memory.
pub fn network(config: MockConfig) -> (MockConnector, MockAcceptor) {
    let net = Arc::new(Network {
        config,
        state: Mutex::new(NetState {
            queue: VecDeque::new(),
            shut: false,
        }),
        notify: Notify::new(),
        goaway: watch::channel(false).0,
        next_session: AtomicU64::new(0),
    });
    (MockConnector { net: net.clone() }, MockAcceptor { net })
}

fn refused() -> ConnectError {
    ConnectError::Io(Arc::new(std::io::ErrorKind::ConnectionRefused.into()))
}

impl MockConnector {
    /// Connects to `path` on `localhost`, with an optional `origin`: a shorthand for
    /// [`Connector::connect`].
    pub async fn connect_path(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<MockSession, ConnectError> {
        let request = ConnectRequest {
            host: "localhost".into(),
            port: self.net.config.server_addr.port(),
            path: path.into(),
            origin: origin.map(str::to_owned),
            ..ConnectRequest::default()
        };
        self.connect(&request).await
    }

    fn request_info(&self, request: &ConnectRequest, n: u64) -> RequestInfo {
        let config = &self.net.config;
        let authority = if !request.authority.is_empty() {
            request.authority.clone()
        } else if request.host.contains(':') {
            format!("[{}]:{}", request.host, request.port)
        } else {
            format!("{}:{}", request.host, request.port)
        };
        RequestInfo {
            authority,
            path: request.path.clone(),
            protocol: match config.dialect {
                Dialect::H3Latest => "webtransport-h3",
                _ => "webtransport",
            }
            .into(),
            origin: request.origin.clone(),
            protocols: request.protocols.clone(),
            headers: request.headers.clone(),
            dialect: config.dialect,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 49152 + (n % 16384) as u16)),
        }
    }
}

impl Connector for MockConnector {
    type Session = MockSession;

    /// Queues the request for the acceptor (waiting while its backlog is full) and waits for
    /// the answer: `Rejected` with the server's status (500 when the request was dropped),
    /// `GoingAway` when the acceptor shut down with the request still queued, and a refused
    /// connection once it has shut down.
    async fn connect(&self, request: &ConnectRequest) -> Result<MockSession, ConnectError> {
        let net = &self.net;
        let n = net.next_session.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let mut pending = Some(MockRequest {
            info: self.request_info(request, n),
            config: net.config.clone(),
            session_id: n.saturating_mul(4),
            goaway: net.goaway.subscribe(),
            reply,
        });
        let backlog = net.config.accept_backlog.max(1);
        net.wait(|st| {
            if st.shut {
                return Some(Err(refused()));
            }
            if st.queue.len() >= backlog {
                return None;
            }
            st.queue.extend(pending.take());
            Some(Ok(()))
        })
        .await?;
        net.notify.notify_waiters();
        let session = match answer.await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ConnectError::Rejected {
                    status: http::StatusCode::INTERNAL_SERVER_ERROR,
                })
            }
        };
        match session.info().protocol {
            Some(p) if !request.protocols.contains(&p) => Err(ConnectError::UnexpectedProtocol(p)),
            _ => Ok(session),
        }
    }
}

impl Acceptor for MockAcceptor {
    type Request = MockRequest;

    async fn accept(&self) -> Option<MockRequest> {
        let r = self
            .net
            .wait(|st| {
                if st.shut {
                    return Some(None);
                }
                st.queue.pop_front().map(Some)
            })
            .await;
        self.net.notify.notify_waiters();
        r
    }

    fn local_addr(&self) -> SocketAddr {
        self.net.config.server_addr
    }

    /// Stops accepting: queued requests fail with `GoingAway`, later connects are refused,
    /// and clients of established sessions see `draining()` resolve.
    fn shutdown(&self) {
        let queued = {
            let mut st = lock(&self.net.state);
            st.shut = true;
            std::mem::take(&mut st.queue)
        };
        self.net.goaway.send_replace(true);
        self.net.notify.notify_waiters();
        for r in queued {
            let _ = r.reply.send(Err(ConnectError::GoingAway));
        }
    }
}

impl Drop for MockAcceptor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl IncomingRequest for MockRequest {
    type Session = MockSession;

    fn info(&self) -> &RequestInfo {
        &self.info
    }

    /// Accepts: the connector gets the client end. Fails if the connector stopped waiting.
    async fn accept(self, options: AcceptOptions) -> Result<MockSession, SessionError> {
        let (client, server) = new_pair(
            self.config,
            PairSetup {
                session_id: self.session_id,
                client_addr: self.info.peer_addr,
                protocol: options.protocol,
                goaway: Some(self.goaway),
            },
        );
        match self.reply.send(Ok(client)) {
            Ok(()) => Ok(server),
            // The client end is dropped with the error, which closes the session.
            Err(_) => Err(SessionError::Connection(ConnectionError::Reset)),
        }
    }

    /// Rejects with `status` (a 2xx status becomes 500).
    async fn reject(self, status: http::StatusCode) {
        let status = if status.is_success() {
            http::StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        let _ = self.reply.send(Err(ConnectError::Rejected { status }));
    }
}

#[cfg(test)]
mod tests;
