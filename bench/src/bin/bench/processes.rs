//! The processes a section drives, through test-support (where starting, stopping
//! and waiting live once): servers on 127.0.0.1 free ports with their logs in
//! target/bench/logs/, wrk and loadgen runs with a time limit, /health and /metrics.
//! A [`Proc`] that goes out of scope is killed, so a section that fails stops what
//! it started.

use crate::runner::Runner;
use anyhow::Context as _;
use foldbook_bench::prom;
use foldbook_bench::wrk::{self, WrkReport};
use std::ffi::OsString;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use test_support::{Launch, Proc};

/// Extra seconds a wrk or loadgen run may take beyond its nominal duration.
const ONESHOT_SLACK_S: u64 = 30;

impl Runner {
    /// Starts release binary `bin` with `args` (which say `--listen 127.0.0.1:0`),
    /// text logs at info into `logs/NAME.log`; waits for it to listen.
    pub fn start(&self, name: &str, bin: &str, args: &[OsString]) -> anyhow::Result<Proc> {
        let log = self.logs.join(format!("{name}.log"));
        Launch::new(self.program(bin)?)
            .args(args)
            .env("FOLDBOOK_LOG_FORMAT", "text")
            .log_file(&log)
            .start_timeout(self.start_timeout())
            .start()
            .with_context(|| format!("{bin} ({name}; log: {})", log.display()))
    }

    /// The hello-world baseline, started.
    pub fn start_hello(&self, name: &str) -> anyhow::Result<Proc> {
        self.start(name, "hello", &args(["--listen", "127.0.0.1:0"]))
    }

    /// A clean stop: SIGTERM, SIGKILL after the stop timeout (said, not fatal).
    pub fn stop(&self, proc: &mut Proc) -> anyhow::Result<()> {
        let stopped = proc.stop(self.stop_timeout())?;
        if stopped.killed {
            self.say(format!(
                "pid {} still running {}s after SIGTERM: SIGKILL",
                proc.pid(),
                self.settings.stop_timeout_s
            ));
        }
        Ok(())
    }

    /// Runs `program` with `args` to its end, at most `timeout`, on a blocking
    /// thread; its output is also written to `logs/FILE`.
    pub async fn oneshot(
        &self,
        program: &Path,
        args: Vec<OsString>,
        timeout: Duration,
        file: &str,
    ) -> anyhow::Result<Output> {
        let program = program.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            test_support::run_program(&program, None, &args, &[], timeout)
        })
        .await
        .context("a one-shot run's thread")??;
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        let path = self.logs.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(out)
    }

    /// wrk -t1 -cCONNECTIONS at `url` (with Lua `script`): a WARMUP-second run that
    /// is not counted, then a DURATION-second one, kept as logs/wrk-NAME.txt.
    pub async fn wrk(
        &self,
        name: &str,
        connections: u32,
        url: &str,
        script: Option<&Path>,
    ) -> anyhow::Result<WrkReport> {
        let wrk = which("wrk").context("wrk is not installed (apt-get install -y wrk)")?;
        let mut base = args([
            "-t1",
            &format!("-c{connections}"),
            "--timeout",
            "5s",
            "--latency",
        ]);
        if let Some(script) = script {
            base.push("-s".into());
            base.push(script.into());
        }
        let run = |seconds: u64| {
            let mut a = base.clone();
            a.push(format!("-d{seconds}s").into());
            a.push(url.into());
            a
        };
        let s = &self.settings;
        if s.warmup_s > 0 {
            let timeout = Duration::from_secs(s.warmup_s + ONESHOT_SLACK_S);
            self.oneshot(
                &wrk,
                run(s.warmup_s),
                timeout,
                &format!("wrk-{name}-warmup.txt"),
            )
            .await?;
        }
        let timeout = Duration::from_secs(s.duration_s + ONESHOT_SLACK_S);
        let out = self
            .oneshot(&wrk, run(s.duration_s), timeout, &format!("wrk-{name}.txt"))
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "wrk {url} failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        wrk::parse(&text).with_context(|| format!("wrk {url} (logs/wrk-{name}.txt)"))
    }

    /// loadgen at `url` for `seconds` with `extra` arguments; its summary line
    /// (the last `loadgen:` line) and whether it exited 0 (every request a 2xx).
    pub async fn loadgen(
        &self,
        name: &str,
        url: &str,
        seconds: f64,
        extra: &[&str],
    ) -> anyhow::Result<(String, bool, String)> {
        let mut a = args(["--url", url, "--duration", &seconds.to_string()]);
        a.extend(extra.iter().map(OsString::from));
        let timeout = Duration::from_secs_f64(seconds) + Duration::from_secs(2 * ONESHOT_SLACK_S);
        let file = format!("loadgen-{name}.txt");
        let out = self
            .oneshot(&self.program("loadgen")?, a, timeout, &file)
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = foldbook_bench::summary::loadgen_line(&stdout)
            .with_context(|| format!("no summary line from loadgen (logs/{file}): {stderr}"))?
            .to_owned();
        let first_error = stderr
            .lines()
            .find(|l| l.contains("first error"))
            .unwrap_or_default()
            .to_owned();
        Ok((summary, out.status.success(), first_error))
    }

    /// `GET url/health` as JSON.
    pub async fn health(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{url}/health");
        let answer = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        answer
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))
    }

    /// A number of `/health`.
    pub async fn health_num(&self, url: &str, field: &str) -> anyhow::Result<f64> {
        let health = self.health(url).await?;
        health[field]
            .as_f64()
            .with_context(|| format!("{url}/health has no number {field}: {health}"))
    }

    /// Until `url/health` answers 2xx (at most the start timeout).
    pub async fn wait_ok(&self, url: &str) -> anyhow::Result<()> {
        let health = format!("{url}/health");
        Ok(test_support::wait_ok(&self.client, &health, self.start_timeout()).await?)
    }

    /// Until the read side at `url` has applied `seq` (at most `timeout`).
    pub async fn wait_applied(&self, url: &str, seq: u64, timeout: Duration) -> anyhow::Result<()> {
        let health = format!("{url}/health");
        test_support::try_wait_until(&self.client, &health, timeout, |h| {
            h["applied_seq"].as_u64().is_some_and(|a| a >= seq)
        })
        .await
        .with_context(|| format!("the read side at {url} applying seq {seq}"))?;
        Ok(())
    }

    /// `GET url/metrics`, kept as logs/metrics-NAME.txt, parsed.
    pub async fn metrics(&self, url: &str, name: &str) -> anyhow::Result<Vec<prom::Sample>> {
        let metrics = format!("{url}/metrics");
        let text = self
            .client
            .get(&metrics)
            .send()
            .await
            .with_context(|| format!("GET {metrics}"))?
            .text()
            .await?;
        let path = self.logs.join(format!("metrics-{name}.txt"));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        Ok(prom::parse(&text)?)
    }
}

/// Arguments from strings.
pub fn args<const N: usize>(list: [&str; N]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// `program` on the PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
