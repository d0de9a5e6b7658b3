//! Workloads through wt-client (the hackney-style API): the default stream carries the bytes
//! (`send` / `recv`), datagrams go through `send_datagram`. Same servers as the raw wt-h3 /
//! wt-h2 rows, so the difference is the driver task and its channels.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use wt_client::{Connection, Frame, Msg, Options, Transport};

use super::alloc::AllocSpan;
use super::common::*;
use super::pipe::{BulkRecv, BulkSend, Pipe, PipeMode};

/// Connects through wt-client over `transport`.
pub async fn connect(tls: &Tls, addr: SocketAddr, transport: Transport) -> BResult<Connection> {
    let opts = Options {
        transport,
        tls: tls.client.clone(),
        ..Options::default()
    };
    Ok(wt_client::connect(&format!("https://{addr}/bench"), opts).await?)
}

/// The default stream's next bytes among the connection's messages (the others are
/// skipped): the bytes and whether they end the stream, or `None` when it closed without
/// any.
async fn next_default(c: &Connection) -> BResult<Option<(Bytes, bool)>> {
    let id = c.default_stream_id();
    loop {
        match c.recv().await? {
            Msg::Binary(b) => return Ok(Some((b, false))),
            Msg::StreamFin(s, b) if s == id => return Ok(Some((b, true))),
            Msg::StreamClosed(s, _) if s == id => return Ok(None),
            _ => {}
        }
    }
}

/// Reads the default channel until `want` bytes of the default stream arrived or it ended;
/// returns the bytes seen and whether the stream ended.
async fn recv_bytes(c: &Connection, want: u64) -> BResult<(u64, bool)> {
    let mut got = 0u64;
    while got < want {
        match next_default(c).await? {
            Some((b, false)) => got += b.len() as u64,
            Some((b, true)) => return Ok((got + b.len() as u64, true)),
            None => return Ok((got, true)),
        }
    }
    Ok((got, false))
}

/// The send half of wt-client's default stream, for the bulk workloads.
struct CSend(Connection);

#[async_trait]
impl BulkSend for CSend {
    async fn head(&mut self, head: &[u8]) -> BResult<()> {
        Ok(self
            .0
            .send(Frame::binary(Bytes::copy_from_slice(head)))
            .await?)
    }

    async fn write(&mut self, n: u64) -> BResult<()> {
        let ch = chunk();
        for k in chunk_sizes(n) {
            self.0.send(Frame::binary(ch.slice(..k))).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> BResult<()> {
        Ok(self.0.close_stream(self.0.default_stream_id()).await?)
    }
}

/// The receive half of wt-client's default stream: its bytes among the connection's
/// messages.
struct CRecv {
    c: Connection,
    ended: bool,
}

impl CRecv {
    /// The default stream's next bytes, or `None` once it ended.
    async fn next(&mut self) -> BResult<Option<Bytes>> {
        if self.ended {
            return Ok(None);
        }
        let next = next_default(&self.c).await?;
        self.ended = next.as_ref().is_none_or(|(_, fin)| *fin);
        Ok(next.map(|(b, _)| b))
    }
}

#[async_trait]
impl BulkRecv for CRecv {
    async fn skip(&mut self, _max: usize) -> BResult<Option<usize>> {
        Ok(self.next().await?.map(|b| b.len()))
    }

    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
        match self.next().await? {
            Some(b) => {
                out.extend_from_slice(&b);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// See [`ours::pipe`](super::ours::pipe): wt-client's default stream.
pub async fn pipe(c: &Connection, mode: PipeMode) -> BResult<Pipe> {
    let recv = CRecv {
        c: c.clone(),
        ended: false,
    };
    Pipe::start(Box::new(CSend(c.clone())), Box::new(recv), mode).await
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
