//! Client workloads on the raw wt-h3 / wt-h2 API, written once against the wt-core traits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wt_core::{ConnectRequest, Connector, RecvStream, SendStream, Session};

use super::alloc::AllocSpan;
use super::common::*;

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

/// Sends `bytes` on one stream to the sink and waits for its count.
pub async fn bulk_upload<S: Session>(s: &S, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = s.open_bi().await?;
    send.write_all(&[MODE_SINK]).await?;
    let c = chunk();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_chunk(c.slice(..n)).await?;
        left -= n as u64;
    }
    send.finish()?;
    let mut answer = Vec::new();
    while let Some(c) = recv.read_chunk(64).await? {
        answer.extend_from_slice(&c);
    }
    if parse_count(&answer)? != bytes {
        return Err(BenchError::Protocol("sink count differs"));
    }
    let d = start.elapsed();
    Ok(allocs.add_to(Sample::new(mib_per_s(bytes, d)), bytes))
}

/// Echoes `bytes` through one stream, writing and reading at once.
pub async fn bulk_echo<S: Session>(s: &S, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = s.open_bi().await?;
    let writer = tokio::spawn(async move {
        send.write_all(&[MODE_ECHO]).await?;
        let c = chunk();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            send.write_chunk(c.slice(..n)).await?;
            left -= n as u64;
        }
        send.finish()?;
        Ok::<_, BenchError>(send)
    });
    let mut got = 0u64;
    while let Some(c) = recv.read_chunk(CHUNK).await? {
        got += c.len() as u64;
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

/// Sequential 64-byte round trips on one stream.
pub async fn latency<S: Session>(s: &S, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = s.open_bi().await?;
    send.write_all(&[MODE_ECHO]).await?;
    let msg = [0x5au8; PING_SIZE];
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        send.write_all(&msg).await?;
        let mut got = 0;
        while got < PING_SIZE {
            match recv.read_chunk(PING_SIZE - got).await? {
                Some(c) => got += c.len(),
                None => return Err(BenchError::Protocol("echo ended early")),
            }
        }
        rtts.push(t.elapsed());
    }
    send.finish()?;
    while recv.read_chunk(CHUNK).await?.is_some() {}
    Ok(latency_sample(rtts))
}

/// `n` streams (open, 1 KiB, FIN, read the echo), [`CHURN_IN_FLIGHT`] at a time.
pub async fn churn<S: Session>(s: &S, n: usize) -> BResult<Sample> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CHURN_IN_FLIGHT {
        let s = s.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Relaxed) < n {
                let (mut send, mut recv) = s.open_bi().await?;
                send.write_chunk(churn_payload()).await?;
                send.finish()?;
                let mut got = 0;
                while let Some(c) = recv.read_chunk(CHUNK).await? {
                    got += c.len();
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

/// `n` datagrams of [`DGRAM_SIZE`] bytes as fast as the send path takes them.
pub async fn datagrams<S: Session>(s: &S, stats: &ServerStats, n: usize) -> BResult<Sample> {
    settle(stats).await;
    stats.reset();
    let payload = Bytes::from(vec![0x42u8; DGRAM_SIZE]);
    let start = Instant::now();
    let mut lost = 0;
    for i in 0..n as u64 {
        stats.window(i, &mut lost).await;
        s.send_datagram(payload.clone())?;
    }
    let send_rate = n as f64 / start.elapsed().as_secs_f64();
    Ok(datagram_result(stats, start, n)
        .await
        .with("send_per_s", send_rate))
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
        let mut got = 0;
        while got < PING_SIZE {
            match recv.read_chunk(PING_SIZE - got).await? {
                Some(c) => got += c.len(),
                None => return Err(BenchError::Protocol("echo ended early")),
            }
        }
        s.close(0, "")?;
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
