//! Loopback servers for the integration tests: the wt-testserver echo handler over HTTP/3 or
//! HTTP/2, with a self-signed certificate the client trusts by hash.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use wt_client::{Options, Transport};
use wt_core::tls::ServerTls;
use wt_testserver::{serve, EchoConfig, EchoHandler, Listener, ServeOptions};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    H3,
    H2,
}

pub struct Server {
    pub listener: Listener<EchoHandler>,
    pub addr: SocketAddr,
    pub hash: [u8; 32],
    pub kind: Kind,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn opts(&self) -> Options {
        client_opts(self.kind, self.hash)
    }
}

pub fn tls() -> ServerTls {
    ServerTls::self_signed(&["localhost", "127.0.0.1"]).expect("self-signed certificate")
}

pub fn client_opts(kind: Kind, hash: [u8; 32]) -> Options {
    Options::default()
        .transport(match kind {
            Kind::H3 => Transport::H3,
            Kind::H2 => Transport::H2,
        })
        .cert_hash(hash)
        .connect_timeout(Duration::from_secs(5))
}

pub fn bind_h3(tls: ServerTls, addr: SocketAddr) -> wt_h3::Server {
    wt_h3::Server::bind(wt_h3::ServerConfig::new(tls, addr)).expect("bind h3")
}

pub fn bind_h2(tls: ServerTls, addr: SocketAddr) -> wt_h2::Server {
    wt_h2::Server::bind(wt_h2::ServerConfig::new(tls, addr)).expect("bind h2")
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// An echo server on loopback.
pub fn echo(kind: Kind) -> Server {
    let tls = tls();
    let hash = tls.cert_hash();
    let listener = match kind {
        Kind::H3 => serve::<EchoHandler, _>(
            bind_h3(tls, any_port()),
            EchoConfig::default(),
            ServeOptions::default(),
        ),
        Kind::H2 => serve::<EchoHandler, _>(
            bind_h2(tls, any_port()),
            EchoConfig::default(),
            ServeOptions::default(),
        ),
    };
    let addr = listener.local_addrs()[0];
    Server {
        listener,
        addr,
        hash,
        kind,
    }
}

/// Generates `<name>_h3` and `<name>_h2` tests running `async fn <name>(kind: Kind)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod over_h3 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Kind::H3).await
                }
            )*
        }
        mod over_h2 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Kind::H2).await
                }
            )*
        }
    };
}
