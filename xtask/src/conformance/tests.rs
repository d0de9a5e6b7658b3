//! Tests of the suite itself: the echo server passes, deliberately broken servers make the
//! named cases fail.

use std::sync::Arc;
use std::time::Duration;

use super::ours::{EmbeddedServer, ServerVariant};
use super::report::{Outcome, Row};
use super::{plan, run, Args};

/// Runs the cases matching `cases` (exact IDs) on `transport` against `variant`.
async fn run_cases(
    variant: ServerVariant,
    cases: &[&str],
    transport: Option<&str>,
    compat: Option<&str>,
) -> Vec<Row> {
    let server = EmbeddedServer::start(variant)
        .await
        .expect("embedded server starts");
    let args = Args {
        transport: transport.map(str::to_owned),
        compat: compat.map(str::to_owned),
        case: cases.iter().map(|c| c.to_string()).collect(),
        ..Args::default()
    };
    let planned: Vec<_> = plan(&args)
        .into_iter()
        .filter(|p| cases.contains(&p.case.id))
        .collect();
    assert!(!planned.is_empty(), "no case selected for {cases:?}");
    let rows = run(&planned, Arc::new(server.target()), Duration::from_secs(3)).await;
    server.stop().await;
    rows
}

fn show(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| format!("{} {} {}: {:?}", r.id, r.transport, r.dialect, r.outcome))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_server_passes_the_stream_cases() {
    let rows = run_cases(ServerVariant::Echo, &["ST-1", "ST-2", "ST-6"], None, None).await;
    assert_eq!(rows.len(), 7, "{}", show(&rows));
    assert!(
        rows.iter().all(|r| r.outcome == Outcome::Pass),
        "{}",
        show(&rows)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_on_a_new_stream_fails_st1_and_st2() {
    let rows = run_cases(
        ServerVariant::WrongBidiEcho,
        &["ST-1", "ST-2"],
        None,
        Some("latest"),
    )
    .await;
    assert_eq!(rows.len(), 2, "{}", show(&rows));
    for r in &rows {
        match &r.outcome {
            Outcome::Fail(why) => assert!(why.contains("expected"), "{}", show(&rows)),
            other => panic!("{} {} should fail, got {other:?}", r.id, r.transport),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_h2_fin_codepoint_fails_the_fin_cases() {
    let rows = run_cases(
        ServerVariant::H2LegacyFinAsLatest,
        &["ST-2", "ST-6", "CL-2"],
        Some("h2"),
        Some("latest"),
    )
    .await;
    let st2 = rows.iter().find(|r| r.id == "ST-2").expect("ST-2 ran");
    assert!(
        matches!(&st2.outcome, Outcome::Fail(w) if w.contains("FIN")),
        "{}",
        show(&rows)
    );
    let st6 = rows.iter().find(|r| r.id == "ST-6").expect("ST-6 ran");
    assert!(matches!(st6.outcome, Outcome::Fail(_)), "{}", show(&rows));
    // A close does not involve WT_STREAM FIN: unaffected.
    let cl2 = rows.iter().find(|r| r.id == "CL-2").expect("CL-2 ran");
    assert_eq!(cl2.outcome, Outcome::Pass, "{}", show(&rows));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_misreports_fails_the_observation_cases() {
    let rows = run_cases(
        ServerVariant::LyingEcho,
        &["RS-3", "CL-1", "X-2"],
        Some("h3"),
        Some("latest"),
    )
    .await;
    assert_eq!(rows.len(), 3, "{}", show(&rows));
    for r in &rows {
        match &r.outcome {
            Outcome::Fail(why) => assert!(
                why.contains("expected the server to record"),
                "{}",
                show(&rows)
            ),
            other => panic!("{} should fail against a lying server, got {other:?}", r.id),
        }
    }
    // The stream cases do not depend on observations: unaffected.
    let rows = run_cases(
        ServerVariant::LyingEcho,
        &["ST-1"],
        Some("h3"),
        Some("latest"),
    )
    .await;
    assert_eq!(rows[0].outcome, Outcome::Pass, "{}", show(&rows));
}

#[test]
fn every_case_has_an_id_group_and_a_transport() {
    let all = super::cases::all();
    assert!(all.len() >= 70, "{} cases", all.len());
    let mut ids: Vec<_> = all.iter().map(|c| c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "duplicate case IDs");
    let planned = plan(&Args::default());
    for c in all {
        assert!(
            planned.iter().any(|p| p.case.id == c.id),
            "{} never runs",
            c.id
        );
    }
}
