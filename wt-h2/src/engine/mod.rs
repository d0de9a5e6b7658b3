//! The sans-IO WebTransport-over-HTTP/2 session engine.
//!
//! ```text
//!            DATA payloads of the CONNECT stream            capsule bytes to send
//!   h2 ──► recv_data / recv_end / recv_reset ──► Engine ──► poll_transmit ──► h2
//!                                                  │ ▲
//!                          events (wake handles) ◄─┘ └─ commands (open, write, read, ...)
//! ```
//!
//! The engine owns everything about one session: the capsule decoder, the stream map and
//! state machines ([`streams`]), flow control both ways ([`flow_control`]), datagram queues,
//! and the session lifecycle. It never blocks and never touches tokio: the driver feeds it
//! bytes, drains its output within HTTP/2 send capacity, releases HTTP/2 receive window by
//! [`Engine::take_release`] (bytes the engine no longer holds), and wakes tasks on
//! [`Event`]s.
//!
//! Session lifecycle:
//!
//! ```text
//!   Open ──close()──────────────► ClosedLocally  (WT_CLOSE_SESSION + END_STREAM queued)
//!     │──WT_CLOSE_SESSION / END_STREAM ─► ClosedByPeer (END_STREAM reply queued)
//!     │──violation──────────────► Protocol (RST_STREAM with the violation's code)
//!     └──RST_STREAM / conn loss─► ResetByPeer / Connection
//! ```

pub(crate) mod flow_control;
pub(crate) mod streams;
pub(crate) mod tx;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use wt_core::capsule::{
    is_webtransport_type, Capsule, CapsuleDecoder, CapsuleError, CapsuleOptions, RawCapsule,
    ResetLayout, MAX_CLOSE_REASON,
};
use wt_core::codes::{CapsuleType, H2Code};
use wt_core::varint;
use wt_core::{FlowLimits, ProtocolError, SessionError, SessionStats, StreamError, StreamId};

use self::flow_control::{RecvWindow, SendCredit};
use self::streams::recv::RecvHalf;
use self::streams::send::SendHalf;
use self::streams::state::{RecvState, SendState};
use self::streams::{Dir, Numbering, Side, Stream, Streams};
use self::tx::{Segment, Tx};

/// Largest datagram payload we send (one DATAGRAM capsule; HTTP/2 delivers it reliably).
pub const MAX_DATAGRAM_SIZE: usize = 65535;

/// Largest value of WT_MAX_STREAMS / WT_STREAMS_BLOCKED (2^60).
const MAX_STREAMS_LIMIT: u64 = 1 << 60;

/// Session flow-control limits: the initial credit one side grants the other, in the terms
/// of the HTTP/2 SETTINGS 0x2b61–0x2b66 (and the `WebTransport-Init` header for the three
/// per-stream byte limits).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Session-wide stream-data bytes (SETTINGS_WT_INITIAL_MAX_DATA, 0x2b61).
    pub max_data: u64,
    /// Per-stream bytes on unidirectional streams the other side opens (0x2b62, `u`).
    pub max_stream_data_uni: u64,
    /// Per-stream bytes the other side may send on bidirectional streams the granting side
    /// opened (0x2b63, `bl`).
    pub max_stream_data_bidi_local: u64,
    /// Per-stream bytes the other side may send on bidirectional streams it opened
    /// (0x2b66, `br`).
    pub max_stream_data_bidi_remote: u64,
    /// Unidirectional streams the other side may open (0x2b64).
    pub max_streams_uni: u64,
    /// Bidirectional streams the other side may open (0x2b65).
    pub max_streams_bidi: u64,
}

impl Default for FlowConfig {
    /// 16 MiB per session, 1 MiB per stream, 100 streams of each kind; re-granted as consumed.
    fn default() -> Self {
        FlowConfig {
            max_data: 16 << 20,
            max_stream_data_uni: 1 << 20,
            max_stream_data_bidi_local: 1 << 20,
            max_stream_data_bidi_remote: 1 << 20,
            max_streams_uni: 100,
            max_streams_bidi: 100,
        }
    }
}

impl FlowConfig {
    /// All limits zero: the other side can do nothing until capsules grant credit.
    pub const ZERO: FlowConfig = FlowConfig {
        max_data: 0,
        max_stream_data_uni: 0,
        max_stream_data_bidi_local: 0,
        max_stream_data_bidi_remote: 0,
        max_streams_uni: 0,
        max_streams_bidi: 0,
    };
}

/// The HTTP/2 error codes used to reset the CONNECT stream for the three WebTransport error
/// conditions the draft leaves unassigned (0xTBD).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ErrorCodes {
    /// WT_ERROR (bad close reason, reset/stop codes above 32 bits). Default PROTOCOL_ERROR.
    pub wt_error: H2Code,
    /// WT_STREAM_STATE_ERROR. Default PROTOCOL_ERROR.
    pub stream_state: H2Code,
    /// WT_FLOW_CONTROL_ERROR. Default FLOW_CONTROL_ERROR.
    pub flow_control: H2Code,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        ErrorCodes {
            wt_error: H2Code::PROTOCOL_ERROR,
            stream_state: H2Code::PROTOCOL_ERROR,
            flow_control: H2Code::FLOW_CONTROL_ERROR,
        }
    }
}

/// Which stream ids each side opens (bit 0 of a capsule-level stream id).
///
/// Draft-15 (like QUIC) gives client-initiated streams bit 0 clear: client bidi 0, 4, …, uni
/// 2, 6, …; server bidi 1, 5, …, uni 3, 7, …. `@fails-components/webtransport` 1.6 numbers
/// them the other way round over HTTP/2 (see the crate docs, "Legacy peers").
///
/// Honoured only by sessions speaking the legacy dialect ([`Dialect::H2Legacy`]); draft-15
/// sessions always use [`Draft`](Self::Draft).
///
/// [`Dialect::H2Legacy`]: wt_core::Dialect::H2Legacy
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum StreamIdParity {
    /// The draft's numbering: client-initiated ids have bit 0 clear.
    Draft,
    /// Swapped numbering: client-initiated ids have bit 0 set (client bidi 1, 5, …, uni 3,
    /// 7, …; server bidi 0, 4, …, uni 2, 6, …).
    Swapped,
    /// Decided once per session by whichever comes first: opening a stream of our own
    /// commits to [`Draft`](Self::Draft); the peer's first capsule naming a stream, if that id
    /// carries the bit of *our* draft numbering, selects [`Swapped`](Self::Swapped)
    /// (otherwise [`Draft`](Self::Draft)). A server sees the client's first stream before
    /// opening any in the usual request/response pattern; a client usually opens first, so
    /// to talk to a swapped server it must be configured [`Swapped`](Self::Swapped).
    #[default]
    AutoDetect,
}

/// Everything the engine needs to know at creation.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    /// Client or server.
    pub side: Side,
    /// Capsule dialect.
    pub options: CapsuleOptions,
    /// Stream numbering (the glue passes [`StreamIdParity::Draft`] for draft-15 sessions).
    pub parity: StreamIdParity,
    /// The session speaks the legacy dialect: tolerate the known deviations of legacy peers
    /// that are harmless (see the crate docs, "Legacy peers").
    pub legacy_quirks: bool,
    /// Credit we grant the peer (and the peer already knows about).
    pub local: FlowConfig,
    /// Credit the peer granted us.
    pub peer: FlowConfig,
    /// Codes for WT errors.
    pub codes: ErrorCodes,
    /// Largest known capsule accepted.
    pub max_capsule_len: usize,
    /// Writes block once this many bytes wait for HTTP/2 send capacity.
    pub max_send_buffer: usize,
    /// Largest WT_STREAM payload per capsule.
    pub max_chunk: usize,
}

impl EngineConfig {
    /// Defaults for `side`.
    pub fn new(side: Side) -> Self {
        EngineConfig {
            side,
            options: CapsuleOptions::default(),
            parity: StreamIdParity::Draft,
            legacy_quirks: false,
            local: FlowConfig::default(),
            peer: FlowConfig::default(),
            codes: ErrorCodes::default(),
            max_capsule_len: wt_core::limits::MAX_CAPSULE_LEN,
            max_send_buffer: 1 << 20,
            max_chunk: 32 * 1024,
        }
    }
}

/// Something handles may be waiting for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Data, FIN or a reset to read on the stream.
    Readable(u64),
    /// Credit or buffer space to write, or the stream was stopped.
    Writable(u64),
    /// A peer-opened stream waits to be accepted.
    Incoming(Dir),
    /// Stream credit to open a stream.
    OpenCredit(Dir),
    /// A datagram arrived.
    Datagram,
    /// The peer asked to drain.
    Draining,
    /// The session ended.
    Closed,
}

/// Result of a write.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// This many bytes were queued.
    Written(usize),
    /// No credit or buffer space; an [`Event::Writable`] follows.
    Blocked,
}

/// Result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A chunk.
    Data(Bytes),
    /// The end of the stream.
    Fin,
    /// Nothing yet; an [`Event::Readable`] follows.
    Blocked,
}

/// A WT_STREAM capsule whose header (type, length, stream ID) has been read and whose payload
/// is still arriving. Its payload goes to the stream as it arrives, as slices of the DATA
/// frames, instead of being gathered (copied) until the capsule is whole: DATA frames end
/// wherever the sender's HTTP/2 capacity ran out, so a bulk capsule is usually cut. The
/// whole payload is checked against the limits when the header arrives
/// ([`Engine::begin_partial`]); the pieces are then handled as WT_STREAM capsules of their
/// own, the last one carrying the capsule's FIN.
#[derive(Debug, Clone, Copy)]
struct Partial {
    ty: CapsuleType,
    id: u64,
    fin: bool,
    /// Payload bytes still to come.
    left: u64,
}

/// The header of a WT_STREAM capsule at the start of `buf` when its payload is not all in
/// `buf`: the partial capsule that follows the header, and the header's length (type,
/// length and stream ID). `None` for anything else, or when the header itself is cut, or
/// when the capsule is longer than `max_len` (the decoder refuses it).
fn cut_stream_head(buf: &[u8], opts: &CapsuleOptions, max_len: usize) -> Option<(Partial, usize)> {
    let mut view = buf;
    let ty = CapsuleType(varint::decode(&mut view).ok()?);
    let len = varint::decode(&mut view).ok()?;
    if !matches!(ty, CapsuleType::WT_STREAM_3B | CapsuleType::WT_STREAM_3C)
        || len > max_len as u64
        || len <= view.len() as u64
    {
        return None;
    }
    let before = view.len();
    let id = varint::decode(&mut view).ok()?;
    let id_len = (before - view.len()) as u64;
    if id_len > len {
        return None; // the decoder reports the malformed capsule
    }
    let partial = Partial {
        ty,
        id,
        fin: opts.fin_mapping.is_fin(ty),
        left: len - id_len,
    };
    Some((partial, buf.len() - view.len()))
}

/// The session engine (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Engine {
    cfg: EngineConfig,
    decoder: CapsuleDecoder,
    rx: BytesMut,
    /// A WT_STREAM capsule cut by the end of a DATA frame (see [`Partial`]).
    partial: Option<Partial>,
    streams: Streams,
    /// Which wire ids are ours.
    ids: Numbering,
    /// [`StreamIdParity::AutoDetect`] and nothing has committed the numbering yet.
    parity_pending: bool,
    recv_data: RecvWindow,
    send_data: SendCredit,
    recv_streams: [RecvWindow; 2],
    send_streams: [SendCredit; 2],
    tx: Tx,
    end_stream: bool,
    reset: Option<H2Code>,
    release: u64,
    events: VecDeque<Event>,
    datagrams: VecDeque<Bytes>,
    blocked_writers: Vec<u64>,
    error: Option<SessionError>,
    draining: bool,
    drain_sent: bool,
    peer_ended: bool,
    stats: SessionStats,
}

fn state_error(codes: &ErrorCodes, what: &'static str) -> ProtocolError {
    ProtocolError::h2(codes.stream_state, what)
}

impl Engine {
    /// A new engine for an established session.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            decoder: CapsuleDecoder::new(cfg.max_capsule_len),
            rx: BytesMut::new(),
            partial: None,
            streams: Streams::default(),
            ids: match cfg.parity {
                StreamIdParity::Swapped => Numbering::draft(cfg.side).swapped(),
                _ => Numbering::draft(cfg.side),
            },
            parity_pending: cfg.parity == StreamIdParity::AutoDetect,
            recv_data: RecvWindow::new(cfg.local.max_data),
            send_data: SendCredit::new(cfg.peer.max_data),
            recv_streams: [
                RecvWindow::new(cfg.local.max_streams_bidi),
                RecvWindow::new(cfg.local.max_streams_uni),
            ],
            send_streams: [
                SendCredit::new(cfg.peer.max_streams_bidi),
                SendCredit::new(cfg.peer.max_streams_uni),
            ],
            tx: Tx::default(),
            end_stream: false,
            reset: None,
            release: 0,
            events: VecDeque::new(),
            datagrams: VecDeque::new(),
            blocked_writers: Vec::new(),
            error: None,
            draining: false,
            drain_sent: false,
            peer_ended: false,
            stats: SessionStats::default(),
            cfg,
        }
    }

    // ---------------------------------------------------------------- queries

    /// Why the session ended, if it did.
    pub fn error(&self) -> Option<&SessionError> {
        self.error.as_ref()
    }

    /// Whether the peer asked to drain.
    #[cfg(test)]
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Stream bytes received and not yet read by the application (nor discarded).
    pub fn unread(&self) -> u64 {
        self.recv_data.outstanding()
    }

    /// Bytes of capsules waiting to be sent.
    pub fn transmit_len(&self) -> usize {
        self.tx.len()
    }

    /// Whether END_STREAM should be sent once the output is drained.
    pub fn wants_end_stream(&self) -> bool {
        self.end_stream
    }

    /// The code to reset the CONNECT stream with, if the session failed locally.
    pub fn wants_reset(&self) -> Option<H2Code> {
        self.reset
    }

    /// Whether the peer ended its side of the CONNECT stream (END_STREAM or RST_STREAM).
    #[cfg(test)]
    pub fn peer_ended(&self) -> bool {
        self.peer_ended
    }

    /// Counters and limits.
    pub fn stats(&self) -> SessionStats {
        let mut s = self.stats;
        s.local_limits = Some(FlowLimits {
            max_data: self.recv_data.max(),
            max_streams_bidi: self.recv_streams[0].max(),
            max_streams_uni: self.recv_streams[1].max(),
        });
        s.peer_limits = Some(FlowLimits {
            max_data: self.send_data.max(),
            max_streams_bidi: self.send_streams[0].max(),
            max_streams_uni: self.send_streams[1].max(),
        });
        s
    }

    /// Number of live streams (for tests and bounds checks).
    #[cfg(test)]
    pub fn live_streams(&self) -> usize {
        self.streams.map.len()
    }

    // ---------------------------------------------------------------- output

    /// Takes up to `max` bytes of capsule output.
    pub fn poll_transmit(&mut self, max: usize) -> Option<Segment> {
        if max == 0 {
            return None;
        }
        let before = self.tx.len();
        let out = self.tx.pop(max)?;
        let below = self.cfg.max_send_buffer / 2;
        if before >= below && self.tx.len() < below {
            self.wake_writers();
        }
        Some(out)
    }

    /// Bytes of received CONNECT-stream data the engine no longer holds, to give back to
    /// HTTP/2 flow control.
    pub fn take_release(&mut self) -> usize {
        std::mem::take(&mut self.release) as usize
    }

    /// The next event for the glue.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn wake_writers(&mut self) {
        for id in self.blocked_writers.drain(..) {
            if let Some(s) = self.streams.map.get_mut(&id).and_then(|s| s.send.as_mut()) {
                s.write_blocked = false;
            }
            self.events.push_back(Event::Writable(id));
        }
    }

    // ---------------------------------------------------------------- input

    /// DATA received on the CONNECT stream, as a slice (copied into the decoder buffer).
    #[cfg(test)]
    pub fn recv_data(&mut self, data: &[u8]) {
        if self.error.is_some() {
            self.release += data.len() as u64;
            return;
        }
        self.rx.extend_from_slice(data);
        self.decode_rx();
    }

    /// DATA received on the CONNECT stream. Capsules that arrive whole are decoded straight
    /// from `data` (their values are slices of it, no copy); only a capsule cut by the end of
    /// the frame (and what follows a partial one) goes through the decoder buffer.
    pub fn recv_bytes(&mut self, mut data: Bytes) {
        if self.error.is_some() {
            self.release += data.len() as u64;
            return;
        }
        if !self.continue_partial(&mut data) {
            return;
        }
        if self.rx.is_empty() && self.decoder.is_at_boundary(&self.rx) {
            while !data.is_empty() {
                let mut view = &data[..];
                let (Ok(ty), Ok(len)) = (varint::decode(&mut view), varint::decode(&mut view))
                else {
                    break;
                };
                let header = data.len() - view.len();
                let ty = CapsuleType(ty);
                if len > view.len() as u64 {
                    // Cut by the frame's end: a WT_STREAM capsule goes on as a partial one,
                    // anything else through the decoder buffer.
                    let Some((p, head)) =
                        cut_stream_head(&data, &self.cfg.options, self.cfg.max_capsule_len)
                    else {
                        break;
                    };
                    data.advance(head);
                    if !self.begin_partial(p, head) || !self.continue_partial(&mut data) {
                        self.release += data.len() as u64;
                        return;
                    }
                    continue;
                }
                let wire = header + len as usize;
                if !is_webtransport_type(ty) {
                    // Unknown or GREASE capsule, whole: skipped.
                    data.advance(wire);
                    self.release += wire as u64;
                    continue;
                }
                if len > self.cfg.max_capsule_len as u64 {
                    break; // the decoder reports it
                }
                let value = data.slice(header..wire);
                data.advance(wire);
                if !self.on_capsule(RawCapsule { ty, value }, wire as u64) {
                    self.release += data.len() as u64;
                    return;
                }
            }
            if data.is_empty() {
                return;
            }
        }
        self.rx.extend_from_slice(&data);
        self.decode_rx();
    }

    /// Starts the partial WT_STREAM capsule `p`, whose `head` header bytes were just taken
    /// from the input (and are released here). Its whole payload is checked against the
    /// limits now, as a whole capsule is: the peer sent it against the limits it knew then,
    /// so credit granted while its pieces arrive (for earlier pieces read meanwhile) must not
    /// make it fit. False if the session failed.
    fn begin_partial(&mut self, p: Partial, head: usize) -> bool {
        self.release += head as u64;
        self.settle_parity(p.id);
        match self.check_stream_data(p.id, p.left) {
            Ok(()) => {
                self.partial = Some(p);
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Hands the front of `data` that belongs to the partial WT_STREAM capsule (if any) to
    /// its stream. False once the session ended (the rest of `data` is released then).
    fn continue_partial(&mut self, data: &mut Bytes) -> bool {
        let Some(p) = self.partial.as_mut() else {
            return true;
        };
        let n = p.left.min(data.len() as u64);
        if n == 0 {
            return true;
        }
        p.left -= n;
        let (id, fin) = (p.id, p.fin && p.left == 0);
        if p.left == 0 {
            self.partial = None;
        }
        let piece = data.split_to(n as usize);
        if let Err(e) = self.handle(Capsule::Stream {
            id,
            fin,
            data: piece,
        }) {
            self.release += n;
            self.fail(e);
        }
        if self.error.is_some() {
            self.release += data.len() as u64;
            data.clear();
            return false;
        }
        true
    }

    /// Decodes what the decoder buffer holds.
    fn decode_rx(&mut self) {
        loop {
            if self.partial.is_some() {
                let mut rest = self.rx.split().freeze();
                let going = self.continue_partial(&mut rest);
                if !rest.is_empty() {
                    // The partial capsule ended inside: the rest is decoded as usual (or,
                    // after an error, released below).
                    self.rx.extend_from_slice(&rest);
                }
                if !going || self.rx.is_empty() {
                    break;
                }
            }
            let before = self.rx.len();
            let raw = match self.decoder.decode(&mut self.rx) {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    self.release += (before - self.rx.len()) as u64;
                    // A WT_STREAM capsule whose header is complete goes on as a partial
                    // capsule rather than being gathered here.
                    if self.decoder.is_at_boundary(&[]) {
                        if let Some((p, head)) =
                            cut_stream_head(&self.rx, &self.cfg.options, self.cfg.max_capsule_len)
                        {
                            self.rx.advance(head);
                            if self.begin_partial(p, head) {
                                continue;
                            }
                        }
                    }
                    break;
                }
                Err(e) => {
                    self.fail(capsule_error(&self.cfg.codes, &e));
                    break;
                }
            };
            let wire = (before - self.rx.len()) as u64;
            if !self.on_capsule(raw, wire) {
                break;
            }
        }
        if self.error.is_some() {
            // Everything after a close or a violation is ignored.
            self.release += self.rx.len() as u64;
            self.rx.clear();
        }
    }

    /// Handles one decoded capsule that took `wire` bytes of input (its own and any skipped
    /// before it); false once the session ended (the rest of the input is ignored).
    fn on_capsule(&mut self, raw: RawCapsule, wire: u64) -> bool {
        let ty = raw.ty;
        let cap = match Capsule::parse(raw, &self.cfg.options) {
            Ok(c) => c,
            Err(e) => {
                self.release += wire;
                self.fail(capsule_error(&self.cfg.codes, &e));
                return false;
            }
        };
        let held = match &cap {
            Capsule::Stream { data, .. } => data.len() as u64,
            _ => 0,
        };
        self.release += wire - held;
        tracing::trace!(?ty, "capsule received");
        if let Err(e) = self.handle(cap) {
            // Refused stream data never reached its stream: give it back too.
            self.release += held;
            self.fail(e);
        }
        self.error.is_none()
    }

    /// END_STREAM on the CONNECT stream.
    pub fn recv_end(&mut self) {
        self.peer_ended = true;
        if self.error.is_some() {
            return;
        }
        if let Some(p) = self.partial {
            let e = CapsuleError::Truncated(Some(p.ty));
            self.fail(capsule_error(&self.cfg.codes, &e));
            return;
        }
        if let Err(e) = self.decoder.finish(&self.rx) {
            self.fail(capsule_error(&self.cfg.codes, &e));
            return;
        }
        self.tx.clear();
        self.end_stream = true;
        self.terminate(SessionError::ClosedByPeer {
            code: 0,
            reason: String::new(),
        });
    }

    /// RST_STREAM on the CONNECT stream.
    pub fn recv_reset(&mut self, code: H2Code) {
        self.peer_ended = true;
        self.end_stream = false;
        self.tx.clear();
        if self.error.is_none() {
            self.terminate(SessionError::ResetByPeer(wt_core::WireCode::H2(code)));
        }
    }

    /// The connection under the session failed.
    pub fn connection_lost(&mut self, err: SessionError) {
        self.peer_ended = true;
        self.end_stream = false;
        self.tx.clear();
        if self.error.is_none() {
            self.terminate(err);
        }
    }

    fn fail(&mut self, err: ProtocolError) {
        if self.error.is_some() {
            return;
        }
        tracing::debug!("session protocol violation: {err}");
        if let wt_core::WireCode::H2(code) = err.code {
            self.reset = Some(code);
        }
        self.tx.clear();
        self.end_stream = false;
        self.terminate(SessionError::Protocol(err));
    }

    fn terminate(&mut self, err: SessionError) {
        self.error = Some(err);
        for (_, s) in self.streams.map.drain() {
            if let Some(r) = s.recv {
                self.release += r.buffered;
            }
        }
        self.streams.pending_accept = Default::default();
        self.blocked_writers.clear();
        self.datagrams.clear();
        self.events.push_back(Event::Closed);
    }

    /// [`StreamIdParity::AutoDetect`]: the peer's first capsule naming a stream (`id`)
    /// settles the numbering. Before we opened any stream every id it names must be its own;
    /// one carrying our bit means it numbers the other way round.
    fn settle_parity(&mut self, id: u64) {
        if !self.parity_pending {
            return;
        }
        self.parity_pending = false;
        if self.ids.is_local(id) && self.streams.opened_local == [0, 0] {
            tracing::debug!(id, "peer numbers streams with swapped initiator parity");
            self.ids = self.ids.swapped();
        }
    }

    fn handle(&mut self, cap: Capsule) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        match &cap {
            Capsule::Stream { id, .. }
            | Capsule::ResetStream { id, .. }
            | Capsule::StopSending { id, .. }
            | Capsule::MaxStreamData { id, .. }
            | Capsule::StreamDataBlocked { id, .. } => self.settle_parity(*id),
            _ => {}
        }
        match cap {
            Capsule::Stream { id, fin, data } => self.on_stream(id, fin, data),
            Capsule::ResetStream {
                id,
                code,
                reliable_size,
            } => self.on_reset(id, code, reliable_size),
            Capsule::StopSending { id, code } => self.on_stop(id, code),
            Capsule::MaxStreamData { id, max } => self.on_max_stream_data(id, max),
            Capsule::StreamDataBlocked { id, .. } => {
                if self.ids.is_local(id) && Dir::of(id) == Dir::Uni {
                    return Err(state_error(
                        &codes,
                        "WT_STREAM_DATA_BLOCKED on our uni stream",
                    ));
                }
                self.remote_or_local(id)?;
                match self.streams.map.get(&id) {
                    Some(s) if s.recv.as_ref().is_some_and(|r| !r.state.peer_done()) => Ok(()),
                    _ => Err(state_error(
                        &codes,
                        "WT_STREAM_DATA_BLOCKED on a closed stream",
                    )),
                }
            }
            Capsule::MaxData(n) => match self.send_data.update(n) {
                Ok(true) => {
                    self.wake_writers();
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(_) => Err(ProtocolError::h2(
                    codes.flow_control,
                    "WT_MAX_DATA decreased",
                )),
            },
            Capsule::MaxStreamsBidi(n) => self.on_max_streams(Dir::Bi, n),
            Capsule::MaxStreamsUni(n) => self.on_max_streams(Dir::Uni, n),
            Capsule::StreamsBlockedBidi(n) | Capsule::StreamsBlockedUni(n) => {
                if n > MAX_STREAMS_LIMIT {
                    return Err(ProtocolError::h2(
                        codes.flow_control,
                        "WT_STREAMS_BLOCKED above 2^60",
                    ));
                }
                Ok(())
            }
            Capsule::DataBlocked(_) => Ok(()),
            Capsule::Datagram(d) => {
                self.stats.datagrams_received += 1;
                if self.datagrams.len() >= wt_core::limits::MAX_PENDING_DATAGRAMS {
                    self.datagrams.pop_front();
                }
                self.datagrams.push_back(d);
                self.events.push_back(Event::Datagram);
                Ok(())
            }
            Capsule::CloseSession { code, reason } => {
                self.tx.clear();
                self.end_stream = true;
                self.terminate(SessionError::ClosedByPeer { code, reason });
                Ok(())
            }
            Capsule::DrainSession => {
                if !self.draining {
                    self.draining = true;
                    self.events.push_back(Event::Draining);
                }
                Ok(())
            }
            // PADDING (zeroed or not), unknown and GREASE capsules.
            _ => Ok(()),
        }
    }

    /// Looks up a stream named by the peer, opening peer-initiated streams (and every lower
    /// id of the same kind) on first mention. `Ok(None)`: the stream existed and is closed.
    fn remote_or_local(&mut self, id: u64) -> Result<bool, ProtocolError> {
        let ids = self.ids;
        let dir = Dir::of(id);
        let index = StreamId(id).index();
        if ids.is_local(id) {
            if index >= self.streams.opened_local[dir as usize] {
                return Err(state_error(
                    &self.cfg.codes,
                    "capsule names a stream of ours that was never opened",
                ));
            }
            return Ok(self.streams.map.contains_key(&id));
        }
        let next = self.streams.opened_remote[dir as usize];
        if index >= next {
            let count = index - next + 1;
            if self.recv_streams[dir as usize].on_receive(count).is_err() {
                return Err(ProtocolError::h2(
                    self.cfg.codes.flow_control,
                    "peer opened more streams than allowed",
                ));
            }
            for i in next..=index {
                let sid = ids.remote_id(dir, i);
                let stream = match dir {
                    Dir::Uni => Stream {
                        send: None,
                        recv: Some(RecvHalf::new(self.cfg.local.max_stream_data_uni)),
                    },
                    Dir::Bi => Stream {
                        send: Some(SendHalf::new(self.cfg.peer.max_stream_data_bidi_local)),
                        recv: Some(RecvHalf::new(self.cfg.local.max_stream_data_bidi_remote)),
                    },
                };
                self.streams.map.insert(sid, stream);
                self.streams.pending_accept[dir as usize].push_back(sid);
                match dir {
                    Dir::Bi => self.stats.bidi_opened_remote += 1,
                    Dir::Uni => self.stats.uni_opened_remote += 1,
                }
            }
            self.streams.opened_remote[dir as usize] = index + 1;
            self.events.push_back(Event::Incoming(dir));
        }
        Ok(self.streams.map.contains_key(&id))
    }

    /// Whether `len` more bytes of stream data on `id` are allowed: the stream's state, and
    /// both flow-control limits. Opens a peer's stream the first time it is named.
    fn check_stream_data(&mut self, id: u64, len: u64) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        if self.ids.is_local(id) && Dir::of(id) == Dir::Uni {
            return Err(state_error(
                &codes,
                "WT_STREAM on our unidirectional stream",
            ));
        }
        self.remote_or_local(id)?;
        let Some(stream) = self.streams.map.get(&id) else {
            return Err(state_error(&codes, "WT_STREAM after the stream ended"));
        };
        let Some(recv) = stream.recv.as_ref() else {
            return Err(state_error(&codes, "WT_STREAM on a stream we only send on"));
        };
        if recv.state.peer_done() {
            return Err(state_error(&codes, "WT_STREAM after FIN or reset"));
        }
        if recv.window.received().saturating_add(len) > recv.window.max() {
            return Err(ProtocolError::h2(
                codes.flow_control,
                "stream data beyond WT_MAX_STREAM_DATA",
            ));
        }
        if self.recv_data.received().saturating_add(len) > self.recv_data.max() {
            return Err(ProtocolError::h2(
                codes.flow_control,
                "stream data beyond WT_MAX_DATA",
            ));
        }
        Ok(())
    }

    fn on_stream(&mut self, id: u64, fin: bool, data: Bytes) -> Result<(), ProtocolError> {
        let len = data.len() as u64;
        self.check_stream_data(id, len)?;
        if len == 0 && !fin {
            // ST-11: an empty capsule that neither opens nor closes is tolerated.
            return Ok(());
        }
        let Some(recv) = self.streams.map.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Ok(()); // checked above
        };
        // Within both limits (checked above): these only count.
        let _ = recv.window.on_receive(len);
        let _ = self.recv_data.on_receive(len);
        self.stats.bytes_received += len;
        if recv.app_done {
            // Stopped or dropped by the application: discard, give the credit back.
            recv.window.consume(len);
            self.recv_data.consume(len);
            self.release += len;
        } else if len > 0 {
            recv.buffered += len;
            recv.buf.push_back(data);
        }
        if fin {
            recv.state = RecvState::SizeKnown;
        }
        self.events.push_back(Event::Readable(id));
        self.grant_data();
        self.maybe_retire(id);
        Ok(())
    }

    fn on_reset(
        &mut self,
        id: u64,
        code: u64,
        reliable_size: Option<u64>,
    ) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        let Ok(code) = u32::try_from(code) else {
            return Err(ProtocolError::h2(
                codes.wt_error,
                "WT_RESET_STREAM code above 32 bits",
            ));
        };
        if self.ids.is_local(id) && Dir::of(id) == Dir::Uni {
            return Err(state_error(
                &codes,
                "WT_RESET_STREAM on our unidirectional stream",
            ));
        }
        self.remote_or_local(id)?;
        let Some(stream) = self.streams.map.get_mut(&id) else {
            return Err(state_error(&codes, "WT_RESET_STREAM on a closed stream"));
        };
        let Some(recv) = stream.recv.as_mut() else {
            return Err(state_error(
                &codes,
                "WT_RESET_STREAM on a stream we only send on",
            ));
        };
        match recv.state {
            RecvState::Recv | RecvState::SizeKnown => {}
            _ => {
                return Err(state_error(
                    &codes,
                    "second WT_RESET_STREAM or reset after end",
                ))
            }
        }
        let mut freed = 0;
        match reliable_size {
            Some(rs) if rs != recv.window.received() => {
                return Err(state_error(
                    &codes,
                    "WT_RESET_STREAM reliable size differs from the bytes received",
                ));
            }
            Some(_) => {}
            None => freed = recv.discard(),
        }
        if recv.app_done {
            freed += recv.discard();
        }
        recv.window.consume(freed);
        recv.state = RecvState::ResetRecvd { code };
        self.recv_data.consume(freed);
        self.release += freed;
        self.events.push_back(Event::Readable(id));
        self.grant_data();
        self.maybe_retire(id);
        Ok(())
    }

    fn on_stop(&mut self, id: u64, code: u64) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        let opts = self.cfg.options;
        let Ok(code) = u32::try_from(code) else {
            return Err(ProtocolError::h2(
                codes.wt_error,
                "WT_STOP_SENDING code above 32 bits",
            ));
        };
        if !self.ids.is_local(id) && Dir::of(id) == Dir::Uni {
            return Err(state_error(
                &codes,
                "WT_STOP_SENDING on the peer's uni stream",
            ));
        }
        self.remote_or_local(id)?;
        let Some(stream) = self.streams.map.get_mut(&id) else {
            return Ok(());
        };
        let Some(send) = stream.send.as_mut() else {
            return Err(state_error(
                &codes,
                "WT_STOP_SENDING on a receive-only stream",
            ));
        };
        if send.stopped.is_some() {
            return Err(state_error(&codes, "second WT_STOP_SENDING"));
        }
        send.stopped = Some(code);
        if !send.state.is_terminal() {
            // RS-7: answer with a reset carrying the same code and the bytes sent.
            let reliable_size = match opts.reset_layout {
                ResetLayout::ReliableSize => Some(send.offset()),
                ResetLayout::Legacy => None,
            };
            send.state = SendState::ResetSent;
            self.tx.capsule(
                &Capsule::ResetStream {
                    id,
                    code: u64::from(code),
                    reliable_size,
                },
                &opts,
            );
        }
        self.events.push_back(Event::Writable(id));
        self.maybe_retire(id);
        Ok(())
    }

    fn on_max_stream_data(&mut self, id: u64, max: u64) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        if !self.ids.is_local(id) && Dir::of(id) == Dir::Uni {
            if self.cfg.legacy_quirks {
                // @fails-components announces the receive window of every stream it
                // creates, its own send-only uni streams included: it opens the stream
                // (implicitly, as any capsule naming it would) and says nothing else.
                self.remote_or_local(id)?;
                return Ok(());
            }
            return Err(state_error(
                &codes,
                "WT_MAX_STREAM_DATA on the peer's uni stream",
            ));
        }
        self.remote_or_local(id)?;
        let Some(stream) = self.streams.map.get_mut(&id) else {
            return Ok(());
        };
        let Some(send) = stream.send.as_mut() else {
            return Err(state_error(
                &codes,
                "WT_MAX_STREAM_DATA on a receive-only stream",
            ));
        };
        if send.stopped.is_some() {
            return Err(state_error(
                &codes,
                "WT_MAX_STREAM_DATA after WT_STOP_SENDING",
            ));
        }
        match send.credit.update(max) {
            Ok(true) => {
                if send.write_blocked {
                    send.write_blocked = false;
                    self.blocked_writers.retain(|w| *w != id);
                    self.events.push_back(Event::Writable(id));
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(_) => Err(ProtocolError::h2(
                codes.flow_control,
                "WT_MAX_STREAM_DATA decreased",
            )),
        }
    }

    fn on_max_streams(&mut self, dir: Dir, n: u64) -> Result<(), ProtocolError> {
        let codes = self.cfg.codes;
        if n > MAX_STREAMS_LIMIT {
            return Err(ProtocolError::h2(
                codes.flow_control,
                "WT_MAX_STREAMS above 2^60",
            ));
        }
        match self.send_streams[dir as usize].update(n) {
            Ok(true) => {
                self.events.push_back(Event::OpenCredit(dir));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(_) => Err(ProtocolError::h2(
                codes.flow_control,
                "WT_MAX_STREAMS decreased",
            )),
        }
    }

    /// Removes a stream whose halves are both finished, and re-grants stream credit for
    /// peer-opened ones.
    fn maybe_retire(&mut self, id: u64) {
        let done = self.streams.map.get(&id).is_some_and(|s| s.is_done());
        if !done {
            return;
        }
        self.streams.map.remove(&id);
        if !self.ids.is_local(id) {
            let dir = Dir::of(id);
            self.recv_streams[dir as usize].consume(1);
            self.grant_streams(dir);
        }
    }

    fn grant_streams(&mut self, dir: Dir) {
        if self.error.is_some()
            || self.streams.pending_accept[dir as usize].len()
                >= wt_core::limits::MAX_PENDING_ACCEPT
        {
            return;
        }
        if let Some(n) = self.recv_streams[dir as usize].poll_update() {
            let cap = match dir {
                Dir::Bi => Capsule::MaxStreamsBidi(n),
                Dir::Uni => Capsule::MaxStreamsUni(n),
            };
            self.tx.capsule(&cap, &self.cfg.options);
        }
    }

    fn grant_data(&mut self) {
        if self.error.is_some() {
            return;
        }
        if let Some(n) = self.recv_data.poll_update() {
            self.tx.capsule(&Capsule::MaxData(n), &self.cfg.options);
        }
    }

    // ---------------------------------------------------------------- commands

    fn alive(&self) -> Result<(), SessionError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Opens a stream; `Ok(None)` when the peer's stream credit is used up (an
    /// [`Event::OpenCredit`] follows when it grows).
    pub fn open(&mut self, dir: Dir) -> Result<Option<u64>, SessionError> {
        self.alive()?;
        let credit = &mut self.send_streams[dir as usize];
        if credit.available() == 0 {
            if credit.should_report_blocked() {
                let max = credit.max();
                let cap = match dir {
                    Dir::Bi => Capsule::StreamsBlockedBidi(max),
                    Dir::Uni => Capsule::StreamsBlockedUni(max),
                };
                self.tx.capsule(&cap, &self.cfg.options);
            }
            return Ok(None);
        }
        credit.consume(1);
        // Our first stream fixes the numbering the peer will see.
        self.parity_pending = false;
        let index = self.streams.opened_local[dir as usize];
        self.streams.opened_local[dir as usize] += 1;
        let id = self.ids.local_id(dir, index);
        let stream = match dir {
            Dir::Uni => {
                self.stats.uni_opened_local += 1;
                Stream {
                    send: Some(SendHalf::new(self.cfg.peer.max_stream_data_uni)),
                    recv: None,
                }
            }
            Dir::Bi => {
                self.stats.bidi_opened_local += 1;
                Stream {
                    send: Some(SendHalf::new(self.cfg.peer.max_stream_data_bidi_remote)),
                    recv: Some(RecvHalf::new(self.cfg.local.max_stream_data_bidi_local)),
                }
            }
        };
        self.streams.map.insert(id, stream);
        Ok(Some(id))
    }

    /// Takes the next peer-opened stream of `dir`, if any.
    pub fn accept(&mut self, dir: Dir) -> Result<Option<u64>, SessionError> {
        self.alive()?;
        let id = self.streams.pending_accept[dir as usize].pop_front();
        if id.is_some() {
            self.grant_streams(dir);
        }
        Ok(id)
    }

    fn send_half(&mut self, id: u64) -> Result<&mut SendHalf, StreamError> {
        send_half(&mut self.streams, &self.error, id)
    }

    /// Queues a prefix of `data` on stream `id` (payloads are chained, not copied).
    pub fn write(&mut self, id: u64, data: &Bytes) -> Result<Write, StreamError> {
        let max_chunk = self.cfg.max_chunk;
        let opts = self.cfg.options;
        self.write_with(id, data.len(), |tx, n| {
            if n <= max_chunk {
                tx.stream_prefix(id, false, data, n, &opts);
                return;
            }
            let mut rest = data.slice(..n);
            while !rest.is_empty() {
                let chunk = rest.split_to(rest.len().min(max_chunk));
                tx.stream(id, false, chunk, &opts);
            }
        })
    }

    /// Queues a prefix of `data` on stream `id`, copying only what is accepted: small
    /// pieces into the output buffer directly, larger ones into one `Bytes` per capsule.
    pub fn write_slice(&mut self, id: u64, data: &[u8]) -> Result<Write, StreamError> {
        let max_chunk = self.cfg.max_chunk;
        let opts = self.cfg.options;
        self.write_with(id, data.len(), |tx, n| {
            for chunk in data[..n].chunks(max_chunk) {
                tx.stream_slice(id, false, chunk, &opts);
            }
        })
    }

    /// Credit and buffer checks of a write of `len` bytes; `queue(tx, n)` queues the first
    /// `n` bytes once they are accounted for.
    fn write_with(
        &mut self,
        id: u64,
        len: usize,
        queue: impl FnOnce(&mut Tx, usize),
    ) -> Result<Write, StreamError> {
        let room = self.cfg.max_send_buffer.saturating_sub(self.tx.len()) as u64;
        let conn = self.send_data.available();
        let opts = self.cfg.options;
        let send = send_half(&mut self.streams, &self.error, id)?;
        if len == 0 {
            return Ok(Write::Written(0));
        }
        let n = (len as u64)
            .min(send.credit.available())
            .min(conn)
            .min(room) as usize;
        if n == 0 {
            if send.credit.available() == 0 && send.credit.should_report_blocked() {
                let max = send.credit.max();
                self.tx
                    .capsule(&Capsule::StreamDataBlocked { id, max }, &opts);
            }
            if !send.write_blocked {
                send.write_blocked = true;
                self.blocked_writers.push(id);
            }
            if conn == 0 && self.send_data.should_report_blocked() {
                let max = self.send_data.max();
                self.tx.capsule(&Capsule::DataBlocked(max), &opts);
            }
            return Ok(Write::Blocked);
        }
        send.credit.consume(n as u64);
        send.state = SendState::Send;
        self.send_data.consume(n as u64);
        self.stats.bytes_sent += n as u64;
        queue(&mut self.tx, n);
        Ok(Write::Written(n))
    }

    /// Ends stream `id` cleanly.
    pub fn finish(&mut self, id: u64) -> Result<(), StreamError> {
        let opts = self.cfg.options;
        let send = send_half(&mut self.streams, &self.error, id)?;
        send.state = SendState::DataSent;
        self.tx.stream(id, true, Bytes::new(), &opts);
        self.maybe_retire(id);
        Ok(())
    }

    /// Resets stream `id`.
    pub fn reset(&mut self, id: u64, code: u32) -> Result<(), StreamError> {
        let opts = self.cfg.options;
        let send = send_half(&mut self.streams, &self.error, id)?;
        send.state = SendState::ResetSent;
        let reliable_size = match opts.reset_layout {
            ResetLayout::ReliableSize => Some(send.offset()),
            ResetLayout::Legacy => None,
        };
        self.tx.capsule(
            &Capsule::ResetStream {
                id,
                code: u64::from(code),
                reliable_size,
            },
            &opts,
        );
        self.maybe_retire(id);
        Ok(())
    }

    /// `Some(Ok(Some(code)))` once the peer stopped the stream, `Some(Ok(None))` once it was
    /// finished or reset locally, `None` while neither happened.
    pub fn stopped(&self, id: u64) -> Option<Result<Option<u32>, StreamError>> {
        if let Some(e) = &self.error {
            return Some(Err(StreamError::SessionGone(e.clone())));
        }
        match self.streams.map.get(&id).and_then(|s| s.send.as_ref()) {
            None => Some(Ok(None)),
            Some(s) if s.stopped.is_some() => Some(Ok(s.stopped)),
            Some(s) if s.state.is_terminal() => Some(Ok(None)),
            Some(_) => None,
        }
    }

    /// The send half was dropped: finish it unless it already ended.
    pub fn drop_send(&mut self, id: u64) {
        if self.send_half(id).is_ok() {
            let _ = self.finish(id);
        } else {
            self.blocked_writers.retain(|w| *w != id);
            self.maybe_retire(id);
        }
    }

    /// Reads up to `max` bytes from stream `id`.
    pub fn read(&mut self, id: u64, max: usize) -> Result<Read, StreamError> {
        if let Some(e) = &self.error {
            return Err(StreamError::SessionGone(e.clone()));
        }
        let Some(recv) = self.streams.map.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Ok(Read::Fin);
        };
        if recv.app_done {
            return Err(StreamError::ClosedLocally);
        }
        if max > 0 {
            if let Some(chunk) = recv.take(max) {
                let n = chunk.len() as u64;
                recv.window.consume(n);
                let update = if recv.state == RecvState::Recv && !recv.stop_sent {
                    recv.window.poll_update()
                } else {
                    None
                };
                self.recv_data.consume(n);
                self.release += n;
                if let Some(max) = update {
                    self.tx
                        .capsule(&Capsule::MaxStreamData { id, max }, &self.cfg.options);
                }
                self.grant_data();
                return Ok(Read::Data(chunk));
            }
        }
        let out = match recv.state {
            RecvState::Recv => return Ok(Read::Blocked),
            RecvState::SizeKnown if recv.buffered > 0 => return Ok(Read::Blocked),
            RecvState::SizeKnown | RecvState::DataRead => {
                recv.state = RecvState::DataRead;
                Ok(Read::Fin)
            }
            RecvState::ResetRecvd { code } if recv.buffered == 0 => {
                recv.state = RecvState::ResetRead;
                Err(StreamError::Reset(Some(code)))
            }
            RecvState::ResetRecvd { .. } => return Ok(Read::Blocked),
            RecvState::ResetRead => Err(StreamError::ClosedLocally),
        };
        self.maybe_retire(id);
        out
    }

    /// The application stops reading stream `id` (explicitly, or by dropping the handle).
    /// WT_STOP_SENDING goes out only if the peer may still send.
    pub fn stop(&mut self, id: u64, code: u32) -> Result<(), StreamError> {
        if let Some(e) = &self.error {
            return Err(StreamError::SessionGone(e.clone()));
        }
        let Some(recv) = self.streams.map.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Err(StreamError::ClosedLocally);
        };
        if recv.app_done {
            return Err(StreamError::ClosedLocally);
        }
        recv.app_done = true;
        let freed = recv.discard();
        recv.window.consume(freed);
        if recv.state == RecvState::Recv {
            recv.stop_sent = true;
            self.tx.capsule(
                &Capsule::StopSending {
                    id,
                    code: u64::from(code),
                },
                &self.cfg.options,
            );
        }
        self.recv_data.consume(freed);
        self.release += freed;
        self.grant_data();
        self.maybe_retire(id);
        Ok(())
    }

    /// The receive half was dropped.
    pub fn drop_recv(&mut self, id: u64) {
        let unfinished = self
            .streams
            .map
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .is_some_and(|r| !r.is_done() && !r.app_done);
        if unfinished {
            let _ = self.stop(id, 0);
        } else {
            self.maybe_retire(id);
        }
    }

    /// Queues a DATAGRAM capsule. When the send buffer is full the datagram is dropped
    /// (datagrams may be dropped by any hop).
    pub fn send_datagram(&mut self, data: Bytes) -> Result<(), SessionError> {
        self.alive()?;
        if data.len() > MAX_DATAGRAM_SIZE {
            return Err(SessionError::DatagramTooLarge {
                size: data.len(),
                max: MAX_DATAGRAM_SIZE,
            });
        }
        if self.tx.len() >= self.cfg.max_send_buffer {
            tracing::debug!("send buffer full, dropping a datagram");
            return Ok(());
        }
        self.stats.datagrams_sent += 1;
        self.tx.datagram(data);
        Ok(())
    }

    /// The next received datagram.
    pub fn recv_datagram(&mut self) -> Result<Option<Bytes>, SessionError> {
        self.alive()?;
        Ok(self.datagrams.pop_front())
    }

    /// Closes the session with WT_CLOSE_SESSION then END_STREAM.
    pub fn close(&mut self, code: u32, reason: &str) -> Result<(), SessionError> {
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SessionError::ReasonTooLong(reason.len()));
        }
        if self.error.is_some() {
            return Ok(());
        }
        self.tx.clear();
        self.tx.capsule(
            &Capsule::CloseSession {
                code,
                reason: reason.to_owned(),
            },
            &self.cfg.options,
        );
        self.end_stream = true;
        self.terminate(SessionError::ClosedLocally {
            code,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Sends WT_DRAIN_SESSION (once).
    pub fn drain(&mut self) -> Result<(), SessionError> {
        self.alive()?;
        if !self.drain_sent {
            self.drain_sent = true;
            self.tx.capsule(&Capsule::DrainSession, &self.cfg.options);
        }
        Ok(())
    }
}

fn send_half<'a>(
    streams: &'a mut Streams,
    error: &Option<SessionError>,
    id: u64,
) -> Result<&'a mut SendHalf, StreamError> {
    if let Some(e) = error {
        return Err(StreamError::SessionGone(e.clone()));
    }
    let send = streams
        .map
        .get_mut(&id)
        .and_then(|s| s.send.as_mut())
        .ok_or(StreamError::ClosedLocally)?;
    if let Some(code) = send.stopped {
        return Err(StreamError::Stopped(Some(code)));
    }
    if send.state.is_terminal() {
        return Err(StreamError::ClosedLocally);
    }
    Ok(send)
}

fn capsule_error(codes: &ErrorCodes, e: &CapsuleError) -> ProtocolError {
    let code = match e {
        CapsuleError::ReasonTooLong(_) | CapsuleError::ReasonNotUtf8 => codes.wt_error,
        _ => H2Code::PROTOCOL_ERROR,
    };
    ProtocolError::h2(code, format!("malformed capsule: {e}"))
}

/// The capsule type of a WT_STREAM for tests.
#[cfg(test)]
pub(crate) fn stream_type(opts: &CapsuleOptions, fin: bool) -> CapsuleType {
    opts.fin_mapping.stream_type(fin)
}
