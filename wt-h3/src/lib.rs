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
//! Session flow control (draft-13+; [`FlowControlConfig`]): when both sides advertise
//! non-zero SETTINGS_WT_INITIAL_MAX_* (draft-15/16; draft-13/14 also by max-sessions > 1),
//! each session counts stream payload bytes (stream headers excluded) and streams both ways,
//! opens and writes wait for credit, credit is re-granted with WT_MAX_DATA / WT_MAX_STREAMS
//! as the application reads and drops peer streams, WT_DATA_BLOCKED / WT_STREAMS_BLOCKED_*
//! are sent when stalled, and a peer exceeding its credit (or sending non-increasing or
//! oversized limits) gets the CONNECT stream reset with WT_FLOW_CONTROL_ERROR. The server
//! then carries up to [`ServerConfig::max_sessions_with_flow_control`] sessions per
//! connection; without flow control, one (surplus CONNECTs get H3_REQUEST_REJECTED). The
//! arithmetic lives in [`conn::flow`].
//!
//! UDP sockets are created with 4 MiB receive and send buffers (best effort) so bursts of
//! QUIC Initials are not dropped by the kernel.
//!
//! Streams we open send their header (0x41/0x54 and the session ID) together with their first
//! payload, or before the FIN: the peer sees a new stream once it is written to or finished,
//! as with plain QUIC streams.
//!
//! Known gaps:
//! * quinn has no RESET_STREAM_AT: stream resets are plain RESET_STREAM (as Chrome sends).
//!   A reset can therefore lose the stream header: such a stream is attributed to the
//!   connection's session only when exactly one is open, otherwise it is refused and its
//!   stream credit is not counted (the peer's and our counts then differ by one stream).
//! * Flow-control approximations (quinn exposes neither the bytes that arrived on a stream
//!   before the application reads them, nor the final size of a reset stream): peer data is
//!   counted when the application reads it, so a violation is detected when the excess is
//!   read, and bytes of a peer stream that is reset, stopped or dropped unread are never
//!   counted (we re-grant less than the peer used). A peer stream's credit is re-granted when
//!   the application has dropped both halves.
//! * Streams the application is not reading or writing when a session ends are reset with
//!   WT_SESSION_GONE when next used or dropped (the client also closes its QUIC connection).
//!   After a local `close`, those resets leave only once the peer has acknowledged the close
//!   capsule (or stopped the CONNECT stream, or the close timeout passed), so that the peer
//!   learns the code and reason before its streams fail.
#![forbid(unsafe_code)]

mod client;
mod close_hold;
mod config;
pub mod conn;
mod driver;
mod end;
mod error;
mod intake;
pub mod proto;
mod queue;
mod readahead;
mod server;
mod session;
mod stats;
mod stream;
mod udp;

pub use client::Client;
pub use config::{ClientConfig, FlowControlConfig, QuicConfig, ServerConfig};
pub use error::Error;
pub use server::{Request, Server};
pub use session::Session;
pub use stream::{RecvStream, SendStream};

/// The quinn crate this one is built on, for the types its API names
/// ([`Session::quic_stats`]'s `ConnectionStats`).
pub use quinn;
