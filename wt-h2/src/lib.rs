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
//!   the capsule-level IDs as on the wire (draft numbering: client bidi 0, 4, …; server bidi
//!   1, 5, …; client uni 2, 6, …; server uni 3, 7, …; legacy sessions may use the swapped
//!   numbering, see [Legacy peers](#legacy-peers)).
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
//! # Legacy peers
//!
//! The legacy dialect ([`Dialect::H2Legacy`](wt_core::Dialect::H2Legacy) on the server,
//! [`CompatMode::LegacyBrowserCompat`](wt_core::CompatMode::LegacyBrowserCompat) on the
//! client) speaks the older HTTP/2 drafts: WT_STREAM type 0x190B4D3C carries FIN (0x190B4D3B
//! does not), WT_RESET_STREAM has two fields (no reliable size), and SETTINGS_WT_ENABLED is
//! neither required nor checked. Draft-15 sessions are unaffected by everything below.
//!
//! `@fails-components/webtransport` 1.6.8 (npm, its pure-JavaScript HTTP/2 transport) also
//! deviates from the draft in two more ways, which legacy sessions accommodate:
//!
//! * **Swapped stream-id parity.** It numbers streams with the initiator bit inverted: its
//!   client opens bidi 1, 5, … and uni 3, 7, …; its server bidi 0, 4, … and uni 2, 6, …
//!   (draft-15, like QUIC, gives client-initiated ids bit 0 clear). So its client's first
//!   `WT_STREAM` (e.g. `0x190B4D3B`, id 1) names, in draft numbering, a server stream that
//!   was never opened, and its server aborts the session on a client stream 0 ("Got
//!   bidirectional stream without asking for it"). The peer is the non-conformant side.
//!   [`ServerConfig::stream_id_parity`] and [`ClientConfig::stream_id_parity`] select the
//!   numbering ([`StreamIdParity`]). The default, [`StreamIdParity::AutoDetect`], decides per
//!   session: the peer's first capsule naming a stream, arriving before we opened any,
//!   selects the swapped numbering if its id carries the bit of *our* draft numbering (a
//!   client's stream 1 or 3 at our server); opening a stream of our own first, or a first id
//!   of the peer's draft parity, fixes the draft numbering. A server thus serves both kinds of
//!   clients; a client opens first and cannot detect it, so **a client talking to a
//!   fails-components server must set [`StreamIdParity::Swapped`]**. The stream IDs the
//!   application sees are always the wire IDs. With a fixed or settled numbering, capsules
//!   naming a never-opened stream of ours, or data on our own uni stream, stay violations.
//! * **WT_MAX_STREAM_DATA on its own uni streams.** It announces the receive window of every
//!   stream it creates, also of its send-only unidirectional streams (`0x190B4D3E`, its uni
//!   id, its window), before their first `WT_STREAM`. By analogy with QUIC's MAX_STREAM_DATA
//!   on a receive-only stream this is a WT_STREAM_STATE_ERROR in draft-15 sessions (the peer
//!   is the non-conformant side); legacy sessions let the capsule open the stream, as any
//!   capsule naming it would, and otherwise ignore it.
//!
//! Not a deviation, but visible in interop: when its server closes a session right after
//! echoing on a stream, the echo may be lost, since a session's streams end with it.
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
pub use engine::{ErrorCodes, FlowConfig, StreamIdParity, MAX_DATAGRAM_SIZE};
pub use error::Error;
pub use server::{Request, Server};
pub use session::{RecvStream, SendStream, Session};
