//! `wtransport` (from the Rust package registry, an independent Rust implementation on quinn): its echo server ←
//! our HTTP/3 client, and its client → our test server.
//!
//! wtransport can receive WT_CLOSE_SESSION (reported as `ApplicationClosed` with the code and
//! reason) but has no way to send one: `Connection::close` closes the whole QUIC connection
//! with the code as the QUIC application error code. Its close checks therefore look for the
//! code and reason in a connection close, and say so.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use wt_core::{CompatMode, Session, SessionError};
use wtransport::error::ConnectionError as WtConnError;
use wtransport::tls::{Certificate, CertificateChain, PrivateKey, Sha256Digest};
use wtransport::{ClientConfig, Connection, Endpoint, Identity, ServerConfig, VarInt};

use super::matrix::{Outcome, Scenario};
use super::ours::{self, OurServer, STEP};
use super::{compat_name, Certs};

const CLOSE_ME_CODE: u32 = 4242;
const CLOSE_ME_REASON: &str = "wtransport says bye";

/// Our client → wtransport's server.
pub async fn our_client_to_wtransport(certs: &Certs, compat: CompatMode) -> Scenario {
    let client = format!("wt-h3 {}", compat_name(compat));
    let mut sc = Scenario::new("wtransport", &client, "wtransport", "h3");
    if let Err(e) = run_our_client(certs, compat, &mut sc).await {
        sc.fail_rest(&super::ALL, &e);
    }
    sc
}

fn identity(certs: &Certs) -> Result<Identity, String> {
    let cert = Certificate::from_der(certs.tls.leaf().to_vec())
        .map_err(|e| format!("wtransport rejects our certificate: {e}"))?;
    let key_pem = certs.tls.key_pem().ok_or("no key PEM")?;
    let key_der = wt_core::tls::key_from_pem(key_pem.as_bytes())
        .map_err(|e| format!("reading our key: {e}"))?;
    Ok(Identity::new(
        CertificateChain::single(cert),
        PrivateKey::from_der_pkcs8(key_der.secret_der().to_vec()),
    ))
}

/// How sessions on the wtransport server ended: (path, description).
type EndLog = mpsc::Receiver<(String, String)>;

fn describe_end(e: &WtConnError) -> String {
    match e {
        WtConnError::ApplicationClosed(c) => format!(
            "CLOSE {} {}",
            c.code().into_inner(),
            String::from_utf8_lossy(c.reason())
        ),
        other => format!("END {other}"),
    }
}

async fn start_server(
    certs: &Certs,
) -> Result<(SocketAddr, EndLog, tokio::task::JoinHandle<()>), String> {
    let config = ServerConfig::builder()
        .with_bind_address(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_identity(identity(certs)?)
        .build();
    let endpoint = Endpoint::server(config).map_err(|e| format!("wtransport server: {e}"))?;
    let addr = endpoint
        .local_addr()
        .map_err(|e| format!("wtransport server address: {e}"))?;
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            let incoming = endpoint.accept().await;
            let tx = tx.clone();
            sessions.spawn(async move {
                let Ok(request) = incoming.await else { return };
                let path = request.path().to_owned();
                let Ok(conn) = request.accept().await else {
                    return;
                };
                let end = echo_session(conn, &path).await;
                let _ = tx.send((path, end)).await;
            });
        }
    });
    Ok((addr, rx, task))
}

/// Echoes one session until it ends; returns how it ended.
///
/// wtransport reports a received WT_CLOSE_SESSION only as the error of pending stream and
/// datagram operations (`Connection::closed` waits for the QUIC connection, which wtransport
/// then closes locally), so the accept loops' errors are what tells how the session ended.
///
/// On `/close-me` the first bidirectional stream is echoed, and the second one closes the
/// connection as it arrives: the client opens it once it has read the echo, so the close
/// cannot overtake the echo (a QUIC close discards stream data not yet read).
async fn echo_session(conn: Connection, path: &str) -> String {
    let close_me = path == "/close-me";
    let mut tasks: tokio::task::JoinSet<WtConnError> = tokio::task::JoinSet::new();
    let c = conn.clone();
    tasks.spawn(async move {
        let mut accepted = 0usize;
        loop {
            let (mut tx, mut rx) = match c.accept_bi().await {
                Ok(s) => s,
                Err(e) => return e,
            };
            accepted += 1;
            if close_me && accepted > 1 {
                c.close(VarInt::from_u32(CLOSE_ME_CODE), CLOSE_ME_REASON.as_bytes());
                continue;
            }
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(Some(n)) = rx.read(&mut buf).await {
                    if tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = tx.finish().await;
            });
        }
    });
    let c = conn.clone();
    tasks.spawn(async move {
        loop {
            let mut rx = match c.accept_uni().await {
                Ok(s) => s,
                Err(e) => return e,
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(Some(n)) = rx.read(&mut buf).await {
                    if data.len() + n > 1 << 20 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let Ok(opening) = c.open_uni().await else {
                    return;
                };
                let Ok(mut tx) = opening.await else { return };
                if tx.write_all(&data).await.is_ok() {
                    let _ = tx.finish().await;
                }
            });
        }
    });
    let c = conn.clone();
    tasks.spawn(async move {
        loop {
            match c.receive_datagram().await {
                Ok(d) => {
                    let _ = c.send_datagram(d.payload());
                }
                Err(e) => return e,
            }
        }
    });
    let c = conn.clone();
    tasks.spawn(async move { c.closed().await });
    let mut first = None;
    while let Some(r) = tasks.join_next().await {
        let Ok(e) = r else { continue };
        if matches!(e, WtConnError::ApplicationClosed(_)) {
            first = Some(e);
            break;
        }
        first.get_or_insert(e);
        // Give the other loops a moment to report the session's close (bounded).
        if let Ok(Some(Ok(e2))) =
            tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await
        {
            if matches!(e2, WtConnError::ApplicationClosed(_)) {
                first = Some(e2);
            }
        }
        break;
    }
    tasks.abort_all();
    first.map_or_else(|| "END unknown".to_owned(), |e| describe_end(&e))
}

/// How a wtransport session ended, as its pending operations report it.
async fn wt_session_end(c: &Connection) -> WtConnError {
    tokio::select! {
        e = async { loop { if let Err(e) = c.accept_uni().await { return e } } } => e,
        e = async { loop { if let Err(e) = c.accept_bi().await { return e } } } => e,
        e = async { loop { if let Err(e) = c.receive_datagram().await { return e } } } => e,
    }
}

async fn wait_end(log: &mut EndLog, path: &str) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, log.recv()).await {
            Ok(Some((p, end))) if p == path => return Ok(end),
            Ok(Some(_)) => continue,
            Ok(None) => return Err("the wtransport server stopped".into()),
            Err(_) => return Err(format!("the wtransport server saw no end of {path}")),
        }
    }
}

async fn run_our_client(
    certs: &Certs,
    compat: CompatMode,
    sc: &mut Scenario,
) -> Result<(), String> {
    let (addr, mut log, server) = start_server(certs).await?;
    let _abort = AbortOnDrop(server);
    let client = ours::h3_client(ours::pinned(certs.hash), compat)?;
    let session = ours::connect(&client, &ours::request(addr, "localhost", "/echo")).await?;
    sc.set(
        "connect",
        Outcome::PassNote(format!("dialect {}", session.info().dialect)),
    );
    ours::stream_checks(&session, sc).await;

    let reason = format!("{} {}", ours::OUR_CLOSE_REASON, compat_name(compat));
    let outcome = match session.close(ours::OUR_CLOSE_CODE, &reason) {
        Err(e) => Outcome::Fail(format!("close: {e}")),
        Ok(()) => match wait_end(&mut log, "/echo").await {
            Err(e) => Outcome::Fail(e),
            Ok(end) if end == format!("CLOSE {} {reason}", ours::OUR_CLOSE_CODE) => Outcome::Pass,
            Ok(end) => Outcome::Fail(format!(
                "wtransport expected WT_CLOSE_SESSION {} {reason:?}, saw {end}",
                ours::OUR_CLOSE_CODE
            )),
        },
    };
    sc.set("close-sent", outcome);

    let outcome = match ours::connect(&client, &ours::request(addr, "localhost", "/close-me")).await
    {
        Err(e) => Outcome::Fail(e),
        Ok(s) => match ours::check_bidi(&s).await {
            Err(e) => Outcome::Fail(format!("bidi echo before the close: {e}")),
            Ok(()) => {
                ask_for_the_close(&s).await;
                match ours::step("the peer's close", s.closed()).await {
                    Err(e) => Outcome::Fail(e),
                    Ok(err) => connection_close_outcome(&err),
                }
            }
        },
    };
    sc.set("close-received", outcome);
    Ok(())
}

/// Opens the second bidirectional stream of a `/close-me` session, on which the wtransport
/// server closes the connection. The stream is seen once written to; its own fate does not
/// matter (the close may end the write), only the close that follows.
async fn ask_for_the_close<S: Session>(s: &S) {
    use wt_core::SendStream;
    if let Ok((mut tx, _rx)) = s.open_bi().await {
        let _ = tx.write_all(b"close me").await;
        let _ = tx.finish();
    }
}

fn connection_close_outcome(err: &SessionError) -> Outcome {
    use wt_core::{ConnectionError, WireCode};
    match err {
        SessionError::Connection(ConnectionError::ClosedByPeer {
            code: WireCode::H3(c),
            reason,
        }) if c.0 == u64::from(CLOSE_ME_CODE) && reason == CLOSE_ME_REASON => Outcome::PassNote(
            format!(
                "wtransport cannot send WT_CLOSE_SESSION; its QUIC CONNECTION_CLOSE \
                 {CLOSE_ME_CODE} {CLOSE_ME_REASON:?} was reported"
            ),
        ),
        other => Outcome::Fail(format!(
            "expected wtransport's connection close {CLOSE_ME_CODE} {CLOSE_ME_REASON:?}, got: {other}"
        )),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// wtransport's client → our test server.
pub async fn wtransport_client_to_ours() -> Scenario {
    let mut sc = Scenario::new("wtransport", "wtransport", "wt-testserver", "h3");
    match OurServer::start(wt_testserver::Transports::H3) {
        Err(e) => sc.fail_rest(&super::ALL, &e),
        Ok(server) => {
            if let Err(e) = run_wtransport_client(&server, &mut sc).await {
                sc.fail_rest(&super::ALL, &e);
            }
            server.stop().await;
        }
    }
    sc
}

async fn wt_connect(
    endpoint: &Endpoint<wtransport::endpoint::endpoint_side::Client>,
    url: &str,
) -> Result<Connection, String> {
    match tokio::time::timeout(STEP, endpoint.connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("wtransport connect: {e}")),
        Err(_) => Err("wtransport connect timed out".into()),
    }
}

async fn read_all(rx: &mut wtransport::RecvStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(Some(n)) if out.len() + n <= 1 << 16 => out.extend_from_slice(&buf[..n]),
            Ok(Some(_)) => return Err("more than 64 KiB".into()),
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

async fn wt_bidi(c: &Connection) -> Result<(), String> {
    let opening = c.open_bi().await.map_err(|e| format!("open_bi: {e}"))?;
    let (mut tx, mut rx) = opening.await.map_err(|e| format!("open_bi: {e}"))?;
    tx.write_all(ours::BIDI_MSG)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tx.finish().await.map_err(|e| format!("finish: {e}"))?;
    let got = read_all(&mut rx).await?;
    if got == ours::BIDI_MSG {
        Ok(())
    } else {
        Err(format!("echo was {:?}", String::from_utf8_lossy(&got)))
    }
}

async fn wt_uni(c: &Connection) -> Result<(), String> {
    let opening = c.open_uni().await.map_err(|e| format!("open_uni: {e}"))?;
    let mut tx = opening.await.map_err(|e| format!("open_uni: {e}"))?;
    tx.write_all(ours::UNI_MSG)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tx.finish().await.map_err(|e| format!("finish: {e}"))?;
    let mut rx = c
        .accept_uni()
        .await
        .map_err(|e| format!("accept_uni: {e}"))?;
    let got = read_all(&mut rx).await?;
    if got == ours::UNI_MSG {
        Ok(())
    } else {
        Err(format!(
            "server uni stream carried {:?}",
            String::from_utf8_lossy(&got)
        ))
    }
}

async fn wt_datagram(c: &Connection) -> Result<(), String> {
    for _ in 0..10 {
        c.send_datagram(ours::DGRAM_MSG)
            .map_err(|e| format!("send_datagram: {e}"))?;
        match tokio::time::timeout(Duration::from_millis(500), c.receive_datagram()).await {
            Ok(Ok(d)) if d.payload() == ours::DGRAM_MSG => return Ok(()),
            Ok(Ok(d)) => return Err(format!("echo was {:?}", d.payload())),
            Ok(Err(e)) => return Err(format!("receive_datagram: {e}")),
            Err(_) => continue,
        }
    }
    Err("no echo after 10 datagrams".into())
}

async fn bounded(what: &str, f: impl std::future::Future<Output = Result<(), String>>) -> Outcome {
    Outcome::from_result(ours::step(what, f).await.and_then(|r| r))
}

async fn run_wtransport_client(server: &OurServer, sc: &mut Scenario) -> Result<(), String> {
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(server.server.cert_hash())])
        .build();
    let endpoint = Endpoint::client(config).map_err(|e| format!("wtransport client: {e}"))?;
    let conn = wt_connect(&endpoint, &server.url("/echo")).await?;
    sc.set("connect", Outcome::Pass);
    sc.set("bidi", bounded("the bidi echo", wt_bidi(&conn)).await);
    sc.set("uni", bounded("the uni answer", wt_uni(&conn)).await);
    sc.set(
        "datagram",
        wt_datagram(&conn)
            .await
            .map_or_else(Outcome::Fail, |()| Outcome::Pass),
    );

    let (code, reason) = (4141u32, "wtransport client bye");
    conn.close(VarInt::from_u32(code), reason.as_bytes());
    let outcome = match server.ended("/echo").await {
        Ok(ours::Ended::ConnectionClosed(c, r)) if c == u64::from(code) && r == reason => {
            Outcome::PassNote(format!(
                "wtransport cannot send WT_CLOSE_SESSION; our server reported its QUIC \
                 CONNECTION_CLOSE {code} {reason:?}"
            ))
        }
        Ok(other) => Outcome::Fail(format!(
            "our server expected wtransport's close {code} {reason:?}, saw {other}"
        )),
        Err(e) => Outcome::Fail(e),
    };
    sc.set("close-sent", outcome);

    let outcome = match wt_connect(&endpoint, &server.url("/close/4242/server%20bye")).await {
        Err(e) => Outcome::Fail(e),
        Ok(c) => match ours::step("our server's close", wt_session_end(&c)).await {
            Err(e) => Outcome::Fail(e),
            Ok(WtConnError::ApplicationClosed(close))
                if close.code().into_inner() == 4242 && close.reason() == b"server bye" =>
            {
                Outcome::Pass
            }
            Ok(other) => Outcome::Fail(format!(
                "wtransport expected WT_CLOSE_SESSION 4242 \"server bye\", got: {other}"
            )),
        },
    };
    sc.set("close-received", outcome);
    Ok(())
}
