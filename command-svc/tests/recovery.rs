//! Starting from the log: replay continues the sequence, a torn tail is cut,
//! corruption refuses to start naming line and seq, the lock refuses a second
//! writer, a bad `init.txt` is named, snapshots are used and other fold versions
//! ignored.

mod common;
use command_svc::Config;
use command_svc::{log_file::LogFile, storage::OpenError};
use common::*;
use std::path::PathBuf;

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
    assert!(!command_svc::verify::verify(&config.log, Some(&config.init), &mut report).unwrap());
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
