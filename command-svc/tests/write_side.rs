//! The write side in process: log recovery, the writer's group commit and failure
//! handling (with a storage a test can break), and the HTTP routes without a socket.

use command_svc::book::Book;
use command_svc::command::Command;
use command_svc::idempotency::IdempotencyIndex;
use command_svc::log_file::{LogFile, OpenError, Storage};
use command_svc::model::WriteModel;
use command_svc::writer::{self, DispatchError, FsyncMode, Outcome, WriterOptions};
use command_svc::{CommandHandle, WriterTask};
use command_svc::{Config, http};
use shared_events::{BookState, LogCursor, ScanError, Side, Watermark};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const INIT: &str = r#"{"next_order_id": 3, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "sell", "price": 101, "qty": 5}
]}"#;

fn files() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
    let config = Config::new(dir.path().join("init.txt"), dir.path().join("log.txt"));
    (dir, config)
}

fn buy(user: &str, price: u64, qty: u64) -> Command {
    Command::Place {
        user: user.into(),
        side: Side::Buy,
        price,
        qty,
        idempotency_key: None,
    }
}

/// Storage in memory that records each append and sync, and can be told to fail.
#[derive(Clone, Default)]
struct FakeDisk {
    inner: Arc<Mutex<FakeDiskState>>,
}

#[derive(Default)]
struct FakeDiskState {
    appends: Vec<Vec<u8>>,
    syncs: usize,
    fail_sync: bool,
    fail_write: bool,
    /// Every call in order: "append N", "sync", "durable SEQ@OFFSET".
    ops: Vec<String>,
}

impl Storage for FakeDisk {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.inner.lock().unwrap();
        if s.fail_write {
            return Err(io::Error::other("injected write failure"));
        }
        s.appends.push(bytes.to_vec());
        s.ops.push(format!("append {}", bytes.len()));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.inner.lock().unwrap();
        s.syncs += 1;
        s.ops.push("sync".to_owned());
        if s.fail_sync {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        Ok(())
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        let mut s = self.inner.lock().unwrap();
        s.ops.push(format!("durable {}@{}", mark.seq, mark.offset));
        Ok(())
    }
}

fn genesis_book() -> Book {
    Book::from_state(&BookState::parse(INIT).unwrap())
}

fn spawn_on(disk: &FakeDisk, fsync: FsyncMode) -> (CommandHandle, WriterTask) {
    let options = WriterOptions {
        fsync,
        snapshots: None,
    };
    let model = WriteModel {
        book: genesis_book(),
        keys: IdempotencyIndex::new(100),
    };
    writer::spawn(model, disk.clone(), LogCursor::start(), options)
}

#[tokio::test]
async fn the_durable_watermark_follows_the_sync_with_the_log_length() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    handle.dispatch(buy("u", 90, 1)).await.unwrap();
    handle.dispatch(buy("u", 91, 1)).await.unwrap();
    let ops = disk.inner.lock().unwrap().ops.clone();
    let first = disk.inner.lock().unwrap().appends[0].len();
    let second = disk.inner.lock().unwrap().appends[1].len();
    assert_eq!(
        ops,
        vec![
            format!("append {first}"),
            "sync".to_owned(),
            format!("durable 1@{first}"),
            format!("append {second}"),
            "sync".to_owned(),
            format!("durable 2@{}", first + second),
        ]
    );
    task.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_commands_get_gapless_seqs_and_one_sync_per_write() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            h.dispatch(buy("u", 90 + i % 5, 1)).await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Outcome::Placed { seq, durable, .. } => {
                assert!(durable);
                seqs.push(seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<_>>(),
        "every command got its own seq, no gaps"
    );
    let (syncs, appends, lines) = {
        let s = disk.inner.lock().unwrap();
        let lines: usize = s
            .appends
            .iter()
            .map(|a| a.iter().filter(|&&b| b == b'\n').count())
            .sum();
        (s.syncs, s.appends.len(), lines)
    };
    assert_eq!(syncs, appends, "one fdatasync per write");
    assert_eq!(lines, 200);
    drop(handle);
    task.shutdown().await.unwrap();
}

#[tokio::test]
async fn rejected_commands_write_nothing() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    let err = handle
        .dispatch(Command::Cancel {
            user: "mallory".into(),
            order_id: 1,
            idempotency_key: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, DispatchError::Rejected(ref r) if r.status() == 403),
        "{err:?}"
    );
    let err = handle
        .dispatch(Command::Cancel {
            user: "alice".into(),
            order_id: 77,
            idempotency_key: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, DispatchError::Rejected(ref r) if r.status() == 404),
        "{err:?}"
    );
    assert!(disk.inner.lock().unwrap().appends.is_empty());
    task.shutdown().await.unwrap();
}

async fn failing_storage_is_fail_stop(fail_sync: bool) {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    handle.dispatch(buy("u", 90, 1)).await.unwrap();
    {
        let mut s = disk.inner.lock().unwrap();
        s.fail_sync = fail_sync;
        s.fail_write = !fail_sync;
    }
    let err = handle.dispatch(buy("u", 90, 1)).await.unwrap_err();
    assert!(
        matches!(err, DispatchError::Unavailable(ref m) if m.contains("injected")),
        "{err:?}"
    );
    let mut failure = task.failure.clone();
    failure.wait_for(Option::is_some).await.unwrap();
    let syncs_after_failure = disk.inner.lock().unwrap().syncs;
    // Everything after the failure is refused; fsync is never retried.
    let err = handle.dispatch(buy("u", 90, 1)).await.unwrap_err();
    assert!(matches!(err, DispatchError::Unavailable(_)), "{err:?}");
    assert_eq!(disk.inner.lock().unwrap().syncs, syncs_after_failure);
    assert_eq!(
        handle
            .stats
            .durable_seq
            .load(std::sync::atomic::Ordering::Acquire),
        1
    );
    assert!(task.shutdown().await.unwrap_err().contains("injected"));
}

#[tokio::test]
async fn failed_fdatasync_answers_503_and_stops_the_writer() {
    failing_storage_is_fail_stop(true).await;
}

#[tokio::test]
async fn failed_write_answers_503_and_stops_the_writer() {
    failing_storage_is_fail_stop(false).await;
}

#[tokio::test]
async fn fsync_never_says_not_durable_and_never_syncs() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Never);
    let Outcome::Placed { durable, .. } = handle.dispatch(buy("u", 90, 1)).await.unwrap() else {
        panic!()
    };
    assert!(!durable);
    assert_eq!(disk.inner.lock().unwrap().syncs, 0);
    task.shutdown().await.unwrap();
}

fn scan_file(path: &Path) -> Result<shared_events::ScanReport, ScanError> {
    shared_events::scan(
        std::fs::File::open(path).unwrap(),
        LogCursor::start(),
        |_, _| {},
    )
}

async fn place_some(config: &Config, n: u64) -> Vec<Outcome> {
    let (handle, task) = command_svc::start(config).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            handle
                .dispatch(buy("carol", 95 + i % 3, 1 + i))
                .await
                .unwrap(),
        );
    }
    drop(handle);
    task.shutdown().await.unwrap();
    out
}

#[tokio::test]
async fn restart_replays_the_log_and_continues_the_sequence() {
    let (_dir, config) = files();
    place_some(&config, 3).await;
    let again = place_some(&config, 2).await;
    assert_eq!(again[0].seq(), 4);
    let report = scan_file(config.log.file().unwrap()).unwrap();
    assert_eq!(report.cursor.next_seq, 6);
    assert_eq!(report.torn, None);
}

#[tokio::test]
async fn torn_tail_is_cut_off_and_the_next_write_gets_the_next_seq() {
    let (_dir, config) = files();
    place_some(&config, 2).await;
    let whole = std::fs::metadata(config.log.file().unwrap()).unwrap().len();
    let mut bytes = std::fs::read(config.log.file().unwrap()).unwrap();
    bytes.extend_from_slice(br#"{"seq":3,"ts_us":1,"v":1,"event":{"ty"#);
    std::fs::write(config.log.file().unwrap(), &bytes).unwrap();
    let again = place_some(&config, 1).await;
    assert_eq!(again[0].seq(), 3);
    let report = scan_file(config.log.file().unwrap()).unwrap();
    assert_eq!((report.cursor.next_seq, report.torn), (4, None));
    assert!(std::fs::metadata(config.log.file().unwrap()).unwrap().len() > whole);
}

#[tokio::test]
async fn corruption_before_the_end_refuses_to_start_naming_line_and_seq() {
    let (_dir, config) = files();
    place_some(&config, 3).await;
    let mut bytes = std::fs::read(config.log.file().unwrap()).unwrap();
    let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes[second_line + 20] ^= 0x20;
    std::fs::write(config.log.file().unwrap(), &bytes).unwrap();
    // The clean stop left a snapshot at seq 3, after which there is nothing to read:
    // start would not look at line 2 at all. `verify` reads everything.
    let mut report = Vec::new();
    assert!(!command_svc::cli::verify(&config.log, Some(&config.init), &mut report).unwrap());
    let report = String::from_utf8(report).unwrap();
    assert!(
        report.contains("first corrupt line: line 2") && report.contains("expected seq 2"),
        "{report}"
    );
    // Without snapshots, start replays from genesis and must refuse.
    std::fs::remove_dir_all(config.snapshot_dir()).unwrap();
    let err = command_svc::start(&config).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("seq 2"), "{err}");
    assert_eq!(
        std::fs::read(config.log.file().unwrap()).unwrap(),
        bytes,
        "a refused log is left untouched"
    );
}

#[tokio::test]
async fn a_second_writer_on_the_same_log_is_refused() {
    let (_dir, config) = files();
    let (handle, task) = command_svc::start(&config).unwrap();
    match LogFile::open(config.log.file().unwrap()) {
        Err(OpenError::Locked { .. }) => {}
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    let err = command_svc::start(&config).unwrap_err().to_string();
    assert!(err.contains("locked by another writer"), "{err}");
    drop(handle);
    task.shutdown().await.unwrap();
    LogFile::open(config.log.file().unwrap()).expect("the lock is released when the writer stops");
}

#[tokio::test]
async fn bad_init_file_is_named_in_the_error() {
    let (_dir, config) = files();
    std::fs::write(&config.init, r#"{"next_order_id": 1, "orders": [{"id": 1, "user": "a", "side": "buy", "price": 1, "qty": 1}]}"#)
        .unwrap();
    let err = command_svc::start(&config).unwrap_err().to_string();
    assert!(
        err.contains("init.txt") && err.contains("next_order_id"),
        "{err}"
    );
    let missing = Config {
        init: PathBuf::from("/nonexistent/init.txt"),
        ..config
    };
    assert!(
        command_svc::start(&missing)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/init.txt")
    );
}

mod routes {
    use super::*;
    use warp::http::StatusCode;

    async fn request(
        routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
        method: &str,
        path: &str,
    ) -> (StatusCode, serde_json::Value, Option<String>) {
        let res = warp::test::request()
            .method(method)
            .path(path)
            .reply(routes)
            .await;
        let seq = res
            .headers()
            .get("x-event-seq")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(res.headers()["content-type"], "application/json", "{path}");
        let body = serde_json::from_slice(res.body())
            .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", res.body()));
        (res.status(), body, seq)
    }

    #[tokio::test]
    async fn place_cancel_and_errors() {
        let (_dir, config) = files();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);

        let (status, body, seq) = request(&routes, "POST", "/buy/dave/101?qty=7").await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(seq.as_deref(), Some("1"));
        assert_eq!(
            body["order"],
            serde_json::json!({"id": 3, "user": "dave", "side": "buy", "price": 101, "qty": 7})
        );
        assert_eq!(
            body["fills"],
            serde_json::json!([{"maker_id": 2, "maker_user": "bob", "price": 101, "qty": 5}])
        );
        assert_eq!(
            (body["resting_qty"].as_u64(), body["durable"].as_bool()),
            (Some(2), Some(true))
        );

        let (status, body, _) = request(&routes, "GET", "/sell/erin/200").await;
        assert_eq!(
            (status, body["order"]["qty"].as_u64()),
            (StatusCode::CREATED, Some(1)),
            "GET works, qty defaults to 1"
        );

        let (status, body, seq) = request(&routes, "POST", "/cancel/dave/3").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"seq": 3, "order_id": 3, "cancelled_qty": 2})
        );
        assert_eq!(seq.as_deref(), Some("3"));
        assert_eq!(
            request(&routes, "POST", "/cancel/dave/3").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&routes, "POST", "/cancel/dave/1").await.0,
            StatusCode::FORBIDDEN
        );

        for bad in [
            "/buy/dave/0",
            "/buy/dave/1000000001",
            "/buy/dave/abc",
            "/buy/dave/-5",
            "/buy/dave/1.5",
            "/buy/dave/100?qty=0",
            "/buy/dave/100?qty=1000001",
            "/buy/dave/100?qty=x",
            "/buy/dave/100?qty=1&qty=2",
            "/buy/dave/100?qyt=3",
            "/buy/da%20ve/100",
            "/cancel/dave/zero",
            "/cancel/dave/0",
        ] {
            let (status, body, seq) = request(&routes, "POST", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{bad}: {body}"
            );
            assert_eq!(seq, None);
        }
        let long_user = format!("/buy/{}/100", "u".repeat(65));
        assert_eq!(
            request(&routes, "POST", &long_user).await.0,
            StatusCode::BAD_REQUEST
        );

        assert_eq!(
            request(&routes, "GET", "/cancel/dave/1").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            request(&routes, "DELETE", "/buy/dave/100").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            request(&routes, "GET", "/nope").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&routes, "POST", "/buy/dave").await.0,
            StatusCode::NOT_FOUND
        );

        let (status, health, _) = request(&routes, "GET", "/health").await;
        assert_eq!(
            (status, health["status"].as_str(), health["seq"].as_u64()),
            (StatusCode::OK, Some("ok"), Some(3))
        );
        assert_eq!(
            handle
                .stats
                .head_seq
                .load(std::sync::atomic::Ordering::Acquire),
            3,
            "rejections wrote nothing"
        );

        drop((routes, handle));
        task.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn start_uses_the_newest_snapshot_and_ignores_other_fold_versions() {
    let (_dir, mut config) = files();
    config.snapshot_every = 2;
    place_some(&config, 5).await; // snapshots while running, and at seq 5 at the stop
    let snaps = std::fs::read_dir(config.snapshot_dir()).unwrap().count();
    assert!(
        (1..=2).contains(&snaps),
        "at most two are kept, got {snaps}"
    );

    // Damage line 1. A start from the seq-5 snapshot never reads it; a replay from
    // genesis would refuse to start.
    let mut bytes = std::fs::read(config.log.file().unwrap()).unwrap();
    bytes[8] ^= 0x01;
    std::fs::write(config.log.file().unwrap(), &bytes).unwrap();
    let (handle, task) = command_svc::start(&config).unwrap();
    assert_eq!(handle.dispatch(buy("dave", 90, 1)).await.unwrap().seq(), 6);
    drop(handle);
    task.shutdown().await.unwrap();

    // Snapshots of another fold version are ignored: replay from genesis, which
    // now reaches the damaged line 1 and refuses, naming it.
    for entry in std::fs::read_dir(config.snapshot_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let ours = format!("\"fold_version\":{}", command_svc::checkpoint::FOLD_VERSION);
        let other = text.replacen(&ours, "\"fold_version\":99", 1);
        assert_ne!(text, other);
        std::fs::write(&path, other).unwrap();
    }
    let err = command_svc::start(&config).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("seq 1"), "{err}");
}

mod idempotency {
    use super::*;

    async fn send(
        routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
        path: &str,
        key: &str,
    ) -> (u16, serde_json::Value) {
        let res = warp::test::request()
            .method("POST")
            .path(path)
            .header("idempotency-key", key)
            .reply(routes)
            .await;
        (
            res.status().as_u16(),
            serde_json::from_slice(res.body()).unwrap(),
        )
    }

    fn log_lines(config: &Config) -> usize {
        std::fs::read(config.log.file().unwrap())
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_also_after_a_restart() {
        let (_dir, config) = files();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        let (status, first) = send(&routes, "/buy/dave/101?qty=7", "order-1").await;
        assert_eq!(status, 201, "{first}");
        let (status, again) = send(&routes, "/buy/dave/101?qty=7", "order-1").await;
        assert_eq!(
            (status, &again),
            (201, &first),
            "same seq, same order, same fills"
        );
        let (status, cancel) = send(&routes, "/cancel/dave/3", "cancel-1").await;
        assert_eq!(status, 200, "{cancel}");
        let (status, cancel_again) = send(&routes, "/cancel/dave/3", "cancel-1").await;
        assert_eq!(
            (status, &cancel_again),
            (200, &cancel),
            "not a 404: the first answer"
        );
        let (status, conflict) = send(&routes, "/buy/dave/102?qty=7", "order-1").await;
        assert_eq!(status, 409, "{conflict}");
        let (status, bad) = send(&routes, "/buy/dave/101", "has space").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(log_lines(&config), 2, "retries and conflicts write nothing");
        drop((routes, handle));
        task.shutdown().await.unwrap();

        // After a restart, from the snapshot the clean stop wrote...
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        assert_eq!(
            send(&routes, "/buy/dave/101?qty=7", "order-1").await,
            (201, first.clone())
        );
        drop((routes, handle));
        task.shutdown().await.unwrap();
        // ...and from replaying the log alone.
        std::fs::remove_dir_all(config.snapshot_dir()).unwrap();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        assert_eq!(
            send(&routes, "/buy/dave/101?qty=7", "order-1").await,
            (201, first)
        );
        assert_eq!(
            send(&routes, "/cancel/dave/3", "cancel-1").await,
            (200, cancel)
        );
        assert_eq!(log_lines(&config), 2);
        drop((routes, handle));
        task.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_duplicates_write_once() {
        let disk = FakeDisk::default();
        let (handle, task) = spawn_on(&disk, FsyncMode::Always);
        let cmd = Command::Place {
            user: "u".into(),
            side: Side::Buy,
            price: 90,
            qty: 1,
            idempotency_key: Some("same".into()),
        };
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (h, c) = (handle.clone(), cmd.clone());
                tokio::spawn(async move { h.dispatch(c).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().seq(), 1);
        }
        let lines: usize = disk
            .inner
            .lock()
            .unwrap()
            .appends
            .iter()
            .map(|a| a.iter().filter(|&&b| b == b'\n').count())
            .sum();
        assert_eq!(lines, 1);
        task.shutdown().await.unwrap();
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// A storage whose sync waits until released: the writer's queue fills up.
    #[derive(Clone)]
    struct StuckDisk(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Storage for StuckDisk {
        fn append(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            let (lock, cvar) = &*self.0;
            let _released = cvar
                .wait_while(lock.lock().unwrap(), |released| !*released)
                .unwrap();
            Ok(())
        }
        fn publish_durable(&mut self, _: Watermark) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_writer_queue_answers_busy_at_once() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let model = WriteModel {
            book: genesis_book(),
            keys: IdempotencyIndex::new(0),
        };
        let options = WriterOptions {
            fsync: FsyncMode::Always,
            snapshots: None,
        };
        let (handle, task) =
            writer::spawn(model, StuckDisk(gate.clone()), LogCursor::start(), options);
        let total = writer::QUEUE_COMMANDS_MAX + writer::BATCH_EVENTS_MAX + 500;
        let tasks: Vec<_> = (0..total)
            .map(|i| {
                let h = handle.clone();
                tokio::spawn(async move { h.dispatch(buy("u", 1 + (i % 50) as u64, 1)).await })
            })
            .collect();
        // While the disk is stuck nothing can succeed; the overflow is answered anyway.
        let overflow = total - writer::QUEUE_COMMANDS_MAX - writer::BATCH_EVENTS_MAX;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tasks.iter().filter(|t| t.is_finished()).count() < overflow {
            assert!(
                std::time::Instant::now() < deadline,
                "refusals did not come while the disk was stuck"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(DispatchError::Busy) => busy += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(
            busy >= overflow,
            "at least the overflow is refused, got {busy} busy"
        );
        assert_eq!(ok + busy, total);
        assert!(
            ok >= writer::QUEUE_COMMANDS_MAX,
            "queued commands are all answered: {ok}"
        );
        drop(handle);
        task.shutdown().await.unwrap();
    }

    fn arb_segment() -> impl Strategy<Value = String> {
        // Arbitrary bytes, percent-encoded as a client would send them, plus the
        // raw characters validation must reject.
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80)
                .prop_map(|b| b.iter().map(|c| format!("%{c:02X}")).collect::<String>()),
            "[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,80}",
            "[0-9]{1,25}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the path and query, the answer is a success or a 4xx with a JSON
        /// error, never a panic or a 5xx, and a 4xx writes nothing.
        #[test]
        fn arbitrary_requests_get_json_4xx_and_write_nothing(
            route in prop_oneof![Just("buy"), Just("sell"), Just("cancel")],
            user in arb_segment(),
            second in arb_segment(),
            query in "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,60}",
            method in prop_oneof![Just("POST"), Just("GET"), Just("PUT")],
        ) {
            let path = format!("/{route}/{user}/{second}?{query}");
            // What no HTTP client can send is not a request.
            prop_assume!(warp::http::Uri::try_from(path.as_str()).is_ok());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (_dir, config) = files();
                let (handle, task) = command_svc::start(&config).unwrap();
                let routes = http::routes(handle.clone(), None);
                let res = warp::test::request().method(method).path(&path).reply(&routes).await;
                let status = res.status().as_u16();
                assert!(status < 500, "{method} {path}: {status}");
                if status >= 400 {
                    let body: serde_json::Value = serde_json::from_slice(res.body()).expect("a JSON error body");
                    assert!(body["error"].is_string(), "{body}");
                    assert_eq!(handle.stats.head_seq.load(std::sync::atomic::Ordering::Acquire), 0, "{path} wrote");
                }
                drop((routes, handle));
                task.shutdown().await.unwrap();
            });
        }
    }
}

/// One log that two writers share, as on JetStream: a line is stored only if the
/// log ends right before its seq; the first one that does not fit, and everything
/// after it in the same sync, is refused with `Fenced`.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

/// A writer's handle on the shared log: what it appended since its last sync.
struct SharedLogWriter {
    log: SharedLog,
    staged: Vec<u8>,
}

impl SharedLog {
    fn writer(&self) -> SharedLogWriter {
        SharedLogWriter {
            log: self.clone(),
            staged: Vec::new(),
        }
    }

    fn seqs(&self) -> Vec<u64> {
        let bytes = self.0.lock().unwrap().clone();
        let mut seqs = Vec::new();
        shared_events::scan(&bytes[..], LogCursor::start(), |env, _| seqs.push(env.seq)).unwrap();
        seqs
    }
}

impl Storage for SharedLogWriter {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.staged.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let mut log = self.log.0.lock().unwrap();
        for (landed, line) in staged.split_inclusive(|&b| b == b'\n').enumerate() {
            let env = shared_events::decode_line(&line[..line.len() - 1]).unwrap();
            let last = log.iter().filter(|&&b| b == b'\n').count() as u64;
            if env.seq != last + 1 {
                return Err(io::Error::other(command_svc::log_file::Fenced {
                    landed: landed as u64,
                    message: format!("seq {} refused: the log ends at {last}", env.seq),
                }));
            }
            log.extend_from_slice(line);
        }
        Ok(())
    }

    fn publish_durable(&mut self, _: Watermark) -> io::Result<()> {
        Ok(())
    }
}

impl shared_events::LogRead for SharedLogWriter {
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.log.0.lock().unwrap().len() as u64))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let log = self.log.0.lock().unwrap();
        let start = (offset as usize).min(log.len());
        let n = buf.len().min(log.len() - start);
        buf[..n].copy_from_slice(&log[start..start + n]);
        Ok(n)
    }
}

impl command_svc::log_file::Recoverable for SharedLogWriter {
    fn truncate(&mut self, _: u64) -> io::Result<()> {
        Err(io::Error::other("a shared log is never cut"))
    }
}

/// A writer on the shared log that reloads from it (genesis, no snapshots).
fn shared_writer(log: &SharedLog, dir: &Path) -> writer::Writer<SharedLogWriter> {
    let genesis = BookState::parse(INIT).unwrap();
    let model = WriteModel {
        book: Book::from_state(&genesis),
        keys: IdempotencyIndex::new(100),
    };
    let dir = dir.to_owned();
    let reload: writer::Reload<SharedLogWriter> = Box::new(move |storage| {
        command_svc::recover_model(storage, "shared", &genesis, &dir, 100, 0)
            .map(|(model, recovery)| (model, recovery.cursor))
            .map_err(|e| e.to_string())
    });
    writer::Writer::new(
        model,
        log.writer(),
        LogCursor::start(),
        WriterOptions::default(),
    )
    .with_reload(reload)
}

#[test]
fn a_fenced_writer_answers_what_landed_reloads_and_decides_the_rest_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = SharedLog::default();
    let mut a = shared_writer(&log, dir.path());
    let mut b = shared_writer(&log, dir.path());

    // Given A appended seq 1 (order 3) while B, at seq 0, did not see it,
    let placed = a.commit_batch([buy("a", 90, 1)]).unwrap();
    assert!(matches!(placed[0], Ok(Outcome::Placed { seq: 1, .. })));

    // when B commits a cancel of an order it does not know (404, nothing to write)
    // and a buy,
    let cancel = Command::Cancel {
        user: "b".into(),
        order_id: 3,
        idempotency_key: None,
    };
    let fenced = b.commit_batch([cancel, buy("b", 91, 1)]).unwrap_err();

    // then the cancel keeps its answer, the buy is refused by the log, to be
    // decided again after a reload.
    let writer::CommitError::Fenced {
        answered, retry, ..
    } = fenced
    else {
        panic!("{fenced:?}")
    };
    assert_eq!(answered.len(), 1);
    assert!(answered[0].is_err(), "{answered:?}");
    assert_eq!(retry.len(), 1);
    assert!(
        matches!(
            b.commit_batch(retry.clone()),
            Err(writer::CommitError::Failed(_))
        ),
        "no commit on a stale model"
    );
    b.reload().unwrap();
    assert_eq!(b.log_end().0, 2, "B continues after A's event");
    let again = b.commit_batch(retry).unwrap();
    let Ok(Outcome::Placed { seq, order, .. }) = &again[0] else {
        panic!("{again:?}")
    };
    assert_eq!(
        (*seq, order.id),
        (2, 4),
        "the next seq and the next order id"
    );
    // B now knows A's order: its owner can cancel it through B.
    let cancelled = b.commit_batch([Command::Cancel {
        user: "a".into(),
        order_id: 3,
        idempotency_key: None,
    }]);
    assert!(matches!(
        cancelled.unwrap()[0],
        Ok(Outcome::Cancelled { seq: 3, .. })
    ));
    assert_eq!(log.seqs(), vec![1, 2, 3], "one history, no fork");
    let stale = a.commit_batch([buy("a", 92, 1)]).unwrap_err().to_string();
    assert!(stale.contains("another writer"), "A is stale now: {stale}");
}
