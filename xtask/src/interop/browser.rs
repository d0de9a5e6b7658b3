//! Headless Chromium (Debian's, driven by playwright-core) → our test server over HTTP/3,
//! pinning our self-signed certificate with `serverCertificateHashes`.
//!
//! The server's close is checked on a session that is already established (`close-received`,
//! asked for with a `WT-CMD close` command). A session the server closes in the same flight as
//! its 200 is not checked: Chromium then rejects `ready` ("Opening handshake failed"), which the
//! W3C API allows for a session terminated before it became ready.

use std::process::Command;
use std::time::Duration;

use super::aioquic::{confirm_close_sent, run_client_peer};
use super::matrix::Scenario;
use super::ours::OurServer;
use super::peers;

/// Chromium → our server.
pub async fn chromium_to_ours() -> Scenario {
    let mut sc = Scenario::new("chromium", "chromium", "wt-testserver", "h3");
    if let Err(e) = run(&mut sc).await {
        sc.fail_rest(&super::ALL, &e);
    }
    sc
}

async fn run(sc: &mut Scenario) -> Result<(), String> {
    let chromium = match peers::chromium() {
        Ok(p) => p,
        Err(why) => {
            sc.skip_rest(&super::ALL, &why);
            return Ok(());
        }
    };
    let server = OurServer::start(wt_testserver::Transports::H3)?;
    let mut cmd = Command::new("node");
    cmd.arg(peers::repo_root().join("interop/browser/wt-check.mjs"))
        .arg("--url")
        .arg(server.url("/echo"))
        .arg("--hash")
        .arg(server.server.cert_hash_hex())
        .arg("--close-command")
        .arg("WT-CMD close 4242 server bye")
        .arg("--chromium")
        .arg(&chromium);
    run_client_peer(sc, "chromium", cmd, Duration::from_secs(90)).await?;
    // Chromium closed /echo with 4242 "chromium says bye": our server must have seen it.
    confirm_close_sent(sc, server.ended("/echo"), 4242, "chromium says bye").await;
    server.stop().await;
    Ok(())
}
