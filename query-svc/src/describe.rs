//! `# HELP` text and units of the read side's metrics, registered with the
//! recorder at start so that `/metrics` documents every family it shows
//! (`promtool check metrics` holds the binaries to it).

use metrics::{Unit, describe_gauge, describe_histogram};

/// Describes the read side's metrics; called once at start, before serving.
pub fn metrics() {
    describe_histogram!(
        "foldbook_lag_seconds",
        Unit::Seconds,
        "Time from an event's commit (durable) to its being visible to reads."
    );
    describe_gauge!(
        "foldbook_applied_seq",
        "Seq of the last event the read side applied and shows."
    );
}
