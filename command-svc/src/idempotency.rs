//! Idempotency keys: a client sends `Idempotency-Key: K` with a write; a retry with
//! the same key gets the first answer again and writes nothing. The key is recorded
//! in the event, so this index is part of the write model: rebuilt by replay, carried
//! in snapshots. It keeps the most recent [`IDEMPOTENCY_KEYS_KEPT_DEFAULT`] keys (a
//! flag changes it); a key older than that is forgotten, and a retry with it would be
//! a new request. Keys of rejected requests are not remembered: nothing was written,
//! so a retry is decided afresh.

use crate::command::{Command, Rejection};
use shared_events::{Envelope, Event};
use std::collections::{HashMap, VecDeque};

/// Default number of keys remembered.
pub const IDEMPOTENCY_KEYS_KEPT_DEFAULT: usize = 100_000;
/// Longest accepted key, in bytes.
pub const KEY_BYTES_MAX: usize = shared_events::event::IDEMPOTENCY_KEY_LEN_MAX;

/// Checks a header value: 1..=128 visible ASCII characters.
pub fn parse_key(raw: &[u8]) -> Result<String, String> {
    if (1..=KEY_BYTES_MAX).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Ok(String::from_utf8(raw.to_vec()).expect("ASCII"))
    } else {
        Err(format!(
            "Idempotency-Key must be 1..={KEY_BYTES_MAX} visible ASCII characters (no spaces)"
        ))
    }
}

/// The key a command carries.
pub fn key_of_command(cmd: &Command) -> Option<&str> {
    cmd.idempotency_key()
}

fn key_of_event(event: &Event) -> Option<&str> {
    event.idempotency_key()
}

/// Whether `cmd` asks for what `event` recorded: the same request, retried.
pub fn same_request(cmd: &Command, event: &Event) -> bool {
    match (cmd, event) {
        (
            Command::Place {
                market,
                user,
                side,
                price,
                qty,
                options,
                ..
            },
            Event::OrderPlaced {
                market: placed_in,
                order,
                tif,
                post_only,
                stp,
                market_order,
                max_cost,
                ..
            },
        ) => {
            placed_in == market
                && order.user == *user
                && order.side == *side
                && order.price == *price
                && order.qty == *qty
                && (options.tif, options.post_only, options.stp) == (*tif, *post_only, *stp)
                && (options.market, options.max_cost) == (*market_order, *max_cost)
        }
        (
            Command::Amend {
                user,
                order_id,
                qty,
                price,
                ..
            },
            Event::OrderAmended {
                order_id: id,
                user: owner,
                new_qty,
                new_price,
                price: old_price,
                ..
            },
        ) => {
            id == order_id
                && owner == user
                && new_qty == qty
                && *new_price == price.unwrap_or(*old_price)
        }
        (
            Command::CancelAll { user, market, .. },
            Event::OrdersCancelled {
                user: owner,
                market: in_market,
                ..
            },
        ) => owner == user && market == in_market,
        (
            Command::Cancel { user, order_id, .. },
            Event::OrderCancelled {
                order_id: id,
                user: owner,
                ..
            },
        ) => id == order_id && owner == user,
        (
            Command::Deposit {
                user,
                asset,
                amount,
                ..
            },
            Event::Deposited {
                user: u,
                asset: a,
                amount: n,
                ..
            },
        )
        | (
            Command::Withdraw {
                user,
                asset,
                amount,
                ..
            },
            Event::Withdrawn {
                user: u,
                asset: a,
                amount: n,
                ..
            },
        ) => user == u && asset == a && amount == n,
        _ => false,
    }
}

/// The most recent keys and the events they produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyIndex {
    by_key: HashMap<String, Envelope>,
    /// Keys oldest first, for eviction.
    order: VecDeque<String>,
    /// Most keys kept.
    kept_max: usize,
}

impl IdempotencyIndex {
    pub fn new(kept_max: usize) -> Self {
        IdempotencyIndex {
            by_key: HashMap::new(),
            order: VecDeque::new(),
            kept_max,
        }
    }

    /// What a command with a key already produced: `Some(Ok(first event))` for a
    /// retry, `Some(Err(..))` when the key was used for a different request, `None`
    /// for a new key (or no key).
    pub fn check(&self, cmd: &Command) -> Option<Result<&Envelope, Rejection>> {
        let key = key_of_command(cmd)?;
        let first = self.by_key.get(key)?;
        Some(if same_request(cmd, &first.event) {
            Ok(first)
        } else {
            Err(Rejection::KeyReused)
        })
    }

    /// Remembers the key of a committed (or replayed) event, if it has one.
    pub fn record(&mut self, env: &Envelope) {
        let Some(key) = key_of_event(&env.event) else {
            return;
        };
        if self.kept_max == 0 || self.by_key.contains_key(key) {
            return;
        }
        self.by_key.insert(key.to_owned(), env.clone());
        self.order.push_back(key.to_owned());
        while self.order.len() > self.kept_max {
            let oldest = self.order.pop_front().expect("non-empty");
            self.by_key.remove(&oldest);
        }
    }

    /// The remembered events, oldest key first (for snapshots).
    pub fn events(&self) -> impl Iterator<Item = &Envelope> {
        self.order.iter().map(|k| &self.by_key[k])
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_events::{Order, SCHEMA_VERSION, Side};

    fn placed(seq: u64, key: &str) -> Envelope {
        Envelope {
            seq,
            ts_us: 0,
            v: SCHEMA_VERSION,
            event: Event::limit_placed(
                shared_events::DEFAULT_MARKET,
                Order {
                    id: seq,
                    user: "a".into(),
                    side: Side::Buy,
                    price: 10,
                    qty: 1,
                },
                vec![],
                1,
                Some(key.into()),
            ),
        }
    }

    fn place(key: &str, price: u64) -> Command {
        place_in(shared_events::DEFAULT_MARKET, key, price)
    }

    fn place_in(market: shared_events::Symbol, key: &str, price: u64) -> Command {
        Command::Place {
            options: Default::default(),
            market,
            user: "a".into(),
            side: Side::Buy,
            price,
            qty: 1,
            idempotency_key: Some(key.into()),
        }
    }

    #[test]
    fn retry_same_request_conflict_other_and_eviction() {
        let mut index = IdempotencyIndex::new(2);
        index.record(&placed(1, "k1"));
        assert_eq!(index.check(&place("k1", 10)).unwrap().unwrap().seq, 1);
        assert_eq!(
            index.check(&place("k1", 11)).unwrap().unwrap_err(),
            Rejection::KeyReused
        );
        assert_eq!(
            index
                .check(&place_in(
                    shared_events::Symbol::from_static("ACME"),
                    "k1",
                    10
                ))
                .unwrap()
                .unwrap_err(),
            Rejection::KeyReused,
            "the same order in another market is another request"
        );
        assert!(index.check(&place("k2", 10)).is_none());
        index.record(&placed(2, "k2"));
        index.record(&placed(3, "k3"));
        assert!(
            index.check(&place("k1", 10)).is_none(),
            "the oldest key is forgotten"
        );
        assert_eq!(
            index.events().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn key_syntax() {
        assert!(parse_key(b"abc-123_XYZ").is_ok());
        assert!(parse_key(b"").is_err());
        assert!(parse_key(b"has space").is_err());
        assert!(parse_key(&[b'k'; 129]).is_err());
        assert!(parse_key("é".as_bytes()).is_err());
    }
}
