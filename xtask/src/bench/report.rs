//! Aggregation (median, spread, ratio to the baseline, targets), the table and the JSON.

use std::collections::BTreeMap;

use super::common::Sample;
use super::scale::ScaleResult;
use super::{Stack, Workload};

/// A performance target, expressed on the ratio ours / baseline of the medians.
#[derive(Copy, Clone, Debug)]
pub struct Target {
    /// The ratio must be at least this (throughput-like metrics).
    pub min_ratio: Option<f64>,
    /// The ratio must be at most this (latency-like metrics).
    pub max_ratio: Option<f64>,
    /// The `delivered_pct` extra must be at least this.
    pub min_delivered_pct: Option<f64>,
}

impl Target {
    const fn at_least(r: f64) -> Option<Target> {
        Some(Target {
            min_ratio: Some(r),
            max_ratio: None,
            min_delivered_pct: None,
        })
    }

    const fn at_most(r: f64) -> Option<Target> {
        Some(Target {
            min_ratio: None,
            max_ratio: Some(r),
            min_delivered_pct: None,
        })
    }

    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.min_ratio {
            parts.push(format!(">={r:.2}x"));
        }
        if let Some(r) = self.max_ratio {
            parts.push(format!("<={r:.2}x"));
        }
        if let Some(p) = self.min_delivered_pct {
            parts.push(format!(">={p:.0}%dlv"));
        }
        parts.join(" ")
    }
}

/// The target of `stack` on `workload`, if the brief sets one.
pub fn target(w: Workload, s: Stack) -> Option<Target> {
    use Stack::*;
    use Workload::*;
    match (s, w) {
        (WtH3, BulkUpload | BulkEcho) => Target::at_least(0.97),
        (WtH3, Latency) => Target::at_most(1.05),
        (WtH3, Churn) => Target::at_least(0.90),
        (WtH3, Datagrams) => Some(Target {
            min_ratio: Some(0.95),
            max_ratio: None,
            min_delivered_pct: Some(98.0),
        }),
        (WtH2, BulkUpload | BulkEcho) => Target::at_least(0.90),
        (WtH2, Latency) => Target::at_most(1.10),
        (WtH2, Churn) => Target::at_least(0.85),
        (WtClientH3 | WtClientH2, BulkUpload | BulkEcho) => Target::at_least(0.90),
        (WtClientH3 | WtClientH2, Latency) => Target::at_most(1.10),
        _ => None,
    }
}

/// One line of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// `h3` or `h2`.
    pub transport: String,
    /// Stack name.
    pub stack: String,
    /// What `median` measures.
    pub metric: String,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// Successful runs.
    pub runs: usize,
    /// Median of the runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// (max − min) / median, percent.
    pub spread_pct: f64,
    /// Medians of the secondary numbers.
    pub extras: BTreeMap<String, f64>,
    /// The stack compared against.
    pub baseline: Option<String>,
    /// Median over rounds of (this run / the baseline's run of the same round).
    pub ratio: Option<f64>,
    /// The lowest and the highest of those per-round ratios. With 5 rounds they bound the
    /// median of the per-round ratio's distribution with about 94 % confidence (each round
    /// falls on either side of it with probability ½), whatever that distribution is: a
    /// target line inside this range is within what the machine's noise moves.
    pub ratio_range: Option<(f64, f64)>,
    /// The target, as text.
    pub target: Option<String>,
    /// `MET`, `MISSED`, or `n/a` (no data).
    pub status: Option<String>,
    /// Failed runs.
    pub errors: Vec<String>,
    /// Each round's headline number and, where the round ran in legs, every leg's, in the
    /// order they ran (empty for the scale rows).
    pub rounds: Vec<Round>,
}

/// One round of a (workload, stack) in the JSON report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Round {
    /// The round (from 0).
    pub round: usize,
    /// Its headline number (the legs pooled).
    pub value: f64,
    /// The share of the machine's CPU time stolen by the hypervisor while this stack's runs
    /// of the round ran, in % (absent where it could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_steal_pct: Option<f64>,
    /// Its legs, in the order they ran.
    pub legs: Vec<Leg>,
}

/// One run of a stack within a round.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Leg {
    /// Where it ran in the order of every run of this bench invocation (from 0, across
    /// workloads and stacks): the run with `seq - 1` ran right before it, so what a leg
    /// followed can be read off the report.
    pub seq: u64,
    /// Its headline number alone.
    pub value: f64,
}

/// The whole report (what `--json` writes).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// Rounds per workload.
    pub rounds: usize,
    /// Legs per round of the latency, churn and datagram workloads (`--legs`).
    pub legs: usize,
    /// Legs per round of the bulk workloads (each a share of the transfer on one stream).
    pub bulk_legs: usize,
    /// Worker threads of the shared runtime (`--workers`; scale's server runs its own two).
    pub workers: u16,
    /// Sizes used.
    pub sizes: super::common::Sizes,
    /// Wall-clock seconds of the whole run.
    pub total_secs: f64,
    /// Whether allocations were counted (the `bench` feature).
    pub allocations_counted: bool,
    /// The table.
    pub rows: Vec<Row>,
    /// Scale workload details.
    pub scale: Vec<ScaleResult>,
}

/// Samples of one (workload, stack).
#[derive(Debug, Default)]
pub struct Cell {
    /// Successful runs, with their round.
    pub samples: Vec<(usize, Sample)>,
    /// The legs of each round in `samples`, with the round.
    pub legs: Vec<(usize, Vec<Leg>)>,
    /// Failed runs.
    pub errors: Vec<String>,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The per-round ratios (ours / baseline) for the rounds where both ran, as their median
/// and their (lowest, highest) (see [`Row::ratio`] and [`Row::ratio_range`]). Runs of the same
/// round are close in time, so the median of their ratios follows the machine's drifting load
/// better than the ratio of the medians.
fn paired_ratio(ours: &Cell, base: &Cell) -> Option<(f64, (f64, f64))> {
    let mut v: Vec<f64> = ours
        .samples
        .iter()
        .filter_map(|(r, s)| {
            base.samples
                .iter()
                .find(|(rb, _)| rb == r)
                .map(|(_, b)| s.primary / b.primary)
        })
        .collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((median(&mut v), (lo, hi)))
}

/// Builds the rows of one workload from its cells (in stack order).
pub fn rows(w: Workload, cells: &[(Stack, Cell)]) -> Vec<Row> {
    let cell_of = |s: Stack| cells.iter().find(|(st, _)| *st == s).map(|(_, c)| c);
    let (metric, higher) = w.metric();
    let mut out = Vec::new();
    for (stack, cell) in cells {
        let mut prim: Vec<f64> = cell.samples.iter().map(|(_, x)| x.primary).collect();
        let m = median(&mut prim);
        let (min, max) = prim
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let mut extras: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (_, s) in &cell.samples {
            for (k, v) in &s.extra {
                extras.entry((*k).to_owned()).or_default().push(*v);
            }
        }
        // The worst round's stolen time too: a median hides the round it disturbed.
        let steal_max = extras
            .get("host_steal_pct")
            .map(|v| v.iter().copied().fold(0.0, f64::max));
        let mut extras: BTreeMap<String, f64> = extras
            .into_iter()
            .map(|(k, mut v)| (k, median(&mut v)))
            .collect();
        if let Some(m) = steal_max {
            extras.insert("host_steal_max_pct".to_owned(), m);
        }
        let baseline = stack.baseline();
        let paired = baseline
            .and_then(cell_of)
            .and_then(|b| paired_ratio(cell, b));
        let (ratio, ratio_range) = paired.unzip();
        let target = target(w, *stack);
        let status = target.map(|t| match ratio {
            None => "n/a".to_owned(),
            Some(r) => {
                let mut ok =
                    t.min_ratio.is_none_or(|x| r >= x) && t.max_ratio.is_none_or(|x| r <= x);
                if let Some(p) = t.min_delivered_pct {
                    ok &= extras.get("delivered_pct").is_some_and(|d| *d >= p);
                }
                if ok { "MET" } else { "MISSED" }.to_owned()
            }
        });
        out.push(Row {
            workload: w.name().to_owned(),
            transport: stack.transport().to_owned(),
            stack: stack.name().to_owned(),
            metric: metric.to_owned(),
            higher_is_better: higher,
            runs: prim.len(),
            median: m,
            min: if prim.is_empty() { f64::NAN } else { min },
            max: if prim.is_empty() { f64::NAN } else { max },
            spread_pct: if prim.is_empty() {
                f64::NAN
            } else {
                100.0 * (max - min) / m
            },
            extras,
            baseline: baseline.map(|b| b.name().to_owned()),
            ratio,
            ratio_range,
            target: target.map(|t| t.text()),
            status,
            errors: cell.errors.clone(),
            rounds: cell
                .samples
                .iter()
                .map(|(r, x)| Round {
                    round: *r,
                    value: x.primary,
                    host_steal_pct: x
                        .extra
                        .iter()
                        .find(|(k, _)| *k == "host_steal_pct")
                        .map(|(_, v)| *v),
                    legs: cell
                        .legs
                        .iter()
                        .find(|(lr, _)| lr == r)
                        .map(|(_, l)| l.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        });
    }
    out
}

/// Rows of the scale results: idle memory per session (target 64 KiB; wt-testserver over
/// HTTP/3 also compared with the raw quinn server) and CPU while active.
pub fn scale_rows(results: &[ScaleResult]) -> Vec<Row> {
    let quinn = results.iter().find(|r| r.stack == "quinn");
    let mut idle = Vec::new();
    let mut active = Vec::new();
    for r in results {
        let is_ours = r.stack != "quinn";
        let vs_quinn = (is_ours && r.transport == "h3").then_some(quinn).flatten();
        let mut idle_extras = BTreeMap::new();
        idle_extras.insert("sessions".to_owned(), r.sessions as f64);
        idle_extras.insert("rss_base_kib".to_owned(), r.rss_base_kib as f64);
        idle_extras.insert("rss_idle_kib".to_owned(), r.rss_idle_kib as f64);
        idle_extras.insert("connect_s".to_owned(), r.connect_secs);
        let mut active_extras = BTreeMap::new();
        active_extras.insert("kib_per_session".to_owned(), r.active_kib_per_session);
        active_extras.insert("cpu_ms_per_echo".to_owned(), r.cpu_ms_per_echo);
        active_extras.insert("echo_p50_us".to_owned(), r.echo_p50_us);
        active_extras.insert("echo_p99_us".to_owned(), r.echo_p99_us);
        active_extras.insert("echoes".to_owned(), r.echoes as f64);
        let errors = if r.errors > 0 {
            vec![format!("{} failed sessions or echoes", r.errors)]
        } else {
            Vec::new()
        };
        let row = |workload: &str,
                   metric: &str,
                   v: f64,
                   extras,
                   ratio: Option<f64>,
                   target: Option<String>,
                   status: Option<String>| Row {
            workload: workload.to_owned(),
            transport: r.transport.clone(),
            stack: r.stack.clone(),
            metric: metric.to_owned(),
            higher_is_better: false,
            runs: 1,
            median: v,
            min: v,
            max: v,
            spread_pct: 0.0,
            extras,
            baseline: ratio.map(|_| "quinn".to_owned()),
            ratio,
            ratio_range: None,
            target,
            status,
            errors: errors.clone(),
            rounds: Vec::new(),
        };
        idle.push(row(
            "scale-idle",
            "server KiB/session",
            r.idle_kib_per_session,
            idle_extras,
            vs_quinn.map(|q| r.idle_kib_per_session / q.idle_kib_per_session),
            is_ours.then(|| "<=64KiB".to_owned()),
            is_ours.then(|| {
                if r.idle_kib_per_session <= 64.0 {
                    "MET"
                } else {
                    "MISSED"
                }
                .to_owned()
            }),
        ));
        active.push(row(
            "scale-active",
            "server CPU % (1 core)",
            r.active_cpu_pct,
            active_extras,
            vs_quinn.map(|q| r.active_cpu_pct / q.active_cpu_pct),
            None,
            None,
        ));
    }
    idle.extend(active);
    idle
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v.abs() >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A per-round ratio range as `lo–hi`.
fn range_text((lo, hi): (f64, f64)) -> String {
    format!("{lo:.3}–{hi:.3}")
}

/// Prints the table.
pub fn print(report: &Report) {
    println!();
    println!(
        "{:<16} {:<3} {:<13} {:<22} {:>9} {:>7} {:<10} {:>6} {:<11} {:<14} {:<7} extras",
        "workload",
        "tp",
        "stack",
        "metric",
        "median",
        "spread",
        "vs",
        "ratio",
        "rounds",
        "target",
        "status"
    );
    println!("{}", "-".repeat(145));
    let mut last = String::new();
    for r in &report.rows {
        if !last.is_empty() && last != r.workload {
            println!();
        }
        last.clone_from(&r.workload);
        let extras: Vec<String> = r
            .extras
            .iter()
            .map(|(k, v)| format!("{k}={}", num(*v)))
            .collect();
        let mut extras = extras.join(" ");
        if !r.errors.is_empty() {
            extras.push_str(&format!(" ERRORS({}): {}", r.errors.len(), r.errors[0]));
        }
        println!(
            "{:<16} {:<3} {:<13} {:<22} {:>9} {:>7} {:<10} {:>6} {:<11} {:<14} {:<7} {}",
            r.workload,
            r.transport,
            r.stack,
            r.metric,
            num(r.median),
            if r.spread_pct.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.1}%", r.spread_pct)
            },
            r.baseline.as_deref().unwrap_or(""),
            r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.ratio_range.map(range_text).unwrap_or_default(),
            r.target.as_deref().unwrap_or(""),
            r.status.as_deref().unwrap_or(""),
            extras
        );
    }
    println!();
    let met = report
        .rows
        .iter()
        .filter(|r| r.status.as_deref() == Some("MET"))
        .count();
    let missed: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.status.as_deref() == Some("MISSED"))
        .map(|r| {
            let rounds = r
                .ratio_range
                .map(|x| format!(" (rounds {})", range_text(x)))
                .unwrap_or_default();
            format!("{}/{}/{}{rounds}", r.workload, r.transport, r.stack)
        })
        .collect();
    println!(
        "targets: {met} met, {} missed{}{}",
        missed.len(),
        if missed.is_empty() { "" } else { ": " },
        missed.join(", ")
    );
    println!(
        "rounds {}, {} legs (bulk {}), {} worker thread{}, total {:.0} s, allocations {}counted",
        report.rounds,
        report.legs,
        report.bulk_legs,
        report.workers,
        if report.workers == 1 { "" } else { "s" },
        report.total_secs,
        if report.allocations_counted {
            ""
        } else {
            "not "
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: &[(usize, f64)]) -> Cell {
        Cell {
            samples: v.iter().map(|(r, x)| (*r, Sample::new(*x))).collect(),
            legs: Vec::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratio_pairs_runs_of_the_same_round() {
        let ours = cell(&[(0, 90.0), (1, 45.0), (2, 99.0)]);
        let base = cell(&[(0, 100.0), (1, 50.0), (2, 100.0)]);
        let (r, (lo, hi)) = paired_ratio(&ours, &base).unwrap();
        assert!((r - 0.9).abs() < 1e-9);
        assert!(paired_ratio(&ours, &cell(&[(7, 1.0)])).is_none());
        assert!((lo - 0.9).abs() < 1e-9 && (hi - 0.99).abs() < 1e-9);
        // A round the baseline did not run is left out of both.
        let partial = cell(&[(0, 100.0), (2, 100.0)]);
        assert_eq!(
            paired_ratio(&ours, &partial).map(|(_, range)| range),
            Some((0.9, 0.99))
        );
    }

    #[test]
    fn targets_are_judged() {
        let cells = vec![
            (Stack::WtH3, cell(&[(0, 96.0)])),
            (Stack::Quinn, cell(&[(0, 100.0)])),
        ];
        let r = rows(Workload::BulkUpload, &cells);
        assert_eq!(r[0].status.as_deref(), Some("MISSED"));
        assert_eq!(r[0].ratio_range, Some((0.96, 0.96)));
        assert_eq!(r[1].status, None);
        assert_eq!(r[1].ratio_range, None);
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["ratio_range"][1], 0.96);
        let cells = vec![
            (Stack::WtH3, cell(&[(0, 104.0)])),
            (Stack::Quinn, cell(&[(0, 100.0)])),
        ];
        let r = rows(Workload::Latency, &cells);
        assert_eq!(r[0].status.as_deref(), Some("MET"));
    }

    #[test]
    fn rows_keep_every_round_and_its_legs() {
        let leg = |seq, value| Leg { seq, value };
        let mut ours = cell(&[(0, 90.0), (1, 80.0)]);
        ours.legs = vec![
            (0, vec![leg(0, 85.0), leg(3, 95.0)]),
            (1, vec![leg(5, 70.0), leg(6, 90.0)]),
        ];
        let cells = vec![(Stack::WtH3, ours), (Stack::Quinn, cell(&[(0, 100.0)]))];
        let r = rows(Workload::Churn, &cells);
        let rounds: Vec<(usize, f64, Vec<Leg>)> = r[0]
            .rounds
            .iter()
            .map(|x| (x.round, x.value, x.legs.clone()))
            .collect();
        assert_eq!(
            rounds,
            vec![
                (0, 90.0, vec![leg(0, 85.0), leg(3, 95.0)]),
                (1, 80.0, vec![leg(5, 70.0), leg(6, 90.0)]),
            ]
        );
        // A stack without legs (one run per round) still lists its rounds.
        assert_eq!(r[1].rounds.len(), 1);
        assert!(r[1].rounds[0].legs.is_empty());
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["rounds"][1]["legs"][0]["seq"], 5);
        // No stolen time was read for these rounds: the field is left out.
        assert!(json["rounds"][0].get("host_steal_pct").is_none());
    }

    #[test]
    fn rounds_keep_their_stolen_time() {
        let mut sample = Sample::new(90.0);
        sample.extra.push(("host_steal_pct", 12.5));
        let ours = Cell {
            samples: vec![(0, sample), (1, Sample::new(80.0))],
            legs: Vec::new(),
            errors: Vec::new(),
        };
        let r = rows(Workload::Latency, &[(Stack::WtH3, ours)]);
        assert_eq!(r[0].rounds[0].host_steal_pct, Some(12.5));
        assert_eq!(r[0].rounds[1].host_steal_pct, None);
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["rounds"][0]["host_steal_pct"], 12.5);
    }
}
