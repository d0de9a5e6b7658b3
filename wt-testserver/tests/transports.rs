//! The echo handler and the runner over the real transports: every scenario runs once with
//! `wt_h3::Client` and once with `wt_h2::Client`, against a [`TestServer`] serving both on one
//! port number.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use wt_core::tls::ClientTls;
use wt_core::{
    CompatMode, ConnectError, ConnectRequest, Connector, RecvStream, SendStream, Session,
    SessionError, StreamError,
};
use wt_testserver::{
    codes, EchoConfig, EchoHandler, Limits, ServeOptions, TestServer, TestServerConfig,
};

/// Bounds every await so a hang fails the test.
async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("test step timed out")
}

fn start(serve: ServeOptions, echo: EchoConfig) -> TestServer {
    let config = TestServerConfig {
        serve,
        ..TestServerConfig::default()
    };
    let server = TestServer::<EchoHandler>::start_with(config, echo).expect("server starts");
    assert_eq!(
        server.h3_addr().map(|a| a.port()),
        server.h2_addr().map(|a| a.port()),
        "one port number for both transports"
    );
    server
}

fn default_server() -> TestServer {
    start(ServeOptions::default(), EchoConfig::default())
}

fn pinned(server: &TestServer) -> ClientTls {
    ClientTls {
        cert_hashes: vec![server.cert_hash()],
        ..ClientTls::default()
    }
}

fn h3_client(server: &TestServer) -> wt_h3::Client {
    wt_h3::Client::new(wt_h3::ClientConfig {
        tls: pinned(server),
        connect_timeout: Duration::from_secs(60),
        ..wt_h3::ClientConfig::default()
    })
    .expect("h3 client")
}

fn h2_client(server: &TestServer) -> wt_h2::Client {
    wt_h2::Client::new(wt_h2::ClientConfig {
        tls: pinned(server),
        ..wt_h2::ClientConfig::default()
    })
    .expect("h2 client")
}

fn request(server: &TestServer, path: &str, origin: Option<&str>) -> ConnectRequest {
    ConnectRequest {
        host: "localhost".into(),
        port: server.port(),
        path: path.into(),
        origin: origin.map(str::to_owned),
        ..ConnectRequest::default()
    }
}

async fn connect<C: Connector>(client: &C, server: &TestServer, path: &str) -> C::Session {
    within(client.connect(&request(server, path, None)))
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"))
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

fn assert_closed_by_peer(e: SessionError, code: u32, reason: &str) {
    match e {
        SessionError::ClosedByPeer { code: c, reason: r } => {
            assert_eq!((c, r.as_str()), (code, reason))
        }
        other => panic!("expected close ({code}, {reason:?}), got {other:?}"),
    }
}

fn assert_rejected<S>(r: Result<S, ConnectError>, status: StatusCode) {
    match r {
        Err(ConnectError::Rejected { status: s }) => assert_eq!(s, status),
        Err(e) => panic!("expected rejection {status}, got {e}"),
        Ok(_) => panic!("expected rejection {status}, got a session"),
    }
}

/// Generates `<name>_h3` and `<name>_h2` tests calling `<name>(client, &server)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod h3 { $(
            #[tokio::test]
            async fn $name() {
                let server = super::default_server();
                let client = super::h3_client(&server);
                super::$name(client, &server).await;
                server.stop().await;
            }
        )* }
        mod h2 { $(
            #[tokio::test]
            async fn $name() {
                let server = super::default_server();
                let client = super::h2_client(&server);
                super::$name(client, &server).await;
                server.stop().await;
            }
        )* }
    };
}

on_both!(
    echo_bidi_uni_datagram,
    server_opened_streams,
    reset_and_stop_codes,
    close_code_and_reason,
    drain_seen_by_client,
    rejections_and_origin,
    large_and_parallel_transfers,
    observations_seen_by_server,
    subprotocols_selected,
    unknown_path_status,
);

/// ST-7: 10 MiB each way on one stream, then 100 parallel streams, byte-exact (about a
/// second in debug builds).
async fn large_and_parallel_transfers<C: Connector>(client: C, server: &TestServer) {
    let (large, streams, each) = (10 << 20, 100, 64 << 10);
    let s = connect(&client, server, "/echo").await;
    let data: Bytes = (0..large)
        .map(|i: usize| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    let out = data.clone();
    let writer = tokio::spawn(async move {
        send.write_chunk(out).await.unwrap();
        send.finish().unwrap();
        send
    });
    assert!(
        read_all(&mut recv).await.unwrap() == data[..],
        "large echo differs"
    );
    drop(within(writer).await.unwrap());

    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..streams {
        let s = s.clone();
        tasks.spawn(async move {
            let payload: Vec<u8> = (0..each).map(|i: usize| (i + k) as u8).collect();
            let (mut send, mut recv) = s.open_bi().await.unwrap();
            let out = payload.clone();
            let writer = tokio::spawn(async move {
                send.write_all(&out).await.unwrap();
                send.finish().unwrap();
                send
            });
            let back = recv.read_to_end(each + 1).await.unwrap();
            drop(writer.await.unwrap());
            assert!(back == payload, "stream {k} echo differs");
        });
    }
    while let Some(r) = within(tasks.join_next()).await {
        r.unwrap();
    }
    s.close(0, "").unwrap();
}

async fn echo_bidi_uni_datagram<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/echo").await;
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"hello ").await.unwrap();
    send.write_all(b"world").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"hello world");

    // A larger transfer, read while writing.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    let to_send = big.clone();
    let writer = tokio::spawn(async move {
        send.write_all(&to_send).await.unwrap();
        send.finish().unwrap();
        send
    });
    assert_eq!(read_all(&mut recv).await.unwrap(), big);
    drop(within(writer).await.unwrap());

    let mut uni = within(s.open_uni()).await.unwrap();
    uni.write_all(b"one way").await.unwrap();
    uni.finish().unwrap();
    let mut back = within(s.accept_uni()).await.unwrap();
    assert_eq!(back.id().0 & 3, 3, "server-initiated uni");
    assert_eq!(read_all(&mut back).await.unwrap(), b"one way");

    s.send_datagram(Bytes::from_static(b"ping")).unwrap();
    assert_eq!(within(s.recv_datagram()).await.unwrap(), "ping");
    s.close(0, "").unwrap();
}

async fn server_opened_streams<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/open-uni/100000").await;
    let mut uni = within(s.accept_uni()).await.unwrap();
    assert_eq!(read_all(&mut uni).await.unwrap(), pattern(100_000));
    s.close(0, "").unwrap();

    let s = connect(&client, server, "/open-bidi/10").await;
    let (_send, mut recv) = within(s.accept_bi()).await.unwrap();
    assert_eq!(recv.id().0 & 3, 1, "server-initiated bidi");
    assert_eq!(read_all(&mut recv).await.unwrap(), pattern(10));
    s.close(0, "").unwrap();

    let s = connect(&client, server, "/echo").await;
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD open-uni 5\nafter").await.unwrap();
    send.finish().unwrap();
    let mut uni = within(s.accept_uni()).await.unwrap();
    assert_eq!(read_all(&mut uni).await.unwrap(), pattern(5));
    assert_eq!(read_all(&mut recv).await.unwrap(), b"after");
    s.close(0, "").unwrap();
}

async fn reset_and_stop_codes<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/reset/7").await;
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"x").await.unwrap();
    let err = loop {
        match within(recv.read_chunk(100)).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected a reset, got FIN"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StreamError::Reset(Some(7))), "{err:?}");
    s.close(0, "").unwrap();

    let s = connect(&client, server, "/stop/9").await;
    let (mut send, _recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"x").await.unwrap();
    assert_eq!(within(send.stopped()).await.unwrap(), Some(9));
    s.close(0, "").unwrap();

    let s = connect(&client, server, "/echo").await;
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD reset 11\n").await.unwrap();
    let err = read_all(&mut recv).await.unwrap_err();
    assert!(matches!(err, StreamError::Reset(Some(11))), "{err:?}");
    let (mut send, _recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD stop 12\n").await.unwrap();
    assert_eq!(within(send.stopped()).await.unwrap(), Some(12));
    s.close(0, "").unwrap();
}

async fn close_code_and_reason<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/close/42/bye").await;
    assert_closed_by_peer(within(s.closed()).await, 42, "bye");

    let s = connect(&client, server, "/echo").await;
    let (mut send, _recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD close 300 so long\n").await.unwrap();
    assert_closed_by_peer(within(s.closed()).await, 300, "so long");
}

async fn drain_seen_by_client<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/drain").await;
    within(s.draining()).await;
    // Still usable.
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"after drain").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"after drain");
    s.close(0, "").unwrap();

    let s = connect(&client, server, "/echo").await;
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD drain\n").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"");
    within(s.draining()).await;
    s.close(0, "").unwrap();
}

async fn rejections_and_origin<C: Connector>(client: C, server: &TestServer) {
    let r = within(client.connect(&request(server, "/reject/418", None))).await;
    assert_rejected(r, StatusCode::IM_A_TEAPOT);
    let r = within(client.connect(&request(server, "/origin-check", None))).await;
    assert_rejected(r, StatusCode::FORBIDDEN);
    let r = within(client.connect(&request(
        server,
        "/origin-check",
        Some("https://evil.example"),
    )))
    .await;
    assert_rejected(r, StatusCode::FORBIDDEN);
    let s = within(client.connect(&request(
        server,
        "/origin-check",
        Some("https://allowed.example"),
    )))
    .await
    .expect("allowed origin");
    s.close(0, "").unwrap();
}

/// Sends a `WT-CMD` line + FIN on a new stream; returns the stream ID and what comes back.
async fn command_on<S: Session>(s: &S, line: &str) -> (u64, String) {
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(format!("WT-CMD {line}\n").as_bytes())
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = String::from_utf8(read_all(&mut recv).await.unwrap()).unwrap();
    (send.id().0, reply)
}

async fn command<S: Session>(s: &S, line: &str) -> String {
    command_on(s, line).await.1
}

/// Runs an `/observed/...` query and returns the reply.
async fn observed<C: Connector>(client: &C, server: &TestServer, path: &str) -> String {
    let q = connect(client, server, path).await;
    let mut uni = within(q.accept_uni()).await.unwrap();
    let reply = String::from_utf8(read_all(&mut uni).await.unwrap()).unwrap();
    q.close(0, "").unwrap();
    reply
}

async fn observations_seen_by_server<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/echo").await;
    let (id_stream, token) = command_on(&s, "id").await;
    let token = token.strip_suffix('\n').expect("a line").to_owned();
    // RS-2 server side: the client resets with 7; the server mirrors the reset.
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    let reset_id = send.id().0;
    send.write_all(b"x").await.unwrap();
    send.reset(7).unwrap();
    let err = read_all(&mut recv).await.unwrap_err();
    assert!(matches!(err, StreamError::Reset(Some(7))), "{err:?}");
    // RS-3 server side: the client stops the server's half with 9; asked while live.
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    let stop_id = send.id().0;
    send.write_all(b"y").await.unwrap();
    assert_eq!(within(recv.read_chunk(10)).await.unwrap().unwrap(), "y");
    recv.stop(9).unwrap();
    let reply = observed(&client, server, &format!("/observed/{token}/{stop_id}")).await;
    assert!(
        reply.ends_with(&format!("stream-closed {token} {stop_id} stop 9\n")),
        "{reply:?}"
    );
    // CL-1 server side: close code and reason (escaped).
    s.close(300, "bye\n100%").unwrap();
    let reply = observed(&client, server, &format!("/observed/{token}")).await;
    let mut lines: Vec<&str> = reply.lines().collect();
    assert_eq!(
        lines.pop(),
        Some(format!("terminate {token} peer-closed 300 bye%0A100%25").as_str()),
        "{reply:?}"
    );
    lines.sort_unstable();
    let mut want = [
        format!("stream-closed {token} {id_stream} normal"),
        format!("stream-closed {token} {reset_id} reset 7"),
        format!("stream-closed {token} {stop_id} stop 9"),
    ];
    want.sort_unstable();
    assert_eq!(lines, want, "{reply:?}");
    drop(send);

    // A server-side close, queried before the client even looked.
    let s = connect(&client, server, "/echo").await;
    let token = command(&s, "id").await.trim_end().to_owned();
    let (mut send, _recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD close 42 done\n").await.unwrap();
    let reply = observed(&client, server, &format!("/observed/{token}")).await;
    assert!(
        reply.ends_with(&format!("terminate {token} closed 42 done\n")),
        "{reply:?}"
    );
    assert_closed_by_peer(within(s.closed()).await, 42, "done");

    // Unknown tokens are 404 on every dialect.
    let r = within(client.connect(&request(server, "/observed/999999", None))).await;
    assert_rejected(r, StatusCode::NOT_FOUND);
}

async fn subprotocols_selected<C: Connector>(client: C, server: &TestServer) {
    let offer = |path: &str, protocols: &[&str]| ConnectRequest {
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        ..request(server, path, None)
    };
    // HS-8: offered "a", "b" -> "b".
    let s = within(client.connect(&offer("/echo", &["a", "b"])))
        .await
        .unwrap();
    assert_eq!(s.info().protocol.as_deref(), Some("b"));
    assert_eq!(command(&s, "protocol").await, "b\n");
    s.close(0, "").unwrap();
    let s = within(client.connect(&offer("/protocol/a", &["a", "b"])))
        .await
        .unwrap();
    assert_eq!(s.info().protocol.as_deref(), Some("a"));
    assert_eq!(command(&s, "protocol").await, "a\n");
    s.close(0, "").unwrap();
    let s = connect(&client, server, "/echo").await;
    assert_eq!(s.info().protocol, None);
    assert_eq!(command(&s, "protocol").await, "\n");
    s.close(0, "").unwrap();
    let r = within(client.connect(&offer("/protocol/c", &["a", "b"]))).await;
    assert_rejected(r, StatusCode::BAD_REQUEST);
}

async fn unknown_path_status<C: Connector>(client: C, server: &TestServer) {
    let s = connect(&client, server, "/echo").await;
    let dialect = s.info().dialect;
    s.close(0, "").unwrap();
    assert!(
        matches!(
            dialect,
            wt_core::Dialect::H3Latest | wt_core::Dialect::H2Latest
        ),
        "{dialect:?}"
    );
    for path in ["/no-such-resource", "/echo/extra"] {
        let r = within(client.connect(&request(server, path, None))).await;
        assert_rejected(r, StatusCode::METHOD_NOT_ALLOWED);
    }
}

/// A draft-02 (browser-style) HTTP/3 request for an unknown path gets 404. (Over HTTP/2 the
/// request's dialect is the server's configured one, `H2Latest` for a [`TestServer`]; the
/// `H2Legacy` → 404 rule is covered by the handler's unit tests.)
#[tokio::test]
async fn unknown_path_is_404_for_legacy_dialects() {
    let server = default_server();
    let h3 = wt_h3::Client::new(wt_h3::ClientConfig {
        tls: pinned(&server),
        compat: CompatMode::LegacyBrowserCompat,
        connect_timeout: Duration::from_secs(60),
        ..wt_h3::ClientConfig::default()
    })
    .expect("h3 client");
    let s = connect(&h3, &server, "/echo").await;
    assert_eq!(s.info().dialect, wt_core::Dialect::H3Draft02);
    s.close(0, "").unwrap();
    let r = within(h3.connect(&request(&server, "/no-such-resource", None))).await;
    assert_rejected(r, StatusCode::NOT_FOUND);
    server.stop().await;
}

// ---- Tests that need a specially configured server -----------------------------------------

async fn panic_isolation<C: Connector>(client: C, server: &TestServer) {
    let a = connect(&client, server, "/echo").await;
    let b = connect(&client, server, "/echo").await;
    let (mut send, _recv) = within(a.open_bi()).await.unwrap();
    send.write_all(b"WT-CMD panic\n").await.unwrap();
    assert_closed_by_peer(
        within(a.closed()).await,
        codes::HANDLER_PANICKED,
        codes::HANDLER_PANICKED_REASON,
    );
    let (mut send, mut recv) = within(b.open_bi()).await.unwrap();
    send.write_all(b"b lives").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"b lives");
    let c = connect(&client, server, "/echo").await;
    c.send_datagram(Bytes::from_static(b"c")).unwrap();
    assert_eq!(within(c.recv_datagram()).await.unwrap(), "c");
    b.close(0, "").unwrap();
    c.close(0, "").unwrap();
}

fn panic_server() -> TestServer {
    start(
        ServeOptions::default(),
        EchoConfig {
            allow_panic_command: true,
            ..EchoConfig::default()
        },
    )
}

#[tokio::test]
async fn panic_isolation_h3() {
    let server = panic_server();
    panic_isolation(h3_client(&server), &server).await;
}

#[tokio::test]
async fn panic_isolation_h2() {
    let server = panic_server();
    panic_isolation(h2_client(&server), &server).await;
}

async fn session_limit<C: Connector>(client: C, server: &TestServer) {
    let a = connect(&client, server, "/echo").await;
    let r = within(client.connect(&request(server, "/echo", None))).await;
    assert_rejected(r, StatusCode::TOO_MANY_REQUESTS);
    a.close(0, "").unwrap();
}

fn one_session_server() -> TestServer {
    start(
        ServeOptions {
            limits: Limits {
                max_sessions: 1,
                ..Limits::default()
            },
            ..ServeOptions::default()
        },
        EchoConfig::default(),
    )
}

#[tokio::test]
async fn session_limit_h3() {
    let server = one_session_server();
    session_limit(h3_client(&server), &server).await;
}

#[tokio::test]
async fn session_limit_h2() {
    let server = one_session_server();
    session_limit(h2_client(&server), &server).await;
}

async fn graceful_stop<C: Connector>(make_client: fn(&TestServer) -> C) {
    let server = default_server();
    let client = make_client(&server);
    let s = connect(&client, &server, "/echo").await;
    let stop = tokio::spawn(server.stop());
    within(s.draining()).await;
    // The session keeps working while draining.
    let (mut send, mut recv) = within(s.open_bi()).await.unwrap();
    send.write_all(b"draining").await.unwrap();
    send.finish().unwrap();
    assert_eq!(read_all(&mut recv).await.unwrap(), b"draining");
    s.close(0, "").unwrap();
    let stats = within(stop).await.unwrap();
    assert_eq!(stats.active_at_start, 1);
    assert_eq!(stats.forced, 0);
}

#[tokio::test]
async fn graceful_stop_h3() {
    graceful_stop(h3_client).await;
}

#[tokio::test]
async fn graceful_stop_h2() {
    graceful_stop(h2_client).await;
}

async fn forced_stop<C: Connector>(make_client: fn(&TestServer) -> C) {
    let server = start(
        ServeOptions {
            shutdown_grace: Duration::from_millis(200),
            ..ServeOptions::default()
        },
        EchoConfig::default(),
    );
    let client = make_client(&server);
    let s = connect(&client, &server, "/echo").await;
    let stats = within(server.stop()).await;
    assert_eq!(stats.forced, 1);
    assert_closed_by_peer(
        within(s.closed()).await,
        codes::SHUTDOWN,
        codes::SHUTDOWN_REASON,
    );
}

#[tokio::test]
async fn forced_stop_h3() {
    forced_stop(h3_client).await;
}

#[tokio::test]
async fn forced_stop_h2() {
    forced_stop(h2_client).await;
}

/// Sessions open at once in the concurrency test.
const CONCURRENT_SESSIONS: usize = 500;
/// Handshakes in flight at once in the concurrency test.
const HANDSHAKES_IN_FLIGHT: usize = 32;

async fn many_sessions<C: Connector + Clone>(make_client: fn(&TestServer) -> C) {
    let server = start(
        ServeOptions {
            limits: Limits {
                max_sessions: CONCURRENT_SESSIONS,
                ..Limits::default()
            },
            ..ServeOptions::default()
        },
        EchoConfig::default(),
    );
    let client = make_client(&server);
    let started = std::time::Instant::now();
    // All sessions stay open together; only the handshakes are paced, since 500 simultaneous
    // QUIC Initials overflow the server's UDP receive buffer and the losses cost seconds of
    // retransmission timers.
    let handshakes = std::sync::Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CONCURRENT_SESSIONS {
        let client = client.clone();
        let req = request(&server, "/echo", None);
        let handshakes = handshakes.clone();
        tasks.spawn(async move {
            let permit = handshakes.acquire_owned().await.expect("semaphore");
            let s = client.connect(&req).await.expect("connect");
            drop(permit);
            let (mut send, mut recv) = s.open_bi().await.expect("open");
            let msg = format!("session {i}");
            send.write_all(msg.as_bytes()).await.expect("write");
            send.finish().expect("finish");
            let echoed = recv.read_to_end(1024).await.expect("read");
            assert_eq!(echoed, msg.as_bytes());
            s
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = within(tasks.join_next()).await {
        sessions.push(r.expect("session task"));
    }
    assert_eq!(sessions.len(), CONCURRENT_SESSIONS);
    assert_eq!(server.active_sessions(), CONCURRENT_SESSIONS);
    eprintln!(
        "{CONCURRENT_SESSIONS} concurrent sessions established and echoed in {:?}",
        started.elapsed()
    );
    for s in &sessions {
        s.close(0, "").unwrap();
    }
    let stats = within(server.stop()).await;
    assert_eq!(stats.forced, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_h3() {
    many_sessions(h3_client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_h2() {
    many_sessions(h2_client).await;
}
