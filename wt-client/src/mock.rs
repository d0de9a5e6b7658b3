//! An in-memory WebTransport session for driver unit tests: the client half implements
//! `wt_core::Session`, and a [`MockPeer`] plays the server. No sockets, no clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Mutex};
use wt_core::{
    Dialect, RecvStream, SendStream, Session, SessionError, SessionInfo, SessionStats, StreamError,
    StreamId, TransportKind,
};

#[derive(Clone, Debug)]
pub(crate) struct End {
    by_client: bool,
    code: u32,
    reason: String,
}

type EndRx = watch::Receiver<Option<End>>;

fn end_error(end: &End, client_view: bool) -> SessionError {
    if end.by_client == client_view {
        SessionError::ClosedLocally {
            code: end.code,
            reason: end.reason.clone(),
        }
    } else {
        SessionError::ClosedByPeer {
            code: end.code,
            reason: end.reason.clone(),
        }
    }
}

enum PipeMsg {
    Data(Bytes),
    Fin,
    Reset(u32),
}

pub(crate) struct MockSend {
    id: StreamId,
    tx: mpsc::UnboundedSender<PipeMsg>,
    stop: watch::Receiver<Option<u32>>,
    end: EndRx,
    client_view: bool,
    done: bool,
}

pub(crate) struct MockRecv {
    id: StreamId,
    rx: mpsc::UnboundedReceiver<PipeMsg>,
    pending: Option<Bytes>,
    stop: watch::Sender<Option<u32>>,
    end: EndRx,
    client_view: bool,
    ended: bool,
}

async fn wait_end(mut end: EndRx, client_view: bool) -> SessionError {
    loop {
        let now = end.borrow_and_update().clone();
        if let Some(e) = now {
            return end_error(&e, client_view);
        }
        if end.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn wait_stop(mut stop: watch::Receiver<Option<u32>>) -> u32 {
    loop {
        let now = *stop.borrow_and_update();
        if let Some(c) = now {
            return c;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn pipe(id: StreamId, end: &EndRx, writer_is_client: bool) -> (MockSend, MockRecv) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None);
    (
        MockSend {
            id,
            tx,
            stop: stop_rx,
            end: end.clone(),
            client_view: writer_is_client,
            done: false,
        },
        MockRecv {
            id,
            rx,
            pending: None,
            stop: stop_tx,
            end: end.clone(),
            client_view: !writer_is_client,
            ended: false,
        },
    )
}

impl MockSend {
    fn check(&self) -> Result<(), StreamError> {
        if let Some(e) = &*self.end.borrow() {
            return Err(StreamError::SessionGone(end_error(e, self.client_view)));
        }
        if let Some(c) = *self.stop.borrow() {
            return Err(StreamError::Stopped(Some(c)));
        }
        if self.done {
            return Err(StreamError::ClosedLocally);
        }
        Ok(())
    }
}

impl SendStream for MockSend {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        self.write_chunk(Bytes::copy_from_slice(buf)).await?;
        Ok(buf.len())
    }

    async fn write_chunk(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.check()?;
        let _ = self.tx.send(PipeMsg::Data(data));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.check()?;
        self.done = true;
        let _ = self.tx.send(PipeMsg::Fin);
        Ok(())
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        if self.done {
            return Err(StreamError::ClosedLocally);
        }
        self.done = true;
        let _ = self.tx.send(PipeMsg::Reset(code));
        Ok(())
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        if self.done {
            return Ok(None);
        }
        tokio::select! {
            c = wait_stop(self.stop.clone()) => Ok(Some(c)),
            e = wait_end(self.end.clone(), self.client_view) => Err(StreamError::SessionGone(e)),
        }
    }
}

impl Drop for MockSend {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(PipeMsg::Fin);
        }
    }
}

impl RecvStream for MockRecv {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        if let Some(mut p) = self.pending.take() {
            if p.len() > max {
                self.pending = Some(p.split_off(max));
            }
            return Ok(Some(p));
        }
        if self.ended {
            return Ok(None);
        }
        let end = wait_end(self.end.clone(), self.client_view);
        tokio::select! {
            biased;
            m = self.rx.recv() => match m {
                Some(PipeMsg::Data(mut b)) => {
                    if b.len() > max {
                        self.pending = Some(b.split_off(max));
                    }
                    Ok(Some(b))
                }
                Some(PipeMsg::Fin) | None => {
                    self.ended = true;
                    Ok(None)
                }
                Some(PipeMsg::Reset(c)) => {
                    self.ended = true;
                    Err(StreamError::Reset(Some(c)))
                }
            },
            e = end => Err(StreamError::SessionGone(e)),
        }
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.ended = true;
        let _ = self.stop.send(Some(code));
        Ok(())
    }
}

impl Drop for MockRecv {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.stop.send(Some(0));
        }
    }
}

/// A stream as the peer sees it.
pub(crate) struct PeerStream {
    pub(crate) id: StreamId,
    pub(crate) send: Option<MockSend>,
    pub(crate) recv: MockRecv,
}

struct Inner {
    end_tx: watch::Sender<Option<End>>,
    end: EndRx,
    next_bi: AtomicU64,
    next_uni: AtomicU64,
    to_peer: mpsc::UnboundedSender<PeerStream>,
    from_peer_bi: Mutex<mpsc::UnboundedReceiver<(MockSend, MockRecv)>>,
    from_peer_uni: Mutex<mpsc::UnboundedReceiver<MockRecv>>,
    dgram_to_peer: mpsc::UnboundedSender<Bytes>,
    dgram_from_peer: Mutex<mpsc::UnboundedReceiver<Bytes>>,
    datagrams_sent: AtomicU64,
}

/// The client half.
#[derive(Clone)]
pub(crate) struct MockSession {
    inner: Arc<Inner>,
}

/// The server half, driven by the test.
pub(crate) struct MockPeer {
    end_tx_view: EndRx,
    end: Arc<Inner>,
    accepted: mpsc::UnboundedReceiver<PeerStream>,
    to_client_bi: mpsc::UnboundedSender<(MockSend, MockRecv)>,
    to_client_uni: mpsc::UnboundedSender<MockRecv>,
    dgram_to_client: mpsc::UnboundedSender<Bytes>,
    dgram_from_client: mpsc::UnboundedReceiver<Bytes>,
    next_bi: u64,
    next_uni: u64,
}

pub(crate) fn pair() -> (MockSession, MockPeer) {
    let (end_tx, end) = watch::channel(None);
    let (to_peer, accepted) = mpsc::unbounded_channel();
    let (to_client_bi, from_peer_bi) = mpsc::unbounded_channel();
    let (to_client_uni, from_peer_uni) = mpsc::unbounded_channel();
    let (dgram_to_peer, dgram_from_client) = mpsc::unbounded_channel();
    let (dgram_to_client, dgram_from_peer) = mpsc::unbounded_channel();
    let inner = Arc::new(Inner {
        end_tx,
        end: end.clone(),
        next_bi: AtomicU64::new(0),
        next_uni: AtomicU64::new(0),
        to_peer,
        from_peer_bi: Mutex::new(from_peer_bi),
        from_peer_uni: Mutex::new(from_peer_uni),
        dgram_to_peer,
        dgram_from_peer: Mutex::new(dgram_from_peer),
        datagrams_sent: AtomicU64::new(0),
    });
    (
        MockSession {
            inner: inner.clone(),
        },
        MockPeer {
            end_tx_view: end,
            end: inner,
            accepted,
            to_client_bi,
            to_client_uni,
            dgram_to_client,
            dgram_from_client,
            next_bi: 0,
            next_uni: 0,
        },
    )
}

impl MockSession {
    fn ended(&self) -> Option<SessionError> {
        self.inner.end.borrow().as_ref().map(|e| end_error(e, true))
    }
}

impl Session for MockSession {
    type SendStream = MockSend;
    type RecvStream = MockRecv;

    async fn open_bi(&self) -> Result<(MockSend, MockRecv), SessionError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let id = StreamId(self.inner.next_bi.fetch_add(1, Ordering::Relaxed) * 4);
        let (cs, pr) = pipe(id, &self.inner.end, true);
        let (ps, cr) = pipe(id, &self.inner.end, false);
        let _ = self.inner.to_peer.send(PeerStream {
            id,
            send: Some(ps),
            recv: pr,
        });
        Ok((cs, cr))
    }

    async fn open_uni(&self) -> Result<MockSend, SessionError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let id = StreamId(self.inner.next_uni.fetch_add(1, Ordering::Relaxed) * 4 + 2);
        let (cs, pr) = pipe(id, &self.inner.end, true);
        let _ = self.inner.to_peer.send(PeerStream {
            id,
            send: None,
            recv: pr,
        });
        Ok(cs)
    }

    async fn accept_bi(&self) -> Result<(MockSend, MockRecv), SessionError> {
        let end = wait_end(self.inner.end.clone(), true);
        let mut rx = self.inner.from_peer_bi.lock().await;
        tokio::select! {
            s = rx.recv() => s.ok_or(SessionError::GoingAway),
            e = end => Err(e),
        }
    }

    async fn accept_uni(&self) -> Result<MockRecv, SessionError> {
        let end = wait_end(self.inner.end.clone(), true);
        let mut rx = self.inner.from_peer_uni.lock().await;
        tokio::select! {
            s = rx.recv() => s.ok_or(SessionError::GoingAway),
            e = end => Err(e),
        }
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        if data.len() > 1200 {
            return Err(SessionError::DatagramTooLarge {
                size: data.len(),
                max: 1200,
            });
        }
        self.inner.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        let _ = self.inner.dgram_to_peer.send(data);
        Ok(())
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        let end = wait_end(self.inner.end.clone(), true);
        let mut rx = self.inner.dgram_from_peer.lock().await;
        tokio::select! {
            s = rx.recv() => s.ok_or(SessionError::GoingAway),
            e = end => Err(e),
        }
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(1200)
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        if reason.len() > 1024 {
            return Err(SessionError::ReasonTooLong(reason.len()));
        }
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let _ = self.inner.end_tx.send(Some(End {
            by_client: true,
            code,
            reason: reason.into(),
        }));
        Ok(())
    }

    fn drain(&self) -> Result<(), SessionError> {
        Ok(())
    }

    async fn closed(&self) -> SessionError {
        wait_end(self.inner.end.clone(), true).await
    }

    async fn draining(&self) {
        self.closed().await;
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            transport: TransportKind::Http3,
            dialect: Dialect::H3Latest,
            session_id: 0,
            protocol: None,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            unreliable_datagrams: true,
        }
    }

    fn stats(&self) -> SessionStats {
        SessionStats {
            bidi_opened_local: self.inner.next_bi.load(Ordering::Relaxed),
            uni_opened_local: self.inner.next_uni.load(Ordering::Relaxed),
            datagrams_sent: self.inner.datagrams_sent.load(Ordering::Relaxed),
            ..SessionStats::default()
        }
    }
}

impl MockPeer {
    /// The next stream the client opened.
    pub(crate) async fn accept(&mut self) -> PeerStream {
        self.accepted.recv().await.expect("client gone")
    }

    pub(crate) fn open_bi(&mut self) -> (MockSend, MockRecv) {
        let id = StreamId(self.next_bi * 4 + 1);
        self.next_bi += 1;
        let (ps, cr) = pipe(id, &self.end.end, false);
        let (cs, pr) = pipe(id, &self.end.end, true);
        let _ = self.to_client_bi.send((cs, cr));
        (ps, pr)
    }

    pub(crate) fn open_uni(&mut self) -> MockSend {
        let id = StreamId(self.next_uni * 4 + 3);
        self.next_uni += 1;
        let (ps, cr) = pipe(id, &self.end.end, false);
        let _ = self.to_client_uni.send(cr);
        ps
    }

    pub(crate) fn send_datagram(&self, d: impl Into<Bytes>) {
        let _ = self.dgram_to_client.send(d.into());
    }

    pub(crate) async fn recv_datagram(&mut self) -> Bytes {
        self.dgram_from_client.recv().await.expect("client gone")
    }

    pub(crate) fn close(&self, code: u32, reason: &str) {
        let _ = self.end.end_tx.send(Some(End {
            by_client: false,
            code,
            reason: reason.into(),
        }));
    }

    /// Waits for the session's end; returns (closed by client, code, reason).
    pub(crate) async fn closed(&mut self) -> (bool, u32, String) {
        loop {
            let now = self.end_tx_view.borrow_and_update().clone();
            if let Some(e) = now {
                return (e.by_client, e.code, e.reason);
            }
            self.end_tx_view.changed().await.expect("watch");
        }
    }
}

/// Reads everything the peer receives on a stream until FIN.
pub(crate) async fn read_all(r: &mut MockRecv) -> Result<Vec<u8>, StreamError> {
    let mut out: Vec<u8> = Vec::new();
    while let Some(c) = RecvStream::read_chunk(r, 1 << 20).await? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}
