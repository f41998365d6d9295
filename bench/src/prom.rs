//! The Prometheus text exposition format (version 0.0.4), as the services' `/metrics`
//! writes it, read into samples; and histogram quantiles computed from a
//! histogram's cumulative `_bucket{le="..."}` samples the way Prometheus'
//! `histogram_quantile` does (linear interpolation within the bucket).
//!
//! A small parser of our own: the benchmark needs samples and histograms only, and
//! the crates that parse this format bring a regex engine and a date library for
//! timestamps we never read.

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/metrics line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// Every sample of a page; comments (`# HELP`, `# TYPE`) and blank lines skipped.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| ParseError {
            line: i + 1,
            reason,
            text: line.to_owned(),
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| error("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(error("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, tail) = parse_labels(after).ok_or_else(|| error("bad labels"))?;
            labels = parsed;
            rest = tail;
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| error("no value"))?;
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: parse_value(value).ok_or_else(|| error("bad value"))?,
        });
    }
    Ok(samples)
}

/// `label="value",...}` (after the `{`): the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// A histogram's cumulative buckets (upper bound, count of observations at or below
/// it; the last bound is +Inf), total count and sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

/// A quantile of a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// Interpolated within a finite bucket.
    Within(f64),
    /// In the +Inf bucket: above this, the highest finite bound.
    Above(f64),
}

impl Quantile {
    /// The value, or the bound it is above (a lower bound of the truth).
    pub fn value(self) -> f64 {
        match self {
            Quantile::Within(v) | Quantile::Above(v) => v,
        }
    }
}

impl Histogram {
    /// The histogram `name` (its `name_bucket`, `name_count`, `name_sum` samples)
    /// whose labels other than `le` include every pair of `labels`; `None` when the
    /// page has no bucket of it.
    pub fn from_samples(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<Self> {
        let matches = |s: &Sample| labels.iter().all(|(k, v)| s.label(k) == Some(v));
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket && matches(s))
            .filter_map(|s| Some((parse_value(s.label("le")?)?, s.value)))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let find = |suffix: &str| {
            let full = format!("{name}{suffix}");
            samples
                .iter()
                .find(|s| s.name == full && matches(s))
                .map(|s| s.value)
        };
        let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
        let count = find("_count").or(inf).unwrap_or(0.0);
        Some(Histogram {
            buckets,
            count,
            sum: find("_sum").unwrap_or(f64::NAN),
        })
    }

    /// The `q` quantile (0..=1), as Prometheus' `histogram_quantile`: the bucket
    /// where the cumulative count reaches `q * count`, interpolated linearly between
    /// its lower bound (the previous bucket's upper bound, 0 for the first) and its
    /// upper bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        if self.count <= 0.0 {
            return None;
        }
        let target = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, cumulative) in &self.buckets {
            if cumulative >= target {
                if upper.is_infinite() {
                    return Some(Quantile::Above(lower));
                }
                let in_bucket = cumulative - below;
                let share = if in_bucket > 0.0 {
                    (target - below) / in_bucket
                } else {
                    1.0
                };
                return Some(Quantile::Within(lower + (upper - lower) * share));
            }
            if upper.is_finite() {
                lower = upper;
                below = cumulative;
            }
        }
        Some(Quantile::Above(lower))
    }

    /// The share of observations at or below `limit`, counting whole buckets only
    /// (those whose upper bound is at most `limit`): a lower bound of the truth.
    pub fn share_within(&self, limit: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let within = self
            .buckets
            .iter()
            .filter(|(upper, _)| *upper <= limit * (1.0 + 1e-12))
            .map(|(_, cumulative)| *cumulative)
            .fold(0.0, f64::max);
        Some(within / self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP foldbook_lag_seconds durable -> visible
# TYPE foldbook_lag_seconds histogram
foldbook_lag_seconds_bucket{le="0.0005"} 50
foldbook_lag_seconds_bucket{le="0.001"} 90
foldbook_lag_seconds_bucket{le="0.002"} 99
foldbook_lag_seconds_bucket{le="0.005"} 100
foldbook_lag_seconds_bucket{le="+Inf"} 100
foldbook_lag_seconds_sum 0.07
foldbook_lag_seconds_count 100
# TYPE foldbook_requests_total counter
foldbook_requests_total{route="/buy",status="201"} 12 1700000000000
foldbook_requests_total{route="/a \"b\"\\c",status="404"} 1
foldbook_up 1
"#;

    #[test]
    fn samples_with_labels_escapes_and_timestamps_are_read() {
        let samples = parse(PAGE).unwrap();
        assert_eq!(samples.len(), 10);
        let buy = &samples[7];
        assert_eq!(buy.name, "foldbook_requests_total");
        assert_eq!(buy.label("route"), Some("/buy"));
        assert_eq!(buy.label("status"), Some("201"));
        assert_eq!(buy.value, 12.0);
        assert_eq!(samples[8].label("route"), Some("/a \"b\"\\c"));
        assert_eq!(samples[9].labels, vec![]);
        assert_eq!(samples[4].label("le"), Some("+Inf"));
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse("ok 1\nbroken{le=\"1\" 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse("x notanumber").is_err());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let samples = parse(PAGE).unwrap();
        let h = Histogram::from_samples(&samples, "foldbook_lag_seconds", &[]).unwrap();
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 5);
        // p50: exactly the first bucket's bound.
        assert_eq!(h.quantile(0.5), Some(Quantile::Within(0.0005)));
        // p25: half way into the first bucket, from 0.
        assert_eq!(h.quantile(0.25), Some(Quantile::Within(0.00025)));
        // p99: 99 reached in the (0.001, 0.002] bucket at its top.
        let p99 = h.quantile(0.99).unwrap().value();
        assert!((p99 - 0.002).abs() < 1e-12, "{p99}");
        // p95: 5 of the 9 in (0.001, 0.002].
        let p95 = h.quantile(0.95).unwrap().value();
        assert!((p95 - (0.001 + 0.001 * 5.0 / 9.0)).abs() < 1e-12, "{p95}");
        assert_eq!(h.share_within(0.001), Some(0.9));
        assert_eq!(h.share_within(0.0001), Some(0.0));
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_above_the_last_bound() {
        let page =
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 10\nh_count 10\n";
        let h = Histogram::from_samples(&parse(page).unwrap(), "h", &[]).unwrap();
        assert_eq!(h.quantile(0.99), Some(Quantile::Above(2.0)));
        let empty = "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_count 0\n";
        let h = Histogram::from_samples(&parse(empty).unwrap(), "h", &[]).unwrap();
        assert_eq!(h.quantile(0.99), None);
        assert!(Histogram::from_samples(&parse(page).unwrap(), "other", &[]).is_none());
    }

    #[test]
    fn a_histogram_is_picked_by_its_labels() {
        let page = "h_bucket{m=\"a\",le=\"1\"} 4\nh_bucket{m=\"a\",le=\"+Inf\"} 4\n\
                    h_bucket{m=\"b\",le=\"1\"} 0\nh_bucket{m=\"b\",le=\"+Inf\"} 2\n";
        let samples = parse(page).unwrap();
        let a = Histogram::from_samples(&samples, "h", &[("m", "a")]).unwrap();
        assert_eq!(a.count, 4.0);
        assert_eq!(a.quantile(1.0), Some(Quantile::Within(1.0)));
        let b = Histogram::from_samples(&samples, "h", &[("m", "b")]).unwrap();
        assert_eq!(b.quantile(0.5), Some(Quantile::Above(1.0)));
    }
}
