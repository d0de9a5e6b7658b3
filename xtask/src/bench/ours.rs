//! Client workloads on the raw wt-h3 / wt-h2 API, written once against the wt-core traits.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

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
    for n in chunk_sizes(bytes) {
        send.write_chunk(c.slice(..n)).await?;
    }
    send.finish()?;
    let mut answer = Vec::new();
    while let Some(c) = recv.read_chunk(64).await? {
        answer.extend_from_slice(&c);
    }
    upload_sample(allocs, start, &answer, bytes)
}

/// Echoes `bytes` through one stream, writing and reading at once.
pub async fn bulk_echo<S: Session>(s: &S, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = s.open_bi().await?;
    let writer = tokio::spawn(async move {
        send.write_all(&[MODE_ECHO]).await?;
        let c = chunk();
        for n in chunk_sizes(bytes) {
            send.write_chunk(c.slice(..n)).await?;
        }
        send.finish()?;
        Ok::<_, BenchError>(send)
    });
    let mut got = 0u64;
    while let Some(c) = recv.read_chunk(CHUNK).await? {
        got += c.len() as u64;
    }
    let _send = join_writer(writer).await?;
    echo_sample(allocs, start, got, bytes)
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
