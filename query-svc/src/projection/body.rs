//! The read model as a snapshot body ([`shared_events::binary`]): encoding it on
//! the tailer thread, sorting the orders by id on the snapshot writer's thread, and
//! decoding it at start, where each order record is read straight from the mapped
//! file into the index and the levels.

use super::*;
use crate::index::{IndexBuilder, IndexedOrder};
use shared_events::binary::{BodyError, BodyReader, BodyWriter, UserTable, user_at};

impl ReadModel {
    /// The model as a snapshot body ([`shared_events::binary`]): the id counter,
    /// the user table, the markets and whether each is held (a byte), every order (`id`, user, side, price, qty,
    /// filled_qty, status, seq, market index; in the index's order, put in id
    /// order later by [`ReadModel::sort_body`]), then the kept trades oldest first
    /// (each with its market index). A sequential
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
        w.markets(&self.markets);
        for &held in self.held.iter() {
            w.u8(u8::from(held));
        }
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
            w.u16(o.market);
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
            let market = self
                .market_index(t.market)
                .expect("a trade of a held market");
            w.u16(market);
        }
        drop(trades);
        super::ReadAccounts::encode(self.accounts.as_ref(), &mut w);
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
    ///
    /// One function on purpose: the two loader threads borrow the same checked
    /// parts of the body inside one scope.
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
            let mut book = ReadModel::empty(parts.markets.as_slice().into(), seq);
            book.held = parts.held.clone();
            book.next_order_id = parts.next_order_id;
            book.users = names.iter().cloned().collect();
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
            let mut levels: foldhash::HashMap<(u16, Side, u64), Vec<(u64, u64)>> =
                Default::default();
            // Finished orders in the order they finished: by the seq that finished them.
            let mut finished: Vec<(u64, u64)> = Vec::new();
            for o in parts.orders.clone().map_while(Result::ok) {
                if o.status != Status::Resting {
                    finished.push((o.seq, o.id));
                } else {
                    let left = o.qty - o.filled_qty;
                    let user = &text[spans[o.user as usize].clone()];
                    let sides = &mut book.books[usize::from(o.market)];
                    sides.digest = sides
                        .digest
                        .wrapping_add(resting_fingerprint(o.id, user, o.side, o.price, left));
                    levels
                        .entry((o.market, o.side, o.price))
                        .or_default()
                        .push((o.id, left));
                }
                by_user[o.user as usize].push(o.id);
            }
            for ((market, side, price), mut resting) in levels {
                resting.sort();
                let level = Level {
                    qty: resting.iter().map(|&(_, qty)| qty).sum(),
                    orders: resting.into_iter().collect(),
                };
                book.books[usize::from(market)]
                    .levels_mut(side)
                    .insert(price, level);
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
        let mut accounts = parts.accounts.clone();
        model.accounts = super::ReadAccounts::decode(
            &mut accounts,
            shared_events::state::assets_of(&model.markets).into(),
            &mut model.users,
        )
        .map_err(|e| e.to_string())?;
        accounts.end().map_err(|e| e.to_string())?;
        model.orders = Arc::new(index?);
        *model.trades.write().expect("trades lock") = parts.trades.into();
        model.forget_finished();
        Ok(model)
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
    /// Index into the body's markets.
    market: u16,
}

/// Orders a snapshot load reads before it puts them in the index.
const INDEX_BATCH: usize = 32;

/// Bytes of one [`OrderRecord`] in a body.
const ORDER_RECORD_BYTES: usize = 48;

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
            market: self.market,
        }
    }
}

/// The orders of a body, read and checked one at a time, as often as needed.
#[derive(Debug, Clone)]
struct OrderRecords<'a> {
    r: BodyReader<'a>,
    left: usize,
    users: usize,
    /// Number of markets: every market index is below it.
    markets: usize,
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
        let market = u16::from_le_bytes(b[46..48].try_into().expect("2 bytes"));
        let error = |message: String| BodyError {
            offset: at,
            message: format!("order record: {message}"),
        };
        if user as usize >= self.users {
            return Err(error(format!("user index {user} is not in the table")));
        }
        if usize::from(market) >= self.markets {
            return Err(error(format!(
                "market index {market} is not in the markets"
            )));
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
            market,
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
    markets: Vec<MarketSpec>,
    held: Arc<[bool]>,
    orders: OrderRecords<'a>,
    trades: Vec<TradeView>,
    /// Where the accounts section starts (read by [`ReadModel::decode`]).
    accounts: BodyReader<'a>,
}

/// The parts of a read-side snapshot body: the id counter, the user names, the
/// orders (checked as they are read) and the trades (checked here).
fn decode_parts<'a>(r: &mut BodyReader<'a>, seq: u64) -> Result<Parts<'a>, BodyError> {
    let next_order_id = r.u64()?;
    let names = UserTable::read(r)?;
    let markets = r.markets()?;
    if markets.is_empty() {
        return Err(r.error("no markets"));
    }
    let mut held = Vec::with_capacity(markets.len());
    for _ in &markets {
        held.push(match r.u8()? {
            0 => false,
            1 => true,
            other => return Err(r.error(format!("held flag {other} is not 0 or 1"))),
        });
    }
    let n = r.count(SNAPSHOT_ORDERS_MAX, ORDER_RECORD_BYTES)?;
    let orders = OrderRecords {
        r: r.split_off(n * ORDER_RECORD_BYTES)?,
        left: n,
        users: names.len(),
        markets: markets.len(),
        next_order_id,
        seq,
    };
    // A trade is 50 bytes.
    let n = r.count(TRADES_KEPT, 50)?;
    let mut trades = Vec::with_capacity(n);
    for _ in 0..n {
        let mut trade = TradeView {
            seq: r.u64()?,
            market: markets[0].symbol,
            taker_id: r.u64()?,
            maker_id: r.u64()?,
            buyer: user_at(&names, r.u32()?, r)?.to_string(),
            seller: user_at(&names, r.u32()?, r)?.to_string(),
            price: r.u64()?,
            qty: r.u64()?,
        };
        let market = r.u16()?;
        trade.market = match markets.get(usize::from(market)) {
            Some(m) => m.symbol,
            None => return Err(r.error(format!("market index {market} is not in the markets"))),
        };
        if trade.seq > seq || trades.last().is_some_and(|t: &TradeView| t.seq > trade.seq) {
            return Err(r.error("trades do not fit the snapshot"));
        }
        trades.push(trade);
    }
    // The accounts section is the rest of the body.
    let accounts = r.split_off(r.remaining())?;
    Ok(Parts {
        next_order_id,
        names,
        markets,
        held: held.into(),
        orders,
        trades,
        accounts,
    })
}

fn status_byte(status: Status) -> u8 {
    match status {
        Status::Resting => 0,
        Status::Filled => 1,
        Status::Cancelled => 2,
        Status::Replaced => 3,
    }
}

fn status_of(byte: u8) -> Option<Status> {
    match byte {
        0 => Some(Status::Resting),
        1 => Some(Status::Filled),
        2 => Some(Status::Cancelled),
        3 => Some(Status::Replaced),
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
        let acme = Symbol::from_static("ACME");
        let markets = vec![
            MarketSpec::DEFAULT,
            MarketSpec {
                symbol: acme,
                base: acme,
                quote: shared_events::market::DEFAULT_QUOTE,
            },
        ];
        let orders = (1..=5000)
            .map(|id| RestingOrder {
                id,
                market: if id % 3 == 0 { acme } else { markets[0].symbol },
                user: format!("u{}", id % 7),
                side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
                price: if id % 2 == 0 { 100 } else { 200 },
                qty: 1 + id % 5,
            })
            .collect();
        let state = BookState {
            markets,
            next_order_id: 5001,
            orders,
            accounts: None,
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
        assert!(loaded.market_digests().eq(model.market_digests()));
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
            event: Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id: 1,
                    user: "alice".into(),
                    side: Side::Buy,
                    price,
                    qty,
                },
                vec![],
                qty,
                None,
            ),
        };
        for (price, qty) in [(PRICE_MAX + 1, 1), (1 << 40, 1), (1, QTY_MAX + 1), (0, 1)] {
            let refused = model.apply(&placed(price, qty)).unwrap_err();
            assert!(refused.message.contains("out of bounds"), "{refused}");
            assert_eq!((model.seq, model.orders.len()), (0, 0));
        }
        model.apply(&placed(PRICE_MAX, QTY_MAX)).unwrap();
        let order = model.orders.get(1, &model.markets).unwrap();
        assert_eq!((order.price, order.qty), (PRICE_MAX, QTY_MAX));
    }
}
