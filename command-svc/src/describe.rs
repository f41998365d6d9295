//! `# HELP` text and units of the write side's metrics, registered with the
//! recorder at start so that `/metrics` documents every family it shows
//! (`promtool check metrics` holds the binaries to it).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes the write side's metrics; called once at start, before serving.
pub fn metrics() {
    describe_counter!(
        "foldbook_events_appended_total",
        "Events appended to the log by this writer since it started."
    );
    describe_counter!(
        "foldbook_fsync_batches_total",
        "Group commits (one write and one sync each) since the writer started."
    );
    describe_histogram!("foldbook_batch_events", "Events per group commit.");
    describe_histogram!(
        "foldbook_fsync_seconds",
        Unit::Seconds,
        "Time one group commit's fdatasync (or stream publish) took."
    );
    describe_gauge!(
        "foldbook_head_seq",
        "Seq of the last event the writer decided (durable or not)."
    );
    describe_gauge!(
        "foldbook_durable_seq",
        "Seq of the last event on disk: what the read side may show."
    );
}
