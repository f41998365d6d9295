//! `foldbook-bench`: foldbook's benchmark, a crate of its own (`publish = false`),
//! not a part of the product. It measures the numbers DESIGN.md holds the system to
//! ("Numbers we hold ourselves to"), each as a ratio to a baseline measured in the
//! same run, reported with the absolute numbers.
//!
//! # Layout
//!
//! Binaries (`src/bin/`):
//! - `bench`: the runner (`scripts/bench.sh` builds and starts it): sections
//!   `reads`, `writes`, `lag`, `replay`, `rss` (the default), `soak`, `nats`,
//!   `markets`, `accounts`, `curves` (SVG charts); `bench render
//!   results.json` prints the table of a past run;
//! - `hello`: the baseline, a warp hello-world;
//! - `loadgen`: an open-loop, fixed-rate request generator;
//! - `genlog`: writes a large synthetic, valid log.
//!
//! This library holds the runner's pure parts, tested without processes:
//! - [`wrk`]: reading wrk's report;
//! - [`prom`]: the Prometheus text format, and histogram quantiles from `_bucket`s;
//! - [`stats`]: medians and ratios;
//! - [`summary`]: the `key=value` lines of loadgen and of the services' logs;
//! - [`results`]: what a run measured (`target/bench/results.json`) and its
//!   markdown table;
//! - [`chart`]: line charts as standalone SVG, for docs/performance.md;
//! - [`clock`]: UTC dates without a date library.
//!
//! It depends on `shared-events` only for `genlog` (which writes real log lines)
//! and for the replay baseline (a plain decode of the same lines), and on
//! `test-support` for starting and stopping processes.

pub mod chart;
pub mod clock;
pub mod prom;
pub mod results;
pub mod stats;
pub mod summary;
pub mod wrk;
