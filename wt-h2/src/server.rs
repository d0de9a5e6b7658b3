//! The server: an accept loop, one task per HTTP/2 connection, and [`Request`]s handed to
//! the application through a bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use tokio::sync::{mpsc, watch};
use wt_core::{AcceptOptions, RequestInfo, SessionError, SessionInfo, TransportKind};

use crate::config::{announced, peer_flow, ServerConfig};
use crate::engine::streams::Side;
use crate::engine::tx::Segment;
use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::headers::{self, InitHeader};
use crate::session::{h2_error_to_session, Driver, Session, Shared};
use crate::settings_io::{PeerSettings, SettingsIo};

/// A listening WebTransport-over-HTTP/2 server.
pub struct Server {
    local_addr: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::Receiver<Request>>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

struct ConnCtx {
    config: Arc<ServerConfig>,
    peer_settings: Arc<PeerSettings>,
    peer_addr: SocketAddr,
}

impl Server {
    /// Binds and starts accepting. Must be called from within a tokio runtime.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        if config.max_sessions_per_connection == 0 || config.accept_queue == 0 {
            return Err(Error::Config(
                "max_sessions_per_connection and accept_queue must be positive",
            ));
        }
        let tls = Arc::new(config.tls.build(&[b"h2"], true)?);
        let bind_err = |source| Error::Bind {
            addr: config.bind,
            source,
        };
        let std_listener = std::net::TcpListener::bind(config.bind).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let (tx, rx) = mpsc::channel(config.accept_queue);
        let (shutdown, _) = watch::channel(false);
        let config = Arc::new(config);
        let mut stop = shutdown.subscribe();
        let conn_stop = shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // Once stopped (shutdown or drop), no further connection is taken.
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    r = listener.accept() => match r {
                        Ok((tcp, peer)) => {
                            let _ = tcp.set_nodelay(true);
                            let conn = serve_connection(
                                tcp, peer, tls.clone(), config.clone(), tx.clone(), conn_stop.clone());
                            tokio::spawn(conn);
                        }
                        Err(e) => tracing::debug!("accept failed: {e}"),
                    }
                }
            }
        });
        Ok(Server {
            local_addr,
            rx: tokio::sync::Mutex::new(rx),
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; connections send GOAWAY, established sessions continue.
    /// Dropping the server does the same.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for Server {
    /// Stops the accept task (the listening socket closes) and sends GOAWAY on the open
    /// connections, like [`shutdown`](Server::shutdown); established sessions continue.
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl wt_core::Acceptor for Server {
    type Request = Request;

    async fn accept(&self) -> Option<Request> {
        let mut stop = self.shutdown.subscribe();
        if *stop.borrow() {
            return None;
        }
        let mut rx = tokio::select! {
            rx = self.rx.lock() => rx,
            _ = stop.wait_for(|s| *s) => return None,
        };
        tokio::select! {
            r = rx.recv() => r,
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn shutdown(&self) {
        Server::shutdown(self);
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    config: Arc<ServerConfig>,
    tx: mpsc::Sender<Request>,
    mut stop: watch::Receiver<bool>,
) {
    let peer_settings = PeerSettings::new();
    let handshake = async {
        let tls = tokio_rustls::TlsAcceptor::from(tls)
            .accept(tcp)
            .await
            .ok()?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return None;
        }
        let io = SettingsIo::new(tls, false, config.settings(), peer_settings.clone());
        let mut b = h2::server::Builder::new();
        b.initial_window_size(config.h2.initial_stream_window)
            .initial_connection_window_size(config.h2.initial_connection_window)
            .max_frame_size(config.h2.max_frame_size)
            .max_concurrent_streams(config.max_sessions_per_connection);
        if config.enable_connect_protocol {
            b.enable_connect_protocol();
        }
        b.handshake::<_, Segment>(io).await.ok()
    };
    let Ok(Some(mut conn)) = tokio::time::timeout(config.handshake_timeout, handshake).await else {
        tracing::debug!(%peer_addr, "handshake failed or timed out");
        return;
    };
    let ctx = Arc::new(ConnCtx {
        config: config.clone(),
        peer_settings,
        peer_addr,
    });
    let mut going_away = false;
    loop {
        let idle = match config.idle_timeout {
            Some(t) if !conn.has_streams() && !going_away => t,
            _ => std::time::Duration::from_secs(86400 * 365),
        };
        tokio::select! {
            r = conn.accept() => match r {
                Some(Ok((req, respond))) => handle_request(req, respond, &ctx, &tx),
                Some(Err(e)) => {
                    tracing::debug!(%peer_addr, "h2 connection error: {e}");
                    break;
                }
                None => break,
            },
            _ = stop.wait_for(|s| *s), if !going_away => {
                going_away = true;
                conn.graceful_shutdown();
            }
            _ = tokio::time::sleep(idle) => {
                if !going_away {
                    going_away = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }
}

fn respond_status(mut respond: h2::server::SendResponse<Segment>, status: StatusCode) {
    let resp = Response::builder().status(status).body(());
    if let Ok(resp) = resp {
        let _ = respond.send_response(resp, true);
    }
}

fn handle_request(
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Segment>,
    ctx: &Arc<ConnCtx>,
    tx: &mpsc::Sender<Request>,
) {
    let is_wt = req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str() == "webtransport");
    if !is_wt {
        let status = if req.method() == Method::CONNECT {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_FOUND
        };
        respond_status(respond, status);
        return;
    }
    // HS-15: any unparsable value (or a bad value of a known key) is a 400.
    let mut init = InitHeader::default();
    for v in req.headers().get_all("webtransport-init") {
        match headers::parse_init(v.as_bytes()) {
            Ok(i) => {
                init.u = i.u.or(init.u);
                init.bl = i.bl.or(init.bl);
                init.br = i.br.or(init.br);
            }
            Err(_) => {
                respond_status(respond, StatusCode::BAD_REQUEST);
                return;
            }
        }
    }
    let (parts, body) = req.into_parts();
    let protocols = parts
        .headers
        .get("wt-available-protocols")
        .and_then(|v| headers::parse_protocols(v.as_bytes()))
        .unwrap_or_default();
    let info = RequestInfo {
        authority: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        protocol: "webtransport".into(),
        origin: parts
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        protocols,
        headers: parts.headers,
        dialect: ctx.config.dialect,
        peer_addr: ctx.peer_addr,
    };
    let request = Request {
        info,
        parts: Some((respond, body)),
        init,
        ctx: ctx.clone(),
    };
    if let Err(e) = tx.try_send(request) {
        let r = match e {
            mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
        };
        r.reject_now(StatusCode::SERVICE_UNAVAILABLE);
    }
}

/// A WebTransport request waiting for the application's decision. Dropping it answers 405.
pub struct Request {
    info: RequestInfo,
    parts: Option<(h2::server::SendResponse<Segment>, h2::RecvStream)>,
    init: InitHeader,
    ctx: Arc<ConnCtx>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("info", &self.info).finish()
    }
}

impl Request {
    fn reject_now(mut self, status: StatusCode) {
        let status = if status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        if let Some((respond, _)) = self.parts.take() {
            respond_status(respond, status);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some((respond, _)) = self.parts.take() {
            respond_status(respond, StatusCode::METHOD_NOT_ALLOWED);
        }
    }
}

impl wt_core::IncomingRequest for Request {
    type Session = Session;

    fn info(&self) -> &RequestInfo {
        &self.info
    }

    async fn accept(mut self, options: AcceptOptions) -> Result<Session, SessionError> {
        let config = self.ctx.config.clone();
        let Some((mut respond, recv)) = self.parts.take() else {
            return Err(SessionError::Connection(wt_core::ConnectionError::Reset));
        };
        let local = announced(&config.flow);
        let mut resp = Response::builder()
            .status(StatusCode::OK)
            .body(())
            .map_err(|_| SessionError::Connection(wt_core::ConnectionError::Reset))?;
        let h = resp.headers_mut();
        for (k, v) in &options.headers {
            h.append(k.clone(), v.clone());
        }
        if let Some(p) = &options.protocol {
            if let Ok(v) = http::HeaderValue::from_str(&headers::format_string(p)) {
                h.insert("wt-protocol", v);
            }
        }
        if let Ok(v) = http::HeaderValue::from_str(&headers::format_init(
            local.max_stream_data_uni,
            local.max_stream_data_bidi_local,
            local.max_stream_data_bidi_remote,
        )) {
            h.insert("webtransport-init", v);
        }
        let stream = u32::from(respond.stream_id());
        let session_id = u64::from(stream);
        // FC-11: the client's settings that count are those we had acknowledged when the 2xx
        // went out; the adapter snapshots them at that HEADERS frame.
        let peer = &self.ctx.peer_settings;
        peer.expect_headers(stream);
        let mut send = match respond.send_response(resp, false) {
            Ok(s) => s,
            Err(e) => {
                let _ = peer.take_headers_snapshot(stream);
                return Err(match h2_error_to_session(e) {
                    Ok(code) => SessionError::ResetByPeer(wt_core::WireCode::H2(code)),
                    Err(err) => err,
                });
            }
        };
        // Forgets the snapshot request however this ends (also if this future is dropped).
        struct Forget<'a>(&'a PeerSettings, u32);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                let _ = self.0.take_headers_snapshot(self.1);
            }
        }
        let _forget = Forget(peer, stream);
        let settings = tokio::select! {
            s = peer.headers_snapshot(stream) => s,
            // Reset before the 2xx went out (h2 then never writes it): the driver reports it.
            _ = std::future::poll_fn(|cx| send.poll_reset(cx)) => peer.acked(),
        };
        let mut ec = EngineConfig::new(Side::Server);
        ec.options = config.options();
        ec.parity = config.parity();
        ec.legacy_quirks = config.dialect == wt_core::Dialect::H2Legacy;
        ec.local = local;
        ec.peer = peer_flow(&settings, &self.init);
        ec.codes = config.error_codes;
        ec.max_send_buffer = config.h2.max_send_buffer;
        let shared = Shared::new(Engine::new(ec), send, recv);
        tokio::spawn(Driver::new(shared.clone(), None));
        Ok(Session::new(
            shared,
            SessionInfo {
                transport: TransportKind::Http2,
                dialect: self.info.dialect,
                session_id,
                protocol: options.protocol,
                peer_addr: self.ctx.peer_addr,
                unreliable_datagrams: false,
            },
        ))
    }

    async fn reject(self, status: StatusCode) {
        self.reject_now(status);
    }
}
