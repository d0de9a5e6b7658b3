//! The session runner: one task per session owns the [`Handler`], turns transport events into
//! callbacks and applies the returned [`Action`]s.
//!
//! ```text
//!   accept_bi loop ─┐                         ┌─> writer task (stream 0) ── SendStream
//!   accept_uni loop ├─ Event (bounded) ──> session task ──> writer task (stream 4) ...
//!   datagram loop  ─┤                         │   (handler callbacks, actions)
//!   reader tasks   ─┘                         └─ Report (one terminal report per writer)
//! ```
//!
//! * Readers, accept loops and the datagram loop send to the session task over one bounded
//!   queue ([`EVENT_QUEUE`] events of at most [`READ_CHUNK`] bytes). When the handler is slow the
//!   queue fills, readers stop reading, and the transports' flow control pushes back on the peer.
//! * Each sending half has a writer task fed by a bounded queue ([`WRITE_QUEUE`] actions), and
//!   the bytes queued for all writers of a session are capped by [`WRITE_BUDGET`]. The session
//!   task waits when a queue or the budget is full, so a peer that does not read a stream
//!   eventually pauses the whole session (never buffering without bound). Clients of an echo
//!   handler must therefore read while they write.
//!
//! Per session, the runner thus holds at most `EVENT_QUEUE × READ_CHUNK` (512 KiB) of received
//! data plus [`WRITE_BUDGET`] (1 MiB) of data to send, on top of what the handler keeps.
//! * Writers report back on a separate queue: at most one terminal report per writer, plus one
//!   per action still queued when a write fails, so its length is bounded by the queues.
//! * Every callback runs under `catch_unwind`; a panic closes the session with
//!   [`HANDLER_PANICKED`] and ends the task.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
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
use crate::wake::{Wakeup, Woken};

/// Capacity of the queue from readers, accept loops and the datagram loop to the session task.
pub const EVENT_QUEUE: usize = 16;
/// Capacity of each writer task's queue of actions.
pub const WRITE_QUEUE: usize = 16;
/// Largest chunk a reader takes from a stream at once.
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

/// A writer's report (boxed failure: see [`Event`]).
enum Report {
    /// FIN sent after all queued data.
    Finished(StreamId),
    /// Reset done.
    Reset(StreamId),
    /// The peer sent STOP_SENDING while the writer was idle.
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

struct Entry {
    kind: StreamKind,
    by_peer: bool,
    send: Half,
    recv: Half,
    /// Something other than a clean FIN ended a half.
    abnormal: bool,
    writer: Option<mpsc::Sender<Queued>>,
    stop: Option<oneshot::Sender<u32>>,
}

/// An action for a writer task, with its share of the session's [`WRITE_BUDGET`].
type Queued = (Action, Option<OwnedSemaphorePermit>);

/// Why the session task ends.
enum End {
    Terminate(TerminateReason),
    Panicked,
}

struct Runner<S: Session, H> {
    session: S,
    handler: H,
    streams: FxHashMap<StreamId, Entry>,
    peer_streams: usize,
    received: u64,
    limits: Limits,
    events: mpsc::Sender<Event<S>>,
    reports: mpsc::UnboundedSender<Report>,
    tasks: JoinSet<()>,
    force: CancellationToken,
    budget: Arc<Semaphore>,
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
                Some(ev) = events_rx.recv() => Step::Event(ev),
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
                let writer = match (&entry.writer, entry.send) {
                    (Some(w), Half::Open) => w.clone(),
                    _ => return Ok(Err((action, ActionError::StreamClosed(id)))),
                };
                let bytes = match &action {
                    Action::Send(_, d) | Action::SendFin(_, d) => d.len().min(WRITE_BUDGET),
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
                let Some(entry) = self.streams.get_mut(&id) else {
                    return Ok(Err((action, ActionError::UnknownStream(id))));
                };
                match action {
                    Action::Send(..) => {}
                    Action::ResetStream(..) => {
                        entry.send = Half::Closing;
                        entry.abnormal = true;
                    }
                    _ => entry.send = Half::Closing,
                }
                match wait(&self.session, &self.force, writer.send((action, permit))).await? {
                    Ok(()) => Ok(Ok(())),
                    Err(mpsc::error::SendError((action, _))) => {
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

    /// Starts the reader and writer tasks of a new stream and records it.
    fn register(&mut self, send: S::SendStream, recv: Option<S::RecvStream>, by_peer: bool) {
        let id = send.id();
        let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
        self.tasks
            .spawn(write_loop(send, wrx, self.reports.clone()));
        let (stop, recv_half) = match recv {
            Some(r) => {
                let (stx, srx) = oneshot::channel();
                self.tasks
                    .spawn(read_loop::<S>(r, self.events.clone(), srx));
                (Some(stx), Half::Open)
            }
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
                writer: Some(wtx),
                stop,
            },
        );
        if by_peer {
            self.peer_streams += 1;
        }
    }

    fn register_peer_uni(&mut self, recv: S::RecvStream) {
        let id = recv.id();
        let (stx, srx) = oneshot::channel();
        self.tasks
            .spawn(read_loop::<S>(recv, self.events.clone(), srx));
        self.streams.insert(
            id,
            Entry {
                kind: StreamKind::Uni,
                by_peer: true,
                send: Half::Absent,
                recv: Half::Open,
                abnormal: false,
                writer: None,
                stop: Some(stx),
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

/// Reads a stream chunk by chunk into the session's event queue, until its end, an error, or
/// a STOP_SENDING request from the session task.
async fn read_loop<S: Session>(
    mut recv: S::RecvStream,
    events: mpsc::Sender<Event<S>>,
    mut stop: oneshot::Receiver<u32>,
) {
    let id = recv.id();
    loop {
        let read = tokio::select! {
            biased;
            code = &mut stop => Err(code),
            r = recv.read_chunk(READ_CHUNK) => Ok(r),
        };
        let event = match read {
            Err(code) => {
                if let Ok(code) = code {
                    let _ = recv.stop(code);
                }
                return;
            }
            Ok(Ok(Some(data))) => Event::Data(id, data),
            Ok(Ok(None)) => Event::Fin(id),
            Ok(Err(e)) => Event::ReadFailed(id, Box::new(e)),
        };
        let last = !matches!(event, Event::Data(..));
        let sent = tokio::select! {
            biased;
            code = &mut stop => Err(code),
            r = events.send(event) => Ok(r.is_ok()),
        };
        match sent {
            Err(code) => {
                if let Ok(code) = code {
                    let _ = recv.stop(code);
                }
                return;
            }
            Ok(false) => return,
            Ok(true) if last => return,
            Ok(true) => {}
        }
    }
}

/// Applies stream actions to one sending half, in order, and watches for STOP_SENDING.
async fn write_loop<W: SendStream>(
    mut send: W,
    mut actions: mpsc::Receiver<Queued>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let id = send.id();
    loop {
        let next = tokio::select! {
            biased;
            a = actions.recv() => Ok(a),
            s = send.stopped() => Err(s),
        };
        // The budget permit is released when this iteration ends (data handed to the
        // transport, or failed).
        let (action, _permit) = match next {
            Ok(Some(a)) => a,
            // The session forgot the stream or ended: dropping the half finishes it.
            Ok(None) => return,
            Err(Ok(Some(code))) => {
                let _ = reports.send(Report::Stopped(id, code));
                fail_rest(&mut actions, &reports, id, StreamError::Stopped(Some(code)));
                return;
            }
            Err(Ok(None)) | Err(Err(_)) => return,
        };
        let result = match &action {
            Action::Send(_, data) => send.write_chunk(data.clone()).await,
            Action::SendFin(_, data) => {
                let written = if data.is_empty() {
                    Ok(())
                } else {
                    send.write_chunk(data.clone()).await
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
}

/// Reports every action still queued for a writer that cannot go on.
fn fail_rest(
    actions: &mut mpsc::Receiver<Queued>,
    reports: &mpsc::UnboundedSender<Report>,
    id: StreamId,
    error: StreamError,
) {
    actions.close();
    while let Ok((a, _permit)) = actions.try_recv() {
        let _ = reports.send(Report::Failed(Box::new((id, a, error.clone()))));
    }
}
