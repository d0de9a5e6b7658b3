//! The user's handle on a connection, and the active-mode event receiver.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use wt_core::{
    Dialect, SessionError, SessionInfo, SessionStats, StreamId, StreamKind, TransportKind,
};

use crate::driver::{lock, Command, Handles, Reply, Rx, Shared, Waiter, SYNTHETIC};
use crate::send::Note;
use crate::send::{SendHalf, TrySend};
use crate::store::{Chan, Item};
use crate::{Active, CloseInfo, Error, Event, Frame, Msg, StreamData};

/// Longest close reason accepted (WebTransport's limit), in bytes.
///
/// ```
/// assert_eq!(wt_client::MAX_CLOSE_REASON, 1024);
/// ```
pub const MAX_CLOSE_REASON: usize = 1024;

/// Sends datagrams on the session directly from the caller's task (a type-erased clone of
/// the session handle).
pub(crate) type DatagramSender = Arc<dyn DatagramOut>;

/// The datagram half of a session, object safe.
pub(crate) trait DatagramOut: Send + Sync {
    fn send(&self, data: Bytes) -> Result<(), SessionError>;
    fn headroom(&self) -> usize;
    fn send_in_place(&self, frame: BytesMut, headroom: usize) -> Result<(), SessionError>;
}

impl<S: wt_core::Session> DatagramOut for S {
    fn send(&self, data: Bytes) -> Result<(), SessionError> {
        self.send_datagram(data)
    }

    fn headroom(&self) -> usize {
        self.datagram_headroom()
    }

    fn send_in_place(&self, frame: BytesMut, headroom: usize) -> Result<(), SessionError> {
        self.send_datagram_with_headroom(frame, headroom)
    }
}

/// What [`Connection::info`] reports.
///
/// ```no_run
/// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
/// let info = conn.info().await?;
/// println!(
///     "{} {} streams out {}+{}, in {}+{}, {} B sent, {} B received, peer limits {:?}",
///     info.transport,
///     info.dialect,
///     info.stats.bidi_opened_local,
///     info.stats.uni_opened_local,
///     info.stats.bidi_opened_remote,
///     info.stats.uni_opened_remote,
///     info.stats.bytes_sent,
///     info.stats.bytes_received,
///     info.stats.peer_limits,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// HTTP/3 or HTTP/2 (with [`Transport::Auto`](crate::Transport::Auto): the one that
    /// won).
    pub transport: TransportKind,
    /// The dialect spoken.
    pub dialect: Dialect,
    /// Session facts: ID, selected subprotocol, peer address, datagram reliability.
    pub session: SessionInfo,
    /// Stream counts both ways, flow-control limits both ways, bytes and datagrams sent and
    /// received.
    pub stats: SessionStats,
    /// The ID of the default stream.
    pub default_stream: StreamId,
    /// Streams the driver still tracks (the default stream included).
    pub open_streams: usize,
    /// Received bytes not yet read (plus bookkeeping), counted against `max_recv_buffer`.
    pub unread_bytes: usize,
    /// The delivery mode now.
    pub active: Active,
    /// How the session closed, once it has: the peer's code and reason, or ours.
    pub close: Option<CloseInfo>,
}

/// A WebTransport connection: a cheap, cloneable, `Send + Sync` handle on the driver task
/// that owns the session. The session is closed (code 0) when the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), wt_client::Error> {
/// use bytes::Bytes;
/// use wt_client::{Frame, Msg, Options};
/// let conn = wt_client::connect("https://example.com/wt", Options::default()).await?;
/// conn.send(Frame::binary("Hello!")).await?;
/// assert_eq!(conn.recv().await?, Msg::Binary(Bytes::from("Hello!")));
/// conn.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    cmd: mpsc::Sender<Command>,
    notes: mpsc::UnboundedSender<Note>,
    shared: Arc<Shared>,
    datagram: DatagramSender,
    default_stream: StreamId,
    transport: TransportKind,
    recv_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("transport", &self.inner.transport)
            .field("default_stream", &self.inner.default_stream)
            .finish_non_exhaustive()
    }
}

/// A pending reply of the driver to a receive. If the receiving future is dropped after the
/// driver answered, the item is handed back to the driver in its place: receives are cancel
/// safe.
struct ReplyGuard {
    rx: Option<oneshot::Receiver<Result<(u64, Item), Error>>>,
    notes: mpsc::UnboundedSender<Note>,
}

impl ReplyGuard {
    async fn wait(&mut self) -> Result<Item, Error> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Error::driver_gone());
        };
        let r = rx.await;
        self.rx = None;
        match r {
            Ok(Ok((_, item))) => Ok(item),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::driver_gone()),
        }
    }

    /// After a timeout: the answer if it raced in, else nothing (and no answer can come).
    fn rescue(&mut self) -> Option<Result<Item, Error>> {
        let mut rx = self.rx.take()?;
        rx.close();
        match rx.try_recv() {
            Ok(Ok((_, item))) => Some(Ok(item)),
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    }
}

impl Drop for ReplyGuard {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Ok((seq, item))) = rx.try_recv() {
                if seq != SYNTHETIC {
                    let _ = self.notes.send(Note::PutBack(seq, item));
                }
            }
        }
    }
}

/// Tokens telling concurrent readers of the default channel apart.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// A `recv` on the default channel. Cancel safe: an item is taken from the shared buffer
/// only in the poll that returns it.
struct MainRecv<'a> {
    shared: &'a Shared,
    token: u64,
    registered: bool,
    /// The default stream's route holds this task's waker ([`crate::direct`]).
    routed: bool,
}

impl Future for MainRecv<'_> {
    type Output = Result<Msg, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (shared, token) = (self.shared, self.token);
        let mut rx = lock(&shared.rx);
        let result = if rx.mode != Active::Off {
            Err(Error::ActiveMode)
        } else if let Some((_, item)) = rx.store.pop(Chan::Main) {
            shared.unread.fetch_sub(item.accounted(), Ordering::AcqRel);
            item.into_msg().ok_or_else(Error::driver_gone)
        } else if let Some(t) = shared.terminal.get() {
            Err(t.clone())
        } else if shared.driver_gone.load(Ordering::Acquire) {
            Err(Error::driver_gone())
        } else if rx.main.as_ref().is_some_and(|w| w.token != token) {
            return Poll::Ready(Err(Error::RecvBusy));
        } else {
            // Nothing buffered: read the default stream in this task if it has data.
            let this = &mut *self;
            let Rx { store, default, .. } = &mut *rx;
            let direct = default
                .as_mut()
                .and_then(|d| d.poll_reader(cx, store, &shared.unread, &mut this.routed));
            match direct {
                Some(chunk) => Ok(Msg::Binary(chunk)),
                None => {
                    rx.main = Some(Waiter {
                        token,
                        waker: cx.waker().clone(),
                    });
                    drop(rx);
                    self.registered = true;
                    return Poll::Pending;
                }
            }
        };
        rx.unregister_main(token);
        self.leave_route(&mut rx);
        Poll::Ready(result)
    }
}

impl MainRecv<'_> {
    /// Withdraws this task's waker from the default stream's route.
    fn leave_route(&mut self, rx: &mut Rx) {
        if std::mem::take(&mut self.routed) {
            if let Some(d) = &rx.default {
                d.route.clear_reader();
            }
        }
    }
}

impl Drop for MainRecv<'_> {
    fn drop(&mut self) {
        if self.registered || self.routed {
            let mut rx = lock(&self.shared.rx);
            rx.unregister_main(self.token);
            self.leave_route(&mut rx);
        }
    }
}

impl Connection {
    pub(crate) fn from_handles(
        h: Handles,
        datagram: DatagramSender,
        transport: TransportKind,
        recv_timeout: Option<Duration>,
    ) -> Self {
        Connection {
            inner: Arc::new(Inner {
                cmd: h.cmd,
                notes: h.notes,
                shared: h.shared,
                datagram,
                default_stream: h.default_stream,
                transport,
                recv_timeout,
            }),
        }
    }

    /// The state shared with the driver (for the crate's tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| Error::driver_gone())?;
        rx.await.unwrap_or_else(|_| Err(Error::driver_gone()))
    }

    async fn recv_item(&self, chan: Chan, timeout: Option<Duration>) -> Result<Item, Error> {
        let (tx, rx) = oneshot::channel();
        let mut guard = ReplyGuard {
            rx: Some(rx),
            notes: self.inner.notes.clone(),
        };
        let cmd = Command::Recv { chan, reply: tx };
        let Some(d) = timeout else {
            self.inner
                .cmd
                .send(cmd)
                .await
                .map_err(|_| Error::driver_gone())?;
            return guard.wait().await;
        };
        let fut = async {
            self.inner
                .cmd
                .send(cmd)
                .await
                .map_err(|_| Error::driver_gone())?;
            guard.wait().await
        };
        match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => guard.rescue().unwrap_or(Err(Error::Timeout)),
        }
    }

    /// The HTTP version carrying the session.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) {
    /// println!("connected over {}", conn.transport());
    /// # }
    /// ```
    pub fn transport(&self) -> TransportKind {
        self.inner.transport
    }

    /// The ID of the default stream (the bidirectional stream opened at connect time that
    /// [`send`](Self::send) writes to and [`recv`](Self::recv) reads from).
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) {
    /// assert!(conn.default_stream_id().is_bidi());
    /// # }
    /// ```
    pub fn default_stream_id(&self) -> StreamId {
        self.inner.default_stream
    }

    /// Sends a frame and waits until the transport accepted it. Stream data is written from
    /// the calling task (writes to one stream from several tasks go out whole, one after
    /// the other). If the future is dropped before it completes, the data is either not
    /// sent at all (it was still waiting behind another write to that stream) or sent in
    /// full in the background: a stream never carries part of a frame.
    ///
    /// * `Binary`, `Text` (its UTF-8 bytes) and raw bytes are written to the default stream
    ///   as they are. No framing is added: the peer may read them in chunks of any size.
    /// * `Datagram` sends a datagram (see [`send_datagram`](Self::send_datagram)).
    /// * `Stream(id, data, fin)` writes to stream `id`, ending it after `data` if `fin`.
    /// * `Ping` and `Pong` fail with [`Error::UnsupportedFrame`].
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// use wt_client::Frame;
    /// conn.send(Frame::binary("bytes")).await?;
    /// conn.send(Frame::text("text")).await?;
    /// conn.send(b"raw".to_vec()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, frame: impl Into<Frame>) -> Result<(), Error> {
        let default = self.inner.default_stream;
        let (id, data, fin) = match frame.into() {
            Frame::Binary(b) => (default, b, false),
            Frame::Text(t) => (default, Bytes::from(t), false),
            Frame::Stream(id, b, fin) => (id, b, fin),
            Frame::Datagram(d) => return self.send_datagram(d).await,
            Frame::Ping(_) | Frame::Pong(_) => return Err(Error::UnsupportedFrame),
        };
        self.write(id, data, fin).await
    }

    /// Writes through the stream's shared send half from this task; streams without one
    /// (unknown, ended, receive-only) are answered by the driver.
    async fn write(&self, id: StreamId, data: Bytes, fin: bool) -> Result<(), Error> {
        let Some(slot) = self.send_half(id)? else {
            return self.call(|reply| Command::NoSendHalf { id, reply }).await;
        };
        // Without waiting first; only a write that has to wait is a (boxed) future.
        let r = match slot.clone().try_send(data, fin) {
            TrySend::Done(r) => r,
            TrySend::Busy(data) => slot.send(data, fin).await,
            TrySend::Parked(rest) => rest.await,
        };
        self.settle(r).await
    }

    /// The stream's shared send half (`None`: the driver answers for the stream), unless
    /// the session has ended.
    fn send_half(&self, id: StreamId) -> Result<Option<Arc<dyn SendHalf>>, Error> {
        if let Some(t) = self.inner.shared.terminal.get() {
            return Err(t.clone());
        }
        Ok(lock(&self.inner.shared.sends).get(&id).cloned())
    }

    /// The result of a write or reset made through a send half.
    async fn settle(&self, r: Result<(), wt_core::StreamError>) -> Result<(), Error> {
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.failed(Error::Stream(e)).await,
        }
    }

    /// After the transport refused a write or datagram: asks the driver, which has handled
    /// every earlier command (a `close` in particular). It answers with the error that ended
    /// the session once it knows of one, else with `err`.
    async fn failed(&self, err: Error) -> Result<(), Error> {
        self.call(|reply| Command::Failed { err, reply }).await
    }

    /// Sends a datagram: unreliable over HTTP/3 (it may be lost), a reliable capsule over
    /// HTTP/2. Too large a datagram fails with
    /// [`SessionError::DatagramTooLarge`]. Once
    /// the session has ended it fails with [`Error::Closed`] (or the error that ended it).
    ///
    /// The datagram is handed to the transport directly from the calling task, without a
    /// round trip through the connection's driver task. So it is not ordered relative to
    /// stream data sent concurrently from other tasks (datagrams are unordered anyway); a
    /// [`send`](Self::send) that completed before this call was accepted by the transport
    /// first.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// conn.send_datagram("tick").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_datagram(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        self.send_datagram_with(|d| d.send(data)).await
    }

    /// Bytes the transport writes in front of every datagram payload (the quarter stream ID
    /// over HTTP/3; 0 over HTTP/2). A frame with that much room in front goes to
    /// [`send_datagram_with_headroom`](Self::send_datagram_with_headroom) without a copy.
    pub fn datagram_headroom(&self) -> usize {
        self.inner.datagram.headroom()
    }

    /// Sends `frame[headroom..]` as a datagram, using the `headroom` bytes in front as room
    /// for the transport's header: with at least
    /// [`datagram_headroom`](Self::datagram_headroom) of them the payload is not copied (see
    /// [`wt_core::Session::send_datagram_with_headroom`]). Errors as
    /// [`send_datagram`](Self::send_datagram), plus
    /// [`SessionError::DatagramHeadroom`] when `headroom` exceeds the frame.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, seq: u64) -> Result<(), wt_client::Error> {
    /// use bytes::{BufMut, BytesMut};
    /// let room = conn.datagram_headroom();
    /// let mut frame = BytesMut::with_capacity(room + 8);
    /// frame.put_bytes(0, room);
    /// frame.put_u64(seq);
    /// conn.send_datagram_with_headroom(frame, room).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_datagram_with_headroom(
        &self,
        frame: BytesMut,
        headroom: usize,
    ) -> Result<(), Error> {
        self.send_datagram_with(|d| d.send_in_place(frame, headroom))
            .await
    }

    /// Both datagram sends: nothing is sent once the session ended or the driver is gone;
    /// a refusal by the session (too large, bad headroom, or the session is ending) goes
    /// through [`failed`](Self::failed), which reports the end of the session when that is
    /// the cause.
    async fn send_datagram_with(
        &self,
        send: impl FnOnce(&dyn DatagramOut) -> Result<(), SessionError>,
    ) -> Result<(), Error> {
        if let Some(t) = self.inner.shared.terminal.get() {
            return Err(t.clone());
        }
        if self.inner.cmd.is_closed() {
            return Err(Error::driver_gone());
        }
        match send(&*self.inner.datagram) {
            Ok(()) => Ok(()),
            Err(err) => self.failed(Error::Session(err)).await,
        }
    }

    /// Receives the next item of the default channel: default-stream bytes, a datagram, or
    /// an item of a server-opened stream. Waits at most the `recv_timeout` option, if set.
    ///
    /// After the session closed, buffered items are still returned; then
    /// [`Error::Closed`] (or the error that ended the session). In active mode it fails with
    /// [`Error::ActiveMode`]. A second concurrent `recv` fails with [`Error::RecvBusy`].
    /// Cancel safe: nothing is lost when the future is dropped.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// use wt_client::Msg;
    /// match conn.recv().await? {
    ///     Msg::Binary(b) => println!("{} bytes on the default stream", b.len()),
    ///     Msg::Datagram(d) => println!("datagram {d:?}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<Msg, Error> {
        self.recv_main(self.inner.recv_timeout).await
    }

    /// Takes the next item of the default channel straight from the shared buffer, waiting
    /// for the driver to add one if there is none.
    async fn recv_main(&self, timeout: Option<Duration>) -> Result<Msg, Error> {
        let fut = MainRecv {
            shared: &self.inner.shared,
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            registered: false,
            routed: false,
        };
        match timeout {
            None => fut.await,
            Some(d) => tokio::time::timeout(d, fut)
                .await
                .unwrap_or(Err(Error::Timeout)),
        }
    }

    /// Like [`recv`](Self::recv) with a timeout: [`Error::Timeout`] if nothing arrived in
    /// time (and an item arriving later is still there for the next call).
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) {
    /// use std::time::Duration;
    /// match conn.recv_timeout(Duration::from_millis(100)).await {
    ///     Err(wt_client::Error::Timeout) => println!("nothing yet"),
    ///     other => println!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Msg, Error> {
        self.recv_main(Some(timeout)).await
    }

    /// Opens a stream and returns its ID. Waits for stream credit if the peer's limit is
    /// reached. Data the peer sends on a bidirectional stream we opened is read with
    /// [`stream_recv`](Self::stream_recv) (not `recv`).
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// use wt_client::{StreamData, StreamKind};
    /// let id = conn.open_stream(StreamKind::Bidi).await?;
    /// conn.stream_send(id, "ping", true).await?;
    /// while let StreamData::Data(chunk) = conn.stream_recv(id).await? {
    ///     println!("{chunk:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn open_stream(&self, kind: StreamKind) -> Result<StreamId, Error> {
        self.call(|reply| Command::Open { kind, reply }).await
    }

    /// Writes to a stream (one we opened, a server-opened bidirectional one, or the default
    /// stream), ending it after `data` if `fin`. Fails with [`Error::UnknownStream`] for an
    /// ID without a send side.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// let id = conn.open_stream(wt_client::StreamKind::Uni).await?;
    /// conn.stream_send(id, "all of it", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stream_send(
        &self,
        id: StreamId,
        data: impl Into<Bytes>,
        fin: bool,
    ) -> Result<(), Error> {
        self.send(Frame::Stream(id, data.into(), fin)).await
    }

    /// Receives the next chunk of a stream we opened: [`StreamData::Data`], then
    /// [`StreamData::Fin`] when the peer ended it; a reset by the peer is
    /// `Err(Error::Stream(StreamError::Reset(code)))`. Streams the server opened deliver on
    /// the default channel instead ([`Error::UnknownStream`] here). Waits at most the
    /// `recv_timeout` option. Cancel safe.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, id: wt_client::StreamId) -> Result<(), wt_client::Error> {
    /// let data = conn.stream_recv(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stream_recv(&self, id: StreamId) -> Result<StreamData, Error> {
        self.recv_item(Chan::Own(id), self.inner.recv_timeout)
            .await?
            .into_stream_data()
    }

    /// Like [`stream_recv`](Self::stream_recv) with a timeout.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, id: wt_client::StreamId) {
    /// let r = conn.stream_recv_timeout(id, std::time::Duration::from_secs(1)).await;
    /// # }
    /// ```
    pub async fn stream_recv_timeout(
        &self,
        id: StreamId,
        timeout: Duration,
    ) -> Result<StreamData, Error> {
        self.recv_item(Chan::Own(id), Some(timeout))
            .await?
            .into_stream_data()
    }

    /// Ends our side of a stream cleanly (FIN).
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, id: wt_client::StreamId) -> Result<(), wt_client::Error> {
    /// conn.close_stream(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_stream(&self, id: StreamId) -> Result<(), Error> {
        self.stream_send(id, Bytes::new(), true).await
    }

    /// Abruptly ends our side of a stream with an application error code.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, id: wt_client::StreamId) -> Result<(), wt_client::Error> {
    /// conn.reset_stream(id, 42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset_stream(&self, id: StreamId, code: u32) -> Result<(), Error> {
        match self.send_half(id)? {
            Some(slot) => self.settle(slot.reset(code).await).await,
            None => self.call(|reply| Command::NoSendHalf { id, reply }).await,
        }
    }

    /// Asks the peer to stop sending on a stream, with an application error code. Chunks
    /// already received stay readable; then `stream_recv` reports
    /// [`StreamError::ClosedLocally`](wt_core::StreamError::ClosedLocally).
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection, id: wt_client::StreamId) -> Result<(), wt_client::Error> {
    /// conn.stop_sending(id, 7).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop_sending(&self, id: StreamId, code: u32) -> Result<(), Error> {
        self.call(|reply| Command::StopSending { id, code, reply })
            .await
    }

    /// Switches the delivery mode at any time, losing and reordering nothing: items buffered
    /// in passive mode are forwarded first when switching to active; events not yet read
    /// from the [`EventReceiver`] stay there when switching back. Waiting `recv` calls fail
    /// with [`Error::ActiveMode`] when leaving passive mode.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// use wt_client::Active;
    /// let mut events = conn.take_events().expect("not taken yet");
    /// conn.set_active(Active::Once).await?;
    /// let first = events.recv().await;
    /// // back in passive mode now
    /// # Ok(()) }
    /// ```
    pub async fn set_active(&self, mode: Active) -> Result<(), Error> {
        self.call(|reply| Command::SetActive { mode, reply }).await
    }

    /// Takes the receiver of active-mode events (hackney's controlling process), to read in
    /// this task or move to another one. `None` while someone else holds it; dropping the
    /// receiver gives it back to the connection, with any unread events still in it.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) {
    /// let mut events = conn.take_events().unwrap();
    /// tokio::spawn(async move {
    ///     while let Some(ev) = events.recv().await {
    ///         println!("{ev:?}");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn take_events(&self) -> Option<EventReceiver> {
        let rx = lock(&self.inner.shared.events).take()?;
        Some(EventReceiver {
            rx: Some(rx),
            shared: self.inner.shared.clone(),
        })
    }

    /// Closes the session with code 0 and no reason. Buffered data stays readable; then
    /// readers see [`Error::Closed`]. Closing a closed session is a no-op.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// conn.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        self.close_with(0, "").await
    }

    /// Closes the session with an application code and a reason of at most 1024 bytes
    /// (longer: [`Error::InvalidReason`], nothing sent). The peer sees both.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// conn.close_with(4000, "done for today").await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_with(&self, code: u32, reason: &str) -> Result<(), Error> {
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::InvalidReason(reason.len()));
        }
        let reason = reason.to_owned();
        self.call(|reply| Command::Close {
            code,
            reason,
            reply,
        })
        .await
    }

    /// Transport, dialect, stream counts, flow-control limits both ways, bytes sent and
    /// received, and how the session closed.
    ///
    /// ```no_run
    /// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
    /// let info = conn.info().await?;
    /// println!("{} / {}: {} bytes in", info.transport, info.dialect, info.stats.bytes_received);
    /// # Ok(()) }
    /// ```
    pub async fn info(&self) -> Result<ConnectionInfo, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Command::Info { reply: tx })
            .await
            .map_err(|_| Error::driver_gone())?;
        rx.await.map_err(|_| Error::driver_gone())
    }

    /// Unread bytes now (what `max_recv_buffer` limits).
    ///
    /// ```no_run
    /// # fn demo(conn: wt_client::Connection) {
    /// println!("{} bytes waiting", conn.unread_bytes());
    /// # }
    /// ```
    pub fn unread_bytes(&self) -> usize {
        self.inner.shared.unread.load(Ordering::Acquire)
    }
}

/// Receives active-mode [`Event`]s. Obtained from [`Connection::take_events`]; can be moved
/// to any task. Dropping it hands it back to the connection (unread events stay in it).
///
/// ```no_run
/// # async fn demo(conn: wt_client::Connection) -> Result<(), wt_client::Error> {
/// use wt_client::{Active, Event};
/// let mut events = conn.take_events().unwrap();
/// conn.set_active(Active::On).await?;
/// while let Some(ev) = events.recv().await {
///     if let Event::Closed { code, reason } = ev {
///         println!("closed: {code} {reason}");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct EventReceiver {
    rx: Option<mpsc::Receiver<Event>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver").finish_non_exhaustive()
    }
}

impl EventReceiver {
    fn account(&self, ev: &Event) {
        self.shared
            .unread
            .fetch_sub(ev.accounted(), Ordering::AcqRel);
    }

    /// The next event; `None` after the final [`Event::Closed`] / [`Event::Error`] was read,
    /// or once every [`Connection`] handle is gone. Cancel safe.
    ///
    /// ```no_run
    /// # async fn demo(mut events: wt_client::EventReceiver) {
    /// if let Some(ev) = events.recv().await { println!("{ev:?}"); }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        let ev = self.rx.as_mut()?.recv().await?;
        self.account(&ev);
        Some(ev)
    }

    /// Like [`recv`](Self::recv), failing with [`Error::Timeout`] if nothing arrives in time,
    /// and with the driver-stopped error when the channel has ended.
    ///
    /// ```no_run
    /// # async fn demo(mut events: wt_client::EventReceiver) {
    /// let ev = events.recv_timeout(std::time::Duration::from_secs(1)).await;
    /// # }
    /// ```
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, Error> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(Error::driver_gone()),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// An event if one is ready now.
    ///
    /// ```no_run
    /// # fn demo(mut events: wt_client::EventReceiver) {
    /// while let Some(ev) = events.try_recv() { println!("{ev:?}"); }
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Option<Event> {
        let ev = self.rx.as_mut()?.try_recv().ok()?;
        self.account(&ev);
        Some(ev)
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            let mut slot = lock(&self.shared.events);
            *slot = Some(rx);
        }
    }
}
