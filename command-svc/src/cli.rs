//! Command-line flags of the write side, shared by `command-svc` and the combined
//! `gateway` (which flattens them into its own). The offline tools are beside it:
//! [`crate::verify`] and [`crate::copy_log`].

use crate::{Config, FsyncMode, checkpoint};
use shared_events::LogLocation;
use std::path::PathBuf;

/// Files and durability of the write side.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// Genesis state file.
    #[arg(long, env = "FOLDBOOK_INIT", default_value = "init.txt")]
    pub init: PathBuf,
    /// Event log: a file (created if missing; locked by the writer while running),
    /// or a NATS JetStream stream, `nats://HOST:PORT[,HOST:PORT...]/STREAM` (created
    /// if missing).
    #[arg(long, env = "FOLDBOOK_LOG", default_value = "log.txt")]
    pub log: LogLocation,
    /// `always`: fdatasync before every answer; `never`: no durability (benchmarks).
    /// A JetStream log always waits for the server's acknowledgement.
    #[arg(long, env = "FOLDBOOK_FSYNC", value_enum, default_value_t)]
    pub fsync: FsyncMode,
    /// Snapshot directory (default: `snapshots/` beside a log file,
    /// `snapshots-<STREAM>/` in the working directory for a stream).
    #[arg(long, env = "FOLDBOOK_SNAPSHOTS")]
    pub snapshots: Option<PathBuf>,
    /// Copies a new JetStream stream keeps (1 on one server; 3 on a cluster of 3 or
    /// more, with `sync_interval: always`). An existing stream is left as it is.
    #[arg(long, env = "FOLDBOOK_NATS_REPLICAS", default_value_t = crate::NATS_REPLICAS_DEFAULT)]
    pub nats_replicas: usize,
    /// Events between two snapshots (0: only at clean shutdown).
    #[arg(long, env = "FOLDBOOK_SNAPSHOT_EVERY", default_value_t = checkpoint::SNAPSHOT_EVERY_DEFAULT)]
    pub snapshot_every: u64,
    /// Idempotency keys remembered (the most recent ones; 0 turns keys off).
    #[arg(long, env = "FOLDBOOK_IDEMPOTENCY_KEYS", default_value_t = crate::idempotency::IDEMPOTENCY_KEYS_KEPT_DEFAULT)]
    pub idempotency_keys: usize,
    /// Bearer tokens (`TOKEN USER` or `sha256:HEX USER` per line): when given, every
    /// write needs the token of the user in its path.
    #[arg(long, env = "FOLDBOOK_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
}

impl WriteArgs {
    /// The auth table, if `--auth-file` was given.
    pub fn auth(&self) -> Result<Option<std::sync::Arc<shared_events::auth::AuthTable>>, String> {
        self.auth_file
            .as_deref()
            .map(|path| shared_events::auth::AuthTable::load(path).map(std::sync::Arc::new))
            .transpose()
    }
}

impl WriteArgs {
    pub fn config(&self) -> Config {
        Config {
            init: self.init.clone(),
            log: self.log.clone(),
            fsync: self.fsync,
            snapshots: self.snapshots.clone(),
            snapshot_every: self.snapshot_every,
            idempotency_keys: self.idempotency_keys,
            nats_replicas: self.nats_replicas,
        }
    }
}
