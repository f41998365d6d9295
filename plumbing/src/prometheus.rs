//! The process-wide Prometheus recorder behind `/metrics`: histogram buckets by
//! name suffix, an upkeep thread that folds samples into buckets, `# HELP` text
//! for every metric, and the standard process metrics (resident
//! memory, CPU seconds, open file descriptors, start time).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Histogram buckets, by metric name suffix.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS_BUCKETS)
            })
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder is installed; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        describe_own();
        process_collector().describe();
        // Histogram samples pile up until they are folded into their buckets, which
        // only a render or an upkeep does: without a Prometheus scraping /metrics,
        // every recorded lag sample would stay in memory (found by the soak).
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
        handle
    })
}

/// The collector of the standard process metrics (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, `process_open_fds`, `process_start_time_seconds`, …).
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// `/metrics`: the process metrics read now, then every family in Prometheus' text
/// format, each with its `# HELP` line.
pub fn render() -> String {
    let handle = recorder();
    crate::counting::fold_into_recorder();
    process_collector().collect();
    handle.render()
}

/// `# HELP` text of the metrics this crate records (serving); the services
/// describe their own.
fn describe_own() {
    metrics::describe_counter!(
        "foldbook_http_requests_total",
        "HTTP requests answered, by route (first path segment) and status."
    );
    metrics::describe_gauge!("foldbook_connections_open", "HTTP connections open now.");
    metrics::describe_counter!(
        "foldbook_connections_refused_total",
        "HTTP connections closed at once because the connection cap was reached."
    );
}

/// How often recorded histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
