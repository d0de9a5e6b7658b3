//! `cargo xtask interop`: our clients and servers against independent WebTransport
//! implementations.
//!
//! | peer | scenarios |
//! |---|---|
//! | aioquic (Python, `interop/aioquic_wt.py`) | our HTTP/3 client (auto, legacy) → its server; its client → our server |
//! | Chromium (Debian's, playwright-core, `interop/browser/`) | → our server over HTTP/3, pinning our certificate |
//! | wtransport (Rust package registry) | our client → its server; its client → our server |
//! | hyperium h3-webtransport (Rust package registry) | our client → its server |
//! | @fails-components/webtransport (npm, HTTP/2, `interop/fails/`) | both directions |
//!
//! Every scenario runs the same checks: `connect`, `bidi` (echo on the same stream, FIN
//! echoed), `uni` (a client uni stream answered by a server uni stream with the same bytes),
//! `datagram` (echo), `close-sent` (the client closes with a code and reason, the server
//! reports them) and `close-received` (the server closes, the client reports them). A peer
//! that cannot be installed is SKIP with the reason; any FAIL makes the exit status non-zero.
//! Scenarios are bounded in time and every child process is killed when its scenario ends.
//! Peer logs go to `.interop/logs/`. Our own side logs to stderr when `WT_TRACE` holds a
//! tracing filter (`WT_TRACE=wt_h3=debug,quinn_proto=trace cargo xtask interop --peer
//! chromium` shows every frame our server sends and receives).

mod aioquic;
mod browser;
mod fails;
mod h3wt;
mod matrix;
mod ours;
mod peers;
#[cfg(test)]
mod tests;
mod wtransport_peer;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wt_core::tls::ServerTls;
use wt_core::CompatMode;

use matrix::Scenario;

/// Every check name.
pub const ALL: [&str; 6] = matrix::CHECKS;

/// Command-line options of `cargo xtask interop`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Only these peers (aioquic, chromium, wtransport, h3-webtransport, fails); repeatable.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Time limit of one scenario, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// The peer names, in run order.
pub const PEERS: [&str; 5] = [
    "aioquic",
    "chromium",
    "wtransport",
    "h3-webtransport",
    "fails",
];

/// A certificate for the peers' servers: our self-signed ECDSA P-256 certificate (pinnable),
/// also written as PEM files for peers that load files.
pub struct Certs {
    /// The TLS material.
    pub tls: ServerTls,
    /// Certificate PEM file.
    pub cert: PathBuf,
    /// Key PEM file.
    pub key: PathBuf,
    /// SHA-256 of the certificate.
    pub hash: [u8; 32],
}

impl Certs {
    fn generate() -> Result<Certs, String> {
        let tls = ServerTls::self_signed(&["localhost", "127.0.0.1"])
            .map_err(|e| format!("generating a certificate: {e}"))?;
        let dir = peers::work_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cert = dir.join("peer-cert.pem");
        let key = dir.join("peer-key.pem");
        let key_pem = tls.key_pem().ok_or("the generated key has no PEM form")?;
        std::fs::write(&cert, tls.leaf_pem()).map_err(|e| format!("writing the cert: {e}"))?;
        std::fs::write(&key, key_pem).map_err(|e| format!("writing the key: {e}"))?;
        let hash = tls.cert_hash();
        Ok(Certs {
            tls,
            cert,
            key,
            hash,
        })
    }
}

/// `auto`, `legacy`, `latest`.
pub fn compat_name(c: CompatMode) -> &'static str {
    match c {
        CompatMode::Auto => "auto",
        CompatMode::Latest => "latest",
        CompatMode::LegacyBrowserCompat => "legacy",
    }
}

/// Runs one scenario with the overall time limit; a scenario that overruns is a FAIL.
async fn bounded(
    limit: Duration,
    placeholder: Scenario,
    f: impl Future<Output = Vec<Scenario>>,
) -> Vec<Scenario> {
    let start = Instant::now();
    let mut out = match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => {
            let mut sc = placeholder;
            sc.fail_rest(
                &ALL,
                &format!("scenario exceeded its {}s time limit", limit.as_secs()),
            );
            vec![sc]
        }
    };
    let n = out.len().max(1) as u32;
    for sc in &mut out {
        if sc.elapsed.is_zero() {
            sc.elapsed = start.elapsed() / n;
        }
    }
    out
}

async fn run_all(args: &Args) -> Result<Vec<Scenario>, String> {
    let certs = Certs::generate()?;
    let want = |p: &str| args.peers.is_empty() || args.peers.iter().any(|w| w == p);
    let limit = Duration::from_secs(args.timeout);
    let mut all = Vec::new();
    let show = |v: Vec<Scenario>, all: &mut Vec<Scenario>| {
        for sc in v {
            let cells: Vec<String> = sc
                .checks
                .iter()
                .map(|(n, o)| format!("{n}={}", o.cell()))
                .collect();
            println!(
                "   {} → {} ({}): {}",
                sc.client,
                sc.server,
                sc.transport,
                cells.join(" ")
            );
            all.push(sc);
        }
    };
    for peer in PEERS.into_iter().filter(|p| want(p)) {
        println!("== {peer}");
        match peer {
            "aioquic" => {
                for compat in [CompatMode::Auto, CompatMode::LegacyBrowserCompat] {
                    let ph = Scenario::new("aioquic", "wt-h3", "aioquic", "h3");
                    let v = bounded(limit, ph, async {
                        vec![aioquic::our_client_to_aioquic(&certs, compat).await]
                    })
                    .await;
                    show(v, &mut all);
                }
                let ph = Scenario::new("aioquic", "aioquic", "wt-testserver", "h3");
                let v = bounded(limit, ph, async {
                    vec![aioquic::aioquic_client_to_ours().await]
                })
                .await;
                show(v, &mut all);
            }
            "chromium" => {
                let ph = Scenario::new("chromium", "chromium", "wt-testserver", "h3");
                let v = bounded(limit, ph, async { vec![browser::chromium_to_ours().await] }).await;
                show(v, &mut all);
            }
            "wtransport" => {
                for compat in [CompatMode::Auto, CompatMode::LegacyBrowserCompat] {
                    let ph = Scenario::new("wtransport", "wt-h3", "wtransport", "h3");
                    let v = bounded(limit, ph, async {
                        vec![wtransport_peer::our_client_to_wtransport(&certs, compat).await]
                    })
                    .await;
                    show(v, &mut all);
                }
                let ph = Scenario::new("wtransport", "wtransport", "wt-testserver", "h3");
                let v = bounded(limit, ph, async {
                    vec![wtransport_peer::wtransport_client_to_ours().await]
                })
                .await;
                show(v, &mut all);
            }
            "h3-webtransport" => {
                for compat in [CompatMode::Auto, CompatMode::LegacyBrowserCompat] {
                    let ph = Scenario::new("h3-webtransport", "wt-h3", "h3-webtransport", "h3");
                    let v = bounded(limit, ph, async {
                        vec![h3wt::our_client_to_h3wt(&certs, compat).await]
                    })
                    .await;
                    show(v, &mut all);
                }
            }
            "fails" => {
                let ph = Scenario::new("fails-components", "wt-h2", "fails", "h2");
                let v = bounded(limit, ph, fails::scenarios(&certs)).await;
                show(v, &mut all);
            }
            _ => {}
        }
    }
    Ok(all)
}

/// Entry point of `cargo xtask interop`.
pub fn main(args: Args) -> ExitCode {
    // Our side's log, when asked for (see the module docs).
    if std::env::var_os("WT_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WT_TRACE"))
            .with_writer(std::io::stderr)
            .try_init();
    }
    for p in &args.peers {
        if !PEERS.contains(&p.as_str()) {
            eprintln!("error: unknown peer {p:?} (expected one of {PEERS:?})");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let result = rt.block_on(run_all(&args));
    // Peers' servers and sessions still running are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Ok(all) => {
            println!();
            print!("{}", matrix::render(&all));
            println!("(took {:.1}s)", start.elapsed().as_secs_f64());
            if all.iter().any(Scenario::failed) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
