//! The in-process bench servers: ours (any [`wt_core::Acceptor`], so wt-h3 and wt-h2 run the
//! same code), raw quinn and raw h2. All speak the mode-byte protocol of
//! [`common`](super::common).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use wt_core::{AcceptOptions, Acceptor, IncomingRequest, RecvStream, SendStream, Session};

use super::common::*;
use super::pipe::{acks, Sink};

/// Serves WebTransport sessions from `acceptor` until it shuts down.
pub async fn serve_wt<A: Acceptor>(acceptor: A, stats: Arc<ServerStats>) {
    while let Some(req) = acceptor.accept().await {
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(session) = req.accept(AcceptOptions::default()).await else {
                return;
            };
            let dg = session.clone();
            tokio::spawn(async move {
                while dg.recv_datagram().await.is_ok() {
                    stats.datagram();
                }
            });
            while let Ok((send, recv)) = session.accept_bi().await {
                tokio::spawn(wt_stream(send, recv));
            }
        });
    }
}

/// A stream's task: the stream pair is held once, by the task itself.
///
/// Every server of the bench spawns its stream handler this way. The obvious form,
/// `tokio::spawn(async move { if let Err(e) = handler(send, recv).await { … } })`, keeps the
/// stream pair in the task three times (captured by the block, as the handler's arguments,
/// and as its locals), which only makes every stack's task cell bigger than it needs to be
/// (ours 1,024 against 768 bytes, raw quinn's 768 against 640: BENCHMARKS.md, runs 26–29).
#[allow(clippy::manual_async_fn)] // an `async fn` would hold the pair twice
fn wt_stream<S: SendStream, R: RecvStream>(
    mut send: S,
    mut recv: R,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        if let Err(e) = wt_echo(&mut send, &mut recv).await {
            tracing::debug!("bench server stream: {e}");
        }
    }
}

async fn wt_echo<S: SendStream, R: RecvStream>(send: &mut S, recv: &mut R) -> BResult<()> {
    let first = loop {
        match recv.read_chunk(CHUNK).await? {
            Some(b) if b.is_empty() => continue,
            Some(b) => break b,
            None => return Ok(()),
        }
    };
    let rest = first.slice(1..);
    match first[0] {
        MODE_SINK => {
            let mut sink = Sink::default();
            let mut due = sink.feed(&rest);
            loop {
                if due > 0 {
                    send.write_chunk(acks(due)).await?;
                }
                match recv.read_chunk(CHUNK).await? {
                    Some(c) => due = sink.feed(&c),
                    None => break,
                }
            }
            send.write_chunk(sink.answer()?).await?;
            send.finish()?;
        }
        MODE_ECHO => {
            if !rest.is_empty() {
                send.write_chunk(rest).await?;
            }
            while let Some(c) = recv.read_chunk(CHUNK).await? {
                send.write_chunk(c).await?;
            }
            send.finish()?;
        }
        _ => return Err(BenchError::Protocol("unknown mode byte")),
    }
    Ok(())
}

/// Binds the raw quinn server.
pub fn bind_quinn(tls: &Tls) -> BResult<quinn::Endpoint> {
    bind_quinn_with(tls, None)
}

/// Binds the raw quinn server, optionally with other concurrent stream limits.
pub fn bind_quinn_with(tls: &Tls, max_streams: Option<u32>) -> BResult<quinn::Endpoint> {
    let rustls = tls.server.build(&[b"h3"], false)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quic_transport(false);
    if let Some(n) = max_streams {
        t.max_concurrent_bidi_streams(n.into())
            .max_concurrent_uni_streams(n.into());
    }
    sc.transport_config(Arc::new(t));
    Ok(quinn_endpoint(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(sc),
    )?)
}

/// Serves raw QUIC connections: every bidirectional stream speaks the mode-byte protocol,
/// datagrams are counted.
pub async fn serve_quinn(endpoint: quinn::Endpoint, stats: Arc<ServerStats>) {
    while let Some(incoming) = endpoint.accept().await {
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else {
                return;
            };
            let dg = conn.clone();
            tokio::spawn(async move {
                while dg.read_datagram().await.is_ok() {
                    stats.datagram();
                }
            });
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(quinn_stream(send, recv));
            }
        });
    }
}

/// A stream's task, shaped like [`wt_stream`]'s.
#[allow(clippy::manual_async_fn)] // an `async fn` would hold the pair twice
fn quinn_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        if let Err(e) = quinn_echo(&mut send, &mut recv).await {
            tracing::debug!("quinn bench server stream: {e}");
        }
    }
}

async fn quinn_echo(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream) -> BResult<()> {
    let first = loop {
        match recv.read_chunk(CHUNK, true).await? {
            Some(c) if c.bytes.is_empty() => continue,
            Some(c) => break c.bytes,
            None => return Ok(()),
        }
    };
    let rest = first.slice(1..);
    match first[0] {
        MODE_SINK => {
            let mut sink = Sink::default();
            let mut due = sink.feed(&rest);
            loop {
                if due > 0 {
                    send.write_chunk(acks(due)).await?;
                }
                match recv.read_chunk(CHUNK, true).await? {
                    Some(c) => due = sink.feed(&c.bytes),
                    None => break,
                }
            }
            send.write_chunk(sink.answer()?).await?;
            send.finish()?;
        }
        MODE_ECHO => {
            if !rest.is_empty() {
                send.write_chunk(rest).await?;
            }
            while let Some(c) = recv.read_chunk(CHUNK, true).await? {
                send.write_chunk(c.bytes).await?;
            }
            send.finish()?;
        }
        _ => return Err(BenchError::Protocol("unknown mode byte")),
    }
    Ok(())
}

/// The HTTP/2 settings wt-h2 uses (its `H2Config` defaults), for the raw h2 baseline.
pub fn h2_config() -> wt_h2::H2Config {
    wt_h2::H2Config::default()
}

/// Serves raw HTTP/2: every request (extended CONNECT or POST) is answered with 200 and its
/// body speaks the mode-byte protocol.
pub async fn serve_h2(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = h2_conn(tcp, acceptor).await {
                tracing::debug!("h2 bench server connection: {e}");
            }
        });
    }
}

async fn h2_conn(tcp: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) -> BResult<()> {
    let _ = tcp.set_nodelay(true);
    let tls = acceptor.accept(tcp).await?;
    let c = h2_config();
    let mut b = h2::server::Builder::new();
    b.initial_window_size(c.initial_stream_window)
        .initial_connection_window_size(c.initial_connection_window)
        .max_frame_size(c.max_frame_size)
        .max_concurrent_streams(256)
        .enable_connect_protocol();
    let mut conn = b.handshake::<_, Bytes>(tls).await?;
    while let Some(r) = conn.accept().await {
        let (req, respond) = r?;
        tokio::spawn(h2_request(req, respond));
    }
    Ok(())
}

/// A request's task, shaped like [`wt_stream`]'s.
fn h2_request(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut body = req.into_body();
    async move {
        if let Err(e) = h2_echo(&mut body, &mut respond).await {
            tracing::debug!("h2 bench server request: {e}");
        }
    }
}

async fn h2_echo(
    body: &mut h2::RecvStream,
    respond: &mut h2::server::SendResponse<Bytes>,
) -> BResult<()> {
    let mut send = respond.send_response(http::Response::new(()), false)?;
    let first = loop {
        match h2_recv(body).await? {
            Some(b) if b.is_empty() => continue,
            Some(b) => break b,
            None => {
                send.send_data(Bytes::new(), true)?;
                return Ok(());
            }
        }
    };
    let rest = first.slice(1..);
    match first[0] {
        MODE_SINK => {
            let mut sink = Sink::default();
            let mut due = sink.feed(&rest);
            loop {
                if due > 0 {
                    h2_send(&mut send, acks(due)).await?;
                }
                match h2_recv(body).await? {
                    Some(c) => due = sink.feed(&c),
                    None => break,
                }
            }
            h2_send(&mut send, sink.answer()?).await?;
            send.send_data(Bytes::new(), true)?;
        }
        MODE_ECHO => {
            if !rest.is_empty() {
                h2_send(&mut send, rest).await?;
            }
            while let Some(c) = h2_recv(body).await? {
                h2_send(&mut send, c).await?;
            }
            send.send_data(Bytes::new(), true)?;
        }
        _ => return Err(BenchError::Protocol("unknown mode byte")),
    }
    Ok(())
}

/// The next DATA of an h2 body, with its window released at once.
pub async fn h2_recv(body: &mut h2::RecvStream) -> BResult<Option<Bytes>> {
    match body.data().await {
        Some(Ok(b)) => {
            let _ = body.flow_control().release_capacity(b.len());
            Ok(Some(b))
        }
        Some(Err(e)) => Err(e.into()),
        None => Ok(None),
    }
}

/// Sends all of `data` on an h2 stream, waiting for flow-control capacity.
pub async fn h2_send(s: &mut h2::SendStream<Bytes>, mut data: Bytes) -> BResult<()> {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let cap = std::future::poll_fn(|cx| s.poll_capacity(cx))
            .await
            .ok_or(BenchError::Protocol("h2 stream closed"))??;
        if cap == 0 {
            continue;
        }
        let n = cap.min(data.len());
        s.send_data(data.split_to(n), false)?;
    }
    Ok(())
}
