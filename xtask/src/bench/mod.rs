//! `cargo xtask bench`: our stack side by side with raw quinn, raw h2 and wtransport, on
//! loopback, in one process run.
//!
//! ```text
//! cargo xtask bench [--quick] [--json FILE] [--workload NAME[,NAME…]] [--transport h3|h2]
//!                   [--rounds N] [--legs N] [--workers N]
//! ```
//!
//! The `cargo xtask` alias builds xtask in debug mode without extras, so `bench` re-invokes
//! itself as `cargo run --release -p xtask --features bench -- bench … --no-reexec` (the
//! feature adds allocation counting and wtransport's QUIC tuning API). `--no-reexec` runs in
//! the current binary as it is.
//!
//! Workloads (`--workload`): `bulk` (= `bulk-upload` + `bulk-echo`), `latency`, `churn`,
//! `datagrams` (= `datagrams-written` + `datagrams-shared`, see [`common::Payload`]), `setup`,
//! `scale`. Each workload runs every stack that applies, alternating
//! them within a round (each right next to its baseline, the order reversed every other
//! round; see [`run_order`]), for 5 rounds (`--quick`: 1 round and
//! smaller sizes), then reports median, spread (max − min over the median), the ratio to the
//! stack's baseline (the median over rounds of the ratio of the two runs of the same round,
//! which tolerates a machine whose load drifts), the lowest and highest of those per-round
//! ratios (`rounds`; see [`report::Row::ratio_range`]) and the target of the brief. Within a round
//! the latency, churn and datagram workloads run in [`LEGS`] legs (`--legs`) and the bulk ones
//! in [`BULK_LEGS`] (see [`Workload::legs`]), each stack's on one connection per round (a bulk
//! round's legs on one stream, see [`pipe`]), the stack order reversed from leg to leg, each
//! stack's legs pooled into its sample of the round. Every sample also records
//! `host_steal_pct`, the share of the machine's CPU time the hypervisor gave to someone else
//! while that stack's runs of the round ran (`steal` in `/proc/stat`; rows add the worst
//! round as `host_steal_max_pct`, and the JSON report keeps every round's), so a round
//! slowed by the host shows as such. With the `bench` feature, samples also count allocation
//! calls, client and server together: `allocs_per_mib` on the bulk workloads,
//! `allocs_per_rtt` on latency, `allocs_per_stream` on churn and `allocs_per_datagram` on the
//! datagram workloads, so an allocation per message that a stack adds to its transport's
//! shows beside the baseline's count:
//!
//! | stack | transport | API | baseline |
//! |---|---|---|---|
//! | `wt-h3` | h3 | `wt_h3::Session` (wt-core traits) | `quinn` |
//! | `quinn` | h3 | raw QUIC streams, same TLS and transport config | — |
//! | `wtransport` | h3 | wtransport 0.7 client and server | `quinn` |
//! | `wt-client` | h3 | `wt_client::Connection` | `wt-h3` |
//! | `wt-h2` | h2 | `wt_h2::Session` | `h2` |
//! | `h2` | h2 | raw h2: extended CONNECT, bytes as DATA; POST per churn stream | — |
//! | `wt-client` | h2 | `wt_client::Connection` | `wt-h2` |
//!
//! Servers live in this process (one per stack kind, see [`server`]), except for `scale`,
//! which runs wt-testserver's echo handler in a child process to read its RSS and CPU time.
#![allow(clippy::too_many_lines)]

mod alloc;
mod common;
mod h2raw;
mod ours;
mod pipe;
mod quic;
mod report;
mod scale;
mod server;
mod wtclient;
#[cfg(feature = "bench")]
mod wtrans;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wt_core::{Acceptor, Connector, Session};

use alloc::AllocSpan;
use common::*;
use pipe::{Pipe, PipeMode};
use report::{Cell, Report};
use scale::ScaleKind;

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// One round and smaller sizes (about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Only these workloads: bulk, bulk-upload, bulk-echo, latency, churn, datagrams,
    /// datagrams-written, datagrams-shared, setup, scale (repeatable or comma-separated).
    #[arg(long = "workload", value_name = "NAME", value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Only this transport (h3 or h2).
    #[arg(long, value_name = "h3|h2")]
    pub transport: Option<String>,
    /// Only these stacks: wt-h3, quinn, wtransport, wt-client, wt-h2, h2 (repeatable or
    /// comma-separated; for profiling one stack at a time).
    #[arg(long = "stack", value_name = "NAME", value_delimiter = ',')]
    pub stacks: Vec<String>,
    /// Rounds per workload (default 5; 1 with --quick).
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Legs per round of the latency, churn and datagram workloads (default 20; 5 with
    /// --quick): each leg runs its share of the round's round trips, streams or datagrams
    /// for every stack, each stack on its one connection of the round. More legs interleave
    /// the stacks more finely, so drift of the machine's speed falls on both halves of a pair
    /// more evenly.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub legs: Option<u16>,
    /// Worker threads of the runtime that clients and in-process servers share (default 2,
    /// the machine's cores). With 1, everything runs on one thread: a stack's cost shows
    /// without what spreading its tasks over two threads adds to it (cross-thread wake-ups,
    /// cache lines moving between cores).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Run in this binary even if it is a debug build or lacks the `bench` feature.
    #[arg(long)]
    pub no_reexec: bool,
    /// Internal: serve wt-testserver's echo handler for the scale workload.
    #[arg(long, hide = true, value_name = "h3|h2")]
    pub scale_server: Option<String>,
}

/// The legs a round of the latency, churn and datagram workloads is cut into (`--legs`).
/// Each leg runs a twentieth of the round trips, streams or datagrams for every stack, in the
/// round's order and then in reverse (A B, B A, A B, …), each stack on the one connection it
/// opened for the round, and a stack's legs are pooled into its sample of the round. A 2-core
/// machine drifts between two runs a fraction of a second apart by as much as the stacks
/// differ; interleaving the halves of a pair this finely lets the drift fall on both. Twenty
/// legs instead of five narrowed the spread of the latency and datagram rows' per-round
/// ratios two to three times (see the README's benchmark notes), for about a tenth of a
/// second more per leg (the wait for the process to be quiet).
const LEGS: usize = 20;

/// [`LEGS`] with `--quick` (one round, where the spread across rounds does not apply).
const QUICK_LEGS: usize = 5;

/// The legs of a bulk round (whatever `--legs` says): its transfer (1 GiB up, or 256 MiB each
/// way) on one stream per stack, a quarter per leg, in the order A B, B A, A B, B A (see
/// [`pipe`]). Legs this long stay a bulk transfer: a leg starts and ends with the pipeline
/// empty, and with twenty legs (51 MiB up, 13 MiB each way) that was most of a leg, every
/// stack's rate falling by about a third, which measures bursts, not bulk.
const BULK_LEGS: usize = 4;

/// A workload of the bench (scale is run separately).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Client → server bulk transfer on one stream.
    BulkUpload,
    /// Echo through one stream, both directions at once.
    BulkEcho,
    /// Sequential 64-byte round trips.
    Latency,
    /// Short streams, 64 in flight.
    Churn,
    /// Datagram flood, each datagram written by the sender ([`Payload::Written`]).
    Datagrams,
    /// Datagram flood of one shared payload ([`Payload::Shared`]).
    DatagramsShared,
    /// Sequential connect + echo + close.
    Setup,
}

impl Workload {
    const ALL: [Workload; 7] = [
        Workload::BulkUpload,
        Workload::BulkEcho,
        Workload::Latency,
        Workload::Churn,
        Workload::Datagrams,
        Workload::DatagramsShared,
        Workload::Setup,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::BulkUpload => "bulk-upload",
            Workload::BulkEcho => "bulk-echo",
            Workload::Latency => "latency",
            Workload::Churn => "churn",
            Workload::Datagrams => "datagrams",
            Workload::DatagramsShared => "datagrams-shared",
            Workload::Setup => "setup",
        }
    }

    /// What the headline number is, and whether more is better.
    fn metric(self) -> (&'static str, bool) {
        match self {
            Workload::BulkUpload => ("MiB/s", true),
            Workload::BulkEcho => ("MiB/s each way", true),
            Workload::Latency => ("RTT p50 us", false),
            Workload::Churn => ("streams/s", true),
            Workload::Datagrams | Workload::DatagramsShared => ("delivered dgrams/s", true),
            Workload::Setup => ("setup p50 us", false),
        }
    }

    /// How many legs a round of this workload runs in: [`BULK_LEGS`] for the bulk workloads,
    /// `split` (`--legs`, default [`LEGS`]) for the others that share out one session's work
    /// (see [`shares_a_connection`](Self::shares_a_connection)), else one.
    fn legs(self, split: usize) -> usize {
        match self {
            Workload::BulkUpload | Workload::BulkEcho => BULK_LEGS,
            _ if self.shares_a_connection() => split.max(1),
            _ => 1,
        }
    }

    /// Whether the legs of a round share one connection per stack: those that share out one
    /// session's work (every workload but setup), so that only a round's first leg runs on a
    /// new connection, as in a single session. The bulk workloads also keep one stream
    /// across the legs (see [`pipe`]).
    fn shares_a_connection(self) -> bool {
        self != Workload::Setup
    }

    /// The bulk stream of this workload with its total size in `z`: the upload acknowledged
    /// once per leg of `legs`, or the echo. `None` for the other workloads.
    fn bulk(self, z: &Sizes, legs: usize) -> Option<(u64, PipeMode)> {
        match self {
            Workload::BulkUpload => Some((
                z.bulk_bytes,
                PipeMode::Upload {
                    every: pipe::leg_every(z.bulk_bytes, legs),
                },
            )),
            Workload::BulkEcho => Some((z.echo_bytes, PipeMode::Echo)),
            _ => None,
        }
    }

    /// How a datagram workload makes its payloads ([`Payload::Written`] for the others).
    fn payload(self) -> Payload {
        if self == Workload::DatagramsShared {
            Payload::Shared
        } else {
            Payload::Written
        }
    }

    fn stacks(self) -> Vec<Stack> {
        use Stack::*;
        let all = match self {
            Workload::BulkUpload | Workload::BulkEcho | Workload::Latency => {
                vec![WtH3, Quinn, Wtransport, WtClientH3, WtH2, H2, WtClientH2]
            }
            Workload::Churn | Workload::Setup => vec![WtH3, Quinn, Wtransport, WtH2, H2],
            Workload::Datagrams | Workload::DatagramsShared => {
                vec![WtH3, Quinn, Wtransport, WtClientH3, WtH2, WtClientH2]
            }
        };
        all.into_iter()
            .filter(|s| cfg!(feature = "bench") || *s != Wtransport)
            .collect()
    }
}

/// The order `stacks` run in within a round: every stack right next to its baseline (a
/// wt-client stack, the raw API it wraps, raw quinn, wtransport; then raw h2, wt-h2, its
/// wt-client), so the two runs a ratio compares are back to back even when the machine's
/// speed drifts. Odd rounds run it backwards, so each of a pair goes first as often.
fn run_order(stacks: &[Stack], round: usize) -> Vec<usize> {
    use Stack::*;
    const ORDER: [Stack; 7] = [WtClientH3, WtH3, Quinn, Wtransport, H2, WtH2, WtClientH2];
    let mut order: Vec<usize> = ORDER
        .iter()
        .filter_map(|s| stacks.iter().position(|x| x == s))
        .collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// A client/server implementation under test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Ours over HTTP/3, raw API.
    WtH3,
    /// Raw QUIC.
    Quinn,
    /// wtransport 0.7.
    Wtransport,
    /// wt-client over HTTP/3.
    WtClientH3,
    /// Ours over HTTP/2, raw API.
    WtH2,
    /// Raw HTTP/2.
    H2,
    /// wt-client over HTTP/2.
    WtClientH2,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::WtH3 => "wt-h3",
            Stack::Quinn => "quinn",
            Stack::Wtransport => "wtransport",
            Stack::WtClientH3 | Stack::WtClientH2 => "wt-client",
            Stack::WtH2 => "wt-h2",
            Stack::H2 => "h2",
        }
    }

    fn transport(self) -> &'static str {
        match self {
            Stack::WtH3 | Stack::Quinn | Stack::Wtransport | Stack::WtClientH3 => "h3",
            Stack::WtH2 | Stack::H2 | Stack::WtClientH2 => "h2",
        }
    }

    fn baseline(self) -> Option<Stack> {
        match self {
            Stack::WtH3 | Stack::Wtransport => Some(Stack::Quinn),
            Stack::WtClientH3 => Some(Stack::WtH3),
            Stack::WtH2 => Some(Stack::H2),
            Stack::WtClientH2 => Some(Stack::WtH2),
            Stack::Quinn | Stack::H2 => None,
        }
    }
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: Args) -> ExitCode {
    if let Some(t) = &args.scale_server {
        return scale::child_main(t);
    }
    if !args.no_reexec && (cfg!(debug_assertions) || !cfg!(feature = "bench")) {
        return reexec();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.workers))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

fn reexec() -> ExitCode {
    eprintln!("bench: re-running in release mode: cargo run --release -p xtask --features bench");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", "xtask", "--features", "bench", "--"])
            .args(std::env::args_os().skip(1))
            .arg("--no-reexec")
            .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Selected workloads (and whether scale is one of them).
fn select(names: &[String]) -> Result<(Vec<Workload>, bool), String> {
    if names.is_empty() {
        return Ok((Workload::ALL.to_vec(), true));
    }
    let mut out = Vec::new();
    let mut scale = false;
    for n in names {
        let add: &[Workload] = match n.as_str() {
            "bulk" => &[Workload::BulkUpload, Workload::BulkEcho],
            "bulk-upload" | "upload" => &[Workload::BulkUpload],
            "bulk-echo" | "echo" => &[Workload::BulkEcho],
            "latency" => &[Workload::Latency],
            "churn" => &[Workload::Churn],
            "datagrams" | "datagram" => &[Workload::Datagrams, Workload::DatagramsShared],
            "datagrams-written" => &[Workload::Datagrams],
            "datagrams-shared" => &[Workload::DatagramsShared],
            "setup" => &[Workload::Setup],
            "scale" => {
                scale = true;
                &[]
            }
            other => return Err(format!("unknown workload {other:?}")),
        };
        for w in add {
            if !out.contains(w) {
                out.push(*w);
            }
        }
    }
    out.sort_by_key(|w| Workload::ALL.iter().position(|x| x == w));
    Ok((out, scale))
}

/// Clients and servers shared by the runs.
struct Ctx {
    addrs: Addrs,
    h3: wt_h3::Client,
    h2: wt_h2::Client,
    quinn: quinn::ClientConfig,
    h2_tls: Arc<rustls::ClientConfig>,
    #[cfg(feature = "bench")]
    wt_tls: rustls::ClientConfig,
}

async fn start_servers() -> BResult<Addrs> {
    let tls = Tls::new()?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (s3, s2, sq, sw) = (
        ServerStats::new(),
        ServerStats::new(),
        ServerStats::new(),
        ServerStats::new(),
    );

    let h3 = wt_h3::Server::bind(wt_h3::ServerConfig::new(tls.server.clone(), any))?;
    let wt_h3 = Acceptor::local_addr(&h3);
    tokio::spawn(server::serve_wt(h3, s3.clone()));

    let h2 = wt_h2::Server::bind(wt_h2::ServerConfig::new(tls.server.clone(), any))?;
    let wt_h2 = Acceptor::local_addr(&h2);
    tokio::spawn(server::serve_wt(h2, s2.clone()));

    let q = server::bind_quinn(&tls)?;
    let quinn = q.local_addr()?;
    tokio::spawn(server::serve_quinn(q, sq.clone()));

    let l = tokio::net::TcpListener::bind(any).await?;
    let h2raw = l.local_addr()?;
    let h2tls = Arc::new(tls.server.build(&[b"h2"], true)?);
    tokio::spawn(server::serve_h2(l, h2tls));

    #[cfg(feature = "bench")]
    let wtransport = {
        let ep = wtrans::bind(&tls)?;
        let a = ep.local_addr()?;
        tokio::spawn(wtrans::serve(ep, sw.clone()));
        Some(a)
    };
    #[cfg(not(feature = "bench"))]
    let wtransport = None;

    Ok(Addrs {
        tls,
        wt_h3,
        wt_h2,
        quinn,
        h2: h2raw,
        wtransport,
        stats_wt_h3: s3,
        stats_wt_h2: s2,
        stats_quinn: sq,
        stats_wtransport: sw,
    })
}

async fn run_session<S: Session>(
    w: Workload,
    s: &S,
    stats: &ServerStats,
    z: &Sizes,
) -> BResult<Sample> {
    match w {
        Workload::Latency => ours::latency(s, z.latency_rounds).await,
        Workload::Churn => ours::churn(s, z.churn_streams).await,
        Workload::Datagrams | Workload::DatagramsShared => {
            ours::datagrams(s, stats, z.datagrams, w.payload()).await
        }
        Workload::BulkUpload | Workload::BulkEcho | Workload::Setup => {
            Err(BenchError::NotApplicable)
        }
    }
}

/// Waits until this process is quiet (under 20 % of a core over 100 ms, at most 5 s): what a
/// run leaves behind (connections closing, server tasks finishing) would otherwise be paid by
/// whichever stack runs next. Returns how long it waited.
async fn quiesce() -> Duration {
    const WINDOW: Duration = Duration::from_millis(100);
    const QUIET: f64 = 0.2;
    let start = Instant::now();
    let me = std::process::id();
    while start.elapsed() < Duration::from_secs(5) {
        let Ok(before) = scale::cpu_secs(me) else {
            break;
        };
        tokio::time::sleep(WINDOW).await;
        let Ok(after) = scale::cpu_secs(me) else {
            break;
        };
        if after - before < QUIET * WINDOW.as_secs_f64() {
            break;
        }
    }
    start.elapsed()
}

/// The machine's CPU time so far, in clock ticks over all CPUs, from the `cpu` line of
/// `/proc/stat`: `(stolen, total)`, where stolen is the `steal` column (time this virtual
/// machine was ready to run but the hypervisor ran something else). `None` where there is
/// no such file or it cannot be read.
fn host_ticks() -> Option<(u64, u64)> {
    parse_host_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// [`host_ticks`] from the text of `/proc/stat`.
fn parse_host_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
    // already counted in user and nice.
    let v: Vec<u64> = fields
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let total = v.iter().try_fold(0u64, |a, x| a.checked_add(*x))?;
    Some((*v.get(7)?, total))
}

/// Stolen and total ticks of the machine while runs of one stack ran (see [`host_ticks`]).
#[derive(Clone, Copy, Default)]
struct Stolen {
    steal: u64,
    total: u64,
}

impl Stolen {
    /// Adds the ticks between two readings.
    fn add(&mut self, before: Option<(u64, u64)>, after: Option<(u64, u64)>) {
        if let (Some(b), Some(a)) = (before, after) {
            self.steal += a.0.saturating_sub(b.0);
            self.total += a.1.saturating_sub(b.1);
        }
    }

    /// The share of the machine's CPU time stolen, in %, if any ticks were counted.
    fn pct(self) -> Option<f64> {
        (self.total > 0).then(|| 100.0 * self.steal as f64 / self.total as f64)
    }
}

/// The session setup workload of `stack`: `z.setups` connections, one after the other.
async fn run_setup(stack: Stack, ctx: &Ctx, z: &Sizes) -> BResult<Sample> {
    let a = &ctx.addrs;
    match stack {
        Stack::WtH3 => ours::setup(&ctx.h3, &ours::request(a.wt_h3), z.setups).await,
        Stack::WtH2 => ours::setup(&ctx.h2, &ours::request(a.wt_h2), z.setups).await,
        Stack::Quinn => quic::setup(&ctx.quinn, a.quinn, z.setups).await,
        Stack::H2 => h2raw::setup(&ctx.h2_tls, a.h2, z.setups).await,
        #[cfg(feature = "bench")]
        Stack::Wtransport => {
            let addr = a.wtransport.ok_or(BenchError::NotApplicable)?;
            wtrans::setup(&ctx.wt_tls, addr, z.setups).await
        }
        _ => Err(BenchError::NotApplicable),
    }
}

/// A stack's client connection (for raw quinn with its endpoint). The legs of a round of
/// every workload but setup run on one per stack, opened before the round's first leg (see
/// [`Workload::shares_a_connection`]); setup opens its own, many times over.
enum Conn {
    WtH3(<wt_h3::Client as Connector>::Session),
    WtH2(<wt_h2::Client as Connector>::Session),
    /// Raw quinn's connection, and its endpoint (kept open with it).
    Quinn {
        c: quinn::Connection,
        _ep: quinn::Endpoint,
    },
    H2(h2raw::H2Client),
    /// wt-client's connection.
    WtClient {
        c: wt_client::Connection,
        /// Over HTTP/3 (else HTTP/2).
        h3: bool,
        /// The default stream was put in echo mode (by the first latency leg: the connection
        /// has only the one default stream, and its first byte picks the mode).
        echoing: AtomicBool,
    },
    #[cfg(feature = "bench")]
    /// wtransport's connection, and its endpoint (kept open with it).
    Wtransport {
        c: wtransport::Connection,
        _ep: wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>,
    },
}

impl Conn {
    /// Connects `stack` to its in-process server.
    async fn open(stack: Stack, ctx: &Ctx) -> BResult<Conn> {
        let a = &ctx.addrs;
        Ok(match stack {
            Stack::WtH3 => Conn::WtH3(ctx.h3.connect(&ours::request(a.wt_h3)).await?),
            Stack::WtH2 => Conn::WtH2(ctx.h2.connect(&ours::request(a.wt_h2)).await?),
            Stack::Quinn => {
                let (ep, c) = quic::connect(&ctx.quinn, a.quinn).await?;
                Conn::Quinn { c, _ep: ep }
            }
            Stack::H2 => Conn::H2(h2raw::connect(&ctx.h2_tls, a.h2).await?),
            Stack::WtClientH3 => {
                let c = wtclient::connect(&a.tls, a.wt_h3, wt_client::Transport::H3).await?;
                Conn::WtClient {
                    c,
                    h3: true,
                    echoing: AtomicBool::new(false),
                }
            }
            Stack::WtClientH2 => {
                let c = wtclient::connect(&a.tls, a.wt_h2, wt_client::Transport::H2).await?;
                Conn::WtClient {
                    c,
                    h3: false,
                    echoing: AtomicBool::new(false),
                }
            }
            #[cfg(feature = "bench")]
            Stack::Wtransport => {
                let addr = a.wtransport.ok_or(BenchError::NotApplicable)?;
                let ep = wtrans::client(&ctx.wt_tls)?;
                let c = wtrans::connect(&ep, addr).await?;
                Conn::Wtransport { c, _ep: ep }
            }
            #[cfg(not(feature = "bench"))]
            Stack::Wtransport => return Err(BenchError::NotApplicable),
        })
    }

    /// Opens the bulk stream of a round on this connection (wt-client: its default stream).
    async fn pipe(&self, mode: PipeMode) -> BResult<Pipe> {
        match self {
            Conn::WtH3(s) => ours::pipe(s, mode).await,
            Conn::WtH2(s) => ours::pipe(s, mode).await,
            Conn::Quinn { c, .. } => quic::pipe(c, mode).await,
            Conn::H2(c) => h2raw::pipe(c, mode).await,
            Conn::WtClient { c, .. } => wtclient::pipe(c, mode).await,
            #[cfg(feature = "bench")]
            Conn::Wtransport { c, .. } => wtrans::pipe(c, mode).await,
        }
    }

    /// Leg `leg` of `legs` of bulk workload `w` (total size in `z`) on this connection: its
    /// share of the bytes on the round's stream in `pipe`, which the first leg opens and the
    /// last ends. Times all of that, as MiB/s.
    async fn bulk_leg(
        &self,
        w: Workload,
        z: &Sizes,
        pipe: &mut Option<Pipe>,
        leg: usize,
        legs: usize,
    ) -> BResult<Sample> {
        let (total, mode) = w.bulk(z, legs).ok_or(BenchError::NotApplicable)?;
        let n = pipe::leg_bytes(total, leg, legs);
        let allocs = AllocSpan::start();
        let start = Instant::now();
        let p = match pipe {
            Some(p) => p,
            None => pipe.insert(self.pipe(mode).await?),
        };
        p.leg(n).await?;
        if leg + 1 >= legs {
            if let Some(p) = pipe.take() {
                p.end().await?;
            }
        }
        let d = start.elapsed();
        // Allocations per MiB count both directions of an echo.
        let moved = if mode == PipeMode::Echo { 2 * n } else { n };
        Ok(allocs.add_to(mib_sample(n, d), moved))
    }

    /// One run of latency, churn or datagram workload `w` on this connection (the bulk
    /// workloads run through [`bulk_leg`](Self::bulk_leg)).
    async fn run(&self, w: Workload, ctx: &Ctx, z: &Sizes) -> BResult<Sample> {
        let a = &ctx.addrs;
        match self {
            Conn::WtH3(s) => run_session(w, s, &a.stats_wt_h3, z).await,
            Conn::WtH2(s) => run_session(w, s, &a.stats_wt_h2, z).await,
            Conn::Quinn { c, .. } => match w {
                Workload::Latency => quic::latency(c, z.latency_rounds).await,
                Workload::Churn => quic::churn(c, z.churn_streams).await,
                Workload::Datagrams | Workload::DatagramsShared => {
                    quic::datagrams(c, &a.stats_quinn, z.datagrams, w.payload()).await
                }
                Workload::BulkUpload | Workload::BulkEcho | Workload::Setup => {
                    Err(BenchError::NotApplicable)
                }
            },
            Conn::H2(c) => match w {
                Workload::Latency => h2raw::latency(c, z.latency_rounds).await,
                Workload::Churn => h2raw::churn(c, z.churn_streams).await,
                Workload::BulkUpload
                | Workload::BulkEcho
                | Workload::Datagrams
                | Workload::DatagramsShared
                | Workload::Setup => Err(BenchError::NotApplicable),
            },
            Conn::WtClient { c, h3, echoing } => {
                let stats = if *h3 { &a.stats_wt_h3 } else { &a.stats_wt_h2 };
                match w {
                    Workload::Latency => {
                        let first = !echoing.swap(true, Ordering::Relaxed);
                        wtclient::latency(c, z.latency_rounds, first).await
                    }
                    Workload::Datagrams | Workload::DatagramsShared => {
                        wtclient::datagrams(c, stats, z.datagrams, w.payload()).await
                    }
                    Workload::BulkUpload
                    | Workload::BulkEcho
                    | Workload::Churn
                    | Workload::Setup => Err(BenchError::NotApplicable),
                }
            }
            #[cfg(feature = "bench")]
            Conn::Wtransport { c, .. } => match w {
                Workload::Latency => wtrans::latency(c, z.latency_rounds).await,
                Workload::Churn => wtrans::churn(c, z.churn_streams).await,
                Workload::Datagrams | Workload::DatagramsShared => {
                    wtrans::datagrams(c, &a.stats_wtransport, z.datagrams, w.payload()).await
                }
                Workload::BulkUpload | Workload::BulkEcho | Workload::Setup => {
                    Err(BenchError::NotApplicable)
                }
            },
        }
    }

    /// Closes the connection (code 0).
    async fn close(self) {
        match self {
            Conn::WtH3(s) => {
                let _ = s.close(0, "");
            }
            Conn::WtH2(s) => {
                let _ = s.close(0, "");
            }
            Conn::Quinn { c, .. } => c.close(0u32.into(), b""),
            Conn::H2(c) => drop(c),
            Conn::WtClient { c, .. } => {
                let _ = c.close().await;
            }
            #[cfg(feature = "bench")]
            Conn::Wtransport { c, .. } => c.close(0u32.into(), b""),
        }
    }
}

fn describe(w: Workload, s: &Sample) -> String {
    let (metric, _) = w.metric();
    let mut out = format!("{:.1} {metric}", s.primary);
    for (k, v) in &s.extra {
        out.push_str(&format!(", {k} {v:.1}"));
    }
    out
}

async fn run(args: Args) -> ExitCode {
    let started = Instant::now();
    let (workloads, with_scale) = match select(&args.workloads) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let transport = match args.transport.as_deref() {
        None => None,
        Some("h3") => Some("h3"),
        Some("h2") => Some("h2"),
        Some(other) => {
            eprintln!("bench: unknown transport {other:?} (h3 or h2)");
            return ExitCode::FAILURE;
        }
    };
    let sizes = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 }).max(1);
    let split = args
        .legs
        .map_or(if args.quick { QUICK_LEGS } else { LEGS }, usize::from);

    let addrs = match start_servers().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: cannot start the servers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = match (|| -> BResult<Ctx> {
        Ok(Ctx {
            h3: ours::h3_client(&addrs.tls)?,
            h2: ours::h2_client(&addrs.tls)?,
            quinn: quic::client_config(&addrs.tls)?,
            h2_tls: h2raw::client_tls(&addrs.tls)?,
            #[cfg(feature = "bench")]
            wt_tls: wtrans::client_tls(&addrs.tls)?,
            addrs: addrs.clone(),
        })
    })() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: cannot build the clients: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !cfg!(feature = "bench") {
        eprintln!(
            "bench: built without the `bench` feature: no wtransport rows, no allocation counts"
        );
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: WARNING: debug build, numbers are meaningless");
    }

    let mut rows = Vec::new();
    // Every run of this invocation, in order (the report's `seq` of each leg).
    let mut seq: u64 = 0;
    for w in workloads {
        let stacks: Vec<Stack> = w
            .stacks()
            .into_iter()
            .filter(|s| transport.is_none_or(|t| s.transport() == t))
            .filter(|s| args.stacks.is_empty() || args.stacks.iter().any(|n| n == s.name()))
            .collect();
        let mut cells: Vec<(Stack, Cell)> = stacks.iter().map(|s| (*s, Cell::default())).collect();
        let legs = w.legs(split);
        let leg_sizes = sizes.leg(legs);
        for round in 0..rounds {
            let order = run_order(&stacks, round);
            let mut runs: Vec<Vec<Sample>> = vec![Vec::new(); stacks.len()];
            let mut legs_run: Vec<Vec<report::Leg>> = vec![Vec::new(); stacks.len()];
            let mut failed: Vec<Option<String>> = vec![None; stacks.len()];
            let mut took = vec![Duration::ZERO; stacks.len()];
            let mut stolen = vec![Stolen::default(); stacks.len()];
            let mut conns: Vec<Option<Conn>> = stacks.iter().map(|_| None).collect();
            let mut pipes: Vec<Option<Pipe>> = stacks.iter().map(|_| None).collect();
            if w.shares_a_connection() {
                for &i in &order {
                    match tokio::time::timeout(RUN_TIMEOUT, Conn::open(stacks[i], &ctx)).await {
                        Ok(Ok(c)) => conns[i] = Some(c),
                        Ok(Err(e)) => failed[i] = Some(e.to_string()),
                        Err(_) => failed[i] = Some(BenchError::Timeout("connect").to_string()),
                    }
                }
            }
            for leg in 0..legs {
                let mut ord = order.clone();
                if leg % 2 == 1 {
                    ord.reverse();
                }
                for i in ord {
                    if failed[i].is_some() {
                        continue;
                    }
                    let waited = quiesce().await;
                    if waited > Duration::from_millis(150) {
                        println!(
                            "[{} {}/{}] waited {:.1} s for the previous run to wind down",
                            w.name(),
                            round + 1,
                            rounds,
                            waited.as_secs_f64()
                        );
                    }
                    let t = Instant::now();
                    let host_before = host_ticks();
                    let run = async {
                        match &conns[i] {
                            Some(c) if w.bulk(&sizes, legs).is_some() => {
                                c.bulk_leg(w, &sizes, &mut pipes[i], leg, legs).await
                            }
                            Some(c) => c.run(w, &ctx, &leg_sizes).await,
                            None => run_setup(stacks[i], &ctx, &leg_sizes).await,
                        }
                    };
                    let r = match tokio::time::timeout(RUN_TIMEOUT, run).await {
                        Ok(r) => r,
                        Err(_) => Err(BenchError::Timeout("run")),
                    };
                    took[i] += t.elapsed();
                    stolen[i].add(host_before, host_ticks());
                    let this_seq = seq;
                    seq += 1;
                    match r {
                        Ok(s) => {
                            legs_run[i].push(report::Leg {
                                seq: this_seq,
                                value: s.primary,
                            });
                            runs[i].push(s);
                        }
                        Err(e) => failed[i] = Some(e.to_string()),
                    }
                }
            }
            drop(pipes);
            for c in conns.into_iter().flatten() {
                c.close().await;
            }
            for i in order {
                let stack = stacks[i];
                let pooled = match failed[i].take() {
                    Some(e) => Err(e),
                    None => Sample::pool(std::mem::take(&mut runs[i]))
                        .ok_or_else(|| "its runs cannot be pooled".to_string()),
                };
                match pooled {
                    Ok(mut s) => {
                        if let Some(p) = stolen[i].pct() {
                            s.extra.push(("host_steal_pct", p));
                        }
                        println!(
                            "[{} {}/{}] {:<3} {:<10} {} ({:.1} s{})",
                            w.name(),
                            round + 1,
                            rounds,
                            stack.transport(),
                            stack.name(),
                            describe(w, &s),
                            took[i].as_secs_f64(),
                            if legs > 1 {
                                format!(", {legs} legs")
                            } else {
                                String::new()
                            }
                        );
                        cells[i].1.samples.push((round, s));
                        if legs > 1 {
                            cells[i]
                                .1
                                .legs
                                .push((round, std::mem::take(&mut legs_run[i])));
                        }
                    }
                    Err(e) => {
                        println!(
                            "[{} {}/{}] {:<3} {:<10} FAILED: {e}",
                            w.name(),
                            round + 1,
                            rounds,
                            stack.transport(),
                            stack.name()
                        );
                        cells[i].1.errors.push(e);
                    }
                }
            }
        }
        rows.extend(report::rows(w, &cells));
    }

    let mut scale_results = Vec::new();
    if with_scale {
        for k in [ScaleKind::H3, ScaleKind::Quinn, ScaleKind::H2] {
            if transport.is_some_and(|x| x != k.transport()) {
                continue;
            }
            let limit = std::time::Duration::from_secs(sizes.scale_secs + 180);
            let tt = Instant::now();
            match tokio::time::timeout(limit, scale::run(k, sizes.scale_sessions, sizes.scale_secs))
                .await
            {
                Ok(Ok(r)) => {
                    println!(
                        "[scale] {} {}: {} sessions, {:.1} KiB/session idle, {:.1}% CPU active ({:.1} s)",
                        k.transport(),
                        k.stack(),
                        r.sessions,
                        r.idle_kib_per_session,
                        r.active_cpu_pct,
                        tt.elapsed().as_secs_f64()
                    );
                    scale_results.push(r);
                }
                Ok(Err(e)) => println!("[scale] {} {}: FAILED: {e}", k.transport(), k.stack()),
                Err(_) => println!("[scale] {} {}: FAILED: timed out", k.transport(), k.stack()),
            }
        }
        rows.extend(report::scale_rows(&scale_results));
    }

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rounds,
        legs: split,
        bulk_legs: BULK_LEGS,
        workers: args.workers,
        sizes,
        total_secs: started.elapsed().as_secs_f64(),
        allocations_counted: alloc::allocations().is_some(),
        rows,
        scale: scale_results,
    };
    report::print(&report);
    if let Some(path) = &args.json {
        let json = match serde_json::to_string_pretty(&report) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("bench: JSON: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_ticks_come_from_the_cpu_line() {
        use super::{parse_host_ticks, Stolen};
        let stat = "cpu  100 5 20 800 10 0 5 60 40 0\ncpu0 50 2 10 400 5 0 2 30 20 0\n";
        assert_eq!(parse_host_ticks(stat), Some((60, 1000)));
        // Older kernels without steal, other first lines, junk, overflow: no reading.
        for bad in [
            "",
            "cpu  1 2 3 4 5 6 7\n",
            "cpu0 100 5 20 800 10 0 5 60\n",
            "cpu  1 2 x 4 5 6 7 8\n",
            "cpu  -1 2 3 4 5 6 7 8\n",
            "cpu  18446744073709551615 1 0 0 0 0 0 0\n",
        ] {
            assert_eq!(parse_host_ticks(bad), None, "{bad:?}");
        }
        let mut s = Stolen::default();
        assert_eq!(s.pct(), None);
        s.add(Some((60, 1000)), Some((70, 1200)));
        s.add(None, Some((80, 1300)));
        s.add(Some((70, 1200)), Some((80, 1300)));
        assert_eq!(s.pct(), Some(100.0 * 20.0 / 300.0));
    }

    #[test]
    fn legs_of_a_round_pool_into_one_sample() {
        use super::common::{latency_sample, rate_sample, Sample};
        let us = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_micros(x))
                .collect::<Vec<_>>()
        };
        // Round trips: quantiles over all of them, not a mean of the legs' quantiles.
        // Other secondary numbers (allocations per round trip) are averaged.
        let p = Sample::pool(vec![
            latency_sample(us(&[10, 11, 12])).with("allocs_per_rtt", 6.0),
            latency_sample(us(&[40, 50])).with("allocs_per_rtt", 8.0),
        ])
        .unwrap();
        assert_eq!(p.primary, 12.0);
        assert_eq!(p.extra, vec![("p99_us", 50.0), ("allocs_per_rtt", 7.0)]);
        // Rates: all units over all the time; secondary numbers averaged.
        let p = Sample::pool(vec![
            rate_sample(100.0, 1.0).with("allocs_per_mib", 300.0),
            rate_sample(300.0, 3.0).with("allocs_per_mib", 310.0),
        ])
        .unwrap();
        assert_eq!(p.primary, 100.0);
        assert_eq!(p.extra, vec![("allocs_per_mib", 305.0)]);
        // One run is kept as it is; runs without parts or of different kinds do not pool.
        assert_eq!(Sample::pool(vec![Sample::new(7.0)]).unwrap().primary, 7.0);
        assert!(Sample::pool(vec![Sample::new(7.0), Sample::new(8.0)]).is_none());
        assert!(Sample::pool(vec![latency_sample(us(&[1])), rate_sample(1.0, 1.0)]).is_none());
    }

    #[test]
    fn a_leg_runs_its_share_of_the_round_trips_streams_and_datagrams() {
        // The default legs share out both sets of sizes evenly.
        for (all, legs) in [(Sizes::FULL, LEGS), (Sizes::QUICK, QUICK_LEGS)] {
            let leg = all.leg(legs);
            assert_eq!(leg.latency_rounds * legs, all.latency_rounds);
            assert_eq!(leg.churn_streams * legs, all.churn_streams);
            assert_eq!(leg.datagrams * legs, all.datagrams);
            assert_eq!(leg.bulk_bytes, all.bulk_bytes);
        }
        let full = Sizes::FULL;
        assert_eq!(full.leg(0).latency_rounds, full.latency_rounds);
        assert_eq!(Workload::Latency.legs(LEGS), LEGS);
        assert_eq!(Workload::Churn.legs(20), 20);
        assert_eq!(Workload::Datagrams.legs(LEGS), LEGS);
        assert_eq!(Workload::BulkEcho.legs(20), BULK_LEGS);
        assert_eq!(Workload::BulkUpload.legs(QUICK_LEGS), BULK_LEGS);
        assert_eq!(Workload::Setup.legs(20), 1);
    }

    #[test]
    fn every_stack_runs_next_to_its_baseline_and_the_order_alternates() {
        for w in Workload::ALL {
            let stacks = w.stacks();
            let even = run_order(&stacks, 0);
            let odd = run_order(&stacks, 1);
            let mut sorted = even.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..stacks.len()).collect::<Vec<_>>(), "{w:?}");
            assert_eq!(odd, even.iter().rev().copied().collect::<Vec<_>>());
            for (k, &i) in even.iter().enumerate() {
                // A baseline the workload lacks (raw h2 has no datagrams) has no ratio.
                let b = stacks[i].baseline();
                if let Some(j) = stacks.iter().position(|s| Some(*s) == b) {
                    let at = even.iter().position(|&x| x == j).unwrap();
                    assert_eq!(at.abs_diff(k), 1, "{w:?}: {:?} vs {:?}", stacks[i], b);
                }
            }
        }
    }

    use super::*;

    #[test]
    fn workload_selection() {
        let (w, scale) = select(&[]).unwrap();
        assert_eq!(w.len(), Workload::ALL.len());
        assert!(scale);
        let (w, scale) = select(&["latency".into(), "bulk".into()]).unwrap();
        assert_eq!(
            w,
            vec![Workload::BulkUpload, Workload::BulkEcho, Workload::Latency]
        );
        assert!(!scale);
        assert!(select(&["nope".into()]).is_err());
    }

    #[test]
    fn baselines_share_the_transport() {
        for w in Workload::ALL {
            for s in w.stacks() {
                if let Some(b) = s.baseline() {
                    assert_eq!(b.transport(), s.transport());
                }
            }
        }
    }
}
