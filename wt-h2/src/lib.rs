//! # wt-h2
//!
//! WebTransport over HTTP/2 (draft-ietf-webtrans-http2-15), client and server, on the `h2`
//! crate.
//!
//! * [`Client`] implements [`wt_core::Connector`]: one TCP+TLS+HTTP/2 connection per
//!   session, extended CONNECT with `:protocol webtransport` once the server's SETTINGS
//!   carry ENABLE_CONNECT_PROTOCOL and SETTINGS_WT_ENABLED.
//! * [`Server`] implements [`wt_core::Acceptor`], yielding [`Request`]s.
//! * [`Session`], [`SendStream`], [`RecvStream`] implement the wt-core traits. Stream IDs are
//!   the capsule-level IDs (client bidi 0, 4, …; server bidi 1, 5, …; client uni 2, 6, …;
//!   server uni 3, 7, …).
//!
//! Everything of a session travels as capsules in the DATA frames of its CONNECT stream, so
//! **datagrams are reliable** DATAGRAM capsules (never lost in transit, at most 65535 bytes;
//! `info().unreliable_datagrams` is false).
//!
//! **Which SETTINGS count for a session** (draft-15, FC-11): a session snapshots the peer's
//! WebTransport SETTINGS once, when it is established, and only capsules change its limits
//! afterwards. The client uses the server's settings it had acknowledged when its CONNECT
//! HEADERS went out; the server uses the client's settings it had acknowledged when its 2xx
//! HEADERS went out. "Acknowledged" is read off the wire: the IO adapter under h2 follows the
//! frames h2 writes and snapshots at that HEADERS frame the values of every SETTINGS frame
//! whose ACK preceded it. Later SETTINGS frames apply to later sessions only.
//!
//! Inside: a sans-IO session engine (capsule decoding, stream state machines, WebTransport
//! flow control both ways) driven by thin tokio glue, and an IO adapter under h2 that adds and
//! reads the WebTransport SETTINGS h2 does not know about.
#![forbid(unsafe_code)]

mod client;
mod config;
pub(crate) mod engine;
mod error;
mod headers;
mod server;
mod session;
pub(crate) mod settings_io;

pub use client::Client;
pub use config::{ClientConfig, H2Config, ServerConfig};
pub use engine::{ErrorCodes, FlowConfig, MAX_DATAGRAM_SIZE};
pub use error::Error;
pub use server::{Request, Server};
pub use session::{RecvStream, SendStream, Session};
