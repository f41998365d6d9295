//! The read side's order index: every kept order by id, written by the tailer and
//! read by the HTTP handlers at the same time.
//!
//! It is a fixed set of shards, each a hash map behind its own lock, like
//! `DashMap`, with two differences that matter when a snapshot of a million orders
//! is loaded (the index build was most of the read side's start-up time):
//!
//! - it is built in bulk ([`IndexBuilder`]): the shards are filled before any lock
//!   exists, instead of by a million locked inserts, each of which waited for its
//!   cache-missing store to land before it could unlock;
//! - the number of shards follows the size it is built for, so that the tables are
//!   about 3/4 full. A hash table's size is a power of two, which at an unlucky
//!   count (a million in eight shards is one) leaves it half empty: twice the
//!   memory to fault in and to write.
//!
//! Entries are [`IndexedOrder`]s, 48 bytes with their key: prices and quantities
//! fit in `u32` (see `shared_events::domain`), and the id is the key only.

use crate::projection::{OrderView, Status};
use shared_events::Side;
use shared_events::state::MarketSpec;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One order in the index; [`IndexedOrder::view`] is what `/orders/{id}` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedOrder {
    /// Interned: one allocation per user, shared by all their orders.
    pub user: Arc<str>,
    /// The event that last changed this order (0: init.txt).
    pub seq: u64,
    pub price: u32,
    /// Quantity ordered (for init.txt orders: the quantity resting at genesis).
    pub qty: u32,
    pub filled_qty: u32,
    pub side: Side,
    pub status: Status,
    /// Its market, as an index into the model's markets (a symbol would make an
    /// entry 64 bytes).
    pub market: u16,
}

impl IndexedOrder {
    /// The order as the API shows it; `markets` are the model's, whose indexes
    /// `market` holds.
    pub fn view(&self, id: u64, markets: &[MarketSpec]) -> OrderView {
        OrderView {
            id,
            market: markets[usize::from(self.market)].symbol,
            user: self.user.clone(),
            side: self.side,
            price: self.price.into(),
            qty: self.qty.into(),
            filled_qty: self.filled_qty.into(),
            status: self.status,
            seq: self.seq,
        }
    }
}

/// Hashes an order id: the id itself in the low bits (the slot a table puts it
/// in), a multiplicative mix of it in the top ones (the tag a table compares
/// first, and the shard). Consecutive ids then fill consecutive slots of a shard's
/// table; order ids are assigned one after another by the write side, never chosen
/// by a client, so a fixed, unseeded hash cannot be steered into collisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderIdHash;

/// The hasher of [`OrderIdHash`].
#[derive(Debug, Default)]
pub struct OrderIdHasher(u64);

/// Bits of the hash taken from the id itself: more than any table's slot index uses.
const ID_BITS: u32 = 44;
/// Bits of the mix that pick a shard: between the id's and the tag's (the top 7).
const SHARD_BITS: u32 = 13;

impl std::hash::Hasher for OrderIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ids (u64) are hashed; anything else still gets a usable hash.
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        const LOW: u64 = (1 << ID_BITS) - 1;
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (mixed & !LOW) | (id & LOW);
    }
}

impl BuildHasher for OrderIdHash {
    type Hasher = OrderIdHasher;

    fn build_hasher(&self) -> OrderIdHasher {
        OrderIdHasher::default()
    }
}

type Shard = HashMap<u64, IndexedOrder, OrderIdHash>;

/// Shards of an index that is not built for a known size.
const SHARDS_DEFAULT: usize = 16;

/// The shard of `id` among `shards`.
fn shard_of(id: u64, shards: usize) -> usize {
    let bits = (OrderIdHash.hash_one(id) >> ID_BITS) & ((1 << SHARD_BITS) - 1);
    ((bits * shards as u64) >> SHARD_BITS) as usize
}

/// Every kept order by id. All methods take `&self`: the tailer writes while
/// handlers read, each shard locked only for the one operation.
#[derive(Debug)]
pub struct OrderIndex {
    shards: Box<[RwLock<Shard>]>,
}

impl Default for OrderIndex {
    fn default() -> Self {
        IndexBuilder::with_shards(SHARDS_DEFAULT, 0).finish()
    }
}

/// A shard, read. A map's operations do not panic half-way, so a lock poisoned by
/// a panic elsewhere still guards a whole map, and is used as it is (as `DashMap`,
/// which has no poisoning, did): a panic on the tailer must not make reads panic.
fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

/// A shard, written (see [`read`]).
fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

impl OrderIndex {
    fn shard(&self, id: u64) -> &RwLock<Shard> {
        &self.shards[shard_of(id, self.shards.len())]
    }

    /// Order `id` as the API shows it (`markets`: the model's).
    pub fn get(&self, id: u64, markets: &[MarketSpec]) -> Option<OrderView> {
        self.with(id, |o| o.view(id, markets))
    }

    /// `f` of order `id`, read under its shard's lock.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&IndexedOrder) -> R) -> Option<R> {
        read(self.shard(id)).get(&id).map(f)
    }

    /// `f` of order `id`, changed under its shard's lock.
    pub fn with_mut<R>(&self, id: u64, f: impl FnOnce(&mut IndexedOrder) -> R) -> Option<R> {
        write(self.shard(id)).get_mut(&id).map(f)
    }

    /// Adds or replaces order `id`, returning what it replaced.
    pub fn insert(&self, id: u64, order: IndexedOrder) -> Option<IndexedOrder> {
        write(self.shard(id)).insert(id, order)
    }

    pub fn remove(&self, id: u64) -> Option<IndexedOrder> {
        write(self.shard(id)).remove(&id)
    }

    /// Orders kept (each shard counted at its own moment).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every order, shard by shard, each shard read-locked meanwhile.
    pub fn for_each(&self, mut f: impl FnMut(u64, &IndexedOrder)) {
        for shard in &self.shards {
            for (&id, order) in read(shard).iter() {
                f(id, order);
            }
        }
    }

    /// Every order as the API shows it, by id: a copy, for comparisons and tests.
    pub fn views(&self, markets: &[MarketSpec]) -> Vec<OrderView> {
        let mut views = Vec::with_capacity(self.len());
        self.for_each(|id, o| views.push(o.view(id, markets)));
        views.sort_unstable_by_key(|v| v.id);
        views
    }
}

/// Builds an [`OrderIndex`] of a known size without locking.
#[derive(Debug)]
pub struct IndexBuilder {
    shards: Vec<Shard>,
}

impl IndexBuilder {
    /// A builder for about `orders` orders: shards of `2^k` slots that many orders
    /// fill to about 3/4, at least `SHARDS_DEFAULT` of them, and room for a tenth
    /// more orders before any table grows.
    pub fn new(orders: usize) -> Self {
        const FILL: f64 = 0.75;
        let mut slots: usize = 1 << 10;
        while orders as f64 / (slots as f64 * FILL) > 2.0 * SHARDS_DEFAULT as f64 {
            slots *= 2;
        }
        let shards = (orders as f64 / (slots as f64 * FILL)).ceil() as usize;
        if shards <= SHARDS_DEFAULT {
            // A small index: the default shards, with some room.
            return Self::with_shards(
                SHARDS_DEFAULT,
                (orders + orders / 4).div_ceil(SHARDS_DEFAULT),
            );
        }
        // A table of `slots` slots holds 7/8 of them before it grows.
        Self::with_shards(shards, slots / 8 * 7)
    }

    fn with_shards(shards: usize, capacity: usize) -> Self {
        IndexBuilder {
            shards: (0..shards)
                .map(|_| HashMap::with_capacity_and_hasher(capacity, OrderIdHash))
                .collect(),
        }
    }

    /// Adds order `id`; false (and nothing changed) if it is already there.
    pub fn insert(&mut self, id: u64, order: IndexedOrder) -> bool {
        let shards = self.shards.len();
        match self.shards[shard_of(id, shards)].entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(order);
                true
            }
        }
    }

    pub fn finish(self) -> OrderIndex {
        OrderIndex {
            shards: self.shards.into_iter().map(RwLock::new).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(seq: u64) -> IndexedOrder {
        IndexedOrder {
            user: "alice".into(),
            seq,
            price: 100,
            qty: 5,
            filled_qty: 0,
            side: Side::Buy,
            status: Status::Resting,
            market: 0,
        }
    }

    const MARKETS: &[MarketSpec] = &[MarketSpec::DEFAULT];

    #[test]
    fn entries_are_48_bytes() {
        assert_eq!(std::mem::size_of::<(u64, IndexedOrder)>(), 48);
    }

    #[test]
    fn built_shards_are_about_three_quarters_full() {
        for orders in [0, 1, 1000, 20_000, 1_000_000, 3_000_000] {
            let built = IndexBuilder::new(orders);
            let slots: usize = built.shards.iter().map(|s| s.capacity() * 8 / 7).sum();
            assert!(built.shards.len() >= SHARDS_DEFAULT);
            let capacity: usize = built.shards.iter().map(|s| s.capacity()).sum();
            assert!(capacity >= orders + orders / 10, "{orders}: {capacity}");
            if orders >= 1_000_000 {
                let fill = orders as f64 / slots as f64;
                assert!((0.6..0.8).contains(&fill), "{orders}: {fill}");
            }
        }
    }

    proptest! {
        /// The index behaves like one map, whichever way it was filled.
        #[test]
        fn acts_as_one_map(ops in proptest::collection::vec((0u64..2000, 0u8..4), 0..400)) {
            let mut model = std::collections::BTreeMap::new();
            let mut builder = IndexBuilder::new(ops.len());
            for &(id, _) in ops.iter().take(ops.len() / 2) {
                let fresh = !model.contains_key(&id);
                prop_assert_eq!(builder.insert(id, order(id)), fresh);
                model.entry(id).or_insert(order(id));
            }
            let index = builder.finish();
            for &(id, op) in ops.iter().skip(ops.len() / 2) {
                match op {
                    0 => prop_assert_eq!(index.insert(id, order(7)), model.insert(id, order(7))),
                    1 => prop_assert_eq!(index.remove(id), model.remove(&id)),
                    2 => {
                        let changed = index.with_mut(id, |o| { o.filled_qty += 1; o.filled_qty });
                        let expected = model.get_mut(&id).map(|o| { o.filled_qty += 1; o.filled_qty });
                        prop_assert_eq!(changed, expected);
                    }
                    _ => prop_assert_eq!(index.get(id, MARKETS), model.get(&id).map(|o| o.view(id, MARKETS))),
                }
            }
            prop_assert_eq!(index.len(), model.len());
            let all: Vec<OrderView> = model.iter().map(|(&id, o)| o.view(id, MARKETS)).collect();
            prop_assert_eq!(index.views(MARKETS), all);
        }
    }
}
