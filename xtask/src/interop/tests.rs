//! Tests of the runner's own logic (no network).

use super::matrix::{render, totals, Outcome, Scenario};
use super::peers::parse_checks;

fn sample() -> Vec<Scenario> {
    let mut a = Scenario::new("aioquic", "wt-h3 auto", "aioquic", "h3");
    a.set("connect", Outcome::PassNote("dialect h3-draft02".into()));
    a.set("bidi", Outcome::Pass);
    a.set("uni", Outcome::Fail("echo was \"x\"".into()));
    let mut b = Scenario::new("fails-components", "fails", "wt-testserver", "h2");
    b.skip_rest(&super::ALL, "npm is not installed");
    vec![a, b]
}

#[test]
fn totals_count_every_outcome() {
    assert_eq!(totals(&sample()), (2, 1, 6));
}

#[test]
fn render_has_columns_cells_notes_and_totals() {
    let out = render(&sample());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("peer"));
    for c in super::ALL {
        assert!(lines[0].contains(c), "header lacks {c}: {}", lines[0]);
    }
    assert!(lines[1].contains("wt-h3 auto → aioquic"));
    assert!(lines[1].contains("PASS* [1]"));
    assert!(lines[1].contains("FAIL [2]"));
    // Checks that did not run are "-".
    assert!(lines[1].contains(" - "));
    assert!(out.contains("[2] FAIL wt-h3 auto → aioquic (h3) uni: echo was \"x\""));
    assert!(out.contains("] SKIP fails → wt-testserver (h2) connect: npm is not installed"));
    assert!(out
        .trim_end()
        .ends_with("interop: 2 passed, 1 failed, 6 skipped"));
}

#[test]
fn extra_checks_get_their_own_column() {
    let mut s = Scenario::new("chromium", "chromium", "wt-testserver", "h3");
    s.set("close-at-accept", Outcome::Pass);
    let out = render(&[s]);
    assert!(out
        .lines()
        .next()
        .is_some_and(|h| h.contains("close-at-accept")));
}

#[test]
fn set_replaces_and_failed_reports() {
    let mut s = Scenario::new("p", "c", "s", "h3");
    s.set("close-sent", Outcome::Pass);
    assert!(!s.failed());
    s.set("close-sent", Outcome::Fail("server saw nothing".into()));
    assert_eq!(s.checks.len(), 1);
    assert!(s.failed());
    // skip_rest and fail_rest leave recorded outcomes alone.
    s.skip_rest(&["close-sent", "bidi"], "n/a");
    assert!(s.get("close-sent").is_some_and(Outcome::is_fail));
    assert_eq!(s.get("bidi"), Some(&Outcome::Skip("n/a".into())));
}

#[test]
fn peer_lines_fold_into_a_scenario() {
    let lines: Vec<String> = [
        "READY 1",
        "PASS bidi",
        "FAIL uni: answer was \"\"",
        "PASS close-sent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(parse_checks(&lines).len(), 3);
    let mut s = Scenario::new("aioquic", "aioquic", "wt-testserver", "h3");
    super::aioquic::apply_client_lines(&mut s, &lines, std::path::Path::new("log"));
    assert_eq!(s.get("connect"), Some(&Outcome::Pass));
    assert_eq!(s.get("uni"), Some(&Outcome::Fail("answer was \"\"".into())));
    let mut empty = Scenario::new("aioquic", "aioquic", "wt-testserver", "h3");
    super::aioquic::apply_client_lines(&mut empty, &[], std::path::Path::new("log"));
    assert!(empty.get("connect").is_some_and(Outcome::is_fail));
}
