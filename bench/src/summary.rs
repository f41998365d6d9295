//! `key=value` summaries: loadgen's last stdout line (`loadgen: pattern=Cross
//! sent=... lat_ms_p99=...`) and the per-second "read side caught up" lines that the
//! read side logs (`lag_ms_p50=... lag_ms_p99=... lag_ms_max=...`), which
//! `scripts/lag.sh` summarises for people and [`LagLines`] for the benchmark.

use crate::stats::median;

/// The number after ` key=` in `line` (also at its start).
pub fn field(line: &str, key: &str) -> Option<f64> {
    let padded = format!(" {line}");
    let needle = format!(" {key}=");
    let at = padded.find(&needle)? + needle.len();
    padded[at..]
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// The last `loadgen:` line of its output.
pub fn loadgen_line(output: &str) -> Option<&str> {
    output.lines().rev().find(|l| l.starts_with("loadgen:"))
}

/// The read side's per-second lag lines, summarised as scripts/lag.sh does.
#[derive(Debug, Clone, PartialEq)]
pub struct LagLines {
    /// Lines (about one per second while events flow).
    pub intervals: usize,
    pub events: f64,
    /// Medians over the lines of their p50 and p99, the worst p99, the worst event
    /// (all ms).
    pub p50_ms_median: f64,
    pub p99_ms_median: f64,
    pub p99_ms_worst: f64,
    pub max_ms: f64,
}

impl LagLines {
    /// From a log's lines; `None` when none is a "read side caught up" line.
    pub fn from_log<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<LagLines> {
        let (mut p50, mut p99, mut events, mut max_ms) = (Vec::new(), Vec::new(), 0.0, 0.0f64);
        for line in lines
            .into_iter()
            .filter(|l| l.contains("read side caught up"))
        {
            p50.push(field(line, "lag_ms_p50").unwrap_or(f64::NAN));
            p99.push(field(line, "lag_ms_p99").unwrap_or(f64::NAN));
            events += field(line, "events").unwrap_or(0.0);
            max_ms = max_ms.max(field(line, "lag_ms_max").unwrap_or(0.0));
        }
        Some(LagLines {
            intervals: p99.len(),
            events,
            p50_ms_median: median(&p50)?,
            p99_ms_median: median(&p99)?,
            p99_ms_worst: p99.iter().copied().fold(0.0, f64::max),
            max_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_fields_are_read_from_its_last_summary_line() {
        let out = "loadgen: first error: boom\nloadgen: pattern=Cross sent=100 ok=99 errors=1 \
                   raced=0 late=2 achieved_rate=9999.5 lat_ms_p99=1.250\n";
        let line = loadgen_line(out).unwrap();
        assert_eq!(field(line, "ok"), Some(99.0));
        assert_eq!(field(line, "achieved_rate"), Some(9999.5));
        assert_eq!(field(line, "lat_ms_p99"), Some(1.25));
        assert_eq!(field(line, "pattern"), None);
        assert_eq!(field("sent=3 x=1", "sent"), Some(3.0));
    }

    #[test]
    fn lag_lines_are_summarised() {
        let log = [
            "INFO query_svc: listening on http://127.0.0.1:1",
            "INFO read side caught up to seq 10 seq=10 behind=0 events=10 lag_ms_p50=0.2 lag_ms_p99=0.9 lag_ms_max=1.5",
            "INFO read side caught up to seq 30 seq=30 behind=1 events=20 lag_ms_p50=0.4 lag_ms_p99=0.5 lag_ms_max=0.7",
            "INFO read side caught up to seq 31 seq=31 behind=0 events=1 lag_ms_p50=0.3 lag_ms_p99=0.6 lag_ms_max=0.6",
        ];
        let s = LagLines::from_log(log).unwrap();
        assert_eq!(s.intervals, 3);
        assert_eq!(s.events, 31.0);
        assert_eq!(s.p50_ms_median, 0.3);
        assert_eq!(s.p99_ms_median, 0.6);
        assert_eq!(s.p99_ms_worst, 0.9);
        assert_eq!(s.max_ms, 1.5);
        assert_eq!(LagLines::from_log(["nothing"]), None);
    }
}
