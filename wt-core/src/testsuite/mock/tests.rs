//! Tests of the mock transport itself, and the generic suite over it.

use super::*;
use crate::testsuite::now;

fn pair() -> (MockSession, MockSession) {
    MockSession::pair(MockConfig::default())
}

#[tokio::test]
async fn streams_carry_data_fin_reset_and_stop_codes() {
    let (client, server) = pair();
    let (mut cs, mut cr) = client.open_bi().await.unwrap();
    assert_eq!(cs.id(), StreamId(0));
    cs.write_all(b"hello").await.unwrap();
    cs.finish().unwrap();
    assert!(matches!(
        cs.write(b"x").await,
        Err(StreamError::ClosedLocally)
    ));
    let (mut ss, mut sr) = server.accept_bi().await.unwrap();
    assert_eq!((ss.id(), sr.id()), (StreamId(0), StreamId(0)));
    assert_eq!(sr.read_chunk(2).await.unwrap().unwrap(), "he");
    assert_eq!(sr.read_to_end(100).await.unwrap(), b"llo");
    assert_eq!(sr.read_chunk(10).await.unwrap(), None);
    // Data before a reset is delivered, then the code; the error sticks.
    ss.write_chunk(Bytes::from_static(b"part")).await.unwrap();
    ss.reset(7).unwrap();
    assert_eq!(cr.read_chunk(10).await.unwrap().unwrap(), "part");
    assert!(matches!(
        cr.read_chunk(10).await,
        Err(StreamError::Reset(Some(7)))
    ));
    assert!(matches!(
        cr.read_chunk(10).await,
        Err(StreamError::Reset(Some(7)))
    ));
    assert_eq!(ss.stopped().await.unwrap(), None);

    // STOP_SENDING with a code, and dropping an unread receive half (code 0).
    let mut up = server.open_uni().await.unwrap();
    assert_eq!(up.id(), StreamId(3));
    let mut down = client.accept_uni().await.unwrap();
    up.write_all(b"unread").await.unwrap();
    down.stop(9).unwrap();
    assert_eq!(up.stopped().await.unwrap(), Some(9));
    assert!(matches!(
        up.write(b"x").await,
        Err(StreamError::Stopped(Some(9)))
    ));
    assert!(matches!(
        down.read_chunk(1).await,
        Err(StreamError::ClosedLocally)
    ));
    let (mut s2, r2) = client.open_bi().await.unwrap();
    assert_eq!(s2.id(), StreamId(4));
    drop(r2); // Stops the other direction only.
    assert!(now(s2.stopped()).await.is_none());
    let (_ss2, sr2) = server.accept_bi().await.unwrap();
    drop(sr2);
    assert_eq!(s2.stopped().await.unwrap(), Some(0));

    // Dropping an unfinished send half finishes it.
    let mut u = client.open_uni().await.unwrap();
    u.write_all(b"bye").await.unwrap();
    drop(u);
    let mut r = server.accept_uni().await.unwrap();
    assert_eq!(r.read_to_end(10).await.unwrap(), b"bye");

    let stats = client.stats();
    assert_eq!((stats.bidi_opened_local, stats.uni_opened_local), (2, 1));
    assert_eq!((stats.bidi_opened_remote, stats.uni_opened_remote), (0, 1));
    assert_eq!(stats.bytes_sent, 5 + 3, "hello, bye");
    assert_eq!(stats.bytes_received, 4);
}

#[tokio::test]
async fn buffering_and_backlogs_are_bounded() {
    let config = MockConfig {
        stream_window: 4,
        accept_backlog: 2,
        datagram_queue: 2,
        ..MockConfig::default()
    };
    let (client, server) = MockSession::pair(config);
    let (mut send, _recv) = client.open_bi().await.unwrap();
    assert_eq!(send.write(b"abcdef").await.unwrap(), 4);
    assert!(now(send.write(b"ef")).await.is_none(), "window full");
    let (_ps, mut pr) = server.accept_bi().await.unwrap();
    assert_eq!(pr.read_chunk(3).await.unwrap().unwrap(), "abc");
    assert_eq!(send.write(b"efgh").await.unwrap(), 3);
    // write_chunk larger than the window completes as the reader drains it.
    let big = Bytes::from(vec![5u8; 50]);
    let ((), r) = tokio::join!(
        async {
            send.write_chunk(big).await.unwrap();
            send.finish().unwrap();
        },
        pr.read_to_end(100)
    );
    assert_eq!(r.unwrap().len(), 4 + 50);

    // Two streams may wait to be accepted; the third opener waits for an accept.
    let _a = client.open_uni().await.unwrap();
    let _b = client.open_uni().await.unwrap();
    assert!(now(client.open_uni()).await.is_none());
    let first = server.accept_uni().await.unwrap();
    assert_eq!(first.id(), StreamId(2));
    assert!(now(client.open_uni()).await.is_some());

    // Datagrams past the queue are dropped, but counted as sent.
    for d in ["1", "2", "3"] {
        client.send_datagram(Bytes::from(d)).unwrap();
    }
    assert_eq!(server.recv_datagram().await.unwrap(), "1");
    assert_eq!(server.recv_datagram().await.unwrap(), "2");
    assert!(now(server.recv_datagram()).await.is_none());
    assert_eq!(client.stats().datagrams_sent, 3);
    assert_eq!(server.stats().datagrams_received, 2);
}

#[tokio::test]
async fn datagram_limits() {
    let (client, server) = pair();
    assert_eq!(client.max_datagram_size(), Some(DEFAULT_MAX_DATAGRAM));
    assert!(matches!(
        client.send_datagram(Bytes::from(vec![0; DEFAULT_MAX_DATAGRAM + 1])),
        Err(SessionError::DatagramTooLarge { size, max }) if size == max + 1
    ));
    server.send_datagram(Bytes::from_static(b"back")).unwrap();
    assert_eq!(client.recv_datagram().await.unwrap(), "back");
    let (client, _server) = MockSession::pair(MockConfig {
        max_datagram_size: None,
        ..MockConfig::new(TransportKind::Http2)
    });
    assert!(!client.info().unreliable_datagrams);
    assert!(matches!(
        client.send_datagram(Bytes::new()),
        Err(SessionError::DatagramsUnsupported)
    ));
}

#[tokio::test]
async fn close_drain_and_drop() {
    let (client, server) = pair();
    let (mut send, mut recv) = client.open_bi().await.unwrap();
    server.drain().unwrap();
    client.draining().await;
    assert!(client.peer_drained() && !server.peer_drained());
    assert!(matches!(
        client.close(1, &"x".repeat(1025)),
        Err(SessionError::ReasonTooLong(1025))
    ));
    assert!(client.close_record().is_none());
    let waiting = tokio::spawn({
        let server = server.clone();
        async move { server.closed().await }
    });
    client.close(42, "done").unwrap();
    client.close(43, "again").unwrap(); // no-op
    let record = server.close_record().unwrap();
    assert_eq!(
        record,
        CloseRecord {
            by: Side::Client,
            code: 42,
            reason: "done".into()
        }
    );
    assert!(matches!(
        waiting.await.unwrap(),
        SessionError::ClosedByPeer { code: 42, ref reason } if reason == "done"
    ));
    assert!(matches!(
        client.closed().await,
        SessionError::ClosedLocally { code: 42, .. }
    ));
    assert!(matches!(
        send.write(b"x").await,
        Err(StreamError::SessionGone(SessionError::ClosedLocally { .. }))
    ));
    assert!(matches!(
        recv.read_chunk(1).await,
        Err(StreamError::SessionGone(_))
    ));
    assert!(server.accept_bi().await.is_err());
    assert!(server.open_uni().await.is_err());
    assert!(server.drain().is_err());
    assert!(server.send_datagram(Bytes::new()).is_err());

    // Dropping every handle of one end closes the session with code 0.
    let (client, server) = pair();
    let other = server.clone();
    drop(server);
    assert!(client.close_record().is_none());
    drop(other);
    assert_eq!(
        client.close_record(),
        Some(CloseRecord {
            by: Side::Server,
            code: 0,
            reason: String::new()
        })
    );
}

#[tokio::test]
async fn accept_any_keeps_the_opening_order() {
    let (client, server) = pair();
    let _u = client.open_uni().await.unwrap();
    let _b = client.open_bi().await.unwrap();
    let _u2 = client.open_uni().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = server.accept_any().await.unwrap();
        seen.push((s.id, s.send.is_some()));
    }
    assert_eq!(
        seen,
        vec![
            (StreamId(2), false),
            (StreamId(0), true),
            (StreamId(6), false)
        ]
    );
}

#[tokio::test]
async fn network_requests_accept_reject_and_shutdown() {
    let (connector, acceptor) = network(MockConfig::new(TransportKind::Http2));
    let request = ConnectRequest {
        host: "example.test".into(),
        port: 443,
        path: "/p?q=1".into(),
        origin: Some("https://o.example".into()),
        protocols: vec!["a".into(), "b".into()],
        ..ConnectRequest::default()
    };
    let server = async {
        let r = acceptor.accept().await.unwrap();
        let info = r.info().clone();
        let session = r
            .accept(AcceptOptions {
                protocol: Some("b".into()),
                ..AcceptOptions::default()
            })
            .await
            .unwrap();
        (info, session)
    };
    let (client, (info, server)) = tokio::join!(connector.connect(&request), server);
    let client = client.unwrap();
    assert_eq!(info.authority, "example.test:443");
    assert_eq!(info.path, "/p?q=1");
    assert_eq!(info.protocol, "webtransport");
    assert_eq!(info.dialect, Dialect::H2Latest);
    assert_eq!(info.origin.as_deref(), Some("https://o.example"));
    assert_eq!(info.protocols, ["a", "b"]);
    let (ci, si) = (client.info(), server.info());
    assert_eq!(ci.session_id, si.session_id);
    assert_eq!(ci.protocol.as_deref(), Some("b"));
    assert_eq!(ci.peer_addr, acceptor.local_addr());
    assert_eq!(si.peer_addr, info.peer_addr);
    assert_eq!((client.side(), server.side()), (Side::Client, Side::Server));

    // Rejections: explicit (2xx becomes 500), and by dropping the request.
    for (status, expected) in [(404, 404), (200, 500)] {
        let (c, ()) = tokio::join!(connector.connect_path("/x", None), async {
            let r = acceptor.accept().await.unwrap();
            r.reject(http::StatusCode::from_u16(status).unwrap()).await;
        });
        assert!(matches!(c, Err(ConnectError::Rejected { status }) if status == expected));
    }
    let (c, ()) = tokio::join!(connector.connect_path("/x", None), async {
        drop(acceptor.accept().await);
    });
    assert!(matches!(c, Err(ConnectError::Rejected { status }) if status == 500));

    // Shutdown: pending accepts end, the client is told to go away, new connects fail.
    let (accepted, ()) = tokio::join!(acceptor.accept(), async {
        tokio::task::yield_now().await;
        acceptor.shutdown();
    });
    assert!(accepted.is_none());
    client.draining().await;
    assert!(client.peer_drained() && !server.peer_drained());
    assert!(matches!(
        connector.connect_path("/late", None).await,
        Err(ConnectError::Io(_))
    ));
    // Established sessions keep working.
    client.send_datagram(Bytes::from_static(b"still")).unwrap();
    assert_eq!(server.recv_datagram().await.unwrap(), "still");
}

#[tokio::test]
async fn generic_suite_passes_over_the_mock() {
    for transport in [TransportKind::Http3, TransportKind::Http2] {
        let (connector, acceptor) = network(MockConfig::new(transport));
        let request = ConnectRequest {
            host: "localhost".into(),
            port: 4433,
            path: "/suite".into(),
            ..ConnectRequest::default()
        };
        crate::testsuite::run_all(&connector, &acceptor, request).await;
    }
}
