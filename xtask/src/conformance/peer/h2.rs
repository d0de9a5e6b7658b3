//! A raw HTTP/2 peer.
//!
//! * Client side: the h2 crate does the HTTP/2 work (HPACK, windows) and sends the extended
//!   CONNECT; the capsule bytes inside DATA are written by hand, so a case controls every WT
//!   byte. [`probe_settings`] opens a separate raw connection to read the server's SETTINGS
//!   frame as sent (the h2 crate hides unknown settings).
//! * Server side: [`RawH2Server`] writes frames by hand over tokio-rustls (lying SETTINGS,
//!   hand-encoded responses) to test our client.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wt_core::tls::{ClientTls, ServerTls};

use super::{ContentEvent, ContentReader, PeerError};

/// ALPN of HTTP/2.
pub const ALPN: &[u8] = b"h2";

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 setting identifiers used by the cases.
pub mod ids {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL.
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
    /// SETTINGS_WT_ENABLED (d15; max sessions in d07–d12).
    pub const WT_ENABLED: u16 = 0x2b60;
    /// SETTINGS_WT_INITIAL_MAX_DATA.
    pub const WT_INITIAL_MAX_DATA: u16 = 0x2b61;
    /// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_UNI.
    pub const WT_INITIAL_MAX_STREAM_DATA_UNI: u16 = 0x2b62;
    /// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL.
    pub const WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: u16 = 0x2b63;
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI.
    pub const WT_INITIAL_MAX_STREAMS_UNI: u16 = 0x2b64;
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI.
    pub const WT_INITIAL_MAX_STREAMS_BIDI: u16 = 0x2b65;
    /// SETTINGS_WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE.
    pub const WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: u16 = 0x2b66;
}

/// Frame types.
pub mod frames {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
}

/// A server's SETTINGS as sent.
#[derive(Debug, Clone, Default)]
pub struct H2Settings(pub Vec<(u16, u32)>);

impl H2Settings {
    /// The last value of `id`.
    pub fn get(&self, id: u16) -> Option<u32> {
        self.0.iter().rev().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    fn parse(payload: &[u8]) -> Self {
        H2Settings(
            payload
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect(),
        )
    }
}

/// Encodes a SETTINGS payload.
pub fn settings_payload(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 6);
    for (id, v) in pairs {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// One HTTP/2 frame.
#[derive(Debug, Clone)]
pub struct H2Frame {
    /// Type.
    pub ty: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier.
    pub stream: u32,
    /// Payload.
    pub payload: Bytes,
}

/// Frame I/O over any byte stream (used by the settings probe and the raw server).
pub struct FrameIo<S> {
    io: S,
    buf: BytesMut,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> FrameIo<S> {
    /// Wraps a stream.
    pub fn new(io: S) -> Self {
        FrameIo {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Reads exactly `n` raw bytes (e.g. the client preface).
    pub async fn read_exact_raw(&mut self, n: usize) -> Result<Bytes, PeerError> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(PeerError::Io("connection closed".into()));
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    async fn fill(&mut self) -> Result<usize, PeerError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .io
            .read(&mut chunk)
            .await
            .map_err(|e| PeerError::Io(e.to_string()))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads the next frame; `Ok(None)` at a clean end of the connection.
    pub async fn read_frame(&mut self) -> Result<Option<H2Frame>, PeerError> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if len > 1 << 20 {
                    return Err(PeerError::Protocol(format!("frame of {len} bytes")));
                }
                if self.buf.len() >= 9 + len {
                    let head = self.buf.split_to(9);
                    let payload = self.buf.split_to(len).freeze();
                    return Ok(Some(H2Frame {
                        ty: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload,
                    }));
                }
            }
            match self.fill().await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if self.buf.is_empty() => {
                    // A TLS close without close_notify or a TCP reset ends the connection.
                    let _ = e;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one frame.
    pub async fn write_frame(
        &mut self,
        ty: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> Result<(), PeerError> {
        let mut out = BytesMut::with_capacity(9 + payload.len());
        let len = payload.len() as u32;
        out.put_slice(&len.to_be_bytes()[1..]);
        out.put_u8(ty);
        out.put_u8(flags);
        out.put_u32(stream);
        out.put_slice(payload);
        self.write_raw(&out).await
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| PeerError::Io(e.to_string()))?;
        self.io
            .flush()
            .await
            .map_err(|e| PeerError::Io(e.to_string()))
    }
}

async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    tls: &ClientTls,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, PeerError> {
    let cfg = tls
        .build(&[ALPN], true)
        .map_err(|e| PeerError::Io(format!("TLS config: {e}")))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| PeerError::Io(format!("TCP connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| PeerError::Io(format!("server name {server_name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| PeerError::Io(format!("TLS handshake: {e}")))?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(PeerError::Io("server did not negotiate ALPN h2".into()));
    }
    Ok(stream)
}

/// Opens a raw connection, sends the preface and an empty SETTINGS, and returns the server's
/// first SETTINGS frame as sent.
pub async fn probe_settings(
    addr: SocketAddr,
    server_name: &str,
    tls: &ClientTls,
) -> Result<H2Settings, PeerError> {
    let stream = tls_connect(addr, server_name, tls).await?;
    let mut io = FrameIo::new(stream);
    io.write_raw(PREFACE).await?;
    io.write_frame(frames::SETTINGS, 0, 0, &[]).await?;
    loop {
        match io.read_frame().await? {
            Some(f) if f.ty == frames::SETTINGS && f.flags & 1 == 0 => {
                let s = H2Settings::parse(&f.payload);
                let _ = io.write_frame(frames::SETTINGS, 1, 0, &[]).await;
                let _ = io
                    .write_frame(frames::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0])
                    .await;
                return Ok(s);
            }
            Some(_) => {}
            None => return Err(PeerError::Io("connection closed before SETTINGS".into())),
        }
    }
}

/// How an HTTP/2 connection (driven by the h2 crate) ended.
#[derive(Debug, Clone)]
pub enum ConnEnd {
    /// The peer sent GOAWAY with this code (and the connection then ended).
    GoAway(u32),
    /// Some other error.
    Error(String),
    /// Clean end.
    Clean,
}

impl std::fmt::Display for ConnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnEnd::GoAway(c) => write!(f, "GOAWAY with code {c:#x}"),
            ConnEnd::Error(e) => f.write_str(e),
            ConnEnd::Clean => f.write_str("connection ended cleanly"),
        }
    }
}

/// A raw HTTP/2 client connection (h2 crate below).
pub struct H2Conn {
    send_req: h2::client::SendRequest<Bytes>,
    end: watch::Receiver<Option<ConnEnd>>,
    task: JoinHandle<()>,
    /// `:authority` used in requests.
    pub authority: String,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Conn {
    /// Connects and performs the HTTP/2 handshake; waits (up to `wait`) until the server
    /// enabled extended CONNECT.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        authority: &str,
        tls: &ClientTls,
        window: u32,
        wait: Duration,
    ) -> Result<Self, PeerError> {
        let stream = tls_connect(addr, server_name, tls).await?;
        let (send_req, conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(window.max(65_535))
            .max_send_buffer_size(4 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| PeerError::Io(format!("HTTP/2 handshake: {e}")))?;
        let (tx, end) = watch::channel(None);
        let task = tokio::spawn(async move {
            let r = conn.await;
            let e = match r {
                Ok(()) => ConnEnd::Clean,
                Err(e) if e.is_go_away() => ConnEnd::GoAway(e.reason().map(u32::from).unwrap_or(0)),
                Err(e) => ConnEnd::Error(e.to_string()),
            };
            tx.send_replace(Some(e));
        });
        let me = H2Conn {
            send_req,
            end,
            task,
            authority: authority.to_owned(),
        };
        let deadline = tokio::time::Instant::now() + wait;
        while !me.send_req.is_extended_connect_protocol_enabled() {
            if let Some(e) = me.end.borrow().clone() {
                return Err(PeerError::Closed(e.to_string()));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(PeerError::Protocol(
                    "server did not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(me)
    }

    /// Whether the connection ended, and how.
    pub fn ended(&self) -> Option<ConnEnd> {
        self.end.borrow().clone()
    }

    /// Waits for the connection to end.
    pub async fn wait_end(&mut self) -> ConnEnd {
        loop {
            if let Some(e) = self.end.borrow().clone() {
                return e;
            }
            if self.end.changed().await.is_err() {
                return ConnEnd::Error("connection task gone".into());
            }
        }
    }

    /// Sends an extended CONNECT with `:protocol` and extra headers; returns immediately
    /// (the response comes with [`H2Pending::response`]), so capsules can be sent optimistically.
    pub async fn connect_request(
        &mut self,
        path: &str,
        protocol: &str,
        headers: &[(&str, &str)],
    ) -> Result<H2Pending, PeerError> {
        let mut b = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("https://{}{}", self.authority, path))
            .extension(h2::ext::Protocol::from(protocol));
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let req = b
            .body(())
            .map_err(|e| PeerError::Io(format!("request: {e}")))?;
        let mut sr = self
            .send_req
            .clone()
            .ready()
            .await
            .map_err(|e| PeerError::Io(e.to_string()))?;
        let (resp, send) = sr
            .send_request(req, false)
            .map_err(|e| PeerError::Io(format!("send_request: {e}")))?;
        Ok(H2Pending { resp, send })
    }
}

/// A CONNECT whose response has not arrived yet.
pub struct H2Pending {
    resp: h2::client::ResponseFuture,
    /// The request body (content) stream.
    pub send: h2::SendStream<Bytes>,
}

impl H2Pending {
    /// Writes content bytes (capsules) before the response.
    pub fn send(&mut self, bytes: Vec<u8>, end: bool) -> Result<(), PeerError> {
        self.send
            .send_data(Bytes::from(bytes), end)
            .map_err(|e| PeerError::Io(format!("send_data: {e}")))
    }

    /// Waits for the response.
    pub async fn response(self) -> Result<H2Session, PeerError> {
        let resp = self.resp.await.map_err(h2_err)?;
        let (parts, recv) = resp.into_parts();
        Ok(H2Session {
            status: parts.status.as_u16(),
            headers: parts.headers,
            id: u32::from(self.send.stream_id()),
            send: self.send,
            recv,
            content: ContentReader::default(),
        })
    }
}

fn h2_err(e: h2::Error) -> PeerError {
    if e.is_reset() {
        PeerError::Reset(e.reason().map(u32::from).unwrap_or(0) as u64)
    } else if e.is_go_away() {
        PeerError::Closed(format!(
            "GOAWAY with code {:#x}",
            e.reason().map(u32::from).unwrap_or(0)
        ))
    } else {
        PeerError::Io(e.to_string())
    }
}

/// An HTTP/2 WebTransport session as the raw client sees it: the CONNECT stream.
pub struct H2Session {
    /// Response status.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// HTTP/2 stream ID (= session ID).
    pub id: u32,
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    content: ContentReader,
}

impl H2Session {
    /// Writes content bytes (one DATA frame; h2 may split it by window).
    pub fn send(&mut self, bytes: Vec<u8>) -> Result<(), PeerError> {
        self.send
            .send_data(Bytes::from(bytes), false)
            .map_err(|e| PeerError::Io(format!("send_data: {e}")))
    }

    /// Writes content bytes and END_STREAM.
    pub fn send_fin(&mut self, bytes: Vec<u8>) -> Result<(), PeerError> {
        self.send
            .send_data(Bytes::from(bytes), true)
            .map_err(|e| PeerError::Io(format!("send_data: {e}")))
    }

    /// Resets the CONNECT stream.
    pub fn reset(&mut self, code: u32) {
        self.send.send_reset(h2::Reason::from(code));
    }

    /// A response header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The next capsule of the response content, or how the stream ended.
    pub async fn next_capsule(&mut self) -> ContentEvent {
        loop {
            match self.content.next() {
                Ok(Some(c)) => return c,
                Ok(None) => {}
                Err(e) => return ContentEvent::Error(e),
            }
            match self.recv.data().await {
                Some(Ok(d)) => {
                    let _ = self.recv.flow_control().release_capacity(d.len());
                    self.content.push(&d);
                }
                None => return self.content.at_fin(),
                Some(Err(e)) => {
                    return match h2_err(e) {
                        PeerError::Reset(c) => ContentEvent::Reset(c),
                        other => ContentEvent::Error(other),
                    }
                }
            }
        }
    }
}

/// HPACK: a string literal without Huffman.
fn hpack_string(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(0x00, 7, s.len(), out);
    out.extend_from_slice(s);
}

fn hpack_int(first: u8, prefix: u8, v: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// HPACK-encodes a header list: `:status` from the static table when possible, everything
/// else as literals without indexing.
pub fn hpack_encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        let idx = match (*n, *v) {
            (":status", "200") => Some(8),
            (":status", "204") => Some(9),
            (":status", "404") => Some(13),
            _ => None,
        };
        match idx {
            Some(i) => out.push(0x80 | i),
            None => {
                out.push(0x00);
                hpack_string(n.as_bytes(), &mut out);
                hpack_string(v.as_bytes(), &mut out);
            }
        }
    }
    out
}

/// A raw HTTP/2 server that misbehaves on purpose (to test our client).
pub struct RawH2Server {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    /// Its address.
    pub addr: SocketAddr,
    /// SHA-256 of its certificate.
    pub cert_hash: [u8; 32],
}

impl RawH2Server {
    /// Binds on 127.0.0.1:0.
    pub async fn bind() -> Result<Self, PeerError> {
        let tls = ServerTls::self_signed(&["localhost", "127.0.0.1"])
            .map_err(|e| PeerError::Io(format!("certificate: {e}")))?;
        let cfg = tls
            .build(&[ALPN], true)
            .map_err(|e| PeerError::Io(format!("TLS config: {e}")))?;
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| PeerError::Io(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| PeerError::Io(e.to_string()))?;
        Ok(RawH2Server {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            addr,
            cert_hash: tls.cert_hash(),
        })
    }

    /// Accepts one connection, reads the client preface and sends `settings`.
    pub async fn accept(
        &self,
        settings: &[(u16, u32)],
    ) -> Result<FrameIo<tokio_rustls::server::TlsStream<TcpStream>>, PeerError> {
        let (tcp, _) = self
            .listener
            .accept()
            .await
            .map_err(|e| PeerError::Io(e.to_string()))?;
        let tls = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| PeerError::Io(format!("TLS accept: {e}")))?;
        let mut io = FrameIo::new(tls);
        io.write_frame(frames::SETTINGS, 0, 0, &settings_payload(settings))
            .await?;
        let preface = io.read_exact_raw(PREFACE.len()).await?;
        if &preface[..] != PREFACE {
            return Err(PeerError::Protocol("bad client preface".into()));
        }
        Ok(io)
    }
}

/// Decodes the error code of a GOAWAY payload.
pub fn goaway_code(payload: &[u8]) -> Option<u32> {
    let mut p = payload;
    if p.len() < 8 {
        return None;
    }
    p.advance(4);
    Some(p.get_u32())
}

/// The `:status` of an HPACK-encoded response header block: only the first field is decoded
/// (servers put the pseudo-header first), after any dynamic table size updates. Static-table
/// indexes 8–14 carry :status; literals with those name indexes carry the value.
pub fn hpack_status(block: &[u8]) -> Option<u16> {
    fn int(b: &[u8], pos: &mut usize, prefix: u8) -> Option<usize> {
        let max = (1usize << prefix) - 1;
        let mut v = (*b.get(*pos)? as usize) & max;
        *pos += 1;
        if v < max {
            return Some(v);
        }
        let mut shift = 0;
        loop {
            let c = *b.get(*pos)?;
            *pos += 1;
            v = v.checked_add(((c & 0x7f) as usize).checked_shl(shift)?)?;
            if c & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
            if shift > 28 {
                return None;
            }
        }
    }
    const STATUS: [(usize, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let mut pos = 0;
    while block.get(pos)? & 0xe0 == 0x20 {
        int(block, &mut pos, 5)?;
    }
    let first = *block.get(pos)?;
    let (name_idx, literal) = if first & 0x80 != 0 {
        (int(block, &mut pos, 7)?, false)
    } else if first & 0x40 != 0 {
        (int(block, &mut pos, 6)?, true)
    } else {
        (int(block, &mut pos, 4)?, true)
    };
    if !literal {
        return STATUS.iter().find(|(i, _)| *i == name_idx).map(|(_, s)| *s);
    }
    if !(8..=14).contains(&name_idx) {
        return None;
    }
    let huff = block.get(pos)? & 0x80 != 0;
    let len = int(block, &mut pos, 7)?;
    let raw = block.get(pos..pos.checked_add(len)?)?;
    let mut value = Vec::new();
    if huff {
        wt_h3::proto::huffman::decode(raw, &mut value).ok()?;
    } else {
        value.extend_from_slice(raw);
    }
    std::str::from_utf8(&value).ok()?.parse().ok()
}

/// What a [`RawH2Client`] saw on one HTTP/2 stream.
#[derive(Debug, Default)]
pub struct RawH2Stream {
    /// The response `:status`, once HEADERS arrived (0 if it could not be decoded).
    pub status: Option<u16>,
    /// Capsule parser over the DATA payloads.
    pub content: ContentReader,
    /// END_STREAM received.
    pub end_stream: bool,
    /// RST_STREAM code received.
    pub reset: Option<u32>,
}

/// A raw HTTP/2 client writing every frame by hand: it sends its own SETTINGS (WebTransport
/// ones included) whenever a case wants, and requests that the h2 crate would refuse to send.
/// Our receive windows are huge, so the server is never blocked by them.
pub struct RawH2Client {
    io: FrameIo<tokio_rustls::client::TlsStream<TcpStream>>,
    /// The server's SETTINGS (the last frame received).
    pub server_settings: Option<H2Settings>,
    /// SETTINGS ACKs received (each acknowledges one of our SETTINGS frames, in order).
    pub acks: usize,
    /// GOAWAY code received.
    pub goaway: Option<u32>,
    /// Per HTTP/2 stream ID.
    pub streams: std::collections::HashMap<u32, RawH2Stream>,
    next_stream: u32,
}

impl RawH2Client {
    /// Connects, sends the preface, `settings` (plus INITIAL_WINDOW_SIZE 2^31−1) and a large
    /// connection WINDOW_UPDATE.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: &ClientTls,
        settings: &[(u16, u32)],
    ) -> Result<Self, PeerError> {
        let stream = tls_connect(addr, server_name, tls).await?;
        let mut io = FrameIo::new(stream);
        io.write_raw(PREFACE).await?;
        let mut all = vec![(0x4u16, 0x7fff_ffffu32)];
        all.extend_from_slice(settings);
        io.write_frame(frames::SETTINGS, 0, 0, &settings_payload(&all))
            .await?;
        io.write_frame(
            frames::WINDOW_UPDATE,
            0,
            0,
            &(0x7fff_ffffu32 - 65_535).to_be_bytes(),
        )
        .await?;
        Ok(RawH2Client {
            io,
            server_settings: None,
            acks: 0,
            goaway: None,
            streams: Default::default(),
            next_stream: 1,
        })
    }

    /// Sends another SETTINGS frame.
    pub async fn send_settings(&mut self, settings: &[(u16, u32)]) -> Result<(), PeerError> {
        self.io
            .write_frame(frames::SETTINGS, 0, 0, &settings_payload(settings))
            .await
    }

    /// Reads and processes one frame; `Ok(false)` when the connection ended.
    pub async fn step(&mut self) -> Result<bool, PeerError> {
        let Some(f) = self.io.read_frame().await? else {
            return Ok(false);
        };
        match f.ty {
            frames::SETTINGS if f.flags & 1 == 0 => {
                self.server_settings = Some(H2Settings::parse(&f.payload));
                self.io.write_frame(frames::SETTINGS, 1, 0, &[]).await?;
            }
            frames::SETTINGS => self.acks += 1,
            frames::PING if f.flags & 1 == 0 => {
                self.io.write_frame(frames::PING, 1, 0, &f.payload).await?;
            }
            frames::GOAWAY => self.goaway = goaway_code(&f.payload),
            frames::HEADERS => {
                let st = self.streams.entry(f.stream).or_default();
                if st.status.is_none() {
                    st.status = Some(hpack_status(&f.payload).unwrap_or(0));
                }
                if f.flags & 1 != 0 {
                    st.end_stream = true;
                }
            }
            frames::DATA => {
                let st = self.streams.entry(f.stream).or_default();
                let mut p = &f.payload[..];
                if f.flags & 0x8 != 0 {
                    let pad = *p.first().unwrap_or(&0) as usize;
                    p = p.get(1..p.len().saturating_sub(pad)).unwrap_or(&[]);
                }
                st.content.push(p);
                if f.flags & 1 != 0 {
                    st.end_stream = true;
                }
            }
            frames::RST_STREAM => {
                let code = f
                    .payload
                    .get(..4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(0);
                self.streams.entry(f.stream).or_default().reset = Some(code);
            }
            _ => {}
        }
        Ok(true)
    }

    /// Processes frames until `done(self)`; fails if the connection ends first.
    pub async fn until(&mut self, done: impl Fn(&Self) -> bool) -> Result<(), PeerError> {
        while !done(self) {
            if !self.step().await? {
                return Err(PeerError::Closed(match self.goaway {
                    Some(c) => format!("GOAWAY with code {c:#x}"),
                    None => "connection ended".into(),
                }));
            }
        }
        Ok(())
    }

    /// Sends a request HEADERS (END_HEADERS) with `fields` as given, on the next stream ID.
    pub async fn request(&mut self, fields: &[(&str, &str)]) -> Result<u32, PeerError> {
        let id = self.next_stream;
        self.next_stream += 2;
        self.streams.insert(id, RawH2Stream::default());
        self.io
            .write_frame(frames::HEADERS, 0x4, id, &hpack_encode(fields))
            .await?;
        Ok(id)
    }

    /// Sends DATA on `stream` (`end` sets END_STREAM).
    pub async fn data(&mut self, stream: u32, bytes: &[u8], end: bool) -> Result<(), PeerError> {
        for (i, chunk) in bytes.chunks(16_384).enumerate() {
            let last = (i + 1) * 16_384 >= bytes.len();
            let flags = if end && last { 1 } else { 0 };
            self.io
                .write_frame(frames::DATA, flags, stream, chunk)
                .await?;
        }
        if bytes.is_empty() {
            self.io
                .write_frame(frames::DATA, u8::from(end), stream, &[])
                .await?;
        }
        Ok(())
    }

    /// The stream's state.
    pub fn stream(&mut self, id: u32) -> &mut RawH2Stream {
        self.streams.entry(id).or_default()
    }
}
