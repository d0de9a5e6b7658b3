//! Driver tests against the in-memory mock session (deterministic, no sockets).

use std::time::Duration;

use bytes::Bytes;
use wt_core::testsuite::mock::{IncomingStream, MockConfig, MockSession, Side};
use wt_core::{RecvStream, SendStream, Session, SessionError, StreamError};

use crate::*;

async fn setup(opts: Options) -> (Connection, MockSession, IncomingStream) {
    setup_with(MockConfig::default(), opts).await
}

/// Like [`setup`] over a mock transport configured with `cfg`.
async fn setup_with(cfg: MockConfig, opts: Options) -> (Connection, MockSession, IncomingStream) {
    let (s, peer) = MockSession::pair(cfg);
    let conn = spawn::start(s, &opts).await.unwrap();
    let default = peer.accept_any().await.unwrap();
    (conn, peer, default)
}

/// A mock transport whose streams buffer only `window` bytes each way.
fn small_window(window: usize) -> MockConfig {
    MockConfig {
        stream_window: window,
        ..MockConfig::default()
    }
}

/// Waits for the session's end, as the peer sees it: (closed by the client, code, reason).
async fn peer_closed(peer: &MockSession) -> (bool, u32, String) {
    peer.closed().await;
    let record = peer.close_record().expect("closed() resolved");
    (record.by == Side::Client, record.code, record.reason)
}

/// Reads everything the peer receives on a stream until FIN.
async fn read_all(r: &mut impl RecvStream) -> Result<Vec<u8>, StreamError> {
    let mut out: Vec<u8> = Vec::new();
    while let Some(c) = r.read_chunk(1 << 20).await? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Waits (yielding, never sleeping) until the driver has buffered `n` unread bytes.
async fn wait_unread(conn: &Connection, n: usize) {
    while conn.unread_bytes() < n {
        tokio::task::yield_now().await;
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Writes `data` on the send half of a stream as the peer.
async fn peer_write(s: &mut IncomingStream, data: &'static str) {
    s.send
        .as_mut()
        .expect("a stream with a send half")
        .write_chunk(b(data))
        .await
        .unwrap();
}

#[tokio::test]
async fn default_stream_echo_and_frames() {
    let (conn, _peer, mut d) = setup(Options::default()).await;
    conn.send(Frame::binary("Hello!")).await.unwrap();
    conn.send(Frame::text(" text")).await.unwrap();
    conn.send(b"raw".to_vec()).await.unwrap();
    conn.send(Bytes::from_static(b"!")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 15 {
        got.extend_from_slice(&d.recv.read_chunk(100).await.unwrap().unwrap());
    }
    assert_eq!(got, b"Hello! textraw!");
    let ds = d.send.as_mut().unwrap();
    ds.write_chunk(b("Hello!")).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::Binary(Bytes::from("Hello!"))
    );
    assert!(matches!(
        conn.send(Frame::Ping(b("x"))).await,
        Err(Error::UnsupportedFrame)
    ));
    assert!(matches!(
        conn.send(Frame::Pong(b("x"))).await,
        Err(Error::UnsupportedFrame)
    ));
    // The peer ends the default stream.
    ds.finish().unwrap();
    let id = conn.default_stream_id();
    assert_eq!(conn.recv().await.unwrap(), Msg::StreamFin(id, Bytes::new()));
}

#[tokio::test]
async fn datagrams_both_ways() {
    let (conn, peer, _d) = setup(Options::default()).await;
    conn.send_datagram("d1").await.unwrap();
    conn.send(Frame::datagram("d2")).await.unwrap();
    assert_eq!(peer.recv_datagram().await.unwrap(), b("d1"));
    assert_eq!(peer.recv_datagram().await.unwrap(), b("d2"));
    peer.send_datagram(b("back")).unwrap();
    assert_eq!(conn.recv().await.unwrap(), Msg::Datagram(b("back")));
    let err = conn.send_datagram(vec![0u8; 5000]).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Session(SessionError::DatagramTooLarge { size: 5000, .. })
    ));
    assert_eq!(conn.info().await.unwrap().stats.datagrams_sent, 2);
}

#[tokio::test]
async fn datagrams_from_many_tasks() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let per_task = 50usize;
    let tasks: Vec<_> = (0..4u8)
        .map(|t| {
            let conn = conn.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    conn.send_datagram(vec![t, i as u8]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 * per_task {
        let d = peer.recv_datagram().await.unwrap();
        assert!(seen.insert(d.to_vec()));
    }
    assert_eq!(
        conn.info().await.unwrap().stats.datagrams_sent,
        4 * per_task as u64
    );
}

#[tokio::test]
async fn datagram_racing_close_reports_the_close() {
    let (conn, _peer, _d) = setup(Options::default()).await;
    let other = conn.clone();
    // The close is queued to the driver first; the datagram, refused by the closed session,
    // is answered by the driver after it, with the close.
    let (closed, sent) = tokio::join!(conn.close_with(9, "racing"), async {
        tokio::task::yield_now().await;
        other.send_datagram("late").await
    });
    closed.unwrap();
    assert!(
        matches!(sent, Ok(()) | Err(Error::Closed { code: 9, .. })),
        "{sent:?}"
    );
    assert!(matches!(
        other.send_datagram("x").await,
        Err(Error::Closed { code: 9, .. })
    ));
}

#[tokio::test]
async fn server_opened_streams_arrive_on_the_default_channel() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let mut uni = peer.open_uni().await.unwrap();
    let uid = uni.id();
    uni.write_chunk(b("abc")).await.unwrap();
    uni.finish().unwrap();
    assert_eq!(conn.recv().await.unwrap(), Msg::Stream(uid, b("abc")));
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamFin(uid, Bytes::new())
    );
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamClosed(uid, CloseReason::Normal)
    );
    // Gone now: nothing to send on, nothing to stream_recv.
    assert!(matches!(conn.stream_recv(uid).await, Err(Error::UnknownStream(i)) if i == uid));
    assert!(matches!(
        conn.stream_send(uid, "x", false).await,
        Err(Error::UnknownStream(_))
    ));

    let (mut ps, mut pr) = peer.open_bi().await.unwrap();
    let bid = ps.id();
    ps.write_chunk(b("q")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Msg::Stream(bid, b("q")));
    assert!(matches!(
        conn.stream_recv(bid).await,
        Err(Error::UnknownStream(_))
    ));
    conn.stream_send(bid, "answer", true).await.unwrap();
    assert_eq!(read_all(&mut pr).await.unwrap(), b"answer");
    ps.finish().unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamFin(bid, Bytes::new())
    );
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamClosed(bid, CloseReason::Normal)
    );
}

#[tokio::test]
async fn server_stream_reset_and_stop_sending() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let mut uni = peer.open_uni().await.unwrap();
    let uid = uni.id();
    uni.reset(5).unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamClosed(uid, CloseReason::Reset(5))
    );
    let (_ps, mut pr) = peer.open_bi().await.unwrap();
    let bid = pr.id();
    pr.stop(6).unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Msg::StreamClosed(bid, CloseReason::StopSending(6))
    );
    assert!(matches!(
        conn.stream_send(bid, "x", false).await,
        Err(Error::Stream(StreamError::Stopped(Some(6))))
    ));
}

#[tokio::test]
async fn own_streams() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    assert!(id.is_bidi() && id.is_client_initiated());
    let mut ps = peer.accept_any().await.unwrap();
    assert_eq!(ps.id, id);
    conn.stream_send(id, "ping", false).await.unwrap();
    conn.send(Frame::stream(id, "!", true)).await.unwrap();
    assert_eq!(read_all(&mut ps.recv).await.unwrap(), b"ping!");
    assert!(matches!(
        conn.stream_send(id, "late", false).await,
        Err(Error::Stream(StreamError::ClosedLocally))
    ));
    let s = ps.send.as_mut().unwrap();
    s.write_chunk(b("pong")).await.unwrap();
    s.finish().unwrap();
    assert_eq!(
        conn.stream_recv(id).await.unwrap(),
        StreamData::Data(b("pong"))
    );
    assert_eq!(
        conn.stream_recv(id).await.unwrap(),
        StreamData::Fin(Bytes::new())
    );
    // Both directions over and drained: forgotten.
    assert!(matches!(
        conn.stream_recv(id).await,
        Err(Error::UnknownStream(_))
    ));

    let uid = conn.open_stream(StreamKind::Uni).await.unwrap();
    assert!(!uid.is_bidi());
    let mut pu = peer.accept_any().await.unwrap();
    assert!(matches!(
        conn.stream_recv(uid).await,
        Err(Error::UnknownStream(_))
    ));
    conn.stream_send(uid, "one-way", false).await.unwrap();
    conn.close_stream(uid).await.unwrap();
    assert_eq!(read_all(&mut pu.recv).await.unwrap(), b"one-way");
    assert!(matches!(
        conn.stream_send(StreamId(400), "x", false).await,
        Err(Error::UnknownStream(StreamId(400)))
    ));
    assert!(matches!(
        conn.reset_stream(StreamId(400), 1).await,
        Err(Error::UnknownStream(_))
    ));
    assert!(matches!(
        conn.stop_sending(StreamId(400), 1).await,
        Err(Error::UnknownStream(_))
    ));
}

#[tokio::test]
async fn own_stream_reset_stop_and_peer_reset() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    let mut ps = peer.accept_any().await.unwrap();
    conn.stream_send(id, "part", false).await.unwrap();
    conn.reset_stream(id, 9).await.unwrap();
    assert_eq!(ps.recv.read_chunk(10).await.unwrap(), Some(b("part")));
    assert!(matches!(
        ps.recv.read_chunk(10).await,
        Err(StreamError::Reset(Some(9)))
    ));
    // The peer resets its side: stream_recv reports it (after buffered data).
    let s = ps.send.as_mut().unwrap();
    s.write_chunk(b("x")).await.unwrap();
    s.reset(11).unwrap();
    assert_eq!(
        conn.stream_recv(id).await.unwrap(),
        StreamData::Data(b("x"))
    );
    assert!(matches!(
        conn.stream_recv(id).await,
        Err(Error::Stream(StreamError::Reset(Some(11))))
    ));

    let id2 = conn.open_stream(StreamKind::Bidi).await.unwrap();
    let mut ps2 = peer.accept_any().await.unwrap();
    conn.stop_sending(id2, 13).await.unwrap();
    let s2 = ps2.send.as_mut().unwrap();
    assert_eq!(s2.stopped().await.unwrap(), Some(13));
    assert!(matches!(
        conn.stream_recv(id2).await,
        Err(Error::Stream(StreamError::ClosedLocally))
    ));
}

#[tokio::test(start_paused = true)]
async fn timeouts_lose_nothing() {
    let (conn, peer, mut d) = setup(Options::default()).await;
    assert!(matches!(
        conn.recv_timeout(Duration::from_millis(50)).await,
        Err(Error::Timeout)
    ));
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    let mut ps = peer.accept_any().await.unwrap();
    assert!(matches!(
        conn.stream_recv_timeout(id, Duration::from_millis(50))
            .await,
        Err(Error::Timeout)
    ));
    peer_write(&mut d, "late").await;
    peer_write(&mut ps, "late2").await;
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("late")));
    assert_eq!(
        conn.stream_recv(id).await.unwrap(),
        StreamData::Data(b("late2"))
    );

    // The recv_timeout option applies to recv and stream_recv.
    let (conn, _peer, _d) = setup(Options::default().recv_timeout(Duration::from_secs(3))).await;
    assert!(matches!(conn.recv().await, Err(Error::Timeout)));
}

#[tokio::test]
async fn dropped_recv_future_loses_nothing() {
    use futures_util::FutureExt;
    let (conn, _peer, mut d) = setup(Options::default()).await;
    // A recv polled while nothing is there, then dropped: it leaves no waiter behind.
    assert!(conn.recv().now_or_never().is_none());
    peer_write(&mut d, "keep").await;
    wait_unread(&conn, 4).await;
    // A recv dropped before it completed took nothing.
    for _ in 0..3 {
        tokio::select! {
            biased;
            _ = std::future::ready(()) => {}
            _ = conn.recv() => unreachable!("the ready branch wins"),
        }
    }
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("keep")));
    assert_eq!(conn.unread_bytes(), 0);
}

#[tokio::test]
async fn dropped_stream_recv_future_loses_nothing() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    conn.stream_send(id, b("x"), false).await.unwrap();
    let (mut send, _recv) = peer.accept_bi().await.unwrap();
    send.write_chunk(b("kept")).await.unwrap();
    wait_unread(&conn, 4).await;
    // The driver answers a stream_recv through a reply; one dropped after the answer came
    // hands the item back.
    for _ in 0..3 {
        tokio::select! {
            biased;
            _ = conn.stream_recv(id) => {}
            _ = std::future::ready(()) => {}
        }
    }
    assert_eq!(
        conn.stream_recv(id).await.unwrap(),
        StreamData::Data(b("kept"))
    );
}

#[tokio::test]
async fn second_reader_is_busy() {
    let (conn, _peer, mut d) = setup(Options::default()).await;
    let first = conn.recv();
    tokio::pin!(first);
    tokio::select! {
        biased;
        _ = &mut first => panic!("nothing to read yet"),
        r = conn.recv() => assert!(matches!(r, Err(Error::RecvBusy))),
    }
    peer_write(&mut d, "one").await;
    assert_eq!(first.await.unwrap(), Msg::Binary(b("one")));
}

/// The driver wakes a waiting `recv` once it has released the receive lock: a reader woken
/// under it could come up on another thread only to block on that lock.
#[tokio::test]
async fn waiting_recv_is_woken_outside_the_receive_lock() {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Wake, Waker};

    struct Probe {
        shared: Arc<crate::driver::Shared>,
        /// Whether the receive lock was free, at each wake-up.
        free: Mutex<Vec<bool>>,
        woken: tokio::sync::Notify,
    }
    impl Wake for Probe {
        fn wake(self: Arc<Self>) {
            let free = self.shared.rx.try_lock().is_ok();
            self.free.lock().unwrap().push(free);
            self.woken.notify_one();
        }
    }

    let (conn, _peer, mut d) = setup(Options::default()).await;
    let probe = Arc::new(Probe {
        shared: conn.shared().clone(),
        free: Mutex::new(Vec::new()),
        woken: tokio::sync::Notify::new(),
    });
    let waker = Waker::from(probe.clone());
    let mut recv = Box::pin(conn.recv());
    assert!(recv
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    peer_write(&mut d, "one").await;
    probe.woken.notified().await;
    assert_eq!(*probe.free.lock().unwrap(), [true]);
    assert_eq!(recv.await.unwrap(), Msg::Binary(b("one")));
}

#[tokio::test]
async fn active_mode_forwards_in_order_and_switches() {
    let (conn, peer, mut d) = setup(Options::default()).await;
    let mut events = conn.take_events().unwrap();
    assert!(conn.take_events().is_none());
    let ds = d.send.as_mut().unwrap();
    for s in ["1", "2", "3"] {
        ds.write_chunk(b(s)).await.unwrap();
    }
    wait_unread(&conn, 3).await;
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("1")));
    conn.set_active(Active::On).await.unwrap();
    assert!(matches!(conn.recv().await, Err(Error::ActiveMode)));
    assert_eq!(events.recv().await.unwrap(), Event::Binary(b("2")));
    assert_eq!(events.recv().await.unwrap(), Event::Binary(b("3")));
    peer.send_datagram(b("dg")).unwrap();
    assert_eq!(events.recv().await.unwrap(), Event::Datagram(b("dg")));
    // Streams we opened are tagged with their ID.
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    let mut ps = peer.accept_any().await.unwrap();
    ps.send.as_mut().unwrap().write_chunk(b("s")).await.unwrap();
    ps.send.as_mut().unwrap().reset(4).unwrap();
    assert_eq!(events.recv().await.unwrap(), Event::Stream(id, b("s")));
    assert_eq!(
        events.recv().await.unwrap(),
        Event::StreamClosed(id, CloseReason::Reset(4))
    );
    assert!(matches!(conn.stream_recv(id).await, Err(Error::ActiveMode)));

    // Once: one event, then passive again.
    conn.set_active(Active::Off).await.unwrap();
    ds.write_chunk(b("4")).await.unwrap();
    ds.write_chunk(b("5")).await.unwrap();
    wait_unread(&conn, 2).await;
    conn.set_active(Active::Once).await.unwrap();
    assert_eq!(events.recv().await.unwrap(), Event::Binary(b("4")));
    assert_eq!(conn.info().await.unwrap().active, Active::Off);
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("5")));
    assert!(events.try_recv().is_none());

    // Hand the receiver to another task (controlling_process).
    conn.set_active(Active::On).await.unwrap();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = events.recv().await {
            seen.push(ev);
        }
        seen
    });
    let before = conn.info().await.unwrap().stats.bytes_received;
    ds.write_chunk(b("6")).await.unwrap();
    // The driver has taken "6" in before the peer closes (a close may race unread data).
    while conn.info().await.unwrap().stats.bytes_received == before {
        tokio::task::yield_now().await;
    }
    peer.close(3, "done").unwrap();
    let seen = task.await.unwrap();
    assert_eq!(
        seen,
        vec![
            Event::Binary(b("6")),
            Event::Closed {
                code: 3,
                reason: "done".into()
            }
        ]
    );
    assert_eq!(conn.unread_bytes(), 0);
}

#[tokio::test]
async fn switching_to_active_fails_waiting_readers() {
    let (conn, _peer, _d) = setup(Options::default()).await;
    // join! polls in order: the recv is registered before the switch.
    let (waiting, switched) = tokio::join!(conn.recv(), conn.set_active(Active::On));
    switched.unwrap();
    assert!(matches!(waiting, Err(Error::ActiveMode)));
}

#[tokio::test]
async fn event_receiver_comes_back_when_dropped() {
    let (conn, _peer, mut d) = setup(Options::default().active(Active::On)).await;
    let events = conn.take_events().unwrap();
    peer_write(&mut d, "kept").await;
    drop(events);
    let mut again = conn.take_events().unwrap();
    assert_eq!(again.recv().await.unwrap(), Event::Binary(b("kept")));
}

#[tokio::test]
async fn overflow_closes_and_keeps_buffered_data() {
    let limit = 2 * (100 + ITEM_OVERHEAD) + 10;
    let (conn, peer, mut d) = setup(Options::default().max_recv_buffer(limit)).await;
    let id = conn.open_stream(StreamKind::Bidi).await.unwrap();
    let _ps = peer.accept_any().await.unwrap();
    // A reader waiting on another channel gets the overflow at once.
    let waiting = conn.stream_recv(id);
    tokio::pin!(waiting);
    let ds = d.send.as_mut().unwrap();
    tokio::select! {
        biased;
        _ = &mut waiting => panic!("nothing to read"),
        r = async {
            for _ in 0..3 {
                ds.write_chunk(Bytes::from(vec![7u8; 100])).await.unwrap();
            }
        } => r,
    }
    assert!(matches!(waiting.await, Err(Error::RecvBufferOverflow)));
    let (by_client, code, _) = peer_closed(&peer).await;
    assert!(by_client);
    assert_eq!(code, OVERFLOW_CLOSE_CODE);
    for _ in 0..2 {
        assert!(matches!(conn.recv().await.unwrap(), Msg::Binary(c) if c.len() == 100));
    }
    assert!(matches!(conn.recv().await, Err(Error::RecvBufferOverflow)));
    assert!(matches!(conn.recv().await, Err(Error::RecvBufferOverflow)));
    assert!(matches!(
        conn.send_datagram("x").await,
        Err(Error::RecvBufferOverflow)
    ));
    let info = conn.info().await.unwrap();
    assert_eq!(info.close.unwrap().code, OVERFLOW_CLOSE_CODE);
    assert_eq!(info.unread_bytes, 0);
}

#[tokio::test]
async fn overflow_in_active_mode_counts_undelivered_events() {
    let limit = 3 * (10 + ITEM_OVERHEAD);
    let (conn, peer, mut d) =
        setup(Options::default().max_recv_buffer(limit).active(Active::On)).await;
    let ds = d.send.as_mut().unwrap();
    for _ in 0..4 {
        ds.write_chunk(Bytes::from(vec![1u8; 10])).await.unwrap();
    }
    peer_closed(&peer).await;
    let mut events = conn.take_events().unwrap();
    for _ in 0..3 {
        assert!(matches!(events.recv().await.unwrap(), Event::Binary(_)));
    }
    assert_eq!(
        events.recv().await.unwrap(),
        Event::Error(Error::RecvBufferOverflow)
    );
    assert!(events.recv().await.is_none());
}

#[tokio::test]
async fn close_codes_both_ways() {
    let (conn, peer, mut d) = setup(Options::default()).await;
    let long = "x".repeat(1025);
    assert!(matches!(
        conn.close_with(1, &long).await,
        Err(Error::InvalidReason(1025))
    ));
    // Nothing was sent: the session still works.
    conn.send(Frame::binary("still")).await.unwrap();
    assert_eq!(d.recv.read_chunk(10).await.unwrap(), Some(b("still")));
    peer_write(&mut d, "buffered").await;
    wait_unread(&conn, 8).await;
    conn.close_with(4000, "bye").await.unwrap();
    assert_eq!(peer_closed(&peer).await, (true, 4000, "bye".to_owned()));
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("buffered")));
    assert!(matches!(
        conn.recv().await,
        Err(Error::Closed { code: 4000, ref reason }) if reason == "bye"
    ));
    assert!(matches!(
        conn.send(Frame::binary("x")).await,
        Err(Error::Closed { .. })
    ));
    assert!(matches!(
        conn.open_stream(StreamKind::Uni).await,
        Err(Error::Closed { .. })
    ));
    assert!(matches!(
        conn.send_datagram("x").await,
        Err(Error::Closed { code: 4000, .. })
    ));
    // After the end the session's error wins over the size check, as before.
    assert!(matches!(
        conn.send(Frame::datagram(vec![0u8; 5000])).await,
        Err(Error::Closed { code: 4000, .. })
    ));
    conn.close().await.unwrap(); // idempotent
    let close = conn.info().await.unwrap().close.unwrap();
    assert_eq!(
        close,
        CloseInfo {
            code: 4000,
            reason: "bye".into(),
            by_peer: false
        }
    );
}

#[tokio::test]
async fn peer_close_is_seen_after_buffered_data() {
    let (conn, peer, mut d) = setup(Options::default()).await;
    peer_write(&mut d, "last").await;
    wait_unread(&conn, 4).await;
    peer.close(7, "later").unwrap();
    // Closed only after the buffer is drained.
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("last")));
    assert!(matches!(
        conn.recv().await,
        Err(Error::Closed { code: 7, ref reason }) if reason == "later"
    ));
    let close = conn.info().await.unwrap().close.unwrap();
    assert!(close.by_peer);
    assert_eq!((close.code, close.reason.as_str()), (7, "later"));
    assert!(matches!(
        conn.send_datagram("x").await,
        Err(Error::Closed { .. })
    ));
}

#[tokio::test]
async fn dropping_every_handle_closes_the_session() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let other = conn.clone();
    drop(conn);
    other.send(Frame::binary("alive")).await.unwrap();
    drop(other);
    assert_eq!(peer_closed(&peer).await, (true, 0, String::new()));
}

#[tokio::test]
async fn info_reports_the_session() {
    let (conn, _peer, _d) = setup(Options::default()).await;
    conn.open_stream(StreamKind::Uni).await.unwrap();
    let info = conn.info().await.unwrap();
    assert_eq!(info.transport, TransportKind::Http3);
    assert_eq!(info.dialect, wt_core::Dialect::H3Latest);
    assert_eq!(info.default_stream, conn.default_stream_id());
    assert_eq!(info.stats.bidi_opened_local, 1);
    assert_eq!(info.stats.uni_opened_local, 1);
    assert_eq!(info.open_streams, 2);
    assert!(info.close.is_none());
    assert_eq!(conn.transport(), TransportKind::Http3);
    let _ = format!("{conn:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_interleave() {
    let (conn, peer, _d) = setup(Options::default()).await;
    let n = 20;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(conn.open_stream(StreamKind::Bidi).await.unwrap());
    }
    let server = tokio::spawn(async move {
        for _ in 0..n {
            let mut s = peer.accept_any().await.unwrap();
            tokio::spawn(async move {
                let data = read_all(&mut s.recv).await.unwrap();
                let send = s.send.as_mut().unwrap();
                send.write_chunk(data.into()).await.unwrap();
                send.finish().unwrap();
            });
        }
        peer
    });
    let mut tasks = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let msg = format!("stream {i}");
            conn.stream_send(id, msg.clone(), true).await.unwrap();
            let mut got = Vec::new();
            loop {
                match conn.stream_recv(id).await.unwrap() {
                    StreamData::Data(c) => got.extend_from_slice(&c),
                    StreamData::Fin(c) => {
                        got.extend_from_slice(&c);
                        break;
                    }
                }
            }
            assert_eq!(got, msg.as_bytes());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _peer = server.await.unwrap();
}

/// Data the transport already holds is delivered before the session's end, even when the
/// peer closes right after writing it (no wait in between).
#[tokio::test]
async fn close_right_after_data_does_not_overtake_it() {
    for round in 0..20 {
        let (conn, peer, mut d) = setup(Options::default()).await;
        let ds = d.send.as_mut().unwrap();
        ds.write_chunk(b("last words")).await.unwrap();
        peer.close(7, "bye").unwrap();
        assert_eq!(
            conn.recv().await.unwrap(),
            Msg::Binary(b("last words")),
            "round {round}"
        );
        match conn.recv().await {
            Err(Error::Closed { code: 7, reason }) => assert_eq!(reason, "bye"),
            other => panic!("round {round}: expected Closed(7, bye), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn dropped_send_future_still_writes_everything() {
    use futures_util::FutureExt;
    let (conn, _peer, mut d) = setup_with(small_window(16), Options::default()).await;
    let whole: Vec<u8> = (0..100u8).collect();
    // Polled once: the first 16 bytes fit, the rest waits for the peer; then dropped.
    assert!(conn
        .send(Frame::binary(whole.clone()))
        .now_or_never()
        .is_none());
    let tail = conn.clone();
    let sender = tokio::spawn(async move { tail.send(Frame::binary(b("tail"))).await });
    let mut got = Vec::new();
    while got.len() < whole.len() + 4 {
        match d.recv.read_chunk(1 << 20).await.unwrap() {
            Some(c) => got.extend_from_slice(&c),
            None => break,
        }
    }
    sender.await.unwrap().unwrap();
    let mut want = whole;
    want.extend_from_slice(b"tail");
    assert_eq!(got, want);
}

#[tokio::test]
async fn abandoned_write_is_finished_by_the_driver() {
    use futures_util::FutureExt;
    let (conn, _peer, mut d) = setup_with(small_window(8), Options::default()).await;
    let id = conn.default_stream_id();
    // Nobody writes after the dropped send: the driver writes the rest and the FIN.
    assert!(conn
        .send(Frame::Stream(id, Bytes::from(vec![7u8; 40]), true))
        .now_or_never()
        .is_none());
    let got = tokio::time::timeout(Duration::from_secs(10), read_all(&mut d.recv))
        .await
        .expect("the rest and the FIN arrive")
        .unwrap();
    assert_eq!(got, vec![7u8; 40]);
    // The stream ended: later sends say so.
    let r = conn.send(Frame::binary(b("late"))).await;
    assert!(
        matches!(r, Err(Error::Stream(StreamError::ClosedLocally))),
        "{r:?}"
    );
}

#[tokio::test]
async fn concurrent_writers_keep_frames_whole() {
    let (conn, _peer, mut d) = setup_with(small_window(16), Options::default()).await;
    let writers: Vec<_> = [b'a', b'b', b'c']
        .into_iter()
        .map(|byte| {
            let c = conn.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    c.send(Frame::binary(vec![byte; 50])).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    let mut got = Vec::new();
    while got.len() < 3 * 10 * 50 {
        match d.recv.read_chunk(1 << 20).await.unwrap() {
            Some(c) => got.extend_from_slice(&c),
            None => break,
        }
    }
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert_eq!(got.len(), 1500);
    // Flow control splits every frame; still each 50-byte frame arrives in one piece.
    for frame in got.chunks(50) {
        assert!(
            frame.iter().all(|x| *x == frame[0]),
            "interleaved: {frame:?}"
        );
    }
}

/// A `recv` waiting on the default stream reads it in its own task; whatever else was ready
/// is buffered in order, and the end of the stream still comes from the driver, after the
/// data.
#[tokio::test]
async fn waiting_recv_reads_the_default_stream_in_order() {
    let (conn, _peer, mut d) = setup(Options::default()).await;
    let reader = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                match conn.recv().await.unwrap() {
                    Msg::Binary(b) => seen.push(b),
                    Msg::StreamFin(..) => return seen,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    };
    let ds = d.send.as_mut().unwrap();
    let sent: Vec<Bytes> = (0..200u32)
        .map(|i| Bytes::from(format!("{i:03}")))
        .collect();
    for c in &sent {
        ds.write_chunk(c.clone()).await.unwrap();
        if c[2] == b'7' {
            tokio::task::yield_now().await;
        }
    }
    ds.finish().unwrap();
    let seen = reader.await.unwrap();
    assert_eq!(seen.concat(), sent.concat());
    assert_eq!(conn.unread_bytes(), 0);
}

/// After a `recv` has read the default stream itself, data arriving while nobody waits is
/// still taken in by the driver (`max_recv_buffer` and active mode rely on that).
#[tokio::test]
async fn driver_reads_on_after_a_direct_read() {
    let (conn, _peer, mut d) = setup(Options::default()).await;
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.recv().await })
    };
    // Wait until the recv is parked on the stream.
    while conn.shared().rx.lock().unwrap().main.is_none() {
        tokio::task::yield_now().await;
    }
    peer_write(&mut d, "a").await;
    assert_eq!(first.await.unwrap().unwrap(), Msg::Binary(b("a")));
    peer_write(&mut d, "bc").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        wait_unread(&conn, 2 + ITEM_OVERHEAD),
    )
    .await
    .expect("the driver took the data in");
    // In active mode too.
    conn.set_active(Active::On).await.unwrap();
    let mut events = conn.take_events().unwrap();
    assert_eq!(events.recv().await.unwrap(), Event::Binary(b("bc")));
    peer_write(&mut d, "d").await;
    assert_eq!(events.recv().await.unwrap(), Event::Binary(b("d")));
}

/// A `recv` woken for the default stream and dropped before it read hands the wake-up to the
/// driver, so the data is not left unread in the transport.
#[tokio::test]
async fn dropped_recv_hands_its_wake_up_to_the_driver() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let (conn, _peer, mut d) = setup(Options::default()).await;
    // The driver has run, its read of the default stream is waiting too.
    conn.info().await.unwrap();
    let mut recv = Box::pin(conn.recv());
    assert!(recv
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending());
    peer_write(&mut d, "x").await;
    drop(recv);
    tokio::time::timeout(
        Duration::from_secs(10),
        wait_unread(&conn, 1 + ITEM_OVERHEAD),
    )
    .await
    .expect("the driver took the data in");
    assert_eq!(conn.recv().await.unwrap(), Msg::Binary(b("x")));
}

/// Data a `recv` reads ahead counts against `max_recv_buffer` like data the driver reads.
#[tokio::test]
async fn read_ahead_counts_against_the_limit() {
    let limit = 2 * (100 + ITEM_OVERHEAD) + 10;
    let (conn, peer, mut d) = setup(Options::default().max_recv_buffer(limit)).await;
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.recv().await })
    };
    while conn.shared().rx.lock().unwrap().main.is_none() {
        tokio::task::yield_now().await;
    }
    // Written at once: the waiting recv is woken first and reads them all (this test
    // runtime runs one task at a time, in the order they were woken).
    let ds = d.send.as_mut().unwrap();
    for _ in 0..4 {
        ds.write_chunk(Bytes::from(vec![7u8; 100])).await.unwrap();
    }
    assert!(matches!(first.await.unwrap().unwrap(), Msg::Binary(c) if c.len() == 100));
    // Three chunks left unread overflow the limit.
    let (by_client, code, _) = tokio::time::timeout(Duration::from_secs(10), peer_closed(&peer))
        .await
        .expect("the overflow closed the session");
    assert!(by_client);
    assert_eq!(code, OVERFLOW_CLOSE_CODE);
    for _ in 0..2 {
        assert!(matches!(conn.recv().await.unwrap(), Msg::Binary(c) if c.len() == 100));
    }
    assert!(matches!(conn.recv().await, Err(Error::RecvBufferOverflow)));
}

/// STOP_SENDING on the default stream while a `recv` waits on it: the peer sees the code and
/// the `recv` learns the stream ended.
#[tokio::test]
async fn stop_sending_the_default_stream_under_a_waiting_recv() {
    let (conn, _peer, mut d) = setup(Options::default()).await;
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.recv_timeout(Duration::from_secs(1)).await })
    };
    while conn.shared().rx.lock().unwrap().main.is_none() {
        tokio::task::yield_now().await;
    }
    conn.stop_sending(conn.default_stream_id(), 21)
        .await
        .unwrap();
    assert_eq!(d.send.as_mut().unwrap().stopped().await.unwrap(), Some(21));
    assert!(conn.shared().rx.lock().unwrap().default.is_none());
    // Nothing more comes on the default stream.
    assert!(matches!(waiting.await.unwrap(), Err(Error::Timeout)));
}
