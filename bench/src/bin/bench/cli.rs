//! The runner's command line: `bench [run] [FLAGS]` and `bench render FILE`. Every
//! flag also comes from the environment variable scripts/bench.sh documents
//! (BENCH_ONLY, ROUNDS, DURATION, ...), so `ROUNDS=5 scripts/bench.sh` and
//! `bench --rounds 5` are the same run.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// foldbook's benchmark: every figure a ratio to a baseline measured in the same
/// run (see DESIGN.md, "Numbers we hold ourselves to").
#[derive(Debug, Parser)]
#[command(name = "bench", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the sections (the default).
    Run(Settings),
    /// Prints the markdown table of a results.json.
    Render {
        /// A results.json written by a run (target/bench/results.json).
        file: PathBuf,
    },
}

/// The sections, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Section {
    Reads,
    Writes,
    Lag,
    Replay,
    Rss,
    Soak,
    Nats,
    Markets,
    Accounts,
    Curves,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Reads => "reads",
            Section::Writes => "writes",
            Section::Lag => "lag",
            Section::Replay => "replay",
            Section::Rss => "rss",
            Section::Soak => "soak",
            Section::Nats => "nats",
            Section::Markets => "markets",
            Section::Accounts => "accounts",
            Section::Curves => "curves",
        }
    }
}

/// Seconds, as `5` or `5s`.
fn seconds(text: &str) -> Result<u64, String> {
    text.trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (5 or 5s)"))
}

/// What a run measures and how long it may take.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Sections to run, comma-separated: reads,writes,lag,replay,rss (the
    /// default set), soak, nats, markets, accounts and curves on request.
    #[arg(
        long = "only",
        env = "BENCH_ONLY",
        value_enum,
        value_delimiter = ',',
        default_value = "reads,writes,lag,replay,rss"
    )]
    pub only: Vec<Section>,
    /// Rounds per measurement (medians over them).
    #[arg(long, env = "ROUNDS", default_value_t = 3)]
    pub rounds: u32,
    /// Seconds per wrk run ("5" or "5s").
    #[arg(long = "duration", env = "DURATION", default_value = "5", value_parser = seconds)]
    pub duration_s: u64,
    /// Seconds of an uncounted wrk run before each measured one (0: none).
    #[arg(long = "warmup", env = "WARMUP", default_value = "1", value_parser = seconds)]
    pub warmup_s: u64,
    /// Orders/s for the lag runs; default: a quarter of the durable capacity the
    /// writes section measured (DESIGN.md), 10000 when it did not run.
    #[arg(long = "lag-rate", env = "LAG_RATE")]
    pub lag_rate: Option<f64>,
    /// Seconds per lag run.
    #[arg(long = "lag-seconds", env = "LAG_SECONDS", default_value_t = 10.0)]
    pub lag_s: f64,
    /// Connections loadgen spreads the lag runs over.
    #[arg(long, env = "LAG_CONNECTIONS", default_value_t = 64)]
    pub lag_connections: u32,
    /// Events in the generated log for replay and rss (all resting orders).
    #[arg(long, env = "BIG_EVENTS", default_value_t = 1_000_000)]
    pub big_events: u64,
    /// Finished orders added for the last replay row (query-svc's default
    /// --finished-orders-kept, FINISHED_ORDERS_KEPT_DEFAULT).
    #[arg(long, env = "BIG_FINISHED", default_value_t = 100_000)]
    pub big_finished: u64,
    /// Seconds a read side may take to apply the big log.
    #[arg(
        long = "catchup-timeout",
        env = "CATCHUP_TIMEOUT",
        default_value_t = 300
    )]
    pub catchup_timeout_s: u64,
    /// Soak duration, seconds.
    #[arg(long = "soak-seconds", env = "SOAK_SECONDS", default_value_t = 600)]
    pub soak_s: u64,
    /// Soak load, requests/s.
    #[arg(long, env = "SOAK_RATE", default_value_t = 2000.0)]
    pub soak_rate: f64,
    /// Finished orders the soak's gateway keeps (--finished-orders-kept).
    #[arg(long, env = "SOAK_KEPT", default_value_t = 100_000)]
    pub soak_kept: u64,
    /// Seconds between two RSS samples in the soak.
    #[arg(long = "soak-sample", env = "SOAK_SAMPLE", default_value_t = 10)]
    pub soak_sample_s: u64,
    /// Seconds a server may take to start listening (and a read side to answer).
    #[arg(long = "start-timeout", env = "START_TIMEOUT", default_value_t = 120)]
    pub start_timeout_s: u64,
    /// Seconds a server may take to exit after SIGTERM before SIGKILL.
    #[arg(long = "stop-timeout", env = "STOP_TIMEOUT", default_value_t = 60)]
    pub stop_timeout_s: u64,
    /// Rounds per point of the curves section's throughput and lag curves.
    #[arg(long, env = "CURVE_ROUNDS", default_value_t = 3)]
    pub curve_rounds: u32,
    /// The curves section's connection counts (durable orders/s against them).
    #[arg(
        long,
        env = "CURVE_CONNECTIONS",
        value_delimiter = ',',
        default_value = "1,4,16,64,128,256"
    )]
    pub curve_connections: Vec<u32>,
    /// The curves section's offered rates, as shares of the durable capacity at 64
    /// connections (lag p99 against them).
    #[arg(
        long,
        env = "CURVE_RATE_SHARES",
        value_delimiter = ',',
        default_value = "0.1,0.25,0.5,0.75"
    )]
    pub curve_rate_shares: Vec<f64>,
    /// The curves section's log lengths, in events (replay and snapshot starts
    /// against them).
    #[arg(
        long,
        env = "CURVE_EVENTS",
        value_delimiter = ',',
        default_value = "10000,100000,1000000,10000000"
    )]
    pub curve_events: Vec<u64>,
    /// Keep the data directories (target/bench/work.*) after the run.
    #[arg(
        long,
        env = "BENCH_KEEP",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "false",
        default_missing_value = "true",
        num_args = 0..=1
    )]
    pub keep: bool,
}

impl Settings {
    /// The sections to run, in their order, each once.
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = self.only.clone();
        sections.sort();
        sections.dedup();
        sections
    }

    /// Every knob under its environment name, for the results.
    pub fn as_map(&self, lag_rate: Option<f64>) -> BTreeMap<String, serde_json::Value> {
        use serde_json::json;
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            m.insert(k.to_owned(), v);
        };
        put("ROUNDS", json!(self.rounds));
        put("DURATION", json!(format!("{}s", self.duration_s)));
        put("WARMUP", json!(format!("{}s", self.warmup_s)));
        if let Some(rate) = lag_rate.or(self.lag_rate) {
            put("LAG_RATE", json!(rate.round()));
        }
        put("LAG_SECONDS", json!(self.lag_s));
        put("LAG_CONNECTIONS", json!(self.lag_connections));
        put("BIG_EVENTS", json!(self.big_events));
        put("BIG_FINISHED", json!(self.big_finished));
        put("CATCHUP_TIMEOUT", json!(self.catchup_timeout_s));
        if self.only.contains(&Section::Curves) {
            put("CURVE_ROUNDS", json!(self.curve_rounds));
            put("CURVE_CONNECTIONS", json!(self.curve_connections));
            put("CURVE_RATE_SHARES", json!(self.curve_rate_shares));
            put("CURVE_EVENTS", json!(self.curve_events));
        }
        if self.only.contains(&Section::Soak) {
            put("SOAK_SECONDS", json!(self.soak_s));
            put("SOAK_RATE", json!(self.soak_rate));
            put("SOAK_KEPT", json!(self.soak_kept));
            put("SOAK_SAMPLE", json!(self.soak_sample_s));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_their_defaults() {
        let cli =
            Cli::try_parse_from(["bench", "--only", "rss,reads", "--duration", "2s"]).unwrap();
        assert_eq!(cli.run.sections(), vec![Section::Reads, Section::Rss]);
        assert_eq!(cli.run.duration_s, 2);
        assert_eq!(cli.run.rounds, 3);
        assert!(!cli.run.keep);
        let cli = Cli::try_parse_from(["bench", "render", "x.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Render { .. })));
        assert!(Cli::try_parse_from(["bench", "--only", "bogus"]).is_err());
        let cli = Cli::try_parse_from(["bench", "--keep", "1"]).unwrap();
        assert!(cli.run.keep);
    }
}
