//! Close codes seen on both sides (with a bare server that reports how the session ended),
//! connect timeouts, and `Transport::Auto` falling back to HTTP/2 when UDP is dead.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{any_port, bind_h2, bind_h3, client_opts, echo, tls, Kind};
use tokio::sync::oneshot;
use wt_client::{Error, Frame, Msg, Options, Transport, TransportKind};
use wt_core::{AcceptOptions, Acceptor, ConnectError, IncomingRequest, Session, SessionError};
use wt_testserver::{serve, EchoConfig, EchoHandler, ServeOptions};

/// Accepts one session and reports how it ended.
fn closer<A: Acceptor>(acceptor: A) -> (SocketAddr, oneshot::Receiver<SessionError>) {
    let addr = acceptor.local_addr();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let req = acceptor.accept().await.expect("request");
        let session = req.accept(AcceptOptions::default()).await.expect("accept");
        let _ = tx.send(session.closed().await);
        drop(acceptor);
    });
    (addr, rx)
}

fn closer_for(kind: Kind) -> (SocketAddr, [u8; 32], oneshot::Receiver<SessionError>) {
    let tls = tls();
    let hash = tls.cert_hash();
    let (addr, rx) = match kind {
        Kind::H3 => closer(bind_h3(tls, any_port())),
        Kind::H2 => closer(bind_h2(tls, any_port())),
    };
    (addr, hash, rx)
}

async fn our_close_code_reaches_the_server(kind: Kind) {
    let (addr, hash, ended) = closer_for(kind);
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let conn = wt_client::connect(&url, client_opts(kind, hash))
        .await
        .unwrap();
    // Too long a reason: refused, nothing sent.
    let long = "r".repeat(1025);
    assert!(matches!(
        conn.close_with(9, &long).await,
        Err(Error::InvalidReason(1025))
    ));
    conn.close_with(4000, "done for today").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .unwrap()
        .unwrap();
    match seen {
        SessionError::ClosedByPeer { code, reason } => {
            assert_eq!((code, reason.as_str()), (4000, "done for today"))
        }
        other => panic!("server saw {other:?}"),
    }
    assert!(matches!(
        conn.recv().await,
        Err(Error::Closed { code: 4000, .. })
    ));
    let close = conn.info().await.unwrap().close.unwrap();
    assert!(!close.by_peer);
    assert_eq!(close.code, 4000);
}

async fn dropping_the_last_handle_closes(kind: Kind) {
    let (addr, hash, ended) = closer_for(kind);
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let conn = wt_client::connect(&url, client_opts(kind, hash))
        .await
        .unwrap();
    let clone = conn.clone();
    drop(conn);
    clone.send(Frame::binary("still open")).await.unwrap();
    drop(clone);
    let seen = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(seen, SessionError::ClosedByPeer { code: 0, .. }),
        "server saw {seen:?}"
    );
}

both!(
    our_close_code_reaches_the_server,
    dropping_the_last_handle_closes
);

#[tokio::test]
async fn h3_connect_timeout_when_udp_is_dead() {
    // A UDP socket that never answers.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let opts = client_opts(Kind::H3, [0; 32]).connect_timeout(Duration::from_millis(300));
    let err = wt_client::connect(&format!("https://127.0.0.1:{port}/"), opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connect(ConnectError::Timeout(_))),
        "{err}"
    );
}

#[tokio::test]
async fn auto_falls_back_to_h2_when_udp_is_dead() {
    let srv = echo(Kind::H2);
    // Hold the UDP port of the same number so nothing can answer QUIC there.
    let _sink = std::net::UdpSocket::bind(srv.addr).unwrap();
    let opts = Options::default()
        .transport(Transport::Auto)
        .cert_hash(srv.hash)
        .connect_timeout(Duration::from_secs(5));
    let t0 = std::time::Instant::now();
    let conn = wt_client::connect(&srv.url("/echo"), opts).await.unwrap();
    assert!(t0.elapsed() >= wt_client::DEFAULT_AUTO_HEAD_START);
    assert_eq!(conn.transport(), TransportKind::Http2);
    assert_eq!(conn.info().await.unwrap().transport, TransportKind::Http2);
    conn.send(Frame::binary("via h2")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 6 {
        match conn.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            Msg::Binary(b) => got.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, b"via h2");
}

#[tokio::test]
async fn auto_prefers_h3_when_it_works() {
    let tls = tls();
    let hash = tls.cert_hash();
    let mut listener = serve::<EchoHandler, _>(
        bind_h2(tls.clone(), any_port()),
        EchoConfig::default(),
        ServeOptions::default(),
    );
    let port = listener.local_addrs()[0].port();
    listener.serve(bind_h3(tls, SocketAddr::from(([127, 0, 0, 1], port))));
    let mut opts = Options::default()
        .transport(Transport::Auto)
        .cert_hash(hash)
        .connect_timeout(Duration::from_secs(10));
    // A long head start keeps the outcome deterministic on a loaded machine.
    opts.auto_head_start = Duration::from_secs(8);
    let conn = wt_client::connect(&format!("https://127.0.0.1:{port}/echo"), opts)
        .await
        .unwrap();
    assert_eq!(conn.info().await.unwrap().transport, TransportKind::Http3);
}

#[tokio::test]
async fn auto_reports_failure_when_both_fail() {
    let srv = echo(Kind::H2);
    let _sink = std::net::UdpSocket::bind(srv.addr).unwrap();
    let opts = Options::default()
        .transport(Transport::Auto)
        .connect_timeout(Duration::from_secs(5));
    // No trust for the certificate: HTTP/2 fails the handshake; HTTP/3 is still waiting, so
    // the overall connect ends by the timeout or with the TLS error, never with a session.
    let mut opts = opts;
    opts.tls.webpki_roots = false;
    opts.connect_timeout = Duration::from_millis(800);
    let err = wt_client::connect(&srv.url("/echo"), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err}");
}
