//! The `wt-testserver` binary: prints its URL, certificate hash and `READY <port>`, serves the
//! echo handler, and stops cleanly on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use wt_core::tls::{parse_cert_hash, ClientTls};
use wt_core::{ConnectRequest, Connector, RecvStream, SendStream, Session};

#[tokio::test]
async fn binary_prints_ready_serves_and_stops_on_sigint() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wt-testserver"))
        .args(["--port", "0", "--transport", "both"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wt-testserver");
    let stdout = child.stdout.take().expect("stdout");
    // Read the banner on a blocking thread until READY.
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout line");
            let ready = line.starts_with("READY ");
            lines.push(line);
            if ready {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), banner)
        .await
        .expect("READY in time")
        .expect("reader");
    let field = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} line in {lines:?}"))
            .to_owned()
    };
    let port: u16 = field("READY ").parse().expect("port");
    assert_eq!(field("URL "), format!("https://localhost:{port}/echo"));
    let hash = parse_cert_hash(&field("CERT_SHA256 ")).expect("hex hash");
    assert!(lines.iter().any(|l| l.starts_with("LISTEN h3 udp ")));
    assert!(lines.iter().any(|l| l.starts_with("LISTEN h2 tcp ")));

    let client = wt_h3::Client::new(wt_h3::ClientConfig {
        tls: ClientTls {
            cert_hashes: vec![hash],
            ..ClientTls::default()
        },
        ..wt_h3::ClientConfig::default()
    })
    .expect("client");
    let request = ConnectRequest {
        host: "localhost".into(),
        port,
        path: "/echo".into(),
        ..ConnectRequest::default()
    };
    let session = tokio::time::timeout(Duration::from_secs(20), client.connect(&request))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut send, mut recv) = session.open_bi().await.expect("open");
    send.write_all(b"via the binary").await.expect("write");
    send.finish().expect("finish");
    let echoed = tokio::time::timeout(Duration::from_secs(20), recv.read_to_end(1024))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(echoed, b"via the binary");
    session.close(0, "").expect("close");

    #[cfg(unix)]
    {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || child.wait());
        let exit = tokio::time::timeout(Duration::from_secs(30), exit)
            .await
            .expect("exits in time")
            .expect("waiter")
            .expect("wait");
        assert!(exit.success(), "graceful exit, got {exit:?}");
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}
