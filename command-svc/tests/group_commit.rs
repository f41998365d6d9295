//! The writer's group commit with a storage a test can break: the durable
//! watermark follows each sync, gapless seqs with one sync per write, rejected
//! commands write nothing, a failed write or sync is fail-stop, `--fsync never`.

mod common;
use command_svc::command::Command;
use command_svc::writer::{DispatchError, FsyncMode, Outcome};
use common::*;

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
