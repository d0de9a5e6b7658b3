//! Serving a [`Handler`] on any number of [`Acceptor`]s: admission (limits, origin check,
//! `init`), one task per session, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wt_core::{Acceptor, IncomingRequest};

use crate::handler::{Handler, TerminateReason};
use crate::session::{guarded, run_session, SessionSignals};

/// Resource limits of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most sessions at once (requests being decided included) over all the server's
    /// acceptors; further requests are rejected with 429 Too Many Requests. Default 1024.
    pub max_sessions: usize,
    /// Most peer-opened streams open at once in one session; a stream beyond it is refused at
    /// once (reset and STOP_SENDING with
    /// [`STREAM_LIMIT_EXCEEDED`](crate::codes::STREAM_LIMIT_EXCEEDED)). Default 256.
    pub max_streams_per_session: usize,
    /// Most stream payload bytes one session may receive in total; past it the session is
    /// closed with [`DATA_LIMIT_EXCEEDED`](crate::codes::DATA_LIMIT_EXCEEDED). Default `None`
    /// (no limit: flow control alone bounds memory).
    pub max_data_per_session: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1024,
            max_streams_per_session: 256,
            max_data_per_session: None,
        }
    }
}

/// How a [`Listener`] serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Resource limits.
    pub limits: Limits,
    /// How long [`Listener::shutdown`] lets draining sessions finish before closing them.
    /// Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What [`Listener::shutdown`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownStats {
    /// Sessions (and undecided requests) still running when shutdown began.
    pub active_at_start: usize,
    /// Sessions that outlived the grace period and were closed with
    /// [`SHUTDOWN`](crate::codes::SHUTDOWN).
    pub forced: usize,
}

/// Shared by the accept loops and session tasks of one listener.
struct Shared<H: Handler> {
    config: H::Config,
    limits: Limits,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    stop_accepting: CancellationToken,
    signals: SessionSignals,
}

struct Slot {
    addr: SocketAddr,
    shutdown: Box<dyn Fn() + Send + Sync>,
    task: JoinHandle<()>,
}

/// A running server: one [`Handler`] type served on one or more [`Acceptor`]s (e.g. an HTTP/3
/// and an HTTP/2 acceptor sharing the same limits).
///
/// Dropping a `Listener` stops accepting and closes every session at once; call
/// [`shutdown`](Listener::shutdown) for a graceful stop.
pub struct Listener<H: Handler> {
    shared: Arc<Shared<H>>,
    slots: Vec<Slot>,
    grace: Duration,
}

impl<H: Handler> std::fmt::Debug for Listener<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addrs", &self.local_addrs())
            .field("active_sessions", &self.active_sessions())
            .finish()
    }
}

/// Serves handler `H` with `config` on `acceptor`. Must be called within a Tokio runtime.
///
/// ```no_run
/// # async fn demo<A: wt_core::Acceptor>(acceptor: A) {
/// use wt_testserver::{serve, EchoConfig, EchoHandler, ServeOptions};
/// let listener = serve::<EchoHandler, _>(acceptor, EchoConfig::default(), ServeOptions::default());
/// // ...
/// listener.shutdown().await;
/// # }
/// ```
pub fn serve<H: Handler, A: Acceptor>(
    acceptor: A,
    config: H::Config,
    options: ServeOptions,
) -> Listener<H> {
    let mut listener = Listener::new(config, options);
    listener.serve(acceptor);
    listener
}

impl<H: Handler> Listener<H> {
    /// A listener with no acceptor yet.
    pub fn new(config: H::Config, options: ServeOptions) -> Self {
        Listener {
            shared: Arc::new(Shared {
                config,
                limits: options.limits,
                permits: Arc::new(Semaphore::new(options.limits.max_sessions)),
                tracker: TaskTracker::new(),
                stop_accepting: CancellationToken::new(),
                signals: SessionSignals {
                    drain: CancellationToken::new(),
                    force: CancellationToken::new(),
                },
            }),
            slots: Vec::new(),
            grace: options.shutdown_grace,
        }
    }

    /// Starts accepting requests from `acceptor`; returns its address. Must be called within
    /// a Tokio runtime.
    pub fn serve<A: Acceptor>(&mut self, acceptor: A) -> SocketAddr {
        let acceptor = Arc::new(acceptor);
        let addr = acceptor.local_addr();
        let task = tokio::spawn(accept_loop(acceptor.clone(), self.shared.clone()));
        self.slots.push(Slot {
            addr,
            shutdown: Box::new(move || acceptor.shutdown()),
            task,
        });
        addr
    }

    /// The addresses of the acceptors, in the order they were added.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.slots.iter().map(|s| s.addr).collect()
    }

    /// The handler configuration.
    pub fn config(&self) -> &H::Config {
        &self.shared.config
    }

    /// Sessions currently running, plus requests being decided.
    pub fn active_sessions(&self) -> usize {
        self.shared.limits.max_sessions - self.shared.permits.available_permits()
    }

    /// Stops gracefully, waiting at most the configured grace period (then closing what is
    /// left): see [`shutdown_with`](Listener::shutdown_with).
    pub async fn shutdown(self) -> ShutdownStats {
        let grace = self.grace;
        self.shutdown_with(grace).await
    }

    /// Stops gracefully: stops accepting ([`Acceptor::shutdown`], which also sends GOAWAY),
    /// asks every live session to drain ([`Session::drain`](wt_core::Session::drain)), waits
    /// up to `grace` for them to end, then closes the rest with
    /// [`SHUTDOWN`](crate::codes::SHUTDOWN) and waits for their tasks.
    pub async fn shutdown_with(mut self, grace: Duration) -> ShutdownStats {
        let shared = self.shared.clone();
        let active_at_start = self.active_sessions();
        shared.stop_accepting.cancel();
        for slot in std::mem::take(&mut self.slots) {
            (slot.shutdown)();
            if let Err(e) = slot.task.await {
                tracing::error!(error = %e, "accept loop failed");
            }
        }
        shared.tracker.close();
        shared.signals.drain.cancel();
        let mut forced = 0;
        if tokio::time::timeout(grace, shared.tracker.wait())
            .await
            .is_err()
        {
            forced = shared.tracker.len();
            tracing::info!(sessions = forced, "grace period over; closing sessions");
            shared.signals.force.cancel();
            shared.tracker.wait().await;
        }
        ShutdownStats {
            active_at_start,
            forced,
        }
    }
}

impl<H: Handler> Drop for Listener<H> {
    fn drop(&mut self) {
        self.shared.stop_accepting.cancel();
        if !self.slots.is_empty() {
            for slot in &self.slots {
                (slot.shutdown)();
            }
            self.shared.signals.force.cancel();
        }
    }
}

async fn accept_loop<H: Handler, A: Acceptor>(acceptor: Arc<A>, shared: Arc<Shared<H>>) {
    loop {
        let request = tokio::select! {
            biased;
            _ = shared.stop_accepting.cancelled() => None,
            r = acceptor.accept() => r,
        };
        let Some(request) = request else {
            return;
        };
        let permit = shared.permits.clone().try_acquire_owned().ok();
        shared
            .tracker
            .spawn(handle_request(request, permit, shared.clone()));
    }
}

/// Decides on one request (limits, origin, `init`) and runs the session if accepted.
///
/// The task lives as long as its session, one per session, so it is kept small (idle
/// session memory is measured by `cargo xtask bench`): the decision, whose futures are large
/// (the request itself, its reject and accept), is a boxed future freed once it is done, and
/// the session then runs in a box of its own size. An `async` block awaiting one after the
/// other would be as large as both, plus the decision's result.
fn handle_request<H: Handler, R: IncomingRequest>(
    request: R,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared<H>>,
) -> RequestTask<impl Future<Output = Option<Accepted>> + Send> {
    RequestTask::Deciding(Box::pin(decide(request, permit, shared)))
}

/// What a request's task does: decide, then run the accepted session.
enum RequestTask<D> {
    Deciding(Pin<Box<D>>),
    /// The session's run, and the session limit's permit held until it ends.
    Running {
        run: Pin<Box<dyn Future<Output = ()> + Send>>,
        _permit: OwnedSemaphorePermit,
    },
    Done,
}

impl<D: Future<Output = Option<Accepted>>> Future for RequestTask<D> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut *self {
                RequestTask::Deciding(d) => match ready!(d.as_mut().poll(cx)) {
                    Some(Accepted { run, permit }) => {
                        *self = RequestTask::Running {
                            run,
                            _permit: permit,
                        }
                    }
                    None => *self = RequestTask::Done,
                },
                RequestTask::Running { run, .. } => {
                    ready!(run.as_mut().poll(cx));
                    *self = RequestTask::Done;
                }
                RequestTask::Done => return Poll::Ready(()),
            }
        }
    }
}

/// A session [`decide`] accepted: its run, ready to be polled, and the permit it holds.
struct Accepted {
    run: Pin<Box<dyn Future<Output = ()> + Send>>,
    permit: OwnedSemaphorePermit,
}

/// Checks the session limit, the origin and the handler's `init`, then accepts or rejects
/// the request; `None` when it was rejected or the accept failed.
async fn decide<H: Handler, R: IncomingRequest>(
    request: R,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared<H>>,
) -> Option<Accepted> {
    let info = request.info().clone();
    let span = tracing::debug_span!("session", path = %info.path, peer = %info.peer_addr, dialect = %info.dialect);
    let Some(permit) = permit else {
        tracing::debug!(parent: &span, "rejecting request: session limit reached");
        Box::pin(request.reject(StatusCode::TOO_MANY_REQUESTS)).await;
        return None;
    };
    let config = &shared.config;
    let origin_ok = guarded(|| H::check_origin(config, &info, info.origin.as_deref()));
    let status = match origin_ok {
        Ok(true) => None,
        Ok(false) => Some(StatusCode::FORBIDDEN),
        Err(msg) => {
            tracing::error!(parent: &span, panic = %msg, "check_origin panicked");
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    if let Some(status) = status {
        tracing::debug!(parent: &span, %status, origin = ?info.origin, "rejecting request: origin");
        Box::pin(request.reject(status)).await;
        return None;
    }
    let created = guarded(|| {
        H::init(config, &info).map(|(h, actions)| {
            let options = h.accept_options(&info);
            (h, actions, options)
        })
    });
    let (handler, actions, options) = match created {
        Ok(Ok(x)) => x,
        Ok(Err(rejection)) => {
            tracing::debug!(parent: &span, status = %rejection.status, "handler rejected request");
            Box::pin(request.reject(rejection.status)).await;
            return None;
        }
        Err(msg) => {
            tracing::error!(parent: &span, panic = %msg, "init panicked; rejecting with 500");
            Box::pin(request.reject(StatusCode::INTERNAL_SERVER_ERROR)).await;
            return None;
        }
    };
    let session = match Box::pin(request.accept(options)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(parent: &span, error = %e, "accepting the session failed");
            let done = guarded(move || handler.terminate(TerminateReason::Error(e)));
            if done.is_err() {
                tracing::error!(parent: &span, "handler panicked in terminate");
            }
            return None;
        }
    };
    tracing::debug!(parent: &span, "session established");
    use tracing::Instrument;
    let run = run_session(
        session,
        handler,
        actions,
        shared.limits,
        shared.signals.clone(),
    )
    .instrument(span);
    Some(Accepted {
        run: Box::pin(run),
        permit,
    })
}
