//! The state of one run: the settings, where things are (the binaries in
//! target/release, target/bench, its logs and the run's data directory), and what
//! was measured so far (every round's numbers, the table's rows, the notes), which
//! becomes `target/bench/results.json`.

use crate::cli::Settings;
use anyhow::Context as _;
use foldbook_bench::results::{Figure, Results, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One run in progress.
pub struct Runner {
    pub settings: Settings,
    /// The repository (the working directory): init.txt and scripts/bench/*.lua.
    pub root: PathBuf,
    /// The release binaries (gateway, command-svc, query-svc, hello, loadgen, genlog).
    pub bin: PathBuf,
    /// target/bench/logs: every server's log, wrk's and loadgen's output.
    pub logs: PathBuf,
    /// This run's data directories (target/bench/work.XXXXXX).
    pub work: PathBuf,
    /// For /health, /metrics and the few requests the sections send themselves.
    pub client: reqwest::Client,
    /// Every round's raw numbers by key.
    pub rounds: BTreeMap<String, Vec<f64>>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Median durable orders/s at 64 connections (the writes section), for the lag
    /// section's default rate.
    pub durable_capacity: Option<f64>,
    /// The rate the lag section used.
    pub lag_rate: Option<f64>,
}

impl Runner {
    pub fn new(
        settings: Settings,
        root: PathBuf,
        bin: PathBuf,
        logs: PathBuf,
        work: PathBuf,
    ) -> Self {
        Runner {
            settings,
            root,
            bin,
            logs,
            work,
            client: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds"),
            rounds: BTreeMap::new(),
            rows: Vec::new(),
            notes: Vec::new(),
            durable_capacity: None,
            lag_rate: None,
        }
    }

    /// A progress line on stderr (stdout gets the table).
    pub fn say(&self, text: impl AsRef<str>) {
        eprintln!("bench: {}", text.as_ref());
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.say(format!("note: {text}"));
        self.notes.push(text);
    }

    /// Records one round's value of `key`.
    pub fn add(&mut self, key: &str, value: f64) {
        self.rounds.entry(key.to_owned()).or_default().push(value);
    }

    /// The figure of `key` so far.
    pub fn fig(&self, key: &str) -> Figure {
        Figure::new(key, self.rounds.get(key).map_or(&[][..], Vec::as_slice))
    }

    pub fn median(&self, key: &str) -> Option<f64> {
        self.fig(key).median
    }

    /// The last value recorded for `key` (for progress lines).
    pub fn last(&self, key: &str) -> f64 {
        self.rounds
            .get(key)
            .and_then(|v| v.last().copied())
            .unwrap_or(f64::NAN)
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.start_timeout_s)
    }

    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.stop_timeout_s)
    }

    pub fn catchup_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.catchup_timeout_s)
    }

    /// A binary in target/release.
    pub fn program(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin.join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is not built: run `cargo build --release --locked --workspace --bins` \
             (scripts/bench.sh does)",
            path.display()
        );
        Ok(path)
    }

    /// A script of the repository's scripts/bench/.
    pub fn lua(&self, name: &str) -> PathBuf {
        self.root.join("scripts/bench").join(name)
    }

    /// A new data directory `work/NAME` with a copy of the shipped init.txt.
    pub fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(name);
        remove_dir(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::copy(self.root.join("init.txt"), dir.join("init.txt"))
            .with_context(|| format!("copying init.txt into {}", dir.display()))?;
        Ok(dir)
    }

    /// The run's results so far, dated and described.
    pub fn results(&self, meta: Meta) -> Results {
        Results {
            started_utc: meta.started_utc,
            ended_utc: foldbook_bench::clock::now_utc(),
            commit: meta.commit,
            rustc: meta.rustc,
            machine: meta.machine,
            load_before: meta.load_before,
            load_after: load_average(),
            settings: self.settings.as_map(self.lag_rate),
            sections: self
                .settings
                .sections()
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            rows: self.rows.clone(),
            rounds: self.rounds.clone(),
            notes: self.notes.clone(),
            logs_dir: self
                .logs
                .strip_prefix(&self.root)
                .unwrap_or(&self.logs)
                .display()
                .to_string(),
        }
    }
}

/// What is known about the run before it starts.
pub struct Meta {
    pub started_utc: String,
    pub commit: String,
    pub rustc: String,
    pub machine: String,
    pub load_before: String,
}

/// Every HTTP request the runner sends itself ends within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// /proc/loadavg's 1, 5 and 15 minute figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Removes `dir` and what is in it, if it exists.
pub fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
