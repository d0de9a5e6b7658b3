//! Thin tokio glue: the session handles ([`Session`], [`SendStream`], [`RecvStream`]) share
//! the sans-IO [`Engine`] behind a mutex with the per-session [`Driver`], which moves bytes
//! between the engine and the h2 CONNECT stream.
//!
//! Flow-control chain: the application reads → the engine grants WT credit and reports the
//! bytes it no longer holds → the driver releases that much HTTP/2 receive window. On the send
//! side the driver hands h2 only as many bytes as h2 has send capacity for
//! (`reserve_capacity` / `poll_capacity`), so nothing is buffered without bound in h2; writers
//! block in the engine once its bounded output queue is full.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use wt_core::codes::H2Code;
use wt_core::{
    ConnectionError, SessionError, SessionInfo, SessionStats, StreamError, StreamId, WireCode,
};

use crate::engine::streams::Dir;
use crate::engine::{Engine, Event, Read, Write, MAX_DATAGRAM_SIZE};

/// How long a closed session waits for the peer's END_STREAM before resetting the stream.
const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// Most capacity reserved from h2 at once.
const MAX_RESERVE: usize = 1 << 20;

/// Polls of `poll_data` per driver wake-up before yielding.
const READ_BUDGET: usize = 64;

#[derive(Default)]
struct Wakers {
    read: HashMap<u64, Waker>,
    write: HashMap<u64, Waker>,
    stopped: HashMap<u64, Waker>,
    /// Watchers from [`SendStream::stop_notice`] (any number per stream).
    stop_notice: HashMap<u64, Vec<Waker>>,
    accept: [Vec<Waker>; 2],
    open: [Vec<Waker>; 2],
    datagram: Vec<Waker>,
    driver: Option<Waker>,
}

fn register(list: &mut Vec<Waker>, w: &Waker) {
    if !list.iter().any(|x| x.will_wake(w)) {
        list.push(w.clone());
    }
}

/// Wakes the [`SendStream::stop_notice`] watchers of stream `id` (they poll again and see
/// the stream's new state).
fn wake_stop_notices(w: &mut Wakers, id: u64) {
    if let Some(mut l) = w.stop_notice.remove(&id) {
        wake_list(&mut l);
    }
}

fn wake_list(list: &mut Vec<Waker>) {
    for w in list.drain(..) {
        w.wake();
    }
}

pub(crate) struct Inner {
    pub engine: Engine,
    wakers: Wakers,
}

/// State shared by the handles and the driver of one session.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    closed: watch::Sender<Option<SessionError>>,
    draining: watch::Sender<bool>,
}

impl Shared {
    pub fn new(engine: Engine) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                wakers: Wakers::default(),
            }),
            closed: watch::Sender::new(None),
            draining: watch::Sender::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the engine, then wakes whoever its events concern (and the driver if
    /// there is output).
    fn with<R>(&self, f: impl FnOnce(&mut Engine, &mut Wakers) -> R) -> R {
        let mut inner = self.lock();
        let Inner { engine, wakers } = &mut *inner;
        let r = f(engine, wakers);
        self.dispatch(&mut inner, true);
        r
    }

    fn dispatch(&self, inner: &mut Inner, wake_driver: bool) {
        let Inner { engine, wakers } = inner;
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::Readable(id) => {
                    if let Some(w) = wakers.read.remove(&id) {
                        w.wake();
                    }
                }
                Event::Writable(id) => {
                    if let Some(w) = wakers.write.remove(&id) {
                        w.wake();
                    }
                    if let Some(w) = wakers.stopped.remove(&id) {
                        w.wake();
                    }
                    wake_stop_notices(wakers, id);
                }
                Event::Incoming(d) => wake_list(&mut wakers.accept[d as usize]),
                Event::OpenCredit(d) => wake_list(&mut wakers.open[d as usize]),
                Event::Datagram => wake_list(&mut wakers.datagram),
                Event::Draining => {
                    self.draining.send_replace(true);
                }
                Event::Closed => {
                    self.closed.send_replace(engine.error().cloned());
                    self.draining.send_replace(true);
                    for (_, w) in wakers.read.drain() {
                        w.wake();
                    }
                    for (_, w) in wakers.write.drain() {
                        w.wake();
                    }
                    for (_, w) in wakers.stopped.drain() {
                        w.wake();
                    }
                    for (_, mut l) in wakers.stop_notice.drain() {
                        wake_list(&mut l);
                    }
                    for l in wakers.accept.iter_mut().chain(wakers.open.iter_mut()) {
                        wake_list(l);
                    }
                    wake_list(&mut wakers.datagram);
                }
            }
        }
        if wake_driver
            && (engine.transmit_len() > 0
                || engine.has_release()
                || engine.wants_end_stream()
                || engine.wants_reset().is_some()
                || engine.error().is_some())
        {
            if let Some(w) = &wakers.driver {
                w.wake_by_ref();
            }
        }
    }
}

/// Closes the session with code 0 once every handle (session and streams) is gone.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.with(|e, _| e.close(0, ""));
    }
}

/// A WebTransport session over HTTP/2.
///
/// Datagrams are sent as reliable DATAGRAM capsules on the CONNECT stream: they are never
/// lost or reordered in transit (`info().unreliable_datagrams == false`), though a full send
/// buffer or receive queue may drop them. [`max_datagram_size`](wt_core::Session::max_datagram_size)
/// is a fixed 65535 bytes.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    info: Arc<SessionInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("info", &self.info).finish()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, info: SessionInfo) -> Self {
        Session {
            guard: Arc::new(Guard(shared.clone())),
            shared,
            info: Arc::new(info),
        }
    }

    fn send_stream(&self, id: u64) -> SendStream {
        SendStream {
            id,
            shared: self.shared.clone(),
            _guard: self.guard.clone(),
        }
    }

    fn recv_stream(&self, id: u64) -> RecvStream {
        RecvStream {
            id,
            shared: self.shared.clone(),
            _guard: self.guard.clone(),
        }
    }

    async fn open(&self, dir: Dir) -> Result<u64, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.open(dir) {
                Ok(Some(id)) => Poll::Ready(Ok(id)),
                Ok(None) => {
                    register(&mut w.open[dir as usize], cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    async fn accept(&self, dir: Dir) -> Result<u64, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.accept(dir) {
                Ok(Some(id)) => Poll::Ready(Ok(id)),
                Ok(None) => {
                    register(&mut w.accept[dir as usize], cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }
}

impl wt_core::Session for Session {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        let id = self.open(Dir::Bi).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    async fn open_uni(&self) -> Result<SendStream, SessionError> {
        let id = self.open(Dir::Uni).await?;
        Ok(self.send_stream(id))
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), SessionError> {
        let id = self.accept(Dir::Bi).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    async fn accept_uni(&self) -> Result<RecvStream, SessionError> {
        let id = self.accept(Dir::Uni).await?;
        Ok(self.recv_stream(id))
    }

    fn send_datagram(&self, data: Bytes) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.send_datagram(data))
    }

    async fn recv_datagram(&self) -> Result<Bytes, SessionError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.recv_datagram() {
                Ok(Some(d)) => Poll::Ready(Ok(d)),
                Ok(None) => {
                    register(&mut w.datagram, cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    fn max_datagram_size(&self) -> Option<usize> {
        Some(MAX_DATAGRAM_SIZE)
    }

    fn close(&self, code: u32, reason: &str) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.close(code, reason))
    }

    fn drain(&self) -> Result<(), SessionError> {
        self.shared.with(|e, _| e.drain())
    }

    async fn closed(&self) -> SessionError {
        let mut rx = self.shared.closed.subscribe();
        let r = match rx.wait_for(|e| e.is_some()).await {
            Ok(e) => e.clone(),
            Err(_) => None,
        };
        r.unwrap_or(SessionError::Connection(ConnectionError::Reset))
    }

    async fn draining(&self) {
        let mut rx = self.shared.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    fn info(&self) -> SessionInfo {
        (*self.info).clone()
    }

    fn stats(&self) -> SessionStats {
        self.shared.lock().engine.stats()
    }
}

/// The sending half of a WebTransport-over-HTTP/2 stream.
pub struct SendStream {
    id: u64,
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    fn poll_write_bytes(
        &self,
        cx: &mut Context<'_>,
        data: &Bytes,
    ) -> Poll<Result<usize, StreamError>> {
        self.shared.with(|e, w| match e.write(self.id, data) {
            Ok(Write::Written(n)) => Poll::Ready(Ok(n)),
            Ok(Write::Blocked) => {
                w.write.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Err(err) => Poll::Ready(Err(err)),
        })
    }
}

impl wt_core::SendStream for SendStream {
    fn id(&self) -> StreamId {
        StreamId(self.id)
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Only the accepted prefix is copied, once: small pieces straight into the engine's
        // output buffer, large ones into one `Bytes` each.
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.write_slice(self.id, buf) {
                Ok(Write::Written(n)) => Poll::Ready(Ok(n)),
                Ok(Write::Blocked) => {
                    w.write.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    async fn write_chunk(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_write_bytes(cx, &data)).await?;
            let _ = data.split_to(n);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.shared.with(|e, w| {
            wake_stop_notices(w, self.id);
            e.finish(self.id)
        })
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        self.shared.with(|e, w| {
            wake_stop_notices(w, self.id);
            e.reset(self.id, code)
        })
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.stopped(self.id) {
                Some(r) => Poll::Ready(r),
                None => {
                    w.stopped.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await
    }

    fn stop_notice(&self) -> impl Future<Output = Option<u32>> + Send + 'static {
        let (id, shared) = (self.id, self.shared.clone());
        poll_fn(move |cx| {
            shared.with(|e, w| match e.stopped(id) {
                Some(Ok(code)) => Poll::Ready(code),
                Some(Err(_)) => Poll::Ready(None),
                None => {
                    register(w.stop_notice.entry(id).or_default(), cx.waker());
                    Poll::Pending
                }
            })
        })
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        self.shared.with(|e, w| {
            w.write.remove(&self.id);
            w.stopped.remove(&self.id);
            wake_stop_notices(w, self.id);
            e.drop_send(self.id)
        });
    }
}

/// The receiving half of a WebTransport-over-HTTP/2 stream.
pub struct RecvStream {
    id: u64,
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl wt_core::RecvStream for RecvStream {
    fn id(&self) -> StreamId {
        StreamId(self.id)
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        poll_fn(|cx| {
            self.shared.with(|e, w| match e.read(self.id, max) {
                Ok(Read::Data(d)) => Poll::Ready(Ok(Some(d))),
                Ok(Read::Fin) => Poll::Ready(Ok(None)),
                Ok(Read::Blocked) => {
                    w.read.insert(self.id, cx.waker().clone());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            })
        })
        .await
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.shared.with(|e, _| e.stop(self.id, code))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.shared.with(|e, w| {
            w.read.remove(&self.id);
            e.drop_recv(self.id)
        });
    }
}

/// Something the driver keeps alive while it runs (the client's h2 `SendRequest`).
pub(crate) type KeepAlive = Box<dyn std::any::Any + Send>;

/// Moves bytes between one session's engine and its h2 CONNECT stream.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    recv_done: bool,
    end_sent: bool,
    reset_sent: bool,
    send_failed: bool,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    _keep: Option<KeepAlive>,
}

pub(crate) fn h2_error_to_session(e: h2::Error) -> Result<H2Code, SessionError> {
    if e.is_reset() {
        if let Some(r) = e.reason() {
            return Ok(H2Code(r.into()));
        }
    }
    let conn = if e.is_go_away() {
        let code = e
            .reason()
            .map(|r| H2Code(r.into()))
            .unwrap_or(H2Code::NO_ERROR);
        if e.is_remote() {
            ConnectionError::ClosedByPeer {
                code: WireCode::H2(code),
                reason: String::new(),
            }
        } else {
            ConnectionError::ClosedLocally {
                code: WireCode::H2(code),
                reason: String::new(),
            }
        }
    } else if e.is_io() {
        match e.into_io() {
            Some(io) => ConnectionError::Io(Arc::new(io)),
            None => ConnectionError::Reset,
        }
    } else {
        ConnectionError::Reset
    };
    Err(SessionError::Connection(conn))
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        send: h2::SendStream<Bytes>,
        recv: h2::RecvStream,
        keep: Option<KeepAlive>,
    ) -> Self {
        Driver {
            shared,
            send,
            recv,
            recv_done: false,
            end_sent: false,
            reset_sent: false,
            send_failed: false,
            linger: None,
            _keep: keep,
        }
    }

    fn on_h2_error(engine: &mut Engine, e: h2::Error) {
        match h2_error_to_session(e) {
            Ok(code) => engine.recv_reset(code),
            Err(err) => engine.connection_lost(err),
        }
    }

    fn poll_io(&mut self, cx: &mut Context<'_>, inner: &mut Inner) {
        let engine = &mut inner.engine;
        // Input.
        let mut budget = READ_BUDGET;
        while !self.recv_done {
            if budget == 0 {
                cx.waker().wake_by_ref();
                break;
            }
            budget -= 1;
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => engine.recv_bytes(b),
                Poll::Ready(Some(Err(e))) => {
                    self.recv_done = true;
                    Self::on_h2_error(engine, e);
                }
                Poll::Ready(None) => {
                    self.recv_done = true;
                    engine.recv_end();
                }
                Poll::Pending => break,
            }
        }
        let n = engine.take_release();
        if n > 0 && !self.recv_done {
            let _ = self.recv.flow_control().release_capacity(n);
        }
        if self.reset_sent || self.send_failed {
            return;
        }
        if let Some(code) = engine.wants_reset() {
            self.send.send_reset(h2::Reason::from(code.0));
            self.reset_sent = true;
            return;
        }
        // Output, within h2's send capacity.
        while !self.end_sent {
            let want = engine.transmit_len();
            if want == 0 {
                break;
            }
            self.send.reserve_capacity(want.min(MAX_RESERVE));
            let mut cap = self.send.capacity();
            if cap == 0 {
                match self.send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(n))) if n > 0 => cap = n,
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Ready(Some(Err(e))) => {
                        self.send_failed = true;
                        Self::on_h2_error(engine, e);
                        return;
                    }
                    Poll::Ready(None) => {
                        self.send_failed = true;
                        engine.connection_lost(SessionError::Connection(ConnectionError::Reset));
                        return;
                    }
                    Poll::Pending => break,
                }
            }
            let Some(chunk) = engine.poll_transmit(cap) else {
                break;
            };
            if let Err(e) = self.send.send_data(chunk, false) {
                self.send_failed = true;
                Self::on_h2_error(engine, e);
                return;
            }
        }
        if !self.end_sent && engine.transmit_len() == 0 && engine.wants_end_stream() {
            self.end_sent = true;
            if let Err(e) = self.send.send_data(Bytes::new(), true) {
                self.send_failed = true;
                Self::on_h2_error(engine, e);
                return;
            }
        }
        if !self.end_sent {
            if let Poll::Ready(r) = self.send.poll_reset(cx) {
                self.send_failed = true;
                match r {
                    Ok(reason) => engine.recv_reset(H2Code(reason.into())),
                    Err(e) => Self::on_h2_error(engine, e),
                }
            }
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let shared = this.shared.clone();
        let mut inner = shared.lock();
        inner.wakers.driver = Some(cx.waker().clone());
        // Two rounds: output produced by input (grants, replies) goes out at once.
        this.poll_io(cx, &mut inner);
        shared.dispatch(&mut inner, false);
        this.poll_io(cx, &mut inner);
        shared.dispatch(&mut inner, false);
        let engine = &inner.engine;
        if engine.error().is_none() {
            return Poll::Pending;
        }
        let finished = this.reset_sent
            || this.send_failed
            || (this.recv_done && (this.end_sent || !engine.wants_end_stream()));
        if finished {
            inner.wakers.driver = None;
            return Poll::Ready(());
        }
        let linger = this
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_LINGER)));
        if linger.as_mut().poll(cx).is_ready() {
            this.send.send_reset(h2::Reason::CANCEL);
            inner.wakers.driver = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
