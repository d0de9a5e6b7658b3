//! Our side of the matrix: the checks our clients run against a peer's server, and our test
//! server with a handler that records how each session ended (so a peer client's close code
//! and reason can be checked on the server side).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::timeout;
use wt_core::tls::ClientTls;
use wt_core::{
    AcceptOptions, CompatMode, ConnectError, ConnectRequest, Connector, RecvStream, RequestInfo,
    SendStream, Session, SessionError, StreamId, StreamKind,
};
use wt_testserver::{
    Action, ActionError, CloseReason, EchoConfig, EchoHandler, Handler, Rejection, TerminateReason,
};

use super::matrix::{Outcome, Scenario};

/// Bound on each individual network wait of a check.
pub const STEP: Duration = Duration::from_secs(10);

/// The payloads our clients send.
pub const BIDI_MSG: &[u8] = b"hello bidi from wt";
/// Sent on a client unidirectional stream; the peer answers on its own uni stream.
pub const UNI_MSG: &[u8] = b"hello uni from wt";
/// Sent as a datagram.
pub const DGRAM_MSG: &[u8] = b"hello datagram from wt";
/// The code our clients close with.
pub const OUR_CLOSE_CODE: u32 = 4343;
/// The reason our clients close with.
pub const OUR_CLOSE_REASON: &str = "wt client bye";

/// Runs `f` with the [`STEP`] bound, naming `what` on timeout.
pub async fn step<T>(what: &str, f: impl Future<Output = T>) -> Result<T, String> {
    timeout(STEP, f)
        .await
        .map_err(|_| format!("timed out after {}s waiting for {what}", STEP.as_secs()))
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Bidi echo: write, FIN, read to the end, compare.
pub async fn check_bidi<S: Session>(s: &S) -> Result<(), String> {
    let (mut tx, mut rx) = step("open_bi", s.open_bi())
        .await?
        .map_err(|e| format!("open_bi: {e}"))?;
    tx.write_all(BIDI_MSG)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tx.finish().map_err(|e| format!("finish: {e}"))?;
    let got = step("the bidi echo", rx.read_to_end(1 << 16))
        .await?
        .map_err(|e| format!("reading the echo: {e}"))?;
    if got == BIDI_MSG {
        Ok(())
    } else {
        Err(format!("echo was {}", show(&got)))
    }
}

/// Uni: send on a client uni stream, expect the same bytes on a server uni stream.
pub async fn check_uni<S: Session>(s: &S) -> Result<(), String> {
    let mut tx = step("open_uni", s.open_uni())
        .await?
        .map_err(|e| format!("open_uni: {e}"))?;
    tx.write_all(UNI_MSG)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tx.finish().map_err(|e| format!("finish: {e}"))?;
    let mut rx = step("a server uni stream", s.accept_uni())
        .await?
        .map_err(|e| format!("accept_uni: {e}"))?;
    let got = step("the uni data", rx.read_to_end(1 << 16))
        .await?
        .map_err(|e| format!("reading the server's uni stream {}: {e}", rx.id()))?;
    if got == UNI_MSG {
        Ok(())
    } else {
        Err(format!("server uni stream carried {}", show(&got)))
    }
}

/// Datagram echo, resent up to 10 times (HTTP/3 datagrams may be lost).
pub async fn check_datagram<S: Session>(s: &S) -> Result<(), String> {
    for _ in 0..10 {
        s.send_datagram(Bytes::from_static(DGRAM_MSG))
            .map_err(|e| format!("send_datagram: {e}"))?;
        match timeout(Duration::from_millis(500), s.recv_datagram()).await {
            Ok(Ok(d)) if d == DGRAM_MSG => return Ok(()),
            Ok(Ok(d)) => return Err(format!("echo was {}", show(&d))),
            Ok(Err(e)) => return Err(format!("recv_datagram: {e}")),
            Err(_) => continue,
        }
    }
    Err("no echo after 10 datagrams".into())
}

/// Runs connect (already done by the caller), bidi, uni and datagram on an established
/// session, recording each outcome in `sc`.
pub async fn stream_checks<S: Session>(s: &S, sc: &mut Scenario) {
    sc.set("bidi", Outcome::from_result(check_bidi(s).await));
    sc.set("uni", Outcome::from_result(check_uni(s).await));
    sc.set("datagram", Outcome::from_result(check_datagram(s).await));
}

/// How the peer ended a session, as our side saw it.
pub fn expect_peer_close(err: &SessionError, code: u32, reason: &str) -> Outcome {
    match err {
        SessionError::ClosedByPeer { code: c, reason: r } if *c == code && r == reason => {
            Outcome::Pass
        }
        other => Outcome::Fail(format!(
            "expected the peer's close {code} {reason:?}, got: {other}"
        )),
    }
}

/// Waits (bounded) for the session to end and checks that the peer closed it with
/// `code`/`reason`.
pub async fn check_closed_by_peer<S: Session>(s: &S, code: u32, reason: &str) -> Outcome {
    match step("the peer's close", s.closed()).await {
        Ok(err) => expect_peer_close(&err, code, reason),
        Err(e) => Outcome::Fail(e),
    }
}

/// TLS trusting only this certificate hash.
pub fn pinned(hash: [u8; 32]) -> ClientTls {
    ClientTls {
        webpki_roots: false,
        cert_hashes: vec![hash],
        ..ClientTls::default()
    }
}

/// Our HTTP/3 client.
pub fn h3_client(tls: ClientTls, compat: CompatMode) -> Result<wt_h3::Client, String> {
    wt_h3::Client::new(wt_h3::ClientConfig {
        tls,
        compat,
        connect_timeout: STEP,
        close_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .map_err(|e| format!("creating our HTTP/3 client: {e}"))
}

/// A CONNECT request for `path` on loopback `addr`.
pub fn request(addr: SocketAddr, host: &str, path: &str) -> ConnectRequest {
    ConnectRequest {
        host: host.to_owned(),
        port: addr.port(),
        authority: format!("{host}:{}", addr.port()),
        path: path.to_owned(),
        origin: Some(format!("https://{host}:{}", addr.port())),
        ..ConnectRequest::default()
    }
}

/// Connects (bounded), mapping the error to text.
pub async fn connect<C: Connector>(c: &C, req: &ConnectRequest) -> Result<C::Session, String> {
    match timeout(STEP, c.connect(req)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(connect_error(&e)),
        Err(_) => Err(format!("connect timed out after {}s", STEP.as_secs())),
    }
}

fn connect_error(e: &ConnectError) -> String {
    format!("connect: {e}")
}

/// What a session's end looked like on our server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// WT_CLOSE_SESSION (or a clean FIN of the CONNECT stream: code 0, empty reason).
    PeerClosed(u32, String),
    /// The peer closed the whole connection with an application code and reason (QUIC
    /// CONNECTION_CLOSE / HTTP/2 GOAWAY), without closing the session first.
    ConnectionClosed(u64, String),
    /// Anything else, described.
    Other(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::PeerClosed(c, r) => write!(f, "WT_CLOSE_SESSION {c} {r:?}"),
            Ended::ConnectionClosed(c, r) => write!(f, "connection closed by peer {c} {r:?}"),
            Ended::Other(s) => f.write_str(s),
        }
    }
}

fn ended(reason: &TerminateReason) -> Ended {
    use wt_core::{ConnectionError, WireCode};
    match reason {
        TerminateReason::PeerClosed { code, reason } => Ended::PeerClosed(*code, reason.clone()),
        TerminateReason::Error(SessionError::ClosedByPeer { code, reason }) => {
            Ended::PeerClosed(*code, reason.clone())
        }
        TerminateReason::Error(SessionError::Connection(ConnectionError::ClosedByPeer {
            code,
            reason,
        })) => {
            let c = match code {
                WireCode::H3(c) => c.0,
                WireCode::H2(c) => u64::from(c.0),
                WireCode::Quic(c) => *c,
            };
            Ended::ConnectionClosed(c, reason.clone())
        }
        other => Ended::Other(format!("{other:?}")),
    }
}

/// Shared configuration of [`Recording`]: the echo options and the log of ended sessions
/// (request path, how it ended).
pub struct RecordingConfig {
    echo: EchoConfig,
    log: watch::Sender<Vec<(String, Ended)>>,
}

/// The echo handler, plus a record of how each session ended.
pub struct Recording {
    inner: EchoHandler,
    path: String,
    log: watch::Sender<Vec<(String, Ended)>>,
}

impl Handler for Recording {
    type Config = RecordingConfig;

    fn check_origin(config: &RecordingConfig, request: &RequestInfo, origin: Option<&str>) -> bool {
        EchoHandler::check_origin(&config.echo, request, origin)
    }
    fn init(
        config: &RecordingConfig,
        request: &RequestInfo,
    ) -> Result<(Self, Vec<Action>), Rejection> {
        let (inner, actions) = EchoHandler::init(&config.echo, request)?;
        let path = request.path.clone();
        Ok((
            Recording {
                inner,
                path,
                log: config.log.clone(),
            },
            actions,
        ))
    }
    fn accept_options(&self, request: &RequestInfo) -> AcceptOptions {
        self.inner.accept_options(request)
    }
    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.inner.handle_stream(id, kind, data)
    }
    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.inner.handle_stream_fin(id, kind, data)
    }
    fn handle_datagram(&mut self, data: Bytes) -> Vec<Action> {
        self.inner.handle_datagram(data)
    }
    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        self.inner.handle_stream_opened(kind, id)
    }
    fn handle_stream_closed(&mut self, id: StreamId, reason: CloseReason) -> Vec<Action> {
        self.inner.handle_stream_closed(id, reason)
    }
    fn handle_peer_draining(&mut self) -> Vec<Action> {
        self.inner.handle_peer_draining()
    }
    fn handle_action_failed(&mut self, action: Action, error: ActionError) -> Vec<Action> {
        self.inner.handle_action_failed(action, error)
    }
    fn handle_wake(&mut self, tag: u64, woken: wt_testserver::Woken) -> Vec<Action> {
        self.inner.handle_wake(tag, woken)
    }
    fn terminate(self, reason: TerminateReason) {
        let e = ended(&reason);
        let path = self.path.clone();
        self.log.send_modify(|v| {
            // Bounded: a run has a handful of sessions; keep the last 256.
            if v.len() >= 256 {
                v.remove(0);
            }
            v.push((path, e));
        });
        self.inner.terminate(reason);
    }
}

/// Our echo server with session-end recording.
pub struct OurServer {
    /// The running server.
    pub server: wt_testserver::TestServer<Recording>,
    log: watch::Receiver<Vec<(String, Ended)>>,
}

impl OurServer {
    /// Starts our test server (self-signed ECDSA P-256 14-day certificate) on loopback.
    pub fn start(transports: wt_testserver::Transports) -> Result<OurServer, String> {
        let (tx, rx) = watch::channel(Vec::new());
        let config = wt_testserver::TestServerConfig {
            transports,
            ..Default::default()
        };
        let server = wt_testserver::TestServer::<Recording>::start_with(
            config,
            RecordingConfig {
                echo: EchoConfig::default(),
                log: tx,
            },
        )
        .map_err(|e| format!("starting our test server: {e}"))?;
        Ok(OurServer { server, log: rx })
    }

    /// Starts our handler on a custom acceptor (e.g. an HTTP/2 server in the legacy dialect).
    pub fn serve_on<A: wt_core::Acceptor>(acceptor: A) -> (OurListener, SocketAddr) {
        let (tx, rx) = watch::channel(Vec::new());
        let mut listener = wt_testserver::Listener::<Recording>::new(
            RecordingConfig {
                echo: EchoConfig::default(),
                log: tx,
            },
            wt_testserver::ServeOptions::default(),
        );
        let addr = listener.serve(acceptor);
        (OurListener { listener, log: rx }, addr)
    }

    /// `https://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.server.port())
    }

    /// Waits (bounded) for a session on `path` to end and returns how.
    pub async fn ended(&self, path: &str) -> Result<Ended, String> {
        wait_ended(self.log.clone(), path).await
    }

    /// Stops the server.
    pub async fn stop(self) {
        let _ = timeout(Duration::from_secs(3), self.server.stop()).await;
    }
}

/// A [`Recording`] listener on a custom acceptor.
pub struct OurListener {
    listener: wt_testserver::Listener<Recording>,
    log: watch::Receiver<Vec<(String, Ended)>>,
}

impl OurListener {
    /// Waits (bounded) for a session on `path` to end and returns how.
    pub async fn ended(&self, path: &str) -> Result<Ended, String> {
        wait_ended(self.log.clone(), path).await
    }

    /// Stops the listener.
    pub async fn stop(self) {
        let _ = timeout(Duration::from_secs(3), self.listener.shutdown()).await;
    }
}

async fn wait_ended(
    mut log: watch::Receiver<Vec<(String, Ended)>>,
    path: &str,
) -> Result<Ended, String> {
    let got = step(
        &format!("our server to see the session on {path} end"),
        log.wait_for(|v| v.iter().any(|(p, _)| p == path)),
    )
    .await?
    .map_err(|_| "the server's log went away".to_owned())?;
    Ok(got
        .iter()
        .rev()
        .find(|(p, _)| p == path)
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| Ended::Other("no record".into())))
}

/// Checks what our server saw against the peer's close `code`/`reason`.
pub fn expect_ended(got: Result<Ended, String>, code: u32, reason: &str) -> Outcome {
    match got {
        Ok(Ended::PeerClosed(c, r)) if c == code && r == reason => Outcome::Pass,
        Ok(other) => Outcome::Fail(format!(
            "our server expected the peer's WT_CLOSE_SESSION {code} {reason:?}, saw {other}"
        )),
        Err(e) => Outcome::Fail(e),
    }
}

/// For a server that closes after its first bidi echo: sends the bidi message, then checks
/// the server's close. The echo may be lost to the close (a session's streams are aborted when
/// it ends), which is noted, not failed.
pub async fn bidi_then_closed<S: Session>(s: &S, code: u32, reason: &str) -> Outcome {
    let echo = check_bidi(s).await;
    match (check_closed_by_peer(s, code, reason).await, echo) {
        (Outcome::Pass, Err(e)) => Outcome::PassNote(format!(
            "the bidi echo before the close was lost to the close ({e})"
        )),
        (o, _) => o,
    }
}
