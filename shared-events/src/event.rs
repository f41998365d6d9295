//! Events (facts, past tense) and the envelope that gives each one its place in the log.

use crate::domain::{Fill, Order};
use crate::market::Symbol;
use serde::{Deserialize, Serialize};

/// Version of the event schema written into every envelope (`"v"`). Lines of older
/// versions are read through the upcasters ([`crate::upcast`]); a reader refuses lines
/// of a newer version instead of guessing at their meaning.
///
/// - 1: the first schema (one market).
/// - 2: every event names its `market`.
pub const SCHEMA_VERSION: u32 = 2;

/// Longest accepted idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;

/// Something that happened to the book. One command yields at most one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// An order arrived, matched against `fills` (in execution order), and
    /// `resting_qty` of it was left on the book.
    OrderPlaced {
        /// The market the order was placed in.
        market: Symbol,
        order: Order,
        fills: Vec<Fill>,
        resting_qty: u64,
        /// The client's `Idempotency-Key`, recorded so retries are recognised after a restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// A resting order was withdrawn by its owner; `cancelled_qty` was still resting.
    OrderCancelled {
        /// The market the order rested in.
        market: Symbol,
        order_id: u64,
        user: String,
        cancelled_qty: u64,
        /// The client's `Idempotency-Key`, as for `OrderPlaced`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
}

impl Event {
    /// The market it happened in.
    pub fn market(&self) -> Symbol {
        match self {
            Event::OrderPlaced { market, .. } | Event::OrderCancelled { market, .. } => *market,
        }
    }

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
    /// The schema version the line was written with: [`SCHEMA_VERSION`] when written
    /// by this build; an older one for a line read through the upcasters (its event
    /// is in the current shape all the same).
    pub v: u32,
    pub event: Event,
}
