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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use wt_core::codes::{wt_from_h3, wt_to_h3, H3Code};
use wt_core::{StreamError, StreamId};

use crate::conn::flow::Credit;
use crate::driver::varint;
use crate::readahead::{EndKind, ReadAhead};
use crate::session::{PeerStreamSlot, SessionShared};

/// Most payload bytes copied for the first write that carries the pending stream header.
const FIRST_WRITE_MAX: usize = 64 * 1024;

/// The send half of a WebTransport stream.
///
/// On a stream we opened, the stream header is sent with the first payload (or before the
/// FIN): like a plain QUIC stream, the peer learns of it only once it is written to or
/// finished. [`write`](wt_core::SendStream::write) is cancel safe (if its future is dropped
/// unresolved, no byte of the buffer was written); `write_chunk` is not.
pub struct SendStream {
    /// `None` only once handed to a task by `Drop`.
    inner: Option<quinn::SendStream>,
    /// Our stream header (streams we open), not yet written: it goes out with the first
    /// payload, or before the FIN.
    header: Option<Bytes>,
    /// `finish` was called while the header could not be written at once (flow control):
    /// header and FIN still to go, from `stopped` or from a task when dropped.
    fin_pending: bool,
    id: StreamId,
    session: Arc<SessionShared>,
    done: bool,
    _slot: Option<Arc<PeerStreamSlot>>,
    /// Created by the first [`stop_notice`](wt_core::SendStream::stop_notice); cancelled on
    /// reset and drop, which quinn's own `stopped` does not report.
    gone: std::sync::OnceLock<tokio_util::sync::CancellationToken>,
}

/// Writes the pending `header` (if any) followed by up to [`FIRST_WRITE_MAX`] bytes of `data`
/// in one quinn call; returns the payload bytes written (at least one for non-empty `data`).
/// Cancel safe: if it does not resolve no byte of `data` was written, and `header` holds
/// what is left of the header.
async fn write_with_header(
    q: &mut quinn::SendStream,
    header: &mut Option<Bytes>,
    data: &[u8],
) -> Result<usize, quinn::WriteError> {
    while let Some(h) = header.as_mut() {
        let take = data.len().min(FIRST_WRITE_MAX);
        let mut bufs = [h.clone(), Bytes::copy_from_slice(&data[..take])];
        let w = q.write_chunks(&mut bufs).await?;
        let hn = w.bytes.min(h.len());
        h.advance(hn);
        if h.is_empty() {
            *header = None;
        }
        if w.bytes > hn {
            return Ok(w.bytes - hn);
        }
    }
    q.write(data).await
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
/// cancel safe for `chunk`; `header` always holds what is left of the header.
fn write_chunk_with_header<'a>(
    q: &'a mut quinn::SendStream,
    header: &'a mut Option<Bytes>,
    chunk: Bytes,
) -> impl Future<Output = Result<(), quinn::WriteError>> + 'a {
    // quinn advances what it writes in place, the header's copy in `bufs[0]` too; `header`
    // keeps the rest of the header (for a cancelled write) and is advanced alongside.
    let mut bufs = [header.clone().unwrap_or_default(), chunk];
    std::future::poll_fn(move |cx| loop {
        if bufs.iter().all(Bytes::is_empty) {
            return Poll::Ready(Ok(()));
        }
        let w = match poll_write_chunks(q, &mut bufs, cx) {
            Poll::Ready(Ok(w)) => w,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(h) = header.as_mut() {
            h.advance(w.bytes.min(h.len()));
            if h.is_empty() {
                *header = None;
            }
        }
    })
}

/// Writes what is left of `header`, then finishes the stream.
async fn finish_after_header(
    q: &mut quinn::SendStream,
    header: &mut Option<Bytes>,
) -> Result<(), quinn::WriteError> {
    write_chunk_with_header(q, header, Bytes::new()).await?;
    let _ = q.finish();
    Ok(())
}

/// Writes as much of the pending `header` as quinn takes without waiting; `true` when none
/// is left to write (written, or the stream cannot be written any more).
fn flush_header_now(q: &mut quinn::SendStream, header: &mut Option<Bytes>) -> bool {
    let Some(h) = header.as_mut() else {
        return true;
    };
    let mut bufs = [h.clone()];
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let r = {
        let fut = std::pin::pin!(q.write_chunks(&mut bufs));
        fut.poll(&mut cx)
    };
    match r {
        Poll::Ready(Ok(w)) => h.advance(w.bytes),
        // Stopped, closed or connection lost: there is nothing left to send it on.
        Poll::Ready(Err(_)) => h.clear(),
        // Blocked by flow control.
        Poll::Pending => {}
    }
    if h.is_empty() {
        *header = None;
        true
    } else {
        false
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream, id: StreamId, session: Arc<SessionShared>) -> Self {
        SendStream {
            inner: Some(inner),
            header: None,
            fin_pending: false,
            id,
            session,
            done: false,
            _slot: None,
            gone: std::sync::OnceLock::new(),
        }
    }

    /// Ties the stream to the stream credit of a peer-opened stream.
    pub(crate) fn with_slot(mut self, slot: Option<Arc<PeerStreamSlot>>) -> Self {
        self._slot = slot;
        self
    }

    /// Sets the stream header to send before the first payload (streams we open).
    pub(crate) fn with_header(mut self, header: Bytes) -> Self {
        self.header = Some(header);
        self
    }

    fn gone(&mut self) -> StreamError {
        if !self.done {
            self.done = true;
            if let Some(q) = self.inner.as_mut() {
                let _ = q.reset(varint(H3Code::WT_SESSION_GONE.0));
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
        self.id
    }

    /// Cancel safe: if the future is dropped before it resolves, no byte of `buf` was
    /// written (part of a pending stream header may have been).
    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
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
            let r = self
                .session
                .end
                .or_end(write_with_header(q, &mut self.header, &buf[..n]))
                .await;
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
                self.session.stats.bytes_sent.fetch_add(n as u64, Relaxed);
                Ok(n)
            }
            Err(e) => Err(self.map_write(e)),
        }
    }

    async fn write_chunk(&mut self, data: Bytes) -> Result<(), StreamError> {
        if self.session.is_ended() {
            return Err(self.gone());
        }
        if self.fin_pending {
            return Err(StreamError::ClosedLocally);
        }
        let mut data = data;
        while !data.is_empty() {
            let chunk = {
                let Ok(credit) = self.session.acquire(Credit::Data, data.len() as u64).await else {
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
            let op = write_chunk_with_header(q, &mut self.header, chunk);
            let Some(r) = self.session.end.or_end(op).await else {
                return Err(self.gone());
            };
            match r {
                Ok(()) => {
                    self.session.stats.bytes_sent.fetch_add(n, Relaxed);
                }
                Err(e) => return Err(self.map_write(e)),
            }
        }
        Ok(())
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
        if !flush_header_now(q, &mut self.header) {
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
        self.header = None;
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
            return Ok(None);
        };
        if self.fin_pending {
            let watched = self
                .session
                .end
                .or_end(finish_after_header(q, &mut self.header))
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
        if self.header.is_some() || self.fin_pending || self.inner.is_none() {
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
        let mut chunk = [data.slice(..take)];
        let r = self.session.end.or_end(q.write_chunks(&mut chunk)).await;
        match r {
            Some(Ok(w)) => {
                if let Some(credit) = credit {
                    credit.commit(w.bytes as u64);
                }
                data.advance(w.bytes);
                self.session
                    .stats
                    .bytes_sent
                    .fetch_add(w.bytes as u64, Relaxed);
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
        let Some(q) = self.inner.as_mut() else {
            return;
        };
        if !self.done && self.session.is_ended() {
            let _ = q.reset(varint(H3Code::WT_SESSION_GONE.0));
            return;
        }
        // Otherwise quinn finishes the stream when dropped, after the header if it is still
        // pending (the peer must see it before the FIN).
        if !(self.fin_pending || (!self.done && self.header.is_some())) {
            return;
        }
        if flush_header_now(q, &mut self.header) {
            return;
        }
        // Blocked by flow control: a task writes the header and finishes.
        let (Some(mut q), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut header = self.header.take();
        let session = self.session.clone();
        rt.spawn(async move {
            tokio::select! {
                biased;
                _ = session.end.wait() => {
                    let _ = q.reset(varint(H3Code::WT_SESSION_GONE.0));
                }
                _ = finish_after_header(&mut q, &mut header) => {}
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
        }
    }

    /// STOP_SENDING with `code`; returns the bytes read ahead and dropped unread.
    fn stop(&mut self, code: u64) -> Result<u64, quinn::ClosedStream> {
        match self {
            Source::Quinn(r, prefix) => {
                *prefix = Bytes::new();
                r.stop(varint(code)).map(|()| 0)
            }
            Source::Ahead(ra) => Ok(ra.request_stop(code)),
        }
    }

    /// Refuses a stream never handed to the application.
    pub(crate) fn refuse(mut self, code: H3Code) {
        let _ = self.stop(code.0);
    }
}

/// The receive half of a WebTransport stream.
pub struct RecvStream {
    inner: Source,
    id: StreamId,
    session: Arc<SessionShared>,
    done: bool,
    pre_reset: Option<u64>,
    _slot: Option<Arc<PeerStreamSlot>>,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl RecvStream {
    pub(crate) fn new(inner: Source, id: StreamId, session: Arc<SessionShared>) -> Self {
        let pre_reset = session.take_pre_reset(inner.quinn_id());
        RecvStream {
            inner,
            id,
            session,
            done: pre_reset.is_some(),
            pre_reset,
            _slot: None,
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
            let _ = self.inner.stop(H3Code::WT_SESSION_GONE.0);
        }
        StreamError::SessionGone(self.session.end_reason())
    }

    /// STOP_SENDING with `code`; credit of bytes read ahead but never read is given back.
    fn stop_inner(&mut self, code: u64) -> Result<(), quinn::ClosedStream> {
        let dropped = self.inner.stop(code)?;
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

    /// The read-ahead path (session flow control on): bytes were counted when they arrived;
    /// reading them here counts them as consumed.
    async fn read_ahead(
        &mut self,
        ra: Arc<ReadAhead>,
        max: usize,
    ) -> Result<Option<Bytes>, StreamError> {
        loop {
            match ra.try_read(max) {
                Some(Ok(c)) => {
                    let n = c.len() as u64;
                    self.session.on_peer_consumed(n);
                    self.session.stats.bytes_received.fetch_add(n, Relaxed);
                    return Ok(Some(c));
                }
                Some(Err(end)) => {
                    self.done = true;
                    return match end {
                        EndKind::Fin => Ok(None),
                        EndKind::Reset(code) => Err(StreamError::Reset(wt_from_h3(code))),
                        EndKind::Lost(e) => Err(self.lost(&e)),
                        EndKind::Other if self.session.is_ended() => {
                            Err(StreamError::SessionGone(self.session.end_reason()))
                        }
                        EndKind::Other => Err(StreamError::ClosedLocally),
                    };
                }
                None => {}
            }
            if self.session.end.or_end(ra.readable()).await.is_none() {
                return Err(self.gone());
            }
        }
    }
}

impl wt_core::RecvStream for RecvStream {
    fn id(&self) -> StreamId {
        self.id
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        if let Some(code) = self.pre_reset.take() {
            return Err(StreamError::Reset(wt_from_h3(code)));
        }
        if self.done && !self.session.is_ended() {
            return Ok(None);
        }
        if self.session.is_ended() {
            return Err(self.gone());
        }
        let inner = match &mut self.inner {
            Source::Quinn(_, prefix) if !prefix.is_empty() && max > 0 => {
                // Payload read along with the preamble (no await: cancel safe).
                let c = if prefix.len() <= max {
                    std::mem::take(prefix)
                } else {
                    prefix.split_to(max)
                };
                let n = c.len() as u64;
                self.session.stats.bytes_received.fetch_add(n, Relaxed);
                return Ok(Some(c));
            }
            Source::Quinn(r, _) => r,
            Source::Ahead(ra) => {
                let ra = ra.clone();
                return self.read_ahead(ra, max).await;
            }
        };
        let Some(r) = self.session.end.or_end(inner.read_chunk(max, true)).await else {
            return Err(self.gone());
        };
        match r {
            Ok(Some(c)) => {
                let n = c.bytes.len() as u64;
                self.session.stats.bytes_received.fetch_add(n, Relaxed);
                Ok(Some(c.bytes))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(quinn::ReadError::Reset(code)) => {
                self.done = true;
                Err(StreamError::Reset(wt_from_h3(code.into_inner())))
            }
            Err(quinn::ReadError::ConnectionLost(e)) => Err(self.lost(&e)),
            Err(_) => Err(StreamError::ClosedLocally),
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
