//! Results: the case × transport × dialect table, totals per group, JSON output.

use std::collections::BTreeMap;

use serde::Serialize;

/// The outcome of one case in one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "UPPERCASE")]
pub enum Outcome {
    /// The server behaved as the reference says.
    Pass,
    /// It did not: expected vs got.
    Fail(String),
    /// Not applicable or not runnable here: why.
    Skip(String),
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Case ID from the wire reference (`HS-1`, `ST-2`, ...).
    pub id: &'static str,
    /// Group name.
    pub group: &'static str,
    /// What the case checks.
    pub title: &'static str,
    /// `h3` or `h2`.
    pub transport: &'static str,
    /// `latest` or `legacy`.
    pub dialect: &'static str,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Milliseconds taken.
    pub millis: u128,
}

/// Prints the table and the totals; returns (passed, failed, skipped).
pub fn print(rows: &[Row]) -> (usize, usize, usize) {
    println!(
        "{:<8} {:<46} {:<3} {:<7} {:<5} detail",
        "case", "title", "tp", "dialect", "res"
    );
    for r in rows {
        let (res, detail) = match &r.outcome {
            Outcome::Pass => ("PASS", String::new()),
            Outcome::Fail(why) => ("FAIL", why.clone()),
            Outcome::Skip(why) => ("SKIP", why.clone()),
        };
        let mut title = r.title.to_string();
        if title.len() > 46 {
            title.truncate(45);
            title.push('…');
        }
        println!(
            "{:<8} {:<46} {:<3} {:<7} {:<5} {}",
            r.id, title, r.transport, r.dialect, res, detail
        );
    }
    let mut groups: BTreeMap<(&str, &str), [usize; 3]> = BTreeMap::new();
    for r in rows {
        let g = groups.entry((r.group, r.transport)).or_default();
        match r.outcome {
            Outcome::Pass => g[0] += 1,
            Outcome::Fail(_) => g[1] += 1,
            Outcome::Skip(_) => g[2] += 1,
        }
    }
    println!();
    println!(
        "{:<22} {:<3} {:>5} {:>5} {:>5}",
        "group", "tp", "pass", "fail", "skip"
    );
    let mut total = [0usize; 3];
    for ((group, tp), c) in &groups {
        println!("{group:<22} {tp:<3} {:>5} {:>5} {:>5}", c[0], c[1], c[2]);
        for i in 0..3 {
            total[i] += c[i];
        }
    }
    let cases_per_tp = |tp: &str| {
        let mut ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.transport == tp)
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    println!(
        "cases: {} over h3, {} over h2",
        cases_per_tp("h3"),
        cases_per_tp("h2")
    );
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total[0], total[1], total[2]
    );
    (total[0], total[1], total[2])
}
