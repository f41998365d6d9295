//! The read model and its fold. [`ReadModel::apply`] folds one recorded event into
//! the projections the read routes serve: the book, an order index, per-user order
//! lists and recent trades. It is pure (no I/O, no clock): it applies facts from
//! the log and never re-runs matching. The order index ([`crate::index`]), user
//! lists and trades are concurrent maps the HTTP handlers read directly; the book is
//! serialized into an immutable [`BookView`] after each applied batch.
//!
//! Beside the fold: `view.rs` (the published view and its `/orderbook` JSON) and
//! `body.rs` (the model as a snapshot body: encode, sort, decode).

use crate::index::{IndexedOrder, OrderIndex};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use shared_events::domain::{PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN, resting_fingerprint};
use shared_events::interner::Interner;
use shared_events::state::{MarketSpec, RestingOrder};
use shared_events::{BookState, Envelope, Event, Fill, Order, Side, Symbol};
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
    /// Left the book unfilled (in part): its owner's cancel or cancel-all, self-trade
    /// prevention, or the unfilled rest of an IOC or market order.
    Cancelled,
    /// Amended to a new price or a larger quantity: it rests on under a new id.
    Replaced,
}

/// One order as `/orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: u64,
    /// The market it was placed in.
    pub market: Symbol,
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
    /// The market it happened in.
    pub market: Symbol,
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

/// One market's book: both sides' levels and the digest of its resting orders.
/// Cloning it is O(1) (persistent maps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sides {
    pub(crate) bids: Levels,
    pub(crate) asks: Levels,
    /// Sum of this market's resting orders' fingerprints (see `shared_events::domain`).
    pub(crate) digest: u64,
}

impl Sides {
    fn levels_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

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
    /// The markets (from the genesis state), the default first.
    pub markets: Arc<[MarketSpec]>,
    /// Each market's book, by its index in `markets`.
    books: Vec<Sides>,
    /// Which markets this model holds, by index in `markets` (all of them, unless
    /// `query-svc --markets` names some): an event of another market only moves
    /// `seq`, and its book stays empty.
    pub held: Arc<[bool]>,
    /// Every resting order and the most recently finished ones, by id.
    pub orders: Arc<OrderIndex>,
    /// Each user's kept order ids, oldest first.
    pub user_orders: Arc<UserOrders>,
    /// The most recent trades, oldest first, at most [`TRADES_KEPT`].
    pub trades: Arc<RwLock<VecDeque<TradeView>>>,
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
    /// With accounts on and every market held: the balances.
    pub accounts: Option<ReadAccounts>,
}

impl Default for ReadModel {
    fn default() -> Self {
        ReadModel {
            seq: 0,
            markets: Arc::new([MarketSpec::DEFAULT]),
            books: vec![Sides::default()],
            held: Arc::new([true]),
            orders: Default::default(),
            user_orders: Default::default(),
            trades: Default::default(),
            users: Default::default(),
            next_order_id: 0,
            finished: VecDeque::new(),
            finishing: Vec::new(),
            finished_kept: FINISHED_ORDERS_KEPT_DEFAULT,
            accounts: None,
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
        ReadModel::from_state_holding(state, seq, None)
    }

    /// [`ReadModel::from_state`] holding only the markets `held` says (by index in
    /// the state's markets; `None`: all).
    pub fn from_state_holding(state: &BookState, seq: u64, held: Option<Arc<[bool]>>) -> Self {
        let mut model = ReadModel::empty(state.markets.as_slice().into(), seq);
        if let Some(held) = held {
            assert_eq!(held.len(), state.markets.len(), "one flag per market");
            model.held = held;
        }
        model.next_order_id = state.next_order_id;
        for o in &state.orders {
            let market = model.market_index(o.market).expect("a validated state");
            if !model.held[usize::from(market)] {
                continue;
            }
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
                    market,
                },
            );
            model.rest(market, o.id, &o.user, o.side, o.price, o.qty);
        }
        if model.holds_every_market()
            && let Some(opening) = state.opening_balances().expect("a validated state")
        {
            let balances = (opening.into_iter())
                .map(|(user, asset, b)| (model.users.intern(&user), asset, b))
                .collect::<Vec<_>>();
            let accounts =
                ReadAccounts::new(state.assets().into(), balances).expect("a validated state");
            model.accounts = Some(accounts);
        }
        model
    }

    /// Whether this model holds every market (balances span markets: only such a
    /// model keeps them).
    pub fn holds_every_market(&self) -> bool {
        self.held.iter().all(|&h| h)
    }

    /// An empty model of `markets` at `seq`.
    pub(crate) fn empty(markets: Arc<[MarketSpec]>, seq: u64) -> Self {
        assert!(
            markets.len() <= usize::from(u16::MAX),
            "a validated state has at most {} markets",
            shared_events::state::MARKETS_MAX
        );
        ReadModel {
            seq,
            books: vec![Sides::default(); markets.len()],
            held: vec![true; markets.len()].into(),
            markets,
            ..ReadModel::default()
        }
    }

    /// Where market `symbol` is in [`ReadModel::markets`].
    pub fn market_index(&self, symbol: Symbol) -> Option<u16> {
        shared_events::state::market_index(&self.markets, symbol)
    }

    /// Puts `qty` of an order on the book of `market`.
    fn rest(&mut self, market: u16, id: u64, user: &str, side: Side, price: u64, qty: u64) {
        let book = &mut self.books[usize::from(market)];
        book.digest = book
            .digest
            .wrapping_add(resting_fingerprint(id, user, side, price, qty));
        let level = book.levels_mut(side).entry(price).or_default();
        level.qty += qty;
        debug_assert!(level.orders.back().is_none_or(|&(last, _)| last < id));
        level.orders.push_back((id, qty));
    }

    /// Digest of the state: the wrapping sum of every market's resting orders'
    /// digest and the accounts' digest, comparable with the write side's.
    pub fn digest(&self) -> u64 {
        (self.books.iter()).fold(self.accounts_digest(), |sum, b| sum.wrapping_add(b.digest))
    }

    /// Digest of every balance (0 without accounts), part of [`ReadModel::digest`].
    pub fn accounts_digest(&self) -> u64 {
        self.accounts.as_ref().map_or(0, ReadAccounts::digest)
    }

    /// Each held market's digest, in the order of [`ReadModel::markets`].
    pub fn market_digests(&self) -> impl Iterator<Item = (Symbol, u64)> + '_ {
        (self.markets.iter().zip(&self.books).zip(self.held.iter()))
            .filter(|(_, held)| **held)
            .map(|((m, b), _)| (m.symbol, b.digest))
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

    fn resting_qty(&self, market: u16, id: u64, side: Side, price: u64) -> Option<u64> {
        let book = &self.books[usize::from(market)];
        let levels = match side {
            Side::Buy => &book.bids,
            Side::Sell => &book.asks,
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

    /// Moves past event `seq` of `market`, a market this model does not hold, known
    /// only by its checked head (see `shared_events::peek_head`).
    pub fn skip(&mut self, seq: u64, market: Symbol) -> Result<(), FoldError> {
        let misfit = |message: String| FoldError { seq, message };
        if seq != self.seq + 1 {
            return Err(misfit(format!("expected seq {}", self.seq + 1)));
        }
        match self.market_index(market) {
            None => Err(misfit(format!(
                "an event of market {market}, which is not one of this model's markets"
            ))),
            Some(at) if self.held[usize::from(at)] => Err(misfit(format!(
                "an event of market {market}, which this model holds, was not decoded"
            ))),
            Some(_) => {
                self.seq = seq;
                Ok(())
            }
        }
    }

    fn apply_event(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let seq = env.seq;
        let misfit = |message: String| FoldError { seq, message };
        if seq != self.seq + 1 {
            return Err(misfit(format!("expected seq {}", self.seq + 1)));
        }
        env.event.check_shape().map_err(misfit)?;
        if let Event::OrdersCancelled { user, orders, .. } = &env.event {
            return self.apply_cancel_all(seq, user, orders, &env.event);
        }
        let Some(symbol) = env.event.market() else {
            // A transfer: balances only (a model holding some markets keeps none).
            let staged = self.stage_balances(&env.event).map_err(misfit)?;
            self.commit_balances(staged);
            self.seq = seq;
            return Ok(());
        };
        let Some(market) = self.market_index(symbol) else {
            return Err(misfit(format!(
                "an event of market {symbol}, which is not one of this model's markets"
            )));
        };
        if !self.held[usize::from(market)] {
            // Another replica's market: the event is in the log, not in this model.
            self.seq = seq;
            return Ok(());
        }
        // Balances first: they are checked against the accounts before any of the
        // event changes the model, and the checks below change nothing either.
        let staged = self.stage_balances(&env.event).map_err(misfit)?;
        match &env.event {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                cancelled_makers,
                ..
            } => {
                self.check_placed(market, order, fills).map_err(misfit)?;
                let makers = self
                    .check_cancelled_makers(market, order, fills, cancelled_makers)
                    .map_err(misfit)?;
                for (c, price) in cancelled_makers.iter().zip(makers) {
                    let side = order.side.opposite();
                    self.take(
                        market,
                        c.order_id,
                        side,
                        price,
                        c.qty,
                        seq,
                        Status::Cancelled,
                    );
                }
                self.apply_placed(seq, market, order, fills, *resting_qty);
            }
            Event::OrderAmended {
                order_id,
                user,
                side,
                price,
                qty,
                new_price,
                new_qty,
                new_order_id,
                fills,
                resting_qty,
                ..
            } => {
                let (rested, at) = self
                    .check_cancelled(market, *order_id, user, *qty)
                    .map_err(misfit)?;
                if (rested, at) != (*side, *price) {
                    return Err(misfit(format!(
                        "amend of order {order_id} names another side or price than it rests at"
                    )));
                }
                match new_order_id {
                    // A reduction only: the event's shape, checked first.
                    None => {
                        let less = qty - new_qty;
                        self.take(
                            market,
                            *order_id,
                            *side,
                            *price,
                            less,
                            seq,
                            Status::Cancelled,
                        );
                        // What it was ordered less by: ordered = filled + resting stays true.
                        self.orders.with_mut(*order_id, |o| o.qty -= narrow(less));
                    }
                    Some(new_id) => {
                        let order = Order {
                            id: *new_id,
                            user: user.clone(),
                            side: *side,
                            price: *new_price,
                            qty: *new_qty,
                        };
                        self.check_placed(market, &order, fills).map_err(misfit)?;
                        self.take(
                            market,
                            *order_id,
                            *side,
                            *price,
                            *qty,
                            seq,
                            Status::Replaced,
                        );
                        self.apply_placed(seq, market, &order, fills, *resting_qty);
                    }
                }
            }
            Event::OrderCancelled {
                order_id,
                user,
                cancelled_qty,
                ..
            } => {
                let (side, price) = self
                    .check_cancelled(market, *order_id, user, *cancelled_qty)
                    .map_err(misfit)?;
                self.take(
                    market,
                    *order_id,
                    side,
                    price,
                    *cancelled_qty,
                    seq,
                    Status::Cancelled,
                );
            }
            Event::Deposited { .. } | Event::Withdrawn { .. } | Event::OrdersCancelled { .. } => {
                unreachable!("handled above")
            }
        }
        self.commit_balances(staged);
        self.seq = seq;
        Ok(())
    }

    /// An event's balance changes checked against the accounts, when this model
    /// keeps them; without, a check that it changes none where accounts are off (a
    /// model holding only some markets keeps none and ignores them).
    fn stage_balances<'e>(&self, event: &'e Event) -> Result<Option<Staged<'e>>, String> {
        match &self.accounts {
            Some(accounts) => accounts.stage(event).map(Some),
            None if self.holds_every_market() && event.balance_changes().next().is_some() => {
                Err(format!(
                    "a {} that changes balances where accounts are off",
                    event.kind()
                ))
            }
            None => Ok(None),
        }
    }

    fn commit_balances(&mut self, staged: Option<Staged>) {
        if let (Some(accounts), Some(staged)) = (&mut self.accounts, staged) {
            accounts.commit(staged, &mut self.users);
        }
    }

    /// A cancel-all: each listed order of a held market leaves the book (orders of
    /// markets this model does not hold are another replica's); the balances, when
    /// kept, follow. Checked whole before anything changes.
    fn apply_cancel_all(
        &mut self,
        seq: u64,
        user: &str,
        orders: &[shared_events::MarketOrder],
        event: &Event,
    ) -> Result<(), FoldError> {
        let misfit = |message: String| FoldError { seq, message };
        let mut taken = Vec::with_capacity(orders.len());
        // Each order once and in the named market: checked with the event's shape.
        for o in orders {
            let Some(m) = self.market_index(o.market) else {
                return Err(misfit(format!(
                    "a cancel-all in market {}, which is not one of this model's",
                    o.market
                )));
            };
            if !self.held[usize::from(m)] {
                continue;
            }
            let (side, price) = self
                .check_cancelled(m, o.order_id, user, o.qty)
                .map_err(&misfit)?;
            taken.push((m, o, side, price));
        }
        let staged = self.stage_balances(event).map_err(&misfit)?;
        for (m, o, side, price) in taken {
            self.take(m, o.order_id, side, price, o.qty, seq, Status::Cancelled);
        }
        self.commit_balances(staged);
        self.seq = seq;
        Ok(())
    }

    /// Whether the makers self-trade prevention cancelled rest in `market` on the
    /// other side as the event says, orders of the taker's own user, none of them
    /// also filled. Their prices.
    fn check_cancelled_makers(
        &self,
        market: u16,
        order: &Order,
        fills: &[Fill],
        makers: &[shared_events::CancelledOrder],
    ) -> Result<Vec<u64>, String> {
        let mut prices = Vec::with_capacity(makers.len());
        for (i, c) in makers.iter().enumerate() {
            if c.user != order.user
                || fills.iter().any(|f| f.maker_id == c.order_id)
                || makers[..i].iter().any(|d| d.order_id == c.order_id)
            {
                return Err(format!(
                    "order {} cancels maker {} of another user, or twice",
                    order.id, c.order_id
                ));
            }
            let (side, price) = self.check_cancelled(market, c.order_id, &c.user, c.qty)?;
            if side != order.side.opposite() {
                return Err(format!(
                    "order {} cancels maker {} on its own side",
                    order.id, c.order_id
                ));
            }
            prices.push(price);
        }
        Ok(prices)
    }

    /// Whether an `OrderPlaced` fits the model: a new id, values in bounds, every
    /// maker resting what it gave in `market`.
    fn check_placed(&self, market: u16, order: &Order, fills: &[Fill]) -> Result<(), String> {
        if order.id < self.next_order_id {
            return Err(format!(
                "order id {} was already used (next is {})",
                order.id, self.next_order_id
            ));
        }
        let in_bounds = (PRICE_MIN..=PRICE_MAX).contains(&order.price)
            && (QTY_MIN..=QTY_MAX).contains(&order.qty);
        if !in_bounds {
            return Err(format!(
                "order {} has price {} or qty {} out of bounds",
                order.id, order.price, order.qty
            ));
        }
        // That fills, rest and cancelled rest make the quantity is the event's shape,
        // checked first.
        let maker_side = order.side.opposite();
        for f in fills {
            if self.resting_qty(market, f.maker_id, maker_side, f.price) < Some(f.qty) {
                return Err(format!(
                    "maker {} is not resting {} at {}",
                    f.maker_id, f.qty, f.price
                ));
            }
        }
        Ok(())
    }

    /// Applies a checked `OrderPlaced`: the makers' fills, the trades, the rest.
    fn apply_placed(
        &mut self,
        seq: u64,
        market: u16,
        order: &Order,
        fills: &[Fill],
        resting_qty: u64,
    ) {
        let maker_side = order.side.opposite();
        let symbol = self.markets[usize::from(market)].symbol;
        let mut trades = Vec::with_capacity(fills.len());
        for f in fills {
            self.take(
                market,
                f.maker_id,
                maker_side,
                f.price,
                f.qty,
                seq,
                Status::Filled,
            );
            let (buyer, seller) = match order.side {
                Side::Buy => (order.user.clone(), f.maker_user.clone()),
                Side::Sell => (f.maker_user.clone(), order.user.clone()),
            };
            trades.push(TradeView {
                seq,
                market: symbol,
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
        if resting_qty > 0 {
            self.rest(
                market,
                order.id,
                &order.user,
                order.side,
                order.price,
                resting_qty,
            );
        }
        self.next_order_id = order.id + 1;
        let user = self.users.intern(&order.user);
        let filled: u64 = fills.iter().map(|f| f.qty).sum();
        self.insert_order(
            order.id,
            IndexedOrder {
                user,
                side: order.side,
                price: narrow(order.price),
                qty: narrow(order.qty),
                filled_qty: narrow(filled),
                status: if resting_qty > 0 {
                    Status::Resting
                } else if filled == order.qty {
                    Status::Filled
                } else {
                    // An IOC's or market order's unfilled rest, or self-trade
                    // prevention's: cancelled instead of resting.
                    Status::Cancelled
                },
                seq,
                market,
            },
        );
        if resting_qty == 0 {
            self.finish(order.id);
        }
    }

    /// Whether an `OrderCancelled` fits: the order rests in `market`, owned by
    /// `user`, with exactly `cancelled_qty` left. Its side and price.
    fn check_cancelled(
        &self,
        market: u16,
        order_id: u64,
        user: &str,
        cancelled_qty: u64,
    ) -> Result<(Side, u64), String> {
        let Some((side, price, owner, in_market)) = self.orders.with(order_id, |o| {
            (o.side, u64::from(o.price), o.user.clone(), o.market)
        }) else {
            return Err(format!("cancel of unknown order {order_id}"));
        };
        if *owner != *user
            || in_market != market
            || self.resting_qty(market, order_id, side, price) != Some(cancelled_qty)
        {
            return Err(format!(
                "cancel of order {order_id} does not match its market, owner or resting qty"
            ));
        }
        Ok((side, price))
    }

    /// Removes `qty` from a resting order (checked to hold it); at zero it leaves the
    /// book with `gone` as its status.
    #[allow(clippy::too_many_arguments)] // the fields of one fact
    fn take(
        &mut self,
        market: u16,
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
        seq: u64,
        gone: Status,
    ) {
        let book = &mut self.books[usize::from(market)];
        let levels = match side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
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
        let book = &mut self.books[usize::from(market)];
        book.digest = book.digest.wrapping_sub(before).wrapping_add(after);
        if left == 0 {
            self.finish(id);
        }
    }

    /// The resting orders in time-priority order, as a book state (for comparing
    /// with the write side and for snapshots).
    pub fn to_state(&self, next_order_id: u64) -> BookState {
        let mut orders: Vec<_> = (self.markets.iter().zip(&self.books))
            .flat_map(|(spec, book)| {
                [(Side::Buy, &book.bids), (Side::Sell, &book.asks)]
                    .into_iter()
                    .flat_map(move |(side, levels)| {
                        levels.iter().flat_map(move |(&price, level)| {
                            level.orders.iter().map(move |&(id, qty)| RestingOrder {
                                id,
                                market: spec.symbol,
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
            })
            .collect();
        orders.sort_unstable_by_key(|o| o.id);
        let accounts = self
            .accounts
            .as_ref()
            .map(|accounts| shared_events::state::opening_of(accounts.sorted()));
        BookState {
            markets: self.markets.to_vec(),
            next_order_id,
            orders,
            accounts,
        }
    }

    /// The immutable view of this model that readers get: O(1), it shares the
    /// levels with the model.
    pub fn book_view(&self) -> BookView {
        BookView {
            seq: self.seq,
            markets: self.markets.clone(),
            held: self.held.clone(),
            books: self.books.clone(),
            orders: self.orders.clone(),
            accounts: self.accounts.clone(),
            json: (0..self.books.len()).map(|_| OnceLock::new()).collect(),
            depth_json: (0..self.books.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The default market's `/orderbook` answer at this seq.
    pub fn book_json(&self) -> Vec<u8> {
        self.book_view().json(0).to_vec()
    }
}

/// A price or quantity (or a sum of fills, at most a quantity) as the index keeps
/// it; callers have checked it against the domain's bounds, which fit in `u32`.
fn narrow(value: u64) -> u32 {
    // Quantities are bounded far below prices.
    const _: () = assert!(PRICE_MAX <= u32::MAX as u64 && QTY_MAX <= PRICE_MAX);
    u32::try_from(value).expect("checked against the domain's bounds")
}

mod accounts;
mod body;
mod view;

pub use accounts::{AssetTotals, ReadAccounts, Staged};
pub use body::SNAPSHOT_ORDERS_MAX;
pub use view::BookView;
