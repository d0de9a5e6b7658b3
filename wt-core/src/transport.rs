//! The `Transport` trait family: what every WebTransport binding (HTTP/3, HTTP/2) provides, and
//! what clients and servers are written against.
//!
//! * [`Connector`] establishes client sessions; [`Acceptor`] yields [`IncomingRequest`]s that a
//!   server accepts or rejects after looking at the request.
//! * [`Session`] opens and accepts streams, sends and receives datagrams, closes and drains.
//!   Sessions are cheap handles (`Clone`); the connection is driven by a background task.
//! * [`SendStream`] and [`RecvStream`] are the two halves of a WebTransport stream.
//!
//! Futures returned by these traits are `Send`. Unless a method says otherwise, dropping a
//! future before it completes loses nothing: no data is consumed from a receive stream and no
//! data is queued on a send stream by a cancelled call (cancel safety).
//!
//! Dropping a [`SendStream`] without calling [`finish`](SendStream::finish) or
//! [`reset`](SendStream::reset) finishes it; dropping a [`RecvStream`] before its end stops it
//! with code 0.

use std::future::Future;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ConnectError, RequestError, SessionError, StreamError};

/// A WebTransport stream ID.
///
/// Over HTTP/3 this is the QUIC stream ID; over HTTP/2 the ID inside the session's WT_STREAM
/// capsules. Both follow QUIC numbering: bit 0 is the initiator (0 client, 1 server), bit 1 the
/// direction (0 bidirectional, 1 unidirectional).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl StreamId {
    /// True for a bidirectional stream.
    pub const fn is_bidi(self) -> bool {
        self.0 & 2 == 0
    }

    /// True if the client opened the stream.
    pub const fn is_client_initiated(self) -> bool {
        self.0 & 1 == 0
    }

    /// The stream's sequence number among streams of its kind (`id >> 2`).
    pub const fn index(self) -> u64 {
        self.0 >> 2
    }

    /// The kind of stream.
    pub const fn kind(self) -> StreamKind {
        if self.is_bidi() {
            StreamKind::Bidi
        } else {
            StreamKind::Uni
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Bidirectional or unidirectional.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Both sides can send.
    Bidi,
    /// Only the opener sends.
    Uni,
}

/// Which HTTP version carries the session.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP/3 over QUIC: datagrams are unreliable, streams are QUIC streams.
    Http3,
    /// HTTP/2 over TLS/TCP: everything, datagrams included, travels reliably in capsules.
    Http2,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Http3 => "h3",
            TransportKind::Http2 => "h2",
        })
    }
}

/// The protocol dialect a session speaks, detected or negotiated per session.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// HTTP/3 draft-15/16: `:protocol webtransport-h3`, SETTINGS_WT_ENABLED.
    H3Latest,
    /// HTTP/3 draft-13/14: SETTINGS_WT_MAX_SESSIONS 0x14e9cd29, `:protocol webtransport`.
    H3Draft13,
    /// HTTP/3 draft-07…12: 0xc671706a, `:protocol webtransport`.
    H3Draft07,
    /// HTTP/3 draft-02 (what Chrome and Firefox speak by default): 0x2b603742 and
    /// `sec-webtransport-http3-draft02`.
    H3Draft02,
    /// HTTP/2 draft-15.
    H2Latest,
    /// HTTP/2 with the legacy FIN mapping and two-field resets (quiche, Firefox,
    /// @fails-components).
    H2Legacy,
}

impl Dialect {
    /// The transport of the dialect.
    pub const fn transport(self) -> TransportKind {
        match self {
            Dialect::H2Latest | Dialect::H2Legacy => TransportKind::Http2,
            _ => TransportKind::Http3,
        }
    }

    /// A short name (`h3-latest`, `h3-draft02`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::H3Latest => "h3-latest",
            Dialect::H3Draft13 => "h3-draft13",
            Dialect::H3Draft07 => "h3-draft07",
            Dialect::H3Draft02 => "h3-draft02",
            Dialect::H2Latest => "h2-latest",
            Dialect::H2Legacy => "h2-legacy",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which dialects a client advertises and speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum CompatMode {
    /// Advertise both the latest and the legacy signals, then speak the newest dialect the
    /// server's SETTINGS support.
    #[default]
    Auto,
    /// Only the latest drafts (HTTP/3 draft-16, HTTP/2 draft-15).
    Latest,
    /// Exactly what browsers send today (HTTP/3: draft-02 signals as Chrome sends them;
    /// HTTP/2: the legacy FIN mapping, no WT_ENABLED required).
    LegacyBrowserCompat,
}

impl std::str::FromStr for CompatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(CompatMode::Auto),
            "latest" => Ok(CompatMode::Latest),
            "legacy" | "legacy_browser_compat" | "legacy-browser-compat" => {
                Ok(CompatMode::LegacyBrowserCompat)
            }
            other => Err(format!(
                "unknown compat mode {other:?} (expected auto, latest or legacy_browser_compat)"
            )),
        }
    }
}

/// Static facts about a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// HTTP/3 or HTTP/2.
    pub transport: TransportKind,
    /// The dialect in use.
    pub dialect: Dialect,
    /// The session ID (stream ID of the CONNECT request).
    pub session_id: u64,
    /// The subprotocol the server selected (`wt-protocol`), if any.
    pub protocol: Option<String>,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// Whether datagrams may be lost (HTTP/3) or are delivered reliably (HTTP/2).
    pub unreliable_datagrams: bool,
}

/// Flow-control limits of one direction of a session, where the transport keeps them at the
/// session level (HTTP/2 always; HTTP/3 only when WT flow control is negotiated).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowLimits {
    /// Cumulative stream-data bytes allowed (WT_MAX_DATA).
    pub max_data: u64,
    /// Cumulative bidirectional streams allowed.
    pub max_streams_bidi: u64,
    /// Cumulative unidirectional streams allowed.
    pub max_streams_uni: u64,
}

/// Counters of a session, for `info()`-style reporting.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Bidirectional streams opened by this side.
    pub bidi_opened_local: u64,
    /// Unidirectional streams opened by this side.
    pub uni_opened_local: u64,
    /// Bidirectional streams opened by the peer.
    pub bidi_opened_remote: u64,
    /// Unidirectional streams opened by the peer.
    pub uni_opened_remote: u64,
    /// Stream payload bytes sent.
    pub bytes_sent: u64,
    /// Stream payload bytes received.
    pub bytes_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// What we allow the peer (None when the transport has no session flow control).
    pub local_limits: Option<FlowLimits>,
    /// What the peer allows us.
    pub peer_limits: Option<FlowLimits>,
}

/// The send half of a WebTransport stream.
pub trait SendStream: Send + Unpin + 'static {
    /// The stream's ID.
    fn id(&self) -> StreamId;

    /// Writes a prefix of `buf`, waiting for flow-control credit, and returns how many bytes
    /// were accepted (at least one unless `buf` is empty). Cancel safe.
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, StreamError>> + Send;

    /// Writes all of `data`, avoiding copies where the transport allows. Not cancel safe: when
    /// cancelled, a prefix of `data` may have been sent.
    fn write_chunk(&mut self, data: Bytes) -> impl Future<Output = Result<(), StreamError>> + Send;

    /// Writes a prefix of `data` (at least one byte unless it is empty) and advances `data`
    /// past it, avoiding a copy where the transport allows. Cancel safe: if the future is
    /// dropped before it resolves, nothing was written and `data` is unchanged, so a caller
    /// can keep what is left and finish the write later.
    ///
    /// The default goes through [`write`](Self::write) (one copy).
    fn write_some(
        &mut self,
        data: &mut Bytes,
    ) -> impl Future<Output = Result<(), StreamError>> + Send {
        async move {
            let n = self.write(data).await?;
            bytes::Buf::advance(data, n);
            Ok(())
        }
    }

    /// Writes all of `buf`. Not cancel safe (a prefix may have been sent).
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), StreamError>> + Send {
        async move {
            let mut rest = buf;
            while !rest.is_empty() {
                let n = self.write(rest).await?;
                rest = &rest[n..];
            }
            Ok(())
        }
    }

    /// Ends the stream cleanly (FIN) after the data already written.
    fn finish(&mut self) -> Result<(), StreamError>;

    /// Abruptly ends the stream with an application error code; unsent data is discarded.
    fn reset(&mut self, code: u32) -> Result<(), StreamError>;

    /// Resolves with `Ok(Some(code))` when the peer asks us to stop sending (STOP_SENDING /
    /// WT_STOP_SENDING; a code outside the WebTransport range is reported as 0, as browsers
    /// do), with `Ok(None)` once the stream was finished or reset locally and can no longer be
    /// stopped, and with an error if the session ends first. Cancel safe.
    fn stopped(&mut self) -> impl Future<Output = Result<Option<u32>, StreamError>> + Send;

    /// A future independent of this handle that resolves with `Some(code)` when the peer
    /// asks us to stop sending (codes outside the WebTransport range as 0, like
    /// [`stopped`](Self::stopped)), and with `None` once that no longer matters: the stream was
    /// finished or reset (or its handle dropped), or the session ended.
    ///
    /// Unlike `stopped` it borrows nothing, so one task can watch for the peer's request while
    /// another writes through the handle. It never drives the stream (a FIN held back by flow
    /// control still goes out through the handle or its drop).
    fn stop_notice(&self) -> impl Future<Output = Option<u32>> + Send + 'static;
}

/// The receive half of a WebTransport stream.
pub trait RecvStream: Send + Unpin + 'static {
    /// The stream's ID.
    fn id(&self) -> StreamId;

    /// Reads the next chunk of at most `max` bytes. `Ok(None)` means the peer finished the
    /// stream and everything was read. Cancel safe.
    fn read_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, StreamError>> + Send;

    /// Reads into `buf`; `Ok(None)` at the end of the stream. Cancel safe.
    fn read(
        &mut self,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<Option<usize>, StreamError>> + Send {
        async move {
            match self.read_chunk(buf.len()).await? {
                Some(chunk) => {
                    buf[..chunk.len()].copy_from_slice(&chunk);
                    Ok(Some(chunk.len()))
                }
                None => Ok(None),
            }
        }
    }

    /// Reads until the end of the stream, failing with [`ReadToEndError::TooLong`] past
    /// `limit` bytes. Not cancel safe.
    fn read_to_end(
        &mut self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u8>, ReadToEndError>> + Send {
        async move {
            let mut out = Vec::new();
            while let Some(chunk) = self.read_chunk(64 * 1024).await? {
                if out.len() + chunk.len() > limit {
                    return Err(ReadToEndError::TooLong(limit));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        }
    }

    /// Asks the peer to stop sending, with an application error code; data not yet read is
    /// discarded.
    fn stop(&mut self, code: u32) -> Result<(), StreamError>;
}

/// Error of [`RecvStream::read_to_end`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReadToEndError {
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// More than the limit arrived.
    #[error("stream longer than the {0}-byte limit")]
    TooLong(usize),
}

/// An established WebTransport session. Handles are cheap to clone and usable from any task.
pub trait Session: Clone + Send + Sync + 'static {
    /// The send half of streams of this transport.
    type SendStream: SendStream;
    /// The receive half of streams of this transport.
    type RecvStream: RecvStream;

    /// Opens a bidirectional stream, waiting for stream credit if the peer's limit is reached.
    fn open_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), SessionError>> + Send;

    /// Opens a unidirectional stream, waiting for stream credit if needed.
    fn open_uni(&self) -> impl Future<Output = Result<Self::SendStream, SessionError>> + Send;

    /// Waits for the next bidirectional stream opened by the peer. Cancel safe.
    fn accept_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), SessionError>> + Send;

    /// Waits for the next unidirectional stream opened by the peer. Cancel safe.
    fn accept_uni(&self) -> impl Future<Output = Result<Self::RecvStream, SessionError>> + Send;

    /// Sends a datagram. Over HTTP/3 it may be lost; over HTTP/2 it is a reliable DATAGRAM
    /// capsule. Fails with [`SessionError::DatagramTooLarge`] when `data` exceeds
    /// [`max_datagram_size`](Session::max_datagram_size); nothing is sent then.
    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError>;

    /// Bytes this session writes in front of every datagram payload: the quarter stream ID
    /// over HTTP/3 (1 to 8 bytes), 0 where the transport frames datagrams on its own. A frame
    /// given to [`send_datagram_with_headroom`](Session::send_datagram_with_headroom) with at
    /// least this much room in front is sent without copying its payload.
    fn datagram_headroom(&self) -> usize {
        0
    }

    /// Sends `frame[headroom..]` as a datagram, like [`send_datagram`](Session::send_datagram).
    /// The first `headroom` bytes are scratch space: with at least
    /// [`datagram_headroom`](Session::datagram_headroom) of them the transport writes its own
    /// header there and sends the frame without copying the payload; with less, the payload
    /// is copied as `send_datagram` does. The application can thus write each datagram once,
    /// straight into the buffer that goes to the wire.
    ///
    /// Fails with [`SessionError::DatagramHeadroom`] when `headroom` exceeds `frame.len()`,
    /// otherwise as `send_datagram` does (sizes count the payload only). The default
    /// implementation sends the payload with `send_datagram`.
    ///
    /// ```
    /// # use bytes::{BufMut, BytesMut};
    /// # use wt_core::{Session, SessionError};
    /// fn send_position<S: Session>(session: &S, seq: u64, x: f32, y: f32) -> Result<(), SessionError> {
    ///     let headroom = session.datagram_headroom();
    ///     let mut frame = BytesMut::with_capacity(headroom + 16);
    ///     frame.put_bytes(0, headroom);
    ///     frame.put_u64(seq);
    ///     frame.put_f32(x);
    ///     frame.put_f32(y);
    ///     session.send_datagram_with_headroom(frame, headroom)
    /// }
    /// ```
    fn send_datagram_with_headroom(
        &self,
        frame: BytesMut,
        headroom: usize,
    ) -> Result<(), SessionError> {
        let payload = payload_after(frame, headroom)?;
        self.send_datagram(payload)
    }

    /// Waits for the next datagram. Cancel safe.
    fn recv_datagram(&self) -> impl Future<Output = Result<Bytes, SessionError>> + Send;

    /// The largest datagram payload that can be sent now, or `None` if the peer does not
    /// accept datagrams.
    fn max_datagram_size(&self) -> Option<usize>;

    /// Closes the session with an application code and a reason of at most 1024 bytes
    /// (longer reasons fail with [`SessionError::ReasonTooLong`] and nothing is sent). Every
    /// stream of the session is reset; the peer sees the code and reason.
    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError>;

    /// Asks the peer to wrap up (WT_DRAIN_SESSION). Advisory: the session keeps working.
    fn drain(&self) -> Result<(), SessionError>;

    /// Resolves when the session has ended, with why (for a peer's close: its code and
    /// reason). Resolves immediately if it already has.
    fn closed(&self) -> impl Future<Output = SessionError> + Send;

    /// Resolves when the peer asked to drain the session (WT_DRAIN_SESSION or GOAWAY) or the
    /// session ended.
    fn draining(&self) -> impl Future<Output = ()> + Send;

    /// Static facts: transport, dialect, session ID, subprotocol, peer address.
    fn info(&self) -> SessionInfo;

    /// Counters and flow-control limits.
    fn stats(&self) -> SessionStats;
}

/// A request to establish a session, as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct ConnectRequest {
    /// Host to connect to (name or IP literal, no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `:authority` (defaults to `host[:port]` when empty).
    pub authority: String,
    /// `:path`, including the query.
    pub path: String,
    /// `origin` header, if any.
    pub origin: Option<String>,
    /// Subprotocols offered in `wt-available-protocols`, in preference order.
    pub protocols: Vec<String>,
    /// Extra request headers.
    pub headers: http::HeaderMap,
}

/// The `:authority` and `:path` a [`ConnectRequest`] goes out with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget {
    /// `:authority`: the request's own, or `host[:port]` (IPv6 literals in brackets, the
    /// port left out when it is 443, as browsers do).
    pub authority: String,
    /// `:path`: the request's own, or `/`.
    pub path: String,
}

fn check_chars(field: &'static str, s: &str) -> Result<(), RequestError> {
    match s.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        Some(ch) => Err(RequestError::ForbiddenCharacter { field, ch }),
        None => Ok(()),
    }
}

impl ConnectRequest {
    /// The host without the brackets an IPv6 literal may have been given with (for DNS,
    /// the socket address and the TLS server name).
    ///
    /// ```
    /// let req = wt_core::ConnectRequest { host: "[::1]".into(), ..Default::default() };
    /// assert_eq!(req.bare_host(), "::1");
    /// ```
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Checks the request before any I/O and derives its `:authority` and `:path`. Fails
    /// on an empty host, on CR, LF or NUL in the host, authority, path or origin (they
    /// could split a header), and on a subprotocol name that is not printable ASCII (it
    /// could not be written as a structured-field string).
    ///
    /// ```
    /// use wt_core::ConnectRequest;
    /// let req = ConnectRequest {
    ///     host: "::1".into(),
    ///     port: 4433,
    ///     ..ConnectRequest::default()
    /// };
    /// let t = req.target().unwrap();
    /// assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:4433", "/"));
    /// ```
    pub fn target(&self) -> Result<RequestTarget, RequestError> {
        if self.host.is_empty() {
            return Err(RequestError::MissingHost);
        }
        check_chars("host", &self.host)?;
        check_chars("authority", &self.authority)?;
        check_chars("path", &self.path)?;
        if let Some(o) = &self.origin {
            check_chars("origin", o)?;
        }
        if self
            .protocols
            .iter()
            .any(|p| p.chars().any(|c| !(' '..='~').contains(&c)))
        {
            return Err(RequestError::InvalidHeader("wt-available-protocols".into()));
        }
        let authority = if self.authority.is_empty() {
            let host = self.bare_host();
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            if self.port == 443 {
                host
            } else {
                format!("{host}:{}", self.port)
            }
        } else {
            self.authority.clone()
        };
        let path = if self.path.is_empty() {
            "/".to_owned()
        } else {
            self.path.clone()
        };
        Ok(RequestTarget { authority, path })
    }
}

/// Establishes client sessions. Configuration (TLS, dialect, timeouts) lives in the
/// implementing type.
pub trait Connector: Send + Sync + 'static {
    /// The session type produced.
    type Session: Session;

    /// Connects and performs the WebTransport handshake.
    fn connect(
        &self,
        request: &ConnectRequest,
    ) -> impl Future<Output = Result<Self::Session, ConnectError>> + Send;
}

/// What a server sees of a WebTransport request before deciding on it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// `:authority`.
    pub authority: String,
    /// `:path` with query.
    pub path: String,
    /// `:protocol` as sent (`webtransport-h3`, `webtransport`).
    pub protocol: String,
    /// The `origin` header, if present.
    pub origin: Option<String>,
    /// Subprotocols the client offered, in preference order.
    pub protocols: Vec<String>,
    /// All request headers (pseudo-headers excluded).
    pub headers: http::HeaderMap,
    /// The dialect the request was detected as.
    pub dialect: Dialect,
    /// The client's address.
    pub peer_addr: SocketAddr,
}

/// How a server answers an accepted request.
#[derive(Clone, Debug, Default)]
pub struct AcceptOptions {
    /// Subprotocol to select (`wt-protocol`); must be one of those offered.
    pub protocol: Option<String>,
    /// Extra response headers.
    pub headers: http::HeaderMap,
}

/// A WebTransport request waiting for the server's decision. Dropping it rejects it.
pub trait IncomingRequest: Send + 'static {
    /// The session type produced by accepting.
    type Session: Session;

    /// The request.
    fn info(&self) -> &RequestInfo;

    /// Accepts with a 200 response.
    fn accept(
        self,
        options: AcceptOptions,
    ) -> impl Future<Output = Result<Self::Session, SessionError>> + Send;

    /// Rejects with `status` (must be a non-2xx status; 2xx is turned into 500).
    fn reject(self, status: http::StatusCode) -> impl Future<Output = ()> + Send;
}

/// A listening server endpoint yielding WebTransport requests.
pub trait Acceptor: Send + Sync + 'static {
    /// The request type produced.
    type Request: IncomingRequest;

    /// Waits for the next WebTransport request; `None` once the acceptor is shut down.
    /// Connection-level failures are logged, not returned. Cancel safe.
    fn accept(&self) -> impl Future<Output = Option<Self::Request>> + Send;

    /// The bound address.
    fn local_addr(&self) -> SocketAddr;

    /// Stops accepting: pending and future `accept` calls return `None`; established
    /// sessions are told to go away (GOAWAY) and continue until they end.
    fn shutdown(&self);
}

/// `frame[headroom..]` without copying, or [`SessionError::DatagramHeadroom`] when `headroom`
/// exceeds the frame (for implementations of
/// [`Session::send_datagram_with_headroom`]).
pub fn payload_after(frame: BytesMut, headroom: usize) -> Result<Bytes, SessionError> {
    if headroom > frame.len() {
        return Err(SessionError::DatagramHeadroom {
            headroom,
            len: frame.len(),
        });
    }
    let mut payload = frame.freeze();
    payload.advance(headroom);
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_bits() {
        assert!(StreamId(0).is_bidi() && StreamId(0).is_client_initiated());
        assert!(StreamId(1).is_bidi() && !StreamId(1).is_client_initiated());
        assert!(!StreamId(2).is_bidi() && StreamId(2).is_client_initiated());
        assert!(!StreamId(3).is_bidi() && !StreamId(3).is_client_initiated());
        assert_eq!(StreamId(8).index(), 2);
        assert_eq!(StreamId(7).kind(), StreamKind::Uni);
    }

    #[test]
    fn request_target_defaults_and_checks() {
        let req = |host: &str, port: u16| ConnectRequest {
            host: host.into(),
            port,
            ..ConnectRequest::default()
        };
        let t = req("example.com", 443).target().unwrap();
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.path, "/");
        assert_eq!(
            req("example.com", 8443).target().unwrap().authority,
            "example.com:8443"
        );
        assert_eq!(req("::1", 443).target().unwrap().authority, "[::1]");
        assert_eq!(req("[::1]", 4433).target().unwrap().authority, "[::1]:4433");
        let own = ConnectRequest {
            authority: "other:1".into(),
            path: "/wt?x=1".into(),
            ..req("h", 1)
        };
        assert_eq!(
            own.target().unwrap(),
            RequestTarget {
                authority: "other:1".into(),
                path: "/wt?x=1".into()
            }
        );
        assert!(matches!(
            req("", 443).target(),
            Err(RequestError::MissingHost)
        ));
        let bad = [
            (
                "host",
                ConnectRequest {
                    host: "a\r\nb".into(),
                    ..req("h", 1)
                },
            ),
            (
                "authority",
                ConnectRequest {
                    authority: "a\nb".into(),
                    ..req("h", 1)
                },
            ),
            (
                "path",
                ConnectRequest {
                    path: "/a\0".into(),
                    ..req("h", 1)
                },
            ),
            (
                "origin",
                ConnectRequest {
                    origin: Some("o\r".into()),
                    ..req("h", 1)
                },
            ),
        ];
        for (field, r) in bad {
            match r.target() {
                Err(RequestError::ForbiddenCharacter { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let proto = ConnectRequest {
            protocols: vec!["ok".into(), "caf\u{e9}".into()],
            ..req("h", 1)
        };
        assert!(matches!(
            proto.target(),
            Err(RequestError::InvalidHeader(_))
        ));
    }

    #[test]
    fn compat_mode_parses() {
        assert_eq!("auto".parse::<CompatMode>(), Ok(CompatMode::Auto));
        assert_eq!(
            "legacy_browser_compat".parse::<CompatMode>(),
            Ok(CompatMode::LegacyBrowserCompat)
        );
        assert!("draft99".parse::<CompatMode>().is_err());
    }
}
