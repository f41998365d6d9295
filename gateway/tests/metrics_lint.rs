//! `/metrics` of every binary passes Prometheus' own linter, `promtool check
//! metrics` (Debian's `prometheus` package; `scripts/test.sh` installs it when
//! missing): every family has `# HELP` text, counters end in `_total`, units are
//! base units named last. Checked after some traffic, so that every family the
//! binaries record (requests, commits, lag, process metrics) is there to be linted.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use test_support::*;

/// The promtool to run: `$PROMTOOL`, else the one on the PATH.
fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// `promtool check metrics` of `text`: what it printed, and whether it passed.
fn lint(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's prometheus package (scripts/test.sh does)",
                promtool()
            )
        });
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = wait_output(child, Duration::from_secs(30));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

/// The child's output, killing it after `timeout`.
fn wait_output(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait().expect("waiting for promtool").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("promtool did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("promtool's output")
}

#[test]
fn the_linter_catches_a_family_without_help() {
    // The check can fail: a family without HELP is reported.
    let (ok, said) = lint("# TYPE foo_total counter\nfoo_total 1\n");
    assert!(!ok, "promtool accepted a family without HELP: {said}");
}

/// The writer's durable seq, from `/health`.
async fn durable_seq(client: &reqwest::Client, base: &str) -> u64 {
    let health = get_json(client, &format!("{base}/health")).await;
    health["durable_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("{base}/health has no durable_seq: {health}"))
}

async fn assert_lints_clean(client: &reqwest::Client, base: &str, families: &[&str]) {
    let text = get_text(client, &format!("{base}/metrics")).await;
    for family in families {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{base}/metrics has no HELP for {family}:\n{text}"
        );
    }
    let (ok, said) = lint(&text);
    assert!(
        ok,
        "promtool check metrics on {base}/metrics:\n{said}\n---\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_serves_metrics_that_promtool_accepts() {
    let dir = workdir();
    let client = client();
    let process = [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ];
    let http = ["foldbook_http_requests_total", "foldbook_connections_open"];

    // Split: command-svc, query-svc, and a gateway in proxy mode in front of them.
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query]);
    for i in 0..6 {
        let side = if i % 2 == 0 { "buy" } else { "sell" };
        let order = post_json(&client, &format!("{}/{side}/lint/100", gw.url)).await;
        assert!(order.get("error").is_none(), "{order}");
    }
    let seq = durable_seq(&client, &command.url).await;
    assert!(seq >= 6, "six orders, durable seq {seq}");
    wait_until(
        &client,
        &format!("{}/orderbook", query.url),
        Duration::from_secs(10),
        |b| b["seq"].as_u64() >= Some(seq),
    )
    .await;
    let _ = status_of(&client, "GET", &format!("{}/nowhere", gw.url)).await;
    let write = [
        "foldbook_events_appended_total",
        "foldbook_fsync_seconds",
        "foldbook_batch_events",
        "foldbook_durable_seq",
    ];
    let read = ["foldbook_lag_seconds", "foldbook_applied_seq"];
    assert_lints_clean(
        &client,
        &command.url,
        &[&write[..], &http, &process].concat(),
    )
    .await;
    assert_lints_clean(&client, &query.url, &[&read[..], &http, &process].concat()).await;
    assert_lints_clean(&client, &gw.url, &[&http[..], &process].concat()).await;
    drop(gw);
    drop(query);
    drop(command);

    // Combined: both sides in one process.
    let dir = workdir();
    let combined = Proc::start("gateway", dir.path(), &[]);
    let order = post_json(&client, &format!("{}/buy/lint/100", combined.url)).await;
    assert!(order.get("error").is_none(), "{order}");
    let seq = durable_seq(&client, &combined.url).await;
    wait_until(
        &client,
        &format!("{}/orderbook", combined.url),
        Duration::from_secs(10),
        |b| b["seq"].as_u64() >= Some(seq),
    )
    .await;
    assert_lints_clean(
        &client,
        &combined.url,
        &[&write[..], &read, &http, &process].concat(),
    )
    .await;
}
