//! What a run measured, as written to `target/bench/results.json`: every round's raw
//! numbers, the medians, each figure's ratio to the baseline measured in the same
//! run, the goals from DESIGN.md, the date, the commit and the settings; and the
//! markdown report rendered from it (`bench render results.json`), so the table is
//! always a view of the JSON and never computed twice.

use crate::stats::{median, ratio};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`, when the first section started and the last ended.
    pub started_utc: String,
    pub ended_utc: String,
    /// `git rev-parse --short HEAD`, with "(with uncommitted changes)" when dirty.
    pub commit: String,
    /// `rustc --version`.
    pub rustc: String,
    /// CPUs, model, memory, kernel, file system of the data directories.
    pub machine: String,
    /// /proc/loadavg (1, 5, 15 min) before the first run and after the last.
    pub load_before: String,
    pub load_after: String,
    /// Every knob (ROUNDS, DURATION, ...) as the run used it.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The sections run, in order.
    pub sections: Vec<String>,
    pub rows: Vec<Row>,
    /// Every round's raw numbers by key (`reads.base`, `writes.c64.always.batch`, ...).
    pub rounds: BTreeMap<String, Vec<f64>>,
    /// What the reader should know about this run (errors seen, loads not reached).
    pub notes: Vec<String>,
    /// Where the servers' logs and wrk's and loadgen's output are.
    pub logs_dir: String,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub section: String,
    /// What is measured, with its unit and how.
    pub metric: String,
    /// The figures' unit (`req/s`, `ms`, `events/s`, `bytes`, ...).
    pub unit: String,
    /// Decimals shown in the table.
    pub decimals: u8,
    /// What ours is compared with, measured in the same run.
    pub baseline: Option<Figure>,
    pub ours: Figure,
    /// ours median / baseline median.
    pub ratio: Option<f64>,
    pub goal: Option<Goal>,
    pub met: Option<bool>,
    /// Said after yes/no: e.g. "errors", or that the load fell short.
    pub caveat: Option<String>,
}

/// A measured quantity: its key in [`Results::rounds`], its rounds and their median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub rounds: Vec<f64>,
    pub median: Option<f64>,
}

impl Figure {
    pub fn new(key: &str, rounds: &[f64]) -> Figure {
        Figure {
            key: key.to_owned(),
            rounds: rounds.to_vec(),
            median: median(rounds),
        }
    }
}

/// A goal from DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// What the limit applies to.
    pub of: GoalOf,
    pub op: GoalOp,
    pub limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoalOf {
    /// The ratio to the baseline.
    Ratio,
    /// Our median itself (only where DESIGN.md says an absolute figure travels).
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoalOp {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

impl Goal {
    pub fn ratio_at_least(limit: f64) -> Goal {
        Goal {
            of: GoalOf::Ratio,
            op: GoalOp::AtLeast,
            limit,
        }
    }

    pub fn ratio_at_most(limit: f64) -> Goal {
        Goal {
            of: GoalOf::Ratio,
            op: GoalOp::AtMost,
            limit,
        }
    }

    pub fn value_at_most(limit: f64) -> Goal {
        Goal {
            of: GoalOf::Value,
            op: GoalOp::AtMost,
            limit,
        }
    }

    fn holds(&self, x: f64) -> bool {
        match self.op {
            GoalOp::AtLeast => x >= self.limit,
            GoalOp::AtMost => x <= self.limit,
        }
    }

    fn text(&self) -> String {
        let op = match self.op {
            GoalOp::AtLeast => ">=",
            GoalOp::AtMost => "<=",
        };
        match self.of {
            GoalOf::Ratio => format!("{op} {}x", self.limit),
            GoalOf::Value => format!("{op} {}", group(self.limit, 0)),
        }
    }
}

impl Row {
    /// A row; its ratio and whether the goal is met follow from the figures.
    pub fn new(
        section: &str,
        metric: impl Into<String>,
        unit: &str,
        decimals: u8,
        baseline: Option<Figure>,
        ours: Figure,
        goal: Option<Goal>,
    ) -> Row {
        let ratio = ratio(ours.median, baseline.as_ref().and_then(|b| b.median));
        let met = goal.and_then(|g| {
            let x = match g.of {
                GoalOf::Ratio => ratio?,
                GoalOf::Value => ours.median?,
            };
            Some(g.holds(x))
        });
        Row {
            section: section.to_owned(),
            metric: metric.into(),
            unit: unit.to_owned(),
            decimals,
            baseline,
            ours,
            ratio,
            goal,
            met,
            caveat: None,
        }
    }

    pub fn caveat(mut self, caveat: Option<String>) -> Row {
        self.caveat = caveat;
        self
    }
}

/// `x` with `decimals` decimals and its thousands grouped by spaces
/// (`1234567.5` -> `1 234 567.5`); `n/a` for nothing.
pub fn group(x: f64, decimals: u8) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let text = format!("{:.*}", usize::from(decimals), x.abs());
    let (int, frac) = text.split_at(text.find('.').unwrap_or(text.len()));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped}{frac}")
}

fn cell(x: Option<f64>, decimals: u8) -> String {
    x.map_or_else(|| "-".into(), |x| group(x, decimals))
}

/// The markdown report: the run's circumstances, the table, the notes, every
/// round's values.
pub fn render(r: &Results) -> String {
    let mut out = String::new();
    let settings: Vec<String> = r
        .settings
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect();
    let _ = writeln!(out, "## foldbook benchmarks\n");
    let _ = writeln!(
        out,
        "- date: {} (UTC), {} at the end",
        r.started_utc, r.ended_utc
    );
    let _ = writeln!(out, "- machine: {}", r.machine);
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): {} before the first run, {} after the last",
        r.load_before, r.load_after
    );
    let _ = writeln!(out, "- commit: {}; {}", r.commit, r.rustc);
    let _ = writeln!(
        out,
        "- settings: {}; sections: {}",
        settings.join(" "),
        r.sections.join(",")
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| metric | baseline median | ours median | ratio | goal | met? |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for row in &r.rows {
        let met = match row.met {
            Some(true) => "yes".to_owned(),
            Some(false) => "**no**".to_owned(),
            None if row.goal.is_some() => "n/a".to_owned(),
            None => "-".to_owned(),
        };
        let met = match &row.caveat {
            Some(c) => format!("{met} ({c})"),
            None => met,
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.metric,
            cell(row.baseline.as_ref().and_then(|b| b.median), row.decimals),
            cell(row.ours.median, row.decimals),
            row.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}x")),
            row.goal.map_or_else(|| "-".into(), |g| g.text()),
            met,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Every ratio is ours / a baseline measured in the same run (medians over the rounds)."
    );
    let _ = writeln!(
        out,
        "Zero acknowledged orders lost across repeated kill -9 under load: checked by the"
    );
    let _ = writeln!(
        out,
        "crash tests (gateway/tests/crash.rs, scripts/test.sh), not by the benchmark."
    );
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &r.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(out, "\n### Per-round values\n");
    for (key, values) in &r.rounds {
        let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
        let _ = writeln!(out, "- `{key}`: {}", values.join(" "));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Keys: `*.base`/`*.ours` the baseline and ours; `*.batch` events per write (fsync)\n\
         batch; `lag.*.p99` whole-run p99 (ms) from the read side's foldbook_lag_seconds\n\
         histogram, `lag.hello.p99` the hello-world's request p99 (ms, loadgen, send to\n\
         answer) at the same offered rate, `.sec_p99` the median of the per-second p99\n\
         lines, `.rate` loadgen's achieved rate, `.late` requests sent > 5 ms after due;\n\
         `replay.*.wall` ms from exec to ready, `.start` start_ms from the log, `.rate`\n\
         events/s, `replay.decode.rate` the plain decode baseline; `rss.*` kB, `rss.*.per`\n\
         bytes per resting order; `soak.*` RSS growth, kB, loadgen's counts. Server logs,\n\
         wrk's and loadgen's output: {}/.",
        r.logs_dir
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(1_234_567.0, 0), "1 234 567");
        assert_eq!(group(999.0, 0), "999");
        assert_eq!(group(1000.0, 0), "1 000");
        assert_eq!(group(12_345.678, 1), "12 345.7");
        assert_eq!(group(-4321.0, 0), "-4 321");
        assert_eq!(group(0.1234, 3), "0.123");
        assert_eq!(group(f64::NAN, 0), "n/a");
    }

    #[test]
    fn a_row_computes_its_ratio_and_whether_the_goal_is_met() {
        let row = Row::new(
            "reads",
            "GET /orderbook",
            "req/s",
            0,
            Some(Figure::new("reads.base", &[100.0, 110.0, 90.0])),
            Figure::new("reads.ours", &[95.0, 80.0, 99.0]),
            Some(Goal::ratio_at_least(0.9)),
        );
        assert_eq!(row.ratio, Some(0.95));
        assert_eq!(row.met, Some(true));
        let rss = Row::new(
            "rss",
            "RSS",
            "bytes",
            1,
            None,
            Figure::new("rss.cmd.per", &[300.0]),
            Some(Goal::value_at_most(256.0)),
        );
        assert_eq!((rss.ratio, rss.met), (None, Some(false)));
    }

    #[test]
    fn the_markdown_is_rendered_from_the_json() {
        let json = include_str!("../tests/fixtures/results.json");
        let results: Results = serde_json::from_str(json).unwrap();
        let md = render(&results);
        let expected = include_str!("../tests/fixtures/results.md");
        assert_eq!(md, expected, "rendered:\n{md}");
    }
}
