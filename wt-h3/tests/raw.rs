//! A raw HTTP/3 peer built directly on quinn sends what the normal client never would.

mod common;

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::*;
use wt_core::codes::H3Code;
use wt_core::{AcceptOptions, Acceptor, CompatMode, IncomingRequest, RecvStream, Session};
use wt_h3::proto::{frame, headers, settings::Settings, stream_type};
use wt_h3::Server;

struct Raw {
    conn: quinn::Connection,
    _ep: quinn::Endpoint,
    _control: quinn::SendStream,
}

async fn raw_with(server: &Server, tls: &wt_core::tls::ServerTls, settings: Settings) -> Raw {
    raw_tuned(server, tls, settings, |_| {}).await
}

/// A raw peer whose QUIC transport settings `tune` adjusts.
async fn raw_tuned(
    server: &Server,
    tls: &wt_core::tls::ServerTls,
    settings: Settings,
    tune: impl FnOnce(&mut quinn::TransportConfig),
) -> Raw {
    let mut ct = wt_core::tls::ClientTls::default();
    ct.cert_hashes.push(tls.cert_hash());
    let rc = ct.build(&[b"h3"], false).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rc).unwrap();
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.datagram_receive_buffer_size(Some(65536));
    tune(&mut t);
    cc.transport_config(Arc::new(t));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep
        .connect_with(cc, server.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let mut control = conn.open_uni().await.unwrap();
    let mut buf = BytesMut::from(&[0x00][..]);
    settings.encode(&mut buf);
    control.write_all(&buf).await.unwrap();
    Raw {
        conn,
        _ep: ep,
        _control: control,
    }
}

/// A raw peer of the latest dialect whose receive window per stream is `window` bytes.
async fn raw_with_stream_window(
    server: &Server,
    tls: &wt_core::tls::ServerTls,
    window: u32,
) -> Raw {
    let settings = wt_h3::conn::negotiate::client_settings(CompatMode::Latest);
    raw_tuned(server, tls, settings, |t| {
        t.stream_receive_window(window.into());
    })
    .await
}

async fn raw(server: &Server, tls: &wt_core::tls::ServerTls) -> Raw {
    raw_with(
        server,
        tls,
        wt_h3::conn::negotiate::client_settings(CompatMode::Latest),
    )
    .await
}

fn connect_headers(protocol: &str) -> BytesMut {
    let mut block = BytesMut::new();
    headers::encode_request(
        &headers::RequestParts {
            protocol,
            authority: "localhost",
            path: "/",
            origin: None,
            draft02: false,
            protocols: &[],
            headers: &http::HeaderMap::new(),
        },
        &mut block,
    );
    let mut out = BytesMut::new();
    frame::encode_frame(frame::HEADERS, &block, &mut out);
    out
}

impl Raw {
    /// Sends a CONNECT; returns the stream.
    async fn connect(&self) -> (quinn::SendStream, quinn::RecvStream) {
        let (mut s, r) = self.conn.open_bi().await.unwrap();
        s.write_all(&connect_headers("webtransport-h3"))
            .await
            .unwrap();
        (s, r)
    }

    /// Sends a CONNECT, accepts the session on `server` and checks the 200 response (read
    /// while the server accepts: with a small stream window the response only fits through
    /// as it is read).
    async fn session(
        &self,
        server: &Server,
    ) -> (quinn::SendStream, quinn::RecvStream, wt_h3::Session) {
        let (s, mut r) = self.connect().await;
        let (session, status) = tokio::join!(accept_session(server), read_status(&mut r));
        assert_eq!(status.unwrap(), 200);
        (s, r, session)
    }

    /// Reads the next unidirectional stream the server opened that starts with `header`'s
    /// first two bytes (a WebTransport stream of that session), whole, up to `max` bytes. The
    /// server's control and QPACK streams, which never end, are kept open in `others`.
    async fn read_wt_uni(
        &self,
        header: &[u8],
        others: &mut Vec<quinn::RecvStream>,
        max: usize,
    ) -> Vec<u8> {
        loop {
            let mut u = timeout(self.conn.accept_uni()).await.unwrap();
            let first = timeout(u.read_chunk(usize::MAX, true))
                .await
                .unwrap()
                .unwrap();
            if !first.bytes.starts_with(&header[..2]) {
                others.push(u);
                continue;
            }
            let mut all = first.bytes.to_vec();
            all.extend(timeout(u.read_to_end(max)).await.unwrap());
            return all;
        }
    }

    async fn closed_code(&self) -> u64 {
        match timeout(self.conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
            other => panic!("{other:?}"),
        }
    }
}

/// Accepts the next incoming request on `server` as a session.
async fn accept_session(server: &Server) -> wt_h3::Session {
    timeout(server.accept())
        .await
        .unwrap()
        .accept(AcceptOptions::default())
        .await
        .unwrap()
}

/// Reads the response HEADERS frame and returns the status.
async fn read_status(recv: &mut quinn::RecvStream) -> Result<u16, quinn::ReadError> {
    let mut dec = frame::FrameDecoder::new(frame::StreamKind::Request);
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            if let frame::Frame::Headers(b) = f {
                return Ok(headers::parse_response(&b).unwrap().status.as_u16());
            }
            continue;
        }
        match recv.read_chunk(4096, true).await? {
            Some(c) => buf.extend_from_slice(&c.bytes),
            None => panic!("no response"),
        }
    }
}

async fn reset_code(recv: &mut quinn::RecvStream) -> u64 {
    loop {
        match timeout(recv.read_chunk(4096, true)).await {
            Ok(Some(_)) => continue,
            Err(quinn::ReadError::Reset(c)) => return c.into_inner(),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn session_id_1_in_stream_header_is_an_id_error() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let mut s = p.conn.open_uni().await.unwrap();
    s.write_all(&[0x40, 0x54, 0x01, b'x']).await.unwrap();
    assert_eq!(p.closed_code().await, H3Code::H3_ID_ERROR.0);
}

#[tokio::test]
async fn wt_signal_after_headers_is_a_frame_error() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (mut s, _r) = p.conn.open_bi().await.unwrap();
    let mut out = connect_headers("webtransport-h3");
    out.extend_from_slice(&[0x40, 0x41, 0x00]);
    s.write_all(&out).await.unwrap();
    let _session = accept_session(&server).await;
    assert_eq!(p.closed_code().await, H3Code::H3_FRAME_ERROR.0);
}

#[tokio::test]
async fn garbage_and_truncated_capsules_reset_the_connect_stream() {
    let (server, tls) = server_with(|_| {});
    for bad in [
        // Close capsule with invalid UTF-8 in the reason, in a DATA frame.
        &[0x00, 0x08, 0x68, 0x43, 0x05, 0x00, 0x00, 0x00, 0x01, 0xff][..],
        // Truncated close capsule, then FIN.
        &[0x00, 0x05, 0x68, 0x43, 0x07, 0x00, 0x00][..],
        // WT_MAX_STREAM_DATA is forbidden over HTTP/3.
        &[0x00, 0x07, 0x99, 0x0b, 0x4d, 0x3e, 0x02, 0x00, 0x10][..],
    ] {
        let p = raw(&server, &tls).await;
        let (mut s, mut r, session) = p.session(&server).await;
        s.write_all(bad).await.unwrap();
        s.finish().unwrap();
        assert_eq!(reset_code(&mut r).await, H3Code::H3_MESSAGE_ERROR.0);
        assert!(matches!(
            timeout(session.closed()).await,
            wt_core::SessionError::Protocol(_)
        ));
    }
}

#[tokio::test]
async fn close_capsule_bytes_and_bytes_after_close() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (mut s, mut r, session) = p.session(&server).await;
    session.close(300, "bye").unwrap();
    let mut got = Vec::new();
    while let Some(c) = timeout(r.read_chunk(100, true)).await.unwrap() {
        got.extend_from_slice(&c.bytes);
    }
    assert_eq!(
        got,
        [0x00, 0x0a, 0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, 0x62, 0x79, 0x65]
    );
    s.finish().unwrap();

    // Peer close followed by extra bytes: reset with H3_MESSAGE_ERROR.
    let p = raw(&server, &tls).await;
    let (mut s, mut r, session) = p.session(&server).await;
    s.write_all(&[
        0x00, 0x0a, 0x68, 0x43, 0x07, 0x00, 0x00, 0x01, 0x2c, 0x62, 0x79, 0x65, 0x00, 0x01, 0x17,
    ])
    .await
    .unwrap();
    assert_eq!(reset_code(&mut r).await, H3Code::H3_MESSAGE_ERROR.0);
    assert!(matches!(
        session.closed().await,
        wt_core::SessionError::ClosedByPeer { code: 300, .. }
    ));
}

/// A local close puts the close capsule and FIN into the CONNECT stream before the data
/// streams are reset, so a peer that sees a data stream reset already has them (from the
/// same packet or an earlier one). Queued after the resets, the capsule could arrive in a
/// later packet, and Chromium then reported the close as a lost connection. Two runtime
/// threads, so the connection can send the resets before the session task runs; with the
/// capsule written by that task (the old order) about one close in fifteen came out in the
/// wrong order, so the test closes twenty sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_capsule_goes_out_before_data_streams_are_reset() {
    let (server, tls) = server_with(|_| {});
    for round in 0..20 {
        let p = raw(&server, &tls).await;
        close_then_reset_order(&server, &p, round).await;
    }
}

async fn close_then_reset_order(server: &Server, p: &Raw, round: usize) {
    use futures_util::FutureExt;
    let (cs, mut cr, session) = p.session(server).await;
    let (mut ps, mut pr) = p.conn.open_bi().await.unwrap();
    ps.write_all(&wt_stream(true, sid_of(&cs), b"abc"))
        .await
        .unwrap();
    let (tx, rx) = timeout(session.accept_bi()).await.unwrap();
    // Close, then drop the streams at once (as wt-testserver's handlers do).
    session.close(4242, "server bye").unwrap();
    drop((tx, rx));
    match timeout(pr.read_chunk(100, true)).await {
        Err(quinn::ReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), H3Code::WT_SESSION_GONE.0)
        }
        other => panic!("round {round}: expected a reset, got {other:?}"),
    }
    // No waiting from here: what is not there yet came after the reset.
    let mut got = Vec::new();
    loop {
        match cr.read_chunk(100, true).now_or_never() {
            Some(Ok(Some(c))) => got.extend_from_slice(&c.bytes),
            Some(Ok(None)) => break,
            other => panic!("round {round}: the close came after the reset: {other:?}, {got:?}"),
        }
    }
    let mut want = vec![0x00, 0x11, 0x68, 0x43, 0x0e, 0x00, 0x00, 0x10, 0x92];
    want.extend_from_slice(b"server bye");
    assert_eq!(got, want, "round {round}");
    drop(cs);
}

/// The same order when the capsule cannot leave in one piece: the peer's stream window is a
/// tenth of the capsule, so it goes out over several round trips, and no data stream may be
/// reset before the capsule's last byte and the FIN have arrived: not one accepted and
/// dropped, one perhaps still queued, nor one the peer opens after the close (refused by the
/// connection, the session being gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_capsule_larger_than_the_stream_window_still_goes_first() {
    use futures_util::FutureExt;
    let (server, tls) = server_with(|_| {});
    let p = raw_with_stream_window(&server, &tls, 100).await;
    let (cs, mut cr, session) = p.session(&server).await;
    let mut peer = Vec::new();
    for _ in 0..2 {
        let (mut ps, pr) = p.conn.open_bi().await.unwrap();
        ps.write_all(&wt_stream(true, sid_of(&cs), b"abc"))
            .await
            .unwrap();
        peer.push((ps, pr));
    }
    let (tx, rx) = timeout(session.accept_bi()).await.unwrap();
    let reason = "r".repeat(wt_core::capsule::MAX_CLOSE_REASON);
    session.close(7, &reason).unwrap();
    drop((tx, rx));
    // The server cannot have sent the whole capsule yet: this stream arrives while it is
    // on its way.
    let (mut ps, pr) = p.conn.open_bi().await.unwrap();
    ps.write_all(&wt_stream(true, sid_of(&cs), b"late"))
        .await
        .unwrap();
    peer.push((ps, pr));
    // Every stream watched at once, the CONNECT stream first: a reset is checked against
    // the capsule bytes that arrived before it, whichever stream it is on.
    let mut got = Vec::new();
    let mut fin = false;
    let mut reset = vec![false; peer.len()];
    while reset.contains(&false) {
        let (i, r) = {
            let mut next_reset = std::pin::pin!(std::future::poll_fn(|cx| {
                for (i, (_, pr)) in peer.iter_mut().enumerate() {
                    if reset[i] {
                        continue;
                    }
                    if let std::task::Poll::Ready(r) =
                        std::pin::pin!(pr.read_chunk(100, true)).poll(cx)
                    {
                        return std::task::Poll::Ready((i, r));
                    }
                }
                std::task::Poll::Pending
            }));
            timeout(async {
                loop {
                    tokio::select! {
                        biased;
                        c = cr.read_chunk(usize::MAX, true), if !fin => match c {
                            Ok(Some(c)) => got.extend_from_slice(&c.bytes),
                            Ok(None) => fin = true,
                            Err(e) => panic!("CONNECT stream: {e:?}"),
                        },
                        ir = &mut next_reset => return ir,
                    }
                }
            })
            .await
        };
        match r {
            Err(quinn::ReadError::Reset(code)) => {
                assert_eq!(code.into_inner(), H3Code::WT_SESSION_GONE.0)
            }
            other => panic!("stream {i}: expected a reset, got {other:?}"),
        }
        reset[i] = true;
        // No waiting from here: what is not in quinn's buffers yet came after the reset.
        while !fin {
            match cr.read_chunk(usize::MAX, true).now_or_never() {
                Some(Ok(Some(c))) => got.extend_from_slice(&c.bytes),
                Some(Ok(None)) => fin = true,
                other => panic!(
                    "stream {i} was reset after {} bytes of the close: {other:?}",
                    got.len()
                ),
            }
        }
    }
    let want = capsule_frame(&wt_core::capsule::Capsule::CloseSession { code: 7, reason });
    assert_eq!(got, want[..]);
    drop(cs);
}

#[tokio::test]
async fn drain_and_grease_capsules() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (mut s, _r, session) = p.session(&server).await;
    // GREASE capsule, Chrome's REGISTER_DATAGRAM_NO_CONTEXT, an unknown frame, then drain.
    s.write_all(&[0x00, 0x04, 0x17, 0x02, 0xaa, 0xbb])
        .await
        .unwrap();
    // REGISTER_DATAGRAM_NO_CONTEXT straddling two DATA frames.
    s.write_all(&[0x00, 0x05, 0x80, 0xff, 0x37, 0xa2, 0x04])
        .await
        .unwrap();
    s.write_all(&[0x00, 0x04, 0x80, 0xff, 0x7c, 0x00])
        .await
        .unwrap();
    s.write_all(&[0x21, 0x01, 0x00]).await.unwrap();
    s.write_all(&[0x00, 0x05, 0x80, 0x00, 0x78, 0xae, 0x00])
        .await
        .unwrap();
    timeout(session.draining()).await;
    // Clean FIN without capsule = close(0, "").
    s.finish().unwrap();
    match timeout(session.closed()).await {
        wt_core::SessionError::ClosedByPeer { code: 0, reason } => assert!(reason.is_empty()),
        other => panic!("{other:?}"),
    }
}

/// A waker that signals each wake-up (a permit stays if nobody waits yet).
#[derive(Default)]
struct WakeSignal(tokio::sync::Notify);

impl std::task::Wake for WakeSignal {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn an_accept_dropped_after_its_wake_up_leaves_the_intake_to_the_driver() {
    // While the only session's accept_bi waits, quinn's wake-ups for new bidirectional streams
    // go to its task, which runs the intake itself. Dropped after one came and before running
    // it, the accept must hand the turn to the driver: here a surplus CONNECT, which only the
    // intake sees, must still be refused.
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (_s1, _r1, session) = p.session(&server).await;
    let signal = Arc::new(WakeSignal::default());
    let waker = std::task::Waker::from(signal.clone());
    let mut accept = Box::pin(session.accept_bi());
    let first = accept
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker));
    assert!(first.is_pending());
    let (_s2, mut r2) = p.connect().await;
    // The wake-up came to the accept, which is dropped without another poll.
    timeout(signal.0.notified()).await;
    drop(accept);
    assert_eq!(reset_code(&mut r2).await, H3Code::H3_REQUEST_REJECTED.0);
}

#[tokio::test]
async fn surplus_connect_is_rejected_and_connection_stays() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (_s1, _r1, session) = p.session(&server).await;
    let (_s2, mut r2) = p.connect().await;
    assert_eq!(reset_code(&mut r2).await, H3Code::H3_REQUEST_REJECTED.0);
    // First session still works: open a WT uni stream on it.
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&[0x40, 0x54, 0x00, b'o', b'k']).await.unwrap();
    u.finish().unwrap();
    let mut rs = timeout(session.accept_uni()).await.unwrap();
    assert_eq!(rs.read_to_end(10).await.unwrap(), b"ok");
}

#[tokio::test]
async fn early_streams_and_datagrams_are_buffered_then_attached() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    // Stream and datagram for session 0 before its CONNECT.
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&[0x40, 0x54, 0x00, b'e', b'a', b'r', b'l', b'y'])
        .await
        .unwrap();
    u.finish().unwrap();
    p.conn
        .send_datagram(Bytes::from_static(&[0x00, b'd', b'g']))
        .unwrap();
    // Whichever arrives first, the stream and datagram end up in the session.
    let (_s, _r, session) = p.session(&server).await;
    let mut rs = timeout(session.accept_uni()).await.unwrap();
    assert_eq!(rs.read_to_end(10).await.unwrap(), b"early");
    // The datagram may be lost on the wire in principle; on loopback it arrives.
    assert_eq!(&timeout(session.recv_datagram()).await.unwrap()[..], b"dg");
}

#[tokio::test]
async fn client_without_datagrams_gets_message_error() {
    let (server, tls) = server_with(|_| {});
    let p = raw_with(
        &server,
        &tls,
        Settings::from_pairs(&[(wt_h3::proto::settings::WT_ENABLED, 1)]),
    )
    .await;
    let (_s, mut r) = p.connect().await;
    assert_eq!(reset_code(&mut r).await, H3Code::H3_MESSAGE_ERROR.0);
}

#[tokio::test]
async fn plain_get_and_unknown_streams() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    // Unknown uni stream type (GREASE): STOP_SENDING H3_STREAM_CREATION_ERROR.
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&[0x21, 0x01, 0x02]).await.unwrap();
    assert_eq!(
        timeout(u.stopped()).await.unwrap().map(|c| c.into_inner()),
        Some(H3Code::H3_STREAM_CREATION_ERROR.0)
    );
    // A plain GET: 404, connection fine.
    let (mut s, mut r) = p.conn.open_bi().await.unwrap();
    let mut block = BytesMut::new();
    wt_h3::proto::qpack::encode_field_section(
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
        ],
        true,
        &mut block,
    );
    let mut out = BytesMut::new();
    frame::encode_frame(frame::HEADERS, &block, &mut out);
    s.write_all(&out).await.unwrap();
    s.finish().unwrap();
    assert_eq!(read_status(&mut r).await.unwrap(), 404);
    // A WT stream for a session that ended is refused with WT_SESSION_GONE.
    let (mut cs, _cr, session) = p.session(&server).await;
    let sid = quinn::VarInt::from(cs.id()).into_inner();
    cs.finish().unwrap();
    timeout(session.closed()).await;
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&stream_type::wt_stream_header(false, sid))
        .await
        .unwrap();
    assert_eq!(
        timeout(u.stopped()).await.unwrap().map(|c| c.into_inner()),
        Some(H3Code::WT_SESSION_GONE.0)
    );
}

#[tokio::test]
async fn datagram_with_bad_quarter_id_closes_the_connection() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    p.conn
        .send_datagram(Bytes::from_static(&[0xd0, 0, 0, 0, 0, 0, 0, 0, 1]))
        .unwrap();
    assert_eq!(p.closed_code().await, H3Code::H3_DATAGRAM_ERROR.0);
}

#[tokio::test]
async fn second_control_stream_and_bad_settings() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let mut c2 = p.conn.open_uni().await.unwrap();
    c2.write_all(&[0x00, 0x04, 0x00]).await.unwrap();
    assert_eq!(p.closed_code().await, H3Code::H3_STREAM_CREATION_ERROR.0);
    let p = raw_with(
        &server,
        &tls,
        Settings::from_pairs(&[(wt_h3::proto::settings::H3_DATAGRAM, 2)]),
    )
    .await;
    assert_eq!(p.closed_code().await, H3Code::H3_SETTINGS_ERROR.0);
}

#[tokio::test]
async fn second_qpack_encoder_or_decoder_stream_is_a_creation_error() {
    // RFC 9204 §4.2: each QPACK stream type at most once.
    let (server, tls) = server_with(|_| {});
    for ty in [stream_type::QPACK_ENCODER, stream_type::QPACK_DECODER] {
        let p = raw(&server, &tls).await;
        let mut first = p.conn.open_uni().await.unwrap();
        first.write_all(&[ty as u8]).await.unwrap();
        let mut second = p.conn.open_uni().await.unwrap();
        second.write_all(&[ty as u8]).await.unwrap();
        assert_eq!(
            p.closed_code().await,
            H3Code::H3_STREAM_CREATION_ERROR.0,
            "stream type {ty}"
        );
    }
    // One of each is fine: the connection still serves a session.
    let p = raw(&server, &tls).await;
    let mut keep = Vec::new();
    for ty in [stream_type::QPACK_ENCODER, stream_type::QPACK_DECODER] {
        let mut s = p.conn.open_uni().await.unwrap();
        s.write_all(&[ty as u8]).await.unwrap();
        keep.push(s);
    }
    let (_s, _r, _session) = p.session(&server).await;
}

// ---- Session flow control (draft-16 §5.6) ----

fn fc_settings(max_data: u64, bidi: u64, uni: u64) -> Settings {
    wt_h3::conn::negotiate::client_settings_with(
        CompatMode::Latest,
        Some(&wt_h3::FlowControlConfig {
            max_data,
            max_streams_bidi: bidi,
            max_streams_uni: uni,
        }),
    )
}

fn capsule_frame(c: &wt_core::capsule::Capsule) -> BytesMut {
    let mut cap = BytesMut::new();
    c.encode(&wt_core::capsule::CapsuleOptions::default(), &mut cap)
        .unwrap();
    let mut out = BytesMut::new();
    frame::encode_frame(frame::DATA, &cap, &mut out);
    out
}

/// A WebTransport stream header for session `sid`, followed by `payload`.
fn wt_stream(bidi: bool, sid: u64, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::from(&stream_type::wt_stream_header(bidi, sid)[..]);
    out.extend_from_slice(payload);
    out
}

fn sid_of(s: &quinn::SendStream) -> u64 {
    quinn::VarInt::from(s.id()).into_inner()
}

/// A raw peer with flow control on and one accepted session.
async fn fc_session(
    server: &Server,
    tls: &wt_core::tls::ServerTls,
) -> (Raw, quinn::SendStream, quinn::RecvStream, wt_h3::Session) {
    let p = raw_with(server, tls, fc_settings(1 << 20, 100, 100)).await;
    let (s, r, session) = p.session(server).await;
    (p, s, r, session)
}

fn fc_server(max_data: u64, bidi: u64, uni: u64) -> (Server, wt_core::tls::ServerTls) {
    server_with(|c| {
        c.flow_control = Some(wt_h3::FlowControlConfig {
            max_data,
            max_streams_bidi: bidi,
            max_streams_uni: uni,
        })
    })
}

fn is_flow_error(e: &wt_core::SessionError) -> bool {
    matches!(e, wt_core::SessionError::Protocol(pe)
        if pe.code == wt_core::WireCode::H3(H3Code::WT_FLOW_CONTROL_ERROR))
}

#[tokio::test]
async fn peer_stream_beyond_the_limit_is_a_flow_control_error() {
    // FC-3, streams: the server allows one bidi stream per session.
    let (server, tls) = fc_server(1 << 20, 1, 1);
    let (p, cs, mut cr, session) = fc_session(&server, &tls).await;
    let sid = sid_of(&cs);
    let mut keep = Vec::new();
    for _ in 0..2 {
        let (mut s, r) = p.conn.open_bi().await.unwrap();
        s.write_all(&stream_type::wt_stream_header(true, sid))
            .await
            .unwrap();
        s.write_all(b"x").await.unwrap();
        keep.push((s, r));
    }
    assert_eq!(reset_code(&mut cr).await, H3Code::WT_FLOW_CONTROL_ERROR.0);
    assert!(is_flow_error(&timeout(session.closed()).await));
}

#[tokio::test]
async fn peer_data_beyond_max_data_is_a_flow_control_error() {
    // FC-3, data: 1000 payload bytes allowed; the application reads what arrives.
    let (server, tls) = fc_server(1000, 10, 10);
    let (p, cs, mut cr, session) = fc_session(&server, &tls).await;
    let sid = sid_of(&cs);
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&wt_stream(false, sid, &[0u8; 5000]))
        .await
        .unwrap();
    u.finish().unwrap();
    // Bytes count on arrival, so the session may already be closed when we accept.
    match timeout(session.accept_uni()).await {
        Ok(mut r) => assert!(timeout(r.read_to_end(1 << 20)).await.is_err()),
        Err(e) => assert!(is_flow_error(&e), "{e}"),
    }
    assert_eq!(reset_code(&mut cr).await, H3Code::WT_FLOW_CONTROL_ERROR.0);
    assert!(is_flow_error(&timeout(session.closed()).await));
}

#[tokio::test]
async fn peer_data_beyond_max_data_is_caught_on_arrival_without_reads() {
    // Bytes count when they arrive, not when the application reads them: nobody accepts or
    // reads these streams, and the overrun still closes the session.
    let (server, tls) = fc_server(1000, 10, 10);
    let (p, cs, mut cr, session) = fc_session(&server, &tls).await;
    let sid = sid_of(&cs);
    let mut keep = Vec::new();
    for n in [600usize, 401] {
        let (mut s, r) = p.conn.open_bi().await.unwrap();
        s.write_all(&wt_stream(true, sid, &vec![7u8; n]))
            .await
            .unwrap();
        keep.push((s, r));
    }
    assert_eq!(reset_code(&mut cr).await, H3Code::WT_FLOW_CONTROL_ERROR.0);
    assert!(is_flow_error(&timeout(session.closed()).await));
}

#[tokio::test]
async fn non_increasing_or_huge_limit_updates_are_flow_control_errors() {
    // FC-4. The raw peer granted 1 MiB / 100 / 100 in its SETTINGS.
    let (server, tls) = fc_server(1 << 20, 10, 10);
    for c in [
        wt_core::capsule::Capsule::MaxData(10),
        wt_core::capsule::Capsule::MaxData(1 << 20),
        wt_core::capsule::Capsule::MaxStreamsUni(100),
        wt_core::capsule::Capsule::MaxStreamsBidi((1 << 60) + 1),
    ] {
        let (_p, mut cs, mut cr, session) = fc_session(&server, &tls).await;
        cs.write_all(&capsule_frame(&c)).await.unwrap();
        assert_eq!(
            reset_code(&mut cr).await,
            H3Code::WT_FLOW_CONTROL_ERROR.0,
            "{c:?}"
        );
        assert!(is_flow_error(&timeout(session.closed()).await));
    }
    // Increasing updates are fine, and raise what stats() reports.
    let (_p, mut cs, _cr, session) = fc_session(&server, &tls).await;
    cs.write_all(&capsule_frame(&wt_core::capsule::Capsule::MaxData(2 << 20)))
        .await
        .unwrap();
    cs.write_all(&capsule_frame(&wt_core::capsule::Capsule::MaxStreamsBidi(
        1 << 60,
    )))
    .await
    .unwrap();
    let want = wt_core::FlowLimits {
        max_data: 2 << 20,
        max_streams_bidi: 1 << 60,
        max_streams_uni: 100,
    };
    // The capsules are applied by the session task; poll until they are.
    timeout(async {
        while session.stats().peer_limits != Some(want) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn limit_capsules_are_ignored_without_flow_control() {
    // FC-6: the peer offers no flow control.
    let (server, tls) = fc_server(1 << 20, 10, 10);
    let p = raw(&server, &tls).await;
    let (mut cs, _cr, session) = p.session(&server).await;
    assert_eq!(session.stats().peer_limits, None);
    cs.write_all(&capsule_frame(&wt_core::capsule::Capsule::MaxData(1)))
        .await
        .unwrap();
    cs.write_all(&capsule_frame(&wt_core::capsule::Capsule::MaxStreamsBidi(
        0,
    )))
    .await
    .unwrap();
    let (mut tx, _rx) = timeout(session.open_bi()).await.unwrap();
    wt_core::SendStream::write_all(&mut tx, b"still fine")
        .await
        .unwrap();
}

#[tokio::test]
async fn two_sessions_on_one_connection_have_independent_limits() {
    // MS-4: one connection, two CONNECTs, each session allowed 1 bidi stream, 1 uni stream
    // and 1000 bytes.
    let (server, tls) = fc_server(1000, 1, 1);
    let p = raw_with(&server, &tls, fc_settings(1 << 20, 100, 100)).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (cs, cr, session) = p.session(&server).await;
        sessions.push((cs, cr, session));
    }
    // 800 bytes on a bidi stream of each session: 1600 in total, 800 per session.
    let mut held = Vec::new();
    for (cs, _, session) in &sessions {
        let (mut s, r) = p.conn.open_bi().await.unwrap();
        s.write_all(&wt_stream(true, sid_of(cs), &[1u8; 800]))
            .await
            .unwrap();
        s.finish().unwrap();
        let (ptx, mut prx) = timeout(session.accept_bi()).await.unwrap();
        assert_eq!(timeout(prx.read_to_end(4096)).await.unwrap().len(), 800);
        // The server application keeps both halves: the stream stays open.
        held.push((s, r, ptx, prx));
    }
    // A second bidi stream on the first session exceeds *its* limit only.
    let (cs0, cr0, s0) = &mut sessions[0];
    let (mut s, _r) = p.conn.open_bi().await.unwrap();
    s.write_all(&stream_type::wt_stream_header(true, sid_of(cs0)))
        .await
        .unwrap();
    assert_eq!(reset_code(cr0).await, H3Code::WT_FLOW_CONTROL_ERROR.0);
    assert!(is_flow_error(&timeout(s0.closed()).await));
    // The second session still works: its uni stream credit is untouched.
    let (cs1, _, s1) = &sessions[1];
    let mut u = p.conn.open_uni().await.unwrap();
    u.write_all(&wt_stream(false, sid_of(cs1), b"ok"))
        .await
        .unwrap();
    u.finish().unwrap();
    let mut r = timeout(s1.accept_uni()).await.unwrap();
    assert_eq!(r.read_to_end(10).await.unwrap(), b"ok");
    assert!(p.conn.close_reason().is_none());
}

/// Reads `r` in pieces of at most 3 bytes until its end.
async fn read_in_small_pieces(r: &mut impl RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = timeout(r.read_chunk(3)).await.unwrap() {
        assert!(c.len() <= 3);
        out.extend_from_slice(&c);
    }
    out
}

#[tokio::test]
async fn split_preambles_and_payload_prefix() {
    // The preamble may arrive in pieces; payload that comes with it is returned first,
    // within the reader's size limit, with and without session flow control.
    for fc in [false, true] {
        let (server, tls) = if fc {
            fc_server(1 << 20, 10, 10)
        } else {
            server_with(|_| {})
        };
        let (p, cs, _cr, session) = if fc {
            fc_session(&server, &tls).await
        } else {
            let p = raw(&server, &tls).await;
            let (s, r, session) = p.session(&server).await;
            (p, s, r, session)
        };
        let header = stream_type::wt_stream_header(false, sid_of(&cs));
        let mut u = p.conn.open_uni().await.unwrap();
        u.write_all(&header[..1]).await.unwrap();
        let mut rest = BytesMut::from(&header[1..]);
        rest.extend_from_slice(b"hello, world");
        u.write_all(&rest).await.unwrap();
        u.finish().unwrap();
        let mut r = timeout(session.accept_uni()).await.unwrap();
        assert_eq!(read_in_small_pieces(&mut r).await, b"hello, world");

        let header = stream_type::wt_stream_header(true, sid_of(&cs));
        let (mut s, _r) = p.conn.open_bi().await.unwrap();
        let mut all = BytesMut::from(&header[..]);
        all.extend_from_slice(b"ping pong");
        s.write_all(&all).await.unwrap();
        s.finish().unwrap();
        let (_tx, mut rx) = timeout(session.accept_bi()).await.unwrap();
        assert_eq!(read_in_small_pieces(&mut rx).await, b"ping pong");
        assert_eq!(session.stats().bytes_received, 21);
    }
}

#[tokio::test]
async fn opened_streams_send_their_header_with_data_or_before_fin() {
    use wt_core::SendStream as _;
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    let (cs, _cr, session) = p.session(&server).await;
    let header = stream_type::wt_stream_header(false, sid_of(&cs));

    let mut with_data = timeout(session.open_uni()).await.unwrap();
    timeout(with_data.write_all(b"abc")).await.unwrap();
    with_data.finish().unwrap();
    let mut empty = timeout(session.open_uni()).await.unwrap();
    empty.finish().unwrap();
    let dropped = timeout(session.open_uni()).await.unwrap();
    drop(dropped);

    // The server's own control stream comes first; WebTransport streams follow in order.
    let mut got = Vec::new();
    let mut others = Vec::new();
    while got.len() < 3 {
        got.push(p.read_wt_uni(&header, &mut others, 1 << 10).await);
    }
    let mut expect = header.to_vec();
    expect.extend_from_slice(b"abc");
    assert_eq!(got[0], expect);
    assert_eq!(got[1], header.to_vec());
    assert_eq!(got[2], header.to_vec());
}

/// `write_some` hands quinn the caller's `Bytes` itself and takes back what quinn leaves: when
/// the peer's stream window takes part of it, `data` keeps the rest; when a write waiting for
/// room is dropped, `data` is unchanged; and everything arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_some_keeps_what_quinn_did_not_take() {
    use futures_util::FutureExt;
    use wt_core::SendStream as _;
    let (server, tls) = server_with(|_| {});
    let p = raw_with_stream_window(&server, &tls, 1000).await;
    let (cs, _cr, session) = p.session(&server).await;
    let header = stream_type::wt_stream_header(false, sid_of(&cs));
    let mut s = timeout(session.open_uni()).await.unwrap();
    // The stream header goes with this first byte.
    timeout(s.write_all(b"<")).await.unwrap();
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    // A `Bytes` made from a `Vec`, as applications usually have.
    let mut data = Bytes::from(payload.clone());
    timeout(s.write_some(&mut data)).await.unwrap();
    let left = data.len();
    assert!(left > 0 && left < payload.len(), "{left} bytes left");
    assert!(
        s.write_some(&mut data).now_or_never().is_none(),
        "no room yet"
    );
    assert_eq!(&data[..], &payload[payload.len() - left..]);
    let mut others = Vec::new();
    let reader = p.read_wt_uni(&header, &mut others, 1 << 16);
    let writer = async {
        while !data.is_empty() {
            timeout(s.write_some(&mut data)).await.unwrap();
        }
        s.finish().unwrap();
    };
    let (got, ()) = tokio::join!(reader, writer);
    let mut want = header.to_vec();
    want.push(b'<');
    want.extend_from_slice(&payload);
    assert_eq!(got, want);
}

/// The server closes a session while the peer keeps the connection and answers nothing:
/// the server's blocked read, `stopped` and `accept_bi` end at once with the session's end,
/// the peer's stream is stopped with WT_SESSION_GONE, and the connection stays open. Nothing but the session's own end can wake those calls here (the peer neither
/// resets the stream nor closes the connection), with and without session flow control (a
/// stream read from quinn or from the read-ahead queue).
async fn local_close_ends_blocked_calls(server: Server, p: Raw) {
    let (cs, mut cr, session) = p.session(&server).await;
    let (mut ps, _pr) = p.conn.open_bi().await.unwrap();
    ps.write_all(&wt_stream(true, sid_of(&cs), b"abc"))
        .await
        .unwrap();
    let (mut tx, mut rx) = timeout(session.accept_bi()).await.unwrap();
    assert_eq!(
        timeout(rx.read_chunk(10)).await.unwrap().unwrap(),
        &b"abc"[..]
    );
    let s2 = session.clone();
    let blocked = tokio::spawn(async move {
        let (read, stopped, accepted) = tokio::join!(
            rx.read_chunk(10),
            wt_core::SendStream::stopped(&mut tx),
            s2.accept_bi()
        );
        (read, stopped.err(), accepted.err())
    });
    session.close(7, "bye").unwrap();
    let (read, stopped, accepted) = timeout(blocked).await.unwrap();
    for e in [
        read.err(),
        stopped,
        accepted.map(wt_core::StreamError::SessionGone),
    ] {
        assert!(
            matches!(e, Some(wt_core::StreamError::SessionGone(_))),
            "{e:?}"
        );
    }
    assert_eq!(
        timeout(ps.stopped()).await.unwrap(),
        Some(quinn::VarInt::from_u64(H3Code::WT_SESSION_GONE.0).unwrap())
    );
    // The CONNECT stream carried the close capsule and its FIN; the connection is still up.
    while timeout(cr.read_chunk(100, true)).await.unwrap().is_some() {}
    assert!(p.conn.close_reason().is_none());
    drop(cs);
}

#[tokio::test]
async fn local_close_ends_blocked_calls_on_a_connection_that_stays() {
    let (server, tls) = server_with(|_| {});
    let p = raw(&server, &tls).await;
    local_close_ends_blocked_calls(server, p).await;
}

#[tokio::test]
async fn local_close_ends_blocked_calls_with_flow_control() {
    let (server, tls) = fc_server(1 << 20, 10, 10);
    let p = raw_with(&server, &tls, fc_settings(1 << 20, 100, 100)).await;
    local_close_ends_blocked_calls(server, p).await;
}

/// A first write cancelled while flow control holds back the rest of the stream header
/// loses no header byte: the next write sends what is left of the header, then its own
/// data, and the cancelled chunk never reaches the peer.
#[tokio::test]
async fn a_cancelled_first_write_keeps_the_rest_of_the_header() {
    use futures_util::FutureExt;
    use wt_core::SendStream;

    let (server, tls) = server_with(|_| {});
    // Two bytes of stream credit at a time: the header (0x41 as a two-byte varint, then the
    // session ID) is three bytes long.
    let p = raw_with_stream_window(&server, &tls, 2).await;
    // The server's control stream comes two bytes at a time too: drain it as a peer would.
    let conn = p.conn.clone();
    tokio::spawn(async move {
        while let Ok(mut u) = conn.accept_uni().await {
            tokio::spawn(async move { while let Ok(Some(_)) = u.read_chunk(64, true).await {} });
        }
    });
    let (cs, _cr, session) = p.session(&server).await;
    let (mut tx, _rx) = timeout(session.open_bi()).await.unwrap();
    {
        let mut first = Box::pin(tx.write_chunk(Bytes::from_static(b"lost")));
        assert!(
            (&mut first).now_or_never().is_none(),
            "two header bytes go out, then the write waits for credit"
        );
    }
    let writer = tokio::spawn(async move {
        tx.write_chunk(Bytes::from_static(b"kept")).await.unwrap();
        tx.finish().unwrap();
        tx
    });
    let (_ps, mut pr) = timeout(p.conn.accept_bi()).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = timeout(pr.read_chunk(100, true)).await.unwrap() {
        got.extend_from_slice(&c.bytes);
    }
    let _tx = timeout(writer).await.unwrap();
    assert_eq!(got, &wt_stream(true, sid_of(&cs), b"kept")[..]);
}
