//! Client workloads on the raw wt-h3 / wt-h2 API, written once against the wt-core traits.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use wt_core::{ConnectRequest, Connector, RecvStream, SendStream, Session};

use super::alloc::AllocSpan;
use super::common::*;
use super::pipe::{BulkRecv, BulkSend, Pipe, PipeMode};

/// The CONNECT request for a local bench server.
pub fn request(addr: SocketAddr) -> ConnectRequest {
    ConnectRequest {
        host: addr.ip().to_string(),
        port: addr.port(),
        path: "/bench".into(),
        ..ConnectRequest::default()
    }
}

/// A wt-h3 client with the shared TLS settings.
pub fn h3_client(tls: &Tls) -> BResult<wt_h3::Client> {
    Ok(wt_h3::Client::new(wt_h3::ClientConfig {
        tls: tls.client.clone(),
        ..wt_h3::ClientConfig::default()
    })?)
}

/// A wt-h2 client with the shared TLS settings.
pub fn h2_client(tls: &Tls) -> BResult<wt_h2::Client> {
    Ok(wt_h2::Client::new(wt_h2::ClientConfig {
        tls: tls.client.clone(),
        ..wt_h2::ClientConfig::default()
    })?)
}

/// `[MODE_ECHO]` followed by [`CHURN_SIZE`] bytes.
pub fn churn_payload() -> Bytes {
    static P: OnceLock<Bytes> = OnceLock::new();
    P.get_or_init(|| {
        let mut v = vec![MODE_ECHO];
        v.extend((0..CHURN_SIZE).map(|i| i as u8));
        Bytes::from(v)
    })
    .clone()
}

/// The send half of a bulk stream on our stacks.
struct WtSend<T: SendStream>(T);

#[async_trait]
impl<T: SendStream> BulkSend for WtSend<T> {
    async fn head(&mut self, head: &[u8]) -> BResult<()> {
        Ok(self.0.write_all(head).await?)
    }

    async fn write(&mut self, n: u64) -> BResult<()> {
        let c = chunk();
        for k in chunk_sizes(n) {
            self.0.write_chunk(c.slice(..k)).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> BResult<()> {
        Ok(self.0.finish()?)
    }
}

/// The receive half of a bulk stream on our stacks.
struct WtRecv<T: RecvStream>(T);

#[async_trait]
impl<T: RecvStream> BulkRecv for WtRecv<T> {
    async fn skip(&mut self, max: usize) -> BResult<Option<usize>> {
        Ok(self.0.read_chunk(max.min(CHUNK)).await?.map(|c| c.len()))
    }

    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
        match self.0.read_chunk(64).await? {
            Some(c) => {
                out.extend_from_slice(&c);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Opens the bulk stream of a round (see [`Pipe`]).
pub async fn pipe<S: Session>(s: &S, mode: PipeMode) -> BResult<Pipe> {
    let (send, recv) = s.open_bi().await?;
    Pipe::start(Box::new(WtSend(send)), Box::new(WtRecv(recv)), mode).await
}

/// Reads `want` echoed bytes.
async fn read_exact<R: RecvStream>(recv: &mut R, want: usize) -> BResult<()> {
    let mut got = 0;
    while got < want {
        match recv.read_chunk(want - got).await? {
            Some(c) => got += c.len(),
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(())
}

/// Sequential 64-byte round trips on one stream.
pub async fn latency<S: Session>(s: &S, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = s.open_bi().await?;
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
    while recv.read_chunk(CHUNK).await?.is_some() {}
    Ok(sample)
}

/// `n` streams (open, 1 KiB, FIN, read the echo), [`CHURN_IN_FLIGHT`] at a time.
pub async fn churn<S: Session>(s: &S, n: usize) -> BResult<Sample> {
    churn_workers(n, |tickets| {
        let s = s.clone();
        async move {
            while tickets.take() {
                let (mut send, mut recv) = s.open_bi().await?;
                send.write_chunk(churn_payload()).await?;
                send.finish()?;
                let mut got = 0;
                while let Some(c) = recv.read_chunk(CHUNK).await? {
                    got += c.len();
                }
                check_churn_echo(got)?;
            }
            Ok(())
        }
    })
    .await
}

/// `n` datagrams of [`DGRAM_SIZE`] bytes as fast as the send path takes them: written ones
/// go in place after the session's headroom (no copy), the shared one through
/// `send_datagram` (copied behind the header).
pub async fn datagrams<S: Session>(
    s: &S,
    stats: &ServerStats,
    n: usize,
    payload: Payload,
) -> BResult<Sample> {
    datagram_run(stats, n, payload, s.datagram_headroom(), |f| {
        std::future::ready(
            match f {
                DatagramFrame::Written(frame, room) => s.send_datagram_with_headroom(frame, room),
                DatagramFrame::Shared(p) => s.send_datagram(p),
            }
            .map_err(Into::into),
        )
    })
    .await
}

/// `n` sequential connect + 64-byte echo + close.
pub async fn setup<C: Connector>(c: &C, req: &ConnectRequest, n: usize) -> BResult<Sample> {
    let mut msg = vec![MODE_ECHO];
    msg.extend_from_slice(&[0x5a; PING_SIZE]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let s = c.connect(req).await?;
        let (mut send, mut recv) = s.open_bi().await?;
        send.write_all(&msg).await?;
        read_exact(&mut recv, PING_SIZE).await?;
        s.close(0, "")?;
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
