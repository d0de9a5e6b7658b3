//! Workloads through wt-client (the hackney-style API): the default stream carries the bytes
//! (`send` / `recv`), datagrams go through `send_datagram`. Same servers as the raw wt-h3 /
//! wt-h2 rows, so the difference is the driver task and its channels.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use wt_client::{Connection, Frame, Msg, Options, Transport};

use super::alloc::AllocSpan;
use super::common::*;

/// Connects through wt-client over `transport`.
pub async fn connect(tls: &Tls, addr: SocketAddr, transport: Transport) -> BResult<Connection> {
    let opts = Options {
        transport,
        tls: tls.client.clone(),
        ..Options::default()
    };
    Ok(wt_client::connect(&format!("https://{addr}/bench"), opts).await?)
}

/// Reads the default channel until `want` bytes of the default stream arrived or it ended;
/// returns the bytes seen and whether the stream ended.
async fn recv_bytes(c: &Connection, want: u64) -> BResult<(u64, bool)> {
    let id = c.default_stream_id();
    let mut got = 0u64;
    while got < want {
        match c.recv().await? {
            Msg::Binary(b) => got += b.len() as u64,
            Msg::StreamFin(s, b) if s == id => return Ok((got + b.len() as u64, true)),
            Msg::StreamClosed(s, _) if s == id => return Ok((got, true)),
            _ => {}
        }
    }
    Ok((got, false))
}

/// See [`ours::bulk_upload`](super::ours::bulk_upload).
pub async fn bulk_upload(c: &Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    c.send(Frame::binary(Bytes::from_static(&[MODE_SINK])))
        .await?;
    let ch = chunk();
    for n in chunk_sizes(bytes) {
        c.send(Frame::binary(ch.slice(..n))).await?;
    }
    c.close_stream(c.default_stream_id()).await?;
    let id = c.default_stream_id();
    let mut answer = Vec::new();
    loop {
        match c.recv().await? {
            Msg::Binary(b) => answer.extend_from_slice(&b),
            Msg::StreamFin(s, b) if s == id => {
                answer.extend_from_slice(&b);
                break;
            }
            Msg::StreamClosed(s, _) if s == id => break,
            _ => {}
        }
    }
    upload_sample(allocs, start, &answer, bytes)
}

/// See [`ours::bulk_echo`](super::ours::bulk_echo).
pub async fn bulk_echo(c: &Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let w = c.clone();
    let writer = tokio::spawn(async move {
        w.send(Frame::binary(Bytes::from_static(&[MODE_ECHO])))
            .await?;
        let ch = chunk();
        for n in chunk_sizes(bytes) {
            w.send(Frame::binary(ch.slice(..n))).await?;
        }
        w.close_stream(w.default_stream_id()).await?;
        Ok::<_, BenchError>(())
    });
    let (got, _) = recv_bytes(c, u64::MAX).await?;
    join_writer(writer).await?;
    echo_sample(allocs, start, got, bytes)
}

/// See [`ours::latency`](super::ours::latency).
pub async fn latency(c: &Connection, rounds: usize, start_echo: bool) -> BResult<Sample> {
    if start_echo {
        c.send(Frame::binary(Bytes::from_static(&[MODE_ECHO])))
            .await?;
    }
    let msg = [0x5au8; PING_SIZE];
    let mut rtts = Vec::with_capacity(rounds);
    let allocs = AllocSpan::start();
    for _ in 0..rounds {
        time_round(&mut rtts, async {
            // `send` takes owned bytes: the copy a caller holding a slice makes.
            c.send(Frame::binary(Bytes::copy_from_slice(&msg))).await?;
            let (got, ended) = recv_bytes(c, PING_SIZE as u64).await?;
            if ended || got != PING_SIZE as u64 {
                return Err(BenchError::Protocol("echo ended early"));
            }
            Ok(())
        })
        .await?;
    }
    Ok(rtt_sample(allocs, rtts))
}

/// See [`ours::datagrams`](super::ours::datagrams).
pub async fn datagrams(
    c: &Connection,
    stats: &ServerStats,
    n: usize,
    payload: Payload,
) -> BResult<Sample> {
    datagram_run(stats, n, payload, c.datagram_headroom(), |f| async move {
        match f {
            DatagramFrame::Written(frame, room) => {
                Ok(c.send_datagram_with_headroom(frame, room).await?)
            }
            DatagramFrame::Shared(p) => Ok(c.send_datagram(p).await?),
        }
    })
    .await
}
