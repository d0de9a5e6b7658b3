//! Session flow control between our client and server (draft-16 §5.6).

mod common;

use std::time::Duration;

use common::*;
use wt_core::{
    AcceptOptions, Acceptor, CompatMode, Connector, FlowLimits, IncomingRequest, RecvStream,
    SendStream, Session,
};
use wt_h3::{Client, ClientConfig, FlowControlConfig, Server, Session as H3Session};

fn fc(max_data: u64, bidi: u64, uni: u64) -> FlowControlConfig {
    FlowControlConfig {
        max_data,
        max_streams_bidi: bidi,
        max_streams_uni: uni,
    }
}

fn fc_client(tls: &wt_core::tls::ServerTls, flow: Option<FlowControlConfig>) -> Client {
    let mut cfg = ClientConfig::default();
    cfg.tls.cert_hashes.push(tls.cert_hash());
    cfg.compat = CompatMode::Latest;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.flow_control = flow;
    Client::new(cfg).unwrap()
}

/// A session pair where the server grants `server_fc` and the client grants `client_fc`.
async fn fc_pair(
    server_fc: Option<FlowControlConfig>,
    client_fc: Option<FlowControlConfig>,
) -> (H3Session, H3Session, Server) {
    let (server, tls) = server_with(|c| c.flow_control = server_fc);
    let client = fc_client(&tls, client_fc);
    let req = request(&server, "/fc");
    let (c, s) = tokio::join!(client.connect(&req), async {
        let r = server.accept().await.unwrap();
        r.accept(AcceptOptions::default()).await.unwrap()
    });
    (c.unwrap(), s, server)
}

/// Asserts that `f` does not complete within a short while (it waits for credit).
async fn assert_pending<F: std::future::Future>(f: F) {
    assert!(
        tokio::time::timeout(Duration::from_millis(150), f)
            .await
            .is_err(),
        "expected to wait for flow-control credit"
    );
}

#[tokio::test]
async fn stats_report_limits_both_ways_only_when_negotiated() {
    let (c, s, _server) = fc_pair(Some(fc(1000, 2, 3)), Some(fc(4000, 5, 6))).await;
    let lim = |d, b, u| FlowLimits {
        max_data: d,
        max_streams_bidi: b,
        max_streams_uni: u,
    };
    assert_eq!(c.stats().local_limits, Some(lim(4000, 5, 6)));
    assert_eq!(c.stats().peer_limits, Some(lim(1000, 2, 3)));
    assert_eq!(s.stats().local_limits, Some(lim(1000, 2, 3)));
    assert_eq!(s.stats().peer_limits, Some(lim(4000, 5, 6)));

    // The client does not offer flow control: off, one session per connection as before.
    let (c, s, _server) = fc_pair(Some(fc(1000, 2, 3)), None).await;
    assert_eq!(c.stats().peer_limits, None);
    assert_eq!(s.stats().local_limits, None);
    // Nor the server.
    let (c, s, _server) = fc_pair(None, Some(fc(1000, 2, 3))).await;
    assert_eq!(c.stats().local_limits, None);
    assert_eq!(s.stats().peer_limits, None);
}

#[tokio::test]
async fn second_bidi_stream_waits_for_stream_credit() {
    // FC-1: the server allows one bidirectional stream.
    let (c, s, _server) = fc_pair(Some(fc(1 << 20, 1, 1)), Some(fc(1 << 20, 10, 10))).await;
    let (mut tx, mut rx) = timeout(c.open_bi()).await.unwrap();
    tx.write_all(b"one").await.unwrap();
    tx.finish().unwrap();

    // The second open waits (and, cancelled, gives nothing away).
    assert_pending(c.open_bi()).await;
    let second = tokio::spawn({
        let c = c.clone();
        async move {
            let (mut tx, rx) = c.open_bi().await.unwrap();
            tx.write_all(b"two").await.unwrap();
            tx.finish().unwrap();
            (tx, rx)
        }
    });

    // The server serves the first stream; once both halves are gone it grants another.
    let (mut ptx, mut prx) = timeout(s.accept_bi()).await.unwrap();
    assert_eq!(prx.read_to_end(100).await.unwrap(), b"one");
    ptx.write_all(b"ONE").await.unwrap();
    ptx.finish().unwrap();
    drop((ptx, prx));
    assert_eq!(timeout(rx.read_to_end(100)).await.unwrap(), b"ONE");

    let (_tx2, _rx2) = timeout(second).await.unwrap();
    let (_ptx, mut prx) = timeout(s.accept_bi()).await.unwrap();
    assert_eq!(prx.read_to_end(100).await.unwrap(), b"two");
    assert_eq!(c.stats().peer_limits.unwrap().max_streams_bidi, 2);
    assert_eq!(s.stats().local_limits.unwrap().max_streams_bidi, 2);
    assert_eq!(c.stats().bidi_opened_local, 2);

    // Unidirectional credit is separate: one uni stream, the second waits.
    let mut u = timeout(c.open_uni()).await.unwrap();
    u.finish().unwrap();
    assert_pending(c.open_uni()).await;
}

#[tokio::test]
async fn writer_stalls_at_max_data_and_resumes_with_credit() {
    // FC-2: the server allows 1000 payload bytes; the stream header does not count.
    let (c, s, _server) = fc_pair(Some(fc(1000, 10, 10)), Some(fc(1 << 20, 10, 10))).await;
    let (mut tx, _rx) = timeout(c.open_bi()).await.unwrap();
    let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
    assert_eq!(timeout(tx.write(&data)).await.unwrap(), 1000);
    assert_pending(tx.write(&data[1000..])).await;
    assert_eq!(c.stats().bytes_sent, 1000);

    // The writer finishes in the background once credit arrives.
    let writer = tokio::spawn(async move {
        tx.write_all(&data[1000..]).await.unwrap();
        tx.finish().unwrap();
        tx
    });
    // Reading releases credit: WT_MAX_DATA is re-granted past half the window.
    let (_ptx, mut prx) = timeout(s.accept_bi()).await.unwrap();
    let got = timeout(prx.read_to_end(4096)).await.unwrap();
    assert_eq!(got.len(), 1500);
    assert!(got.iter().enumerate().all(|(i, b)| *b == i as u8));
    let _tx = timeout(writer).await.unwrap();
    assert!(c.stats().peer_limits.unwrap().max_data > 1000);
    assert_eq!(c.stats().bytes_sent, 1500);

    // write_chunk splits at the credit boundary too.
    let (c, s, _server) = fc_pair(Some(fc(100, 10, 10)), Some(fc(1 << 20, 10, 10))).await;
    let mut u = timeout(c.open_uni()).await.unwrap();
    let writer = tokio::spawn(async move {
        u.write_chunk(bytes::Bytes::from(vec![7u8; 1000]))
            .await
            .unwrap();
        u.finish().unwrap();
        u
    });
    let mut r = timeout(s.accept_uni()).await.unwrap();
    assert_eq!(timeout(r.read_to_end(4096)).await.unwrap(), vec![7u8; 1000]);
    let _u = timeout(writer).await.unwrap();
}

#[tokio::test]
async fn server_stream_credit_from_the_client() {
    // The client grants the server one uni stream; the server's second open waits until the
    // client application is done with the first.
    let (c, s, _server) = fc_pair(Some(fc(1 << 20, 10, 10)), Some(fc(1 << 20, 1, 1))).await;
    let mut u = timeout(s.open_uni()).await.unwrap();
    u.write_all(b"first").await.unwrap();
    u.finish().unwrap();
    assert_pending(s.open_uni()).await;
    let mut r = timeout(c.accept_uni()).await.unwrap();
    assert_eq!(r.read_to_end(100).await.unwrap(), b"first");
    drop(r);
    let mut u2 = timeout(s.open_uni()).await.unwrap();
    u2.finish().unwrap();
    let mut r = timeout(c.accept_uni()).await.unwrap();
    assert_eq!(r.read_to_end(100).await.unwrap(), b"");
}

#[tokio::test]
async fn blocked_open_fails_when_the_session_ends() {
    let (c, s, _server) = fc_pair(Some(fc(1 << 20, 1, 0)), Some(fc(1 << 20, 1, 1))).await;
    let _first = timeout(c.open_bi()).await.unwrap();
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { c.open_uni().await.map(|_| ()) }
    });
    s.close(7, "bye").unwrap();
    assert!(timeout(waiting).await.unwrap().is_err());
}
