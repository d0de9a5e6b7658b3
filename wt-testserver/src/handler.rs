//! The [`Handler`] trait: one value per WebTransport session, plain data in, [`Action`]s out.

use bytes::Bytes;
use wt_core::{AcceptOptions, RequestInfo, SessionError, StreamId, StreamKind};

use crate::action::{Action, ActionError};
use crate::wake::Woken;

/// A WebTransport application, written once and served over HTTP/3 and HTTP/2 alike.
///
/// This is the Rust rendering of erlang-webtransport's `webtransport_handler` behaviour. The
/// runner creates one handler value per session with [`init`](Handler::init); *the value is the
/// session's state*. Where an Erlang callback returns `{ok, NewState, Actions}`, a Rust callback
/// takes `&mut self`, updates the state in place, and returns the actions (`Vec<Action>`; an
/// empty vector is `{ok, NewState}`). `{stop, Reason, State}` becomes [`Action::Stop`] or
/// [`Action::CloseSession`].
///
/// Callbacks are synchronous and run on the session's own task, one at a time, so a handler
/// needs no locking. They must not block: a slow callback slows only its own session, and the
/// bounded queues between the streams and the session push back on the peer through flow
/// control instead of buffering.
///
/// Everything the server shares between sessions (options, a route table, counters) lives in
/// the associated [`Config`](Handler::Config), handed by reference to the two associated
/// functions that run before a session exists: [`check_origin`](Handler::check_origin), then
/// [`init`](Handler::init).
///
/// # Failures
///
/// * An action that fails is reported to [`handle_action_failed`](Handler::handle_action_failed);
///   it is not fatal.
/// * A panic in any callback ends only that session: it is closed with
///   [`HANDLER_PANICKED`](crate::codes::HANDLER_PANICKED) (`0x1`, reason `"handler panicked"`)
///   and `terminate` is **not** called (the state may be inconsistent). A panic in `init` or
///   `check_origin` rejects the request with status 500. The listener and the other sessions
///   are unaffected.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use wt_core::{RequestInfo, StreamId, StreamKind};
/// use wt_testserver::{Action, Handler, Rejection};
///
/// /// Upper-cases every bidirectional stream.
/// struct Shout;
///
/// impl Handler for Shout {
///     type Config = ();
///     fn init(_: &(), request: &RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
///         if request.path != "/shout" {
///             return Err(Rejection::new(http::StatusCode::NOT_FOUND));
///         }
///         Ok((Shout, Vec::new()))
///     }
///     fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
///         match kind {
///             StreamKind::Bidi => vec![Action::Send(id, data.to_ascii_uppercase().into())],
///             StreamKind::Uni => Vec::new(),
///         }
///     }
///     fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
///         match kind {
///             StreamKind::Bidi => vec![Action::SendFin(id, data.to_ascii_uppercase().into())],
///             StreamKind::Uni => Vec::new(),
///         }
///     }
/// }
/// ```
pub trait Handler: Sized + Send + 'static {
    /// Configuration shared by every session of a server (handler options).
    type Config: Send + Sync + 'static;

    /// Decides whether a request's `origin` header (`None` when absent) is acceptable. Runs
    /// before [`init`](Handler::init); returning `false` rejects the request with 403
    /// Forbidden.
    ///
    /// The default accepts every origin, including none: a test server has to be reachable
    /// from any page and from non-browser clients. Servers exposed to browsers should override
    /// it (browsers always send `origin`; this check is what stops other sites' scripts).
    fn check_origin(config: &Self::Config, request: &RequestInfo, origin: Option<&str>) -> bool {
        let _ = (config, request, origin);
        true
    }

    /// Creates the session's handler from the request (`:path`, `:authority`, `origin`,
    /// headers, offered subprotocols, dialect, peer address), or rejects the request with an
    /// HTTP status.
    ///
    /// Runs before the server answers: on `Ok` the request is accepted with
    /// [`accept_options`](Handler::accept_options) and the returned actions are applied as soon
    /// as the session is established.
    fn init(config: &Self::Config, request: &RequestInfo)
        -> Result<(Self, Vec<Action>), Rejection>;

    /// How to answer an accepted request (selected subprotocol, extra response headers).
    /// Called right after [`init`](Handler::init); the default selects no subprotocol.
    fn accept_options(&self, request: &RequestInfo) -> AcceptOptions {
        let _ = request;
        AcceptOptions::default()
    }

    /// Data arrived on a stream (`kind` tells bidirectional from unidirectional; streams the
    /// peer opened and streams this side opened are both delivered). Chunks arrive in order;
    /// their boundaries carry no meaning.
    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        let _ = (id, kind, data);
        Vec::new()
    }

    /// The peer finished its sending half of the stream (FIN). `data` is the last data that
    /// came with the FIN; the runner reads chunk by chunk, so it is usually empty and earlier
    /// data was given to [`handle_stream`](Handler::handle_stream). The default passes
    /// non-empty `data` to `handle_stream`.
    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        if data.is_empty() {
            Vec::new()
        } else {
            self.handle_stream(id, kind, data)
        }
    }

    /// A datagram arrived.
    fn handle_datagram(&mut self, data: Bytes) -> Vec<Action> {
        let _ = data;
        Vec::new()
    }

    /// A stream requested with [`Action::OpenStream`] is open; `id` is its ID. Streams of one
    /// kind are reported in the order they were requested. (erlang-webtransport has no such
    /// callback; here the handler learns the ID so it can address the stream.)
    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        let _ = (kind, id);
        Vec::new()
    }

    /// A stream half ended because of the peer, or the whole stream ended cleanly:
    ///
    /// * [`CloseReason::Reset`] — the peer reset its sending half; nothing more arrives;
    /// * [`CloseReason::StopSending`] — the peer asked us to stop sending; further
    ///   [`Action::Send`]s on the stream fail;
    /// * [`CloseReason::Normal`] — every half of the stream ended cleanly (FIN received and/or
    ///   FIN sent) and nobody reset or stopped it; the stream is forgotten.
    ///
    /// A stream that ended abnormally is forgotten without a `Normal` call; streams this side
    /// reset or stopped are not reported (the handler knows).
    fn handle_stream_closed(&mut self, id: StreamId, reason: CloseReason) -> Vec<Action> {
        let _ = (id, reason);
        Vec::new()
    }

    /// The peer asked to drain the session (WT_DRAIN_SESSION, or GOAWAY). The session keeps
    /// working; the default does nothing.
    fn handle_peer_draining(&mut self) -> Vec<Action> {
        Vec::new()
    }

    /// A wait requested with [`Action::WakeOn`] is over: its wakeup fired or its deadline
    /// passed (`woken` says which); `tag` is the action's. Called once per `WakeOn` (never if
    /// the session ends first). The default does nothing.
    ///
    /// A handler that wraps another handler must forward this call, or the inner handler's
    /// waits never end.
    fn handle_wake(&mut self, tag: u64, woken: Woken) -> Vec<Action> {
        let _ = (tag, woken);
        Vec::new()
    }

    /// An action could not be carried out. The session goes on; the returned actions are
    /// applied next. The default logs at debug level and does nothing.
    fn handle_action_failed(&mut self, action: Action, error: ActionError) -> Vec<Action> {
        tracing::debug!(?action, %error, "action failed");
        Vec::new()
    }

    /// The session ended (for any reason but a handler panic). The last call; the handler is
    /// dropped afterwards.
    fn terminate(self, reason: TerminateReason) {
        let _ = reason;
    }
}

/// A refusal of a request, with the HTTP status to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status; a 2xx status is turned into 500 by the transports.
    pub status: http::StatusCode,
}

impl Rejection {
    /// A rejection with this status.
    pub const fn new(status: http::StatusCode) -> Self {
        Rejection { status }
    }
}

impl From<http::StatusCode> for Rejection {
    fn from(status: http::StatusCode) -> Self {
        Rejection { status }
    }
}

/// How a stream (half) ended, as given to [`Handler::handle_stream_closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Every half of the stream ended cleanly.
    Normal,
    /// The peer reset its sending half with this code (0 when the code was outside the
    /// WebTransport range, as browsers report it).
    Reset(u32),
    /// The peer asked us to stop sending, with this code (0 when outside the range).
    StopSending(u32),
}

/// Why a session ended, as given to [`Handler::terminate`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TerminateReason {
    /// The handler returned [`Action::Stop`]; the session was closed with code 0.
    Normal,
    /// The handler closed the session with [`Action::CloseSession`].
    Closed {
        /// The code sent.
        code: u32,
        /// The reason sent.
        reason: String,
    },
    /// The peer closed the session (a clean end of the CONNECT stream is code 0, reason "").
    PeerClosed {
        /// The peer's code.
        code: u32,
        /// The peer's reason.
        reason: String,
    },
    /// The server shut down and the session did not end within the grace period; it was
    /// closed with [`SHUTDOWN`](crate::codes::SHUTDOWN).
    Shutdown,
    /// The peer sent more stream data than the session's limit; the session was closed with
    /// [`DATA_LIMIT_EXCEEDED`](crate::codes::DATA_LIMIT_EXCEEDED).
    DataLimitExceeded,
    /// The session failed (connection lost, protocol violation, ...).
    Error(SessionError),
}
