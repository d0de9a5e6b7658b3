//! The echo server's record of what it observed: a bounded, server-wide ring of
//! [`Observation`]s, each tagged with the token of the session it is about. The line format
//! and the `/observed/...` query are specified in the [crate docs](crate#observations).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use wt_core::StreamId;

use crate::handler::{CloseReason, TerminateReason};
use crate::wake::{Signal, Wakeup};

/// Default [`ObservationLog`] capacity, in entries.
pub const DEFAULT_OBSERVATION_CAPACITY: usize = 1024;

/// One line of the log (without its `\n`), and what it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The session's token.
    pub token: u64,
    /// The stream, for `stream-closed` lines.
    pub stream: Option<StreamId>,
    /// Whether this is the session's `terminate` line (always its last).
    pub terminal: bool,
    /// The line, e.g. `stream-closed 3 0 reset 7`.
    pub line: String,
}

/// What a query waits for before answering.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Until {
    /// The session's `terminate` line.
    Terminated,
    /// A `stream-closed` line about this stream, or the session's `terminate` line.
    Stream(StreamId),
}

/// The entries of one session still in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Some of the session's entries were pushed out of the ring (they were older than
    /// everything returned).
    pub lost: bool,
    /// The session has ended (its `terminate` line was recorded, even if since lost).
    pub terminated: bool,
    /// The session's entries still in the log, oldest first.
    pub entries: Vec<Observation>,
}

impl Snapshot {
    /// Whether a query waiting for `until` can answer with this snapshot.
    pub fn satisfies(&self, until: Until) -> bool {
        match until {
            Until::Terminated => self.terminated,
            Until::Stream(id) => {
                self.terminated || self.entries.iter().any(|e| e.stream == Some(id))
            }
        }
    }

    /// The reply to an `/observed/...` query: `lost\n` if entries were lost, then one line
    /// per entry, each ending in `\n`.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::new();
        if self.lost {
            out.push_str("lost\n");
        }
        for e in &self.entries {
            out.push_str(&e.line);
            out.push('\n');
        }
        Bytes::from(out)
    }
}

#[derive(Debug)]
struct TokenState {
    live: bool,
    in_ring: usize,
    lost: bool,
}

#[derive(Debug)]
struct Inner {
    next_token: u64,
    entries: VecDeque<Observation>,
    /// Sessions that are live or still have entries in the ring (so at most the number of
    /// live sessions plus the capacity).
    tokens: HashMap<u64, TokenState>,
}

/// A bounded ring of the last [`capacity`](ObservationLog::capacity) observations of every
/// session of a server, shared by the sessions through
/// [`EchoConfig::observations`](super::EchoConfig::observations).
///
/// Each entry is a line of at most a few KiB (a reason is at most 1024 bytes before
/// escaping), so the log holds at most about `capacity × 3.2 KiB`, plus a few bytes per live
/// session.
#[derive(Debug)]
pub struct ObservationLog {
    capacity: usize,
    inner: Mutex<Inner>,
    signal: Signal,
}

impl Default for ObservationLog {
    fn default() -> Self {
        ObservationLog::new(DEFAULT_OBSERVATION_CAPACITY)
    }
}

impl ObservationLog {
    /// An empty log keeping the last `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        ObservationLog {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                next_token: 1,
                entries: VecDeque::new(),
                tokens: HashMap::new(),
            }),
            signal: Signal::new(),
        }
    }

    /// How many entries the log keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries it holds now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` inconsistent enough to matter
        // for a test log; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `token` was handed to a session (tokens are 1, 2, 3, … in session order).
    pub fn issued(&self, token: u64) -> bool {
        token != 0 && token < self.lock().next_token
    }

    /// A wakeup fired by the next entry recorded (see [`wake`](crate::wake)).
    pub fn wakeup(&self) -> Wakeup {
        self.signal.wakeup()
    }

    /// The entries of session `token`; `None` if the token was never issued.
    pub fn snapshot(&self, token: u64) -> Option<Snapshot> {
        let inner = self.lock();
        if token == 0 || token >= inner.next_token {
            return None;
        }
        let Some(state) = inner.tokens.get(&token) else {
            // Ended, and every entry (its terminate line at least) was pushed out.
            return Some(Snapshot {
                lost: true,
                terminated: true,
                entries: Vec::new(),
            });
        };
        Some(Snapshot {
            lost: state.lost,
            terminated: !state.live,
            entries: inner
                .entries
                .iter()
                .filter(|e| e.token == token)
                .cloned()
                .collect(),
        })
    }

    /// Waits until session `token`'s entries satisfy `until` or `deadline` passes, and returns
    /// them; `None` if the token was never issued.
    pub async fn wait(
        &self,
        token: u64,
        until: Until,
        deadline: tokio::time::Instant,
    ) -> Option<Snapshot> {
        loop {
            // Taken before looking, so an entry recorded in between still wakes us.
            let wakeup = self.wakeup();
            let snap = self.snapshot(token)?;
            if snap.satisfies(until) {
                return Some(snap);
            }
            tokio::select! {
                fired = wakeup.fired() => {
                    if !fired {
                        return Some(snap);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return self.snapshot(token),
            }
        }
    }

    /// Issues a token for a new session.
    pub(crate) fn register(&self) -> u64 {
        let mut inner = self.lock();
        let token = inner.next_token;
        inner.next_token += 1;
        inner.tokens.insert(
            token,
            TokenState {
                live: true,
                in_ring: 0,
                lost: false,
            },
        );
        token
    }

    /// Records a `stream-closed` line.
    pub(crate) fn stream_closed(&self, token: u64, id: StreamId, reason: CloseReason) {
        let how = match reason {
            CloseReason::Normal => "normal".to_owned(),
            CloseReason::Reset(code) => format!("reset {code}"),
            CloseReason::StopSending(code) => format!("stop {code}"),
        };
        self.push(Observation {
            token,
            stream: Some(id),
            terminal: false,
            line: format!("stream-closed {token} {} {how}", id.0),
        });
    }

    /// Records the session's `terminate` line; `None` is a session dropped without
    /// `terminate` (`aborted`).
    pub(crate) fn terminated(&self, token: u64, reason: Option<&TerminateReason>) {
        let what = match reason {
            None => "aborted".to_owned(),
            Some(TerminateReason::Normal) => "normal".to_owned(),
            Some(TerminateReason::Closed { code, reason }) => {
                format!("closed {code} {}", escape(reason))
            }
            Some(TerminateReason::PeerClosed { code, reason }) => {
                format!("peer-closed {code} {}", escape(reason))
            }
            Some(TerminateReason::Shutdown) => "shutdown".to_owned(),
            Some(TerminateReason::DataLimitExceeded) => "data-limit".to_owned(),
            Some(TerminateReason::Error(e)) => format!("error {}", escape(&e.to_string())),
        };
        self.push(Observation {
            token,
            stream: None,
            terminal: true,
            line: format!("terminate {token} {what}"),
        });
    }

    fn push(&self, entry: Observation) {
        {
            let mut inner = self.lock();
            let token = entry.token;
            let terminal = entry.terminal;
            let Some(state) = inner.tokens.get_mut(&token) else {
                // Unknown or already ended: nothing more is recorded for it.
                return;
            };
            if !state.live {
                return;
            }
            state.in_ring += 1;
            if terminal {
                state.live = false;
            }
            inner.entries.push_back(entry);
            while inner.entries.len() > self.capacity {
                let Some(old) = inner.entries.pop_front() else {
                    break;
                };
                let forget = match inner.tokens.get_mut(&old.token) {
                    Some(s) => {
                        s.in_ring -= 1;
                        s.lost = true;
                        !s.live && s.in_ring == 0
                    }
                    None => false,
                };
                if forget {
                    inner.tokens.remove(&old.token);
                }
            }
        }
        self.signal.notify();
    }
}

/// Escapes a reason or description for a one-line entry: `%` and the ASCII control
/// characters (`00`–`1f`, `7f`) become `%XX` (upper-case hex); everything else, spaces and
/// non-ASCII UTF-8 included, is kept. [`percent_decode`](super::percent_decode) undoes it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wt_core::SessionError;

    fn lines(s: &Snapshot) -> Vec<&str> {
        s.entries.iter().map(|e| e.line.as_str()).collect()
    }

    #[test]
    fn lines_and_escaping() {
        let log = ObservationLog::new(16);
        let t = log.register();
        assert_eq!(t, 1);
        log.stream_closed(t, StreamId(0), CloseReason::Reset(7));
        log.stream_closed(t, StreamId(4), CloseReason::StopSending(9));
        log.stream_closed(t, StreamId(3), CloseReason::Normal);
        log.terminated(
            t,
            Some(&TerminateReason::PeerClosed {
                code: 300,
                reason: "bye 100%\nnow é".into(),
            }),
        );
        // Nothing is recorded after the terminate line.
        log.stream_closed(t, StreamId(8), CloseReason::Normal);
        let s = log.snapshot(t).unwrap();
        assert!(s.terminated && !s.lost);
        assert_eq!(
            lines(&s),
            [
                "stream-closed 1 0 reset 7",
                "stream-closed 1 4 stop 9",
                "stream-closed 1 3 normal",
                "terminate 1 peer-closed 300 bye 100%25%0Anow é",
            ]
        );
        assert_eq!(
            super::super::percent_decode("bye 100%25%0Anow é").as_deref(),
            Some("bye 100%\nnow é")
        );
        assert_eq!(
            &s.to_bytes()[..],
            "stream-closed 1 0 reset 7\nstream-closed 1 4 stop 9\nstream-closed 1 3 normal\n\
             terminate 1 peer-closed 300 bye 100%25%0Anow é\n"
                .as_bytes()
        );

        let reasons = [
            (None, "aborted"),
            (Some(TerminateReason::Normal), "normal"),
            (
                Some(TerminateReason::Closed {
                    code: 0,
                    reason: String::new(),
                }),
                "closed 0 ",
            ),
            (Some(TerminateReason::Shutdown), "shutdown"),
            (Some(TerminateReason::DataLimitExceeded), "data-limit"),
            (
                Some(TerminateReason::Error(SessionError::Connection(
                    wt_core::ConnectionError::Reset,
                ))),
                "error ",
            ),
        ];
        for (reason, want) in reasons {
            let t = log.register();
            log.terminated(t, reason.as_ref());
            let s = log.snapshot(t).unwrap();
            let prefix = format!("terminate {t} {want}");
            assert!(s.entries[0].line.starts_with(&prefix), "{:?}", s.entries);
            assert!(!s.entries[0].line.contains('\n'));
        }
    }

    #[test]
    fn tokens_and_until() {
        let log = ObservationLog::new(16);
        assert!(log.snapshot(0).is_none());
        assert!(log.snapshot(1).is_none());
        assert!(!log.issued(1));
        let t = log.register();
        assert!(log.issued(t));
        let s = log.snapshot(t).unwrap();
        assert_eq!(s, Snapshot::default());
        assert!(!s.satisfies(Until::Terminated));
        log.stream_closed(t, StreamId(4), CloseReason::StopSending(9));
        let s = log.snapshot(t).unwrap();
        assert!(s.satisfies(Until::Stream(StreamId(4))));
        assert!(!s.satisfies(Until::Stream(StreamId(0))));
        log.terminated(t, None);
        let s = log.snapshot(t).unwrap();
        assert!(s.satisfies(Until::Stream(StreamId(0))));
        assert!(s.satisfies(Until::Terminated));
    }

    #[test]
    fn ring_is_bounded_and_reports_losses() {
        let log = ObservationLog::new(3);
        let a = log.register();
        let b = log.register();
        log.stream_closed(a, StreamId(0), CloseReason::Normal);
        log.terminated(a, None);
        for i in 0..3 {
            log.stream_closed(b, StreamId(4 * i), CloseReason::Normal);
        }
        assert_eq!(log.len(), 3);
        // `a` lost everything: it is forgotten but still known as ended.
        let s = log.snapshot(a).unwrap();
        assert!(s.lost && s.terminated && s.entries.is_empty());
        assert_eq!(s.to_bytes(), "lost\n");
        assert_eq!(log.lock().tokens.len(), 1, "only live b is tracked");
        log.stream_closed(b, StreamId(12), CloseReason::Normal);
        let s = log.snapshot(b).unwrap();
        assert!(s.lost && !s.terminated);
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.entries[0].line, "stream-closed 2 4 normal");
        assert!(s
            .to_bytes()
            .starts_with(b"lost\nstream-closed 2 4 normal\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_until_terminated_or_deadline() {
        let log = std::sync::Arc::new(ObservationLog::new(8));
        let t = log.register();
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                log.wait(t, Until::Terminated, deadline).await
            })
        };
        tokio::task::yield_now().await;
        log.stream_closed(t, StreamId(0), CloseReason::Normal);
        log.terminated(
            t,
            Some(&TerminateReason::Closed {
                code: 1,
                reason: "x".into(),
            }),
        );
        let s = waiter.await.unwrap().unwrap();
        assert!(s.terminated);
        assert_eq!(s.entries.len(), 2);

        // A session that never ends: the deadline answers with what is there.
        let u = log.register();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let s = log.wait(u, Until::Terminated, deadline).await.unwrap();
        assert!(!s.terminated && s.entries.is_empty());
        assert!(log.wait(99, Until::Terminated, deadline).await.is_none());
    }
}
