//! The wtransport 0.7 baseline, client and server, with the same rustls
//! configurations and QUIC transport settings as wt-h3. Its stream API reads into and writes
//! from slices, so it is used that way (as its users do).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use wtransport::endpoint::endpoint_side::{Client, Server};
use wtransport::{ClientConfig, Connection, Endpoint, ServerConfig};

use super::alloc::AllocSpan;
use super::common::*;
use super::ours::churn_payload;

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
            let mut n = first as u64 - 1;
            while let Some(k) = recv.read(&mut buf).await? {
                n += k as u64;
            }
            send.write_all(&n.to_le_bytes()).await?;
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

/// See [`ours::bulk_upload`](super::ours::bulk_upload).
pub async fn bulk_upload(c: &Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = open(c).await?;
    send.write_all(&[MODE_SINK]).await?;
    let ch = chunk();
    for n in chunk_sizes(bytes) {
        send.write_all(&ch[..n]).await?;
    }
    send.finish().await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    while let Some(k) = recv.read(&mut buf).await? {
        answer.extend_from_slice(&buf[..k]);
    }
    upload_sample(allocs, start, &answer, bytes)
}

/// See [`ours::bulk_echo`](super::ours::bulk_echo).
pub async fn bulk_echo(c: &Connection, bytes: u64) -> BResult<Sample> {
    let allocs = AllocSpan::start();
    let start = Instant::now();
    let (mut send, mut recv) = open(c).await?;
    let writer = tokio::spawn(async move {
        send.write_all(&[MODE_ECHO]).await?;
        let ch = chunk();
        for n in chunk_sizes(bytes) {
            send.write_all(&ch[..n]).await?;
        }
        send.finish().await?;
        Ok::<_, BenchError>(send)
    });
    let mut got = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while let Some(k) = recv.read(&mut buf).await? {
        got += k as u64;
    }
    let _send = join_writer(writer).await?;
    echo_sample(allocs, start, got, bytes)
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
