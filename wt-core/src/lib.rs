//! # wt-core
//!
//! The transport-independent core of `wt`, a WebTransport library for Rust:
//!
//! * [`transport`]: the [`Session`], [`SendStream`], [`RecvStream`], [`Connector`],
//!   [`Acceptor`] and [`IncomingRequest`] traits that the HTTP/3 (`wt-h3`) and HTTP/2
//!   (`wt-h2`) bindings implement and that clients and servers are written against;
//! * [`varint`], [`capsule`], [`codes`]: sans-IO codecs for QUIC varints, the HTTP Capsule
//!   Protocol with every WebTransport capsule, and error-code spaces (including the
//!   WebTransport ↔ HTTP/3 application error mapping);
//! * [`error`]: one error enum per layer (connect, session, stream);
//! * [`tls`]: rustls configuration shared by both transports (roots, extra CAs, client
//!   certificates, certificate-hash pinning, self-signed server certificates).
#![forbid(unsafe_code)]

pub mod capsule;
pub mod codes;
pub mod error;
pub mod limits;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod tls;
pub mod transport;
pub mod varint;

pub use error::{
    ConnectError, ConnectionError, MissingSetting, ProtocolError, RequestError, SessionError,
    StreamError, WireCode,
};
pub use transport::{
    AcceptOptions, Acceptor, CompatMode, ConnectRequest, Connector, Dialect, FlowLimits,
    IncomingRequest, ReadToEndError, RecvStream, RequestInfo, RequestTarget, SendStream, Session,
    SessionInfo, SessionStats, StreamId, StreamKind, TransportKind,
};
