//! The interop matrix: scenarios (peer × role × transport), their checks, and the rendered
//! table.

use std::fmt::Write as _;
use std::time::Duration;

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check passed, with a remark worth printing (e.g. a protocol limitation of the peer).
    PassNote(String),
    /// The check failed: why.
    Fail(String),
    /// The check could not run: why (missing tool, unsupported by the peer).
    Skip(String),
}

impl Outcome {
    /// Short cell text.
    pub fn cell(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::PassNote(_) => "PASS*",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "SKIP",
        }
    }

    /// True for a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }

    /// The remark, failure or skip reason, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::PassNote(s) | Outcome::Fail(s) | Outcome::Skip(s) => Some(s),
        }
    }

    /// `Pass` on `Ok`, `Fail` on `Err`.
    pub fn from_result(r: Result<(), String>) -> Outcome {
        match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        }
    }
}

/// The check columns, in table order.
pub const CHECKS: [&str; 6] = [
    "connect",
    "bidi",
    "uni",
    "datagram",
    "close-sent",
    "close-received",
];

/// One line of the matrix: a client talking to a server over a transport.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The independent implementation (`aioquic`, `chromium`, `wtransport`, …).
    pub peer: String,
    /// The client (`wt-h3 auto`, `aioquic`, …).
    pub client: String,
    /// The server.
    pub server: String,
    /// `h3` or `h2`.
    pub transport: &'static str,
    /// Check name → outcome, in the order they ran.
    pub checks: Vec<(String, Outcome)>,
    /// How long the scenario took.
    pub elapsed: Duration,
}

impl Scenario {
    /// An empty scenario.
    pub fn new(peer: &str, client: &str, server: &str, transport: &'static str) -> Scenario {
        Scenario {
            peer: peer.to_owned(),
            client: client.to_owned(),
            server: server.to_owned(),
            transport,
            checks: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Records a check (replacing an earlier outcome of the same name).
    pub fn set(&mut self, name: &str, outcome: Outcome) {
        if let Some(slot) = self.checks.iter_mut().find(|(n, _)| n == name) {
            slot.1 = outcome;
        } else {
            self.checks.push((name.to_owned(), outcome));
        }
    }

    /// The outcome of a check, if it ran.
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.checks.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    /// Marks every check in `names` that has no outcome yet as skipped with `why`.
    pub fn skip_rest(&mut self, names: &[&str], why: &str) {
        for n in names {
            if self.get(n).is_none() {
                self.set(n, Outcome::Skip(why.to_owned()));
            }
        }
    }

    /// Marks every check in `names` that has no outcome yet as failed with `why`.
    pub fn fail_rest(&mut self, names: &[&str], why: &str) {
        for n in names {
            if self.get(n).is_none() {
                self.set(n, Outcome::Fail(why.to_owned()));
            }
        }
    }

    /// True if any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|(_, o)| o.is_fail())
    }
}

/// Counts of outcomes over a whole matrix: (passed, failed, skipped).
pub fn totals(scenarios: &[Scenario]) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for (_, o) in scenarios.iter().flat_map(|s| &s.checks) {
        match o {
            Outcome::Pass | Outcome::PassNote(_) => t.0 += 1,
            Outcome::Fail(_) => t.1 += 1,
            Outcome::Skip(_) => t.2 += 1,
        }
    }
    t
}

/// Renders the matrix: one line per scenario, one column per check (`-` = not applicable),
/// then a numbered note for every failure, skip and remark, then the totals line.
pub fn render(scenarios: &[Scenario]) -> String {
    let mut extra: Vec<&str> = Vec::new();
    for s in scenarios {
        for (n, _) in &s.checks {
            if !CHECKS.contains(&n.as_str()) && !extra.contains(&n.as_str()) {
                extra.push(n);
            }
        }
    }
    let cols: Vec<&str> = CHECKS.iter().copied().chain(extra).collect();
    let heads = ["peer", "client → server", "tp"];
    let label = |s: &Scenario| format!("{} → {}", s.client, s.server);
    let w0 = scenarios
        .iter()
        .map(|s| s.peer.chars().count())
        .chain([heads[0].len()])
        .max()
        .unwrap_or(4);
    let w1 = scenarios
        .iter()
        .map(|s| label(s).chars().count())
        .chain([heads[1].chars().count()])
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    let pad = |s: &str, w: usize| {
        let n = s.chars().count();
        format!("{s}{}", " ".repeat(w.saturating_sub(n)))
    };
    let _ = write!(
        out,
        "{}  {}  {}",
        pad(heads[0], w0),
        pad(heads[1], w1),
        pad(heads[2], 2)
    );
    for c in &cols {
        let _ = write!(out, "  {}", pad(c, c.len().max(6)));
    }
    let _ = writeln!(out, "  time");
    let mut notes: Vec<String> = Vec::new();
    for s in scenarios {
        let _ = write!(
            out,
            "{}  {}  {}",
            pad(&s.peer, w0),
            pad(&label(s), w1),
            pad(s.transport, 2)
        );
        for c in &cols {
            let cell = match s.get(c) {
                None => "-".to_owned(),
                Some(o) => match o.detail() {
                    None => o.cell().to_owned(),
                    Some(d) => {
                        notes.push(format!(
                            "{} {} → {} ({}) {c}: {d}",
                            o.cell().trim_end_matches('*'),
                            s.client,
                            s.server,
                            s.transport
                        ));
                        format!("{} [{}]", o.cell(), notes.len())
                    }
                },
            };
            let _ = write!(out, "  {}", pad(&cell, c.len().max(6)));
        }
        let _ = writeln!(out, "  {:.1}s", s.elapsed.as_secs_f64());
    }
    if !notes.is_empty() {
        out.push('\n');
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {n}", i + 1);
        }
    }
    let (p, f, k) = totals(scenarios);
    let _ = writeln!(out, "\ninterop: {p} passed, {f} failed, {k} skipped");
    out
}
