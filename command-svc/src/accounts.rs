//! The write side's accounts (with `init.txt`'s `accounts`): each user's balance per
//! asset, the one place the writer checks funds against. [`Book`](crate::book::Book)
//! decides what an order, cancel or transfer does to them (the rules are in
//! `shared_events::accounts`) and records it in the event; [`Accounts::apply`] folds
//! recorded changes in, checking each against the bounds.

use shared_events::accounts::{AMOUNT_MAX, Asset, Balance, balance_fingerprint};
use shared_events::interner::Interner;
use std::sync::Arc;

/// Balances by user, each user's by asset (a user holds few assets: a short list).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// The assets the markets trade, in order of first appearance.
    assets: Vec<Asset>,
    /// Each funded user's balances that are not zero.
    funds: foldhash::HashMap<Arc<str>, Vec<(Asset, Balance)>>,
    /// Each asset's total over all users (available + held), by its index in
    /// `assets`: opening balances + deposits − withdrawals. At most
    /// [`AMOUNT_MAX`], so no sum of balances overflows.
    /// (`i128`: within one event's changes a total may pass the bound for a moment.)
    supply: Vec<i128>,
    /// Wrapping sum of every balance's fingerprint.
    digest: u64,
}

/// Two account sets are equal when they hold the same balances: a zero balance
/// listed or not is the same state.
impl PartialEq for Accounts {
    fn eq(&self, other: &Self) -> bool {
        self.assets == other.assets && self.sorted() == other.sorted()
    }
}

impl Eq for Accounts {}

impl Accounts {
    /// The accounts of `assets` with `balances` (checked: each (user, asset) once,
    /// each asset one of `assets`).
    pub fn new(
        assets: Vec<Asset>,
        balances: impl IntoIterator<Item = (String, Asset, Balance)>,
        users: &mut Interner,
    ) -> Result<Accounts, String> {
        let mut accounts = Accounts {
            supply: vec![0; assets.len()],
            assets,
            ..Accounts::default()
        };
        for (user, asset, balance) in balances {
            let Some(i) = accounts.asset_index(asset) else {
                return Err(format!(
                    "{user}'s balance of {asset}, which is not traded here"
                ));
            };
            accounts.supply[i] += i128::from(balance.available) + i128::from(balance.held);
            if accounts.supply[i] > i128::from(AMOUNT_MAX) {
                return Err(format!(
                    "the balances of {asset} add up to more than {AMOUNT_MAX}"
                ));
            }
            if balance.is_zero() {
                continue;
            }
            let user = users.intern(&user);
            let funds = accounts.funds.entry(user.clone()).or_default();
            if funds.iter().any(|(a, _)| *a == asset) {
                return Err(format!("{user}'s balance of {asset} comes twice"));
            }
            funds.push((asset, balance));
            accounts.digest =
                (accounts.digest).wrapping_add(balance_fingerprint(&user, asset, balance));
        }
        Ok(accounts)
    }

    /// The assets the markets trade.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    pub fn is_asset(&self, asset: Asset) -> bool {
        self.assets.contains(&asset)
    }

    fn asset_index(&self, asset: Asset) -> Option<usize> {
        self.assets.iter().position(|a| *a == asset)
    }

    /// `asset`'s total over all users (0 for an asset not traded here).
    pub fn supply(&self, asset: Asset) -> u64 {
        self.asset_index(asset).map_or(0, |i| self.supply[i] as u64)
    }

    /// `user`'s balance of `asset` (zero when they have none).
    pub fn balance(&self, user: &str, asset: Asset) -> Balance {
        (self.funds.get(user))
            .and_then(|funds| funds.iter().find(|(a, _)| *a == asset))
            .map_or(Balance::default(), |(_, b)| *b)
    }

    /// The digest of every balance, comparable with the read side's.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Number of users holding anything.
    pub fn users(&self) -> usize {
        self.funds.len()
    }

    /// Whether every change fits: each balance after it in bounds, each asset
    /// traded, each asset's total in bounds.
    pub fn check<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Asset, i64, i64)>,
    ) -> Result<(), String> {
        let mut supply = self.supply.clone();
        for (user, asset, available, held) in changes {
            let Some(i) = self.asset_index(asset) else {
                return Err(format!("a change of {asset}, which is not traded here"));
            };
            self.balance(user, asset)
                .after(available, held)
                .map_err(|e| format!("{user}'s {asset}: {e}"))?;
            supply[i] += i128::from(available) + i128::from(held);
        }
        for (i, &total) in supply.iter().enumerate() {
            if !(0..=i128::from(AMOUNT_MAX)).contains(&total) {
                return Err(format!(
                    "the total of {} would be {total}, out of bounds (0..={AMOUNT_MAX})",
                    self.assets[i]
                ));
            }
        }
        Ok(())
    }

    /// Applies changes already [checked](Accounts::check).
    pub fn apply<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a str, Asset, i64, i64)>,
        users: &mut Interner,
    ) {
        for (user, asset, available, held) in changes {
            let funds = match self.funds.get_mut(user) {
                Some(funds) => funds,
                None => self.funds.entry(users.intern(user)).or_default(),
            };
            let at = match funds.iter().position(|(a, _)| *a == asset) {
                Some(at) => at,
                None => {
                    funds.push((asset, Balance::default()));
                    funds.len() - 1
                }
            };
            let before = funds[at].1;
            let after = before
                .after(available, held)
                .expect("checked before it is applied");
            funds[at].1 = after;
            // A balance back at zero is no balance (as after a snapshot).
            if after.is_zero() {
                funds.swap_remove(at);
                if funds.is_empty() {
                    self.funds.remove(user);
                }
            }
            let i = self.asset_index(asset).expect("checked: a traded asset");
            self.supply[i] += i128::from(available) + i128::from(held);
            self.digest = self
                .digest
                .wrapping_sub(balance_fingerprint(user, asset, before))
                .wrapping_add(balance_fingerprint(user, asset, after));
        }
    }

    /// Every balance that is not zero, by user then asset.
    pub fn sorted(&self) -> Vec<(&str, Asset, Balance)> {
        let mut all: Vec<(&str, Asset, Balance)> = (self.funds.iter())
            .flat_map(|(user, funds)| funds.iter().map(move |(a, b)| (&**user, *a, *b)))
            .filter(|(_, _, b)| !b.is_zero())
            .collect();
        all.sort_unstable_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        all
    }

    /// Each asset's total over every user: (available, held), in the order of
    /// [`Accounts::assets`].
    pub fn totals(&self) -> Vec<(Asset, Balance)> {
        let mut totals: Vec<(Asset, Balance)> = self
            .assets
            .iter()
            .map(|a| (*a, Balance::default()))
            .collect();
        for funds in self.funds.values() {
            for (asset, b) in funds {
                let (_, t) = (totals.iter_mut())
                    .find(|(a, _)| a == asset)
                    .expect("only traded assets are held");
                t.available += b.available;
                t.held += b.held;
            }
        }
        totals
    }
}
