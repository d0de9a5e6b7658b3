//! End-to-end tests: real TLS + HTTP/2 on loopback, both dialects, both roles.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use wt_core::tls::ServerTls;
use wt_core::{
    AcceptOptions, Acceptor, CompatMode, ConnectError, ConnectRequest, Connector, Dialect,
    IncomingRequest, RecvStream as _, SendStream as _, Session as _, SessionError, StreamError,
};
use wt_h2::{Client, ClientConfig, FlowConfig, Server, ServerConfig, Session, StreamIdParity};

struct Setup {
    client: Client,
    server: Server,
    request: ConnectRequest,
}

fn setup(legacy: bool, tweak: impl FnOnce(&mut ServerConfig, &mut ClientConfig)) -> Setup {
    let tls = ServerTls::self_signed(&["localhost"]).unwrap();
    let leaf = tls.leaf_pem();
    let mut sc = ServerConfig::new(tls, SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut cc = ClientConfig::default();
    cc.tls.webpki_roots = false;
    cc.tls.add_ca_pem(leaf.as_bytes()).unwrap();
    cc.connect_timeout = Duration::from_secs(10);
    if legacy {
        sc.dialect = Dialect::H2Legacy;
        cc.compat = CompatMode::LegacyBrowserCompat;
    }
    tweak(&mut sc, &mut cc);
    let server = Server::bind(sc).unwrap();
    let request = ConnectRequest {
        host: "localhost".into(),
        port: server.local_addr().port(),
        path: "/echo".into(),
        origin: Some("https://example.test".into()),
        protocols: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    Setup {
        client: Client::new(cc).unwrap(),
        server,
        request,
    }
}

async fn pair(s: &Setup) -> (Session, Session) {
    let accept = async {
        let req = s.server.accept().await.unwrap();
        assert_eq!(req.info().path, "/echo");
        assert_eq!(req.info().origin.as_deref(), Some("https://example.test"));
        assert_eq!(req.info().protocols, vec!["a".to_string(), "b".to_string()]);
        req.accept(AcceptOptions {
            protocol: Some("b".into()),
            ..Default::default()
        })
        .await
        .unwrap()
    };
    let (c, srv) = tokio::join!(s.client.connect(&s.request), accept);
    let c = c.unwrap();
    assert_eq!(c.info().protocol.as_deref(), Some("b"));
    assert!(!c.info().unreliable_datagrams);
    (c, srv)
}

/// Echoes every stream and datagram the session receives.
fn spawn_echo(s: Session) {
    let s2 = s.clone();
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = s2.accept_bi().await {
            tokio::spawn(async move {
                while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024).await {
                    if send.write_chunk(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = send.finish();
            });
        }
    });
    let s3 = s.clone();
    tokio::spawn(async move {
        while let Ok(mut recv) = s3.accept_uni().await {
            let s = s3.clone();
            tokio::spawn(async move {
                let data = recv.read_to_end(1 << 20).await.unwrap();
                let mut send = s.open_uni().await.unwrap();
                send.write_all(&data).await.unwrap();
                send.finish().unwrap();
            });
        }
    });
    tokio::spawn(async move {
        while let Ok(d) = s.recv_datagram().await {
            let _ = s.send_datagram(d);
        }
    });
}

async fn echo_checks(c: &Session) {
    // Bidi.
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(100).await.unwrap(), b"hello");
    // Uni round trip.
    let mut u = c.open_uni().await.unwrap();
    u.write_all(b"uni").await.unwrap();
    u.finish().unwrap();
    let mut back = c.accept_uni().await.unwrap();
    assert_eq!(back.read_to_end(100).await.unwrap(), b"uni");
    // FIN-only.
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(100).await.unwrap(), b"");
    // Datagram.
    c.send_datagram(Bytes::from_static(b"ping")).unwrap();
    assert_eq!(c.recv_datagram().await.unwrap(), &b"ping"[..]);
    assert!(matches!(
        c.send_datagram(Bytes::from(vec![0; 70_000])),
        Err(SessionError::DatagramTooLarge { .. })
    ));
}

#[tokio::test]
async fn echo_client_opened_both_dialects() {
    for legacy in [false, true] {
        let s = setup(legacy, |_, _| {});
        let (c, srv) = pair(&s).await;
        assert_eq!(
            c.info().dialect,
            if legacy {
                Dialect::H2Legacy
            } else {
                Dialect::H2Latest
            }
        );
        spawn_echo(srv);
        echo_checks(&c).await;
        let st = c.stats();
        assert!(st.local_limits.is_some() && st.peer_limits.is_some());
        assert_eq!(st.peer_limits.unwrap().max_streams_bidi, 100);
    }
}

#[tokio::test]
async fn echo_server_opened_both_dialects() {
    for legacy in [false, true] {
        let s = setup(legacy, |_, _| {});
        let (c, srv) = pair(&s).await;
        spawn_echo(c);
        echo_checks(&srv).await;
    }
}

#[tokio::test]
async fn legacy_swapped_stream_ids_end_to_end() {
    // A legacy client numbering like @fails-components (client bidi 1, uni 3) against the
    // default legacy server, which follows it; in draft-15 mode the option is ignored.
    for (legacy, bidi, uni, server_uni) in [(true, 1, 3, 2), (false, 0, 2, 3)] {
        let s = setup(legacy, |_, cc| {
            cc.stream_id_parity = StreamIdParity::Swapped
        });
        let (c, srv) = pair(&s).await;
        spawn_echo(srv);
        let (mut send, mut recv) = c.open_bi().await.unwrap();
        assert_eq!(send.id().0, bidi);
        send.write_all(b"hello").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(100).await.unwrap(), b"hello");
        let mut u = c.open_uni().await.unwrap();
        assert_eq!(u.id().0, uni);
        u.write_all(b"uni").await.unwrap();
        u.finish().unwrap();
        let mut back = c.accept_uni().await.unwrap();
        assert_eq!(back.id().0, server_uni);
        assert_eq!(back.read_to_end(100).await.unwrap(), b"uni");
    }
}

#[tokio::test]
async fn reset_and_stop_sending_codes() {
    for legacy in [false, true] {
        let s = setup(legacy, |_, _| {});
        let (c, srv) = pair(&s).await;
        // Reset after 5 bytes with code 7.
        let mut u = c.open_uni().await.unwrap();
        u.write_all(b"12345").await.unwrap();
        u.reset(7).unwrap();
        let mut r = srv.accept_uni().await.unwrap();
        let mut got = Vec::new();
        let err = loop {
            match r.read_chunk(100).await {
                Ok(Some(d)) => got.extend_from_slice(&d),
                Ok(None) => panic!("expected a reset"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, StreamError::Reset(Some(7))), "{err:?}");
        if !legacy {
            assert_eq!(got, b"12345");
        }
        // Stop sending with code 9: the writer sees Stopped(9).
        let (mut send, _recv) = c.open_bi().await.unwrap();
        send.write_all(b"x").await.unwrap();
        let (_ssend, mut srecv) = srv.accept_bi().await.unwrap();
        srecv.stop(9).unwrap();
        assert_eq!(send.stopped().await.unwrap(), Some(9));
        let e = send.write_all(b"more").await.unwrap_err();
        assert!(matches!(e, StreamError::Stopped(Some(9))), "{e:?}");
    }
}

#[tokio::test]
async fn close_with_code_and_reason_both_directions() {
    for client_closes in [true, false] {
        let s = setup(false, |_, _| {});
        let (c, srv) = pair(&s).await;
        let (closer, other) = if client_closes {
            (&c, &srv)
        } else {
            (&srv, &c)
        };
        closer.close(300, "bye").unwrap();
        match other.closed().await {
            SessionError::ClosedByPeer { code, reason } => {
                assert_eq!((code, reason.as_str()), (300, "bye"))
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            closer.closed().await,
            SessionError::ClosedLocally { code: 300, .. }
        ));
        assert!(other.open_bi().await.is_err());
    }
}

#[tokio::test]
async fn drop_all_handles_closes_with_zero() {
    let s = setup(false, |_, _| {});
    let (c, srv) = pair(&s).await;
    drop(c);
    match srv.closed().await {
        SessionError::ClosedByPeer { code: 0, reason } => assert!(reason.is_empty()),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn drain_is_seen() {
    let s = setup(false, |_, _| {});
    let (c, srv) = pair(&s).await;
    srv.drain().unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.draining())
        .await
        .unwrap();
    // Still usable.
    spawn_echo(srv);
    echo_checks(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_streams() {
    let s = setup(false, |_, _| {});
    let (c, srv) = pair(&s).await;
    spawn_echo(srv);
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (mut send, mut recv) = c.open_bi().await.unwrap();
            let msg = format!("stream {i}").repeat(10);
            send.write_all(msg.as_bytes()).await.unwrap();
            send.finish().unwrap();
            assert_eq!(recv.read_to_end(10_000).await.unwrap(), msg.as_bytes());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.stats().bidi_opened_local, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_through_small_windows() {
    let small = FlowConfig {
        max_data: 256 * 1024,
        max_stream_data_uni: 64 * 1024,
        max_stream_data_bidi_local: 64 * 1024,
        max_stream_data_bidi_remote: 64 * 1024,
        max_streams_uni: 4,
        max_streams_bidi: 4,
    };
    let s = setup(false, |sc, cc| {
        sc.flow = small;
        cc.flow = small;
        sc.h2.initial_stream_window = 512 * 1024;
        cc.h2.initial_stream_window = 512 * 1024;
        sc.h2.initial_connection_window = 1 << 20;
        cc.h2.initial_connection_window = 1 << 20;
    });
    let (c, srv) = pair(&s).await;
    let total: u64 = if cfg!(debug_assertions) {
        64 << 20
    } else {
        1 << 30
    };
    let reader = tokio::spawn(async move {
        let mut r = srv.accept_uni().await.unwrap();
        let mut n = 0u64;
        let mut sum = 0u64;
        while let Some(chunk) = r.read_chunk(1 << 20).await.unwrap() {
            for b in chunk.iter() {
                sum = sum.wrapping_add(u64::from(*b));
            }
            n += chunk.len() as u64;
        }
        (n, sum)
    });
    let mut w = c.open_uni().await.unwrap();
    let block: Bytes = (0..1 << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let block_sum: u64 = block.iter().map(|b| u64::from(*b)).sum();
    let mut sent = 0;
    while sent < total {
        w.write_chunk(block.clone()).await.unwrap();
        sent += block.len() as u64;
    }
    w.finish().unwrap();
    let (n, sum) = reader.await.unwrap();
    assert_eq!(n, total);
    assert_eq!(sum, block_sum * (total >> 20));
}

#[tokio::test]
async fn missing_wt_enabled_or_connect_protocol() {
    let s = setup(false, |sc, _| sc.wt_enabled = None);
    match s.client.connect(&s.request).await {
        Err(ConnectError::MissingSetting(m)) => assert_eq!(m.id, 0x2b60),
        r => panic!("{r:?}"),
    }
    // Legacy mode does not require it.
    let s = setup(true, |sc, _| sc.wt_enabled = None);
    let (c, srv) = pair(&s).await;
    spawn_echo(srv);
    echo_checks(&c).await;
    let s = setup(false, |sc, _| sc.enable_connect_protocol = false);
    match s.client.connect(&s.request).await {
        Err(ConnectError::MissingSetting(m)) => assert_eq!(m.id, 0x8),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn wt_enabled_five_is_a_protocol_error() {
    let s = setup(false, |sc, _| sc.wt_enabled = Some(5));
    match s.client.connect(&s.request).await {
        Err(ConnectError::Protocol(p)) => {
            assert_eq!(
                p.code,
                wt_core::WireCode::H2(wt_core::codes::H2Code::PROTOCOL_ERROR)
            )
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn rejection_with_status() {
    let s = setup(false, |_, _| {});
    let reject = async {
        let req = s.server.accept().await.unwrap();
        req.reject(http::StatusCode::FORBIDDEN).await;
        // Dropping a request answers 405.
        drop(s.server.accept().await.unwrap());
    };
    let connect = async {
        let a = s.client.connect(&s.request).await;
        let b = s.client.connect(&s.request).await;
        (a, b)
    };
    let ((a, b), ()) = tokio::join!(connect, reject);
    assert!(matches!(a, Err(ConnectError::Rejected { status }) if status == 403));
    assert!(matches!(b, Err(ConnectError::Rejected { status }) if status == 405));
}

#[tokio::test]
async fn bad_webtransport_init_is_400() {
    let s = setup(false, |_, _| {});
    let mut req = s.request.clone();
    req.headers.insert(
        "webtransport-init",
        http::HeaderValue::from_static("u=1000, bl=2000, br=x"),
    );
    // The client adds its own header; the bad one comes first or second: either way the
    // server must reject with 400 (HS-15) — remove ours by sending only the bad one.
    match s.client.connect(&req).await {
        Err(ConnectError::Rejected { status }) => assert_eq!(status, 400),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let s = setup(false, |_, _| {});
    let (c, srv) = pair(&s).await;
    s.server.shutdown();
    assert!(s.server.accept().await.is_none());
    // Established sessions continue.
    spawn_echo(srv);
    echo_checks(&c).await;
}

/// The client sends its CONNECT as soon as h2 has applied the server's SETTINGS — an event,
/// not a timed poll. Many fresh connections in a row must never see the flag unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_many_times_never_misses_settings() {
    let s = setup(false, |_, _| {});
    let n = if cfg!(debug_assertions) { 200 } else { 500 };
    let server = async {
        for _ in 0..n {
            let req = s.server.accept().await.unwrap();
            let sess = req.accept(AcceptOptions::default()).await.unwrap();
            drop(sess);
        }
    };
    let client = async {
        for i in 0..n {
            match s.client.connect(&s.request).await {
                Ok(c) => drop(c),
                Err(e) => panic!("connect {i}: {e:?}"),
            }
        }
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn wt_enabled_five_fails_fast_not_by_timeout() {
    let s = setup(false, |sc, cc| {
        sc.wt_enabled = Some(5);
        cc.connect_timeout = Duration::from_secs(30);
    });
    let t = tokio::time::Instant::now();
    let r = s.client.connect(&s.request).await;
    assert!(matches!(r, Err(ConnectError::Protocol(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn dropping_the_server_stops_accepting_sessions_continue() {
    let s = setup(false, |_, _| {});
    let (c, srv) = pair(&s).await;
    let Setup {
        client,
        server,
        request,
    } = s;
    drop(server);
    // The accept task ends and closes the listening socket: new connections fail.
    match client.connect(&request).await {
        Err(ConnectError::Io(_) | ConnectError::Tls(_) | ConnectError::Connection(_)) => {}
        r => panic!("{r:?}"),
    }
    // Established sessions continue.
    spawn_echo(srv);
    echo_checks(&c).await;
}

/// Runs a test body that would hang, not fail, if a wake-up were lost; fails it instead.
async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(std::time::Duration::from_secs(30), body)
        .await
        .expect("no progress for 30 s: a wake-up was lost");
}

/// A read that waited on h2 itself and was then dropped (cancelled) hands h2's wake-ups back
/// to the driver: a datagram and stream data sent afterwards still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_read_hands_h2_back_to_the_driver() {
    bounded(async {
        let s = setup(false, |_, _| {});
        let (c, srv) = pair(&s).await;
        let (mut cs, mut cr) = c.open_bi().await.unwrap();
        cs.write_all(b"x").await.unwrap();
        let (mut ss, mut sr) = srv.accept_bi().await.unwrap();
        assert_eq!(sr.read_chunk(10).await.unwrap().unwrap(), &b"x"[..]);
        // Polled once (nothing buffered: it waits on h2), then dropped.
        tokio::select! {
            biased;
            _ = cr.read_chunk(10) => panic!("nothing was sent"),
            _ = std::future::ready(()) => {}
        }
        srv.send_datagram(Bytes::from_static(b"dg")).unwrap();
        assert_eq!(c.recv_datagram().await.unwrap(), &b"dg"[..]);
        ss.write_all(b"later").await.unwrap();
        assert_eq!(cr.read_chunk(10).await.unwrap().unwrap(), &b"later"[..]);
    })
    .await;
}

/// After a read completes nobody polls h2 but the driver: control capsules, datagrams and new
/// streams still arrive while the application does not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_read_leaves_h2_to_the_driver() {
    bounded(async {
        let s = setup(false, |_, _| {});
        let (c, srv) = pair(&s).await;
        spawn_echo(srv.clone());
        let (mut cs, mut cr) = c.open_bi().await.unwrap();
        for _ in 0..50 {
            cs.write_all(b"ping").await.unwrap();
            assert_eq!(cr.read_chunk(10).await.unwrap().unwrap(), &b"ping"[..]);
        }
        c.send_datagram(Bytes::from_static(b"dg")).unwrap();
        assert_eq!(c.recv_datagram().await.unwrap(), &b"dg"[..]);
        let mut u = c.open_uni().await.unwrap();
        u.write_all(b"uni").await.unwrap();
        u.finish().unwrap();
        let mut back = c.accept_uni().await.unwrap();
        assert_eq!(back.read_to_end(100).await.unwrap(), b"uni");
        srv.close(7, "bye").unwrap();
        match c.closed().await {
            SessionError::ClosedByPeer { code, reason } => {
                assert_eq!((code, reason.as_str()), (7, "bye"));
            }
            e => panic!("unexpected {e:?}"),
        }
    })
    .await;
}

/// A reader waiting on h2 is woken for data of other streams and datagrams too, and passes
/// them on: while one read stays pending, other streams' round trips and a datagram complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_reader_passes_on_other_input() {
    bounded(async {
        let s = setup(false, |_, _| {});
        let (c, srv) = pair(&s).await;
        spawn_echo(srv.clone());
        let (mut idle_send, mut idle) = c.open_bi().await.unwrap();
        idle_send.write_all(b"a").await.unwrap();
        assert_eq!(idle.read_chunk(10).await.unwrap().unwrap(), &b"a"[..]);
        // This read waits on h2 (and receives its wake-ups) until the end of the test.
        let waiting = tokio::spawn(async move {
            let r = idle.read_chunk(10).await.unwrap();
            (r, idle)
        });
        let mut tasks = Vec::new();
        for i in 0..4u8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let (mut send, mut recv) = c.open_bi().await.unwrap();
                for _ in 0..100 {
                    send.write_all(&[i; 64]).await.unwrap();
                    let mut got = 0;
                    while got < 64 {
                        let chunk = recv.read_chunk(64 - got).await.unwrap().unwrap();
                        assert!(chunk.iter().all(|b| *b == i));
                        got += chunk.len();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        c.send_datagram(Bytes::from_static(b"dg")).unwrap();
        assert_eq!(c.recv_datagram().await.unwrap(), &b"dg"[..]);
        idle_send.write_all(b"b").await.unwrap();
        let (r, _idle) = waiting.await.unwrap();
        assert_eq!(r.unwrap(), &b"b"[..]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_some_takes_what_the_credit_allows_and_is_cancel_safe() {
    const CREDIT: u64 = 1024;
    let s = setup(false, |sc, _| {
        sc.flow.max_stream_data_bidi_remote = CREDIT;
        sc.flow.max_stream_data_bidi_local = CREDIT;
    });
    let (c, srv) = pair(&s).await;
    bounded(async move {
        let (mut w, _r) = c.open_bi().await.unwrap();
        let all: Bytes = (0..4 * CREDIT)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let mut data = all.clone();
        // The stream's whole credit is taken at once, and `data` moves past it.
        w.write_some(&mut data).await.unwrap();
        assert_eq!(data, all.slice(CREDIT as usize..));
        // No credit left: a write dropped while it waits took nothing.
        tokio::select! {
            biased;
            r = w.write_some(&mut data) => panic!("wrote without credit: {r:?}"),
            () = std::future::ready(()) => {}
        }
        assert_eq!(data, all.slice(CREDIT as usize..));
        // The server reads, granting more; the rest goes out in order.
        let reader = tokio::spawn(async move {
            let (_sw, mut sr) = srv.accept_bi().await.unwrap();
            let mut got = Vec::new();
            while let Some(c) = sr.read_chunk(usize::MAX).await.unwrap() {
                got.extend_from_slice(&c);
            }
            got
        });
        while !data.is_empty() {
            w.write_some(&mut data).await.unwrap();
        }
        w.finish().unwrap();
        assert_eq!(reader.await.unwrap(), all);
    })
    .await;
}
