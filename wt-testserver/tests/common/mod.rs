//! Shared test support: a client of the in-memory transport (`wt_core::testsuite::mock`) and a
//! scripted, recording handler.
#![allow(dead_code)]

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::mpsc;
use wt_core::testsuite::mock::{self, MockAcceptor, MockConfig, MockConnector, MockSession};
use wt_core::{ConnectError, RequestInfo, StreamId, StreamKind, TransportKind};
use wt_testserver::{Action, ActionError, CloseReason, Handler, Rejection, TerminateReason};

/// A client of the in-memory network that connects by path and reports a rejection as its
/// status.
#[derive(Clone)]
pub struct MockClient(MockConnector);

impl MockClient {
    /// Connects to `path`; `Err(status)` if rejected (503 when the server is gone).
    pub async fn connect(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<MockSession, StatusCode> {
        self.0
            .connect_path(path, origin)
            .await
            .map_err(|e| match e {
                ConnectError::Rejected { status } => status,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            })
    }
}

/// A connected client/acceptor pair over the in-memory transport.
pub fn network(transport: TransportKind) -> (MockClient, MockAcceptor) {
    network_with(MockConfig::new(transport))
}

/// [`network`] with a configuration of its own.
pub fn network_with(config: MockConfig) -> (MockClient, MockAcceptor) {
    let (connector, acceptor) = mock::network(config);
    (MockClient(connector), acceptor)
}

/// What the [`Recorder`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Init(String),
    Stream(StreamId, StreamKind, Bytes),
    Fin(StreamId, StreamKind),
    Datagram(Bytes),
    Opened(StreamKind, StreamId),
    Closed(StreamId, CloseReason),
    Draining,
    Failed(Action, String),
    Terminate(String),
}

/// Configuration of the [`Recorder`]: where to report.
pub struct RecConfig {
    pub events: mpsc::UnboundedSender<Ev>,
}

/// A handler that reports every callback and performs actions scripted by datagrams:
///
/// * `open bidi` / `open uni` → `OpenStream`
/// * `send <id> <text>` / `fin <id> <text>` → `Send` / `SendFin`
/// * `close-stream <id>`, `reset <id> <code>`, `stop <id> <code>`
/// * `drain`, `stop`, `close <code> <reason>`
/// * `big` → a 5000-byte datagram (fails), `panic` → panics
/// * anything else is echoed as a datagram.
///
/// Stream data is recorded, not echoed. On `/panic-init` `init` panics; on `/deny` it rejects
/// with 451.
pub struct Recorder {
    events: mpsc::UnboundedSender<Ev>,
}

impl Recorder {
    fn note(&self, ev: Ev) {
        let _ = self.events.send(ev);
    }
}

fn id(s: &str) -> StreamId {
    StreamId(s.parse().expect("stream id"))
}

impl Handler for Recorder {
    type Config = RecConfig;

    fn init(config: &RecConfig, request: &RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
        match request.path.as_str() {
            "/panic-init" => panic!("init panics on request"),
            "/deny" => {
                return Err(Rejection::new(
                    http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                ))
            }
            _ => {}
        }
        let _ = config.events.send(Ev::Init(request.path.clone()));
        Ok((
            Recorder {
                events: config.events.clone(),
            },
            Vec::new(),
        ))
    }

    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.note(Ev::Stream(id, kind, data));
        Vec::new()
    }

    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        assert!(data.is_empty());
        self.note(Ev::Fin(id, kind));
        Vec::new()
    }

    fn handle_datagram(&mut self, data: Bytes) -> Vec<Action> {
        let text = String::from_utf8_lossy(&data).into_owned();
        let words: Vec<&str> = text.splitn(3, ' ').collect();
        let actions = match words.as_slice() {
            ["open", "bidi"] => vec![Action::OpenStream(StreamKind::Bidi)],
            ["open", "uni"] => vec![Action::OpenStream(StreamKind::Uni)],
            ["send", s, t] => vec![Action::Send(id(s), Bytes::from(t.to_string()))],
            ["fin", s, t] => vec![Action::SendFin(id(s), Bytes::from(t.to_string()))],
            ["close-stream", s] => vec![Action::CloseStream(id(s))],
            ["reset", s, c] => vec![Action::ResetStream(id(s), c.parse().unwrap())],
            ["stop", s, c] => vec![Action::StopSending(id(s), c.parse().unwrap())],
            ["drain"] => vec![Action::Drain],
            ["stop"] => vec![Action::Stop],
            ["close", c, r] => vec![Action::CloseSession(c.parse().unwrap(), r.to_string())],
            ["big"] => vec![Action::SendDatagram(Bytes::from(vec![0u8; 5000]))],
            ["panic"] => panic!("handler panics on request"),
            _ => vec![Action::SendDatagram(data.clone())],
        };
        self.note(Ev::Datagram(data));
        actions
    }

    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        self.note(Ev::Opened(kind, id));
        Vec::new()
    }

    fn handle_stream_closed(&mut self, id: StreamId, reason: CloseReason) -> Vec<Action> {
        self.note(Ev::Closed(id, reason));
        Vec::new()
    }

    fn handle_peer_draining(&mut self) -> Vec<Action> {
        self.note(Ev::Draining);
        Vec::new()
    }

    fn handle_action_failed(&mut self, action: Action, error: ActionError) -> Vec<Action> {
        self.note(Ev::Failed(action, format!("{error:?}")));
        Vec::new()
    }

    fn terminate(self, reason: TerminateReason) {
        self.note(Ev::Terminate(format!("{reason:?}")));
    }
}

/// Runs `fut` with a 20-second bound, so a hang fails instead of blocking the suite.
pub async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(20), fut)
        .await
        .expect("test step timed out")
}

/// Receives the next event, bounded in time.
pub async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    within(rx.recv()).await.expect("event channel closed")
}

/// Receives events until one matches `pred`, returning it (the others are discarded).
pub async fn until(rx: &mut mpsc::UnboundedReceiver<Ev>, pred: impl Fn(&Ev) -> bool) -> Ev {
    loop {
        let ev = next(rx).await;
        if pred(&ev) {
            return ev;
        }
    }
}
