//! A raw HTTP/3 peer on quinn: a client that sends exactly the bytes a case needs (lying
//! SETTINGS, malformed capsules, wrong session IDs, misplaced 0x41, bad datagrams) and a
//! server that misbehaves on purpose to test our client.
//!
//! Frames are built with `wt_h3::proto` (frames, SETTINGS, QPACK with the static table only);
//! everything above that — capsules, WT stream headers, datagram prefixes — is written by hand
//! here so a case controls every byte.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wt_core::tls::{ClientTls, ServerTls};
use wt_core::varint;
use wt_h3::proto::frame::{self, Frame, FrameDecoder, StreamKind};
use wt_h3::proto::qpack;
use wt_h3::proto::settings::Settings;

use super::{ContentEvent, ContentReader, PeerError};

/// ALPN of HTTP/3.
pub const ALPN: &[u8] = b"h3";

/// Setting identifiers the cases type.
pub mod ids {
    /// SETTINGS_QPACK_MAX_TABLE_CAPACITY.
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL.
    pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
    /// SETTINGS_H3_DATAGRAM.
    pub const H3_DATAGRAM: u64 = 0x33;
    /// SETTINGS_H3_DATAGRAM of h3-datagram-04/05.
    pub const H3_DATAGRAM_DRAFT04: u64 = 0xffd277;
    /// SETTINGS_ENABLE_WEBTRANSPORT (H3 draft-02).
    pub const ENABLE_WEBTRANSPORT: u64 = 0x2b603742;
    /// SETTINGS_WEBTRANSPORT_MAX_SESSIONS (H3 draft-07…12).
    pub const MAX_SESSIONS_D07: u64 = 0xc671706a;
    /// SETTINGS_WT_MAX_SESSIONS (H3 draft-13/14).
    pub const MAX_SESSIONS_D13: u64 = 0x14e9cd29;
    /// SETTINGS_WT_ENABLED (H3 draft-15/16).
    pub const WT_ENABLED: u64 = 0x2c7cf000;
    /// SETTINGS_WT_INITIAL_MAX_DATA.
    pub const WT_INITIAL_MAX_DATA: u64 = 0x2b61;
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI.
    pub const WT_INITIAL_MAX_STREAMS_UNI: u64 = 0x2b64;
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI.
    pub const WT_INITIAL_MAX_STREAMS_BIDI: u64 = 0x2b65;
}

/// HTTP/3 and WebTransport codes the cases expect.
pub mod codes {
    /// H3_NO_ERROR.
    pub const H3_NO_ERROR: u64 = 0x100;
    /// H3_STREAM_CREATION_ERROR.
    pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
    /// H3_CLOSED_CRITICAL_STREAM.
    pub const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
    /// H3_FRAME_UNEXPECTED.
    pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
    /// H3_FRAME_ERROR.
    pub const H3_FRAME_ERROR: u64 = 0x106;
    /// H3_MISSING_SETTINGS.
    pub const H3_MISSING_SETTINGS: u64 = 0x10a;
    /// QPACK_ENCODER_STREAM_ERROR.
    pub const QPACK_ENCODER_STREAM_ERROR: u64 = 0x201;
    /// H3_ID_ERROR.
    pub const H3_ID_ERROR: u64 = 0x108;
    /// H3_SETTINGS_ERROR.
    pub const H3_SETTINGS_ERROR: u64 = 0x109;
    /// H3_REQUEST_REJECTED.
    pub const H3_REQUEST_REJECTED: u64 = 0x10b;
    /// H3_MESSAGE_ERROR.
    pub const H3_MESSAGE_ERROR: u64 = 0x10e;
    /// H3_DATAGRAM_ERROR.
    pub const H3_DATAGRAM_ERROR: u64 = 0x33;
    /// WT_SESSION_GONE.
    pub const WT_SESSION_GONE: u64 = 0x170d7b68;
    /// WT_FLOW_CONTROL_ERROR.
    pub const WT_FLOW_CONTROL_ERROR: u64 = 0x045d4487;
    /// WT_ALPN_ERROR.
    pub const WT_ALPN_ERROR: u64 = 0x0817b3dd;
    /// WT_REQUIREMENTS_NOT_MET.
    pub const WT_REQUIREMENTS_NOT_MET: u64 = 0x212c0d48;
    /// QUIC PROTOCOL_VIOLATION.
    pub const QUIC_PROTOCOL_VIOLATION: u64 = 0x0a;
}

/// How a QUIC connection ended, as the raw peer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The peer sent an application CONNECTION_CLOSE (HTTP/3 code).
    App {
        /// The code.
        code: u64,
        /// The reason phrase.
        reason: String,
    },
    /// The peer (or our stack) closed with a QUIC transport error.
    Transport {
        /// The transport error code.
        code: u64,
        /// The reason phrase.
        reason: String,
    },
    /// Anything else (timeout, local close, reset).
    Other(String),
}

impl Closed {
    /// Classifies a quinn connection error.
    pub fn from_quinn(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => Closed::App {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::ConnectionClosed(c) => Closed::Transport {
                code: u64::from(c.error_code),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::TransportError(t) => Closed::Transport {
                code: u64::from(t.code),
                reason: format!("local: {}", t.reason),
            },
            other => Closed::Other(other.to_string()),
        }
    }

    /// The application code, if the peer closed with one.
    pub fn app_code(&self) -> Option<u64> {
        match self {
            Closed::App { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::App { code, reason } => {
                write!(f, "CONNECTION_CLOSE with HTTP/3 code {}", code_name(*code))?;
                if !reason.is_empty() {
                    write!(f, " ({reason:?})")?;
                }
                Ok(())
            }
            Closed::Transport { code, reason } => {
                write!(f, "CONNECTION_CLOSE with QUIC transport code {code:#x}")?;
                if !reason.is_empty() {
                    write!(f, " ({reason:?})")?;
                }
                Ok(())
            }
            Closed::Other(s) => f.write_str(s),
        }
    }
}

/// `0x10e (H3_MESSAGE_ERROR)` style rendering of an HTTP/3 code.
pub fn code_name(code: u64) -> String {
    let c = wt_core::codes::H3Code(code);
    match (c.name(), c.to_wt()) {
        (Some(n), _) => format!("{code:#x} ({n})"),
        (None, Some(app)) => format!("{code:#x} (WT app code {app})"),
        _ => format!("{code:#x}"),
    }
}

fn quinn_err(e: impl std::fmt::Display) -> PeerError {
    PeerError::Io(e.to_string())
}

fn read_err(e: quinn::ReadError) -> PeerError {
    match e {
        quinn::ReadError::Reset(code) => PeerError::Reset(code.into_inner()),
        quinn::ReadError::ConnectionLost(c) => {
            PeerError::Closed(Closed::from_quinn(&c).to_string())
        }
        other => PeerError::Io(other.to_string()),
    }
}

fn write_err(e: quinn::WriteError) -> PeerError {
    match e {
        quinn::WriteError::Stopped(code) => PeerError::Stopped(code.into_inner()),
        quinn::WriteError::ConnectionLost(c) => {
            PeerError::Closed(Closed::from_quinn(&c).to_string())
        }
        other => PeerError::Io(other.to_string()),
    }
}

/// How a receive stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Clean FIN.
    Fin,
    /// RESET_STREAM with this code.
    Reset(u64),
    /// The connection went away.
    Closed(Closed),
    /// Read error of another kind.
    Other(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Fin => f.write_str("FIN"),
            End::Reset(c) => write!(f, "RESET_STREAM {}", code_name(*c)),
            End::Closed(c) => write!(f, "connection closed: {c}"),
            End::Other(s) => f.write_str(s),
        }
    }
}

/// Reads a stream to its end (up to `limit` bytes); returns the bytes and how it ended.
pub async fn read_all(recv: &mut quinn::RecvStream, limit: usize) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.bytes.len() > limit {
                    return (out, End::Other(format!("more than {limit} bytes")));
                }
                out.extend_from_slice(&chunk.bytes);
            }
            Ok(None) => return (out, End::Fin),
            Err(quinn::ReadError::Reset(code)) => return (out, End::Reset(code.into_inner())),
            Err(quinn::ReadError::ConnectionLost(c)) => {
                return (out, End::Closed(Closed::from_quinn(&c)))
            }
            Err(e) => return (out, End::Other(e.to_string())),
        }
    }
}

/// Reads one QUIC varint from a stream; `Ok(None)` on a clean end before the first byte.
pub async fn read_varint(recv: &mut quinn::RecvStream) -> Result<Option<u64>, PeerError> {
    let mut first = [0u8; 1];
    match recv.read(&mut first).await.map_err(read_err)? {
        None | Some(0) => return Ok(None),
        Some(_) => {}
    }
    let len = 1usize << (first[0] >> 6);
    let mut bytes = [0u8; 8];
    bytes[0] = first[0];
    if len > 1 {
        recv.read_exact(&mut bytes[1..len])
            .await
            .map_err(|e| match e {
                quinn::ReadExactError::ReadError(r) => read_err(r),
                quinn::ReadExactError::FinishedEarly(_) => {
                    PeerError::Protocol("stream ended inside a varint".into())
                }
            })?;
    }
    let mut view = &bytes[..len];
    varint::decode(&mut view)
        .map(Some)
        .map_err(|_| PeerError::Protocol("bad varint".into()))
}

/// Encodes a varint into a fresh buffer.
pub fn vi(v: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    varint::encode_unchecked(v, &mut out);
    out.to_vec()
}

/// Concatenates byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// A capsule (type, value) as raw bytes.
pub fn capsule(ty: u64, value: &[u8]) -> Vec<u8> {
    cat(&[&vi(ty), &vi(value.len() as u64), value])
}

/// A DATA frame around `payload`.
pub fn data_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode_frame(frame::DATA, payload, &mut out);
    out.to_vec()
}

/// A HEADERS frame with the given fields (QPACK, static table, no Huffman).
pub fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut block = BytesMut::new();
    qpack::encode_field_section(&pairs, false, &mut block);
    let mut out = BytesMut::new();
    frame::encode_frame(frame::HEADERS, &block, &mut out);
    out.to_vec()
}

/// A HEADERS frame with the given fields, every string Huffman-encoded.
pub fn headers_frame_huffman(fields: &[(&str, &str)]) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut block = BytesMut::new();
    qpack::encode_field_section(&pairs, true, &mut block);
    let mut out = BytesMut::new();
    frame::encode_frame(frame::HEADERS, &block, &mut out);
    out.to_vec()
}

/// A SETTINGS frame.
pub fn settings_frame(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Settings::from_pairs(pairs).encode(&mut out);
    out.to_vec()
}

/// Decoded response or request header fields.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `:status` as a number (0 when absent or not a number).
    pub fn status(&self) -> u16 {
        self.get(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

fn decode_fields(block: &[u8]) -> Result<Fields, PeerError> {
    let fields = qpack::decode_field_section(block, 64 * 1024)
        .map_err(|e| PeerError::Protocol(format!("QPACK: {e}")))?;
    Ok(Fields(
        fields
            .into_iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(&f.name).into_owned(),
                    String::from_utf8_lossy(&f.value).into_owned(),
                )
            })
            .collect(),
    ))
}

/// Options of a raw client connection.
#[derive(Debug, Clone)]
pub struct H3Options {
    /// Our SETTINGS.
    pub settings: Vec<(u64, u64)>,
    /// Advertise max_datagram_frame_size (QUIC DATAGRAM support).
    pub datagrams: bool,
    /// Open the control stream and send SETTINGS right after the handshake (otherwise call
    /// [`H3Conn::send_settings`] later).
    pub send_settings: bool,
}

/// A WebTransport stream the server opened: its session ID and halves.
pub struct IncomingBi {
    /// Session ID from the `0x41` header.
    pub session_id: u64,
    /// Send half.
    pub send: quinn::SendStream,
    /// Receive half, positioned after the header.
    pub recv: quinn::RecvStream,
}

/// A unidirectional WebTransport stream the server opened.
pub struct IncomingUni {
    /// Session ID from the `0x54` header.
    pub session_id: u64,
    /// Receive half, positioned after the header.
    pub recv: quinn::RecvStream,
}

/// Background tasks aborted on drop.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A raw HTTP/3 client connection.
pub struct H3Conn {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    control: Option<quinn::SendStream>,
    settings: watch::Receiver<Option<Result<Settings, String>>>,
    goaway: watch::Receiver<Option<u64>>,
    uni: mpsc::Receiver<IncomingUni>,
    bi: mpsc::Receiver<IncomingBi>,
    datagrams: mpsc::Receiver<Bytes>,
    _tasks: Tasks,
}

fn transport_config(datagrams: bool) -> quinn::TransportConfig {
    let mut tc = quinn::TransportConfig::default();
    tc.datagram_receive_buffer_size(if datagrams { Some(1 << 20) } else { None });
    tc.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(20)).expect("20 s is a valid timeout"),
    ));
    tc.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1000));
    tc.max_concurrent_uni_streams(quinn::VarInt::from_u32(1000));
    tc
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    }
}

impl H3Conn {
    /// Connects to `addr` (TLS name `server_name`) and starts reading the server's control
    /// and WebTransport streams in the background.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: &ClientTls,
        opts: H3Options,
    ) -> Result<Self, PeerError> {
        let rustls = tls
            .build(&[ALPN], false)
            .map_err(|e| PeerError::Io(format!("TLS config: {e}")))?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(rustls))
            .map_err(quinn_err)?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        cfg.transport_config(Arc::new(transport_config(opts.datagrams)));
        let mut endpoint = quinn::Endpoint::client(unspecified_for(addr)).map_err(quinn_err)?;
        endpoint.set_default_client_config(cfg);
        let conn = endpoint
            .connect(addr, server_name)
            .map_err(quinn_err)?
            .await
            .map_err(|e| PeerError::Io(format!("QUIC handshake: {e}")))?;
        let (settings_tx, settings) = watch::channel(None);
        let (goaway_tx, goaway) = watch::channel(None);
        let (uni_tx, uni) = mpsc::channel(64);
        let (bi_tx, bi) = mpsc::channel(64);
        let (dg_tx, datagrams) = mpsc::channel(256);
        let tasks = vec![
            tokio::spawn(read_uni_streams(
                conn.clone(),
                settings_tx,
                goaway_tx,
                uni_tx,
            )),
            tokio::spawn(read_bi_streams(conn.clone(), bi_tx)),
            tokio::spawn(read_datagrams(conn.clone(), dg_tx)),
        ];
        let mut me = H3Conn {
            conn,
            endpoint,
            control: None,
            settings,
            goaway,
            uni,
            bi,
            datagrams,
            _tasks: Tasks(tasks),
        };
        if opts.send_settings {
            me.send_settings(&opts.settings).await?;
        }
        Ok(me)
    }

    /// Opens the control stream and sends SETTINGS (once).
    pub async fn send_settings(&mut self, pairs: &[(u64, u64)]) -> Result<(), PeerError> {
        let mut bytes = vec![0x00];
        bytes.extend_from_slice(&settings_frame(pairs));
        self.send_control_raw(&bytes).await
    }

    /// Opens the control stream (if not open) and writes `bytes` on it as they are.
    pub async fn send_control_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        if self.control.is_none() {
            self.control = Some(self.conn.open_uni().await.map_err(quinn_err)?);
        }
        let ctl = self.control.as_mut().expect("just opened");
        ctl.write_all(bytes).await.map_err(write_err)
    }

    /// Ends our control stream with FIN.
    pub fn finish_control(&mut self) {
        if let Some(c) = self.control.as_mut() {
            let _ = c.finish();
        }
    }

    /// Opens a unidirectional stream and writes `bytes` (stream type included) on it.
    pub async fn open_uni_raw(&self, bytes: &[u8]) -> Result<quinn::SendStream, PeerError> {
        let mut send = self.conn.open_uni().await.map_err(quinn_err)?;
        send.write_all(bytes).await.map_err(write_err)?;
        Ok(send)
    }

    /// Waits for the server's SETTINGS.
    pub async fn server_settings(&mut self) -> Result<Settings, PeerError> {
        loop {
            if let Some(s) = self.settings.borrow().clone() {
                return s.map_err(PeerError::Protocol);
            }
            if self.settings.changed().await.is_err() {
                return Err(PeerError::Closed(self.closed_now()));
            }
        }
    }

    /// The GOAWAY ID, once the server sent one.
    pub fn goaway(&self) -> Option<u64> {
        *self.goaway.borrow()
    }

    fn closed_now(&self) -> String {
        match self.conn.close_reason() {
            Some(e) => Closed::from_quinn(&e).to_string(),
            None => "control stream reader stopped".into(),
        }
    }

    /// The peer's max_datagram_frame_size allows datagrams.
    pub fn peer_accepts_datagrams(&self) -> bool {
        self.conn.max_datagram_size().is_some()
    }

    /// Opens a request stream and sends a HEADERS frame with `fields`.
    pub async fn request(&self, fields: &[(&str, &str)]) -> Result<H3Stream, PeerError> {
        let mut s = self.open_bi_raw().await?;
        s.write(&headers_frame(fields)).await?;
        Ok(s)
    }

    /// Opens a bidirectional stream and writes nothing.
    pub async fn open_bi_raw(&self) -> Result<H3Stream, PeerError> {
        let (send, recv) = self.conn.open_bi().await.map_err(quinn_err)?;
        Ok(H3Stream::new(send, recv))
    }

    /// Opens a WebTransport bidirectional stream: writes `0x41 session_id`.
    pub async fn open_wt_bi(
        &self,
        session_id: u64,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), PeerError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(quinn_err)?;
        send.write_all(&cat(&[&vi(0x41), &vi(session_id)]))
            .await
            .map_err(write_err)?;
        Ok((send, recv))
    }

    /// Opens a WebTransport unidirectional stream: writes `0x54 session_id`.
    pub async fn open_wt_uni(&self, session_id: u64) -> Result<quinn::SendStream, PeerError> {
        let mut send = self.conn.open_uni().await.map_err(quinn_err)?;
        send.write_all(&cat(&[&vi(0x54), &vi(session_id)]))
            .await
            .map_err(write_err)?;
        Ok(send)
    }

    /// Sends a QUIC DATAGRAM with exactly `payload` (quarter stream ID included by caller).
    pub fn send_datagram_raw(&self, payload: Vec<u8>) -> Result<(), PeerError> {
        self.conn
            .send_datagram(Bytes::from(payload))
            .map_err(|e| PeerError::Io(format!("send_datagram: {e}")))
    }

    /// Sends an HTTP datagram for `session_id`.
    pub fn send_datagram(&self, session_id: u64, payload: &[u8]) -> Result<(), PeerError> {
        self.send_datagram_raw(cat(&[&vi(session_id / 4), payload]))
    }

    /// The next QUIC DATAGRAM payload received (quarter stream ID included).
    pub async fn recv_datagram_raw(&mut self) -> Result<Bytes, PeerError> {
        match self.datagrams.recv().await {
            Some(d) => Ok(d),
            None => Err(PeerError::Closed(self.closed_now())),
        }
    }

    /// The next WebTransport uni stream the server opened.
    pub async fn accept_wt_uni(&mut self) -> Result<IncomingUni, PeerError> {
        match self.uni.recv().await {
            Some(s) => Ok(s),
            None => Err(PeerError::Closed(self.closed_now())),
        }
    }

    /// The next WebTransport bidi stream the server opened.
    pub async fn accept_wt_bi(&mut self) -> Result<IncomingBi, PeerError> {
        match self.bi.recv().await {
            Some(s) => Ok(s),
            None => Err(PeerError::Closed(self.closed_now())),
        }
    }

    /// Waits for the connection to close; how it ended.
    pub async fn closed(&self) -> Closed {
        Closed::from_quinn(&self.conn.closed().await)
    }

    /// Closes the connection (H3_NO_ERROR) and waits briefly for the close to be sent.
    pub async fn shutdown(self) {
        self.conn.close(quinn::VarInt::from_u32(0x100), b"");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}

async fn read_uni_streams(
    conn: quinn::Connection,
    settings_tx: watch::Sender<Option<Result<Settings, String>>>,
    goaway_tx: watch::Sender<Option<u64>>,
    uni_tx: mpsc::Sender<IncomingUni>,
) {
    let settings_tx = Arc::new(settings_tx);
    let goaway_tx = Arc::new(goaway_tx);
    while let Ok(mut recv) = conn.accept_uni().await {
        let settings_tx = settings_tx.clone();
        let goaway_tx = goaway_tx.clone();
        let uni_tx = uni_tx.clone();
        tokio::spawn(async move {
            let Ok(Some(ty)) = read_varint(&mut recv).await else {
                return;
            };
            match ty {
                0x00 => read_control(recv, &settings_tx, &goaway_tx).await,
                0x54 => {
                    if let Ok(Some(session_id)) = read_varint(&mut recv).await {
                        let _ = uni_tx.try_send(IncomingUni { session_id, recv });
                    }
                }
                // QPACK encoder/decoder streams and anything else: drain.
                _ => {
                    let _ = read_all(&mut recv, usize::MAX).await;
                }
            }
        });
    }
}

async fn read_control(
    mut recv: quinn::RecvStream,
    settings_tx: &watch::Sender<Option<Result<Settings, String>>>,
    goaway_tx: &watch::Sender<Option<u64>>,
) {
    let mut dec = FrameDecoder::new(StreamKind::Control);
    let mut buf = BytesMut::new();
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Frame::Settings(s))) => {
                    settings_tx.send_replace(Some(Ok(s)));
                }
                Ok(Some(Frame::Goaway(id))) => {
                    goaway_tx.send_replace(Some(id));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    if settings_tx.borrow().is_none() {
                        settings_tx.send_replace(Some(Err(format!("server control stream: {e}"))));
                    }
                    return;
                }
            }
        }
        match recv.read_chunk(16 * 1024, true).await {
            Ok(Some(c)) => {
                if buf.len() > 64 * 1024 {
                    return;
                }
                buf.extend_from_slice(&c.bytes);
            }
            _ => return,
        }
    }
}

async fn read_bi_streams(conn: quinn::Connection, bi_tx: mpsc::Sender<IncomingBi>) {
    while let Ok((send, mut recv)) = conn.accept_bi().await {
        let bi_tx = bi_tx.clone();
        tokio::spawn(async move {
            if let Ok(Some(0x41)) = read_varint(&mut recv).await {
                if let Ok(Some(session_id)) = read_varint(&mut recv).await {
                    let _ = bi_tx.try_send(IncomingBi {
                        session_id,
                        send,
                        recv,
                    });
                }
            }
        });
    }
}

async fn read_datagrams(conn: quinn::Connection, tx: mpsc::Sender<Bytes>) {
    while let Ok(d) = conn.read_datagram().await {
        let _ = tx.try_send(d);
    }
}

/// A request stream (CONNECT stream) of the raw peer: frames out, frames and capsules in.
pub struct H3Stream {
    /// The QUIC stream ID.
    pub id: u64,
    /// Send half.
    pub send: quinn::SendStream,
    /// Receive half.
    pub recv: quinn::RecvStream,
    buf: BytesMut,
    dec: FrameDecoder,
    content: ContentReader,
    fin: bool,
}

impl H3Stream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        H3Stream {
            id: send.id().into(),
            send,
            recv,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(StreamKind::Request),
            content: ContentReader::default(),
            fin: false,
        }
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.send.write_all(bytes).await.map_err(write_err)
    }

    /// Writes a DATA frame carrying `payload`.
    pub async fn send_data(&mut self, payload: &[u8]) -> Result<(), PeerError> {
        self.write(&data_frame(payload)).await
    }

    /// Writes one capsule in a DATA frame.
    pub async fn send_capsule(&mut self, ty: u64, value: &[u8]) -> Result<(), PeerError> {
        self.send_data(&capsule(ty, value)).await
    }

    /// Sends FIN.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// Reads the next frame; `Ok(None)` at FIN.
    async fn next_frame(&mut self) -> Result<Option<Frame>, PeerError> {
        loop {
            if let Some(f) = self
                .dec
                .decode(&mut self.buf)
                .map_err(|e| PeerError::Protocol(e.to_string()))?
            {
                return Ok(Some(f));
            }
            if self.fin {
                return if self.dec.is_at_boundary(&self.buf) {
                    Ok(None)
                } else {
                    Err(PeerError::Protocol("stream ended inside a frame".into()))
                };
            }
            match self
                .recv
                .read_chunk(64 * 1024, true)
                .await
                .map_err(read_err)?
            {
                Some(c) => self.buf.extend_from_slice(&c.bytes),
                None => self.fin = true,
            }
        }
    }

    /// Reads the response HEADERS (skipping interim 1xx responses).
    pub async fn response(&mut self) -> Result<Fields, PeerError> {
        loop {
            match self.next_frame().await? {
                Some(Frame::Headers(block)) => {
                    let f = decode_fields(&block)?;
                    if (100..200).contains(&f.status()) {
                        continue;
                    }
                    return Ok(f);
                }
                Some(Frame::Data(_)) => {
                    return Err(PeerError::Protocol(
                        "DATA before the response HEADERS".into(),
                    ))
                }
                Some(_) => {}
                None => return Err(PeerError::Protocol("FIN before the response".into())),
            }
        }
    }

    /// Reads the next capsule of the content (DATA payloads), or how the stream ended.
    pub async fn next_capsule(&mut self) -> ContentEvent {
        loop {
            match self.content.next() {
                Ok(Some(c)) => return c,
                Ok(None) => {}
                Err(e) => return ContentEvent::Error(e),
            }
            match self.next_frame().await {
                Ok(Some(Frame::Data(d))) => self.content.push(&d),
                Ok(Some(_)) => {}
                Ok(None) => return self.content.at_fin(),
                Err(PeerError::Reset(code)) => return ContentEvent::Reset(code),
                Err(e) => return ContentEvent::Error(e),
            }
        }
    }
}

/// A raw HTTP/3 server that misbehaves on purpose (to test our client).
pub struct RawH3Server {
    endpoint: quinn::Endpoint,
    /// Its address.
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, to pin it.
    pub cert_hash: [u8; 32],
}

impl RawH3Server {
    /// Binds on 127.0.0.1:0; `datagrams` controls the max_datagram_frame_size parameter.
    pub fn bind(datagrams: bool) -> Result<Self, PeerError> {
        let tls = ServerTls::self_signed(&["localhost", "127.0.0.1"])
            .map_err(|e| PeerError::Io(format!("certificate: {e}")))?;
        let rustls = tls
            .build(&[ALPN], false)
            .map_err(|e| PeerError::Io(format!("TLS config: {e}")))?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(rustls))
            .map_err(quinn_err)?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(Arc::new(transport_config(datagrams)));
        let endpoint = quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(quinn_err)?;
        let addr = endpoint.local_addr().map_err(quinn_err)?;
        Ok(RawH3Server {
            endpoint,
            addr,
            cert_hash: tls.cert_hash(),
        })
    }

    /// Accepts the next connection and sends `settings` (raw control stream bytes after the
    /// stream type are `SETTINGS(settings)`).
    pub async fn accept(&self, settings: &[(u64, u64)]) -> Result<ServerConn, PeerError> {
        let incoming = self
            .endpoint
            .accept()
            .await
            .ok_or_else(|| PeerError::Io("endpoint closed".into()))?;
        let conn = incoming.await.map_err(quinn_err)?;
        let mut control = conn.open_uni().await.map_err(quinn_err)?;
        let mut bytes = vec![0x00];
        bytes.extend_from_slice(&settings_frame(settings));
        control.write_all(&bytes).await.map_err(write_err)?;
        let (settings_tx, settings_rx) = watch::channel(None);
        let (goaway_tx, _goaway) = watch::channel(None);
        let (uni_tx, _uni) = mpsc::channel(1);
        let task = tokio::spawn(read_uni_streams(
            conn.clone(),
            settings_tx,
            goaway_tx,
            uni_tx,
        ));
        Ok(ServerConn {
            conn,
            control,
            client_settings: settings_rx,
            _tasks: Tasks(vec![task]),
        })
    }
}

/// One connection accepted by [`RawH3Server`].
pub struct ServerConn {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// Our control stream (kept open; write GOAWAY here).
    pub control: quinn::SendStream,
    client_settings: watch::Receiver<Option<Result<Settings, String>>>,
    _tasks: Tasks,
}

impl ServerConn {
    /// The client's SETTINGS, once received.
    pub fn client_settings(&self) -> Option<Settings> {
        self.client_settings.borrow().clone().and_then(Result::ok)
    }

    /// Waits for the next request stream and its HEADERS.
    pub async fn next_request(&self) -> Result<(H3Stream, Fields), PeerError> {
        let (send, recv) = self.conn.accept_bi().await.map_err(quinn_err)?;
        let mut s = H3Stream::new(send, recv);
        loop {
            match s.next_frame().await? {
                Some(Frame::Headers(block)) => {
                    let f = decode_fields(&block)?;
                    return Ok((s, f));
                }
                Some(_) => {}
                None => return Err(PeerError::Protocol("request stream without HEADERS".into())),
            }
        }
    }

    /// Sends GOAWAY with `id` on the control stream.
    pub async fn goaway(&mut self, id: u64) -> Result<(), PeerError> {
        let mut out = BytesMut::new();
        frame::encode_goaway(id, &mut out);
        self.control.write_all(&out).await.map_err(write_err)
    }

    /// Waits for the connection to close; how it ended.
    pub async fn closed(&self) -> Closed {
        Closed::from_quinn(&self.conn.closed().await)
    }
}
