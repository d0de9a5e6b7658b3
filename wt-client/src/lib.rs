//! # wt-client
//!
//! A WebTransport client with the API of Erlang hackney's `hackney_wt`, over HTTP/3
//! (`wt-h3`) or HTTP/2 (`wt-h2`), chosen at connect time — or automatically, HTTP/3 first
//! with an HTTP/2 fallback ([`Transport::Auto`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wt_client::Error> {
//! use bytes::Bytes;
//! use wt_client::{Frame, Msg, Options};
//! let conn = wt_client::connect("https://example.com/wt", Options::default()).await?;
//! conn.send(Frame::binary("Hello!")).await?;
//! assert_eq!(conn.recv().await?, Msg::Binary(Bytes::from("Hello!")));
//! conn.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Model
//!
//! * [`connect`] establishes the session and opens one persistent bidirectional **default
//!   stream**. One driver task per connection owns the session and every stream (hackney's
//!   process per connection); the [`Connection`] you get is a cheap, cloneable,
//!   `Send + Sync` handle that talks to it over a bounded channel. The driver yields to the
//!   runtime every few operations so no busy stream starves the others, and a write waiting
//!   for flow-control credit never blocks reads. Dropping the last handle closes the session.
//! * The **default channel** ([`Connection::recv`]) carries, in arrival order, the default
//!   stream's bytes ([`Msg::Binary`]), datagrams ([`Msg::Datagram`]) and everything from
//!   streams the **server** opened ([`Msg::Stream`], [`Msg::StreamFin`],
//!   [`Msg::StreamClosed`]). [`Connection::send`] writes `Binary`/`Text`/raw bytes to the
//!   default stream *as they are*: WebTransport streams are byte streams, so no framing is
//!   added and the chunks the peer reads need not line up with your sends.
//! * Streams **you** open ([`Connection::open_stream`]) are read with
//!   [`Connection::stream_recv`], one buffer per stream; data of server-opened streams is
//!   *not* available there (it is on the default channel, as in hackney). You can write to
//!   a server-opened bidirectional stream with [`Connection::stream_send`].
//! * A stream's ID is forgotten once both directions are over and everything was read;
//!   later calls with it fail with [`Error::UnknownStream`].
//! * **Delivery modes** ([`Active`]): passive (default; buffered per channel, read with
//!   `recv` / `stream_recv`), active (every item becomes an [`Event`] sent to the
//!   [`EventReceiver`], tagged with its stream, ending with [`Event::Closed`] or
//!   [`Event::Error`]) and once (one event, then passive). [`Connection::set_active`]
//!   switches at any time without losing or reordering anything. The receiver, from
//!   [`Connection::take_events`], can be moved to any task (hackney's
//!   `controlling_process`); dropping it hands it back.
//! * **One reader per channel**: a second concurrent `recv` (or `stream_recv` of the same
//!   stream) fails with [`Error::RecvBusy`]; receives are cancel safe, so a timed-out or
//!   dropped receive loses nothing.
//! * **Receive limit**: unread bytes across all channels (events not yet taken from the
//!   [`EventReceiver`] included, plus [`ITEM_OVERHEAD`] per item) are bounded by
//!   [`Options::max_recv_buffer`] (64 MiB). The driver keeps reading every stream into its
//!   buffers (it does not stop reading to push back on the peer); passing the limit closes
//!   the session with [`OVERFLOW_CLOSE_CODE`] and every waiting reader and the event owner
//!   get [`Error::RecvBufferOverflow`]. What was already buffered stays readable.
//! * **Close**: after the session ends, buffered data is still returned; then
//!   [`Error::Closed`] with the peer's code and reason (or ours). [`Connection::info`]
//!   reports them too, with transport, dialect, stream counts, flow-control limits and byte
//!   counters.
//!
//! ## Coming from hackney_wt
//!
//! | hackney_wt (Erlang) | wt-client (Rust) |
//! |---|---|
//! | `{ok, C} = hackney_wt:connect(URL, Opts)` | `let c = wt_client::connect(url, Options::default()).await?` |
//! | `hackney_wt:send(C, {binary, Data})` / `{text, T}` | `c.send(Frame::binary(data)).await?` / `Frame::text(t)` |
//! | `hackney_wt:send(C, {datagram, D})`, `send_datagram(C, D)` | `c.send(Frame::datagram(d))`, `c.send_datagram(d)` |
//! | `hackney_wt:send(C, ping)` → `{error, unsupported_frame}` | `Frame::Ping(_)` → `Err(Error::UnsupportedFrame)` |
//! | `hackney_wt:recv(C)`, `recv(C, Timeout)` | `c.recv().await`, `c.recv_timeout(d).await` |
//! | `{binary, B}`, `{datagram, D}`, `{stream, Id, B}`, `{stream_fin, Id, B}`, `{stream_closed, Id, R}` | `Msg::Binary(b)`, `Msg::Datagram(d)`, `Msg::Stream(id, b)`, `Msg::StreamFin(id, b)`, `Msg::StreamClosed(id, r)` |
//! | `hackney_wt:open_stream(C, bidi \| uni)` | `c.open_stream(StreamKind::Bidi \| Uni).await?` |
//! | `hackney_wt:stream_send(C, Id, Data, Fin)` | `c.stream_send(id, data, fin).await?` |
//! | `hackney_wt:stream_recv(C, Id)`, `stream_recv(C, Id, T)` | `c.stream_recv(id).await`, `c.stream_recv_timeout(id, d).await` |
//! | `hackney_wt:close_stream / reset_stream / stop_sending` | `c.close_stream(id)`, `c.reset_stream(id, code)`, `c.stop_sending(id, code)` |
//! | `hackney_wt:setopts(C, [{active, true \| once \| false}])` | `c.set_active(Active::On \| Once \| Off).await?` |
//! | `{hackney_wt, C, Event}` messages in the owner's mailbox | `let mut ev = c.take_events().unwrap(); ev.recv().await` |
//! | `hackney_wt:controlling_process(C, Pid)` | move the `EventReceiver` to another task |
//! | `hackney_wt:close(C)`, `close(C, Code, Reason)` | `c.close().await?`, `c.close_with(code, reason).await?` |
//! | `{error, closed}` (code and reason dropped) | `Err(Error::Closed { code, reason })`, `Event::Closed { code, reason }` |
//! | `hackney_wt:info(C)` | `c.info().await?` ([`ConnectionInfo`]) |
//! | `{error, timeout}`, `active_mode`, `recv_busy`, `unknown_stream`, `recv_buffer_overflow`, `invalid_reason` | [`Error::Timeout`], [`Error::ActiveMode`], [`Error::RecvBusy`], [`Error::UnknownStream`], [`Error::RecvBufferOverflow`], [`Error::InvalidReason`] |
//! | options `connect_timeout`, `recv_timeout`, `active`, `headers`, `origin`, `protocols`, `tls_opts`, `compat_mode`, `max_recv_buffer` | [`Options`] fields of the same meaning |
//! | — | `transport: Transport::H3 \| H2 \| Auto`, and the `wt` command-line client |
//!
//! ## The `wt` command
//!
//! `wt URL` sends stdin on the default stream and prints what arrives; `--datagram` sends
//! each line as a datagram; `wt --check URL` runs a PASS/FAIL self-test against an echo
//! server. Flags: `--transport h3|h2|auto`, `--compat auto|latest|legacy`,
//! `-H 'name: value'`, `--cacert FILE`, `--cert-hash HEX`, `--insecure`.
#![forbid(unsafe_code)]

mod connection;
mod direct;
mod driver;
mod error;
mod frame;
mod options;
mod request;
mod send;
mod spawn;
mod store;
mod transports;

#[cfg(test)]
mod tests;

pub use bytes::Bytes;
pub use connection::{Connection, ConnectionInfo, EventReceiver, MAX_CLOSE_REASON};
pub use driver::{CloseInfo, OVERFLOW_CLOSE_CODE};
pub use error::Error;
pub use frame::{CloseReason, Event, Frame, Msg, StreamData, ITEM_OVERHEAD};
pub use options::{Active, Options, Transport, DEFAULT_AUTO_HEAD_START, DEFAULT_MAX_RECV_BUFFER};
pub use request::build_request;
pub use wt_core::{CompatMode, StreamId, StreamKind, TransportKind};
pub use wt_h2::StreamIdParity;

/// Connects to a WebTransport server and returns the connection handle.
///
/// The URL must be `https://` (`wss://` is accepted as an alias); the port defaults to 443
/// and the query is kept in the path. Invalid URLs, schemes, and CR/LF/NUL in the host, path
/// or a header fail with [`Error::Connect`]`(`[`ConnectError::InvalidRequest`](wt_core::ConnectError::InvalidRequest)`)`
/// before any network I/O. The whole handshake is bounded by
/// [`Options::connect_timeout`]. A default bidirectional stream is opened at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), wt_client::Error> {
/// use wt_client::{Options, Transport};
/// let conn = wt_client::connect(
///     "https://example.com:4433/chat?room=1",
///     Options::default().transport(Transport::Auto),
/// )
/// .await?;
/// # Ok(()) }
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = wt_client::connect("http://example.com/", Default::default()).await.unwrap_err();
/// assert!(matches!(err, wt_client::Error::Connect(_)));
/// # }
/// ```
pub async fn connect(url: &str, options: Options) -> Result<Connection, Error> {
    let req = build_request(url, &options)?;
    transports::connect(req, &options).await
}
