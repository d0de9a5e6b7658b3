//! Error types shared by every transport: one enum per layer (connect, session, stream).
//!
//! All of them are `Clone`, so a driver can hand the same terminal error to every handle
//! waiting on a session, and they say *what happened*: who closed, with which code, which
//! setting was missing, which limit was hit.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codes::{H2Code, H3Code};

/// A protocol-level error code, in the code space of the transport that carries it.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub enum WireCode {
    /// An HTTP/3 or QUIC application error code.
    H3(H3Code),
    /// An HTTP/2 error code.
    H2(H2Code),
    /// A QUIC transport error code (e.g. PROTOCOL_VIOLATION 0x0a).
    Quic(u64),
}

impl fmt::Debug for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireCode::H3(c) => fmt::Debug::fmt(c, f),
            WireCode::H2(c) => fmt::Debug::fmt(c, f),
            WireCode::Quic(c) => write!(f, "QUIC({c:#x})"),
        }
    }
}

impl fmt::Display for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireCode::H3(c) => fmt::Display::fmt(c, f),
            WireCode::H2(c) => fmt::Display::fmt(c, f),
            WireCode::Quic(c) => write!(f, "QUIC transport error {c:#x}"),
        }
    }
}

/// A protocol violation: what was wrong and the code the connection, session or stream was
/// (or will be) closed with.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} ({code})")]
pub struct ProtocolError {
    /// The code sent to (or received from) the peer.
    pub code: WireCode,
    /// A description of the violation.
    pub what: std::borrow::Cow<'static, str>,
}

impl fmt::Debug for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolError({:?}: {})", self.code, self.what)
    }
}

impl ProtocolError {
    /// An HTTP/3 protocol error.
    pub fn h3(code: H3Code, what: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        ProtocolError {
            code: WireCode::H3(code),
            what: what.into(),
        }
    }

    /// An HTTP/2 protocol error.
    pub fn h2(code: H2Code, what: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        ProtocolError {
            code: WireCode::H2(code),
            what: what.into(),
        }
    }
}

/// Who ended a connection and how (below the session layer).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer closed the connection with an application (HTTP) error code.
    #[error("connection closed by peer: {code}{}", fmt_reason(reason))]
    ClosedByPeer {
        /// The code.
        code: WireCode,
        /// The reason phrase, if any.
        reason: String,
    },
    /// We closed the connection (possibly because the peer misbehaved).
    #[error("connection closed locally: {code}{}", fmt_reason(reason))]
    ClosedLocally {
        /// The code.
        code: WireCode,
        /// The reason phrase, if any.
        reason: String,
    },
    /// The peer stopped answering (idle timeout).
    #[error("connection timed out")]
    TimedOut,
    /// The peer reset the connection (stateless reset, TCP reset).
    #[error("connection reset by peer")]
    Reset,
    /// An I/O error on the socket.
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// TLS failed after the handshake.
    #[error("TLS error: {0}")]
    Tls(#[source] rustls::Error),
}

fn fmt_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason:?})")
    }
}

/// Why a session ended, or why a session-level operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer closed the session: WT_CLOSE_SESSION with this code and reason, or a clean
    /// end of the CONNECT stream (code 0, empty reason).
    #[error("session closed by peer with code {code}{}", fmt_reason(reason))]
    ClosedByPeer {
        /// Application error code.
        code: u32,
        /// UTF-8 reason (at most 1024 bytes).
        reason: String,
    },
    /// This side closed the session.
    #[error("session closed locally with code {code}{}", fmt_reason(reason))]
    ClosedLocally {
        /// Application error code.
        code: u32,
        /// Reason.
        reason: String,
    },
    /// The peer aborted the CONNECT stream with a protocol code (no WT_CLOSE_SESSION).
    #[error("session aborted by peer: {0}")]
    ResetByPeer(WireCode),
    /// The peer violated the protocol; the session (or connection) was closed with the code.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolError),
    /// The underlying connection ended.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A datagram larger than the current maximum; nothing was sent.
    #[error("datagram of {size} bytes exceeds the current maximum of {max}")]
    DatagramTooLarge {
        /// Size of the rejected datagram.
        size: usize,
        /// Current maximum datagram payload size.
        max: usize,
    },
    /// The peer does not accept datagrams (it did not negotiate them).
    #[error("the peer does not accept datagrams")]
    DatagramsUnsupported,
    /// [`Session::send_datagram_with_headroom`](crate::Session::send_datagram_with_headroom)
    /// was given more headroom than the frame holds; nothing was sent.
    #[error("datagram headroom of {headroom} bytes exceeds the {len}-byte frame")]
    DatagramHeadroom {
        /// The headroom asked for.
        headroom: usize,
        /// Length of the frame.
        len: usize,
    },
    /// A non-blocking open found no stream credit: the peer allows `limit` streams of this
    /// direction and all are used.
    #[error("stream limit reached: the peer allows {limit} {} streams", if *.bidi { "bidirectional" } else { "unidirectional" })]
    StreamLimitBlocked {
        /// Whether the limit is for bidirectional streams.
        bidi: bool,
        /// The peer's current limit (cumulative count).
        limit: u64,
    },
    /// A close reason longer than 1024 bytes was passed to `close`.
    #[error("close reason of {0} bytes exceeds the 1024-byte limit")]
    ReasonTooLong(usize),
    /// The session is draining/going away and refuses new local streams.
    #[error("the connection is going away (GOAWAY received)")]
    GoingAway,
}

/// Why a stream operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer reset its send side (RESET_STREAM / WT_RESET_STREAM). `None` when the code was
    /// outside the WebTransport application range.
    #[error("stream reset by peer{}", fmt_code(.0))]
    Reset(Option<u32>),
    /// The peer asked us to stop sending (STOP_SENDING / WT_STOP_SENDING).
    #[error("peer stopped the stream{}", fmt_code(.0))]
    Stopped(Option<u32>),
    /// The session ended; carries why.
    #[error("session ended: {0}")]
    SessionGone(SessionError),
    /// The stream was already finished or reset locally.
    #[error("stream already closed locally")]
    ClosedLocally,
    /// A non-blocking write found no flow-control credit.
    #[error("blocked by flow control")]
    FlowControlBlocked,
    /// The peer violated the protocol on this stream.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolError),
}

fn fmt_code(code: &Option<u32>) -> String {
    match code {
        Some(c) => format!(" with code {c}"),
        None => " (code outside the WebTransport range)".to_owned(),
    }
}

impl From<SessionError> for StreamError {
    fn from(e: SessionError) -> Self {
        StreamError::SessionGone(e)
    }
}

/// Which peer setting a connection lacked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MissingSetting {
    /// Name of the setting or transport parameter (e.g. `SETTINGS_H3_DATAGRAM`).
    pub name: &'static str,
    /// Its codepoint (setting ID, or transport parameter ID).
    pub id: u64,
}

impl fmt::Display for MissingSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.name, self.id)
    }
}

/// Why establishing a session failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL or a header was unusable (checked before any network I/O).
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// The whole connect did not finish within the timeout.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// Name resolution failed or gave no address.
    #[error("could not resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Socket-level failure (bind, connect refused, ...).
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The TLS handshake failed (certificate rejected, no common ALPN, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] rustls::Error),
    /// The TLS configuration could not be built (bad CA file, key, ...).
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] crate::tls::TlsConfigError),
    /// The server answered the CONNECT with a non-2xx status.
    #[error("server rejected the session with HTTP status {status}")]
    Rejected {
        /// The response status.
        status: http::StatusCode,
    },
    /// The server's SETTINGS (or transport parameters) lack something WebTransport needs.
    #[error("server does not support WebTransport: missing {0}")]
    MissingSetting(MissingSetting),
    /// The peer violated the protocol during setup.
    #[error("protocol violation during setup: {0}")]
    Protocol(ProtocolError),
    /// The connection ended during setup.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The server sent GOAWAY before our request could be sent.
    #[error("server is going away")]
    GoingAway,
    /// The server's response was malformed (bad status, forbidden headers).
    #[error("malformed response: {0}")]
    BadResponse(&'static str),
    /// The server picked a subprotocol we did not offer (WT_ALPN_ERROR).
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnexpectedProtocol(String),
}

/// A request that cannot be sent, detected before any network I/O.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The URL did not parse.
    #[error("URL does not parse")]
    BadUrl,
    /// The scheme is not `https` (or the `wss` alias).
    #[error("unsupported scheme {0:?}: use https:// (wss:// is accepted as an alias)")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("URL has no host")]
    MissingHost,
    /// A CR, LF or NUL in the host, path or a header.
    #[error("forbidden character {ch:?} in {field}")]
    ForbiddenCharacter {
        /// Which field.
        field: &'static str,
        /// The offending character.
        ch: char,
    },
    /// A header name or value that HTTP does not allow.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let e = SessionError::ClosedByPeer {
            code: 300,
            reason: "bye".into(),
        };
        assert_eq!(
            e.to_string(),
            "session closed by peer with code 300 (\"bye\")"
        );
        let e = SessionError::DatagramTooLarge {
            size: 2000,
            max: 1180,
        };
        assert_eq!(
            e.to_string(),
            "datagram of 2000 bytes exceeds the current maximum of 1180"
        );
        let e = ConnectError::MissingSetting(MissingSetting {
            name: "SETTINGS_H3_DATAGRAM",
            id: 0x33,
        });
        assert_eq!(
            e.to_string(),
            "server does not support WebTransport: missing SETTINGS_H3_DATAGRAM (0x33)"
        );
        assert_eq!(
            StreamError::Reset(Some(7)).to_string(),
            "stream reset by peer with code 7"
        );
        let p = ProtocolError::h3(
            H3Code::H3_ID_ERROR,
            "session id 1 is not a client bidi stream",
        );
        assert_eq!(
            p.to_string(),
            "session id 1 is not a client bidi stream (H3_ID_ERROR (0x108))"
        );
        let e = ConnectError::Rejected {
            status: http::StatusCode::NOT_FOUND,
        };
        assert_eq!(
            e.to_string(),
            "server rejected the session with HTTP status 404 Not Found"
        );
    }
}
