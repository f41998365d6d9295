//! Helpers of the write side's in-process tests: a genesis state in a temp folder,
//! commands, and a storage that counts syncs and fails on demand.
#![allow(dead_code)] // each test file uses some of them

use command_svc::Config;
use command_svc::book::Book;
use command_svc::command::Command;
use command_svc::idempotency::IdempotencyIndex;
use command_svc::model::WriteModel;
use command_svc::storage::{Storage, Syncer};
use command_svc::writer::{self, FsyncMode, Outcome, WriterOptions};
use command_svc::{CommandHandle, WriterTask};
use shared_events::{BookState, LogCursor, ScanError, Side, Watermark};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const INIT: &str = r#"{"next_order_id": 3, "orders": [
  {"id": 1, "user": "alice", "side": "buy", "price": 99, "qty": 10},
  {"id": 2, "user": "bob", "side": "sell", "price": 101, "qty": 5}
]}"#;

pub fn files() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.txt"), INIT).unwrap();
    let config = Config::new(dir.path().join("init.txt"), dir.path().join("log.txt"));
    (dir, config)
}

pub fn buy(user: &str, price: u64, qty: u64) -> Command {
    Command::Place {
        options: Default::default(),
        market: shared_events::DEFAULT_MARKET,
        user: user.into(),
        side: Side::Buy,
        price,
        qty,
        idempotency_key: None,
    }
}

/// Storage in memory that records each append and sync, and can be told to fail
/// or to hold its syncs.
#[derive(Clone, Default)]
pub struct FakeDisk {
    pub inner: Arc<Mutex<FakeDiskState>>,
    pub gate: Arc<SyncGate>,
}

/// Lets syncs through: all of them (the default), or only as many as released.
#[derive(Default)]
pub struct SyncGate {
    /// `None`: open; `Some(n)`: `n` more syncs may pass.
    permits: Mutex<Option<u64>>,
    changed: std::sync::Condvar,
}

impl SyncGate {
    /// From now on a sync waits for [`SyncGate::release`] (or [`SyncGate::open`]).
    pub fn hold(&self) {
        *self.permits.lock().unwrap() = Some(0);
    }

    /// Lets `n` more held syncs pass.
    pub fn release(&self, n: u64) {
        if let Some(permits) = self.permits.lock().unwrap().as_mut() {
            *permits += n;
        }
        self.changed.notify_all();
    }

    /// Lets every sync pass again.
    pub fn open(&self) {
        *self.permits.lock().unwrap() = None;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let permits = self.permits.lock().unwrap();
        let mut permits = self.changed.wait_while(permits, |p| *p == Some(0)).unwrap();
        if let Some(n) = permits.as_mut() {
            *n -= 1;
        }
    }
}

#[derive(Default)]
pub struct FakeDiskState {
    pub appends: Vec<Vec<u8>>,
    pub syncs: usize,
    pub fail_sync: bool,
    pub fail_write: bool,
    /// Whether the writer syncs in line (as on JetStream) rather than on a syncer
    /// thread of its own (as with a file).
    pub in_line: bool,
    /// Every call in order: "append N", "sync", "durable SEQ@OFFSET".
    pub ops: Vec<String>,
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
        Syncer::sync(self)
    }

    fn publish_durable(&mut self, mark: Watermark) -> io::Result<()> {
        Syncer::publish_durable(self, mark)
    }

    fn syncer(&mut self) -> io::Result<Option<Box<dyn Syncer>>> {
        let in_line = self.inner.lock().unwrap().in_line;
        Ok((!in_line).then(|| Box::new(self.clone()) as Box<dyn Syncer>))
    }
}

/// The syncer thread's handle: the same disk.
impl Syncer for FakeDisk {
    fn sync(&mut self) -> io::Result<()> {
        self.gate.pass();
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

impl FakeDisk {
    /// A disk the writer syncs in line, as it does a JetStream stream.
    pub fn in_line() -> FakeDisk {
        let disk = FakeDisk::default();
        disk.inner.lock().unwrap().in_line = true;
        disk
    }
}

pub fn genesis_book() -> Book {
    Book::from_state(&BookState::parse(INIT).unwrap())
}

pub fn spawn_on(disk: &FakeDisk, fsync: FsyncMode) -> (CommandHandle, WriterTask) {
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

pub fn scan_file(path: &Path) -> Result<shared_events::ScanReport, ScanError> {
    shared_events::scan(
        std::fs::File::open(path).unwrap(),
        LogCursor::start(),
        |_, _| {},
    )
}

pub async fn place_some(config: &Config, n: u64) -> Vec<Outcome> {
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
