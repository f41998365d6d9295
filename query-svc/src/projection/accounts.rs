//! The read side's accounts (with `init.txt`'s `accounts`, on a read side holding
//! every market): each user's balances and each asset's totals, folded from the
//! balance changes the log records. Persistent maps: a published view shares them
//! with the tailer's model, and a change copies only the path it touches.

use serde::Serialize;
use shared_events::accounts::{AMOUNT_MAX, Asset, Balance, balance_fingerprint, check_moves};
use shared_events::binary::{BodyError, BodyReader, BodyWriter};
use shared_events::{Event, Symbol};
use std::sync::Arc;

/// One asset's totals, as `GET /assets` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AssetTotals {
    /// Every deposit since genesis (not the opening balances).
    pub deposited: u128,
    /// Every withdrawal since genesis.
    pub withdrawn: u128,
    /// Available over all users.
    pub available: u64,
    /// Held over all users.
    pub held: u64,
}

/// An event's balance changes, checked and not yet applied: the totals after it,
/// and each (user, asset) with its balance before and after.
#[derive(Debug)]
pub struct Staged<'e> {
    totals: Vec<AssetTotals>,
    changes: Vec<(&'e str, Asset, Balance, Balance)>,
}

/// Balances by user (each user's by asset) and totals by asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAccounts {
    /// The assets the markets trade, in order of first appearance.
    pub assets: Arc<[Asset]>,
    /// Each user's balances that are not zero, by asset (sorted, zeros left out: one
    /// state, one representation, whether folded or loaded from a snapshot).
    balances: imbl::HashMap<Arc<str>, Arc<[(Asset, Balance)]>>,
    /// By the asset's index in `assets`.
    totals: Vec<AssetTotals>,
    /// Wrapping sum of every balance's fingerprint.
    digest: u64,
}

impl ReadAccounts {
    /// The accounts of `assets` with `balances` (each (user, asset) once).
    pub fn new(
        assets: Arc<[Asset]>,
        balances: impl IntoIterator<Item = (Arc<str>, Asset, Balance)>,
    ) -> Result<ReadAccounts, String> {
        let mut accounts = ReadAccounts {
            totals: vec![AssetTotals::default(); assets.len()],
            assets,
            balances: imbl::HashMap::new(),
            digest: 0,
        };
        for (user, asset, balance) in balances {
            let i = accounts
                .asset_index(asset)
                .ok_or_else(|| format!("{user}'s balance of {asset}, which is not traded here"))?;
            let mut funds: Vec<(Asset, Balance)> = accounts
                .balances
                .get(&user)
                .map_or(Vec::new(), |f| f.to_vec());
            if funds.iter().any(|(a, _)| *a == asset) {
                return Err(format!("{user}'s balance of {asset} comes twice"));
            }
            funds.push((asset, balance));
            funds.sort_unstable_by_key(|(a, _)| *a);
            let t = &mut accounts.totals[i];
            t.available = (t.available.checked_add(balance.available))
                .filter(|&v| v <= AMOUNT_MAX)
                .ok_or_else(|| {
                    format!("the balances of {asset} add up to more than {AMOUNT_MAX}")
                })?;
            t.held = (t.held.checked_add(balance.held))
                .filter(|&v| v.saturating_add(t.available) <= AMOUNT_MAX)
                .ok_or_else(|| {
                    format!("the balances of {asset} add up to more than {AMOUNT_MAX}")
                })?;
            accounts.digest = accounts
                .digest
                .wrapping_add(balance_fingerprint(&user, asset, balance));
            accounts.balances.insert(user, funds.into());
        }
        Ok(accounts)
    }

    fn asset_index(&self, asset: Asset) -> Option<usize> {
        self.assets.iter().position(|a| *a == asset)
    }

    /// `user`'s balances (`None`: no account).
    pub fn of(&self, user: &str) -> Option<&Arc<[(Asset, Balance)]>> {
        self.balances.get(user)
    }

    /// Each asset with its totals, in the order of [`ReadAccounts::assets`].
    pub fn totals(&self) -> impl Iterator<Item = (Symbol, AssetTotals)> + '_ {
        self.assets.iter().copied().zip(self.totals.iter().copied())
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Number of users holding anything.
    pub fn users(&self) -> usize {
        self.balances.len()
    }

    /// `user`'s balance of `asset`.
    fn balance(&self, user: &str, asset: Asset) -> Balance {
        (self.balances.get(user))
            .and_then(|funds| funds.iter().find(|(a, _)| *a == asset))
            .map_or(Balance::default(), |(_, b)| *b)
    }

    /// Checks an event's balance changes against the accounts without changing
    /// them: an order, amend or cancel moves money between users only, each (user,
    /// asset) once ([`check_moves`]); no balance or total leaves its bounds; a
    /// transfer is of a traded asset. What [`ReadAccounts::commit`] then applies.
    pub fn stage<'e>(&self, event: &'e Event) -> Result<Staged<'e>, String> {
        if let Some(moves) = event.balance_moves() {
            check_moves(moves)?;
        }
        let mut totals = self.totals.clone();
        let mut changes = Vec::new();
        for (user, asset, available, held) in event.balance_changes() {
            let at = self
                .asset_index(asset)
                .ok_or_else(|| format!("a change of {asset}, which is not traded here"))?;
            let before = self.balance(user, asset);
            let new = before
                .after(available, held)
                .map_err(|e| format!("{user}'s {asset}: {e}"))?;
            let t = &mut totals[at];
            t.available = t.available - before.available + new.available;
            t.held = t.held - before.held + new.held;
            changes.push((user, asset, before, new));
        }
        match event {
            Event::Deposited { asset, amount, .. } => {
                let at = self.asset_index(*asset).expect("checked above");
                totals[at].deposited += u128::from(*amount);
            }
            Event::Withdrawn { asset, amount, .. } => {
                let at = self.asset_index(*asset).expect("checked above");
                totals[at].withdrawn += u128::from(*amount);
            }
            _ => {}
        }
        if let Some((asset, _)) = (self.assets.iter().zip(&totals))
            .find(|(_, t)| u128::from(t.available) + u128::from(t.held) > u128::from(AMOUNT_MAX))
        {
            return Err(format!("the total of {asset} would pass {AMOUNT_MAX}"));
        }
        Ok(Staged { totals, changes })
    }

    /// Applies what [`ReadAccounts::stage`] checked.
    pub fn commit(&mut self, staged: Staged, users: &mut shared_events::interner::Interner) {
        self.totals = staged.totals;
        for (user, asset, before, new) in staged.changes {
            let key = users.intern(user);
            let mut funds: Vec<(Asset, Balance)> =
                self.balances.get(&key).map_or(Vec::new(), |f| f.to_vec());
            // A balance back at zero is no balance: the same state as after a
            // snapshot, which holds only the others.
            funds.retain(|(a, _)| *a != asset);
            if !new.is_zero() {
                funds.push((asset, new));
                funds.sort_unstable_by_key(|(a, _)| *a);
            }
            if funds.is_empty() {
                self.balances.remove(&key);
            } else {
                self.balances.insert(key, funds.into());
            }
            self.digest = self
                .digest
                .wrapping_sub(balance_fingerprint(user, asset, before))
                .wrapping_add(balance_fingerprint(user, asset, new));
        }
    }

    /// Every balance that is not zero, by user then asset.
    pub fn sorted(&self) -> Vec<(&str, Asset, Balance)> {
        let mut all: Vec<(&str, Asset, Balance)> = (self.balances.iter())
            .flat_map(|(user, funds)| funds.iter().map(move |(a, b)| (&**user, *a, *b)))
            .filter(|(_, _, b)| !b.is_zero())
            .collect();
        all.sort_unstable_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        all
    }

    /// Writes the accounts into a snapshot body: the balances, then each asset's
    /// deposited and withdrawn totals (each as two u64 halves).
    pub fn encode(accounts: Option<&ReadAccounts>, w: &mut BodyWriter) {
        w.balances(accounts.map(|a| a.sorted().into_iter()));
        if let Some(accounts) = accounts {
            for t in &accounts.totals {
                for v in [t.deposited, t.withdrawn] {
                    w.u64((v >> 64) as u64);
                    w.u64(v as u64);
                }
            }
        }
    }

    /// Reads what [`ReadAccounts::encode`] wrote, for a model of `assets`.
    pub fn decode(
        r: &mut BodyReader,
        assets: Arc<[Asset]>,
        users: &mut shared_events::interner::Interner,
    ) -> Result<Option<ReadAccounts>, BodyError> {
        let Some(balances) = r.balances()? else {
            return Ok(None);
        };
        let balances: Vec<_> = (balances.into_iter())
            .map(|(user, asset, b)| (users.intern(&user), asset, b))
            .collect();
        let mut accounts = ReadAccounts::new(assets, balances).map_err(|e| r.error(e))?;
        for t in &mut accounts.totals {
            let mut wide = || -> Result<u128, BodyError> {
                Ok(u128::from(r.u64()?) << 64 | u128::from(r.u64()?))
            };
            t.deposited = wide()?;
            t.withdrawn = wide()?;
        }
        Ok(Some(accounts))
    }
}
