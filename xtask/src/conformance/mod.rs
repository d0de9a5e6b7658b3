//! `cargo xtask conformance`: a WebTransport conformance suite for servers (and, in embedded
//! mode, our clients), in the spirit of h2spec.
//!
//! Every case of the wire reference's §8 is a small async function in `cases/` that talks to
//! the server over the network — through a raw peer (`peer/`) when the case needs exact bytes,
//! or through our client — and checks the bytes and codes the reference gives. Cases run per
//! transport (`h3`, `h2`) and, where the behaviour differs, per dialect (`latest`, `legacy`).
//! Cases beyond §8 (`X-n` for both transports, `X-H3-n`, `X-H2-n`) check the HTTP/3, QPACK,
//! HTTP/2 and extended-CONNECT rules a WebTransport server relies on and every capsule rule of
//! the reference on its own; their titles name the rule.
//!
//! What the *server* saw (reset and STOP_SENDING codes, how a session ended) is checked
//! through the wt-testserver observation convention: the session's token from the
//! `wt-testserver-token` response header, then a new session on `/observed/<token>[/<id>]`
//! that returns the server's entries on a uni stream. Some HTTP/2 cases drive a raw
//! frame-level client (`peer::h2::RawH2Client`) to send SETTINGS the h2 crate cannot
//! (WebTransport initial limits, changes mid-connection) and malformed requests.
//!
//! With no `--url`, the suite starts the embedded `wt-testserver` echo server on loopback over
//! both transports. Against another server (`--url`), the server must follow the
//! `wt-testserver` conventions (request paths, `WT-CMD` commands); cases that test our client
//! against a deliberately broken raw server are skipped there.

pub mod cases;
mod ctx;
mod glob;
pub mod ours;
// The raw peers are a toolkit: some codepoints and accessors are there for cases to come.
#[allow(dead_code)]
pub mod peer;
pub mod report;
#[cfg(test)]
mod tests;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use ctx::{Ctx, Dl, Target, Tp, Verdict};
use report::{Outcome, Row};

/// Command-line options of `cargo xtask conformance`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Only this transport (default: both).
    #[arg(long, value_parser = ["h3", "h2"])]
    pub transport: Option<String>,
    /// Only this dialect (default: every dialect a case applies to).
    #[arg(long, value_parser = ["latest", "legacy"])]
    pub compat: Option<String>,
    /// Test this server (https://host:port/prefix) instead of the embedded echo server. It
    /// must follow the wt-testserver conventions (paths and WT-CMD commands).
    #[arg(long)]
    pub url: Option<String>,
    /// Trust this CA certificate (PEM) for --url.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Trust the server certificate with this SHA-256 (hex) for --url.
    #[arg(long = "cert-hash")]
    pub cert_hash: Option<String>,
    /// Accept any server certificate (--url only; dangerous).
    #[arg(long)]
    pub insecure: bool,
    /// Only matching cases: a full ID (`ST-1`) exactly, a glob with * and ? on ID or title,
    /// otherwise a substring of ID or title; repeatable.
    #[arg(long = "case")]
    pub case: Vec<String>,
    /// List the selected cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Per-case time limit in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// One selected run: a case in one transport and dialect.
#[derive(Clone, Copy)]
pub struct Planned {
    /// The case.
    pub case: &'static cases::Case,
    /// Transport.
    pub tp: Tp,
    /// Dialect.
    pub dl: Dl,
}

/// The runs selected by `args`, in table order.
pub fn plan(args: &Args) -> Vec<Planned> {
    let mut out = Vec::new();
    for case in cases::all() {
        if !args.case.is_empty()
            && !args
                .case
                .iter()
                .any(|p| glob::selects(p, case.id, case.title))
        {
            continue;
        }
        for tp in [Tp::H3, Tp::H2] {
            if args.transport.as_deref().is_some_and(|t| t != tp.name()) {
                continue;
            }
            for dl in [Dl::Latest, Dl::Legacy] {
                if args.compat.as_deref().is_some_and(|c| c != dl.name()) {
                    continue;
                }
                if case.applies.contains(tp, dl) {
                    out.push(Planned { case, tp, dl });
                }
            }
        }
    }
    out
}

/// Runs the planned cases against `target`, each bounded by `timeout`; returns the rows.
pub async fn run(plan: &[Planned], target: Arc<Target>, timeout: Duration) -> Vec<Row> {
    let mut rows = Vec::with_capacity(plan.len());
    for p in plan {
        let cx = Ctx::new(p.tp, p.dl, target.clone(), timeout);
        let start = Instant::now();
        let fut = (p.case.run)(&cx);
        // The case gets its own deadline slightly above the per-wait timeout so that a wait
        // timing out inside reports what it waited for.
        let outcome = match tokio::time::timeout(timeout + Duration::from_secs(2), fut).await {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(Verdict::Fail(why))) => Outcome::Fail(why),
            Ok(Err(Verdict::Skip(why))) => Outcome::Skip(why),
            Err(_) => Outcome::Fail(format!("case did not finish within {timeout:?}")),
        };
        rows.push(Row {
            id: p.case.id,
            group: p.case.group,
            title: p.case.title,
            transport: p.tp.name(),
            dialect: p.dl.name(),
            outcome,
            millis: start.elapsed().as_millis(),
        });
    }
    rows
}

fn client_tls(args: &Args) -> Result<wt_core::tls::ClientTls, String> {
    let mut tls = wt_core::tls::ClientTls::default();
    if let Some(ca) = &args.cacert {
        tls.add_ca_file(ca).map_err(|e| format!("--cacert: {e}"))?;
    }
    if let Some(h) = &args.cert_hash {
        let hash = wt_core::tls::parse_cert_hash(h)
            .ok_or_else(|| "--cert-hash: expected 64 hex digits".to_string())?;
        tls.cert_hashes.push(hash);
    }
    tls.insecure = args.insecure;
    Ok(tls)
}

fn external_target(url: &str, args: &Args) -> Result<Target, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("https") | Some("wss") => {}
        other => {
            return Err(format!(
                "--url: unsupported scheme {other:?} (use https://)"
            ))
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| "--url has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| format!("{host}:{port}"));
    let prefix = uri.path().trim_end_matches('/').to_string();
    Ok(Target {
        host,
        h3_addr: addr,
        h2_addr: addr,
        h2_legacy_addr: addr,
        authority,
        prefix,
        tls: client_tls(args)?,
        embedded: None,
        h2_settings: Default::default(),
    })
}

/// Entry point of `cargo xtask conformance`.
pub fn main(args: Args) -> ExitCode {
    let planned = plan(&args);
    if args.list {
        for p in &planned {
            println!(
                "{:<8} {:<3} {:<7} {:<12} {}",
                p.case.id,
                p.tp.name(),
                p.dl.name(),
                p.case.group,
                p.case.title
            );
        }
        println!("{} runs", planned.len());
        return ExitCode::SUCCESS;
    }
    if args.url.is_none() && (args.cacert.is_some() || args.cert_hash.is_some() || args.insecure) {
        eprintln!("error: --cacert, --cert-hash and --insecure only apply with --url");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let result = rt.block_on(async {
        let (target, server) = match &args.url {
            Some(url) => (external_target(url, &args)?, None),
            None => {
                let server = ours::EmbeddedServer::start(ours::ServerVariant::Echo).await?;
                (server.target(), Some(server))
            }
        };
        let rows = run(
            &planned,
            Arc::new(target),
            Duration::from_secs(args.timeout),
        )
        .await;
        if let Some(s) = server {
            s.stop().await;
        }
        Ok::<_, String>(rows)
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, failed, _) = report::print(&rows);
    println!("time: {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => {
                if let Err(e) = std::fs::write(path, s) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("error: JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
