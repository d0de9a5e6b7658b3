//! Client and server configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use wt_core::tls::{ClientTls, ServerTls};
use wt_core::{CompatMode, Dialect};

/// WebTransport session flow control we grant the peer (H3 draft-13+,
/// SETTINGS_WT_INITIAL_MAX_*; wire reference §3.8).
///
/// Setting one (client: [`ClientConfig::flow_control`], server:
/// [`ServerConfig::flow_control`]) advertises the non-zero values as initial limits. Flow
/// control is on for a session when the peer also advertises a non-zero initial limit (draft
/// 15/16; for draft-13/14 also when both sides send SETTINGS_WT_MAX_SESSIONS > 1); it is
/// never on for draft-02 and draft-07. The same values are the *window* we re-grant as the
/// application consumes data and as peer streams close: a new WT_MAX_DATA / WT_MAX_STREAMS
/// goes out when less than half of it is left.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowControlConfig {
    /// SETTINGS_WT_INITIAL_MAX_DATA: stream payload bytes (stream headers excluded) the peer
    /// may send in a session, across its streams.
    pub max_data: u64,
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: bidirectional streams the peer may open.
    pub max_streams_bidi: u64,
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: unidirectional streams the peer may open.
    pub max_streams_uni: u64,
}

impl Default for FlowControlConfig {
    /// 16 MiB of data, 50 streams of each kind (re-granted as consumed and closed).
    fn default() -> Self {
        FlowControlConfig {
            max_data: 16 * 1024 * 1024,
            max_streams_bidi: 50,
            max_streams_uni: 50,
        }
    }
}

/// QUIC transport tuning shared by client and server.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// Per-stream receive window (bytes).
    pub stream_receive_window: u32,
    /// Connection receive window (bytes).
    pub receive_window: u32,
    /// Connection send window (bytes).
    pub send_window: u64,
    /// Receive buffer for datagrams (bytes); also makes us advertise
    /// max_datagram_frame_size. `None` disables datagrams.
    pub datagram_receive_buffer: Option<usize>,
    /// Send buffer for datagrams (bytes).
    pub datagram_send_buffer: usize,
    /// Concurrent bidirectional streams the peer may open (default 100, quinn's default;
    /// credit is re-granted as streams close). quinn keeps state for every stream it allows,
    /// so large values cost memory on every connection, idle or not.
    pub max_concurrent_bidi_streams: u32,
    /// Concurrent unidirectional streams the peer may open (default 100; see
    /// [`max_concurrent_bidi_streams`](Self::max_concurrent_bidi_streams)).
    pub max_concurrent_uni_streams: u32,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            stream_receive_window: 8 * 1024 * 1024,
            receive_window: 32 * 1024 * 1024,
            send_window: 32 * 1024 * 1024,
            datagram_receive_buffer: Some(2 * 1024 * 1024),
            datagram_send_buffer: 2 * 1024 * 1024,
            max_concurrent_bidi_streams: 100,
            max_concurrent_uni_streams: 100,
        }
    }
}

impl QuicConfig {
    pub(crate) fn transport(
        &self,
        idle: Duration,
        keep_alive: Option<Duration>,
    ) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.receive_window.into())
            .send_window(self.send_window)
            .datagram_receive_buffer_size(self.datagram_receive_buffer)
            .datagram_send_buffer_size(self.datagram_send_buffer)
            .max_concurrent_bidi_streams(self.max_concurrent_bidi_streams.into())
            .max_concurrent_uni_streams(self.max_concurrent_uni_streams.into())
            .keep_alive_interval(keep_alive)
            .max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
        Arc::new(t)
    }
}

/// Client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TLS options (roots, pinned hashes, client certificate).
    pub tls: ClientTls,
    /// Which dialects to advertise and speak.
    pub compat: CompatMode,
    /// Bound on the whole connect (resolution, QUIC and TLS handshake, SETTINGS, response).
    pub connect_timeout: Duration,
    /// Local address to bind. An unspecified address with port 0 (the default, `0.0.0.0:0`)
    /// is switched to `[::]:0` for IPv6 targets.
    pub bind: SocketAddr,
    /// QUIC idle timeout.
    pub max_idle_timeout: Duration,
    /// QUIC keep-alive interval (`None`: no keep-alives).
    pub keep_alive_interval: Option<Duration>,
    /// Session flow control to offer and grant (`None`, the default: not offered, so off).
    /// See [`FlowControlConfig`].
    pub flow_control: Option<FlowControlConfig>,
    /// QUIC transport tuning.
    pub quic: QuicConfig,
    /// After a session ends, how long to wait for the peer to close the CONNECT stream before
    /// closing the QUIC connection. After a local close it also bounds how long the data
    /// streams' resets wait for the peer to acknowledge the close capsule.
    pub close_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            tls: ClientTls::default(),
            compat: CompatMode::Auto,
            connect_timeout: wt_core::limits::DEFAULT_CONNECT_TIMEOUT,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            max_idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Some(Duration::from_secs(10)),
            flow_control: None,
            quic: QuicConfig::default(),
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Certificate chain and key.
    pub tls: ServerTls,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Dialects accepted (all HTTP/3 dialects by default). The SETTINGS of dialects not listed
    /// are not advertised, and their requests are refused.
    pub dialects: Vec<Dialect>,
    /// Value advertised in the draft-07…14 max-sessions settings. Without session flow control
    /// a connection carries one session at a time whatever this says.
    pub max_sessions_per_connection: u64,
    /// Session flow control to offer and grant (default: `Some` of
    /// [`FlowControlConfig::default`]; `None` never enables it). It is on only for clients
    /// that offer it too.
    pub flow_control: Option<FlowControlConfig>,
    /// Sessions (established or waiting for accept) a connection may carry when session flow
    /// control is on for it; surplus CONNECTs are reset with H3_REQUEST_REJECTED. Without
    /// flow control the limit is 1. Default 16.
    pub max_sessions_with_flow_control: usize,
    /// Streams for unknown sessions buffered per connection (streams of a request waiting
    /// for [`accept`](wt_core::IncomingRequest::accept) are held for it without this cap,
    /// bounded by the QUIC stream limits).
    pub max_buffered_streams: usize,
    /// Datagrams for unknown sessions buffered per connection.
    pub max_buffered_datagrams: usize,
    /// Requests waiting for [`accept`](wt_core::Acceptor::accept), across connections.
    pub max_pending_requests: usize,
    /// QUIC idle timeout.
    pub max_idle_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive_interval: Option<Duration>,
    /// QUIC transport tuning.
    pub quic: QuicConfig,
    /// Setting IDs to leave out of our SETTINGS (for interoperability tests).
    pub omit_settings: Vec<u64>,
    /// Extra SETTINGS pairs to send (GREASE, interoperability tests).
    pub extra_settings: Vec<(u64, u64)>,
}

impl ServerConfig {
    /// A configuration with defaults for everything but TLS and the address.
    pub fn new(tls: ServerTls, bind: SocketAddr) -> Self {
        ServerConfig {
            tls,
            bind,
            dialects: vec![
                Dialect::H3Latest,
                Dialect::H3Draft13,
                Dialect::H3Draft07,
                Dialect::H3Draft02,
            ],
            max_sessions_per_connection: 1,
            flow_control: Some(FlowControlConfig::default()),
            max_sessions_with_flow_control: 16,
            max_buffered_streams: wt_core::limits::MAX_BUFFERED_STREAMS,
            max_buffered_datagrams: wt_core::limits::MAX_BUFFERED_DATAGRAMS,
            max_pending_requests: 64,
            max_idle_timeout: Duration::from_secs(30),
            keep_alive_interval: None,
            quic: QuicConfig::default(),
            omit_settings: Vec::new(),
            extra_settings: Vec::new(),
        }
    }
}
