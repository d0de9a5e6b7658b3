//! The wtransport 0.7 baseline, client and server, with the same rustls
//! configurations and QUIC transport settings as wt-h3. Its stream API reads into and writes
//! from slices, so it is used that way (as its users do).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use wtransport::endpoint::endpoint_side::{Client, Server};
use wtransport::{ClientConfig, Connection, Endpoint, ServerConfig};

use super::alloc::AllocSpan;
use super::common::*;
use super::ours::churn_payload;
use super::pipe::{acks, BulkRecv, BulkSend, Pipe, PipeMode, Sink};

/// Binds the wtransport server on loopback.
pub fn bind(tls: &Tls) -> BResult<Endpoint<Server>> {
    let cfg = ServerConfig::builder()
        .with_bind_socket(udp_socket(SocketAddr::from(([127, 0, 0, 1], 0)))?)
        .with_custom_tls_and_transport(tls.server.build(&[b"h3"], false)?, quic_transport(false))
        .build();
    Ok(Endpoint::server(cfg)?)
}

/// Serves sessions: bidirectional streams speak the mode-byte protocol, datagrams are counted.
pub async fn serve(endpoint: Endpoint<Server>, stats: Arc<ServerStats>) {
    loop {
        let incoming = endpoint.accept().await;
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(request) = incoming.await else {
                return;
            };
            let Ok(conn) = request.accept().await else {
                return;
            };
            let dg = conn.clone();
            tokio::spawn(async move {
                while dg.receive_datagram().await.is_ok() {
                    stats.datagram();
                }
            });
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(server_stream(send, recv));
            }
        });
    }
}

/// A stream's task, shaped like the other bench servers' (see `server::wt_stream`).
#[allow(clippy::manual_async_fn)] // an `async fn` would hold the pair twice
fn server_stream(
    mut send: wtransport::SendStream,
    mut recv: wtransport::RecvStream,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        if let Err(e) = server_echo(&mut send, &mut recv).await {
            tracing::debug!("wtransport bench server stream: {e}");
        }
    }
}

async fn server_echo(
    send: &mut wtransport::SendStream,
    recv: &mut wtransport::RecvStream,
) -> BResult<()> {
    let mut buf = vec![0u8; CHUNK];
    let first = loop {
        match recv.read(&mut buf).await? {
            Some(0) => continue,
            Some(n) => break n,
            None => return Ok(()),
        }
    };
    match buf[0] {
        MODE_SINK => {
            let mut sink = Sink::default();
            let mut due = sink.feed(&buf[1..first]);
            loop {
                if due > 0 {
                    send.write_all(&acks(due)).await?;
                }
                match recv.read(&mut buf).await? {
                    Some(k) => due = sink.feed(&buf[..k]),
                    None => break,
                }
            }
            send.write_all(&sink.answer()?).await?;
            send.finish().await?;
        }
        MODE_ECHO => {
            send.write_all(&buf[1..first]).await?;
            while let Some(k) = recv.read(&mut buf).await? {
                send.write_all(&buf[..k]).await?;
            }
            send.finish().await?;
        }
        _ => return Err(BenchError::Protocol("unknown mode byte")),
    }
    Ok(())
}

/// The rustls client configuration (built once, cloned per endpoint).
pub fn client_tls(tls: &Tls) -> BResult<rustls::ClientConfig> {
    Ok(tls.client.build(&[b"h3"], false)?)
}

/// A client endpoint with the shared TLS and transport settings.
pub fn client(tls: &rustls::ClientConfig) -> BResult<Endpoint<Client>> {
    let cfg = ClientConfig::builder()
        .with_bind_socket(udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))?)
        .with_custom_tls_and_transport(tls.clone(), quic_transport(true))
        .build();
    Ok(Endpoint::client(cfg)?)
}

/// Connects a session.
pub async fn connect(ep: &Endpoint<Client>, addr: SocketAddr) -> BResult<Connection> {
    Ok(ep.connect(format!("https://{addr}/bench")).await?)
}

async fn open(c: &Connection) -> BResult<(wtransport::SendStream, wtransport::RecvStream)> {
    Ok(c.open_bi().await?.await?)
}

/// The send half of a wtransport bulk stream.
struct TSend(wtransport::SendStream);

#[async_trait]
impl BulkSend for TSend {
    async fn head(&mut self, head: &[u8]) -> BResult<()> {
        Ok(self.0.write_all(head).await?)
    }

    async fn write(&mut self, n: u64) -> BResult<()> {
        let ch = chunk();
        for k in chunk_sizes(n) {
            self.0.write_all(&ch[..k]).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> BResult<()> {
        Ok(self.0.finish().await?)
    }
}

/// The receive half of a wtransport bulk stream, with its read buffer.
struct TRecv {
    r: wtransport::RecvStream,
    buf: Vec<u8>,
}

#[async_trait]
impl BulkRecv for TRecv {
    async fn skip(&mut self, max: usize) -> BResult<Option<usize>> {
        let n = max.min(self.buf.len());
        Ok(self.r.read(&mut self.buf[..n]).await?)
    }

    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
        let mut b = [0u8; 64];
        match self.r.read(&mut b).await? {
            Some(k) => {
                out.extend_from_slice(&b[..k]);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// See [`ours::pipe`](super::ours::pipe).
pub async fn pipe(c: &Connection, mode: PipeMode) -> BResult<Pipe> {
    let (send, r) = open(c).await?;
    let recv = TRecv {
        r,
        buf: vec![0; CHUNK],
    };
    Pipe::start(Box::new(TSend(send)), Box::new(recv), mode).await
}

async fn read_exact(recv: &mut wtransport::RecvStream, want: usize) -> BResult<()> {
    let mut buf = [0u8; PING_SIZE];
    let mut got = 0;
    while got < want {
        match recv.read(&mut buf[..want - got]).await? {
            Some(k) => got += k,
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(())
}

/// See [`ours::latency`](super::ours::latency).
pub async fn latency(c: &Connection, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = open(c).await?;
    send.write_all(&[MODE_ECHO]).await?;
    let msg = [0x5au8; PING_SIZE];
    let mut rtts = Vec::with_capacity(rounds);
    let allocs = AllocSpan::start();
    for _ in 0..rounds {
        time_round(&mut rtts, async {
            send.write_all(&msg).await?;
            read_exact(&mut recv, PING_SIZE).await
        })
        .await?;
    }
    let sample = rtt_sample(allocs, rtts);
    send.finish().await?;
    let mut buf = [0u8; 64];
    while recv.read(&mut buf).await?.is_some() {}
    Ok(sample)
}

/// See [`ours::churn`](super::ours::churn).
pub async fn churn(c: &Connection, n: usize) -> BResult<Sample> {
    churn_workers(n, |tickets| {
        let c = c.clone();
        async move {
            let payload = churn_payload();
            let mut buf = vec![0u8; CHUNK];
            while tickets.take() {
                let (mut send, mut recv) = open(&c).await?;
                send.write_all(&payload).await?;
                send.finish().await?;
                let mut got = 0;
                while let Some(k) = recv.read(&mut buf).await? {
                    got += k;
                }
                check_churn_echo(got)?;
            }
            Ok(())
        }
    })
    .await
}

/// See [`ours::datagrams`](super::ours::datagrams).
pub async fn datagrams(
    c: &Connection,
    stats: &ServerStats,
    n: usize,
    payload: Payload,
) -> BResult<Sample> {
    datagram_run(stats, n, payload, 0, |f| {
        std::future::ready(c.send_datagram(f.payload()).map_err(Into::into))
    })
    .await
}

/// See [`ours::setup`](super::ours::setup); a new endpoint per session, as wt-h3 does.
pub async fn setup(tls: &rustls::ClientConfig, addr: SocketAddr, n: usize) -> BResult<Sample> {
    let mut msg = vec![MODE_ECHO];
    msg.extend_from_slice(&[0x5a; PING_SIZE]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let ep = client(tls)?;
        let c = connect(&ep, addr).await?;
        let (mut send, mut recv) = open(&c).await?;
        send.write_all(&msg).await?;
        read_exact(&mut recv, PING_SIZE).await?;
        c.close(0u32.into(), b"");
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
