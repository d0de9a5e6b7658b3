//! Named limits with the reason for each, shared by both transports.

use std::time::Duration;

/// Largest value of a single known capsule we buffer (WT_STREAM chunks are far smaller; this
/// bounds memory against a peer declaring a huge capsule).
pub const MAX_CAPSULE_LEN: usize = crate::capsule::DEFAULT_MAX_CAPSULE_LEN;

/// Streams that arrive for a session not yet known (reordering: the stream beat its CONNECT)
/// are held up to this many per connection; beyond it they are refused with
/// WT_BUFFERED_STREAM_REJECTED. Streams of a session on its way (a client's CONNECT awaiting
/// its response, a request awaiting the server application) are held without this cap: they
/// stay open until handed on, so QUIC's stream limits bound them.
pub const MAX_BUFFERED_STREAMS: usize = 32;

/// Datagrams for a session not yet known are held up to this many per connection; beyond it
/// they are dropped.
pub const MAX_BUFFERED_DATAGRAMS: usize = 64;

/// Incoming streams accepted by the transport but not yet taken by the application, per
/// session. Past this, new streams wait (QUIC and WT stream credit is not re-granted), so a
/// slow application pushes back on the peer instead of growing memory.
pub const MAX_PENDING_ACCEPT: usize = 256;

/// Received datagrams not yet read by the application, per session; the oldest are dropped
/// past this (datagrams are unreliable anyway over HTTP/3).
pub const MAX_PENDING_DATAGRAMS: usize = 1024;

/// Largest HTTP header section we accept (sum of name + value + 32 per field).
pub const MAX_FIELD_SECTION_SIZE: usize = 16 * 1024;

/// How long a client waits for the server's SETTINGS and response by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
