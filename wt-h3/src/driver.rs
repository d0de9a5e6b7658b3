//! The quinn glue of one connection: the demultiplexer tasks that own every incoming QUIC
//! stream and datagram, the control streams, and the session table.
//!
//! Per connection there are two tasks: the driver, which accepts every incoming
//! unidirectional stream and runs, inside itself (a set of futures, no task per stream), the
//! short job of reading each stream's preamble and routing it, as well as the long-lived
//! readers of the peer's control and QPACK streams; and the datagram loop, which stands by
//! while the connection's only session reads its datagrams straight from quinn
//! ([`Conn::claim_datagrams`]). New bidirectional streams go through the connection's
//! [`Intake`], which the driver runs too, except while the only session's `accept_bi` waits
//! and runs it itself. Stream *data* never passes through them: once routed, a stream is
//! handed to its session's bounded accept queue and the application reads it directly from
//! quinn. The preamble is read with `read_chunk` (at most [`PREAMBLE_READ`] bytes at a time);
//! payload bytes that came in the same chunk travel with the stream as a prefix its
//! [`RecvStream`](crate::RecvStream) returns first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use std::future::Future;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};
use wt_core::codes::H3Code;
use wt_core::{ConnectionError, ProtocolError, WireCode};

use crate::close_hold::CloseHold;
use crate::conn::buffer::{EarlyBuffer, Gone};
use crate::intake::{Intake, PreambleRead};
use crate::proto::frame::{Frame, FrameDecoder, StreamKind};
use crate::proto::settings::Settings;
use crate::proto::stream_type::{self, BidiRoute, Role, UniRoute};
use crate::session::SessionShared;

/// A stream that arrived for a session, with the payload bytes read along with its preamble.
pub(crate) enum Incoming {
    Bidi(quinn::SendStream, quinn::RecvStream, Bytes),
    Uni(quinn::RecvStream, Bytes),
}

impl Incoming {
    /// Refuses the stream with `code` (RESET_STREAM and/or STOP_SENDING).
    pub(crate) fn refuse(self, code: H3Code) {
        let v = varint(code.0);
        match self {
            Incoming::Bidi(mut s, mut r, _) => {
                let _ = s.reset(v);
                let _ = r.stop(v);
            }
            Incoming::Uni(mut r, _) => {
                let _ = r.stop(v);
            }
        }
    }
}

pub(crate) fn varint(v: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(v).unwrap_or(quinn::VarInt::MAX)
}

/// [`Conn::sole`] when there is no sole session (session ids are varints, below 2^62).
const NO_SOLE: u64 = u64::MAX;

/// A request stream waiting for the server to process it.
pub(crate) type RequestHandler =
    Arc<dyn Fn(Arc<Conn>, quinn::SendStream, FrameReader) + Send + Sync + 'static>;

struct State {
    /// Sessions by id (their CONNECT stream's id). FxHash: looked up for every incoming
    /// stream, and the ids are request stream ids, which quinn's stream limits bound.
    sessions: FxHashMap<u64, Arc<SessionShared>>,
    /// Sessions whose CONNECT is in flight (client) or waiting for accept (server).
    pending: FxHashSet<u64>,
    /// Sessions that ended (the latest few hundred).
    gone: Gone,
    /// Ended sessions whose close capsule is on its way: streams the peer opens for them
    /// meanwhile are refused through their [`CloseHold`], not ahead of the capsule.
    closing: FxHashMap<u64, Weak<CloseHold>>,
    early_streams: EarlyBuffer<Incoming>,
    early_datagrams: EarlyBuffer<(u64, Bytes)>,
    max_request_id: Option<u64>,
    /// The session that reads the connection's datagrams itself (see
    /// [`Conn::claim_datagrams`]).
    direct_datagrams: Option<Arc<SessionShared>>,
    /// How many sessions the connection may carry at once, once known: 1 on a client; on a
    /// server, what the first request found (it depends on the connection's SETTINGS only).
    max_sessions: Option<usize>,
}

/// Shared state of one HTTP/3 connection.
pub(crate) struct Conn {
    pub quic: quinn::Connection,
    pub role: Role,
    peer_settings: watch::Sender<Option<Arc<Settings>>>,
    /// The peer's control / QPACK streams seen (each allowed once).
    peer_critical: stream_type::CriticalStreams,
    state: Mutex<State>,
    control_send: tokio::sync::Mutex<Option<quinn::SendStream>>,
    local_error: OnceLock<ProtocolError>,
    /// A session reads datagrams straight from quinn: the datagram loop stands by.
    datagrams_direct: AtomicBool,
    /// Wakes the datagram loop when `datagrams_direct` changes.
    datagram_loop_wake: Notify,
    /// Cancelled when the peer sent GOAWAY.
    pub goaway: CancellationToken,
    request_handler: Option<RequestHandler>,
    /// The intake of new bidirectional streams.
    pub(crate) intake: Intake,
    /// The id of the connection's only session while no other is registered or pending,
    /// else [`NO_SOLE`]: only that session's `accept_bi` runs the intake (see
    /// [`Conn::is_sole`]).
    sole: AtomicU64,
    /// Keeps the client's endpoint alive as long as the connection.
    _endpoint: Option<quinn::Endpoint>,
}

impl Conn {
    pub(crate) fn new(
        quic: quinn::Connection,
        role: Role,
        max_buffered_streams: usize,
        max_buffered_datagrams: usize,
        request_handler: Option<RequestHandler>,
        endpoint: Option<quinn::Endpoint>,
    ) -> Arc<Self> {
        Arc::new(Conn {
            intake: Intake::new(quic.clone()),
            sole: AtomicU64::new(NO_SOLE),
            quic,
            role,
            peer_settings: watch::channel(None).0,
            peer_critical: Default::default(),
            state: Mutex::new(State {
                sessions: FxHashMap::default(),
                pending: FxHashSet::default(),
                gone: Gone::default(),
                closing: FxHashMap::default(),
                early_streams: EarlyBuffer::new(max_buffered_streams),
                early_datagrams: EarlyBuffer::new(max_buffered_datagrams),
                max_request_id: None,
                direct_datagrams: None,
                max_sessions: None,
            }),
            control_send: tokio::sync::Mutex::new(None),
            local_error: OnceLock::new(),
            datagrams_direct: AtomicBool::new(false),
            datagram_loop_wake: Notify::new(),
            goaway: CancellationToken::new(),
            request_handler,
            _endpoint: endpoint,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::session::lock(&self.state)
    }

    /// Whether session `id` is the connection's only one, registered with none pending, on a
    /// connection that carries one session at a time: then its `accept_bi` may run the intake
    /// of bidirectional streams and take its wake-ups, since every stream the intake finds is
    /// its own, or a request that is refused anyway. Where another session may come, the
    /// driver runs the intake, so that one application's accept loop, while busy elsewhere,
    /// never holds up another session.
    pub(crate) fn is_sole(&self, id: u64) -> bool {
        self.sole.load(Ordering::Acquire) == id
    }

    /// After the table or the pending set changed: the two roles of the connection's only
    /// session are taken back from a session that no longer is. Its datagrams go through the
    /// datagram loop again once another session is pending or registered, or it ended (see
    /// [`claim_datagrams`](Self::claim_datagrams)); an accept waiting on the intake is sent
    /// back to the driver when the session stops being the only one on a connection that
    /// carries one session at a time (see [`is_sole`](Self::is_sole)).
    fn sessions_changed(&self, st: &mut State) {
        let direct_is_sole = st.direct_datagrams.as_ref().is_none_or(|d| {
            st.pending.is_empty() && st.sessions.len() == 1 && st.sessions.contains_key(&d.id)
        });
        if !direct_is_sole {
            self.revoke_direct(st);
        }
        let sole = match (st.sessions.len(), st.pending.is_empty(), st.max_sessions) {
            (1, true, Some(1)) => st.sessions.keys().next().copied().unwrap_or(NO_SOLE),
            _ => NO_SOLE,
        };
        if self.sole.swap(sole, Ordering::AcqRel) != sole && sole == NO_SOLE {
            self.intake.release_taker();
        }
    }

    /// Opens our control stream, sends SETTINGS, and starts the accept loops.
    pub(crate) async fn start(
        self: &Arc<Self>,
        settings: &Settings,
    ) -> Result<(), ConnectionError> {
        let mut send = self.quic.open_uni().await.map_err(|e| self.map_error(&e))?;
        let mut buf = stream_type::uni_header(stream_type::CONTROL);
        settings.encode(&mut buf);
        send.write_all(&buf).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => self.map_error(&e),
            _ => ConnectionError::Reset,
        })?;
        *self.control_send.lock().await = Some(send);
        tokio::spawn(drive(self.clone()));
        tokio::spawn(datagram_loop(self.clone()));
        Ok(())
    }

    /// Closes the connection for a protocol violation.
    pub(crate) fn fail(&self, e: ProtocolError) {
        debug!(error = %e, "closing connection");
        let code = match e.code {
            WireCode::H3(c) => c.0,
            WireCode::Quic(c) => c,
            WireCode::H2(c) => c.0 as u64,
        };
        let what = e.what.clone();
        let _ = self.local_error.set(e);
        self.quic.close(varint(code), what.as_bytes());
    }

    /// Closes the connection cleanly (H3_NO_ERROR).
    pub(crate) fn close_ok(&self) {
        self.quic.close(varint(H3Code::H3_NO_ERROR.0), b"");
    }

    /// The error we closed the connection with, if we did for a protocol violation.
    pub(crate) fn local_error(&self) -> Option<ProtocolError> {
        self.local_error.get().cloned()
    }

    /// Maps a quinn connection error into ours.
    pub(crate) fn map_error(&self, e: &quinn::ConnectionError) -> ConnectionError {
        use quinn::ConnectionError as Q;
        match e {
            Q::ApplicationClosed(c) => ConnectionError::ClosedByPeer {
                code: WireCode::H3(H3Code(c.error_code.into_inner())),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            Q::ConnectionClosed(c) => ConnectionError::ClosedByPeer {
                code: WireCode::Quic(u64::from(c.error_code)),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            Q::LocallyClosed => match self.local_error.get() {
                Some(pe) => ConnectionError::ClosedLocally {
                    code: pe.code,
                    reason: pe.what.to_string(),
                },
                None => ConnectionError::ClosedLocally {
                    code: WireCode::H3(H3Code::H3_NO_ERROR),
                    reason: String::new(),
                },
            },
            Q::TimedOut => ConnectionError::TimedOut,
            Q::Reset | Q::CidsExhausted => ConnectionError::Reset,
            Q::TransportError(t) => ConnectionError::ClosedLocally {
                code: WireCode::Quic(u64::from(t.code)),
                reason: t.reason.clone(),
            },
            Q::VersionMismatch => ConnectionError::ClosedLocally {
                code: WireCode::Quic(0),
                reason: "version mismatch".into(),
            },
        }
    }

    /// Waits for the peer's SETTINGS; `Err` when the connection ends first.
    pub(crate) async fn peer_settings(&self) -> Result<Arc<Settings>, ConnectionError> {
        let mut rx = self.peer_settings.subscribe();
        tokio::select! {
            r = rx.wait_for(Option::is_some) => {
                if let Ok(v) = r {
                    if let Some(s) = v.as_ref() {
                        return Ok(s.clone());
                    }
                }
                Err(ConnectionError::Reset)
            }
            e = self.quic.closed() => Err(self.map_error(&e)),
        }
    }

    /// Marks `id` as a session whose CONNECT is in flight.
    pub(crate) fn add_pending(&self, id: u64) {
        let mut st = self.lock();
        st.pending.insert(id);
        // A client opens a connection per session.
        st.max_sessions = Some(1);
        self.sessions_changed(&mut st);
    }

    /// Server: marks `id` pending unless `max` sessions are already active or pending.
    pub(crate) fn try_add_pending(&self, id: u64, max: usize) -> bool {
        let mut st = self.lock();
        st.max_request_id = Some(st.max_request_id.map_or(id, |m| m.max(id)));
        st.max_sessions = Some(max);
        if st.sessions.len() + st.pending.len() >= max {
            return false;
        }
        st.pending.insert(id);
        self.sessions_changed(&mut st);
        true
    }

    /// A pending session was refused: discard its buffered streams.
    pub(crate) fn reject_pending(&self, id: u64) {
        let streams = {
            let mut st = self.lock();
            st.pending.remove(&id);
            st.gone.insert(id);
            self.sessions_changed(&mut st);
            let _ = st.early_datagrams.take(id);
            st.early_streams.take(id)
        };
        for s in streams {
            s.refuse(H3Code::WT_SESSION_GONE);
        }
    }

    /// A session is established: register it and hand it what arrived early.
    ///
    /// What arrived early goes to the session before it enters the table, in arrival order,
    /// so streams still arriving meanwhile (held for the pending session) cannot pass it; only
    /// once an accept queue is full (the application has yet to accept) does the rest wait for
    /// room in a task of its own while the session is registered.
    pub(crate) fn register(&self, session: Arc<SessionShared>) {
        let id = session.id;
        loop {
            let (streams, datagrams) = {
                let mut st = self.lock();
                let streams = st.early_streams.take(id);
                let datagrams = st.early_datagrams.take(id);
                if streams.is_empty() && datagrams.is_empty() {
                    return self.enter(&mut st, &session);
                }
                (streams, datagrams)
            };
            for (_, d) in datagrams {
                session.push_datagram(d);
            }
            let mut streams = streams.into_iter();
            while let Some(s) = streams.next() {
                if session.has_room(matches!(s, Incoming::Bidi(..))) {
                    session.deliver_now(s);
                    continue;
                }
                let rest: Vec<Incoming> = std::iter::once(s).chain(streams).collect();
                self.enter(&mut self.lock(), &session);
                tokio::spawn(async move {
                    for s in rest {
                        session.deliver(s).await;
                    }
                });
                return;
            }
        }
    }

    /// Moves `session` from pending into the table, unless it has already ended (then
    /// [`unregister`](Self::unregister) has run or will, and it stays out).
    fn enter(&self, st: &mut State, session: &Arc<SessionShared>) {
        st.pending.remove(&session.id);
        if !session.is_ended() {
            st.sessions.insert(session.id, session.clone());
        }
        self.sessions_changed(st);
    }

    /// A session ended (called as it ends, and again when its task finishes; the second
    /// call changes nothing).
    pub(crate) fn unregister(&self, id: u64) {
        self.unregister_closing(id, None);
    }

    /// [`unregister`](Self::unregister)s session `id`; if its `hold` is holding (a close
    /// capsule on its way), streams the peer opens for it are refused through `hold` until
    /// [`close_delivered`](Self::close_delivered). The hold is looked at under the table's
    /// lock, which `close_delivered` also takes after the hold was released: a hold released
    /// before this call is not recorded, one released after it is removed.
    pub(crate) fn unregister_closing(&self, id: u64, hold: Option<&Arc<CloseHold>>) {
        let mut st = self.lock();
        st.sessions.remove(&id);
        st.pending.remove(&id);
        st.gone.insert(id);
        if let Some(h) = hold.filter(|h| h.is_holding()) {
            st.closing.insert(id, Arc::downgrade(h));
        }
        self.sessions_changed(&mut st);
    }

    /// Session `id`'s close capsule has been delivered (or given up on): streams for it are
    /// refused at once again.
    pub(crate) fn close_delivered(&self, id: u64) {
        self.lock().closing.remove(&id);
    }

    /// Lets `session` read the connection's datagrams straight from quinn, without the hop
    /// through the datagram loop and its queue, when it is the connection's only session
    /// (always so on a connection without session flow control) and no other is pending.
    /// Datagrams then wait in quinn's receive buffer (bounded, oldest dropped) until the
    /// session reads; any for another session ID are routed as usual. Revoked as soon as
    /// another session is pending or registered, or this one ends. `true` if `session` now
    /// reads directly.
    pub(crate) fn claim_datagrams(&self, session: &Arc<SessionShared>) -> bool {
        let mut st = self.lock();
        if let Some(s) = &st.direct_datagrams {
            return s.id == session.id;
        }
        let sole = st.pending.is_empty()
            && st.sessions.len() == 1
            && st.sessions.contains_key(&session.id)
            && !session.is_ended();
        if !sole {
            return false;
        }
        session.set_direct_datagrams(true);
        st.direct_datagrams = Some(session.clone());
        self.datagrams_direct.store(true, Ordering::Release);
        self.datagram_loop_wake.notify_one();
        true
    }

    /// Ends a session's direct reading of datagrams: the loop routes them again.
    fn revoke_direct(&self, st: &mut State) {
        if let Some(s) = st.direct_datagrams.take() {
            s.set_direct_datagrams(false);
            self.datagrams_direct.store(false, Ordering::Release);
            self.datagram_loop_wake.notify_one();
        }
    }

    fn sessions(&self) -> Vec<Arc<SessionShared>> {
        self.lock().sessions.values().cloned().collect()
    }

    /// Routes a WebTransport stream to its session.
    async fn route_stream(&self, session_id: u64, stream: Incoming) {
        let target = {
            let mut st = self.lock();
            if let Some(s) = st.sessions.get(&session_id) {
                Ok((s.clone(), stream))
            } else if st.gone.contains(session_id) {
                if let Some(hold) = st.closing.get(&session_id).and_then(Weak::upgrade) {
                    drop(st);
                    hold.refuse(stream);
                    return;
                }
                Err((stream, H3Code::WT_SESSION_GONE))
            } else if st.pending.contains(&session_id) {
                // A session on its way: a client's own CONNECT whose response has not been
                // read yet (the server may open streams as soon as it has the request), or a
                // request the application has yet to accept. Its streams are held for it
                // whatever their number: each stays open until handed on, so QUIC's stream
                // limits bound them. Only streams of unknown sessions meet the cap.
                st.early_streams.hold(session_id, stream);
                trace!(session_id, "held stream for a pending session");
                return;
            } else {
                match st.early_streams.push(session_id, stream) {
                    Ok(()) => {
                        trace!(session_id, "buffered stream for unknown session");
                        return;
                    }
                    Err(stream) => Err((stream, H3Code::WT_BUFFERED_STREAM_REJECTED)),
                }
            }
        };
        match target {
            Ok((session, stream)) => session.deliver(stream).await,
            Err((stream, code)) => stream.refuse(code),
        }
    }

    /// Session `session_id` if it is established and its accept queue for new bidirectional
    /// streams has room: a stream for it is handed on without waiting
    /// ([`SessionShared::deliver_now`]), else it goes the way of
    /// [`route_stream`](Self::route_stream).
    fn session_with_bidi_room(&self, session_id: u64) -> Option<Arc<SessionShared>> {
        let session = self.lock().sessions.get(&session_id).cloned()?;
        session.has_room(true).then_some(session)
    }

    /// A peer stream reset before its preamble arrived. Without RESET_STREAM_AT the session
    /// cannot be known from the wire; when exactly one session is open (always the case without
    /// session flow control, and on the client, which opens one connection per session) the
    /// stream is attributed to it so the application sees the reset (and, with flow control,
    /// it counts against that session's stream credit). With several sessions on a server
    /// connection the stream is refused and no session counts it.
    async fn route_headerless_reset(&self, stream: Incoming, code: quinn::VarInt) {
        let session = {
            let st = self.lock();
            if st.sessions.len() == 1 && st.pending.is_empty() {
                st.sessions.values().next().cloned()
            } else {
                None
            }
        };
        match session {
            Some(s) => {
                let id = match &stream {
                    Incoming::Bidi(_, r, _) | Incoming::Uni(r, _) => r.id(),
                };
                s.note_pre_reset(id, code.into_inner());
                s.deliver(stream).await;
            }
            None => stream.refuse(H3Code::H3_REQUEST_CANCELLED),
        }
    }

    /// Routes a datagram read from quinn (by the loop, or by a session reading directly).
    pub(crate) fn route_datagram(&self, data: Bytes) {
        let (sid, payload) = match stream_type::decode_datagram(data) {
            Ok(v) => v,
            Err(e) => return self.fail(e),
        };
        let mut st = self.lock();
        if let Some(s) = st.sessions.get(&sid) {
            let s = s.clone();
            drop(st);
            s.push_datagram(payload);
        } else if !st.gone.contains(sid) {
            // Unknown session: buffer briefly (bounded), else drop.
            let _ = st.early_datagrams.push(sid, (sid, payload));
        }
    }

    /// Sends GOAWAY on our control stream (server shutdown).
    pub(crate) async fn send_goaway(&self) {
        let id = {
            let st = self.lock();
            st.max_request_id.map_or(0, |m| m + 4)
        };
        let mut buf = BytesMut::new();
        crate::proto::frame::encode_goaway(id, &mut buf);
        if let Some(s) = self.control_send.lock().await.as_mut() {
            let _ = s.write_all(&buf).await;
        }
    }
}

/// Reads HTTP/3 frames from a stream, keeping undecoded bytes.
pub(crate) struct FrameReader {
    pub recv: quinn::RecvStream,
    buf: BytesMut,
    dec: FrameDecoder,
    fin: bool,
}

/// Why reading a frame failed.
pub(crate) enum ReadFail {
    /// A frame-level violation (connection error).
    Proto(ProtocolError),
    /// The stream or connection failed.
    Read(quinn::ReadError),
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, prefix: BytesMut, kind: StreamKind) -> Self {
        FrameReader {
            recv,
            buf: prefix,
            dec: FrameDecoder::new(kind),
            fin: false,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadFail> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).map_err(ReadFail::Proto)? {
                return Ok(Some(f));
            }
            if self.fin {
                self.dec.finish(&self.buf).map_err(ReadFail::Proto)?;
                return Ok(None);
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(c)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::from(c.bytes);
                    } else {
                        self.buf.extend_from_slice(&c.bytes);
                    }
                }
                Ok(None) => self.fin = true,
                Err(e) => return Err(ReadFail::Read(e)),
            }
        }
    }
}

/// Why a stream preamble could not be read.
enum PreambleError {
    /// The peer reset the stream before its preamble arrived (quinn has no RESET_STREAM_AT,
    /// so a peer's early reset can discard the header).
    Reset(quinn::VarInt),
    /// FIN, connection loss, or anything else: nothing to do.
    Other,
}

/// Most bytes taken from quinn per read while looking for a stream's preamble (a preamble is
/// at most 16 bytes). Payload read along with it (at most this much, a slice of quinn's
/// receive buffer) is kept as the stream's prefix, also while the stream waits in the bounded
/// buffer for an unknown session.
pub(crate) const PREAMBLE_READ: usize = 4096;

/// Makes `buf` start with a whole varint, reading chunks from `recv` as needed; returns the
/// value and its length (left in `buf`). Cancel safe only in the sense that bytes read stay in
/// `buf`.
async fn peek_varint(
    recv: &mut quinn::RecvStream,
    buf: &mut Bytes,
) -> Result<(u64, usize), PreambleError> {
    loop {
        if let Ok(v) = wt_core::varint::peek(buf) {
            return Ok(v);
        }
        match recv.read_chunk(PREAMBLE_READ, true).await {
            Ok(Some(c)) => {
                if buf.is_empty() {
                    *buf = c.bytes;
                } else {
                    // A varint split across chunks (rare): join the pieces.
                    let mut joined = BytesMut::with_capacity(buf.len() + c.bytes.len());
                    joined.extend_from_slice(buf);
                    joined.extend_from_slice(&c.bytes);
                    *buf = joined.freeze();
                }
            }
            Err(quinn::ReadError::Reset(c)) => return Err(PreambleError::Reset(c)),
            Ok(None) | Err(_) => return Err(PreambleError::Other),
        }
    }
}

/// Reads and consumes one varint of a stream's preamble from `buf` (refilled from `recv`).
async fn read_varint(recv: &mut quinn::RecvStream, buf: &mut Bytes) -> Result<u64, PreambleError> {
    let (v, n) = peek_varint(recv, buf).await?;
    buf.advance(n);
    Ok(v)
}

/// The connection is gone: what waits for it learns why.
fn on_closed(conn: &Conn, e: quinn::ConnectionError) {
    let err = conn.map_error(&e);
    debug!(error = %err, "connection closed");
    let pending = {
        let mut st = conn.lock();
        st.early_streams.drain_all()
    };
    drop(pending);
    for s in conn.sessions() {
        s.terminate(wt_core::SessionError::Connection(err.clone()));
    }
}

/// The connection's driver: accepts incoming unidirectional streams and runs each one's
/// preamble read and routing ([`handle_uni`]) as a future of its own set, polled right here,
/// so a new stream whose header came with it is routed in the same turn, without a task spawn
/// and a wake-up. Runs the intake of bidirectional streams ([`Intake`]) whenever no
/// application task waits to run it. The sets are bounded by QUIC's stream limits: every
/// future holds its stream (which counts as open) until it has been handed on. Also watches
/// for the connection's end.
async fn drive(conn: Arc<Conn>) {
    // Also when this task is dropped unfinished (the runtime shuts down).
    struct CloseIntake<'a>(&'a Conn);
    impl Drop for CloseIntake<'_> {
        fn drop(&mut self) {
            self.0.intake.close();
        }
    }
    let _close_intake = CloseIntake(&conn);
    let quic = conn.quic.clone();
    let mut uni = std::pin::pin!(quic.accept_uni());
    let mut closed = std::pin::pin!(quic.closed());
    let (mut uni_open, mut close_seen) = (true, false);
    let mut unis = FuturesUnordered::new();
    std::future::poll_fn(|cx| {
        if !close_seen {
            if let Poll::Ready(e) = closed.as_mut().poll(cx) {
                close_seen = true;
                on_closed(&conn, e);
            }
        }
        conn.intake.drive(&conn, cx);
        // Polled until it has nothing more; new streams' futures are then polled by their
        // set in the same turn.
        while uni_open {
            match uni.as_mut().poll(cx) {
                Poll::Ready(Ok(recv)) => {
                    unis.push(handle_uni(conn.clone(), recv));
                    uni.set(quic.accept_uni());
                }
                Poll::Ready(Err(_)) => uni_open = false,
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = unis.poll_next_unpin(cx) {}
        if close_seen && conn.intake.is_done() && !uni_open && unis.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Routes datagrams to their sessions, except while a session reads them directly
/// ([`Conn::claim_datagrams`]).
async fn datagram_loop(conn: Arc<Conn>) {
    loop {
        // One waiter only: a change between the check and the wait leaves a permit.
        let wake = conn.datagram_loop_wake.notified();
        if conn.datagrams_direct.load(Ordering::Acquire) {
            tokio::select! {
                _ = wake => continue,
                _ = conn.quic.closed() => return,
            }
        }
        tokio::select! {
            biased;
            r = conn.quic.read_datagram() => match r {
                Ok(d) => conn.route_datagram(d),
                Err(_) => return,
            },
            _ = wake => {}
        }
    }
}

async fn handle_uni(conn: Arc<Conn>, mut recv: quinn::RecvStream) {
    let mut buf = Bytes::new();
    let ty = match read_varint(&mut recv, &mut buf).await {
        Ok(ty) => ty,
        Err(PreambleError::Reset(code)) => {
            return conn
                .route_headerless_reset(Incoming::Uni(recv, Bytes::new()), code)
                .await
        }
        Err(PreambleError::Other) => return,
    };
    let route = stream_type::route_uni(ty, conn.role);
    if let Err(e) = conn.peer_critical.claim(route) {
        return conn.fail(e);
    }
    match route {
        UniRoute::Control => run_control(conn, recv, buf).await,
        UniRoute::QpackEncoder => drain_encoder(conn, recv, buf).await,
        UniRoute::QpackDecoder => {
            // Nothing to learn with a zero-capacity table: discard.
            while let Ok(Some(_)) = recv.read_chunk(4096, true).await {}
        }
        UniRoute::WebTransport => {
            let sid = match read_varint(&mut recv, &mut buf).await {
                Ok(sid) => sid,
                Err(PreambleError::Reset(code)) => {
                    return conn
                        .route_headerless_reset(Incoming::Uni(recv, Bytes::new()), code)
                        .await
                }
                Err(PreambleError::Other) => return,
            };
            if let Err(e) = stream_type::check_session_id(sid) {
                return conn.fail(e);
            }
            conn.route_stream(sid, Incoming::Uni(recv, buf)).await;
        }
        UniRoute::ConnectionError(code) => {
            conn.fail(ProtocolError::h3(code, "push stream not allowed"));
        }
        UniRoute::Ignore => {
            let _ = recv.stop(varint(H3Code::H3_STREAM_CREATION_ERROR.0));
        }
    }
}

/// The peer's QPACK encoder stream: with a table capacity of 0 the only legal instruction is
/// "Set Dynamic Table Capacity 0" (byte 0x20).
async fn drain_encoder(conn: Arc<Conn>, mut recv: quinn::RecvStream, first: Bytes) {
    let mut first = Some(first);
    loop {
        let r = match first.take() {
            Some(b) => Ok(Some(b)),
            None => recv
                .read_chunk(4096, true)
                .await
                .map(|c| c.map(|c| c.bytes)),
        };
        match r {
            Ok(Some(bytes)) => {
                if bytes.iter().any(|b| *b != 0x20) {
                    return conn.fail(ProtocolError::h3(
                        H3Code::QPACK_ENCODER_STREAM_ERROR,
                        "encoder instruction with a zero-capacity table",
                    ));
                }
            }
            Ok(None) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_CLOSED_CRITICAL_STREAM,
                    "QPACK encoder stream closed",
                ))
            }
            Err(quinn::ReadError::Reset(_)) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_CLOSED_CRITICAL_STREAM,
                    "QPACK encoder stream reset",
                ))
            }
            Err(_) => return,
        }
    }
}

async fn run_control(conn: Arc<Conn>, recv: quinn::RecvStream, first: Bytes) {
    let mut reader = FrameReader::new(recv, BytesMut::from(first), StreamKind::Control);
    loop {
        match reader.next().await {
            Ok(Some(Frame::Settings(s))) => {
                if let Err(e) = s.validate() {
                    return conn.fail(e);
                }
                trace!(settings = ?s.pairs(), "peer SETTINGS");
                conn.peer_settings.send_replace(Some(Arc::new(s)));
            }
            Ok(Some(Frame::Goaway(id))) => {
                debug!(id, "GOAWAY received");
                if conn.role == Role::Client {
                    conn.goaway.cancel();
                    for s in conn.sessions() {
                        s.draining.cancel();
                    }
                }
            }
            Ok(Some(Frame::MaxPushId(_))) if conn.role == Role::Server => {}
            Ok(Some(Frame::MaxPushId(_))) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_FRAME_UNEXPECTED,
                    "MAX_PUSH_ID sent by a server",
                ))
            }
            Ok(Some(Frame::CancelPush(_))) => {}
            Ok(Some(_)) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_FRAME_UNEXPECTED,
                    "unexpected frame on the control stream",
                ))
            }
            Ok(None) | Err(ReadFail::Read(quinn::ReadError::Reset(_))) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_CLOSED_CRITICAL_STREAM,
                    "control stream closed",
                ))
            }
            Err(ReadFail::Proto(e)) => return conn.fail(e),
            Err(ReadFail::Read(_)) => return,
        }
    }
}

/// The first read of a new bidirectional stream, made by [`bidi_now`].
enum FirstRead {
    /// Bytes read so far (none when nothing was ready).
    Bytes(Bytes),
    /// The peer reset the stream before anything arrived.
    Reset(quinn::VarInt),
}

/// Handles a new bidirectional stream in the intake's turn when it can be done without
/// waiting: its first chunk is in and holds a whole WebTransport preamble, and the session it
/// names is established and has room in its accept queue (the usual case: a stream's header
/// travels with its first payload). That takes no future, allocation or extra poll. Anything
/// else (a request stream, a preamble still to come, an unknown session, a full queue, a
/// malformed header, a reset) gets a [`handle_bidi`] future with what was read; `None` when
/// there is nothing left to do.
pub(crate) fn bidi_now(
    conn: &Arc<Conn>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    cx: &mut std::task::Context<'_>,
) -> Option<PreambleRead> {
    let polled = std::pin::pin!(recv.read_chunk(PREAMBLE_READ, true)).poll(cx);
    let first = match polled {
        // Pending: quinn keeps this turn's waker until handle_bidi's first poll replaces it.
        Poll::Pending => Bytes::new(),
        Poll::Ready(Ok(Some(c))) => c.bytes,
        Poll::Ready(Err(quinn::ReadError::Reset(code))) => {
            return Some(Box::pin(handle_bidi(
                conn.clone(),
                send,
                recv,
                FirstRead::Reset(code),
            )))
        }
        // FIN before any byte, or the connection is gone: nothing to route.
        Poll::Ready(_) => return None,
    };
    if let Some((sid, n)) = stream_type::wt_bidi_preamble(&first, conn.role) {
        if let Some(session) = conn.session_with_bidi_room(sid) {
            session.deliver_now(Incoming::Bidi(send, recv, first.slice(n..)));
            return None;
        }
    }
    Some(Box::pin(handle_bidi(
        conn.clone(),
        send,
        recv,
        FirstRead::Bytes(first),
    )))
}

/// The [`handle_bidi`] future of a new bidirectional stream accepted while earlier ones are
/// still being read: it waits its turn behind them.
pub(crate) fn bidi_later(
    conn: &Arc<Conn>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> PreambleRead {
    Box::pin(handle_bidi(
        conn.clone(),
        send,
        recv,
        FirstRead::Bytes(Bytes::new()),
    ))
}

async fn handle_bidi(
    conn: Arc<Conn>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    first: FirstRead,
) {
    let mut buf = match first {
        FirstRead::Bytes(b) => b,
        FirstRead::Reset(code) => {
            return conn
                .route_headerless_reset(Incoming::Bidi(send, recv, Bytes::new()), code)
                .await
        }
    };
    let (first, n) = match peek_varint(&mut recv, &mut buf).await {
        Ok(v) => v,
        Err(PreambleError::Reset(code)) => {
            return conn
                .route_headerless_reset(Incoming::Bidi(send, recv, Bytes::new()), code)
                .await
        }
        Err(PreambleError::Other) => return,
    };
    match stream_type::route_bidi(first, conn.role) {
        BidiRoute::WebTransport => {
            buf.advance(n);
            let sid = match read_varint(&mut recv, &mut buf).await {
                Ok(sid) => sid,
                Err(PreambleError::Reset(code)) => {
                    return conn
                        .route_headerless_reset(Incoming::Bidi(send, recv, Bytes::new()), code)
                        .await
                }
                Err(PreambleError::Other) => return,
            };
            if let Err(e) = stream_type::check_session_id(sid) {
                return conn.fail(e);
            }
            conn.route_stream(sid, Incoming::Bidi(send, recv, buf))
                .await;
        }
        BidiRoute::Request => {
            // The first varint is the first frame's type: the frame reader gets it all.
            let reader = FrameReader::new(recv, BytesMut::from(buf), StreamKind::Request);
            match conn.request_handler.clone() {
                Some(h) => h(conn, send, reader),
                None => conn.fail(ProtocolError::h3(
                    H3Code::H3_STREAM_CREATION_ERROR,
                    "request stream on a client",
                )),
            }
        }
        BidiRoute::ConnectionError(code) => conn.fail(ProtocolError::h3(
            code,
            "server-initiated bidirectional stream that is not WebTransport",
        )),
    }
}
