//! The transport-independent suite of wt-core, over this crate's client and server, in every
//! client compat mode.

mod common;

use common::*;
use wt_core::CompatMode;

async fn run(mode: CompatMode) {
    let (server, tls) = server_with(|_| {});
    let client = client(&tls, mode);
    let req = request(&server, "/generic");
    wt_core::testsuite::run_all(&client, &server, req).await;
}

#[tokio::test]
async fn generic_suite_auto() {
    run(CompatMode::Auto).await;
}

#[tokio::test]
async fn generic_suite_latest() {
    run(CompatMode::Latest).await;
}

#[tokio::test]
async fn generic_suite_legacy() {
    run(CompatMode::LegacyBrowserCompat).await;
}
