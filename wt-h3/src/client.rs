//! The client: one QUIC connection per session, as Chromium does.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use wt_core::codes::H3Code;
use wt_core::{ConnectError, ConnectRequest, ProtocolError};

use crate::config::ClientConfig;
use crate::conn::negotiate::{self, ClientCheckError};
use crate::driver::{varint, Conn, FrameReader, ReadFail};
use crate::proto::frame::{self, Frame, StreamKind};
use crate::proto::headers::{self, RequestParts};
use crate::proto::stream_type::Role;
use crate::session::{spawn_session_task, Session, SessionShared};

/// A WebTransport-over-HTTP/3 client.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    quic: quinn::ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("compat", &self.config.compat)
            .finish()
    }
}

impl Client {
    /// Builds a client (TLS configuration is checked here).
    pub fn new(config: ClientConfig) -> Result<Client, ConnectError> {
        let tls = config.tls.build(&[b"h3"], false)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|_| {
            ConnectError::Tls(rustls::Error::General(
                "no QUIC-compatible cipher suite".into(),
            ))
        })?;
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        quic.transport_config(
            config
                .quic
                .transport(config.max_idle_timeout, config.keep_alive_interval),
        );
        Ok(Client {
            config: Arc::new(config),
            quic,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    async fn connect_inner(&self, req: &ConnectRequest) -> Result<Session, ConnectError> {
        let wt_core::RequestTarget { authority, path } = req.target()?;
        let host = req.bare_host();
        let addr = tokio::net::lookup_host((host, req.port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                source: Arc::new(e),
            })?
            .next()
            .ok_or_else(|| ConnectError::Resolve {
                host: host.to_owned(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                )),
            })?;
        let mut bind = self.config.bind;
        if bind.ip().is_unspecified() && bind.port() == 0 && bind.is_ipv4() != addr.is_ipv4() {
            bind = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
            };
        }
        let endpoint =
            crate::udp::endpoint(bind, None).map_err(|e| ConnectError::Io(Arc::new(e)))?;
        let connecting = endpoint
            .connect_with(self.quic.clone(), addr, host)
            .map_err(|e| {
                ConnectError::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e,
                )))
            })?;
        let quic = connecting.await.map_err(handshake_error)?;
        let conn = Conn::new(
            quic,
            Role::Client,
            wt_core::limits::MAX_BUFFERED_STREAMS,
            wt_core::limits::MAX_BUFFERED_DATAGRAMS,
            None,
            Some(endpoint),
        );
        let mut guard = CloseOnDrop(Some(conn.clone()));
        let r = self.handshake(&conn, req, &authority, &path).await;
        if r.is_ok() {
            guard.0 = None;
        }
        r
    }

    async fn handshake(
        &self,
        conn: &Arc<Conn>,
        req: &ConnectRequest,
        authority: &str,
        path: &str,
    ) -> Result<Session, ConnectError> {
        let setup_err = |conn: &Conn, e: wt_core::ConnectionError| match conn.local_error() {
            Some(pe) => ConnectError::Protocol(pe),
            None => ConnectError::Connection(e),
        };
        let ours =
            negotiate::client_settings_with(self.config.compat, self.config.flow_control.as_ref());
        conn.start(&ours).await.map_err(|e| setup_err(conn, e))?;
        let settings = conn.peer_settings().await.map_err(|e| setup_err(conn, e))?;
        let dialect = match negotiate::check_server_settings(
            self.config.compat,
            &settings,
            conn.quic.max_datagram_size().is_some(),
        ) {
            Ok(d) => d,
            Err(ClientCheckError::Missing(m)) => {
                conn.fail(ProtocolError::h3(
                    H3Code::WT_REQUIREMENTS_NOT_MET,
                    "server lacks WebTransport settings",
                ));
                return Err(ConnectError::MissingSetting(m));
            }
            Err(ClientCheckError::Protocol(e)) => {
                conn.fail(e.clone());
                return Err(ConnectError::Protocol(e));
            }
        };
        if conn.goaway.is_cancelled() {
            return Err(ConnectError::GoingAway);
        }
        let (mut send, recv) = conn
            .quic
            .open_bi()
            .await
            .map_err(|e| setup_err(conn, conn.map_error(&e)))?;
        let sid = quinn::VarInt::from(send.id()).into_inner();
        conn.add_pending(sid);
        let (protocol, draft02) = negotiate::request_protocol(dialect);
        let mut block = BytesMut::new();
        headers::encode_request(
            &RequestParts {
                protocol,
                authority,
                path,
                origin: req.origin.as_deref(),
                draft02,
                protocols: &req.protocols,
                headers: &req.headers,
            },
            &mut block,
        );
        let mut out = BytesMut::new();
        frame::encode_frame(frame::HEADERS, &block, &mut out);
        send.write_all(&out).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => setup_err(conn, conn.map_error(&e)),
            _ => ConnectError::Connection(wt_core::ConnectionError::Reset),
        })?;
        let mut reader = FrameReader::new(recv, BytesMut::new(), StreamKind::Request);
        let block = loop {
            match reader.next().await {
                Ok(Some(Frame::Headers(b))) => break b,
                Ok(Some(Frame::Data(_))) | Ok(Some(Frame::WtStream)) | Ok(None) => {
                    let e =
                        ProtocolError::h3(H3Code::H3_FRAME_UNEXPECTED, "response without HEADERS");
                    conn.fail(e.clone());
                    return Err(ConnectError::Protocol(e));
                }
                Ok(Some(_)) => {}
                Err(ReadFail::Proto(e)) => {
                    conn.fail(e.clone());
                    return Err(ConnectError::Protocol(e));
                }
                Err(ReadFail::Read(quinn::ReadError::ConnectionLost(e))) => {
                    return Err(setup_err(conn, conn.map_error(&e)))
                }
                Err(ReadFail::Read(quinn::ReadError::Reset(code))) => {
                    return Err(ConnectError::Protocol(ProtocolError::h3(
                        H3Code(code.into_inner()),
                        "server reset the CONNECT stream",
                    )))
                }
                Err(ReadFail::Read(_)) => {
                    return Err(ConnectError::Connection(wt_core::ConnectionError::Reset))
                }
            }
        };
        let resp = match headers::parse_response(&block) {
            Ok(r) => r,
            Err(headers::HeaderError::Qpack(_)) => {
                let e = ProtocolError::h3(
                    H3Code::QPACK_DECOMPRESSION_FAILED,
                    "bad response field section",
                );
                conn.fail(e.clone());
                return Err(ConnectError::Protocol(e));
            }
            Err(headers::HeaderError::Malformed(what)) => {
                let _ = send.reset(varint(H3Code::H3_MESSAGE_ERROR.0));
                let _ = reader.recv.stop(varint(H3Code::H3_MESSAGE_ERROR.0));
                return Err(ConnectError::BadResponse(what));
            }
        };
        if !resp.status.is_success() {
            conn.reject_pending(sid);
            return Err(ConnectError::Rejected {
                status: resp.status,
            });
        }
        let selected = resp.selected_protocol_for(dialect);
        if let Some(p) = &selected {
            if !req.protocols.contains(p) {
                let _ = send.reset(varint(H3Code::WT_ALPN_ERROR.0));
                let _ = reader.recv.stop(varint(H3Code::WT_ALPN_ERROR.0));
                conn.reject_pending(sid);
                return Err(ConnectError::UnexpectedProtocol(p.clone()));
            }
        }
        let flow =
            negotiate::session_flow(dialect, &ours, &settings, self.config.flow_control.as_ref());
        let shared = SessionShared::new(
            conn.clone(),
            sid,
            dialect,
            selected,
            self.config.close_timeout,
            flow,
        );
        conn.register(shared.clone());
        spawn_session_task(shared.clone(), send, reader);
        Ok(Session::new(shared))
    }
}

fn handshake_error(e: quinn::ConnectionError) -> ConnectError {
    use quinn::ConnectionError as Q;
    let crypto = |code: quinn::TransportErrorCode| {
        let c = u64::from(code);
        (0x100..0x200).contains(&c)
    };
    match &e {
        Q::TransportError(t) if crypto(t.code) => {
            ConnectError::Tls(rustls::Error::General(t.reason.clone()))
        }
        Q::ConnectionClosed(c) if crypto(c.error_code) => ConnectError::Tls(
            rustls::Error::General(String::from_utf8_lossy(&c.reason).into_owned()),
        ),
        Q::TimedOut => ConnectError::Connection(wt_core::ConnectionError::TimedOut),
        Q::ApplicationClosed(c) => {
            ConnectError::Connection(wt_core::ConnectionError::ClosedByPeer {
                code: wt_core::WireCode::H3(H3Code(c.error_code.into_inner())),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            })
        }
        Q::ConnectionClosed(c) => {
            ConnectError::Connection(wt_core::ConnectionError::ClosedByPeer {
                code: wt_core::WireCode::Quic(u64::from(c.error_code)),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            })
        }
        _ => ConnectError::Connection(wt_core::ConnectionError::Reset),
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

/// Closes a half-established connection if the connect fails or is cancelled (timeout).
struct CloseOnDrop(Option<Arc<Conn>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if c.local_error().is_none() {
                c.close_ok();
            }
        }
    }
}
