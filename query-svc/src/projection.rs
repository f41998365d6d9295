//! The read model and its fold. [`ReadModel::apply`] folds one recorded event into
//! the projections the read routes serve: the book, an order index, per-user order
//! lists and recent trades. It is pure (no I/O, no clock): it applies facts from
//! the log and never re-runs matching. The order index ([`crate::index`]), user
//! lists and trades are concurrent maps the HTTP handlers read directly; the book is
//! serialized into an immutable [`BookView`] after each applied batch.

use crate::index::{IndexBuilder, IndexedOrder, OrderIndex};
use imbl::OrdMap;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize};
use shared_events::binary::{BodyError, BodyReader, BodyWriter, UserTable, user_at};
use shared_events::domain::{PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN, resting_fingerprint};
use shared_events::interner::Interner;
use shared_events::{BookState, Envelope, Event, Side};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock};

/// Each user's order ids, oldest first: a concurrent map keyed by user name, hashed
/// with foldhash: several times faster than SipHash when replaying millions of events, and still seeded per
/// process, so user names chosen to collide cannot slow a lookup down.
pub type UserOrders = dashmap::DashMap<Arc<str>, VecDeque<u64>, foldhash::fast::RandomState>;

/// Most recent trades kept for `/trades` (also its largest `limit`).
pub const TRADES_KEPT: usize = 1_000;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Resting,
    Filled,
    Cancelled,
}

/// One order as `/orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: u64,
    /// Interned: one allocation per user, shared by all their orders.
    pub user: Arc<str>,
    pub side: Side,
    pub price: u64,
    /// Quantity ordered (for init.txt orders: the quantity resting at genesis).
    pub qty: u64,
    pub filled_qty: u64,
    pub status: Status,
    /// The event that last changed this order (0: init.txt).
    pub seq: u64,
}

/// One trade as `/trades` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeView {
    /// The event that recorded it.
    pub seq: u64,
    pub taker_id: u64,
    pub maker_id: u64,
    pub buyer: String,
    pub seller: String,
    pub price: u64,
    pub qty: u64,
}

/// Orders at one price in time priority, and their total. The level is persistent
/// (`imbl`): a published snapshot shares it with the tailer's model, and a change
/// copies only the path it touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    /// (order id, resting quantity), oldest first. Ids increase with time, so a
    /// new order goes at the back, an order is found by binary search, and fills
    /// mostly take from the front. A vector rather than a map: a snapshot of a
    /// million orders builds it in bulk instead of by a million inserts. The owner
    /// is in the order index: users never change, and keeping them out of the
    /// levels keeps a resting order small.
    orders: imbl::Vector<(u64, u64)>,
    /// Sum of the orders' resting quantities.
    qty: u64,
}

impl Level {
    /// Where order `id` is in the level.
    fn position(&self, id: u64) -> Option<usize> {
        self.orders.binary_search_by_key(&id, |&(id, _)| id).ok()
    }
}

/// Price levels of one side, by price.
pub type Levels = OrdMap<u64, Level>;

/// Finished (filled or cancelled) orders the read side keeps by default, besides
/// every resting order. Older finished orders are forgotten, so memory and the
/// start from a snapshot follow the book and this window, not the log's length. A
/// million more would double a start with a million resting orders (about 0.13 s
/// to 0.26 s here); a tenth of that costs about a tenth more.
pub const FINISHED_ORDERS_KEPT_DEFAULT: usize = 100_000;

/// The read side's state at one seq.
#[derive(Debug, Clone)]
pub struct ReadModel {
    /// Last applied event (0: only init.txt).
    pub seq: u64,
    bids: Levels,
    asks: Levels,
    /// Every resting order and the most recently finished ones, by id.
    pub orders: Arc<OrderIndex>,
    /// Each user's kept order ids, oldest first.
    pub user_orders: Arc<UserOrders>,
    /// The most recent trades, oldest first, at most [`TRADES_KEPT`].
    pub trades: Arc<RwLock<VecDeque<TradeView>>>,
    /// Sum of the resting orders' fingerprints (see `shared_events::domain`).
    digest: u64,
    /// Every user name seen, shared by their orders (the tailer's interner).
    users: Interner,
    /// Greater than every order id seen: ids are never reused, so an order below
    /// it is a misfit (cheaper to check than a lookup in the order index).
    next_order_id: u64,
    /// Kept finished orders, in the order they finished (oldest first).
    finished: VecDeque<u64>,
    /// The orders the event being applied finished (empty between events).
    finishing: Vec<u64>,
    /// Most finished orders kept; beyond it the oldest is forgotten.
    pub finished_kept: usize,
}

impl Default for ReadModel {
    fn default() -> Self {
        ReadModel {
            seq: 0,
            bids: Levels::default(),
            asks: Levels::default(),
            orders: Default::default(),
            user_orders: Default::default(),
            trades: Default::default(),
            digest: 0,
            users: Default::default(),
            next_order_id: 0,
            finished: VecDeque::new(),
            finishing: Vec::new(),
            finished_kept: FINISHED_ORDERS_KEPT_DEFAULT,
        }
    }
}

/// An event that does not fit the read model: the log contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event seq {seq} does not fit the read model: {message}")]
pub struct FoldError {
    pub seq: u64,
    pub message: String,
}

impl ReadModel {
    /// The read model of a genesis (or snapshot) book state at `seq`.
    pub fn from_state(state: &BookState, seq: u64) -> Self {
        let mut model = ReadModel {
            seq,
            next_order_id: state.next_order_id,
            ..ReadModel::default()
        };
        for o in &state.orders {
            let user = model.users.intern(&o.user);
            // A genesis state is checked against the domain's bounds when loaded.
            let (price, qty) = (narrow(o.price), narrow(o.qty));
            model.insert_order(
                o.id,
                IndexedOrder {
                    user,
                    side: o.side,
                    price,
                    qty,
                    filled_qty: 0,
                    status: Status::Resting,
                    seq,
                },
            );
            model.rest(o.id, &o.user, o.side, o.price, o.qty);
        }
        model
    }

    /// Puts `qty` of an order on the book.
    fn rest(&mut self, id: u64, user: &str, side: Side, price: u64, qty: u64) {
        self.digest = self
            .digest
            .wrapping_add(resting_fingerprint(id, user, side, price, qty));
        let level = self.levels_mut(side).entry(price).or_default();
        level.qty += qty;
        debug_assert!(level.orders.back().is_none_or(|&(last, _)| last < id));
        level.orders.push_back((id, qty));
    }

    /// Digest of the resting orders, comparable with the write side's.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn levels_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn insert_order(&mut self, id: u64, order: IndexedOrder) {
        let user = order.user.clone();
        // The order first, then the user's list, so a reader of the list always finds it.
        self.orders.insert(id, order);
        self.user_orders.entry(user).or_default().push_back(id);
    }

    /// Sets how many finished orders are kept, forgetting the oldest beyond it.
    pub fn keep_finished(&mut self, kept: usize) {
        self.finished_kept = kept;
        self.forget_finished();
    }

    /// Notes that order `id` finished (filled or cancelled) with this event; it
    /// joins the kept finished orders at the end of the event ([`ReadModel::apply`]).
    fn finish(&mut self, id: u64) {
        self.finishing.push(id);
    }

    /// Forgets the oldest finished orders beyond [`ReadModel::finished_kept`]:
    /// from the order index, then from their user's list (a reader of the list
    /// skips an id it no longer finds). A user with no order left is forgotten too.
    fn forget_finished(&mut self) {
        while self.finished.len() > self.finished_kept {
            let id = self.finished.pop_front().expect("longer than the limit");
            let Some(order) = self.orders.remove(id) else {
                continue;
            };
            let emptied = match self.user_orders.get_mut(&order.user) {
                Some(mut ids) => {
                    // Oldest orders usually finish first: the id is near the front.
                    if let Ok(at) = ids.binary_search(&id) {
                        ids.remove(at);
                    }
                    ids.is_empty()
                }
                None => false,
            };
            if emptied {
                self.user_orders
                    .remove_if(&order.user, |_, ids| ids.is_empty());
            }
        }
    }

    fn resting_qty(&self, id: u64, side: Side, price: u64) -> Option<u64> {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        let level = levels.get(&price)?;
        Some(level.orders[level.position(id)?].1)
    }

    /// Folds one event in. Checks every fact first, so a misfit leaves the model as it was.
    pub fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let applied = self.apply_event(env);
        // The orders one event finished go in id order: the order a snapshot
        // rebuilds (by seq, then id), so a loaded model forgets exactly what the
        // live one does.
        self.finishing.sort_unstable();
        self.finished.extend(self.finishing.drain(..));
        self.forget_finished();
        applied
    }

    fn apply_event(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let seq = env.seq;
        let misfit = |message: String| FoldError { seq, message };
        if seq != self.seq + 1 {
            return Err(misfit(format!("expected seq {}", self.seq + 1)));
        }
        match &env.event {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                ..
            } => {
                if order.id < self.next_order_id {
                    return Err(misfit(format!(
                        "order id {} was already used (next is {})",
                        order.id, self.next_order_id
                    )));
                }
                let in_bounds = (PRICE_MIN..=PRICE_MAX).contains(&order.price)
                    && (QTY_MIN..=QTY_MAX).contains(&order.qty);
                if !in_bounds {
                    return Err(misfit(format!(
                        "order {} has price {} or qty {} out of bounds",
                        order.id, order.price, order.qty
                    )));
                }
                let filled: u64 = fills.iter().map(|f| f.qty).sum();
                if filled + resting_qty != order.qty {
                    return Err(misfit(format!(
                        "fills {filled} + resting {resting_qty} != qty {}",
                        order.qty
                    )));
                }
                let maker_side = order.side.opposite();
                for f in fills {
                    if self.resting_qty(f.maker_id, maker_side, f.price) < Some(f.qty) {
                        return Err(misfit(format!(
                            "maker {} is not resting {} at {}",
                            f.maker_id, f.qty, f.price
                        )));
                    }
                }
                let mut trades = Vec::with_capacity(fills.len());
                for f in fills {
                    self.take(f.maker_id, maker_side, f.price, f.qty, seq, Status::Filled);
                    let (buyer, seller) = match order.side {
                        Side::Buy => (order.user.clone(), f.maker_user.clone()),
                        Side::Sell => (f.maker_user.clone(), order.user.clone()),
                    };
                    trades.push(TradeView {
                        seq,
                        taker_id: order.id,
                        maker_id: f.maker_id,
                        buyer,
                        seller,
                        price: f.price,
                        qty: f.qty,
                    });
                }
                if !trades.is_empty() {
                    let mut kept = self.trades.write().expect("trades lock");
                    kept.extend(trades);
                    let excess = kept.len().saturating_sub(TRADES_KEPT);
                    kept.drain(..excess);
                }
                if *resting_qty > 0 {
                    self.rest(order.id, &order.user, order.side, order.price, *resting_qty);
                }
                self.next_order_id = order.id + 1;
                let user = self.users.intern(&order.user);
                self.insert_order(
                    order.id,
                    IndexedOrder {
                        user,
                        side: order.side,
                        price: narrow(order.price),
                        qty: narrow(order.qty),
                        filled_qty: narrow(filled),
                        status: if *resting_qty > 0 {
                            Status::Resting
                        } else {
                            Status::Filled
                        },
                        seq,
                    },
                );
                if *resting_qty == 0 {
                    self.finish(order.id);
                }
            }
            Event::OrderCancelled {
                order_id,
                user,
                cancelled_qty,
                ..
            } => {
                let Some((side, price, owner)) = self
                    .orders
                    .with(*order_id, |o| (o.side, u64::from(o.price), o.user.clone()))
                else {
                    return Err(misfit(format!("cancel of unknown order {order_id}")));
                };
                if *owner != **user
                    || self.resting_qty(*order_id, side, price) != Some(*cancelled_qty)
                {
                    return Err(misfit(format!(
                        "cancel of order {order_id} does not match its owner or resting qty"
                    )));
                }
                self.take(
                    *order_id,
                    side,
                    price,
                    *cancelled_qty,
                    seq,
                    Status::Cancelled,
                );
            }
        }
        self.seq = seq;
        Ok(())
    }

    /// Removes `qty` from a resting order (checked to hold it); at zero it leaves the
    /// book with `gone` as its status.
    fn take(&mut self, id: u64, side: Side, price: u64, qty: u64, seq: u64, gone: Status) {
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.get_mut(&price).expect("checked: level exists");
        level.qty -= qty;
        let at = level.position(id).expect("checked: order rests");
        let resting = &mut level.orders[at].1;
        let had = *resting;
        *resting -= qty;
        let left = *resting;
        if left == 0 {
            level.orders.remove(at);
            if level.orders.is_empty() {
                levels.remove(&price);
            }
        }
        let (before, after) = self
            .orders
            .with_mut(id, |order| {
                if gone == Status::Filled {
                    // At most the order's qty: fits as the qty does.
                    order.filled_qty += narrow(qty);
                }
                if left == 0 {
                    order.status = gone;
                }
                order.seq = seq;
                let before = resting_fingerprint(id, &order.user, side, price, had);
                let after = match left {
                    0 => 0,
                    _ => resting_fingerprint(id, &order.user, side, price, left),
                };
                (before, after)
            })
            .expect("a resting order is indexed");
        self.digest = self.digest.wrapping_sub(before).wrapping_add(after);
        if left == 0 {
            self.finish(id);
        }
    }

    /// The model as a snapshot body ([`shared_events::binary`]): the id counter,
    /// the user table, every order (`id`, user, side, price, qty, filled_qty,
    /// status, seq; in the index's order, put in id order later by
    /// [`ReadModel::sort_body`]), then the kept trades oldest first. A sequential
    /// copy made on the tailer thread; the file is sorted and written on another.
    pub fn encode(&self) -> Vec<u8> {
        let mut users = UserTable::default();
        let mut w = BodyWriter::with_capacity(64 + self.orders.len() * 48);
        w.u64(self.next_order_id);
        // The user table goes first: every user with an order, and the trades'
        // parties (who have orders too, but the table must not depend on that).
        let trades = self.trades.read().expect("trades lock");
        let trade_users: Vec<(Arc<str>, Arc<str>)> = trades
            .iter()
            .map(|t| (Arc::from(t.buyer.as_str()), Arc::from(t.seller.as_str())))
            .collect();
        for entry in self.user_orders.iter() {
            users.index(entry.key());
        }
        for (buyer, seller) in &trade_users {
            users.index(buyer);
            users.index(seller);
        }
        users.write(&mut w);
        // The tailer, which runs this, is the index's only writer: the count holds.
        w.count(self.orders.len());
        self.orders.for_each(|id, o| {
            w.u64(id);
            w.u32(users.index(&o.user));
            w.side(o.side);
            w.u64(o.price.into());
            w.u64(o.qty.into());
            w.u64(o.filled_qty.into());
            w.u8(status_byte(o.status));
            w.u64(o.seq);
        });
        w.count(trades.len());
        for (t, (buyer, seller)) in trades.iter().zip(&trade_users) {
            w.u64(t.seq);
            w.u64(t.taker_id);
            w.u64(t.maker_id);
            w.u32(users.index(buyer));
            w.u32(users.index(seller));
            w.u64(t.price);
            w.u64(t.qty);
        }
        w.finish()
    }

    /// Puts the orders of a body written by [`ReadModel::encode`] in id order, the
    /// order each price level and each user's list keeps them in, so that
    /// [`ReadModel::decode`] has nothing left to sort. A body in any order decodes
    /// to the same model: this only makes it faster, and it runs on the snapshot
    /// writer's thread.
    pub fn sort_body(body: &mut [u8]) -> Result<(), BodyError> {
        let mut r = BodyReader::new(body);
        let parts = decode_parts(&mut r, u64::MAX)?;
        let start = parts.orders.r.position();
        let section = start..start + parts.orders.len() * ORDER_RECORD_BYTES;
        let records = body[section.clone()].chunks_exact(ORDER_RECORD_BYTES);
        let mut by_id: Vec<(u64, u32)> = records
            .enumerate()
            .map(|(at, record)| {
                let id = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
                (id, at as u32)
            })
            .collect();
        // The index's tables hold runs of ascending ids: a merging sort finds them.
        by_id.sort();
        let mut sorted = Vec::with_capacity(section.len());
        for (_, at) in by_id {
            let at = at as usize * ORDER_RECORD_BYTES;
            sorted.extend_from_slice(&body[start + at..start + at + ORDER_RECORD_BYTES]);
        }
        body[section].copy_from_slice(&sorted);
        Ok(())
    }

    /// Rebuilds the model a body written by [`ReadModel::encode`] describes, at
    /// `seq`, checking every value, keeping the default number of finished orders
    /// (see [`ReadModel::keep_finished`]). The order index and the book are independent,
    /// so they are built on two threads, each reading the orders straight from the
    /// body: a million orders load in about a tenth of a second.
    pub fn decode(body: &[u8], seq: u64) -> Result<Self, String> {
        let mut r = BodyReader::new(body);
        let parts = decode_parts(&mut r, seq).map_err(|e| e.to_string())?;
        let names = &parts.names;
        let (book, index) = std::thread::scope(|scope| {
            // This thread checks every order; the other stops at the first it
            // cannot read and leaves the error to this one.
            let indexing = scope.spawn(|| {
                let mut index = IndexBuilder::new(parts.orders.len());
                // In batches: taking a user's name counts a reference, an atomic
                // step that waits for every store before it, including the last
                // insert's into memory not yet in cache. Batched, a few such
                // waits cover many inserts, whose stores then go out together.
                let mut batch = Vec::with_capacity(INDEX_BATCH);
                let mut records = parts.orders.clone().peekable();
                while records.peek().is_some() {
                    for o in records.by_ref().take(INDEX_BATCH) {
                        let o = o.map_err(|e| e.to_string())?;
                        batch.push((o.id, o.indexed(names)));
                    }
                    for (id, order) in batch.drain(..) {
                        if !index.insert(id, order) {
                            return Err(format!("order {id} appears twice"));
                        }
                    }
                }
                Ok(index.finish())
            });
            let mut book = ReadModel {
                seq,
                next_order_id: parts.next_order_id,
                users: names.iter().cloned().collect(),
                ..ReadModel::default()
            };
            // The names again, in one buffer of this thread's own: the indexing
            // thread is counting references to the shared ones, and reading next to
            // those counts would fight it for the cache lines.
            let mut text = String::new();
            let spans: Vec<std::ops::Range<usize>> = names
                .iter()
                .map(|name| {
                    text.push_str(name);
                    text.len() - name.len()..text.len()
                })
                .collect();
            // By user index: no hashing of names per order.
            let mut by_user: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
            let mut levels: foldhash::HashMap<(Side, u64), Vec<(u64, u64)>> = Default::default();
            // Finished orders in the order they finished: by the seq that finished them.
            let mut finished: Vec<(u64, u64)> = Vec::new();
            for o in parts.orders.clone().map_while(Result::ok) {
                if o.status != Status::Resting {
                    finished.push((o.seq, o.id));
                } else {
                    let left = o.qty - o.filled_qty;
                    let user = &text[spans[o.user as usize].clone()];
                    book.digest = book
                        .digest
                        .wrapping_add(resting_fingerprint(o.id, user, o.side, o.price, left));
                    levels
                        .entry((o.side, o.price))
                        .or_default()
                        .push((o.id, left));
                }
                by_user[o.user as usize].push(o.id);
            }
            for ((side, price), mut resting) in levels {
                resting.sort();
                let level = Level {
                    qty: resting.iter().map(|&(_, qty)| qty).sum(),
                    orders: resting.into_iter().collect(),
                };
                book.levels_mut(side).insert(price, level);
            }
            let lists: UserOrders = by_user
                .into_iter()
                .zip(names)
                .filter(|(ids, _)| !ids.is_empty())
                .map(|(mut ids, name)| {
                    ids.sort();
                    (name.clone(), ids.into())
                })
                .collect();
            book.user_orders = Arc::new(lists);
            finished.sort();
            book.finished = finished.into_iter().map(|(_, id)| id).collect();
            (book, indexing.join().expect("the indexing thread panicked"))
        });
        let mut model = book;
        model.orders = Arc::new(index?);
        *model.trades.write().expect("trades lock") = parts.trades.into();
        model.forget_finished();
        Ok(model)
    }

    /// The resting orders in time-priority order, as a book state (for comparing
    /// with the write side and for snapshots).
    pub fn to_state(&self, next_order_id: u64) -> BookState {
        let mut orders: Vec<_> = [(Side::Buy, &self.bids), (Side::Sell, &self.asks)]
            .into_iter()
            .flat_map(|(side, levels)| {
                levels.iter().flat_map(move |(&price, level)| {
                    level
                        .orders
                        .iter()
                        .map(move |&(id, qty)| shared_events::Order {
                            id,
                            user: self
                                .orders
                                .with(id, |o| o.user.to_string())
                                .expect("a resting order is indexed"),
                            side,
                            price,
                            qty,
                        })
                })
            })
            .collect();
        orders.sort_unstable_by_key(|o| o.id);
        BookState {
            next_order_id,
            orders,
        }
    }

    /// The immutable view of this model that readers get: O(1), it shares the
    /// levels with the model.
    pub fn book_view(&self) -> BookView {
        BookView {
            seq: self.seq,
            digest: self.digest,
            bids: self.bids.clone(),
            asks: self.asks.clone(),
            orders: self.orders.clone(),
            json: OnceLock::new(),
        }
    }

    /// The `/orderbook` answer at this seq.
    pub fn book_json(&self) -> Vec<u8> {
        self.book_view().json().to_vec()
    }
}

/// One resting order in the `/orderbook` answer.
#[derive(Serialize)]
struct EntryJson<'a> {
    id: u64,
    user: &'a str,
    price: u64,
    qty: u64,
}

/// One aggregated price level in the `/orderbook?depth=N` answer.
#[derive(Serialize)]
struct LevelJson {
    price: u64,
    qty: u64,
    orders: usize,
}

/// Serializes a side's orders (best price first) without copying them; owners come
/// from the order index (a user never changes, so any moment's entry is right).
struct OrdersJson<'a, I> {
    levels: std::cell::Cell<Option<I>>,
    orders: &'a OrderIndex,
}

impl<'a, I: Iterator<Item = (&'a u64, &'a Level)>> Serialize for OrdersJson<'a, I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (&price, level) in self.levels.take().expect("serialized once") {
            for &(id, qty) in &level.orders {
                let user = self
                    .orders
                    .with(id, |o| o.user.clone())
                    .unwrap_or_else(|| "".into());
                seq.serialize_element(&EntryJson {
                    id,
                    user: &user,
                    price,
                    qty,
                })?;
            }
        }
        seq.end()
    }
}

fn orders_json<'a, I: Iterator<Item = (&'a u64, &'a Level)>>(
    levels: I,
    orders: &'a OrderIndex,
) -> OrdersJson<'a, I> {
    OrdersJson {
        levels: Some(levels).into(),
        orders,
    }
}

/// An immutable view published after each applied batch. It shares the persistent
/// level maps with the model; the JSON answer is made on first request, once per seq.
#[derive(Debug, Clone)]
pub struct BookView {
    /// Last applied event.
    pub seq: u64,
    /// Digest of the resting orders at `seq`.
    pub digest: u64,
    bids: Levels,
    asks: Levels,
    /// The order index, for the owners of the resting orders.
    orders: Arc<OrderIndex>,
    /// The `/orderbook` body, serialized by the first reader that wants it.
    json: OnceLock<bytes::Bytes>,
}

impl BookView {
    /// The `/orderbook` body: `{"seq","bids":[...],"asks":[...]}`.
    pub fn json(&self) -> bytes::Bytes {
        self.json
            .get_or_init(|| {
                #[derive(Serialize)]
                struct Book<B, A> {
                    seq: u64,
                    bids: B,
                    asks: A,
                }
                let book = Book {
                    seq: self.seq,
                    bids: orders_json(self.bids.iter().rev(), &self.orders),
                    asks: orders_json(self.asks.iter(), &self.orders),
                };
                serde_json::to_vec(&book)
                    .expect("serializing the book to memory cannot fail")
                    .into()
            })
            .clone()
    }

    /// The `/orderbook?depth=N` body: the best `n` price levels of each side, each
    /// with its total quantity and number of orders.
    pub fn depth_json(&self, n: usize) -> Vec<u8> {
        let aggregate = |(&price, level): (&u64, &Level)| LevelJson {
            price,
            qty: level.qty,
            orders: level.orders.len(),
        };
        #[derive(Serialize)]
        struct Depth {
            seq: u64,
            depth: usize,
            bids: Vec<LevelJson>,
            asks: Vec<LevelJson>,
        }
        let depth = Depth {
            seq: self.seq,
            depth: n,
            bids: self.bids.iter().rev().take(n).map(aggregate).collect(),
            asks: self.asks.iter().take(n).map(aggregate).collect(),
        };
        serde_json::to_vec(&depth).expect("serializing to memory cannot fail")
    }
}

/// Most orders a read-side snapshot may hold (every order ever placed).
pub const SNAPSHOT_ORDERS_MAX: usize = 1 << 32;

/// An order as a snapshot body holds it: its user as an index in the user table.
#[derive(Debug, Clone, Copy)]
struct OrderRecord {
    id: u64,
    user: u32,
    side: Side,
    price: u64,
    qty: u64,
    filled_qty: u64,
    status: Status,
    seq: u64,
}

/// Orders a snapshot load reads before it puts them in the index.
const INDEX_BATCH: usize = 32;

/// Bytes of one [`OrderRecord`] in a body.
const ORDER_RECORD_BYTES: usize = 46;

impl OrderRecord {
    /// The order index's entry, with the user's shared name from `names`.
    fn indexed(&self, names: &[Arc<str>]) -> IndexedOrder {
        IndexedOrder {
            user: names[self.user as usize].clone(),
            side: self.side,
            // Checked against the domain's bounds when read.
            price: narrow(self.price),
            qty: narrow(self.qty),
            filled_qty: narrow(self.filled_qty),
            status: self.status,
            seq: self.seq,
        }
    }
}

/// The orders of a body, read and checked one at a time, as often as needed.
#[derive(Debug, Clone)]
struct OrderRecords<'a> {
    r: BodyReader<'a>,
    left: usize,
    users: usize,
    next_order_id: u64,
    seq: u64,
}

impl OrderRecords<'_> {
    fn len(&self) -> usize {
        self.left
    }

    // Inlined: handed back through memory, a record's fields were read back
    // before the previous record's (cache-missing) insert had landed, which
    // serialized the index build on memory latency.
    #[inline(always)]
    fn read(&mut self) -> Result<OrderRecord, BodyError> {
        let at = self.r.position();
        // One bounds check per record, then fields at fixed offsets: a million
        // records are read twice on start, once per thread.
        let b: &[u8; ORDER_RECORD_BYTES] = self.r.array()?;
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let id = u64_at(0);
        let user = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        let side = match b[12] {
            0 => Some(Side::Buy),
            1 => Some(Side::Sell),
            _ => None,
        };
        let (price, qty, filled_qty) = (u64_at(13), u64_at(21), u64_at(29));
        let status = status_of(b[37]);
        let order_seq = u64_at(38);
        let error = |message: String| BodyError {
            offset: at,
            message: format!("order record: {message}"),
        };
        if user as usize >= self.users {
            return Err(error(format!("user index {user} is not in the table")));
        }
        let (Some(side), Some(status)) = (side, status) else {
            return Err(error(format!(
                "side {} or status {} is unknown",
                b[12], b[37]
            )));
        };
        let fits = id > 0
            && id < self.next_order_id
            && (PRICE_MIN..=PRICE_MAX).contains(&price)
            && (QTY_MIN..=QTY_MAX).contains(&qty)
            && filled_qty <= qty
            && order_seq <= self.seq
            && (status != Status::Resting || filled_qty < qty)
            && (status != Status::Filled || filled_qty == qty);
        if !fits {
            return Err(error(format!("order {id} is inconsistent")));
        }
        Ok(OrderRecord {
            id,
            user,
            side,
            price,
            qty,
            filled_qty,
            status,
            seq: order_seq,
        })
    }
}

impl Iterator for OrderRecords<'_> {
    type Item = Result<OrderRecord, BodyError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let read = self.read();
        // After an error, nothing more.
        self.left = if read.is_ok() { self.left - 1 } else { 0 };
        Some(read)
    }
}

/// A read-side snapshot body, its orders not yet read.
struct Parts<'a> {
    next_order_id: u64,
    names: Vec<Arc<str>>,
    orders: OrderRecords<'a>,
    trades: Vec<TradeView>,
}

/// The parts of a read-side snapshot body: the id counter, the user names, the
/// orders (checked as they are read) and the trades (checked here).
fn decode_parts<'a>(r: &mut BodyReader<'a>, seq: u64) -> Result<Parts<'a>, BodyError> {
    let next_order_id = r.u64()?;
    let names = UserTable::read(r)?;
    let n = r.count(SNAPSHOT_ORDERS_MAX, ORDER_RECORD_BYTES)?;
    let orders = OrderRecords {
        r: r.split_off(n * ORDER_RECORD_BYTES)?,
        left: n,
        users: names.len(),
        next_order_id,
        seq,
    };
    // A trade is 48 bytes.
    let n = r.count(TRADES_KEPT, 48)?;
    let mut trades = Vec::with_capacity(n);
    for _ in 0..n {
        let trade = TradeView {
            seq: r.u64()?,
            taker_id: r.u64()?,
            maker_id: r.u64()?,
            buyer: user_at(&names, r.u32()?, r)?.to_string(),
            seller: user_at(&names, r.u32()?, r)?.to_string(),
            price: r.u64()?,
            qty: r.u64()?,
        };
        if trade.seq > seq || trades.last().is_some_and(|t: &TradeView| t.seq > trade.seq) {
            return Err(r.error("trades do not fit the snapshot"));
        }
        trades.push(trade);
    }
    r.end()?;
    Ok(Parts {
        next_order_id,
        names,
        orders,
        trades,
    })
}

/// A price or quantity (or a sum of fills, at most a quantity) as the index keeps
/// it; callers have checked it against the domain's bounds, which fit in `u32`.
fn narrow(value: u64) -> u32 {
    // Quantities are bounded far below prices.
    const _: () = assert!(PRICE_MAX <= u32::MAX as u64 && QTY_MAX <= PRICE_MAX);
    u32::try_from(value).expect("checked against the domain's bounds")
}

fn status_byte(status: Status) -> u8 {
    match status {
        Status::Resting => 0,
        Status::Filled => 1,
        Status::Cancelled => 2,
    }
}

fn status_of(byte: u8) -> Option<Status> {
    match byte {
        0 => Some(Status::Resting),
        1 => Some(Status::Filled),
        2 => Some(Status::Cancelled),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_events::Order;

    /// `sort_body` leaves the orders in id order and the rest of the body as it was.
    #[test]
    fn sorted_bodies_hold_the_orders_by_id() {
        let orders = (1..=5000)
            .map(|id| Order {
                id,
                user: format!("u{}", id % 7),
                side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
                price: if id % 2 == 0 { 100 } else { 200 },
                qty: 1 + id % 5,
            })
            .collect();
        let state = BookState {
            next_order_id: 5001,
            orders,
        };
        let model = ReadModel::from_state(&state, 0);
        let mut body = model.encode();
        let unsorted = body.clone();
        ReadModel::sort_body(&mut body).unwrap();
        let ids: Vec<u64> = decode_parts(&mut BodyReader::new(&body), 0)
            .unwrap()
            .orders
            .map(|o| o.unwrap().id)
            .collect();
        assert_eq!(ids, (1..=5000).collect::<Vec<_>>());
        // The index does not hand them out in id order by itself.
        assert_ne!(body, unsorted);
        let mut sorted_again = body.clone();
        ReadModel::sort_body(&mut sorted_again).unwrap();
        assert_eq!(sorted_again, body);
        let loaded = ReadModel::decode(&body, 0).unwrap();
        assert_eq!(loaded.to_state(5001), state);
        assert_eq!(loaded.digest(), model.digest());
    }

    /// Orders beyond the domain's bounds (which the index's `u32` fields rely on)
    /// do not fit: the model refuses them and stays as it was.
    #[test]
    fn out_of_bounds_orders_do_not_fit() {
        let mut model = ReadModel::default();
        let placed = |price, qty| Envelope {
            seq: 1,
            ts_us: 1,
            v: shared_events::SCHEMA_VERSION,
            event: Event::OrderPlaced {
                order: Order {
                    id: 1,
                    user: "alice".into(),
                    side: Side::Buy,
                    price,
                    qty,
                },
                fills: vec![],
                resting_qty: qty,
                idempotency_key: None,
            },
        };
        for (price, qty) in [(PRICE_MAX + 1, 1), (1 << 40, 1), (1, QTY_MAX + 1), (0, 1)] {
            let refused = model.apply(&placed(price, qty)).unwrap_err();
            assert!(refused.message.contains("out of bounds"), "{refused}");
            assert_eq!((model.seq, model.orders.len()), (0, 0));
        }
        model.apply(&placed(PRICE_MAX, QTY_MAX)).unwrap();
        let order = model.orders.get(1).unwrap();
        assert_eq!((order.price, order.qty), (PRICE_MAX, QTY_MAX));
    }
}
