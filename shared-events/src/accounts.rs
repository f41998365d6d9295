//! Accounts (opt-in: `init.txt`'s `accounts`): per user and asset an `available`
//! and a `held` amount, integers in the asset's smallest unit. The vocabulary both
//! sides share: the amounts and their bounds, what an order holds, the balance
//! changes an event records, and the fingerprint a balance adds to the state digest.
//!
//! The rules, decided by the one writer and recorded in each event as
//! [`BalanceChange`]s, so that a reader applies facts and never recomputes them:
//!
//! - a buy limit order holds `price × qty` of its market's quote asset, a sell holds
//!   `qty` of the base asset ([`order_hold`]); an order needs that much available;
//! - each fill moves the held assets between buyer and seller at the trade price (the
//!   maker's); a buyer that traded below its limit gets the difference released at
//!   once;
//! - a cancel releases what the order still holds;
//! - a deposit raises `available`, a withdrawal lowers it (never below zero).
//!
//! All arithmetic is checked: an amount or a balance above [`AMOUNT_MAX`] is refused,
//! never wrapped or saturated.

use crate::domain::{InvalidValue, Side, echo};
use crate::market::Symbol;
use crate::state::MarketSpec;
use serde::{Deserialize, Serialize};

/// An asset: a name of the same shape as a market symbol (`USD`, `ACME`).
pub type Asset = Symbol;

/// Largest amount: of one deposit or withdrawal, and of any balance (available or
/// held). 10^18 keeps every change of one event (at most [`AMOUNT_MAX`] in size) a
/// signed 64-bit integer, and is far beyond the largest hold of one order
/// (`PRICE_MAX × QTY_MAX` = 10^15).
pub const AMOUNT_MAX: u64 = 1_000_000_000_000_000_000;

/// Most accounts (users) a genesis state may fund.
pub const ACCOUNTS_MAX: usize = 10_000_000;

/// Balances as a list: (user, asset, balance).
pub type BalanceList = Vec<(String, Asset, Balance)>;

/// A sum of balance changes that does not fit in 64 bits (it cannot within the
/// domain's bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sum of balance changes does not fit in 64 bits")]
pub struct ChangeOverflow;

/// One user's balance of one asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// What the user may spend, withdraw or hold for a new order.
    pub available: u64,
    /// What their resting orders hold.
    pub held: u64,
}

impl Balance {
    /// Both parts, zero.
    pub fn is_zero(&self) -> bool {
        self.available == 0 && self.held == 0
    }

    /// The balance after `change`; `Err` (and no change) if a part would go below
    /// zero or above [`AMOUNT_MAX`].
    pub fn after(&self, available: i64, held: i64) -> Result<Balance, String> {
        let add = |part: u64, delta: i64| {
            part.checked_add_signed(delta)
                .filter(|&v| v <= AMOUNT_MAX)
                .ok_or_else(|| {
                    format!(
                        "{part} {} {} is out of bounds (0..={AMOUNT_MAX})",
                        if delta < 0 { '-' } else { '+' },
                        delta.unsigned_abs()
                    )
                })
        };
        Ok(Balance {
            available: add(self.available, available)?,
            held: add(self.held, held)?,
        })
    }
}

/// One balance an event changed, and by how much: the facts a reader applies. One
/// event lists each (user, asset) at most once, changes summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub user: String,
    pub asset: Asset,
    /// Added to `available` (negative: taken from it).
    pub available: i64,
    /// Added to `held`.
    pub held: i64,
}

/// What an order of `market` on `side` at `price` for `qty` holds while it rests
/// (the quote asset for a buy, the base asset for a sell) and how much of it;
/// `None` when the product overflows (it cannot within the domain's bounds).
pub fn order_hold(market: &MarketSpec, side: Side, price: u64, qty: u64) -> Option<(Asset, u64)> {
    match side {
        Side::Buy => Some((market.quote, price.checked_mul(qty)?)),
        Side::Sell => Some((market.base, qty)),
    }
}

/// The balance changes of one event, summed per (user, asset) as they are added:
/// how the writer builds an event's [`BalanceChange`] list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    changes: Vec<BalanceChange>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Adds `available` and `held` to `user`'s `asset`. `Err` if a sum leaves `i64`
    /// (it cannot within the domain's bounds).
    pub fn add(
        &mut self,
        user: &str,
        asset: Asset,
        available: i64,
        held: i64,
    ) -> Result<(), ChangeOverflow> {
        match (self.changes.iter_mut()).find(|c| c.asset == asset && c.user == user) {
            Some(c) => {
                c.available = c.available.checked_add(available).ok_or(ChangeOverflow)?;
                c.held = c.held.checked_add(held).ok_or(ChangeOverflow)?;
            }
            None => self.changes.push(BalanceChange {
                user: user.to_owned(),
                asset,
                available,
                held,
            }),
        }
        Ok(())
    }

    /// The summed change of `user`'s `asset` so far: (available, held).
    pub fn get(&self, user: &str, asset: Asset) -> (i64, i64) {
        (self.changes.iter())
            .find(|c| c.asset == asset && c.user == user)
            .map_or((0, 0), |c| (c.available, c.held))
    }

    /// The changes, without those that add up to nothing.
    pub fn into_changes(mut self) -> Vec<BalanceChange> {
        self.changes.retain(|c| c.available != 0 || c.held != 0);
        self.changes
    }
}

/// Whether the changes an order, amend or cancel records can be applied as facts:
/// each (user, asset) listed once, and every asset's total kept where it was
/// ([`conserves`]: such an event only moves money between users).
pub fn check_moves(changes: &[BalanceChange]) -> Result<(), String> {
    let mut seen: std::collections::HashSet<(&str, Asset)> =
        std::collections::HashSet::with_capacity(changes.len());
    for c in changes {
        if !seen.insert((c.user.as_str(), c.asset)) {
            return Err(format!("{}'s {} is changed twice", c.user, c.asset));
        }
    }
    conserves(changes)
}

/// Whether `changes` keep every asset's total (available + held over all users)
/// where it was: true of every order and cancel, which only move money.
pub fn conserves(changes: &[BalanceChange]) -> Result<(), String> {
    let mut sums: Vec<(Asset, i128)> = Vec::new();
    for c in changes {
        let delta = i128::from(c.available) + i128::from(c.held);
        match sums.iter_mut().find(|(a, _)| *a == c.asset) {
            Some((_, sum)) => *sum += delta,
            None => sums.push((c.asset, delta)),
        }
    }
    match sums.iter().find(|(_, sum)| *sum != 0) {
        Some((asset, sum)) => Err(format!("the changes of {asset} add up to {sum}, not 0")),
        None => Ok(()),
    }
}

/// Strict decimal amount, 1..=[`AMOUNT_MAX`].
pub fn parse_amount(raw: &str) -> Result<u64, InvalidValue> {
    crate::domain::parse_decimal(raw)
        .filter(|a| (1..=AMOUNT_MAX).contains(a))
        .ok_or_else(|| InvalidValue::Amount(echo(raw)))
}

/// A 64-bit fingerprint of one balance (see `domain::resting_fingerprint`): the
/// accounts' digest is the wrapping sum over every balance that is not zero.
pub fn balance_fingerprint(user: &str, asset: Asset, balance: Balance) -> u64 {
    if balance.is_zero() {
        return 0;
    }
    // The resting-order hash over the same words: the asset in the id's place, the
    // two parts in price's and qty's (a distinct tag keeps it apart from an order's).
    let mut asset_word = [0u8; 8];
    let name = asset.as_str().as_bytes();
    asset_word[..name.len().min(8)].copy_from_slice(&name[..name.len().min(8)]);
    let asset_word = u64::from_le_bytes(asset_word) ^ (name.len() as u64) << 56;
    crate::domain::resting_fingerprint(
        asset_word ^ 0x6163_636f_756e_7473,
        user,
        Side::Buy,
        balance.available,
        balance.held ^ 0x5eed_0000_0000_0000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USD: Asset = Symbol::from_static("USD");
    const ACME: Asset = Symbol::from_static("ACME");

    #[test]
    fn holds_are_quote_for_buys_and_base_for_sells() {
        let m = MarketSpec {
            symbol: ACME,
            base: ACME,
            quote: USD,
        };
        assert_eq!(order_hold(&m, Side::Buy, 100, 3), Some((USD, 300)));
        assert_eq!(order_hold(&m, Side::Sell, 100, 3), Some((ACME, 3)));
        assert_eq!(order_hold(&m, Side::Buy, u64::MAX, 2), None);
    }

    #[test]
    fn a_balance_never_goes_negative_or_past_the_maximum() {
        let b = Balance {
            available: 5,
            held: 0,
        };
        assert_eq!(
            b.after(-5, 0),
            Ok(Balance {
                available: 0,
                held: 0
            })
        );
        assert!(b.after(-6, 0).unwrap_err().contains("5 - 6"));
        assert!(b.after(0, -1).is_err());
        let full = Balance {
            available: AMOUNT_MAX,
            held: 0,
        };
        assert!(full.after(1, 0).is_err());
    }

    #[test]
    fn moves_list_each_balance_once_and_conserve() {
        let c = |user: &str, available, held| BalanceChange {
            user: user.into(),
            asset: USD,
            available,
            held,
        };
        assert_eq!(check_moves(&[c("a", -5, 5), c("b", 3, -3)]), Ok(()));
        assert!(
            check_moves(&[c("a", -5, 0), c("b", 5, 0), c("a", 1, -1)])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            check_moves(&[c("a", -5, 0), c("b", 4, 0)])
                .unwrap_err()
                .contains("not 0")
        );
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1"), Ok(1));
        assert_eq!(parse_amount(&AMOUNT_MAX.to_string()), Ok(AMOUNT_MAX));
        for bad in ["0", "", "-1", "1e3", " 1", &(AMOUNT_MAX + 1).to_string()] {
            assert!(parse_amount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_zero_balance_adds_nothing_to_the_digest_and_parts_are_told_apart() {
        assert_eq!(balance_fingerprint("a", USD, Balance::default()), 0);
        let one = |available, held| balance_fingerprint("a", USD, Balance { available, held });
        assert_ne!(one(1, 0), one(0, 1));
        assert_ne!(
            one(1, 0),
            balance_fingerprint(
                "a",
                ACME,
                Balance {
                    available: 1,
                    held: 0
                }
            )
        );
    }

    proptest! {
        /// A ledger's changes are the per-(user, asset) sums of what was added, and
        /// moving amounts between users always conserves.
        #[test]
        fn ledgers_sum_and_moves_conserve(moves in prop::collection::vec((0..3usize, 0..3usize, 0..2usize, 0..1_000i64), 0..30)) {
            let users = ["a", "b", "c"];
            let assets = [USD, ACME];
            let mut ledger = Ledger::new();
            let mut expected = std::collections::HashMap::new();
            for (from, to, asset, amount) in moves {
                ledger.add(users[from], assets[asset], -amount, 0).unwrap();
                ledger.add(users[to], assets[asset], 0, amount).unwrap();
                *expected.entry((users[from], asset)).or_insert((0, 0)) = {
                    let (a, h) = expected.get(&(users[from], asset)).copied().unwrap_or((0, 0));
                    (a - amount, h)
                };
                *expected.entry((users[to], asset)).or_insert((0, 0)) = {
                    let (a, h) = expected.get(&(users[to], asset)).copied().unwrap_or((0, 0));
                    (a, h + amount)
                };
            }
            for ((user, asset), sums) in &expected {
                prop_assert_eq!(ledger.get(user, assets[*asset]), *sums);
            }
            let changes = ledger.into_changes();
            prop_assert!(changes.iter().all(|c| c.available != 0 || c.held != 0));
            prop_assert_eq!(conserves(&changes), Ok(()));
        }
    }
}
