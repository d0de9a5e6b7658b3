//! Raw test peers: an HTTP/3 client/server on quinn and an HTTP/2 client/server on h2 and
//! tokio-rustls, plus the capsule reader both share.

pub mod h2;
pub mod h3;

use bytes::{Buf, Bytes, BytesMut};
use wt_core::varint;

/// Largest capsule value the raw peers buffer.
pub const MAX_CAPSULE: u64 = 1 << 20;

/// Errors of the raw peers (all end up in a FAIL message).
#[derive(Debug, Clone)]
pub enum PeerError {
    /// The peer reset the stream with this code.
    Reset(u64),
    /// The peer sent STOP_SENDING with this code.
    Stopped(u64),
    /// The connection closed (rendered).
    Closed(String),
    /// Socket, TLS or setup failure.
    Io(String),
    /// The peer sent something the raw peer cannot parse.
    Protocol(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Reset(c) => write!(f, "stream reset by peer with {}", h3::code_name(*c)),
            PeerError::Stopped(c) => {
                write!(f, "STOP_SENDING from peer with {}", h3::code_name(*c))
            }
            PeerError::Closed(s) => write!(f, "connection closed: {s}"),
            PeerError::Io(s) => f.write_str(s),
            PeerError::Protocol(s) => write!(f, "unexpected bytes from peer: {s}"),
        }
    }
}

/// What the next read of a CONNECT stream's content produced.
#[derive(Debug, Clone)]
pub enum ContentEvent {
    /// A whole capsule.
    Capsule {
        /// Capsule type.
        ty: u64,
        /// Capsule value.
        value: Bytes,
        /// The capsule exactly as on the wire (type, length, value).
        wire: Bytes,
    },
    /// Clean end of the stream at a capsule boundary.
    Fin,
    /// The peer reset the stream (HTTP/3 code, or HTTP/2 RST_STREAM code).
    Reset(u64),
    /// Anything else (connection loss, truncated capsule, ...).
    Error(PeerError),
}

impl std::fmt::Display for ContentEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentEvent::Capsule { ty, wire, .. } => {
                write!(f, "capsule {ty:#x} ({})", hex(wire))
            }
            ContentEvent::Fin => f.write_str("clean end of stream"),
            ContentEvent::Reset(c) => write!(f, "stream reset with code {c:#x}"),
            ContentEvent::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Hex dump `aa bb cc` (at most 64 bytes, then `…`).
pub fn hex(bytes: &[u8]) -> String {
    let mut s: Vec<String> = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s.push(format!("… ({} bytes)", bytes.len()));
    }
    s.join(" ")
}

/// Incremental capsule parser over content bytes.
#[derive(Debug, Default)]
pub struct ContentReader {
    buf: BytesMut,
}

impl ContentReader {
    /// Appends content bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole capsule, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<ContentEvent>, PeerError> {
        let mut view = &self.buf[..];
        let Ok(ty) = varint::decode(&mut view) else {
            return Ok(None);
        };
        let Ok(len) = varint::decode(&mut view) else {
            return Ok(None);
        };
        if len > MAX_CAPSULE {
            return Err(PeerError::Protocol(format!(
                "capsule {ty:#x} declares {len} bytes"
            )));
        }
        let header = self.buf.len() - view.len();
        if (view.len() as u64) < len {
            return Ok(None);
        }
        let wire = self.buf.split_to(header + len as usize).freeze();
        let mut value = wire.clone();
        value.advance(header);
        Ok(Some(ContentEvent::Capsule { ty, value, wire }))
    }

    /// The event for a clean end of stream: `Fin` at a boundary, an error inside a capsule.
    pub fn at_fin(&self) -> ContentEvent {
        if self.buf.is_empty() {
            ContentEvent::Fin
        } else {
            ContentEvent::Error(PeerError::Protocol(format!(
                "stream ended inside a capsule ({} bytes pending: {})",
                self.buf.len(),
                hex(&self.buf)
            )))
        }
    }
}
