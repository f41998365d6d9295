//! `test-support`: helpers for foldbook's black-box tests (`gateway/tests/`) and for
//! its benchmark (`bench/`): find the real binaries, start them on free loopback
//! ports and wait for them to listen, stop them gently (SIGTERM) or not (SIGKILL),
//! run one-shot commands with a time limit, wait (always bounded) for a condition,
//! NATS servers for the JetStream tests, concurrent load.
//!
//! It contains no product code: no event, order, book, account or projection type.
//! It drives the binaries from outside, through their command line, their logs,
//! HTTP and signals, exactly as a user or an operator would; it depends on no
//! foldbook crate.
//!
//! # Layout
//!
//! - this file: [`binary`] (where the binaries are), [`Launch`] and [`Proc`] (a
//!   started server), [`run`] / [`run_program`] (one-shot commands), [`poll_until`]
//!   (the one bounded wait, and the HTTP waits built on it), small HTTP helpers;
//! - [`load`]: concurrent clients that record what they were acknowledged;
//! - [`nats`]: nats-server, single or clustered, on free ports.
//!
//! Fallible helpers return [`Error`] (the benchmark reports it and stops its
//! servers); their test-facing twins panic with the same message, because in a
//! test a panic is the failure.

pub mod load;
pub mod nats;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a binary gets to start listening (tests; the benchmark sets its own).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable naming the directory the binaries are in, instead of the
/// directory of the running executable.
pub const BIN_DIR_ENV: &str = "FOLDBOOK_BIN_DIR";

/// Log lines of a failed start shown in its error.
const FAILED_START_LOG_LINES_MAX: usize = 100;

/// Pause between two looks at a condition in [`poll_until`] and the HTTP waits.
const POLL: Duration = Duration::from_millis(10);

/// Pause between two looks at a child that is expected to exit.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// The pids of the children started here that may still run: what
/// [`kill_children`] kills.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// SIGKILLs every child started through this crate ([`Launch`], [`run_program`],
/// [`nats`]) that has not been reaped yet: for a program about to exit on a
/// signal, where no destructor will run. Each pid is still our unreaped child
/// (its owner reaps it only after unregistering it), so none names another process.
pub fn kill_children() {
    let pids = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in pids {
        if let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// A child that is unregistered from [`kill_children`] before it is reaped.
fn reap(child: &mut Child) {
    let _ = child.kill();
    unregister(child.id());
    let _ = child.wait();
}

pub const INIT: &str = r#"{"next_order_id": 5, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "buy", "price": 98, "qty": 5},
  {"id": 3, "user": "erin", "side": "sell", "price": 101, "qty": 7},
  {"id": 4, "user": "frank", "side": "sell", "price": 102, "qty": 12}
]}"#;

/// What went wrong while starting, running, stopping or waiting for a process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} is not built: run `cargo build --workspace --bins` first", .0.display())]
    NotBuilt(PathBuf),
    #[error("cannot tell where the running executable is: {0}")]
    CurrentExe(std::io::Error),
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("writing the log file {}: {source}", .path.display())]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} exited before listening ({status}); its log ends:\n{log}")]
    ExitedEarly {
        program: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{program} did not start listening within {timeout:?}; its log ends:\n{log}")]
    NotListening {
        program: String,
        timeout: Duration,
        log: String,
    },
    #[error("{program} {args} did not end within {timeout:?}; it wrote:\n{stderr}")]
    RunTimeout {
        program: String,
        args: String,
        timeout: Duration,
        stderr: String,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not exit within {timeout:?}")]
    NoExit { program: String, timeout: Duration },
    #[error("{what} not reached in {timeout:?}; last seen: {last}")]
    WaitTimeout {
        what: String,
        timeout: Duration,
        last: String,
    },
    #[error("{what}: {reason}")]
    Probe { what: String, reason: String },
}

/// A directory with an init.txt; the log goes beside it.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
    dir
}

/// The directory the workspace's binaries are in: `$FOLDBOOK_BIN_DIR`, else the
/// directory of the running executable. A test binary lives in
/// `target/<profile>/deps/` and an example in `target/<profile>/examples/`, so
/// those step out to `target/<profile>/`, where `cargo build --bins` puts the
/// binaries.
pub fn bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::CurrentExe(std::io::Error::other("it has no parent directory")))?;
    if dir
        .file_name()
        .is_some_and(|name| name == "deps" || name == "examples")
    {
        dir.pop();
    }
    Ok(dir)
}

/// Path of one of the workspace's binaries (see [`bin_dir`]), which must exist.
pub fn try_binary(name: &str) -> Result<PathBuf, Error> {
    let path = bin_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NotBuilt(path))
    }
}

/// [`try_binary`] for tests: a binary that is not built fails the test, saying
/// `cargo build --workspace --bins` (as scripts/test.sh does) builds it.
pub fn binary(name: &str) -> PathBuf {
    try_binary(name).unwrap_or_else(|e| panic!("{e}"))
}

/// How to start a server: the program, its arguments and environment, where its
/// log goes, how long it may take to say `listening on http://ADDR`.
pub struct Launch {
    /// Path of the executable.
    program: PathBuf,
    args: Vec<OsString>,
    /// Added after `RUST_LOG=info`, so one of them may override it.
    env: Vec<(OsString, OsString)>,
    /// Working directory; the caller's when `None`.
    dir: Option<PathBuf>,
    /// A file that receives every line the process writes (stdout and stderr),
    /// besides the copy kept in memory.
    log_file: Option<PathBuf>,
    start_timeout: Duration,
}

impl Launch {
    /// A launch of `program` with info logs and [`START_TIMEOUT`].
    pub fn new(program: impl Into<PathBuf>) -> Launch {
        Launch {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            log_file: None,
            start_timeout: START_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Launch {
        self.dir = Some(dir.into());
        self
    }

    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log_file = Some(path.into());
        self
    }

    pub fn start_timeout(mut self, timeout: Duration) -> Launch {
        self.start_timeout = timeout;
        self
    }

    /// Starts the process and waits (at most the start timeout) for its
    /// `listening on http://ADDR` line on stderr. A process that exits first, or
    /// does not say it in time (it is killed then), is an error showing the end of
    /// its log.
    pub fn start(self) -> Result<Proc, Error> {
        let program = self.program.display().to_string();
        let log_file = match &self.log_file {
            Some(path) => Some(Arc::new(Mutex::new(File::create(path).map_err(
                |source| Error::LogFile {
                    path: path.clone(),
                    source,
                },
            )?))),
            None => None,
        };
        let mut command = Command::new(&self.program);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(if log_file.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        let started = Instant::now();
        register(child.id());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        collect_lines(stderr, lines.clone(), log_file.clone(), Some(tx));
        if let Some(stdout) = child.stdout.take() {
            collect_lines(stdout, lines.clone(), log_file, None);
        }
        let failed_log = |lines: &Arc<Mutex<Vec<String>>>| {
            let lines = lines.lock().unwrap();
            let from = lines.len().saturating_sub(FAILED_START_LOG_LINES_MAX);
            lines[from..].join("\n")
        };
        let url = match rx.recv_timeout(self.start_timeout) {
            Ok(url) => url,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Its stderr closed without the line: it exited (or is exiting).
                let status = wait_exit_within(&mut child, &program, self.start_timeout);
                reap(&mut child);
                let status = status?;
                return Err(Error::ExitedEarly {
                    program,
                    status,
                    log: failed_log(&lines),
                });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                reap(&mut child);
                return Err(Error::NotListening {
                    program,
                    timeout: self.start_timeout,
                    log: failed_log(&lines),
                });
            }
        };
        Ok(Proc {
            child,
            url,
            lines,
            program,
            started,
        })
    }
}

/// Reads `pipe` line by line on a thread of its own into `sink` (and `file`); sends
/// the URL of the first `listening on http://ADDR` line to `listening`.
fn collect_lines(
    pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    file: Option<Arc<Mutex<File>>>,
    listening: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &listening
                && let Some(at) = line.find("listening on http://")
            {
                let url = line[at + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(url);
            }
            if let Some(file) = &file {
                // A log file that cannot be written loses lines, not the run.
                let _ = writeln!(file.lock().unwrap(), "{line}");
            }
            sink.lock().unwrap().push(line);
        }
    });
}

/// A running binary with its captured log lines. Dropping it kills it (SIGKILL), so
/// no server outlives its test or benchmark, even one that fails.
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// The program's path, for messages.
    program: String,
    /// When it was started (just after the spawn).
    started: Instant,
}

/// How a [`Proc::stop`] ended.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub status: ExitStatus,
    /// It did not exit within the timeout after SIGTERM and got SIGKILL.
    pub killed: bool,
}

impl Proc {
    /// Starts `bin` (a workspace binary) in `dir` with `args` plus
    /// `--listen 127.0.0.1:0`, and waits for its "listening on http://..." line.
    pub fn start(bin: &str, dir: &Path, args: &[&str]) -> Proc {
        Proc::start_with_env(bin, dir, args, &[])
    }

    /// [`Proc::start`] with extra environment variables.
    pub fn start_with_env(bin: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let launch = env
            .iter()
            .fold(Launch::new(binary(bin)), |launch, (k, v)| launch.env(k, v))
            .current_dir(dir)
            .args(args)
            .args(["--listen", "127.0.0.1:0"]);
        launch.start().unwrap_or_else(|e| panic!("{bin}: {e}"))
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Whether a log line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// The value of `key=VALUE` (text log format) in the last log line containing
    /// `text`: e.g. `events_per_s` of "write side replayed the log".
    pub fn log_field(&self, text: &str, key: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        let line = lines.iter().rev().find(|l| l.contains(text))?;
        line_field(line, key)
    }

    /// Resident memory now, in kB (`VmRSS` of /proc/PID/status).
    pub fn rss_kb(&self) -> Option<u64> {
        rss_kb(self.pid())
    }

    /// Sends `signal` (a `libc::SIG*`); false when the process is gone.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        // The pid is our own child's, not yet reaped (we hold its Child), so it
        // cannot name another process.
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a child's pid is a positive i32");
        // rustix checks that the number is a signal it knows.
        let signal = rustix::process::Signal::from_named_raw(signal).expect("a known signal");
        rustix::process::kill_process(pid, signal).is_ok()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        unregister(self.child.id());
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait (bounded) for the exit status; a process that does not
    /// exit in time fails the test.
    pub fn terminate(mut self) -> ExitStatus {
        assert!(self.signal(libc::SIGTERM), "{} is gone", self.program);
        wait_exit(&mut self.child, Duration::from_secs(20))
    }

    /// A clean stop: SIGTERM (the services write their snapshots), then SIGKILL if
    /// it has not exited after `timeout`. The log stays readable afterwards.
    pub fn stop(&mut self, timeout: Duration) -> Result<Stopped, Error> {
        if let Some(status) = self.try_wait()? {
            return Ok(Stopped {
                status,
                killed: false,
            });
        }
        self.signal(libc::SIGTERM);
        match wait_exit_within(&mut self.child, &self.program, timeout) {
            Ok(status) => Ok(Stopped {
                status,
                killed: false,
            }),
            Err(Error::NoExit { .. }) => {
                let _ = self.child.kill();
                unregister(self.child.id());
                let status = self.child.wait().map_err(|source| Error::Wait {
                    program: self.program.clone(),
                    source,
                })?;
                Ok(Stopped {
                    status,
                    killed: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        let status = self.child.try_wait().map_err(|source| Error::Wait {
            program: self.program.clone(),
            source,
        })?;
        if status.is_some() {
            unregister(self.child.id());
        }
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// The value of `key=VALUE` in one text-format log line (` key=VALUE`, the value up
/// to the next space; quotes removed).
pub fn line_field(line: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=");
    let at = line.find(&needle)? + needle.len();
    let value = line[at..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

/// Resident memory of process `pid` now, in kB (`VmRSS` of /proc/PID/status).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits at most `timeout` for `child` to exit.
fn wait_exit_within(
    child: &mut Child,
    program: &str,
    timeout: Duration,
) -> Result<ExitStatus, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = child.try_wait().map_err(|source| Error::Wait {
            program: program.to_owned(),
            source,
        })?;
        if let Some(status) = status {
            unregister(child.id());
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(Error::NoExit {
                program: program.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// Waits at most `timeout` for `child` to exit; one that does not is killed and
/// fails the test.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_exit_within(child, "process", timeout).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e}")
    })
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
    run_program(&binary(bin), Some(dir), args, env, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `program` with `args` (in `dir`, with `env` added) to its end, at most
/// `timeout`: one that does not end by then is killed, and the error shows what it
/// wrote on stderr. Its exit status and captured output otherwise, whatever the
/// status.
pub fn run_program<S: AsRef<OsStr>>(
    program: &Path,
    dir: Option<&Path>,
    args: &[S],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Output, Error> {
    let name = program.display().to_string();
    let mut command = Command::new(program);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: name.clone(),
            source,
        })?;
    register(child.id());
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
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
    let waited = wait_exit_within(&mut child, &name, timeout);
    reap(&mut child);
    let status = match waited {
        Ok(status) => status,
        Err(Error::NoExit { .. }) => {
            let stderr = stderr.join().unwrap_or_default();
            let args: Vec<_> = args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            return Err(Error::RunTimeout {
                program: name,
                args: args.join(" "),
                timeout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        Err(e) => return Err(e),
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// One look at a condition in [`poll_until`].
pub enum Probe<T> {
    /// It holds; here is what it produced.
    Done(T),
    /// Not yet; what was seen (for the message if time runs out).
    Pending(String),
    /// It can no longer hold (a request failed outright): stop waiting.
    Failed(String),
}

/// The one bounded wait: looks at `probe` every few milliseconds until it is
/// [`Probe::Done`] (its value) or [`Probe::Failed`] (an error), at most `timeout`
/// (an error naming `what` and the last thing seen).
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Probe::Done(value) => return Ok(value),
            Probe::Failed(reason) => {
                return Err(Error::Probe {
                    what: what.to_owned(),
                    reason,
                });
            }
            Probe::Pending(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::WaitTimeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `url` until it answers 2xx, at most `timeout`; a refused connection or
/// another status counts as "not yet".
pub async fn wait_ok(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), Error> {
    poll_until(&format!("a 2xx from {url}"), timeout, || async {
        match client.get(url).send().await {
            Ok(answer) if answer.status().is_success() => Probe::Done(()),
            Ok(answer) => Probe::Pending(answer.status().to_string()),
            Err(e) => Probe::Pending(e.to_string()),
        }
    })
    .await
}

/// Polls `url` until `done(json)` holds, at most `timeout`: its last answer. A
/// request that fails, or an answer that is not JSON, ends the wait with an error.
pub async fn try_wait_until(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, Error> {
    poll_until(&format!("condition on {url}"), timeout, || async {
        let answer = match client.get(url).send().await {
            Ok(answer) => answer,
            Err(e) => return Probe::Failed(format!("GET {url}: {e}")),
        };
        match answer.json::<serde_json::Value>().await {
            Ok(json) if done(&json) => Probe::Done(json),
            Ok(json) => Probe::Pending(json.to_string()),
            Err(e) => Probe::Failed(format!("GET {url}: not JSON: {e}")),
        }
    })
    .await
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
    try_wait_until(client, url, timeout, done)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_read_from_a_text_log_line() {
        let line = "2026-12-04T02:00:00Z  INFO command_svc: write side replayed the log \
                    log=\"a b\" events=1000 events_per_s=2500000 start_ms=4";
        assert_eq!(line_field(line, "events_per_s").as_deref(), Some("2500000"));
        assert_eq!(line_field(line, "start_ms").as_deref(), Some("4"));
        assert_eq!(line_field(line, "events").as_deref(), Some("1000"));
        assert_eq!(line_field(line, "resting_orders"), None);
    }

    #[test]
    fn the_binaries_are_beside_the_test_binary_outside_deps() {
        let dir = bin_dir().unwrap();
        assert_ne!(dir.file_name().unwrap(), "deps");
    }
}
