//! An IO adapter under h2 that carries the WebTransport SETTINGS h2 does not know about.
//!
//! h2 0.4 drops unknown SETTINGS identifiers in both directions. [`SettingsIo`] sits between
//! h2 and the TLS stream and parses the HTTP/2 frame stream (9-byte frame headers, after the
//! 24-byte client preface on the client→server direction):
//!
//! * **write side**: our own first non-ACK SETTINGS frame is rewritten to append extra
//!   entries (server: SETTINGS_WT_ENABLED and the initial flow-control limits), with the frame
//!   length adjusted. Everything before it (the client preface) is copied through; after it,
//!   writes go straight to the inner stream. A [`FrameTracker`] follows the frame boundaries
//!   of everything h2 writes (headers only, payloads skipped by count) to learn when our
//!   SETTINGS ACKs and HEADERS go out, and to place a GOAWAY between two frames.
//! * **read side**: every byte passes through unchanged and without delay; a sans-IO
//!   [`FrameScanner`] follows frame boundaries and records the peer's SETTINGS entries in
//!   [`PeerSettings`].
//!
//! [`PeerSettings`] turns both into the two facts the session layer needs: *h2 has applied
//! the peer's first SETTINGS* (our first SETTINGS ACK went out: h2 applies a SETTINGS frame
//! and queues its ACK in the same step, before reading on), which is when the client may send
//! its extended CONNECT; and *which settings count for a new session* (those acknowledged when
//! the session's CONNECT / 2xx HEADERS went out).
//!
//! The client can also ask for a connection error h2 cannot raise itself:
//! [`PeerSettings::request_goaway`] makes the adapter write GOAWAY (last stream 0, the given
//! code) at the next frame boundary and shut the write side; h2's later writes are discarded
//! and its reads see end of stream.
//!
//! Malformed SETTINGS frames (length not a multiple of 6, oversized) are not recorded and are
//! left for h2 to reject.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
/// SETTINGS payloads above this are not buffered (h2 rejects frames above its max size).
const MAX_SETTINGS_PAYLOAD: usize = 16 * 1024;

/// SETTINGS_ENABLE_CONNECT_PROTOCOL.
pub(crate) const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
/// SETTINGS_WT_ENABLED (d15; SETTINGS_WT_MAX_SESSIONS in d07–d12).
pub(crate) const WT_ENABLED: u16 = 0x2b60;
/// SETTINGS_WT_INITIAL_MAX_DATA.
pub(crate) const WT_INITIAL_MAX_DATA: u16 = 0x2b61;
/// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_UNI.
pub(crate) const WT_INITIAL_MAX_STREAM_DATA_UNI: u16 = 0x2b62;
/// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL.
pub(crate) const WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: u16 = 0x2b63;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI.
pub(crate) const WT_INITIAL_MAX_STREAMS_UNI: u16 = 0x2b64;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI.
pub(crate) const WT_INITIAL_MAX_STREAMS_BIDI: u16 = 0x2b65;
/// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE.
pub(crate) const WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: u16 = 0x2b66;

/// What the frame scanner reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScanEvent {
    /// A complete, well-formed SETTINGS frame.
    Settings {
        /// The ACK flag.
        ack: bool,
        /// Its entries in order.
        entries: Vec<(u16, u32)>,
    },
    /// A SETTINGS frame that is malformed or too large; not recorded.
    BadSettings,
}

#[derive(Clone, Debug)]
enum ScanState {
    Preface(usize),
    Header,
    Skip(usize),
    Settings { len: usize, flags: u8 },
    SkipBadSettings(usize),
}

/// Sans-IO HTTP/2 frame scanner: bytes in, SETTINGS events out. Buffers only frame headers
/// and SETTINGS payloads (bounded); other payloads are skipped as they arrive.
#[derive(Clone, Debug)]
pub(crate) struct FrameScanner {
    state: ScanState,
    header: [u8; FRAME_HEADER],
    have: usize,
    payload: Vec<u8>,
}

impl FrameScanner {
    /// A scanner; `preface` when the stream starts with the client preface.
    pub fn new(preface: bool) -> Self {
        FrameScanner {
            state: if preface {
                ScanState::Preface(PREFACE.len())
            } else {
                ScanState::Header
            },
            header: [0; FRAME_HEADER],
            have: 0,
            payload: Vec::new(),
        }
    }

    /// Feeds bytes; events are appended to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<ScanEvent>) {
        while !data.is_empty() {
            match self.state {
                ScanState::Preface(left) => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    self.state = if left == n {
                        ScanState::Header
                    } else {
                        ScanState::Preface(left - n)
                    };
                }
                ScanState::Header => {
                    let n = (FRAME_HEADER - self.have).min(data.len());
                    self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                    self.have += n;
                    data = &data[n..];
                    if self.have < FRAME_HEADER {
                        continue;
                    }
                    self.have = 0;
                    let h = &self.header;
                    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    let (ty, flags) = (h[3], h[4]);
                    self.state = if ty != TYPE_SETTINGS {
                        ScanState::Skip(len)
                    } else if len % 6 != 0 || len > MAX_SETTINGS_PAYLOAD {
                        out.push(ScanEvent::BadSettings);
                        ScanState::SkipBadSettings(len)
                    } else {
                        self.payload.clear();
                        ScanState::Settings { len, flags }
                    };
                    self.finish_if_empty(out);
                }
                ScanState::Skip(left) | ScanState::SkipBadSettings(left) => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    self.state = if left == n {
                        ScanState::Header
                    } else {
                        ScanState::Skip(left - n)
                    };
                }
                ScanState::Settings { len, .. } => {
                    let n = (len - self.payload.len()).min(data.len());
                    self.payload.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.finish_if_empty(out);
                }
            }
        }
    }

    fn finish_if_empty(&mut self, out: &mut Vec<ScanEvent>) {
        match self.state {
            ScanState::Skip(0) | ScanState::SkipBadSettings(0) => self.state = ScanState::Header,
            ScanState::Settings { len, flags } if self.payload.len() == len => {
                let entries = self
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                out.push(ScanEvent::Settings {
                    ack: flags & FLAG_ACK != 0,
                    entries,
                });
                self.state = ScanState::Header;
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
enum RewriteState {
    Preface(usize),
    Header,
    PassPayload(usize),
    Settings {
        len: usize,
        flags: u8,
        stream: [u8; 4],
    },
    Done,
}

/// Sans-IO rewriter of the write side: appends `extra` entries to the first non-ACK SETTINGS
/// frame, copying everything up to and including it into `out`.
#[derive(Clone, Debug)]
pub(crate) struct SettingsRewriter {
    state: RewriteState,
    extra: Vec<(u16, u32)>,
    header: [u8; FRAME_HEADER],
    have: usize,
    payload: Vec<u8>,
}

impl SettingsRewriter {
    /// A rewriter; `preface` when we are the client.
    pub fn new(preface: bool, extra: Vec<(u16, u32)>) -> Self {
        SettingsRewriter {
            state: if preface {
                RewriteState::Preface(PREFACE.len())
            } else {
                RewriteState::Header
            },
            extra,
            header: [0; FRAME_HEADER],
            have: 0,
            payload: Vec::new(),
        }
    }

    /// Whether the SETTINGS frame was rewritten (everything else passes through).
    pub fn is_done(&self) -> bool {
        matches!(self.state, RewriteState::Done)
    }

    /// Consumes `data`, appending the (rewritten) bytes to `out`. Returns how many bytes of
    /// `data` were consumed: all of them, unless the rewrite completes in the middle, in which
    /// case the rest must be written directly.
    pub fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match self.state {
                RewriteState::Done => return pos,
                RewriteState::Preface(left) => {
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = if n == left {
                        RewriteState::Header
                    } else {
                        RewriteState::Preface(left - n)
                    };
                }
                RewriteState::PassPayload(left) => {
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = if n == left {
                        RewriteState::Header
                    } else {
                        RewriteState::PassPayload(left - n)
                    };
                }
                RewriteState::Header => {
                    let n = (FRAME_HEADER - self.have).min(rest.len());
                    self.header[self.have..self.have + n].copy_from_slice(&rest[..n]);
                    self.have += n;
                    pos += n;
                    if self.have < FRAME_HEADER {
                        continue;
                    }
                    self.have = 0;
                    let h = self.header;
                    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    if h[3] == TYPE_SETTINGS && h[4] & FLAG_ACK == 0 {
                        self.payload.clear();
                        self.state = RewriteState::Settings {
                            len,
                            flags: h[4],
                            stream: [h[5], h[6], h[7], h[8]],
                        };
                        self.emit_settings_if_complete(out);
                    } else {
                        out.extend_from_slice(&h);
                        self.state = if len == 0 {
                            RewriteState::Header
                        } else {
                            RewriteState::PassPayload(len)
                        };
                    }
                }
                RewriteState::Settings { len, .. } => {
                    let n = (len - self.payload.len()).min(rest.len());
                    self.payload.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.emit_settings_if_complete(out);
                }
            }
        }
        pos
    }

    fn emit_settings_if_complete(&mut self, out: &mut BytesMut) {
        let RewriteState::Settings { len, flags, stream } = self.state else {
            return;
        };
        if self.payload.len() < len {
            return;
        }
        let new_len = len + 6 * self.extra.len();
        out.put_uint(new_len as u64, 3);
        out.put_u8(TYPE_SETTINGS);
        out.put_u8(flags);
        out.extend_from_slice(&stream);
        out.extend_from_slice(&self.payload);
        for (id, v) in &self.extra {
            out.put_u16(*id);
            out.put_u32(*v);
        }
        self.state = RewriteState::Done;
    }
}

/// The setting identifiers this crate reads (everything else is h2's business).
const TRACKED: [u16; 8] = [
    ENABLE_CONNECT_PROTOCOL,
    WT_ENABLED,
    WT_INITIAL_MAX_DATA,
    WT_INITIAL_MAX_STREAM_DATA_UNI,
    WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
    WT_INITIAL_MAX_STREAMS_UNI,
    WT_INITIAL_MAX_STREAMS_BIDI,
    WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
];

/// Received SETTINGS frames not yet acknowledged are kept up to this many; beyond it (only a
/// hostile peer flooding SETTINGS faster than h2 acknowledges them gets here) new frames are
/// merged into the last one.
const MAX_UNACKED: usize = 4096;

/// Values of the settings this crate reads; `None` = not sent (the setting's default).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SettingsValues([Option<u32>; TRACKED.len()]);

impl SettingsValues {
    /// The value of `id`, if sent (always `None` for identifiers this crate does not read).
    pub fn get(&self, id: u16) -> Option<u32> {
        let i = TRACKED.iter().position(|t| *t == id)?;
        self.0[i]
    }

    fn from_entries(entries: &[(u16, u32)]) -> Self {
        let mut v = SettingsValues::default();
        for (id, val) in entries {
            if let Some(i) = TRACKED.iter().position(|t| t == id) {
                v.0[i] = Some(*val);
            }
        }
        v
    }

    /// Applies a later frame: the values it carries win.
    fn merge(&mut self, later: &SettingsValues) {
        for (mine, theirs) in self.0.iter_mut().zip(later.0) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
    }
}

/// Stream id meaning "the first HEADERS frame on any stream" (stream 0 never carries HEADERS).
pub(crate) const ANY_STREAM: u32 = 0;

#[derive(Debug, Default)]
struct State {
    /// Every frame received (for the handshake checks and tests).
    seen: SettingsValues,
    seen_frames: u64,
    /// Frames received but not yet acknowledged, oldest first.
    unacked: VecDeque<SettingsValues>,
    /// Frames we have acknowledged: a SETTINGS ACK for each went out on the wire.
    acked: SettingsValues,
    acked_frames: u64,
    /// HEADERS frames someone waits for, and the acknowledged values when each went out.
    headers: Vec<(u32, Option<SettingsValues>)>,
    /// The adapter is gone (the connection ended).
    closed: bool,
    /// The connection task, parked in a read, to wake for a GOAWAY.
    io_waker: Option<Waker>,
}

/// What one connection's IO adapter learned about the peer's SETTINGS, shared with the
/// session layer, and the way to ask the adapter for a GOAWAY.
///
/// Two views: **seen** (every SETTINGS frame as it arrived) and **acknowledged** (frames whose
/// SETTINGS ACK we have written). h2 acknowledges a SETTINGS frame at the moment it applies
/// it and before it reads the next frame, and the ACK is queued ahead of any frame written
/// later; the adapter follows the frames h2 writes, so "a SETTINGS ACK went out" means "h2
/// applied those settings". At every HEADERS frame someone asked for
/// ([`expect_headers`](Self::expect_headers)) the acknowledged values are snapshotted: the
/// settings that count for a new session (draft-15 §4.2 of the wire reference: the server's
/// settings the client had acknowledged when it sent the CONNECT, the client's settings the
/// server had acknowledged when it sent the 2xx).
#[derive(Debug)]
pub(crate) struct PeerSettings {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<()>,
    goaway: AtomicBool,
    goaway_code: AtomicU32,
}

impl PeerSettings {
    /// Nothing seen yet.
    pub fn new() -> Arc<Self> {
        Arc::new(PeerSettings {
            state: Mutex::new(State::default()),
            changed: tokio::sync::watch::Sender::new(()),
            goaway: AtomicBool::new(false),
            goaway_code: AtomicU32::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::session::lock(&self.state)
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    /// Read side: a complete non-ACK SETTINGS frame arrived.
    fn record(&self, values: SettingsValues) {
        {
            let mut s = self.lock();
            s.seen.merge(&values);
            s.seen_frames += 1;
            if s.unacked.len() < MAX_UNACKED {
                s.unacked.push_back(values);
            } else if let Some(last) = s.unacked.back_mut() {
                last.merge(&values);
            }
        }
        self.notify();
    }

    /// Write side: a SETTINGS ACK went out.
    fn on_ack_written(&self) {
        {
            let mut s = self.lock();
            if let Some(v) = s.unacked.pop_front() {
                s.acked.merge(&v);
            }
            s.acked_frames += 1;
        }
        self.notify();
    }

    /// Write side: a HEADERS frame on `stream` went out.
    fn on_headers_written(&self, stream: u32) {
        let mut hit = false;
        {
            let mut s = self.lock();
            let acked = s.acked;
            for (id, snap) in s.headers.iter_mut() {
                if snap.is_none() && (*id == stream || *id == ANY_STREAM) {
                    *snap = Some(acked);
                    hit = true;
                }
            }
        }
        if hit {
            self.notify();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify();
    }

    /// The values of every SETTINGS frame seen so far (last value wins).
    #[cfg(test)]
    pub fn seen(&self) -> SettingsValues {
        self.lock().seen
    }

    /// Number of non-ACK SETTINGS frames seen.
    #[cfg(test)]
    pub fn frames(&self) -> u64 {
        self.lock().seen_frames
    }

    /// The values of the SETTINGS frames we have acknowledged.
    pub fn acked(&self) -> SettingsValues {
        self.lock().acked
    }

    /// Waits until `pred` holds or the connection ended; returns whether `pred` held.
    async fn wait_for(&self, mut pred: impl FnMut(&mut State) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let mut s = self.lock();
                if pred(&mut s) {
                    return true;
                }
                if s.closed {
                    return false;
                }
            }
            // The sender lives in `self`: `changed` cannot fail while we hold `&self`.
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Waits until we have acknowledged `n` SETTINGS frames (so h2 has applied them); false
    /// if the connection ended first.
    pub async fn wait_acked(&self, n: u64) -> bool {
        self.wait_for(|s| s.acked_frames >= n).await
    }

    /// Asks for a snapshot of the acknowledged values at the next HEADERS frame written on
    /// `stream` ([`ANY_STREAM`]: on any stream). Call before handing h2 the HEADERS.
    pub fn expect_headers(&self, stream: u32) {
        self.lock().headers.push((stream, None));
    }

    /// Takes the snapshot asked for by [`expect_headers`](Self::expect_headers), if that
    /// HEADERS frame went out; forgets the request either way.
    pub fn take_headers_snapshot(&self, stream: u32) -> Option<SettingsValues> {
        let mut s = self.lock();
        let i = s.headers.iter().position(|(id, _)| *id == stream)?;
        s.headers.swap_remove(i).1
    }

    /// Waits for the snapshot asked for by [`expect_headers`](Self::expect_headers); when
    /// the connection ends first, the values acknowledged by then.
    pub async fn headers_snapshot(&self, stream: u32) -> SettingsValues {
        let mut found = None;
        self.wait_for(|s| {
            found = s
                .headers
                .iter()
                .find(|(id, _)| *id == stream)
                .and_then(|(_, v)| *v);
            found.is_some()
        })
        .await;
        let _ = self.take_headers_snapshot(stream);
        found.unwrap_or_else(|| self.acked())
    }

    /// Asks the adapter to end the connection with a GOAWAY carrying `code` (last stream id
    /// 0) at the next frame boundary of the write side, then shut the write side. Used by
    /// the client for connection errors h2 cannot raise itself (HS-14).
    pub fn request_goaway(&self, code: u32) {
        self.goaway_code.store(code, Ordering::Relaxed);
        self.goaway.store(true, Ordering::Release);
        let w = self.lock().io_waker.take();
        if let Some(w) = w {
            w.wake();
        }
    }

    #[inline]
    fn goaway_requested(&self) -> Option<u32> {
        self.goaway
            .load(Ordering::Acquire)
            .then(|| self.goaway_code.load(Ordering::Relaxed))
    }

    fn park(&self, w: &Waker) {
        let mut s = self.lock();
        match &s.io_waker {
            Some(old) if old.will_wake(w) => {}
            _ => s.io_waker = Some(w.clone()),
        }
    }
}

/// Follows frame boundaries of the bytes h2 writes (sans-IO; only frame headers are looked
/// at, payloads are skipped by count).
#[derive(Clone, Debug)]
struct FrameTracker {
    header: [u8; FRAME_HEADER],
    have: usize,
    left: usize,
}

/// A frame header the tracker passed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct FrameHead {
    ty: u8,
    flags: u8,
    stream: u32,
}

fn frame_len(h: &[u8; FRAME_HEADER]) -> usize {
    (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize
}

impl FrameTracker {
    /// `preface`: the stream starts with the 24-byte client preface.
    fn new(preface: bool) -> Self {
        FrameTracker {
            header: [0; FRAME_HEADER],
            have: 0,
            left: if preface { PREFACE.len() } else { 0 },
        }
    }

    /// Between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// How many bytes of `data` finish the current frame (0 at a boundary; `data.len()` if
    /// the frame goes on past it).
    fn to_boundary(&self, data: &[u8]) -> usize {
        if self.left > 0 {
            return self.left.min(data.len());
        }
        if self.have == 0 {
            return 0;
        }
        let need = FRAME_HEADER - self.have;
        if data.len() < need {
            return data.len();
        }
        let mut h = self.header;
        h[self.have..].copy_from_slice(&data[..need]);
        (need + frame_len(&h)).min(data.len())
    }

    /// Consumes written bytes, reporting every frame header completed.
    fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(FrameHead)) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = self.left.min(data.len());
                self.left -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == FRAME_HEADER {
                self.have = 0;
                let h = self.header;
                self.left = frame_len(&h);
                on(FrameHead {
                    ty: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                });
            }
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Goaway {
    /// Not asked for.
    Idle,
    /// Asked for; goes out at the next frame boundary.
    Requested(u32),
    /// In `pending`; then flush and shut the write side.
    Writing,
    /// Sent and shut: writes are discarded, reads see end of stream.
    Done,
}

/// The IO adapter (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct SettingsIo<T> {
    inner: T,
    client: bool,
    scanner: FrameScanner,
    rewriter: Option<SettingsRewriter>,
    tracker: FrameTracker,
    pending: BytesMut,
    peer: Arc<PeerSettings>,
    events: Vec<ScanEvent>,
    goaway: Goaway,
    /// The waker last handed to [`PeerSettings::park`]: parking the same one again is
    /// skipped (see `poll_read`).
    parked: Option<Waker>,
}

impl<T> SettingsIo<T> {
    /// Wraps `inner`. `client`: we send the preface (and the peer does not). `extra`: entries
    /// appended to our first SETTINGS frame.
    pub fn new(inner: T, client: bool, extra: Vec<(u16, u32)>, peer: Arc<PeerSettings>) -> Self {
        SettingsIo {
            inner,
            client,
            scanner: FrameScanner::new(!client),
            rewriter: if extra.is_empty() {
                None
            } else {
                Some(SettingsRewriter::new(client, extra))
            },
            tracker: FrameTracker::new(client),
            pending: BytesMut::new(),
            peer,
            events: Vec::new(),
            goaway: Goaway::Idle,
            parked: None,
        }
    }

    /// Follows bytes h2 handed us (written or queued in `pending`, in order).
    fn track(&mut self, data: &[u8]) {
        let peer = &self.peer;
        self.tracker.feed(data, |h| match h.ty {
            TYPE_SETTINGS if h.flags & FLAG_ACK != 0 => peer.on_ack_written(),
            TYPE_HEADERS => peer.on_headers_written(h.stream),
            _ => {}
        });
    }
}

impl<T> Drop for SettingsIo<T> {
    fn drop(&mut self) {
        self.peer.close();
    }
}

impl<T: AsyncWrite + Unpin> SettingsIo<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Moves a requested GOAWAY along. `Ready(Ok(true))` once it is out and the write side
    /// is shut; `Ready(Ok(false))` while there is none, or h2 is mid-frame (its writes go on
    /// up to the frame's end, see [`poll_write`](AsyncWrite::poll_write)).
    ///
    /// Called on every read, write and flush: the usual case (none requested) is one load,
    /// inlined; the rest is [`poll_goaway_steps`](Self::poll_goaway_steps).
    #[inline]
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.goaway == Goaway::Idle && self.peer.goaway_requested().is_none() {
            return Poll::Ready(Ok(false));
        }
        self.poll_goaway_steps(cx)
    }

    /// The steps of [`poll_goaway`](Self::poll_goaway) once a GOAWAY was requested.
    #[cold]
    fn poll_goaway_steps(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            match self.goaway {
                Goaway::Idle => match self.peer.goaway_requested() {
                    Some(code) if self.client => self.goaway = Goaway::Requested(code),
                    _ => return Poll::Ready(Ok(false)),
                },
                Goaway::Requested(code) => {
                    // Never before our own SETTINGS (the rewriter is done once it passed), and
                    // only between two frames.
                    if self.rewriter.is_some() || !self.tracker.at_boundary() {
                        return Poll::Ready(Ok(false));
                    }
                    if let Err(e) = ready!(self.poll_pending(cx)) {
                        self.goaway = Goaway::Done;
                        return Poll::Ready(Err(e));
                    }
                    self.pending.put_uint(8, 3);
                    self.pending.put_u8(TYPE_GOAWAY);
                    self.pending.put_u8(0);
                    self.pending.put_u32(0);
                    self.pending.put_u32(0); // last stream id
                    self.pending.put_u32(code);
                    self.goaway = Goaway::Writing;
                }
                Goaway::Writing => {
                    let r = match ready!(self.poll_pending(cx)) {
                        Ok(()) => match ready!(Pin::new(&mut self.inner).poll_flush(cx)) {
                            Ok(()) => ready!(Pin::new(&mut self.inner).poll_shutdown(cx)),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    self.goaway = Goaway::Done;
                    self.pending.clear();
                    if let Err(e) = r {
                        tracing::debug!("sending GOAWAY failed: {e}");
                    }
                }
                Goaway::Done => return Poll::Ready(Ok(true)),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for SettingsIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if ready!(this.poll_goaway(cx))? {
            // The connection is over: end of stream for h2.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                if this.client && this.goaway == Goaway::Idle {
                    // Parked here: a GOAWAY request wakes us. The same waker as last time
                    // is still parked, unless a request took it, and a request sets its
                    // flag before taking the waker: the check below sees it either way.
                    if !this
                        .parked
                        .as_ref()
                        .is_some_and(|p| p.will_wake(cx.waker()))
                    {
                        this.peer.park(cx.waker());
                        this.parked = Some(cx.waker().clone());
                    }
                    if this.peer.goaway_requested().is_some() {
                        cx.waker().wake_by_ref();
                    }
                }
                return Poll::Pending;
            }
        }
        this.scanner.feed(&buf.filled()[before..], &mut this.events);
        for ev in this.events.drain(..) {
            match ev {
                ScanEvent::Settings {
                    ack: false,
                    entries,
                } => this.peer.record(SettingsValues::from_entries(&entries)),
                ScanEvent::Settings { ack: true, .. } => {}
                ScanEvent::BadSettings => {
                    // Keeps the ACK count aligned should h2 accept (and acknowledge) it.
                    tracing::debug!("peer sent a malformed or oversized SETTINGS frame");
                    this.peer.record(SettingsValues::default());
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SettingsIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if ready!(this.poll_goaway(cx))? {
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_pending(cx))?;
        let Some(rw) = this.rewriter.as_mut() else {
            let data = match this.goaway {
                // Finish the frame h2 is in, then the GOAWAY goes out.
                Goaway::Requested(_) => match this.tracker.to_boundary(data) {
                    0 => data,
                    k => &data[..k],
                },
                _ => data,
            };
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
            this.track(&data[..n]);
            return Poll::Ready(Ok(n));
        };
        let n = rw.feed(data, &mut this.pending);
        if rw.is_done() {
            this.rewriter = None;
        }
        this.track(&data[..n]);
        // Start sending; whatever is left goes out on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewriter.is_none()
            && this.pending.is_empty()
            && this.goaway == Goaway::Idle
            && this.peer.goaway_requested().is_none()
        {
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = b.len().min(left);
                this.track(&b[..k]);
                left -= k;
            }
            return Poll::Ready(Ok(n));
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if ready!(this.poll_goaway(cx))? {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if ready!(this.poll_goaway(cx))? {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        let len = payload.len();
        f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(entries: &[(u16, u32)], ack: bool) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in entries {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(TYPE_SETTINGS, u8::from(ack), 0, &p)
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = PREFACE.to_vec();
        s.extend(settings(&[(0x8, 1), (0x2b60, 1)], false));
        // DATA with PADDED flag, HEADERS with PRIORITY|PADDED, WINDOW_UPDATE, SETTINGS ACK.
        s.extend(frame(0x0, 0x8, 1, &[3, b'a', b'b', 0, 0, 0]));
        s.extend(frame(0x1, 0x20 | 0x8, 1, &[1, 0, 0, 0, 0, 16, 0x82, 0]));
        s.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0]));
        s.extend(settings(&[], true));
        s.extend(settings(&[(0x2b60, 5), (0x2b61, 100)], false));
        s
    }

    fn expected() -> Vec<ScanEvent> {
        vec![
            ScanEvent::Settings {
                ack: false,
                entries: vec![(0x8, 1), (0x2b60, 1)],
            },
            ScanEvent::Settings {
                ack: true,
                entries: vec![],
            },
            ScanEvent::Settings {
                ack: false,
                entries: vec![(0x2b60, 5), (0x2b61, 100)],
            },
        ]
    }

    #[test]
    fn scanner_split_at_every_byte_and_whole() {
        let s = sample_stream();
        // Whole.
        let mut out = Vec::new();
        FrameScanner::new(true).feed(&s, &mut out);
        assert_eq!(out, expected());
        // One byte at a time.
        let mut sc = FrameScanner::new(true);
        let mut out = Vec::new();
        for b in &s {
            sc.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, expected());
        // Split in two at every position.
        for cut in 0..s.len() {
            let mut sc = FrameScanner::new(true);
            let mut out = Vec::new();
            sc.feed(&s[..cut], &mut out);
            sc.feed(&s[cut..], &mut out);
            assert_eq!(out, expected(), "cut at {cut}");
        }
    }

    #[test]
    fn scanner_bad_settings_does_not_panic() {
        let mut s = frame(TYPE_SETTINGS, 0, 0, &[0, 8, 0, 0, 0]); // 5 bytes
        s.extend(settings(&[(1, 2)], false));
        let mut out = Vec::new();
        FrameScanner::new(false).feed(&s, &mut out);
        assert_eq!(
            out,
            vec![
                ScanEvent::BadSettings,
                ScanEvent::Settings {
                    ack: false,
                    entries: vec![(1, 2)]
                }
            ]
        );
        // Oversized: header claims 16 MiB - 1.
        let mut out = Vec::new();
        let mut sc = FrameScanner::new(false);
        sc.feed(&[0xff, 0xff, 0xfa, TYPE_SETTINGS, 0, 0, 0, 0, 0], &mut out);
        sc.feed(&[0u8; 1000], &mut out);
        assert_eq!(out, vec![ScanEvent::BadSettings]);
        // Garbage of every length never panics.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            FrameScanner::new(true).feed(&junk, &mut Vec::new());
        }
    }

    #[test]
    fn rewriter_appends_entries_at_every_split() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0])); // a frame before SETTINGS
        input.extend(settings(&[(0x4, 65535)], false));
        input.extend(frame(0x8, 0, 0, &[0, 0, 0x20, 0]));
        let mut want = PREFACE.to_vec();
        want.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0]));
        want.extend(settings(&[(0x4, 65535), (0x2b60, 1), (0x2b61, 7)], false));
        want.extend(frame(0x8, 0, 0, &[0, 0, 0x20, 0]));
        for cut in 0..input.len() {
            let mut rw = SettingsRewriter::new(true, vec![(0x2b60, 1), (0x2b61, 7)]);
            let mut out = BytesMut::new();
            let mut rest = &input[..];
            for part in [&input[..cut], &input[cut..]] {
                let n = rw.feed(part, &mut out);
                if n < part.len() {
                    assert!(rw.is_done());
                    out.extend_from_slice(&part[n..]);
                }
                rest = &rest[part.len()..];
            }
            assert!(rest.is_empty());
            assert!(rw.is_done());
            assert_eq!(&out[..], &want[..], "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn adapter_round_trip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(64);
        let peer_of_client = PeerSettings::new();
        let peer_of_server = PeerSettings::new();
        let mut client = SettingsIo::new(a, true, vec![], peer_of_client.clone());
        let mut server = SettingsIo::new(b, false, vec![(0x2b60, 1)], peer_of_server.clone());
        let srv = tokio::spawn(async move {
            server
                .write_all(&settings(&[(0x8, 1)], false))
                .await
                .unwrap();
            server.flush().await.unwrap();
            let mut buf = vec![0u8; 24 + 9];
            server.read_exact(&mut buf).await.unwrap();
            server
        });
        let mut out = PREFACE.to_vec();
        out.extend(settings(&[], false));
        client.write_all(&out).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = vec![0u8; 9 + 12];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(peer_of_client.frames(), 1);
        assert_eq!(peer_of_client.seen().get(0x8), Some(1));
        assert_eq!(peer_of_client.seen().get(0x2b60), Some(1));
        let _server = srv.await.unwrap();
        assert_eq!(peer_of_server.frames(), 1);
    }

    #[test]
    fn tracker_follows_frames_at_every_split() {
        let mut s = PREFACE.to_vec();
        s.extend(settings(&[(0x4, 1)], false));
        s.extend(frame(TYPE_HEADERS, 0x4, 1, &[0x82, 0x84]));
        s.extend(settings(&[], true));
        s.extend(frame(0x0, 0, 1, &[7; 40]));
        let want = vec![
            FrameHead {
                ty: TYPE_SETTINGS,
                flags: 0,
                stream: 0,
            },
            FrameHead {
                ty: TYPE_HEADERS,
                flags: 0x4,
                stream: 1,
            },
            FrameHead {
                ty: TYPE_SETTINGS,
                flags: 1,
                stream: 0,
            },
            FrameHead {
                ty: 0x0,
                flags: 0,
                stream: 1,
            },
        ];
        // Frame ends (after the preface).
        let mut ends = vec![24];
        let mut at = 24;
        for len in [6, 2, 0, 40] {
            at += 9 + len;
            ends.push(at);
        }
        for cut in 0..=s.len() {
            let mut t = FrameTracker::new(true);
            let mut got = Vec::new();
            for (part, end) in [(&s[..cut], cut), (&s[cut..], s.len())] {
                // to_boundary stops exactly at the end of the current frame.
                let k = t.to_boundary(part);
                if k > 0 && k < part.len() {
                    let mut t2 = t.clone();
                    t2.feed(&part[..k], |_| {});
                    assert!(t2.at_boundary(), "cut {cut}");
                }
                t.feed(part, |h| got.push(h));
                assert_eq!(t.at_boundary(), ends.contains(&end), "cut {cut}");
            }
            assert_eq!(got, want, "cut {cut}");
        }
    }

    #[test]
    fn snapshots_use_acknowledged_settings() {
        let p = PeerSettings::new();
        p.record(SettingsValues::from_entries(&[(0x2b61, 100), (0x8, 1)]));
        p.expect_headers(ANY_STREAM);
        // The HEADERS frame goes out before our ACK: nothing acknowledged yet.
        p.on_headers_written(1);
        assert_eq!(
            p.take_headers_snapshot(ANY_STREAM),
            Some(SettingsValues::default())
        );
        p.on_ack_written();
        assert_eq!(p.acked().get(0x2b61), Some(100));
        // A second frame arrives but is not acknowledged when stream 3's HEADERS goes out.
        p.record(SettingsValues::from_entries(&[(0x2b61, 7), (0x1, 4096)]));
        p.expect_headers(3);
        p.expect_headers(5);
        p.on_headers_written(3);
        p.on_ack_written();
        p.on_headers_written(5);
        p.on_headers_written(3); // trailers: the snapshot stays
        let three = p.take_headers_snapshot(3).unwrap();
        assert_eq!(three.get(0x2b61), Some(100));
        assert_eq!(three.get(0x8), Some(1));
        let five = p.take_headers_snapshot(5).unwrap();
        assert_eq!(five.get(0x2b61), Some(7));
        assert_eq!(five.get(0x8), Some(1));
        assert_eq!(five.get(0x1), None, "untracked ids are not kept");
        assert_eq!(p.take_headers_snapshot(5), None, "taken once");
    }

    #[tokio::test]
    async fn snapshot_wait_ends_when_the_connection_does() {
        let p = PeerSettings::new();
        p.record(SettingsValues::from_entries(&[(0x2b61, 9)]));
        p.on_ack_written();
        p.expect_headers(1);
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.headers_snapshot(1).await })
        };
        let acked = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_acked(2).await })
        };
        tokio::task::yield_now().await;
        p.close();
        assert_eq!(waiter.await.unwrap().get(0x2b61), Some(9));
        assert!(!acked.await.unwrap());
    }

    #[tokio::test]
    async fn goaway_goes_out_at_a_frame_boundary_then_the_write_side_shuts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let peer = PeerSettings::new();
        let mut io = SettingsIo::new(a, true, vec![(0x2b60, 1)], peer.clone());
        let mut first = PREFACE.to_vec();
        first.extend(settings(&[(0x4, 1)], false));
        let data = frame(0x0, 0, 1, &[5; 30]);
        first.extend_from_slice(&data[..20]); // h2 is in the middle of a DATA frame
        io.write_all(&first).await.unwrap();
        peer.request_goaway(0x1);
        // The rest of the DATA frame goes out, then the GOAWAY; h2's own GOAWAY is dropped.
        io.write_all(&data[20..]).await.unwrap();
        io.write_all(&frame(TYPE_GOAWAY, 0, 0, &[0; 8]))
            .await
            .unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        // Reads see end of stream.
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let mut want = PREFACE.to_vec();
        want.extend(settings(&[(0x4, 1), (0x2b60, 1)], false));
        want.extend(data);
        want.extend(frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(got, want);
    }

    /// A client adapter over a pipe that has written its preface and SETTINGS, which the
    /// other end (returned) has read.
    async fn client_past_its_preface() -> (
        SettingsIo<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<PeerSettings>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let peer = PeerSettings::new();
        let mut io = SettingsIo::new(a, true, vec![], peer.clone());
        let mut first = PREFACE.to_vec();
        first.extend(settings(&[], false));
        io.write_all(&first).await.unwrap();
        let mut got = vec![0u8; first.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, first);
        (io, b, peer)
    }

    #[tokio::test]
    async fn goaway_wakes_a_connection_parked_in_a_read() {
        use tokio::io::AsyncReadExt;
        let (mut io, mut b, peer) = client_past_its_preface().await;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            // Parks (the other side sends nothing), then sees end of stream after the GOAWAY.
            let n = io.read(&mut buf).await.unwrap();
            (n, io)
        });
        peer.request_goaway(0x1);
        let (n, _io) = reader.await.unwrap();
        assert_eq!(n, 0);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 1]));
    }

    /// A connection that parks again with the waker it parked before skips the lock; a
    /// GOAWAY request still wakes it, whether it comes after that park or between two.
    #[tokio::test]
    async fn goaway_wakes_a_connection_parked_again_with_the_same_waker() {
        use tokio::io::{AsyncRead, AsyncWriteExt};
        use wt_core::testsuite::WakeCount;
        for request_between_parks in [false, true] {
            let (mut io, mut b, peer) = client_past_its_preface().await;

            let (count, waker) = WakeCount::probe();
            let mut cx = Context::from_waker(&waker);
            let mut space = [0u8; 64];
            let mut read = |cx: &mut Context<'_>, io: &mut SettingsIo<_>| {
                let mut buf = ReadBuf::new(&mut space);
                match Pin::new(io).poll_read(cx, &mut buf) {
                    Poll::Ready(r) => Some(r.map(|()| buf.filled().len())),
                    Poll::Pending => None,
                }
            };
            // Parks; data wakes it and is read; parks again with the same waker.
            assert!(read(&mut cx, &mut io).is_none());
            b.write_all(&frame(0x0, 0, 1, b"x")).await.unwrap();
            assert!(count.get() >= 1);
            assert!(matches!(read(&mut cx, &mut io), Some(Ok(n)) if n > 0));
            let before = count.get();
            if !request_between_parks {
                assert!(read(&mut cx, &mut io).is_none());
            }
            peer.request_goaway(0x1);
            assert_eq!(
                count.get(),
                before + 1,
                "the request wakes the parked waker"
            );
            // Woken: the next read ends the connection (GOAWAY written, end of stream).
            assert!(matches!(read(&mut cx, &mut io), Some(Ok(0))));
        }
    }
}
