//! The raw HTTP/2 baseline: one h2 stream per "WebTransport stream" — an extended CONNECT
//! whose DATA frames carry the bytes (bulk, latency, setup), or a POST per stream (churn) —
//! over the same TLS and with wt-h2's HTTP/2 settings.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;

use super::alloc::AllocSpan;
use super::common::*;
use super::ours::churn_payload;
use super::pipe::{BulkRecv, BulkSend, Pipe, PipeMode};
use super::server::{h2_config, h2_recv, h2_send};

/// A client connection.
#[derive(Clone)]
pub struct H2Client {
    send: SendRequest<Bytes>,
    authority: String,
}

/// The rustls configuration wt-h2's client builds.
pub fn client_tls(tls: &Tls) -> BResult<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(tls.client.build(&[b"h2"], true)?))
}

/// TCP + TLS + HTTP/2 handshake, then waits for the server's SETTINGS to allow extended
/// CONNECT (as wt-h2 waits for them).
pub async fn connect(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> BResult<H2Client> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::from(addr.ip());
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let c = h2_config();
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(c.initial_stream_window)
        .initial_connection_window_size(c.initial_connection_window)
        .max_frame_size(c.max_frame_size)
        .enable_push(false)
        .handshake::<_, Bytes>(tls)
        .await?;
    // The server's SETTINGS arrive through the connection future: poll it here, checking
    // after every poll, until they allow extended CONNECT (no busy wait), then hand it to a
    // task of its own.
    let settings = std::future::poll_fn(|cx| {
        if send.is_extended_connect_protocol_enabled() {
            return Poll::Ready(Ok(()));
        }
        match std::pin::Pin::new(&mut conn).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Err(BenchError::Protocol(
                "connection ended before the server's SETTINGS",
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(BenchError::from(e))),
            Poll::Pending if send.is_extended_connect_protocol_enabled() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    });
    match tokio::time::timeout(Duration::from_secs(5), settings).await {
        Ok(r) => r?,
        Err(_) => return Err(BenchError::Timeout("server SETTINGS")),
    }
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Client {
        send,
        authority: addr.to_string(),
    })
}

impl H2Client {
    /// Opens an extended CONNECT stream and waits for the 200.
    async fn open(&self) -> BResult<(h2::SendStream<Bytes>, h2::RecvStream)> {
        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("https://{}/bench", self.authority))
            .extension(h2::ext::Protocol::from("webtransport"))
            .body(())?;
        let mut sr = self.send.clone().ready().await?;
        let (resp, send) = sr.send_request(req, false)?;
        let resp = resp.await?;
        if resp.status() != http::StatusCode::OK {
            return Err(BenchError::Protocol("CONNECT refused"));
        }
        Ok((send, resp.into_body()))
    }
}

/// The send half of a raw h2 bulk stream (a request body).
struct H2Send(h2::SendStream<Bytes>);

#[async_trait]
impl BulkSend for H2Send {
    async fn head(&mut self, head: &[u8]) -> BResult<()> {
        h2_send(&mut self.0, Bytes::copy_from_slice(head)).await
    }

    async fn write(&mut self, n: u64) -> BResult<()> {
        let ch = chunk();
        for k in chunk_sizes(n) {
            h2_send(&mut self.0, ch.slice(..k)).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> BResult<()> {
        Ok(self.0.send_data(Bytes::new(), true)?)
    }
}

/// The receive half of a raw h2 bulk stream (the response body). A read gives one DATA
/// frame, whatever its size.
struct H2Recv(h2::RecvStream);

#[async_trait]
impl BulkRecv for H2Recv {
    async fn skip(&mut self, _max: usize) -> BResult<Option<usize>> {
        Ok(h2_recv(&mut self.0).await?.map(|c| c.len()))
    }

    async fn read_into(&mut self, out: &mut Vec<u8>) -> BResult<bool> {
        match h2_recv(&mut self.0).await? {
            Some(c) => {
                out.extend_from_slice(&c);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// See [`ours::pipe`](super::ours::pipe).
pub async fn pipe(c: &H2Client, mode: PipeMode) -> BResult<Pipe> {
    let (send, recv) = c.open().await?;
    Pipe::start(Box::new(H2Send(send)), Box::new(H2Recv(recv)), mode).await
}

async fn read_exact(recv: &mut h2::RecvStream, mut want: usize) -> BResult<()> {
    while want > 0 {
        match h2_recv(recv).await? {
            Some(c) => want = want.saturating_sub(c.len()),
            None => return Err(BenchError::Protocol("echo ended early")),
        }
    }
    Ok(())
}

/// See [`ours::latency`](super::ours::latency).
pub async fn latency(c: &H2Client, rounds: usize) -> BResult<Sample> {
    let (mut send, mut recv) = c.open().await?;
    h2_send(&mut send, Bytes::from_static(&[MODE_ECHO])).await?;
    let msg = Bytes::from_static(&[0x5a; PING_SIZE]);
    let mut rtts = Vec::with_capacity(rounds);
    let allocs = AllocSpan::start();
    for _ in 0..rounds {
        time_round(&mut rtts, async {
            // Copy, as a `write(&[u8])` API would.
            h2_send(&mut send, Bytes::copy_from_slice(&msg)).await?;
            read_exact(&mut recv, PING_SIZE).await
        })
        .await?;
    }
    let sample = rtt_sample(allocs, rtts);
    send.send_data(Bytes::new(), true)?;
    while h2_recv(&mut recv).await?.is_some() {}
    Ok(sample)
}

/// Churn as HTTP/2 requests: POST `E` + 1 KiB, read the echoed body.
pub async fn churn(c: &H2Client, n: usize) -> BResult<Sample> {
    churn_workers(n, |tickets| {
        let c = c.clone();
        async move {
            while tickets.take() {
                let req = http::Request::builder()
                    .method(http::Method::POST)
                    .uri(format!("https://{}/churn", c.authority))
                    .body(())?;
                let mut sr = c.send.clone().ready().await?;
                let (resp, mut send) = sr.send_request(req, false)?;
                h2_send(&mut send, churn_payload()).await?;
                send.send_data(Bytes::new(), true)?;
                let mut body = resp.await?.into_body();
                let mut got = 0;
                while let Some(c) = h2_recv(&mut body).await? {
                    got += c.len();
                }
                check_churn_echo(got)?;
            }
            Ok(())
        }
    })
    .await
}

/// See [`ours::setup`](super::ours::setup): TCP, TLS, HTTP/2, CONNECT, echo, close.
pub async fn setup(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr, n: usize) -> BResult<Sample> {
    let mut msg = vec![MODE_ECHO];
    msg.extend_from_slice(&[0x5a; PING_SIZE]);
    let msg = Bytes::from(msg);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let c = connect(tls, addr).await?;
        let (mut send, mut recv) = c.open().await?;
        h2_send(&mut send, msg.clone()).await?;
        read_exact(&mut recv, PING_SIZE).await?;
        send.send_data(Bytes::new(), true)?;
        drop((c, send, recv));
        times.push(t.elapsed());
    }
    Ok(latency_sample(times))
}
