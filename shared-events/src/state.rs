//! The book-state schema: what `init.txt` holds (the genesis state, before event 1) and
//! what snapshots of the book will hold. Both services read it and check it the same way.
//!
//! ```json
//! {
//!   "markets": [
//!     {"symbol": "FOLD", "base": "FOLD", "quote": "USD"},
//!     {"symbol": "ACME", "base": "ACME", "quote": "USD"}
//!   ],
//!   "next_order_id": 3,
//!   "orders": [
//!     {"id": 1, "market": "FOLD", "user": "alice", "side": "buy", "price": 99, "qty": 10},
//!     {"id": 2, "market": "ACME", "user": "bob", "side": "sell", "price": 250, "qty": 4}
//!   ]
//! }
//! ```
//!
//! `markets` lists every market the deployment trades (at most [`MARKETS_MAX`],
//! symbols unique); the first is the **default market**, the one the unprefixed routes
//! (`/buy/...`, `/orderbook`) act on. Without `markets` (the format before markets
//! existed) there is one market, [`DEFAULT_MARKET`] (base [`DEFAULT_BASE`], quote
//! [`DEFAULT_QUOTE`]): the market every event of schema version 1 is in. An order
//! without `market` rests in the default market.

use crate::accounts::{ACCOUNTS_MAX, AMOUNT_MAX, Balance, BalanceList, order_hold};
use crate::domain::{PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN, Side, is_valid_user};
use crate::market::{DEFAULT_BASE, DEFAULT_MARKET, DEFAULT_QUOTE, Symbol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Most resting orders a state file may hold.
pub const STATE_ORDERS_MAX: usize = 10_000_000;

/// Most markets one deployment may list.
pub const MARKETS_MAX: usize = 1_000;

/// One market: its symbol, the asset bought and sold (`base`) and the asset its
/// prices are in (`quote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSpec {
    pub symbol: Symbol,
    pub base: Symbol,
    pub quote: Symbol,
}

/// Where market `symbol` is in `markets`. A deployment has a few markets (at most
/// [`MARKETS_MAX`], which fits `u16`): a scan beats hashing.
pub fn market_index(markets: &[MarketSpec], symbol: Symbol) -> Option<u16> {
    (markets.iter().position(|m| m.symbol == symbol)).map(|i| i as u16)
}

/// `A, B, C`: the markets' symbols, for messages.
pub fn symbols<'a>(markets: impl IntoIterator<Item = &'a MarketSpec>) -> String {
    let symbols: Vec<&str> = markets.into_iter().map(|m| m.symbol.as_str()).collect();
    symbols.join(", ")
}

impl MarketSpec {
    /// The market of a state that lists none (and of every schema-1 event).
    pub const DEFAULT: MarketSpec = MarketSpec {
        symbol: DEFAULT_MARKET,
        base: DEFAULT_BASE,
        quote: DEFAULT_QUOTE,
    };
}

/// A resting order of a state: an order of `market` with `qty` still resting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestingOrder {
    /// Unique, never reused, increasing in time-priority order.
    pub id: u64,
    pub market: Symbol,
    pub user: String,
    pub side: Side,
    /// Limit price in ticks.
    pub price: u64,
    /// Quantity still resting.
    pub qty: u64,
}

/// The markets, their resting orders and the id counter: everything needed to
/// continue from a point.
/// Opening balances: user → asset → amount.
pub type OpeningBalances = BTreeMap<String, BTreeMap<Symbol, u64>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateFile")]
pub struct BookState {
    /// The markets, the default first.
    pub markets: Vec<MarketSpec>,
    /// The id the next placed order gets (ids are global, across markets); greater
    /// than every id in `orders`.
    pub next_order_id: u64,
    /// Resting orders in time-priority order (oldest first), so ids strictly
    /// increase down the list.
    pub orders: Vec<RestingOrder>,
    /// With accounts on (`init.txt`'s `accounts`): each user's opening balance per
    /// asset, available and held together (what the user's resting orders hold is
    /// taken from it). `None`: accounts off, orders need no funds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<OpeningBalances>,
}

/// A state as a file may spell it: `markets` and each order's `market` optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    #[serde(default)]
    markets: Option<Vec<MarketSpec>>,
    next_order_id: u64,
    orders: Vec<StateFileOrder>,
    #[serde(default)]
    accounts: Option<OpeningBalances>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFileOrder {
    id: u64,
    #[serde(default)]
    market: Option<Symbol>,
    user: String,
    side: Side,
    price: u64,
    qty: u64,
}

impl From<StateFile> for BookState {
    fn from(file: StateFile) -> BookState {
        let markets = file.markets.unwrap_or_else(|| vec![MarketSpec::DEFAULT]);
        // An empty list is refused by `validate`; its orders fall back to the default.
        let default = markets.first().map_or(DEFAULT_MARKET, |m| m.symbol);
        let orders = file
            .orders
            .into_iter()
            .map(|o| RestingOrder {
                id: o.id,
                market: o.market.unwrap_or(default),
                user: o.user,
                side: o.side,
                price: o.price,
                qty: o.qty,
            })
            .collect();
        BookState {
            markets,
            next_order_id: file.next_order_id,
            orders,
            accounts: file.accounts,
        }
    }
}

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid book state: {message}")]
    Invalid { path: String, message: String },
}

impl BookState {
    /// An empty book of the default market whose first order gets id 1.
    pub fn empty() -> Self {
        BookState::empty_of(vec![MarketSpec::DEFAULT])
    }

    /// Empty books of `markets` (the default first); the first order gets id 1.
    pub fn empty_of(markets: Vec<MarketSpec>) -> Self {
        BookState {
            markets,
            next_order_id: 1,
            orders: Vec::new(),
            accounts: None,
        }
    }

    /// The default market: the first listed.
    pub fn default_market(&self) -> Symbol {
        self.markets.first().map_or(DEFAULT_MARKET, |m| m.symbol)
    }

    /// Where market `symbol` is in [`BookState::markets`].
    pub fn market_index(&self, symbol: Symbol) -> Option<usize> {
        market_index(&self.markets, symbol).map(usize::from)
    }

    /// Reads and validates a state file. `origin` names it in errors.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| StateError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates the JSON text of a state.
    pub fn parse(text: &str) -> Result<Self, String> {
        let state: BookState = serde_json::from_str(text).map_err(|e| e.to_string())?;
        state.validate()?;
        Ok(state)
    }

    /// Checks every rule a state must satisfy; the message names the offending
    /// market or order. The book of each market must not be crossed.
    pub fn validate(&self) -> Result<(), String> {
        if self.markets.is_empty() {
            return Err("markets is empty: list at least one market (or leave markets out for the default one)".into());
        }
        if self.markets.len() > MARKETS_MAX {
            return Err(format!("more than {MARKETS_MAX} markets"));
        }
        let mut by_symbol = std::collections::HashMap::with_capacity(self.markets.len());
        for (i, m) in self.markets.iter().enumerate() {
            if by_symbol.insert(m.symbol, i).is_some() {
                return Err(format!("markets[{i}]: symbol {} is listed twice", m.symbol));
            }
            if m.base == m.quote {
                return Err(format!(
                    "markets[{i}] ({}): base and quote are the same asset {}",
                    m.symbol, m.base
                ));
            }
        }
        if self.orders.len() > STATE_ORDERS_MAX {
            return Err(format!("more than {STATE_ORDERS_MAX} orders"));
        }
        let mut prev_id = 0;
        // Best bid and best ask of each market, by its index.
        let mut best = vec![(0u64, u64::MAX); self.markets.len()];
        for (i, o) in self.orders.iter().enumerate() {
            // Only formatted on failure: this loop runs over millions of orders.
            let at = || format!("orders[{i}] (id {})", o.id);
            if o.id <= prev_id {
                return Err(format!(
                    "{}: ids must be positive and strictly increase (time-priority order)",
                    at()
                ));
            }
            prev_id = o.id;
            let Some(&market) = by_symbol.get(&o.market) else {
                return Err(format!("{}: market {} is not in markets", at(), o.market));
            };
            if !is_valid_user(&o.user) {
                return Err(format!(
                    "{}: user must be 1..=64 characters of [A-Za-z0-9_.-]",
                    at()
                ));
            }
            if !(PRICE_MIN..=PRICE_MAX).contains(&o.price) {
                return Err(format!("{}: price must be {PRICE_MIN}..={PRICE_MAX}", at()));
            }
            if !(QTY_MIN..=QTY_MAX).contains(&o.qty) {
                return Err(format!("{}: qty must be {QTY_MIN}..={QTY_MAX}", at()));
            }
            let (bid, ask) = &mut best[market];
            match o.side {
                Side::Buy => *bid = (*bid).max(o.price),
                Side::Sell => *ask = (*ask).min(o.price),
            }
        }
        if self.next_order_id <= prev_id {
            return Err(format!(
                "next_order_id {} must be greater than every order id (max {prev_id})",
                self.next_order_id
            ));
        }
        for (m, &(bid, ask)) in self.markets.iter().zip(&best) {
            if bid >= ask {
                return Err(format!(
                    "the book of market {} is crossed: best bid {bid} >= best ask {ask}; such orders would have matched",
                    m.symbol
                ));
            }
        }
        self.opening_balances()?;
        Ok(())
    }
}

impl BookState {
    /// Every asset traded here (each market's base and quote), in order of first
    /// appearance.
    pub fn assets(&self) -> Vec<Symbol> {
        assets_of(&self.markets)
    }

    /// With accounts on, each opening balance split into what the user's resting
    /// orders hold and what is left available, by user then asset (`None`: accounts
    /// off). `Err` names the account or order that does not fit: an asset no market
    /// trades, an amount out of bounds, a resting order of an unfunded user or one
    /// its owner's balance cannot hold.
    pub fn opening_balances(&self) -> Result<Option<BalanceList>, String> {
        let Some(accounts) = &self.accounts else {
            return Ok(None);
        };
        if accounts.len() > ACCOUNTS_MAX {
            return Err(format!("more than {ACCOUNTS_MAX} accounts"));
        }
        let assets = self.assets();
        let mut balances: BTreeMap<(&str, Symbol), Balance> = BTreeMap::new();
        for (user, funds) in accounts {
            if !is_valid_user(user) {
                return Err(format!(
                    "accounts: user {user:?} must be 1..=64 characters of [A-Za-z0-9_.-]"
                ));
            }
            for (&asset, &amount) in funds {
                if !assets.contains(&asset) {
                    return Err(format!(
                        "accounts.{user}: asset {asset} is not traded here (assets: {})",
                        assets
                            .iter()
                            .map(Symbol::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if amount > AMOUNT_MAX {
                    return Err(format!(
                        "accounts.{user}.{asset}: {amount} is more than {AMOUNT_MAX}"
                    ));
                }
                balances.insert(
                    (user.as_str(), asset),
                    Balance {
                        available: amount,
                        held: 0,
                    },
                );
            }
        }
        for (i, o) in self.orders.iter().enumerate() {
            let at = || format!("orders[{i}] (id {})", o.id);
            if !accounts.contains_key(&o.user) {
                return Err(format!(
                    "{}: user {} has no account (with accounts on, every user who trades is funded)",
                    at(),
                    o.user
                ));
            }
            let market = &self.markets[self.market_index(o.market).expect("validated")];
            let (asset, amount) = order_hold(market, o.side, o.price, o.qty)
                .ok_or_else(|| format!("{}: price × qty overflows", at()))?;
            let balance = balances.entry((o.user.as_str(), asset)).or_default();
            if balance.available < amount {
                return Err(format!(
                    "{}: holds {amount} {asset}, but {} has {} {asset} left to hold",
                    at(),
                    o.user,
                    balance.available
                ));
            }
            balance.available -= amount;
            balance.held += amount;
        }
        Ok(Some(
            balances
                .into_iter()
                .map(|((user, asset), b)| (user.to_owned(), asset, b))
                .collect(),
        ))
    }
}

/// Balances as a state's opening balances: each user's available and held
/// together (what their resting orders hold is taken from it again when the state
/// is loaded).
pub fn opening_of<'a>(
    balances: impl IntoIterator<Item = (&'a str, Symbol, Balance)>,
) -> OpeningBalances {
    let mut opening = OpeningBalances::new();
    for (user, asset, b) in balances {
        opening
            .entry(user.to_owned())
            .or_default()
            .insert(asset, b.available + b.held);
    }
    opening
}

/// Every asset of `markets` (each one's base and quote), in order of first appearance.
pub fn assets_of(markets: &[MarketSpec]) -> Vec<Symbol> {
    let mut assets = Vec::new();
    for m in markets {
        for a in [m.base, m.quote] {
            if !assets.contains(&a) {
                assets.push(a);
            }
        }
    }
    assets
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: Symbol = Symbol::from_static("ACME");

    fn o(id: u64, side: Side, price: u64) -> RestingOrder {
        RestingOrder {
            id,
            market: DEFAULT_MARKET,
            user: "u".into(),
            side,
            price,
            qty: 1,
        }
    }

    fn state(orders: Vec<RestingOrder>) -> BookState {
        BookState {
            markets: vec![MarketSpec::DEFAULT],
            next_order_id: 3,
            orders,
            accounts: None,
        }
    }

    #[test]
    fn shipped_init_txt_is_valid() {
        let text = include_str!("../../init.txt");
        let state = BookState::parse(text).unwrap();
        assert!(state.markets.len() >= 2, "the shipped genesis has markets");
        for m in &state.markets {
            assert!(
                state.orders.iter().any(|o| o.market == m.symbol),
                "market {} has a book",
                m.symbol
            );
        }
    }

    #[test]
    fn rules() {
        let ok = state(vec![o(1, Side::Buy, 99), o(2, Side::Sell, 101)]);
        assert_eq!(ok.validate(), Ok(()));
        let crossed = state(vec![o(1, Side::Buy, 101), o(2, Side::Sell, 101)]);
        assert!(
            crossed
                .validate()
                .unwrap_err()
                .contains("market FOLD is crossed")
        );
        let unordered = state(vec![o(2, Side::Buy, 99), o(1, Side::Sell, 101)]);
        assert!(
            unordered
                .validate()
                .unwrap_err()
                .contains("orders[1] (id 1)")
        );
        let low_next = BookState {
            next_order_id: 2,
            ..state(vec![o(1, Side::Buy, 99), o(2, Side::Sell, 101)])
        };
        assert!(low_next.validate().unwrap_err().contains("next_order_id"));
        assert!(BookState::parse(r#"{"next_order_id":1,"orders":[],"extra":1}"#).is_err());
    }

    #[test]
    fn the_format_without_markets_is_the_default_market() {
        let s = BookState::parse(
            r#"{"next_order_id":2,"orders":[{"id":1,"user":"a","side":"buy","price":5,"qty":1}]}"#,
        )
        .unwrap();
        assert_eq!(s.markets, [MarketSpec::DEFAULT]);
        assert_eq!(s.orders[0].market, DEFAULT_MARKET);
        assert_eq!(s.default_market(), DEFAULT_MARKET);
    }

    #[test]
    fn orders_without_a_market_rest_in_the_first_listed() {
        let s = BookState::parse(
            r#"{"markets":[{"symbol":"ACME","base":"ACME","quote":"USD"},{"symbol":"FOLD","base":"FOLD","quote":"USD"}],
                "next_order_id":3,"orders":[
                {"id":1,"user":"a","side":"buy","price":5,"qty":1},
                {"id":2,"market":"FOLD","user":"a","side":"sell","price":5,"qty":1}]}"#,
        )
        .unwrap();
        assert_eq!(s.default_market(), ACME);
        assert_eq!(s.orders[0].market, ACME);
        assert_eq!(s.market_index(DEFAULT_MARKET), Some(1));
    }

    #[test]
    fn market_rules_name_the_entry() {
        let two = |markets: &str, orders: &str| {
            BookState::parse(&format!(
                r#"{{"markets":[{markets}],"next_order_id":9,"orders":[{orders}]}}"#
            ))
            .unwrap_err()
        };
        let acme = r#"{"symbol":"ACME","base":"ACME","quote":"USD"}"#;
        assert!(
            two(&format!("{acme},{acme}"), "").contains("markets[1]: symbol ACME is listed twice")
        );
        assert!(two(r#"{"symbol":"X","base":"USD","quote":"USD"}"#, "").contains("markets[0] (X)"));
        assert!(two("", "").contains("markets is empty"));
        assert!(
            two(
                acme,
                r#"{"id":1,"market":"NOPE","user":"a","side":"buy","price":5,"qty":1}"#
            )
            .contains("orders[0] (id 1): market NOPE is not in markets")
        );
        assert!(two(r#"{"symbol":"acme","base":"ACME","quote":"USD"}"#, "").contains("symbol"));
        // Crossed only within one market: the same prices in two markets are fine.
        let fold = r#"{"symbol":"FOLD","base":"FOLD","quote":"USD"}"#;
        let per_market = format!(
            r#"{{"markets":[{acme},{fold}],"next_order_id":3,"orders":[
            {{"id":1,"market":"ACME","user":"a","side":"buy","price":9,"qty":1}},
            {{"id":2,"market":"FOLD","user":"a","side":"sell","price":5,"qty":1}}]}}"#
        );
        assert!(BookState::parse(&per_market).is_ok());
        let crossed = per_market.replace(r#""market":"FOLD""#, r#""market":"ACME""#);
        assert!(
            BookState::parse(&crossed)
                .unwrap_err()
                .contains("market ACME is crossed")
        );
    }

    #[test]
    fn a_state_survives_json() {
        let s = BookState::parse(include_str!("../../init.txt")).unwrap();
        let again: BookState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }
}
