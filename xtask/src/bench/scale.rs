//! The scale workload: many concurrent sessions on one wt-testserver (echo handler) running
//! in a child process (this binary, `bench --scale-server h3|h2`), whose memory (VmRSS) and
//! CPU time (utime + stime) are read from /proc.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use wt_core::{ConnectRequest, Connector, RecvStream, SendStream, Session};
use wt_testserver::{Limits, ServeOptions, TestServer, TestServerConfig, Transports};

use super::common::*;
use super::ours::request;

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;
/// Concurrent connects while building up the sessions.
const CONNECT_PARALLEL: usize = 32;

/// What the scale workload measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScaleResult {
    /// `h3` or `h2`.
    pub transport: String,
    /// `wt-testserver` or `quinn`.
    pub stack: String,
    /// Sessions established.
    pub sessions: usize,
    /// Seconds to establish them.
    pub connect_secs: f64,
    /// Server VmRSS before (one warm-up session done and closed), KiB.
    pub rss_base_kib: u64,
    /// Server VmRSS with every session idle, KiB.
    pub rss_idle_kib: u64,
    /// (idle − base) / sessions, KiB.
    pub idle_kib_per_session: f64,
    /// Server VmRSS at the end of the active phase, KiB.
    pub rss_active_kib: u64,
    /// (active − base) / sessions, KiB.
    pub active_kib_per_session: f64,
    /// Server CPU (user + system) during the active phase, % of one core.
    pub active_cpu_pct: f64,
    /// Server CPU milliseconds per echo in the active phase (includes keep-alives and timers).
    pub cpu_ms_per_echo: f64,
    /// Echoes completed.
    pub echoes: usize,
    /// Echoes or sessions that failed.
    pub errors: usize,
    /// Echo round trip p50 during the active phase, µs.
    pub echo_p50_us: f64,
    /// Echo round trip p99, µs.
    pub echo_p99_us: f64,
}

/// Which server the scale workload measures.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    /// wt-testserver's echo handler over HTTP/3.
    H3,
    /// wt-testserver's echo handler over HTTP/2.
    H2,
    /// The raw quinn bench server (baseline of the HTTP/3 figures).
    Quinn,
}

impl ScaleKind {
    /// The `--scale-server` argument.
    pub fn arg(self) -> &'static str {
        match self {
            ScaleKind::H3 => "h3",
            ScaleKind::H2 => "h2",
            ScaleKind::Quinn => "quinn",
        }
    }

    /// `h3` or `h2`.
    pub fn transport(self) -> &'static str {
        match self {
            ScaleKind::H3 | ScaleKind::Quinn => "h3",
            ScaleKind::H2 => "h2",
        }
    }

    /// The stack name in the table.
    pub fn stack(self) -> &'static str {
        match self {
            ScaleKind::H3 | ScaleKind::H2 => "wt-testserver",
            ScaleKind::Quinn => "quinn",
        }
    }
}

/// The child: serve `kind` until stdin closes.
pub fn child_main(kind: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench scale server: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kind = kind.to_owned();
    rt.block_on(async move {
        let transports = match kind.as_str() {
            "h3" => Transports::H3,
            "h2" => Transports::H2,
            "quinn" => return quinn_child().await,
            other => {
                eprintln!("bench scale server: unknown server {other:?}");
                return ExitCode::FAILURE;
            }
        };
        let config = TestServerConfig {
            transports,
            port: 0,
            accept_queue: 1024,
            serve: ServeOptions {
                limits: Limits {
                    max_sessions: 8192,
                    ..Limits::default()
                },
                ..ServeOptions::default()
            },
            ..TestServerConfig::default()
        };
        if let (Some(n), Transports::H3) = (max_streams_override(), transports) {
            return h3_override_child(n, config.serve).await;
        }
        let server = match TestServer::start(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench scale server: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("READY {} {}", server.addr(), server.cert_hash_hex());
        let _ = std::io::stdout().flush();
        wait_stdin().await;
        ExitCode::SUCCESS
    })
}

/// `WT_BENCH_MAX_STREAMS=N`: an experiment knob for the scale servers (wt-h3 and raw quinn):
/// the QUIC concurrent stream limits (both kinds) instead of wt-h3's default of 1024.
pub fn max_streams_override() -> Option<u32> {
    std::env::var("WT_BENCH_MAX_STREAMS").ok()?.parse().ok()
}

/// The echo handler on a wt-h3 server with the stream limits overridden (same as
/// [`TestServer`] otherwise: it is the same listener and handler).
async fn h3_override_child(n: u32, serve: ServeOptions) -> ExitCode {
    let r = (|| -> BResult<_> {
        let tls = wt_core::tls::ServerTls::self_signed(&["localhost", "127.0.0.1", "::1"])?;
        let mut cfg = wt_h3::ServerConfig::new(tls.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.max_pending_requests = 1024;
        cfg.quic.max_concurrent_bidi_streams = n;
        cfg.quic.max_concurrent_uni_streams = n;
        Ok((tls, wt_h3::Server::bind(cfg)?))
    })();
    let (tls, server) = match r {
        Ok(x) => x,
        Err(e) => {
            eprintln!("bench scale server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut listener = wt_testserver::Listener::<wt_testserver::EchoHandler>::new(
        wt_testserver::EchoConfig::default(),
        serve,
    );
    let addr = listener.serve(server);
    println!("READY {addr} {}", wt_core::tls::hash_hex(&tls.cert_hash()));
    let _ = std::io::stdout().flush();
    wait_stdin().await;
    ExitCode::SUCCESS
}

async fn wait_stdin() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

async fn quinn_child() -> ExitCode {
    let r = (|| -> BResult<_> {
        let tls = Tls::new()?;
        let ep = super::server::bind_quinn_with(&tls, max_streams_override())?;
        Ok((tls, ep))
    })();
    let (tls, ep) = match r {
        Ok(x) => x,
        Err(e) => {
            eprintln!("bench scale server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match ep.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench scale server: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(super::server::serve_quinn(ep, ServerStats::new()));
    println!(
        "READY {addr} {}",
        wt_core::tls::hash_hex(&tls.server.cert_hash())
    );
    let _ = std::io::stdout().flush();
    wait_stdin().await;
    ExitCode::SUCCESS
}

struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    hash: [u8; 32],
}

impl ServerChild {
    fn start(kind: ScaleKind) -> BResult<ServerChild> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["bench", "--no-reexec", "--scale-server"])
            .arg(kind.arg())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or(BenchError::Protocol("no child stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut it = line.split_whitespace();
        let (Some("READY"), Some(addr), Some(hash)) = (it.next(), it.next(), it.next()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Protocol("scale server did not start"));
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| BenchError::Protocol("scale server address"))?;
        let hash = wt_core::tls::parse_cert_hash(hash)
            .ok_or(BenchError::Protocol("scale server certificate hash"))?;
        Ok(ServerChild {
            child,
            stdin,
            addr,
            hash,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // The child exits when stdin closes; do not wait long for it.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> BResult<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or(BenchError::Protocol("no VmRSS"))
}

/// utime + stime of `pid` in seconds.
pub fn cpu_secs(pid: u32) -> BResult<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or(BenchError::Protocol("bad /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> BResult<f64> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64 / CLK_TCK)
            .ok_or(BenchError::Protocol("bad /proc stat"))
    };
    // Fields after the command: state (3rd field of the line) is index 0; utime is the
    // 14th field, stime the 15th.
    Ok(tick(11)? + tick(12)?)
}

/// A client connection of any kind.
#[derive(Clone)]
enum Conn {
    H3(wt_h3::Session),
    H2(wt_h2::Session),
    /// The endpoint is kept alive with its connection.
    Quinn(#[allow(dead_code)] quinn::Endpoint, quinn::Connection),
}

/// A stream doing 64-byte echoes.
enum Pinger {
    H3(wt_h3::SendStream, wt_h3::RecvStream),
    H2(wt_h2::SendStream, wt_h2::RecvStream),
    Quinn(quinn::SendStream, quinn::RecvStream),
}

enum Dialer {
    H3(wt_h3::Client, ConnectRequest),
    H2(wt_h2::Client, ConnectRequest),
    Quinn(quinn::ClientConfig, SocketAddr),
}

impl Dialer {
    async fn connect(&self) -> BResult<Conn> {
        Ok(match self {
            Dialer::H3(c, r) => Conn::H3(c.connect(r).await?),
            Dialer::H2(c, r) => Conn::H2(c.connect(r).await?),
            Dialer::Quinn(cfg, addr) => {
                let (ep, c) = super::quic::connect(cfg, *addr).await?;
                Conn::Quinn(ep, c)
            }
        })
    }
}

impl Conn {
    async fn pinger(&self) -> BResult<Pinger> {
        Ok(match self {
            Conn::H3(s) => {
                let (a, b) = s.open_bi().await?;
                Pinger::H3(a, b)
            }
            Conn::H2(s) => {
                let (a, b) = s.open_bi().await?;
                Pinger::H2(a, b)
            }
            Conn::Quinn(_, c) => {
                let (mut a, b) = c.open_bi().await?;
                a.write_all(&[MODE_ECHO]).await?;
                Pinger::Quinn(a, b)
            }
        })
    }

    fn close(&self) {
        match self {
            Conn::H3(s) => drop(s.close(0, "")),
            Conn::H2(s) => drop(s.close(0, "")),
            Conn::Quinn(_, c) => c.close(0u32.into(), b""),
        }
    }
}

async fn wt_echo<S: SendStream, R: RecvStream>(send: &mut S, recv: &mut R) -> BResult<()> {
    send.write_all(&[0x5au8; PING_SIZE]).await?;
    let mut got = 0;
    while got < PING_SIZE {
        match recv.read_chunk(PING_SIZE - got).await? {
            Some(c) => got += c.len(),
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(())
}

impl Pinger {
    async fn echo(&mut self) -> BResult<Duration> {
        let t = Instant::now();
        match self {
            Pinger::H3(a, b) => wt_echo(a, b).await?,
            Pinger::H2(a, b) => wt_echo(a, b).await?,
            Pinger::Quinn(a, b) => {
                a.write_all(&[0x5au8; PING_SIZE]).await?;
                let mut got = 0;
                while got < PING_SIZE {
                    match b.read_chunk(PING_SIZE - got, true).await? {
                        Some(c) => got += c.bytes.len(),
                        None => return Err(BenchError::Protocol("echo ended early")),
                    }
                }
            }
        }
        Ok(t.elapsed())
    }

    fn finish(&mut self) {
        match self {
            Pinger::H3(a, _) => drop(a.finish()),
            Pinger::H2(a, _) => drop(a.finish()),
            Pinger::Quinn(a, _) => drop(a.finish()),
        }
    }
}

/// Runs the scale workload against `kind`.
pub async fn run(kind: ScaleKind, n: usize, secs: u64) -> BResult<ScaleResult> {
    let server = ServerChild::start(kind)?;
    let tls = Tls::pinned(server.hash);
    let mut req = request(server.addr);
    req.path = "/echo".into();
    let dialer = Arc::new(match kind {
        ScaleKind::H3 => Dialer::H3(
            wt_h3::Client::new(wt_h3::ClientConfig {
                tls,
                ..wt_h3::ClientConfig::default()
            })?,
            req,
        ),
        ScaleKind::H2 => Dialer::H2(
            wt_h2::Client::new(wt_h2::ClientConfig {
                tls,
                ..wt_h2::ClientConfig::default()
            })?,
            req,
        ),
        ScaleKind::Quinn => {
            let t = Tls {
                server: wt_core::tls::ServerTls::self_signed(&["unused"])?,
                client: tls,
            };
            Dialer::Quinn(super::quic::client_config(&t)?, server.addr)
        }
    });
    let pid = server.pid();

    // Warm up: one session with one echo, closed, so lazily built server state is counted in
    // the base.
    {
        let c = dialer.connect().await?;
        let mut p = c.pinger().await?;
        p.echo().await?;
        p.finish();
        c.close();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss_base = rss_kib(pid)?;

    // Idle sessions.
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(CONNECT_PARALLEL));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let dialer = dialer.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            dialer.connect().await
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let mut errors = 0usize;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(s)) => sessions.push(s),
            Ok(Err(e)) => {
                errors += 1;
                tracing::warn!("scale connect: {e}");
            }
            Err(_) => errors += 1,
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(pid)?;
    let established = sessions.len().max(1);

    // Active: every session echoes 64 bytes once a second, start times spread over a second.
    let cpu0 = cpu_secs(pid)?;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let t_active = Instant::now();
    let mut set = JoinSet::new();
    let count = sessions.len();
    for (i, s) in sessions.iter().enumerate() {
        let s = s.clone();
        let offset = Duration::from_micros((i as u64 * 1_000_000) / count.max(1) as u64);
        set.spawn(async move {
            let mut rtts = Vec::with_capacity(secs as usize);
            tokio::time::sleep_until(start + offset).await;
            let mut p = s.pinger().await?;
            for k in 0..secs {
                tokio::time::sleep_until(start + offset + Duration::from_secs(k)).await;
                rtts.push(p.echo().await?);
            }
            p.finish();
            Ok::<_, BenchError>(rtts)
        });
    }
    let mut rtts = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(v)) => rtts.extend(v),
            Ok(Err(e)) => {
                errors += 1;
                tracing::warn!("scale echo: {e}");
            }
            Err(_) => errors += 1,
        }
    }
    let active_secs = t_active.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid)? - cpu0;
    let rss_active = rss_kib(pid)?;
    for s in &sessions {
        s.close();
    }
    let echoes = rtts.len();
    let p50 = quantile_us(&mut rtts, 0.5);
    let p99 = quantile_us(&mut rtts, 0.99);
    Ok(ScaleResult {
        transport: kind.transport().to_owned(),
        stack: kind.stack().to_owned(),
        sessions: sessions.len(),
        connect_secs,
        rss_base_kib: rss_base,
        rss_idle_kib: rss_idle,
        idle_kib_per_session: rss_idle.saturating_sub(rss_base) as f64 / established as f64,
        rss_active_kib: rss_active,
        active_kib_per_session: rss_active.saturating_sub(rss_base) as f64 / established as f64,
        active_cpu_pct: 100.0 * cpu / active_secs.max(1e-9),
        cpu_ms_per_echo: 1000.0 * cpu / echoes.max(1) as f64,
        echoes,
        errors,
        echo_p50_us: p50,
        echo_p99_us: p99,
    })
}
