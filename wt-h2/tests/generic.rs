//! The transport-independent suite of wt-core, over this crate's client and server.

use std::net::SocketAddr;
use std::time::Duration;

use wt_core::tls::ServerTls;
use wt_core::ConnectRequest;
use wt_h2::{Client, ClientConfig, Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_suite() {
    let tls = ServerTls::self_signed(&["localhost"]).unwrap();
    let leaf = tls.leaf_pem();
    let server = Server::bind(ServerConfig::new(
        tls,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
    .unwrap();
    let mut cc = ClientConfig::default();
    cc.tls.webpki_roots = false;
    cc.tls.add_ca_pem(leaf.as_bytes()).unwrap();
    cc.connect_timeout = Duration::from_secs(10);
    let client = Client::new(cc).unwrap();
    let request = ConnectRequest {
        host: "localhost".into(),
        port: server.local_addr().port(),
        path: "/".into(),
        ..Default::default()
    };
    wt_core::testsuite::run_all(&client, &server, request).await;
}
