//! WebTransport streams: thin wrappers over quinn streams. Data goes straight between the
//! application and quinn (no task, no channel); the wrapper only maps error codes and watches
//! for the end of the session.
//!
//! quinn has no RESET_STREAM_AT, so [`SendStream::reset`](wt_core::SendStream::reset) sends a
//! plain RESET_STREAM (what Chrome does too); a peer may then lose the stream header and be
//! unable to attribute the reset to a session.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use wt_core::codes::{wt_from_h3, wt_to_h3, H3Code};
use wt_core::{StreamError, StreamId};

use crate::conn::flow::Credit;
use crate::driver::varint;
use crate::readahead::{EndKind, ReadAhead};
use crate::session::{PeerStreamSlot, SessionShared};

/// The send half of a WebTransport stream.
pub struct SendStream {
    inner: quinn::SendStream,
    id: StreamId,
    session: Arc<SessionShared>,
    done: bool,
    _slot: Option<Arc<PeerStreamSlot>>,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream, id: StreamId, session: Arc<SessionShared>) -> Self {
        SendStream {
            inner,
            id,
            session,
            done: false,
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
            let _ = self.inner.reset(varint(H3Code::WT_SESSION_GONE.0));
        }
        StreamError::SessionGone(self.session.end_reason())
    }

    fn map_write(&mut self, e: quinn::WriteError) -> StreamError {
        match e {
            quinn::WriteError::Stopped(code) => StreamError::Stopped(wt_from_h3(code.into_inner())),
            quinn::WriteError::ConnectionLost(e) => {
                if self.session.ended.is_cancelled() {
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

    async fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        if self.session.ended.is_cancelled() {
            return Err(self.gone());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let r = {
            // Waits for session credit (no-op without flow control); unused credit goes back.
            let Ok(credit) = self.session.acquire(Credit::Data, buf.len() as u64).await else {
                return Err(self.gone());
            };
            let n = credit.n as usize;
            let r = tokio::select! {
                biased;
                r = self.inner.write(&buf[..n]) => Some(r),
                _ = self.session.ended.cancelled() => None,
            };
            if let Some(Ok(m)) = &r {
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
        if self.session.ended.is_cancelled() {
            return Err(self.gone());
        }
        let mut data = data;
        while !data.is_empty() {
            let chunk = {
                let Ok(credit) = self.session.acquire(Credit::Data, data.len() as u64).await else {
                    return Err(self.gone());
                };
                let chunk = data.split_to(credit.n as usize);
                // Counted as sent before the write: if this call is cancelled a prefix may be
                // on the wire (write_chunk is not cancel safe), and over-counting is safe.
                credit.commit(chunk.len() as u64);
                chunk
            };
            let n = chunk.len() as u64;
            let r = tokio::select! {
                biased;
                r = self.inner.write_chunk(chunk) => r,
                _ = self.session.ended.cancelled() => return Err(self.gone()),
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
        if self.session.ended.is_cancelled() {
            return Err(self.gone());
        }
        self.inner
            .finish()
            .map_err(|_| StreamError::ClosedLocally)?;
        self.done = true;
        Ok(())
    }

    fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        self.inner
            .reset(varint(wt_to_h3(code)))
            .map_err(|_| StreamError::ClosedLocally)?;
        self.done = true;
        Ok(())
    }

    async fn stopped(&mut self) -> Result<Option<u32>, StreamError> {
        let r = tokio::select! {
            biased;
            r = self.inner.stopped() => r,
            _ = self.session.ended.cancelled() => {
                return Err(StreamError::SessionGone(self.session.end_reason()))
            }
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
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.done && self.session.ended.is_cancelled() {
            let _ = self.inner.reset(varint(H3Code::WT_SESSION_GONE.0));
        }
        // Otherwise quinn finishes the stream when dropped.
    }
}

/// Where a receive half's bytes come from.
pub(crate) enum Source {
    /// Straight from quinn (no session flow control).
    Quinn(quinn::RecvStream),
    /// From the read-ahead queue (session flow control: bytes are counted on arrival).
    Ahead(Arc<ReadAhead>),
}

impl Source {
    /// Reads `recv` ahead when `session` has flow control, else hands it through.
    pub(crate) fn new(recv: quinn::RecvStream, session: &Arc<SessionShared>) -> Self {
        if session.has_flow_control() {
            Source::Ahead(ReadAhead::spawn(recv, session.clone()))
        } else {
            Source::Quinn(recv)
        }
    }

    /// The quinn stream ID.
    pub(crate) fn quinn_id(&self) -> quinn::StreamId {
        match self {
            Source::Quinn(r) => r.id(),
            Source::Ahead(ra) => ra.id,
        }
    }

    /// STOP_SENDING with `code`; returns the bytes read ahead and dropped unread.
    fn stop(&mut self, code: u64) -> Result<u64, quinn::ClosedStream> {
        match self {
            Source::Quinn(r) => r.stop(varint(code)).map(|()| 0),
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
        if self.session.ended.is_cancelled() {
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
                        EndKind::Other if self.session.ended.is_cancelled() => {
                            Err(StreamError::SessionGone(self.session.end_reason()))
                        }
                        EndKind::Other => Err(StreamError::ClosedLocally),
                    };
                }
                None => {}
            }
            tokio::select! {
                biased;
                _ = self.session.ended.cancelled() => return Err(self.gone()),
                _ = ra.readable() => {}
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
        if self.done && !self.session.ended.is_cancelled() {
            return Ok(None);
        }
        if self.session.ended.is_cancelled() {
            return Err(self.gone());
        }
        let inner = match &mut self.inner {
            Source::Quinn(r) => r,
            Source::Ahead(ra) => {
                let ra = ra.clone();
                return self.read_ahead(ra, max).await;
            }
        };
        let r = tokio::select! {
            biased;
            r = inner.read_chunk(max, true) => r,
            _ = self.session.ended.cancelled() => return Err(self.gone()),
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
            let code = if self.session.ended.is_cancelled() {
                H3Code::WT_SESSION_GONE.0
            } else {
                wt_to_h3(0)
            };
            let _ = self.stop_inner(code);
        }
    }
}
