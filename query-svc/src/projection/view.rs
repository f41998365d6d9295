//! The immutable view of the book readers are handed ([`BookView`]), and its
//! `/orderbook` JSON, serialized once per view and shared by every reader.

use super::*;
use serde::ser::SerializeSeq;

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

/// An immutable view of every market's book, published after each applied batch.
/// It shares the persistent level maps with the model; each market's JSON answer is
/// made on first request, once per seq.
#[derive(Debug, Clone)]
pub struct BookView {
    /// Last applied event.
    pub seq: u64,
    /// The markets, the default first.
    pub markets: Arc<[MarketSpec]>,
    /// Which of them this side holds (see [`ReadModel::held`]).
    pub held: Arc<[bool]>,
    /// Each market's book, by its index in `markets`; shared with the model.
    pub(super) books: Vec<Sides>,
    /// The order index, for the owners of the resting orders.
    pub(super) orders: Arc<OrderIndex>,
    /// The balances at `seq` (with accounts on, on a side holding every market).
    pub accounts: Option<super::ReadAccounts>,
    /// Each market's `/orderbook` body, serialized by the first reader that wants it.
    pub(super) json: Vec<OnceLock<bytes::Bytes>>,
    /// Each market's `/orderbook?depth=N` body for the first `N` a reader asked
    /// for (clients poll with one depth; other depths are made per request).
    pub(super) depth_json: Vec<OnceLock<(usize, bytes::Bytes)>>,
}

impl BookView {
    /// Digest of the state at `seq`: every market's resting orders and the accounts.
    pub fn digest(&self) -> u64 {
        let accounts = self
            .accounts
            .as_ref()
            .map_or(0, super::ReadAccounts::digest);
        (self.books.iter()).fold(accounts, |sum, b| sum.wrapping_add(b.digest))
    }

    /// Each held market's digest at `seq`, in the order of [`BookView::markets`].
    pub fn market_digests(&self) -> impl Iterator<Item = (Symbol, u64)> + '_ {
        (self.markets.iter().zip(&self.books).zip(self.held.iter()))
            .filter(|(_, held)| **held)
            .map(|((m, b), _)| (m.symbol, b.digest))
    }

    /// The `/orderbook` body of the market at `market` (an index into
    /// [`BookView::markets`]): `{"seq","market","bids":[...],"asks":[...]}`.
    pub fn json(&self, market: usize) -> bytes::Bytes {
        self.json[market]
            .get_or_init(|| {
                #[derive(Serialize)]
                struct Book<B, A> {
                    seq: u64,
                    market: Symbol,
                    bids: B,
                    asks: A,
                }
                let sides = &self.books[market];
                let book = Book {
                    seq: self.seq,
                    market: self.markets[market].symbol,
                    bids: orders_json(sides.bids.iter().rev(), &self.orders),
                    asks: orders_json(sides.asks.iter(), &self.orders),
                };
                serde_json::to_vec(&book)
                    .expect("serializing the book to memory cannot fail")
                    .into()
            })
            .clone()
    }

    /// The `/orderbook?depth=N` body of the market at `market`: the best `n` price
    /// levels of each side, each with its total quantity and number of orders.
    /// Made once per view for the first `n` asked for.
    pub fn depth_json(&self, market: usize, n: usize) -> bytes::Bytes {
        let (cached_n, body) =
            self.depth_json[market].get_or_init(|| (n, self.make_depth_json(market, n).into()));
        if *cached_n == n {
            return body.clone();
        }
        self.make_depth_json(market, n).into()
    }

    fn make_depth_json(&self, market: usize, n: usize) -> Vec<u8> {
        let aggregate = |(&price, level): (&u64, &Level)| LevelJson {
            price,
            qty: level.qty,
            orders: level.orders.len(),
        };
        #[derive(Serialize)]
        struct Depth {
            seq: u64,
            market: Symbol,
            depth: usize,
            bids: Vec<LevelJson>,
            asks: Vec<LevelJson>,
        }
        let sides = &self.books[market];
        let depth = Depth {
            seq: self.seq,
            market: self.markets[market].symbol,
            depth: n,
            bids: sides.bids.iter().rev().take(n).map(aggregate).collect(),
            asks: sides.asks.iter().take(n).map(aggregate).collect(),
        };
        serde_json::to_vec(&depth).expect("serializing to memory cannot fail")
    }
}
