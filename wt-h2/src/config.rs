//! Client and server configuration.

use std::net::SocketAddr;
use std::time::Duration;

use wt_core::capsule::CapsuleOptions;
use wt_core::tls::{ClientTls, ServerTls};
use wt_core::{CompatMode, Dialect};

use crate::engine::{ErrorCodes, FlowConfig, StreamIdParity};
use crate::settings_io::*;

/// HTTP/2 transport tuning. All WebTransport traffic of a session rides one HTTP/2 stream, so
/// the windows default to far more than HTTP/2's 64 KiB. Keep the stream window above the
/// WebTransport session credit ([`FlowConfig::max_data`]) plus capsule overhead: the HTTP/2
/// window is released only as the application consumes data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct H2Config {
    /// SETTINGS_INITIAL_WINDOW_SIZE (per HTTP/2 stream, i.e. per session). Default 32 MiB.
    pub initial_stream_window: u32,
    /// Connection-level receive window. Default 64 MiB.
    pub initial_connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept. Default 64 KiB.
    pub max_frame_size: u32,
    /// Bytes of capsules a session queues for sending before writers wait. Default 1 MiB.
    pub max_send_buffer: usize,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            initial_stream_window: 32 << 20,
            initial_connection_window: 64 << 20,
            max_frame_size: 64 << 10,
            max_send_buffer: 1 << 20,
        }
    }
}

/// Client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TLS options (roots, extra CAs, pinning).
    pub tls: ClientTls,
    /// Dialect: `Latest`/`Auto` speak draft-15 (FIN = odd WT_STREAM type, three-field
    /// WT_RESET_STREAM) and require SETTINGS_WT_ENABLED = 1; `LegacyBrowserCompat` speaks the
    /// legacy mapping and does not require (or check) SETTINGS_WT_ENABLED.
    pub compat: CompatMode,
    /// Require SETTINGS_WT_ENABLED (turn off for older servers that never send it).
    pub require_wt_enabled: bool,
    /// Bound on the whole connect (TCP, TLS, SETTINGS, response).
    pub connect_timeout: Duration,
    /// Credit we grant the server.
    pub flow: FlowConfig,
    /// HTTP/2 tuning.
    pub h2: H2Config,
    /// Overrides the capsule dialect chosen by `compat`.
    pub capsule_options: Option<CapsuleOptions>,
    /// HTTP/2 codes for the WebTransport error conditions.
    pub error_codes: ErrorCodes,
    /// Stream numbering in the legacy dialect (ignored by draft-15 sessions, which always
    /// number as the draft says). Default [`StreamIdParity::AutoDetect`], which for a client
    /// means the draft's numbering unless the server opens a stream first; set
    /// [`StreamIdParity::Swapped`] for `@fails-components/webtransport` servers (crate docs,
    /// "Legacy peers").
    pub stream_id_parity: StreamIdParity,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            tls: ClientTls::default(),
            compat: CompatMode::Auto,
            require_wt_enabled: true,
            connect_timeout: wt_core::limits::DEFAULT_CONNECT_TIMEOUT,
            flow: FlowConfig::default(),
            h2: H2Config::default(),
            capsule_options: None,
            error_codes: ErrorCodes::default(),
            stream_id_parity: StreamIdParity::AutoDetect,
        }
    }
}

impl ClientConfig {
    pub(crate) fn options(&self) -> CapsuleOptions {
        self.capsule_options.unwrap_or(match self.compat {
            CompatMode::LegacyBrowserCompat => CapsuleOptions::LEGACY,
            _ => CapsuleOptions::default(),
        })
    }

    pub(crate) fn dialect(&self) -> Dialect {
        if self.options().fin_mapping == wt_core::capsule::FinMapping::Legacy {
            Dialect::H2Legacy
        } else {
            Dialect::H2Latest
        }
    }

    /// The numbering sessions use: the configured one in the legacy dialect only.
    pub(crate) fn parity(&self) -> StreamIdParity {
        match self.dialect() {
            Dialect::H2Legacy => self.stream_id_parity,
            _ => StreamIdParity::Draft,
        }
    }
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Certificate and key.
    pub tls: ServerTls,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Credit we grant each session's client (sent in SETTINGS and `webtransport-init`).
    pub flow: FlowConfig,
    /// The dialect sessions speak: [`Dialect::H2Latest`] (default) or [`Dialect::H2Legacy`].
    pub dialect: Dialect,
    /// Overrides the capsule options implied by `dialect`.
    pub capsule_options: Option<CapsuleOptions>,
    /// Sessions per connection (SETTINGS_MAX_CONCURRENT_STREAMS). Default 100.
    pub max_sessions_per_connection: u32,
    /// A connection without any session for this long is closed (GOAWAY). Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// Bound on the TLS and HTTP/2 handshakes of a new connection. Default 10 s.
    pub handshake_timeout: Duration,
    /// HTTP/2 tuning.
    pub h2: H2Config,
    /// HTTP/2 codes for the WebTransport error conditions.
    pub error_codes: ErrorCodes,
    /// Value of SETTINGS_WT_ENABLED to send; `None` omits it. Default `Some(1)`; other values
    /// exist to test clients.
    pub wt_enabled: Option<u32>,
    /// Send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1. Default true; false exists to test clients.
    pub enable_connect_protocol: bool,
    /// Requests waiting for [`Acceptor::accept`](wt_core::Acceptor::accept); more are refused
    /// with 503.
    pub accept_queue: usize,
    /// Stream numbering in the legacy dialect (ignored by draft-15 sessions, which always
    /// number as the draft says). Default [`StreamIdParity::AutoDetect`]: each session
    /// follows the numbering of the client's first stream, so `@fails-components/webtransport`
    /// clients (swapped) and draft-numbering clients are both served (crate docs, "Legacy
    /// peers").
    pub stream_id_parity: StreamIdParity,
}

impl ServerConfig {
    /// Defaults serving `tls` on `bind`.
    pub fn new(tls: ServerTls, bind: SocketAddr) -> Self {
        ServerConfig {
            tls,
            bind,
            flow: FlowConfig::default(),
            dialect: Dialect::H2Latest,
            capsule_options: None,
            max_sessions_per_connection: 100,
            idle_timeout: Some(Duration::from_secs(60)),
            handshake_timeout: Duration::from_secs(10),
            h2: H2Config::default(),
            error_codes: ErrorCodes::default(),
            wt_enabled: Some(1),
            enable_connect_protocol: true,
            accept_queue: 64,
            stream_id_parity: StreamIdParity::AutoDetect,
        }
    }

    /// The numbering sessions use: the configured one in the legacy dialect only.
    pub(crate) fn parity(&self) -> StreamIdParity {
        match self.dialect {
            Dialect::H2Legacy => self.stream_id_parity,
            _ => StreamIdParity::Draft,
        }
    }

    pub(crate) fn options(&self) -> CapsuleOptions {
        self.capsule_options.unwrap_or(match self.dialect {
            Dialect::H2Legacy => CapsuleOptions::LEGACY,
            _ => CapsuleOptions::default(),
        })
    }

    pub(crate) fn settings(&self) -> Vec<(u16, u32)> {
        let mut v = Vec::new();
        if let Some(e) = self.wt_enabled {
            v.push((WT_ENABLED, e));
        }
        v.extend(flow_settings(&self.flow));
        v
    }
}

fn clamp(v: u64) -> u32 {
    v.min(u64::from(u32::MAX)) as u32
}

/// The SETTINGS entries announcing `flow`.
pub(crate) fn flow_settings(flow: &FlowConfig) -> Vec<(u16, u32)> {
    vec![
        (WT_INITIAL_MAX_DATA, clamp(flow.max_data)),
        (
            WT_INITIAL_MAX_STREAM_DATA_UNI,
            clamp(flow.max_stream_data_uni),
        ),
        (
            WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
            clamp(flow.max_stream_data_bidi_local),
        ),
        (
            WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
            clamp(flow.max_stream_data_bidi_remote),
        ),
        (WT_INITIAL_MAX_STREAMS_UNI, clamp(flow.max_streams_uni)),
        (WT_INITIAL_MAX_STREAMS_BIDI, clamp(flow.max_streams_bidi)),
    ]
}

/// What we announce in SETTINGS must match what the engine believes the peer knows.
pub(crate) fn announced(flow: &FlowConfig) -> FlowConfig {
    let c = |v: u64| v.min(u64::from(u32::MAX));
    FlowConfig {
        max_data: c(flow.max_data),
        max_stream_data_uni: c(flow.max_stream_data_uni),
        max_stream_data_bidi_local: c(flow.max_stream_data_bidi_local),
        max_stream_data_bidi_remote: c(flow.max_stream_data_bidi_remote),
        max_streams_uni: c(flow.max_streams_uni),
        max_streams_bidi: c(flow.max_streams_bidi),
    }
}

/// The credit a peer granted, from its SETTINGS and its `webtransport-init` header (the
/// larger of the two wins for the per-stream limits). `peer` is the snapshot of the peer's
/// SETTINGS that counts for the session: those acknowledged when its CONNECT (client) or 2xx
/// (server) HEADERS went out, see [`PeerSettings`].
pub(crate) fn peer_flow(peer: &SettingsValues, init: &crate::headers::InitHeader) -> FlowConfig {
    let s = |id| peer.get(id).map(u64::from);
    let bidi_local = s(WT_INITIAL_MAX_STREAM_DATA_BIDI_LOCAL);
    // d07–d13 had one bidi setting (0x2b63) for both directions.
    let bidi_remote = s(WT_INITIAL_MAX_STREAM_DATA_BIDI_REMOTE).or(bidi_local);
    let max = |a: Option<u64>, b: Option<u64>| a.unwrap_or(0).max(b.unwrap_or(0));
    FlowConfig {
        max_data: s(WT_INITIAL_MAX_DATA).unwrap_or(0),
        max_stream_data_uni: max(s(WT_INITIAL_MAX_STREAM_DATA_UNI), init.u),
        max_stream_data_bidi_local: max(bidi_local, init.bl),
        max_stream_data_bidi_remote: max(bidi_remote, init.br),
        max_streams_uni: s(WT_INITIAL_MAX_STREAMS_UNI).unwrap_or(0),
        max_streams_bidi: s(WT_INITIAL_MAX_STREAMS_BIDI).unwrap_or(0),
    }
}
