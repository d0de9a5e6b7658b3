//! # wt-testserver
//!
//! A WebTransport server built around erlang-webtransport's `webtransport_handler` model: an
//! application is a [`Handler`] — one value per session, plain data in, [`Action`]s out — and
//! the same handler is served over HTTP/3 and HTTP/2 through the `wt_core` transport traits.
//!
//! * [`Handler`]: `check_origin` → `init` (accept or reject with a status) → `handle_stream`,
//!   `handle_stream_fin`, `handle_datagram`, `handle_stream_opened`, `handle_stream_closed`,
//!   `handle_peer_draining`, `handle_wake`, `handle_action_failed` → `terminate`.
//! * [`Action`]: `Send`, `SendFin`, `SendDatagram`, `OpenStream`, `CloseStream`, `ResetStream`,
//!   `StopSending`, `Drain`, `CloseSession`, `Stop`, and `WakeOn` (wait for a [`wake::Signal`]
//!   without blocking).
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
//! * A client that **resets** its sending half of a bidirectional stream it opened
//!   (RESET_STREAM / WT_RESET_STREAM with code `c`) gets the server's sending half of that
//!   stream reset with the same code `c` (unless the server already ended it: FIN, reset or
//!   STOP_SENDING received), so the client's read ends with "reset, code `c`" — which also
//!   tells it that the server saw `c`. (Before this convention the server's half stayed open
//!   until the session ended.)
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
//! | `/protocol/<name>` | accept only if the client offered the subprotocol `<name>` (percent-decoded, non-empty) in `wt-available-protocols`, select it, then echo; otherwise 400 (see [Subprotocols](#subprotocols)) |
//! | `/observed/<token>` | accept, then answer with the [observations](#observations) of session `<token>` once it has ended |
//! | `/observed/<token>/<stream-id>` | accept, then answer with the observations of session `<token>` once one is about stream `<stream-id>` (or the session has ended) |
//!
//! Any other path is rejected with **405** when the request's dialect is a latest one
//! ([`wt_core::Dialect::H3Latest`], HTTP/3 draft-15/16; [`wt_core::Dialect::H2Latest`],
//! HTTP/2 draft-15) and with **404** for the older ones (`H3Draft13`, `H3Draft07`, `H3Draft02`,
//! `H2Legacy`), see [`echo::not_served_status`]; a malformed argument is rejected with 400.
//! (`/reject/404` still answers 404 on every dialect.) Over HTTP/2 the dialect is the one the
//! server is configured for (`wt_h2::ServerConfig::dialect`; `H2Latest` in a [`TestServer`]),
//! so a [`TestServer`] answers 405 on HTTP/2; over HTTP/3 it is detected per request. When
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
//! | `WT-CMD id\n` | answer the session's observation token in decimal and `\n` on this stream (`7\n`; `0\n` on an `/observed/...` query, which is not observed), then echo as usual |
//! | `WT-CMD protocol\n` | answer the selected subprotocol and `\n` on this stream (`b\n`; just `\n` if none was selected), then echo as usual |
//! | `WT-CMD panic\n` | only with [`EchoConfig::allow_panic_command`]: the handler panics (isolation tests) |
//!
//! An unknown, malformed, over-long or unterminated command line makes the server reset the
//! stream and send STOP_SENDING, both with code [`codes::BAD_COMMAND`] (`0x5`).
//!
//! Example, bytes on a fresh client bidirectional stream:
//! `57 54 2d 43 4d 44 20 63 6c 6f 73 65 20 34 32 20 62 79 65 0a` (`WT-CMD close 42 bye\n`) —
//! the client then sees the session closed with code 42 and reason `"bye"`.
//!
//! ### Subprotocols
//!
//! When the client offers subprotocols (`wt-available-protocols`, in
//! [`RequestInfo::protocols`](wt_core::RequestInfo::protocols)), the echo handler selects one
//! ([`Handler::accept_options`]) and the transport answers it in `wt-protocol` (an sf-string on
//! the latest dialects):
//!
//! * on `/protocol/<name>`: `<name>`, which must be among the offered ones — otherwise (not
//!   offered, or nothing offered) the request is rejected with **400**;
//! * on every other accepted path: the **last** protocol offered. Offered `"a", "b"` → the
//!   response carries `wt-protocol: "b"`, and a client sees `b` as its session's protocol
//!   ([`SessionInfo::protocol`](wt_core::SessionInfo::protocol)).
//!
//! With no offer, no protocol is selected and no `wt-protocol` is sent. To check what the
//! server selected from inside the session, send `WT-CMD protocol\n` (+ FIN) on a new
//! bidirectional stream and read the line back (`b\n`, or `\n` for none).
//!
//! ### Observations
//!
//! So that a client can check what the **server** saw of its session (the reset and
//! STOP_SENDING codes it received, how the session ended), every echo session records
//! observations in a bounded ring shared by all sessions of the server
//! ([`EchoConfig::observations`], an [`ObservationLog`](echo::ObservationLog) keeping the last
//! 1024 entries by default; older entries are pushed out).
//!
//! **Tokens.** Each accepted session except `/observed/...` queries gets a token: a decimal
//! `u64`, 1, 2, 3, … in the order sessions are accepted (never 0). The client learns it from
//! the response header `wt-testserver-token: <token>` ([`echo::TOKEN_HEADER`]) or, from inside
//! the session, by sending `WT-CMD id\n` (+ FIN) on a bidirectional stream and reading the line
//! `<token>\n` back.
//!
//! **Entries.** One line each, UTF-8, fields separated by one space; codes and stream IDs in
//! decimal (stream IDs as the server's transport numbers them: the QUIC stream ID over HTTP/3,
//! the WebTransport stream ID over HTTP/2 — what the client's `id()` returns):
//!
//! | Line | Recorded when |
//! |---|---|
//! | `stream-closed <token> <stream-id> reset <code>` | the client reset its sending half of the stream (code 0 if the code was outside the WebTransport range) |
//! | `stream-closed <token> <stream-id> stop <code>` | the client sent STOP_SENDING for the server's sending half (same code rule) |
//! | `stream-closed <token> <stream-id> normal` | every half of the stream ended cleanly (FINs); streams of either side |
//! | `terminate <token> peer-closed <code> <reason>` | the client closed the session (WT_CLOSE_SESSION; a clean FIN / END_STREAM of the CONNECT stream without a capsule is `peer-closed 0 ` with an empty reason) |
//! | `terminate <token> closed <code> <reason>` | the server closed it (`/close/...`, `WT-CMD close`) |
//! | `terminate <token> error <description>` | it failed (connection lost, protocol error, ...): free text |
//! | `terminate <token> shutdown` / `data-limit` / `normal` | server shutdown; data limit; [`Action::Stop`] |
//! | `terminate <token> aborted` | the handler went away without `terminate` (it panicked) |
//!
//! `<reason>` and `<description>` are the rest of the line and may be empty (the line then ends
//! with the space after the code: `terminate 7 peer-closed 0 `); in them `%` and the ASCII
//! control characters (`00`–`1f`, `7f`, so `\n` and `\r`) are written as `%XX`
//! (upper-case hex), everything else verbatim ([`echo::escape`]; percent-decoding restores
//! the reason). A session's `terminate` line is always its last, and is recorded before the
//! server forgets the session; a stream's STOP_SENDING and reset are recorded when the server
//! processes them, so an event that reaches the server together with the session's close may
//! be processed after the close and never recorded.
//!
//! **Queries.** Open a new session on `/observed/<token>` (any transport, dialect and
//! connection). If `<token>` was never issued the request is rejected with **404** (on every
//! dialect); a malformed token or stream ID with 400. Otherwise the session is accepted and
//! the server waits until session `<token>` has ended (its `terminate` line is recorded) —
//! or, on `/observed/<token>/<stream-id>`, until an entry about that stream is recorded or the
//! session has ended — for at most [`EchoConfig::observe_wait`] (5 s by default, counted from
//! the request), without polling. Then it opens a **unidirectional stream** and writes the
//! session's entries still in the ring, oldest first, each followed by `\n`, then FIN. If some
//! of the session's entries were already pushed out of the ring the reply starts with the line
//! `lost`. If the wait timed out the reply holds what was there (for `/observed/<token>`: no
//! `terminate` line). The query session then behaves like `/echo`; close it when done.
//!
//! So a client that closed its session (or saw it closed) and then asks is always answered
//! with the final entries, even if the server notices the close after the query arrives.
//! Example, HTTP/3, `/echo` session 7: the client sends `WT-CMD id\n` + FIN on its first
//! stream (ID 4) and reads `7\n` and FIN, resets stream 8 with code 7 (and reads the
//! mirrored reset), closes the session with (300, `"bye"`), then opens `/observed/7` and reads
//! from the server's unidirectional stream, up to its FIN:
//!
//! ```text
//! stream-closed 7 4 normal
//! stream-closed 7 8 reset 7
//! terminate 7 peer-closed 300 bye
//! ```
#![forbid(unsafe_code)]

pub mod action;
pub mod codes;
pub mod echo;
pub mod handler;
pub mod listener;
mod reads;
pub mod session;
pub mod testserver;
pub mod wake;

pub use action::{Action, ActionError};
pub use echo::{EchoConfig, EchoHandler};
pub use handler::{CloseReason, Handler, Rejection, TerminateReason};
pub use listener::{serve, Limits, Listener, ServeOptions, ShutdownStats};
pub use testserver::{
    CertSource, StartError, TestServer, TestServerConfig, Transports, UnknownTransport,
};
pub use wake::{Signal, Wakeup, Woken};
