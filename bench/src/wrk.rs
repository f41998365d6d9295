//! wrk's report, read into numbers: requests per second, how many answers were not
//! 2xx/3xx, socket errors, latency. wrk 4's text report is the only interface it
//! has; the parser is strict about the one line the benchmark cannot do without
//! (`Requests/sec:`) and lenient about the rest.

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    pub requests_per_s: f64,
    /// Requests completed (`N requests in ...`).
    pub requests: u64,
    /// `Non-2xx or 3xx responses: N` (absent when there were none).
    pub non_2xx: u64,
    /// The sum of `Socket errors: connect A, read B, write C, timeout D`.
    pub socket_errors: u64,
    /// The `Latency` line's average and maximum, in ms.
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// The median and the 99th percentile of the `Latency Distribution` that
    /// `--latency` adds, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl WrkReport {
    /// Answers that were not 2xx/3xx plus socket errors.
    pub fn bad(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrkError {
    #[error("no `Requests/sec:` line in wrk's report")]
    NoRate,
    #[error("unreadable number in wrk's line {0:?}")]
    Number(String),
}

/// Reads wrk's text report.
pub fn parse(report: &str) -> Result<WrkReport, WrkError> {
    let mut out = WrkReport {
        requests_per_s: f64::NAN,
        requests: 0,
        non_2xx: 0,
        socket_errors: 0,
        latency_avg_ms: None,
        latency_max_ms: None,
        latency_p50_ms: None,
        latency_p99_ms: None,
    };
    let mut rate = None;
    for line in report.lines() {
        let trimmed = line.trim();
        let number = |text: &str| -> Result<f64, WrkError> {
            text.parse()
                .map_err(|_| WrkError::Number(trimmed.to_owned()))
        };
        if let Some(rest) = trimmed.strip_prefix("Requests/sec:") {
            rate = Some(number(rest.trim())?);
        } else if let Some(rest) = trimmed.strip_prefix("Non-2xx or 3xx responses:") {
            out.non_2xx = number(rest.trim())? as u64;
        } else if let Some(rest) = trimmed.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    out.socket_errors += number(n)? as u64;
                }
            }
        } else if let Some(rest) = trimmed.strip_prefix("50%") {
            out.latency_p50_ms = duration_ms(rest.trim());
        } else if let Some(rest) = trimmed.strip_prefix("99%") {
            out.latency_p99_ms = duration_ms(rest.trim());
        } else if let Some(rest) = trimmed.strip_prefix("Latency")
            && rest.trim_start().starts_with(|c: char| c.is_ascii_digit())
        {
            // "Latency   512.34us  100.00us   5.00ms   90.00%": avg, stdev, max.
            // (Not "Latency Distribution", the heading of the percentiles.)
            let cols: Vec<&str> = rest.split_whitespace().collect();
            out.latency_avg_ms = cols.first().and_then(|c| duration_ms(c));
            out.latency_max_ms = cols.get(2).and_then(|c| duration_ms(c));
        } else if trimmed.contains(" requests in ") {
            let n = trimmed.split_whitespace().next().unwrap_or_default();
            out.requests = number(n)? as u64;
        }
    }
    out.requests_per_s = rate.ok_or(WrkError::NoRate)?;
    Ok(out)
}

/// wrk's durations (`512.34us`, `5.00ms`, `1.20s`, `2.00m`) in ms.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "\
Running 2s test @ http://127.0.0.1:41234/orderbook
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  100.00us   5.00ms   90.00%
    Req/Sec    50.00k     2.00k   55.00k    80.00%
  100123 requests in 2.00s, 12.00MB read
Requests/sec:  50061.50
Transfer/sec:      6.00MB
";

    const WITH_LATENCY: &str = "\
Running 5s test @ http://127.0.0.1:41234
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   312.00us   40.00us   2.10ms   95.00%
    Req/Sec     3.20k   100.00     3.40k    70.00%
  Latency Distribution
     50%  301.00us
     75%  320.00us
     90%  350.00us
     99%    1.05ms
  16000 requests in 5.00s, 2.00MB read
Requests/sec:   3200.00
Transfer/sec:    400.00KB
";

    #[test]
    fn the_latency_distribution_gives_median_and_p99() {
        let r = parse(WITH_LATENCY).unwrap();
        assert!((r.latency_p50_ms.unwrap() - 0.301).abs() < 1e-9);
        assert_eq!(r.latency_p99_ms, Some(1.05));
        assert!((r.latency_avg_ms.unwrap() - 0.312).abs() < 1e-9, "{r:?}");
        assert_eq!(r.latency_max_ms, Some(2.1));
        assert_eq!(parse(CLEAN).unwrap().latency_p50_ms, None);
    }

    const WITH_ERRORS: &str = "\
Running 5s test @ http://127.0.0.1:41234
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.00ms   2.00s    70.00%
    Req/Sec     1.00k   100.00     1.20k    60.00%
  5000 requests in 5.01s, 1.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:    998.00
Transfer/sec:    204.00KB
";

    #[test]
    fn a_clean_report_gives_the_rate_and_no_errors() {
        let r = parse(CLEAN).unwrap();
        assert_eq!(r.requests_per_s, 50061.50);
        assert_eq!(r.requests, 100_123);
        assert_eq!(r.bad(), 0);
        assert!((r.latency_avg_ms.unwrap() - 0.51234).abs() < 1e-9);
        assert_eq!(r.latency_max_ms, Some(5.0));
    }

    #[test]
    fn socket_errors_and_non_2xx_are_counted() {
        let r = parse(WITH_ERRORS).unwrap();
        assert_eq!(r.requests_per_s, 998.0);
        assert_eq!(r.socket_errors, 6);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.bad(), 13);
        assert_eq!(r.latency_avg_ms, Some(1200.0));
    }

    #[test]
    fn a_report_without_a_rate_is_an_error() {
        assert_eq!(
            parse("unable to connect to 127.0.0.1:1 Connection refused"),
            Err(WrkError::NoRate)
        );
        assert!(matches!(
            parse("Requests/sec: lots"),
            Err(WrkError::Number(_))
        ));
    }
}
