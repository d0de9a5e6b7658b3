//! Client and server over real QUIC on loopback, in every client compat mode.

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use wt_core::{
    AcceptOptions, Acceptor, CompatMode, ConnectError, Connector, Dialect, IncomingRequest,
    RecvStream, SendStream, Session, SessionError, StreamError,
};

const MODES: [CompatMode; 3] = [
    CompatMode::Auto,
    CompatMode::Latest,
    CompatMode::LegacyBrowserCompat,
];

fn expected_dialect(mode: CompatMode) -> Dialect {
    match mode {
        CompatMode::LegacyBrowserCompat => Dialect::H3Draft02,
        _ => Dialect::H3Latest,
    }
}

async fn echo_bidi_once<S: Session>(opener: &S, acceptor: &S, payload: &'static [u8]) {
    let (mut tx, mut rx) = opener.open_bi().await.unwrap();
    tx.write_all(payload).await.unwrap();
    tx.finish().unwrap();
    let (mut ptx, mut prx) = acceptor.accept_bi().await.unwrap();
    assert_eq!(ptx.id(), tx.id());
    let got = prx.read_to_end(1 << 20).await.unwrap();
    assert_eq!(got, payload);
    ptx.write_chunk(Bytes::from(got)).await.unwrap();
    ptx.finish().unwrap();
    assert_eq!(rx.read_to_end(1 << 20).await.unwrap(), payload);
}

async fn basics(mode: CompatMode) {
    let (c, s, _server) = pair(mode).await;
    assert_eq!(c.info().dialect, expected_dialect(mode));
    assert_eq!(s.info().dialect, expected_dialect(mode));
    assert_eq!(c.info().session_id, 0);

    // Bidi echo, both directions of opening.
    timeout(echo_bidi_once(&c, &s, b"hello")).await;
    timeout(echo_bidi_once(&s, &c, b"from server")).await;

    // Uni both ways, including a FIN-only stream.
    let mut u = c.open_uni().await.unwrap();
    u.write_all(b"uni up").await.unwrap();
    u.finish().unwrap();
    let mut r = timeout(s.accept_uni()).await.unwrap();
    assert_eq!(r.read_to_end(100).await.unwrap(), b"uni up");
    let mut u = s.open_uni().await.unwrap();
    u.finish().unwrap();
    let mut r = timeout(c.accept_uni()).await.unwrap();
    assert_eq!(r.read_to_end(100).await.unwrap(), b"");

    // Datagram echo.
    assert!(c.max_datagram_size().unwrap() > 1000);
    c.send_datagram(Bytes::from_static(b"ping")).unwrap();
    let d = timeout(s.recv_datagram()).await.unwrap();
    assert_eq!(&d[..], b"ping");
    s.send_datagram(d).unwrap();
    assert_eq!(&timeout(c.recv_datagram()).await.unwrap()[..], b"ping");
    // Oversized: refused locally.
    let max = c.max_datagram_size().unwrap();
    match c.send_datagram(Bytes::from(vec![0u8; max + 1])) {
        Err(SessionError::DatagramTooLarge { size, max: m }) => {
            assert_eq!(size, max + 1);
            assert_eq!(m, max);
        }
        other => panic!("{other:?}"),
    }

    // Reset with a code, observed by the peer.
    let (mut tx, _rx) = c.open_bi().await.unwrap();
    tx.write_all(b"12345").await.unwrap();
    let (_ptx, mut prx) = timeout(s.accept_bi()).await.unwrap();
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < 5 {
        got += prx.read(&mut buf[got..]).await.unwrap().unwrap();
    }
    tx.reset(7).unwrap();
    loop {
        match timeout(prx.read_chunk(100)).await {
            Ok(Some(_)) => continue,
            Err(StreamError::Reset(code)) => {
                assert_eq!(code, Some(7));
                break;
            }
            other => panic!("{other:?}"),
        }
    }

    // Stop sending with a code, observed by the writer.
    let (mut tx, _rx) = s.open_bi().await.unwrap();
    tx.write_all(b"x").await.unwrap();
    let (_ctx, mut crx) = timeout(c.accept_bi()).await.unwrap();
    crx.stop(9).unwrap();
    assert_eq!(timeout(tx.stopped()).await.unwrap(), Some(9));

    // Drain: the peer's draining() resolves, the session keeps working.
    c.drain().unwrap();
    timeout(s.draining()).await;
    timeout(echo_bidi_once(&c, &s, b"after drain")).await;

    // Stats.
    let st = c.stats();
    assert!(st.bidi_opened_local >= 3);
    assert!(st.bidi_opened_remote >= 2);
    assert_eq!(st.datagrams_sent, 1);
    assert!(st.bytes_sent >= 5);

    // Close with code and reason, observed by the peer.
    c.close(300, "bye").unwrap();
    match timeout(s.closed()).await {
        SessionError::ClosedByPeer { code, reason } => {
            assert_eq!(code, 300);
            assert_eq!(reason, "bye");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.closed().await,
        SessionError::ClosedLocally { code: 300, .. }
    ));
    assert!(c.open_bi().await.is_err());
}

#[tokio::test]
async fn basics_auto() {
    basics(CompatMode::Auto).await;
}

#[tokio::test]
async fn basics_latest() {
    basics(CompatMode::Latest).await;
}

#[tokio::test]
async fn basics_legacy_browser_compat() {
    basics(CompatMode::LegacyBrowserCompat).await;
}

#[tokio::test]
async fn server_closes_with_reason() {
    for mode in MODES {
        let (c, s, _server) = pair(mode).await;
        let (mut tx, mut rx) = c.open_bi().await.unwrap();
        tx.write_all(b"x").await.unwrap();
        let (_stx, _srx) = timeout(s.accept_bi()).await.unwrap();
        s.close(4242, "server says bye").unwrap();
        match timeout(c.closed()).await {
            SessionError::ClosedByPeer { code, reason } => {
                assert_eq!(code, 4242);
                assert_eq!(reason, "server says bye");
            }
            other => panic!("{other:?}"),
        }
        // The client's streams of the session are gone.
        assert!(matches!(
            timeout(rx.read_chunk(10)).await,
            Err(StreamError::SessionGone(_))
        ));
        assert!(s.close(1, &"x".repeat(1025)).is_err());
    }
}

#[tokio::test]
async fn many_streams_in_one_session() {
    let (c, s, _server) = pair(CompatMode::Auto).await;
    let n = 1000usize;
    let server = tokio::spawn(async move {
        for _ in 0..n {
            let (mut tx, mut rx) = s.accept_bi().await.unwrap();
            tokio::spawn(async move {
                let data = rx.read_to_end(1024).await.unwrap();
                tx.write_all(&data).await.unwrap();
                tx.finish().unwrap();
            });
        }
        s
    });
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = c.open_bi().await.unwrap();
            let msg = format!("stream {i}");
            tx.write_all(msg.as_bytes()).await.unwrap();
            tx.finish().unwrap();
            assert_eq!(rx.read_to_end(1024).await.unwrap(), msg.as_bytes());
        }));
    }
    for t in tasks {
        timeout(t).await.unwrap();
    }
    let s = timeout(server).await.unwrap();
    assert_eq!(s.stats().bidi_opened_remote, n as u64);
    assert_eq!(c.stats().bidi_opened_local, n as u64);
}

#[tokio::test]
async fn rejection_with_status() {
    let (server, tls) = server_with(|_| {});
    for mode in MODES {
        let client = client(&tls, mode);
        let req = request(&server, "/nope");
        let (c, ()) = tokio::join!(client.connect(&req), async {
            let r = server.accept().await.unwrap();
            assert_eq!(r.info().path, "/nope");
            r.reject(StatusCode::FORBIDDEN).await;
        });
        match c {
            Err(ConnectError::Rejected { status }) => assert_eq!(status, StatusCode::FORBIDDEN),
            other => panic!("{other:?}"),
        }
        // Dropping the request rejects it per dialect.
        let (c, ()) = tokio::join!(client.connect(&req), async {
            drop(server.accept().await.unwrap());
        });
        let want = if mode == CompatMode::LegacyBrowserCompat {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        match c {
            Err(ConnectError::Rejected { status }) => assert_eq!(status, want),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn request_info_and_subprotocols() {
    let (server, tls) = server_with(|_| {});
    let client = client(&tls, CompatMode::Auto);
    let mut req = request(&server, "/chat?room=1");
    req.protocols = vec!["a".into(), "b".into()];
    req.headers
        .insert("x-test", http::HeaderValue::from_static("yes"));
    let (c, s) = tokio::join!(client.connect(&req), async {
        let r = server.accept().await.unwrap();
        let info = r.info().clone();
        assert_eq!(info.path, "/chat?room=1");
        assert_eq!(info.protocol, "webtransport-h3");
        assert_eq!(info.origin.as_deref(), Some("https://example.org"));
        assert_eq!(info.protocols, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(info.headers.get("x-test").unwrap(), "yes");
        assert_eq!(info.authority, req.authority);
        r.accept(AcceptOptions {
            protocol: Some("b".into()),
            ..Default::default()
        })
        .await
        .unwrap()
    });
    let c = c.unwrap();
    assert_eq!(c.protocol(), Some("b"));
    assert_eq!(s.info().protocol.as_deref(), Some("b"));
}

#[tokio::test]
async fn missing_settings_are_named() {
    use wt_h3::proto::settings as st;
    for (omit, mode, want) in [
        (st::H3_DATAGRAM, CompatMode::Latest, st::H3_DATAGRAM),
        (
            st::ENABLE_CONNECT_PROTOCOL,
            CompatMode::Auto,
            st::ENABLE_CONNECT_PROTOCOL,
        ),
        (st::WT_ENABLED, CompatMode::Latest, st::WT_ENABLED),
        (
            st::ENABLE_WEBTRANSPORT,
            CompatMode::LegacyBrowserCompat,
            st::ENABLE_WEBTRANSPORT,
        ),
    ] {
        let (server, tls) = server_with(|c| c.omit_settings = vec![omit]);
        let client = client(&tls, mode);
        match timeout(client.connect(&request(&server, "/"))).await {
            Err(ConnectError::MissingSetting(m)) => assert_eq!(m.id, want, "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // No datagram transport parameter.
    let (server, tls) = server_with(|c| c.quic.datagram_receive_buffer = None);
    match timeout(client(&tls, CompatMode::Auto).connect(&request(&server, "/"))).await {
        Err(ConnectError::MissingSetting(m)) => assert_eq!(m.id, 0x20),
        other => panic!("{other:?}"),
    }
    // Invalid value: WT_ENABLED = 2.
    let (server, tls) = server_with(|c| {
        c.omit_settings = vec![st::WT_ENABLED];
        c.extra_settings = vec![(st::WT_ENABLED, 2), (0x21, 7)];
    });
    match timeout(client(&tls, CompatMode::Latest).connect(&request(&server, "/"))).await {
        Err(ConnectError::Protocol(p)) => assert_eq!(
            p.code,
            wt_core::WireCode::H3(wt_core::codes::H3Code::H3_SETTINGS_ERROR)
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn goaway_drains_client() {
    let (c, s, server) = pair(CompatMode::Auto).await;
    server.shutdown();
    timeout(c.draining()).await;
    assert!(server.accept().await.is_none());
    // The session keeps working.
    timeout(echo_bidi_once(&c, &s, b"still here")).await;
}

#[tokio::test]
async fn second_session_on_a_connection_is_refused_but_others_work() {
    // Two clients, two connections, one session each: both work.
    let (server, tls) = server_with(|_| {});
    let cl = client(&tls, CompatMode::Auto);
    let req = request(&server, "/");
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (c, s) = tokio::join!(cl.connect(&req), async {
            server
                .accept()
                .await
                .unwrap()
                .accept(AcceptOptions::default())
                .await
                .unwrap()
        });
        sessions.push((c.unwrap(), s));
    }
    for (c, s) in &sessions {
        timeout(echo_bidi_once(c, s, b"hi")).await;
    }
}

#[tokio::test]
async fn quic_stats_count_the_connection_under_the_session() {
    let (c, s, _server) = pair(CompatMode::Latest).await;
    let before = c.quic_stats();
    // The handshake and SETTINGS exchange gave an RTT sample on both sides.
    assert!(c.rtt() > std::time::Duration::ZERO);
    assert!(s.rtt() > std::time::Duration::ZERO);
    assert!(before.path.sent_packets > 0);

    let payload: &'static [u8] = &[7; 20_000];
    timeout(echo_bidi_once(&c, &s, payload)).await;
    let after = c.quic_stats();
    // The client sent the payload's 20,000 bytes in STREAM frames, and received them back.
    assert!(after.udp_tx.bytes >= before.udp_tx.bytes + 20_000);
    assert!(after.udp_rx.bytes >= before.udp_rx.bytes + 20_000);
    assert!(after.frame_tx.stream > before.frame_tx.stream);
    assert!(after.frame_rx.stream > before.frame_rx.stream);
    // Both handles see the same connection: the server received what the client sent.
    assert!(s.quic_stats().udp_rx.bytes >= 20_000);
}

#[tokio::test]
async fn dropping_the_client_session_closes_it() {
    let (c, s, _server) = pair(CompatMode::Latest).await;
    drop(c);
    match timeout(s.closed()).await {
        SessionError::ClosedByPeer { code: 0, .. } => {}
        other => panic!("{other:?}"),
    }
}

/// Counts wake-ups, so a test can see a waiting future woken without waiting on the clock.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls `f` once with a waker of its own; returns the output if ready, and the wake counter.
fn poll_counting<F: std::future::Future + Unpin>(
    f: &mut F,
) -> (Option<F::Output>, std::sync::Arc<CountingWaker>) {
    let counter = std::sync::Arc::new(CountingWaker(Default::default()));
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let out = match std::pin::Pin::new(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    };
    (out, counter)
}

/// Polls two waiting operations of `s` once each (neither may be ready), closes `s` locally
/// with `code`, and checks that the close woke both before anything crossed the network and
/// that both then end with that close.
fn close_wakes_both<A, B, TA, TB>(
    s: &wt_h3::Session,
    code: u32,
    (a, a_name): (&mut A, &str),
    (b, b_name): (&mut B, &str),
) where
    A: std::future::Future<Output = Result<TA, SessionError>> + Unpin,
    B: std::future::Future<Output = Result<TB, SessionError>> + Unpin,
{
    let (out_a, woken_a) = poll_counting(a);
    let (out_b, woken_b) = poll_counting(b);
    assert!(out_a.is_none() && out_b.is_none());
    s.close(code, "bye").unwrap();
    let woken = |w: &std::sync::Arc<CountingWaker>| w.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(woken(&woken_a) > 0, "{a_name} was not woken");
    assert!(woken(&woken_b) > 0, "{b_name} was not woken");
    let ended = |out: Option<Result<(), SessionError>>, name: &str| match out {
        Some(Err(SessionError::ClosedLocally { code: c, .. })) if c == code => {}
        other => panic!("a woken {name} gave {other:?}"),
    };
    ended(poll_counting(a).0.map(|r| r.map(|_| ())), a_name);
    ended(poll_counting(b).0.map(|r| r.map(|_| ())), b_name);
}

#[tokio::test]
async fn closing_wakes_every_waiting_datagram_reader_at_once() {
    let (_c, s, _server) = pair(CompatMode::Auto).await;
    // The first reader reads straight from quinn (the session is the connection's only one),
    // the second waits beside it; neither has anything yet.
    let mut first = Box::pin(s.recv_datagram());
    let mut second = Box::pin(s.recv_datagram());
    close_wakes_both(
        &s,
        9,
        (&mut first, "first (direct) reader"),
        (&mut second, "second reader"),
    );
}

#[tokio::test]
async fn closing_wakes_every_waiting_accept_at_once() {
    let (_c, s, _server) = pair(CompatMode::Auto).await;
    let mut bidi = Box::pin(s.accept_bi());
    let mut uni = Box::pin(s.accept_uni());
    close_wakes_both(&s, 11, (&mut bidi, "accept_bi"), (&mut uni, "accept_uni"));
}

#[tokio::test]
async fn closing_wakes_every_waiting_stream_operation_at_once() {
    let (c, s, _server) = pair(CompatMode::Auto).await;
    // Two streams the server accepted, read from and then waits on; a third whose send half
    // waits in `stopped`.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (mut tx, rx) = c.open_bi().await.unwrap();
        tx.write_all(b"x").await.unwrap();
        let (stx, mut srx) = timeout(s.accept_bi()).await.unwrap();
        assert_eq!(
            &timeout(srx.read_chunk(10)).await.unwrap().unwrap()[..],
            b"x"
        );
        streams.push((tx, rx, stx, srx));
    }
    let [(_, _, _, mut r1), (_, _, _, mut r2), (_, _, mut w3, _)] =
        <[_; 3]>::try_from(streams).ok().unwrap();
    // A read that waited and was dropped leaves nothing behind that a later one trips on.
    let mut read1 = Box::pin(r1.read_chunk(10));
    assert!(poll_counting(&mut read1).0.is_none());
    drop(read1);
    let mut read1 = Box::pin(r1.read_chunk(10));
    let mut read2 = Box::pin(r2.read_chunk(10));
    let mut stopped3 = Box::pin(w3.stopped());
    let (out1, woken1) = poll_counting(&mut read1);
    let (out2, woken2) = poll_counting(&mut read2);
    let (out3, woken3) = poll_counting(&mut stopped3);
    assert!(out1.is_none() && out2.is_none() && out3.is_none());
    s.close(12, "bye").unwrap();
    let woken = |w: &std::sync::Arc<CountingWaker>| w.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(woken(&woken1) > 0, "the first read was not woken");
    assert!(woken(&woken2) > 0, "the second read was not woken");
    assert!(woken(&woken3) > 0, "stopped was not woken");
    let gone = |e: StreamError, what: &str| match e {
        StreamError::SessionGone(SessionError::ClosedLocally { code: 12, .. }) => {}
        other => panic!("{what} gave {other:?}"),
    };
    gone(
        poll_counting(&mut read1).0.unwrap().unwrap_err(),
        "the first read",
    );
    gone(
        poll_counting(&mut read2).0.unwrap().unwrap_err(),
        "the second read",
    );
    gone(
        poll_counting(&mut stopped3).0.unwrap().unwrap_err(),
        "stopped",
    );
}

#[tokio::test]
async fn a_full_accept_queue_holds_streams_back_in_order() {
    // More streams than the accept queue holds (256), opened in one go: on this one-thread
    // runtime they are all written before the connection's tasks run, so they reach the
    // server together, the first ones are queued at once and the rest wait for room. Whichever
    // way each one goes, accept_bi must hand them out in the order they were opened.
    let n = 300usize;
    let (server, tls) = server_with(|cfg| cfg.quic.max_concurrent_bidi_streams = 1000);
    let client = client(&tls, CompatMode::Latest);
    let req = request(&server, "/test");
    let (c, s) = tokio::join!(client.connect(&req), async {
        let r = server.accept().await.unwrap();
        r.accept(AcceptOptions::default()).await.unwrap()
    });
    let c = c.unwrap();
    let mut opened = Vec::new();
    for i in 0..n {
        let (mut tx, rx) = timeout(c.open_bi()).await.unwrap();
        tx.write_all(format!("{i}").as_bytes()).await.unwrap();
        tx.finish().unwrap();
        opened.push((tx, rx));
    }
    for i in 0..n {
        let (_tx, mut rx) = timeout(s.accept_bi()).await.unwrap();
        let got = timeout(rx.read_to_end(64)).await.unwrap();
        assert_eq!(got, format!("{i}").as_bytes(), "stream {i} out of order");
    }
}

/// Sessions of a burst test: each is a fresh connection, so each is a fresh chance for the
/// streams to race the session's registration.
const BURST_SESSIONS: usize = 10;
/// Streams per burst: more than the connection's buffer for streams of unknown sessions
/// (32), fewer than QUIC's default stream limit (100).
const BURST_STREAMS: usize = 64;

/// Each stream of a burst carries its index; the peer echoes it.
async fn echo_burst_streams<S: Session>(s: &S) {
    for _ in 0..BURST_STREAMS {
        let (mut tx, mut rx) = timeout(s.accept_bi()).await.unwrap();
        let got = timeout(rx.read_to_end(64)).await.unwrap();
        tx.write_chunk(Bytes::from(got)).await.unwrap();
        tx.finish().unwrap();
    }
}

/// Opens a burst of streams on `s` at once, then checks every echo: a stream its peer
/// refused shows as a reset.
async fn open_burst<S: Session>(s: &S, who: &str) {
    let mut opened = Vec::new();
    for i in 0..BURST_STREAMS {
        let (mut tx, rx) = timeout(s.open_bi()).await.unwrap();
        tx.write_all(format!("{i}").as_bytes()).await.unwrap();
        tx.finish().unwrap();
        opened.push(rx);
    }
    for (i, mut rx) in opened.into_iter().enumerate() {
        match timeout(rx.read_to_end(64)).await {
            Ok(got) => assert_eq!(got, format!("{i}").as_bytes()),
            Err(e) => panic!("{who}'s stream {i} of a burst right after the handshake: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streams_right_after_the_response_are_never_early() {
    // The server has the session in its table before its 2xx leaves, so a client that opens
    // streams once it has the response never finds them refused as early, even with no room
    // at all for early streams.
    let (server, tls) = server_with(|cfg| cfg.max_buffered_streams = 0);
    let client = client(&tls, CompatMode::Latest);
    let req = request(&server, "/test");
    let server = std::sync::Arc::new(server);
    for _ in 0..BURST_SESSIONS {
        // The server accepts on a runtime thread, as servers do, not beside the client.
        let srv = server.clone();
        let echo = tokio::spawn(async move {
            let r = srv.accept().await.unwrap();
            let s = r.accept(AcceptOptions::default()).await.unwrap();
            echo_burst_streams(&s).await;
            // Kept open until the client has read the echoes.
            s
        });
        let c = client.connect(&req).await.unwrap();
        open_burst(&c, "client").await;
        drop(timeout(echo).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_right_after_accept_all_reach_the_client() {
    // The server may open streams as soon as it accepts; they can reach the client before the
    // response does. The client knows the session it asked for, so it holds them for it
    // (bounded by QUIC's stream limits, as they stay open) instead of refusing those beyond
    // the buffer for unknown sessions.
    let (server, tls) = server_with(|_| {});
    let client = client(&tls, CompatMode::Latest);
    let req = request(&server, "/test");
    let server = std::sync::Arc::new(server);
    for _ in 0..BURST_SESSIONS {
        let srv = server.clone();
        let opener = tokio::spawn(async move {
            let r = srv.accept().await.unwrap();
            let s = r.accept(AcceptOptions::default()).await.unwrap();
            // Unidirectional ones first, then bidirectional ones, all before the client can
            // have read the response.
            for i in 0..BURST_STREAMS {
                let mut u = s.open_uni().await.unwrap();
                u.write_all(format!("{i}").as_bytes()).await.unwrap();
                u.finish().unwrap();
            }
            open_burst(&s, "server").await;
            // Kept open until the client has read the unidirectional ones.
            s
        });
        let c = client.connect(&req).await.unwrap();
        echo_burst_streams(&c).await;
        let s = timeout(opener).await.unwrap();
        // A unidirectional stream the client refused would never be accepted: the step
        // times out.
        let mut got = Vec::new();
        for _ in 0..BURST_STREAMS {
            let mut r = timeout(c.accept_uni()).await.unwrap();
            let b = timeout(r.read_to_end(64)).await.unwrap();
            got.push(String::from_utf8(b).unwrap().parse::<usize>().unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (0..BURST_STREAMS).collect::<Vec<_>>());
        drop(s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_64_at_a_time_are_all_accepted() {
    // Streams arrive while the server's accept loop waits and while it is busy, on two
    // runtime threads, so both the connection's driver and the waiting accept_bi run the
    // intake of new streams, often at the same time. A wake-up lost between them would
    // strand a stream: its echo never comes and the step times out.
    const STREAMS: usize = 3000;
    const IN_FLIGHT: usize = 64;
    let (c, s, _server) = pair(CompatMode::Latest).await;
    let acceptor = s.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut tx, mut rx)) = acceptor.accept_bi().await {
            tokio::spawn(async move {
                let got = rx.read_to_end(1 << 10).await.unwrap();
                tx.write_chunk(Bytes::from(got)).await.unwrap();
                tx.finish().unwrap();
            });
        }
    });
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (c, next) = (c.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= STREAMS {
                    return;
                }
                let (mut tx, mut rx) = timeout(c.open_bi()).await.unwrap();
                let msg = format!("stream {i}");
                tx.write_all(msg.as_bytes()).await.unwrap();
                tx.finish().unwrap();
                let got = timeout(rx.read_to_end(1 << 10)).await.unwrap();
                assert_eq!(got, msg.as_bytes());
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    drop(s);
    drop(c);
    timeout(server).await.unwrap();
}
