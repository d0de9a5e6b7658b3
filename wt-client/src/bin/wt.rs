//! `wt`: a command-line WebTransport client, like websocat or curl.
//!
//! ```text
//! wt URL                      send stdin on the default stream, print what arrives
//! wt --datagram URL           send each stdin line as a datagram
//! wt --check URL              self-test against an echo server (PASS/FAIL per check)
//! ```
//!
//! Flags: `--transport h3|h2|auto`, `--compat auto|latest|legacy`, `-H 'name: value'`,
//! `--cacert FILE`, `--cert-hash HEX`, `--insecure`, `--origin`, `--protocol`,
//! `--connect-timeout SECS`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use wt_client::{
    CompatMode, Connection, Error, Frame, Msg, Options, StreamData, StreamIdParity, StreamKind,
    Transport,
};

/// A WebTransport client: sends stdin, prints what arrives.
#[derive(Parser, Debug)]
#[command(name = "wt", version, about)]
struct Args {
    /// Server URL: `https://HOST:PORT/PATH` (`wss://` accepted; the port defaults to 443).
    url: String,
    /// Transport: h3, h2 or auto (HTTP/3 with HTTP/2 fallback).
    #[arg(long, default_value = "h3")]
    transport: Transport,
    /// Dialects: auto, latest or legacy (what browsers send).
    #[arg(long, default_value = "auto")]
    compat: CompatMode,
    /// Extra CONNECT header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Trust the CA certificates of this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
    /// Trust a server certificate by its SHA-256 hash, in hex (repeatable).
    #[arg(long = "cert-hash", value_name = "HEX")]
    cert_hash: Vec<String>,
    /// Do not verify the server certificate at all (testing only).
    #[arg(long)]
    insecure: bool,
    /// Send each stdin line as a datagram instead of writing the default stream.
    #[arg(long)]
    datagram: bool,
    /// Run the echo-server self-test and print one PASS/FAIL line per check.
    #[arg(long)]
    check: bool,
    /// `origin` header.
    #[arg(long)]
    origin: Option<String>,
    /// Offered subprotocol (repeatable).
    #[arg(long)]
    protocol: Vec<String>,
    /// Connect timeout in seconds.
    #[arg(long, default_value_t = 8.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Stream-id numbering of legacy HTTP/2 sessions: auto, draft or swapped (swapped for
    /// servers built on @fails-components/webtransport).
    #[arg(long, default_value = "auto", value_parser = parse_parity)]
    h2_parity: StreamIdParity,
}

fn parse_parity(s: &str) -> Result<StreamIdParity, String> {
    match s {
        "auto" => Ok(StreamIdParity::AutoDetect),
        "draft" => Ok(StreamIdParity::Draft),
        "swapped" => Ok(StreamIdParity::Swapped),
        other => Err(format!("{other:?}: expected auto, draft or swapped")),
    }
}

/// Problems with the command line itself.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("header {0:?} is not `name: value`")]
    Header(String),
    #[error("certificate hash {0:?} is not 64 hex digits")]
    Hash(String),
    #[error("{0}")]
    Tls(#[from] wt_core::tls::TlsConfigError),
    #[error("connect timeout must be a positive number of seconds")]
    Timeout,
}

fn options(args: &Args) -> Result<Options, UsageError> {
    let mut o = Options::default()
        .transport(args.transport)
        .compat(args.compat)
        .h2_stream_id_parity(args.h2_parity);
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| UsageError::Header(h.clone()))?;
        o = o.header(n.trim(), v.trim());
    }
    for f in &args.cacert {
        o.tls.add_ca_file(f)?;
    }
    for h in &args.cert_hash {
        let hash = wt_core::tls::parse_cert_hash(h).ok_or_else(|| UsageError::Hash(h.clone()))?;
        o = o.cert_hash(hash);
    }
    o.tls.insecure = args.insecure;
    o.origin = args.origin.clone();
    o.protocols = args.protocol.clone();
    if !(args.connect_timeout.is_finite() && args.connect_timeout > 0.0) {
        return Err(UsageError::Timeout);
    }
    o.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let opts = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("wt: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return check(&args.url, opts).await;
    }
    match run(&args.url, opts, args.datagram).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wt: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Pumps stdin to the server and what arrives to stdout.
async fn run(url: &str, opts: Options, datagram: bool) -> Result<(), Error> {
    let conn = wt_client::connect(url, opts).await?;
    let info = conn.info().await?;
    eprintln!(
        "wt: connected to {} over {} ({})",
        info.session.peer_addr, info.transport, info.dialect
    );
    let sender = conn.clone();
    let input = tokio::spawn(async move {
        if let Err(e) = pump_stdin(&sender, datagram).await {
            eprintln!("wt: sending failed: {e}");
        }
    });
    let mut out = tokio::io::stdout();
    let default = conn.default_stream_id();
    loop {
        // In datagram mode nothing marks the end: once stdin is done, stop after the server
        // has been quiet for a second.
        let msg = if datagram && input.is_finished() {
            match conn.recv_timeout(Duration::from_secs(1)).await {
                Err(Error::Timeout) => break,
                other => other,
            }
        } else {
            conn.recv().await
        };
        let msg = match msg {
            Ok(m) => m,
            Err(Error::Closed { code, reason }) => {
                eprintln!("wt: session closed: code {code} {reason:?}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let (data, end) = match msg {
            Msg::Binary(b) | Msg::Stream(_, b) => (b, false),
            Msg::Datagram(d) => {
                let mut line = d.to_vec();
                line.push(b'\n');
                (line.into(), false)
            }
            Msg::StreamFin(id, b) => (b, id == default),
            Msg::StreamClosed(id, reason) => {
                eprintln!("wt: stream {id} closed: {reason:?}");
                (Bytes::new(), id == default)
            }
        };
        if !data.is_empty() {
            let _ = out.write_all(&data).await;
            let _ = out.flush().await;
        }
        if end {
            break;
        }
    }
    conn.close().await
}

async fn pump_stdin(conn: &Connection, datagram: bool) -> Result<(), Error> {
    if datagram {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            conn.send_datagram(line).await?;
        }
        return Ok(());
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => conn.send(Bytes::copy_from_slice(&buf[..n])).await?,
        }
    }
    conn.close_stream(conn.default_stream_id()).await
}

use std::future::Future;

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

async fn check(url: &str, opts: Options) -> ExitCode {
    let mut failed = false;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(detail) => println!("PASS {name}{}", fmt_detail(&detail)),
        Err(e) => {
            failed = true;
            println!("FAIL {name}: {e}");
        }
    };
    let conn = match wt_client::connect(url, opts).await {
        Ok(c) => c,
        Err(e) => {
            report("connect", Err(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let detail = match conn.info().await {
        Ok(i) => format!("{} {}", i.transport, i.dialect),
        Err(e) => e.to_string(),
    };
    report("connect", Ok(detail));
    report("bidi echo", bounded(check_bidi(&conn)).await);
    report("uni echo", bounded(check_uni(&conn)).await);
    report("datagram echo", bounded(check_datagram(&conn)).await);
    report("close", bounded(check_close(&conn)).await);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fmt_detail(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

async fn bounded(f: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")))
}

async fn check_bidi(conn: &Connection) -> Result<String, String> {
    let payload = b"wt --check bidirectional echo".to_vec();
    let id = conn
        .open_stream(StreamKind::Bidi)
        .await
        .map_err(|e| e.to_string())?;
    conn.stream_send(id, payload.clone(), true)
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    loop {
        match conn.stream_recv(id).await.map_err(|e| e.to_string())? {
            StreamData::Data(c) => got.extend_from_slice(&c),
            StreamData::Fin(c) => {
                got.extend_from_slice(&c);
                break;
            }
        }
    }
    if got == payload {
        Ok(format!("{} bytes", got.len()))
    } else {
        Err(format!("sent {payload:?}, got {got:?}"))
    }
}

async fn check_uni(conn: &Connection) -> Result<String, String> {
    let payload = b"wt --check unidirectional echo".to_vec();
    let id = conn
        .open_stream(StreamKind::Uni)
        .await
        .map_err(|e| e.to_string())?;
    conn.stream_send(id, payload.clone(), true)
        .await
        .map_err(|e| e.to_string())?;
    // The answer comes on a stream the server opens, i.e. on the default channel.
    let mut answer: Option<(wt_client::StreamId, Vec<u8>)> = None;
    loop {
        match conn.recv().await.map_err(|e| e.to_string())? {
            Msg::Stream(sid, c) if !sid.is_bidi() && !sid.is_client_initiated() => {
                let a = answer.get_or_insert_with(|| (sid, Vec::new()));
                if a.0 == sid {
                    a.1.extend_from_slice(&c);
                }
            }
            Msg::StreamFin(sid, c) if answer.as_ref().is_some_and(|a| a.0 == sid) => {
                let mut got = answer.take().map(|a| a.1).unwrap_or_default();
                got.extend_from_slice(&c);
                return if got == payload {
                    Ok(format!("{} bytes on server stream {sid}", got.len()))
                } else {
                    Err(format!("sent {payload:?}, got {got:?}"))
                };
            }
            Msg::StreamClosed(sid, reason) if answer.as_ref().is_some_and(|a| a.0 == sid) => {
                return Err(format!("server stream {sid} closed: {reason:?}"));
            }
            _ => {}
        }
    }
}

async fn check_datagram(conn: &Connection) -> Result<String, String> {
    // Datagrams may be lost over HTTP/3: try a few times.
    for attempt in 1..=5 {
        let payload = Bytes::from(format!("wt --check datagram {attempt}"));
        conn.send(Frame::Datagram(payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match conn.recv_timeout(left).await {
                Ok(Msg::Datagram(d)) if d == payload => {
                    return Ok(format!("attempt {attempt}"));
                }
                Ok(_) => continue,
                Err(Error::Timeout) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Err("no datagram echoed after 5 attempts".into())
}

async fn check_close(conn: &Connection) -> Result<String, String> {
    conn.close_with(0, "wt --check done")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match conn.recv().await {
            Ok(_) => continue,
            Err(Error::Closed { code: 0, .. }) => return Ok(String::new()),
            Err(e) => return Err(format!("after close: {e}")),
        }
    }
}
