//! Events (facts, past tense) and the envelope that gives each one its place in the log.

use crate::accounts::{Asset, BalanceChange};
use crate::domain::{CancelledOrder, Fill, Order, Side, Stp, TimeInForce};
use crate::market::Symbol;
use serde::{Deserialize, Serialize};

/// Version of the event schema written into every envelope (`"v"`). Lines of older
/// versions are read through the upcasters ([`crate::upcast`]); a reader refuses lines
/// of a newer version instead of guessing at their meaning.
///
/// - 1: the first schema (one market).
/// - 2: every event names its `market`.
/// - 3: accounts: `OrderPlaced` and `OrderCancelled` record the `balances` they
///   changed; `Deposited` and `Withdrawn`.
/// - 4: order types: `OrderPlaced` records its `tif`, `post_only`, `stp`, whether it
///   is a `market_order` (and its `max_cost`), what of it was cancelled instead of
///   resting (`unfilled_qty`) and the makers self-trade prevention cancelled;
///   `OrderAmended`, `OrdersCancelled`.
pub const SCHEMA_VERSION: u32 = 4;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

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
        /// Time in force (`gtc` when absent).
        #[serde(default, skip_serializing_if = "TimeInForce::is_gtc")]
        tif: TimeInForce,
        /// The order could only rest, never take.
        #[serde(default, skip_serializing_if = "is_false")]
        post_only: bool,
        /// Self-trade prevention (`none` when absent).
        #[serde(default, skip_serializing_if = "Stp::is_none")]
        stp: Stp,
        /// A market order: it matched at any price (its `order.price` is the bound,
        /// the highest price for a buy, the lowest for a sell) and never rests.
        #[serde(default, skip_serializing_if = "is_false")]
        market_order: bool,
        /// A market buy's most it may spend, in the quote asset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_cost: Option<u64>,
        /// What of the order was cancelled instead of resting: an IOC's or a market
        /// order's rest, a market buy's beyond `max_cost`, the rest after self-trade
        /// prevention cancelled the order. fills + resting + unfilled = qty.
        #[serde(default, skip_serializing_if = "is_zero")]
        unfilled_qty: u64,
        /// Resting orders of the same user that self-trade prevention cancelled
        /// (`cancel_maker`, `cancel_both`), in the order they were met.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cancelled_makers: Vec<CancelledOrder>,
        /// With accounts on: every balance the order changed (its hold, the fills'
        /// settlement, a buyer's released difference); empty with accounts off.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        /// The client's `Idempotency-Key`, recorded so retries are recognised after a restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// A resting order was amended by its owner. A smaller quantity at the same
    /// price keeps its place (`new_order_id` absent, nothing fills). A new price or
    /// a larger quantity loses it: the order leaves the book and its rest enters
    /// anew under `new_order_id` at `new_price` for `new_qty`, as a limit order that
    /// may match at once (`fills`, then `resting_qty` rests).
    OrderAmended {
        market: Symbol,
        order_id: u64,
        user: String,
        side: Side,
        /// Its price and resting quantity before.
        price: u64,
        qty: u64,
        new_price: u64,
        new_qty: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_order_id: Option<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fills: Vec<Fill>,
        /// What rests after the amend (its new quantity, less what filled).
        resting_qty: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Every resting order of `user` (in `market`, if one is named; at most
    /// `CANCELS_PER_EVENT_MAX`, oldest first) was cancelled at once.
    OrdersCancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        market: Option<Symbol>,
        user: String,
        /// Each cancelled order with the market it rested in.
        orders: Vec<MarketOrder>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
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
        /// With accounts on: the hold released (empty with accounts off).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        balances: Vec<BalanceChange>,
        /// The client's `Idempotency-Key`, as for `OrderPlaced`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// `amount` of `asset` was paid in to `user`'s available balance (the seed's
    /// `Topup`).
    Deposited {
        user: String,
        asset: Asset,
        amount: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// `amount` of `asset` was paid out of `user`'s available balance.
    Withdrawn {
        user: String,
        asset: Asset,
        amount: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
}

impl Event {
    /// The market it happened in; `None` for a transfer, which is of no market.
    pub fn market(&self) -> Option<Symbol> {
        match self {
            Event::OrderPlaced { market, .. }
            | Event::OrderCancelled { market, .. }
            | Event::OrderAmended { market, .. } => Some(*market),
            Event::OrdersCancelled { market, .. } => *market,
            Event::Deposited { .. } | Event::Withdrawn { .. } => None,
        }
    }

    /// The name used as `"type"` in the log and as the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::OrderCancelled { .. } => "OrderCancelled",
            Event::Deposited { .. } => "Deposited",
            Event::Withdrawn { .. } => "Withdrawn",
            Event::OrderAmended { .. } => "OrderAmended",
            Event::OrdersCancelled { .. } => "OrdersCancelled",
        }
    }

    /// Every balance it changed, as (user, asset, available change, held change).
    pub fn balance_changes(&self) -> impl Iterator<Item = (&str, Asset, i64, i64)> {
        let (changes, transfer): (&[BalanceChange], _) = match self {
            Event::OrderPlaced { balances, .. }
            | Event::OrderCancelled { balances, .. }
            | Event::OrderAmended { balances, .. }
            | Event::OrdersCancelled { balances, .. } => (balances, None),
            Event::Deposited {
                user,
                asset,
                amount,
                ..
            } => (
                &[],
                Some((
                    user.as_str(),
                    *asset,
                    i64::try_from(*amount).unwrap_or(i64::MAX),
                    0,
                )),
            ),
            Event::Withdrawn {
                user,
                asset,
                amount,
                ..
            } => (
                &[],
                Some((
                    user.as_str(),
                    *asset,
                    -i64::try_from(*amount).unwrap_or(i64::MAX),
                    0,
                )),
            ),
        };
        (changes.iter())
            .map(|c| (c.user.as_str(), c.asset, c.available, c.held))
            .chain(transfer)
    }

    /// The client's `Idempotency-Key`, if it sent one.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Event::OrderPlaced {
                idempotency_key, ..
            }
            | Event::OrderCancelled {
                idempotency_key, ..
            }
            | Event::Deposited {
                idempotency_key, ..
            }
            | Event::Withdrawn {
                idempotency_key, ..
            }
            | Event::OrderAmended {
                idempotency_key, ..
            }
            | Event::OrdersCancelled {
                idempotency_key, ..
            } => idempotency_key.as_deref(),
        }
    }
}

/// A cancelled order of `OrdersCancelled`: where it rested and what was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketOrder {
    pub market: Symbol,
    pub order_id: u64,
    pub qty: u64,
}

/// Most orders one `OrdersCancelled` cancels: it bounds one line as fills do; a
/// user with more repeats the cancel-all.
pub const CANCELS_PER_EVENT_MAX: usize = 1_000;

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
