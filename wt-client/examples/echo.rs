//! Connects to the URL given on the command line, sends "Hello!", prints the echo, closes.
//!
//! ```text
//! cargo run -p wt-client --example echo -- https://localhost:4433/echo [CERT_HASH_HEX]
//! ```

use wt_client::{Frame, Msg, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: echo URL [SERVER_CERT_SHA256_HEX]")?;
    let mut opts = Options::default();
    if let Some(hex) = args.next() {
        let hash = wt_core::tls::parse_cert_hash(&hex).ok_or("bad certificate hash")?;
        opts = opts.cert_hash(hash);
    }

    let conn = wt_client::connect(&url, opts).await?;
    conn.send(Frame::binary("Hello!")).await?;
    match conn.recv().await? {
        Msg::Binary(echo) => println!("echo: {}", String::from_utf8_lossy(&echo)),
        other => println!("unexpected: {other:?}"),
    }
    conn.close().await?;
    Ok(())
}
