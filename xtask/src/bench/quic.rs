//! The raw quinn baseline: plain QUIC streams and datagrams with wt-h3's TLS and transport
//! settings, one endpoint (UDP socket) per connection as wt-h3's client does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::alloc::AllocSpan;
use super::common::*;
use super::ours::churn_payload;

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

/// See [`ours::bulk_upload`](super::ours::bulk_upload).
pub async fn bulk_upload(c: &quinn::Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = c.open_bi().await?;
    send.write_all(&[MODE_SINK]).await?;
    let ch = chunk();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_chunk(ch.slice(..n)).await?;
        left -= n as u64;
    }
    send.finish()?;
    let mut answer = Vec::new();
    while let Some(c) = recv.read_chunk(64, true).await? {
        answer.extend_from_slice(&c.bytes);
    }
    if parse_count(&answer)? != bytes {
        return Err(BenchError::Protocol("sink count differs"));
    }
    let d = start.elapsed();
    Ok(allocs.add_to(Sample::new(mib_per_s(bytes, d)), bytes))
}

/// See [`ours::bulk_echo`](super::ours::bulk_echo).
pub async fn bulk_echo(c: &quinn::Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = c.open_bi().await?;
    let writer = tokio::spawn(async move {
        send.write_all(&[MODE_ECHO]).await?;
        let ch = chunk();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            send.write_chunk(ch.slice(..n)).await?;
            left -= n as u64;
        }
        send.finish()?;
        Ok::<_, BenchError>(send)
    });
    let mut got = 0u64;
    while let Some(c) = recv.read_chunk(CHUNK, true).await? {
        got += c.bytes.len() as u64;
    }
    let _send = writer
        .await
        .map_err(|_| BenchError::Protocol("writer panicked"))??;
    if got != bytes {
        return Err(BenchError::Protocol("echo length differs"));
    }
    let d = start.elapsed();
    Ok(allocs.add_to(Sample::new(mib_per_s(bytes, d)), 2 * bytes))
}

/// See [`ours::latency`](super::ours::latency).
pub async fn latency(c: &quinn::Connection, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = c.open_bi().await?;
    send.write_all(&[MODE_ECHO]).await?;
    let msg = [0x5au8; PING_SIZE];
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        send.write_all(&msg).await?;
        let mut got = 0;
        while got < PING_SIZE {
            match recv.read_chunk(PING_SIZE - got, true).await? {
                Some(c) => got += c.bytes.len(),
                None => return Err(BenchError::Protocol("echo ended early")),
            }
        }
        rtts.push(t.elapsed());
    }
    send.finish()?;
    while recv.read_chunk(CHUNK, true).await?.is_some() {}
    Ok(latency_sample(rtts))
}

/// See [`ours::churn`](super::ours::churn).
pub async fn churn(c: &quinn::Connection, n: usize) -> BResult<Sample> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CHURN_IN_FLIGHT {
        let c = c.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Relaxed) < n {
                let (mut send, mut recv) = c.open_bi().await?;
                send.write_chunk(churn_payload()).await?;
                send.finish()?;
                let mut got = 0;
                while let Some(c) = recv.read_chunk(CHUNK, true).await? {
                    got += c.bytes.len();
                }
                if got != CHURN_SIZE {
                    return Err(BenchError::Protocol("churn echo length differs"));
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for w in workers {
        w.await
            .map_err(|_| BenchError::Protocol("worker panicked"))??;
    }
    Ok(Sample::new(n as f64 / start.elapsed().as_secs_f64()))
}

/// See [`ours::datagrams`](super::ours::datagrams).
pub async fn datagrams(c: &quinn::Connection, stats: &ServerStats, n: usize) -> BResult<Sample> {
    super::ours::settle(stats).await;
    stats.reset();
    let payload = Bytes::from(vec![0x42u8; DGRAM_SIZE]);
    let start = Instant::now();
    let mut lost = 0;
    for i in 0..n as u64 {
        stats.window(i, &mut lost).await;
        c.send_datagram(payload.clone())?;
    }
    let send_rate = n as f64 / start.elapsed().as_secs_f64();
    Ok(datagram_result(stats, start, n)
        .await
        .with("send_per_s", send_rate))
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
        let mut got = 0;
        while got < PING_SIZE {
            match recv.read_chunk(PING_SIZE - got, true).await? {
                Some(c) => got += c.bytes.len(),
                None => return Err(BenchError::Protocol("echo ended early")),
            }
        }
        c.close(0u32.into(), b"");
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
