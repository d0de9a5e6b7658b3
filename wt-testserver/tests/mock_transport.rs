//! The session runner and listener over an in-memory transport: every callback and action,
//! limits, isolation of panics and graceful shutdown, without sockets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{network, network_with, next, until, within, Ev, MockClient, RecConfig, Recorder};
use http::StatusCode;
use tokio::sync::mpsc;
use wt_core::testsuite::mock::{MockConfig, MockSession};
use wt_core::{
    RecvStream, SendStream, Session, SessionError, StreamError, StreamId, StreamKind, TransportKind,
};
use wt_testserver::codes;
use wt_testserver::{
    serve, Action, CloseReason, EchoConfig, EchoHandler, Limits, Listener, ServeOptions,
};

fn echo_server(options: ServeOptions, config: EchoConfig) -> (MockClient, Listener<EchoHandler>) {
    let (client, acceptor) = network(TransportKind::Http3);
    (client, serve::<EchoHandler, _>(acceptor, config, options))
}

fn echo() -> (MockClient, Listener<EchoHandler>) {
    echo_server(ServeOptions::default(), EchoConfig::default())
}

fn recorder(
    options: ServeOptions,
) -> (MockClient, Listener<Recorder>, mpsc::UnboundedReceiver<Ev>) {
    let (client, acceptor) = network(TransportKind::Http2);
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = serve::<Recorder, _>(acceptor, RecConfig { events: tx }, options);
    (client, listener, rx)
}

async fn read_all<R: RecvStream>(recv: &mut R) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::new();
    while let Some(chunk) = within(recv.read_chunk(1 << 20)).await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

#[tokio::test]
async fn echoes_bidi_uni_and_datagrams() {
    let (client, _server) = echo();
    let s = within(client.connect("/echo", None)).await.unwrap();

    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"hello ").await.unwrap();
    send.write_all(b"world").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"hello world");

    let mut uni = s.open_uni().await.unwrap();
    uni.write_all(b"one way").await.unwrap();
    uni.finish().unwrap();
    let mut back = within(s.accept_uni()).await.unwrap();
    assert_eq!(back.id().0 & 3, 3, "server-initiated uni");
    assert_eq!(read_all(&mut back).await.unwrap(), b"one way");

    s.send_datagram(Bytes::from_static(b"ping")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "ping");
}

/// A client that writes without reading the echo: the server's writes wait, its write budget
/// fills, it stops reading, and the client's writes wait in turn, with far less than what
/// the client wants to send held anywhere. Reading the echo lets all of it through.
/// (Time is paused: the timeout below can only fire once every task is waiting.)
#[tokio::test(start_paused = true)]
async fn an_echo_the_client_does_not_read_pushes_back() {
    let mut config = MockConfig::new(TransportKind::Http3);
    config.stream_window = 64 * 1024;
    let (client, acceptor) = network_with(config);
    let _server = serve::<EchoHandler, _>(acceptor, EchoConfig::default(), ServeOptions::default());
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    // Four times what the session may queue for its writers, on top of both windows.
    let total = 4 * wt_testserver::session::WRITE_BUDGET;
    let data = Bytes::from(pattern(total));
    let to_send = data.clone();
    let mut writer = tokio::spawn(async move {
        for piece in to_send.chunks(16 * 1024) {
            send.write_all(piece).await?;
        }
        send.finish()?;
        Ok::<_, StreamError>(send)
    });
    let blocked = tokio::time::timeout(Duration::from_secs(60), &mut writer).await;
    assert!(
        blocked.is_err(),
        "the client's writes must wait for it to read"
    );
    let sent = s.stats().bytes_sent as usize;
    assert!(
        sent < total / 2,
        "{sent} of {total} bytes left the client before it read anything"
    );

    let back = read_all(&mut recv).await.unwrap();
    assert_eq!(back.len(), total);
    assert!(back == data, "echo out of order");
    within(writer).await.unwrap().unwrap();
}

/// Echo through streams that buffer 1,000 bytes each way, written faster than they are read
/// back: the server's writes soon wait for the client to read, its queues fill and its
/// reads pause. Every byte still comes back once, in order, then the FIN.
#[tokio::test]
async fn echo_through_a_small_window_keeps_every_byte_in_order() {
    for transport in [TransportKind::Http3, TransportKind::Http2] {
        let mut config = MockConfig::new(transport);
        config.stream_window = 1000;
        let (client, acceptor) = network_with(config);
        let _server =
            serve::<EchoHandler, _>(acceptor, EchoConfig::default(), ServeOptions::default());
        let s = within(client.connect("/echo", None)).await.unwrap();
        let (mut send, mut recv) = s.open_bi().await.unwrap();
        let data = pattern(100_000);
        let rest = Bytes::from(data.clone());
        let writer = tokio::spawn(async move {
            for piece in rest.chunks(3000) {
                send.write_all(piece).await?;
            }
            send.finish()?;
            Ok::<_, StreamError>(send)
        });
        let back = read_all(&mut recv).await.unwrap();
        assert_eq!(back.len(), data.len(), "{transport:?}");
        assert!(back == data, "{transport:?}: echo out of order");
        within(writer).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn empty_bidi_stream_echoes_fin() {
    let (client, _server) = echo();
    let s = within(client.connect("/", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"");
}

#[tokio::test]
async fn server_opened_streams_by_path_and_command() {
    let (client, _server) = echo();
    let s = within(client.connect("/open-uni/70000", None))
        .await
        .unwrap();
    let mut uni = within(s.accept_uni()).await.unwrap();
    assert_eq!(read_all(&mut uni).await.unwrap(), pattern(70000));

    let s = within(client.connect("/open-bidi/5", None)).await.unwrap();
    let (_send, mut recv) = within(s.accept_bi()).await.unwrap();
    assert_eq!(recv.id().0 & 3, 1, "server-initiated bidi");
    assert_eq!(read_all(&mut recv).await.unwrap(), pattern(5));

    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD open-uni 300\nafter").await.unwrap();
    send.finish().unwrap();
    let mut uni = within(s.accept_uni()).await.unwrap();
    assert_eq!(read_all(&mut uni).await.unwrap(), pattern(300));
    assert_eq!(read_all(&mut recv).await.unwrap(), b"after");

    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD open-bidi 3\n").await.unwrap();
    let (_s2, mut r2) = within(s.accept_bi()).await.unwrap();
    assert_eq!(read_all(&mut r2).await.unwrap(), pattern(3));
}

#[tokio::test]
async fn reset_and_stop_with_codes() {
    let (client, _server) = echo();
    let s = within(client.connect("/reset/7", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"x").await.unwrap();
    let err = loop {
        match within(recv.read_chunk(100)).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected a reset, got FIN"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StreamError::Reset(Some(7))), "{err:?}");
    // Later streams echo normally.
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"ok").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"ok");

    let s = within(client.connect("/stop/9", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"x").await.unwrap();
    assert_eq!(within(send.stopped()).await.unwrap(), Some(9));
    assert_eq!(
        read_all(&mut recv).await.unwrap(),
        b"",
        "server FINs its half"
    );

    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD reset 11\n").await.unwrap();
    let err = read_all(&mut recv).await.unwrap_err();
    assert!(matches!(err, StreamError::Reset(Some(11))), "{err:?}");
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD stop 12\n").await.unwrap();
    assert_eq!(within(send.stopped()).await.unwrap(), Some(12));

    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD fly away\n").await.unwrap();
    assert_eq!(
        within(send.stopped()).await.unwrap(),
        Some(codes::BAD_COMMAND)
    );
    let err = read_all(&mut recv).await.unwrap_err();
    assert!(matches!(err, StreamError::Reset(Some(c)) if c == codes::BAD_COMMAND));
}

fn assert_closed_by_peer(e: SessionError, code: u32, reason: &str) {
    match e {
        SessionError::ClosedByPeer { code: c, reason: r } => {
            assert_eq!((c, r.as_str()), (code, reason));
        }
        other => panic!("expected close ({code}, {reason:?}), got {other:?}"),
    }
}

#[tokio::test]
async fn close_with_code_and_reason() {
    let (client, _server) = echo();
    let s = within(client.connect("/close/42/bye%20bye", None))
        .await
        .unwrap();
    assert_closed_by_peer(within(s.closed()).await, 42, "bye bye");

    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD close 300 so long\n").await.unwrap();
    assert_closed_by_peer(within(s.closed()).await, 300, "so long");
}

#[tokio::test]
async fn drain_by_path_and_command() {
    let (client, _server) = echo();
    let s = within(client.connect("/drain", None)).await.unwrap();
    within(s.draining()).await;
    assert!(s.peer_drained());
    // Still echoing after the drain.
    s.send_datagram(Bytes::from_static(b"still")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "still");

    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD drain\n").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"", "FIN acknowledges");
    assert!(s.peer_drained());
}

#[tokio::test]
async fn rejections_and_origin_check() {
    let (client, _server) = echo();
    assert_eq!(
        within(client.connect("/reject/418", None)).await.err(),
        Some(StatusCode::IM_A_TEAPOT)
    );
    // The mock speaks the latest dialect: an unknown path is 405.
    assert_eq!(
        within(client.connect("/nowhere", None)).await.err(),
        Some(StatusCode::METHOD_NOT_ALLOWED)
    );
    assert_eq!(
        within(client.connect("/origin-check", None)).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        within(client.connect("/origin-check", Some("https://evil.example")))
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    let s = within(client.connect("/origin-check", Some("https://allowed.example")))
        .await
        .unwrap();
    s.send_datagram(Bytes::from_static(b"hi")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "hi");

    let config = EchoConfig {
        allowed_origins: Some(vec!["https://a.example".into()]),
        ..EchoConfig::default()
    };
    let (client, _server) = echo_server(ServeOptions::default(), config);
    assert_eq!(
        within(client.connect("/echo", Some("https://b.example")))
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert!(within(client.connect("/echo", Some("https://a.example")))
        .await
        .is_ok());
}

#[tokio::test]
async fn callbacks_and_actions_are_reported() {
    let (client, server, mut ev) = recorder(ServeOptions::default());
    let s = within(client.connect("/rec", None)).await.unwrap();
    assert_eq!(next(&mut ev).await, Ev::Init("/rec".into()));

    // Stream data and FIN from the client; then the server FINs: Normal close.
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"abc").await.unwrap();
    send.finish().unwrap();
    assert_eq!(
        next(&mut ev).await,
        Ev::Stream(StreamId(0), StreamKind::Bidi, Bytes::from_static(b"abc"))
    );
    assert_eq!(next(&mut ev).await, Ev::Fin(StreamId(0), StreamKind::Bidi));
    s.send_datagram(Bytes::from_static(b"fin 0 done")).unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"done");
    assert_eq!(
        until(&mut ev, |e| matches!(e, Ev::Closed(..))).await,
        Ev::Closed(StreamId(0), CloseReason::Normal)
    );

    // Server-opened streams: the handler learns their IDs.
    s.send_datagram(Bytes::from_static(b"open uni")).unwrap();
    let opened = until(&mut ev, |e| matches!(e, Ev::Opened(..))).await;
    assert_eq!(opened, Ev::Opened(StreamKind::Uni, StreamId(3)));
    s.send_datagram(Bytes::from_static(b"send 3 pushed"))
        .unwrap();
    s.send_datagram(Bytes::from_static(b"close-stream 3"))
        .unwrap();
    let mut uni = within(s.accept_uni()).await.unwrap();
    assert_eq!(read_all(&mut uni).await.unwrap(), b"pushed");
    assert_eq!(
        until(&mut ev, |e| matches!(e, Ev::Closed(..))).await,
        Ev::Closed(StreamId(3), CloseReason::Normal)
    );

    s.send_datagram(Bytes::from_static(b"open bidi")).unwrap();
    assert_eq!(
        until(&mut ev, |e| matches!(e, Ev::Opened(..))).await,
        Ev::Opened(StreamKind::Bidi, StreamId(1))
    );
    let (mut send1, mut recv1) = within(s.accept_bi()).await.unwrap();

    // Peer reset and peer STOP_SENDING are reported with their codes.
    send1.reset(21).unwrap();
    assert_eq!(
        until(&mut ev, |e| matches!(e, Ev::Closed(..))).await,
        Ev::Closed(StreamId(1), CloseReason::Reset(21))
    );
    recv1.stop(22).unwrap();
    assert_eq!(
        until(&mut ev, |e| matches!(e, Ev::Closed(..))).await,
        Ev::Closed(StreamId(1), CloseReason::StopSending(22))
    );

    // Server reset / stop are seen by the client with their codes.
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"z").await.unwrap();
    until(&mut ev, |e| matches!(e, Ev::Stream(StreamId(4), ..))).await;
    s.send_datagram(Bytes::from_static(b"reset 4 31")).unwrap();
    s.send_datagram(Bytes::from_static(b"stop 4 32")).unwrap();
    let err = read_all(&mut recv).await.unwrap_err();
    assert!(matches!(err, StreamError::Reset(Some(31))), "{err:?}");
    assert_eq!(within(send.stopped()).await.unwrap(), Some(32));

    // Failed actions are reported, not fatal.
    s.send_datagram(Bytes::from_static(b"send 999 x")).unwrap();
    match until(&mut ev, |e| matches!(e, Ev::Failed(..))).await {
        Ev::Failed(Action::Send(StreamId(999), _), e) => assert!(e.contains("UnknownStream")),
        other => panic!("{other:?}"),
    }
    s.send_datagram(Bytes::from_static(b"send 4 y")).unwrap();
    match until(&mut ev, |e| matches!(e, Ev::Failed(..))).await {
        // Reset and stopped: both halves ended, so the stream is forgotten.
        Ev::Failed(Action::Send(StreamId(4), _), e) => assert!(e.contains("UnknownStream")),
        other => panic!("{other:?}"),
    }
    s.send_datagram(Bytes::from_static(b"big")).unwrap();
    match until(&mut ev, |e| matches!(e, Ev::Failed(..))).await {
        Ev::Failed(Action::SendDatagram(_), e) => assert!(e.contains("DatagramTooLarge")),
        other => panic!("{other:?}"),
    }
    // Sending on the peer's uni stream fails: no sending half.
    let mut u = s.open_uni().await.unwrap();
    u.write_all(b"u").await.unwrap();
    let ev_uni = until(&mut ev, |e| matches!(e, Ev::Stream(..))).await;
    assert_eq!(
        ev_uni,
        Ev::Stream(StreamId(2), StreamKind::Uni, Bytes::from_static(b"u"))
    );
    s.send_datagram(Bytes::from_static(b"send 2 nope")).unwrap();
    match until(&mut ev, |e| matches!(e, Ev::Failed(..))).await {
        Ev::Failed(Action::Send(StreamId(2), _), e) => assert!(e.contains("StreamClosed")),
        other => panic!("{other:?}"),
    }

    // Datagram echo still works: the session survived every failure.
    s.send_datagram(Bytes::from_static(b"alive?")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "alive?");

    // Peer drain, then peer close: reported, terminate gets the code and reason.
    s.drain().unwrap();
    until(&mut ev, |e| *e == Ev::Draining).await;
    s.close(77, "client done").unwrap();
    match until(&mut ev, |e| matches!(e, Ev::Terminate(_))).await {
        Ev::Terminate(r) => {
            assert!(
                r.contains("PeerClosed") && r.contains("77") && r.contains("client done"),
                "{r}"
            )
        }
        _ => unreachable!(),
    }
    drop(server);
}

#[tokio::test]
async fn stop_close_and_drain_actions() {
    let (client, _server, mut ev) = recorder(ServeOptions::default());
    let s = within(client.connect("/a", None)).await.unwrap();
    s.send_datagram(Bytes::from_static(b"drain")).unwrap();
    within(s.draining()).await;
    s.send_datagram(Bytes::from_static(b"stop")).unwrap();
    assert_closed_by_peer(within(s.closed()).await, 0, "");
    match until(&mut ev, |e| matches!(e, Ev::Terminate(_))).await {
        Ev::Terminate(r) => assert_eq!(r, "Normal"),
        _ => unreachable!(),
    }

    let s = within(client.connect("/b", None)).await.unwrap();
    s.send_datagram(Bytes::from_static(b"close 5 five"))
        .unwrap();
    assert_closed_by_peer(within(s.closed()).await, 5, "five");
    match until(&mut ev, |e| matches!(e, Ev::Terminate(_))).await {
        Ev::Terminate(r) => assert!(r.contains("Closed") && r.contains("five"), "{r}"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn panicking_handler_is_isolated() {
    let (client, server, mut ev) = recorder(ServeOptions::default());
    let a = within(client.connect("/a", None)).await.unwrap();
    let b = within(client.connect("/b", None)).await.unwrap();
    a.send_datagram(Bytes::from_static(b"panic")).unwrap();
    assert_closed_by_peer(
        within(a.closed()).await,
        codes::HANDLER_PANICKED,
        codes::HANDLER_PANICKED_REASON,
    );
    // The other session keeps working, and the listener keeps accepting.
    b.send_datagram(Bytes::from_static(b"still here")).unwrap();
    assert_eq!(within(b.recv_datagram()).await.unwrap(), "still here");
    let c = within(client.connect("/c", None)).await.unwrap();
    c.send_datagram(Bytes::from_static(b"new")).unwrap();
    assert_eq!(within(c.recv_datagram()).await.unwrap(), "new");
    // A panic in init is a 500, and the listener survives that too.
    assert_eq!(
        within(client.connect("/panic-init", None)).await.err(),
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(
        within(client.connect("/deny", None)).await.err(),
        Some(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS)
    );
    assert!(within(client.connect("/d", None)).await.is_ok());
    // No terminate for the panicked session.
    drop(server);
    while let Ok(e) = ev.try_recv() {
        if let Ev::Terminate(r) = e {
            assert!(!r.contains("Panic"), "{r}");
        }
    }
}

#[tokio::test]
async fn echo_panic_command_only_when_enabled() {
    let (client, _server) = echo();
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD panic\n").await.unwrap();
    assert_eq!(
        within(send.stopped()).await.unwrap(),
        Some(codes::BAD_COMMAND)
    );

    let config = EchoConfig {
        allow_panic_command: true,
        ..EchoConfig::default()
    };
    let (client, _server) = echo_server(ServeOptions::default(), config);
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD panic\n").await.unwrap();
    assert_closed_by_peer(within(s.closed()).await, 1, "handler panicked");
}

#[tokio::test]
async fn session_limit_rejects_with_429() {
    let options = ServeOptions {
        limits: Limits {
            max_sessions: 2,
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let (client, server) = echo_server(options, EchoConfig::default());
    let a = within(client.connect("/echo", None)).await.unwrap();
    let _b = within(client.connect("/echo", None)).await.unwrap();
    assert_eq!(
        within(client.connect("/echo", None)).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(server.active_sessions(), 2);
    a.close(0, "").unwrap();
    // The slot is released when the session task ends.
    within(async {
        while server.active_sessions() > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(within(client.connect("/echo", None)).await.is_ok());
}

#[tokio::test]
async fn stream_limit_refuses_extra_streams() {
    let options = ServeOptions {
        limits: Limits {
            max_streams_per_session: 1,
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let (client, _server) = echo_server(options, EchoConfig::default());
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send1, mut recv1) = s.open_bi().await.unwrap();
    let (mut send2, mut recv2) = s.open_bi().await.unwrap();
    send2.write_all(b"x").await.unwrap();
    let err = read_all(&mut recv2).await.unwrap_err();
    assert!(
        matches!(err, StreamError::Reset(Some(c)) if c == codes::STREAM_LIMIT_EXCEEDED),
        "{err:?}"
    );
    assert_eq!(
        within(send2.stopped()).await.unwrap(),
        Some(codes::STREAM_LIMIT_EXCEEDED)
    );
    // The first stream still works; once it is done a new one is accepted.
    send1.write_all(b"one").await.unwrap();
    send1.finish().unwrap();
    assert_eq!(read_all(&mut recv1).await.unwrap(), b"one");
    drop(recv1);
    let (mut send3, mut recv3) = s.open_bi().await.unwrap();
    send3.write_all(b"three").await.unwrap();
    send3.finish().unwrap();
    assert_eq!(read_all(&mut recv3).await.unwrap(), b"three");
}

#[tokio::test]
async fn data_limit_closes_session() {
    let options = ServeOptions {
        limits: Limits {
            max_data_per_session: Some(10),
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let (client, _server) = echo_server(options, EchoConfig::default());
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(b"0123456789").await.unwrap();
    send.write_all(b"!").await.unwrap();
    assert_closed_by_peer(
        within(s.closed()).await,
        codes::DATA_LIMIT_EXCEEDED,
        codes::DATA_LIMIT_REASON,
    );
}

#[tokio::test]
async fn uni_echo_is_bounded() {
    let config = EchoConfig {
        max_uni_echo: 8,
        ..EchoConfig::default()
    };
    let (client, _server) = echo_server(ServeOptions::default(), config);
    let s = within(client.connect("/echo", None)).await.unwrap();
    let mut uni = s.open_uni().await.unwrap();
    uni.write_all(b"123456789").await.unwrap();
    assert_eq!(
        within(uni.stopped()).await.unwrap(),
        Some(codes::ECHO_TOO_LARGE)
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_then_waits() {
    let (client, server) = echo();
    let s = within(client.connect("/echo", None)).await.unwrap();
    let stop = tokio::spawn(server.shutdown_with(Duration::from_secs(30)));
    within(s.draining()).await;
    // The session still works while draining.
    s.send_datagram(Bytes::from_static(b"d")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "d");
    s.close(0, "").unwrap();
    let stats = within(stop).await.unwrap();
    assert_eq!(stats.active_at_start, 1);
    assert_eq!(stats.forced, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_sessions_after_grace() {
    let (client, server, mut ev) = recorder(ServeOptions {
        shutdown_grace: Duration::from_secs(2),
        ..ServeOptions::default()
    });
    let s = client.connect("/stubborn", None).await.unwrap();
    let stats = server.shutdown().await;
    assert_eq!(stats.forced, 1);
    assert_closed_by_peer(s.closed().await, codes::SHUTDOWN, codes::SHUTDOWN_REASON);
    match until(&mut ev, |e| matches!(e, Ev::Terminate(_))).await {
        Ev::Terminate(r) => assert_eq!(r, "Shutdown"),
        _ => unreachable!(),
    }
    // No longer accepting.
    assert!(client.connect("/late", None).await.is_err());
}

#[tokio::test]
async fn many_concurrent_sessions() {
    let n = 500;
    let (client, server) = echo();
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let s: MockSession = client.connect("/echo", None).await.unwrap();
            let (mut send, mut recv) = s.open_bi().await.unwrap();
            let msg = format!("session {i}");
            send.write_all(msg.as_bytes()).await.unwrap();
            send.finish().unwrap();
            assert_eq!(read_all(&mut recv).await.unwrap(), msg.as_bytes());
            s
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(within(t).await.unwrap());
    }
    assert_eq!(server.active_sessions(), n);
    for s in &sessions {
        s.close(0, "").unwrap();
    }
    let stats = within(server.shutdown_with(Duration::from_secs(10))).await;
    assert_eq!(stats.forced, 0);
}

/// Regression: a stream the client reset used to keep the server's sending half open until
/// the session ended, so it counted against the stream limit forever. Now the server mirrors
/// the reset and forgets the stream.
#[tokio::test]
async fn reset_streams_do_not_leak_against_the_stream_limit() {
    let options = ServeOptions {
        limits: Limits {
            max_streams_per_session: 1,
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let (client, _server) = echo_server(options, EchoConfig::default());
    let s = within(client.connect("/echo", None)).await.unwrap();
    for round in 0..4u32 {
        let (mut send, mut recv) = s.open_bi().await.unwrap();
        send.write_all(b"x").await.unwrap();
        assert_eq!(within(recv.read_chunk(10)).await.unwrap().unwrap(), "x");
        send.reset(20 + round).unwrap();
        let err = read_all(&mut recv).await.unwrap_err();
        assert!(
            matches!(err, StreamError::Reset(Some(c)) if c == 20 + round),
            "round {round}: {err:?}"
        );
    }
}

/// The observation query over the runner: it waits (without polling) for the observed
/// session to end, even when asked before the server has processed the close.
#[tokio::test]
async fn observed_query_waits_for_the_session_end() {
    let config = EchoConfig::default();
    let log = config.observations.clone();
    let (client, _server) = echo_server(ServeOptions::default(), config);
    let s = within(client.connect("/echo", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD id\n").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"1\n");
    // Ask first: the query is accepted and waits.
    let q = within(client.connect("/observed/1", None)).await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    send.write_all(b"WT-CMD close 7 bye bye\n").await.unwrap();
    let mut uni = within(q.accept_uni()).await.unwrap();
    let reply = String::from_utf8(read_all(&mut uni).await.unwrap()).unwrap();
    assert!(
        reply.ends_with("terminate 1 closed 7 bye bye\n"),
        "{reply:?}"
    );
    let _ = read_all(&mut recv).await;
    let snap = log.snapshot(1).unwrap();
    assert!(snap.terminated);
    assert_eq!(snap.to_bytes(), reply);
    q.close(0, "").unwrap();
}
