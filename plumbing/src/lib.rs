//! # plumbing: what every foldbook binary needs and no domain rule touches
//!
//! HTTP serving with limits, telemetry, the Prometheus recorder, stop signals,
//! handing freed memory back, a window of lines addressed by byte offset, and the
//! NATS JetStream client with its connection settings and the generic reading of a
//! stream.
//!
//! **No domain types here.** Nothing in this crate knows of events, orders, books,
//! accounts or projections, and it depends on no other crate of the workspace: the
//! services (command-svc, query-svc), the gateway and the tools depend on it, never
//! the reverse. `tests/boundaries.rs` holds it to that (and checks the rest of the
//! crate graph). What a line or a route means is decided by the crates that use it.
//!
//! ## Layout
//!
//! - [`serve`]: serving routes with hyper under [`serve::Limits`] (connection cap,
//!   header timeout, sizes), hot routes ahead of warp's filters, `/metrics`,
//!   request counting, bounded graceful stop.
//! - [`counting`]: request counts kept per thread, summed at each render.
//! - [`idle`]: the header-read timeout, kept per connection.
//! - [`telemetry`]: `tracing` set up as text or JSON lines.
//! - [`prometheus`]: the process-wide recorder, `# HELP` text, process metrics.
//! - [`signal`]: Ctrl-C and SIGTERM.
//! - [`memory`]: handing memory freed by a large build back to the system.
//! - [`lines`]: consecutive lines held in memory, addressed by file offsets.
//! - [`jetstream`]: the NATS client on its own runtime, credentials and TLS from
//!   the environment, an ordered consumer into a bounded buffer, a stream read as
//!   lines with computed offsets.

pub mod counting;
pub mod idle;
pub mod jetstream;
pub mod lines;
pub mod memory;
pub mod prometheus;
pub mod serve;
pub mod signal;
pub mod telemetry;
