//! `@fails-components/webtransport` (npm) over HTTP/2, both directions.
//!
//! Its HTTP/2 part is plain JavaScript (node's `http2` module); the native HTTP/3 part lives
//! in a separate optional package that is not installed. It speaks the older HTTP/2 draft:
//! no SETTINGS_WT_ENABLED and the legacy FIN mapping, so our side runs in the legacy dialect
//! (client `LegacyBrowserCompat` without requiring WT_ENABLED, server `Dialect::H2Legacy`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use wt_core::{CompatMode, Dialect, Session};

use super::aioquic::{close_reported, confirm_close_sent, run_client_peer};
use super::matrix::{Outcome, Scenario};
use super::ours::{self, OurServer, STEP};
use super::peers::{self, Peer};
use super::Certs;

const SCRIPT: &str = "interop/fails/fails-check.mjs";

/// Both directions.
pub async fn scenarios(certs: &Certs) -> Vec<Scenario> {
    let mut a = Scenario::new("fails-components", "wt-h2 legacy", "fails", "h2");
    let mut b = Scenario::new("fails-components", "fails", "wt-testserver", "h2");
    match peers::fails_components() {
        Err(why) => {
            a.skip_rest(&super::ALL, &why);
            b.skip_rest(&super::ALL, &why);
        }
        Ok(_) => {
            let t = std::time::Instant::now();
            if let Err(e) = our_client(certs, &mut a).await {
                a.fail_rest(&super::ALL, &e);
            }
            a.elapsed = t.elapsed();
            let t = std::time::Instant::now();
            if let Err(e) = their_client(certs, &mut b).await {
                b.fail_rest(&super::ALL, &e);
            }
            b.elapsed = t.elapsed();
        }
    }
    vec![a, b]
}

async fn our_client(certs: &Certs, sc: &mut Scenario) -> Result<(), String> {
    let port = peers::free_tcp_port()?;
    let mut cmd = Command::new("node");
    cmd.arg(peers::repo_root().join(SCRIPT))
        .args(["server", "--port", &port.to_string()])
        .arg("--cert")
        .arg(&certs.cert)
        .arg("--key")
        .arg(&certs.key);
    let mut peer = Peer::spawn("fails-server", cmd)?;
    peer.wait_for("READY", Duration::from_secs(20)).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let client = wt_h2::Client::new(wt_h2::ClientConfig {
        tls: ours::pinned(certs.hash),
        compat: CompatMode::LegacyBrowserCompat,
        require_wt_enabled: false,
        // fails numbers HTTP/2 streams with swapped initiator parity (client bidi 1, 5, …);
        // a client opens first, so it cannot detect that: configure it.
        stream_id_parity: wt_h2::StreamIdParity::Swapped,
        connect_timeout: STEP,
        ..wt_h2::ClientConfig::default()
    })
    .map_err(|e| format!("creating our HTTP/2 client: {e}"))?;
    let session = ours::connect(&client, &ours::request(addr, "127.0.0.1", "/echo")).await?;
    sc.set(
        "connect",
        Outcome::PassNote(format!("dialect {}", session.info().dialect)),
    );
    ours::stream_checks(&session, sc).await;
    let reason = "wt client bye h2";
    sc.set(
        "close-sent",
        close_reported(&session, &mut peer, reason, "fails", &["CLOSE", "END"]).await,
    );
    let outcome = match ours::connect(&client, &ours::request(addr, "127.0.0.1", "/close-me")).await
    {
        Err(e) => Outcome::Fail(e),
        Ok(s) => ours::bidi_then_closed(&s, 4242, "fails says bye").await,
    };
    sc.set("close-received", outcome);
    Ok(())
}

async fn their_client(certs: &Certs, sc: &mut Scenario) -> Result<(), String> {
    let mut config =
        wt_h2::ServerConfig::new(certs.tls.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.dialect = Dialect::H2Legacy;
    let server = wt_h2::Server::bind(config).map_err(|e| format!("our HTTP/2 server: {e}"))?;
    let (listener, addr) = OurServer::serve_on(server);
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", addr.port());
    let mut cmd = Command::new("node");
    cmd.arg(peers::repo_root().join(SCRIPT))
        .arg("client")
        .arg("--url")
        .arg(url("/echo"))
        .arg("--hash")
        .arg(wt_core::tls::hash_hex(&certs.hash))
        .arg("--close-url")
        .arg(url("/close/4242/server%20bye"));
    run_client_peer(sc, "fails-client", cmd, Duration::from_secs(60)).await?;
    confirm_close_sent(sc, listener.ended("/echo"), 4141, "fails client bye").await;
    listener.stop().await;
    Ok(())
}
