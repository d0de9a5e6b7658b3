//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use wt_core::tls::ServerTls;
use wt_core::{AcceptOptions, Acceptor, CompatMode, ConnectRequest, Connector, IncomingRequest};
use wt_h3::{Client, ClientConfig, Server, ServerConfig, Session};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn tls() -> ServerTls {
    ServerTls::self_signed(&["localhost"]).unwrap()
}

pub fn server_with(f: impl FnOnce(&mut ServerConfig)) -> (Server, ServerTls) {
    init_tracing();
    let tls = tls();
    let mut cfg = ServerConfig::new(tls.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
    f(&mut cfg);
    (Server::bind(cfg).unwrap(), tls)
}

pub fn client(tls: &ServerTls, mode: CompatMode) -> Client {
    let mut cfg = ClientConfig::default();
    cfg.tls.cert_hashes.push(tls.cert_hash());
    cfg.compat = mode;
    cfg.connect_timeout = Duration::from_secs(5);
    Client::new(cfg).unwrap()
}

pub fn request(server: &Server, path: &str) -> ConnectRequest {
    ConnectRequest {
        host: "127.0.0.1".into(),
        port: server.local_addr().port(),
        authority: format!("localhost:{}", server.local_addr().port()),
        path: path.into(),
        origin: Some("https://example.org".into()),
        ..Default::default()
    }
}

/// A connected client/server session pair.
pub async fn pair(mode: CompatMode) -> (Session, Session, Server) {
    let (server, tls) = server_with(|_| {});
    let client = client(&tls, mode);
    let req = request(&server, "/test");
    let (c, s) = tokio::join!(client.connect(&req), async {
        let r = server.accept().await.unwrap();
        r.accept(AcceptOptions::default()).await.unwrap()
    });
    (c.unwrap(), s, server)
}

pub async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test step timed out")
}
