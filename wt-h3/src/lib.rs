//! # wt-h3: WebTransport over HTTP/3 on quinn
//!
//! A client ([`Client`], a [`wt_core::Connector`]) and a server ([`Server`], a
//! [`wt_core::Acceptor`]) speaking WebTransport over HTTP/3, with their own small HTTP/3 layer:
//! control streams and SETTINGS, static-table QPACK (we advertise a dynamic table capacity of
//! 0 and no blocked streams), extended CONNECT (RFC 9220), and a demultiplexer that owns every
//! incoming QUIC stream and datagram.
//!
//! Dialects: the latest drafts (H3 draft-15/16, `webtransport-h3`) and the legacy native
//! dialects browsers speak (draft-02, draft-07, draft-13: `webtransport`). The client picks
//! per [`wt_core::CompatMode`]; the server advertises all of them and detects each request's
//! dialect.
//!
//! Layout: [`proto`] holds the sans-IO wire codecs, [`conn`] the socket-free negotiation and
//! buffering logic; the rest is quinn glue. Stream data goes directly between the application
//! and quinn.
//!
//! Known gaps:
//! * quinn has no RESET_STREAM_AT: stream resets are plain RESET_STREAM (as Chrome sends).
//! * Session flow control (WT_MAX_DATA / WT_MAX_STREAMS, draft-15+) is not implemented: no
//!   non-zero initial limits are advertised, so it is never negotiated, and each connection
//!   carries at most one session at a time (surplus CONNECTs get H3_REQUEST_REJECTED).
//! * Streams the application is not reading or writing when a session ends are reset with
//!   WT_SESSION_GONE when next used or dropped (the client also closes its QUIC connection).
#![forbid(unsafe_code)]

mod client;
mod config;
pub mod conn;
mod driver;
mod error;
pub mod proto;
mod server;
mod session;
mod stream;

pub use client::Client;
pub use config::{ClientConfig, FlowControlConfig, QuicConfig, ServerConfig};
pub use error::Error;
pub use server::{Request, Server};
pub use session::Session;
pub use stream::{RecvStream, SendStream};
