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
    /// The `OrderPlaced` of a plain limit order (good till cancelled, neither
    /// post-only nor self-trade protected, no balances): every order of schema
    /// versions 1 to 3, and most of the examples and tests.
    pub fn limit_placed(
        market: Symbol,
        order: Order,
        fills: Vec<Fill>,
        resting_qty: u64,
        idempotency_key: Option<String>,
    ) -> Event {
        Event::OrderPlaced {
            market,
            order,
            fills,
            resting_qty,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: Stp::None,
            market_order: false,
            max_cost: None,
            unfilled_qty: 0,
            cancelled_makers: Vec::new(),
            balances: Vec::new(),
            idempotency_key,
        }
    }

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

    /// Whether the event adds up on its own, whatever the state it meets: an
    /// order's fills, rest and cancelled rest make its quantity; an amend that keeps
    /// its place only reduces the order (same price, less, nothing filled), one
    /// that does not fills and rests its new quantity; a cancel-all lists each order
    /// once, all in its market when it names one. Both folds check it first; what
    /// depends on the book (who rests where) each checks against its own.
    pub fn check_shape(&self) -> Result<(), String> {
        let filled = |fills: &[Fill]| fills.iter().map(|f| f.qty).sum::<u64>();
        match self {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                unfilled_qty,
                ..
            } if filled(fills) + resting_qty + unfilled_qty != order.qty => Err(format!(
                "order {}: fills {} + resting {resting_qty} + unfilled {unfilled_qty} != qty {}",
                order.id,
                filled(fills),
                order.qty
            )),
            Event::OrderAmended {
                order_id,
                price,
                qty,
                new_price,
                new_qty,
                new_order_id,
                fills,
                resting_qty,
                ..
            } => {
                let fits = match new_order_id {
                    None => {
                        new_price == price
                            && new_qty < qty
                            && fills.is_empty()
                            && resting_qty == new_qty
                    }
                    Some(_) => filled(fills) + resting_qty == *new_qty,
                };
                match fits {
                    true => Ok(()),
                    false => Err(format!(
                        "amend of order {order_id}: {} does not add up",
                        match new_order_id {
                            None => "keeping its place, it does not only reduce the order",
                            Some(_) => "its fills and rest do not make its new quantity",
                        }
                    )),
                }
            }
            Event::OrdersCancelled { market, orders, .. } => {
                let mut seen = std::collections::HashSet::with_capacity(orders.len());
                match orders
                    .iter()
                    .find(|o| !seen.insert(o.order_id) || market.is_some_and(|m| m != o.market))
                {
                    Some(o) => Err(format!(
                        "cancel-all of order {}: listed twice, or not in its market",
                        o.order_id
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The balance changes it lists, for an event that only moves money between
    /// users (an order, amend or cancel); `None` for a transfer.
    pub fn balance_moves(&self) -> Option<&[BalanceChange]> {
        match self {
            Event::OrderPlaced { balances, .. }
            | Event::OrderCancelled { balances, .. }
            | Event::OrderAmended { balances, .. }
            | Event::OrdersCancelled { balances, .. } => Some(balances),
            Event::Deposited { .. } | Event::Withdrawn { .. } => None,
        }
    }

    /// Every balance it changed, as (user, asset, available change, held change).
    pub fn balance_changes(&self) -> impl Iterator<Item = (&str, Asset, i64, i64)> {
        let (changes, transfer): (&[BalanceChange], _) = match self {
            Event::OrderPlaced { .. }
            | Event::OrderCancelled { .. }
            | Event::OrderAmended { .. }
            | Event::OrdersCancelled { .. } => (self.balance_moves().unwrap_or(&[]), None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::DEFAULT_MARKET;

    fn order(qty: u64) -> Order {
        Order {
            id: 9,
            user: "a".into(),
            side: Side::Buy,
            price: 10,
            qty,
        }
    }

    #[test]
    fn the_shape_of_an_event_adds_up_or_is_refused() {
        let fill = Fill {
            maker_id: 1,
            maker_user: "b".into(),
            price: 10,
            qty: 2,
        };
        let placed = Event::limit_placed(DEFAULT_MARKET, order(5), vec![fill.clone()], 3, None);
        assert_eq!(placed.check_shape(), Ok(()));
        let short = Event::limit_placed(DEFAULT_MARKET, order(5), vec![fill.clone()], 2, None);
        assert!(short.check_shape().unwrap_err().contains("!= qty 5"));
        let amend = |new_order_id, fills: Vec<Fill>, new_price, resting_qty| Event::OrderAmended {
            market: DEFAULT_MARKET,
            order_id: 1,
            user: "a".into(),
            side: Side::Buy,
            price: 10,
            qty: 5,
            new_price,
            new_qty: 3,
            new_order_id,
            fills,
            resting_qty,
            balances: vec![],
            idempotency_key: None,
        };
        assert_eq!(amend(None, vec![], 10, 3).check_shape(), Ok(()));
        assert!(
            amend(None, vec![], 11, 3).check_shape().is_err(),
            "a new price loses the place"
        );
        assert!(
            amend(None, vec![fill.clone()], 10, 1)
                .check_shape()
                .is_err()
        );
        assert_eq!(
            amend(Some(20), vec![fill.clone()], 11, 1).check_shape(),
            Ok(())
        );
        assert!(amend(Some(20), vec![fill], 11, 3).check_shape().is_err());
        let cancel_all = |market, ids: &[u64]| Event::OrdersCancelled {
            market,
            user: "a".into(),
            orders: (ids.iter())
                .map(|&order_id| MarketOrder {
                    market: DEFAULT_MARKET,
                    order_id,
                    qty: 1,
                })
                .collect(),
            balances: vec![],
            idempotency_key: None,
        };
        assert_eq!(cancel_all(None, &[1, 2]).check_shape(), Ok(()));
        assert!(cancel_all(None, &[1, 1]).check_shape().is_err());
        let acme = Symbol::from_static("ACME");
        assert!(cancel_all(Some(acme), &[1]).check_shape().is_err());
    }
}
