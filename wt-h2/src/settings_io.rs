//! An IO adapter under h2 that carries the WebTransport SETTINGS h2 does not know about.
//!
//! h2 0.4 drops unknown SETTINGS identifiers in both directions. [`SettingsIo`] sits between
//! h2 and the TLS stream and parses the HTTP/2 frame stream (9-byte frame headers, after the
//! 24-byte client preface on the client→server direction):
//!
//! * **write side**: our own first non-ACK SETTINGS frame is rewritten to append extra
//!   entries (server: SETTINGS_WT_ENABLED and the initial flow-control limits), with the frame
//!   length adjusted. Everything before it (the client preface) is copied through; after it,
//!   writes go straight to the inner stream.
//! * **read side**: every byte passes through unchanged and without delay; a sans-IO
//!   [`FrameScanner`] follows frame boundaries and records the peer's SETTINGS entries (all
//!   ids, last value wins) in [`PeerSettings`], so the client can wait for the server's first
//!   SETTINGS before sending its extended CONNECT.
//!
//! Malformed SETTINGS frames (length not a multiple of 6, oversized) are not recorded and are
//! left for h2 to reject.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const TYPE_SETTINGS: u8 = 0x4;
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

/// The peer's SETTINGS as seen on the wire, shared between the IO adapter and the session
/// layer.
#[derive(Debug)]
pub(crate) struct PeerSettings {
    values: Mutex<HashMap<u16, u32>>,
    frames: tokio::sync::watch::Sender<u32>,
}

impl PeerSettings {
    /// Nothing seen yet.
    pub fn new() -> Arc<Self> {
        Arc::new(PeerSettings {
            values: Mutex::new(HashMap::new()),
            frames: tokio::sync::watch::Sender::new(0),
        })
    }

    fn record(&self, entries: &[(u16, u32)]) {
        if let Ok(mut v) = self.values.lock() {
            for (id, val) in entries {
                v.insert(*id, *val);
            }
        }
        self.frames.send_modify(|n| *n += 1);
    }

    /// The last value of `id`, if the peer sent it.
    pub fn get(&self, id: u16) -> Option<u32> {
        self.values.lock().ok().and_then(|v| v.get(&id).copied())
    }

    /// Number of non-ACK SETTINGS frames seen.
    #[cfg(test)]
    pub fn frames(&self) -> u32 {
        *self.frames.borrow()
    }

    /// Waits until the peer's first SETTINGS frame was seen.
    pub async fn wait_first(&self) {
        let mut rx = self.frames.subscribe();
        let _ = rx.wait_for(|n| *n >= 1).await;
    }
}

/// The IO adapter (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct SettingsIo<T> {
    inner: T,
    scanner: FrameScanner,
    rewriter: Option<SettingsRewriter>,
    pending: BytesMut,
    peer: Arc<PeerSettings>,
    events: Vec<ScanEvent>,
}

impl<T> SettingsIo<T> {
    /// Wraps `inner`. `client`: we send the preface (and the peer does not). `extra`: entries
    /// appended to our first SETTINGS frame.
    pub fn new(inner: T, client: bool, extra: Vec<(u16, u32)>, peer: Arc<PeerSettings>) -> Self {
        SettingsIo {
            inner,
            scanner: FrameScanner::new(!client),
            rewriter: if extra.is_empty() {
                None
            } else {
                Some(SettingsRewriter::new(client, extra))
            },
            pending: BytesMut::new(),
            peer,
            events: Vec::new(),
        }
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
}

impl<T: AsyncRead + Unpin> AsyncRead for SettingsIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.scanner.feed(&buf.filled()[before..], &mut this.events);
        for ev in this.events.drain(..) {
            match ev {
                ScanEvent::Settings {
                    ack: false,
                    entries,
                } => this.peer.record(&entries),
                ScanEvent::Settings { ack: true, .. } => {}
                ScanEvent::BadSettings => tracing::debug!("peer sent a malformed SETTINGS frame"),
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
        ready!(this.poll_pending(cx))?;
        let Some(rw) = this.rewriter.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        };
        let n = rw.feed(data, &mut this.pending);
        if rw.is_done() {
            this.rewriter = None;
        }
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
        if this.rewriter.is_none() && this.pending.is_empty() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
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
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
        peer_of_client.wait_first().await;
        assert_eq!(peer_of_client.get(0x8), Some(1));
        assert_eq!(peer_of_client.get(0x2b60), Some(1));
        let _server = srv.await.unwrap();
        assert_eq!(peer_of_server.frames(), 1);
    }
}
