//! The default stream's receive half, shared so that a waiting `recv` reads it in its own
//! task instead of waiting for the driver to read it and hand the data over (a task hop per
//! chunk that cost bulk transfers 10-20 %).
//!
//! Both the driver and a waiting `recv` poll the same read, always under the
//! [`Rx`](crate::driver::Rx) lock, so chunks are taken in order and buffered items of the
//! default channel are returned first. The transport sees one waker, a [`Route`]: it wakes
//! the waiting `recv` if there is one, otherwise the driver, which keeps reading eagerly
//! (for `max_recv_buffer`, active mode and the events at the end of the stream) whenever no
//! `recv` is waiting.
//!
//! Rules that keep every wake-up reaching someone who will poll:
//! - a `recv` that reads data reads on until the transport has nothing ready (so the route is
//!   armed again) with its own registration withdrawn, so later wake-ups go to the driver;
//! - a `recv` that leaves after the route woke it without reading again passes the wake-up on
//!   to the driver ([`Route::clear_reader`]);
//! - the end of the stream, an error, and data over the buffer limit are never taken by a
//!   `recv`: they are stashed for the driver ([`DirectRead::stash`]), which reports them as it
//!   always did.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use tokio::sync::oneshot;
use wt_core::{RecvStream, StreamError};

use crate::driver::{lock, READ_CHUNK};
use crate::frame::ITEM_OVERHEAD;
use crate::store::{Item, Store};
use crate::Msg;

/// What one read of a stream gives.
pub(crate) type ReadResult = Result<Option<Bytes>, StreamError>;

/// A receive half readable through `&mut self` from any task, with its pending read kept
/// between polls (so the transport's own registration, such as wt-h2's reader claim, stays).
pub(crate) trait SharedRead: Send {
    /// Polls the next chunk.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadResult>;
    /// Stops the stream (STOP_SENDING), abandoning a pending read.
    fn stop(&mut self, code: u32) -> Result<(), StreamError>;
}

/// What a read gives back: the stream, its cancel receiver, and the result (`None` when
/// cancelled).
type Output<R> = (R, oneshot::Receiver<()>, Option<ReadResult>);

/// [`SharedRead`] over any transport's [`RecvStream`].
///
/// The pending read lives in one allocation made up front and reused for every read (a read
/// owns the stream, so each chunk takes a new future; boxing each cost an allocation per
/// chunk).
pub(crate) struct Reader<R, F> {
    /// The stream while no read is pending.
    idle: Option<(R, oneshot::Receiver<()>)>,
    /// The pending read, which owns the stream until it completes.
    slot: Pin<Box<Option<F>>>,
    make: fn(R, oneshot::Receiver<()>) -> F,
    /// Ends a pending read at once (for `stop`).
    cancel: Option<oneshot::Sender<()>>,
}

/// A [`Reader`] of `stream`.
pub(crate) fn reader<R: RecvStream>(stream: R) -> Box<dyn SharedRead> {
    let (cancel, cancel_rx) = oneshot::channel();
    Box::new(Reader {
        idle: Some((stream, cancel_rx)),
        slot: Box::pin(None),
        make: read::<R>,
        cancel: Some(cancel),
    })
}

async fn read<R: RecvStream>(mut stream: R, mut cancel: oneshot::Receiver<()>) -> Output<R> {
    let res = tokio::select! {
        biased;
        _ = &mut cancel => None,
        r = stream.read_chunk(READ_CHUNK) => Some(r),
    };
    (stream, cancel, res)
}

impl<R, F> SharedRead for Reader<R, F>
where
    R: RecvStream,
    F: Future<Output = Output<R>> + Send,
{
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadResult> {
        if self.slot.is_none() {
            let Some((stream, cancel)) = self.idle.take() else {
                return Poll::Ready(Err(StreamError::ClosedLocally));
            };
            let fut = (self.make)(stream, cancel);
            self.slot.set(Some(fut));
        }
        let Some(fut) = self.slot.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(StreamError::ClosedLocally));
        };
        let (stream, cancel, res) = std::task::ready!(fut.poll(cx));
        self.slot.set(None);
        self.idle = Some((stream, cancel));
        Poll::Ready(res.unwrap_or(Err(StreamError::ClosedLocally)))
    }

    fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        if let Some(fut) = self.slot.as_mut().as_pin_mut() {
            if let Some(c) = self.cancel.take() {
                let _ = c.send(());
            }
            // The cancel branch is polled first, so this completes at once; a chunk that
            // raced in is dropped with the rest of the unread data, as STOP_SENDING does.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready((stream, cancel, _)) = fut.poll(&mut cx) {
                self.idle = Some((stream, cancel));
            }
            self.slot.set(None);
        }
        match self.idle.as_mut() {
            Some((stream, _)) => stream.stop(code),
            None => Err(StreamError::ClosedLocally),
        }
    }
}

#[derive(Default)]
struct RouteState {
    /// The `recv` waiting for the default stream.
    reader: Option<Waker>,
    /// The driver's read of the default stream.
    driver: Option<Waker>,
    /// A wake-up went to `reader` and it has not polled the stream since.
    woke_reader: bool,
}

/// The one waker the transport sees for the default stream; it forwards each wake-up to the
/// waiting `recv` if any, else to the driver. Its lock is never held while taking another.
#[derive(Default)]
pub(crate) struct Route {
    state: Mutex<RouteState>,
}

/// Puts `w` in `slot` unless the waker there already wakes the same task.
fn register(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        slot => *slot = Some(w.clone()),
    }
}

impl Route {
    /// A `recv` is about to poll the stream and waits for it.
    fn set_reader(&self, w: &Waker) {
        let mut s = lock(&self.state);
        s.woke_reader = false;
        register(&mut s.reader, w);
    }

    /// The `recv` no longer waits for the stream. A wake-up it took and did not act on goes
    /// to the driver.
    pub(crate) fn clear_reader(&self) {
        let pass_on = {
            let mut s = lock(&self.state);
            s.reader = None;
            if std::mem::take(&mut s.woke_reader) {
                s.driver.take()
            } else {
                None
            }
        };
        if let Some(w) = pass_on {
            w.wake();
        }
    }

    /// The driver is about to poll the stream and waits for it.
    fn set_driver(&self, w: &Waker) {
        register(&mut lock(&self.state).driver, w);
    }

    /// Wakes the driver's read (it has something stashed to report).
    fn kick_driver(&self) {
        let w = lock(&self.state).driver.take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl Wake for Route {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let w = {
            let mut s = lock(&self.state);
            match s.reader.take() {
                Some(w) => {
                    s.woke_reader = true;
                    Some(w)
                }
                None => s.driver.take(),
            }
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The default stream's receive half in [`Rx`](crate::driver::Rx).
pub(crate) struct DirectRead {
    reader: Box<dyn SharedRead>,
    pub(crate) route: Arc<Route>,
    waker: Waker,
    /// The driver took the next item (or the end) and has not delivered it yet: nobody else
    /// reads until it has.
    held: bool,
    /// The end, an error or data over the limit that a `recv` read, for the driver.
    stashed: Option<ReadResult>,
    /// `max_recv_buffer`.
    limit: usize,
}

impl DirectRead {
    pub(crate) fn new(reader: Box<dyn SharedRead>, limit: usize) -> Self {
        let route = Arc::new(Route::default());
        DirectRead {
            reader,
            waker: Waker::from(route.clone()),
            route,
            held: false,
            stashed: None,
            limit,
        }
    }

    /// The driver's poll: a stashed result first, else the stream. A result marks the read
    /// held until [`release`](Self::release).
    pub(crate) fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<ReadResult> {
        let r = match self.stashed.take() {
            Some(r) => r,
            None => {
                self.route.set_driver(cx.waker());
                std::task::ready!(self.reader.poll_read(&mut Context::from_waker(&self.waker)))
            }
        };
        self.held = true;
        Poll::Ready(r)
    }

    /// The driver delivered what it took: readers may read the stream again.
    pub(crate) fn release(&mut self) {
        self.held = false;
    }

    /// Stops the stream.
    pub(crate) fn stop(&mut self, code: u32) -> Result<(), StreamError> {
        self.reader.stop(code)
    }

    /// Hands something only the driver may report over to it.
    fn stash(&mut self, r: ReadResult) {
        self.stashed = Some(r);
        self.held = true;
        self.route.kick_driver();
    }

    /// A waiting `recv`'s read, called with the default channel's buffer empty: the next
    /// chunk if the stream has one ready, having buffered whatever else was ready; `None`
    /// if the caller must wait (woken by the route or by the driver).
    ///
    /// `routed` tells whether the route currently holds the caller's waker.
    pub(crate) fn poll_reader(
        &mut self,
        cx: &mut Context<'_>,
        store: &mut Store,
        unread: &AtomicUsize,
        routed: &mut bool,
    ) -> Option<Bytes> {
        if self.held {
            return None;
        }
        self.route.set_reader(cx.waker());
        *routed = true;
        let mut rcx = Context::from_waker(&self.waker);
        let mut first = None;
        // After the first chunk, read on until the transport has nothing ready, which arms
        // the route again.
        loop {
            match self.reader.poll_read(&mut rcx) {
                Poll::Pending => break,
                Poll::Ready(Ok(Some(chunk))) if chunk.is_empty() => {}
                Poll::Ready(Ok(Some(chunk))) if first.is_none() => {
                    first = Some(chunk);
                    // From here on wake-ups go to the driver, which reads eagerly while
                    // nobody waits.
                    self.route.clear_reader();
                    *routed = false;
                }
                Poll::Ready(Ok(Some(chunk))) => {
                    let size = chunk.len() + ITEM_OVERHEAD;
                    if unread.load(Ordering::Acquire).saturating_add(size) > self.limit {
                        // The driver applies the limit (closing the session).
                        self.stash(Ok(Some(chunk)));
                        break;
                    }
                    unread.fetch_add(size, Ordering::AcqRel);
                    store.push(Item::Main(Msg::Binary(chunk)));
                }
                Poll::Ready(end) => {
                    self.stash(end);
                    break;
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wt_core::testsuite::WakeCount;

    #[test]
    fn route_wakes_the_waiting_reader_else_the_driver() {
        let route = Arc::new(Route::default());
        let via = Waker::from(route.clone());
        let (reader, rw) = WakeCount::probe();
        let (driver, dw) = WakeCount::probe();
        route.set_driver(&dw);
        route.set_reader(&rw);
        via.wake_by_ref();
        assert_eq!((reader.get(), driver.get()), (1, 0));
        // The reader's registration is used up: the next one goes to the driver.
        via.wake_by_ref();
        assert_eq!((reader.get(), driver.get()), (1, 1));
        // Nobody registered: nobody to wake.
        via.wake_by_ref();
        assert_eq!((reader.get(), driver.get()), (1, 1));
    }

    #[test]
    fn a_reader_leaving_passes_an_unused_wake_up_to_the_driver() {
        let route = Arc::new(Route::default());
        let via = Waker::from(route.clone());
        let (_reader, rw) = WakeCount::probe();
        let (driver, dw) = WakeCount::probe();
        route.set_driver(&dw);
        // Leaving without having been woken: the driver is not disturbed.
        route.set_reader(&rw);
        route.clear_reader();
        assert_eq!(driver.get(), 0);
        // Woken, then leaving without polling the stream again: the driver polls it.
        route.set_reader(&rw);
        via.wake_by_ref();
        route.clear_reader();
        assert_eq!(driver.get(), 1);
        // Woken, then polling again (registering anew) uses the wake-up itself.
        route.set_driver(&dw);
        route.set_reader(&rw);
        via.wake_by_ref();
        route.set_reader(&rw);
        route.clear_reader();
        assert_eq!(driver.get(), 1);
        // A stash wakes the driver at once.
        route.kick_driver();
        assert_eq!(driver.get(), 2);
    }
}
