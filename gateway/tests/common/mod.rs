//! Shared helpers for the black-box tests: start the real binaries on free ports,
//! wait (bounded) for conditions, stop them gently or with SIGKILL.
#![allow(dead_code)]

pub mod load;
pub mod nats;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a binary gets to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

pub const INIT: &str = r#"{"next_order_id": 5, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "buy", "price": 98, "qty": 5},
  {"id": 3, "user": "erin", "side": "sell", "price": 101, "qty": 7},
  {"id": 4, "user": "frank", "side": "sell", "price": 102, "qty": 12}
]}"#;

/// A directory with an init.txt; the log goes beside it.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
    dir
}

/// Path of one of the workspace's binaries. The gateway's is known to cargo; the
/// services' are built beside it (`cargo build --workspace --bins`, as scripts/test.sh does).
pub fn binary(name: &str) -> PathBuf {
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    let path = gateway.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A running binary with its captured log lines.
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `bin` with `args` plus `--listen 127.0.0.1:0`, and waits for its
    /// "listening on http://..." line.
    pub fn start(bin: &str, dir: &Path, args: &[&str]) -> Proc {
        Proc::start_with_env(bin, dir, args, &[])
    }

    /// [`Proc::start`] with extra environment variables.
    pub fn start_with_env(bin: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(binary(bin))
            .current_dir(dir)
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_owned();
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "{bin} did not start listening within {START_TIMEOUT:?} ({status}); log:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        Proc { child, url, lines }
    }

    /// Starts a gateway in proxy mode in `dir`: writes go to `command`, reads to the
    /// `queries` replicas.
    pub fn start_proxy(dir: &Path, command: &Proc, queries: &[&Proc]) -> Proc {
        let mut args = vec!["--command-url", command.url.as_str()];
        for query in queries {
            args.extend(["--query-url", query.url.as_str()]);
        }
        Proc::start("gateway", dir, &args)
    }

    /// `host:port` it listens on (its URL without the scheme).
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_exit(&mut self.child, Duration::from_secs(20))
    }
}

/// How long [`run`] lets a one-shot command take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `bin` with `args` in `dir` to its end (a one-shot command, or a start
/// expected to fail), at most [`RUN_TIMEOUT`]; its exit status and captured output.
pub fn run(bin: &str, dir: &Path, args: &[&str]) -> Output {
    run_with(bin, dir, args, &[], RUN_TIMEOUT)
}

/// [`run`] with `env` added to the environment, at most `timeout`: a command that
/// does not end by then is killed, and the test fails showing what it wrote.
pub fn run_with(
    bin: &str,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Output {
    let mut child = Command::new(binary(bin))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap();
            panic!(
                "{bin} {args:?} did not end within {timeout:?}; it wrote:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET url`; a request that fails fails the test, naming the url.
async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    get(client, url).await.json().await.unwrap()
}

/// The body of `GET url` as text (a /metrics page, the index).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    get(client, url).await.text().await.unwrap()
}

/// The JSON body of `POST url` (an order's answer), whatever its status.
pub async fn post_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .post(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .unwrap()
}

/// The status of a `method` request to `url`, its body unread.
pub async fn status_of(client: &reqwest::Client, method: &str, url: &str) -> reqwest::StatusCode {
    client
        .request(method.parse().unwrap(), url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .status()
}

/// Polls `url` until `done(json)` holds, at most `timeout`; panics with the last answer.
pub async fn wait_until(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = get_json(client, url).await;
        if done(&last) {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition on {url} not reached in {timeout:?}; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded by `timeout`) until the read side at `base` has applied `seq`;
/// returns its /health.
pub async fn applied(
    client: &reqwest::Client,
    base: &str,
    seq: impl Into<serde_json::Value>,
    timeout: Duration,
) -> serde_json::Value {
    let seq = seq.into();
    wait_until(client, &format!("{base}/health"), timeout, |h| {
        h["applied_seq"] == seq
    })
    .await
}

/// Waits until the read side has applied everything the write side committed.
pub async fn caught_up(client: &reqwest::Client, base: &str) -> serde_json::Value {
    wait_until(
        client,
        &format!("{base}/health"),
        Duration::from_secs(10),
        |h| h["applied_seq"] == h["durable_seq"],
    )
    .await
}
