//! The server: accepts QUIC connections, runs the HTTP/3 layer on each, and yields the
//! WebTransport CONNECT requests of all of them through one bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use http::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wt_core::codes::H3Code;
use wt_core::{AcceptOptions, Dialect, ProtocolError, RequestInfo, SessionError};

use crate::config::ServerConfig;
use crate::conn::flow::SessionFlow;
use crate::conn::negotiate::{self, Detected, ServerAdvert};
use crate::driver::{varint, Conn, FrameReader, ReadFail, RequestHandler};
use crate::error::Error;
use crate::proto::frame::{self, Frame};
use crate::proto::headers;
use crate::proto::settings::Settings;
use crate::proto::stream_type::Role;
use crate::session::{spawn_session_task, Session, SessionShared};

struct Ctx {
    config: ServerConfig,
    settings: Settings,
    tx: mpsc::Sender<Request>,
    shutdown: CancellationToken,
}

/// A WebTransport-over-HTTP/3 server endpoint.
pub struct Server {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    requests: tokio::sync::Mutex<mpsc::Receiver<Request>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Server {
    /// Binds the UDP socket and starts accepting connections. Must be called within a tokio
    /// runtime.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        let tls = config.tls.build(&[b"h3"], false)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|_| Error::NoInitialCipherSuite)?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        sc.transport_config(
            config
                .quic
                .transport(config.max_idle_timeout, config.keep_alive_interval),
        );
        let endpoint = crate::udp::endpoint(config.bind, Some(sc))?;
        let local_addr = endpoint.local_addr()?;
        let (tx, rx) = mpsc::channel(config.max_pending_requests.max(1));
        let shutdown = CancellationToken::new();
        let settings = negotiate::server_settings(&ServerAdvert {
            dialects: config.dialects.clone(),
            max_sessions: config.max_sessions_per_connection,
            omit: config.omit_settings.clone(),
            extra: config.extra_settings.clone(),
            flow_control: config.flow_control,
        });
        let ctx = Arc::new(Ctx {
            config,
            settings,
            tx,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(accept_loop(endpoint.clone(), ctx));
        Ok(Server {
            endpoint,
            local_addr,
            requests: tokio::sync::Mutex::new(rx),
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Ctx>) {
    loop {
        tokio::select! {
            inc = endpoint.accept() => match inc {
                Some(inc) => { tokio::spawn(handle_connection(inc, ctx.clone())); }
                None => break,
            },
            _ = ctx.shutdown.cancelled() => break,
        }
    }
}

async fn handle_connection(incoming: quinn::Incoming, ctx: Arc<Ctx>) {
    let quic = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "QUIC handshake failed");
            return;
        }
    };
    let hctx = ctx.clone();
    let handler: RequestHandler = Arc::new(move |conn, send, reader| {
        tokio::spawn(handle_request(conn, send, reader, hctx.clone()));
    });
    let conn = Conn::new(
        quic,
        Role::Server,
        ctx.config.max_buffered_streams,
        ctx.config.max_buffered_datagrams,
        Some(handler),
        None,
    );
    if let Err(e) = conn.start(&ctx.settings).await {
        debug!(error = %e, "HTTP/3 setup failed");
        return;
    }
    tokio::select! {
        _ = ctx.shutdown.cancelled() => conn.send_goaway().await,
        _ = conn.quic.closed() => {}
    }
}

fn refuse(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: H3Code) {
    let _ = send.reset(varint(code.0));
    let _ = recv.stop(varint(code.0));
}

async fn respond(
    send: &mut quinn::SendStream,
    status: StatusCode,
    protocol: Option<&str>,
    draft02: bool,
    extra: &http::HeaderMap,
) -> Result<(), quinn::WriteError> {
    let mut block = BytesMut::new();
    headers::encode_response(status, protocol, draft02, extra, &mut block);
    let mut out = BytesMut::new();
    frame::encode_frame(frame::HEADERS, &block, &mut out);
    send.write_all(&out).await
}

async fn handle_request(
    conn: Arc<Conn>,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
    ctx: Arc<Ctx>,
) {
    // Nothing is processed before the client's SETTINGS.
    let Ok(client_settings) = conn.peer_settings().await else {
        return;
    };
    let block = {
        match reader.next().await {
            Ok(Some(Frame::Headers(b))) => b,
            Ok(Some(Frame::WtStream)) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_FRAME_ERROR,
                    "WT_STREAM signal not at the start of a stream",
                ))
            }
            Ok(Some(_)) => {
                return conn.fail(ProtocolError::h3(
                    H3Code::H3_FRAME_UNEXPECTED,
                    "request does not start with HEADERS",
                ))
            }
            Ok(None) => {
                return refuse(&mut send, &mut reader.recv, H3Code::H3_REQUEST_INCOMPLETE);
            }
            Err(ReadFail::Proto(e)) => return conn.fail(e),
            Err(ReadFail::Read(_)) => return,
        }
    };
    let req = match headers::parse_request(&block) {
        Ok(r) => r,
        Err(headers::HeaderError::Qpack(_)) => {
            return conn.fail(ProtocolError::h3(
                H3Code::QPACK_DECOMPRESSION_FAILED,
                "bad request field section",
            ))
        }
        Err(headers::HeaderError::Malformed(what)) => {
            debug!(what, "malformed request");
            return refuse(&mut send, &mut reader.recv, H3Code::H3_MESSAGE_ERROR);
        }
    };
    let sid = quinn::VarInt::from(reader.recv.id()).into_inner();
    let detected = negotiate::detect(
        &req,
        &client_settings,
        &ctx.settings,
        &ctx.config.dialects,
        conn.quic.max_datagram_size().is_some(),
    );
    let dialect = match detected {
        Detected::WebTransport(d) => d,
        Detected::Refuse(status) => {
            debug!(%status, "refusing non-WebTransport request");
            if respond(&mut send, status, None, false, &http::HeaderMap::new())
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
            let _ = reader.recv.stop(varint(H3Code::H3_NO_ERROR.0));
            return;
        }
        Detected::Malformed(code) => {
            debug!("malformed WebTransport request");
            return refuse(&mut send, &mut reader.recv, code);
        }
    };
    let flow = negotiate::session_flow(
        dialect,
        &ctx.settings,
        &client_settings,
        ctx.config.flow_control.as_ref(),
    );
    // Without session flow control a connection carries one session at a time.
    let max_sessions = match flow {
        Some(_) => ctx.config.max_sessions_with_flow_control.max(1),
        None => 1,
    };
    if !conn.try_add_pending(sid, max_sessions) {
        debug!(sid, "surplus session refused");
        return refuse(&mut send, &mut reader.recv, H3Code::H3_REQUEST_REJECTED);
    }
    let info = RequestInfo {
        authority: req.authority.clone().unwrap_or_default(),
        path: req.path.clone().unwrap_or_default(),
        protocol: req.protocol.clone().unwrap_or_default(),
        origin: req.origin(),
        protocols: req.offered_protocols_for(dialect),
        headers: req.headers.clone(),
        dialect,
        peer_addr: conn.quic.remote_address(),
    };
    let request = Request {
        info,
        inner: Some(Pending {
            conn,
            send,
            reader,
            sid,
            flow,
        }),
    };
    tokio::select! {
        r = ctx.tx.send(request) => drop(r),
        _ = ctx.shutdown.cancelled() => {}
    }
}

struct Pending {
    conn: Arc<Conn>,
    send: quinn::SendStream,
    reader: FrameReader,
    sid: u64,
    flow: Option<SessionFlow>,
}

/// A WebTransport request waiting for the application's decision. Dropping it rejects it
/// (405 for the latest dialect, 404 for older ones).
pub struct Request {
    info: RequestInfo,
    inner: Option<Pending>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("info", &self.info).finish()
    }
}

async fn reject_pending(mut p: Pending, status: StatusCode, dialect: Dialect) {
    let status = if status.is_success() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        status
    };
    let draft02 = dialect == Dialect::H3Draft02;
    p.conn.reject_pending(p.sid);
    if respond(&mut p.send, status, None, draft02, &http::HeaderMap::new())
        .await
        .is_ok()
    {
        let _ = p.send.finish();
    }
    let _ = p.reader.recv.stop(varint(H3Code::H3_NO_ERROR.0));
}

impl wt_core::IncomingRequest for Request {
    type Session = Session;

    fn info(&self) -> &RequestInfo {
        &self.info
    }

    async fn accept(mut self, options: AcceptOptions) -> Result<Session, SessionError> {
        let Some(mut p) = self.inner.take() else {
            return Err(SessionError::Connection(wt_core::ConnectionError::Reset));
        };
        if let Some(proto) = &options.protocol {
            if !self.info.protocols.contains(proto) {
                tracing::warn!(protocol = %proto, "selecting a subprotocol the client did not offer");
            }
        }
        let dialect = self.info.dialect;
        let shared = SessionShared::new(
            p.conn.clone(),
            p.sid,
            dialect,
            options.protocol.clone(),
            std::time::Duration::from_secs(2),
            p.flow.take(),
        );
        // In the connection's table before the 2xx leaves: a client opens streams as soon as
        // it has the response, and they may arrive before this task runs again. Registered
        // only afterwards, they would meet an unknown session and its bounded buffer.
        p.conn.register(shared.clone());
        let r = respond(
            &mut p.send,
            StatusCode::OK,
            options.protocol.as_deref(),
            dialect == Dialect::H3Draft02,
            &options.headers,
        )
        .await;
        if let Err(e) = r {
            let e = match e {
                quinn::WriteError::ConnectionLost(e) => {
                    SessionError::Connection(p.conn.map_error(&e))
                }
                quinn::WriteError::Stopped(code) => {
                    SessionError::ResetByPeer(wt_core::WireCode::H3(H3Code(code.into_inner())))
                }
                _ => SessionError::Connection(wt_core::ConnectionError::Reset),
            };
            // Out of the table again; streams it was handed are refused.
            shared.terminate(e.clone());
            return Err(e);
        }
        spawn_session_task(shared.clone(), p.send, p.reader);
        Ok(Session::new(shared))
    }

    async fn reject(mut self, status: StatusCode) {
        if let Some(p) = self.inner.take() {
            reject_pending(p, status, self.info.dialect).await;
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(p) = self.inner.take() {
            let dialect = self.info.dialect;
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(reject_pending(
                    p,
                    negotiate::not_served_status(dialect),
                    dialect,
                ));
            }
        }
    }
}

impl wt_core::Acceptor for Server {
    type Request = Request;

    async fn accept(&self) -> Option<Request> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let mut rx = tokio::select! {
            g = self.requests.lock() => g,
            _ = self.shutdown.cancelled() => return None,
        };
        tokio::select! {
            r = rx.recv() => r,
            _ = self.shutdown.cancelled() => None,
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn shutdown(&self) {
        self.shutdown.cancel();
        self.endpoint.set_server_config(None);
    }
}
