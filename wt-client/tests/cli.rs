//! The `wt` binary against the echo server.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{echo, Kind};

fn wt(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wt");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wt output")
}

async fn run(args: Vec<String>, stdin: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wt(&args, stdin)
    })
    .await
    .expect("join")
}

fn base(srv: &common::Server, path: &str) -> Vec<String> {
    let transport = match srv.kind {
        Kind::H3 => "h3",
        Kind::H2 => "h2",
    };
    vec![
        srv.url(path),
        "--transport".into(),
        transport.into(),
        "--cert-hash".into(),
        wt_core::tls::hash_hex(&srv.hash),
    ]
}

async fn check_passes(kind: Kind) {
    let srv = echo(kind);
    let mut args = base(&srv, "/echo");
    args.push("--check".into());
    let out = run(args, b"").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for (line, name) in
        lines
            .iter()
            .zip(["connect", "bidi echo", "uni echo", "datagram echo", "close"])
    {
        assert!(line.starts_with(&format!("PASS {name}")), "{line}");
    }
}

async fn check_fails_on_rejection(kind: Kind) {
    let srv = echo(kind);
    let mut args = base(&srv, "/reject/404");
    args.push("--check".into());
    let out = run(args, b"").await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("FAIL connect"), "{stdout}");
}

async fn pipes_stdin_to_stdout(kind: Kind) {
    let srv = echo(kind);
    let mut args = base(&srv, "/origin-check");
    args.extend(
        [
            "--origin",
            "https://allowed.example",
            "-H",
            "x-test: 1",
            "--compat",
            "latest",
        ]
        .map(String::from),
    );
    let out = run(args, b"hello\nworld\n").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello\nworld\n");
}

both!(
    check_passes,
    check_fails_on_rejection,
    pipes_stdin_to_stdout
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagram_lines_over_h2() {
    // HTTP/2 datagrams are reliable, so the output is deterministic.
    let srv = echo(Kind::H2);
    let mut args = base(&srv, "/echo");
    args.push("--datagram".into());
    let out = run(args, b"one\ntwo\n").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"one\ntwo\n");
}

#[test]
fn usage_errors() {
    let out = wt(&["https://127.0.0.1:1/", "--cert-hash", "zz"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = wt(&["https://127.0.0.1:1/", "--transport", "h9"], b"");
    assert!(!out.status.success());
    let out = wt(&["http://127.0.0.1:1/"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme"));
}
