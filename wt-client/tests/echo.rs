//! Every call, option, event and error against the wt-testserver echo handler, over HTTP/3
//! and HTTP/2.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{echo, Kind};
use wt_client::{
    Active, CloseReason, Connection, Error, Event, Frame, Msg, StreamData, StreamId, StreamKind,
    TransportKind,
};
use wt_core::{ConnectError, StreamError};

const T: Duration = Duration::from_secs(5);

async fn connect(srv: &common::Server, path: &str) -> Connection {
    wt_client::connect(&srv.url(path), srv.opts())
        .await
        .unwrap()
}

/// Reads the default channel until `n` bytes of default-stream data arrived.
async fn recv_binary(conn: &Connection, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match conn.recv_timeout(T).await.unwrap() {
            Msg::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// Reads a stream we opened to its end.
async fn stream_to_end(conn: &Connection, id: StreamId) -> Result<Vec<u8>, Error> {
    let mut got = Vec::new();
    loop {
        match conn.stream_recv_timeout(id, T).await? {
            StreamData::Data(c) => got.extend_from_slice(&c),
            StreamData::Fin(c) => {
                got.extend_from_slice(&c);
                return Ok(got);
            }
        }
    }
}

/// Collects a server-opened stream from the default channel: (id, data, closed reason).
async fn server_stream(conn: &Connection) -> (StreamId, Vec<u8>, CloseReason) {
    let mut id = None;
    let mut got = Vec::new();
    let mut fin = false;
    loop {
        match conn.recv_timeout(T).await.unwrap() {
            Msg::Stream(s, c) => {
                assert_eq!(*id.get_or_insert(s), s);
                got.extend_from_slice(&c);
            }
            Msg::StreamFin(s, c) => {
                assert_eq!(*id.get_or_insert(s), s);
                got.extend_from_slice(&c);
                fin = true;
            }
            Msg::StreamClosed(s, r) => {
                assert_eq!(*id.get_or_insert(s), s);
                assert!(fin || r != CloseReason::Normal);
                return (s, got, r);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

async fn hello(kind: Kind) {
    let srv = echo(kind);
    let conn = wt_client::connect(&srv.url("/echo"), srv.opts())
        .await
        .unwrap();
    conn.send(Frame::binary("Hello!")).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::Binary(Bytes::from("Hello!"))
    );
    conn.close().await.unwrap();
}

async fn default_stream_frames(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo?query=kept").await;
    conn.send(Frame::text("text,")).await.unwrap();
    conn.send(b"raw,".to_vec()).await.unwrap();
    conn.send(Bytes::from_static(b"bytes")).await.unwrap();
    assert_eq!(recv_binary(&conn, 14).await, b"text,raw,bytes");
    assert!(matches!(
        conn.send(Frame::Ping(Bytes::new())).await,
        Err(Error::UnsupportedFrame)
    ));
    assert!(matches!(
        conn.send(Frame::Pong(Bytes::new())).await,
        Err(Error::UnsupportedFrame)
    ));
    // Our FIN on the default stream is echoed as a FIN.
    let id = conn.default_stream_id();
    conn.send(Frame::stream(id, "end", true)).await.unwrap();
    assert_eq!(recv_binary(&conn, 3).await, b"end");
    assert_eq!(
        conn.recv_timeout(T).await.unwrap(),
        Msg::StreamFin(id, Bytes::new())
    );
    assert!(matches!(
        conn.send(Frame::binary("more")).await,
        Err(Error::Stream(StreamError::ClosedLocally))
    ));
}

async fn datagram_echo(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    // Datagrams may be lost over HTTP/3: retry a few times.
    let mut echoed = false;
    for i in 0..10 {
        let d = Bytes::from(format!("dgram {i}"));
        if i % 2 == 0 {
            conn.send_datagram(d.clone()).await.unwrap();
        } else {
            conn.send(Frame::datagram(d.clone())).await.unwrap();
        }
        match conn.recv_timeout(Duration::from_millis(500)).await {
            Ok(Msg::Datagram(got)) => {
                assert_eq!(got, d);
                echoed = true;
                break;
            }
            Err(Error::Timeout) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(echoed);
    // Written in place after the transport's headroom (a quarter stream ID over HTTP/3,
    // nothing over HTTP/2): the echo carries the payload alone.
    let room = conn.datagram_headroom();
    assert_eq!(room, if kind == Kind::H3 { 1 } else { 0 });
    let mut echoed = false;
    for i in 0..10u8 {
        let mut frame = bytes::BytesMut::new();
        frame.extend_from_slice(&vec![0xee; room]);
        frame.extend_from_slice(&[b'h', i]);
        conn.send_datagram_with_headroom(frame, room).await.unwrap();
        match conn.recv_timeout(Duration::from_millis(500)).await {
            Ok(Msg::Datagram(got)) if got.as_ref() == [b'h', i] => {
                echoed = true;
                break;
            }
            // A late echo of the first loop, or of an earlier try.
            Ok(Msg::Datagram(_)) | Err(Error::Timeout) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        echoed,
        "no echo of a datagram sent with {room} bytes of headroom"
    );
    assert!(matches!(
        conn.send_datagram_with_headroom(bytes::BytesMut::from(&b"ab"[..]), 3)
            .await,
        Err(Error::Session(wt_core::SessionError::DatagramHeadroom {
            headroom: 3,
            len: 2
        }))
    ));
    let too_big = vec![0u8; 70_000];
    assert!(matches!(
        conn.send_datagram(too_big).await,
        Err(Error::Session(
            wt_core::SessionError::DatagramTooLarge { .. }
        ))
    ));
}

async fn own_streams(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    assert!(id.is_bidi() && id.is_client_initiated());
    conn.stream_send(id, "ping ", false).await.unwrap();
    conn.send(Frame::stream(id, "pong", false)).await.unwrap();
    conn.close_stream(id).await.unwrap();
    assert_eq!(stream_to_end(&conn, id).await.unwrap(), b"ping pong");
    // Fully closed and drained: forgotten.
    assert!(matches!(conn.stream_recv(id).await, Err(Error::UnknownStream(i)) if i == id));
    assert!(matches!(
        conn.stream_send(StreamId(1000), "x", false).await,
        Err(Error::UnknownStream(StreamId(1000)))
    ));

    // A uni stream is answered by a server-opened uni stream, on the default channel.
    let uid = conn.open_stream(StreamKind::Uni).await.unwrap();
    assert!(!uid.is_bidi());
    assert!(matches!(
        conn.stream_recv(uid).await,
        Err(Error::UnknownStream(_))
    ));
    conn.stream_send(uid, "one way", true).await.unwrap();
    let (sid, data, reason) = server_stream(&conn).await;
    assert!(!sid.is_bidi() && !sid.is_client_initiated());
    assert_eq!(data, b"one way");
    assert_eq!(reason, CloseReason::Normal);
    assert!(matches!(
        conn.stream_recv(sid).await,
        Err(Error::UnknownStream(_))
    ));
}

async fn server_opened_uni(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/open-uni/3000").await;
    let (sid, data, reason) = server_stream(&conn).await;
    assert!(!sid.is_bidi());
    assert_eq!(data, pattern(3000));
    assert_eq!(reason, CloseReason::Normal);
}

async fn server_opened_bidi(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/open-bidi/500").await;
    let mut data = Vec::new();
    let sid = loop {
        match conn.recv_timeout(T).await.unwrap() {
            Msg::Stream(_, c) => data.extend_from_slice(&c),
            Msg::StreamFin(s, c) => {
                data.extend_from_slice(&c);
                break s;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(sid.is_bidi() && !sid.is_client_initiated());
    assert_eq!(data, pattern(500));
    // Server-opened streams are read on the default channel, not with stream_recv.
    assert!(matches!(
        conn.stream_recv(sid).await,
        Err(Error::UnknownStream(_))
    ));
    // We may answer on it (the server discards it); finishing completes the stream.
    conn.stream_send(sid, "ignored", true).await.unwrap();
    assert_eq!(
        conn.recv_timeout(T).await.unwrap(),
        Msg::StreamClosed(sid, CloseReason::Normal)
    );
}

async fn peer_reset_and_stop(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    conn.stream_send(id, "WT-CMD reset 77\n", false)
        .await
        .unwrap();
    assert!(matches!(
        stream_to_end(&conn, id).await,
        Err(Error::Stream(StreamError::Reset(Some(77))))
    ));

    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    conn.stream_send(id, "WT-CMD stop 55\n", false)
        .await
        .unwrap();
    // The STOP_SENDING arrives at some point: keep writing until a write reports it.
    let mut stopped = None;
    for _ in 0..10_000 {
        match conn.stream_send(id, "x", false).await {
            Ok(()) => tokio::task::yield_now().await,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(stopped, Some(Error::Stream(StreamError::Stopped(Some(55))))),
        "{stopped:?}"
    );
}

async fn our_reset_and_stop(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    conn.stream_send(id, "abc", false).await.unwrap();
    let first = conn.stream_recv_timeout(id, T).await.unwrap();
    assert!(matches!(first, StreamData::Data(_)));
    conn.stop_sending(id, 3).await.unwrap();
    conn.reset_stream(id, 4).await.unwrap();
    // Both directions are over: the stream is closed, or already forgotten.
    let after = conn.stream_send(id, "x", false).await;
    assert!(
        matches!(
            after,
            Err(Error::Stream(StreamError::ClosedLocally)) | Err(Error::UnknownStream(_))
        ),
        "{after:?}"
    );
    // Whatever was buffered before the stop stays readable; then the stop is reported.
    loop {
        match conn.stream_recv_timeout(id, T).await {
            Ok(StreamData::Data(_)) => continue,
            Err(Error::Stream(StreamError::ClosedLocally)) | Err(Error::UnknownStream(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        conn.reset_stream(StreamId(4000), 1).await,
        Err(Error::UnknownStream(_))
    ));
    assert!(matches!(
        conn.stop_sending(StreamId(4000), 1).await,
        Err(Error::UnknownStream(_))
    ));
    // The session is unaffected.
    conn.send(Frame::binary("still here")).await.unwrap();
    assert_eq!(recv_binary(&conn, 10).await, b"still here");
}

async fn timeouts_lose_nothing(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let short = Duration::from_millis(30);
    assert!(matches!(
        conn.recv_timeout(short).await,
        Err(Error::Timeout)
    ));
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    assert!(matches!(
        conn.stream_recv_timeout(id, short).await,
        Err(Error::Timeout)
    ));
    conn.send(Frame::binary("later")).await.unwrap();
    conn.stream_send(id, "later2", true).await.unwrap();
    assert_eq!(recv_binary(&conn, 5).await, b"later");
    assert_eq!(stream_to_end(&conn, id).await.unwrap(), b"later2");
    // The recv_timeout option.
    let conn = wt_client::connect(&srv.url("/echo"), srv.opts().recv_timeout(short))
        .await
        .unwrap();
    assert!(matches!(conn.recv().await, Err(Error::Timeout)));
}

async fn recv_busy(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let first = conn.recv();
    tokio::pin!(first);
    tokio::select! {
        biased;
        _ = &mut first => panic!("nothing sent yet"),
        r = conn.recv() => assert!(matches!(r, Err(Error::RecvBusy))),
    }
    conn.send(Frame::binary("x")).await.unwrap();
    assert_eq!(first.await.unwrap(), Msg::Binary(Bytes::from("x")));
}

async fn active_modes(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let mut events = conn.take_events().unwrap();
    assert!(conn.take_events().is_none());
    conn.set_active(Active::On).await.unwrap();
    assert!(matches!(conn.recv().await, Err(Error::ActiveMode)));
    conn.send(Frame::binary("abc")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match events.recv_timeout(T).await.unwrap() {
            Event::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"abc");
    // Events of our streams are tagged with the stream ID.
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    assert!(matches!(conn.stream_recv(id).await, Err(Error::ActiveMode)));
    conn.stream_send(id, "s", true).await.unwrap();
    assert_eq!(
        events.recv_timeout(T).await.unwrap(),
        Event::Stream(id, "s".into())
    );
    assert_eq!(
        events.recv_timeout(T).await.unwrap(),
        Event::StreamFin(id, Bytes::new())
    );

    // Once: a single event, then passive again.
    conn.set_active(Active::Once).await.unwrap();
    conn.send(Frame::binary("1")).await.unwrap();
    assert_eq!(
        events.recv_timeout(T).await.unwrap(),
        Event::Binary("1".into())
    );
    conn.send(Frame::binary("2")).await.unwrap();
    assert_eq!(recv_binary(&conn, 1).await, b"2");
    assert!(events.try_recv().is_none());

    // Hand the receiver to another task; the session's end is the last event.
    conn.set_active(Active::On).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = events.recv().await {
            seen.push(ev);
        }
        seen
    });
    let cmd = conn.open_stream(StreamKind::Bidi).await.unwrap();
    conn.stream_send(cmd, "WT-CMD close 42 bye now\n", false)
        .await
        .unwrap();
    let seen = tokio::time::timeout(T, reader).await.unwrap().unwrap();
    assert_eq!(
        seen.last(),
        Some(&Event::Closed {
            code: 42,
            reason: "bye now".into()
        })
    );
    let info = conn.info().await.unwrap();
    let close = info.close.unwrap();
    assert!(close.by_peer);
    assert_eq!((close.code, close.reason.as_str()), (42, "bye now"));
}

async fn peer_close_after_buffered_data(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/close/4242/see%20you").await;
    loop {
        match conn.recv_timeout(T).await {
            Ok(_) => continue,
            Err(Error::Closed { code, reason }) => {
                assert_eq!((code, reason.as_str()), (4242, "see you"));
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Every later call reports the close.
    assert!(matches!(
        conn.recv().await,
        Err(Error::Closed { code: 4242, .. })
    ));
    assert!(matches!(
        conn.send(Frame::binary("x")).await,
        Err(Error::Closed { code: 4242, .. })
    ));
    assert!(matches!(
        conn.open_stream(StreamKind::Bidi).await,
        Err(Error::Closed { .. })
    ));
    conn.close().await.unwrap();
}

async fn overflow(kind: Kind) {
    let srv = echo(kind);
    let opts = srv.opts().max_recv_buffer(16 * 1024);
    let conn = wt_client::connect(&srv.url("/open-uni/200000"), opts)
        .await
        .unwrap();
    // Nothing is read until the limit is passed (the driver closes the session); then
    // everything buffered is still readable, followed by the overflow error.
    tokio::time::timeout(T, async {
        while conn.info().await.unwrap().close.is_none() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let mut read = 0usize;
    let err = loop {
        match conn.recv_timeout(T).await {
            Ok(Msg::Stream(_, c)) => read += c.len(),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::RecvBufferOverflow), "{err}");
    assert!(read <= 16 * 1024);
    assert!(matches!(conn.recv().await, Err(Error::RecvBufferOverflow)));
    let info = conn.info().await.unwrap();
    assert_eq!(info.close.unwrap().code, wt_client::OVERFLOW_CLOSE_CODE);
    assert_eq!(info.unread_bytes, 0);
}

async fn overflow_active(kind: Kind) {
    let srv = echo(kind);
    let opts = srv.opts().max_recv_buffer(16 * 1024).active(Active::On);
    let conn = wt_client::connect(&srv.url("/open-uni/200000"), opts)
        .await
        .unwrap();
    let mut events = conn.take_events().unwrap();
    let last = loop {
        match events.recv_timeout(T).await.unwrap() {
            Event::Stream(..) => continue,
            other => break other,
        }
    };
    assert_eq!(last, Event::Error(Error::RecvBufferOverflow));
    assert!(events.recv().await.is_none());
}

async fn info(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    conn.send(Frame::binary("12345")).await.unwrap();
    recv_binary(&conn, 5).await;
    conn.open_stream(StreamKind::Uni).await.unwrap();
    let info = conn.info().await.unwrap();
    let want = match kind {
        Kind::H3 => TransportKind::Http3,
        Kind::H2 => TransportKind::Http2,
    };
    assert_eq!(info.transport, want);
    assert_eq!(conn.transport(), want);
    assert_eq!(info.dialect.transport(), want);
    assert_eq!(info.default_stream, conn.default_stream_id());
    assert_eq!(info.session.peer_addr, srv.addr);
    assert!(info.stats.bytes_sent >= 5, "{:?}", info.stats);
    assert!(info.stats.bytes_received >= 5, "{:?}", info.stats);
    assert!(info.stats.bidi_opened_local >= 1);
    assert!(info.stats.uni_opened_local >= 1);
    assert!(info.close.is_none());
    assert_eq!(info.active, Active::Off);
}

async fn connect_errors(kind: Kind) {
    let srv = echo(kind);
    let err = wt_client::connect(&srv.url("/reject/403"), srv.opts())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connect(ConnectError::Rejected { status }) if status == 403),
        "{err}"
    );
    // Without the certificate hash, the self-signed certificate is refused.
    let mut opts = srv.opts();
    opts.tls.cert_hashes.clear();
    let err = wt_client::connect(&srv.url("/echo"), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err}");
    // Verification off: accepted.
    let mut opts = srv.opts();
    opts.tls.cert_hashes.clear();
    opts.tls.insecure = true;
    wt_client::connect(&srv.url("/echo"), opts).await.unwrap();
    // Header, origin and subprotocol options reach the server.
    let err = wt_client::connect(&srv.url("/origin-check"), srv.opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(ConnectError::Rejected { status }) if status == 403));
    let opts = srv
        .opts()
        .origin("https://allowed.example")
        .header("x-extra", "1")
        .protocol("wt-test");
    wt_client::connect(&srv.url("/origin-check"), opts)
        .await
        .unwrap();
}

async fn compat_modes(kind: Kind) {
    use wt_core::{CompatMode, Dialect};
    let srv = echo(kind);
    let conn = wt_client::connect(&srv.url("/echo"), srv.opts().compat(CompatMode::Latest))
        .await
        .unwrap();
    let d = conn.info().await.unwrap().dialect;
    assert_eq!(
        d,
        match kind {
            Kind::H3 => Dialect::H3Latest,
            Kind::H2 => Dialect::H2Latest,
        }
    );
    if kind == Kind::H3 {
        let conn = wt_client::connect(
            &srv.url("/echo"),
            srv.opts().compat(CompatMode::LegacyBrowserCompat),
        )
        .await
        .unwrap();
        assert_eq!(conn.info().await.unwrap().dialect, Dialect::H3Draft02);
        conn.send(Frame::binary("legacy")).await.unwrap();
        assert_eq!(recv_binary(&conn, 6).await, b"legacy");
    }
}

async fn many_streams(kind: Kind) {
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    let size = if cfg!(debug_assertions) {
        50_000
    } else {
        500_000
    };
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
            let data = Bytes::from(vec![i; size]);
            let writer = {
                let conn = conn.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    for chunk in data.chunks(8192) {
                        conn.stream_send(id, Bytes::copy_from_slice(chunk), false)
                            .await
                            .unwrap();
                    }
                    conn.close_stream(id).await.unwrap();
                })
            };
            let got = stream_to_end(&conn, id).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got, data);
        }));
    }
    // The default stream keeps working alongside.
    conn.send(Frame::binary("side")).await.unwrap();
    assert_eq!(recv_binary(&conn, 4).await, b"side");
    for t in tasks {
        t.await.unwrap();
    }
}

both!(
    hello,
    default_stream_frames,
    datagram_echo,
    own_streams,
    server_opened_uni,
    server_opened_bidi,
    peer_reset_and_stop,
    our_reset_and_stop,
    timeouts_lose_nothing,
    recv_busy,
    active_modes,
    peer_close_after_buffered_data,
    overflow,
    overflow_active,
    info,
    connect_errors,
    compat_modes,
    many_streams,
);

#[tokio::test]
async fn invalid_requests_fail_before_any_io() {
    use wt_core::RequestError;
    let o = wt_client::Options::default;
    let cases = [
        (
            "http://127.0.0.1:1/",
            RequestError::UnsupportedScheme("http".into()),
        ),
        (
            "https://127.0.0.1:1/a\r\nb",
            RequestError::ForbiddenCharacter {
                field: "path",
                ch: '\r',
            },
        ),
        (
            "https://bad\0host/",
            RequestError::ForbiddenCharacter {
                field: "host",
                ch: '\0',
            },
        ),
    ];
    for (url, want) in cases {
        match wt_client::connect(url, o()).await {
            Err(Error::Connect(ConnectError::InvalidRequest(e))) => assert_eq!(e, want),
            other => panic!("{url}: {other:?}"),
        }
    }
    let err = wt_client::connect("https://127.0.0.1:1/", o().header("x", "a\nb"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Connect(ConnectError::InvalidRequest(
            RequestError::ForbiddenCharacter {
                field: "header",
                ..
            }
        ))
    ));
}

/// Megabytes echoed on the default stream with the writer, the reader and the driver on two
/// worker threads: the reader reads the stream itself while it waits, the driver while it
/// does not; every byte arrives once, in order, and the FIN after the data.
async fn bulk_echo_intact(kind: Kind) {
    const TOTAL: usize = 16 << 20;
    let srv = echo(kind);
    let conn = connect(&srv, "/echo").await;
    // Not periodic, so a chunk out of place cannot go unnoticed.
    let mut x = 0x9e37_79b9_u32;
    let data: Bytes = (0..TOTAL)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into();
    let writer = {
        let (conn, data) = (conn.clone(), data.clone());
        tokio::spawn(async move {
            // Uneven frame sizes, so chunk edges fall everywhere.
            let mut at = 0;
            for n in [1usize, 1000, 65_536, 7, 20_000].into_iter().cycle() {
                let end = (at + n).min(TOTAL);
                conn.send(data.slice(at..end)).await.unwrap();
                at = end;
                if at == TOTAL {
                    break;
                }
            }
            let id = conn.default_stream_id();
            conn.send(Frame::stream(id, "", true)).await.unwrap();
        })
    };
    let got = recv_binary(&conn, TOTAL).await;
    assert!(got == data, "echo differs");
    assert_eq!(
        conn.recv_timeout(T).await.unwrap(),
        Msg::StreamFin(conn.default_stream_id(), Bytes::new())
    );
    writer.await.unwrap();
    assert_eq!(conn.unread_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_echo_intact_h3() {
    bulk_echo_intact(Kind::H3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_echo_intact_h2() {
    bulk_echo_intact(Kind::H2).await
}
