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

use crate::driver::varint;
use crate::session::SessionShared;

/// The send half of a WebTransport stream.
pub struct SendStream {
    inner: quinn::SendStream,
    id: StreamId,
    session: Arc<SessionShared>,
    done: bool,
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
        }
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
        let r = tokio::select! {
            biased;
            r = self.inner.write(buf) => r,
            _ = self.session.ended.cancelled() => return Err(self.gone()),
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
        let n = data.len() as u64;
        let r = tokio::select! {
            biased;
            r = self.inner.write_chunk(data) => r,
            _ = self.session.ended.cancelled() => return Err(self.gone()),
        };
        match r {
            Ok(()) => {
                self.session.stats.bytes_sent.fetch_add(n, Relaxed);
                Ok(())
            }
            Err(e) => Err(self.map_write(e)),
        }
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

/// The receive half of a WebTransport stream.
pub struct RecvStream {
    inner: quinn::RecvStream,
    id: StreamId,
    session: Arc<SessionShared>,
    done: bool,
    pre_reset: Option<u64>,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl RecvStream {
    pub(crate) fn new(inner: quinn::RecvStream, id: StreamId, session: Arc<SessionShared>) -> Self {
        let pre_reset = session.take_pre_reset(inner.id());
        RecvStream {
            inner,
            id,
            session,
            done: pre_reset.is_some(),
            pre_reset,
        }
    }

    fn gone(&mut self) -> StreamError {
        if !self.done {
            self.done = true;
            let _ = self.inner.stop(varint(H3Code::WT_SESSION_GONE.0));
        }
        StreamError::SessionGone(self.session.end_reason())
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
        let r = tokio::select! {
            biased;
            r = self.inner.read_chunk(max, true) => r,
            _ = self.session.ended.cancelled() => return Err(self.gone()),
        };
        match r {
            Ok(Some(c)) => {
                self.session
                    .stats
                    .bytes_received
                    .fetch_add(c.bytes.len() as u64, Relaxed);
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
            Err(quinn::ReadError::ConnectionLost(e)) => {
                if self.session.ended.is_cancelled() {
                    Err(StreamError::SessionGone(self.session.end_reason()))
                } else {
                    Err(StreamError::SessionGone(wt_core::SessionError::Connection(
                        self.session.conn.map_error(&e),
                    )))
                }
            }
            Err(_) => Err(StreamError::ClosedLocally),
        }
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.inner
            .stop(varint(wt_to_h3(code)))
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
            let _ = self.inner.stop(varint(code));
        }
    }
}
