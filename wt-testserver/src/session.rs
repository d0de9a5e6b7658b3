//! The session runner: one task per session owns the [`Handler`], turns transport events into
//! callbacks and applies the returned [`Action`]s.
//!
//! ```text
//!                       ┌──────────────── session task ─────────────────┐
//!   RecvStreams ──read──┤ handler callbacks, actions                    ├──write──> SendStreams
//!   accept_bi loop ─┐   │                                               │   (while each write
//!   accept_uni loop ├───┤ Event (bounded queue)                         │    goes through at once)
//!   datagram loop  ─┘   │                                   action queue├──> writer task ── SendStream
//!   stop watchers ──────┤ Report                                        │   (from the first write
//!   writer tasks  ──────┘                                               │    that had to wait)
//! ```
//!
//! An echo thus runs in the session task alone, woken by the transport, as a bare stream
//! task of the transport would: no hand-off to another task on the way.
//!
//! * The session task reads its streams itself (each read up to [`READ_CHUNK`] bytes), one
//!   event at a time, taking turns between stream data and the queue that the accept loops and
//!   the datagram loop fill ([`EVENT_QUEUE`] events). When the handler is slow nothing more is
//!   read, the queue fills, the loops wait, and the transports' flow control pushes back on
//!   the peer.
//! * The session task applies a stream action itself as long as the transport takes all of
//!   it at once (each write one poll of the cancel-safe
//!   [`write_some`](wt_core::SendStream::write_some)). The first write that would have to
//!   wait moves the sending half, with what is left of that write, to a writer task of its
//!   own, fed by a bounded queue ([`WRITE_QUEUE`] actions), for good; the bytes queued for all
//!   writers of a session are capped by [`WRITE_BUDGET`]. The session task waits when a queue
//!   or the budget is full, so a peer that does not read a stream eventually pauses the whole
//!   session (never buffering without bound). Clients of an echo handler must therefore read
//!   while they write.
//!
//! Per session, the runner thus holds at most one [`READ_CHUNK`] of stream data and
//! [`EVENT_QUEUE`] datagrams received but not yet handled, plus [`WRITE_BUDGET`] (1 MiB) of
//! data to send, on top of what the handler keeps.
//! * Every sending half has a small task watching for the peer's STOP_SENDING
//!   ([`stop_notice`](wt_core::SendStream::stop_notice)), whoever writes it.
//! * Writers, stop watchers and the session task's own writes report on a separate queue, in
//!   the order the session task then handles them: at most one terminal report per writer and
//!   one per watcher, plus one per action that failed or was still queued behind a failure,
//!   so its length is bounded by the queues and the actions the handler returned.
//! * Every callback runs under `catch_unwind`; a panic closes the session with
//!   [`HANDLER_PANICKED`] and ends the task.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wt_core::{RecvStream, SendStream, Session, SessionError, StreamError, StreamId, StreamKind};

use crate::action::{Action, ActionError};
use crate::codes::{
    DATA_LIMIT_EXCEEDED, DATA_LIMIT_REASON, HANDLER_PANICKED, HANDLER_PANICKED_REASON, SHUTDOWN,
    SHUTDOWN_REASON, STREAM_LIMIT_EXCEEDED,
};
use crate::handler::{CloseReason, Handler, TerminateReason};
use crate::listener::Limits;
use crate::reads::{Reader, Reads};
use crate::wake::{Wakeup, Woken};

/// Capacity of the queue from the accept loops, the datagram loop and wake-ups to the session
/// task (stream data is read by the session task itself).
pub const EVENT_QUEUE: usize = 16;
/// Capacity of each writer task's queue of actions.
pub const WRITE_QUEUE: usize = 16;
/// Largest chunk the session task takes from a stream at once.
pub const READ_CHUNK: usize = 32 * 1024;
/// Stream payload bytes a session may have queued for its writer tasks, over all its streams.
/// A `Send` waits for room (a larger chunk waits for the whole budget), so the memory one
/// session holds in writer queues stays below this however many streams the peer does not
/// read.
pub const WRITE_BUDGET: usize = 1024 * 1024;
/// Most consecutive `handle_action_failed` calls triggered by one callback's actions; past it,
/// further failures of that batch are only logged (a handler that retries a failing action
/// forever would otherwise never yield).
pub const MAX_FAILURE_CHAIN: usize = 64;
/// How long the runner waits, after closing a session itself, for the transport to report
/// the close before it drops its handles.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Signals from the server to a session.
#[derive(Clone, Debug)]
pub(crate) struct SessionSignals {
    /// Server is draining: send WT_DRAIN_SESSION.
    pub drain: CancellationToken,
    /// Grace period over: close now.
    pub force: CancellationToken,
}

/// An event for the session task. Large payloads are boxed: the event queue allocates room
/// for a block of events when the session starts, so a small event keeps an idle session
/// small.
enum Event<S: Session> {
    Bidi(Box<(S::SendStream, S::RecvStream)>),
    Uni(Box<S::RecvStream>),
    Data(StreamId, Bytes),
    Fin(StreamId),
    ReadFailed(StreamId, Box<StreamError>),
    Datagram(Bytes),
    /// A wait requested with [`Action::WakeOn`] is over.
    Woken(u64, Woken),
}

/// A report on a sending half, from its writer (the session task itself or a writer task)
/// or its stop watcher (boxed failure: see [`Event`]).
enum Report {
    /// FIN sent after all queued data.
    Finished(StreamId),
    /// Reset done.
    Reset(StreamId),
    /// The peer sent STOP_SENDING.
    Stopped(StreamId, u32),
    /// An action failed (or was still queued when an earlier one failed).
    Failed(Box<(StreamId, Action, StreamError)>),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Half {
    Absent,
    Open,
    /// FIN or reset queued, not yet confirmed by the writer.
    Closing,
    Done,
}

impl Half {
    fn finished(self) -> bool {
        matches!(self, Half::Absent | Half::Done)
    }
}

struct Entry<W> {
    kind: StreamKind,
    by_peer: bool,
    send: Half,
    recv: Half,
    /// Something other than a clean FIN ended a half.
    abnormal: bool,
    /// Who writes the sending half; `None` once it cannot be written any more.
    writer: Option<Writer<W>>,
    stop: Option<oneshot::Sender<u32>>,
}

/// Who applies the stream actions of a sending half.
enum Writer<W> {
    /// The session task itself, as long as every write has gone through without waiting.
    Inline(W),
    /// A writer task, from the first write that had to wait for flow control on.
    Task(mpsc::Sender<Queued>),
    /// A write by the session task failed: later actions fail the same way until the
    /// failure's report is handled.
    Failed(StreamError),
}

/// An action for a writer task, with its share of the session's [`WRITE_BUDGET`].
struct Queued {
    action: Action,
    /// Bytes of the action's data the session task already wrote.
    written: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why the session task ends.
enum End {
    Terminate(TerminateReason),
    Panicked,
}

struct Runner<S: Session, H> {
    session: S,
    handler: H,
    streams: FxHashMap<StreamId, Entry<S::SendStream>>,
    peer_streams: usize,
    received: u64,
    limits: Limits,
    events: mpsc::Sender<Event<S>>,
    reports: mpsc::UnboundedSender<Report>,
    tasks: JoinSet<()>,
    force: CancellationToken,
    budget: Arc<Semaphore>,
    /// The receiving halves, read by the session task itself.
    reads: Reads<Event<S>>,
}

/// Runs an established session to its end with `handler`, applying `initial` first.
///
/// A plain function returning the future, not an `async fn`: the future lives as long as the
/// session, and an `async fn` would keep its arguments twice (as arguments, and in the
/// runner built from them). Nothing starts before the future is first polled.
pub(crate) fn run_session<S: Session, H: Handler>(
    session: S,
    handler: H,
    initial: Vec<Action>,
    limits: Limits,
    signals: SessionSignals,
) -> impl Future<Output = ()> + Send {
    let (events_tx, mut events_rx) = mpsc::channel(EVENT_QUEUE);
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel();
    let mut runner = Runner {
        session: session.clone(),
        handler,
        streams: FxHashMap::default(),
        peer_streams: 0,
        received: 0,
        limits,
        events: events_tx.clone(),
        reports: reports_tx,
        tasks: JoinSet::new(),
        force: signals.force.clone(),
        budget: Arc::new(Semaphore::new(WRITE_BUDGET)),
        reads: Reads::default(),
    };
    async move {
        runner
            .tasks
            .spawn(accept_bi_loop(session.clone(), events_tx.clone()));
        runner
            .tasks
            .spawn(accept_uni_loop(session.clone(), events_tx.clone()));
        runner.tasks.spawn(datagram_loop(session, events_tx));

        let mut end = runner.apply(initial).await.err();
        let mut drained = false;
        let mut peer_draining = false;
        let mut reads_first = false;
        while end.is_none() {
            enum Step<S: Session> {
                Force,
                Ended(SessionError),
                Drain,
                PeerDraining,
                Report(Report),
                Event(Event<S>),
                Reaped,
            }
            let step: Step<S> = tokio::select! {
                biased;
                _ = signals.force.cancelled() => Step::Force,
                e = runner.session.closed() => Step::Ended(e),
                _ = signals.drain.cancelled(), if !drained => Step::Drain,
                _ = runner.session.draining(), if !peer_draining => Step::PeerDraining,
                Some(r) = reports_rx.recv() => Step::Report(r),
                ev = next_event(&mut events_rx, &mut runner.reads, &mut reads_first) => {
                    Step::Event(ev)
                }
                Some(res) = runner.tasks.join_next() => {
                    if let Err(e) = res {
                        if e.is_panic() {
                            tracing::error!("session helper task panicked");
                        }
                    }
                    Step::Reaped
                }
            };
            let result = match step {
                Step::Force => Err(runner.close_with(
                    SHUTDOWN,
                    SHUTDOWN_REASON,
                    End::Terminate(TerminateReason::Shutdown),
                )),
                Step::Ended(e) => Err(End::Terminate(ended(e))),
                Step::Drain => {
                    drained = true;
                    if let Err(e) = runner.session.drain() {
                        tracing::debug!(error = %e, "could not drain session");
                    }
                    Ok(())
                }
                Step::PeerDraining => {
                    peer_draining = true;
                    runner.callback(|h| h.handle_peer_draining()).await
                }
                Step::Report(r) => runner.on_report(r).await,
                Step::Event(ev) => runner.on_event(ev).await,
                Step::Reaped => Ok(()),
            };
            end = result.err();
            // Stream reads from the transport take none of tokio's cooperative budget: this
            // makes a session that always has an event ready still yield its thread now and
            // then, as its queues used to make it.
            tokio::task::consume_budget().await;
        }

        let Runner {
            session,
            handler,
            mut tasks,
            ..
        } = runner;
        tasks.abort_all();
        match end {
            Some(End::Terminate(reason)) => {
                tracing::debug!(?reason, "session ended");
                let done = catch_unwind(AssertUnwindSafe(move || handler.terminate(reason)));
                if done.is_err() {
                    tracing::error!("handler panicked in terminate");
                }
            }
            Some(End::Panicked) | None => drop(handler),
        }
        // Give the transport a moment to deliver our close before the last handle goes.
        let _ = tokio::time::timeout(CLOSE_LINGER, session.closed()).await;
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Maps how a session ended to the handler's terminate reason.
fn ended(e: SessionError) -> TerminateReason {
    match e {
        SessionError::ClosedByPeer { code, reason } => TerminateReason::PeerClosed { code, reason },
        SessionError::ClosedLocally { code, reason } => TerminateReason::Closed { code, reason },
        other => TerminateReason::Error(other),
    }
}

/// Waits for `fut` unless the session ends or is forced closed first (then closes it).
async fn wait<S: Session, F: std::future::Future>(
    session: &S,
    force: &CancellationToken,
    fut: F,
) -> Result<F::Output, End> {
    tokio::select! {
        biased;
        _ = force.cancelled() => {
            if let Err(e) = session.close(SHUTDOWN, SHUTDOWN_REASON) {
                tracing::debug!(error = %e, "close failed");
            }
            Err(End::Terminate(TerminateReason::Shutdown))
        }
        e = session.closed() => Err(End::Terminate(ended(e))),
        out = fut => Ok(out),
    }
}

/// Runs a handler callback, catching a panic.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p).to_owned())
}

impl<S: Session, H: Handler> Runner<S, H> {
    /// Closes the session and returns `end` (used for server-side closes).
    fn close_with(&self, code: u32, reason: &str, end: End) -> End {
        if let Err(e) = self.session.close(code, reason) {
            tracing::debug!(error = %e, "close failed");
        }
        end
    }

    /// Calls a handler callback and applies its actions.
    async fn callback(&mut self, f: impl FnOnce(&mut H) -> Vec<Action>) -> Result<(), End> {
        let actions = self.call(f)?;
        self.apply(actions).await
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut H) -> R) -> Result<R, End> {
        let handler = &mut self.handler;
        guarded(|| f(handler)).map_err(|msg| {
            tracing::error!(panic = %msg, "handler panicked; closing its session");
            self.close_with(HANDLER_PANICKED, HANDLER_PANICKED_REASON, End::Panicked)
        })
    }

    /// Applies actions in order; reactions to failures are applied right after the failure.
    async fn apply(&mut self, actions: Vec<Action>) -> Result<(), End> {
        let mut queue: VecDeque<Action> = actions.into();
        let mut failures = 0usize;
        while let Some(action) = queue.pop_front() {
            let Err((action, error)) = self.apply_one(action).await? else {
                continue;
            };
            failures += 1;
            if failures > MAX_FAILURE_CHAIN {
                tracing::warn!(?action, %error, "action failed (failure chain limit reached; not reported)");
                continue;
            }
            let more = self.call(|h| h.handle_action_failed(action, error))?;
            for a in more.into_iter().rev() {
                queue.push_front(a);
            }
        }
        Ok(())
    }

    /// Applies one action: `Err` ends the session, `Ok(Err)` is a failed action.
    async fn apply_one(
        &mut self,
        action: Action,
    ) -> Result<Result<(), (Action, ActionError)>, End> {
        match action {
            Action::Send(id, _)
            | Action::SendFin(id, _)
            | Action::CloseStream(id)
            | Action::ResetStream(id, _) => {
                let Some(entry) = self.streams.get_mut(&id) else {
                    return Ok(Err((action, ActionError::UnknownStream(id))));
                };
                if entry.send != Half::Open || entry.writer.is_none() {
                    return Ok(Err((action, ActionError::StreamClosed(id))));
                }
                match action {
                    Action::Send(..) => {}
                    Action::ResetStream(..) => {
                        entry.send = Half::Closing;
                        entry.abnormal = true;
                    }
                    _ => entry.send = Half::Closing,
                }
                let (writer, written) = match &mut entry.writer {
                    Some(Writer::Inline(send)) => match apply_inline(send, id, &action) {
                        Inline::Done(report) => {
                            if let Some(r) = report {
                                // Reported as a writer task would, so the stream's end is
                                // handled after this batch of actions, as it always is.
                                let _ = self.reports.send(r);
                            }
                            return Ok(Ok(()));
                        }
                        Inline::Failed(e) => {
                            let _ = self.reports.send(Report::Failed(Box::new((
                                id,
                                action,
                                e.clone(),
                            ))));
                            entry.writer = Some(Writer::Failed(e));
                            return Ok(Ok(()));
                        }
                        Inline::Wait(written) => {
                            let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
                            if let Some(Writer::Inline(send)) =
                                entry.writer.replace(Writer::Task(wtx.clone()))
                            {
                                self.tasks
                                    .spawn(write_loop(send, wrx, self.reports.clone()));
                            }
                            (wtx, written)
                        }
                    },
                    Some(Writer::Failed(e)) => {
                        // As a writer task fails what was queued behind a failed action.
                        let e = e.clone();
                        let _ = self.reports.send(Report::Failed(Box::new((id, action, e))));
                        return Ok(Ok(()));
                    }
                    Some(Writer::Task(w)) => (w.clone(), 0),
                    // Ruled out above.
                    None => return Ok(Err((action, ActionError::StreamClosed(id)))),
                };
                let bytes = match &action {
                    Action::Send(_, d) | Action::SendFin(_, d) => {
                        d.len().saturating_sub(written).min(WRITE_BUDGET)
                    }
                    _ => 0,
                };
                let permit = if bytes == 0 {
                    None
                } else {
                    // Budget permits are u32; WRITE_BUDGET fits.
                    let n = u32::try_from(bytes).unwrap_or(u32::MAX);
                    let acquire = self.budget.clone().acquire_many_owned(n);
                    wait(&self.session, &self.force, acquire).await?.ok()
                };
                let queued = Queued {
                    action,
                    written,
                    _permit: permit,
                };
                match wait(&self.session, &self.force, writer.send(queued)).await? {
                    Ok(()) => Ok(Ok(())),
                    Err(mpsc::error::SendError(Queued { action, .. })) => {
                        // The writer is gone (its stream failed); its report says why.
                        if let Some(e) = self.streams.get_mut(&id) {
                            if e.send == Half::Closing {
                                e.send = Half::Done;
                                e.abnormal = true;
                            }
                        }
                        self.forget_if_done(id).await?;
                        Ok(Err((action, ActionError::StreamClosed(id))))
                    }
                }
            }
            Action::StopSending(id, code) => {
                let Some(entry) = self.streams.get_mut(&id) else {
                    return Ok(Err((action, ActionError::UnknownStream(id))));
                };
                if entry.recv != Half::Open {
                    return Ok(Err((action, ActionError::StreamClosed(id))));
                }
                entry.recv = Half::Done;
                entry.abnormal = true;
                let delivered = entry.stop.take().is_some_and(|tx| tx.send(code).is_ok());
                self.forget_if_done(id).await?;
                if delivered {
                    Ok(Ok(()))
                } else {
                    Ok(Err((action, ActionError::StreamClosed(id))))
                }
            }
            Action::SendDatagram(data) => match self.session.send_datagram(data.clone()) {
                Ok(()) => Ok(Ok(())),
                Err(e) => Ok(Err((Action::SendDatagram(data), e.into()))),
            },
            Action::OpenStream(kind) => {
                let opened = match kind {
                    StreamKind::Bidi => wait(&self.session, &self.force, self.session.open_bi())
                        .await?
                        .map(|(s, r)| (s, Some(r))),
                    StreamKind::Uni => wait(&self.session, &self.force, self.session.open_uni())
                        .await?
                        .map(|s| (s, None)),
                };
                match opened {
                    Ok((send, recv)) => {
                        let id = send.id();
                        self.register(send, recv, false);
                        let actions = self.call(|h| h.handle_stream_opened(kind, id))?;
                        // Applied now, before the rest of the batch.
                        Box::pin(self.apply(actions)).await?;
                        Ok(Ok(()))
                    }
                    Err(e) => Ok(Err((action, e.into()))),
                }
            }
            Action::Drain => match self.session.drain() {
                Ok(()) => Ok(Ok(())),
                Err(e) => Ok(Err((action, e.into()))),
            },
            Action::CloseSession(code, reason) => match self.session.close(code, &reason) {
                Ok(()) => Err(End::Terminate(TerminateReason::Closed { code, reason })),
                Err(e) => Ok(Err((Action::CloseSession(code, reason), e.into()))),
            },
            Action::Stop => {
                Err(self.close_with(SHUTDOWN, "", End::Terminate(TerminateReason::Normal)))
            }
            Action::WakeOn {
                wakeup,
                deadline,
                tag,
            } => {
                // Aborted with the session's other tasks when the session ends.
                self.tasks
                    .spawn(wake_later::<S>(wakeup, deadline, tag, self.events.clone()));
                Ok(Ok(()))
            }
        }
    }

    /// Records a new stream, starts its stop watcher and adds its receiving half to the
    /// session's reads.
    fn register(&mut self, send: S::SendStream, recv: Option<S::RecvStream>, by_peer: bool) {
        let id = send.id();
        self.tasks
            .spawn(watch_stop(send.stop_notice(), id, self.reports.clone()));
        let (stop, recv_half) = match recv {
            Some(r) => (Some(self.start_reading(r)), Half::Open),
            None => (None, Half::Absent),
        };
        self.streams.insert(
            id,
            Entry {
                kind: id.kind(),
                by_peer,
                send: Half::Open,
                recv: recv_half,
                abnormal: false,
                writer: Some(Writer::Inline(send)),
                stop,
            },
        );
        if by_peer {
            self.peer_streams += 1;
        }
    }

    /// Adds `recv` to the session's reads; the sender stops its reader (the `StopSending`
    /// action).
    fn start_reading(&mut self, recv: S::RecvStream) -> oneshot::Sender<u32> {
        let (stop, stopped) = oneshot::channel();
        self.reads.push(recv.id(), reader::<S>(recv, stopped));
        stop
    }

    fn register_peer_uni(&mut self, recv: S::RecvStream) {
        let id = recv.id();
        let stop = self.start_reading(recv);
        self.streams.insert(
            id,
            Entry {
                kind: StreamKind::Uni,
                by_peer: true,
                send: Half::Absent,
                recv: Half::Open,
                abnormal: false,
                writer: None,
                stop: Some(stop),
            },
        );
        self.peer_streams += 1;
    }

    fn at_stream_limit(&self) -> bool {
        self.peer_streams >= self.limits.max_streams_per_session
    }

    /// Forgets a stream whose halves are all finished; reports `Normal` if it ended cleanly.
    async fn forget_if_done(&mut self, id: StreamId) -> Result<(), End> {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|e| e.send.finished() && e.recv.finished());
        if !done {
            return Ok(());
        }
        let Some(entry) = self.streams.remove(&id) else {
            return Ok(());
        };
        if entry.by_peer {
            self.peer_streams -= 1;
        }
        if entry.abnormal {
            return Ok(());
        }
        Box::pin(self.callback(|h| h.handle_stream_closed(id, CloseReason::Normal))).await
    }

    async fn on_event(&mut self, ev: Event<S>) -> Result<(), End> {
        match ev {
            Event::Bidi(pair) => {
                let (mut send, mut recv) = *pair;
                if self.at_stream_limit() {
                    tracing::debug!(stream = %send.id(), "refusing bidi stream: stream limit");
                    let _ = send.reset(STREAM_LIMIT_EXCEEDED);
                    let _ = recv.stop(STREAM_LIMIT_EXCEEDED);
                } else {
                    self.register(send, Some(recv), true);
                }
                Ok(())
            }
            Event::Uni(recv) => {
                let mut recv = *recv;
                if self.at_stream_limit() {
                    tracing::debug!(stream = %recv.id(), "refusing uni stream: stream limit");
                    let _ = recv.stop(STREAM_LIMIT_EXCEEDED);
                } else {
                    self.register_peer_uni(recv);
                }
                Ok(())
            }
            Event::Data(id, data) => {
                let Some(kind) = self.receiving(id) else {
                    return Ok(());
                };
                self.received = self.received.saturating_add(data.len() as u64);
                if self
                    .limits
                    .max_data_per_session
                    .is_some_and(|max| self.received > max)
                {
                    tracing::debug!(received = self.received, "session data limit exceeded");
                    return Err(self.close_with(
                        DATA_LIMIT_EXCEEDED,
                        DATA_LIMIT_REASON,
                        End::Terminate(TerminateReason::DataLimitExceeded),
                    ));
                }
                self.callback(|h| h.handle_stream(id, kind, data)).await
            }
            Event::Fin(id) => {
                let Some(kind) = self.receiving(id) else {
                    return Ok(());
                };
                if let Some(e) = self.streams.get_mut(&id) {
                    e.recv = Half::Done;
                    e.stop = None;
                }
                self.callback(|h| h.handle_stream_fin(id, kind, Bytes::new()))
                    .await?;
                self.forget_if_done(id).await
            }
            Event::ReadFailed(id, error) => {
                let error = *error;
                if self.receiving(id).is_none() {
                    return Ok(());
                }
                if let Some(e) = self.streams.get_mut(&id) {
                    e.recv = Half::Done;
                    e.stop = None;
                    e.abnormal = true;
                }
                match error {
                    StreamError::Reset(code) => {
                        self.callback(|h| {
                            h.handle_stream_closed(id, CloseReason::Reset(code.unwrap_or(0)))
                        })
                        .await?;
                    }
                    other => tracing::debug!(stream = %id, error = %other, "stream read failed"),
                }
                self.forget_if_done(id).await
            }
            Event::Datagram(data) => self.callback(|h| h.handle_datagram(data)).await,
            Event::Woken(tag, woken) => self.callback(|h| h.handle_wake(tag, woken)).await,
        }
    }

    /// The kind of stream `id` if its receiving half is still open.
    fn receiving(&self, id: StreamId) -> Option<StreamKind> {
        self.streams
            .get(&id)
            .filter(|e| e.recv == Half::Open)
            .map(|e| e.kind)
    }

    async fn on_report(&mut self, report: Report) -> Result<(), End> {
        match report {
            Report::Finished(id) | Report::Reset(id) => {
                if let Some(e) = self.streams.get_mut(&id) {
                    e.send = Half::Done;
                    e.writer = None;
                }
                self.forget_if_done(id).await
            }
            Report::Stopped(id, code) => {
                if self.mark_stopped(id) {
                    self.callback(|h| h.handle_stream_closed(id, CloseReason::StopSending(code)))
                        .await?;
                }
                self.forget_if_done(id).await
            }
            Report::Failed(failed) => {
                let (id, action, error) = *failed;
                if let StreamError::Stopped(code) = error {
                    if self.mark_stopped(id) {
                        let code = code.unwrap_or(0);
                        self.callback(|h| {
                            h.handle_stream_closed(id, CloseReason::StopSending(code))
                        })
                        .await?;
                    }
                } else if let Some(e) = self.streams.get_mut(&id) {
                    e.send = Half::Done;
                    e.writer = None;
                    e.abnormal = true;
                }
                let more = self.call(|h| h.handle_action_failed(action, error.into()))?;
                self.apply(more).await?;
                self.forget_if_done(id).await
            }
        }
    }

    /// Marks the sending half stopped by the peer; true the first time.
    fn mark_stopped(&mut self, id: StreamId) -> bool {
        match self.streams.get_mut(&id) {
            Some(e) if e.send != Half::Done => {
                e.send = Half::Done;
                e.writer = None;
                e.abnormal = true;
                true
            }
            _ => false,
        }
    }
}

async fn accept_bi_loop<S: Session>(session: S, events: mpsc::Sender<Event<S>>) {
    while let Ok((send, recv)) = session.accept_bi().await {
        if events
            .send(Event::Bidi(Box::new((send, recv))))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn accept_uni_loop<S: Session>(session: S, events: mpsc::Sender<Event<S>>) {
    while let Ok(recv) = session.accept_uni().await {
        if events.send(Event::Uni(Box::new(recv))).await.is_err() {
            return;
        }
    }
}

async fn datagram_loop<S: Session>(session: S, events: mpsc::Sender<Event<S>>) {
    while let Ok(data) = session.recv_datagram().await {
        if events.send(Event::Datagram(data)).await.is_err() {
            return;
        }
    }
}

/// Waits for `wakeup` or `deadline`, then reports to the session task.
async fn wake_later<S: Session>(
    wakeup: Wakeup,
    deadline: tokio::time::Instant,
    tag: u64,
    events: mpsc::Sender<Event<S>>,
) {
    let woken = tokio::select! {
        biased;
        fired = wakeup.fired() => {
            if !fired {
                // The signal is gone: only the deadline is left.
                tokio::time::sleep_until(deadline).await;
            }
            if fired { Woken::Signalled } else { Woken::DeadlineReached }
        }
        _ = tokio::time::sleep_until(deadline) => Woken::DeadlineReached,
    };
    let _ = events.send(Event::Woken(tag, woken)).await;
}

/// The [`Reader`] of `recv`: its events ([`Event::Data`], then [`Event::Fin`] or
/// [`Event::ReadFailed`]), read by the session task itself when it is ready for the next
/// event. It ends early, stopping the half with the code, when the session task sends one
/// on `stop` (its `StopSending` action).
fn reader<S: Session>(recv: S::RecvStream, stop: oneshot::Receiver<u32>) -> Reader<Event<S>> {
    Box::pin(futures_util::stream::unfold(
        Some((recv, stop)),
        |state| async move {
            let (mut recv, mut stop) = state?;
            let id = recv.id();
            let read = tokio::select! {
                biased;
                code = &mut stop => Err(code),
                r = recv.read_chunk(READ_CHUNK) => Ok(r),
            };
            match read {
                Err(code) => {
                    // A dropped sender (the session forgot the stream) stops nothing: the
                    // half is dropped with the reader.
                    if let Ok(code) = code {
                        let _ = recv.stop(code);
                    }
                    None
                }
                Ok(Ok(Some(data))) => Some((Event::Data(id, data), Some((recv, stop)))),
                Ok(Ok(None)) => Some((Event::Fin(id), None)),
                Ok(Err(e)) => Some((Event::ReadFailed(id, Box::new(e)), None)),
            }
        },
    ))
}

/// The next event from the queue (accepted streams, datagrams, wake-ups) or from a stream
/// read, taking the two sources in turn while both have events, so neither starves the
/// other.
fn next_event<'a, S: Session>(
    queue: &'a mut mpsc::Receiver<Event<S>>,
    reads: &'a mut Reads<Event<S>>,
    reads_first: &'a mut bool,
) -> impl Future<Output = Event<S>> + 'a {
    std::future::poll_fn(move |cx| {
        *reads_first = !*reads_first;
        for from_reads in [*reads_first, !*reads_first] {
            let next = if from_reads {
                reads.poll_next(cx).map(Some)
            } else {
                queue.poll_recv(cx)
            };
            if let Poll::Ready(Some(ev)) = next {
                return Poll::Ready(ev);
            }
        }
        Poll::Pending
    })
}

/// Reports the peer's STOP_SENDING on a sending half, whoever writes it (the session task or
/// a writer task); ends quietly once the half is finished or reset, or the session ends.
async fn watch_stop(
    notice: impl Future<Output = Option<u32>>,
    id: StreamId,
    reports: mpsc::UnboundedSender<Report>,
) {
    if let Some(code) = notice.await {
        let _ = reports.send(Report::Stopped(id, code));
    }
}

/// What became of a stream action the session task applied itself.
enum Inline {
    /// Done, with the report a writer task would have sent, if any.
    Done(Option<Report>),
    /// The stream failed.
    Failed(StreamError),
    /// This many bytes of the action's data went out; the rest has to wait for flow control.
    Wait(usize),
}

/// Applies a stream action as far as it goes without waiting.
fn apply_inline<W: SendStream>(send: &mut W, id: StreamId, action: &Action) -> Inline {
    let done = |r: Result<(), StreamError>, report: Report| match r {
        Ok(()) => Inline::Done(Some(report)),
        Err(e) => Inline::Failed(e),
    };
    let (data, fin) = match action {
        Action::Send(_, d) => (d, false),
        Action::SendFin(_, d) => (d, true),
        Action::CloseStream(_) => return done(send.finish(), Report::Finished(id)),
        Action::ResetStream(_, code) => return done(send.reset(*code), Report::Reset(id)),
        _ => return Inline::Done(None),
    };
    let mut rest = data.clone();
    if let Err(e) = write_now(send, &mut rest) {
        return Inline::Failed(e);
    }
    if !rest.is_empty() {
        return Inline::Wait(data.len() - rest.len());
    }
    if fin {
        done(send.finish(), Report::Finished(id))
    } else {
        Inline::Done(None)
    }
}

/// Writes what the transport takes of `data` at once, advancing `data` past it: each step is
/// one poll of the cancel-safe [`SendStream::write_some`], so a step that would have to
/// wait writes nothing and leaves `data` as it was.
fn write_now<W: SendStream>(send: &mut W, data: &mut Bytes) -> Result<(), StreamError> {
    let mut cx = Context::from_waker(Waker::noop());
    while !data.is_empty() {
        let before = data.len();
        match std::pin::pin!(send.write_some(data)).poll(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
        if data.len() == before {
            // A transport that took nothing without waiting: leave the rest to a writer.
            break;
        }
    }
    Ok(())
}

/// Applies the stream actions queued for one sending half, in order, once the session task
/// found a write that had to wait (STOP_SENDING is watched by [`watch_stop`]).
async fn write_loop<W: SendStream>(
    mut send: W,
    mut actions: mpsc::Receiver<Queued>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let id = send.id();
    // The budget permit is released when an iteration ends (data handed to the transport,
    // or failed).
    while let Some(Queued {
        action,
        written,
        _permit,
    }) = actions.recv().await
    {
        let rest = |d: &Bytes| d.slice(written.min(d.len())..);
        let result = match &action {
            Action::Send(_, data) => send.write_chunk(rest(data)).await,
            Action::SendFin(_, data) => {
                let data = rest(data);
                let written = if data.is_empty() {
                    Ok(())
                } else {
                    send.write_chunk(data).await
                };
                written.and_then(|()| send.finish())
            }
            Action::CloseStream(_) => send.finish(),
            Action::ResetStream(_, code) => send.reset(*code),
            _ => Ok(()),
        };
        match (result, &action) {
            (Ok(()), Action::SendFin(..) | Action::CloseStream(_)) => {
                let _ = reports.send(Report::Finished(id));
                return;
            }
            (Ok(()), Action::ResetStream(..)) => {
                let _ = reports.send(Report::Reset(id));
                return;
            }
            (Ok(()), _) => {}
            (Err(e), _) => {
                let _ = reports.send(Report::Failed(Box::new((id, action, e.clone()))));
                fail_rest(&mut actions, &reports, id, e);
                return;
            }
        }
    }
    // The session forgot the stream or ended: dropping the half finishes it.
}

/// Reports every action still queued for a writer that cannot go on.
fn fail_rest(
    actions: &mut mpsc::Receiver<Queued>,
    reports: &mpsc::UnboundedSender<Report>,
    id: StreamId,
    error: StreamError,
) {
    actions.close();
    while let Ok(q) = actions.try_recv() {
        let _ = reports.send(Report::Failed(Box::new((id, q.action, error.clone()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wt_core::testsuite::mock::{MockConfig, MockSession};
    use wt_core::TransportKind;

    /// A client and a server session over the in-memory transport, whose streams buffer
    /// `window` bytes each way.
    fn sessions(window: usize) -> (MockSession, MockSession) {
        let mut config = MockConfig::new(TransportKind::Http3);
        config.stream_window = window;
        MockSession::pair(config)
    }

    async fn read_exactly(recv: &mut impl RecvStream, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < n {
            let chunk = recv.read_chunk(n - out.len()).await.unwrap();
            out.extend_from_slice(&chunk.expect("data before the end"));
        }
        out
    }

    fn bytes(n: usize, b: u8) -> Bytes {
        Bytes::from(vec![b; n])
    }

    #[tokio::test]
    async fn writes_go_in_place_as_far_as_the_window_allows() {
        let (client, server) = sessions(1000);
        let mut send = server.open_uni().await.unwrap();
        let id = send.id();

        // 700 bytes fit whole.
        let r = apply_inline(&mut send, id, &Action::Send(id, bytes(700, 1)));
        assert!(matches!(r, Inline::Done(None)));
        // Of 500 more, 300 fit: the rest, and the FIN behind it, wait.
        let r = apply_inline(&mut send, id, &Action::SendFin(id, bytes(500, 2)));
        assert!(matches!(r, Inline::Wait(300)));
        // Nothing fits now: nothing is written, and nothing is lost.
        let r = apply_inline(&mut send, id, &Action::Send(id, bytes(10, 3)));
        assert!(matches!(r, Inline::Wait(0)));

        let mut recv = client.accept_uni().await.unwrap();
        let mut want = vec![1u8; 700];
        want.extend([2u8; 300]);
        assert_eq!(read_exactly(&mut recv, 1000).await, want);

        // With room again the FIN goes in place too, and is reported as a writer's would be.
        let r = apply_inline(&mut send, id, &Action::SendFin(id, bytes(200, 2)));
        assert!(matches!(r, Inline::Done(Some(Report::Finished(f))) if f == id));
        assert_eq!(read_exactly(&mut recv, 200).await, vec![2u8; 200]);
        assert_eq!(
            recv.read_chunk(10).await.unwrap(),
            None,
            "FIN after the data"
        );

        // A finished half cannot be written.
        let r = apply_inline(&mut send, id, &Action::Send(id, bytes(1, 4)));
        assert!(matches!(r, Inline::Failed(StreamError::ClosedLocally)));
    }

    #[tokio::test]
    async fn a_writer_task_sends_what_the_session_task_left() {
        let (client, server) = sessions(1000);
        let send = server.open_uni().await.unwrap();
        let id = send.id();
        let (actions, queue) = mpsc::channel(WRITE_QUEUE);
        let (reports, mut reported) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(send, queue, reports));
        let data = Bytes::from((0..1500u32).map(|i| i as u8).collect::<Vec<u8>>());
        let queued = |action, written| Queued {
            action,
            written,
            _permit: None,
        };
        // The session task wrote the first 300 bytes of the first action itself.
        actions
            .send(queued(Action::Send(id, data.slice(..1000)), 300))
            .await
            .unwrap();
        actions
            .send(queued(Action::SendFin(id, data.slice(1000..)), 0))
            .await
            .unwrap();

        let mut recv = client.accept_uni().await.unwrap();
        let mut got = Vec::new();
        while let Some(c) = recv.read_chunk(4096).await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data[300..]);
        let r = reported.recv().await;
        assert!(matches!(r, Some(Report::Finished(f)) if f == id));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn resets_and_failures_are_reported_in_place() {
        let (client, server) = sessions(1000);

        let mut send = server.open_uni().await.unwrap();
        let id = send.id();
        let r = apply_inline(&mut send, id, &Action::ResetStream(id, 7));
        assert!(matches!(r, Inline::Done(Some(Report::Reset(f))) if f == id));
        let mut recv = client.accept_uni().await.unwrap();
        let e = recv.read_chunk(10).await.unwrap_err();
        assert!(matches!(e, StreamError::Reset(Some(7))), "{e:?}");

        // A write after the peer's STOP_SENDING fails with its code.
        let (mut send, _recv) = server.open_bi().await.unwrap();
        let id = send.id();
        let notice = send.stop_notice();
        let r = apply_inline(&mut send, id, &Action::Send(id, bytes(5, 1)));
        assert!(matches!(r, Inline::Done(None)));
        let (_client_send, mut client_recv) = client.accept_bi().await.unwrap();
        client_recv.stop(9).unwrap();
        assert_eq!(notice.await, Some(9), "the stop watcher hears it");
        let r = apply_inline(&mut send, id, &Action::Send(id, bytes(5, 1)));
        assert!(matches!(r, Inline::Failed(StreamError::Stopped(Some(9)))));
    }
}
