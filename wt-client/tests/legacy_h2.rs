//! The legacy HTTP/2 dialect with swapped stream-id numbering (what servers built on
//! @fails-components/webtransport expect), selected through `Options`.

mod common;

use std::time::Duration;

use common::{any_port, client_opts, tls, Kind};
use wt_client::{CompatMode, Frame, Msg, StreamIdParity, StreamKind};
use wt_core::Dialect;
use wt_testserver::{serve, EchoConfig, EchoHandler, ServeOptions};

#[tokio::test]
async fn swapped_parity_reaches_the_h2_session() {
    let tls = tls();
    let hash = tls.cert_hash();
    let mut cfg = wt_h2::ServerConfig::new(tls, any_port());
    cfg.dialect = Dialect::H2Legacy; // stream-id parity: auto-detected from our first stream
    let listener = serve::<EchoHandler, _>(
        wt_h2::Server::bind(cfg).expect("bind h2"),
        EchoConfig::default(),
        ServeOptions::default(),
    );
    let url = format!(
        "https://127.0.0.1:{}/echo",
        listener.local_addrs()[0].port()
    );
    let opts = client_opts(Kind::H2, hash)
        .compat(CompatMode::LegacyBrowserCompat)
        .h2_stream_id_parity(StreamIdParity::Swapped);
    let conn = wt_client::connect(&url, opts).await.unwrap();
    assert_eq!(conn.info().await.unwrap().dialect, Dialect::H2Legacy);
    // Swapped numbering: the client's bidi streams are 1, 5, …; its uni streams 3, 7, ….
    assert_eq!(conn.default_stream_id().0, 1);
    let uni = conn.open_stream(StreamKind::Uni).await.unwrap();
    assert_eq!(uni.0, 3);
    conn.send(Frame::binary("swapped")).await.unwrap();
    let echo = conn.recv_timeout(Duration::from_secs(5)).await.unwrap();
    assert_eq!(echo, Msg::Binary("swapped".into()));
    conn.close().await.unwrap();
}
