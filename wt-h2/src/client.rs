//! The client: one TCP+TLS+HTTP/2 connection per session.

use std::sync::Arc;

use http::{HeaderValue, Method, Request as HttpRequest};
use rustls::pki_types::ServerName;
use wt_core::{
    ConnectError, ConnectRequest, ConnectionError, MissingSetting, ProtocolError, RequestError,
    SessionInfo, TransportKind,
};

use crate::config::{announced, flow_settings, peer_flow, ClientConfig};
use crate::engine::streams::Side;
use crate::engine::tx::Segment;
use crate::engine::{Engine, EngineConfig};
use crate::headers;
use crate::session::{h2_error_to_session, Driver, Session, Shared};
use crate::settings_io::{
    PeerSettings, SettingsIo, ANY_STREAM, ENABLE_CONNECT_PROTOCOL, WT_ENABLED,
};

/// A WebTransport-over-HTTP/2 client.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

fn conn_error(e: h2::Error) -> ConnectError {
    match h2_error_to_session(e) {
        Ok(code) => ConnectError::Protocol(ProtocolError::h2(code, "CONNECT stream reset")),
        Err(wt_core::SessionError::Connection(c)) => ConnectError::Connection(c),
        Err(_) => ConnectError::Connection(ConnectionError::Reset),
    }
}

impl Client {
    /// Builds a client (TLS configuration with ALPN `h2`; TLS 1.2 only with EMS).
    pub fn new(config: ClientConfig) -> Result<Client, ConnectError> {
        let tls = config.tls.build(&[b"h2"], true)?;
        Ok(Client {
            config: Arc::new(config),
            tls: Arc::new(tls),
        })
    }

    async fn connect_inner(&self, req: &ConnectRequest) -> Result<Session, ConnectError> {
        let cfg = &self.config;
        let wt_core::RequestTarget { authority, path } = req.target()?;
        let host = req.bare_host();
        let uri = http::Uri::builder()
            .scheme("https")
            .authority(authority.as_str())
            .path_and_query(path.as_str())
            .build()
            .map_err(|_| RequestError::BadUrl)?;
        let mut builder = HttpRequest::builder()
            .method(Method::CONNECT)
            .uri(uri)
            .extension(h2::ext::Protocol::from("webtransport"));
        if let Some(origin) = &req.origin {
            builder = builder.header(http::header::ORIGIN, origin.as_str());
        }
        if !req.protocols.is_empty() {
            builder = builder.header(
                "wt-available-protocols",
                headers::format_protocols(&req.protocols),
            );
        }
        let f = announced(&cfg.flow);
        if !req.headers.contains_key("webtransport-init") {
            builder = builder.header(
                "webtransport-init",
                headers::format_init(
                    f.max_stream_data_uni,
                    f.max_stream_data_bidi_local,
                    f.max_stream_data_bidi_remote,
                ),
            );
        }
        let mut request = builder.body(()).map_err(|_| RequestError::BadUrl)?;
        for (k, v) in &req.headers {
            request.headers_mut().append(k.clone(), v.clone());
        }

        // TCP + TLS.
        let addrs: Vec<_> = tokio::net::lookup_host((host, req.port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                source: Arc::new(e),
            })?
            .collect();
        let mut last_err = None;
        let mut tcp = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            ConnectError::Io(Arc::new(last_err.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
            })))
        })?;
        let _ = tcp.set_nodelay(true);
        let peer_addr = tcp.peer_addr().map_err(|e| ConnectError::Io(Arc::new(e)))?;
        let name = ServerName::try_from(host.to_owned()).map_err(|_| RequestError::BadUrl)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(t) => ConnectError::Tls(t.clone()),
                    None => ConnectError::Io(Arc::new(e)),
                },
            )?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::Tls(rustls::Error::NoApplicationProtocol));
        }

        // HTTP/2 over the SETTINGS adapter.
        let peer = PeerSettings::new();
        let io = SettingsIo::new(tls, true, flow_settings(&cfg.flow), peer.clone());
        let (send_req, conn) = h2::client::Builder::new()
            .initial_window_size(cfg.h2.initial_stream_window)
            .initial_connection_window_size(cfg.h2.initial_connection_window)
            .max_frame_size(cfg.h2.max_frame_size)
            .enable_push(false)
            .handshake::<_, Segment>(io)
            .await
            .map_err(conn_error)?;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let r = conn.await;
            if let Err(e) = &r {
                tracing::debug!("h2 client connection ended: {e}");
            }
            let _ = done_tx.send(r);
        });
        let ended = |r: Result<Result<(), h2::Error>, _>| match r {
            Ok(Err(e)) => conn_error(e),
            _ => ConnectError::Connection(ConnectionError::Reset),
        };
        // Wait until h2 has applied the server's first SETTINGS: h2 applies a SETTINGS frame
        // and queues its ACK in one step, and the adapter sees the ACK go out. From then on
        // `is_extended_connect_protocol_enabled` reflects that frame. Event-driven (no
        // polling); bounded by the connect timeout; ends early if the connection dies.
        let applied = tokio::select! {
            applied = peer.wait_acked(1) => applied,
            r = &mut done_rx => return Err(ended(r)),
        };
        if !applied {
            return Err(ended(done_rx.await));
        }
        let first = peer.acked();
        if first.get(ENABLE_CONNECT_PROTOCOL) != Some(1) {
            return Err(ConnectError::MissingSetting(MissingSetting {
                name: "SETTINGS_ENABLE_CONNECT_PROTOCOL",
                id: u64::from(ENABLE_CONNECT_PROTOCOL),
            }));
        }
        let legacy = cfg.compat == wt_core::CompatMode::LegacyBrowserCompat;
        if !legacy {
            match first.get(WT_ENABLED) {
                Some(v) if v > 1 => {
                    // HS-14: connection error PROTOCOL_ERROR. h2's client cannot send a GOAWAY
                    // with a chosen code, so the adapter writes it and shuts the connection;
                    // we return once the connection task is done.
                    let code = wt_core::codes::H2Code::PROTOCOL_ERROR;
                    peer.request_goaway(code.0);
                    drop(send_req);
                    let _ = done_rx.await;
                    return Err(ConnectError::Protocol(ProtocolError::h2(
                        code,
                        format!("SETTINGS_WT_ENABLED = {v}, must be 0 or 1"),
                    )));
                }
                Some(1) => {}
                _ if cfg.require_wt_enabled => {
                    return Err(ConnectError::MissingSetting(MissingSetting {
                        name: "SETTINGS_WT_ENABLED",
                        id: u64::from(WT_ENABLED),
                    }));
                }
                _ => {}
            }
        }
        if !send_req.is_extended_connect_protocol_enabled() {
            // Cannot happen once the frame carrying ENABLE_CONNECT_PROTOCOL = 1 was applied.
            return Err(ConnectError::MissingSetting(MissingSetting {
                name: "SETTINGS_ENABLE_CONNECT_PROTOCOL",
                id: u64::from(ENABLE_CONNECT_PROTOCOL),
            }));
        }
        // FC-11: the server's settings that count are those acknowledged when the CONNECT
        // HEADERS go out; the adapter snapshots them at that frame.
        peer.expect_headers(ANY_STREAM);
        let mut send_req = send_req.ready().await.map_err(conn_error)?;
        let (resp, send) = send_req.send_request(request, false).map_err(conn_error)?;
        let resp = resp.await.map_err(conn_error)?;
        // The response came after our HEADERS went out, so the snapshot is there.
        let settings = peer
            .take_headers_snapshot(ANY_STREAM)
            .unwrap_or_else(|| peer.acked());
        if !resp.status().is_success() {
            return Err(ConnectError::Rejected {
                status: resp.status(),
            });
        }
        let protocol = match resp.headers().get("wt-protocol") {
            Some(v) => match headers::parse_protocol(v.as_bytes()) {
                Some(p) if req.protocols.contains(&p) => Some(p),
                Some(p) => return Err(ConnectError::UnexpectedProtocol(p)),
                None => None,
            },
            None => None,
        };
        let init = resp
            .headers()
            .get("webtransport-init")
            .map(HeaderValue::as_bytes)
            .map(headers::parse_init)
            .transpose()
            .map_err(|_| ConnectError::BadResponse("malformed webtransport-init header"))?
            .unwrap_or_default();
        let session_id = u64::from(u32::from(send.stream_id()));
        let mut ec = EngineConfig::new(Side::Client);
        ec.options = cfg.options();
        ec.parity = cfg.parity();
        ec.legacy_quirks = cfg.dialect() == wt_core::Dialect::H2Legacy;
        ec.local = f;
        ec.peer = peer_flow(&settings, &init);
        ec.codes = cfg.error_codes;
        ec.max_send_buffer = cfg.h2.max_send_buffer;
        let shared = Shared::new(Engine::new(ec), send, resp.into_body());
        let driver = Driver::new(shared.clone(), Some(Box::new(send_req)));
        tokio::spawn(driver);
        Ok(Session::new(
            shared,
            SessionInfo {
                transport: TransportKind::Http2,
                dialect: cfg.dialect(),
                session_id,
                protocol,
                peer_addr,
                unreliable_datagrams: false,
            },
        ))
    }
}

impl wt_core::Connector for Client {
    type Session = Session;

    async fn connect(&self, request: &ConnectRequest) -> Result<Session, ConnectError> {
        let t = self.config.connect_timeout;
        match tokio::time::timeout(t, self.connect_inner(request)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout(t)),
        }
    }
}
