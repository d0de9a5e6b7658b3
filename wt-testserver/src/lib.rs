//! # wt-testserver
//!
//! A WebTransport server built around erlang-webtransport's `webtransport_handler` model: an
//! application is a [`Handler`] — one value per session, plain data in, [`Action`]s out — and
//! the same handler is served over HTTP/3 and HTTP/2 through the `wt_core` transport traits.
//!
//! * [`Handler`]: `check_origin` → `init` (accept or reject with a status) → `handle_stream`,
//!   `handle_stream_fin`, `handle_datagram`, `handle_stream_opened`, `handle_stream_closed`,
//!   `handle_peer_draining`, `handle_action_failed` → `terminate`.
//! * [`Action`]: `Send`, `SendFin`, `SendDatagram`, `OpenStream`, `CloseStream`, `ResetStream`,
//!   `StopSending`, `Drain`, `CloseSession`, `Stop`.
//! * [`serve`] / [`Listener`]: runs a handler on any [`wt_core::Acceptor`] with [`Limits`]
//!   (sessions, streams per session, data per session) and graceful
//!   [`shutdown`](Listener::shutdown).
//! * [`EchoHandler`]: the echo server used by the conformance suite and interop runs, with the
//!   conventions below.
//! * [`TestServer`]: a handler on HTTP/3 (`wt-h3`), HTTP/2 (`wt-h2`) or both on one port
//!   number, with a self-signed (pinnable) or loaded certificate.
//! * The `wt-testserver` binary serves the echo handler: `wt-testserver [--transport
//!   h3|h2|both] [--port N] [--host ADDR] [--cert F --key F] [--handler echo]`; it prints
//!   `LISTEN h3 udp <addr>` / `LISTEN h2 tcp <addr>`, `URL https://localhost:<port>/echo`,
//!   `CERT_SHA256 <hex>` and finally `READY <port>` on stdout, and stops gracefully on
//!   Ctrl-C or SIGTERM.
//!
//! One handler, both transports:
//!
//! ```no_run
//! # use wt_testserver::{Action, Handler, Rejection};
//! # struct MyHandler;
//! # impl Handler for MyHandler {
//! #     type Config = ();
//! #     fn init(_: &(), _: &wt_core::RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
//! #         Ok((MyHandler, Vec::new()))
//! #     }
//! # }
//! # async fn demo() -> Result<(), wt_testserver::StartError> {
//! use wt_testserver::{TestServer, TestServerConfig, Transports};
//! let config = TestServerConfig { transports: Transports::Both, ..TestServerConfig::default() };
//! let server = TestServer::<MyHandler>::start_with(config, ())?;
//! println!("{} (sha-256 {})", server.url("/"), server.cert_hash_hex());
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! ## Sessions
//!
//! Each session runs on its own task, which owns the handler; see [`session`] for the task
//! layout and queue sizes. A handler that panics takes down only its session, which is closed
//! with code [`codes::HANDLER_PANICKED`] (`0x1`) and reason `"handler panicked"`. Server-side
//! codes are listed in [`codes`].
//!
//! ## The echo handler
//!
//! Streams and datagrams:
//!
//! * **Bidirectional streams** opened by the client: data is echoed on the same stream as it
//!   arrives; the client's FIN is echoed as a FIN (after all data).
//! * **Unidirectional streams** opened by the client: the data is collected until the FIN
//!   (at most 1 MiB per stream and 8 MiB per session, see [`EchoConfig`]), then sent back on a
//!   new server-opened unidirectional stream, followed by FIN. A longer stream gets
//!   STOP_SENDING with code [`codes::ECHO_TOO_LARGE`] (`0x4`) and nothing is echoed.
//! * **Datagrams** are echoed as datagrams (one for one; a datagram the path cannot carry
//!   back is dropped).
//! * Data the client sends on a **server-opened** bidirectional stream is read and discarded.
//!
//! **Pushed bytes.** Where the server is asked to push `n` bytes on a stream it opens, byte `i`
//! of that stream (counting from 0) is `i % 256`: `00 01 02 … fe ff 00 01 …`, followed by FIN.
//! `n` is at most 64 MiB by default ([`EchoConfig::max_push`]).
//!
//! ### Request paths
//!
//! The query string is ignored. Codes are decimal or `0x`-prefixed hexadecimal `u32`s.
//!
//! | Path | Behaviour |
//! |---|---|
//! | `/echo`, `/` | accept, echo |
//! | `/reject/<status>` | reject with HTTP status `<status>` (100–999; a 2xx becomes 500 in the transports) |
//! | `/close/<code>` or `/close/<code>/<reason>` | accept, then close the session at once with `<code>` and the percent-decoded `<reason>` (may contain `/`; at most 1024 bytes; default empty) |
//! | `/drain` | accept, send WT_DRAIN_SESSION at once, then echo |
//! | `/open-bidi/<n>` | accept, open a bidirectional stream, push `n` pattern bytes + FIN on it |
//! | `/open-uni/<n>` | accept, open a unidirectional stream, push `n` pattern bytes + FIN |
//! | `/reset/<code>` | echo, except the client's first bidirectional stream: its first data is echoed, then the server resets its sending half with `<code>` (data not yet delivered may be lost to the reset; the rest of the client's data is read and discarded) |
//! | `/stop/<code>` | echo, except the client's first stream (either kind): when its first data (or FIN) arrives the server sends STOP_SENDING with `<code>` and, on a bidirectional stream, ends its own sending half with FIN |
//! | `/origin-check` | accept only if the `origin` header is exactly `https://allowed.example`; otherwise 403 |
//!
//! Any other path is rejected with 404; a malformed argument with 400. When
//! [`EchoConfig::allowed_origins`] is set, other origins get 403 on every path; by default
//! every origin is accepted ([`Handler::check_origin`]'s default).
//!
//! ### In-band commands
//!
//! A client bidirectional stream whose **first bytes** are `WT-CMD ` (`57 54 2d 43 4d 44 20`)
//! carries a command line, terminated by `\n` (`0a`; a `\r` before it is ignored), at most 256
//! bytes including prefix and newline. The prefix is recognised only at offset 0 of a stream,
//! so echo data can never be mistaken for a command: any stream whose first bytes differ is
//! plain echo data from its first byte on. (A stream whose first bytes are a strict prefix of
//! `WT-CMD `, such as `WT`, is held back until more bytes or the FIN decide.) The command line
//! is not echoed; whatever follows the `\n` is echoed as usual, and the FIN is echoed as FIN,
//! so a client can send `WT-CMD drain\n` + FIN and wait for the echoed FIN as the
//! acknowledgement.
//!
//! | Command line | Effect |
//! |---|---|
//! | `WT-CMD close <code> <reason>\n` | close the session with `<code>` and `<reason>` (the rest of the line, may contain spaces, may be empty: `WT-CMD close 42\n`) |
//! | `WT-CMD drain\n` | send WT_DRAIN_SESSION |
//! | `WT-CMD reset <code>\n` | reset this stream's server sending half with `<code>` (nothing more is echoed) |
//! | `WT-CMD stop <code>\n` | send STOP_SENDING with `<code>` on this stream |
//! | `WT-CMD open-uni <n>\n` | open a unidirectional stream and push `n` pattern bytes + FIN |
//! | `WT-CMD open-bidi <n>\n` | open a bidirectional stream and push `n` pattern bytes + FIN |
//! | `WT-CMD panic\n` | only with [`EchoConfig::allow_panic_command`]: the handler panics (isolation tests) |
//!
//! An unknown, malformed, over-long or unterminated command line makes the server reset the
//! stream and send STOP_SENDING, both with code [`codes::BAD_COMMAND`] (`0x5`).
//!
//! Example, bytes on a fresh client bidirectional stream:
//! `57 54 2d 43 4d 44 20 63 6c 6f 73 65 20 34 32 20 62 79 65 0a` (`WT-CMD close 42 bye\n`) —
//! the client then sees the session closed with code 42 and reason `"bye"`.
#![forbid(unsafe_code)]

pub mod action;
pub mod codes;
pub mod echo;
pub mod handler;
pub mod listener;
pub mod session;
pub mod testserver;

pub use action::{Action, ActionError};
pub use echo::{EchoConfig, EchoHandler};
pub use handler::{CloseReason, Handler, Rejection, TerminateReason};
pub use listener::{serve, Limits, Listener, ServeOptions, ShutdownStats};
pub use testserver::{
    CertSource, StartError, TestServer, TestServerConfig, Transports, UnknownTransport,
};
