//! `bench`: foldbook's benchmark runner (scripts/bench.sh builds the release
//! binaries and starts it from the repository's root). It runs the sections
//! (`reads,writes,lag,replay,rss` by default; `soak`, `nats`, `markets`, `accounts` and
//! `curves` on request), each
//! figure against a baseline measured in the same run, and writes
//! `target/bench/results.json` (every round's numbers, medians, ratios, goals,
//! date, commit, settings) and `target/bench/results.md` (the table rendered from
//! that JSON, also printed at the end). `bench render FILE` prints the table of a
//! results.json again.
//!
//! Servers run on 127.0.0.1 with free ports and are stopped on every way out: each
//! [`test_support::Proc`] is killed when dropped (an error or a panic unwinds
//! through them), and SIGINT/SIGTERM are taken by a thread of their own that kills
//! every child still running before exiting.
//!
//! Modules: [`cli`] (flags and environment), [`runner`] (the run's state),
//! [`processes`] (servers, wrk, loadgen, /health, /metrics), [`sections`] (one
//! module per section).

mod cli;
mod processes;
mod runner;
mod sections;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{Cli, Command, Settings};
use runner::{Meta, Runner};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The run's data directory and whether to keep it, for the signal thread.
static WORK: OnceLock<(PathBuf, bool)> = OnceLock::new();

/// How long apt-get may take to install wrk.
const APT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long git, rustc and df may take to answer.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    take_signals();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render { file }) => render(&file),
        Some(Command::Run(settings)) => run(settings),
        None => run(cli.run),
    };
    if let Err(e) = result {
        eprintln!("bench: error: {e:#}");
        std::process::exit(1);
    }
}

/// Prints the markdown table of a results.json.
fn render(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let results: foldbook_bench::results::Results = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results.json", file.display()))?;
    print!("{}", foldbook_bench::results::render(&results));
    Ok(())
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    anyhow::ensure!(
        root.join("init.txt").is_file() && root.join("scripts/bench").is_dir(),
        "run from the repository's root (scripts/bench.sh does): no init.txt or scripts/bench/ in {}",
        root.display()
    );
    let bin = test_support::bin_dir()?;
    let out = root.join("target/bench");
    let logs = out.join("logs");
    runner::remove_dir(&logs)?;
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let work = tempfile::Builder::new()
        .prefix("work.")
        .tempdir_in(&out)
        .with_context(|| format!("a data directory in {}", out.display()))?;
    let _ = WORK.set((work.path().to_owned(), settings.keep));
    install_wrk()?;

    let keep = settings.keep;
    let mut runner = Runner::new(settings, root.clone(), bin, logs, work.path().to_owned());
    let meta = Meta {
        started_utc: foldbook_bench::clock::now_utc(),
        commit: commit(&root),
        rustc: tool_line("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into()),
        machine: machine(work.path()),
        load_before: runner::load_average(),
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = tokio.block_on(async {
        for section in runner.settings.sections() {
            sections::run(&mut runner, section)
                .await
                .with_context(|| format!("section {}", section.name()))?;
        }
        anyhow::Ok(())
    });
    if let Err(e) = &outcome {
        runner.note(format!("the run stopped: {e:#}"));
    }
    let results = runner.results(meta);
    let json = out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let markdown = foldbook_bench::results::render(&results);
    std::fs::write(out.join("results.md"), &markdown)?;
    print!("{markdown}");
    runner.say(format!(
        "written: {} and results.md; server logs and wrk/loadgen output in {}/",
        json.display(),
        runner.logs.display()
    ));
    if keep {
        let kept = work.keep();
        runner.say(format!("kept the data in {}", kept.display()));
    }
    outcome
}

/// wrk from Debian when missing (as root), as scripts/bench.sh did.
fn install_wrk() -> anyhow::Result<()> {
    if processes::which("wrk").is_some() {
        return Ok(());
    }
    anyhow::ensure!(
        rustix::process::geteuid().is_root(),
        "wrk is needed: apt-get install -y wrk (as root)"
    );
    eprintln!("bench: installing wrk from Debian");
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "wrk"][..]] {
        let out = test_support::run_program(Path::new("apt-get"), None, args, &env, APT_TIMEOUT)?;
        anyhow::ensure!(
            out.status.success(),
            "apt-get {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    anyhow::ensure!(
        processes::which("wrk").is_some(),
        "wrk installed, but not on the PATH"
    );
    Ok(())
}

/// The first line a tool prints, if it runs.
fn tool_line(program: &str, args: &[&str]) -> Option<String> {
    let out = test_support::run_program(Path::new(program), None, args, &[], TOOL_TIMEOUT).ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    })
}

/// The short commit, and whether the tree has uncommitted changes.
fn commit(root: &Path) -> String {
    let dir = root.display().to_string();
    let Some(hash) = tool_line("git", &["-C", &dir, "rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = test_support::run_program(
        Path::new("git"),
        None,
        &["-C", &dir, "status", "--porcelain"],
        &[],
        TOOL_TIMEOUT,
    )
    .map(|o| !o.stdout.is_empty())
    .unwrap_or(false);
    if dirty {
        format!("{hash} (with uncommitted changes)")
    } else {
        hash
    }
}

/// CPUs, model, memory, kernel, and the file system the data is on.
fn machine(work: &Path) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown model", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1_048_576.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let fs = test_support::run_program(
        Path::new("df"),
        None,
        &["-T".as_ref(), work.as_os_str()],
        &[],
        TOOL_TIMEOUT,
    )
    .ok()
    .and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    })
    .unwrap_or_else(|| "unknown".into());
    format!("{cpus} CPUs, {model}, {mem_gib:.0} GiB RAM, Linux {kernel}, data on {fs}")
}

/// Takes SIGINT and SIGTERM on a thread of its own (a handler, not a blocked
/// mask, which the children would inherit), which kills every child still
/// running, removes the data directory unless it is kept, and exits 128 + the
/// signal.
fn take_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime for the signal thread");
    // The handlers are installed here, before the first child starts.
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        (
            signal(SignalKind::interrupt()).expect("a SIGINT handler"),
            signal(SignalKind::terminate()).expect("a SIGTERM handler"),
        )
    });
    std::thread::spawn(move || {
        let signal = runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => libc::SIGINT,
                _ = terminate.recv() => libc::SIGTERM,
            }
        });
        eprintln!("bench: signal {signal}: stopping every server started");
        test_support::kill_children();
        if let Some((work, keep)) = WORK.get() {
            if *keep {
                eprintln!("bench: kept the data in {}", work.display());
            } else {
                let _ = std::fs::remove_dir_all(work);
            }
        }
        std::process::exit(128 + signal);
    });
}
