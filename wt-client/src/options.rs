//! Connection options.

use std::time::Duration;

use wt_core::tls::ClientTls;
use wt_core::CompatMode;
use wt_h2::StreamIdParity;

/// Which HTTP version to connect over.
///
/// ```
/// use wt_client::Transport;
/// assert_eq!("auto".parse::<Transport>(), Ok(Transport::Auto));
/// assert_eq!(Transport::default(), Transport::H3);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP/3 over QUIC (UDP).
    #[default]
    H3,
    /// HTTP/2 over TLS/TCP.
    H2,
    /// Try HTTP/3 first; start HTTP/2 in parallel if HTTP/3 fails or has not succeeded after
    /// [`Options::auto_head_start`]. The first session established wins; the other attempt is
    /// dropped. [`ConnectionInfo::transport`](crate::ConnectionInfo::transport) tells which
    /// one won.
    Auto,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "h3" | "http3" | "quic" => Ok(Transport::H3),
            "h2" | "http2" | "tcp" => Ok(Transport::H2),
            "auto" => Ok(Transport::Auto),
            other => Err(format!(
                "unknown transport {other:?} (expected h3, h2 or auto)"
            )),
        }
    }
}

/// Delivery mode (hackney's `{active, false | true | once}`).
///
/// ```
/// use wt_client::Active;
/// assert_eq!(Active::default(), Active::Off);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Active {
    /// Passive: data is buffered per channel and read with `recv` / `stream_recv`.
    #[default]
    Off,
    /// Active: every event is forwarded to the [`EventReceiver`](crate::EventReceiver).
    On,
    /// Forward one event, then return to passive.
    Once,
}

/// Default limit of unread received bytes (64 MiB).
///
/// ```
/// assert_eq!(wt_client::DEFAULT_MAX_RECV_BUFFER, 64 << 20);
/// ```
pub const DEFAULT_MAX_RECV_BUFFER: usize = 64 * 1024 * 1024;

/// Default head start of HTTP/3 over HTTP/2 in [`Transport::Auto`].
///
/// ```
/// assert_eq!(wt_client::DEFAULT_AUTO_HEAD_START.as_millis(), 300);
/// ```
pub const DEFAULT_AUTO_HEAD_START: Duration = Duration::from_millis(300);

/// Options of [`connect`](crate::connect). Fields are public; the chainable setters are a
/// convenience.
///
/// ```
/// use std::time::Duration;
/// use wt_client::{Options, Transport};
/// let opts = Options::default()
///     .transport(Transport::Auto)
///     .header("authorization", "Bearer x")
///     .origin("https://example.com")
///     .protocol("chat-v1")
///     .recv_timeout(Duration::from_secs(5));
/// assert_eq!(opts.connect_timeout, Duration::from_secs(8));
/// assert_eq!(opts.max_recv_buffer, 64 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// HTTP/3, HTTP/2 or automatic fallback (default HTTP/3).
    pub transport: Transport,
    /// Bound on the whole connect, TLS and WebTransport handshake included (default 8 s).
    pub connect_timeout: Duration,
    /// Timeout applied by [`Connection::recv`](crate::Connection::recv) and
    /// [`Connection::stream_recv`](crate::Connection::stream_recv) (default none: wait
    /// forever).
    pub recv_timeout: Option<Duration>,
    /// Initial delivery mode (default passive).
    pub active: Active,
    /// Extra headers of the CONNECT request.
    pub headers: Vec<(String, String)>,
    /// The `origin` header.
    pub origin: Option<String>,
    /// Subprotocols offered (`wt-available-protocols`), in preference order.
    pub protocols: Vec<String>,
    /// TLS options: bundled roots by default, extra CAs, client certificate, certificate
    /// hashes, or no verification at all.
    pub tls: ClientTls,
    /// Dialect selection (auto, latest drafts only, or what browsers send).
    pub compat: CompatMode,
    /// Limit of unread bytes across all channels (default 64 MiB). Passing it closes the
    /// session with [`Error::RecvBufferOverflow`](crate::Error::RecvBufferOverflow).
    pub max_recv_buffer: usize,
    /// In [`Transport::Auto`], how long HTTP/3 may try alone before HTTP/2 starts too
    /// (default 300 ms).
    pub auto_head_start: Duration,
    /// WT stream-id numbering of legacy HTTP/2 sessions (default: auto-detect). Servers built
    /// on @fails-components/webtransport number streams the other way round; set
    /// [`StreamIdParity::Swapped`] with [`CompatMode::LegacyBrowserCompat`] to talk to them.
    /// Draft-15 sessions ignore it.
    pub h2_stream_id_parity: StreamIdParity,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::H3,
            connect_timeout: wt_core::limits::DEFAULT_CONNECT_TIMEOUT,
            recv_timeout: None,
            active: Active::Off,
            headers: Vec::new(),
            origin: None,
            protocols: Vec::new(),
            tls: ClientTls::default(),
            compat: CompatMode::Auto,
            max_recv_buffer: DEFAULT_MAX_RECV_BUFFER,
            auto_head_start: DEFAULT_AUTO_HEAD_START,
            h2_stream_id_parity: StreamIdParity::AutoDetect,
        }
    }
}

impl Options {
    /// Sets [`Options::transport`].
    ///
    /// ```
    /// let o = wt_client::Options::default().transport(wt_client::Transport::H2);
    /// assert_eq!(o.transport, wt_client::Transport::H2);
    /// ```
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Sets [`Options::connect_timeout`].
    ///
    /// ```
    /// let o = wt_client::Options::default().connect_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(o.connect_timeout.as_secs(), 1);
    /// ```
    pub fn connect_timeout(mut self, d: std::time::Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets [`Options::recv_timeout`].
    ///
    /// ```
    /// let o = wt_client::Options::default().recv_timeout(std::time::Duration::from_secs(1));
    /// assert!(o.recv_timeout.is_some());
    /// ```
    pub fn recv_timeout(mut self, d: Duration) -> Self {
        self.recv_timeout = Some(d);
        self
    }

    /// Sets [`Options::active`].
    ///
    /// ```
    /// let o = wt_client::Options::default().active(wt_client::Active::On);
    /// assert_eq!(o.active, wt_client::Active::On);
    /// ```
    pub fn active(mut self, a: Active) -> Self {
        self.active = a;
        self
    }

    /// Adds a CONNECT header.
    ///
    /// ```
    /// let o = wt_client::Options::default().header("x-token", "42");
    /// assert_eq!(o.headers, vec![("x-token".to_owned(), "42".to_owned())]);
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`Options::origin`].
    ///
    /// ```
    /// let o = wt_client::Options::default().origin("https://a.example");
    /// assert_eq!(o.origin.as_deref(), Some("https://a.example"));
    /// ```
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Adds an offered subprotocol.
    ///
    /// ```
    /// let o = wt_client::Options::default().protocol("a").protocol("b");
    /// assert_eq!(o.protocols, ["a", "b"]);
    /// ```
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocols.push(p.into());
        self
    }

    /// Sets [`Options::tls`].
    ///
    /// ```
    /// let mut tls = wt_core::tls::ClientTls::default();
    /// tls.insecure = true;
    /// let o = wt_client::Options::default().tls(tls);
    /// assert!(o.tls.insecure);
    /// ```
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts a server certificate by its SHA-256 hash (browsers' `serverCertificateHashes`).
    ///
    /// ```
    /// let o = wt_client::Options::default().cert_hash([0u8; 32]);
    /// assert_eq!(o.tls.cert_hashes.len(), 1);
    /// ```
    pub fn cert_hash(mut self, hash: [u8; 32]) -> Self {
        self.tls.cert_hashes.push(hash);
        self
    }

    /// Sets [`Options::compat`].
    ///
    /// ```
    /// let o = wt_client::Options::default().compat(wt_core::CompatMode::Latest);
    /// assert_eq!(o.compat, wt_core::CompatMode::Latest);
    /// ```
    pub fn compat(mut self, c: CompatMode) -> Self {
        self.compat = c;
        self
    }

    /// Sets [`Options::h2_stream_id_parity`].
    ///
    /// ```
    /// use wt_client::{Options, StreamIdParity};
    /// let o = Options::default().h2_stream_id_parity(StreamIdParity::Swapped);
    /// assert_eq!(o.h2_stream_id_parity, StreamIdParity::Swapped);
    /// ```
    pub fn h2_stream_id_parity(mut self, p: StreamIdParity) -> Self {
        self.h2_stream_id_parity = p;
        self
    }

    /// Sets [`Options::max_recv_buffer`].
    ///
    /// ```
    /// let o = wt_client::Options::default().max_recv_buffer(1 << 20);
    /// assert_eq!(o.max_recv_buffer, 1 << 20);
    /// ```
    pub fn max_recv_buffer(mut self, bytes: usize) -> Self {
        self.max_recv_buffer = bytes;
        self
    }
}
