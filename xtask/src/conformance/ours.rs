//! Our side of the suite: the embedded `wt-testserver` (echo handler over HTTP/3 and HTTP/2,
//! plus deliberately broken variants for the suite's own tests) and our clients
//! (`wt_h3::Client`, `wt_h2::Client`) configured for a case.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use wt_core::tls::{ClientTls, ServerTls};
use wt_core::{
    CompatMode, ConnectError, ConnectRequest, Connector, Dialect, RequestInfo, StreamId, StreamKind,
};
use wt_testserver::{
    Action, ActionError, CloseReason, EchoConfig, EchoHandler, Handler, Listener, Rejection,
    ServeOptions, TerminateReason, Woken,
};

use super::ctx::{Context, Ctx, Dl, Target, Tp, Verdict};

/// Marker of embedded mode (the suite started the server, so client-behaviour cases that
/// need a raw misbehaving server can run).
#[derive(Debug, Clone)]
pub struct Embedded;

/// Which server the suite embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVariant {
    /// The echo server with the documented conventions.
    Echo,
    /// Broken on purpose: echoes a client bidi stream on a new server stream.
    #[cfg_attr(not(test), allow(dead_code))]
    WrongBidiEcho,
    /// Broken on purpose: the "latest" HTTP/2 server uses the legacy WT_STREAM FIN mapping.
    H2LegacyFinAsLatest,
    /// Broken on purpose: the echo server whose application misreports what the client did
    /// (reset and STOP_SENDING codes + 1, close codes + 1), so its observations lie.
    #[cfg_attr(not(test), allow(dead_code))]
    LyingEcho,
}

/// A running embedded server.
pub struct EmbeddedServer {
    h3_addr: SocketAddr,
    h2_addr: SocketAddr,
    h2_legacy_addr: SocketAddr,
    cert_hash: [u8; 32],
    stop: Stop,
}

enum Stop {
    Echo(Listener<EchoHandler>),
    Wrong(Listener<WrongBidiEcho>),
    Lying(Listener<LyingEcho>),
}

/// The embedded HTTP/3 server's session flow control: small enough that the flow-control
/// cases (FC-1, FC-3, MS-4) can reach every limit quickly. WT_MAX_DATA is below one QUIC
/// packet's payload, so FC-3 can deliver `max_data + 1` bytes in a single packet: the server
/// sees the whole overrun before its application could consume anything and re-grant credit.
/// (Our own clients don't enable session flow control by default, so this doesn't slow the
/// other cases.)
pub const H3_FLOW: wt_h3::FlowControlConfig = wt_h3::FlowControlConfig {
    max_data: 1000,
    max_streams_bidi: 10,
    max_streams_uni: 10,
};

/// The embedded HTTP/2 servers' credit. The session limit (256 KiB) is below the bidi
/// per-stream limits (1 MiB) so one WT_STREAM capsule can cross the session limit alone
/// (X-H2-3), and the uni per-stream limit (64 KiB) is below the session limit so FC-8 crosses
/// the per-stream limit alone.
pub const H2_FLOW: wt_h2::FlowConfig = wt_h2::FlowConfig {
    max_data: 256 << 10,
    max_stream_data_uni: 64 << 10,
    max_stream_data_bidi_local: 1 << 20,
    max_stream_data_bidi_remote: 1 << 20,
    max_streams_uni: 100,
    max_streams_bidi: 100,
};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

impl EmbeddedServer {
    /// Starts the variant on 127.0.0.1 (HTTP/3, HTTP/2 latest, HTTP/2 legacy).
    pub async fn start(variant: ServerVariant) -> Result<Self, String> {
        let tls = ServerTls::self_signed(&["localhost", "127.0.0.1"])
            .map_err(|e| format!("certificate: {e}"))?;
        let cert_hash = tls.cert_hash();
        let mut h3_cfg = wt_h3::ServerConfig::new(tls.clone(), loopback());
        h3_cfg.flow_control = Some(H3_FLOW);
        let h3 = wt_h3::Server::bind(h3_cfg).map_err(|e| format!("HTTP/3 server: {e}"))?;
        let mut h2_cfg = wt_h2::ServerConfig::new(tls.clone(), loopback());
        h2_cfg.flow = H2_FLOW;
        if variant == ServerVariant::H2LegacyFinAsLatest {
            h2_cfg.capsule_options = Some(wt_core::capsule::CapsuleOptions {
                fin_mapping: wt_core::capsule::FinMapping::Legacy,
                ..Default::default()
            });
        }
        let h2 = wt_h2::Server::bind(h2_cfg).map_err(|e| format!("HTTP/2 server: {e}"))?;
        let mut legacy_cfg = wt_h2::ServerConfig::new(tls, loopback());
        legacy_cfg.dialect = Dialect::H2Legacy;
        legacy_cfg.flow = H2_FLOW;
        let h2_legacy =
            wt_h2::Server::bind(legacy_cfg).map_err(|e| format!("HTTP/2 legacy server: {e}"))?;
        let (h3_addr, h2_addr, h2_legacy_addr) =
            (h3.local_addr(), h2.local_addr(), h2_legacy.local_addr());
        let stop = match variant {
            ServerVariant::Echo | ServerVariant::H2LegacyFinAsLatest => {
                let mut l =
                    Listener::<EchoHandler>::new(EchoConfig::default(), ServeOptions::default());
                l.serve(h3);
                l.serve(h2);
                l.serve(h2_legacy);
                Stop::Echo(l)
            }
            ServerVariant::WrongBidiEcho => {
                let mut l = Listener::<WrongBidiEcho>::new((), ServeOptions::default());
                l.serve(h3);
                l.serve(h2);
                l.serve(h2_legacy);
                Stop::Wrong(l)
            }
            ServerVariant::LyingEcho => {
                let mut l =
                    Listener::<LyingEcho>::new(EchoConfig::default(), ServeOptions::default());
                l.serve(h3);
                l.serve(h2);
                l.serve(h2_legacy);
                Stop::Lying(l)
            }
        };
        Ok(EmbeddedServer {
            h3_addr,
            h2_addr,
            h2_legacy_addr,
            cert_hash,
            stop,
        })
    }

    /// The target describing this server.
    pub fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            h3_addr: self.h3_addr,
            h2_addr: self.h2_addr,
            h2_legacy_addr: self.h2_legacy_addr,
            authority: "localhost".into(),
            prefix: String::new(),
            tls: pinned(self.cert_hash),
            embedded: Some(Embedded),
            h2_settings: Default::default(),
        }
    }

    /// Stops the server.
    pub async fn stop(self) {
        let grace = std::time::Duration::from_millis(200);
        match self.stop {
            Stop::Echo(l) => {
                l.shutdown_with(grace).await;
            }
            Stop::Wrong(l) => {
                l.shutdown_with(grace).await;
            }
            Stop::Lying(l) => {
                l.shutdown_with(grace).await;
            }
        }
    }
}

/// Client TLS trusting exactly the certificate with `hash`.
pub fn pinned(hash: [u8; 32]) -> ClientTls {
    ClientTls {
        webpki_roots: false,
        cert_hashes: vec![hash],
        ..ClientTls::default()
    }
}

fn compat(dl: Dl) -> CompatMode {
    match dl {
        Dl::Latest => CompatMode::Latest,
        Dl::Legacy => CompatMode::LegacyBrowserCompat,
    }
}

/// Our HTTP/3 client for the case's dialect, trusting the target.
pub fn h3_client(cx: &Ctx) -> Result<wt_h3::Client, Verdict> {
    h3_client_tls(cx, cx.target.tls.clone())
}

/// Our HTTP/2 client for the case's dialect, trusting the target.
pub fn h2_client(cx: &Ctx) -> Result<wt_h2::Client, Verdict> {
    h2_client_tls(cx, cx.target.tls.clone())
}

/// Our HTTP/3 client trusting only the certificate `hash` (a raw server).
pub fn h3_client_pinned(cx: &Ctx, hash: [u8; 32]) -> Result<wt_h3::Client, Verdict> {
    h3_client_tls(cx, pinned(hash))
}

/// Our HTTP/2 client trusting only the certificate `hash` (a raw server).
pub fn h2_client_pinned(cx: &Ctx, hash: [u8; 32]) -> Result<wt_h2::Client, Verdict> {
    h2_client_tls(cx, pinned(hash))
}

fn h3_client_tls(cx: &Ctx, tls: ClientTls) -> Result<wt_h3::Client, Verdict> {
    wt_h3::Client::new(wt_h3::ClientConfig {
        tls,
        compat: compat(cx.dl),
        connect_timeout: cx.timeout,
        ..Default::default()
    })
    .ctx("creating our HTTP/3 client")
}

fn h2_client_tls(cx: &Ctx, tls: ClientTls) -> Result<wt_h2::Client, Verdict> {
    wt_h2::Client::new(wt_h2::ClientConfig {
        tls,
        compat: compat(cx.dl),
        connect_timeout: cx.timeout,
        ..Default::default()
    })
    .ctx("creating our HTTP/2 client")
}

/// A request for `path` on the target over the case's transport.
pub fn request(cx: &Ctx, path: &str) -> ConnectRequest {
    let addr = match cx.tp {
        Tp::H3 => cx.target.h3_addr,
        Tp::H2 => cx.h2_addr(),
    };
    ConnectRequest {
        host: cx.target.host.clone(),
        port: addr.port(),
        authority: cx.target.authority.clone(),
        path: cx.path(path),
        origin: Some(cx.origin()),
        ..Default::default()
    }
}

/// A request for `path` to a raw server on `addr`.
pub fn request_to(addr: SocketAddr, path: &str) -> ConnectRequest {
    ConnectRequest {
        host: addr.ip().to_string(),
        port: addr.port(),
        authority: format!("localhost:{}", addr.port()),
        path: path.into(),
        origin: Some("https://localhost".into()),
        ..Default::default()
    }
}

/// Connects our client to `path`: `Some(status)` if the server rejected it, `None` if it
/// accepted.
pub async fn connect_status(cx: &Ctx, path: &str) -> Result<Option<u16>, Verdict> {
    async fn go<C: Connector>(cx: &Ctx, c: C, path: &str) -> Result<Option<u16>, Verdict> {
        match cx
            .within("our client's connect", c.connect(&request(cx, path)))
            .await?
        {
            Ok(_) => Ok(None),
            Err(ConnectError::Rejected { status }) => Ok(Some(status.as_u16())),
            Err(e) => Err(Verdict::Fail(format!(
                "our client: expected a rejection, got {e}"
            ))),
        }
    }
    match cx.tp {
        Tp::H3 => go(cx, h3_client(cx)?, path).await,
        Tp::H2 => go(cx, h2_client(cx)?, path).await,
    }
}

/// Broken on purpose: collects a client bidi stream up to its FIN and sends it back on a new
/// server-opened bidi stream (the same stream must be used). Everything else is ignored.
#[derive(Default)]
pub struct WrongBidiEcho {
    pending: HashMap<StreamId, Vec<u8>>,
    queue: VecDeque<Vec<u8>>,
}

impl Handler for WrongBidiEcho {
    type Config = ();

    fn init(_: &(), _request: &RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
        Ok((WrongBidiEcho::default(), Vec::new()))
    }

    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        if kind == StreamKind::Bidi && id.is_client_initiated() {
            self.pending.entry(id).or_default().extend_from_slice(&data);
        }
        Vec::new()
    }

    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        if kind != StreamKind::Bidi || !id.is_client_initiated() {
            return Vec::new();
        }
        let mut buf = self.pending.remove(&id).unwrap_or_default();
        buf.extend_from_slice(&data);
        self.queue.push_back(buf);
        vec![
            Action::CloseStream(id),
            Action::OpenStream(StreamKind::Bidi),
        ]
    }

    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        match (kind, self.queue.pop_front()) {
            (StreamKind::Bidi, Some(buf)) => vec![Action::SendFin(id, Bytes::from(buf))],
            _ => Vec::new(),
        }
    }
}

/// Broken on purpose: the echo handler, told the wrong codes (+1) for the client's resets,
/// STOP_SENDINGs and closes, so the observations it records lie.
pub struct LyingEcho(EchoHandler);

impl Handler for LyingEcho {
    type Config = EchoConfig;

    fn check_origin(config: &EchoConfig, request: &RequestInfo, origin: Option<&str>) -> bool {
        EchoHandler::check_origin(config, request, origin)
    }

    fn init(config: &EchoConfig, request: &RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
        EchoHandler::init(config, request).map(|(h, a)| (LyingEcho(h), a))
    }

    fn accept_options(&self, request: &RequestInfo) -> wt_core::AcceptOptions {
        self.0.accept_options(request)
    }

    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.0.handle_stream(id, kind, data)
    }

    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.0.handle_stream_fin(id, kind, data)
    }

    fn handle_datagram(&mut self, data: Bytes) -> Vec<Action> {
        self.0.handle_datagram(data)
    }

    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        self.0.handle_stream_opened(kind, id)
    }

    fn handle_stream_closed(&mut self, id: StreamId, reason: CloseReason) -> Vec<Action> {
        let lie = match reason {
            CloseReason::Reset(c) => CloseReason::Reset(c.wrapping_add(1)),
            CloseReason::StopSending(c) => CloseReason::StopSending(c.wrapping_add(1)),
            other => other,
        };
        self.0.handle_stream_closed(id, lie)
    }

    fn handle_peer_draining(&mut self) -> Vec<Action> {
        self.0.handle_peer_draining()
    }

    fn handle_wake(&mut self, tag: u64, woken: Woken) -> Vec<Action> {
        self.0.handle_wake(tag, woken)
    }

    fn handle_action_failed(&mut self, action: Action, error: ActionError) -> Vec<Action> {
        self.0.handle_action_failed(action, error)
    }

    fn terminate(self, reason: TerminateReason) {
        let lie = match reason {
            TerminateReason::PeerClosed { code, reason } => TerminateReason::PeerClosed {
                code: code.wrapping_add(1),
                reason,
            },
            other => other,
        };
        self.0.terminate(lie)
    }
}
