//! The scale workload: many concurrent sessions on one wt-testserver (echo handler) running
//! in a child process (this binary, `bench --scale-server h3|h2`), whose memory (VmRSS) and
//! CPU time (utime + stime) are read from /proc.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use wt_core::{Connector, RecvStream, SendStream, Session, TransportKind};
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

/// The child: serve the echo handler over `transport` until stdin closes.
pub fn child_main(transport: &str) -> ExitCode {
    let transports = match transport {
        "h3" => Transports::H3,
        "h2" => Transports::H2,
        other => {
            eprintln!("bench scale server: unknown transport {other:?}");
            return ExitCode::FAILURE;
        }
    };
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
    rt.block_on(async move {
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
        let server = match TestServer::start(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench scale server: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("READY {} {}", server.addr(), server.cert_hash_hex());
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        ExitCode::SUCCESS
    })
}

struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    hash: [u8; 32],
}

impl ServerChild {
    fn start(transport: TransportKind) -> BResult<ServerChild> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["bench", "--no-reexec", "--scale-server"])
            .arg(transport.to_string())
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

/// Runs the scale workload over `transport`.
pub async fn run(transport: TransportKind, sessions: usize, secs: u64) -> BResult<ScaleResult> {
    let server = ServerChild::start(transport)?;
    let tls = Tls::pinned(server.hash);
    match transport {
        TransportKind::Http3 => {
            let client = wt_h3::Client::new(wt_h3::ClientConfig {
                tls,
                ..wt_h3::ClientConfig::default()
            })?;
            run_with(&server, client, transport, sessions, secs).await
        }
        TransportKind::Http2 => {
            let client = wt_h2::Client::new(wt_h2::ClientConfig {
                tls,
                ..wt_h2::ClientConfig::default()
            })?;
            run_with(&server, client, transport, sessions, secs).await
        }
    }
}

async fn echo_once<S: Session>(
    send: &mut S::SendStream,
    recv: &mut S::RecvStream,
) -> BResult<Duration> {
    let msg = [0x5au8; PING_SIZE];
    let t = Instant::now();
    send.write_all(&msg).await?;
    let mut got = 0;
    while got < PING_SIZE {
        match recv.read_chunk(PING_SIZE - got).await? {
            Some(c) => got += c.len(),
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(t.elapsed())
}

async fn run_with<C: Connector>(
    server: &ServerChild,
    client: C,
    transport: TransportKind,
    n: usize,
    secs: u64,
) -> BResult<ScaleResult> {
    let client = Arc::new(client);
    let mut req = request(server.addr);
    req.path = "/echo".into();
    let pid = server.pid();

    // Warm up: one session with one echo, closed, so lazily built server state is counted in
    // the base.
    {
        let s = client.connect(&req).await?;
        let (mut send, mut recv) = s.open_bi().await?;
        echo_once::<C::Session>(&mut send, &mut recv).await?;
        let _ = s.close(0, "");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss_base = rss_kib(pid)?;

    // Idle sessions.
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(CONNECT_PARALLEL));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        let req = req.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            client.connect(&req).await
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
            let (mut send, mut recv) = s.open_bi().await?;
            for k in 0..secs {
                tokio::time::sleep_until(start + offset + Duration::from_secs(k)).await;
                rtts.push(echo_once::<C::Session>(&mut send, &mut recv).await?);
            }
            send.finish()?;
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
        let _ = s.close(0, "");
    }
    let echoes = rtts.len();
    let p50 = quantile_us(&mut rtts, 0.5);
    let p99 = quantile_us(&mut rtts, 0.99);
    Ok(ScaleResult {
        transport: transport.to_string(),
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
