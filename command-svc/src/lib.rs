//! # command-svc: the write side
//!
//! Validates `/buy`, `/sell` and `/cancel`, decides each against the matching book,
//! and appends the resulting events to the log with group commit. The only way state
//! changes is [`writer::CommandHandle::dispatch`].
//!
//! ## Layout
//!
//! - [`command`]: commands and rejections (with their HTTP status).
//! - [`book`]: the write model; pure `decide` and `apply`.
//! - [`log_file`]: opening, locking, replaying and appending the file log.
//! - [`writer`]: the single writer thread and its group commit.
//! - [`http`]: warp routes, validation of path and query, JSON errors.
//!
//! [`start`] wires them: read `init.txt`, lock and replay the log, spawn the writer.

pub mod book;
pub mod command;
pub mod http;
pub mod log_file;
pub mod runtime;
pub mod writer;

use book::Book;
use log_file::{LogFile, OpenError};
use shared_events::{BookState, StateError};
use std::path::PathBuf;
use std::time::Instant;
pub use writer::{CommandHandle, FsyncMode, WriterTask};

/// Where the write side finds its files and how it commits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Genesis state.
    pub init: PathBuf,
    /// The event log (created if missing).
    pub log: PathBuf,
    pub fsync: FsyncMode,
}

/// Why the write side cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] StateError),
    #[error(transparent)]
    Log(#[from] OpenError),
}

/// Loads the genesis state, locks and replays the log, and starts the writer.
pub fn start(config: &Config) -> Result<(CommandHandle, WriterTask), StartError> {
    let genesis = BookState::load(&config.init)?;
    let mut log = LogFile::open(&config.log)?;
    let started = Instant::now();
    let mut book = Book::from_state(&genesis);
    let recovery = log.recover(|env| book.apply(&env.event).map_err(|e| e.to_string()))?;
    let next_seq = recovery.cursor.next_seq;
    tracing::info!(
        log = %config.log.display(),
        events = next_seq - 1,
        resting_orders = book.resting_count(),
        replay_ms = started.elapsed().as_millis() as u64,
        "write side replayed the log"
    );
    Ok(writer::spawn(book, log, next_seq, config.fsync))
}
