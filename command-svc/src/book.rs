//! The write model: the matching book. [`Book::decide`] turns a command into the one
//! event it causes (or a rejection) without changing anything; [`Book::apply`] folds
//! an event into the book. Both are pure: no I/O, no clock, no randomness. Replay at
//! startup is `apply` over the log; live commands are `decide` then `apply`.

use crate::command::{Command, Rejection};
use shared_events::binary::{BodyError, BodyReader, BodyWriter, UserTable};
use shared_events::domain::resting_fingerprint;
use shared_events::interner::Interner;
use shared_events::{BookState, Event, Fill, Order, Side};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most fills one order may produce. Bounds the size of one event (one log line);
/// an order that would match more resting orders is rejected and writes nothing.
pub const FILLS_PER_EVENT_MAX: usize = 1_000;

/// One resting order, as far as matching needs it. Its id is the key of its level.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resting {
    /// Interned: one allocation per user, shared by all their resting orders.
    user: Arc<str>,
    /// Quantity still resting (> 0).
    qty: u64,
}

/// Orders at one price, keyed by id. Ids increase with arrival, so id order is time
/// priority, and a cancel is a keyed removal instead of a scan.
type Level = BTreeMap<u64, Resting>;

/// The resting orders of both sides plus the id counter.
#[derive(Debug, Clone)]
pub struct Book {
    /// Bids by price; the best bid is the highest key.
    bids: BTreeMap<u64, Level>,
    /// Asks by price; the best ask is the lowest key.
    asks: BTreeMap<u64, Level>,
    /// Where each resting order is, for cancels. foldhash: several times faster
    /// than SipHash on replay, and still seeded per process.
    index: foldhash::HashMap<u64, (Side, u64)>,
    /// Every user with a resting order (and some who had one), shared by their
    /// orders: a resting order then costs a pointer, not a string.
    users: Interner,
    /// The id the next placed order gets.
    next_order_id: u64,
    /// Sum of the resting orders' fingerprints (see `shared_events::domain`).
    digest: u64,
}

/// Two books are equal when they hold the same orders and counter; the interning
/// table is a cache, not state.
impl PartialEq for Book {
    fn eq(&self, other: &Self) -> bool {
        self.bids == other.bids
            && self.asks == other.asks
            && self.index == other.index
            && self.next_order_id == other.next_order_id
            && self.digest == other.digest
    }
}

impl Eq for Book {}

/// An event that does not fit the book it is applied to: the log and the state
/// disagree, which replay must never paper over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event does not fit the book: {0}")]
pub struct FoldError(pub String);

impl Book {
    /// The book described by a genesis or snapshot state (already validated).
    pub fn from_state(state: &BookState) -> Self {
        let mut book = Book {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            index: foldhash::HashMap::with_capacity_and_hasher(
                state.orders.len(),
                Default::default(),
            ),
            users: Default::default(),
            next_order_id: state.next_order_id,
            digest: 0,
        };
        for o in &state.orders {
            book.rest(o.id, &o.user, o.side, o.price, o.qty);
        }
        book
    }

    /// The resting orders in time-priority order, and the id counter.
    pub fn to_state(&self) -> BookState {
        let mut orders: Vec<Order> = self
            .side_levels(Side::Buy)
            .chain(self.side_levels(Side::Sell))
            .flat_map(|(side, price, level)| {
                level.iter().map(move |(&id, r)| Order {
                    id,
                    user: r.user.to_string(),
                    side,
                    price,
                    qty: r.qty,
                })
            })
            .collect();
        orders.sort_unstable_by_key(|o| o.id);
        BookState {
            next_order_id: self.next_order_id,
            orders,
        }
    }

    fn side_levels(&self, side: Side) -> impl Iterator<Item = (Side, u64, &Level)> {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        levels
            .iter()
            .map(move |(&price, level)| (side, price, level))
    }

    pub fn next_order_id(&self) -> u64 {
        self.next_order_id
    }

    /// Digest of the resting orders, comparable with the read side's.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Number of resting orders.
    pub fn resting_count(&self) -> usize {
        self.index.len()
    }

    /// Resting quantity of order `id`, if it rests.
    pub fn resting_qty(&self, id: u64) -> Option<u64> {
        let (side, price) = *self.index.get(&id)?;
        Some(self.levels(side).get(&price)?.get(&id)?.qty)
    }

    fn levels(&self, side: Side) -> &BTreeMap<u64, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels_mut(&mut self, side: Side) -> &mut BTreeMap<u64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The resting orders an incoming order on `taker_side` at `limit` may trade with,
    /// best price first, oldest first within a price.
    fn matchable(
        &self,
        taker_side: Side,
        limit: u64,
    ) -> Box<dyn Iterator<Item = (u64, u64, &Resting)> + '_> {
        fn flatten<'a>(
            (&price, level): (&'a u64, &'a Level),
        ) -> impl Iterator<Item = (u64, u64, &'a Resting)> {
            level.iter().map(move |(&id, r)| (id, price, r))
        }
        match taker_side {
            Side::Buy => Box::new(self.asks.range(..=limit).flat_map(flatten)),
            Side::Sell => Box::new(self.bids.range(limit..).rev().flat_map(flatten)),
        }
    }

    /// Decides what `cmd` does to this book, without changing it.
    pub fn decide(&self, cmd: &Command) -> Result<Event, Rejection> {
        match cmd {
            Command::Place {
                user,
                side,
                price,
                qty,
                idempotency_key,
            } => {
                let mut remaining = *qty;
                let mut fills = Vec::new();
                for (maker_id, maker_price, maker) in self.matchable(*side, *price) {
                    if remaining == 0 {
                        break;
                    }
                    if fills.len() == FILLS_PER_EVENT_MAX {
                        return Err(Rejection::TooManyFills);
                    }
                    let traded = remaining.min(maker.qty);
                    fills.push(Fill {
                        maker_id,
                        maker_user: maker.user.to_string(),
                        price: maker_price,
                        qty: traded,
                    });
                    remaining -= traded;
                }
                let order = Order {
                    id: self.next_order_id,
                    user: user.clone(),
                    side: *side,
                    price: *price,
                    qty: *qty,
                };
                Ok(Event::OrderPlaced {
                    market: shared_events::DEFAULT_MARKET,
                    order,
                    fills,
                    resting_qty: remaining,
                    idempotency_key: idempotency_key.clone(),
                })
            }
            Command::Cancel {
                user,
                order_id,
                idempotency_key,
            } => {
                let (side, price) = *self
                    .index
                    .get(order_id)
                    .ok_or(Rejection::NotResting(*order_id))?;
                let resting = &self.levels(side)[&price][order_id];
                if *resting.user != **user {
                    return Err(Rejection::NotOwner(*order_id));
                }
                Ok(Event::OrderCancelled {
                    market: shared_events::DEFAULT_MARKET,
                    order_id: *order_id,
                    user: user.clone(),
                    cancelled_qty: resting.qty,
                    idempotency_key: idempotency_key.clone(),
                })
            }
        }
    }

    /// Folds one event into the book. Every fact is checked before anything changes,
    /// so a misfit event leaves the book as it was.
    pub fn apply(&mut self, event: &Event) -> Result<(), FoldError> {
        if event.market() != shared_events::DEFAULT_MARKET {
            return Err(FoldError(format!(
                "an event of market {}: this book is market {}",
                event.market(),
                shared_events::DEFAULT_MARKET
            )));
        }
        match event {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                ..
            } => {
                if order.id < self.next_order_id {
                    return Err(FoldError(format!(
                        "order id {} was already used (next is {})",
                        order.id, self.next_order_id
                    )));
                }
                let filled: u64 = fills.iter().map(|f| f.qty).sum();
                if filled + resting_qty != order.qty {
                    return Err(FoldError(format!(
                        "order {}: fills {filled} + resting {resting_qty} != qty {}",
                        order.id, order.qty
                    )));
                }
                let maker_side = order.side.opposite();
                for f in fills {
                    let resting = self.resting_qty(f.maker_id);
                    let at = self
                        .index
                        .get(&f.maker_id)
                        .map(|&(side, price)| (side, price));
                    if at != Some((maker_side, f.price)) || resting < Some(f.qty) {
                        return Err(FoldError(format!(
                            "order {} fills {} of maker {} at {}, which is not resting like that",
                            order.id, f.qty, f.maker_id, f.price
                        )));
                    }
                }
                for f in fills {
                    self.take(f.maker_id, maker_side, f.price, f.qty);
                }
                if *resting_qty > 0 {
                    self.rest(order.id, &order.user, order.side, order.price, *resting_qty);
                }
                self.next_order_id = order.id + 1;
            }
            Event::OrderCancelled {
                order_id,
                user,
                cancelled_qty,
                ..
            } => {
                let Some(&(side, price)) = self.index.get(order_id) else {
                    return Err(FoldError(format!(
                        "cancel of order {order_id}, which is not resting"
                    )));
                };
                let resting = &self.levels(side)[&price][order_id];
                if *resting.user != **user || resting.qty != *cancelled_qty {
                    return Err(FoldError(format!(
                        "cancel of order {order_id} does not match its owner or quantity"
                    )));
                }
                self.take(*order_id, side, price, *cancelled_qty);
            }
        }
        Ok(())
    }

    fn rest(&mut self, id: u64, user: &str, side: Side, price: u64, qty: u64) {
        debug_assert!(qty > 0);
        self.digest = self
            .digest
            .wrapping_add(resting_fingerprint(id, user, side, price, qty));
        let user = self.users.intern(user);
        self.levels_mut(side)
            .entry(price)
            .or_default()
            .insert(id, Resting { user, qty });
        self.index.insert(id, (side, price));
    }

    /// Removes `qty` from a resting order known to hold at least that much.
    fn take(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.get_mut(&price).expect("checked: the level exists");
        let resting = level.get_mut(&id).expect("checked: the order rests here");
        let before = resting_fingerprint(id, &resting.user, side, price, resting.qty);
        resting.qty -= qty;
        let after = match resting.qty {
            0 => 0,
            left => resting_fingerprint(id, &resting.user, side, price, left),
        };
        self.digest = self.digest.wrapping_sub(before).wrapping_add(after);
        if resting.qty == 0 {
            level.remove(&id);
            if level.is_empty() {
                levels.remove(&price);
            }
            self.index.remove(&id);
        }
    }
}

/// Most resting orders a write-side snapshot may hold (the same bound as a state file).
pub const SNAPSHOT_ORDERS_MAX: usize = shared_events::state::STATE_ORDERS_MAX;

impl Book {
    /// Writes the book into a snapshot body: the id counter, the user table, the
    /// number of resting orders, then each price level (bids, then asks, by price) with its orders in time
    /// priority (`id`, user index, `qty`). See [`Book::decode`].
    pub fn encode(&self, w: &mut BodyWriter) {
        let mut users = UserTable::default();
        let levels: Vec<_> = self
            .side_levels(Side::Buy)
            .chain(self.side_levels(Side::Sell))
            .collect();
        // The user table comes first, so collect it in a first pass.
        for (_, _, level) in &levels {
            for r in level.values() {
                users.index(&r.user);
            }
        }
        w.u64(self.next_order_id);
        users.write(w);
        w.count(self.index.len());
        w.count(levels.len());
        for (side, price, level) in levels {
            w.side(side);
            w.u64(price);
            w.count(level.len());
            for (&id, r) in level {
                w.u64(id);
                w.u32(users.index(&r.user));
                w.u64(r.qty);
            }
        }
    }

    /// Reads a book written by [`Book::encode`] and checks what
    /// [`BookState::validate`] checks of a state: ids positive, unique, below the
    /// counter and increasing within a level, prices and quantities in bounds, the
    /// book not crossed. Levels are built in bulk from their sorted orders.
    pub fn decode(r: &mut BodyReader) -> Result<Book, BodyError> {
        let next_order_id = r.u64()?;
        let names = UserTable::read(r)?;
        // An order is 20 bytes.
        let total = r.count(SNAPSHOT_ORDERS_MAX, 20)?;
        // First read and check every value (sequential), then build the index and
        // the levels from them on two threads: each is a million small writes.
        let levels = read_levels(r, total, names.len(), next_order_id)?;
        let (index, built) = build_levels(&levels, &names);
        let (index, digest) =
            index.map_err(|id| r.error(format!("order id {id} appears twice")))?;
        let (bids, asks) = built;
        Ok(Book {
            bids,
            asks,
            index,
            users: names.into_iter().collect(),
            next_order_id,
            digest,
        })
    }
}

/// A resting order as a snapshot body holds it: `(id, user index, qty)`.
type OrderRecord = (u64, u32, u64);

/// A price level as a snapshot body holds it: side, price, its orders oldest first.
type LevelRecord = (Side, u64, Vec<OrderRecord>);

/// Reads the `total` resting orders' levels of a book body, checking every value:
/// prices and quantities in bounds, levels in price order and not empty, ids in
/// time-priority order and below `next_order_id`, users in the table of
/// `users` names, the book not crossed.
fn read_levels(
    r: &mut BodyReader,
    total: usize,
    users: usize,
    next_order_id: u64,
) -> Result<Vec<LevelRecord>, BodyError> {
    use shared_events::domain::{PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN};
    // A level is at least side, price and count.
    let level_count = r.count(SNAPSHOT_ORDERS_MAX, 17)?;
    let mut levels: Vec<(Side, u64, Vec<OrderRecord>)> = Vec::with_capacity(level_count);
    let mut read = 0usize;
    // Each side's levels come by ascending price: the last bid is the best bid,
    // the first ask the best ask.
    let (mut last_bid, mut last_ask, mut best_ask) = (None, None, None);
    for _ in 0..level_count {
        let side = r.side()?;
        let price = r.u64()?;
        if !(PRICE_MIN..=PRICE_MAX).contains(&price) {
            return Err(r.error(format!("price {price} is out of bounds")));
        }
        let last = match side {
            Side::Buy => &mut last_bid,
            Side::Sell => &mut last_ask,
        };
        if last.is_some_and(|p| p >= price) {
            return Err(r.error(format!("price level {price} is out of order")));
        }
        *last = Some(price);
        if side == Side::Sell {
            best_ask = best_ask.or(Some(price));
        }
        let n = r.count(total - read, 20)?;
        if n == 0 {
            return Err(r.error("an empty price level"));
        }
        read += n;
        let mut orders = Vec::with_capacity(n);
        let mut prev_id = 0;
        for _ in 0..n {
            let (id, user, qty) = (r.u64()?, r.u32()?, r.u64()?);
            if id <= prev_id || id >= next_order_id {
                return Err(r.error(format!(
                        "order id {id} is out of time-priority order or not below next_order_id {next_order_id}"
                    )));
            }
            prev_id = id;
            if user as usize >= users {
                return Err(r.error(format!("user index {user} is not in the table")));
            }
            if !(QTY_MIN..=QTY_MAX).contains(&qty) {
                return Err(r.error(format!("order {id}: qty {qty} is out of bounds")));
            }
            orders.push((id, user, qty));
        }
        levels.push((side, price, orders));
    }
    if read != total {
        return Err(r.error(format!("{read} orders in the levels, {total} announced")));
    }
    if let (Some(bid), Some(ask)) = (last_bid, best_ask)
        && bid >= ask
    {
        return Err(r.error(format!(
            "the book is crossed: best bid {bid} >= best ask {ask}"
        )));
    }
    Ok(levels)
}

/// The id index with the book's digest, or the id that appears twice.
type Indexed = Result<(foldhash::HashMap<u64, (Side, u64)>, u64), u64>;
/// Bids and asks by price.
type Sides = (BTreeMap<u64, Level>, BTreeMap<u64, Level>);

/// Builds the id index (with the digest) and the levels from checked records, on
/// two threads. The index is `Err(id)` when an id appears twice.
fn build_levels(levels: &[LevelRecord], names: &[std::sync::Arc<str>]) -> (Indexed, Sides) {
    std::thread::scope(|scope| {
        let indexing = scope.spawn(|| {
            let mut index: foldhash::HashMap<u64, (Side, u64)> =
                foldhash::HashMap::with_capacity_and_hasher(
                    levels.iter().map(|(_, _, o)| o.len()).sum(),
                    Default::default(),
                );
            let mut digest = 0u64;
            for (side, price, orders) in levels {
                for &(id, user, qty) in orders {
                    if index.insert(id, (*side, *price)).is_some() {
                        return Err(id);
                    }
                    let user = &names[user as usize];
                    digest = digest.wrapping_add(resting_fingerprint(id, user, *side, *price, qty));
                }
            }
            Ok((index, digest))
        });
        let mut bids = Vec::new();
        let mut asks = Vec::new();
        for (side, price, orders) in levels {
            // Sorted by id: the level is built in bulk, not by repeated inserts.
            let level: Level = orders
                .iter()
                .map(|&(id, user, qty)| {
                    let user = names[user as usize].clone();
                    (id, Resting { user, qty })
                })
                .collect();
            match side {
                Side::Buy => bids.push((*price, level)),
                Side::Sell => asks.push((*price, level)),
            }
        }
        let built = (bids.into_iter().collect(), asks.into_iter().collect());
        (
            indexing.join().expect("the indexing thread panicked"),
            built,
        )
    })
}

#[cfg(test)]
mod tests {
    //! Given (a book) / when (a command) / then (the event, or a rejection).
    use super::*;
    use proptest::prelude::*;

    fn order(id: u64, user: &str, side: Side, price: u64, qty: u64) -> Order {
        Order {
            id,
            user: user.into(),
            side,
            price,
            qty,
        }
    }

    fn given(orders: Vec<Order>) -> Book {
        let next_order_id = orders.iter().map(|o| o.id).max().unwrap_or(0) + 1;
        let state = BookState {
            next_order_id,
            orders,
        };
        state.validate().unwrap();
        Book::from_state(&state)
    }

    fn place(user: &str, side: Side, price: u64, qty: u64) -> Command {
        Command::Place {
            user: user.into(),
            side,
            price,
            qty,
            idempotency_key: None,
        }
    }

    fn fill(maker_id: u64, maker_user: &str, price: u64, qty: u64) -> Fill {
        Fill {
            maker_id,
            maker_user: maker_user.into(),
            price,
            qty,
        }
    }

    /// when: decide + apply; then: the event.
    fn when(book: &mut Book, cmd: Command) -> Result<Event, Rejection> {
        let event = book.decide(&cmd)?;
        book.apply(&event).unwrap();
        Ok(event)
    }

    #[test]
    fn buy_below_best_ask_rests() {
        let mut book = given(vec![order(1, "s", Side::Sell, 101, 5)]);
        let event = when(&mut book, place("b", Side::Buy, 100, 3)).unwrap();
        assert_eq!(
            event,
            Event::OrderPlaced {
                market: shared_events::DEFAULT_MARKET,
                order: order(2, "b", Side::Buy, 100, 3),
                fills: vec![],
                resting_qty: 3,
                idempotency_key: None
            }
        );
        assert_eq!(book.resting_qty(2), Some(3));
    }

    #[test]
    fn buy_sweeps_asks_best_price_then_oldest_at_maker_price() {
        let mut book = given(vec![
            order(1, "s1", Side::Sell, 102, 5),
            order(2, "s2", Side::Sell, 101, 2),
            order(3, "s3", Side::Sell, 101, 2),
            order(4, "s4", Side::Sell, 103, 9),
        ]);
        let event = when(&mut book, place("b", Side::Buy, 102, 6)).unwrap();
        let Event::OrderPlaced {
            fills, resting_qty, ..
        } = event
        else {
            panic!()
        };
        assert_eq!(
            fills,
            vec![
                fill(2, "s2", 101, 2),
                fill(3, "s3", 101, 2),
                fill(1, "s1", 102, 2)
            ]
        );
        assert_eq!(resting_qty, 0);
        assert_eq!(book.resting_qty(1), Some(3));
        assert_eq!(book.resting_qty(2), None);
        assert_eq!(book.resting_qty(4), Some(9));
    }

    #[test]
    fn sell_sweeps_bids_highest_first_and_remainder_rests() {
        let mut book = given(vec![
            order(1, "b1", Side::Buy, 99, 1),
            order(2, "b2", Side::Buy, 100, 1),
        ]);
        let event = when(&mut book, place("s", Side::Sell, 99, 5)).unwrap();
        let Event::OrderPlaced {
            fills, resting_qty, ..
        } = event
        else {
            panic!()
        };
        assert_eq!(fills, vec![fill(2, "b2", 100, 1), fill(1, "b1", 99, 1)]);
        assert_eq!(resting_qty, 3);
        assert_eq!(book.resting_qty(3), Some(3));
    }

    #[test]
    fn remainder_queues_behind_existing_orders_at_its_price() {
        let mut book = given(vec![
            order(1, "a", Side::Buy, 100, 1),
            order(2, "z", Side::Sell, 101, 1),
        ]);
        when(&mut book, place("b", Side::Buy, 101, 2)).unwrap(); // fills 1 at 101, rests 1 at 101
        when(&mut book, place("c", Side::Buy, 101, 1)).unwrap();
        let event = when(&mut book, place("s", Side::Sell, 101, 1)).unwrap();
        let Event::OrderPlaced { fills, .. } = event else {
            panic!()
        };
        assert_eq!(
            fills,
            vec![fill(3, "b", 101, 1)],
            "the older order at 101 trades first"
        );
    }

    #[test]
    fn self_matching_is_allowed() {
        let mut book = given(vec![order(1, "a", Side::Sell, 100, 1)]);
        let event = when(&mut book, place("a", Side::Buy, 100, 1)).unwrap();
        let Event::OrderPlaced { fills, .. } = event else {
            panic!()
        };
        assert_eq!(fills, vec![fill(1, "a", 100, 1)]);
    }

    #[test]
    fn cancel_rules() {
        let mut book = given(vec![order(1, "a", Side::Buy, 100, 4)]);
        assert_eq!(
            when(
                &mut book,
                Command::Cancel {
                    user: "b".into(),
                    order_id: 1,
                    idempotency_key: None,
                }
            ),
            Err(Rejection::NotOwner(1))
        );
        assert_eq!(
            when(
                &mut book,
                Command::Cancel {
                    user: "a".into(),
                    order_id: 9,
                    idempotency_key: None,
                }
            ),
            Err(Rejection::NotResting(9))
        );
        let event = when(
            &mut book,
            Command::Cancel {
                user: "a".into(),
                order_id: 1,
                idempotency_key: None,
            },
        )
        .unwrap();
        assert_eq!(
            event,
            Event::OrderCancelled {
                market: shared_events::DEFAULT_MARKET,
                order_id: 1,
                user: "a".into(),
                cancelled_qty: 4,
                idempotency_key: None,
            }
        );
        assert_eq!(
            when(
                &mut book,
                Command::Cancel {
                    user: "a".into(),
                    order_id: 1,
                    idempotency_key: None,
                }
            ),
            Err(Rejection::NotResting(1))
        );
    }

    #[test]
    fn too_many_fills_is_rejected_and_changes_nothing() {
        let orders = (1..=FILLS_PER_EVENT_MAX as u64 + 1)
            .map(|id| order(id, "s", Side::Sell, 100, 1))
            .collect();
        let mut book = given(orders);
        let before = book.clone();
        assert_eq!(
            when(&mut book, place("b", Side::Buy, 100, 5_000)),
            Err(Rejection::TooManyFills)
        );
        assert_eq!(book, before);
        assert!(
            when(
                &mut book,
                place("b", Side::Buy, 100, FILLS_PER_EVENT_MAX as u64)
            )
            .is_ok()
        );
    }

    #[test]
    fn apply_refuses_events_that_do_not_fit() {
        let mut book = given(vec![order(1, "a", Side::Sell, 100, 1)]);
        let before = book.clone();
        let bad = Event::OrderPlaced {
            market: shared_events::DEFAULT_MARKET,
            order: order(2, "b", Side::Buy, 100, 2),
            fills: vec![fill(1, "a", 100, 2)],
            resting_qty: 0,
            idempotency_key: None,
        };
        assert!(book.apply(&bad).is_err());
        assert_eq!(book, before);
    }

    pub(crate) fn arb_command() -> impl Strategy<Value = Command> {
        let user = prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from);
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        prop_oneof![
            4 => (user.clone(), side, 95u64..=105, 1u64..=10).prop_map(|(user, side, price, qty)| Command::Place {
                user, side, price, qty, idempotency_key: None
            }),
            1 => (user, 1u64..=40).prop_map(|(user, order_id)| Command::Cancel { user, order_id, idempotency_key: None }),
        ]
    }

    proptest! {
        /// The book never rests crossed, quantities are conserved, and the state
        /// round-trips through the genesis schema.
        #[test]
        fn invariants_hold(cmds in proptest::collection::vec(arb_command(), 0..80)) {
            let mut book = Book::from_state(&BookState::empty());
            for cmd in cmds {
                let before = book.clone();
                match book.decide(&cmd) {
                    Ok(event) => {
                        book.apply(&event).unwrap();
                        if let Event::OrderPlaced { order, fills, resting_qty, .. } = &event {
                            prop_assert_eq!(fills.iter().map(|f| f.qty).sum::<u64>() + resting_qty, order.qty);
                            for f in fills {
                                let within_limit = match order.side {
                                    Side::Buy => f.price <= order.price,
                                    Side::Sell => f.price >= order.price,
                                };
                                prop_assert!(within_limit, "fill outside the limit price");
                            }
                        }
                    }
                    Err(_) => prop_assert_eq!(&book, &before),
                }
                let best_bid = book.bids.keys().next_back().copied().unwrap_or(0);
                let best_ask = book.asks.keys().next().copied().unwrap_or(u64::MAX);
                prop_assert!(best_bid < best_ask, "crossed book");
                let state = book.to_state();
                prop_assert_eq!(state.validate(), Ok(()));
                prop_assert_eq!(Book::from_state(&state), book.clone());
            }
        }
    }
}
