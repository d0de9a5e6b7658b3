//! An in-memory WebTransport transport implementing the wt-core traits, so the session runner
//! and the listener can be tested without sockets (and without the HTTP/3 / HTTP/2 backends).
//!
//! Both ends of a session are [`MockSession`]s; streams are pairs of unbounded pipes. The
//! semantics follow the `wt_core::transport` docs closely enough for the runner: FIN, reset,
//! STOP_SENDING (dropping an unfinished receive half stops it with code 0), close with code and
//! reason, drain, datagrams with a size limit.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_util::sync::CancellationToken;
use wt_core::{
    AcceptOptions, Acceptor, Dialect, IncomingRequest, RecvStream, RequestInfo, SendStream,
    Session, SessionError, SessionInfo, SessionStats, StreamError, StreamId, TransportKind,
};

/// Largest datagram the mock carries.
pub const MAX_DATAGRAM: usize = 1200;

#[derive(Clone, Debug)]
struct Closure {
    by: usize,
    code: u32,
    reason: String,
}

fn session_error(closure: &Closure, side: usize) -> SessionError {
    if closure.by == side {
        SessionError::ClosedLocally {
            code: closure.code,
            reason: closure.reason.clone(),
        }
    } else {
        SessionError::ClosedByPeer {
            code: closure.code,
            reason: closure.reason.clone(),
        }
    }
}

async fn wait_closed(rx: &mut watch::Receiver<Option<Closure>>, side: usize) -> SessionError {
    loop {
        if let Some(c) = rx.borrow_and_update().as_ref() {
            return session_error(c, side);
        }
        if rx.changed().await.is_err() {
            return SessionError::ClosedByPeer {
                code: 0,
                reason: String::new(),
            };
        }
    }
}

enum Chunk {
    Data(Bytes),
    Fin,
    Reset(u32),
}

/// Send half of a mock stream.
pub struct PipeSend {
    id: StreamId,
    side: usize,
    tx: mpsc::UnboundedSender<Chunk>,
    stop: watch::Receiver<Option<u32>>,
    closed: watch::Receiver<Option<Closure>>,
    done: bool,
}

/// Receive half of a mock stream.
pub struct PipeRecv {
    id: StreamId,
    side: usize,
    rx: mpsc::UnboundedReceiver<Chunk>,
    buf: Bytes,
    stop: watch::Sender<Option<u32>>,
    closed: watch::Receiver<Option<Closure>>,
    ended: bool,
}

fn pipe(
    id: StreamId,
    from: usize,
    closed: &watch::Receiver<Option<Closure>>,
) -> (PipeSend, PipeRecv) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None);
    (
        PipeSend {
            id,
            side: from,
            tx,
            stop: stop_rx,
            closed: closed.clone(),
            done: false,
        },
        PipeRecv {
            id,
            side: 1 - from,
            rx,
            buf: Bytes::new(),
            stop: stop_tx,
            closed: closed.clone(),
            ended: false,
        },
    )
}

impl PipeSend {
    fn check(&self) -> Result<(), StreamError> {
        if self.done {
            return Err(StreamError::ClosedLocally);
        }
        if let Some(c) = *self.stop.borrow() {
            return Err(StreamError::Stopped(Some(c)));
        }
        if let Some(c) = self.closed.borrow().as_ref() {
            return Err(StreamError::SessionGone(session_error(c, self.side)));
        }
        Ok(())
    }
}

impl SendStream for PipeSend {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        self.write_chunk(Bytes::copy_from_slice(buf)).await?;
        Ok(buf.len())
    }

    async fn write_chunk(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.check()?;
        self.tx
            .send(Chunk::Data(data))
            .map_err(|_| StreamError::Stopped(Some(0)))
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.check()?;
        self.done = true;
        let _ = self.tx.send(Chunk::Fin);
        Ok(())
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        if self.done {
            return Err(StreamError::ClosedLocally);
        }
        self.done = true;
        let _ = self.tx.send(Chunk::Reset(code));
        Ok(())
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        loop {
            if let Some(c) = *self.stop.borrow_and_update() {
                return Ok(Some(c));
            }
            if self.done {
                return Ok(None);
            }
            if let Some(c) = self.closed.borrow().as_ref() {
                return Err(StreamError::SessionGone(session_error(c, self.side)));
            }
            tokio::select! {
                r = self.stop.changed() => if r.is_err() { return Ok(Some(0)) },
                _ = self.closed.changed() => {}
            }
        }
    }
}

impl Drop for PipeSend {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Chunk::Fin);
        }
    }
}

impl RecvStream for PipeRecv {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        if !self.buf.is_empty() {
            let n = max.min(self.buf.len());
            return Ok(Some(self.buf.split_to(n)));
        }
        if self.ended {
            return Ok(None);
        }
        let chunk = tokio::select! {
            biased;
            c = self.rx.recv() => c,
            e = wait_closed(&mut self.closed, self.side) => return Err(StreamError::SessionGone(e)),
        };
        match chunk {
            Some(Chunk::Data(mut d)) => {
                let n = max.min(d.len());
                self.buf = d.split_off(n);
                Ok(Some(d))
            }
            Some(Chunk::Fin) | None => {
                self.ended = true;
                Ok(None)
            }
            Some(Chunk::Reset(code)) => {
                self.ended = true;
                Err(StreamError::Reset(Some(code)))
            }
        }
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.ended = true;
        let _ = self.stop.send(Some(code));
        Ok(())
    }
}

impl Drop for PipeRecv {
    fn drop(&mut self) {
        if !self.ended && self.stop.borrow().is_none() {
            let _ = self.stop.send(Some(0));
        }
    }
}

type BiPair = (PipeSend, PipeRecv);

struct Inbox<T> {
    tx: mpsc::UnboundedSender<T>,
    rx: Mutex<mpsc::UnboundedReceiver<T>>,
}

impl<T> Inbox<T> {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox {
            tx,
            rx: Mutex::new(rx),
        }
    }
}

struct Shared {
    closure: watch::Sender<Option<Closure>>,
    drain: [watch::Sender<bool>; 2],
    bi: [Inbox<BiPair>; 2],
    uni: [Inbox<PipeRecv>; 2],
    dgram: [Inbox<Bytes>; 2],
    next_bi: [AtomicU64; 2],
    next_uni: [AtomicU64; 2],
    info: SessionInfo,
}

/// One end of an in-memory session (side 0 = client, 1 = server).
#[derive(Clone)]
pub struct MockSession {
    side: usize,
    shared: Arc<Shared>,
}

impl MockSession {
    /// A connected pair: (client, server).
    pub fn pair(transport: TransportKind) -> (MockSession, MockSession) {
        let (closure, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            closure,
            drain: [watch::channel(false).0, watch::channel(false).0],
            bi: [Inbox::new(), Inbox::new()],
            uni: [Inbox::new(), Inbox::new()],
            dgram: [Inbox::new(), Inbox::new()],
            next_bi: [AtomicU64::new(0), AtomicU64::new(0)],
            next_uni: [AtomicU64::new(0), AtomicU64::new(0)],
            info: SessionInfo {
                transport,
                dialect: match transport {
                    TransportKind::Http3 => Dialect::H3Latest,
                    TransportKind::Http2 => Dialect::H2Latest,
                },
                session_id: 0,
                protocol: None,
                peer_addr: "127.0.0.1:1".parse().unwrap(),
                unreliable_datagrams: false,
            },
        });
        (
            MockSession {
                side: 0,
                shared: shared.clone(),
            },
            MockSession { side: 1, shared },
        )
    }

    fn closed_error(&self) -> Option<SessionError> {
        self.shared
            .closure
            .borrow()
            .as_ref()
            .map(|c| session_error(c, self.side))
    }

    /// Whether this side has seen the peer drain.
    pub fn peer_drained(&self) -> bool {
        *self.shared.drain[1 - self.side].borrow()
    }
}

impl Session for MockSession {
    type SendStream = PipeSend;
    type RecvStream = PipeRecv;

    async fn open_bi(&self) -> Result<(PipeSend, PipeRecv), SessionError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let n = self.shared.next_bi[self.side].fetch_add(1, Ordering::SeqCst);
        let id = StreamId(n * 4 + self.side as u64);
        let rx = self.shared.closure.subscribe();
        let (a_send, a_recv) = pipe(id, self.side, &rx);
        let (b_send, b_recv) = pipe(id, 1 - self.side, &rx);
        let _ = self.shared.bi[1 - self.side].tx.send((b_send, a_recv));
        Ok((a_send, b_recv))
    }

    async fn open_uni(&self) -> Result<PipeSend, SessionError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let n = self.shared.next_uni[self.side].fetch_add(1, Ordering::SeqCst);
        let id = StreamId(n * 4 + 2 + self.side as u64);
        let rx = self.shared.closure.subscribe();
        let (send, recv) = pipe(id, self.side, &rx);
        let _ = self.shared.uni[1 - self.side].tx.send(recv);
        Ok(send)
    }

    async fn accept_bi(&self) -> Result<(PipeSend, PipeRecv), SessionError> {
        let mut rx = self.shared.bi[self.side].rx.lock().await;
        let mut closed = self.shared.closure.subscribe();
        tokio::select! {
            biased;
            e = wait_closed(&mut closed, self.side) => Err(e),
            p = rx.recv() => p.ok_or(SessionError::GoingAway),
        }
    }

    async fn accept_uni(&self) -> Result<PipeRecv, SessionError> {
        let mut rx = self.shared.uni[self.side].rx.lock().await;
        let mut closed = self.shared.closure.subscribe();
        tokio::select! {
            biased;
            e = wait_closed(&mut closed, self.side) => Err(e),
            p = rx.recv() => p.ok_or(SessionError::GoingAway),
        }
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        if data.len() > MAX_DATAGRAM {
            return Err(SessionError::DatagramTooLarge {
                size: data.len(),
                max: MAX_DATAGRAM,
            });
        }
        let _ = self.shared.dgram[1 - self.side].tx.send(data);
        Ok(())
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        let mut rx = self.shared.dgram[self.side].rx.lock().await;
        let mut closed = self.shared.closure.subscribe();
        tokio::select! {
            biased;
            e = wait_closed(&mut closed, self.side) => Err(e),
            d = rx.recv() => d.ok_or(SessionError::GoingAway),
        }
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(MAX_DATAGRAM)
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        if reason.len() > 1024 {
            return Err(SessionError::ReasonTooLong(reason.len()));
        }
        let side = self.side;
        self.shared.closure.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(Closure {
                    by: side,
                    code,
                    reason: reason.to_owned(),
                });
                true
            } else {
                false
            }
        });
        Ok(())
    }

    fn drain(&self) -> Result<(), SessionError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        self.shared.drain[self.side].send_replace(true);
        Ok(())
    }

    async fn closed(&self) -> SessionError {
        let mut rx = self.shared.closure.subscribe();
        wait_closed(&mut rx, self.side).await
    }

    async fn draining(&self) -> () {
        let mut drain = self.shared.drain[1 - self.side].subscribe();
        let mut closed = self.shared.closure.subscribe();
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            _ = wait_closed(&mut closed, self.side) => {}
        }
    }

    fn info(&self) -> SessionInfo {
        self.shared.info.clone()
    }

    fn stats(&self) -> SessionStats {
        SessionStats::default()
    }
}

/// A request waiting for the server.
pub struct MockRequest {
    info: RequestInfo,
    transport: TransportKind,
    reply: oneshot::Sender<Result<MockSession, http::StatusCode>>,
}

impl IncomingRequest for MockRequest {
    type Session = MockSession;

    fn info(&self) -> &RequestInfo {
        &self.info
    }

    async fn accept(self, _options: AcceptOptions) -> Result<MockSession, SessionError> {
        let (client, server) = MockSession::pair(self.transport);
        self.reply
            .send(Ok(client))
            .map_err(|_| SessionError::ClosedByPeer {
                code: 0,
                reason: "client went away".into(),
            })?;
        Ok(server)
    }

    async fn reject(self, status: http::StatusCode) {
        let _ = self.reply.send(Err(status));
    }
}

/// The server end of the mock network.
pub struct MockAcceptor {
    rx: Mutex<mpsc::Receiver<MockRequest>>,
    stop: CancellationToken,
    addr: SocketAddr,
}

/// The client end: makes requests to a [`MockAcceptor`].
#[derive(Clone)]
pub struct MockClient {
    tx: mpsc::Sender<MockRequest>,
    transport: TransportKind,
}

/// A connected client/acceptor pair.
pub fn network(transport: TransportKind) -> (MockClient, MockAcceptor) {
    let (tx, rx) = mpsc::channel(64);
    (
        MockClient { tx, transport },
        MockAcceptor {
            rx: Mutex::new(rx),
            stop: CancellationToken::new(),
            addr: "127.0.0.1:4433".parse().unwrap(),
        },
    )
}

impl MockClient {
    /// Sends a request; `Err(status)` if rejected (500 if the server dropped it).
    pub async fn connect(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<MockSession, http::StatusCode> {
        let (reply, answer) = oneshot::channel();
        let info = RequestInfo {
            authority: "localhost".into(),
            path: path.into(),
            protocol: "webtransport-h3".into(),
            origin: origin.map(str::to_owned),
            protocols: Vec::new(),
            headers: http::HeaderMap::new(),
            dialect: match self.transport {
                TransportKind::Http3 => Dialect::H3Latest,
                TransportKind::Http2 => Dialect::H2Latest,
            },
            peer_addr: "127.0.0.1:50000".parse().unwrap(),
        };
        let request = MockRequest {
            info,
            transport: self.transport,
            reply,
        };
        if self.tx.send(request).await.is_err() {
            return Err(http::StatusCode::SERVICE_UNAVAILABLE);
        }
        answer
            .await
            .unwrap_or(Err(http::StatusCode::INTERNAL_SERVER_ERROR))
    }
}

impl Acceptor for MockAcceptor {
    type Request = MockRequest;

    async fn accept(&self) -> Option<MockRequest> {
        let mut rx = self.rx.lock().await;
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            r = rx.recv() => r,
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn shutdown(&self) {
        self.stop.cancel();
    }
}
