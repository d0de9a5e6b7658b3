//! The raw quinn baseline: plain QUIC streams and datagrams with wt-h3's TLS and transport
//! settings, one endpoint (UDP socket) per connection as wt-h3's client does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::alloc::AllocSpan;
use super::common::*;
use super::ours::churn_payload;
use super::pipe::{BulkRecv, BulkSend, Pipe, PipeMode};

/// A quinn client configuration matching wt-h3's.
pub fn client_config(tls: &Tls) -> BResult<quinn::ClientConfig> {
    let rustls = tls.client.build(&[b"h3"], false)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls)?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    c.transport_config(Arc::new(quic_transport(true)));
    Ok(c)
}

/// A connection with its own endpoint.
pub async fn connect(
    cfg: &quinn::ClientConfig,
    addr: SocketAddr,
) -> BResult<(quinn::Endpoint, quinn::Connection)> {
    let ep = quinn_endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None)?;
    let conn = ep
        .connect_with(cfg.clone(), addr, &addr.ip().to_string())?
        .await?;
    Ok((ep, conn))
}

/// The send half of a raw quinn bulk stream.
struct QSend(quinn::SendStream);

#[async_trait]
impl BulkSend for QSend {
    async fn head(&mut self, head: &[u8]) -> BResult<()> {
        Ok(self.0.write_all(head).await?)
    }

    async fn write(&mut self, n: u64) -> BResult<()> {
        let ch = chunk();
        for k in chunk_sizes(n) {
            self.0.write_chunk(ch.slice(..k)).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> BResult<()> {
        Ok(self.0.finish()?)
    }
}

/// The receive half of a raw quinn bulk stream.
struct QRecv(quinn::RecvStream);

#[async_trait]
impl BulkRecv for QRecv {
    async fn skip(&mut self, max: usize) -> BResult<Option<usize>> {
        Ok(self
            .0
            .read_chunk(max.min(CHUNK), true)
            .await?
            .map(|c| c.bytes.len()))
    }

    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
        match self.0.read_chunk(64, true).await? {
            Some(c) => {
                out.extend_from_slice(&c.bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// See [`ours::pipe`](super::ours::pipe).
pub async fn pipe(c: &quinn::Connection, mode: PipeMode) -> BResult<Pipe> {
    let (send, recv) = c.open_bi().await?;
    Pipe::start(Box::new(QSend(send)), Box::new(QRecv(recv)), mode).await
}

/// Reads `want` echoed bytes.
async fn read_exact(recv: &mut quinn::RecvStream, want: usize) -> BResult<()> {
    let mut got = 0;
    while got < want {
        match recv.read_chunk(want - got, true).await? {
            Some(c) => got += c.bytes.len(),
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(())
}

/// See [`ours::latency`](super::ours::latency).
pub async fn latency(c: &quinn::Connection, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = c.open_bi().await?;
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
    send.finish()?;
    while recv.read_chunk(CHUNK, true).await?.is_some() {}
    Ok(sample)
}

/// See [`ours::churn`](super::ours::churn).
pub async fn churn(c: &quinn::Connection, n: usize) -> BResult<Sample> {
    churn_workers(n, |tickets| {
        let c = c.clone();
        async move {
            while tickets.take() {
                let (mut send, mut recv) = c.open_bi().await?;
                send.write_chunk(churn_payload()).await?;
                send.finish()?;
                let mut got = 0;
                while let Some(c) = recv.read_chunk(CHUNK, true).await? {
                    got += c.bytes.len();
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
    c: &quinn::Connection,
    stats: &ServerStats,
    n: usize,
    payload: Payload,
) -> BResult<Sample> {
    datagram_run(stats, n, payload, 0, |f| {
        std::future::ready(c.send_datagram(f.payload()).map_err(Into::into))
    })
    .await
}

/// See [`ours::setup`](super::ours::setup).
pub async fn setup(cfg: &quinn::ClientConfig, addr: SocketAddr, n: usize) -> BResult<Sample> {
    let mut msg = vec![MODE_ECHO];
    msg.extend_from_slice(&[0x5a; PING_SIZE]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (_ep, c) = connect(cfg, addr).await?;
        let (mut send, mut recv) = c.open_bi().await?;
        send.write_all(&msg).await?;
        read_exact(&mut recv, PING_SIZE).await?;
        c.close(0u32.into(), b"");
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
