//! The writer's group commit with a storage a test can break or hold: the durable
//! watermark follows each sync, gapless seqs with one sync per write, rejected
//! commands write nothing, a failed write or sync is fail-stop, `--fsync never`;
//! each both with a syncer thread (as for a file) and syncing in line (as on
//! JetStream); and the pipeline: commands that arrive during a sync wait for it,
//! then go out as one batch.

mod common;
use command_svc::CommandHandle;
use command_svc::command::Command;
use command_svc::writer::{DispatchError, FsyncMode, Outcome};
use common::*;
use std::future::Future;
use std::pin::Pin;

/// The two ways the writer syncs: on a syncer thread, in line.
fn disks() -> [FakeDisk; 2] {
    [FakeDisk::default(), FakeDisk::in_line()]
}

#[tokio::test]
async fn the_durable_watermark_follows_the_sync_with_the_log_length() {
    for disk in disks() {
        the_durable_watermark_follows_the_sync(disk).await;
    }
}

async fn the_durable_watermark_follows_the_sync(disk: FakeDisk) {
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    for price in [90, 91] {
        let placed = handle.dispatch(buy("u", price, 1)).await.unwrap();
        // Answered, so durable: what the writer says of itself (/health) knows it.
        let durable = handle
            .stats
            .durable_seq
            .load(std::sync::atomic::Ordering::Acquire);
        assert!(
            durable >= placed.seq(),
            "answered seq {} at durable {durable}",
            placed.seq()
        );
    }
    watermark_published(&disk, 2).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_get_gapless_seqs_and_one_sync_per_write() {
    for disk in disks() {
        gapless_seqs_and_one_sync_per_write(disk).await;
    }
}

async fn gapless_seqs_and_one_sync_per_write(disk: FakeDisk) {
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
    for disk in disks() {
        rejections_write_nothing(disk).await;
    }
}

async fn rejections_write_nothing(disk: FakeDisk) {
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
    for disk in disks() {
        fail_stop(disk, fail_sync).await;
    }
}

async fn fail_stop(disk: FakeDisk, fail_sync: bool) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_arriving_during_a_sync_wait_for_it_then_go_out_as_one_batch() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    disk.gate.hold();
    // A lone command: the writer syncs it itself (held).
    let first = queued(&handle, "u", 1).await.pop().expect("one");
    wait_until("the first batch is written", appended(&disk, 1)).await;
    let mut second = queued(&handle, "v", 5).await;
    // The first sync passes: the five queued during it go out as one batch, which
    // the syncer thread syncs (held again).
    disk.gate.release(1);
    let first = first.await;
    assert!(
        matches!(first, Ok(Outcome::Placed { seq: 1, .. })),
        "{first:?}"
    );
    wait_until("the second batch is written", appended(&disk, 2)).await;
    let third = queued(&handle, "w", 3).await;
    for dispatch in &mut second {
        assert!(
            poll_once(dispatch).await.is_pending(),
            "answered before its sync"
        );
    }
    assert_eq!(
        disk.inner.lock().unwrap().appends.len(),
        2,
        "the writer took no batch while the syncer was busy"
    );
    disk.gate.open();
    let mut seqs = Vec::new();
    for dispatch in second.into_iter().chain(third) {
        let Ok(Outcome::Placed { seq, durable, .. }) = dispatch.await else {
            panic!("not placed")
        };
        assert!(durable);
        seqs.push(seq);
    }
    seqs.sort();
    assert_eq!(seqs, (2..=9).collect::<Vec<_>>());
    watermark_published(&disk, 9).await;
    let (appends, ops) = {
        let s = disk.inner.lock().unwrap();
        (s.appends.clone(), s.ops.clone())
    };
    let lines: Vec<usize> = (appends.iter())
        .map(|a| a.iter().filter(|&&b| b == b'\n').count())
        .collect();
    assert_eq!(
        lines,
        vec![1, 5, 3],
        "the commands that queued during each held sync went out as one batch: {ops:?}"
    );
    // Every answer waited for a sync covering it: a write is followed by its sync
    // and its watermark before the next write.
    for step in ops.chunks(3) {
        assert!(step[0].starts_with("append"), "{ops:?}");
        assert_eq!(step[1], "sync", "{ops:?}");
        assert!(step[2].starts_with("durable"), "{ops:?}");
    }
    drop(handle);
    task.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_on_the_syncer_thread_answers_its_batch_503_and_stops_the_writer() {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    disk.gate.hold();
    let first = queued(&handle, "u", 1).await.pop().expect("one");
    wait_until("the first batch is written", appended(&disk, 1)).await;
    let batch = queued(&handle, "v", 2).await;
    disk.gate.release(1);
    assert!(first.await.is_ok());
    wait_until("the batch of two is written", appended(&disk, 2)).await;
    disk.inner.lock().unwrap().fail_sync = true;
    disk.gate.open();
    for dispatch in batch {
        let err = dispatch.await.unwrap_err();
        assert!(
            matches!(err, DispatchError::Unavailable(ref m) if m.contains("injected")),
            "{err:?}"
        );
    }
    let mut failure = task.failure.clone();
    failure.wait_for(Option::is_some).await.unwrap();
    let syncs = disk.inner.lock().unwrap().syncs;
    let err = handle.dispatch(buy("u", 90, 1)).await.unwrap_err();
    assert!(matches!(err, DispatchError::Unavailable(_)), "{err:?}");
    assert_eq!(disk.inner.lock().unwrap().syncs, syncs, "never retried");
    let durable = handle
        .stats
        .durable_seq
        .load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(durable, 1, "the failed batch was never durable");
    assert!(task.shutdown().await.unwrap_err().contains("injected"));
}

/// Waits until `disk` was told that `seq` is durable: a batch is answered as soon
/// as its sync returns, and its watermark published just after.
async fn watermark_published(disk: &FakeDisk, seq: u64) {
    let disk = disk.clone();
    let told = format!("durable {seq}@");
    wait_until(&format!("the watermark of seq {seq}"), move || {
        (disk.inner.lock().unwrap().ops.iter()).any(|op| op.starts_with(&told))
    })
    .await;
}

/// Whether `disk` took `n` appends.
fn appended(disk: &FakeDisk, n: usize) -> impl FnMut() -> bool {
    let disk = disk.clone();
    move || disk.inner.lock().unwrap().appends.len() == n
}

/// A dispatch waiting for its answer.
type Waiting<'a> = Pin<Box<dyn Future<Output = Result<Outcome, DispatchError>> + Send + 'a>>;

/// `n` buys of `user`, each polled once: in the writer's queue, not answered.
async fn queued<'a>(handle: &'a CommandHandle, user: &str, n: u64) -> Vec<Waiting<'a>> {
    let mut waiting: Vec<Waiting<'a>> = (0..n)
        .map(|i| Box::pin(handle.dispatch(buy(user, 80 - i, 1))) as Waiting<'a>)
        .collect();
    for dispatch in &mut waiting {
        assert!(poll_once(dispatch).await.is_pending(), "answered early");
    }
    waiting
}

/// Polls `future` once.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx)))
        .await
}

/// Waits for `done`, at most 10 s, polling every millisecond.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
