//! WebTransport streams: thin wrappers over quinn streams. Data goes straight between the
//! application and quinn (no task, no channel); the wrapper only maps error codes and watches
//! for the end of the session.
//!
//! quinn has no RESET_STREAM_AT, so [`SendStream::reset`](wt_core::SendStream::reset) sends a
//! plain RESET_STREAM (what Chrome does too); a peer may then lose the stream header and be
//! unable to attribute the reset to a session.
//!
//! The header of a stream we open (0x41/0x54 and the session ID) is not written by the open
//! itself: it stays pending in the [`SendStream`] and goes out in the same quinn call as the
//! first payload, or just before the FIN when the stream is finished (or dropped) without
//! data. The peer therefore sees a stream we opened once we write to or finish it. A reset
//! before any data drops the header (the RESET_STREAM_AT gap above).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use wt_core::codes::{wt_from_h3, wt_to_h3, H3Code};
use wt_core::{StreamError, StreamId};

use crate::conn::flow::Credit;
use crate::driver::varint;
use crate::readahead::{EndKind, ReadAhead};
use crate::session::{PeerStreamSlot, SessionShared};
use crate::stats::Counter;

/// Most payload bytes copied for the first write that carries the pending stream header.
const FIRST_WRITE_MAX: usize = 64 * 1024;

/// The send half of a WebTransport stream.
///
/// On a stream we opened, the stream header is sent with the first payload (or before the
/// FIN): like a plain QUIC stream, the peer learns of it only once it is written to or
/// finished. [`write`](wt_core::SendStream::write) is cancel safe (if its future is dropped
/// unresolved, no byte of the buffer was written); `write_chunk` is not.
pub struct SendStream {
    /// `None` once the session is gone (the half is reset, now or by the session's close
    /// hold), or handed to a task by `Drop`.
    inner: Option<quinn::SendStream>,
    /// The stream's ID (`inner` may be gone).
    id: quinn::StreamId,
    session: Arc<SessionShared>,
    _slot: Option<Arc<PeerStreamSlot>>,
    /// Created by the first [`stop_notice`](wt_core::SendStream::stop_notice); cancelled on
    /// reset and drop, which quinn's own `stopped` does not report.
    gone: std::sync::OnceLock<tokio_util::sync::CancellationToken>,
    /// Our stream header (streams we open), not yet written: it goes out with the first
    /// payload, or before the FIN.
    header: HeaderLeft,
    /// `finish` was called while the header could not be written at once (flow control):
    /// header and FIN still to go, from `stopped` or from a task when dropped.
    fin_pending: bool,
    done: bool,
}

/// How many bytes of a stream's header are still to be written: a count, not the bytes,
/// which are the session's (its cached header for the stream's direction), so a stream does
/// not carry a copy of them (every stream future that holds a stream holds this).
#[derive(Clone, Copy, Debug, Default)]
struct HeaderLeft(u8);

impl HeaderLeft {
    /// The whole header of a stream in direction `dir` of `session`.
    fn all(session: &SessionShared, dir: quinn::Dir) -> Self {
        let n = session.stream_header(dir == quinn::Dir::Bi).len();
        HeaderLeft(u8::try_from(n).unwrap_or(u8::MAX))
    }

    fn is_pending(self) -> bool {
        self.0 > 0
    }

    /// What is left of the header of `q`, a slice of the session's copy (empty when none is).
    fn bytes(self, session: &SessionShared, q: &quinn::SendStream) -> Bytes {
        if self.0 == 0 {
            return Bytes::new();
        }
        let all = session.stream_header(q.id().dir() == quinn::Dir::Bi);
        let from = all.len().saturating_sub(usize::from(self.0));
        all.slice(from..)
    }

    /// Counts `n` more header bytes as written (at most what is left).
    fn advance(&mut self, n: usize) {
        self.0 -= u8::try_from(n).unwrap_or(u8::MAX).min(self.0);
    }

    /// Nothing left to write (written, or dropped with the stream).
    fn clear(&mut self) {
        self.0 = 0;
    }
}

/// One step of a cancel-safe write: the pending `header` (if any) followed by up to
/// [`FIRST_WRITE_MAX`] bytes of `data` in one quinn call, else `data` alone; `Ready` with the
/// payload bytes written (at least one for non-empty `data`). `Pending` wrote no byte of
/// `data` (part of the header may have gone, and `header` counts it).
fn poll_write_with_header(
    q: &mut quinn::SendStream,
    header: &mut HeaderLeft,
    session: &SessionShared,
    data: &[u8],
    cx: &mut Context<'_>,
) -> Poll<Result<usize, quinn::WriteError>> {
    while header.is_pending() {
        let take = data.len().min(FIRST_WRITE_MAX);
        // Copied on every try: a write only waits here when the stream is blocked before
        // its first byte.
        let mut bufs = [
            header.bytes(session, q),
            Bytes::copy_from_slice(&data[..take]),
        ];
        let w = match poll_write_chunks(q, &mut bufs, cx) {
            Poll::Ready(Ok(w)) => w,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let hn = w.bytes.min(usize::from(header.0));
        header.advance(hn);
        if w.bytes > hn {
            return Poll::Ready(Ok(w.bytes - hn));
        }
    }
    std::pin::pin!(q.write(data)).poll(cx)
}

/// One quinn `write_chunks` step, polled in place: quinn's future for it holds nothing between
/// polls (it writes what fits or registers the waker), so a fresh one per poll is the same
/// future, and callers keep no quinn future in their own state.
fn poll_write_chunks(
    q: &mut quinn::SendStream,
    bufs: &mut [Bytes],
    cx: &mut Context<'_>,
) -> Poll<Result<quinn::Written, quinn::WriteError>> {
    std::pin::pin!(q.write_chunks(bufs)).poll(cx)
}

/// Writes the pending `header` (if any) and all of `chunk`, together when possible. Not
/// cancel safe for `chunk`; `header` always counts what is left of the header.
fn write_chunk_with_header<'a>(
    q: &'a mut quinn::SendStream,
    header: &'a mut HeaderLeft,
    session: &'a SessionShared,
    mut chunk: Bytes,
) -> impl Future<Output = Result<(), quinn::WriteError>> + 'a {
    std::future::poll_fn(move |cx| loop {
        if !header.is_pending() && chunk.is_empty() {
            return Poll::Ready(Ok(()));
        }
        // The chunk moves into the quinn call, which advances it in place, and back: the
        // future keeps it once. The header goes first, so what was written counts against
        // it first.
        let mut bufs = [header.bytes(session, q), std::mem::take(&mut chunk)];
        let r = poll_write_chunks(q, &mut bufs, cx);
        let [_, rest] = bufs;
        chunk = rest;
        match r {
            Poll::Ready(Ok(w)) => header.advance(w.bytes),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    })
}

/// Writes what is left of `header`, then finishes the stream.
async fn finish_after_header(
    q: &mut quinn::SendStream,
    header: &mut HeaderLeft,
    session: &SessionShared,
) -> Result<(), quinn::WriteError> {
    write_chunk_with_header(q, header, session, Bytes::new()).await?;
    let _ = q.finish();
    Ok(())
}

/// Writes as much of the pending `header` as quinn takes without waiting; `true` when none
/// is left to write (written, or the stream cannot be written any more).
fn flush_header_now(
    q: &mut quinn::SendStream,
    header: &mut HeaderLeft,
    session: &SessionShared,
) -> bool {
    if !header.is_pending() {
        return true;
    }
    let mut bufs = [header.bytes(session, q)];
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match poll_write_chunks(q, &mut bufs, &mut cx) {
        Poll::Ready(Ok(w)) => header.advance(w.bytes),
        // Stopped, closed or connection lost: there is nothing left to send it on.
        Poll::Ready(Err(_)) => header.clear(),
        // Blocked by flow control.
        Poll::Pending => {}
    }
    !header.is_pending()
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("id", &wt_core::SendStream::id(self))
            .finish()
    }
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream, session: Arc<SessionShared>) -> Self {
        SendStream {
            id: inner.id(),
            inner: Some(inner),
            session,
            _slot: None,
            gone: std::sync::OnceLock::new(),
            header: HeaderLeft::default(),
            fin_pending: false,
            done: false,
        }
    }

    /// Ties the stream to the stream credit of a peer-opened stream.
    pub(crate) fn with_slot(mut self, slot: Option<Arc<PeerStreamSlot>>) -> Self {
        self._slot = slot;
        self
    }

    /// Marks the session's stream header as still to send, before the first payload
    /// (streams we open).
    pub(crate) fn with_header(mut self) -> Self {
        if let Some(q) = &self.inner {
            self.header = HeaderLeft::all(&self.session, q.id().dir());
        }
        self
    }

    fn gone(&mut self) -> StreamError {
        if !self.done {
            self.done = true;
            if let Some(q) = self.inner.take() {
                self.session.hold.reset(q);
            }
        }
        StreamError::SessionGone(self.session.end_reason())
    }

    fn map_write(&mut self, e: quinn::WriteError) -> StreamError {
        match e {
            quinn::WriteError::Stopped(code) => StreamError::Stopped(wt_from_h3(code.into_inner())),
            quinn::WriteError::ConnectionLost(e) => {
                if self.session.is_ended() {
                    StreamError::SessionGone(self.session.end_reason())
                } else {
                    StreamError::SessionGone(wt_core::SessionError::Connection(
                        self.session.conn.map_error(&e),
                    ))
                }
            }
            _ => StreamError::ClosedLocally,
        }
    }
}

impl wt_core::SendStream for SendStream {
    fn id(&self) -> StreamId {
        quinn_stream_id(self.id)
    }

    /// Cancel safe: if the future is dropped before it resolves, no byte of `buf` was
    /// written (part of a pending stream header may have been).
    // Not an `async fn`, which would keep its arguments twice in its future.
    #[allow(clippy::manual_async_fn)]
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<usize, StreamError>> + Send {
        async move {
            if self.session.is_ended() {
                return Err(self.gone());
            }
            if buf.is_empty() {
                return Ok(0);
            }
            if self.fin_pending {
                return Err(StreamError::ClosedLocally);
            }
            let Some(q) = self.inner.as_mut() else {
                return Err(StreamError::ClosedLocally);
            };
            let r = {
                // Waits for session credit (with flow control); unused credit goes back.
                let Ok(credit) = self.session.acquire(Credit::Data, buf.len() as u64).await else {
                    return Err(self.gone());
                };
                let n = credit.as_ref().map_or(buf.len(), |c| c.n as usize);
                let (header, session) = (&mut self.header, &*self.session);
                let data = &buf[..n];
                let op =
                    std::future::poll_fn(|cx| poll_write_with_header(q, header, session, data, cx));
                let r = self.session.end.or_end(op).await;
                if let (Some(Ok(m)), Some(credit)) = (&r, credit) {
                    credit.commit(*m as u64);
                }
                r
            };
            let Some(r) = r else {
                return Err(self.gone());
            };
            match r {
                Ok(n) => {
                    self.session.stats.add(Counter::BytesSent, n as u64);
                    Ok(n)
                }
                Err(e) => Err(self.map_write(e)),
            }
        }
    }

    // Not an `async fn`: that would keep `data` twice in its future (the argument, and the
    // local it is moved to).
    #[allow(clippy::manual_async_fn)]
    fn write_chunk(
        &mut self,
        mut data: Bytes,
    ) -> impl Future<Output = Result<(), StreamError>> + Send {
        async move {
            if self.session.is_ended() {
                return Err(self.gone());
            }
            if self.fin_pending {
                return Err(StreamError::ClosedLocally);
            }
            while !data.is_empty() {
                let chunk = {
                    let Ok(credit) = self.session.acquire(Credit::Data, data.len() as u64).await
                    else {
                        return Err(self.gone());
                    };
                    // Without flow control the whole chunk goes in one write.
                    let take = credit.as_ref().map_or(data.len(), |c| c.n as usize);
                    let chunk = data.split_to(take);
                    // Counted as sent before the write: if this call is cancelled a prefix may be
                    // on the wire (write_chunk is not cancel safe), and over-counting is safe.
                    if let Some(credit) = credit {
                        credit.commit(chunk.len() as u64);
                    }
                    chunk
                };
                let n = chunk.len() as u64;
                let Some(q) = self.inner.as_mut() else {
                    return Err(StreamError::ClosedLocally);
                };
                let op = write_chunk_with_header(q, &mut self.header, &self.session, chunk);
                let Some(r) = self.session.end.or_end(op).await else {
                    return Err(self.gone());
                };
                match r {
                    Ok(()) => {
                        self.session.stats.add(Counter::BytesSent, n);
                    }
                    Err(e) => return Err(self.map_write(e)),
                }
            }
            Ok(())
        }
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        if self.session.is_ended() {
            return Err(self.gone());
        }
        if self.fin_pending {
            return Err(StreamError::ClosedLocally);
        }
        let Some(q) = self.inner.as_mut() else {
            return Err(StreamError::ClosedLocally);
        };
        if !flush_header_now(q, &mut self.header, &self.session) {
            // No credit for the header right now: it and the FIN go out later.
            self.fin_pending = true;
            self.done = true;
            return Ok(());
        }
        q.finish().map_err(|_| StreamError::ClosedLocally)?;
        self.done = true;
        Ok(())
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        // A header not yet sent is dropped with the rest (no RESET_STREAM_AT).
        self.header.clear();
        self.fin_pending = false;
        let Some(q) = self.inner.as_mut() else {
            return Err(StreamError::ClosedLocally);
        };
        q.reset(varint(wt_to_h3(code)))
            .map_err(|_| StreamError::ClosedLocally)?;
        self.done = true;
        if let Some(g) = self.gone.get() {
            g.cancel();
        }
        Ok(())
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        let Some(q) = self.inner.as_mut() else {
            // Reset when the session ended.
            return Err(StreamError::SessionGone(self.session.end_reason()));
        };
        if self.fin_pending {
            let watched = self
                .session
                .end
                .or_end(finish_after_header(q, &mut self.header, &self.session))
                .await;
            let Some(r) = watched else {
                return Err(StreamError::SessionGone(self.session.end_reason()));
            };
            self.fin_pending = false;
            match r {
                Ok(()) => {}
                Err(quinn::WriteError::Stopped(code)) => {
                    return Ok(Some(wt_from_h3(code.into_inner()).unwrap_or(0)))
                }
                Err(quinn::WriteError::ConnectionLost(e)) => {
                    return Err(StreamError::SessionGone(wt_core::SessionError::Connection(
                        self.session.conn.map_error(&e),
                    )))
                }
                Err(_) => return Ok(None),
            }
        }
        let Some(r) = self.session.end.or_end(q.stopped()).await else {
            return Err(StreamError::SessionGone(self.session.end_reason()));
        };
        match r {
            Ok(Some(code)) => Ok(Some(wt_from_h3(code.into_inner()).unwrap_or(0))),
            Ok(None) => Ok(None),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(StreamError::SessionGone(
                wt_core::SessionError::Connection(self.session.conn.map_error(&e)),
            )),
            Err(_) => Ok(None),
        }
    }

    /// Zero-copy once the stream header is out (the first write, which carries the header,
    /// copies). Cancel safe.
    async fn write_some(&mut self, data: &mut Bytes) -> Result<(), StreamError> {
        if self.header.is_pending() || self.fin_pending || self.inner.is_none() {
            let n = wt_core::SendStream::write(self, data).await?;
            data.advance(n);
            return Ok(());
        }
        if self.session.is_ended() {
            return Err(self.gone());
        }
        if data.is_empty() {
            return Ok(());
        }
        let Some(q) = self.inner.as_mut() else {
            return Err(StreamError::ClosedLocally);
        };
        // Waits for session credit (with flow control); unused credit goes back.
        let Ok(credit) = self.session.acquire(Credit::Data, data.len() as u64).await else {
            return Err(self.gone());
        };
        let take = credit.as_ref().map_or(data.len(), |c| c.n as usize);
        let whole = take == data.len();
        let op = std::future::poll_fn(|cx| {
            // All of `data` goes: the `Bytes` itself moves into quinn's argument and what
            // quinn leaves of it moves back, so `data` holds every unwritten byte between
            // polls (cancel safe) and is not sliced (slicing a `Bytes` made from a `Vec`
            // allocates its shared header). Only part of it (credit): a slice.
            let mut chunk = [if whole {
                std::mem::take(&mut *data)
            } else {
                data.slice(..take)
            }];
            let p = std::pin::pin!(q.write_chunks(&mut chunk)).poll(cx);
            if whole {
                *data = std::mem::take(&mut chunk[0]);
            } else if let Poll::Ready(Ok(w)) = &p {
                data.advance(w.bytes);
            }
            p
        });
        let r = self.session.end.or_end(op).await;
        match r {
            Some(Ok(w)) => {
                if let Some(credit) = credit {
                    credit.commit(w.bytes as u64);
                }
                self.session.stats.add(Counter::BytesSent, w.bytes as u64);
                Ok(())
            }
            Some(Err(e)) => {
                drop(credit);
                Err(self.map_write(e))
            }
            None => {
                drop(credit);
                Err(self.gone())
            }
        }
    }

    fn stop_notice(&self) -> impl Future<Output = Option<u32>> + Send + 'static {
        let stopped = self.inner.as_ref().map(|q| q.stopped());
        let session = self.session.clone();
        let gone = self.gone.get_or_init(Default::default).clone();
        let already_done = self.done;
        async move {
            let stopped = stopped?;
            if already_done {
                return None;
            }
            tokio::select! {
                biased;
                r = stopped => match r {
                    Ok(Some(code)) => Some(wt_from_h3(code.into_inner()).unwrap_or(0)),
                    _ => None,
                },
                _ = gone.cancelled() => None,
                _ = session.end.wait() => None,
            }
        }
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if let Some(g) = self.gone.get() {
            g.cancel();
        }
        if !self.done && self.session.is_ended() {
            if let Some(q) = self.inner.take() {
                self.session.hold.reset(q);
            }
            return;
        }
        let Some(q) = self.inner.as_mut() else {
            return;
        };
        // Otherwise quinn finishes the stream when dropped, after the header if it is still
        // pending (the peer must see it before the FIN).
        if !(self.fin_pending || (!self.done && self.header.is_pending())) {
            return;
        }
        if flush_header_now(q, &mut self.header, &self.session) {
            return;
        }
        // Blocked by flow control: a task writes the header and finishes.
        let (Some(mut q), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut header = self.header;
        let session = self.session.clone();
        rt.spawn(async move {
            tokio::select! {
                biased;
                _ = session.end.wait() => session.hold.reset(q),
                _ = finish_after_header(&mut q, &mut header, &session) => {}
            }
        });
    }
}

/// Where a receive half's bytes come from.
pub(crate) enum Source {
    /// Straight from quinn (no session flow control), after the prefix: payload bytes read
    /// along with the stream preamble.
    Quinn(quinn::RecvStream, Bytes),
    /// From the read-ahead queue (session flow control: bytes are counted on arrival).
    Ahead(Arc<ReadAhead>),
    /// Stopped with WT_SESSION_GONE: the quinn half went to the session's close hold.
    Gone(quinn::StreamId),
}

impl Source {
    /// Reads `recv` ahead when `session` has flow control, else hands it through; `prefix`
    /// (payload already read from `recv`) comes first either way.
    pub(crate) fn new(
        recv: quinn::RecvStream,
        prefix: Bytes,
        session: &Arc<SessionShared>,
    ) -> Self {
        if session.has_flow_control() {
            Source::Ahead(ReadAhead::spawn(recv, prefix, session.clone()))
        } else {
            Source::Quinn(recv, prefix)
        }
    }

    /// The quinn stream ID.
    pub(crate) fn quinn_id(&self) -> quinn::StreamId {
        match self {
            Source::Quinn(r, _) => r.id(),
            Source::Ahead(ra) => ra.id,
            Source::Gone(id) => *id,
        }
    }

    /// One read of at most `max` bytes (after the prefix, which the caller takes first): a
    /// chunk, or how the stream ended; `Pending` registers `cx` with quinn or the pump. Holds
    /// no state between polls, so a read future keeps none of quinn's.
    fn poll_read(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Bytes, EndKind>> {
        match self {
            Source::Quinn(r, _) => {
                let step = std::pin::pin!(r.read_chunk(max, true)).poll(cx);
                step.map(|r| match r {
                    Ok(Some(c)) => Ok(c.bytes),
                    Ok(None) => Err(EndKind::Fin),
                    Err(quinn::ReadError::Reset(code)) => Err(EndKind::Reset(code.into_inner())),
                    Err(quinn::ReadError::ConnectionLost(e)) => Err(EndKind::Lost(e)),
                    Err(_) => Err(EndKind::Other),
                })
            }
            Source::Ahead(ra) => ra.poll_read(cx, max),
            Source::Gone(_) => Poll::Ready(Err(EndKind::Other)),
        }
    }

    /// STOP_SENDING with `code`; returns the bytes read ahead and dropped unread.
    /// WT_SESSION_GONE goes through `session`'s close hold.
    fn stop(&mut self, code: u64, session: &SessionShared) -> Result<u64, quinn::ClosedStream> {
        match self {
            Source::Quinn(r, _) if code == H3Code::WT_SESSION_GONE.0 => {
                let id = r.id();
                if let Source::Quinn(r, _) = std::mem::replace(self, Source::Gone(id)) {
                    session.hold.stop(r);
                }
                Ok(0)
            }
            Source::Quinn(r, prefix) => {
                *prefix = Bytes::new();
                r.stop(varint(code)).map(|()| 0)
            }
            // The pump sends WT_SESSION_GONE through the hold itself.
            Source::Ahead(ra) => Ok(ra.request_stop(code)),
            Source::Gone(_) => Err(quinn::ClosedStream::default()),
        }
    }

    /// Refuses, with WT_SESSION_GONE, a stream of `session` never handed to the application.
    pub(crate) fn refuse_gone(mut self, session: &SessionShared) {
        let _ = self.stop(H3Code::WT_SESSION_GONE.0, session);
    }
}

/// The receive half of a WebTransport stream.
pub struct RecvStream {
    inner: Source,
    session: Arc<SessionShared>,
    _slot: Option<Arc<PeerStreamSlot>>,
    /// The peer reset the stream before its preamble arrived: the code, reported by the
    /// first read ([`NO_PRE_RESET`] when not).
    pre_reset: u64,
    done: bool,
}

/// [`RecvStream::pre_reset`] when there is none (codes are varints, below 2^62).
const NO_PRE_RESET: u64 = u64::MAX;

/// Our stream ID of a quinn stream.
pub(crate) fn quinn_stream_id(id: quinn::StreamId) -> StreamId {
    StreamId(quinn::VarInt::from(id).into_inner())
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("id", &quinn_stream_id(self.inner.quinn_id()))
            .finish()
    }
}

impl RecvStream {
    pub(crate) fn new(inner: Source, session: Arc<SessionShared>) -> Self {
        let pre_reset = session.take_pre_reset(inner.quinn_id());
        RecvStream {
            inner,
            session,
            _slot: None,
            pre_reset: pre_reset.unwrap_or(NO_PRE_RESET),
            done: pre_reset.is_some(),
        }
    }

    /// Ties the stream to the stream credit of a peer-opened stream.
    pub(crate) fn with_slot(mut self, slot: Option<Arc<PeerStreamSlot>>) -> Self {
        self._slot = slot;
        self
    }

    fn gone(&mut self) -> StreamError {
        if !self.done {
            self.done = true;
            let _ = self.inner.stop(H3Code::WT_SESSION_GONE.0, &self.session);
        }
        StreamError::SessionGone(self.session.end_reason())
    }

    /// STOP_SENDING with `code`; credit of bytes read ahead but never read is given back.
    fn stop_inner(&mut self, code: u64) -> Result<(), quinn::ClosedStream> {
        let dropped = self.inner.stop(code, &self.session)?;
        self.session.on_peer_consumed(dropped);
        Ok(())
    }

    fn lost(&self, e: &quinn::ConnectionError) -> StreamError {
        if self.session.is_ended() {
            StreamError::SessionGone(self.session.end_reason())
        } else {
            StreamError::SessionGone(wt_core::SessionError::Connection(
                self.session.conn.map_error(e),
            ))
        }
    }
}

impl wt_core::RecvStream for RecvStream {
    fn id(&self) -> StreamId {
        quinn_stream_id(self.inner.quinn_id())
    }

    // Not an `async fn`, which would keep its arguments twice in its future.
    #[allow(clippy::manual_async_fn)]
    fn read_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, StreamError>> + Send {
        async move {
            if self.pre_reset != NO_PRE_RESET {
                let code = std::mem::replace(&mut self.pre_reset, NO_PRE_RESET);
                return Err(StreamError::Reset(wt_from_h3(code)));
            }
            if self.done && !self.session.is_ended() {
                return Ok(None);
            }
            if self.session.is_ended() {
                return Err(self.gone());
            }
            if let Source::Quinn(_, prefix) = &mut self.inner {
                if !prefix.is_empty() && max > 0 {
                    // Payload read along with the preamble (no await: cancel safe).
                    let c = if prefix.len() <= max {
                        std::mem::take(prefix)
                    } else {
                        prefix.split_to(max)
                    };
                    let n = c.len() as u64;
                    self.session.stats.add(Counter::BytesReceived, n);
                    return Ok(Some(c));
                }
            }
            let inner = &mut self.inner;
            let step = std::future::poll_fn(|cx| inner.poll_read(cx, max));
            let Some(r) = self.session.end.or_end(step).await else {
                return Err(self.gone());
            };
            let ahead = matches!(self.inner, Source::Ahead(_));
            match r {
                Ok(c) => {
                    let n = c.len() as u64;
                    if ahead {
                        // Counted as received when it arrived; consumed now.
                        self.session.on_peer_consumed(n);
                    }
                    self.session.stats.add(Counter::BytesReceived, n);
                    Ok(Some(c))
                }
                Err(EndKind::Fin) => {
                    self.done = true;
                    Ok(None)
                }
                Err(EndKind::Reset(code)) => {
                    self.done = true;
                    Err(StreamError::Reset(wt_from_h3(code)))
                }
                // The pump has let go of the stream by the time it reports any end.
                Err(end) => {
                    self.done |= ahead;
                    match end {
                        EndKind::Lost(e) => Err(self.lost(&e)),
                        EndKind::Other if ahead && self.session.is_ended() => {
                            Err(StreamError::SessionGone(self.session.end_reason()))
                        }
                        _ => Err(StreamError::ClosedLocally),
                    }
                }
            }
        }
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.stop_inner(wt_to_h3(code))
            .map_err(|_| StreamError::ClosedLocally)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if !self.done {
            let code = if self.session.is_ended() {
                H3Code::WT_SESSION_GONE.0
            } else {
                wt_to_h3(0)
            };
            let _ = self.stop_inner(code);
        }
    }
}
