//! The echo handler used by the conformance suite and interop runs. Its conventions (paths,
//! in-band commands, codes, pushed bytes) are specified in the [crate docs](crate#the-echo-handler).

mod observe;
mod parse;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};
use wt_core::{AcceptOptions, RequestInfo, StreamId, StreamKind};

pub use observe::{
    escape, Observation, ObservationLog, Snapshot, Until, DEFAULT_OBSERVATION_CAPACITY,
};
pub use parse::{
    not_served_status, parse_code, parse_command, parse_route, percent_decode, Command,
    CommandError, Route, Sniffed, Sniffer, ALLOWED_TEST_ORIGIN, COMMAND_PREFIX, MAX_COMMAND_LINE,
    PATTERN,
};

use crate::action::{Action, ActionError};
use crate::codes::{BAD_COMMAND, ECHO_TOO_LARGE};
use crate::handler::{CloseReason, Handler, Rejection, TerminateReason};
use crate::wake::Woken;

/// Response header carrying an observed session's token (decimal), on every accepted session
/// except `/observed/...` queries.
pub const TOKEN_HEADER: &str = "wt-testserver-token";

/// The `tag` of the echo handler's [`Action::WakeOn`] (an `/observed/...` query waiting).
const QUERY_WAKE_TAG: u64 = 1;

/// Options of the [`EchoHandler`].
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Most bytes collected from one unidirectional stream before echoing it at its FIN; a
    /// longer stream gets STOP_SENDING with [`ECHO_TOO_LARGE`]. Default 1 MiB.
    pub max_uni_echo: usize,
    /// Most bytes collected from all unidirectional streams of a session at once; past it, the
    /// stream that overflows gets STOP_SENDING with [`ECHO_TOO_LARGE`]. Default 8 MiB.
    pub max_uni_buffered: usize,
    /// Largest byte count accepted by `/open-*` paths and `open-*` commands (larger ones are
    /// refused: 400, or [`BAD_COMMAND`]). Default 64 MiB.
    pub max_push: u64,
    /// When set, only these origins are accepted (403 otherwise), on every path. Default
    /// `None`: any origin, or none, is accepted (except on `/origin-check`).
    pub allowed_origins: Option<Vec<String>>,
    /// Honour the `WT-CMD panic` command (the handler panics; used to test isolation).
    /// Default `false`: the command is refused like an unknown one.
    pub allow_panic_command: bool,
    /// Where sessions record their [observations](crate#observations); shared by every
    /// session of the server, and by clones of this config. Default: a new log of
    /// [`DEFAULT_OBSERVATION_CAPACITY`] (1024) entries.
    pub observations: Arc<ObservationLog>,
    /// How long an `/observed/...` query waits for what it waits for before answering with
    /// what is there. Default 5 s.
    pub observe_wait: Duration,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            max_uni_echo: 1024 * 1024,
            max_uni_buffered: 8 * 1024 * 1024,
            max_push: 64 * 1024 * 1024,
            allowed_origins: None,
            allow_panic_command: false,
            observations: Arc::new(ObservationLog::default()),
            observe_wait: Duration::from_secs(5),
        }
    }
}

/// What to write on a stream the handler asked to open, once it is open.
#[derive(Debug)]
enum Push {
    /// `n` pattern bytes, then FIN.
    Pattern(u64),
    /// The collected contents of a unidirectional stream, then FIN.
    Echo(Bytes),
    /// These bytes (not counted in `uni_buffered`), then FIN.
    Data(Bytes),
}

/// Records a session's observations; records `terminate <token> aborted` if the handler is
/// dropped without `terminate` (a panic, or a runner that gave up).
#[derive(Debug)]
struct Observer {
    log: Arc<ObservationLog>,
    /// 0: not observed (an `/observed/...` query).
    token: u64,
    ended: bool,
}

impl Observer {
    fn new(log: &Arc<ObservationLog>, observed: bool) -> Self {
        Observer {
            log: log.clone(),
            token: if observed { log.register() } else { 0 },
            ended: false,
        }
    }

    fn stream_closed(&self, id: StreamId, reason: CloseReason) {
        if self.token != 0 {
            self.log.stream_closed(self.token, id, reason);
        }
    }

    fn terminate(&mut self, reason: Option<&TerminateReason>) {
        if self.token != 0 && !self.ended {
            self.log.terminated(self.token, reason);
        }
        self.ended = true;
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.terminate(None);
    }
}

/// A pending `/observed/...` query.
#[derive(Debug)]
struct Query {
    token: u64,
    until: Until,
    deadline: tokio::time::Instant,
}

/// A one-shot trigger armed by `/reset/<code>` or `/stop/<code>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Reset(u32),
    Stop(u32),
}

/// Receive-side state of a client bidirectional stream.
#[derive(Debug)]
struct BidiState {
    sniffer: Sniffer,
    /// Our sending half was reset or stopped: echo nothing more.
    send_closed: bool,
}

/// Echoes streams and datagrams; see the [crate docs](crate#the-echo-handler).
#[derive(Debug)]
pub struct EchoHandler {
    max_uni_echo: usize,
    max_uni_buffered: usize,
    max_push: u64,
    allow_panic: bool,
    trigger: Option<Trigger>,
    bidi: HashMap<StreamId, BidiState>,
    /// Server-opened bidirectional streams: what the peer sends on them is discarded.
    own_bidi: HashSet<StreamId>,
    uni: HashMap<StreamId, BytesMut>,
    uni_buffered: usize,
    pending_bidi: VecDeque<Push>,
    pending_uni: VecDeque<Push>,
    observer: Observer,
    /// The selected subprotocol.
    protocol: Option<String>,
    query: Option<Query>,
}

impl EchoHandler {
    /// A handler in its initial state, as [`init`](Handler::init) creates it for `/echo`
    /// (with a new observation token from [`EchoConfig::observations`] and no subprotocol).
    pub fn new(config: &EchoConfig) -> Self {
        Self::with_observer(config, true)
    }

    /// The session's observation token (0 for an `/observed/...` query, which is not
    /// observed).
    pub fn token(&self) -> u64 {
        self.observer.token
    }

    /// The subprotocol the handler selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    fn with_observer(config: &EchoConfig, observed: bool) -> Self {
        EchoHandler {
            max_uni_echo: config.max_uni_echo,
            max_uni_buffered: config.max_uni_buffered,
            max_push: config.max_push,
            allow_panic: config.allow_panic_command,
            trigger: None,
            bidi: HashMap::new(),
            own_bidi: HashSet::new(),
            uni: HashMap::new(),
            uni_buffered: 0,
            pending_bidi: VecDeque::new(),
            pending_uni: VecDeque::new(),
            observer: Observer::new(&config.observations, observed),
            protocol: None,
            query: None,
        }
    }

    /// Bytes currently held from unidirectional streams (collected or waiting for their echo
    /// stream to open).
    pub fn buffered(&self) -> usize {
        self.uni_buffered
    }

    fn open(&mut self, kind: StreamKind, push: Push) -> Action {
        match kind {
            StreamKind::Bidi => self.pending_bidi.push_back(push),
            StreamKind::Uni => self.pending_uni.push_back(push),
        }
        Action::OpenStream(kind)
    }

    /// Actions for a command found on client bidirectional stream `id`.
    fn command(&mut self, id: StreamId, cmd: Command, out: &mut Vec<Action>) {
        match cmd {
            Command::Close { code, reason } => out.push(Action::CloseSession(code, reason)),
            Command::Drain => out.push(Action::Drain),
            Command::Reset(code) => {
                if let Some(s) = self.bidi.get_mut(&id) {
                    s.send_closed = true;
                }
                out.push(Action::ResetStream(id, code));
            }
            Command::Stop(code) => out.push(Action::StopSending(id, code)),
            Command::OpenUni(n) => out.push(self.open(StreamKind::Uni, Push::Pattern(n))),
            Command::OpenBidi(n) => out.push(self.open(StreamKind::Bidi, Push::Pattern(n))),
            Command::Id => {
                let reply = format!("{}\n", self.observer.token);
                self.echo(id, Bytes::from(reply), out);
            }
            Command::Protocol => {
                let reply = format!("{}\n", self.protocol.as_deref().unwrap_or(""));
                self.echo(id, Bytes::from(reply), out);
            }
            Command::Panic if self.allow_panic => {
                panic!("WT-CMD panic: the echo handler panics on request")
            }
            Command::Panic => self.refuse(id, out),
        }
    }

    fn refuse(&mut self, id: StreamId, out: &mut Vec<Action>) {
        if let Some(s) = self.bidi.get_mut(&id) {
            s.send_closed = true;
        }
        out.push(Action::ResetStream(id, BAD_COMMAND));
        out.push(Action::StopSending(id, BAD_COMMAND));
    }

    /// Client bidirectional stream data (`fin`: the peer finished the stream after it).
    fn bidi_data(&mut self, id: StreamId, data: Bytes, fin: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(trigger) = self.take_trigger(id) {
            match trigger {
                Trigger::Reset(code) => {
                    if !data.is_empty() {
                        out.push(Action::Send(id, data));
                    }
                    out.push(Action::ResetStream(id, code));
                    if !fin {
                        // Nothing more will be echoed; the receive half is kept to its end.
                        self.bidi.insert(
                            id,
                            BidiState {
                                sniffer: Sniffer::passthrough(self.max_push),
                                send_closed: true,
                            },
                        );
                    }
                }
                Trigger::Stop(code) => {
                    out.push(Action::StopSending(id, code));
                    out.push(Action::CloseStream(id));
                }
            }
            return out;
        }
        let max_push = self.max_push;
        let state = self.bidi.entry(id).or_insert_with(|| BidiState {
            sniffer: Sniffer::new(max_push),
            send_closed: false,
        });
        let mut results = vec![state.sniffer.push(data)];
        if fin {
            results.push(state.sniffer.finish());
        }
        for sniffed in results {
            match sniffed {
                Sniffed::Pending => {}
                Sniffed::Data(d) => self.echo(id, d, &mut out),
                Sniffed::Command(Ok(cmd), rest) => {
                    self.command(id, cmd, &mut out);
                    self.echo(id, rest, &mut out);
                }
                Sniffed::Command(Err(e), _) => {
                    tracing::debug!(stream = %id, error = %e, "refusing WT-CMD line");
                    self.refuse(id, &mut out);
                }
            }
        }
        if fin {
            let send_open = self.bidi.remove(&id).is_some_and(|s| !s.send_closed);
            if send_open {
                out.push(Action::CloseStream(id));
            }
        }
        out
    }

    fn echo(&self, id: StreamId, data: Bytes, out: &mut Vec<Action>) {
        let open = self.bidi.get(&id).is_some_and(|s| !s.send_closed);
        if open && !data.is_empty() {
            out.push(Action::Send(id, data));
        }
    }

    fn take_trigger(&mut self, id: StreamId) -> Option<Trigger> {
        if !id.is_client_initiated() || self.bidi.contains_key(&id) {
            return None;
        }
        match self.trigger {
            Some(Trigger::Reset(_)) if id.is_bidi() => self.trigger.take(),
            Some(Trigger::Stop(_)) => self.trigger.take(),
            _ => None,
        }
    }

    fn uni_data(&mut self, id: StreamId, data: Bytes, fin: bool) -> Vec<Action> {
        if !self.uni.contains_key(&id) {
            if let Some(Trigger::Stop(code)) = self.take_trigger(id) {
                return vec![Action::StopSending(id, code)];
            }
        }
        let held = self.uni.get(&id).map_or(0, |b| b.len());
        if held + data.len() > self.max_uni_echo
            || self.uni_buffered + data.len() > self.max_uni_buffered
        {
            if let Some(b) = self.uni.remove(&id) {
                self.uni_buffered -= b.len();
            }
            return vec![Action::StopSending(id, ECHO_TOO_LARGE)];
        }
        self.uni_buffered += data.len();
        let buf = self.uni.entry(id).or_default();
        buf.extend_from_slice(&data);
        if !fin {
            return Vec::new();
        }
        let collected = self.uni.remove(&id).unwrap_or_default().freeze();
        // Still counted in `uni_buffered` until it is written.
        vec![self.open(StreamKind::Uni, Push::Echo(collected))]
    }

    fn push_actions(&mut self, id: StreamId, push: Push) -> Vec<Action> {
        match push {
            Push::Echo(data) => {
                self.uni_buffered -= data.len();
                vec![Action::SendFin(id, data)]
            }
            Push::Data(data) => vec![Action::SendFin(id, data)],
            Push::Pattern(n) => {
                let mut out = Vec::new();
                let mut left = n;
                let block = PATTERN.len() as u64;
                while left > block {
                    out.push(Action::Send(id, parse::pattern_chunk(PATTERN.len())));
                    left -= block;
                }
                // `left <= 64 KiB` here.
                out.push(Action::SendFin(id, parse::pattern_chunk(left as usize)));
                out
            }
        }
    }
}

impl EchoHandler {
    /// Answers the pending `/observed/...` query if it can (or `give_up`): opens the
    /// unidirectional stream that carries the reply. Otherwise waits for the next entry.
    fn answer_query(&mut self, give_up: bool) -> Vec<Action> {
        let Some(q) = &self.query else {
            return Vec::new();
        };
        // Taken before looking, so an entry recorded in between still wakes us.
        let wakeup = self.observer.log.wakeup();
        let snap = self.observer.log.snapshot(q.token).unwrap_or_default();
        let due = give_up || tokio::time::Instant::now() >= q.deadline;
        if !due && !snap.satisfies(q.until) {
            return vec![Action::WakeOn {
                wakeup,
                deadline: q.deadline,
                tag: QUERY_WAKE_TAG,
            }];
        }
        self.query = None;
        vec![self.open(StreamKind::Uni, Push::Data(snap.to_bytes()))]
    }
}

impl Handler for EchoHandler {
    type Config = EchoConfig;

    fn check_origin(config: &EchoConfig, request: &RequestInfo, origin: Option<&str>) -> bool {
        if parse_route(&request.path, config.max_push) == Ok(Route::OriginCheck) {
            return origin == Some(ALLOWED_TEST_ORIGIN);
        }
        match &config.allowed_origins {
            None => true,
            Some(list) => origin.is_some_and(|o| list.iter().any(|a| a == o)),
        }
    }

    fn init(config: &EchoConfig, request: &RequestInfo) -> Result<(Self, Vec<Action>), Rejection> {
        let route = parse_route(&request.path, config.max_push).map_err(|status| {
            if status == StatusCode::NOT_FOUND {
                not_served_status(request.dialect)
            } else {
                status
            }
        })?;
        // Offered protocols: `/protocol/<name>` requires `<name>`; elsewhere the last offer.
        let protocol = match &route {
            Route::Protocol(name) if request.protocols.contains(name) => Some(name.clone()),
            Route::Protocol(_) => return Err(Rejection::new(StatusCode::BAD_REQUEST)),
            _ => request.protocols.last().cloned(),
        };
        let query = match route {
            Route::Observed { token, stream } => {
                if !config.observations.issued(token) {
                    return Err(Rejection::new(StatusCode::NOT_FOUND));
                }
                Some(Query {
                    token,
                    until: stream.map_or(Until::Terminated, Until::Stream),
                    deadline: tokio::time::Instant::now() + config.observe_wait,
                })
            }
            _ => None,
        };
        if let Route::Reject(status) = route {
            return Err(Rejection::new(status));
        }
        let mut h = EchoHandler::with_observer(config, query.is_none());
        h.protocol = protocol;
        h.query = query;
        let actions = match route {
            Route::Echo | Route::OriginCheck | Route::Protocol(_) | Route::Reject(_) => Vec::new(),
            Route::Observed { .. } => h.answer_query(false),
            Route::Close { code, reason } => vec![Action::CloseSession(code, reason)],
            Route::Drain => vec![Action::Drain],
            Route::OpenBidi(n) => vec![h.open(StreamKind::Bidi, Push::Pattern(n))],
            Route::OpenUni(n) => vec![h.open(StreamKind::Uni, Push::Pattern(n))],
            Route::Reset(code) => {
                h.trigger = Some(Trigger::Reset(code));
                Vec::new()
            }
            Route::Stop(code) => {
                h.trigger = Some(Trigger::Stop(code));
                Vec::new()
            }
        };
        Ok((h, actions))
    }

    fn accept_options(&self, _request: &RequestInfo) -> AcceptOptions {
        let mut options = AcceptOptions {
            protocol: self.protocol.clone(),
            ..AcceptOptions::default()
        };
        if self.observer.token != 0 {
            options.headers.insert(
                HeaderName::from_static(TOKEN_HEADER),
                HeaderValue::from(self.observer.token),
            );
        }
        options
    }

    fn handle_stream(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.stream_event(id, kind, data, false)
    }

    fn handle_stream_fin(&mut self, id: StreamId, kind: StreamKind, data: Bytes) -> Vec<Action> {
        self.stream_event(id, kind, data, true)
    }

    fn handle_datagram(&mut self, data: Bytes) -> Vec<Action> {
        vec![Action::SendDatagram(data)]
    }

    fn handle_stream_opened(&mut self, kind: StreamKind, id: StreamId) -> Vec<Action> {
        let push = match kind {
            StreamKind::Bidi => {
                self.own_bidi.insert(id);
                self.pending_bidi.pop_front()
            }
            StreamKind::Uni => self.pending_uni.pop_front(),
        };
        match push {
            Some(p) => self.push_actions(id, p),
            None => vec![Action::CloseStream(id)],
        }
    }

    fn handle_stream_closed(&mut self, id: StreamId, reason: CloseReason) -> Vec<Action> {
        self.observer.stream_closed(id, reason);
        match reason {
            CloseReason::Reset(code) => {
                let client_bidi = id.is_bidi() && id.is_client_initiated();
                let send_open = self.bidi.remove(&id).is_none_or(|s| !s.send_closed);
                self.own_bidi.remove(&id);
                if let Some(b) = self.uni.remove(&id) {
                    self.uni_buffered -= b.len();
                }
                if client_bidi && send_open {
                    // Mirror the reset: nothing more will be echoed, and the stream ends.
                    return vec![Action::ResetStream(id, code)];
                }
            }
            CloseReason::StopSending(_) => {
                if let Some(s) = self.bidi.get_mut(&id) {
                    s.send_closed = true;
                }
            }
            CloseReason::Normal => {
                self.own_bidi.remove(&id);
            }
        }
        Vec::new()
    }

    fn handle_wake(&mut self, tag: u64, woken: Woken) -> Vec<Action> {
        if tag != QUERY_WAKE_TAG {
            return Vec::new();
        }
        self.answer_query(woken == Woken::DeadlineReached)
    }

    fn handle_action_failed(&mut self, action: Action, error: ActionError) -> Vec<Action> {
        tracing::debug!(?action, %error, "echo: action failed");
        if let Action::OpenStream(kind) = action {
            let dropped = match kind {
                StreamKind::Bidi => self.pending_bidi.pop_front(),
                StreamKind::Uni => self.pending_uni.pop_front(),
            };
            if let Some(Push::Echo(data)) = dropped {
                self.uni_buffered -= data.len();
            }
        }
        Vec::new()
    }

    fn terminate(mut self, reason: TerminateReason) {
        tracing::debug!(?reason, "echo session ended");
        self.observer.terminate(Some(&reason));
    }
}

impl EchoHandler {
    fn stream_event(
        &mut self,
        id: StreamId,
        kind: StreamKind,
        data: Bytes,
        fin: bool,
    ) -> Vec<Action> {
        match kind {
            StreamKind::Uni => self.uni_data(id, data, fin),
            StreamKind::Bidi if self.own_bidi.contains(&id) => {
                if fin {
                    self.own_bidi.remove(&id);
                }
                Vec::new()
            }
            StreamKind::Bidi => self.bidi_data(id, data, fin),
        }
    }
}

#[cfg(test)]
mod tests;
