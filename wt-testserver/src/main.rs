//! `wt-testserver`: serves the echo handler over HTTP/3, HTTP/2 or both.
//!
//! Prints, on stdout, one line per URL (`URL https://localhost:PORT/echo`), the certificate's
//! SHA-256 (`CERT_SHA256 <hex>`, for `serverCertificateHashes`) and finally `READY <port>`
//! once listening, so scripts can wait for that line. Logs go to stderr (`RUST_LOG`, default
//! `info`). Ctrl-C (or SIGTERM) stops gracefully: no new sessions, live ones are drained and
//! given the grace period to end.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wt_testserver::{
    CertSource, EchoConfig, EchoHandler, Limits, ServeOptions, TestServer, TestServerConfig,
    Transports,
};

/// Handlers the binary can serve.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
enum HandlerName {
    /// The echo handler (see the crate docs for its paths and commands).
    Echo,
}

/// A WebTransport test server (echo handler) over HTTP/3 and HTTP/2.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Transports: h3 (UDP), h2 (TCP) or both (same port number).
    #[arg(long, default_value = "both")]
    transport: Transports,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 4433)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// PEM certificate chain (with --key); default: a generated self-signed certificate.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key (with --cert).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Handler to serve.
    #[arg(long, value_enum, default_value = "echo")]
    handler: HandlerName,
    /// Maximum concurrent sessions (beyond: 429).
    #[arg(long, default_value_t = Limits::default().max_sessions)]
    max_sessions: usize,
    /// Maximum concurrent peer streams per session.
    #[arg(long, default_value_t = Limits::default().max_streams_per_session)]
    max_streams: usize,
    /// Maximum stream bytes received per session (default: unlimited).
    #[arg(long)]
    max_data: Option<u64>,
    /// Accept only these origins (repeatable; default: any).
    #[arg(long = "allow-origin")]
    allow_origin: Vec<String>,
    /// Honour `WT-CMD panic` (isolation tests).
    #[arg(long)]
    allow_panic: bool,
    /// Seconds live sessions get to finish after Ctrl-C.
    #[arg(long, default_value_t = 5)]
    grace: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wt-testserver: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let cert = match (args.cert, args.key) {
        (Some(cert), Some(key)) => CertSource::PemFiles { cert, key },
        _ => CertSource::SelfSigned,
    };
    let config = TestServerConfig {
        transports: args.transport,
        host: args.host,
        port: args.port,
        cert,
        serve: ServeOptions {
            limits: Limits {
                max_sessions: args.max_sessions,
                max_streams_per_session: args.max_streams,
                max_data_per_session: args.max_data,
            },
            shutdown_grace: Duration::from_secs(args.grace),
        },
        ..TestServerConfig::default()
    };
    let echo = EchoConfig {
        allowed_origins: (!args.allow_origin.is_empty()).then_some(args.allow_origin),
        allow_panic_command: args.allow_panic,
        ..EchoConfig::default()
    };
    let server = match args.handler {
        HandlerName::Echo => TestServer::<EchoHandler>::start_with(config, echo),
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wt-testserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let mut lines = Vec::new();
        if let Some(a) = server.h3_addr() {
            lines.push(format!("LISTEN h3 udp {a}"));
        }
        if let Some(a) = server.h2_addr() {
            lines.push(format!("LISTEN h2 tcp {a}"));
        }
        lines.push(format!("URL {}", server.url("/echo")));
        lines.push(format!("CERT_SHA256 {}", server.cert_hash_hex()));
        lines.push(format!("READY {}", server.port()));
        for line in lines {
            if writeln!(out, "{line}").is_err() {
                break;
            }
        }
        let _ = out.flush();
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    let stats = server.stop().await;
    tracing::info!(
        active = stats.active_at_start,
        forced = stats.forced,
        "stopped"
    );
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGTERM"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot watch Ctrl-C; stopping");
    }
}
