//! Logging: `tracing` to stderr at `RUST_LOG` (default `info`), as text or JSON
//! lines, set up once per process together with the metrics recorder.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers and `scripts/lag.sh`).
    Json,
}

/// Sets up the process: logs to stderr at `RUST_LOG` (default `info`) in `format`,
/// and the Prometheus recorder, before anything records a metric.
pub fn init(format: LogFormat) {
    disable_transparent_huge_pages();
    crate::prometheus::recorder();
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Opts this process out of transparent huge pages. With THP set to `always` (a
/// common distribution default), the allocator's small purges split huge pages
/// that the next allocation faults in and zeroes again, 2 MiB at a time: building
/// a million-order model then spent more time in the kernel clearing pages than
/// folding events (replay measured 1.6x slower; docs/performance.md). Failure is
/// harmless (an old kernel): the process just keeps the system's setting.
#[expect(unsafe_code, reason = "one prctl(2) call with integer arguments")]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this
    // process's memory map; no pointer is passed.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
