//! A writer fenced by another one on a shared log (as on JetStream) answers what
//! landed, reloads and decides the rest again: the history never forks.

mod common;
use command_svc::book::Book;
use command_svc::command::Command;
use command_svc::idempotency::IdempotencyIndex;
use command_svc::model::WriteModel;
use command_svc::storage::Storage;
use command_svc::writer::{self, Outcome, WriterOptions};
use common::*;
use shared_events::{BookState, LogCursor, Watermark};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
                return Err(io::Error::other(command_svc::storage::Fenced {
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

impl command_svc::storage::Recoverable for SharedLogWriter {
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
