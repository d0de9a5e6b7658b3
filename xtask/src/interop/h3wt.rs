//! hyperium `h3` + `h3-quinn` + `h3-webtransport` (Rust package registry): its server ← our HTTP/3 client.
//!
//! h3-webtransport 0.1 is server-only and speaks draft-02 (SETTINGS_ENABLE_WEBTRANSPORT,
//! SETTINGS_H3_DATAGRAM, `sec-webtransport-http3-draft: draft02`). It keeps the CONNECT stream
//! to itself and neither reads nor writes capsules on it, so it can neither report a
//! WT_CLOSE_SESSION it receives nor send one: both close checks are SKIP.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h3::ext::Protocol;
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wt_core::{CompatMode, Session};

use super::matrix::{Outcome, Scenario};
use super::ours;
use super::{compat_name, Certs};

type H3Conn = h3_quinn::Connection;
type WtSession = WebTransportSession<H3Conn, Bytes>;

/// Our client → h3-webtransport's echo server.
pub async fn our_client_to_h3wt(certs: &Certs, compat: CompatMode) -> Scenario {
    let client = format!("wt-h3 {}", compat_name(compat));
    let mut sc = Scenario::new("h3-webtransport", &client, "h3-webtransport", "h3");
    if let Err(e) = run(certs, compat, &mut sc).await {
        sc.fail_rest(&super::ALL, &e);
    }
    sc
}

fn start_server(certs: &Certs) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let tls = certs
        .tls
        .build(&[b"h3"], false)
        .map_err(|e| format!("TLS for h3-webtransport: {e}"))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("QUIC TLS for h3-webtransport: {e}"))?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("binding the h3-webtransport server: {e}"))?;
    let addr = endpoint
        .local_addr()
        .map_err(|e| format!("h3-webtransport server address: {e}"))?;
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Some(incoming) = endpoint.accept().await {
            conns.spawn(async move {
                if let Err(e) = serve_connection(incoming).await {
                    tracing::debug!("h3-webtransport connection: {e}");
                }
            });
        }
    });
    Ok((addr, task))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_connection(incoming: quinn::Incoming) -> Result<(), BoxError> {
    let conn = incoming.await?;
    let mut h3c: h3::server::Connection<H3Conn, Bytes> = h3::server::builder()
        .enable_webtransport(true)
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_webtransport_sessions(1)
        .send_grease(true)
        .build(h3_quinn::Connection::new(conn))
        .await?;
    while let Some(resolver) = h3c.accept().await? {
        let (req, mut stream) = resolver.resolve_request().await?;
        let is_wt = req.method() == http::Method::CONNECT
            && req.extensions().get::<Protocol>() == Some(&Protocol::WEB_TRANSPORT);
        if is_wt {
            let session = WebTransportSession::accept(req, stream, h3c).await?;
            echo(Arc::new(session)).await;
            return Ok(());
        }
        let resp = http::Response::builder()
            .status(http::StatusCode::NOT_FOUND)
            .body(())?;
        stream.send_response(resp).await?;
        stream.finish().await?;
    }
    Ok(())
}

async fn echo(session: Arc<WtSession>) {
    let mut reader = session.datagram_reader();
    let mut sender = session.datagram_sender();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            d = reader.read_datagram() => match d {
                Ok(d) => { let _ = sender.send_datagram(d.into_payload()); }
                Err(_) => break,
            },
            u = session.accept_uni() => match u {
                Ok(Some((_, mut rx))) => {
                    let s = session.clone();
                    tasks.spawn(async move {
                        let mut data = Vec::new();
                        if (&mut rx).take(1 << 20).read_to_end(&mut data).await.is_err() {
                            return;
                        }
                        let Ok(mut tx) = s.open_uni(s.session_id()).await else { return };
                        if tx.write_all(&data).await.is_ok() {
                            let _ = tx.shutdown().await;
                        }
                    });
                }
                _ => break,
            },
            b = session.accept_bi() => match b {
                Ok(Some(AcceptedBi::BidiStream(_, stream))) => {
                    tasks.spawn(async move {
                        let (mut tx, mut rx) = h3::quic::BidiStream::split(stream);
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match rx.read(&mut buf).await {
                                Ok(0) => break,
                                Ok(n) => if tx.write_all(&buf[..n]).await.is_err() { return },
                                Err(_) => return,
                            }
                        }
                        let _ = tx.shutdown().await;
                    });
                }
                Ok(Some(AcceptedBi::Request(..))) => {}
                _ => break,
            },
        }
    }
    tasks.abort_all();
}

async fn run(certs: &Certs, compat: CompatMode, sc: &mut Scenario) -> Result<(), String> {
    let (addr, server) = start_server(certs)?;
    let _abort = AbortOnDrop(server);
    let client = ours::h3_client(ours::pinned(certs.hash), compat)?;
    let session = ours::connect(&client, &ours::request(addr, "localhost", "/echo")).await?;
    sc.set(
        "connect",
        Outcome::PassNote(format!("dialect {}", session.info().dialect)),
    );
    ours::stream_checks(&session, sc).await;
    let _ = session.close(ours::OUR_CLOSE_CODE, ours::OUR_CLOSE_REASON);
    sc.set(
        "close-sent",
        Outcome::Skip(
            "h3-webtransport 0.1 never reads the CONNECT stream's capsules, so it cannot \
             report a WT_CLOSE_SESSION"
                .into(),
        ),
    );
    sc.set(
        "close-received",
        Outcome::Skip(
            "h3-webtransport 0.1 has no API to close a session with a code and reason".into(),
        ),
    );
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
