//! The receiving half of a stream: the reassembly-free receive buffer (capsules arrive in
//! order) and the per-stream window.

use std::collections::VecDeque;

use bytes::Bytes;

use super::state::RecvState;
use crate::engine::flow_control::RecvWindow;

/// Receiving half.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    /// Where in the state machine we are.
    pub state: RecvState,
    /// The credit we grant on this stream.
    pub window: RecvWindow,
    /// Received, unread chunks. Their total never exceeds the window.
    pub buf: VecDeque<Bytes>,
    /// Total bytes in `buf`.
    pub buffered: u64,
    /// The application no longer reads (it stopped the stream or dropped the handle):
    /// arriving data is discarded, and the half is done once the peer ends it.
    pub app_done: bool,
    /// We sent WT_STOP_SENDING.
    pub stop_sent: bool,
}

impl RecvHalf {
    /// A fresh receiving half granting `window` bytes.
    pub fn new(window: u64) -> Self {
        RecvHalf {
            state: RecvState::Recv,
            window: RecvWindow::new(window),
            buf: VecDeque::new(),
            buffered: 0,
            app_done: false,
            stop_sent: false,
        }
    }

    /// Takes up to `max` bytes from the front of the buffer (`max > 0`).
    pub fn take(&mut self, max: usize) -> Option<Bytes> {
        let front = self.buf.front_mut()?;
        let chunk = if front.len() <= max {
            self.buf.pop_front()?
        } else {
            front.split_to(max)
        };
        self.buffered -= chunk.len() as u64;
        Some(chunk)
    }

    /// Drops everything buffered; returns how many bytes were dropped.
    pub fn discard(&mut self) -> u64 {
        self.buf.clear();
        std::mem::take(&mut self.buffered)
    }

    /// Whether the half needs nothing more: the peer ended it and the application either saw
    /// the end or no longer cares.
    pub fn is_done(&self) -> bool {
        match self.state {
            RecvState::DataRead | RecvState::ResetRead => true,
            RecvState::SizeKnown | RecvState::ResetRecvd { .. } => self.app_done,
            RecvState::Recv => false,
        }
    }
}
