//! [`TestServer`]: a handler served over HTTP/3 (`wt-h3`), HTTP/2 (`wt-h2`) or both on one
//! port number, with a generated or loaded certificate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use wt_core::tls::{hash_hex, ServerTls, TlsConfigError};
use wt_core::Acceptor;

use crate::echo::{EchoConfig, EchoHandler};
use crate::handler::Handler;
use crate::listener::{Listener, ServeOptions, ShutdownStats};

/// How many ports `Both` tries when the TCP port matching the UDP port is taken.
pub const BIND_ATTEMPTS: usize = 8;

/// Which transports to serve.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Transports {
    /// HTTP/3 only (UDP).
    H3,
    /// HTTP/2 only (TCP).
    H2,
    /// HTTP/3 on UDP and HTTP/2 on TCP, same port number.
    #[default]
    Both,
}

impl std::str::FromStr for Transports {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "h3" => Ok(Transports::H3),
            "h2" => Ok(Transports::H2),
            "both" => Ok(Transports::Both),
            other => Err(UnknownTransport(other.to_owned())),
        }
    }
}

/// A transport name other than `h3`, `h2` or `both`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected h3, h2 or both)")]
pub struct UnknownTransport(pub String);

/// Where the server's certificate comes from.
#[derive(Clone, Debug, Default)]
pub enum CertSource {
    /// A self-signed ECDSA P-256 certificate valid for 14 days, for `localhost`, `127.0.0.1`,
    /// `::1` (and the bind address if it is another specific IP), generated at start; clients
    /// pin it by [`TestServer::cert_hash`].
    #[default]
    SelfSigned,
    /// A PEM certificate chain (leaf first) and key.
    PemFiles {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
    },
    /// Ready-made TLS material.
    Tls(ServerTls),
}

/// How to start a [`TestServer`].
#[derive(Clone, Debug)]
pub struct TestServerConfig {
    /// Transports to serve (default both).
    pub transports: Transports,
    /// Address to bind (default 127.0.0.1).
    pub host: IpAddr,
    /// Port (default 0: any free port; with `Both`, the same number for UDP and TCP).
    pub port: u16,
    /// Certificate (default self-signed).
    pub cert: CertSource,
    /// Limits and shutdown grace period.
    pub serve: ServeOptions,
    /// Requests each transport queues for the listener before refusing more (HTTP/2 answers
    /// 503 past it; HTTP/3 refuses the request stream). The listener takes requests off the
    /// queue at once, so this only has to absorb bursts of connections. Default 1024.
    pub accept_queue: usize,
}

impl Default for TestServerConfig {
    fn default() -> Self {
        TestServerConfig {
            transports: Transports::Both,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            cert: CertSource::SelfSigned,
            serve: ServeOptions::default(),
            accept_queue: 1024,
        }
    }
}

/// Why a [`TestServer`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The certificate or key could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[from] TlsConfigError),
    /// The HTTP/3 server could not bind.
    #[error("HTTP/3: {0}")]
    H3(#[from] wt_h3::Error),
    /// The HTTP/2 server could not bind.
    #[error("HTTP/2: {0}")]
    H2(#[from] wt_h2::Error),
}

/// A running server: a [`Handler`] on HTTP/3, HTTP/2 or both, with its certificate.
///
/// ```no_run
/// # async fn demo() -> Result<(), wt_testserver::StartError> {
/// use wt_testserver::{TestServer, TestServerConfig};
/// let server = TestServer::start(TestServerConfig::default())?;
/// println!("{} {}", server.url("/echo"), server.cert_hash_hex());
/// server.stop().await;
/// # Ok(()) }
/// ```
pub struct TestServer<H: Handler = EchoHandler> {
    listener: Listener<H>,
    h3: Option<SocketAddr>,
    h2: Option<SocketAddr>,
    tls: ServerTls,
}

impl<H: Handler> std::fmt::Debug for TestServer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("h3", &self.h3)
            .field("h2", &self.h2)
            .field("cert_hash", &self.cert_hash_hex())
            .finish()
    }
}

impl TestServer<EchoHandler> {
    /// Starts the [`EchoHandler`] with default options. Must be called within a Tokio runtime.
    pub fn start(config: TestServerConfig) -> Result<Self, StartError> {
        Self::start_with(config, EchoConfig::default())
    }
}

impl<H: Handler> TestServer<H> {
    /// Starts handler `H` with `handler_config`. Must be called within a Tokio runtime.
    pub fn start_with(
        config: TestServerConfig,
        handler_config: H::Config,
    ) -> Result<Self, StartError> {
        let tls = match config.cert {
            CertSource::SelfSigned => {
                let mut names = vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ];
                if !config.host.is_unspecified() && !config.host.is_loopback() {
                    names.push(config.host.to_string());
                }
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                ServerTls::self_signed(&names)?
            }
            CertSource::PemFiles { cert, key } => ServerTls::from_pem_files(cert, key)?,
            CertSource::Tls(tls) => tls,
        };
        let host = config.host;
        let queue = config.accept_queue.max(1);
        let mut listener = Listener::new(handler_config, config.serve);
        let (mut h3, mut h2) = (None, None);
        match config.transports {
            Transports::H3 => {
                let server = bind_h3(&tls, SocketAddr::new(host, config.port), queue)?;
                h3 = Some(listener.serve(server));
            }
            Transports::H2 => {
                let server = bind_h2(&tls, SocketAddr::new(host, config.port), queue)?;
                h2 = Some(listener.serve(server));
            }
            Transports::Both => {
                let (s3, s2) = bind_both(&tls, host, config.port, queue)?;
                h3 = Some(listener.serve(s3));
                h2 = Some(listener.serve(s2));
            }
        }
        for (name, addr) in [("h3", h3), ("h2", h2)] {
            if let Some(addr) = addr {
                tracing::info!(transport = name, %addr, "listening");
            }
        }
        Ok(TestServer {
            listener,
            h3,
            h2,
            tls,
        })
    }

    /// The HTTP/3 (UDP) address, if serving HTTP/3.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3
    }

    /// The HTTP/2 (TCP) address, if serving HTTP/2.
    pub fn h2_addr(&self) -> Option<SocketAddr> {
        self.h2
    }

    /// The port number (shared by both transports when serving both).
    pub fn port(&self) -> u16 {
        self.h3.or(self.h2).map_or(0, |a| a.port())
    }

    /// The address (HTTP/3's when serving both).
    pub fn addr(&self) -> SocketAddr {
        self.h3
            .or(self.h2)
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// `https://localhost:PORT<path>` (or the bound IP when it is neither loopback nor
    /// unspecified).
    pub fn url(&self, path: &str) -> String {
        let ip = self.addr().ip();
        let host = if ip.is_loopback() || ip.is_unspecified() {
            "localhost".to_owned()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("https://{host}:{}{path}", self.port())
    }

    /// SHA-256 of the certificate (for `serverCertificateHashes` /
    /// [`ClientTls::cert_hashes`](wt_core::tls::ClientTls::cert_hashes)).
    pub fn cert_hash(&self) -> [u8; 32] {
        self.tls.cert_hash()
    }

    /// [`cert_hash`](TestServer::cert_hash) in lowercase hex.
    pub fn cert_hash_hex(&self) -> String {
        hash_hex(&self.cert_hash())
    }

    /// The leaf certificate as PEM (for clients that trust it as a CA).
    pub fn cert_pem(&self) -> String {
        self.tls.leaf_pem()
    }

    /// The TLS material in use.
    pub fn tls(&self) -> &ServerTls {
        &self.tls
    }

    /// The underlying listener (sessions count, handler configuration).
    pub fn listener(&self) -> &Listener<H> {
        &self.listener
    }

    /// Sessions currently running.
    pub fn active_sessions(&self) -> usize {
        self.listener.active_sessions()
    }

    /// Graceful stop: see [`Listener::shutdown`].
    pub async fn stop(self) -> ShutdownStats {
        self.listener.shutdown().await
    }

    /// Same as [`stop`](TestServer::stop).
    pub async fn shutdown(self) -> ShutdownStats {
        self.stop().await
    }
}

fn bind_h3(tls: &ServerTls, addr: SocketAddr, queue: usize) -> Result<wt_h3::Server, StartError> {
    let mut config = wt_h3::ServerConfig::new(tls.clone(), addr);
    config.max_pending_requests = queue;
    Ok(wt_h3::Server::bind(config)?)
}

fn bind_h2(tls: &ServerTls, addr: SocketAddr, queue: usize) -> Result<wt_h2::Server, StartError> {
    let mut config = wt_h2::ServerConfig::new(tls.clone(), addr);
    config.accept_queue = queue;
    Ok(wt_h2::Server::bind(config)?)
}

/// Binds UDP first (on `port`, or any free port), then TCP on the same number; with port 0,
/// retries with a new UDP port when that TCP port is taken.
fn bind_both(
    tls: &ServerTls,
    host: IpAddr,
    port: u16,
    queue: usize,
) -> Result<(wt_h3::Server, wt_h2::Server), StartError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let h3 = bind_h3(tls, SocketAddr::new(host, port), queue)?;
        let udp_port = h3.local_addr().port();
        match bind_h2(tls, SocketAddr::new(host, udp_port), queue) {
            Ok(h2) => return Ok((h3, h2)),
            Err(e) if port == 0 && attempt < BIND_ATTEMPTS => {
                tracing::debug!(port = udp_port, error = %e, "TCP port taken; trying another");
                h3.shutdown();
            }
            Err(e) => return Err(e),
        }
    }
}
