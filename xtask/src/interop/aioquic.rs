//! aioquic (Python, draft-02): its server ← our HTTP/3 client, and its client → our server.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use wt_core::{CompatMode, Session};

use super::matrix::{Outcome, Scenario};
use super::ours::{self, OurServer, STEP};
use super::peers::{self, Peer};
use super::{compat_name, Certs};

const SCRIPT: &str = "interop/aioquic_wt.py";

/// Our client (each compat mode) → the aioquic echo server.
pub async fn our_client_to_aioquic(certs: &Certs, compat: CompatMode) -> Scenario {
    let client = format!("wt-h3 {}", compat_name(compat));
    let mut sc = Scenario::new("aioquic", &client, "aioquic", "h3");
    if let Err(e) = run_our_client(certs, compat, &mut sc).await {
        sc.fail_rest(&super::ALL, &e);
    }
    sc
}

async fn run_our_client(
    certs: &Certs,
    compat: CompatMode,
    sc: &mut Scenario,
) -> Result<(), String> {
    let python = match peers::aioquic() {
        Ok(p) => p,
        Err(why) => {
            sc.skip_rest(&super::ALL, &why);
            return Ok(());
        }
    };
    let port = peers::free_udp_port()?;
    let mut cmd = Command::new(python);
    cmd.arg(peers::repo_root().join(SCRIPT))
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--cert")
        .arg(&certs.cert)
        .arg("--key")
        .arg(&certs.key)
        .env("PYTHONUNBUFFERED", "1");
    let mut peer = Peer::spawn(&format!("aioquic-server-{}", compat_name(compat)), cmd)?;
    peer.wait_for("READY", Duration::from_secs(20)).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let client = ours::h3_client(ours::pinned(certs.hash), compat)?;

    let session = match ours::connect(&client, &ours::request(addr, "localhost", "/echo")).await {
        Ok(s) => s,
        Err(e) => return Err(e),
    };
    sc.set(
        "connect",
        Outcome::PassNote(format!("dialect {}", session.info().dialect)),
    );
    ours::stream_checks(&session, sc).await;

    // We close; aioquic prints `CLOSE <code> <reason>`.
    let reason = format!("{} {}", ours::OUR_CLOSE_REASON, compat_name(compat));
    sc.set(
        "close-sent",
        close_reported(&session, &mut peer, &reason, "aioquic", &["CLOSE"]).await,
    );

    // aioquic closes /close-me with 4242 "aioquic says bye" after the first bidi echo.
    let outcome = match ours::connect(&client, &ours::request(addr, "localhost", "/close-me")).await
    {
        Err(e) => Outcome::Fail(e),
        Ok(s) => ours::bidi_then_closed(&s, 4242, "aioquic says bye").await,
    };
    sc.set("close-received", outcome);
    Ok(())
}

/// The aioquic check client → our test server over HTTP/3.
pub async fn aioquic_client_to_ours() -> Scenario {
    let mut sc = Scenario::new("aioquic", "aioquic", "wt-testserver", "h3");
    if let Err(e) = run_aioquic_client(&mut sc).await {
        sc.fail_rest(&super::ALL, &e);
    }
    sc
}

async fn run_aioquic_client(sc: &mut Scenario) -> Result<(), String> {
    let python = match peers::aioquic() {
        Ok(p) => p,
        Err(why) => {
            sc.skip_rest(&super::ALL, &why);
            return Ok(());
        }
    };
    let server = OurServer::start(wt_testserver::Transports::H3)?;
    let ca = peers::work_dir().join("our-server-aioquic.pem");
    std::fs::write(&ca, server.server.cert_pem())
        .map_err(|e| format!("writing {}: {e}", ca.display()))?;
    let mut cmd = Command::new(python);
    cmd.arg(peers::repo_root().join(SCRIPT))
        .arg("client")
        .arg(server.url("/echo"))
        .arg("--cacert")
        .arg(&ca)
        .arg("--close-url")
        .arg(server.url("/close/4242/server%20bye"))
        .env("PYTHONUNBUFFERED", "1");
    run_client_peer(sc, "aioquic-client", cmd, Duration::from_secs(45)).await?;
    // The client closed /echo with 4141 "aioquic client bye": our server must have seen it.
    confirm_close_sent(sc, server.ended("/echo"), 4141, "aioquic client bye").await;
    server.stop().await;
    Ok(())
}

/// Closes our `session` with [`ours::OUR_CLOSE_CODE`] and `reason`, then waits for the peer
/// server `name` to print `CLOSE <code> <reason>`; a failure lists the peer's lines that start
/// with one of `shown`.
pub async fn close_reported<S: Session>(
    session: &S,
    peer: &mut Peer,
    reason: &str,
    name: &str,
    shown: &[&str],
) -> Outcome {
    if let Err(e) = session.close(ours::OUR_CLOSE_CODE, reason) {
        return Outcome::Fail(format!("close: {e}"));
    }
    let want = format!("CLOSE {} {reason}", ours::OUR_CLOSE_CODE);
    match peer.wait_for(&want, STEP).await {
        Ok(_) => Outcome::Pass,
        Err(e) => {
            let seen: Vec<&String> = peer
                .seen()
                .iter()
                .filter(|l| shown.iter().any(|p| l.starts_with(p)))
                .collect();
            Outcome::Fail(format!("{name} did not report {want:?}: {e}; saw {seen:?}"))
        }
    }
}

/// Runs a peer client to completion (within `timeout`) and folds its `PASS`/`FAIL` lines into
/// the scenario; a peer that fails or times out also fails the `client` check.
pub async fn run_client_peer(
    sc: &mut Scenario,
    name: &str,
    cmd: Command,
    timeout: Duration,
) -> Result<(), String> {
    let peer = Peer::spawn(name, cmd)?;
    let log = peer.log.clone();
    let lines = match peer.finish(timeout).await {
        Ok(l) => l,
        Err((why, l)) => {
            sc.set("client", Outcome::Fail(why));
            l
        }
    };
    apply_client_lines(sc, &lines, &log);
    Ok(())
}

/// When the peer client reported `close-sent` as passed, replaces it with what our server saw:
/// the session must have ended with `code` and `reason`. `ended` is only awaited in that case.
pub async fn confirm_close_sent(
    sc: &mut Scenario,
    ended: impl std::future::Future<Output = Result<ours::Ended, String>>,
    code: u32,
    reason: &str,
) {
    if sc.get("close-sent") == Some(&Outcome::Pass) {
        sc.set("close-sent", ours::expect_ended(ended.await, code, reason));
    }
}

/// Folds a peer client's `PASS`/`FAIL` lines into the scenario; `connect` passes implicitly
/// when any later check ran.
pub fn apply_client_lines(sc: &mut Scenario, lines: &[String], log: &std::path::Path) {
    let checks = peers::parse_checks(lines);
    if checks.is_empty() {
        sc.set(
            "connect",
            Outcome::Fail(format!(
                "the client printed no checks (log: {})",
                log.display()
            )),
        );
        return;
    }
    for (name, r) in checks {
        sc.set(&name, Outcome::from_result(r));
    }
    if sc.get("connect").is_none() {
        sc.set("connect", Outcome::Pass);
    }
}
