//! The write model: the matching book. [`Book::decide`] turns a command into the one
//! event it causes (or a rejection) without changing anything; [`Book::apply`] folds
//! an event into the book. Both are pure: no I/O, no clock, no randomness. Replay at
//! startup is `apply` over the log; live commands are `decide` then `apply`.

use crate::accounts::Accounts;
use crate::command::{Command, OrderOptions, Rejection};
use shared_events::accounts::{Asset, Ledger, check_moves, order_hold};
use shared_events::binary::{BodyError, BodyReader, BodyWriter, UserTable};
use shared_events::domain::resting_fingerprint;
use shared_events::interner::Interner;
use shared_events::state::{MarketSpec, RestingOrder};
use shared_events::{BookState, Event, Fill, Order, Side, Stp, Symbol, TimeInForce};
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

/// The resting orders of one market's two sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sides {
    /// Bids by price; the best bid is the highest key.
    bids: BTreeMap<u64, Level>,
    /// Asks by price; the best ask is the lowest key.
    asks: BTreeMap<u64, Level>,
    /// Sum of this market's resting orders' fingerprints (see `shared_events::domain`).
    digest: u64,
}

impl Sides {
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

    /// Every level: bids, then asks, each by ascending price.
    fn all_levels(&self) -> impl Iterator<Item = (Side, u64, &Level)> {
        let side = |side: Side| {
            self.levels(side)
                .iter()
                .map(move |(&price, level)| (side, price, level))
        };
        side(Side::Buy).chain(side(Side::Sell))
    }
}

/// Where a resting order is: its market (an index into [`Book::markets`]), side
/// and price.
type Place = (u16, Side, u64);

/// The books of every market, the one id counter they share, and where each
/// resting order is.
#[derive(Debug, Clone)]
pub struct Book {
    /// The markets, the default first (from the genesis state).
    markets: Vec<MarketSpec>,
    /// Each market's book, by the market's index.
    books: Vec<Sides>,
    /// Where each resting order is, for cancels (order ids are global). foldhash:
    /// several times faster than SipHash on replay, and still seeded per process.
    index: foldhash::HashMap<u64, Place>,
    /// Every user with a resting order (and some who had one), shared by their
    /// orders: a resting order then costs a pointer, not a string.
    users: Interner,
    /// The id the next placed order gets.
    next_order_id: u64,
    /// With accounts on: every user's balances.
    accounts: Option<Accounts>,
}

/// Two books are equal when they hold the same markets, orders and counter; the
/// interning table is a cache, not state.
impl PartialEq for Book {
    fn eq(&self, other: &Self) -> bool {
        self.markets == other.markets
            && self.books == other.books
            && self.index == other.index
            && self.next_order_id == other.next_order_id
            && self.accounts == other.accounts
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
        let mut book = Book::empty(state.markets.clone(), state.next_order_id);
        book.index.reserve(state.orders.len());
        for o in &state.orders {
            let market = book.market_index(o.market).expect("a validated state");
            book.rest(market, o.id, &o.user, o.side, o.price, o.qty);
        }
        if let Some(opening) = state.opening_balances().expect("a validated state") {
            let accounts =
                Accounts::new(state.assets(), opening, &mut book.users).expect("a validated state");
            book.accounts = Some(accounts);
        }
        book
    }

    /// Empty books of `markets`.
    fn empty(markets: Vec<MarketSpec>, next_order_id: u64) -> Self {
        assert!(
            markets.len() <= usize::from(u16::MAX),
            "a validated state has at most {} markets",
            shared_events::state::MARKETS_MAX
        );
        Book {
            books: vec![Sides::default(); markets.len()],
            markets,
            index: Default::default(),
            users: Default::default(),
            next_order_id,
            accounts: None,
        }
    }

    /// The resting orders in time-priority order, and the id counter.
    pub fn to_state(&self) -> BookState {
        let mut orders: Vec<RestingOrder> = (self.markets.iter().zip(&self.books))
            .flat_map(|(spec, book)| {
                book.all_levels().flat_map(move |(side, price, level)| {
                    level.iter().map(move |(&id, r)| RestingOrder {
                        id,
                        market: spec.symbol,
                        user: r.user.to_string(),
                        side,
                        price,
                        qty: r.qty,
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
            markets: self.markets.clone(),
            next_order_id: self.next_order_id,
            orders,
            accounts,
        }
    }

    /// The accounts, when they are on.
    pub fn accounts(&self) -> Option<&Accounts> {
        self.accounts.as_ref()
    }

    /// The accounts' invariants, recomputed from scratch (for tests and the
    /// simulation; a scan of every balance and resting order): for every asset,
    /// available + held over all users is what was paid in (opening balances +
    /// deposits − withdrawals), and every user's held is what their resting orders
    /// hold.
    pub fn check_accounts(&self) -> Result<(), String> {
        let Some(accounts) = &self.accounts else {
            return Ok(());
        };
        for (asset, total) in accounts.totals() {
            if total.available + total.held != accounts.supply(asset) {
                return Err(format!(
                    "{asset} is not conserved: {} available + {} held, {} paid in",
                    total.available,
                    total.held,
                    accounts.supply(asset)
                ));
            }
        }
        let mut holds: std::collections::BTreeMap<(&str, Asset), u64> = Default::default();
        for (spec, book) in self.markets.iter().zip(&self.books) {
            for (side, price, level) in book.all_levels() {
                for r in level.values() {
                    let (asset, amount) =
                        order_hold(spec, side, price, r.qty).expect("a resting order's hold fits");
                    *holds.entry((&r.user, asset)).or_default() += amount;
                }
            }
        }
        for (user, asset, balance) in accounts.sorted() {
            let want = holds.remove(&(user, asset)).unwrap_or(0);
            if balance.held != want {
                return Err(format!(
                    "{user} holds {} {asset}, their resting orders {want}",
                    balance.held
                ));
            }
        }
        match holds.into_iter().next() {
            Some(((user, asset), amount)) => Err(format!(
                "{user}'s resting orders hold {amount} {asset}, which they do not hold"
            )),
            None => Ok(()),
        }
    }

    /// The markets, the default first.
    pub fn markets(&self) -> &[MarketSpec] {
        &self.markets
    }

    /// Where market `symbol` is in [`Book::markets`].
    pub fn market_index(&self, symbol: Symbol) -> Option<u16> {
        shared_events::state::market_index(&self.markets, symbol)
    }

    pub fn next_order_id(&self) -> u64 {
        self.next_order_id
    }

    /// Digest of the state: the wrapping sum of every market's resting orders'
    /// digest and the accounts' digest, comparable with the read side's.
    pub fn digest(&self) -> u64 {
        (self.books.iter()).fold(self.accounts_digest(), |sum, b| sum.wrapping_add(b.digest))
    }

    /// Digest of every balance (0 with accounts off), part of [`Book::digest`].
    pub fn accounts_digest(&self) -> u64 {
        self.accounts.as_ref().map_or(0, Accounts::digest)
    }

    /// Each market's digest, in the order of [`Book::markets`].
    pub fn market_digests(&self) -> impl Iterator<Item = (Symbol, u64)> + '_ {
        (self.markets.iter().zip(&self.books)).map(|(m, b)| (m.symbol, b.digest))
    }

    /// Number of resting orders.
    pub fn resting_count(&self) -> usize {
        self.index.len()
    }

    /// Resting quantity of order `id`, if it rests.
    pub fn resting_qty(&self, id: u64) -> Option<u64> {
        let (market, side, price) = *self.index.get(&id)?;
        Some(self.sides(market).levels(side).get(&price)?.get(&id)?.qty)
    }

    fn sides(&self, market: u16) -> &Sides {
        &self.books[usize::from(market)]
    }

    /// The resting orders of `market` an incoming order on `taker_side` at `limit`
    /// may trade with, best price first, oldest first within a price.
    fn matchable(
        &self,
        market: u16,
        taker_side: Side,
        limit: u64,
    ) -> Box<dyn Iterator<Item = (u64, u64, &Resting)> + '_> {
        fn flatten<'a>(
            (&price, level): (&'a u64, &'a Level),
        ) -> impl Iterator<Item = (u64, u64, &'a Resting)> {
            level.iter().map(move |(&id, r)| (id, price, r))
        }
        let book = self.sides(market);
        match taker_side {
            Side::Buy => Box::new(book.asks.range(..=limit).flat_map(flatten)),
            Side::Sell => Box::new(book.bids.range(limit..).rev().flat_map(flatten)),
        }
    }

    /// Decides what `cmd` does to this book, without changing it.
    pub fn decide(&self, cmd: &Command) -> Result<Event, Rejection> {
        match cmd {
            Command::Place {
                market,
                user,
                side,
                price,
                qty,
                options,
                idempotency_key,
            } => {
                let at = self
                    .market_index(*market)
                    .ok_or(Rejection::UnknownMarket(*market))?;
                let taken = self.take_from_book(at, user, *side, *price, *qty, options)?;
                let placed = Placed::decide(*qty, options, &taken)?;
                let balances = match &self.accounts {
                    None => Vec::new(),
                    Some(accounts) => {
                        let spec = &self.markets[usize::from(at)];
                        let hold = match (side, options.market, options.max_cost) {
                            (Side::Buy, true, Some(max_cost)) => (spec.quote, max_cost),
                            (Side::Buy, true, None) => return Err(Rejection::MaxCostNeeded),
                            _ => order_hold(spec, *side, *price, *qty)
                                .ok_or_else(|| too_big(*price, *qty))?,
                        };
                        let mut ledger = Ledger::new();
                        settle(
                            &mut ledger,
                            accounts,
                            spec,
                            Taker {
                                user,
                                side: *side,
                                price: *price,
                                hold,
                                available_extra: 0,
                                rests: placed.resting_qty,
                                unfilled: placed.unfilled_qty,
                            },
                            &taken,
                        )?;
                        ledger.into_changes()
                    }
                };
                let order = Order {
                    id: self.next_order_id,
                    user: user.clone(),
                    side: *side,
                    price: *price,
                    qty: *qty,
                };
                Ok(Event::OrderPlaced {
                    market: *market,
                    order,
                    fills: taken.fills,
                    resting_qty: placed.resting_qty,
                    tif: options.tif,
                    post_only: options.post_only,
                    stp: options.stp,
                    market_order: options.market,
                    max_cost: options.max_cost,
                    unfilled_qty: placed.unfilled_qty,
                    cancelled_makers: taken.cancelled.into_iter().map(|(c, _)| c).collect(),
                    balances,
                    idempotency_key: idempotency_key.clone(),
                })
            }
            Command::Amend {
                user,
                order_id,
                qty,
                price: new_price,
                idempotency_key,
            } => self.decide_amend(user, *order_id, *qty, *new_price, idempotency_key),
            Command::CancelAll {
                user,
                market,
                idempotency_key,
            } => self.decide_cancel_all(user, *market, idempotency_key),
            Command::Cancel {
                user,
                order_id,
                idempotency_key,
            } => {
                let (market, side, price) = *self
                    .index
                    .get(order_id)
                    .ok_or(Rejection::NotResting(*order_id))?;
                let resting = &self.sides(market).levels(side)[&price][order_id];
                if *resting.user != **user {
                    return Err(Rejection::NotOwner(*order_id));
                }
                let spec = &self.markets[usize::from(market)];
                let mut balances = Vec::new();
                if self.accounts.is_some() {
                    // What the rest still holds goes back to available.
                    let (asset, held) = order_hold(spec, side, price, resting.qty)
                        .expect("a resting order's hold fits");
                    let held = signed(held)?;
                    let mut ledger = Ledger::new();
                    ledger
                        .add(user, asset, held, -held)
                        .map_err(|_| overflow())?;
                    balances = ledger.into_changes();
                }
                Ok(Event::OrderCancelled {
                    market: spec.symbol,
                    order_id: *order_id,
                    user: user.clone(),
                    cancelled_qty: resting.qty,
                    balances,
                    idempotency_key: idempotency_key.clone(),
                })
            }
            Command::Deposit {
                user,
                asset,
                amount,
                idempotency_key,
            } => {
                let accounts = self.transferable(*asset)?;
                accounts
                    .check([(user.as_str(), *asset, signed(*amount)?, 0)])
                    .map_err(Rejection::OutOfBounds)?;
                Ok(Event::Deposited {
                    user: user.clone(),
                    asset: *asset,
                    amount: *amount,
                    idempotency_key: idempotency_key.clone(),
                })
            }
            Command::Withdraw {
                user,
                asset,
                amount,
                idempotency_key,
            } => {
                let accounts = self.transferable(*asset)?;
                let available = accounts.balance(user, *asset).available;
                if available < *amount {
                    return Err(Rejection::InsufficientFunds {
                        asset: *asset,
                        needed: *amount,
                        available,
                    });
                }
                Ok(Event::Withdrawn {
                    user: user.clone(),
                    asset: *asset,
                    amount: *amount,
                    idempotency_key: idempotency_key.clone(),
                })
            }
        }
    }

    /// Folds one event into the book. Every fact is checked before anything changes,
    /// so a misfit event leaves the book as it was.
    pub fn apply(&mut self, event: &Event) -> Result<(), FoldError> {
        event.check_shape().map_err(FoldError)?;
        self.check_balances(event)?;
        if let Event::OrdersCancelled { user, orders, .. } = event {
            // Of one market or of several: each order names its own.
            let mut at = Vec::with_capacity(orders.len());
            for o in orders {
                let place = self.market_index(o.market).and_then(|m| {
                    let &(rested, side, price) = self.index.get(&o.order_id)?;
                    let r = self
                        .sides(rested)
                        .levels(side)
                        .get(&price)?
                        .get(&o.order_id)?;
                    (rested == m && *r.user == **user && r.qty == o.qty).then_some((m, side, price))
                });
                match place {
                    Some(p) => at.push(p),
                    None => {
                        return Err(FoldError(format!(
                            "cancel-all of order {}, which is not resting like that",
                            o.order_id
                        )));
                    }
                }
            }
            for (o, (m, side, price)) in orders.iter().zip(at) {
                self.take(m, o.order_id, side, price, o.qty);
            }
            self.apply_balances(event);
            return Ok(());
        }
        let Some(symbol) = event.market() else {
            // A transfer: balances only.
            self.apply_balances(event);
            return Ok(());
        };
        let Some(market) = self.market_index(symbol) else {
            return Err(FoldError(format!(
                "an event of market {symbol}, which is not one of this book's markets"
            )));
        };
        match event {
            Event::OrderPlaced {
                order,
                fills,
                resting_qty,
                cancelled_makers,
                ..
            } => {
                if order.id < self.next_order_id {
                    return Err(FoldError(format!(
                        "order id {} was already used (next is {})",
                        order.id, self.next_order_id
                    )));
                }
                let maker_side = order.side.opposite();
                self.check_fills(market, symbol, order.id, maker_side, fills)?;
                let mut cancelled = Vec::with_capacity(cancelled_makers.len());
                for c in cancelled_makers {
                    let at = self.index.get(&c.order_id).copied();
                    let fits = at.is_some_and(|(m, side, price)| {
                        let r = &self.sides(m).levels(side)[&price][&c.order_id];
                        (m, side) == (market, maker_side)
                            && *r.user == *order.user
                            && c.user == order.user
                            && r.qty == c.qty
                            && !fills.iter().any(|f| f.maker_id == c.order_id)
                    });
                    if !fits {
                        return Err(FoldError(format!(
                            "order {} cancels maker {}, which is not a resting order of its user like that",
                            order.id, c.order_id
                        )));
                    }
                    cancelled.push(at.expect("checked").2);
                }
                for f in fills {
                    self.take(market, f.maker_id, maker_side, f.price, f.qty);
                }
                for (c, price) in cancelled_makers.iter().zip(cancelled) {
                    self.take(market, c.order_id, maker_side, price, c.qty);
                }
                if *resting_qty > 0 {
                    self.rest(
                        market,
                        order.id,
                        &order.user,
                        order.side,
                        order.price,
                        *resting_qty,
                    );
                }
                self.next_order_id = order.id + 1;
            }
            Event::OrderCancelled {
                order_id,
                user,
                cancelled_qty,
                ..
            } => {
                let Some(&(at, side, price)) = self.index.get(order_id) else {
                    return Err(FoldError(format!(
                        "cancel of order {order_id}, which is not resting"
                    )));
                };
                let resting = &self.sides(at).levels(side)[&price][order_id];
                if at != market || *resting.user != **user || resting.qty != *cancelled_qty {
                    return Err(FoldError(format!(
                        "cancel of order {order_id} does not match its market, owner or quantity"
                    )));
                }
                self.take(market, *order_id, side, price, *cancelled_qty);
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
                let rests = self.index.get(order_id) == Some(&(market, *side, *price))
                    && self.sides(market).levels(*side)[price]
                        .get(order_id)
                        .is_some_and(|r| *r.user == **user && r.qty == *qty);
                if !rests {
                    return Err(FoldError(format!(
                        "amend of order {order_id}, which is not resting like that"
                    )));
                }
                match new_order_id {
                    // Its shape (a reduction, or fills and rest making the new
                    // quantity) is checked above.
                    None => self.take(market, *order_id, *side, *price, qty - new_qty),
                    Some(new_id) => {
                        if *new_id < self.next_order_id {
                            return Err(FoldError(format!(
                                "amend of order {order_id} into {new_id}, an id already used"
                            )));
                        }
                        self.check_fills(market, symbol, *new_id, side.opposite(), fills)?;
                        self.take(market, *order_id, *side, *price, *qty);
                        for f in fills {
                            self.take(market, f.maker_id, side.opposite(), f.price, f.qty);
                        }
                        if *resting_qty > 0 {
                            self.rest(market, *new_id, user, *side, *new_price, *resting_qty);
                        }
                        self.next_order_id = new_id + 1;
                    }
                }
            }
            Event::Deposited { .. } | Event::Withdrawn { .. } | Event::OrdersCancelled { .. } => {
                unreachable!("handled above")
            }
        }
        self.apply_balances(event);
        Ok(())
    }

    /// Whether every fill of order `taker` takes from a maker resting in `market` on
    /// `maker_side` at the fill's price, at most what it has.
    fn check_fills(
        &self,
        market: u16,
        symbol: Symbol,
        taker: u64,
        maker_side: Side,
        fills: &[Fill],
    ) -> Result<(), FoldError> {
        for (i, f) in fills.iter().enumerate() {
            let resting = self.resting_qty(f.maker_id);
            let at = self.index.get(&f.maker_id).copied();
            let twice = fills[..i].iter().any(|g| g.maker_id == f.maker_id);
            if at != Some((market, maker_side, f.price)) || resting < Some(f.qty) || twice {
                return Err(FoldError(format!(
                    "order {taker} fills {} of maker {} at {}, which is not resting like that in market {symbol}",
                    f.qty, f.maker_id, f.price
                )));
            }
        }
        Ok(())
    }

    /// The accounts, for a transfer of `asset`.
    fn transferable(&self, asset: Asset) -> Result<&Accounts, Rejection> {
        let accounts = self.accounts.as_ref().ok_or(Rejection::AccountsOff)?;
        if !accounts.is_asset(asset) {
            return Err(Rejection::UnknownAsset(asset));
        }
        Ok(accounts)
    }

    /// Whether the balance changes `event` records fit the accounts: none with
    /// accounts off; with them, each balance in bounds after it, and an order or
    /// cancel only moving money between users.
    fn check_balances(&self, event: &Event) -> Result<(), FoldError> {
        let Some(accounts) = &self.accounts else {
            return match event.balance_changes().next() {
                None => Ok(()),
                Some(_) => Err(FoldError(format!(
                    "a {} that changes balances, in a book without accounts",
                    event.kind()
                ))),
            };
        };
        if let Some(moves) = event.balance_moves() {
            check_moves(moves).map_err(FoldError)?;
        }
        accounts
            .check(event.balance_changes())
            .map_err(|e| FoldError(format!("a {}: {e}", event.kind())))
    }

    /// Applies an event's checked balance changes.
    fn apply_balances(&mut self, event: &Event) {
        if let Some(accounts) = &mut self.accounts {
            accounts.apply(event.balance_changes(), &mut self.users);
        }
    }

    fn rest(&mut self, market: u16, id: u64, user: &str, side: Side, price: u64, qty: u64) {
        debug_assert!(qty > 0);
        let user = self.users.intern(user);
        let book = &mut self.books[usize::from(market)];
        book.digest = book
            .digest
            .wrapping_add(resting_fingerprint(id, &user, side, price, qty));
        book.levels_mut(side)
            .entry(price)
            .or_default()
            .insert(id, Resting { user, qty });
        self.index.insert(id, (market, side, price));
    }

    /// Removes `qty` from a resting order known to hold at least that much.
    fn take(&mut self, market: u16, id: u64, side: Side, price: u64, qty: u64) {
        let book = &mut self.books[usize::from(market)];
        let levels = match side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
        };
        let level = levels.get_mut(&price).expect("checked: the level exists");
        let resting = level.get_mut(&id).expect("checked: the order rests here");
        let before = resting_fingerprint(id, &resting.user, side, price, resting.qty);
        resting.qty -= qty;
        let after = match resting.qty {
            0 => 0,
            left => resting_fingerprint(id, &resting.user, side, price, left),
        };
        book.digest = book.digest.wrapping_sub(before).wrapping_add(after);
        if resting.qty == 0 {
            level.remove(&id);
            if level.is_empty() {
                levels.remove(&price);
            }
            self.index.remove(&id);
        }
    }
}

/// An amount as a signed change (every amount is at most `AMOUNT_MAX` < 2^63).
fn signed(amount: u64) -> Result<i64, Rejection> {
    i64::try_from(amount).map_err(|_| overflow())
}

fn overflow() -> Rejection {
    Rejection::OutOfBounds("an amount does not fit in 64 bits".to_owned())
}

fn too_big(price: u64, qty: u64) -> Rejection {
    Rejection::OutOfBounds(format!("price {price} × qty {qty} does not fit in 64 bits"))
}

/// What an incoming order takes from the book: its fills, the resting orders of
/// its own user that self-trade prevention cancelled (with their prices), and why
/// matching stopped before the order was done, if it did.
#[derive(Debug, Default)]
struct Taken {
    fills: Vec<Fill>,
    cancelled: Vec<(shared_events::CancelledOrder, u64)>,
    filled: u64,
    /// What the fills cost, in the quote asset.
    spent: u64,
    stopped: Option<&'static str>,
}

/// Where an order ends: what of it rests and what is cancelled instead.
struct Placed {
    resting_qty: u64,
    unfilled_qty: u64,
}

impl Placed {
    /// The rules of time in force, market orders and self-trade prevention, given
    /// what the order took: a fill-or-kill fills entirely or is refused; an IOC or
    /// market order, or one self-trade prevention stopped, never rests; an order
    /// that would change nothing is refused (409), so nothing is written.
    fn decide(qty: u64, options: &OrderOptions, taken: &Taken) -> Result<Placed, Rejection> {
        let remaining = qty - taken.filled;
        if options.tif == TimeInForce::Fok && remaining > 0 {
            return Err(Rejection::Unchanged(format!(
                "a fill-or-kill order for {qty} could fill only {} now",
                taken.filled
            )));
        }
        let rests = options.tif == TimeInForce::Gtc && !options.market && taken.stopped.is_none();
        let resting_qty = if rests { remaining } else { 0 };
        if taken.fills.is_empty() && taken.cancelled.is_empty() && resting_qty == 0 {
            let why = match (options.market, taken.stopped) {
                (_, Some(why)) => format!("{why} cancelled the whole order"),
                (true, None) => "a market order found nothing to match".to_owned(),
                (false, None) => {
                    "an immediate-or-cancel order found nothing to match at its price".to_owned()
                }
            };
            return Err(Rejection::Unchanged(why));
        }
        Ok(Placed {
            resting_qty,
            unfilled_qty: remaining - resting_qty,
        })
    }
}

impl Book {
    /// What an order of `user` on `side` at `price` for `qty` takes from the book of
    /// `market`, best price first, oldest first: fills, and self-trade prevention's
    /// cancels; a market buy stops where `max_cost` runs out. A post-only order that
    /// would take anything is refused.
    fn take_from_book(
        &self,
        market: u16,
        user: &str,
        side: Side,
        price: u64,
        qty: u64,
        options: &OrderOptions,
    ) -> Result<Taken, Rejection> {
        let mut taken = Taken::default();
        if options.post_only {
            if let Some((_, at, _)) = self.matchable(market, side, price).next() {
                return Err(Rejection::Unchanged(format!(
                    "a post-only order would take liquidity (the best {} is at {at})",
                    if side == Side::Buy { "ask" } else { "bid" }
                )));
            }
            return Ok(taken);
        }
        let mut remaining = qty;
        for (maker_id, maker_price, maker) in self.matchable(market, side, price) {
            if remaining == 0 {
                break;
            }
            if taken.fills.len() + taken.cancelled.len() == FILLS_PER_EVENT_MAX {
                return Err(Rejection::TooManyFills);
            }
            if *maker.user == *user && !options.stp.is_none() {
                let order = shared_events::CancelledOrder {
                    order_id: maker_id,
                    user: user.to_owned(),
                    qty: maker.qty,
                };
                match options.stp {
                    Stp::CancelTaker => taken.stopped = Some("self-trade prevention"),
                    Stp::CancelMaker => {
                        taken.cancelled.push((order, maker_price));
                        continue;
                    }
                    Stp::CancelBoth => {
                        taken.cancelled.push((order, maker_price));
                        taken.stopped = Some("self-trade prevention");
                    }
                    Stp::None => unreachable!("checked above"),
                }
                break;
            }
            let mut traded = remaining.min(maker.qty);
            if let (Side::Buy, Some(max_cost)) = (side, options.max_cost) {
                let affordable = (max_cost - taken.spent) / maker_price;
                if affordable < traded {
                    traded = affordable;
                    taken.stopped = Some("its max_cost");
                }
            }
            if traded > 0 {
                taken.fills.push(Fill {
                    maker_id,
                    maker_user: maker.user.to_string(),
                    price: maker_price,
                    qty: traded,
                });
                remaining -= traded;
                taken.filled += traded;
                // At most price × qty of the order, within the domain's bounds.
                taken.spent += maker_price * traded;
            }
            if taken.stopped.is_some() {
                break;
            }
        }
        Ok(taken)
    }

    /// An amend of `user`'s resting order `order_id` to `qty` left (and `new_price`).
    fn decide_amend(
        &self,
        user: &str,
        order_id: u64,
        qty: u64,
        new_price: Option<u64>,
        idempotency_key: &Option<String>,
    ) -> Result<Event, Rejection> {
        let (market, side, price) = *self
            .index
            .get(&order_id)
            .ok_or(Rejection::NotResting(order_id))?;
        let resting = &self.sides(market).levels(side)[&price][&order_id];
        if *resting.user != *user {
            return Err(Rejection::NotOwner(order_id));
        }
        let new_price = new_price.unwrap_or(price);
        let spec = &self.markets[usize::from(market)];
        if new_price == price && qty == resting.qty {
            return Err(Rejection::Unchanged(format!(
                "order {order_id} already rests {qty} at {price}: the amend changes nothing"
            )));
        }
        let old_hold =
            order_hold(spec, side, price, resting.qty).expect("a resting order's hold fits");
        let keeps_place = new_price == price && qty < resting.qty;
        let mut ledger = Ledger::new();
        let (fills, resting_qty, new_order_id) = if keeps_place {
            if let Some(accounts) = &self.accounts {
                let (asset, new_hold) = order_hold(spec, side, price, qty).expect("smaller");
                let released = signed(old_hold.1 - new_hold)?;
                ledger
                    .add(user, asset, released, -released)
                    .map_err(|_| overflow())?;
                check_ledger(accounts, &ledger)?;
            }
            (Vec::new(), qty, None)
        } else {
            let taken =
                self.take_from_book(market, user, side, new_price, qty, &OrderOptions::default())?;
            let resting_qty = qty - taken.filled;
            if let Some(accounts) = &self.accounts {
                let (asset, released) = old_hold;
                let released_signed = signed(released)?;
                ledger
                    .add(user, asset, released_signed, -released_signed)
                    .map_err(|_| overflow())?;
                let hold = order_hold(spec, side, new_price, qty)
                    .ok_or_else(|| too_big(new_price, qty))?;
                settle(
                    &mut ledger,
                    accounts,
                    spec,
                    Taker {
                        user,
                        side,
                        price: new_price,
                        hold,
                        available_extra: released,
                        rests: resting_qty,
                        unfilled: 0,
                    },
                    &taken,
                )?;
            }
            (taken.fills, resting_qty, Some(self.next_order_id))
        };
        Ok(Event::OrderAmended {
            market: spec.symbol,
            order_id,
            user: user.to_owned(),
            side,
            price,
            qty: resting.qty,
            new_price,
            new_qty: qty,
            new_order_id,
            fills,
            resting_qty,
            balances: ledger.into_changes(),
            idempotency_key: idempotency_key.clone(),
        })
    }

    /// A cancel-all of `user`'s resting orders (in `market`, if named), the oldest
    /// [`shared_events::CANCELS_PER_EVENT_MAX`] of them.
    fn decide_cancel_all(
        &self,
        user: &str,
        market: Option<Symbol>,
        idempotency_key: &Option<String>,
    ) -> Result<Event, Rejection> {
        let only = match market {
            Some(m) => Some(self.market_index(m).ok_or(Rejection::UnknownMarket(m))?),
            None => None,
        };
        // A scan of every resting order: a cancel-all is rare, and an index per user
        // would cost every resting order memory.
        let mut mine: Vec<(u64, u16, Side, u64, u64)> = (self.index.iter())
            .filter(|(_, (m, _, _))| only.is_none_or(|o| o == *m))
            .filter_map(|(&id, &(m, side, price))| {
                let r = &self.sides(m).levels(side)[&price][&id];
                (*r.user == *user).then_some((id, m, side, price, r.qty))
            })
            .collect();
        if mine.is_empty() {
            return Err(Rejection::Unchanged(format!(
                "{user} has no resting orders{}",
                market.map_or(String::new(), |m| format!(" in market {m}"))
            )));
        }
        mine.sort_unstable_by_key(|o| o.0);
        mine.truncate(shared_events::CANCELS_PER_EVENT_MAX);
        let mut ledger = Ledger::new();
        if let Some(accounts) = &self.accounts {
            for &(_, m, side, price, qty) in &mine {
                let (asset, held) = order_hold(&self.markets[usize::from(m)], side, price, qty)
                    .expect("a resting order's hold fits");
                let held = signed(held)?;
                ledger
                    .add(user, asset, held, -held)
                    .map_err(|_| overflow())?;
            }
            check_ledger(accounts, &ledger)?;
        }
        Ok(Event::OrdersCancelled {
            market,
            user: user.to_owned(),
            orders: (mine.iter())
                .map(|&(order_id, m, _, _, qty)| shared_events::MarketOrder {
                    market: self.markets[usize::from(m)].symbol,
                    order_id,
                    qty,
                })
                .collect(),
            balances: ledger.into_changes(),
            idempotency_key: idempotency_key.clone(),
        })
    }
}

/// Whether the changes so far keep every balance and total in bounds.
fn check_ledger(accounts: &Accounts, ledger: &Ledger) -> Result<(), Rejection> {
    let changes = ledger.clone().into_changes();
    accounts
        .check(
            changes
                .iter()
                .map(|c| (c.user.as_str(), c.asset, c.available, c.held)),
        )
        .map_err(Rejection::OutOfBounds)
}

/// The incoming order, as its settlement needs it.
struct Taker<'a> {
    user: &'a str,
    side: Side,
    /// Its limit (a market order's: the bound).
    price: u64,
    /// What it holds while it matches: the asset and the amount (a limit buy's
    /// price × qty, a market buy's `max_cost`, a sell's qty).
    hold: (Asset, u64),
    /// Available besides the balance before the event (an amend's released hold).
    available_extra: u64,
    /// What of it rests, and what is cancelled instead.
    rests: u64,
    unfilled: u64,
}

/// Adds an order's balance changes to `ledger`: its hold (all of it, from what is
/// available), each fill's settlement at the maker's price, then the release of
/// what it no longer needs (a buyer's difference to its limit, the unfilled part),
/// and the release of the makers self-trade prevention cancelled. Refused if the
/// user cannot hold the order or a balance would leave its bounds.
fn settle(
    ledger: &mut Ledger,
    accounts: &Accounts,
    market: &MarketSpec,
    taker: Taker,
    taken: &Taken,
) -> Result<(), Rejection> {
    let Taker {
        user,
        side,
        price,
        hold: (asset, hold),
        available_extra,
        rests,
        unfilled,
    } = taker;
    let available = accounts.balance(user, asset).available + available_extra;
    if available < hold {
        return Err(Rejection::InsufficientFunds {
            asset,
            needed: hold,
            available,
        });
    }
    let (base, quote) = (market.base, market.quote);
    let mut add = |who: &str, asset: Asset, available: i64, held: i64| {
        ledger
            .add(who, asset, available, held)
            .map_err(|_| overflow())
    };
    let hold_signed = signed(hold)?;
    add(user, asset, -hold_signed, hold_signed)?;
    for f in &taken.fills {
        // Within the domain's bounds (price, qty <= 10^9, 10^6): no overflow.
        let paid = signed(
            f.price
                .checked_mul(f.qty)
                .ok_or_else(|| too_big(f.price, f.qty))?,
        )?;
        let qty = signed(f.qty)?;
        match side {
            Side::Buy => {
                add(user, quote, 0, -paid)?;
                add(user, base, qty, 0)?;
                add(&f.maker_user, base, 0, -qty)?;
                add(&f.maker_user, quote, paid, 0)?;
            }
            Side::Sell => {
                add(user, base, 0, -qty)?;
                add(user, quote, paid, 0)?;
                add(&f.maker_user, quote, 0, -paid)?;
                add(&f.maker_user, base, qty, 0)?;
            }
        }
    }
    // What the order still holds when it is done: a resting buy price × its rest,
    // a resting sell its rest; the rest of the hold goes back.
    let release = match side {
        Side::Buy => {
            let keeps = price
                .checked_mul(rests)
                .ok_or_else(|| too_big(price, rests))?;
            hold - taken.spent - keeps
        }
        Side::Sell => unfilled,
    };
    let release = signed(release)?;
    add(user, asset, release, -release)?;
    for (c, maker_price) in &taken.cancelled {
        let (asset, held) = order_hold(market, side.opposite(), *maker_price, c.qty)
            .expect("a resting order's hold fits");
        let held = signed(held)?;
        add(&c.user, asset, held, -held)?;
    }
    check_ledger(accounts, ledger)
}

/// Most resting orders a write-side snapshot may hold: as many as the book can
/// (nothing bounds the resting orders of a live book but memory; the reader's
/// other check, that the body holds that many orders' bytes, bounds what a corrupt
/// count could make it allocate). It was once the bound of a state file,
/// `STATE_ORDERS_MAX` (10 million), and a book past it wrote snapshots that no
/// start could use (found by the bench's curves at 10M resting orders).
pub const SNAPSHOT_ORDERS_MAX: usize = 1 << 32;

impl Book {
    /// Writes the book into a snapshot body: the id counter, the user table, the
    /// number of resting orders, the markets, then each market's price levels
    /// (bids, then asks, by price) with their orders in time priority (`id`, user
    /// index, `qty`). See [`Book::decode`].
    pub fn encode(&self, w: &mut BodyWriter) {
        let mut users = UserTable::default();
        // The user table comes first, so collect it in a first pass.
        for book in &self.books {
            for (_, _, level) in book.all_levels() {
                for r in level.values() {
                    users.index(&r.user);
                }
            }
        }
        w.u64(self.next_order_id);
        users.write(w);
        w.count(self.index.len());
        w.markets(&self.markets);
        for book in &self.books {
            let levels: Vec<_> = book.all_levels().collect();
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
        w.balances(self.accounts.as_ref().map(|a| a.sorted().into_iter()));
    }

    /// Reads a book written by [`Book::encode`] and checks what
    /// [`BookState::validate`] checks of a state: ids positive, unique, below the
    /// counter and increasing within a level, prices and quantities in bounds, no
    /// market's book crossed. Levels are built in bulk from their sorted orders.
    pub fn decode(r: &mut BodyReader) -> Result<Book, BodyError> {
        let next_order_id = r.u64()?;
        let names = UserTable::read(r)?;
        // An order is 20 bytes.
        let total = r.count(SNAPSHOT_ORDERS_MAX, 20)?;
        let markets = r.markets()?;
        // First read and check every value (sequential), then build the index and
        // the levels from them on two threads: each is a million small writes.
        let mut levels = Vec::new();
        let mut read = 0;
        for market in 0..markets.len() {
            read += read_levels(
                r,
                market as u16,
                total - read,
                names.len(),
                next_order_id,
                &mut levels,
            )?;
        }
        if read != total {
            return Err(r.error(format!("{read} orders in the levels, {total} announced")));
        }
        let (index, built) = build_levels(&levels, &names, markets.len());
        let (index, digests) =
            index.map_err(|id| r.error(format!("order id {id} appears twice")))?;
        let books = (built.into_iter().zip(digests))
            .map(|((bids, asks), digest)| Sides { bids, asks, digest })
            .collect();
        let mut users: Interner = names.into_iter().collect();
        let accounts = match r.balances()? {
            None => None,
            Some(balances) => Some(
                Accounts::new(
                    shared_events::state::assets_of(&markets),
                    balances,
                    &mut users,
                )
                .map_err(|e| r.error(e))?,
            ),
        };
        Ok(Book {
            markets,
            books,
            index,
            users,
            next_order_id,
            accounts,
        })
    }
}

/// A resting order as a snapshot body holds it: `(id, user index, qty)`.
type OrderRecord = (u64, u32, u64);

/// A price level as a snapshot body holds it: market, side, price, its orders
/// oldest first.
type LevelRecord = (u16, Side, u64, Vec<OrderRecord>);

/// Reads the levels of one market's book, at most `budget` orders, into `levels`,
/// checking every value: prices and quantities in bounds, levels in price order
/// and not empty, ids in time-priority order and below `next_order_id`, users in
/// the table of `users` names, the book not crossed. The number of orders read.
fn read_levels(
    r: &mut BodyReader,
    market: u16,
    budget: usize,
    users: usize,
    next_order_id: u64,
    levels: &mut Vec<LevelRecord>,
) -> Result<usize, BodyError> {
    use shared_events::domain::{PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN};
    // A level is at least side, price and count.
    let level_count = r.count(SNAPSHOT_ORDERS_MAX, 17)?;
    levels.reserve(level_count);
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
        let n = r.count(budget - read, 20)?;
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
        levels.push((market, side, price, orders));
    }
    if let (Some(bid), Some(ask)) = (last_bid, best_ask)
        && bid >= ask
    {
        return Err(r.error(format!(
            "the book is crossed: best bid {bid} >= best ask {ask}"
        )));
    }
    Ok(read)
}

/// The id index with each market's digest, or the id that appears twice.
type Indexed = Result<(foldhash::HashMap<u64, Place>, Vec<u64>), u64>;
/// Each market's bids and asks by price.
type MarketLevels = Vec<(BTreeMap<u64, Level>, BTreeMap<u64, Level>)>;
/// One side's levels by price, in price order, before they become a map.
type SortedLevels = Vec<(u64, Level)>;

/// Builds the id index (with the digests) and the levels of `markets` markets
/// from checked records, on two threads. The index is `Err(id)` when an id appears
/// twice.
fn build_levels(
    levels: &[LevelRecord],
    names: &[std::sync::Arc<str>],
    markets: usize,
) -> (Indexed, MarketLevels) {
    std::thread::scope(|scope| {
        let indexing = scope.spawn(|| {
            let mut index: foldhash::HashMap<u64, Place> =
                foldhash::HashMap::with_capacity_and_hasher(
                    levels.iter().map(|(_, _, _, o)| o.len()).sum(),
                    Default::default(),
                );
            let mut digests = vec![0u64; markets];
            for (market, side, price, orders) in levels {
                let digest = &mut digests[usize::from(*market)];
                for &(id, user, qty) in orders {
                    if index.insert(id, (*market, *side, *price)).is_some() {
                        return Err(id);
                    }
                    let user = &names[user as usize];
                    *digest =
                        digest.wrapping_add(resting_fingerprint(id, user, *side, *price, qty));
                }
            }
            Ok((index, digests))
        });
        let mut sides: Vec<(SortedLevels, SortedLevels)> = vec![Default::default(); markets];
        for (market, side, price, orders) in levels {
            // Sorted by id: the level is built in bulk, not by repeated inserts.
            let level: Level = orders
                .iter()
                .map(|&(id, user, qty)| {
                    let user = names[user as usize].clone();
                    (id, Resting { user, qty })
                })
                .collect();
            let (bids, asks) = &mut sides[usize::from(*market)];
            match side {
                Side::Buy => bids.push((*price, level)),
                Side::Sell => asks.push((*price, level)),
            }
        }
        let built = (sides.into_iter())
            .map(|(bids, asks)| (bids.into_iter().collect(), asks.into_iter().collect()))
            .collect();
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

    const FOLD: Symbol = shared_events::DEFAULT_MARKET;
    const ACME: Symbol = Symbol::from_static("ACME");

    fn order(id: u64, user: &str, side: Side, price: u64, qty: u64) -> Order {
        Order {
            id,
            user: user.into(),
            side,
            price,
            qty,
        }
    }

    fn resting(market: Symbol, o: Order) -> RestingOrder {
        RestingOrder {
            id: o.id,
            market,
            user: o.user,
            side: o.side,
            price: o.price,
            qty: o.qty,
        }
    }

    fn two_markets() -> Vec<MarketSpec> {
        vec![
            MarketSpec::DEFAULT,
            MarketSpec {
                symbol: ACME,
                base: ACME,
                quote: Symbol::from_static("USD"),
            },
        ]
    }

    fn given(orders: Vec<Order>) -> Book {
        given_in(orders.into_iter().map(|o| resting(FOLD, o)).collect())
    }

    fn given_in(orders: Vec<RestingOrder>) -> Book {
        let next_order_id = orders.iter().map(|o| o.id).max().unwrap_or(0) + 1;
        let state = BookState {
            markets: two_markets(),
            next_order_id,
            orders,
            accounts: None,
        };
        state.validate().unwrap();
        Book::from_state(&state)
    }

    fn place(user: &str, side: Side, price: u64, qty: u64) -> Command {
        place_in(FOLD, user, side, price, qty)
    }

    fn place_in(market: Symbol, user: &str, side: Side, price: u64, qty: u64) -> Command {
        Command::Place {
            options: Default::default(),
            market,
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
            Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                order(2, "b", Side::Buy, 100, 3),
                vec![],
                3,
                None
            )
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
                balances: vec![],
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
        let bad = Event::limit_placed(
            shared_events::DEFAULT_MARKET,
            order(2, "b", Side::Buy, 100, 2),
            vec![fill(1, "a", 100, 2)],
            0,
            None,
        );
        assert!(book.apply(&bad).is_err());
        assert_eq!(book, before);
    }

    #[test]
    fn markets_match_apart_and_share_the_id_counter() {
        let mut book = given_in(vec![
            resting(FOLD, order(1, "s", Side::Sell, 100, 5)),
            resting(ACME, order(2, "t", Side::Sell, 100, 5)),
        ]);
        let event = when(&mut book, place_in(ACME, "b", Side::Buy, 100, 2)).unwrap();
        let Event::OrderPlaced {
            market,
            order,
            fills,
            ..
        } = &event
        else {
            panic!()
        };
        assert_eq!((*market, order.id), (ACME, 3));
        assert_eq!(fills, &[fill(2, "t", 100, 2)], "only ACME's ask trades");
        assert_eq!(book.resting_qty(1), Some(5));
        // A cancel needs no market: the order id says where it rests.
        let cancelled = when(
            &mut book,
            Command::Cancel {
                user: "t".into(),
                order_id: 2,
                idempotency_key: None,
            },
        )
        .unwrap();
        assert_eq!(cancelled.market(), Some(ACME));
        let digests: Vec<_> = book.market_digests().collect();
        assert_eq!(digests.len(), 2);
        assert_eq!(
            digests[0].1.wrapping_add(digests[1].1),
            book.digest(),
            "the digest sums the markets'"
        );
        assert_eq!(digests[1], (ACME, 0), "ACME's book is empty");
        let unknown = Symbol::from_static("NOPE");
        assert_eq!(
            book.decide(&place_in(unknown, "b", Side::Buy, 1, 1)),
            Err(Rejection::UnknownMarket(unknown))
        );
        let mut wrong = event.clone();
        if let Event::OrderPlaced { market, order, .. } = &mut wrong {
            *market = FOLD;
            order.id = 9;
        }
        assert!(
            book.apply(&wrong).is_err(),
            "a fill of an ACME maker recorded in FOLD does not fit"
        );
    }

    #[test]
    fn a_book_of_several_markets_survives_its_snapshot_body() {
        let mut book = given_in(vec![
            resting(FOLD, order(1, "s", Side::Sell, 100, 5)),
            resting(ACME, order(2, "t", Side::Buy, 90, 5)),
            resting(ACME, order(3, "u", Side::Sell, 95, 1)),
        ]);
        when(&mut book, place_in(ACME, "v", Side::Buy, 91, 2)).unwrap();
        let mut w = BodyWriter::default();
        book.encode(&mut w);
        let bytes = w.finish();
        let mut r = BodyReader::new(&bytes);
        let back = Book::decode(&mut r).unwrap();
        r.end().unwrap();
        assert_eq!(back, book);
        assert!(back.market_digests().eq(book.market_digests()));
    }

    pub(crate) fn arb_command() -> impl Strategy<Value = Command> {
        let user = prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from);
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        let market = prop_oneof![3 => Just(FOLD), 1 => Just(ACME)];
        prop_oneof![
            4 => (market, user.clone(), side, 95u64..=105, 1u64..=10).prop_map(|(market, user, side, price, qty)| Command::Place {
                options: Default::default(),
                market, user, side, price, qty, idempotency_key: None
            }),
            1 => (user, 1u64..=40).prop_map(|(user, order_id)| Command::Cancel { user, order_id, idempotency_key: None }),
        ]
    }

    proptest! {
        /// The book never rests crossed, quantities are conserved, and the state
        /// round-trips through the genesis schema.
        #[test]
        fn invariants_hold(cmds in proptest::collection::vec(arb_command(), 0..80)) {
            let mut book = Book::from_state(&BookState::empty_of(two_markets()));
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
                for sides in &book.books {
                    let best_bid = sides.bids.keys().next_back().copied().unwrap_or(0);
                    let best_ask = sides.asks.keys().next().copied().unwrap_or(u64::MAX);
                    prop_assert!(best_bid < best_ask, "crossed book");
                }
                let state = book.to_state();
                prop_assert_eq!(state.validate(), Ok(()));
                prop_assert_eq!(Book::from_state(&state), book.clone());
            }
        }
    }
}
