//! A transport-independent test suite: the same checks, run unchanged over any pair of
//! [`Connector`] and [`Acceptor`] (enabled by the `testsuite` feature).
//!
//! Each check connects a fresh session, plays both the client and the server part concurrently
//! and compares what each side observed. Every wait is bounded by [`CHECK_TIMEOUT`], so a
//! broken transport fails the check instead of hanging the test run.
//!
//! ```ignore
//! #[tokio::test]
//! async fn generic_suite() {
//!     let server = wt_h3::Server::bind(config).unwrap();
//!     let client = wt_h3::Client::new(client_config).unwrap();
//!     wt_core::testsuite::run_all(&client, &server, request).await;
//! }
//! ```
//!
//! [`mock`] is an in-memory implementation of every transport trait, for tests of code written
//! against them (and the suite passes over it).

pub mod mock;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{ConnectError, SessionError, StreamError};
use crate::transport::{
    AcceptOptions, Acceptor, ConnectRequest, Connector, IncomingRequest, RecvStream, SendStream,
    Session,
};

/// A waker that counts how often it was woken, for unit tests of wake-up logic (who gets
/// woken, how often) that poll futures by hand.
#[derive(Debug, Default)]
pub struct WakeCount(AtomicUsize);

impl WakeCount {
    /// A counter at zero and a waker that counts into it.
    pub fn probe() -> (Arc<WakeCount>, Waker) {
        let c = Arc::new(WakeCount::default());
        (c.clone(), Waker::from(c))
    }

    /// Wake-ups so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Bound on every wait inside a check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A check failed: which one and why.
#[derive(Debug, Clone)]
pub struct CheckFailure {
    /// Name of the check.
    pub check: &'static str,
    /// What went wrong.
    pub why: String,
}

type CheckResult = Result<(), String>;

async fn within<T>(what: &str, f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))
}

/// Like [`within`], for a fallible step: its error becomes `"{ctx}: {error}"`.
async fn within_ok<T, E: std::fmt::Display>(
    what: &str,
    ctx: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    within(what, f).await?.map_err(|e| format!("{ctx}: {e}"))
}

/// Runs the server and client parts of a check concurrently; the server's error wins.
async fn both(
    srv: impl Future<Output = CheckResult>,
    cli: impl Future<Output = CheckResult>,
) -> CheckResult {
    let (s, c) = tokio::join!(srv, cli);
    s?;
    c
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> CheckResult {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

async fn connect<C: Connector>(c: &C, req: &ConnectRequest) -> Result<C::Session, String> {
    within_ok("connect", "connect failed", c.connect(req)).await
}

/// Waits for the next incoming request.
async fn next_request<A: Acceptor>(a: &A) -> Result<A::Request, String> {
    within("an incoming request", a.accept())
        .await?
        .ok_or_else(|| "acceptor shut down".into())
}

async fn accept<A: Acceptor>(a: &A) -> Result<<A::Request as IncomingRequest>::Session, String> {
    let req = next_request(a).await?;
    within_ok(
        "accept",
        "accept failed",
        req.accept(AcceptOptions::default()),
    )
    .await
}

/// Connects one session and returns both ends.
async fn pair<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> Result<(C::Session, <A::Request as IncomingRequest>::Session), String> {
    let (client, server) = tokio::join!(connect(c, req), accept(a));
    Ok((client?, server?))
}

async fn read_all<R: RecvStream>(r: &mut R) -> Result<Vec<u8>, String> {
    within_ok(
        "stream data",
        "read failed",
        r.read_to_end(64 * 1024 * 1024),
    )
    .await
}

async fn write_fin<S: SendStream>(s: &mut S, data: &[u8]) -> CheckResult {
    within_ok("write", "write failed", s.write_all(data)).await?;
    s.finish().map_err(|e| format!("finish failed: {e}"))
}

/// Reads `recv` to its end and sends it all back on `send`, then FIN.
async fn echo<S: SendStream, R: RecvStream>(send: &mut S, recv: &mut R) -> CheckResult {
    let got = read_all(recv).await?;
    write_fin(send, &got).await
}

/// Sends `payload` + FIN on `send` and returns all that comes back on `recv`.
async fn round_trip<S: SendStream, R: RecvStream>(
    send: &mut S,
    recv: &mut R,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    write_fin(send, payload).await?;
    read_all(recv).await
}

async fn shut<S: Session, T: Session>(client: S, server: T) {
    let _ = client.close(0, "");
    let _ = tokio::time::timeout(CHECK_TIMEOUT, server.closed()).await;
}

/// Datagrams written in place after the transport's headroom arrive as plain payloads,
/// whatever the headroom given (exact, more, none); too much headroom and too large a payload
/// are refused with typed errors.
pub async fn datagram_headroom<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    use bytes::{BufMut, BytesMut};
    let (client, server) = pair(c, a, req).await?;
    let need = client.datagram_headroom();
    let framed = |room: usize, payload: &[u8]| {
        let mut f = BytesMut::with_capacity(room + payload.len());
        f.put_bytes(0xee, room);
        f.put_slice(payload);
        f
    };
    let cases: [(usize, &[u8]); 3] = [
        (need, b"exact room"),
        (need + 3, b"more room"),
        (0, b"no room"),
    ];
    for (room, payload) in cases {
        // Datagrams may be lost: resend until the server has this one (copies of an earlier
        // case may still arrive and are skipped).
        let mut arrived = false;
        for attempt in 0..20u64 {
            client
                .send_datagram_with_headroom(framed(room, payload), room)
                .map_err(|e| format!("send with {room} bytes of headroom: {e}"))?;
            let wait = Duration::from_millis(250 * (attempt + 1));
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(got) = tokio::time::timeout_at(deadline, server.recv_datagram()).await {
                let got = got.map_err(|e| format!("server recv_datagram: {e}"))?;
                if got.as_ref() == payload {
                    arrived = true;
                    break;
                }
                ensure(cases.iter().any(|(_, p)| got.as_ref() == *p), || {
                    format!("server got {got:?}, sent with {room} bytes of headroom")
                })?;
            }
            if arrived {
                break;
            }
        }
        ensure(arrived, || {
            format!("a datagram with {room} bytes of headroom never arrived")
        })?;
    }
    match client.send_datagram_with_headroom(framed(2, b""), 3) {
        Err(SessionError::DatagramHeadroom {
            headroom: 3,
            len: 2,
        }) => {}
        other => return Err(format!("headroom past the frame gave {other:?}")),
    }
    let max = client
        .max_datagram_size()
        .ok_or("client reports no datagram support")?;
    match client.send_datagram_with_headroom(framed(need, &vec![1; max + 1]), need) {
        Err(SessionError::DatagramTooLarge { size, max: m }) if size == max + 1 && m == max => {}
        other => return Err(format!("an oversized payload in place gave {other:?}")),
    }
    shut(client, server).await;
    Ok(())
}

/// `Some(output)` if `fut` is ready on its first poll, `None` if it would wait (pass
/// `&mut f` to poll a pinned future again later).
async fn now<F: Future>(fut: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = fut => Some(r),
        _ = std::future::ready(()) => None,
    }
}

/// Two datagram readers wait on the server at once (a transport may serve the first one
/// differently from the others): a datagram reaches one of them; the client then closes the
/// session, which ends the other reader and every later read with an error.
pub async fn datagram_readers<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let mut r1 = Box::pin(server.recv_datagram());
    let mut r2 = Box::pin(server.recv_datagram());
    ensure(
        now(&mut r1).await.is_none() && now(&mut r2).await.is_none(),
        || "a reader returned before anything was sent".into(),
    )?;
    // Datagrams may be lost: resend until one of the readers has it.
    let mut first = None;
    for attempt in 0..20u64 {
        client
            .send_datagram(Bytes::from_static(b"one"))
            .map_err(|e| format!("send_datagram: {e}"))?;
        let wait = Duration::from_millis(250 * (attempt + 1));
        let got = tokio::time::timeout(wait, async {
            tokio::select! {
                r = &mut r1 => (r, 1),
                r = &mut r2 => (r, 2),
            }
        })
        .await;
        if let Ok(got) = got {
            first = Some(got);
            break;
        }
    }
    let Some((got, which)) = first else {
        return Err("neither waiting reader got a datagram after 20 attempts".into());
    };
    let got = got.map_err(|e| format!("reader {which}: {e}"))?;
    ensure(got.as_ref() == b"one", || {
        format!("reader {which} got {got:?}")
    })?;
    let mut other = if which == 1 { r2 } else { r1 };
    client.close(5, "done").map_err(|e| format!("close: {e}"))?;
    // The other reader may still see a resent copy; then it must end.
    loop {
        match within("the other reader to end", &mut other).await? {
            Ok(d) if d.as_ref() == b"one" => other = Box::pin(server.recv_datagram()),
            Ok(d) => return Err(format!("the other reader got {d:?}")),
            Err(_) => break,
        }
    }
    let later = within("a read after the end", server.recv_datagram()).await?;
    ensure(later.is_err(), || {
        format!("a read after the session ended gave {later:?}")
    })
}

/// Client opens a bidi stream, sends "hello" + FIN; the server echoes it and FINs.
pub async fn bidi_echo<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let srv = async {
        let (mut send, mut recv) =
            within_ok("accept_bi", "server accept_bi", server.accept_bi()).await?;
        ensure(recv.id() == send.id(), || {
            "halves disagree on the id".into()
        })?;
        ensure(
            recv.id().is_client_initiated() && recv.id().is_bidi(),
            || {
                format!(
                    "server saw stream id {} for a client bidi stream",
                    recv.id()
                )
            },
        )?;
        echo(&mut send, &mut recv).await
    };
    let cli = async {
        let (mut send, mut recv) = within_ok("open_bi", "open_bi", client.open_bi()).await?;
        let got = round_trip(&mut send, &mut recv, b"hello").await?;
        ensure(got == b"hello", || format!("echo was {got:?}"))
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// The server opens a bidi stream; the client echoes what it gets.
pub async fn server_bidi<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let srv = async {
        let (mut send, mut recv) = within_ok("open_bi", "server open_bi", server.open_bi()).await?;
        ensure(
            !send.id().is_client_initiated() && send.id().is_bidi(),
            || format!("server-opened bidi stream got id {}", send.id()),
        )?;
        let got = round_trip(&mut send, &mut recv, b"from server").await?;
        ensure(got == b"from server", || format!("server got {got:?}"))
    };
    let cli = async {
        let (mut send, mut recv) =
            within_ok("accept_bi", "client accept_bi", client.accept_bi()).await?;
        echo(&mut send, &mut recv).await
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// Unidirectional streams both ways, including a zero-length stream (FIN only).
pub async fn uni_both_ways<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let srv = async {
        let mut recv = within_ok("accept_uni", "server accept_uni", server.accept_uni()).await?;
        ensure(
            !recv.id().is_bidi() && recv.id().is_client_initiated(),
            || format!("client uni stream got id {}", recv.id()),
        )?;
        let got = read_all(&mut recv).await?;
        ensure(got == b"up", || format!("server got {got:?}"))?;
        let mut empty = within_ok("accept_uni", "server accept_uni", server.accept_uni()).await?;
        let got = read_all(&mut empty).await?;
        ensure(got.is_empty(), || {
            format!("FIN-only stream carried {got:?}")
        })?;
        let mut send = within_ok("open_uni", "server open_uni", server.open_uni()).await?;
        write_fin(&mut send, b"down").await
    };
    let cli = async {
        let mut send = within_ok("open_uni", "client open_uni", client.open_uni()).await?;
        write_fin(&mut send, b"up").await?;
        let mut empty = within_ok("open_uni", "client open_uni", client.open_uni()).await?;
        empty.finish().map_err(|e| format!("finish: {e}"))?;
        let mut recv = within_ok("accept_uni", "client accept_uni", client.accept_uni()).await?;
        ensure(!recv.id().is_client_initiated(), || {
            format!("server uni stream got id {}", recv.id())
        })?;
        let got = read_all(&mut recv).await?;
        ensure(got == b"down", || format!("client got {got:?}"))
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// Datagram echo (resent a few times: HTTP/3 datagrams may be lost), and the size limit.
pub async fn datagrams<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let max = client
        .max_datagram_size()
        .ok_or("client reports no datagram support")?;
    ensure(max >= 1000, || format!("max datagram size only {max}"))?;
    match client.send_datagram(Bytes::from(vec![0u8; max + 1])) {
        Err(SessionError::DatagramTooLarge { size, max: m }) => {
            ensure(size == max + 1 && m == max, || {
                format!("DatagramTooLarge reported size {size}, max {m}")
            })?
        }
        other => {
            return Err(format!(
                "oversized datagram: expected DatagramTooLarge, got {other:?}"
            ))
        }
    }
    let srv = async {
        loop {
            let d = within_ok("a datagram", "server recv_datagram", server.recv_datagram()).await?;
            server
                .send_datagram(d.clone())
                .map_err(|e| format!("server send_datagram: {e}"))?;
            if d.as_ref() == b"last" {
                return Ok::<_, String>(());
            }
        }
    };
    let cli = async {
        for attempt in 0..20u32 {
            client
                .send_datagram(Bytes::from_static(b"ping"))
                .map_err(|e| format!("send_datagram: {e}"))?;
            let wait = Duration::from_millis(250 * (attempt as u64 + 1));
            match tokio::time::timeout(wait, client.recv_datagram()).await {
                Ok(Ok(d)) => {
                    ensure(d.as_ref() == b"ping", || format!("echo was {d:?}"))?;
                    let _ = client.send_datagram(Bytes::from_static(b"last"));
                    return Ok(());
                }
                Ok(Err(e)) => return Err(format!("recv_datagram: {e}")),
                Err(_) => continue,
            }
        }
        Err("no datagram echo after 20 attempts".into())
    };
    let (s, c2) = tokio::join!(
        async { tokio::time::timeout(CHECK_TIMEOUT, srv).await },
        cli
    );
    c2?;
    // The server loop ends on "last", which may itself be lost over HTTP/3: only a server
    // error is a failure, not a timeout.
    if let Ok(Err(e)) = s {
        return Err(e);
    }
    shut(client, server).await;
    Ok(())
}

/// Reset with a code after some bytes; STOP_SENDING with a code.
pub async fn reset_and_stop<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let srv = async {
        // Stream 1: the client resets with code 7.
        let (_send, mut recv) =
            within_ok("accept_bi", "server accept_bi", server.accept_bi()).await?;
        loop {
            match within("reset", recv.read_chunk(1024)).await? {
                Ok(Some(_)) => continue,
                Ok(None) => return Err("stream finished instead of reset".into()),
                Err(StreamError::Reset(code)) => {
                    ensure(code == Some(7), || {
                        format!("reset code {code:?}, expected 7")
                    })?;
                    break;
                }
                Err(e) => return Err(format!("expected reset 7, got {e}")),
            }
        }
        // Stream 2: the server asks the client to stop sending with code 9.
        let (_send, mut recv) =
            within_ok("accept_bi", "server accept_bi", server.accept_bi()).await?;
        let first = within("data", recv.read_chunk(1024)).await?;
        ensure(matches!(first, Ok(Some(_))), || {
            format!("first read {first:?}")
        })?;
        recv.stop(9).map_err(|e| format!("stop: {e}"))?;
        Ok::<_, String>(())
    };
    let cli = async {
        let (mut send, _recv) = within_ok("open_bi", "open_bi", client.open_bi()).await?;
        within_ok("write", "write", send.write_all(b"12345")).await?;
        let notice = send.stop_notice();
        send.reset(7).map_err(|e| format!("reset: {e}"))?;
        // The watcher outlives nothing it borrowed, and ends once the stream is done.
        let n = within("stop_notice after reset", notice).await?;
        ensure(n.is_none(), || {
            format!("stop_notice after reset gave {n:?}")
        })?;
        let (mut send, _recv) = within_ok("open_bi", "open_bi", client.open_bi()).await?;
        within_ok("write", "write", send.write_all(b"x")).await?;
        // Watched from another task while the handle stays here.
        let notice = tokio::spawn(send.stop_notice());
        let n = within("stop_notice", notice).await?;
        ensure(matches!(n, Ok(Some(9))), || {
            format!("stop_notice gave {n:?}, expected Some(9)")
        })?;
        let stopped = within("stopped", send.stopped()).await?;
        ensure(matches!(stopped, Ok(Some(9))), || {
            format!("stopped() gave {stopped:?}, expected Some(9)")
        })?;
        // Writing after STOP_SENDING fails with the code.
        let mut err = None;
        for _ in 0..1000 {
            match within("write", send.write(b"more")).await? {
                Ok(_) => continue,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        ensure(matches!(err, Some(StreamError::Stopped(Some(9)))), || {
            format!("write after stop: {err:?}")
        })
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// Close with a code and reason, both directions; the peer sees both.
pub async fn close_with_reason<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    // Client closes.
    let (client, server) = pair(c, a, req).await?;
    client
        .close(300, "bye")
        .map_err(|e| format!("close: {e}"))?;
    let why = within("server closed()", server.closed()).await?;
    match why {
        SessionError::ClosedByPeer {
            code: 300,
            ref reason,
        } if reason == "bye" => {}
        other => {
            return Err(format!(
                "server saw {other:?}, expected ClosedByPeer(300, bye)"
            ))
        }
    }
    let local = within("client closed()", client.closed()).await?;
    ensure(
        matches!(local, SessionError::ClosedLocally { code: 300, .. }),
        || format!("client's own closed() gave {local:?}"),
    )?;
    // Streams of a closed session fail.
    let r = client.open_bi().await;
    ensure(r.is_err(), || {
        "open_bi succeeded on a closed session".into()
    })?;
    // Server closes, with a 1024-byte reason.
    let (client, server) = pair(c, a, req).await?;
    let long = "r".repeat(1024);
    ensure(
        matches!(
            server.close(1, &"x".repeat(1025)),
            Err(SessionError::ReasonTooLong(1025))
        ),
        || "a 1025-byte reason was not refused".into(),
    )?;
    server
        .close(0xffff_ffff, &long)
        .map_err(|e| format!("close: {e}"))?;
    let why = within("client closed()", client.closed()).await?;
    match why {
        SessionError::ClosedByPeer {
            code: 0xffff_ffff,
            ref reason,
        } if *reason == long => {}
        other => return Err(format!("client saw {other:?}")),
    }
    Ok(())
}

/// The server drains; the client is told and the session keeps working.
pub async fn drain<C: Connector, A: Acceptor>(c: &C, a: &A, req: &ConnectRequest) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    server.drain().map_err(|e| format!("drain: {e}"))?;
    within("draining()", client.draining()).await?;
    // Still usable.
    let srv = async {
        let (mut send, mut recv) =
            within_ok("accept_bi", "accept_bi after drain", server.accept_bi()).await?;
        echo(&mut send, &mut recv).await
    };
    let cli = async {
        let (mut send, mut recv) =
            within_ok("open_bi", "open_bi after drain", client.open_bi()).await?;
        let got = round_trip(&mut send, &mut recv, b"still here").await?;
        ensure(got == b"still here", || {
            format!("echo after drain: {got:?}")
        })
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// `n` streams, up to 50 at a time, each echoing a distinct payload.
pub async fn many_streams<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
    n: usize,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let server2 = server.clone();
    let srv = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (mut send, mut recv) =
                within_ok("accept_bi", "accept_bi", server2.accept_bi()).await?;
            tasks.spawn(async move { echo(&mut send, &mut recv).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| format!("server task: {e}"))??;
        }
        Ok::<_, String>(())
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = 0;
    let mut done = 0;
    while done < n {
        while started < n && tasks.len() < 50 {
            let client = client.clone();
            let i = started;
            tasks.spawn(async move {
                let (mut send, mut recv) = within("open_bi", client.open_bi())
                    .await?
                    .map_err(|e| format!("open_bi #{i}: {e}"))?;
                let payload = format!("stream {i} payload");
                let got = round_trip(&mut send, &mut recv, payload.as_bytes()).await?;
                ensure(got == payload.as_bytes(), || {
                    format!("stream {i} echoed {got:?}")
                })
            });
            started += 1;
        }
        match tasks.join_next().await {
            Some(r) => r.map_err(|e| format!("client task: {e}"))??,
            None => break,
        }
        done += 1;
    }
    srv.await.map_err(|e| format!("server task: {e}"))??;
    let stats = client.stats();
    ensure(stats.bidi_opened_local >= n as u64, || {
        format!(
            "stats count {} local bidi streams, expected {n}",
            stats.bidi_opened_local
        )
    })?;
    shut(client, server).await;
    Ok(())
}

/// A larger transfer on one stream, echoed byte-exact.
pub async fn large_transfer<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
    size: usize,
) -> CheckResult {
    let (client, server) = pair(c, a, req).await?;
    let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let srv = async {
        let (mut send, mut recv) = within_ok("accept_bi", "accept_bi", server.accept_bi()).await?;
        // Echo as it arrives (not after the end), so both directions are in flight at once,
        // with `write_some` (the client writes with `write_chunk`).
        loop {
            match within("data", recv.read_chunk(64 * 1024)).await? {
                Ok(Some(mut chunk)) => {
                    while !chunk.is_empty() {
                        let before = chunk.len();
                        within_ok("write", "server write_some", send.write_some(&mut chunk))
                            .await?;
                        ensure(chunk.len() < before, || {
                            "write_some wrote nothing".to_string()
                        })?;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("server read: {e}")),
            }
        }
        send.finish().map_err(|e| format!("finish: {e}"))
    };
    let cli = async {
        let (mut send, mut recv) = within_ok("open_bi", "open_bi", client.open_bi()).await?;
        let writer = async {
            for chunk in payload.chunks(256 * 1024) {
                within_ok(
                    "write",
                    "client write",
                    send.write_chunk(Bytes::copy_from_slice(chunk)),
                )
                .await?;
            }
            send.finish().map_err(|e| format!("finish: {e}"))
        };
        let (w, got) = tokio::join!(writer, read_all(&mut recv));
        w?;
        let got = got?;
        ensure(got == payload, || {
            format!(
                "echo differs: {} bytes back of {}",
                got.len(),
                payload.len()
            )
        })
    };
    both(srv, cli).await?;
    shut(client, server).await;
    Ok(())
}

/// The server rejects with 404; the client reports the status.
pub async fn rejection<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let srv = async {
        let r = next_request(a).await?;
        ensure(r.info().path == req.path, || {
            format!(
                "server saw path {:?}, client sent {:?}",
                r.info().path,
                req.path
            )
        })?;
        r.reject(http::StatusCode::NOT_FOUND).await;
        Ok::<_, String>(())
    };
    let cli = async { within("connect", c.connect(req)).await };
    let (s, r) = tokio::join!(srv, cli);
    s?;
    match r? {
        Err(ConnectError::Rejected { status }) if status == http::StatusCode::NOT_FOUND => Ok(()),
        Err(e) => Err(format!("expected Rejected(404), got {e}")),
        Ok(_) => Err("connect succeeded although the server rejected".into()),
    }
}

/// What the server sees of the request, and session info on both sides.
pub async fn request_and_info<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> CheckResult {
    let mut req = req.clone();
    req.origin = Some("https://origin.example".into());
    req.headers
        .insert("x-wt-test", http::HeaderValue::from_static("yes"));
    let srv = async {
        let r = next_request(a).await?;
        let info = r.info().clone();
        ensure(
            info.origin.as_deref() == Some("https://origin.example"),
            || format!("origin {:?}", info.origin),
        )?;
        ensure(
            info.headers.get("x-wt-test").is_some_and(|v| v == "yes"),
            || format!("headers {:?}", info.headers),
        )?;
        ensure(info.path == req.path, || format!("path {:?}", info.path))?;
        let s = within_ok("accept", "accept", r.accept(AcceptOptions::default())).await?;
        Ok::<_, String>((s, info))
    };
    let (s, cl) = tokio::join!(srv, connect(c, &req));
    let (server, rinfo) = s?;
    let client = cl?;
    let ci = client.info();
    let si = server.info();
    ensure(
        ci.transport == si.transport && ci.session_id == si.session_id,
        || format!("client info {ci:?} vs server info {si:?}"),
    )?;
    ensure(ci.dialect == rinfo.dialect, || {
        format!(
            "client speaks {} but the server detected {}",
            ci.dialect, rinfo.dialect
        )
    })?;
    shut(client, server).await;
    Ok(())
}

/// Runs every check and returns the failures (empty when all passed).
pub async fn run_checks<C: Connector, A: Acceptor>(
    c: &C,
    a: &A,
    req: &ConnectRequest,
) -> Vec<CheckFailure> {
    let many = if cfg!(debug_assertions) { 1000 } else { 5000 };
    let large = if cfg!(debug_assertions) {
        8 << 20
    } else {
        64 << 20
    };
    let mut failures = Vec::new();
    macro_rules! check {
        ($name:literal, $e:expr) => {
            tracing::info!(check = $name, "running");
            if let Err(why) = $e.await {
                failures.push(CheckFailure { check: $name, why });
            }
        };
    }
    check!("request_and_info", request_and_info(c, a, req));
    check!("bidi_echo", bidi_echo(c, a, req));
    check!("server_bidi", server_bidi(c, a, req));
    check!("uni_both_ways", uni_both_ways(c, a, req));
    check!("datagrams", datagrams(c, a, req));
    check!("datagram_readers", datagram_readers(c, a, req));
    check!("datagram_headroom", datagram_headroom(c, a, req));
    check!("reset_and_stop", reset_and_stop(c, a, req));
    check!("close_with_reason", close_with_reason(c, a, req));
    check!("drain", drain(c, a, req));
    check!("many_streams", many_streams(c, a, req, many));
    check!("large_transfer", large_transfer(c, a, req, large));
    check!("rejection", rejection(c, a, req));
    failures
}

/// Runs every check and panics with a summary of the failures.
pub async fn run_all<C: Connector, A: Acceptor>(c: &C, a: &A, req: ConnectRequest) {
    let failures = run_checks(c, a, &req).await;
    if !failures.is_empty() {
        let lines: Vec<String> = failures
            .iter()
            .map(|f| format!("  {}: {}", f.check, f.why))
            .collect();
        panic!(
            "{} generic transport check(s) failed:\n{}",
            failures.len(),
            lines.join("\n")
        );
    }
}
