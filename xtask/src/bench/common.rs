//! Pieces every stack shares: the stream protocol of the bench servers, TLS material and QUIC
//! tuning (identical for our stack and the baselines), sizes, errors and statistics.
//!
//! ## Stream protocol
//!
//! Every bidirectional stream (and every raw HTTP/2 request) starts with one mode byte:
//!
//! * [`MODE_SINK`]: the next 8 bytes are a leg size (`u64`, little endian; 0 for none). The
//!   server reads to the end, acknowledging each multiple of the leg size it has received
//!   with one byte, then answers with the number of bytes it received after the head (`u64`,
//!   little endian) and FIN (see [`pipe`](super::pipe)).
//! * [`MODE_ECHO`]: the server echoes everything after the mode byte as it arrives and
//!   answers the FIN with a FIN.
//!
//! Datagrams are counted by the server ([`ServerStats`]), which the client reads directly:
//! clients and servers of the timed workloads live in the same process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use wt_core::tls::{ClientTls, ServerTls};

use super::alloc::{AllocSpan, ALLOCS_PER_DATAGRAM, ALLOCS_PER_RTT, ALLOCS_PER_STREAM};

/// First byte of a stream: read and count everything, answer with the count.
pub const MODE_SINK: u8 = b'S';
/// First byte of a stream: echo everything.
pub const MODE_ECHO: u8 = b'E';
/// Write and read granularity of the bulk workloads.
pub const CHUNK: usize = 64 * 1024;
/// Payload of one latency round trip.
pub const PING_SIZE: usize = 64;
/// Payload of one churn stream.
pub const CHURN_SIZE: usize = 1024;
/// Payload of one datagram.
pub const DGRAM_SIZE: usize = 1000;
/// Streams in flight in the churn workload.
pub const CHURN_IN_FLIGHT: usize = 64;
/// Datagrams the sender keeps in flight (sent, not yet counted by the server). The send
/// paths drop when their buffer is full, so an open-loop sender measures mostly drops; with
/// this window (1 MB of payload, half the 2 MiB datagram send buffer) every stack sends as
/// fast as its receiver keeps up. Losses on the way still show in `delivered_pct`.
pub const DGRAM_WINDOW: u64 = 1000;
/// How long the sender waits for the window to open before it counts the datagrams in flight
/// as lost and goes on.
pub const DGRAM_STALL: Duration = Duration::from_millis(20);
/// Bound on any single workload run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Everything that can go wrong in a run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A WebTransport connect failed.
    #[error("connect: {0}")]
    Connect(#[from] wt_core::ConnectError),
    /// A session operation failed.
    #[error("session: {0}")]
    Session(#[from] wt_core::SessionError),
    /// A stream operation failed.
    #[error("stream: {0}")]
    Stream(#[from] wt_core::StreamError),
    /// wt-client failed.
    #[error("wt-client: {0}")]
    Client(#[from] wt_client::Error),
    /// The HTTP/3 server could not start.
    #[error("wt-h3 server: {0}")]
    H3Server(#[from] wt_h3::Error),
    /// The HTTP/2 server could not start.
    #[error("wt-h2 server: {0}")]
    H2Server(#[from] wt_h2::Error),
    /// A quinn connect could not start.
    #[error("quinn connect: {0}")]
    QuinnConnect(#[from] quinn::ConnectError),
    /// A quinn connection failed.
    #[error("quinn connection: {0}")]
    QuinnConnection(#[from] quinn::ConnectionError),
    /// A quinn write failed.
    #[error("quinn write: {0}")]
    QuinnWrite(#[from] quinn::WriteError),
    /// A quinn read failed.
    #[error("quinn read: {0}")]
    QuinnRead(#[from] quinn::ReadError),
    /// A quinn stream was already closed.
    #[error("quinn: {0}")]
    QuinnClosed(#[from] quinn::ClosedStream),
    /// A quinn datagram could not be sent.
    #[error("quinn datagram: {0}")]
    QuinnDatagram(#[from] quinn::SendDatagramError),
    /// rustls has no QUIC cipher suite (cannot happen with the ring provider).
    #[error("TLS: {0}")]
    NoCipher(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The h2 crate failed.
    #[error("h2: {0}")]
    H2(#[from] h2::Error),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] wt_core::tls::TlsConfigError),
    /// Building an HTTP request failed.
    #[error("http: {0}")]
    Http(#[from] http::Error),
    /// wtransport failed to connect.
    #[cfg(feature = "bench")]
    #[error("wtransport connect: {0}")]
    WtConnecting(#[from] wtransport::error::ConnectingError),
    /// A wtransport connection failed.
    #[cfg(feature = "bench")]
    #[error("wtransport: {0}")]
    WtConnection(#[from] wtransport::error::ConnectionError),
    /// A wtransport stream could not be opened.
    #[cfg(feature = "bench")]
    #[error("wtransport open: {0}")]
    WtOpening(#[from] wtransport::error::StreamOpeningError),
    /// A wtransport write failed.
    #[cfg(feature = "bench")]
    #[error("wtransport write: {0}")]
    WtWrite(#[from] wtransport::error::StreamWriteError),
    /// A wtransport read failed.
    #[cfg(feature = "bench")]
    #[error("wtransport read: {0}")]
    WtRead(#[from] wtransport::error::StreamReadError),
    /// A wtransport datagram could not be sent.
    #[cfg(feature = "bench")]
    #[error("wtransport datagram: {0}")]
    WtDatagram(#[from] wtransport::error::SendDatagramError),
    /// Socket or process failure.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not follow the bench protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// A run took longer than [`RUN_TIMEOUT`] (or a step its own bound).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The workload does not apply to the stack.
    #[error("not applicable")]
    NotApplicable,
}

/// Result of a run.
pub type BResult<T> = Result<T, BenchError>;

/// Workload sizes.
#[derive(Copy, Clone, Debug, serde::Serialize)]
pub struct Sizes {
    /// Bytes of the client → server bulk transfer.
    pub bulk_bytes: u64,
    /// Bytes echoed (each direction) in the bulk echo.
    pub echo_bytes: u64,
    /// Sequential 64-byte round trips.
    pub latency_rounds: usize,
    /// Streams opened in the churn workload.
    pub churn_streams: usize,
    /// Datagrams sent.
    pub datagrams: usize,
    /// Sequential session setups.
    pub setups: usize,
    /// Concurrent sessions of the scale workload.
    pub scale_sessions: usize,
    /// Seconds of the active phase of the scale workload.
    pub scale_secs: u64,
}

impl Sizes {
    /// The full sizes of the brief.
    pub const FULL: Sizes = Sizes {
        bulk_bytes: 1 << 30,
        echo_bytes: 256 << 20,
        latency_rounds: 10_000,
        churn_streams: 20_000,
        datagrams: 1_000_000,
        setups: 500,
        scale_sessions: 1000,
        scale_secs: 30,
    };
    /// `--quick`.
    pub const QUICK: Sizes = Sizes {
        bulk_bytes: 128 << 20,
        echo_bytes: 32 << 20,
        latency_rounds: 2_000,
        churn_streams: 4_000,
        datagrams: 100_000,
        setups: 100,
        scale_sessions: 200,
        scale_secs: 5,
    };

    /// The sizes of one of `legs` legs of a round: the round trips, churn streams and
    /// datagrams shared out (the workloads that run in legs), the rest as they are.
    pub fn leg(&self, legs: usize) -> Sizes {
        let legs = legs.max(1);
        Sizes {
            latency_rounds: self.latency_rounds.div_ceil(legs),
            churn_streams: self.churn_streams.div_ceil(legs),
            datagrams: self.datagrams.div_ceil(legs),
            ..*self
        }
    }
}

/// A 64 KiB buffer of pattern bytes, shared (cloning it does not copy).
pub fn chunk() -> Bytes {
    static CHUNK_BYTES: OnceLock<Bytes> = OnceLock::new();
    CHUNK_BYTES
        .get_or_init(|| Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<_>>()))
        .clone()
}

/// The TLS material of every in-process server and the matching client settings.
#[derive(Clone)]
pub struct Tls {
    /// Server certificate and key (self-signed ECDSA P-256).
    pub server: ServerTls,
    /// Client settings: the server certificate pinned by hash (same verifier for all stacks).
    pub client: ClientTls,
}

impl Tls {
    /// A fresh self-signed certificate for localhost.
    pub fn new() -> BResult<Tls> {
        let server = ServerTls::self_signed(&["localhost", "127.0.0.1", "::1"])?;
        let client = ClientTls {
            webpki_roots: false,
            cert_hashes: vec![server.cert_hash()],
            ..ClientTls::default()
        };
        Ok(Tls { server, client })
    }

    /// Client settings pinning `hash`.
    pub fn pinned(hash: [u8; 32]) -> ClientTls {
        ClientTls {
            webpki_roots: false,
            cert_hashes: vec![hash],
            ..ClientTls::default()
        }
    }
}

/// The QUIC transport settings of wt-h3 (its `QuicConfig` defaults and idle / keep-alive
/// values), rebuilt for the raw quinn and wtransport baselines so every HTTP/3 stack runs with
/// the same windows and congestion controller (quinn's default, CUBIC).
pub fn quic_transport(client: bool) -> quinn::TransportConfig {
    let q = wt_h3::QuicConfig::default();
    let mut t = quinn::TransportConfig::default();
    let (idle, keep_alive) = if client {
        let c = wt_h3::ClientConfig::default();
        (c.max_idle_timeout, c.keep_alive_interval)
    } else {
        (Duration::from_secs(30), None)
    };
    t.stream_receive_window(q.stream_receive_window.into())
        .receive_window(q.receive_window.into())
        .send_window(q.send_window)
        .datagram_receive_buffer_size(q.datagram_receive_buffer)
        .datagram_send_buffer_size(q.datagram_send_buffer)
        .max_concurrent_bidi_streams(q.max_concurrent_bidi_streams.into())
        .max_concurrent_uni_streams(q.max_concurrent_uni_streams.into())
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t
}

/// SO_RCVBUF / SO_SNDBUF of wt-h3's UDP sockets (`SOCKET_BUFFER` in wt-h3/src/udp.rs), given
/// to the raw quinn and wtransport sockets too. `WT_BENCH_SOCKET_BUFFER=N` overrides it for
/// the baselines (0: the kernel default) — an experiment knob.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `addr` with wt-h3's socket buffer sizes (best effort, as wt-h3).
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let size = std::env::var("WT_BENCH_SOCKET_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SOCKET_BUFFER);
    let sock = std::net::UdpSocket::bind(addr)?;
    if size > 0 {
        let state = quinn::udp::UdpSocketState::new((&sock).into())?;
        let _ = state.set_recv_buffer_size((&sock).into(), size);
        let _ = state.set_send_buffer_size((&sock).into(), size);
    }
    Ok(sock)
}

/// A quinn endpoint on [`udp_socket`].
pub fn quinn_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        udp_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Datagram counters of a bench server.
#[derive(Debug)]
pub struct ServerStats {
    base: Instant,
    datagrams: AtomicU64,
    last_datagram_ns: AtomicU64,
    arrived: tokio::sync::Notify,
}

impl ServerStats {
    /// Fresh counters.
    pub fn new() -> Arc<ServerStats> {
        Arc::new(ServerStats {
            base: Instant::now(),
            datagrams: AtomicU64::new(0),
            last_datagram_ns: AtomicU64::new(0),
            arrived: tokio::sync::Notify::new(),
        })
    }

    /// Counts a received datagram.
    pub fn datagram(&self) {
        self.datagrams.fetch_add(1, Relaxed);
        self.last_datagram_ns
            .store(self.base.elapsed().as_nanos() as u64, Relaxed);
        self.arrived.notify_one();
    }

    /// Waits until fewer than [`DGRAM_WINDOW`] of the `sent` datagrams are in flight, or
    /// [`DGRAM_STALL`] passed without progress; in that case the datagrams in flight are
    /// written off as lost (`lost` grows) so the sender goes on.
    pub async fn window(&self, sent: u64, lost: &mut u64) {
        loop {
            let in_flight = sent.saturating_sub(self.datagrams() + *lost);
            if in_flight < DGRAM_WINDOW {
                return;
            }
            if tokio::time::timeout(DGRAM_STALL, self.arrived.notified())
                .await
                .is_err()
            {
                *lost += in_flight;
                return;
            }
        }
    }

    /// Datagrams received since the last reset.
    pub fn datagrams(&self) -> u64 {
        self.datagrams.load(Relaxed)
    }

    /// When the last datagram arrived.
    pub fn last_datagram(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_datagram_ns.load(Relaxed))
    }

    /// Zeroes the counters.
    pub fn reset(&self) {
        self.datagrams.store(0, Relaxed);
        self.last_datagram_ns.store(0, Relaxed);
    }
}

/// Where the in-process servers listen, and their counters.
#[derive(Clone)]
pub struct Addrs {
    /// TLS material.
    pub tls: Tls,
    /// wt-h3 server.
    pub wt_h3: SocketAddr,
    /// wt-h2 server.
    pub wt_h2: SocketAddr,
    /// Raw quinn server.
    pub quinn: SocketAddr,
    /// Raw h2 server.
    pub h2: SocketAddr,
    /// wtransport server (with the `bench` feature).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub wtransport: Option<SocketAddr>,
    /// Datagram counters, one per server kind.
    pub stats_wt_h3: Arc<ServerStats>,
    /// wt-h2 counters.
    pub stats_wt_h2: Arc<ServerStats>,
    /// Raw quinn counters.
    pub stats_quinn: Arc<ServerStats>,
    /// wtransport counters.
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub stats_wtransport: Arc<ServerStats>,
}

/// One measured run of a workload.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The headline number (see the workload's metric).
    pub primary: f64,
    /// Secondary numbers by name (p99, % delivered, allocations per MiB, …).
    pub extra: Vec<(&'static str, f64)>,
    /// What the numbers were computed from, where runs can be pooled ([`Sample::pool`]).
    pub parts: Option<Parts>,
}

/// The measurements behind a sample that runs of the same stack can pool.
#[derive(Clone, Debug)]
pub enum Parts {
    /// Every timed round trip (or setup).
    Times(Vec<Duration>),
    /// Units done (streams, MiB) and the seconds they took.
    Rate {
        /// Units done.
        units: f64,
        /// Seconds taken.
        secs: f64,
    },
}

impl Sample {
    /// A sample with only the headline number.
    pub fn new(primary: f64) -> Sample {
        Sample {
            primary,
            extra: Vec::new(),
            parts: None,
        }
    }

    /// One sample from several runs of the same stack: their round trips pooled (quantiles
    /// over all of them), or their units over their summed time (secondary numbers
    /// averaged). `None` if a run has nothing to pool or the runs measured different kinds
    /// of things.
    pub fn pool(runs: Vec<Sample>) -> Option<Sample> {
        if runs.len() == 1 {
            return runs.into_iter().next();
        }
        let mut times: Vec<Duration> = Vec::new();
        let (mut units, mut secs, mut rates) = (0.0, 0.0, 0);
        let n = runs.len();
        // Secondary numbers (allocations per MiB, per round trip, per stream) are averaged
        // over the runs.
        let mut extra: Vec<(&'static str, f64, usize)> = Vec::new();
        for r in &runs {
            for (k, v) in &r.extra {
                match extra.iter_mut().find(|e| e.0 == *k) {
                    Some(e) => {
                        e.1 += v;
                        e.2 += 1;
                    }
                    None => extra.push((k, *v, 1)),
                }
            }
        }
        for r in runs {
            match r.parts? {
                Parts::Times(t) => times.extend(t),
                Parts::Rate { units: u, secs: s } => {
                    units += u;
                    secs += s;
                    rates += 1;
                }
            }
        }
        let averaged = extra
            .into_iter()
            .map(|(k, sum, count)| (k, sum / count as f64));
        match rates {
            0 => {
                // Quantiles come from the pooled round trips; the rest (allocations per round
                // trip) are averaged.
                let mut s = latency_sample(times);
                let own: Vec<&str> = s.extra.iter().map(|e| e.0).collect();
                s.extra.extend(averaged.filter(|e| !own.contains(&e.0)));
                Some(s)
            }
            r if r == n => {
                let mut s = rate_sample(units, secs);
                s.extra = averaged.collect();
                Some(s)
            }
            _ => None,
        }
    }

    /// Adds a secondary number.
    pub fn with(mut self, name: &'static str, v: f64) -> Sample {
        self.extra.push((name, v));
        self
    }
}

/// The `q` quantile (0..=1) of `v` (sorted in place), in microseconds.
pub fn quantile_us(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1e6
}

/// Latency sample: p50 as the headline, p99 beside it (microseconds).
pub fn latency_sample(mut rtts: Vec<Duration>) -> Sample {
    let p50 = quantile_us(&mut rtts, 0.50);
    let p99 = quantile_us(&mut rtts, 0.99);
    let mut s = Sample::new(p50).with("p99_us", p99);
    s.parts = Some(Parts::Times(rtts));
    s
}

/// [`latency_sample`] of the timed round trips `rtts`, with the allocation calls since
/// `allocs` started per round trip (made right after the last one, before the stream ends).
pub fn rtt_sample(allocs: AllocSpan, rtts: Vec<Duration>) -> Sample {
    let n = rtts.len() as f64;
    allocs.add_per(latency_sample(rtts), ALLOCS_PER_RTT, n)
}

/// `units` per second done in `secs`.
pub fn rate_sample(units: f64, secs: f64) -> Sample {
    let mut s = Sample::new(units / secs.max(1e-9));
    s.parts = Some(Parts::Rate { units, secs });
    s
}

/// Waits until the server counted `sent` datagrams or nothing arrived for a while, and turns
/// the counters into a sample: delivered datagrams per second (from the first send to the last
/// arrival) and the share delivered.
pub async fn datagram_result(stats: &ServerStats, start: Instant, sent: usize) -> Sample {
    const QUIET: Duration = Duration::from_millis(300);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = stats.datagrams();
    let mut last_change = Instant::now();
    loop {
        if stats.datagrams() >= sent as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = stats.datagrams();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > QUIET {
            break;
        }
    }
    let delivered = stats.datagrams();
    let end = stats.last_datagram().max(start + Duration::from_micros(1));
    // A rate over its parts, so the legs of a round pool into delivered over total time.
    rate_sample(delivered as f64, (end - start).as_secs_f64()).with(
        "delivered_pct",
        100.0 * delivered as f64 / sent.max(1) as f64,
    )
}

/// The sink's answer: the byte count.
pub fn parse_count(buf: &[u8]) -> BResult<u64> {
    let arr: [u8; 8] = buf
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(BenchError::Protocol("short sink answer"))?;
    Ok(u64::from_le_bytes(arr))
}

// ---------------------------------------------------------------------------------------------
// Workload drivers shared by every stack. Each stack keeps its own stream calls (that is what is
// measured); these hold the loops, timing and checks that are the same for all of them.
// ---------------------------------------------------------------------------------------------

/// The sizes of the [`chunk`] slices that make up `bytes` bytes of bulk data, in order: full
/// [`CHUNK`]s, then the rest.
pub fn chunk_sizes(bytes: u64) -> impl Iterator<Item = usize> {
    let mut left = bytes;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        Some(n)
    })
}

/// MiB/s of `bytes` in `d`, poolable with other runs.
pub fn mib_sample(bytes: u64, d: Duration) -> Sample {
    rate_sample(bytes as f64 / (1024.0 * 1024.0), d.as_secs_f64())
}

/// Waits for the writer task of a bulk echo.
pub async fn join_writer<T>(writer: tokio::task::JoinHandle<BResult<T>>) -> BResult<T> {
    writer
        .await
        .map_err(|_| BenchError::Protocol("writer panicked"))?
}

/// Times one round trip into `rtts`.
pub async fn time_round(
    rtts: &mut Vec<Duration>,
    round: impl Future<Output = BResult<()>>,
) -> BResult<()> {
    let t = Instant::now();
    round.await?;
    rtts.push(t.elapsed());
    Ok(())
}

/// The shared count of churn streams; each worker takes tickets until `n` are handed out.
#[derive(Clone)]
pub struct ChurnTickets {
    next: Arc<AtomicUsize>,
    n: usize,
}

impl ChurnTickets {
    /// Takes the next stream; `false` once all `n` are taken.
    pub fn take(&self) -> bool {
        self.next.fetch_add(1, Relaxed) < self.n
    }
}

/// Checks that a churn stream echoed its [`CHURN_SIZE`] bytes.
pub fn check_churn_echo(got: usize) -> BResult<()> {
    if got != CHURN_SIZE {
        return Err(BenchError::Protocol("churn echo length differs"));
    }
    Ok(())
}

/// Runs `n` churn streams on [`CHURN_IN_FLIGHT`] spawned workers (each made by `worker`, which
/// runs streams while [`ChurnTickets::take`] says so) and returns streams per second.
pub async fn churn_workers<W, Fut>(n: usize, worker: W) -> BResult<Sample>
where
    W: Fn(ChurnTickets) -> Fut,
    Fut: Future<Output = BResult<()>> + Send + 'static,
{
    let tickets = ChurnTickets {
        next: Arc::new(AtomicUsize::new(0)),
        n,
    };
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CHURN_IN_FLIGHT {
        workers.push(tokio::spawn(worker(tickets.clone())));
    }
    for w in workers {
        w.await
            .map_err(|_| BenchError::Protocol("worker panicked"))??;
    }
    let s = rate_sample(n as f64, start.elapsed().as_secs_f64());
    Ok(allocs.add_per(s, ALLOCS_PER_STREAM, n as f64))
}

/// Waits until datagrams of an earlier run stop arriving.
pub async fn settle(stats: &ServerStats) {
    let mut last = stats.datagrams();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = stats.datagrams();
        if now == last {
            return;
        }
        last = now;
    }
}

/// How the datagram workloads make their payloads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Each datagram is written by the sender into fresh memory (its sequence number, then
    /// pattern bytes), after the room the stack asks for in front, as an application writes
    /// its messages; the stack gets that buffer. The headline datagram workload.
    Written,
    /// One 1000-byte `Bytes`, cloned for every datagram: no stack writes a payload, so a
    /// stack that must put a header in front copies where raw quinn copies nothing (kept
    /// for comparison with earlier runs).
    Shared,
}

/// Size of the buffer [`Payload::Written`] datagrams are cut from.
const WRITE_ARENA: usize = 64 * 1024;

/// `n` datagrams of [`DGRAM_SIZE`] payload bytes made as `payload` says, handed to `send`
/// as fast as it takes them within the server's window. `send` gets a frame with `headroom`
/// bytes in front of the payload (always 0 for [`Payload::Shared`]). The sample is the
/// server's receive figures plus `send_per_s`.
pub async fn datagram_run<F, Fut>(
    stats: &ServerStats,
    n: usize,
    payload: Payload,
    headroom: usize,
    mut send: F,
) -> BResult<Sample>
where
    F: FnMut(DatagramFrame) -> Fut,
    Fut: Future<Output = BResult<()>>,
{
    settle(stats).await;
    stats.reset();
    let pattern = Bytes::from(vec![0x42u8; DGRAM_SIZE]);
    let mut arena = BytesMut::new();
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let mut lost = 0;
    for i in 0..n as u64 {
        stats.window(i, &mut lost).await;
        let frame = match payload {
            Payload::Shared => DatagramFrame::Shared(pattern.clone()),
            Payload::Written => {
                let need = headroom + DGRAM_SIZE;
                if arena.capacity() < need {
                    arena.reserve(need.max(WRITE_ARENA));
                }
                arena.put_bytes(0, headroom);
                arena.put_u64_le(i);
                arena.put_slice(&pattern[8..]);
                DatagramFrame::Written(arena.split(), headroom)
            }
        };
        send(frame).await?;
    }
    let send_rate = n as f64 / start.elapsed().as_secs_f64();
    let s = datagram_result(stats, start, n).await;
    Ok(allocs
        .add_per(s, ALLOCS_PER_DATAGRAM, n as f64)
        .with("send_per_s", send_rate))
}

/// One datagram of [`datagram_run`].
pub enum DatagramFrame {
    /// The shared payload.
    Shared(Bytes),
    /// A written frame and the headroom in front of its payload.
    Written(BytesMut, usize),
}

impl DatagramFrame {
    /// The payload alone, for stacks that take no headroom (no copy).
    pub fn payload(self) -> Bytes {
        match self {
            DatagramFrame::Shared(b) => b,
            DatagramFrame::Written(f, room) => f.freeze().slice(room..),
        }
    }
}
