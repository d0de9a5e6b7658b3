//! Application error codes the server itself uses (session close codes and stream reset /
//! STOP_SENDING codes). Handlers choose their own codes; these are the runner's and the echo
//! handler's.

/// Session close code of a session ended by server shutdown after the grace period (reason
/// [`SHUTDOWN_REASON`]), and of [`Action::Stop`](crate::Action::Stop) (empty reason).
pub const SHUTDOWN: u32 = 0x0;
/// Reason sent with [`SHUTDOWN`] when the server closes a session that outlived the grace
/// period.
pub const SHUTDOWN_REASON: &str = "server shutting down";

/// Session close code when a handler callback panicked (reason [`HANDLER_PANICKED_REASON`]).
pub const HANDLER_PANICKED: u32 = 0x1;
/// Reason sent with [`HANDLER_PANICKED`].
pub const HANDLER_PANICKED_REASON: &str = "handler panicked";

/// Session close code when the peer sent more stream data than
/// [`Limits::max_data_per_session`](crate::Limits::max_data_per_session) (reason
/// [`DATA_LIMIT_REASON`]).
pub const DATA_LIMIT_EXCEEDED: u32 = 0x2;
/// Reason sent with [`DATA_LIMIT_EXCEEDED`].
pub const DATA_LIMIT_REASON: &str = "data limit exceeded";

/// Reset and STOP_SENDING code of a peer stream refused because the session already has
/// [`Limits::max_streams_per_session`](crate::Limits::max_streams_per_session) open peer
/// streams.
pub const STREAM_LIMIT_EXCEEDED: u32 = 0x3;

/// STOP_SENDING code the echo handler sends on a unidirectional stream longer than it is
/// willing to collect ([`EchoConfig::max_uni_echo`](crate::echo::EchoConfig::max_uni_echo)).
pub const ECHO_TOO_LARGE: u32 = 0x4;

/// Reset and STOP_SENDING code the echo handler sends on a stream whose `WT-CMD` command line
/// is malformed, unknown, too long or unterminated.
pub const BAD_COMMAND: u32 = 0x5;
