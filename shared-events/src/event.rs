//! Events (facts, past tense) and the envelope that gives each one its place in the log.

use crate::domain::{Fill, Order};
use serde::{Deserialize, Serialize};

/// Version of the event schema written into every envelope (`"v"`). A reader refuses
/// lines of a version it does not know instead of guessing at their meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest accepted idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;

/// Something that happened to the book. One command yields at most one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// An order arrived, matched against `fills` (in execution order), and
    /// `resting_qty` of it was left on the book.
    OrderPlaced {
        order: Order,
        fills: Vec<Fill>,
        resting_qty: u64,
        /// The client's `Idempotency-Key`, recorded so retries are recognised after a restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// A resting order was withdrawn by its owner; `cancelled_qty` was still resting.
    OrderCancelled {
        order_id: u64,
        user: String,
        cancelled_qty: u64,
        /// The client's `Idempotency-Key`, as for `OrderPlaced`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
}

impl Event {
    /// The name used as `"type"` in the log and as the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

/// An event with its position and commit metadata: one log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Position in the log: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// Commit time, microseconds since the Unix epoch (the writer's clock).
    pub ts_us: u64,
    /// Event schema version, [`SCHEMA_VERSION`] when written by this build.
    pub v: u32,
    pub event: Event,
}
